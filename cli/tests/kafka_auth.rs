//! Authentication, authorization, the ACL APIs and quotas on the Kafka listener, with real
//! clients: kcat (librdkafka 2.0) and confluent-kafka (Python, librdkafka 2.16). Users and
//! rules are stored before the broker starts, with the library (`sluice::security::Offline`).
//! Without the clients the tests fail under `CI=true` and are skipped elsewhere.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use common::http::{request_with, samples, value};
use common::kafka::{kcat, kcat_cmd, missing, python, run, start_kafka, KafkaServer};
use common::*;
use sluice::security::{
    Offline, Operation, PatternKind, Permission, Quotas, ResourceKind, Rule, UserOptions,
};

/// A client's time limit: every step here takes seconds at most.
const CLIENT_LIMIT: Duration = Duration::from_secs(40);
/// The produce quota of the quota test, bytes per second.
const QUOTA_BYTES_PER_SEC: u64 = 20_000;
/// What the quota test produces: messages of `QUOTA_MESSAGE_BYTES`.
const QUOTA_MESSAGES: usize = 100;
const QUOTA_MESSAGE_BYTES: usize = 1000;
/// The producer's batch size in the quota test (bytes).
const QUOTA_BATCH_BYTES: usize = 10_000;

fn superuser() -> UserOptions {
    UserOptions {
        superuser: true,
        ..Default::default()
    }
}

fn rule(who: &str, kind: ResourceKind, pattern: PatternKind, name: &str, op: Operation) -> Rule {
    Rule {
        principal: who.into(),
        resource: kind,
        pattern,
        name: name.into(),
        operation: op,
        permission: Permission::Allow,
    }
}

/// Every user may read the groups named `assign-*` (the group of an assign-only consumer).
fn assign_groups() -> Rule {
    rule(
        "*",
        ResourceKind::Group,
        PatternKind::Prefix,
        "assign-",
        Operation::Read,
    )
}

/// Stores `users` (name, password, options) and `rules` in the data directory `dir` (made if
/// missing) while no broker runs.
fn store(dir: &Path, users: &[(&str, &str, UserOptions)], rules: &[Rule]) {
    std::fs::create_dir_all(dir).unwrap();
    let off = Offline::open(Arc::new(sluice::storage::StdFs), dir).unwrap();
    for (name, pw, o) in users {
        off.security.add_user(name, pw, *o).unwrap();
    }
    for r in rules {
        off.security.add_rule(r.clone()).unwrap();
    }
}

/// kcat's settings for SASL as `user`.
fn sasl(protocol: &str, mechanism: &str, user: &str, pw: &str) -> Vec<String> {
    [
        format!("security.protocol={protocol}"),
        format!("sasl.mechanisms={mechanism}"),
        format!("sasl.username={user}"),
        format!("sasl.password={pw}"),
    ]
    .into_iter()
    .flat_map(|x| ["-X".to_string(), x])
    .collect()
}

