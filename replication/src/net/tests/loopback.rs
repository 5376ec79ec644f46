//! A real [`serve`](crate::net::serve) and [`Peers`] on loopback, with a fake handler.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::RPCError;
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::VoteRequest;
use openraft::{BasicNode, Vote};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinSet};

use super::{me, vote, FakeHandler, Server, CLUSTER, MISSING, SLOW, STOPPED};
use crate::net::client::RECONNECT_BACKOFF_MIN;
use crate::net::frame::{self, Kind};
use crate::net::greeting::{Greeting, GreetingError};
use crate::net::{
    ClusterId, Identity, NetError, NetworkFactory, Peers, RaftHandler, Reply,
    INFLIGHT_PER_CONNECTION_MAX,
};
use crate::types::GroupId;

const PEER: u64 = 2;
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A TCP proxy in front of a server: counts the connections it accepts and can cut them.
struct Proxy {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    links: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let links = Arc::new(Mutex::new(Vec::new()));
        let (count, all) = (Arc::clone(&accepted), Arc::clone(&links));
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let link = tokio::spawn(async move {
                    let mut outbound = TcpStream::connect(target).await.expect("connect");
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
                all.lock().expect("links").push(link.abort_handle());
            }
        });
        Proxy {
            addr,
            accepted,
            links,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Breaks every connection through the proxy.
    fn cut(&self) {
        for link in self.links.lock().expect("links").drain(..) {
            link.abort();
        }
    }
}

fn peers_to(addr: SocketAddr) -> Arc<Peers> {
    let peers = Arc::new(Peers::new(me(1), None));
    peers.set_addr(PEER, addr.to_string());
    peers
}

fn term_of(reply: Reply) -> u64 {
    match reply {
        Reply::Vote(Ok(resp)) => resp.vote.leader_id.term,
        other => panic!("unexpected reply {other:?}"),
    }
}

