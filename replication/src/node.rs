//! One node of a cluster: its peers, its replicated logs, and the cluster listener that hands
//! each peer request to the group it names. Every group of the node shares the listener and
//! one outgoing connection per peer ([`Peers`]).
//!
//! Nodes also introduce themselves to each other ([`Request::Hello`]): each tells its peers the
//! addresses its clients use ([`NodeInfo`]), so any node can name any other's client address.
//! [`ClusterNode::introduce`] sends this node's to every peer whose addresses it does not know
//! yet, every [`HELLO_INTERVAL`], and to all of them every [`HELLO_REFRESH`] (a peer restarted
//! with other addresses); a peer's own hello updates what is known of it at once.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sluice_storage::FsRef;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::group::{BoxFuture, GroupStorage, ReplicatedLog, Timing};
use crate::net::{
    serve, ClusterId, Identity, NetworkFactory, PeerTls, Peers, ProposeError, RaftHandler, Reply,
    Request,
};
use crate::quiet::Tick;
use crate::types::{Applied, Command, GroupId, Node, NodeId, NodeInfo};

/// Pause between rounds of hellos while some peer's addresses are unknown.
pub const HELLO_INTERVAL: Duration = Duration::from_millis(500);

/// Pause between rounds of hellos once every peer's addresses are known.
pub const HELLO_REFRESH: Duration = Duration::from_secs(10);

/// Longest wait for a forwarded proposal to be applied on the leader.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest wait for one peer's answer to a hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(2);

/// What the node's ticker does in one tick ([`ClusterNode::tick_groups`]).
#[derive(Default)]
struct TickPlan {
    /// The groups whose heartbeats to send.
    beating: Vec<ReplicatedLog>,
    /// The groups whose followers to ask to go quiet (which beat too).
    asking: Vec<(ReplicatedLog, crate::quiet::Ask)>,
    /// Whether any group leads quietly here (the node then tells its peers it is up).
    resting: bool,
    /// The quiet leaders' nodes to probe ([`ClusterNode::probe`]).
    probing: Vec<NodeId>,
}

/// A node of the cluster and the replicated logs it holds.
pub struct ClusterNode {
    id: NodeId,
    cluster: ClusterId,
    fs: FsRef,
    root: PathBuf,
    timing: Timing,
    tls: Option<Arc<PeerTls>>,
    peers: Arc<Peers>,
    groups: RwLock<HashMap<GroupId, ReplicatedLog>>,
    /// Held while a group opens: two callers opening the same group at once (the node's start
    /// and the metadata applied again) must not start two Raft instances over one directory.
    opening: tokio::sync::Mutex<()>,
    /// Every node's client addresses known here, this node's included.
    infos: RwLock<BTreeMap<NodeId, NodeInfo>>,
    /// The latest version of the cluster's nodes this node has applied
    /// ([`ClusterNode::set_members_version`]).
    members_version: AtomicU64,
    /// Who leads the groups this node holds no replica of, as its peers told it.
    directory: RwLock<crate::directory::Directory>,
    /// The application's handler of its peers' calls (`calls`).
    pub(crate) calls: crate::calls::Calls,
    /// When a request of each peer last arrived ([`crate::quiet`]).
    pub(crate) heard: std::sync::Mutex<HashMap<NodeId, std::time::Instant>>,
    /// The probes of quiet leaders' nodes not heard lately ([`crate::quiet`]).
    pub(crate) probes: std::sync::Mutex<HashMap<NodeId, crate::quiet::Probe>>,
    /// Set by tests only: no "I am up" messages ([`ClusterNode::mute_up_messages`]).
    pub(crate) up_muted: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for ClusterNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterNode").field("id", &self.id).finish()
    }
}

impl ClusterNode {
    /// Node `me.node` of cluster `me.cluster`, whose replicated logs live under `root`, one
    /// directory per group. The leaders among its groups send their heartbeats together, from
    /// one ticker that [`ClusterNode::serve`] runs ([`Timing::node_heartbeats`]).
    pub fn new(me: Identity, fs: FsRef, root: &Path, timing: Timing) -> Arc<ClusterNode> {
        ClusterNode::with_tls(me, fs, root, timing, None)
    }