fn kcat_run(
    k: &Path,
    bootstrap: &str,
    auth: &[String],
    args: &[&str],
    stdin: Option<&[u8]>,
) -> Output {
    let all: Vec<&str> = auth
        .iter()
        .map(|s| s.as_str())
        .chain(args.iter().copied())
        .collect();
    run(kcat_cmd(k, None, bootstrap, &all), stdin, CLIENT_LIMIT)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A sample of the server's `GET /metrics`, scraped as the admin (every test stores one).
fn metric(s: &KafkaServer, key: &str) -> f64 {
    let admin = common::auth::basic(("admin", "admin-pw"));
    let (status, _, body) = request_with(&s.server.http, "GET", "/metrics", None, &admin);
    assert_eq!(status, 200, "{body}");
    value(&samples(&body), key)
}

/// The Python helpers every script starts with: `conf(user, pw, mechanism)` for SASL over
/// plain text, `produce` returning the delivery errors, `consume` returning the values or the
/// first error code, `B` the bootstrap address.
const PRELUDE: &str = r#"
import sys, time
from confluent_kafka import Producer, Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (AdminClient, NewTopic, AclBinding, AclBindingFilter,
    ResourceType, ResourcePatternType, AclOperation, AclPermissionType)
B = sys.argv[1]
def conf(user, pw, mech="SCRAM-SHA-256", **kw):
    c = {"bootstrap.servers": B, "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": mech,
         "sasl.username": user, "sasl.password": pw}
    c.update(kw)
    return c
def produce(c, topic, values, timeout=15):
    errs = []
    p = Producer(dict(c, **{"message.timeout.ms": 10000}))
    for v in values:
        p.produce(topic, v, on_delivery=lambda e, m: errs.append(e) if e else None)
    left = p.flush(timeout)
    return [e.code() for e in errs], left
def consume(c, topic, n, group=None, timeout=15):
    """n values of partition 0 from the start, or the first error code."""
    cfg = dict(c, **{"enable.auto.commit": False, "auto.offset.reset": "earliest"})
    # Assign-only consumers still name a group (librdkafka looks its coordinator up): every
    # user may read the groups named assign-*.
    cfg["group.id"] = group or "assign-only"
    errs = []
    cfg["error_cb"] = lambda e: errs.append(e.code())
    k = Consumer(cfg)
    if group:
        k.subscribe([topic])
    else:
        k.assign([TopicPartition(topic, 0, 0)])
    got, end = [], time.time() + timeout
    try:
        while time.time() < end and len(got) < n:
            m = k.poll(0.2)
            if errs:
                return errs[0]
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    continue
                return m.error().code()
            got.append(m.value())
        return got
    finally:
        k.close()
def code_of(future):
    try:
        future.result()
        return 0
    except KafkaException as e:
        return e.args[0].code()
"#;

/// Runs the Python `script` (after [`PRELUDE`]) against `bootstrap`; its stdout, after
/// checking it printed `ok <step>` for each of `steps`.
fn python_steps(bootstrap: &str, script: &str, steps: &[&str]) -> Option<String> {
    let py: PathBuf = python()?;
    let mut cmd = Command::new(py);
    cmd.arg("-c")
        .arg(format!("{PRELUDE}\n{script}"))
        .arg(bootstrap)
        .env("PYTHONWARNINGS", "ignore::DeprecationWarning");
    let out = run(cmd, None, Duration::from_secs(60));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "{}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    for s in steps {
        assert!(
            stdout.contains(&format!("ok {s}\n")),
            "step {s} did not pass:\n{stdout}\nstderr:\n{stderr}"
        );
    }
    Some(stdout)
}

/// confluent-kafka: a wrong password on one connection leaves another client alone; a client
/// without SASL stores nothing.
const ISOLATION_SCRIPT: &str = r#"
ok = conf("admin", "admin-pw", "SCRAM-SHA-512")
p = Producer(ok)
p.produce("iso", b"first"); assert p.flush(15) == 0
errors = []
bad = Producer(conf("admin", "wrong", "SCRAM-SHA-512", error_cb=lambda e: errors.append(str(e))))
bad.produce("iso", b"never"); left = bad.flush(4)
assert left == 1 and any("invalid credentials" in e for e in errors), (left, errors)
# Torn down here, on this thread, while it still retries: left to the interpreter's exit, a
# client whose error callback still fires can end the process with a failure status.
bad.purge(); bad.flush(1); del bad
print("ok refused")
p.produce("iso", b"second"); assert p.flush(15) == 0
assert consume(ok, "iso", 2) == [b"first", b"second"]
print("ok unaffected")
errs, left = produce({"bootstrap.servers": B}, "iso", [b"anonymous"], timeout=4)
assert errs or left == 1, (errs, left)
assert consume(ok, "iso", 3, timeout=3) == [b"first", b"second"]
del p
print("ok anonymous")
"#;

