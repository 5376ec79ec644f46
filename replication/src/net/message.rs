//! The messages peers exchange: a [`Request`] carries one openraft RPC for one Raft group, a
//! [`Reply`] carries openraft's answer.
//!
//! Both are encoded with postcard into a frame's payload (see [`frame`](super::frame)). Every
//! request names its group, since one connection between two nodes carries the messages of
//! every group they share.

use std::collections::BTreeMap;

use openraft::error::{Infallible, InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::NetError;
use crate::types::{Applied, GroupId, Node, NodeId, NodeInfo, TypeConfig};

/// The group of a request addressed to the node rather than to one of its groups.
static NO_GROUP: GroupId = GroupId(String::new());

/// One openraft RPC, addressed to one Raft group of the receiving node.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Request {
    /// Replicate entries (or a heartbeat) from the group's leader.
    AppendEntries {
        /// The Raft group.
        group: GroupId,
        /// openraft's request.
        rpc: AppendEntriesRequest<TypeConfig>,
    },
    /// Ask for a vote in an election of the group.
    Vote {
        /// The Raft group.
        group: GroupId,
        /// openraft's request.
        rpc: VoteRequest<NodeId>,
    },
    /// One chunk of a snapshot of the group's state.
    InstallSnapshot {
        /// The Raft group.
        group: GroupId,
        /// openraft's request.
        rpc: InstallSnapshotRequest<TypeConfig>,
    },
    /// A command handed to the group's leader by another node (a metadata change made
    /// through any node, dead letters for a queue another node leads). Answered once committed
    /// and applied on the leader.
    Propose {
        /// The Raft group.
        group: GroupId,
        /// The command.
        command: crate::Command,
    },
    /// A node introducing itself: its id and the addresses its clients use. Answered with the
    /// receiving node's own ([`Reply::Hello`]); addressed to no group.
    Hello {
        /// The calling node.
        from: NodeId,
        /// Its client addresses.
        info: NodeInfo,
    },
    /// One step of a change of the group's members, for its leader
    /// ([`crate::membership`]); answered with [`Reply::Members`].
    Members {
        /// The Raft group.
        group: GroupId,
        /// The caller's version of the cluster's nodes.
        version: u64,
        /// The wanted voters.
        members: BTreeMap<NodeId, Node>,
    },
    /// Empty append-entries requests (heartbeats) of several groups, sent together
    /// ([`super::heartbeats`]); answered with [`Reply::Heartbeats`], one reply each, in order.
    Heartbeats {
        /// Each group and its request.
        beats: Vec<(GroupId, AppendEntriesRequest<TypeConfig>)>,
    },
    /// The groups the calling node leads, each with its term (every group it leads: the
    /// receiver forgets any other it had from this node). Answered with [`Reply::Leaders`];
    /// addressed to no group ([`crate::directory`]).
    Leaders {
        /// The calling node.
        from: NodeId,
        /// Each group it leads and the term it leads in.
        leads: Vec<(GroupId, u64)>,
    },
    /// From a group's leader handing it to `to` ([`crate::transfer`]): hold the election timer
    /// of the group for `hold_ms`, and, on `to`, stand for election after `quiet_ms`.
    /// Answered with [`Reply::LeadNext`].
    LeadNext {
        /// The Raft group.
        group: GroupId,
        /// The voter that is to lead it.
        to: NodeId,
        /// How long `to` waits before it stands (the other voters' lease of the old leader).
        quiet_ms: u64,
        /// How long each voter holds its election timer.
        hold_ms: u64,
    },
    /// A call of the application on the receiving node ([`crate::calls`]); answered with
    /// [`Reply::Called`]; addressed to no group.
    Call {
        /// The calling node.
        from: NodeId,
        /// What the application asks, in its own encoding.
        payload: Vec<u8>,
    },
    /// From a group's leader with nothing to do ([`crate::quiet`]): stop standing for
    /// election while this leader's node is heard from, if this replica follows it in `vote`
    /// and has applied its whole log, up to `last`. Answered with [`Reply::Quiet`].
    Quiet {
        /// The Raft group.
        group: GroupId,
        /// The leader's node.
        from: NodeId,
        /// The leader's vote.
        vote: openraft::Vote<NodeId>,
        /// The group's last entry.
        last: openraft::LogId<NodeId>,
    },
}

impl Request {
    /// The Raft group the request is for (the empty name for [`Request::Hello`], which is
    /// for the node).
    pub fn group(&self) -> &GroupId {
        match self {
            Request::AppendEntries { group, .. }
            | Request::Vote { group, .. }
            | Request::InstallSnapshot { group, .. }
            | Request::Propose { group, .. }
            | Request::Members { group, .. }
            | Request::LeadNext { group, .. }
            | Request::Quiet { group, .. } => group,
            Request::Hello { .. }
            | Request::Leaders { .. }
            | Request::Heartbeats { .. }
            | Request::Call { .. } => &NO_GROUP,
        }
    }

