//! Replicated queues: each queue of a cluster is a Raft group, `q/<queue>`, whose Raft log is
//! the queue's log. Publishes are its batches; the queue's state changes (deliveries with their
//! attempt numbers, acks, dead letters) are its control entries, each the ack journal records of
//! one change, proposed by the queue's leader ([`QueueLink`]) and applied by every replica
//! ([`QueueHook`]). See docs/replication.md, "Queues".

use std::collections::BTreeSet;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use sluice_replication::{
    ApplyHook, BoxFuture, ClusterNode, Command, Consensus, GroupId, HookEntry, ReplicatedLog,
};
use sluice_storage::{Error as StoreError, QueueReplicator, Record};
use tokio::sync::mpsc;
use tracing::warn;

use super::compact::{self, Floor};
use super::Cluster;

/// Most state changes of one queue proposed and not yet handed to its log; beyond it a change
/// is refused (`LimitReached`) until the log catches up.
pub const PROPOSALS_QUEUED_MAX: usize = 65_536;

/// Longest a consumer's call waits for its queue change to be committed before it fails
/// (`NotLeader`: a majority is out of reach, and the change may or may not be committed).
pub const COMMIT_WAIT_MAX: Duration = Duration::from_secs(30);

/// Most failed proposals remembered (those older are long past any wait).
const FAILED_REMEMBERED_MAX: usize = 1 << 16;

/// Most bytes of queue changes gathered into one control entry.
pub const CONTROL_ENTRY_BYTES_MAX: usize = 512 << 10;

/// Longest a dead letter (or a message redriven back to its queue) waits for the queue's
/// group to have a leader (an election under way) before the move fails.
pub const MOVE_LEADER_WAIT: Duration = Duration::from_secs(5);

/// Most bytes of dead letters proposed in one entry of the dead-letter queue's log.
const DEAD_LETTER_ENTRY_BYTES: usize = 512 << 10;

/// The group of a queue.
pub fn queue_group(name: &str) -> GroupId {
    GroupId(format!("q/{name}"))
}

/// Where a queue's link finds its group.
type Slot = Arc<std::sync::RwLock<Option<ReplicatedLog>>>;

/// One proposal on its way to the log.
struct Proposal {
    ticket: u64,
    generation: u64,
    records: Vec<u8>,
}

/// The bookkeeping of a queue's proposals, under one lock.
#[derive(Default)]
struct Tickets {
    /// The last ticket handed out (tickets start at 1).
    issued: u64,
    /// Every ticket up to this one is resolved (committed or failed).
    resolved_through: u64,
    /// Resolved tickets past `resolved_through + 1`.
    resolved_ahead: BTreeSet<u64>,
    /// Tickets whose proposal failed (fate unknown).
    failed: BTreeSet<u64>,
    /// Proposals waiting to be handed to the log.
    queued: usize,
    /// Proposals handed to the log and not resolved.
    outstanding: usize,
    /// The term of the current generation.
    term: u64,
    /// The leadership generation (see [`QueueReplicator::leading`]).
    generation: u64,
    /// A proposal of this generation failed: nothing more is proposed in it.
    broken: bool,
}

impl Tickets {
    fn resolve(&mut self, ticket: u64, ok: bool, generation: u64) {
        if !ok {
            self.failed.insert(ticket);
            if self.failed.len() > FAILED_REMEMBERED_MAX {
                self.failed.pop_first();
            }
            if generation == self.generation {
                self.broken = true;
            }
        }
        self.resolved_ahead.insert(ticket);
        while self.resolved_ahead.first() == Some(&(self.resolved_through + 1)) {
            self.resolved_ahead.pop_first();
            self.resolved_through += 1;
        }
    }
}

