//! TLS between the nodes of a cluster (`--cluster-tls-cert`, `--cluster-tls-key`,
//! `--cluster-tls-ca`): three real `sluice serve` processes whose cluster listeners speak only
//! mutual TLS with certificates of the cluster's CA.
//!
//! - The cluster forms, replicates and fails over through TLS.
//! - Each node has its own loopback address (127.0.0.N) and a certificate naming only it.
//! - A caller of a node's cluster listener that speaks plain frames, presents no certificate,
//!   presents one of another CA, or greets as node 2 with node 3's certificate gets no answer
//!   to its greeting; one greeting as node 2 with node 2's certificate does (the probe's own
//!   check).
//! - A node restarted without TLS, or with a certificate of another CA, falls behind: its
//!   peers neither send it entries nor take its messages. Restarted with its own
//!   certificate, it catches up.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::certs::{ca, cert, cert_for};
use common::cluster::{client_of, cluster_nodes, leader_of, live_addrs, statuses, Node, STEP};
use common::kafka::missing;
use sluice::client::{Client, SubscribeOptions};
use sluice::protocol::{LogSettings, Start, Target};
use sluice::replication::net::frame::{self, Kind};
use sluice::replication::net::greeting::Greeting;
use sluice::replication::net::ClusterId;
use sluice::storage::Record;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

const PARTITION: &str = "t/events/0";

/// The cluster's CA and a certificate for each of three nodes; another CA and a certificate
/// it signed (`rogue`). `None` (skipped outside CI) without openssl.
fn certificates() -> Option<tempfile::TempDir> {
    if Command::new("openssl").arg("version").output().is_err() {
        return missing("openssl");
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ca(d, "ca");
    ca(d, "other-ca");
    for n in 1..=3 {
        cert_for(d, &format!("node-{n}"), "ca", &format!("IP:127.0.0.{n}"));
    }
    cert(d, "rogue", "other-ca");
    Some(t)
}

/// `sluice serve` arguments for TLS between nodes with certificate `name` and CA `ca`.
fn tls_args(d: &Path, name: &str, ca: &str) -> Vec<String> {
    let path = |f: String| d.join(f).display().to_string();
    vec![
        "--cluster-tls-cert".into(),
        path(format!("{name}.pem")),
        "--cluster-tls-key".into(),
        path(format!("{name}.key")),
        "--cluster-tls-ca".into(),
        path(format!("{ca}.pem")),
    ]
}

/// How a probe of a cluster listener connects.
enum Probe<'a> {
    Plain,
    /// TLS, trusting CA `ca`, presenting certificate `cert` if any.
    Tls {
        ca: &'a str,
        cert: Option<&'a str>,
    },
}

fn client_config(d: &Path, ca: &str, cert: Option<&str>) -> ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(d.join(format!("{ca}.pem"))).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    match cert {
        None => builder.with_no_client_auth(),
        Some(name) => {
            let chain = CertificateDer::pem_file_iter(d.join(format!("{name}.pem")))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let key = PrivateKeyDer::from_pem_file(d.join(format!("{name}.key"))).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    }
}

/// Sends node 1 at `addr` a greeting from node `from` of `cluster`; the bytes it answers
/// within a few seconds (none: it closed the connection or said nothing).
async fn probe(d: &Path, addr: &str, cluster: [u8; 16], from: u64, how: Probe<'_>) -> Vec<u8> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let hello = Greeting {
        cluster: ClusterId(cluster),
        from,
        to: 1,
    };
    let bytes = frame::encode(Kind::Greeting, 0, &hello.encode()).unwrap();
    match how {
        Probe::Plain => exchange(tcp, &bytes).await,
        Probe::Tls { ca, cert } => {
            let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(d, ca, cert)));
            let name = ServerName::try_from("127.0.0.1").unwrap();
            match connector.connect(name, tcp).await {
                Ok(tls) => exchange(tls, &bytes).await,
                Err(_) => Vec::new(),
            }
        }
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, bytes: &[u8]) -> Vec<u8> {
    if s.write_all(bytes).await.is_err() || s.flush().await.is_err() {
        return Vec::new();
    }
    let mut got = vec![0u8; 256];
    match tokio::time::timeout(Duration::from_secs(3), s.read(&mut got)).await {
        Ok(Ok(n)) => got[..n].to_vec(),
        _ => Vec::new(),
    }
}

async fn publish(client: &Client, prefix: &str, count: usize) {
    let records: Vec<Record> = (0..count)
        .map(|i| Record::from_value(format!("{prefix}-{i}").into_bytes()))
        .collect();
    let target = Target::Topic("events".into());
    client.publish_to(target, &records).await.unwrap();
}

/// The leader's last index of `group` and what it knows follower `node` has of it.
async fn follower_of(nodes: &[Node], group: &str, node: u64) -> Option<(u64, Option<u64>)> {
    statuses(nodes).await.iter().find_map(|s| {
        let g = s
            .groups
            .iter()
            .find(|g| g.group == group && g.leader == Some(s.node_id))?;
        let f = g.followers.iter().find(|f| f.node == node)?;
        Some((g.last_index?, f.matched))
    })
}

