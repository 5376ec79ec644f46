//! Kafka share groups (KIP-932) served from sluice's queue engine: a share group `g` on topic
//! `t` is sluice's consumer group `g` of `t` (a shared cursor with ack state per partition), and
//! each member is a competing consumer of it with its own window. An acquisition lock is the
//! group's ack deadline, the delivery limit its `max_deliveries`, a REJECT or the limit
//! dead-letters (to `<topic>.<group>.dlq`), a RELEASE redelivers at once. Mapping and
//! differences: `docs/kafka.md`.
//!
//! Membership is kept in memory (as Kafka's coordinator keeps it in its log, sluice keeps
//! nothing of it across restarts: members rejoin), the ack state on disk. Every member is
//! assigned every partition of the topics it subscribes to: records, not partitions, are what
//! members compete for.
//!
//! Files: `config`, `session` (share sessions and their epochs), `heartbeat`
//! (ShareGroupHeartbeat), `fetch` (ShareFetch), `ack` (acknowledgements, in ShareFetch and
//! ShareAcknowledge), `acknowledge` (ShareAcknowledge), `records` (acquired records as Kafka
//! batches), `describe` (ShareGroupDescribe, DescribeShareGroupOffsets,
//! DeleteShareGroupOffsets), `alter` (AlterShareGroupOffsets).

mod ack;
mod acknowledge;
mod alter;
mod config;
mod describe;
mod fetch;
mod heartbeat;
mod records;
mod session;

pub use config::ShareConfig;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;
use sluice_storage::{Queue, QueueConfig};
use tokio::sync::{watch, Notify};
use uuid::Uuid;

use crate::broker::{blocking, Broker, Consumer, NamedLog, Result as BrokerResult, Source};
use session::Session;

/// How often members that stopped heartbeating and fetching are looked for.
const REAPER_PERIOD: Duration = Duration::from_secs(1);

/// The share groups this broker serves.
pub struct ShareGroups {
    broker: Arc<Broker>,
    config: ShareConfig,
    groups: Mutex<HashMap<String, Group>>,
}

/// One share group's members.
#[derive(Default)]
struct Group {
    /// Changes whenever a member joins, leaves or changes its subscription.
    epoch: i32,
    members: HashMap<String, Arc<Member>>,
}

/// One member of a share group.
pub(super) struct Member {
    group: String,
    id: String,
    state: Mutex<MemberState>,
    /// Its consumer of each topic it fetched from, opened at first use.
    consumers: Mutex<HashMap<String, Arc<TopicConsumer>>>,
    /// Set once the member is removed: consumers opened for it later are released at once.
    gone: AtomicBool,
}

/// What a member's heartbeats and fetches change.
pub(super) struct MemberState {
    /// Its epoch: 0 until its first heartbeat (a member known only by its fetches), then
    /// raised whenever its assignment changes.
    epoch: i32,
    subscribed: Vec<String>,
    /// What it was last told it is assigned.
    assignment: Assigned,
    last_seen: Instant,
    session: Option<Session>,
    /// It left the group and keeps only its share session.
    left: bool,
    client_id: String,
    client_host: String,
    rack_id: Option<String>,
}

/// An assignment: (topic id, topic, partitions) of each topic.
type Assigned = Vec<(Uuid, String, Vec<i32>)>;

/// A member's competing consumer of one topic's group.
pub(super) struct TopicConsumer {
    consumer: Arc<Consumer>,
    /// The group's queue over each partition, in partition order.
    queues: Vec<Arc<Queue>>,
    /// Changes when the topic grows; closed when it is deleted.
    appended: watch::Receiver<u64>,
    /// Messages returned to the group (nacks, releases, expiries).
    events: Arc<Notify>,
}

impl ShareGroups {
    /// The share groups of `broker`, with `config` (checked by the server's configuration).
    pub fn new(broker: Arc<Broker>, config: ShareConfig) -> Arc<ShareGroups> {
        Arc::new(ShareGroups {
            broker,
            config,
            groups: Mutex::default(),
        })
    }

    /// Its settings.
    pub fn config(&self) -> &ShareConfig {
        &self.config
    }