    /// Whether every node the request names as its sender is `node`: the candidate of a
    /// vote, the leader of entries, heartbeats and snapshots, the caller of a hello, a call
    /// or a list of leaders. A node speaks only for itself, so a request naming another is
    /// refused with its connection (the connection's greeting named `node`).
    pub fn speaks_for(&self, node: NodeId) -> bool {
        let leader_is = |vote: &openraft::Vote<NodeId>| vote.leader_id().voted_for() == Some(node);
        match self {
            Request::AppendEntries { rpc, .. } => leader_is(&rpc.vote),
            Request::Vote { rpc, .. } => leader_is(&rpc.vote),
            Request::InstallSnapshot { rpc, .. } => leader_is(&rpc.vote),
            Request::Heartbeats { beats } => beats.iter().all(|(_, rpc)| leader_is(&rpc.vote)),
            Request::Hello { from, .. }
            | Request::Leaders { from, .. }
            | Request::Call { from, .. } => *from == node,
            Request::Quiet { from, vote, .. } => *from == node && leader_is(vote),
            Request::Propose { .. } | Request::Members { .. } | Request::LeadNext { .. } => true,
        }
    }

    /// The RPC's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Request::AppendEntries { .. } => "append-entries",
            Request::Vote { .. } => "vote",
            Request::InstallSnapshot { .. } => "install-snapshot",
            Request::Propose { .. } => "propose",
            Request::Hello { .. } => "hello",
            Request::Members { .. } => "members",
            Request::Leaders { .. } => "leaders",
            Request::Heartbeats { .. } => "heartbeats",
            Request::LeadNext { .. } => "lead-next",
            Request::Call { .. } => "call",
            Request::Quiet { .. } => "quiet",
        }
    }
}

/// What the receiving node's Raft group answered.
#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    /// The answer to [`Request::AppendEntries`].
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId, Infallible>>),
    /// The answer to [`Request::Vote`].
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId, Infallible>>),
    /// The answer to [`Request::InstallSnapshot`].
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    /// The receiving node does not host this group (yet): the caller retries later.
    UnknownGroup(GroupId),
    /// The answer to [`Request::Propose`].
    Proposed(Result<Applied, ProposeError>),
    /// The answer to [`Request::Hello`]: the receiving node's id and client addresses.
    Hello {
        /// The answering node.
        from: NodeId,
        /// Its client addresses.
        info: NodeInfo,
    },
    /// The answer to [`Request::Members`].
    Members(Result<crate::membership::MembersProgress, ProposeError>),
    /// The answer to [`Request::Leaders`]: taken.
    Leaders,
    /// The answers to [`Request::Heartbeats`], in its order: each an
    /// [`Reply::AppendEntries`], or [`Reply::UnknownGroup`].
    Heartbeats(Vec<Reply>),
    /// The answer to [`Request::LeadNext`]: true when the receiving node holds the group.
    LeadNext(bool),
    /// The answer to [`Request::Call`]: the application's answer, or why it refused.
    Called(Result<Vec<u8>, String>),
    /// The answer to [`Request::Quiet`]: true when this replica went quiet.
    Quiet(bool),
}

impl Reply {
    /// The reply's name, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Reply::AppendEntries(_) => "append-entries",
            Reply::Vote(_) => "vote",
            Reply::InstallSnapshot(_) => "install-snapshot",
            Reply::UnknownGroup(_) => "unknown-group",
            Reply::Proposed(_) => "proposed",
            Reply::Hello { .. } => "hello",
            Reply::Members(_) => "members",
            Reply::Leaders => "leaders",
            Reply::Heartbeats(_) => "heartbeats",
            Reply::LeadNext(_) => "lead-next",
            Reply::Called(_) => "called",
            Reply::Quiet(_) => "quiet",
        }
    }
}

/// Why a forwarded proposal was not applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ProposeError {
    /// The receiving node does not lead the group (any more); `leader` does, when known.
    #[error("node does not lead the group; its leader is {leader:?}")]
    NotLeader {
        /// The leader it knows of.
        leader: Option<NodeId>,
    },
    /// The proposal failed there.
    #[error("{0}")]
    Failed(String),
}

/// Encodes a message into a frame payload.
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, NetError> {
    postcard::to_stdvec(message).map_err(NetError::Encode)
}

/// Decodes a frame payload; bytes left after the message are an error.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, NetError> {
    let (message, rest) = postcard::take_from_bytes(payload).map_err(NetError::Decode)?;
    if !rest.is_empty() {
        return Err(NetError::TrailingBytes(rest.len()));
    }
    Ok(message)
}
