//! `--cluster-tls-cert`, `--cluster-tls-key`, `--cluster-tls-ca`: TLS between the nodes of a
//! cluster, built from PEM files into the replication layer's [`PeerTls`] and reloaded from
//! the same files on SIGHUP (a renewed certificate), as the client listeners' TLS is.
//!
//! Every node presents its certificate and requires its peer's, both signed by the cluster's
//! CA (mutual TLS); a node checks a peer's certificate against the host it dials (the `HOST`
//! of the peer's `HOST:PORT` in `--cluster`, a name or an IP address). Whoever holds a
//! certificate of that CA is taken for a node of the cluster: the CA should sign the cluster's
//! nodes only, not the clients of the broker.

use std::path::PathBuf;
use std::sync::Arc;

use sluice_replication::net::PeerTls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::PrivateKeyDer;
use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::server::tls::{self, TlsError, TlsFiles};

/// The PEM files of a node's TLS toward its peers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterTlsFiles {
    /// This node's certificate chain, leaf first: it must name the host peers dial.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// The cluster's CA: every peer's certificate must be signed by it.
    pub ca: PathBuf,
}

/// Builds both configurations from `files`.
fn build(files: &ClusterTlsFiles) -> Result<(Arc<ServerConfig>, Arc<ClientConfig>), TlsError> {
    let server = tls::build(&TlsFiles {
        cert: files.cert.clone(),
        key: files.key.clone(),
        client_ca: Some(files.ca.clone()),
    })?;
    let mut roots = RootCertStore::empty();
    for c in tls::certs(&files.ca)? {
        roots.add(c).map_err(|e| tls::file_error(&files.ca, e))?;
    }
    let chain = tls::certs(&files.cert)?;
    let key =
        PrivateKeyDer::from_pem_file(&files.key).map_err(|e| tls::file_error(&files.key, e))?;
    let client = ClientConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok((Arc::new(server), Arc::new(client)))
}

/// Loads `files`; fails on anything unusable, so a node never joins its peers without the TLS
/// it was asked for.
pub fn load(files: &ClusterTlsFiles) -> Result<Arc<PeerTls>, TlsError> {
    let (server, client) = build(files)?;
    Ok(PeerTls::new(server, client))
}

/// Reloads `files` into `tls` on every SIGHUP until the process ends (a task of its own);
/// a reload that fails is logged and the previous configuration stays.
pub async fn reload_on_sighup(files: ClusterTlsFiles, tls: Arc<PeerTls>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP: cluster TLS files will not be reloaded");
        return;
    };
    while hup.recv().await.is_some() {
        match build(&files) {
            Ok((server, client)) => {
                tls.replace(server, client);
                tracing::info!(cert = %files.cert.display(), "cluster TLS files reloaded");
            }
            Err(e) => tracing::error!("cluster TLS reload failed, keeping the previous files: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_are_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let files = ClusterTlsFiles {
            cert: dir.path().join("node.pem"),
            key: dir.path().join("node.key"),
            ca: dir.path().join("ca.pem"),
        };
        let err = load(&files).unwrap_err().to_string();
        assert!(err.contains("node.pem"), "{err}");
        std::fs::write(&files.cert, "not a certificate").unwrap();
        let err = load(&files).unwrap_err().to_string();
        assert!(err.contains("no certificate"), "{err}");
    }
}