    /// Starts the task that removes members gone silent for the session timeout; it ends
    /// once the share groups are dropped.
    pub fn spawn_reaper(self: &Arc<Self>) {
        let weak: Weak<ShareGroups> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(REAPER_PERIOD).await;
                let Some(s) = weak.upgrade() else { return };
                s.reap(Instant::now());
            }
        });
    }

    /// Removes the members last seen a session timeout before `now`.
    fn reap(&self, now: Instant) {
        let timeout = Duration::from_millis(self.config.session_timeout_ms as u64);
        let mut gone = Vec::new();
        {
            let mut groups = self.groups.lock().unwrap();
            for g in groups.values_mut() {
                let before = g.members.len();
                g.members.retain(|_, m| {
                    let alive = now.duration_since(m.lock().last_seen) < timeout;
                    if !alive {
                        gone.push(m.clone());
                    }
                    alive
                });
                if g.members.len() != before {
                    g.epoch += 1;
                }
            }
            groups.retain(|_, g| !g.members.is_empty());
        }
        for m in gone {
            tracing::info!(group = %m.group, member = %m.id, "share group member timed out");
            m.remove();
        }
    }

    /// The member `id` of `group`, made if absent (a member may fetch before it heartbeats,
    /// or after a restart forgot it); GROUP_MAX_SIZE_REACHED over the bounds.
    fn member(&self, group: &str, id: &str) -> Result<Arc<Member>, ResponseError> {
        let mut groups = self.groups.lock().unwrap();
        if !groups.contains_key(group) && groups.len() >= self.config.groups_max {
            return Err(ResponseError::GroupMaxSizeReached);
        }
        let g = groups.entry(group.to_string()).or_default();
        if let Some(m) = g.members.get(id) {
            m.lock().last_seen = Instant::now();
            return Ok(m.clone());
        }
        if g.members.len() >= self.config.group_members_max {
            return Err(ResponseError::GroupMaxSizeReached);
        }
        let m = Arc::new(Member {
            group: group.to_string(),
            id: id.to_string(),
            state: Mutex::new(MemberState {
                epoch: 0,
                subscribed: Vec::new(),
                assignment: Vec::new(),
                last_seen: Instant::now(),
                session: None,
                left: false,
                client_id: String::new(),
                client_host: String::new(),
                rack_id: None,
            }),
            consumers: Mutex::default(),
            gone: AtomicBool::new(false),
        });
        g.members.insert(id.to_string(), m.clone());
        g.epoch += 1;
        Ok(m)
    }

    /// The member `id` of `group` if it is known.
    fn known_member(&self, group: &str, id: &str) -> Option<Arc<Member>> {
        let groups = self.groups.lock().unwrap();
        groups.get(group)?.members.get(id).cloned()
    }

    /// A member left the group (heartbeat epoch -1): without a share session it is removed
    /// and what it holds returns at once; with one it is no longer a member (nothing
    /// assigned, not described) but keeps its session, whose close (a ShareFetch or
    /// ShareAcknowledge with epoch -1, usually right after) returns the records and removes
    /// it, as Kafka keeps share sessions apart from membership.
    fn leave(&self, group: &str, id: &str) {
        let Some(m) = self.known_member(group, id) else {
            return;
        };
        {
            let mut st = m.lock();
            if st.session.is_some() {
                st.left = true;
                st.subscribed.clear();
                st.assignment.clear();
                drop(st);
                self.bump_epoch(group);
                return;
            }
        }
        self.remove_member(group, id);
    }

    /// A member's share session closed: a member that left is removed now.
    fn session_closed(&self, m: &Member) {
        m.release_all();
        if m.lock().left {
            self.remove_member(&m.group, &m.id);
        }
    }

    /// Removes a member: what it holds returns to its groups at once.
    fn remove_member(&self, group: &str, id: &str) {
        let m = {
            let mut groups = self.groups.lock().unwrap();
            let Some(g) = groups.get_mut(group) else {
                return;
            };
            let m = g.members.remove(id);
            g.epoch += 1;
            if g.members.is_empty() {
                groups.remove(group);
            }
            m
        };
        if let Some(m) = m {
            m.remove();
        }
    }

    /// Bumps a group's epoch (a member's subscription changed).
    fn bump_epoch(&self, group: &str) {
        if let Some(g) = self.groups.lock().unwrap().get_mut(group) {
            g.epoch += 1;
        }
    }

    /// The member's consumer of `topic`, opened if it has none yet.
    async fn topic_consumer(
        &self,
        member: &Arc<Member>,
        topic: &str,
    ) -> BrokerResult<Arc<TopicConsumer>> {
        if let Some(c) = member.consumers.lock().unwrap().get(topic) {
            return Ok(c.clone());
        }
        let consumer = self.broker.new_consumer(self.config.member_records_max);
        let source = self.source_of(&member.group, topic).await?;
        let feed = consumer.open_with(&self.broker, &source, false).await?;
        let tc = Arc::new(TopicConsumer {
            consumer,
            queues: feed.queues,
            appended: feed.appended,
            events: feed.events,
        });
        let kept = {
            let mut cs = member.consumers.lock().unwrap();
            cs.entry(topic.to_string())
                .or_insert_with(|| tc.clone())
                .clone()
        };
        if !Arc::ptr_eq(&kept, &tc) {
            // Another request of the member opened one first.
            tc.consumer.release();
        } else if member.gone.load(Ordering::Acquire) {
            member.release_all();
        }
        Ok(kept)
    }

    /// What share group `group` consumes of the named log `name`: a queue's own cursor, or
    /// the topic's consumer group `group`, made with the share settings if it does not exist
    /// yet (one that does keeps its own).
    async fn source_of(&self, group: &str, name: &str) -> BrokerResult<Source> {
        let (b, t, g) = (self.broker.clone(), name.to_string(), group.to_string());
        let cfg = self.group_config();
        blocking(move || match b.named_log(&t)? {
            NamedLog::Queue(_) => Ok(Source::Queue(t)),
            NamedLog::Topic(topic) => {
                topic.group(&g, cfg)?;
                Ok(Source::Group { topic: t, group: g })
            }
        })
        .await
    }

    /// The settings a share group is made with on a topic.
    fn group_config(&self) -> QueueConfig {
        QueueConfig {
            ack_timeout_ms: self.config.record_lock_ms,
            max_deliveries: self.config.delivery_count_limit,
            max_unacked_per_consumer: self.broker.limits().unacked_per_consumer_max,
            ..QueueConfig::default()
        }
    }

    /// The topic (or queue) a topic id names, if any.
    fn topic_name(&self, id: Uuid) -> Option<String> {
        self.broker.topic_by_id(*id.as_bytes())
    }
}