/// Makes `count` concurrent calls over one `Peers`; checks each gets its own reply and that
/// they all went over one connection.
async fn concurrent_calls(count: u64) {
    let server = Server::start(PEER, Arc::new(FakeHandler)).await;
    let proxy = Proxy::start(server.addr).await;
    let peers = peers_to(proxy.addr);
    let mut calls = JoinSet::new();
    for term in 0..count {
        let peers = Arc::clone(&peers);
        calls.spawn(async move {
            let group = format!("t/orders/{}", term % 7);
            let reply = peers.call(PEER, vote(&group, term), CALL_TIMEOUT).await;
            (term, reply.expect("call"))
        });
    }
    let mut seen = 0;
    while let Some(done) = calls.join_next().await {
        let (term, reply) = done.expect("task");
        assert_eq!(term_of(reply), term, "each call gets its own reply");
        seen += 1;
    }
    assert_eq!(seen, count);
    assert_eq!(proxy.accepted(), 1, "one connection for every call");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_calls_share_one_connection() {
    concurrent_calls(1000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_beyond_the_inflight_limit_wait_rather_than_fail() {
    concurrent_calls(3 * INFLIGHT_PER_CONNECTION_MAX as u64 + 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_closes_that_connection_only() {
    let server = Server::start(PEER, Arc::new(FakeHandler)).await;
    let peers = peers_to(server.addr);
    assert_eq!(
        term_of(
            peers
                .call(PEER, vote("g", 1), CALL_TIMEOUT)
                .await
                .expect("call")
        ),
        1
    );

    let good = frame::encode(Kind::Request, 9, b"payload").expect("encode");
    let mut bad_crc = good.clone();
    bad_crc[HEADER_END] ^= 1;
    let reply_kind = frame::encode(Kind::Reply, 9, b"payload").expect("encode");
    let not_a_request = frame::encode(Kind::Request, 9, &[0xFF; 8]).expect("encode");
    let greeting = greeting_frame(me(1).cluster, 1, PEER);
    for garbage in [
        b"GET / HTTP/1.1\r\n\r\n garbage garbage".to_vec(),
        bad_crc,
        reply_kind,
        not_a_request,
    ] {
        // As the first frame, in place of a greeting: closed without an answer.
        let mut raw = TcpStream::connect(server.addr).await.expect("connect");
        raw.write_all(&garbage).await.expect("write");
        expect_closed(&mut raw).await;
        // After a good greeting: the server's greeting, then closed.
        let mut raw = TcpStream::connect(server.addr).await.expect("connect");
        raw.write_all(&greeting).await.expect("write");
        let answer = greeting_of(&mut raw).await;
        assert_eq!((answer.from, answer.to), (PEER, 1));
        raw.write_all(&garbage).await.expect("write");
        expect_closed(&mut raw).await;
    }

    // The well-behaved connection still works.
    assert_eq!(
        term_of(
            peers
                .call(PEER, vote("g", 2), CALL_TIMEOUT)
                .await
                .expect("call")
        ),
        2
    );
    server.stop().await;
}

/// The payload's first byte in a frame.
const HEADER_END: usize = frame::HEADER_BYTES;

fn greeting_frame(cluster: ClusterId, from: u64, to: u64) -> Vec<u8> {
    let g = Greeting { cluster, from, to };
    frame::encode(Kind::Greeting, 0, &g.encode()).expect("encode")
}

async fn greeting_of(raw: &mut TcpStream) -> Greeting {
    let frame = tokio::time::timeout(Duration::from_secs(5), frame::read_frame(raw))
        .await
        .expect("answered in time")
        .expect("a frame")
        .expect("not closed");
    assert_eq!(frame.kind, Kind::Greeting);
    Greeting::decode(&frame.payload).expect("a greeting")
}

async fn expect_closed(raw: &mut TcpStream) {
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), raw.read(&mut buf))
        .await
        .expect("server closes the connection");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "closed, not answered: {read:?}"
    );
}

/// A node that reaches a process of another cluster, or another node than the one it means
/// (a port taken over by another process), sends it no request: the call fails as
/// unreachable, and the server hands nothing to its groups.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_another_cluster_or_another_node_is_refused() {
    let counted = Arc::new(CountingHandler::default());
    let server = Server::start(PEER, Arc::clone(&counted) as Arc<dyn RaftHandler>).await;
    let other = ClusterId(*b"another-cluster!");

    let foreign = Peers::new(
        Identity {
            cluster: other,
            node: 1,
        },
        None,
    );
    foreign.set_addr(PEER, server.addr.to_string());
    let err = foreign
        .call(PEER, vote("g", 1), CALL_TIMEOUT)
        .await
        .expect_err("another cluster");
    assert!(
        matches!(
            err,
            NetError::Greeting {
                peer: PEER,
                source: GreetingError::OtherCluster { .. }
            }
        ),
        "{err}"
    );
    assert!(err.is_unreachable(), "{err}");

    // Our cluster, but the address is not node 3's.
    let misdirected = peers_to(server.addr);
    misdirected.set_addr(3, server.addr.to_string());
    let err = misdirected
        .call(3, vote("g", 1), CALL_TIMEOUT)
        .await
        .expect_err("another node");
    assert!(
        matches!(
            err,
            NetError::Greeting {
                peer: 3,
                source: GreetingError::WrongNode {
                    expected: 3,
                    found: PEER
                }
            }
        ),
        "{err}"
    );

    // Raw callers naming another cluster, or addressing another node, get the server's
    // greeting and a closed connection.
    for greeting in [
        greeting_frame(other, 1, PEER),
        greeting_frame(CLUSTER, 1, 3),
    ] {
        let mut raw = TcpStream::connect(server.addr).await.expect("connect");
        raw.write_all(&greeting).await.expect("write");
        let answer = greeting_of(&mut raw).await;
        assert_eq!((answer.cluster, answer.from), (CLUSTER, PEER));
        let payload = crate::net::message::encode(&vote("g", 9)).expect("encode");
        let request = frame::encode(Kind::Request, 1, &payload).expect("encode");
        let _ = raw.write_all(&request).await;
        expect_closed(&mut raw).await;
    }
    assert_eq!(
        counted.handled.load(Ordering::SeqCst),
        0,
        "no request handled"
    );

    // The node meant, of this cluster, is served.
    let right = peers_to(server.addr);
    assert_eq!(
        term_of(
            right
                .call(PEER, vote("g", 4), CALL_TIMEOUT)
                .await
                .expect("call")
        ),
        4
    );
    assert_eq!(counted.handled.load(Ordering::SeqCst), 1);
    server.stop().await;
}

/// A connection greeting as one node whose request names another as its sender (a vote of
/// another candidate, a hello from another node) is closed, and the request is not handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_speaking_for_another_node_closes_its_connection() {
    let counted = Arc::new(CountingHandler::default());
    let server = Server::start(PEER, Arc::clone(&counted) as Arc<dyn RaftHandler>).await;
    let hello_from = |from| crate::net::Request::Hello {
        from,
        info: Default::default(),
    };
    for (greets_as, request, answered) in [
        (1, vote("g", 1), true),
        (3, vote("g", 1), false),
        (3, hello_from(3), true),
        (3, hello_from(1), false),
    ] {
        let mut raw = TcpStream::connect(server.addr).await.expect("connect");
        raw.write_all(&greeting_frame(CLUSTER, greets_as, PEER))
            .await
            .expect("write");
        greeting_of(&mut raw).await;
        let payload = crate::net::message::encode(&request).expect("encode");
        let frame = frame::encode(Kind::Request, 1, &payload).expect("encode");
        raw.write_all(&frame).await.expect("write");
        if answered {
            let reply = tokio::time::timeout(CALL_TIMEOUT, frame::read_frame(&mut raw))
                .await
                .expect("answered in time")
                .expect("a frame")
                .expect("not closed");
            assert_eq!(reply.kind, Kind::Reply, "{}", request.name());
        } else {
            expect_closed(&mut raw).await;
        }
    }
    assert_eq!(counted.handled.load(Ordering::SeqCst), 2);
    server.stop().await;
}