struct Shared {
    tickets: Mutex<Tickets>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Tickets> {
        self.tickets.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn resolve(&self, ticket: u64, ok: bool, generation: u64, submitted: bool) {
        let mut t = self.lock();
        if submitted {
            t.outstanding -= 1;
        }
        t.resolve(ticket, ok, generation);
        drop(t);
        self.changed.notify_all();
    }
}

/// What a link proposes to.
#[derive(Clone)]
enum Target {
    /// A queue's own group, attached once its replica opens here ([`QueueLink::attach`]).
    Queue(Slot),
    /// The group of a topic's partition, looked up at each use (its replica opens and closes
    /// here with its placement): a consumer group's changes on that partition.
    Partition {
        cluster: Weak<Cluster>,
        topic: String,
        partition: u32,
    },
}

impl Target {
    fn log(&self) -> Option<ReplicatedLog> {
        match self {
            Target::Queue(slot) => slot.read().unwrap_or_else(|e| e.into_inner()).clone(),
            Target::Partition {
                cluster,
                topic,
                partition,
            } => cluster.upgrade()?.partition(topic, *partition),
        }
    }
}

/// A replicated queue's way to its log, set on the store's queue ([`sluice_storage::Queue::replicate`]);
/// also a consumer group's way to a partition's log (`cluster::groups`), whose entries carry
/// a prefix naming the group.
pub struct QueueLink {
    /// What it serves, for messages: `queue "q"`, `group "g" of topic "t" partition 2`.
    what: String,
    /// Its group, to find the leader.
    group_id: GroupId,
    target: Target,
    /// Put before the records of each entry (empty for a queue).
    prefix: Vec<u8>,
    cluster: Weak<Cluster>,
    node: Arc<ClusterNode>,
    handle: tokio::runtime::Handle,
    tx: mpsc::UnboundedSender<Proposal>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<Proposal>>>,
    shared: Arc<Shared>,
    /// The queue a compaction looks at: a queue's own (not a group's: its partition's
    /// retention decides there).
    compact: Option<Floor>,
    /// A group's settings, which its dead-letter queue is made like.
    dlq_like: Option<sluice_storage::QueueConfig>,
}

impl QueueLink {
    /// The link of queue `name`, set on the queue before its group opens (the group applies
    /// entries to the queue as soon as it opens). Must be called on the runtime.
    pub fn new(name: &str, cluster: Weak<Cluster>, node: Arc<ClusterNode>) -> Arc<QueueLink> {
        let compact = Floor::Acked {
            queue: name.to_string(),
            cluster: cluster.clone(),
        };
        Self::build(
            format!("queue {name:?}"),
            queue_group(name),
            Target::Queue(Slot::default()),
            Vec::new(),
            (cluster, node),
            Some(compact),
            None,
        )
    }

    /// The link of consumer group `group`'s queue over partition `partition` of `topic`, whose
    /// entries start with `prefix`; its proposals go to the partition's group whenever this
    /// node holds a replica of it. Must be called on the runtime (or a blocking thread of it).
    pub(super) fn for_partition(
        cluster: &Arc<Cluster>,
        topic: &str,
        group: &str,
        partition: u32,
        prefix: Vec<u8>,
        like: sluice_storage::QueueConfig,
    ) -> Arc<QueueLink> {
        let target = Target::Partition {
            cluster: Arc::downgrade(cluster),
            topic: topic.to_string(),
            partition,
        };
        let link = Self::build(
            format!("group {group:?} of topic {topic:?} partition {partition}"),
            super::partition_group(topic, partition),
            target,
            prefix,
            (Arc::downgrade(cluster), cluster.node.clone()),
            None,
            Some(like),
        );
        link.start();
        link
    }

    fn build(
        what: String,
        group_id: GroupId,
        target: Target,
        prefix: Vec<u8>,
        (cluster, node): (Weak<Cluster>, Arc<ClusterNode>),
        compact: Option<Floor>,
        dlq_like: Option<sluice_storage::QueueConfig>,
    ) -> Arc<QueueLink> {
        let (tx, rx) = mpsc::unbounded_channel();
        Arc::new(QueueLink {
            what,
            group_id,
            target,
            prefix,
            cluster,
            node,
            handle: tokio::runtime::Handle::current(),
            tx,
            rx: Mutex::new(Some(rx)),
            shared: Arc::new(Shared {
                tickets: Mutex::default(),
                changed: Condvar::new(),
            }),
            compact,
            dlq_like,
        })
    }

    /// Starts, the first time, the task that hands proposals to the log in ticket order.
    fn start(&self) {
        let rx = self.rx.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(rx) = rx {
            let (target, shared) = (self.target.clone(), self.shared.clone());
            let (prefix, compact) = (self.prefix.clone(), self.compact.clone());
            self.handle
                .spawn(drain(target, shared, rx, prefix, compact));
        }
    }