/// Waits until follower `node` of `group` has everything its leader has.
async fn wait_caught_up(nodes: &[Node], group: &str, node: u64) {
    let deadline = Instant::now() + STEP;
    loop {
        let seen = follower_of(nodes, group, node).await;
        if seen.is_some_and(|(last, matched)| matched == Some(last)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{group}: node {node} never caught up: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Restarts node 3 with `args`, publishes, and checks that node 3 does not get what was
/// published meanwhile.
async fn node_3_is_kept_out(nodes: &mut [Node], spec: &str, args: Vec<String>, prefix: &str) {
    nodes[2].kill9();
    nodes[2].args = args;
    nodes[2].start(spec);
    let client = client_of(&live_addrs(&nodes[..2])).await;
    publish(&client, prefix, 50).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (last, matched) = follower_of(&nodes[..2], PARTITION, 3)
        .await
        .expect("the partition's leader among nodes 1 and 2");
    assert!(
        matched.map_or(true, |m| m < last),
        "node 3 ({prefix}) got the leader's entries: {matched:?} of {last}"
    );
    let own = statuses(&nodes[2..]).await;
    let meta = own[0].groups.iter().find(|g| g.group == "meta").unwrap();
    // No leader among its peers reaches it (restarted quickly, it may still take itself for
    // the leader it was, unable to commit anything).
    assert!(
        meta.leader.map_or(true, |l| l == 3),
        "node 3 ({prefix}) hears a metadata leader: {meta:?}"
    );
}

async fn read_all(client: &Client, count: usize) -> Vec<String> {
    let opts = SubscribeOptions {
        start: Start::Earliest,
        ..Default::default()
    };
    let mut sub = client.subscribe("events", opts).await.unwrap();
    let mut got = Vec::new();
    while got.len() < count {
        match tokio::time::timeout(STEP, sub.next()).await {
            Ok(Some(Ok(m))) => got.push(String::from_utf8_lossy(&m.record.value).into_owned()),
            other => panic!("reading after {} messages: {other:?}", got.len()),
        }
    }
    got
}

fn named(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_speak_mutual_tls_and_keep_out_peers_without_the_clusters_certificate() {
    let Some(certs) = certificates() else { return };
    let d = certs.path();
    let root = tempfile::tempdir().unwrap();
    let (mut nodes, spec) = cluster_nodes(root.path(), 3);
    // Node N's cluster listener on 127.0.0.N, which only its certificate names.
    let spec = (1..=3).fold(spec, |s, n| {
        s.replace(&format!("{n}@127.0.0.1:"), &format!("{n}@127.0.0.{n}:"))
    });
    for n in nodes.iter_mut() {
        n.args = tls_args(d, &format!("node-{}", n.id), "ca");
        n.start(&spec);
    }
    let client = client_of(&live_addrs(&nodes)).await;
    client
        .create_topic("events", LogSettings::default())
        .await
        .unwrap();
    publish(&client, "a", 50).await;
    leader_of(&nodes, PARTITION).await;
    wait_caught_up(&nodes, PARTITION, 3).await;

    // Probes of node 1's cluster listener: only a node's certificate gets an answer.
    let status = client.cluster_status().await.unwrap();
    let node_1 = spec.split(',').next().unwrap().split_once('@').unwrap().1;
    let cluster = status.cluster_id;
    let ca = "ca";
    let answered = probe(d, node_1, cluster, 2, Probe::Plain).await;
    assert!(answered.is_empty(), "plain frames answered: {answered:?}");
    let anonymous = Probe::Tls { ca, cert: None };
    let answered = probe(d, node_1, cluster, 2, anonymous).await;
    assert!(answered.is_empty(), "no certificate answered: {answered:?}");
    let rogue = Probe::Tls {
        ca,
        cert: Some("rogue"),
    };
    let answered = probe(d, node_1, cluster, 2, rogue).await;
    assert!(answered.is_empty(), "another CA's certificate answered");
    let node_3 = Probe::Tls {
        ca,
        cert: Some("node-3"),
    };
    let answered = probe(d, node_1, cluster, 2, node_3).await;
    assert!(
        answered.is_empty(),
        "node 3's certificate greeting as node 2 answered"
    );
    let node_2 = Probe::Tls {
        ca,
        cert: Some("node-2"),
    };
    let answered = probe(d, node_1, cluster, 2, node_2).await;
    assert!(
        answered.len() >= frame::HEADER_BYTES && answered[..4] == *b"SLRN",
        "a node's certificate got no greeting: {answered:?}"
    );

    // Node 3 without TLS, then with a certificate of another CA (trusting the cluster's):
    // kept out both times.
    node_3_is_kept_out(&mut nodes, &spec, Vec::new(), "b").await;
    let rogue_args = tls_args(d, "rogue", "ca");
    node_3_is_kept_out(&mut nodes, &spec, rogue_args, "c").await;

    // With its own certificate it catches up, and the cluster fails over through TLS.
    nodes[2].kill9();
    nodes[2].args = tls_args(d, "node-3", "ca");
    nodes[2].start(&spec);
    wait_caught_up(&nodes, PARTITION, 3).await;
    let leader = leader_of(&nodes, PARTITION).await;
    nodes[leader].kill9();
    let client = client_of(&live_addrs(&nodes)).await;
    publish(&client, "d", 10).await;
    let want = [
        named("a", 50),
        named("b", 50),
        named("c", 50),
        named("d", 10),
    ]
    .concat();
    assert_eq!(read_all(&client, want.len()).await, want);
}
