//! Connection options: addresses, client name, connect timeout, frame limit, TLS, and how long
//! requests are retried on the other nodes of a cluster.

use std::time::Duration;

use super::{Client, Result};

/// Largest frame the client reads by default.
pub(super) const CLIENT_FRAME_MAX: u32 = 256 << 20;

/// How long, by default, a request refused by a node that does not lead (`NotLeader`) or cut
/// by a lost connection is retried on the other addresses (a failover takes about 1 s).
pub const RETRY_DEADLINE_DEFAULT: Duration = Duration::from_secs(10);

/// How long, by default, a client of several addresses waits for one node's reply to a
/// request it may send to another node, before it gives up on that node (a paused process, a
/// link cut without resets) and sends the request to the next one.
pub const REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);

/// How to connect: built by [`Client::builder`], used by [`ConnectOptions::connect`].
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    pub(super) addrs: Vec<String>,
    pub(super) client_name: String,
    pub(super) connect_timeout: Option<Duration>,
    pub(super) frame_bytes_max: u32,
    pub(super) tls: Option<super::ClientTls>,
    pub(super) credentials: Option<super::Credentials>,
    pub(super) retry_deadline: Duration,
    pub(super) request_timeout: Duration,
}

/// The builder of a [`Client`]: another name of [`ConnectOptions`].
pub type ClientBuilder = ConnectOptions;

/// The addresses of a comma-separated list (`host:port,host:port`), blanks ignored.
fn split_addrs(list: &str) -> Vec<String> {
    let addrs: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(String::from)
        .collect();
    if addrs.is_empty() {
        // Kept as given, so that connecting reports it.
        return vec![list.to_string()];
    }
    addrs
}

impl ConnectOptions {
    /// Options to connect to `addr` (`host:port`, or several comma-separated: the nodes of a
    /// cluster, any of which will do) with the defaults: the client name
    /// `sluice-rust <version>`, no connect timeout (with several addresses, each gets
    /// [`crate::ADDR_CONNECT_TIMEOUT`]), frames up to 256 MiB, retries for
    /// [`RETRY_DEADLINE_DEFAULT`] (with several addresses).
    pub fn new(addr: impl Into<String>) -> ConnectOptions {
        ConnectOptions {
            addrs: split_addrs(&addr.into()),
            client_name: format!("sluice-rust {}", env!("CARGO_PKG_VERSION")),
            connect_timeout: None,
            frame_bytes_max: CLIENT_FRAME_MAX,
            tls: None,
            credentials: None,
            retry_deadline: RETRY_DEADLINE_DEFAULT,
            request_timeout: REQUEST_TIMEOUT_DEFAULT,
        }
    }

    /// The addresses to try, in order (replacing those given to [`ConnectOptions::new`]):
    /// connecting takes the first that answers; with more than one, a request refused with
    /// `NotLeader` or cut by a lost connection is retried on the next ones (see
    /// [`ConnectOptions::retry_deadline`]).
    pub fn addrs<I, S>(mut self, addrs: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let addrs: Vec<String> = addrs.into_iter().map(Into::into).collect();
        if !addrs.is_empty() {
            self.addrs = addrs;
        }
        self
    }

    /// The name the server logs for this connection (sent in the handshake).
    pub fn client_name(mut self, name: impl Into<String>) -> Self {
        self.client_name = name.into();
        self
    }

    /// The longest the TCP connect and the handshake to one address may take together (none
    /// by default with one address, [`crate::ADDR_CONNECT_TIMEOUT`] with several).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// The largest frame this client reads (a larger one closes the connection).
    pub fn frame_bytes_max(mut self, max: u32) -> Self {
        self.frame_bytes_max = max;
        self
    }

    /// Speaks TLS to the server (whose listeners all speak it once it has a certificate).
    pub fn tls(mut self, tls: super::ClientTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Authenticates after the handshake (required by a server that has users).
    pub fn credentials(mut self, credentials: super::Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// With several addresses: how long a request refused with `NotLeader` (or
    /// `ShuttingDown`), or cut by a lost connection, is retried on the next addresses, with a
    /// short backoff, before its last failure is returned ([`RETRY_DEADLINE_DEFAULT`] by
    /// default; zero: never retried). A publish retried after a lost connection may be
    /// appended twice (at-least-once); see the crate documentation.
    pub fn retry_deadline(mut self, deadline: Duration) -> Self {
        self.retry_deadline = deadline;
        self
    }

    /// With several addresses: how long one node may take to answer a request that may go to
    /// another (a publish, topic administration, figures, the cluster status) before it is
    /// given up on ([`crate::ClientError::TimedOut`]) and the request sent to the next address
    /// ([`REQUEST_TIMEOUT_DEFAULT`] by default). Given up on, a publish may still be appended
    /// by the silent node: at-least-once, as after a lost connection. One address: no timeout.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The first address.
    pub fn addr(&self) -> &str {
        &self.addrs[0]
    }

    /// Every address, in the order they are tried.
    pub fn addr_list(&self) -> &[String] {
        &self.addrs
    }

    /// True when requests are retried on other addresses: several addresses and a retry
    /// deadline above zero.
    pub fn fails_over(&self) -> bool {
        self.addrs.len() > 1 && !self.retry_deadline.is_zero()
    }

    /// Connects (to the first address that answers) and performs the version handshake.
    pub async fn connect(self) -> Result<Client> {
        Client::connect_with(self).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_of_addresses_is_split_on_commas() {
        let o = ConnectOptions::new("a:1, b:2,,c:3 ");
        assert_eq!(o.addr_list(), ["a:1", "b:2", "c:3"]);
        assert_eq!(o.addr(), "a:1");
        assert!(o.fails_over());
        let one = ConnectOptions::new("a:1");
        assert_eq!(one.addr_list(), ["a:1"]);
        assert!(!one.fails_over());
        assert_eq!(ConnectOptions::new("").addr_list(), [""]);
        let set = ConnectOptions::new("x:1").addrs(["p:1", "q:2"]);
        assert_eq!(set.addr_list(), ["p:1", "q:2"]);
        assert!(!set.retry_deadline(Duration::ZERO).fails_over());
    }
}
