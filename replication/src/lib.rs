//! Replicated sluice logs: each topic partition and queue of a cluster is a Raft group whose
//! Raft log is its message log (docs/replication.md).
//!
//! # Layout
//! - `types`: the Raft type configuration: node ids, group ids, commands and what applying one
//!   answers.
//! - `store/`: the storage of one replicated log: openraft's log store and state machine on
//!   the message log, and the small state files beside it.
//! - `batcher`: gathers the publishes that queue while entries replicate into one entry of
//!   several batches, so a leader's fsync serves many publishes.
//! - `group`: one replicated log ([`ReplicatedLog`]) and the [`Consensus`] trait through which
//!   the rest of sluice uses it, so the consensus engine's API stays in this crate.
//! - `directory`: which node leads each group, told between nodes, for the groups a node
//!   holds no replica of.
//! - `membership`: changing a group's members while it serves (a node added or removed).
//! - `transfer`: handing a group's leadership to another voter (the preferred leader).
//! - `quiet`: idle groups stop beating and ticking; their followers watch the leader's node.
//! - `node`: one node of a cluster ([`ClusterNode`]): its groups, its peers, its listener.
//! - `calls`: calls the application above makes of another node ([`CallHandler`]).
//! - `net/`: the transport between nodes: one TCP connection per peer shared by every Raft group
//!   of the node, framed and checksummed, with named limits.
//! - `error`: [`Error`].

pub mod batcher;
pub mod calls;
pub mod directory;
pub mod error;
pub mod group;
pub mod membership;
pub mod net;
pub mod node;
pub mod quiet;
pub mod store;
pub mod transfer;
pub mod types;

pub use calls::{CallError, CallHandler, CALL_PAYLOAD_BYTES_MAX};
pub use error::{Error, Result};
pub use group::{
    BoxFuture, Consensus, GroupStatus, GroupStorage, LogSource, Pending, ReplicatedLog, Timing,
};
pub use membership::MembersProgress;
pub use net::{
    serve, ClusterId, GroupNetwork, Identity, NetError, NetworkFactory, Peers, ProposeError,
    RaftHandler, Reply, Request,
};
pub use node::ClusterNode;
pub use store::snapshot::SNAPSHOT_STATE_BYTES_MAX;
pub use store::{ApplyHook, HookEntry};
pub use types::{Applied, Command, GroupId, Node, NodeId, NodeInfo, TypeConfig};

/// The entry points of the `cluster_input` fuzz target: what a peer or a damaged disk can hand
/// this crate. The first byte picks one, the rest is its input; none may panic.
#[doc(hidden)]
pub fn fuzz_input(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    match pick % 3 {
        // A frame from a peer, and its payload as a request, a reply and a greeting.
        0 => {
            if let Ok((frame, _)) = net::frame::decode(rest) {
                let _ = net::message::decode::<Request>(&frame.payload);
                let _ = net::message::decode::<Reply>(&frame.payload);
                if let Ok(g) = net::greeting::Greeting::decode(&frame.payload) {
                    let me = net::Identity {
                        cluster: g.cluster,
                        node: g.to,
                    };
                    let _ = g.check(me, Some(g.from));
                }
            }
        }
        // A state file as the vote, the applied state and the snapshot record; the bytes as
        // a snapshot's data.
        1 => {
            let _ = store::state_file::decode::<store::log_store::VoteState>(rest, *b"SLVT");
            let _ = store::state_file::decode::<store::state_machine::AppliedState>(rest, *b"SLAP");
            let _ = store::state_file::decode::<store::snapshot::SnapshotRecord>(
                rest,
                store::snapshot::RECORD_MAGIC,
            );
            let _ = store::snapshot::SnapshotData::decode(rest);
        }
        // A stored batch read back as a Raft entry; the bytes as a peer's entry of batches.
        _ => {
            if let Ok(header) = sluice_storage::format::check_batch(rest, u32::MAX) {
                let batch = sluice_storage::Batch {
                    header,
                    bytes: bytes::Bytes::copy_from_slice(rest),
                };
                let _ = store::entry::from_batches(&[batch]);
            }
            let _ = store::entry::split_batches(rest);
        }
    }
}

#[cfg(test)]
mod fuzz_seeds {
    use std::path::Path;

    use openraft::{CommittedLeaderId, LogId, Vote};
    use sluice_storage::format::{encode_control_batch, set_raft_stamp, RaftStamp};

    use super::*;

