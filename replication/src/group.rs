//! One replicated log on this node: its message log, its Raft group, and the [`Consensus`]
//! trait through which the rest of sluice uses it, so the consensus engine's API stays here.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InitializeError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{Config, Raft, RaftNetworkFactory, ServerState, SnapshotPolicy};
use sluice_storage::{FsRef, Log, LogConfig};
use tokio::sync::watch;

use crate::batcher::{write_error, Batcher};
use crate::error::{Error, Result};
use crate::store::{LogStore, Replica, StateMachine};
use crate::types::{Applied, Command, GroupId, Node, NodeId, TypeConfig};

/// A boxed future, for the object-safe [`Consensus`] trait.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What sluice asks of a replicated log, whatever consensus engine runs it.
pub trait Consensus: Send + Sync {
    /// Appends a command; answers once a majority has it on disk and it is committed (readers
    /// see it from then on). Fails with [`Error::NotLeader`] on a follower.
    fn propose(&self, command: Command) -> BoxFuture<'_, Result<Applied>>;
    /// Queues a command behind those submitted before it (their order is the log's) and
    /// returns at once the future of its outcome, which [`Consensus::propose`] would await.
    fn submit(&self, command: Command) -> BoxFuture<'_, Result<Pending>>;
    /// The group's state as this node sees it.
    fn status(&self) -> GroupStatus;
    /// The message log; its readers see committed entries only.
    fn log(&self) -> &Log;
    /// The term this node leads the group in, once it has applied an entry of that term (its
    /// first, blank entry: every entry of earlier terms is then applied too); `None` otherwise.
    /// Cheaper than [`Consensus::status`].
    fn leading_term(&self) -> Option<u64>;
}

/// The outcome of a submitted command, once committed.
pub type Pending = BoxFuture<'static, Result<Applied>>;

/// A replicated log's state as one node sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupStatus {
    /// The group.
    pub group: GroupId,
    /// This node.
    pub node: NodeId,
    /// The current term.
    pub term: u64,
    /// The leader, when one is known.
    pub leader: Option<NodeId>,
    /// True when this node leads.
    pub is_leader: bool,
    /// The last Raft index in this node's log.
    pub last_index: Option<u64>,
    /// The last applied (committed) Raft index.
    pub applied_index: Option<u64>,
    /// On the leader: each follower's last replicated index.
    pub followers: BTreeMap<NodeId, Option<u64>>,
    /// The last index purged from this node's log (compacted), if any.
    pub purged_index: Option<u64>,
    /// The voting members of the group's last membership this node has (both halves of a
    /// joint one).
    pub voters: BTreeSet<NodeId>,
    /// Its learners: members that receive the log but do not vote (a node being added).
    pub learners: BTreeSet<NodeId>,
}

/// Raft timing of every group of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How often a leader sends heartbeats.
    pub heartbeat: Duration,
    /// A follower that hears nothing for a random time in this range stands for election.
    pub election_min: Duration,
    /// Upper end of that range.
    pub election_max: Duration,
    /// True: the leaders' heartbeats are sent by their node's one ticker, all at once, so
    /// they go to each peer together (a [`crate::ClusterNode`]'s groups); false: each group's
    /// own timer sends them.
    pub node_heartbeats: bool,
    /// With node heartbeats: a group led here that has had nothing to do for this long, its
    /// followers caught up, goes quiet ([`crate::quiet`]); `None`: groups always beat.
    pub quiet_after: Option<Duration>,
}

impl Default for Timing {
    /// Heartbeats every 50 ms; elections in 300-600 ms, each replica of a group in its own
    /// window of it ([`Timing::window`]). openraft 0.9 keeps a leader's lease for the replica's
    /// window's end after the last heartbeat, then the replica stands after its own timeout, and
    /// waits another `2 × window end` when a peer has a longer log: a failover takes about
    /// 0.7-1.2 s. 300 ms leaves room for an fsync stall before a healthy leader is deposed.
    fn default() -> Self {
        Timing {
            heartbeat: Duration::from_millis(50),
            election_min: Duration::from_millis(300),
            election_max: Duration::from_millis(600),
            node_heartbeats: false,
            quiet_after: None,
        }
    }
}

