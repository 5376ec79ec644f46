//! TLS between nodes: every peer connection (Raft messages, hellos, forwarded proposals, calls)
//! encrypted, and both sides authenticated by a certificate of the cluster's CA.
//!
//! A node given a [`PeerTls`] speaks only TLS on its cluster listener and to its peers:
//! - as the accepting side it presents its certificate and requires the caller's, signed by
//!   the cluster's CA (mutual TLS); a caller without one, or speaking plain frames, is closed
//!   before any frame of it is read;
//! - as the calling side it checks the peer's certificate against the same CA and against the
//!   host it dialled (the `HOST` of the peer's `HOST:PORT`, a name or an IP address), and
//!   presents its own.
//!
//! The greeting ([`greeting`](super::greeting)) still follows the handshake, inside TLS: the
//! certificate says the peer is a node of the cluster's CA, the greeting which node and which
//! cluster it means. The accepting side then checks that the caller's certificate names the
//! host of the node it greets as ([`check_name`], when that node's address is known), so a
//! node holding its own certificate cannot greet as another.
//!
//! The configurations are built by the application (from PEM files) and may be replaced while
//! the node runs ([`PeerTls::replace`], a certificate renewed): connections made or accepted
//! from then on use the new ones, open connections keep theirs.

use std::io;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::server::ParsedCertificate;
use tokio_rustls::rustls::{ClientConfig, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Longest wait for a TLS handshake between nodes.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The reading half of a peer connection: plain TCP or TLS.
pub type PeerRead = Box<dyn AsyncRead + Send + Unpin>;
/// The writing half of a peer connection: plain TCP or TLS.
pub type PeerWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// The node's TLS toward its peers: the configuration its listener accepts with (its
/// certificate, the CA callers must be signed by) and the one it connects with (the CA peers
/// must be signed by, its own certificate).
pub struct PeerTls {
    current: RwLock<(Arc<ServerConfig>, Arc<ClientConfig>)>,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTls").finish_non_exhaustive()
    }
}

impl PeerTls {
    /// TLS with `server` for accepted connections and `client` for outgoing ones. Both should
    /// authenticate the other side: `server` with a client certificate verifier, `client` with
    /// a certificate of its own.
    pub fn new(server: Arc<ServerConfig>, client: Arc<ClientConfig>) -> Arc<PeerTls> {
        Arc::new(PeerTls {
            current: RwLock::new((server, client)),
        })
    }

    /// Replaces both configurations for connections from now on.
    pub fn replace(&self, server: Arc<ServerConfig>, client: Arc<ClientConfig>) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = (server, client);
    }

    fn configs(&self) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// An accepted connection: its halves, and the caller's certificate when through TLS.
pub(super) type Accepted = (PeerRead, PeerWrite, Option<CertificateDer<'static>>);

/// Halves of an accepted connection, through the TLS handshake when `tls` is set (then with
/// the caller's certificate, which the handshake checked against the cluster's CA).
pub(super) async fn accepted(stream: TcpStream, tls: Option<&PeerTls>) -> io::Result<Accepted> {
    let Some(tls) = tls else {
        if first_bytes(&stream)
            .await
            .is_some_and(|b| b[0] == TLS_HANDSHAKE_RECORD)
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the peer speaks TLS, and this node was started without it (start every \
                 node with the same --cluster-tls-* files)",
            ));
        }
        let (r, w) = stream.into_split();
        return Ok((Box::new(r), Box::new(w), None));
    };
    if first_bytes(&stream)
        .await
        .is_some_and(|b| super::frame::starts_with_magic(&b))
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the peer speaks without TLS, and this node's cluster listener requires it \
             (start every node with the same --cluster-tls-* files)",
        ));
    }
    let acceptor = TlsAcceptor::from(tls.configs().0);
    let stream = within(acceptor.accept(stream)).await?;
    let cert = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|c| c.clone().into_owned());
    let (r, w) = tokio::io::split(stream);
    Ok((Box::new(r), Box::new(w), cert))
}

/// Checks that `cert` (a caller's, already checked against the CA) names the host of `addr`
/// (`HOST:PORT`, the cluster address of the node the caller greeted as), as a caller checks
/// the certificate of the node it dials: so a node cannot greet as another.
pub(super) fn check_name(cert: &CertificateDer<'_>, addr: &str) -> Result<(), String> {
    let name = server_name(addr).map_err(|e| e.to_string())?;
    let parsed = ParsedCertificate::try_from(cert).map_err(|e| e.to_string())?;
    tokio_rustls::rustls::client::verify_server_name(&parsed, &name).map_err(|e| e.to_string())
}

/// Halves of a connection made to `addr` (`HOST:PORT`), through the TLS handshake when `tls`
/// is set: the peer's certificate must name `HOST`.
pub(super) async fn connected(
    stream: TcpStream,
    addr: &str,
    tls: Option<&PeerTls>,
) -> io::Result<(PeerRead, PeerWrite)> {
    let Some(tls) = tls else {
        let (r, w) = stream.into_split();
        return Ok((Box::new(r), Box::new(w)));
    };
    let name = server_name(addr)?;
    let connector = TlsConnector::from(tls.configs().1);
    let stream = within(connector.connect(name, stream)).await?;
    let (r, w) = tokio::io::split(stream);
    Ok((Box::new(r), Box::new(w)))
}

/// The host of `HOST:PORT` (`[v6]:PORT` too) as the name a peer's certificate must hold.
pub(super) fn server_name(addr: &str) -> io::Result<ServerName<'static>> {
    let host = match addr.rsplit_once(':') {
        Some((host, _port)) => host.trim_start_matches('[').trim_end_matches(']'),
        None => addr,
    };
    ServerName::try_from(host.to_string()).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{host:?} cannot be checked against a certificate: {e}"),
        )
    })
}

async fn within<T>(handshake: impl std::future::Future<Output = io::Result<T>>) -> io::Result<T> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(io::Error::new(e.kind(), format!("TLS handshake: {e}"))),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no TLS handshake within {HANDSHAKE_TIMEOUT:?}"),
        )),
    }
}

/// The first byte of a TLS handshake record (a ClientHello).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// The caller's first four bytes, left in the socket (`None` if they do not come in time):
/// a plain frame where TLS is expected, or a TLS record where plain frames are, gets a
/// message of its own, as it means nodes started with different settings.
async fn first_bytes(stream: &TcpStream) -> Option<[u8; 4]> {
    let mut first = [0u8; 4];
    let peeked = tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await;
    matches!(peeked, Ok(Ok(4))).then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_of_an_address_is_the_name_checked() {
        let name = |a| server_name(a).map(|n| n.to_str().into_owned());
        assert_eq!(name("127.0.0.1:7100").unwrap(), "127.0.0.1");
        assert_eq!(name("[::1]:7100").unwrap(), "::1");
        assert_eq!(name("node-2.example:7100").unwrap(), "node-2.example");
        assert!(name("not a host:1").is_err());
    }
}
