//! Failover across the nodes of a cluster: a client given several addresses connects to the
//! first that answers and, when a request is refused because that node does not lead what it
//! changes (`NotLeader`), is refused by a node shutting down (`ShuttingDown`), or is cut by a
//! lost connection, sends it again on the next address, round-robin, with a short backoff,
//! until [`crate::ConnectOptions::retry_deadline`].
//!
//! A node that does not answer within [`crate::ConnectOptions::request_timeout`] (a paused
//! process, a link cut without resets) is given up on as a lost connection would be.
//!
//! A `NotLeader` that names the leader's client address (`(client address HOST:PORT)` in its
//! message, once the refusing node has learnt it) sends the request straight there when that
//! address is one of the client's; otherwise the next address is tried.
//!
//! A request refused with `NotLeader` or `ShuttingDown` was not carried out, so sending it
//! again is safe. One cut by a lost connection may have been carried out: a publish sent again
//! may then be appended twice (at-least-once), a topic creation answer `AlreadyExists`. Only
//! requests that do not depend on the connection are retried (see [`retried`]); subscriptions,
//! consumers, acks and commits stay on the connection they were opened on.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::connection::Conn;
use super::options::ConnectOptions;
use super::{Client, ClientError, ErrorCode, Result};
use crate::protocol::Request;

/// The first wait before a request is sent again; doubled at each attempt.
pub const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(50);
/// The longest wait between two attempts.
pub const RETRY_BACKOFF_MAX: Duration = Duration::from_millis(400);

/// How a client moves to another address.
pub(super) struct Failover {
    opts: ConnectOptions,
    /// The index, in the options' addresses, of the current connection's; locked while
    /// switching, so that concurrent failures switch once.
    at: tokio::sync::Mutex<usize>,
}

impl Failover {
    pub(super) fn new(opts: ConnectOptions, at: usize) -> Failover {
        Failover {
            opts,
            at: tokio::sync::Mutex::new(at),
        }
    }

    /// The options the client was made with (every node's address among them).
    pub(super) fn opts(&self) -> &ConnectOptions {
        &self.opts
    }
}

/// True when failure `e` of `req` is worth retrying on another node: `req` does not depend on
/// its connection, and `e` is `NotLeader`, `ShuttingDown` or a lost connection.
pub(super) fn retried(req: &Request, e: &ClientError) -> bool {
    retried_kind(req) && retriable(e)
}

/// True when `req` does not depend on its connection: it may be sent to any node.
pub(super) fn retried_kind(req: &Request) -> bool {
    matches!(
        req,
        Request::Ping
            | Request::Publish { .. }
            | Request::CreateTopic { .. }
            | Request::DeleteTopic { .. }
            | Request::AlterTopic { .. }
            | Request::TopicMeta { .. }
            | Request::ListTopics
            | Request::DescribeTopic { .. }
            | Request::CreateQueue { .. }
            | Request::DeleteQueue { .. }
            | Request::ListQueues
            | Request::DescribeQueue { .. }
            | Request::ClusterStatus
            | Request::ClusterAddNode { .. }
            | Request::ClusterRemoveNode { .. }
            | Request::ClusterSetReplicas { .. }
    )
}

/// True for `NotLeader`, `ShuttingDown`, a lost connection and a node that did not answer in
/// time.
pub(super) fn retriable(e: &ClientError) -> bool {
    matches!(e, ClientError::Closed(_) | ClientError::TimedOut(_))
        || matches!(
            e.code(),
            Some(ErrorCode::NotLeader | ErrorCode::ShuttingDown)
        )
}

/// The client address of the leader a `NotLeader` names, when its message gives it.
pub(super) fn named_leader(e: &ClientError) -> Option<String> {
    let ClientError::Server {
        code: ErrorCode::NotLeader,
        message: text,
    } = e
    else {
        return None;
    };
    const MARK: &str = "(client address ";
    let at = text.find(MARK)? + MARK.len();
    let addr = &text[at..at + text[at..].find(')')?];
    (!addr.is_empty() && !addr.contains(' ')).then(|| addr.to_string())
}