/// Where a replicated log's message log comes from.
pub enum LogSource {
    /// Its own, in `<group dir>/log`, with this configuration.
    Own(LogConfig),
    /// One its owner opened (a topic partition of the store).
    Attached(Log),
}

/// How a group stores its log and what applying a control entry does.
pub struct GroupStorage {
    /// The message log.
    pub log: LogSource,
    /// Told of each committed control entry (the cluster metadata's state machine).
    pub hook: Option<Arc<dyn crate::store::ApplyHook>>,
}

impl GroupStorage {
    /// Its own log with `config`, no hook.
    pub fn own(config: LogConfig) -> GroupStorage {
        GroupStorage {
            log: LogSource::Own(config),
            hook: None,
        }
    }
}

/// Most entries one AppendEntries carries.
pub const APPEND_ENTRIES_MAX: u64 = 256;

/// How many election windows a group's replicas are spread over (see [`Timing::window`]).
pub const ELECTION_SLOTS: u64 = 3;

impl Timing {
    /// The election timeout window of `node` in `group`. openraft 0.9 draws a replica's
    /// election timeout once, when the group starts, so two replicas that drew nearly the same
    /// value stand at the same moment after every failover and split the vote again and again.
    /// The range is cut into [`ELECTION_SLOTS`] windows with a gap between them, and the replicas
    /// of a group take different windows (by node id, turned by the group's name so that the
    /// nodes that tend to win differ between groups).
    pub fn window(&self, group: &GroupId, node: NodeId) -> (Duration, Duration) {
        let span = self.election_max.saturating_sub(self.election_min);
        let slot_span = span / ELECTION_SLOTS as u32;
        let width = slot_span * 4 / 5;
        let turn = group
            .0
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
        let slot = (node.wrapping_add(turn) % ELECTION_SLOTS) as u32;
        let min = self.election_min + slot_span * slot;
        (min, min + width.max(Duration::from_millis(1)))
    }

