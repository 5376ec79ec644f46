//! Users, authentication, access rules and quotas on the native protocol, through the real
//! binary: `sluice user` and `sluice acl` offline and online, `--user` on client commands,
//! and the Rust client's credentials.

mod common;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{cli, cli_ok, data_dir, start, BIN};
use sluice::client::{Client, ClientError, Credentials, Record, Start, SubscribeOptions};
use sluice::protocol::{ErrorCode, LogSettings};

const ADMIN_PW: &str = "admin-pw";
/// `admin:admin-pw` in base64, for `GET /metrics` once users exist.
const ADMIN_BASIC: &str = "Authorization: Basic YWRtaW46YWRtaW4tcHc=\r\n";

/// Runs the CLI as `user` with `password` (SLUICE_PASSWORD).
fn as_user(addr: &str, user: &str, password: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut c = Command::new(BIN);
    c.args(["--user", user])
        .args(args)
        .env("SLUICE_ADDR", addr)
        .env("SLUICE_PASSWORD", password)
        .env("RUST_LOG", "warn");
    let stdin = stdin.unwrap_or("").as_bytes();
    common::kafka::run(c, Some(stdin), Duration::from_secs(60))
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn refused(o: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "succeeded, expected {needle:?}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
}

fn admin(addr: &str, args: &[&str], stdin: Option<&str>) -> String {
    ok(&as_user(addr, "admin", ADMIN_PW, args, stdin))
}

async fn connect(addr: &str, user: &str, pw: &str) -> Result<Client, ClientError> {
    Client::builder(addr)
        .credentials(Credentials::new(user, pw))
        .connect()
        .await
}

/// The refusal of a connect (`Client` has no `Debug` for `unwrap_err`).
fn failed(r: Result<Client, ClientError>) -> ClientError {
    match r {
        Ok(_) => panic!("connected, expected a refusal"),
        Err(e) => e,
    }
}

fn metric(http: &str, key: &str) -> f64 {
    let (status, _, text) = common::http::request_with(http, "GET", "/metrics", None, ADMIN_BASIC);
    assert_eq!(status, 200, "{text}");
    common::http::samples(&text)
        .get(key)
        .copied()
        .unwrap_or(0.0)
}

#[test]
fn users_rules_and_authentication_end_to_end() {
    let (_t, dir) = data_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.to_str().unwrap();
    // The first user must be a superuser, or nobody could grant anything.
    let first = cli("", &["user", "add", "alice", "--data-dir", d], Some("pw\n"));
    refused(&first, "the first user must be a superuser");
    // Offline, on a stopped broker's directory; the password comes from stdin.
    let out = cli_ok(
        "",
        &["user", "add", "admin", "--superuser", "--data-dir", d],
        Some("admin-pw\n"),
    );
    assert_eq!(out, ["added user admin"]);
    let listed = cli_ok("", &["--json", "user", "list", "--data-dir", d], None);
    assert!(listed[0].contains("\"superuser\":true"), "{listed:?}");
    let file = std::fs::read(dir.join("security.dat")).unwrap();
    assert!(!file
        .windows(ADMIN_PW.len())
        .any(|w| w == ADMIN_PW.as_bytes()));

    let server = start(&dir, None);
    let addr = server.addr.as_str();
    // The directory is held: offline changes are refused while the broker runs.
    refused(
        &cli("", &["user", "list", "--data-dir", d], None),
        "a running broker holds",
    );
    // Anonymous, wrong password, unknown user: refused with a clear error.
    refused(
        &cli(addr, &["topic", "list"], None),
        "authentication required",
    );
    refused(
        &as_user(addr, "admin", "nope", &["topic", "list"], None),
        "invalid credentials",
    );
    refused(
        &as_user(addr, "ghost", "nope", &["topic", "list"], None),
        "invalid credentials",
    );
    // PLAIN sends the password itself: refused on a plain-text connection.
    let plain = as_user(
        addr,
        "admin",
        ADMIN_PW,
        &["--auth-mechanism", "plain", "topic", "list"],
        None,
    );
    refused(&plain, "only over TLS");

    admin(addr, &["topic", "create", "orders", "secret"], None);
    admin(addr, &["publish", "orders", "first"], None);
    let sha512 = as_user(
        addr,
        "admin",
        ADMIN_PW,
        &["--auth-mechanism", "scram-sha-512", "topic", "list"],
        None,
    );
    assert_eq!(
        ok(&sha512).lines().collect::<Vec<_>>(),
        ["orders", "secret"]
    );

    // Users and rules through the running broker.
    admin(addr, &["user", "add", "alice"], Some("alice-pw\n"));
    admin(
        addr,
        &[
            "acl",
            "add",
            "--principal",
            "alice",
            "--allow",
            "write,read",
            "--topic",
            "orders",
        ],
        None,
    );
    admin(
        addr,
        &[
            "acl",
            "add",
            "--principal",
            "alice",
            "--allow",
            "read",
            "--group",
            "billing",
        ],
        None,
    );
    let rules = admin(addr, &["acl", "list", "--principal", "alice"], None);
    assert_eq!(rules.lines().count(), 3, "{rules}");
    let alice = |args: &[&str]| as_user(addr, "alice", "alice-pw", args, None);
    ok(&alice(&["publish", "orders", "second"]));
    // Listings show only what she may describe.
    assert_eq!(ok(&alice(&["topic", "list"])).trim(), "orders");
    // Everything else is refused, and changes nothing.
    refused(
        &alice(&["publish", "secret", "x"]),
        "alice may not write topic secret",
    );
    refused(
        &alice(&["topic", "delete", "orders"]),
        "alice may not delete topic orders",
    );
    refused(
        &alice(&["topic", "create", "mine"]),
        "alice may not create topic mine",
    );
    refused(
        &alice(&["queue", "create", "jobs"]),
        "alice may not create queue jobs",
    );
    refused(
        &alice(&["user", "add", "mallory"]),
        "alice may not alter cluster",
    );
    refused(
        &alice(&[
            "subscribe",
            "orders",
            "--name",
            "other",
            "--from",
            "earliest",
            "--count",
            "1",
        ]),
        "alice may not read group other",
    );
    let read = ok(&alice(&[
        "subscribe",
        "orders",
        "--name",
        "billing",
        "--from",
        "earliest",
        "--count",
        "2",
    ]));
    assert_eq!(read.lines().collect::<Vec<_>>(), ["first", "second"]);
    let described = admin(addr, &["--json", "topic", "describe", "secret"], None);
    assert!(described.contains("\"end_offset\":0"), "{described}");
    assert!(admin(addr, &["topic", "list"], None).contains("orders"));
    // Deny wins over allow.
    admin(
        addr,
        &[
            "acl",
            "add",
            "--principal",
            "*",
            "--deny",
            "write",
            "--topic",
            "ord",
            "--prefix",
        ],
        None,
    );
    refused(
        &alice(&["publish", "orders", "third"]),
        "alice may not write topic orders",
    );
    admin(
        addr,
        &[
            "acl",
            "remove",
            "--principal",
            "*",
            "--deny",
            "write",
            "--topic",
            "ord",
            "--prefix",
        ],
        None,
    );
    ok(&alice(&["publish", "orders", "third"]));
    refused(
        &as_user(
            addr,
            "admin",
            ADMIN_PW,
            &[
                "acl",
                "remove",
                "--principal",
                "*",
                "--deny",
                "write",
                "--topic",
                "ord",
            ],
            None,
        ),
        "no rule",
    );

    assert!(
        metric(
            &server.http,
            "sluice_auth_failures_total{protocol=\"native\"}"
        ) >= 3.0
    );
    assert!(
        metric(
            &server.http,
            "sluice_authorization_denials_total{protocol=\"native\"}"
        ) >= 7.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_and_expired_users_and_quotas() {
    let (_t, dir) = data_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.to_str().unwrap();
    cli_ok(
        "",
        &["user", "add", "admin", "--superuser", "--data-dir", d],
        Some("admin-pw\n"),
    );
    let server = start(&dir, None);
    let addr = server.addr.clone();
    let root = connect(&addr, "admin", ADMIN_PW).await.unwrap();
    root.create_topic("t", LogSettings::default())
        .await
        .unwrap();
    let none = Default::default();
    root.add_user("bob", "bob-pw", false, None, none)
        .await
        .unwrap();
    let rule = |p: &str| sluice::protocol::WireRule {
        principal: p.into(),
        resource: 0,
        pattern: 0,
        name: "t".into(),
        operation: 2,
        permission: 0,
    };
    root.add_rule(rule("*")).await.unwrap();
    root.add_rule(sluice::protocol::WireRule {
        operation: 1,
        ..rule("bob")
    })
    .await
    .unwrap();
    // Revoked: bob's open connections are closed, a reading one at once, another at its next
    // request.
    let bob = connect(&addr, "bob", "bob-pw").await.unwrap();
    bob.publish("t", &[Record::from_value("b1")]).await.unwrap();
    let reader = connect(&addr, "bob", "bob-pw").await.unwrap();
    let mut sub = reader
        .subscribe("t", SubscribeOptions::anonymous().from(Start::Earliest))
        .await
        .unwrap();
    assert_eq!(sub.next().await.unwrap().unwrap().offset, 0);
    root.delete_user("bob").await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), sub.next()).await;
    match ended.expect("the deleted user's subscription ends") {
        None | Some(Err(_)) => {}
        Some(Ok(m)) => panic!("a deleted user still reads: {}", m.offset),
    }
    let e = bob
        .publish("t", &[Record::from_value("b2")])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("bob no longer exists"), "{e}");
    let e = failed(connect(&addr, "bob", "bob-pw").await);
    assert_eq!(e.code(), Some(ErrorCode::Unauthenticated), "{e}");
    // Expired.
    let soon = sluice::storage::now_ms() as u64 + 300;
    root.add_user("eve", "eve-pw", false, Some(soon), none)
        .await
        .unwrap();
    connect(&addr, "eve", "eve-pw").await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let e = failed(connect(&addr, "eve", "eve-pw").await);
    assert!(e.to_string().contains("eve has expired"), "{e}");
    // Quotas: one connection at a time; 100 kB/s of publishing.
    let q = sluice::protocol::WireQuotas {
        produce_bytes_per_sec: Some(100_000),
        fetch_bytes_per_sec: None,
        connections_max: Some(1),
    };
    root.add_user("carol", "carol-pw", false, None, q)
        .await
        .unwrap();
    let carol = connect(&addr, "carol", "carol-pw").await.unwrap();
    let e = failed(connect(&addr, "carol", "carol-pw").await);
    assert!(
        e.to_string().contains("carol already holds 1 connections"),
        "{e}"
    );
    let value = vec![b'x'; 10_000];
    let started = Instant::now();
    for _ in 0..30 {
        carol
            .publish("t", &[Record::from_value(value.clone())])
            .await
            .unwrap();
    }
    // 300 kB at 100 kB/s with one second of burst: at least about two seconds.
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1500), "300 kB took {took:?}");
    // Nothing was dropped: every message is there.
    let info = root.describe_topic("t").await.unwrap();
    assert_eq!(info.partitions[0].end_offset, 31);
    // Some of that was the quota's delay (how much depends on how fast the publishes ran).
    assert!(
        metric(
            &server.http,
            "sluice_quota_throttle_seconds_total{direction=\"produce\"}"
        ) > 0.0
    );
    drop(carol);
    // 100 kB/s of reading: the 310 kB of the topic take about two seconds to arrive, whole.
    let q = sluice::protocol::WireQuotas {
        fetch_bytes_per_sec: Some(100_000),
        ..Default::default()
    };
    root.add_user("dave", "dave-pw", false, None, q)
        .await
        .unwrap();
    root.add_rule(sluice::protocol::WireRule {
        operation: 1,
        ..rule("dave")
    })
    .await
    .unwrap();
    let dave = connect(&addr, "dave", "dave-pw").await.unwrap();
    let started = Instant::now();
    let from = SubscribeOptions::anonymous().from(Start::Earliest);
    let mut sub = dave.subscribe("t", from).await.unwrap();
    for expected in 0..31 {
        let m = sub.next().await.unwrap().unwrap();
        assert_eq!(m.offset, expected);
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1500), "310 kB took {took:?}");
    assert!(
        metric(
            &server.http,
            "sluice_quota_throttle_seconds_total{direction=\"fetch\"}"
        ) > 0.0
    );
    // Someone else is not delayed by carol's quota.
    let key = "sluice_quota_throttle_seconds_total{direction=\"produce\"}";
    let before = metric(&server.http, key);
    for _ in 0..30 {
        root.publish("t", &[Record::from_value(value.clone())])
            .await
            .unwrap();
    }
    assert_eq!(metric(&server.http, key), before);
}