    /// Attaches the opened group of a queue and, the first time, starts the task that hands
    /// proposals to its log in ticket order.
    pub fn attach(&self, group: ReplicatedLog) {
        if let Target::Queue(slot) = &self.target {
            *slot.write().unwrap_or_else(|e| e.into_inner()) = Some(group);
        }
        self.start();
    }

    /// Detaches the group (its replica moved off this node and closes): this node leads
    /// nothing of the queue until a group is attached again.
    pub fn detach(&self) {
        if let Target::Queue(slot) = &self.target {
            *slot.write().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }

    fn group(&self) -> Option<ReplicatedLog> {
        self.target.log()
    }

    fn not_leader(&self, why: &str) -> StoreError {
        let leader = match self.group() {
            Some(g) => g.status().leader,
            None => self.node.leader_of(&self.group_id),
        };
        let native = leader.and_then(|l| self.cluster.upgrade()?.node_info(l)?.native);
        let at = match native {
            Some(addr) => format!(
                "node {} (client address {addr})",
                leader.unwrap_or_default()
            ),
            None => match leader {
                Some(l) => format!("node {l}"),
                None => "not known yet (an election is under way)".into(),
            },
        };
        StoreError::NotLeader(format!(
            "{}: {why}; its leader is {at}: retry there",
            self.what
        ))
    }

    /// Runs `fut` on the runtime and waits for it on this (blocking) thread.
    fn run<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().map_err(|_| StoreError::Closed)
    }
}

/// Hands proposals to the log in ticket order, those queued meanwhile gathered into one
/// control entry (up to [`CONTROL_ENTRY_BYTES_MAX`]): their records back to back, resolved
/// together. A proposal of an ended generation, or after one of its own generation failed,
/// fails without reaching the log.
///
/// Between proposals, every [`compact::COMPACT_CHECK_INTERVAL`], it looks for acked
/// segments to compact (see [`compact`]). It ends when the queue's link is dropped. While no
/// group is attached (the replica moved off this node), proposals fail.
async fn drain(
    target: Target,
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<Proposal>,
    prefix: Vec<u8>,
    compact: Option<Floor>,
) {
    let mut tick = tokio::time::interval(compact::COMPACT_CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut compacted = 0;
    loop {
        let p = tokio::select! {
            p = rx.recv() => match p {
                Some(p) => p,
                None => return,
            },
            _ = tick.tick() => {
                if let (Some(group), Some(compact)) = (target.log(), &compact) {
                    compact::check(&group, compact, &mut compacted).await;
                }
                continue;
            }
        };
        let group = target.log();
        let mut gathered = vec![p];
        let mut bytes = gathered[0].records.len();
        while bytes < CONTROL_ENTRY_BYTES_MAX {
            match rx.try_recv() {
                Ok(p) => {
                    bytes += p.records.len();
                    gathered.push(p);
                }
                Err(_) => break,
            }
        }
        let (live, ended): (Vec<Proposal>, Vec<Proposal>) = {
            let mut t = shared.lock();
            t.queued -= gathered.len();
            let (g, broken) = (t.generation, t.broken);
            let split = gathered
                .into_iter()
                .partition::<Vec<_>, _>(|p| p.generation == g && !broken);
            t.outstanding += split.0.len();
            split
        };
        for p in ended {
            shared.resolve(p.ticket, false, p.generation, false);
        }
        let Some(group) = group.filter(|_| !live.is_empty()) else {
            for p in live {
                shared.resolve(p.ticket, false, p.generation, true);
            }
            continue;
        };
        let mut records = Vec::with_capacity(prefix.len() + bytes);
        records.extend_from_slice(&prefix);
        for p in &live {
            records.extend_from_slice(&p.records);
        }
        let tickets: Vec<(u64, u64)> = live.iter().map(|p| (p.ticket, p.generation)).collect();
        match group.submit(Command::Control(records.into())).await {
            Ok(pending) => {
                let s = shared.clone();
                tokio::spawn(async move {
                    let ok = pending.await.is_ok();
                    for (ticket, generation) in tickets {
                        s.resolve(ticket, ok, generation, true);
                    }
                });
            }
            Err(_) => {
                for (ticket, generation) in tickets {
                    shared.resolve(ticket, false, generation, true);
                }
            }
        }
    }
}

impl QueueReplicator for QueueLink {
    fn leading(&self) -> Result<u64, StoreError> {
        let Some(term) = self.group().and_then(|g| g.leading_term()) else {
            return Err(self.not_leader("this node does not lead it"));
        };
        let mut t = self.shared.lock();
        if t.term != term {
            t.term = term;
            t.generation += 1;
            t.broken = false;
        } else if t.broken {
            // Once every proposal resolved (and the committed ones applied), the working state
            // can be reset to the committed one and the leader goes on.
            if t.queued > 0 || t.outstanding > 0 {
                return Err(self.not_leader("a change failed and is being settled"));
            }
            t.generation += 1;
            t.broken = false;
        }
        Ok(t.generation)
    }

    fn still_leading(&self, generation: u64) -> bool {
        self.leading().ok() == Some(generation)
    }

    fn propose(&self, generation: u64, records: Vec<u8>) -> Result<u64, StoreError> {
        let mut t = self.shared.lock();
        if t.generation != generation || t.broken {
            return Err(self.not_leader("its leadership changed"));
        }
        if t.queued >= PROPOSALS_QUEUED_MAX {
            return Err(StoreError::LimitReached(format!(
                "{}: {PROPOSALS_QUEUED_MAX} changes wait for its log (PROPOSALS_QUEUED_MAX)",
                self.what
            )));
        }
        t.issued += 1;
        let ticket = t.issued;
        t.queued += 1;
        if self
            .tx
            .send(Proposal {
                ticket,
                generation,
                records,
            })
            .is_err()
        {
            t.queued -= 1;
            t.resolve(ticket, false, generation);
            return Err(StoreError::Closed);
        }
        Ok(ticket)
    }

    fn wait(&self, first: u64, last: u64) -> Result<(), StoreError> {
        let deadline = Instant::now() + COMMIT_WAIT_MAX;
        let mut t = self.shared.lock();
        while t.resolved_through < last {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.not_leader("a change was not committed in time"));
            }
            t = self
                .shared
                .changed
                .wait_timeout(t, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        if t.failed.range(first..=last).next().is_some() {
            return Err(self.not_leader("leadership was lost before the change was committed"));
        }
        Ok(())
    }

    fn dead_letters(&self, queue: &str, records: &[Record]) -> Result<(), StoreError> {
        if let (Target::Partition { topic, .. }, Some(like)) = (&self.target, &self.dlq_like) {
            // A group's dead-letter queue is made by its first dead letter, as on one node,
            // through the metadata so that every node has it.
            let cluster = self.cluster.upgrade().ok_or(StoreError::Closed)?;
            cluster
                .ensure_dead_letter_queue(queue, like, topic)
                .map_err(|e| StoreError::NotLeader(e.to_string()))?;
        }
        for batch in entry_batches(records) {
            let (node, group) = (self.node.clone(), queue_group(queue));
            let r = self.run(async move {
                node.propose_waiting(&group, Command::Batch(batch.into()), MOVE_LEADER_WAIT)
                    .await
            })?;
            if let Err(e) = r {
                return Err(StoreError::NotLeader(format!(
                    "dead letters of {} not stored in {queue:?}: {e}",
                    self.what
                )));
            }
        }
        Ok(())
    }
}

/// `records` as batches of at most [`DEAD_LETTER_ENTRY_BYTES`] each (one at least), in order.
fn entry_batches(records: &[Record]) -> Vec<Vec<u8>> {
    let now = sluice_storage::now_ms();
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, r) in records.iter().enumerate() {
        bytes += sluice_storage::store::delivery_bytes(r);
        if bytes >= DEAD_LETTER_ENTRY_BYTES || i + 1 == records.len() {
            chunks.push(sluice_storage::format::encode_batch(
                &records[start..=i],
                now,
            ));
            (start, bytes) = (i + 1, 0);
        }
    }
    chunks
}

impl Cluster {
    /// Appends `records` to queue `queue` through its group, wherever its leader is (from a
    /// blocking thread): each batch answered once committed, in order (a redrive's messages
    /// going back to their queue).
    pub fn append_to_queue_blocking(
        self: &Arc<Self>,
        queue: &str,
        records: &[Record],
    ) -> Result<(), crate::broker::BrokerError> {
        for batch in entry_batches(records) {
            let (node, group) = (self.node.clone(), queue_group(queue));
            super::wait_on_runtime(async move {
                node.propose_waiting(&group, Command::Batch(batch.into()), MOVE_LEADER_WAIT)
                    .await
            })?
            .map_err(|e| super::broker_error(&self.node, e))?;
        }
        Ok(())
    }
}

/// What a queue's drain task needs to compact its log.
/// Applies a queue group's committed control entries to the queue on this node.
pub struct QueueHook {
    pub(super) name: String,
    pub(super) cluster: Weak<Cluster>,
}

impl ApplyHook for QueueHook {
    fn compact(&self, upto: u64, offset: u64) -> BoxFuture<'_, bool> {
        Box::pin(self.on_queue(upto, move |q| q.persist_committed(offset)))
    }

