//! The messages peers exchange: a [`Request`] carries one openraft RPC for one Raft group, a
//! [`Reply`] carries openraft's answer.
//!
//! Both are encoded with postcard into a frame's payload (see [`frame`](super::frame)). Every
//! request names its group, since one connection between two nodes carries the messages of
//! every group they share.

use openraft::error::{Infallible, InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::NetError;
use crate::types::{GroupId, NodeId, TypeConfig};

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
}

impl Request {
    /// The Raft group the request is for.
    pub fn group(&self) -> &GroupId {
        match self {
            Request::AppendEntries { group, .. }
            | Request::Vote { group, .. }
            | Request::InstallSnapshot { group, .. } => group,
        }
    }

    /// The RPC's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Request::AppendEntries { .. } => "append-entries",
            Request::Vote { .. } => "vote",
            Request::InstallSnapshot { .. } => "install-snapshot",
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
}

impl Reply {
    /// The reply's name, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Reply::AppendEntries(_) => "append-entries",
            Reply::Vote(_) => "vote",
            Reply::InstallSnapshot(_) => "install-snapshot",
            Reply::UnknownGroup(_) => "unknown-group",
        }
    }
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