    /// [`ClusterNode::new`], whose peer connections, both ways, go through TLS when `tls` is
    /// set ([`crate::net::tls`]).
    pub fn with_tls(
        me: Identity,
        fs: FsRef,
        root: &Path,
        timing: Timing,
        tls: Option<Arc<PeerTls>>,
    ) -> Arc<ClusterNode> {
        Arc::new(ClusterNode {
            id: me.node,
            cluster: me.cluster,
            fs,
            root: root.to_path_buf(),
            timing: Timing {
                node_heartbeats: true,
                ..timing
            },
            peers: Arc::new(Peers::new(me, tls.clone())),
            tls,
            groups: RwLock::new(HashMap::new()),
            opening: tokio::sync::Mutex::new(()),
            infos: RwLock::new(BTreeMap::new()),
            members_version: AtomicU64::new(0),
            directory: RwLock::new(Default::default()),
            calls: Default::default(),
            heard: Default::default(),
            probes: Default::default(),
            up_muted: Default::default(),
        })
    }

    /// Sets the addresses this node's clients use, which it tells its peers.
    pub fn set_info(&self, info: NodeInfo) {
        self.record_info(self.id, info);
    }

    fn record_info(&self, id: NodeId, info: NodeInfo) {
        let mut infos = self.infos.write().unwrap_or_else(|e| e.into_inner());
        if infos.get(&id) != Some(&info) {
            tracing::info!(node = id, native = ?info.native, kafka = ?info.kafka, "node addresses");
            infos.insert(id, info);
        }
    }

    /// A node's client addresses, when known here.
    pub fn info(&self, id: NodeId) -> Option<NodeInfo> {
        self.infos
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }

    /// Proposes a control command to `group` here, or, when this node does not lead it, on
    /// the leader it knows of (one hop: the leader does not forward again). Answers once the
    /// command is committed and applied on the node that proposed it.
    pub async fn propose_control(&self, group: &GroupId, payload: bytes::Bytes) -> Result<Applied> {
        self.propose_anywhere(group, Command::Control(payload))
            .await
    }

    /// [`ClusterNode::propose_control`] of any command (a batch of messages too). A group
    /// this node holds no replica of goes to the leader the directory names.
    pub async fn propose_anywhere(&self, group: &GroupId, command: Command) -> Result<Applied> {
        use crate::group::Consensus;
        let leader = match self.group(group) {
            Some(g) => match g.propose(command.clone()).await {
                Err(Error::NotLeader {
                    leader: Some(l), ..
                }) if l != self.id => l,
                other => return other,
            },
            None => match self.directory().leader(group) {
                Some(l) if l != self.id => l,
                _ => {
                    return Err(Error::NotLeader {
                        group: group.0.clone(),
                        leader: None,
                        leader_addr: None,
                    })
                }
            },
        };
        let req = Request::Propose {
            group: group.clone(),
            command,
        };
        let not_leader = |leader| Error::NotLeader {
            group: group.0.clone(),
            leader,
            leader_addr: leader.and_then(|l| self.peers.addr(l)),
        };
        match self.peers.call(leader, req, FORWARD_TIMEOUT).await {
            Ok(Reply::Proposed(Ok(applied))) => Ok(applied),
            Ok(Reply::Proposed(Err(ProposeError::NotLeader { leader }))) => Err(not_leader(leader)),
            Ok(Reply::Proposed(Err(ProposeError::Failed(why)))) => Err(Error::Consensus(why)),
            Ok(Reply::UnknownGroup(_)) => Err(not_leader(None)),
            Ok(other) => Err(Error::Consensus(format!("odd reply {}", other.name()))),
            // Never sent: as if no leader were known (an election is under way).
            Err(e) if e.is_unreachable() => Err(not_leader(None)),
            // Not known whether it was applied: the caller's retry must be harmless.
            Err(e) => Err(Error::Consensus(format!(
                "forwarding to node {leader}: {e}"
            ))),
        }
    }

