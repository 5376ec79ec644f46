//! The registry of open connections, for the admin API's `GET /api/connections` and the
//! console: each connection's protocol, peer, client name, counts, and what it subscribes to.
//!
//! A connection registers when accepted ([`Metrics::open_connection`]) and leaves the registry
//! when its [`ConnectionGuard`] drops. Its counters are relaxed atomics of its own (no lock on
//! the hot path); its client name and subscriptions change rarely and sit behind a mutex.
//! A subscription is listed while its [`Subscribed`] guard lives.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use serde::Serialize;

use super::{ConnectionGauge, Metrics, Protocol};

/// Most subscriptions listed per connection; more are counted in `subscriptions_more`.
pub const SUBSCRIPTIONS_LISTED_MAX: usize = 256;
/// Longest client name kept (bytes); a longer one is cut at a character boundary.
pub const CLIENT_NAME_BYTES_MAX: usize = 256;

/// What a subscription of a connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionKind {
    /// A native subscription to a topic (every message), named or not.
    Topic,
    /// A native consumer of a queue.
    Queue,
    /// A native consumer of a topic's consumer group, or a Kafka consumer group joined.
    Group,
    /// A Kafka share group joined.
    ShareGroup,
}

/// One subscription as listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SubscriptionView {
    /// What it is.
    pub kind: SubscriptionKind,
    /// The topic, queue or group.
    pub name: String,
    /// More about it: the subscriber's name, the group's topic.
    pub detail: String,
}

/// A connection as the admin API lists it.
#[derive(Clone, Debug, Serialize)]
pub struct ConnectionView {
    /// Its id, unique while the broker runs.
    pub id: u64,
    /// Its listener's protocol.
    pub protocol: &'static str,
    /// The client's address.
    pub peer: String,
    /// The name the client gave (native `HELLO`, Kafka `client.id`); empty when none.
    pub client: String,
    /// The user it authenticated as; empty when anonymous.
    pub user: String,
    /// When it was accepted (milliseconds since the epoch).
    pub connected_ms: u64,
    /// Requests read from it.
    pub requests: u64,
    /// Bytes read from it.
    pub bytes_in: u64,
    /// Bytes written to it.
    pub bytes_out: u64,
    /// Its subscriptions, at most [`SUBSCRIPTIONS_LISTED_MAX`].
    pub subscriptions: Vec<SubscriptionView>,
    /// Subscriptions past the listed ones.
    pub subscriptions_more: usize,
}

/// One open connection's figures, shared by its tasks.
#[derive(Debug)]
pub struct Connection {
    id: u64,
    protocol: Protocol,
    peer: SocketAddr,
    connected_ms: u64,
    metrics: Arc<Metrics>,
    requests: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    named: Mutex<Named>,
}

#[derive(Debug, Default)]
struct Named {
    client: String,
    user: String,
    next_sub: u64,
    subs: BTreeMap<u64, SubscriptionView>,
}

/// The registry of open connections (one per broker, inside [`Metrics`]).
#[derive(Debug, Default)]
pub struct Connections {
    next_id: AtomicU64,
    open: Mutex<BTreeMap<u64, Weak<Connection>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Connections {
    /// How many subscriptions of open connections (of `protocol`, when given) are of `kind`
    /// and named `name`, without building the list.
    pub fn count_subscribed(
        &self,
        protocol: Option<Protocol>,
        kind: SubscriptionKind,
        name: &str,
    ) -> usize {
        let open: Vec<Arc<Connection>> = lock(&self.open)
            .values()
            .filter_map(Weak::upgrade)
            .filter(|c| protocol.map_or(true, |p| c.protocol == p))
            .collect();
        open.iter()
            .map(|c| {
                let n = lock(&c.named);
                n.subs
                    .values()
                    .filter(|s| s.kind == kind && s.name == name)
                    .count()
            })
            .sum()
    }

    /// The open connections, by id.
    pub fn list(&self) -> Vec<ConnectionView> {
        let open: Vec<Arc<Connection>> = lock(&self.open)
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        open.iter().map(|c| c.view()).collect()
    }
}

/// Registers a connection while it lives and counts it open; dropping it unregisters.
#[derive(Debug)]
pub struct ConnectionGuard {
    conn: Arc<Connection>,
    _open: ConnectionGauge,
}

impl std::ops::Deref for ConnectionGuard {
    type Target = Arc<Connection>;
    fn deref(&self) -> &Arc<Connection> {
        &self.conn
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        lock(&self.conn.metrics.connections.open).remove(&self.conn.id);
    }
}

impl Metrics {
    /// Counts an accepted connection from `peer` and registers it until the guard drops.
    pub fn open_connection(
        self: &Arc<Self>,
        protocol: Protocol,
        peer: SocketAddr,
    ) -> ConnectionGuard {
        let id = self.connections.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let conn = Arc::new(Connection {
            id,
            protocol,
            peer,
            connected_ms: now_ms(),
            metrics: self.clone(),
            requests: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            named: Mutex::default(),
        });
        lock(&self.connections.open).insert(id, Arc::downgrade(&conn));
        ConnectionGuard {
            _open: self.connection(protocol),
            conn,
        }
    }