    /// The queue's committed ack state; `None` before this node's broker is up (at start,
    /// when openraft reads the snapshot only for what it stands for).
    fn snapshot(&self) -> BoxFuture<'_, Option<Vec<u8>>> {
        Box::pin(async move {
            let broker = self.cluster.upgrade().and_then(|c| c.broker().ok())?;
            let name = self.name.clone();
            let r = crate::broker::spawn_blocking(move || {
                broker.store().queue(&name)?.committed_snapshot()
            })
            .await;
            match r.map_err(|e| e.to_string()) {
                Ok(Ok(state)) => Some(state),
                Ok(Err(e)) => {
                    warn!(queue = %self.name, "no ack state for a snapshot: {e}");
                    None
                }
                Err(e) => {
                    warn!(queue = %self.name, "no ack state for a snapshot: {e}");
                    None
                }
            }
        })
    }

    fn install(&self, state: Vec<u8>) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let broker = self
                .cluster
                .upgrade()
                .and_then(|c| c.broker().ok())
                .ok_or_else(|| format!("queue {}: the broker is not up", self.name))?;
            let name = self.name.clone();
            crate::broker::spawn_blocking(move || {
                broker.store().queue(&name)?.install_committed(&state)
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
        })
    }

    fn apply(&self, index: u64, offset: u64, payload: &[u8]) -> BoxFuture<'_, ()> {
        let entry = HookEntry::Control {
            index,
            offset,
            payload: payload.to_vec().into(),
        };
        self.apply_all(vec![entry])
    }

    /// All of them in one trip off the async threads: an apply call's entries are as many as
    /// the log committed since the last one.
    fn apply_all(&self, entries: Vec<HookEntry>) -> BoxFuture<'_, ()> {
        let first = match entries.first() {
            Some(HookEntry::Control { index, .. } | HookEntry::Pass { index, .. }) => *index,
            None => return Box::pin(async {}),
        };
        let name = self.name.clone();
        Box::pin(async move {
            self.on_queue(first, move |q| {
                for e in entries {
                    let (index, r) = match e {
                        HookEntry::Control {
                            index,
                            offset,
                            payload,
                        } => (index, q.apply_replicated(offset, &payload)),
                        HookEntry::Pass { index, offset } => (index, q.pass_replicated(offset)),
                    };
                    if let Err(e) = r {
                        warn!(queue = %name, index, "cannot apply a queue change: {e}");
                    }
                }
                Ok(())
            })
            .await;
        })
    }
}

impl QueueHook {
    /// Runs `f` on this node's queue off the async threads, for the entry at `index`; a
    /// failure is logged. True when `f` succeeded.
    async fn on_queue(
        &self,
        index: u64,
        f: impl FnOnce(&sluice_storage::Queue) -> Result<(), StoreError> + Send + 'static,
    ) -> bool {
        let Some(broker) = self.cluster.upgrade().and_then(|c| c.broker().ok()) else {
            return false;
        };
        let name = self.name.clone();
        let r = crate::broker::spawn_blocking(move || f(&*broker.store().queue(&name)?)).await;
        match r.map_err(|e| e.to_string()) {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                warn!(queue = %self.name, index, "cannot apply a queue change: {e}");
                false
            }
            Err(e) => {
                warn!(queue = %self.name, index, "cannot apply a queue change: {e}");
                false
            }
        }
    }
}