    fn raft_config(&self, group: &GroupId, node: NodeId) -> Result<Arc<Config>> {
        let (min, max) = self.window(group, node);
        let config = Config {
            cluster_name: group.0.clone(),
            heartbeat_interval: self.heartbeat.as_millis() as u64,
            enable_heartbeat: !self.node_heartbeats,
            election_timeout_min: min.as_millis() as u64,
            election_timeout_max: max.as_millis() as u64,
            max_payload_entries: APPEND_ENTRIES_MAX,
            // The log is the state: never compacted behind a follower (see store::state_machine).
            snapshot_policy: SnapshotPolicy::Never,
            // Entries leave the log only when the group compacts them (`Command::Compact`),
            // never because a snapshot was built.
            max_in_snapshot_log_to_keep: u64::MAX,
            ..Config::default()
        };
        Ok(Arc::new(
            config
                .validate()
                .map_err(|e| Error::Consensus(e.to_string()))?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replicas_of_a_group_take_apart_election_windows() {
        let t = Timing::default();
        for name in ["meta", "t/orders/0", "t/orders/1", "t/x/7"] {
            let g = GroupId(name.into());
            let mut w: Vec<(Duration, Duration)> = (1..=3).map(|n| t.window(&g, n)).collect();
            w.sort();
            for pair in w.windows(2) {
                assert!(pair[0].1 < pair[1].0, "{name}: {w:?} overlap");
            }
            assert!(w
                .iter()
                .all(|(lo, hi)| *lo >= t.election_min && *hi <= t.election_max && lo < hi));
        }
    }
}

/// Longest wait for a snapshot openraft was told to build, before a purge.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(30);

/// Has openraft purge the group's log up to each entry its state machine compacted: a
/// snapshot first (openraft purges only what one covers; it holds no data), then the purge.
/// Ends with the group.
async fn purge(raft: Raft<TypeConfig>, group: GroupId, mut compact_to: watch::Receiver<u64>) {
    while compact_to.changed().await.is_ok() {
        let upto = *compact_to.borrow_and_update();
        if raft.trigger().snapshot().await.is_err() {
            return;
        }
        let built = raft
            .wait(Some(SNAPSHOT_WAIT))
            .metrics(
                |m| m.snapshot.is_some_and(|s| s.index >= upto),
                "snapshot covers the entries to purge",
            )
            .await;
        if let Err(e) = built {
            tracing::warn!(%group, upto, error = %e, "log not purged");
            continue;
        }
        if raft.trigger().purge_log(upto).await.is_err() {
            return;
        }
        tracing::debug!(%group, upto, "log purged");
    }
}

/// One replicated log on this node.
#[derive(Clone)]
pub struct ReplicatedLog {
    pub(crate) group: GroupId,
    pub(crate) node: NodeId,
    replica: Arc<Replica>,
    pub(crate) raft: Raft<TypeConfig>,
    batcher: Batcher,
    /// True while a membership change of this group runs on this node ([`crate::membership`]).
    pub(crate) changing: Arc<std::sync::atomic::AtomicBool>,
    /// Its leadership being handed to another node ([`crate::transfer`]).
    pub(crate) handover: Arc<crate::transfer::Handover>,
    /// Whether the group is quiet on this node ([`crate::quiet`]).
    pub(crate) quiet: Arc<crate::quiet::Quiet>,
}

impl std::fmt::Debug for ReplicatedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicatedLog")
            .field("group", &self.group)
            .field("node", &self.node)
            .finish()
    }
}

impl ReplicatedLog {
    /// Opens (or creates) this node's replica of `group` in `dir` and starts its Raft group.
    pub async fn open<N: RaftNetworkFactory<TypeConfig>>(
        node: NodeId,
        group: GroupId,
        fs: FsRef,
        dir: &Path,
        storage: GroupStorage,
        network: N,
        timing: Timing,
    ) -> Result<ReplicatedLog> {
        let (replica, log_store, state_machine) = {
            let dir = dir.to_path_buf();
            tokio::task::spawn_blocking(move || -> Result<_> {
                let replica = match storage.log {
                    LogSource::Own(config) => Replica::open(fs, &dir, config)?,
                    LogSource::Attached(log) => Replica::attach(fs, &dir, log)?,
                };
                let log_store = LogStore::open(replica.clone())?;
                let sm = StateMachine::open(replica.clone(), storage.hook)?;
                Ok((replica, log_store, sm))
            })
            .await
            .map_err(|e| Error::Consensus(e.to_string()))??
        };
        let config = timing.raft_config(&group, node)?;
        let raft = Raft::new(node, config, network, log_store, state_machine)
            .await
            .map_err(|e| Error::Consensus(e.to_string()))?;
        tokio::spawn(purge(
            raft.clone(),
            group.clone(),
            replica.compact_to.subscribe(),
        ));
        Ok(ReplicatedLog {
            batcher: Batcher::start(raft.clone(), group.clone()),
            changing: Arc::default(),
            handover: Arc::default(),
            quiet: Arc::new(crate::quiet::Quiet::new(raft.metrics())),
            group,
            node,
            replica,
            raft,
        })
    }

    /// Makes `members` the group's first membership. Every member may call it with the same
    /// members; a group already formed answers `Ok` and is unchanged.
    pub async fn bootstrap(&self, members: BTreeMap<NodeId, Node>) -> Result<()> {
        let formed = self
            .raft
            .is_initialized()
            .await
            .map_err(|e| Error::Consensus(e.to_string()))?;
        if formed {
            return Ok(());
        }
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(Error::Consensus(e.to_string())),
        }
    }

    /// The group.
    pub fn group(&self) -> &GroupId {
        &self.group
    }

    /// When this node leads the group, has it send its heartbeats now.
    pub(crate) async fn beat(&self) {
        let leads = self.raft.metrics().borrow().state == ServerState::Leader;
        if leads && !self.is_yielding() {
            let _ = self.raft.trigger().heartbeat().await;
        }
    }

    /// The last entry whose records all lie below `offset`; `None` when there is none.
    /// Reads the log (blocking).
    pub fn entry_ending_by(&self, offset: u64) -> Result<Option<u64>> {
        let applied = self.raft.metrics().borrow().last_applied.map(|l| l.index);
        let (Some(mut hi), Some(first)) = (applied, self.first_index()) else {
            return Ok(None);
        };
        let ends_by = |index: u64| -> Result<bool> {
            Ok(self
                .replica
                .locator
                .find(index)?
                .is_some_and(|p| p.next.0 <= offset))
        };
        if hi < first || !ends_by(first)? {
            return Ok(None);
        }
        // Entries' offsets grow with their index: the last one ending by `offset`.
        let mut lo = first;
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if ends_by(mid)? {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        Ok(Some(lo))
    }

    /// The first entry this node's log holds: the one after the last purged.
    fn first_index(&self) -> Option<u64> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let first = m.purged.map_or(0, |p| p.index + 1);
        (m.last_log_index >= Some(first)).then_some(first)
    }