#[test]
fn scram_logins_work_and_bad_or_missing_credentials_are_refused() {
    let (_t, dir) = data_dir();
    let old = UserOptions {
        expires_at_ms: Some(1),
        ..superuser()
    };
    store(
        &dir,
        &[("admin", "admin-pw", superuser()), ("old", "old-pw", old)],
        &[],
    );
    let s = start_kafka(&dir, &[]);
    let Some(k) = kcat() else { return };
    let b = &s.kafka;
    // SCRAM-SHA-256 produces, SCRAM-SHA-512 consumes.
    let a256 = sasl("SASL_PLAINTEXT", "SCRAM-SHA-256", "admin", "admin-pw");
    let out = kcat_run(&k, b, &a256, &["-P", "-t", "t"], Some(b"one\ntwo\n"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let a512 = sasl("SASL_PLAINTEXT", "SCRAM-SHA-512", "admin", "admin-pw");
    let out = kcat_run(&k, b, &a512, &["-C", "-t", "t", "-e", "-q"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "one\ntwo\n");
    // PLAIN on plain text: not offered.
    let plain = sasl("SASL_PLAINTEXT", "PLAIN", "admin", "admin-pw");
    let out = kcat_run(&k, b, &plain, &["-L", "-m", "3"], None);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "PLAIN over plain text was served");
    assert!(err.contains("Unsupported SASL mechanism"), "{err}");
    // A wrong password and an expired user: refused with their reasons.
    let wrong = sasl("SASL_PLAINTEXT", "SCRAM-SHA-512", "admin", "nope");
    let out = kcat_run(&k, b, &wrong, &["-L", "-m", "3"], None);
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("Authentication failed: invalid credentials"),
        "{err}"
    );
    let expired = sasl("SASL_PLAINTEXT", "SCRAM-SHA-256", "old", "old-pw");
    let out = kcat_run(&k, b, &expired, &["-L", "-m", "3"], None);
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("has expired"), "{err}");
    // No SASL at all: the connection is closed before anything is served.
    let out = kcat_run(&k, b, &[], &["-L", "-m", "3"], None);
    assert!(
        !out.status.success(),
        "served without SASL: {}",
        text(&out.stdout)
    );
    assert!(
        !text(&out.stdout).contains("topic \"t\""),
        "{}",
        text(&out.stdout)
    );
    let failures = metric(&s, "sluice_auth_failures_total{protocol=\"kafka\"}");
    assert!(failures >= 4.0, "{failures}");

    python_steps(b, ISOLATION_SCRIPT, &["refused", "unaffected", "anonymous"]);
}

/// A CA (`ca.pem`) and a server certificate for 127.0.0.1 it signed (`s.pem`, `s.key`), or
/// `None` (skipped outside CI) without openssl.
fn certificates() -> Option<tempfile::TempDir> {
    if Command::new("openssl").arg("version").output().is_err() {
        return missing("openssl");
    }
    let t = tempfile::tempdir().unwrap();
    common::certs::ca(t.path(), "ca");
    common::certs::cert(t.path(), "s", "ca");
    Some(t)
}

