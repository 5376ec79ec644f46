//! What the admin API and the console show beyond the native describe replies: a queue with
//! its ready, delayed and redelivered counts, oldest unacknowledged message and connected
//! consumers, and the overview of the whole broker. Blocking.

use serde::Serialize;
use sluice_storage::{Offset, Queue, QueueStats};

use super::{Broker, QueueInfo, Result, TopicInfo};
use crate::metrics::{Protocol, SubscriptionKind};

/// Most topics and queues one overview describes.
pub const OVERVIEW_NAMES_MAX: usize = 1000;

/// In a cluster, how long one overview may spend asking leaders for the figures of what this
/// node holds no replica of; the topics and queues after that show this node's own copy.
pub const OVERVIEW_LEADERS_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// A queue as the admin API shows it: [`QueueInfo`] and more.
#[derive(Clone, Debug, Serialize)]
pub struct QueueView {
    /// What the native describe returns.
    #[serde(flatten)]
    pub info: QueueInfo,
    /// Waiting to be delivered now (new or returned), not delayed.
    pub ready: u64,
    /// Of those, returned after a delivery (nack, expiry, a consumer gone).
    pub redelivery_ready: u64,
    /// Nacked with a delay and waiting it out.
    pub delayed: u64,
    /// Deliveries of a message delivered before, since the queue was opened.
    pub redelivered: u64,
    /// Native consumers connected to it now.
    pub consumers: u64,
    /// Consumers holding at least one message.
    pub consumers_holding: u64,
    /// The timestamp of the oldest message not yet acknowledged, if any.
    pub oldest_unacked_timestamp_ms: Option<i64>,
}

/// Per protocol: native, Kafka, HTTP.
#[derive(Clone, Debug, Serialize)]
pub struct PerProtocol {
    /// The native protocol.
    pub native: u64,
    /// The Kafka protocol.
    pub kafka: u64,
    /// HTTP.
    pub http: u64,
}

impl PerProtocol {
    fn of(f: impl Fn(Protocol) -> u64) -> PerProtocol {
        PerProtocol {
            native: f(Protocol::Native),
            kafka: f(Protocol::Kafka),
            http: f(Protocol::Http),
        }
    }
}

/// The broker's own figures.
#[derive(Clone, Debug, Serialize)]
pub struct BrokerSummary {
    /// sluice's version.
    pub version: &'static str,
    /// When the broker started (milliseconds since the epoch).
    pub started_ms: u64,
    /// Now, by the broker's clock.
    pub now_ms: u64,
    /// The data directory.
    pub data_dir: String,
    /// Topics known (open or not).
    pub topics: usize,
    /// Queues known (open or not).
    pub queues: usize,
    /// Open connections.
    pub connections: PerProtocol,
    /// Bytes read from clients since start.
    pub bytes_in: PerProtocol,
    /// Bytes written to clients since start.
    pub bytes_out: PerProtocol,
    /// Free bytes of the data directory's file system (for unprivileged users).
    pub disk_free_bytes: Option<u64>,
    /// Size of that file system.
    pub disk_total_bytes: Option<u64>,
}

/// The broker, and the first topics and queues described.
#[derive(Clone, Debug, Serialize)]
pub struct Overview {
    /// The broker's figures.
    pub broker: BrokerSummary,
    /// The first `limit` topics (by name) with the prefix.
    pub topics: Vec<TopicInfo>,
    /// The first `limit` queues (by name) with the prefix.
    pub queues: Vec<QueueView>,
}