/// Connects to the first of `opts`' addresses that answers, from index `from` on, each tried
/// once; the connection and its address's index, or the last failure.
pub(super) async fn connect_first(
    opts: &ConnectOptions,
    from: usize,
) -> Result<(Arc<Conn>, usize)> {
    let n = opts.addrs.len();
    let mut last = None;
    for k in 0..n {
        let i = (from + k) % n;
        match Conn::open(opts, &opts.addrs[i]).await {
            Ok(c) => return Ok((c, i)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("options hold at least one address"))
}

impl Client {
    /// Waits for `reply`, at most the request timeout when failing over.
    pub(super) async fn timed<T>(&self, reply: impl Future<Output = Result<T>>) -> Result<T> {
        match &self.inner.failover {
            Some(f) => {
                let limit = f.opts.request_timeout;
                tokio::time::timeout(limit, reply)
                    .await
                    .unwrap_or(Err(ClientError::TimedOut(limit)))
            }
            None => reply.await,
        }
    }

    /// The connection to use after `failed` failed with `err`: the current one if another
    /// call has already moved on to a live one, else a new one to the leader `err` names when
    /// it is one of the addresses, else to the next address that answers.
    async fn switch(
        &self,
        f: &Failover,
        failed: &Arc<Conn>,
        err: &ClientError,
    ) -> Result<Arc<Conn>> {
        let mut at = f.at.lock().await;
        let current = self.conn();
        if !Arc::ptr_eq(&current, failed) && !current.is_closed() {
            return Ok(current);
        }
        let named = named_leader(err).and_then(|a| f.opts.addrs.iter().position(|x| *x == a));
        let from = named.filter(|i| *i != *at).unwrap_or(*at + 1);
        let (conn, i) = connect_first(&f.opts, from).await?;
        *at = i;
        self.set_conn(conn.clone());
        Ok(conn)
    }

    /// Runs `op` on another connection after it failed on `failed` with `err`, again and
    /// again while it fails with a [`retriable`] error, until the retry deadline; then
    /// [`ClientError::Failover`] with the last failure. Without failover, `err`.
    pub(super) async fn retry_on<T, F, Fut>(
        &self,
        failed: Arc<Conn>,
        err: ClientError,
        mut op: F,
    ) -> Result<T>
    where
        F: FnMut(Arc<Conn>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let Some(f) = self.inner.failover.clone() else {
            return Err(err);
        };
        let started = Instant::now();
        let deadline = started + f.opts.retry_deadline;
        let (mut failed, mut last, mut backoff, mut attempts) = (failed, err, RETRY_BACKOFF_MIN, 1);
        loop {
            if Instant::now() + backoff >= deadline {
                return Err(ClientError::Failover {
                    attempts,
                    elapsed: started.elapsed(),
                    last: Box::new(last),
                });
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
            let switched = self.switch(&f, &failed, &last);
            let conn = match tokio::time::timeout_at(deadline, switched).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    last = e;
                    continue;
                }
                Err(_) => continue,
            };
            attempts += 1;
            match self.timed(op(conn.clone())).await {
                Err(e) if retriable(&e) => {
                    failed = conn;
                    last = e;
                }
                r => return r,
            }
        }
    }

    /// The connection in use or, when it is gone and the client fails over, a live one.
    pub(super) async fn live_conn(&self) -> Result<Arc<Conn>> {
        let conn = self.conn();
        if !conn.is_closed() || self.inner.failover.is_none() {
            return Ok(conn);
        }
        let gone = ClientError::Closed("connection lost".into());
        self.retry_on(conn, gone, |c| async move { Ok(c) }).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    use super::*;
    use crate::protocol::{self, Reply};
    use crate::Record;

    /// What a scripted node does with a publish.
    #[derive(Clone)]
    enum Answer {
        NotLeader,
        /// `NotLeader` naming this client address as the leader's.
        Redirect(String),
        Hangup,
        Silent,
        Confirm,
    }

    /// A scripted node on a free port: answers the handshake, and publishes as `answer` says;
    /// counts the publishes it read.
    async fn node(answer: Answer) -> (String, Arc<AtomicUsize>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let seen = Arc::new(AtomicUsize::new(0));
        let count = seen.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = l.accept().await {
                let count = count.clone();
                tokio::spawn(serve(sock, answer.clone(), count));
            }
        });
        (addr, seen)
    }

    async fn serve(sock: tokio::net::TcpStream, answer: Answer, seen: Arc<AtomicUsize>) {
        let (mut rd, mut wr) = sock.into_split();
        while let Ok(Some(f)) = protocol::read_frame(&mut rd, 1 << 20).await {
            let reply = match Request::decode(&f).unwrap() {
                Request::Hello { .. } => Reply::HelloOk {
                    version: protocol::VERSION,
                    server: "scripted".into(),
                    frame_bytes_max: 1 << 20,
                },
                Request::Publish { .. } => {
                    seen.fetch_add(1, Ordering::SeqCst);
                    match answer {
                        Answer::NotLeader => Reply::error(ErrorCode::NotLeader, "not the leader"),
                        Answer::Redirect(ref to) => Reply::error(
                            ErrorCode::NotLeader,
                            format!("its leader is node 3 (client address {to}): retry there"),
                        ),
                        Answer::Hangup => return,
                        // A paused node: it read the request and never answers.
                        Answer::Silent => continue,
                        Answer::Confirm => Reply::Published {
                            partition: 0,
                            base_offset: 7,
                            last_offset: 7,
                        },
                    }
                }
                _ => Reply::error(ErrorCode::Internal, "not scripted"),
            };
            if wr
                .write_all(&reply.encode(f.request_id).to_vec())
                .await
                .is_err()
            {
                return;
            }
        }
    }

    #[tokio::test]
    async fn a_publish_refused_or_cut_is_confirmed_by_the_next_node() {
        let (follower, refused) = node(Answer::NotLeader).await;
        let (dying, cut) = node(Answer::Hangup).await;
        let (leader, confirmed) = node(Answer::Confirm).await;
        let c = crate::Client::builder(format!("{follower},{dying},{leader}"))
            .connect()
            .await
            .unwrap();
        let p = c.publish("t", &[Record::from_value("v")]).await.unwrap();
        assert_eq!(p.base_offset, 7);
        let counts = [&refused, &cut, &confirmed].map(|a| a.load(Ordering::SeqCst));
        assert_eq!(counts, [1, 1, 1]);
        // The client stays on the node that confirmed.
        c.publish("t", &[Record::from_value("w")]).await.unwrap();
        assert_eq!(confirmed.load(Ordering::SeqCst), 2);
        assert_eq!(refused.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_refusal_naming_the_leader_sends_the_request_straight_there() {
        let (leader, confirmed) = node(Answer::Confirm).await;
        let (follower, refused) = node(Answer::Redirect(leader.clone())).await;
        let (skipped, cut) = node(Answer::Hangup).await;
        let c = crate::Client::builder(format!("{follower},{skipped},{leader}"))
            .connect()
            .await
            .unwrap();
        c.publish("t", &[Record::from_value("v")]).await.unwrap();
        let counts = [&refused, &cut, &confirmed].map(|a| a.load(Ordering::SeqCst));
        assert_eq!(counts, [1, 0, 1]);
        // A leader named that is not one of the addresses is not followed.
        let (elsewhere, refused) = node(Answer::Redirect("10.9.9.9:1".into())).await;
        let c = crate::Client::builder(format!("{elsewhere},{leader}"))
            .connect()
            .await
            .unwrap();
        c.publish("t", &[Record::from_value("w")]).await.unwrap();
        assert_eq!(refused.load(Ordering::SeqCst), 1);
        assert_eq!(confirmed.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn the_leader_a_refusal_names_is_read_from_its_message() {
        let refusal = |m: &str| ClientError::Server {
            code: ErrorCode::NotLeader,
            message: m.into(),
        };
        let named = "this node does not lead t/a/0; its leader is node 2 (client address 10.0.0.2:7450): retry there";
        assert_eq!(
            named_leader(&refusal(named)).as_deref(),
            Some("10.0.0.2:7450")
        );
        for none in [
            "its leader is node 2 (cluster address 10.0.0.2:7460): retry there",
            "its leader is not known yet (an election is under way): retry there",
            "its leader is node 2 (client address address not known yet)",
            "(client address ",
        ] {
            assert_eq!(named_leader(&refusal(none)), None, "{none}");
        }
        let other = ClientError::Server {
            code: ErrorCode::NotFound,
            message: named.into(),
        };
        assert_eq!(named_leader(&other), None);
    }

    #[tokio::test]
    async fn a_node_that_does_not_answer_is_given_up_on_after_the_request_timeout() {
        let (paused, held) = node(Answer::Silent).await;
        let (leader, confirmed) = node(Answer::Confirm).await;
        let c = crate::Client::builder(format!("{paused},{leader}"))
            .request_timeout(Duration::from_millis(200))
            .connect()
            .await
            .unwrap();
        let started = Instant::now();
        let p = c.publish("t", &[Record::from_value("v")]).await.unwrap();
        assert_eq!(p.base_offset, 7);
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert_eq!(held.load(Ordering::SeqCst), 1);
        assert_eq!(confirmed.load(Ordering::SeqCst), 1);
        // Pipelined: the confirm awaited past the timeout fails over too.
        let c = crate::Client::builder(format!("{paused},{leader}"))
            .request_timeout(Duration::from_millis(200))
            .connect()
            .await
            .unwrap();
        let pending = c
            .send_publish(crate::Target::Any("t".into()), &[Record::from_value("w")])
            .await
            .unwrap();
        assert_eq!(pending.confirmed().await.unwrap().base_offset, 7);
        assert_eq!(held.load(Ordering::SeqCst), 2);
        // One address: no timeout, the caller waits.
        let lone = crate::Client::connect(&paused).await.unwrap();
        let waited = tokio::time::timeout(
            Duration::from_millis(500),
            lone.publish("t", &[Record::from_value("x")]),
        )
        .await;
        assert!(waited.is_err(), "a lone node's publish is never timed out");
    }

    #[tokio::test]
    async fn retries_end_at_the_deadline_with_the_last_failure() {
        let (a, _) = node(Answer::NotLeader).await;
        let (b, _) = node(Answer::NotLeader).await;
        let c = crate::Client::builder(format!("{a},{b}"))
            .retry_deadline(Duration::from_millis(300))
            .connect()
            .await
            .unwrap();
        let e = c
            .publish("t", &[Record::from_value("v")])
            .await
            .unwrap_err();
        assert!(
            matches!(e, ClientError::Failover { attempts, .. } if attempts >= 2),
            "{e}"
        );
        assert_eq!(e.code(), Some(ErrorCode::NotLeader));
    }

    #[tokio::test]
    async fn one_address_is_never_retried() {
        let (a, seen) = node(Answer::NotLeader).await;
        let c = crate::Client::connect(&a).await.unwrap();
        let e = c
            .publish("t", &[Record::from_value("v")])
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::NotLeader));
        assert!(matches!(e, ClientError::Server { .. }));
        assert_eq!(seen.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn connecting_skips_addresses_that_refuse() {
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_addr = dead.local_addr().unwrap().to_string();
        drop(dead);
        let (leader, _) = node(Answer::Confirm).await;
        let c = crate::Client::connect(&format!("{dead_addr},{leader}"))
            .await
            .unwrap();
        c.publish("t", &[Record::from_value("v")]).await.unwrap();
        let none = crate::Client::connect(&dead_addr).await;
        assert!(matches!(none, Err(ClientError::Connect { .. })));
    }
}
