//! One node of a cluster: its peers, its replicated logs, and the cluster listener that hands
//! each peer request to the group it names. Every group of the node shares the listener and
//! one outgoing connection per peer ([`Peers`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use sluice_storage::FsRef;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::group::{BoxFuture, GroupStorage, ReplicatedLog, Timing};
use crate::net::{serve, NetworkFactory, Peers, RaftHandler, Reply, Request};
use crate::types::{GroupId, Node, NodeId};

/// A node of the cluster and the replicated logs it holds.
pub struct ClusterNode {
    id: NodeId,
    fs: FsRef,
    root: PathBuf,
    timing: Timing,
    peers: Arc<Peers>,
    groups: RwLock<HashMap<GroupId, ReplicatedLog>>,
}

impl std::fmt::Debug for ClusterNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterNode").field("id", &self.id).finish()
    }
}

impl ClusterNode {
    /// A node whose replicated logs live under `root`, one directory per group.
    pub fn new(id: NodeId, fs: FsRef, root: &Path, timing: Timing) -> Arc<ClusterNode> {
        Arc::new(ClusterNode {
            id,
            fs,
            root: root.to_path_buf(),
            timing,
            peers: Arc::new(Peers::new(id)),
            groups: RwLock::new(HashMap::new()),
        })
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Records where a peer's cluster listener is.
    pub fn set_peer(&self, id: NodeId, addr: String) {
        self.peers.set_addr(id, addr);
    }

    /// Serves peers on `listener` until `shutdown` turns true.
    pub async fn serve(self: &Arc<Self>, listener: TcpListener, shutdown: watch::Receiver<bool>) {
        let handler: Arc<dyn RaftHandler> = self.clone();
        serve(listener, handler, shutdown).await
    }

    /// The directory of a group: its name with `/` kept as directories (`t/orders/0`).
    fn group_dir(&self, group: &GroupId) -> Result<PathBuf> {
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
        let log = {
            let mut groups = self.groups.write().unwrap_or_else(|e| e.into_inner());
            groups.entry(group).or_insert(log).clone()
        };
        if let Some(m) = members {
            log.bootstrap(m).await?;
        }
        Ok(log)
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

impl RaftHandler for ClusterNode {
    fn handle(&self, req: Request) -> BoxFuture<'_, Reply> {
        Box::pin(async move {
            let Some(g) = self.group(req.group()) else {
                return Reply::UnknownGroup(req.group().clone());
            };
            match req {
                Request::AppendEntries { rpc, .. } => {
                    Reply::AppendEntries(g.append_entries(rpc).await)
                }
                Request::Vote { rpc, .. } => Reply::Vote(g.vote(rpc).await),
                Request::InstallSnapshot { rpc, .. } => {
                    Reply::InstallSnapshot(g.install_snapshot(rpc).await)
                }
            }
        })
    }
}
