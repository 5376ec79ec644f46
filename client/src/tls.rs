//! TLS of the client: the CA that signed the server's certificate (PEM) and, for a server that
//! asks for client certificates, this client's certificate and key. Built once, shared by
//! every connection made with the same [`ConnectOptions`](super::ConnectOptions).

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use super::{ClientError, Result};

/// How the client speaks TLS.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<ClientConfig>,
    server_name: Option<String>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

fn tls_error(what: &Path, e: impl std::fmt::Display) -> ClientError {
    ClientError::Tls(format!("{}: {e}", what.display()))
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_error(path, e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| tls_error(path, e))?;
    if certs.is_empty() {
        return Err(tls_error(path, "no certificate in it"));
    }
    Ok(certs)
}

impl ClientTls {
    /// Trusts the CA certificates of `ca` (PEM); with `identity`, presents that certificate
    /// chain and key (PEM) to a server that asks for one.
    pub fn from_files(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<ClientTls> {
        let mut roots = RootCertStore::empty();
        for c in certs(ca)? {
            roots.add(c).map_err(|e| tls_error(ca, e))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Tls(e.to_string()))?
            .with_root_certificates(roots);
        let config = match identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let k = PrivateKeyDer::from_pem_file(key).map_err(|e| tls_error(key, e))?;
                builder
                    .with_client_auth_cert(certs(cert)?, k)
                    .map_err(|e| tls_error(cert, e))?
            }
        };
        Ok(ClientTls {
            config: Arc::new(config),
            server_name: None,
        })
    }

    /// The name the server's certificate must carry (by default the host of the address).
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// The connector and the name to check for a connection to `addr` (`host:port`).
    pub(super) fn connector(&self, addr: &str) -> Result<(TlsConnector, ServerName<'static>)> {
        let host = match &self.server_name {
            Some(n) => n.clone(),
            None => host_of(addr).to_string(),
        };
        let name = ServerName::try_from(host.clone())
            .map_err(|e| ClientError::Tls(format!("server name {host:?}: {e}")))?;
        Ok((TlsConnector::from(self.config.clone()), name))
    }
}

/// The host of `host:port` (`[v6]:port` too).
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_host_of_an_address_is_its_name_or_ip() {
        assert_eq!(super::host_of("broker1.example:7450"), "broker1.example");
        assert_eq!(super::host_of("127.0.0.1:7450"), "127.0.0.1");
        assert_eq!(super::host_of("[::1]:7450"), "::1");
    }
}