#[test]
fn plain_works_over_tls_only() {
    let Some(certs) = certificates() else { return };
    let p = |f: &str| certs.path().join(f).display().to_string();
    let (_t, dir) = data_dir();
    store(&dir, &[("admin", "admin-pw", superuser())], &[]);
    let (cert, key) = (p("s.pem"), p("s.key"));
    let s = start_kafka(&dir, &["--tls-cert", &cert, "--tls-key", &key]);
    let Some(k) = kcat() else { return };
    let ca = vec!["-X".to_string(), format!("ssl.ca.location={}", p("ca.pem"))];
    let auth = |pw: &str| [sasl("SASL_SSL", "PLAIN", "admin", pw), ca.clone()].concat();
    let b = &s.kafka;
    let out = kcat_run(
        &k,
        b,
        &auth("admin-pw"),
        &["-P", "-t", "sec"],
        Some(b"x\ny\n"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = kcat_run(
        &k,
        b,
        &auth("admin-pw"),
        &["-C", "-t", "sec", "-e", "-q"],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "x\ny\n");
    let out = kcat_run(&k, b, &auth("wrong"), &["-L", "-m", "3"], None);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("Authentication failed: invalid credentials"),
        "{err}"
    );
}

#[test]
fn a_user_deleted_while_the_broker_is_stopped_is_refused_after_the_restart() {
    let (_t, dir) = data_dir();
    let users = [
        ("admin", "admin-pw", superuser()),
        ("bob", "bob-pw", superuser()),
    ];
    store(&dir, &users, &[]);
    let mut s = start_kafka(&dir, &[]);
    let Some(k) = kcat() else { return };
    let bob = sasl("SASL_PLAINTEXT", "SCRAM-SHA-512", "bob", "bob-pw");
    let out = kcat_run(&k, &s.kafka, &bob, &["-P", "-t", "r"], Some(b"kept\n"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    s.server.signal_and_wait(libc::SIGTERM);
    drop(s);
    {
        let off = Offline::open(Arc::new(sluice::storage::StdFs), &dir).unwrap();
        off.security.delete_user("bob").unwrap();
    }
    let s = start_kafka(&dir, &[]);
    let out = kcat_run(&k, &s.kafka, &bob, &["-L", "-m", "3"], None);
    assert!(!out.status.success(), "a deleted user was served");
    let err = text(&out.stderr);
    assert!(
        err.contains("Authentication failed: invalid credentials"),
        "{err}"
    );
    let admin = sasl("SASL_PLAINTEXT", "SCRAM-SHA-256", "admin", "admin-pw");
    let out = kcat_run(&k, &s.kafka, &admin, &["-C", "-t", "r", "-e", "-q"], None);
    assert_eq!(text(&out.stdout), "kept\n", "{}", text(&out.stderr));
}

/// confluent-kafka as users without the right rule: each request refused, nothing changed.
const DENIALS_SCRIPT: &str = r#"
A = conf("admin", "admin-pw")
assert produce(A, "data", [b"1", b"2", b"3"]) == ([], 0)
assert produce(A, "data2", [b"x"]) == ([], 0)
TAF, GAF = KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED
carol = conf("carol", "carol-pw")
errs, left = produce(carol, "data", [b"intruder"])
assert errs == [TAF], (errs, left)
print("ok produce")
assert consume(carol, "data", 3) == [b"1", b"2", b"3"]
assert consume(carol, "data", 1, group="g1") == GAF
print("ok group")
ac = AdminClient(carol)
assert code_of(ac.create_topics([NewTopic("new", 1, 1)])["new"]) == TAF
print("ok create")
assert code_of(ac.delete_topics(["data"])["data"]) == TAF
print("ok delete")
assert consume(conf("dan", "dan-pw"), "data", 1) == TAF
print("ok consume")
ae = AdminClient(conf("erin", "erin-pw"))
md = ae.list_topics(timeout=10)
assert "data" not in md.topics and "data2" not in md.topics, md.topics
md = ae.list_topics(topic="data", timeout=10)
assert md.topics["data"].error.code() == TAF, md.topics["data"].error
print("ok describe")
frank = conf("frank", "frank-pw")
assert consume(frank, "data2", 1) == [b"x"]
assert consume(frank, "data", 1) == TAF
print("ok deny-wins")
k = Consumer(dict(A, **{"group.id": "check"}))
assert k.get_watermark_offsets(TopicPartition("data", 0), timeout=10) == (0, 3)
k.close()
md = AdminClient(A).list_topics(timeout=10)
assert "data" in md.topics and "new" not in md.topics, md.topics
assert consume(A, "data", 3) == [b"1", b"2", b"3"]
print("ok unchanged")
"#;

#[test]
fn requests_without_the_right_rule_are_refused_and_change_nothing() {
    use Operation::*;
    use PatternKind::*;
    use ResourceKind::*;
    let (_t, dir) = data_dir();
    let none = UserOptions::default();
    let deny = Rule {
        permission: Permission::Deny,
        ..rule("frank", Topic, Exact, "data", Read)
    };
    store(
        &dir,
        &[
            ("admin", "admin-pw", superuser()),
            ("carol", "carol-pw", none),
            ("dan", "dan-pw", none),
            ("erin", "erin-pw", none),
            ("frank", "frank-pw", none),
        ],
        &[
            rule("carol", Topic, Exact, "data", Read),
            rule("dan", Topic, Exact, "data", Describe),
            rule("frank", Topic, Prefix, "da", Read),
            deny,
            assign_groups(),
        ],
    );
    let s = start_kafka(&dir, &[]);
    let steps = [
        "produce",
        "group",
        "create",
        "delete",
        "consume",
        "describe",
        "deny-wins",
        "unchanged",
    ];
    if python_steps(&s.kafka, DENIALS_SCRIPT, &steps).is_none() {
        return;
    }
    let denied = metric(&s, "sluice_authorization_denials_total{protocol=\"kafka\"}");
    assert!(denied >= 7.0, "{denied}");
}

#[test]
fn acls_made_through_the_admin_client_are_listed_enforced_and_deleted() {
    let (_t, dir) = data_dir();
    store(
        &dir,
        &[
            ("admin", "admin-pw", superuser()),
            ("gina", "gina-pw", UserOptions::default()),
        ],
        &[assign_groups()],
    );
    let s = start_kafka(&dir, &[]);
    let script = r#"
A = conf("admin", "admin-pw")
G = conf("gina", "gina-pw", "SCRAM-SHA-512")
assert produce(A, "acl-t", [b"a", b"b"]) == ([], 0)
TAF = KafkaError.TOPIC_AUTHORIZATION_FAILED
before = consume(G, "acl-t", 2, group="acl-g0")
assert before == KafkaError.GROUP_AUTHORIZATION_FAILED, before
a = AdminClient(A)
read = AclBinding(ResourceType.TOPIC, "acl-t", ResourcePatternType.LITERAL, "User:gina", "*",
                  AclOperation.READ, AclPermissionType.ALLOW)
group = AclBinding(ResourceType.GROUP, "acl-", ResourcePatternType.PREFIXED, "User:gina", "*",
                   AclOperation.ALL, AclPermissionType.ALLOW)
for f in a.create_acls([read, group]).values():
    f.result()
bad = AclBinding(ResourceType.TOPIC, "acl-t", ResourcePatternType.LITERAL, "User:gina",
                 "10.0.0.1", AclOperation.READ, AclPermissionType.ALLOW)
assert code_of(a.create_acls([bad])[bad]) == KafkaError.INVALID_REQUEST
print("ok create")
every = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, "User:gina", None,
                         AclOperation.ANY, AclPermissionType.ANY)
listed = a.describe_acls(every).result()
assert sorted(map(str, listed)) == sorted(map(str, [read, group])), listed
print("ok describe")
assert consume(G, "acl-t", 2, group="acl-g1") == [b"a", b"b"]
print("ok enforced")
ag = AdminClient(G)
# Refused with CLUSTER_AUTHORIZATION_FAILED at the top of the answer, which librdkafka drops:
# gina sees no binding where the admin sees two.
assert ag.describe_acls(every).result() == []
grant = AclBinding(ResourceType.TOPIC, "other", ResourcePatternType.LITERAL, "User:gina", "*",
                   AclOperation.ALL, AclPermissionType.ALLOW)
denied = code_of(ag.create_acls([grant])[grant])
assert denied == KafkaError.CLUSTER_AUTHORIZATION_FAILED, denied
print("ok cluster")
match = AclBindingFilter(ResourceType.TOPIC, "acl-t", ResourcePatternType.MATCH, None, None,
                         AclOperation.ANY, AclPermissionType.ANY)
gone = list(a.delete_acls([match]).values())[0].result()
assert list(map(str, gone)) == [str(read)], gone
assert list(map(str, a.describe_acls(every).result())) == [str(group)]
after = consume(G, "acl-t", 2, group="acl-g2")
assert after == TAF, after
print("ok delete")
"#;
    python_steps(
        &s.kafka,
        script,
        &["create", "describe", "enforced", "cluster", "delete"],
    );
}

#[test]
fn a_produce_quota_delays_the_producer() {
    let (_t, dir) = data_dir();
    let slow = UserOptions {
        quotas: Quotas {
            produce_bytes_per_sec: Some(QUOTA_BYTES_PER_SEC),
            ..Default::default()
        },
        ..superuser()
    };
    let users = [
        ("admin", "admin-pw", superuser()),
        ("slow", "slow-pw", slow),
    ];
    store(&dir, &users, &[]);
    let s = start_kafka(&dir, &[]);
    let script = format!(
        r#"
c = conf("slow", "slow-pw", **{{"batch.size": {QUOTA_BATCH_BYTES}, "linger.ms": 5}})
p = Producer(c)
t0 = time.time()
for i in range({QUOTA_MESSAGES}):
    p.produce("q", b"x" * {QUOTA_MESSAGE_BYTES})
    p.poll(0)
assert p.flush(50) == 0
print("elapsed", time.time() - t0)
k = Consumer(dict(c, **{{"group.id": "check"}}))
assert k.get_watermark_offsets(TopicPartition("q", 0), timeout=10) == (0, {QUOTA_MESSAGES})
print("ok quota")
"#
    );
    let Some(out) = python_steps(&s.kafka, &script, &["quota"]) else {
        return;
    };
    let elapsed: f64 = out
        .lines()
        .find_map(|l| l.strip_prefix("elapsed "))
        .expect("elapsed printed")
        .parse()
        .unwrap();
    // The payload alone costs N / rate seconds; one second of it is the burst, and the last
    // batch's delay falls after its response: a lower bound with a batch of slack besides.
    let payload = (QUOTA_MESSAGES * QUOTA_MESSAGE_BYTES) as f64;
    let rate = QUOTA_BYTES_PER_SEC as f64;
    let bound = (payload - rate - 2.0 * QUOTA_BATCH_BYTES as f64) / rate;
    assert!(
        bound >= 2.0,
        "the bound {bound} is too small to mean anything"
    );
    assert!(elapsed >= bound, "produced in {elapsed} s, under {bound} s");
    let throttled = metric(
        &s,
        "sluice_quota_throttle_seconds_total{direction=\"produce\"}",
    );
    assert!(throttled > 0.0, "{throttled}");
}
