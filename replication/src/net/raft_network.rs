//! openraft's network for one Raft group, over the node's shared [`Peers`].
//!
//! Each Raft group gets a [`NetworkFactory`] naming the group; openraft asks it for a
//! [`GroupNetwork`] per target node, and every RPC becomes a [`Request`] tagged with the group
//! on the node's one connection to that target.
//!
//! Errors map to what openraft expects: a peer that cannot be reached (no connection, or it
//! does not host the group yet) is [`RPCError::Unreachable`], so openraft backs off; a
//! connection that broke mid-call or bytes that did not decode are [`RPCError::Network`]; no
//! reply in time is [`RPCError::Timeout`]; an append-entries request too large for one frame
//! is [`RPCError::PayloadTooLarge`], so openraft sends fewer entries; an error the peer's Raft
//! answered is [`RPCError::RemoteError`].

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    Infallible, InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError,
    RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use super::frame::FrameError;
use super::{NetError, Peers, Reply, Request};
use crate::types::{GroupId, Node, NodeId, TypeConfig};

/// openraft's error for an RPC of this network.
type RpcErr<E> = RPCError<NodeId, Node, RaftError<NodeId, E>>;

/// Creates the connections of one Raft group to its peers (openraft's network factory).
pub struct NetworkFactory {
    peers: Arc<Peers>,
    group: GroupId,
}

impl NetworkFactory {
    /// The network of Raft group `group`, over the node's `peers`.
    pub fn new(peers: Arc<Peers>, group: GroupId) -> NetworkFactory {
        NetworkFactory { peers, group }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = GroupNetwork;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> GroupNetwork {
        self.peers.set_addr(target, node.addr.clone());
        GroupNetwork {
            peers: Arc::clone(&self.peers),
            group: self.group.clone(),
            target,
            node: node.clone(),
            entries_sent: None,
        }
    }
}

/// One Raft group's connection to one peer (openraft's network client).
pub struct GroupNetwork {
    peers: Arc<Peers>,
    group: GroupId,
    target: NodeId,
    node: Node,
    /// When this group last sent the peer entries: a group that replicates needs no shared
    /// heartbeat, and its replication waits for each answer, so its empty requests go at once.
    entries_sent: Option<tokio::time::Instant>,
}

/// A group that sent a peer entries within this long sends its heartbeats to it on their own.
pub const BUSY_FOR: Duration = Duration::from_secs(1);

impl GroupNetwork {
    /// Sends one request; a peer without the group is an error here.
    async fn call(&self, req: Request, ttl: Duration) -> Result<Reply, NetError> {
        match self.peers.call(self.target, req, ttl).await? {
            Reply::UnknownGroup(group) => Err(NetError::UnknownGroup {
                peer: self.target,
                group,
            }),
            reply => Ok(reply),
        }
    }

    /// openraft's error for a failed call.
    fn rpc_error<E: Error>(&self, e: NetError, action: RPCTypes) -> RpcErr<E> {
        tracing::debug!(group = %self.group, peer = self.target, %action, error = %e, "rpc failed");
        match e {
            NetError::Timeout { after, .. } => RPCError::Timeout(Timeout {
                action,
                id: self.peers.self_id(),
                target: self.target,
                timeout: after,
            }),
            e if e.is_unreachable() => RPCError::Unreachable(Unreachable::new(&e)),
            e => RPCError::Network(NetworkError::new(&e)),
        }
    }

    fn remote<E: Error>(&self, e: RaftError<NodeId, E>) -> RpcErr<E> {
        RPCError::RemoteError(RemoteError::new_with_node(
            self.target,
            self.node.clone(),
            e,
        ))
    }

    fn mismatched<E: Error>(request: &'static str, reply: &Reply) -> RpcErr<E> {
        let e = NetError::MismatchedReply {
            request,
            reply: reply.name(),
        };
        RPCError::Network(NetworkError::new(&e))
    }
}

impl RaftNetwork<TypeConfig> for GroupNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr<Infallible>> {
        let entries = rpc.entries.len() as u64;
        let now = tokio::time::Instant::now();
        let busy = self.entries_sent.is_some_and(|t| now < t + BUSY_FOR);
        if entries > 0 {
            self.entries_sent = Some(now);
        }
        let sent = if entries == 0 && !busy && self.peers.in_heartbeat_window() {
            // A heartbeat: sent with the other groups' to the same peer.
            let beat =
                self.peers
                    .heartbeat(self.target, self.group.clone(), rpc, option.hard_ttl());
            match beat.await {
                Ok(Reply::UnknownGroup(group)) => Err(NetError::UnknownGroup {
                    peer: self.target,
                    group,
                }),
                other => other,
            }
        } else {
            let req = Request::AppendEntries {
                group: self.group.clone(),
                rpc,
            };
            self.call(req, option.hard_ttl()).await
        };
        let reply = match sent {
            Ok(reply) => reply,
            // Too large for one frame: openraft retries with fewer entries.
            Err(e @ NetError::Frame(FrameError::TooLong { .. })) if entries > 1 => {
                let hint = PayloadTooLarge::new_entries_hint(entries / 2);
                return Err(RPCError::PayloadTooLarge(hint.with_source_error(&e)));
            }
            Err(e) => return Err(self.rpc_error(e, RPCTypes::AppendEntries)),
        };
        match reply {
            Reply::AppendEntries(r) => r.map_err(|e| self.remote(e)),
            other => Err(Self::mismatched("append-entries", &other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        let req = Request::InstallSnapshot {
            group: self.group.clone(),
            rpc,
        };
        let reply = self.call(req, option.hard_ttl()).await;
        match reply.map_err(|e| self.rpc_error(e, RPCTypes::InstallSnapshot))? {
            Reply::InstallSnapshot(r) => r.map_err(|e| self.remote(e)),
            other => Err(Self::mismatched("install-snapshot", &other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr<Infallible>> {
        let req = Request::Vote {
            group: self.group.clone(),
            rpc,
        };
        let reply = self.call(req, option.hard_ttl()).await;
        match reply.map_err(|e| self.rpc_error(e, RPCTypes::Vote))? {
            Reply::Vote(r) => r.map_err(|e| self.remote(e)),
            other => Err(Self::mismatched("vote", &other)),
        }
    }
}