impl Member {
    fn lock(&self) -> std::sync::MutexGuard<'_, MemberState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks the member removed and returns what it holds.
    fn remove(&self) {
        self.gone.store(true, Ordering::Release);
        self.release_all();
    }

    /// Closes its consumers: the records they hold return to their groups at once.
    fn release_all(&self) {
        let cs: Vec<Arc<TopicConsumer>> = {
            let mut map = self.consumers.lock().unwrap();
            map.drain().map(|(_, c)| c).collect()
        };
        for c in cs {
            c.consumer.release();
        }
    }

    /// Forgets the consumer of `topic` (its topic was deleted).
    fn drop_consumer(&self, topic: &str) {
        let c = self.consumers.lock().unwrap().remove(topic);
        if let Some(c) = c {
            c.consumer.release();
        }
    }
}

/// A share group id as sluice names groups; anything else is INVALID_GROUP_ID.
fn valid_group(id: &str) -> bool {
    sluice_storage::store::validate_name(id).is_ok()
}

/// The group and member ids of a ShareFetch or ShareAcknowledge, checked: both present, the
/// group a sluice name, the member not empty; else the error and why.
fn request_ids<'a>(
    group: &'a Option<kafka_protocol::messages::GroupId>,
    member: &'a Option<kafka_protocol::protocol::StrBytes>,
) -> Result<(&'a str, &'a str), (ResponseError, &'static str)> {
    let (Some(group), Some(member)) = (group, member) else {
        return Err((
            ResponseError::InvalidRequest,
            "group id and member id are required",
        ));
    };
    if !valid_group(group.as_str()) {
        let why = "share group ids follow sluice's name rules";
        return Err((ResponseError::InvalidGroupId, why));
    }
    if member.is_empty() {
        return Err((ResponseError::InvalidRequest, "member id is required"));
    }
    Ok((group.as_str(), member.as_str()))
}