    /// Stops the Raft group; the log stays open until the last handle is dropped.
    pub async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
    }

    /// The transport hands a peer's AppendEntries here.
    pub async fn append_entries(
        &self,
        rpc: AppendEntriesRequest<TypeConfig>,
    ) -> std::result::Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>> {
        self.raft.append_entries(rpc).await
    }

    /// The transport hands a peer's vote request here.
    pub async fn vote(
        &self,
        rpc: VoteRequest<NodeId>,
    ) -> std::result::Result<VoteResponse<NodeId>, RaftError<NodeId>> {
        self.raft.vote(rpc).await
    }

    /// The transport hands a peer's snapshot chunk here (refused by the state machine).
    pub async fn install_snapshot(
        &self,
        rpc: InstallSnapshotRequest<TypeConfig>,
    ) -> std::result::Result<
        InstallSnapshotResponse<NodeId>,
        RaftError<NodeId, openraft::error::InstallSnapshotError>,
    > {
        self.raft.install_snapshot(rpc).await
    }

    /// Stands for election now, without waiting for a timeout: how a node that creates a
    /// group becomes its first leader.
    pub async fn campaign(&self) -> Result<()> {
        self.raft
            .trigger()
            .elect()
            .await
            .map_err(|e| Error::Consensus(e.to_string()))
    }

    /// Waits until this node knows a leader, or `timeout` passes; returns it.
    pub async fn wait_leader(&self, timeout: Duration) -> Option<NodeId> {
        let mut rx = self.raft.metrics();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(l) = rx.borrow().current_leader {
                return Some(l);
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return None;
            }
        }
    }

    async fn submit_command(&self, command: Command) -> Result<Pending> {
        self.refuse_if_yielding()?;
        if let Command::Batch(batch) = command {
            return self.batcher.submit(&self.group, batch).await;
        }
        let rx = self
            .raft
            .client_write_ff(command)
            .await
            .map_err(|e| Error::Consensus(e.to_string()))?;
        let group = self.group.clone();
        Ok(Box::pin(async move {
            match rx.await {
                Ok(Ok(r)) => Ok(r.data),
                Ok(Err(e)) => Err(write_error(&group, e)),
                Err(_) => Err(Error::Consensus(format!("group {group} stopped"))),
            }
        }))
    }

    async fn write(&self, command: Command) -> Result<Applied> {
        self.refuse_if_yielding()?;
        match self.raft.client_write(command).await {
            Ok(r) => Ok(r.data),
            Err(RaftError::APIError(e)) => Err(write_error(&self.group, e)),
            Err(e) => Err(Error::Consensus(e.to_string())),
        }
    }
}

impl Consensus for ReplicatedLog {
    fn propose(&self, command: Command) -> BoxFuture<'_, Result<Applied>> {
        Box::pin(self.write(command))
    }

    fn submit(&self, command: Command) -> BoxFuture<'_, Result<Pending>> {
        Box::pin(self.submit_command(command))
    }

    fn status(&self) -> GroupStatus {
        let m = self.raft.metrics().borrow().clone();
        let followers = m
            .replication
            .as_ref()
            .map(|r| r.iter().map(|(id, l)| (*id, l.map(|l| l.index))).collect())
            .unwrap_or_default();
        GroupStatus {
            group: self.group.clone(),
            node: self.node,
            term: m.current_term,
            leader: m.current_leader,
            is_leader: m.state == ServerState::Leader,
            last_index: m.last_log_index,
            applied_index: m.last_applied.map(|l| l.index),
            followers,
            purged_index: m.purged.map(|l| l.index),
            voters: m.membership_config.membership().voter_ids().collect(),
            learners: m.membership_config.membership().learner_ids().collect(),
        }
    }

    fn log(&self) -> &Log {
        &self.replica.log
    }

    fn leading_term(&self) -> Option<u64> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let applied = m.last_applied.map(|l| l.leader_id.term);
        (m.state == ServerState::Leader && applied == Some(m.current_term))
            .then_some(m.current_term)
    }
}
