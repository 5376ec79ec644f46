//! TLS on every listener of a running `sluice serve`: the CLI, kcat (librdkafka) and curl
//! connect with the CA; plain text to a TLS port is refused without disturbing anyone; mutual
//! TLS accepts only certificates the client CA signed; SIGHUP reloads the certificate for new
//! connections while open ones carry on, and a broken reload keeps the previous one.
//! Certificates are made with the `openssl` command.

mod common;

use std::io::BufRead;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::certs::{ca, cert};
use common::kafka::{kcat, kcat_cmd, missing, run, start_kafka};
use common::*;

/// The certificates of the tests, or `None` (skipped outside CI) without openssl.
fn certificates() -> Option<(tempfile::TempDir, PathBuf)> {
    if Command::new("openssl").arg("version").output().is_err() {
        return missing("openssl");
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path().to_path_buf();
    ca(&d, "ca");
    cert(&d, "server", "ca");
    cert(&d, "server2", "ca");
    ca(&d, "clientca");
    cert(&d, "client", "clientca");
    cert(&d, "stranger", "ca");
    Some((t, d))
}

fn p(d: &Path, f: &str) -> String {
    d.join(f).display().to_string()
}

/// The CLI against `addr` with `tls` arguments before the command.
fn sluice(addr: &str, tls: &[String], args: &[&str]) -> Output {
    let out = Command::new(BIN)
        .arg("--addr")
        .arg(addr)
        .args(tls)
        .args(args)
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    out
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The serial of the certificate the server at `addr` presents now.
fn served_serial(addr: &str, ca_pem: &str) -> String {
    let s = Command::new("openssl")
        .args(["s_client", "-connect", addr, "-CAfile", ca_pem])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let mut x = Command::new("openssl")
        .args(["x509", "-noout", "-serial"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(x.stdin.as_mut().unwrap(), &s.stdout).unwrap();
    let out = x.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn serial_of(pem: &str) -> String {
    let o = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in", pem])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// curl of `url` trusting `ca` (`None`: plain HTTP): status line's code, or `None` when the
/// connection failed.
fn curl(url: &str, ca: Option<&str>) -> Option<String> {
    let mut c = Command::new("curl");
    c.args([
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "10",
    ]);
    if let Some(ca) = ca {
        c.args(["--cacert", ca]);
    }
    let o = c.arg(url).output().expect("curl");
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

#[test]
fn every_listener_speaks_tls_and_plain_text_is_refused_without_harm() {
    let Some((_certs, d)) = certificates() else {
        return;
    };
    let (_t, dir) = data_dir();
    let s = start_kafka(
        &dir,
        &[
            "--tls-cert",
            &p(&d, "server.pem"),
            "--tls-key",
            &p(&d, "server.key"),
        ],
    );
    let a = &s.server.addr;
    let tls = vec!["--tls-ca".to_string(), p(&d, "ca.pem")];
    ok(&sluice(a, &tls, &["topic", "create", "secure"]));
    // Plain text to the TLS port: a clear error, nothing created, the server still serves.
    let plain = sluice(a, &[], &["topic", "create", "plain"]);
    assert!(!plain.status.success());
    let err = String::from_utf8_lossy(&plain.stderr);
    assert!(err.contains("--tls-ca"), "{err}");
    // A CA that did not sign the server's certificate: refused by the client.
    let wrong = vec!["--tls-ca".to_string(), p(&d, "clientca.pem")];
    let o = sluice(a, &wrong, &["topic", "list"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("TLS"));
    ok(&sluice(a, &tls, &["publish", "secure", "one", "two"]));
    let listed = ok(&sluice(a, &tls, &["topic", "list"]));
    assert_eq!(listed.lines().collect::<Vec<_>>(), ["secure"]);

    let https = format!("https://{}/metrics", s.server.http);
    assert_eq!(curl(&https, Some(&p(&d, "ca.pem"))).as_deref(), Some("200"));
    assert_eq!(
        curl(&format!("http://{}/metrics", s.server.http), None),
        None
    );
    let metrics = Command::new("curl")
        .args(["-s", "--cacert", &p(&d, "ca.pem"), &https])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&metrics.stdout);
    for proto in ["native", "http"] {
        let key = format!("sluice_tls_handshake_failures_total{{protocol=\"{proto}\"}} ");
        let n: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix(&key))
            .unwrap_or_else(|| panic!("no {key} in {text}"))
            .parse()
            .unwrap();
        assert!(n >= 1.0, "{key}{n}");
    }

    let Some(k) = kcat() else { return };
    let ssl = ["-X", "security.protocol=ssl", "-X"];
    let ca = format!("ssl.ca.location={}", p(&d, "ca.pem"));
    let args = [&ssl[..], &[ca.as_str(), "-C", "-t", "secure", "-e", "-q"]].concat();
    let out = run(
        kcat_cmd(&k, None, &s.kafka, &args),
        None,
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one\ntwo\n");
    let args = [&ssl[..], &[ca.as_str(), "-P", "-t", "secure"]].concat();
    let out = run(
        kcat_cmd(&k, None, &s.kafka, &args),
        Some(b"three\n"),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plain = run(
        kcat_cmd(&k, None, &s.kafka, &["-L", "-m", "3"]),
        None,
        Duration::from_secs(30),
    );
    assert!(
        !plain.status.success(),
        "kcat in plain text must not get metadata"
    );
    let got = ok(&sluice(
        a,
        &tls,
        &["subscribe", "secure", "--from", "earliest", "--count", "3"],
    ));
    assert_eq!(got.lines().collect::<Vec<_>>(), ["one", "two", "three"]);
}

#[test]
fn mutual_tls_accepts_only_certificates_the_client_ca_signed() {
    let Some((_certs, d)) = certificates() else {
        return;
    };
    let (_t, dir) = data_dir();
    let config = format!(
        "tls_cert = {:?}\ntls_key = {:?}\ntls_client_ca = {:?}\n",
        p(&d, "server.pem"),
        p(&d, "server.key"),
        p(&d, "clientca.pem")
    );
    let server = start(&dir, Some(&config));
    let a = &server.addr;
    let base = ["--tls-ca".to_string(), p(&d, "ca.pem")];
    let with = |who: &str| {
        let mut v = base.to_vec();
        v.extend(["--tls-client-cert".into(), p(&d, &format!("{who}.pem"))]);
        v.extend(["--tls-client-key".into(), p(&d, &format!("{who}.key"))]);
        v
    };
    assert!(
        !sluice(a, &base, &["topic", "list"]).status.success(),
        "no client certificate"
    );
    let o = sluice(a, &with("stranger"), &["topic", "list"]);
    assert!(!o.status.success(), "a certificate another CA signed");
    ok(&sluice(a, &with("client"), &["topic", "create", "mutual"]));
    let listed = ok(&sluice(a, &with("client"), &["topic", "list"]));
    assert_eq!(listed.trim(), "mutual");
}

#[test]
fn sighup_reloads_the_certificate_for_new_connections_and_keeps_open_ones() {
    let Some((_certs, d)) = certificates() else {
        return;
    };
    let live = d.join("live");
    std::fs::create_dir(&live).unwrap();
    for f in ["pem", "key"] {
        std::fs::copy(
            d.join(format!("server.{f}")),
            live.join(format!("server.{f}")),
        )
        .unwrap();
    }
    let (_t, dir) = data_dir();
    let config = format!(
        "tls_cert = {:?}\ntls_key = {:?}\n",
        p(&live, "server.pem"),
        p(&live, "server.key")
    );
    let server = start(&dir, Some(&config));
    let a = &server.addr;
    let ca = p(&d, "ca.pem");
    let tls = vec!["--tls-ca".to_string(), ca.clone()];
    ok(&sluice(a, &tls, &["topic", "create", "reload"]));
    assert_eq!(served_serial(a, &ca), serial_of(&p(&d, "server.pem")));
    let subscriber = Command::new(BIN)
        .args([
            "--addr",
            a,
            "--tls-ca",
            &ca,
            "subscribe",
            "reload",
            "--from",
            "earliest",
            "--count",
            "2",
            "--wait-ms",
            "60000",
        ])
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    ok(&sluice(a, &tls, &["publish", "reload", "before"]));
    // The subscriber is connected (it printed the first message) before the reload.
    let mut subscriber = subscriber;
    let mut lines = std::io::BufReader::new(subscriber.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "before");
    for f in ["pem", "key"] {
        std::fs::copy(
            d.join(format!("server2.{f}")),
            live.join(format!("server.{f}")),
        )
        .unwrap();
    }
    server.signal(libc::SIGHUP);
    let want = serial_of(&p(&d, "server2.pem"));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while served_serial(a, &ca) != want {
        assert!(
            std::time::Instant::now() < deadline,
            "the new certificate is never served"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A broken file: the reload fails and the previous certificate stays.
    std::fs::write(live.join("server.pem"), "not a certificate").unwrap();
    server.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(served_serial(a, &ca), want);
    // The subscriber connected before both reloads still gets what is published after them.
    ok(&sluice(a, &tls, &["publish", "reload", "after"]));
    assert_eq!(lines.next().unwrap().unwrap(), "after");
    assert!(subscriber.wait().unwrap().success());
}

#[test]
fn plain_authentication_is_offered_over_tls() {
    let Some((_certs, d)) = certificates() else {
        return;
    };
    let (_t, dir) = data_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let off =
        sluice::security::Offline::open(std::sync::Arc::new(sluice::storage::StdFs), &dir).unwrap();
    let admin = sluice::security::UserOptions {
        superuser: true,
        ..Default::default()
    };
    off.security.add_user("admin", "pw-1", admin).unwrap();
    drop(off);
    let config = format!(
        "tls_cert = {:?}\ntls_key = {:?}\n",
        p(&d, "server.pem"),
        p(&d, "server.key")
    );
    let server = start(&dir, Some(&config));
    let tls = ["--tls-ca".to_string(), p(&d, "ca.pem")];
    let as_admin = |password: &str, mechanism: &str, args: &[&str]| {
        Command::new(BIN)
            .args([
                "--addr",
                &server.addr,
                "--user",
                "admin",
                "--auth-mechanism",
                mechanism,
            ])
            .args(&tls)
            .args(args)
            .env("SLUICE_PASSWORD", password)
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    ok(&as_admin("pw-1", "plain", &["topic", "create", "over-tls"]));
    let listed = ok(&as_admin("pw-1", "scram-sha-512", &["topic", "list"]));
    assert_eq!(listed.trim(), "over-tls");
    let wrong = as_admin("pw-2", "plain", &["topic", "list"]);
    assert!(!wrong.status.success());
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(err.contains("invalid credentials"), "{err}");
    // Without --user, over TLS: still refused.
    let o = sluice(&server.addr, &tls, &["topic", "list"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("authentication required"));
}