    #[test]
    #[ignore = "writes the seed corpus of cluster_input into fuzz/corpus"]
    fn write_seeds() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/cluster_input");
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, pick: u8, bytes: &[u8]| {
            let mut v = vec![pick];
            v.extend_from_slice(bytes);
            std::fs::write(dir.join(format!("seed-{name}")), v).unwrap();
        };
        let last = LogId::new(CommittedLeaderId::new(3, 0), 41);
        let req = Request::Vote {
            group: GroupId("t/orders/0".into()),
            rpc: openraft::raft::VoteRequest::new(Vote::new(4, 2), Some(last)),
        };
        let payload = net::message::encode(&req).unwrap();
        let frame = net::frame::encode(net::frame::Kind::Request, 7, &payload).unwrap();
        write("vote-frame", 0, &frame);
        let fs = sluice_storage::fs::sim::SimFs::new();
        let state = store::log_store::VoteState {
            vote: Some(Vote::new(4, 2)),
            purged: Some(last),
        };
        store::state_file::save(&fs, Path::new("/v"), *b"SLVT", &state).unwrap();
        write("vote-file", 1, &fs.read_file(Path::new("/v")).unwrap());
        let mut b = encode_control_batch(&[0], 5);
        set_raft_stamp(
            &mut b,
            RaftStamp {
                term: 4,
                index: 42,
                more: 0,
            },
        )
        .unwrap();
        write("blank-entry", 2, &b);
        let records = [sluice_storage::Record::from_value(b"m".to_vec())];
        let mut data = sluice_storage::format::encode_batch(&records, 9);
        set_raft_stamp(
            &mut data,
            RaftStamp {
                term: 4,
                index: 43,
                more: 0,
            },
        )
        .unwrap();
        write("message-entry", 2, &data);
        let entry = store::entry::Entry {
            log_id: LogId::new(CommittedLeaderId::new(4, 0), 43),
            payload: openraft::EntryPayload::Normal(Command::Batch(data.into())),
        };
        let append = Request::AppendEntries {
            group: GroupId("t/orders/0".into()),
            rpc: openraft::raft::AppendEntriesRequest {
                vote: Vote::new_committed(4, 2),
                prev_log_id: Some(LogId::new(CommittedLeaderId::new(4, 0), 42)),
                entries: vec![entry],
                leader_commit: Some(last),
            },
        };
        let payload = net::message::encode(&append).unwrap();
        let frame = net::frame::encode(net::frame::Kind::Request, 8, &payload).unwrap();
        write("append-frame", 0, &frame);
        let reply = Reply::UnknownGroup(GroupId("t/gone/0".into()));
        let payload = net::message::encode(&reply).unwrap();
        let frame = net::frame::encode(net::frame::Kind::Reply, 8, &payload).unwrap();
        write("reply-frame", 0, &frame);
        let greeting = net::greeting::Greeting {
            cluster: net::ClusterId(*b"seed-cluster-id!"),
            from: 1,
            to: 2,
        };
        let frame = net::frame::encode(net::frame::Kind::Greeting, 0, &greeting.encode()).unwrap();
        write("greeting-frame", 0, &frame);
        let applied = store::state_machine::AppliedState::default();
        store::state_file::save(&fs, Path::new("/a"), *b"SLAP", &applied).unwrap();
        write("applied-file", 1, &fs.read_file(Path::new("/a")).unwrap());
    }

    #[test]
    fn the_seeds_decode_as_what_they_are() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/cluster_input");
        let read = |name: &str| std::fs::read(dir.join(format!("seed-{name}"))).unwrap();
        let f = read("vote-frame");
        let (frame, _) = net::frame::decode(&f[1..]).unwrap();
        assert!(matches!(
            net::message::decode::<Request>(&frame.payload).unwrap(),
            Request::Vote { .. }
        ));
        let v = read("vote-file");
        let state: store::log_store::VoteState =
            store::state_file::decode(&v[1..], *b"SLVT").unwrap();
        assert_eq!(state.vote, Some(Vote::new(4, 2)));
        let b = read("blank-entry");
        let header = sluice_storage::format::check_batch(&b[1..], u32::MAX).unwrap();
        let batch = sluice_storage::Batch {
            header,
            bytes: bytes::Bytes::copy_from_slice(&b[1..]),
        };
        let e = store::entry::from_batch(&batch).unwrap();
        assert_eq!(e.log_id.index, 42);
        assert!(matches!(e.payload, openraft::EntryPayload::Blank));
    }
}