    /// The registry of open connections.
    pub fn connections(&self) -> &Connections {
        &self.connections
    }
}

/// Lists a subscription of its connection while it lives.
#[derive(Debug)]
pub struct Subscribed {
    conn: Arc<Connection>,
    id: u64,
}

impl Drop for Subscribed {
    fn drop(&mut self) {
        lock(&self.conn.named).subs.remove(&self.id);
    }
}

impl Connection {
    /// Its id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Counts bytes read from it (and in the protocol's totals).
    pub fn received(&self, bytes: usize) {
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
        self.metrics.received(self.protocol, bytes);
    }

    /// Counts bytes written to it (and in the protocol's totals).
    pub fn sent(&self, bytes: usize) {
        self.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
        self.metrics.sent(self.protocol, bytes);
    }

    /// Counts a request of `kind` read from it (and in the protocol's totals).
    pub fn request(&self, kind: usize) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.metrics.request(self.protocol, kind);
    }

    /// Sets the name the client gave, when it differs (cut to [`CLIENT_NAME_BYTES_MAX`]).
    pub fn set_client(&self, name: &str) {
        let mut n = lock(&self.named);
        if n.client != name {
            let mut end = name.len().min(CLIENT_NAME_BYTES_MAX);
            while !name.is_char_boundary(end) {
                end -= 1;
            }
            n.client = name[..end].to_string();
        }
    }

    /// Sets the user the connection authenticated as.
    pub fn set_user(&self, user: &str) {
        lock(&self.named).user = user.to_string();
    }

    /// Lists a subscription until the returned guard drops.
    pub fn subscribe(
        self: &Arc<Self>,
        kind: SubscriptionKind,
        name: &str,
        detail: &str,
    ) -> Subscribed {
        let mut n = lock(&self.named);
        n.next_sub += 1;
        let id = n.next_sub;
        let view = SubscriptionView {
            kind,
            name: name.to_string(),
            detail: detail.to_string(),
        };
        n.subs.insert(id, view);
        Subscribed {
            conn: self.clone(),
            id,
        }
    }

    fn view(&self) -> ConnectionView {
        let n = lock(&self.named);
        ConnectionView {
            id: self.id,
            protocol: self.protocol.name(),
            peer: self.peer.to_string(),
            client: n.client.clone(),
            user: n.user.clone(),
            connected_ms: self.connected_ms,
            requests: self.requests.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            subscriptions: n
                .subs
                .values()
                .take(SUBSCRIPTIONS_LISTED_MAX)
                .cloned()
                .collect(),
            subscriptions_more: n.subs.len().saturating_sub(SUBSCRIPTIONS_LISTED_MAX),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_listed_with_its_subscriptions_while_it_lives() {
        let m = Arc::new(Metrics::default());
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let c = m.open_connection(Protocol::Native, peer);
        c.set_client("billing-app");
        c.request(3);
        c.received(10);
        c.sent(7);
        let sub = c.subscribe(SubscriptionKind::Queue, "jobs", "");
        let other = m.open_connection(Protocol::Kafka, peer);
        let list = m.connections().list();
        assert_eq!(list.len(), 2);
        let v = &list[0];
        assert_eq!((v.protocol, v.client.as_str()), ("native", "billing-app"));
        assert_eq!((v.requests, v.bytes_in, v.bytes_out), (1, 10, 7));
        assert_eq!(v.subscriptions[0].name, "jobs");
        drop(sub);
        assert!(m.connections().list()[0].subscriptions.is_empty());
        drop(c);
        let list = m.connections().list();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].id, other.id());
        assert_eq!(
            m.connections_open[Protocol::Native as usize].load(Ordering::Relaxed),
            0
        );
    }

    #[test]
    fn a_long_client_name_is_cut_at_a_character_boundary() {
        let m = Arc::new(Metrics::default());
        let c = m.open_connection(Protocol::Kafka, "127.0.0.1:1".parse().unwrap());
        let name = "é".repeat(CLIENT_NAME_BYTES_MAX);
        c.set_client(&name);
        let got = &m.connections().list()[0].client;
        assert!(got.len() <= CLIENT_NAME_BYTES_MAX && got.chars().all(|ch| ch == 'é'));
    }
}
