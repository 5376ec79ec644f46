//! Failover across the nodes of a cluster: a client given several addresses connects to the
//! first that answers and, when a request is refused because that node does not lead what it
//! changes (`NotLeader`), is refused by a node shutting down (`ShuttingDown`), or is cut by a
//! lost connection, sends it again on the next address, round-robin, with a short backoff,
//! until [`crate::ConnectOptions::retry_deadline`].
//!
//! A node that does not answer within [`crate::ConnectOptions::request_timeout`] (a paused
//! process, a link cut without resets) is given up on as a lost connection would be.
//!
//! The native `NotLeader` names the leader's node id and cluster address, not its client
//! address, so it is not used: the next address is tried instead.
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

    /// The connection to use after `failed` failed: the current one if another call has
    /// already moved on to a live one, else a new one to the next address that answers.
    async fn switch(&self, f: &Failover, failed: &Arc<Conn>) -> Result<Arc<Conn>> {
        let mut at = f.at.lock().await;
        let current = self.conn();
        if !Arc::ptr_eq(&current, failed) && !current.is_closed() {
            return Ok(current);
        }
        let (conn, i) = connect_first(&f.opts, *at + 1).await?;
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
            let conn = match tokio::time::timeout_at(deadline, self.switch(&f, &failed)).await {
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
    #[derive(Clone, Copy)]
    enum Answer {
        NotLeader,
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
                tokio::spawn(serve(sock, answer, count));
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
