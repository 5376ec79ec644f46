//! Tests of the transport: frames and their corruption, a real server and [`Peers`] on
//! loopback, and Raft groups electing and replicating over it.

mod frames;
mod loopback;
mod mem_store;
mod raft_cluster;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{Fatal, RaftError};
use openraft::raft::{AppendEntriesResponse, InstallSnapshotResponse, VoteRequest, VoteResponse};
use openraft::Vote;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{serve, ClusterId, Identity, RaftHandler, Reply, Request};
use crate::types::{GroupId, NodeId};

/// The cluster of the tests' nodes.
const CLUSTER: ClusterId = ClusterId(*b"sluice-net-tests");

/// Node `node` of the tests' cluster.
fn me(node: NodeId) -> Identity {
    Identity {
        cluster: CLUSTER,
        node,
    }
}

/// A group the fake handler does not host.
const MISSING: &str = "missing";
/// A group whose requests the fake handler never answers.
const SLOW: &str = "slow";
/// A group whose Raft has stopped.
const STOPPED: &str = "stopped";

/// A handler answering without Raft: a vote request's reply echoes its vote, after a delay
/// that depends on the term so replies come back out of order.
struct FakeHandler;

impl RaftHandler for FakeHandler {
    fn handle(&self, req: Request) -> Pin<Box<dyn Future<Output = Reply> + Send + '_>> {
        self.handle_owned(req)
    }
}

impl FakeHandler {
    fn handle_owned(&self, req: Request) -> Pin<Box<dyn Future<Output = Reply> + Send + 'static>> {
        Box::pin(async move {
            match req.group().0.as_str() {
                MISSING => return Reply::UnknownGroup(req.group().clone()),
                SLOW => std::future::pending::<()>().await,
                STOPPED => return Reply::Vote(Err(RaftError::Fatal(Fatal::Stopped))),
                _ => {}
            }
            match req {
                Request::Vote { rpc, .. } => {
                    let delay = rpc.vote.leader_id.term % 5;
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    Reply::Vote(Ok(VoteResponse::new(rpc.vote, rpc.last_log_id, true)))
                }
                Request::AppendEntries { .. } => {
                    Reply::AppendEntries(Ok(AppendEntriesResponse::Success))
                }
                Request::InstallSnapshot { rpc, .. } => {
                    Reply::InstallSnapshot(Ok(InstallSnapshotResponse { vote: rpc.vote }))
                }
                Request::Hello { from, info } => Reply::Hello { from, info },
                Request::Propose { group, .. } => Reply::UnknownGroup(group),
                Request::Members { .. } => Reply::Members(Ok(crate::MembersProgress::Done)),
                Request::Leaders { .. } => Reply::Leaders,
                Request::LeadNext { .. } => Reply::LeadNext(true),
                Request::Call { payload, .. } => Reply::Called(Ok(payload)),
                Request::Quiet { .. } => Reply::Quiet(false),
                Request::Heartbeats { beats } => Reply::Heartbeats(
                    beats
                        .into_iter()
                        .map(|(group, _)| match group.0.as_str() {
                            MISSING => Reply::UnknownGroup(group),
                            _ => Reply::AppendEntries(Ok(AppendEntriesResponse::Success)),
                        })
                        .collect(),
                ),
            }
        })
    }
}

/// A running server: its address, its shutdown switch and its task.
struct Server {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Server {
    /// Serves as node `node` of [`CLUSTER`].
    async fn start(node: NodeId, handler: Arc<dyn RaftHandler>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Server::on(listener, me(node), handler)
    }

    fn on(listener: TcpListener, me: Identity, handler: Arc<dyn RaftHandler>) -> Server {
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(serve(listener, me, None, handler, stopped));
        Server { addr, stop, task }
    }

    async fn stop(self) {
        self.stop.send_replace(true);
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("server stops on shutdown")
            .expect("server task");
    }
}

/// A vote request of `term` for `group`.
fn vote(group: &str, term: u64) -> Request {
    Request::Vote {
        group: GroupId(group.to_string()),
        rpc: VoteRequest::new(Vote::new(term, 1), None),
    }
}