    /// [`ClusterNode::propose_anywhere`], trying again while no leader of the group is known
    /// here or the one known is out of reach (an election under way), for at most `wait`: a
    /// proposal refused that way was not made, so making it again is harmless.
    pub async fn propose_waiting(
        &self,
        group: &GroupId,
        command: Command,
        wait: Duration,
    ) -> Result<Applied> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match self.propose_anywhere(group, command.clone()).await {
                Err(Error::NotLeader { leader: None, .. })
                    if tokio::time::Instant::now() < deadline =>
                {
                    // At least a heartbeat between tries: the leader known here may be the
                    // one out of reach, and then there is no change to wait for.
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    tokio::time::sleep(self.timing.heartbeat.min(left)).await;
                    if let Some(g) = self.group(group) {
                        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                        g.wait_leader(left).await;
                    }
                }
                other => return other,
            }
        }
    }

    /// Every node's client addresses known here.
    pub fn infos(&self) -> BTreeMap<NodeId, NodeInfo> {
        self.infos.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Introduces this node to every peer whose address it knows, until `shutdown` turns true
    /// (see the module's notes).
    pub async fn introduce(&self, mut shutdown: watch::Receiver<bool>) {
        let mut round = 0u64;
        loop {
            let peers = self.peers.ids();
            let own = self.info(self.id).unwrap_or_default();
            let refresh = round % (HELLO_REFRESH.as_millis() / HELLO_INTERVAL.as_millis()) as u64;
            let due: Vec<NodeId> = peers
                .iter()
                .copied()
                .filter(|p| *p != self.id && (refresh == 0 || self.info(*p).is_none()))
                .collect();
            let mut calls = tokio::task::JoinSet::new();
            for p in due {
                let req = Request::Hello {
                    from: self.id,
                    info: own.clone(),
                };
                let peers = self.peers.clone();
                calls.spawn(async move { (p, peers.call(p, req, HELLO_TIMEOUT).await) });
            }
            while let Some(Ok((p, reply))) = calls.join_next().await {
                match reply {
                    Ok(Reply::Hello { from, info }) if from == p => self.record_info(p, info),
                    Ok(other) => tracing::warn!(peer = p, reply = other.name(), "odd hello reply"),
                    Err(e) => tracing::debug!(peer = p, error = %e, "hello failed"),
                }
            }
            round += 1;
            tokio::select! {
                _ = tokio::time::sleep(HELLO_INTERVAL) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    }

    /// The Raft timing of this node's groups.
    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The node's connections to its peers.
    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    pub(crate) fn peers_arc(&self) -> Arc<Peers> {
        self.peers.clone()
    }

    pub(crate) fn directory(&self) -> std::sync::RwLockReadGuard<'_, crate::directory::Directory> {
        self.directory.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn directory_mut(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, crate::directory::Directory> {
        self.directory.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that this node has applied version `v` of the cluster's nodes (the metadata
    /// index of their last change): a peer asking for a membership change from an older view
    /// is refused from then on.
    pub fn set_members_version(&self, v: u64) {
        self.members_version.fetch_max(v, Ordering::AcqRel);
    }

    /// The latest version of the cluster's nodes applied here.
    pub fn members_version(&self) -> u64 {
        self.members_version.load(Ordering::Acquire)
    }

    /// Records where a peer's cluster listener is.
    pub fn set_peer(&self, id: NodeId, addr: String) {
        self.peers.set_addr(id, addr);
    }

    /// Serves peers on `listener` until `shutdown` turns true.
    pub async fn serve(self: &Arc<Self>, listener: TcpListener, shutdown: watch::Receiver<bool>) {
        let handler: Arc<dyn RaftHandler> = self.clone();
        let me = Identity {
            cluster: self.cluster,
            node: self.id,
        };
        let beats = self.beat(shutdown.clone());
        let tls = self.tls.clone();
        tokio::join!(serve(listener, me, tls, handler, shutdown), beats);
    }

    /// Every heartbeat interval, has each group this node leads send its heartbeats, all at
    /// once, so they reach each peer together ([`crate::net::heartbeats`]); until `shutdown`.
    async fn beat(self: &Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.timing.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            self.peers.open_heartbeat_window();
            let plan = self.tick_groups();
            for g in plan.beating {
                g.beat().await;
            }
            for (g, ask) in plan.asking {
                let node = self.clone();
                tokio::spawn(async move { node.ask_quiet(g, ask).await });
            }
            for id in plan.probing {
                let node = self.clone();
                tokio::spawn(async move { node.probe(id).await });
            }
            if plan.resting {
                self.tell_peers_up();
            }
        }
    }

    /// Each group's part in a tick ([`crate::quiet`]), decided under the groups' lock.
    fn tick_groups(&self) -> TickPlan {
        let lately = self.heard_lately();
        let down = self.probed_down();
        let mut suspects = std::collections::BTreeSet::new();
        let now = std::time::Instant::now();
        let mut plan = TickPlan::default();
        let groups = self.groups.read().unwrap_or_else(|e| e.into_inner());
        for g in groups.values() {
            let up = |id: NodeId| {
                if lately.contains(&id) {
                    return true;
                }
                suspects.insert(id);
                !down.contains(&id)
            };
            match g.quiet_tick(&self.timing, now, up) {
                Tick::Beat => plan.beating.push(g.clone()),
                Tick::Quiet => plan.resting = true,
                Tick::Rest => {}
                Tick::Ask(ask) => {
                    plan.beating.push(g.clone());
                    plan.asking.push((g.clone(), ask));
                }
            }
        }
        drop(groups);
        plan.probing = self.probes_due(&suspects);
        plan
    }

    /// The directory of a group: its name with `/` kept as directories (`t/orders/0`).
    pub fn group_dir(&self, group: &GroupId) -> Result<PathBuf> {
        let ok = !group.0.is_empty()
            && group
                .0
                .split('/')
                .all(|p| !p.is_empty() && p != "." && p != ".." && !p.contains('\0'));
        if !ok {
            return Err(Error::Consensus(format!("bad group name {:?}", group.0)));
        }
        Ok(self.root.join(&group.0))
    }

    /// Opens this node's replica of `group` (or returns the one open) and, when `members` are
    /// given, bootstraps the group with them.
    pub async fn open_group(
        &self,
        group: GroupId,
        storage: GroupStorage,
        members: Option<BTreeMap<NodeId, Node>>,
    ) -> Result<ReplicatedLog> {
        let opening = self.opening.lock().await;
        if let Some(g) = self.group(&group) {
            return Ok(g);
        }
        let dir = self.group_dir(&group)?;
        let network = NetworkFactory::new(self.peers.clone(), group.clone());
        let log = ReplicatedLog::open(
            self.id,
            group.clone(),
            self.fs.clone(),
            &dir,
            storage,
            network,
            self.timing,
        )
        .await?;
        self.groups
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(group, log.clone());
        drop(opening);
        if let Some(m) = members {
            log.bootstrap(m).await?;
        }
        Ok(log)
    }

    /// True when this node has a replica of `group` on disk (open or not).
    pub fn has_group_dir(&self, group: &GroupId) -> bool {
        self.group_dir(group).is_ok_and(|d| d.is_dir())
    }

    /// The open replica of `group`.
    pub fn group(&self, group: &GroupId) -> Option<ReplicatedLog> {
        self.groups
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(group)
            .cloned()
    }

    /// Every open replica.
    pub fn groups(&self) -> Vec<ReplicatedLog> {
        self.groups
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Stops one group and forgets it (its files stay).
    pub async fn close_group(&self, group: &GroupId) {
        let g = self
            .groups
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(group);
        if let Some(g) = g {
            g.shutdown().await;
        }
    }

    /// Closes `group` and removes its directory from this node (its Raft state: vote,
    /// applied entry, last compaction), durably: a group of the same name opened later starts
    /// afresh (a topic or queue deleted, then created again).
    pub async fn remove_group(&self, group: &GroupId) -> Result<()> {
        self.close_group(group).await;
        let _opening = self.opening.lock().await;
        let dir = self.group_dir(group)?;
        if !self.fs.is_dir(&dir) {
            return Ok(());
        }
        let io = |source| Error::Io {
            path: dir.clone(),
            source,
        };
        self.fs.remove_dir_all(&dir).map_err(io)?;
        self.fs
            .sync_dir(sluice_storage::fs::parent_dir(&dir))
            .map_err(io)
    }

    /// Stops every group.
    pub async fn shutdown(&self) {
        let all: Vec<ReplicatedLog> = self
            .groups
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, g)| g)
            .collect();
        for g in all {
            g.shutdown().await;
        }
    }
}

impl ClusterNode {
    /// A peer's forwarded proposal, proposed here only (never forwarded again).
    async fn propose_here(
        &self,
        group: &GroupId,
        command: Command,
    ) -> std::result::Result<Applied, ProposeError> {
        use crate::group::Consensus;
        let Some(g) = self.group(group) else {
            return Err(ProposeError::NotLeader { leader: None });
        };
        match g.propose(command).await {
            Ok(a) => Ok(a),
            Err(Error::NotLeader { leader, .. }) => Err(ProposeError::NotLeader { leader }),
            Err(e) => Err(ProposeError::Failed(e.to_string())),
        }
    }
}

impl ClusterNode {
    /// A peer's heartbeats ([`Request::Heartbeats`]): each handed to its group at once, side
    /// by side; the answers in their order.
    async fn heartbeats(
        &self,
        beats: Vec<(
            GroupId,
            openraft::raft::AppendEntriesRequest<crate::TypeConfig>,
        )>,
    ) -> Vec<Reply> {
        if beats.len() > crate::net::HEARTBEATS_PER_MESSAGE_MAX {
            // No sluice node sends more; answering none keeps one message from starting
            // an unbounded number of tasks. The sender's groups see their peer as unknown.
            tracing::warn!(
                "refused a message of {} heartbeats (at most {})",
                beats.len(),
                crate::net::HEARTBEATS_PER_MESSAGE_MAX
            );
            return beats
                .into_iter()
                .map(|(g, _)| Reply::UnknownGroup(g))
                .collect();
        }
        let mut replies: Vec<Reply> = Vec::with_capacity(beats.len());
        let mut running = tokio::task::JoinSet::new();
        for (i, (group, rpc)) in beats.into_iter().enumerate() {
            replies.push(Reply::UnknownGroup(group.clone()));
            if let Some(g) = self.group(&group) {
                running.spawn(async move {
                    let empty = rpc.entries.is_empty().then_some(rpc.vote);
                    let reply = Reply::AppendEntries(g.append_entries(rpc).await);
                    g.quiet_woken(empty.as_ref());
                    (i, reply)
                });
            }
        }
        while let Some(done) = running.join_next().await {
            match done {
                Ok((i, reply)) => replies[i] = reply,
                Err(e) => tracing::warn!("a heartbeat's handling failed: {e}"),
            }
        }
        replies
    }
}

impl RaftHandler for ClusterNode {
    fn handle(&self, req: Request) -> BoxFuture<'_, Reply> {
        Box::pin(async move {
            if let Request::Hello { from, info } = req {
                self.record_info(from, info);
                return Reply::Hello {
                    from: self.id,
                    info: self.info(self.id).unwrap_or_default(),
                };
            }
            if let Request::Leaders { from, leads } = req {
                self.leaders_told(from, leads);
                return Reply::Leaders;
            }
            if let Request::Heartbeats { beats } = req {
                return Reply::Heartbeats(self.heartbeats(beats).await);
            }
            if let Request::Call { from, payload } = req {
                return Reply::Called(self.called(from, payload).await);
            }
            if let Request::Propose { group, command } = req {
                return Reply::Proposed(self.propose_here(&group, command).await);
            }
            if let Request::LeadNext {
                group,
                to,
                quiet_ms,
                hold_ms,
            } = req
            {
                let ms = Duration::from_millis;
                return self.lead_next(&group, to, ms(quiet_ms), ms(hold_ms));
            }
            if let Request::Members {
                group,
                version,
                members,
            } = req
            {
                return Reply::Members(self.members_here(&group, version, &members));
            }
            let Some(g) = self.group(req.group()) else {
                return Reply::UnknownGroup(req.group().clone());
            };
            match req {
                Request::AppendEntries { rpc, .. } => {
                    let empty = rpc.entries.is_empty().then_some(rpc.vote);
                    let reply = Reply::AppendEntries(g.append_entries(rpc).await);
                    g.quiet_woken(empty.as_ref());
                    reply
                }
                Request::Vote { rpc, .. } => {
                    let reply = Reply::Vote(g.vote(rpc).await);
                    g.quiet_woken(None);
                    reply
                }
                Request::InstallSnapshot { rpc, .. } => {
                    let reply = Reply::InstallSnapshot(g.install_snapshot(rpc).await);
                    g.quiet_woken(None);
                    reply
                }
                Request::Quiet {
                    from, vote, last, ..
                } => {
                    Reply::Quiet(self.timing.quiet_after.is_some() && g.go_quiet(from, vote, last))
                }
                Request::Hello { .. }
                | Request::Propose { .. }
                | Request::Members { .. }
                | Request::Leaders { .. }
                | Request::LeadNext { .. }
                | Request::Call { .. }
                | Request::Heartbeats { .. } => unreachable!("answered above"),
            }
        })
    }

    fn peer_addr(&self, id: NodeId) -> Option<String> {
        self.peers.addr(id)
    }

    fn greeted(&self, id: NodeId) {
        self.peers.heard_from(id);
        self.peer_connected(id);
    }

    fn heard(&self, id: NodeId) {
        self.record_heard(id);
    }
}