/// The timestamp of queue `q`'s oldest message not yet acknowledged (the one at its ack
/// floor), if it has one; `s` is its stats.
pub fn oldest_unacked_ms(q: &Queue, s: &QueueStats) -> Result<Option<i64>> {
    if s.ack_floor >= s.end_offset {
        return Ok(None);
    }
    let at = s.ack_floor.max(q.log().start_offset());
    Ok(q.log()
        .read_records(Offset(at.0), 1, 1)?
        .first()
        .and_then(|(_, r)| r.timestamp_ms))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Broker {
    /// [`Broker::describe_topic`] as a client of this node should see it: in a cluster, the
    /// figures of each partition this node holds no replica of (its own copy is empty) are
    /// its leader's, when it answers. Blocking (from the blocking pool).
    pub fn topic_figures(&self, name: String) -> Result<TopicInfo> {
        let mut info = self.describe_topic(name)?;
        let (Some(c), Ok(rt)) = (self.cluster(), tokio::runtime::Handle::try_current()) else {
            return Ok(info);
        };
        let missing: Vec<u32> = (info.partitions.iter())
            .map(|p| p.partition)
            .filter(|&p| !c.holds_partition(&info.name, p))
            .collect();
        if missing.is_empty() {
            return Ok(info);
        }
        for leader in rt.block_on(c.partitions_figures(&info.name, &missing)) {
            let at = info.partitions.get_mut(leader.partition as usize);
            if let Some(p) = at.filter(|p| p.partition == leader.partition) {
                *p = leader;
            }
        }
        Ok(info)
    }

    /// [`Broker::queue_view`] as a client of this node should see it: in a cluster where this
    /// node holds no replica of the queue, its leader's figures, when it answers. Blocking.
    pub fn queue_figures(&self, name: String) -> Result<QueueView> {
        let view = self.queue_view(name)?;
        let (Some(c), Ok(rt)) = (self.cluster(), tokio::runtime::Handle::try_current()) else {
            return Ok(view);
        };
        if c.holds_queue(&view.info.name) {
            return Ok(view);
        }
        match rt.block_on(c.queue_figures(&view.info.name)) {
            Ok(leader) => Ok(leader),
            Err(e) => {
                tracing::debug!(queue = %view.info.name, "figures of its leader: {e}");
                Ok(view)
            }
        }
    }

    /// Queue `name` with the figures of [`QueueView`].
    pub fn queue_view(&self, name: String) -> Result<QueueView> {
        let q = self.store.queue(&name)?;
        let s = q.stats();
        let oldest = oldest_unacked_ms(&q, &s)?;
        let consumers =
            self.metrics
                .connections()
                .count_subscribed(None, SubscriptionKind::Queue, &name) as u64;
        Ok(QueueView {
            ready: s.depth.saturating_sub(s.in_flight + s.delayed),
            redelivery_ready: s.redelivery_ready,
            delayed: s.delayed,
            redelivered: s.redelivered,
            consumers,
            consumers_holding: s.consumers_holding,
            oldest_unacked_timestamp_ms: oldest,
            info: self.describe_queue(name)?,
        })
    }

    /// The broker's figures, and the first `limit` (at most [`OVERVIEW_NAMES_MAX`]) topics
    /// and queues whose names start with `prefix`, described (which opens them). In a
    /// cluster, as a describe: what this node holds no replica of with its leader's figures
    /// ([`Broker::topic_figures`], [`Broker::queue_figures`]), for at most
    /// [`OVERVIEW_LEADERS_WAIT`].
    pub fn overview(&self, prefix: &str, limit: usize) -> Result<Overview> {
        let limit = limit.min(OVERVIEW_NAMES_MAX);
        let topic_names = self.list_topics();
        let queue_names = self.list_queues();
        let pick = |names: &[String]| -> Vec<String> {
            names
                .iter()
                .filter(|n| n.starts_with(prefix))
                .take(limit)
                .cloned()
                .collect()
        };
        let asking_until = std::time::Instant::now() + OVERVIEW_LEADERS_WAIT;
        let ask_leaders = || std::time::Instant::now() < asking_until;
        let mut topics = Vec::new();
        for n in pick(&topic_names) {
            let described = if ask_leaders() {
                self.topic_figures(n)
            } else {
                self.describe_topic(n)
            };
            match described {
                Ok(t) => topics.push(t),
                Err(e) if e.kind == super::ErrorKind::NotFound => {} // deleted meanwhile
                Err(e) => return Err(e),
            }
        }
        let mut queues = Vec::new();
        for n in pick(&queue_names) {
            let viewed = if ask_leaders() {
                self.queue_figures(n)
            } else {
                self.queue_view(n)
            };
            match viewed {
                Ok(q) => queues.push(q),
                Err(e) if e.kind == super::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let m = &self.metrics;
        let disk = crate::metrics::disk_space(self.store.root());
        let broker = BrokerSummary {
            version: env!("CARGO_PKG_VERSION"),
            started_ms: m.started_ms(),
            now_ms: now_ms(),
            data_dir: self.store.root().display().to_string(),
            topics: topic_names.len(),
            queues: queue_names.len(),
            connections: PerProtocol::of(|p| m.connections_open(p).max(0) as u64),
            bytes_in: PerProtocol::of(|p| m.bytes(p).0),
            bytes_out: PerProtocol::of(|p| m.bytes(p).1),
            disk_free_bytes: disk.map(|d| d.0),
            disk_total_bytes: disk.map(|d| d.1),
        };
        Ok(Overview {
            broker,
            topics,
            queues,
        })
    }
}
