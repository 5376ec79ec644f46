//! Connection options: address, client name, connect timeout, frame limit and TLS.

use std::time::Duration;

use super::{Client, Result};

/// Largest frame the client reads by default.
pub(super) const CLIENT_FRAME_MAX: u32 = 256 << 20;

/// How to connect: built by [`Client::builder`], used by [`ConnectOptions::connect`].
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    pub(super) addr: String,
    pub(super) client_name: String,
    pub(super) connect_timeout: Option<Duration>,
    pub(super) frame_bytes_max: u32,
    pub(super) tls: Option<super::ClientTls>,
    pub(super) credentials: Option<super::Credentials>,
}

/// The builder of a [`Client`]: another name of [`ConnectOptions`].
pub type ClientBuilder = ConnectOptions;

impl ConnectOptions {
    /// Options to connect to `addr` (`host:port`) with the defaults: the client name
    /// `sluice-rust <version>`, no connect timeout, frames up to 256 MiB.
    pub fn new(addr: impl Into<String>) -> ConnectOptions {
        ConnectOptions {
            addr: addr.into(),
            client_name: format!("sluice-rust {}", env!("CARGO_PKG_VERSION")),
            connect_timeout: None,
            frame_bytes_max: CLIENT_FRAME_MAX,
            tls: None,
            credentials: None,
        }
    }

    /// The name the server logs for this connection (sent in the handshake).
    pub fn client_name(mut self, name: impl Into<String>) -> Self {
        self.client_name = name.into();
        self
    }

    /// The longest the TCP connect and the handshake may take together (none by default).
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

    /// The address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Connects and performs the version handshake.
    pub async fn connect(self) -> Result<Client> {
        Client::connect_with(self).await
    }
}