/// Counts the requests it is handed, answering like [`FakeHandler`].
#[derive(Default)]
struct CountingHandler {
    handled: AtomicUsize,
}

impl RaftHandler for CountingHandler {
    fn handle(
        &self,
        req: crate::net::Request,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Reply> + Send + '_>> {
        self.handled.fetch_add(1, Ordering::SeqCst);
        FakeHandler.handle_owned(req)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_is_down_is_unreachable_until_it_starts() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);

    let peers = Arc::new(Peers::new(me(1), None));
    let mut factory = NetworkFactory::new(Arc::clone(&peers), GroupId("g".into()));
    let mut net = factory
        .new_client(PEER, &BasicNode::new(addr.to_string()))
        .await;
    let option = RPCOption::new(Duration::from_secs(2));
    let rpc = VoteRequest::new(Vote::new(3, 1), None);
    let down = net.vote(rpc.clone(), option.clone()).await;
    assert!(matches!(down, Err(RPCError::Unreachable(_))), "{down:?}");
    // While the reconnect backs off, calls fail fast, still as unreachable.
    let err = peers
        .call(PEER, vote("g", 3), CALL_TIMEOUT)
        .await
        .expect_err("down");
    assert!(err.is_unreachable(), "{err}");

    let server = Server::on(
        TcpListener::bind(addr).await.expect("rebind"),
        me(PEER),
        Arc::new(FakeHandler),
    );
    tokio::time::sleep(RECONNECT_BACKOFF_MIN * 3).await;
    let up = net.vote(rpc, option).await.expect("reconnected");
    assert_eq!(up.vote.leader_id.term, 3);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_group_and_remote_errors_map_to_openraft_errors() {
    let server = Server::start(PEER, Arc::new(FakeHandler)).await;
    let peers = Arc::new(Peers::new(me(1), None));
    let node = BasicNode::new(server.addr.to_string());
    let option = RPCOption::new(Duration::from_secs(2));
    let rpc = VoteRequest::new(Vote::new(1, 1), None);

    let mut missing = NetworkFactory::new(Arc::clone(&peers), GroupId(MISSING.into()));
    let r = missing
        .new_client(PEER, &node)
        .await
        .vote(rpc.clone(), option.clone())
        .await;
    assert!(matches!(r, Err(RPCError::Unreachable(_))), "{r:?}");

    let mut stopped = NetworkFactory::new(Arc::clone(&peers), GroupId(STOPPED.into()));
    let r = stopped
        .new_client(PEER, &node)
        .await
        .vote(rpc.clone(), option)
        .await;
    assert!(
        matches!(r, Err(RPCError::RemoteError(ref e)) if e.target == PEER),
        "{r:?}"
    );

    let mut slow = NetworkFactory::new(Arc::clone(&peers), GroupId(SLOW.into()));
    let short = RPCOption::new(Duration::from_millis(100));
    let r = slow.new_client(PEER, &node).await.vote(rpc, short).await;
    assert!(
        matches!(r, Err(RPCError::Timeout(ref t)) if t.target == PEER && t.id == 1),
        "{r:?}"
    );
    // The connection outlives a call that timed out.
    assert!(peers.call(PEER, vote("g", 5), CALL_TIMEOUT).await.is_ok());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_connection_fails_waiting_calls_and_the_next_call_reconnects() {
    let server = Server::start(PEER, Arc::new(FakeHandler)).await;
    let proxy = Proxy::start(server.addr).await;
    let peers = peers_to(proxy.addr);
    let waiting = {
        let peers = Arc::clone(&peers);
        tokio::spawn(async move { peers.call(PEER, vote(SLOW, 1), CALL_TIMEOUT).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.cut();
    let failed = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("fails at once, not at its timeout")
        .expect("task");
    assert!(
        matches!(failed, Err(NetError::ConnectionClosed(PEER))),
        "{failed:?}"
    );

    let again = peers
        .call(PEER, vote("g", 2), CALL_TIMEOUT)
        .await
        .expect("reconnects");
    assert_eq!(term_of(again), 2);
    assert_eq!(proxy.accepted(), 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_connections_and_stops_serving() {
    let server = Server::start(PEER, Arc::new(FakeHandler)).await;
    let addr = server.addr;
    let peers = peers_to(addr);
    let waiting = {
        let peers = Arc::clone(&peers);
        tokio::spawn(async move { peers.call(PEER, vote(SLOW, 1), CALL_TIMEOUT).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.stop().await;
    let failed = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("waiting call ends with the connection")
        .expect("task");
    assert!(
        matches!(failed, Err(NetError::ConnectionClosed(PEER))),
        "{failed:?}"
    );
    let err = peers
        .call(PEER, vote("g", 1), CALL_TIMEOUT)
        .await
        .expect_err("stopped");
    assert!(err.is_unreachable(), "{err}");
}

#[tokio::test]
async fn a_peer_without_address_is_unreachable() {
    let peers = Peers::new(me(1), None);
    let err = peers
        .call(7, vote("g", 1), CALL_TIMEOUT)
        .await
        .expect_err("no address");
    assert!(matches!(err, NetError::UnknownPeer(7)));
    assert!(err.is_unreachable());
}

/// Every node-to-node call that is not a Raft RPC gets its own reply back through
/// [`Peers::call`]: a reply that matched no request would fail the call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_and_leader_calls_get_their_replies() {
    let server = Server::start(PEER, Arc::new(FakeHandler)).await;
    let peers = peers_to(server.addr);
    let members = crate::net::Request::Members {
        group: GroupId("g".into()),
        version: 1,
        members: Default::default(),
    };
    let r = peers.call(PEER, members, CALL_TIMEOUT).await;
    assert!(
        matches!(r, Ok(Reply::Members(Ok(crate::MembersProgress::Done)))),
        "{r:?}"
    );
    let leaders = crate::net::Request::Leaders {
        from: 1,
        leads: vec![(GroupId("g".into()), 3)],
    };
    let r = peers.call(PEER, leaders, CALL_TIMEOUT).await;
    assert!(matches!(r, Ok(Reply::Leaders)), "{r:?}");
    server.stop().await;
}

/// An empty append-entries request (a heartbeat) of term 1.
fn heartbeat() -> openraft::raft::AppendEntriesRequest<crate::TypeConfig> {
    openraft::raft::AppendEntriesRequest {
        vote: Vote::new_committed(1, 1),
        prev_log_id: None,
        entries: Vec::new(),
        leader_commit: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeats_of_many_groups_go_together_and_each_gets_its_answer() {
    let server = Server::start(PEER, Arc::new(FakeHandler)).await;
    let peers = peers_to(server.addr);
    let option = RPCOption::new(Duration::from_secs(2));
    // Outside a heartbeat window an empty request goes at once, on its own.
    let mut factory = NetworkFactory::new(Arc::clone(&peers), GroupId("t/beats/0".into()));
    let mut net = factory
        .new_client(PEER, &BasicNode::new(server.addr.to_string()))
        .await;
    net.append_entries(heartbeat(), option.clone())
        .await
        .expect("direct");
    assert_eq!(peers.heartbeat_counts().beats, 0);
    // A window long enough for every group of a loaded machine to beat in it.
    peers.open_heartbeat_window_for(Duration::from_millis(500));
    let mut beats = JoinSet::new();
    for g in 0..500 {
        let group = if g % 100 == 7 {
            MISSING.to_string()
        } else {
            format!("t/beats/{g}")
        };
        let mut factory = NetworkFactory::new(Arc::clone(&peers), GroupId(group.clone()));
        let option = option.clone();
        let addr = server.addr.to_string();
        beats.spawn(async move {
            let mut net = factory.new_client(PEER, &BasicNode::new(addr)).await;
            (group, net.append_entries(heartbeat(), option).await)
        });
    }
    let mut answered = 0;
    while let Some(done) = beats.join_next().await {
        let (group, reply) = done.expect("task");
        match reply {
            Ok(openraft::raft::AppendEntriesResponse::Success) => assert_ne!(group, MISSING),
            Err(RPCError::Unreachable(_)) => assert_eq!(group, MISSING, "{group}"),
            other => panic!("{group}: {other:?}"),
        }
        answered += 1;
    }
    assert_eq!(answered, 500);
    let counts = peers.heartbeat_counts();
    assert_eq!(counts.beats, 500);
    assert_eq!(
        counts.messages, 1,
        "500 heartbeats of one window: {counts:?}"
    );
    // A peer that is down: each heartbeat fails as unreachable, and the next ones too.
    let addr = server.addr.to_string();
    server.stop().await;
    let mut factory = NetworkFactory::new(Arc::clone(&peers), GroupId("t/beats/0".into()));
    let mut net = factory.new_client(PEER, &BasicNode::new(addr)).await;
    for _ in 0..2 {
        peers.open_heartbeat_window();
        let down = net.append_entries(heartbeat(), option.clone()).await;
        assert!(
            matches!(down, Err(RPCError::Unreachable(_) | RPCError::Network(_))),
            "{down:?}"
        );
    }
}
