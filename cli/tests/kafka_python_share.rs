//! Share groups (KIP-932) with confluent-kafka's `ShareConsumer` (librdkafka 2.16, preview
//! API, version 1 of the share APIs; `tests/kafka/py/share.py`) against the real
//! `sluice serve`:
//! - explicit ACCEPT, RELEASE and REJECT: released records come back once with delivery count
//!   2, rejected ones are in the group's dead-letter queue, every accept is confirmed;
//! - two share consumers and a native `sluice consume --group` on one group of a topic of
//!   three partitions at once, and two share consumers and a native `sluice consume` on one
//!   sluice queue (a topic to Kafka clients) at once: every record exactly once across the
//!   three;
//! - a member that closes without acknowledging hands its records to the next one;
//! - the broker SIGKILLed and restarted on the same ports mid-stream: no record is delivered
//!   after its accept was confirmed, and every record is accepted in the end.
//!
//! Installed by `tests/kafka/install.sh py`; without it the tests fail under `CI=true` and are
//! skipped elsewhere.

#[path = "kafka_python_groups/clients.rs"]
#[allow(dead_code)]
mod clients;
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use clients::{describe_output, free_port, int, py_cmd, start_on_ports, Streaming};
use common::kafka::{python, run, start_kafka};
use common::{cli_ok, data_dir, json_lines, spawn_cli};

/// The bound of every Python client run.
const CLIENT_LIMIT: Duration = Duration::from_secs(120);

fn produce(py: &Path, bootstrap: &str, topic: &str, n: usize, partitions: u32) {
    let cmd = py_cmd(
        py,
        "share.py",
        &[
            "produce",
            bootstrap,
            topic,
            &n.to_string(),
            "--partitions",
            &partitions.to_string(),
        ],
    );
    let out = run(cmd, None, CLIENT_LIMIT);
    assert!(out.status.success(), "{}", describe_output("produce", &out));
    let ev = clients::events(&out);
    assert_eq!(ev.last().unwrap()["errors"], 0, "{ev:?}");
}

/// Runs one `share.py consume` to its end: its events.
fn consume(
    py: &Path,
    bootstrap: &str,
    topic: &str,
    group: &str,
    name: &str,
    extra: &[&str],
) -> Vec<Value> {
    let mut args = vec!["consume", bootstrap, topic, group, name];
    args.extend_from_slice(extra);
    let out = run(py_cmd(py, "share.py", &args), None, CLIENT_LIMIT);
    assert!(out.status.success(), "{}", describe_output(name, &out));
    clients::events(&out)
}

/// (partition, offset) -> the delivery counts seen, of the `rec` events.
fn records(events: &[Value]) -> BTreeMap<(i64, i64), Vec<i64>> {
    let mut m: BTreeMap<(i64, i64), Vec<i64>> = BTreeMap::new();
    for e in events.iter().filter(|e| e["ev"] == "rec") {
        m.entry((int(e, "p"), int(e, "o")))
            .or_default()
            .push(int(e, "n"));
    }
    m
}

/// The offsets whose accept the broker confirmed.
fn confirmed(events: &[Value]) -> BTreeSet<(i64, i64)> {
    events
        .iter()
        .filter(|e| e["ev"] == "confirmed")
        .flat_map(|e| {
            let p = int(e, "p");
            e["o"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |o| (p, o.as_i64().unwrap()))
        })
        .collect()
}

fn no_violations(events: &[Value]) {
    let v: Vec<&Value> = events.iter().filter(|e| e["ev"] == "violation").collect();
    assert!(
        v.is_empty(),
        "records delivered after their accept was confirmed: {v:?}"
    );
}

fn dlq_depth(addr: &str, queue: &str) -> u64 {
    let lines = cli_ok(addr, &["--json", "queue", "describe", queue], None);
    json_lines(&lines)[0]["depth"].as_u64().unwrap()
}

#[test]
fn explicit_accept_release_and_reject() {
    let Some(py) = python() else { return };
    let (_t, dir) = data_dir();
    let s = start_kafka(&dir, &[]);
    produce(&py, &s.kafka, "mixed", 100, 1);
    let ev = consume(&py, &s.kafka, "mixed", "g", "a", &["--explicit", "--mixed"]);
    no_violations(&ev);
    let recs = records(&ev);
    assert_eq!(recs.len(), 100, "every record delivered");
    for ((_, o), counts) in &recs {
        let want: &[i64] = if o % 5 == 1 { &[1, 2] } else { &[1] };
        assert_eq!(counts, want, "offset {o}");
    }
    let want: BTreeSet<(i64, i64)> = (0..100).filter(|o| o % 5 != 0).map(|o| (0, o)).collect();
    assert_eq!(confirmed(&ev), want, "every accept confirmed");
    assert_eq!(
        dlq_depth(&s.server.addr, "mixed.g.dlq"),
        20,
        "the rejected records"
    );
    // Nothing is left for the group.
    let again = consume(&py, &s.kafka, "mixed", "g", "b", &["--idle-s", "2"]);
    assert!(records(&again).is_empty(), "{again:?}");
}

#[test]
fn share_consumers_and_a_native_consumer_split_one_group() {
    split(None);
}

#[test]
fn share_consumers_and_a_native_consumer_split_one_queue() {
    split(Some("jobs"));
}

/// Two share consumers (group `g`) and a native competing consumer at once, over a topic of
/// three partitions (the native one a member of group `g`), or over the sluice queue `queue`
/// (a topic of one partition to Kafka clients, whose own cursor every share group consumes):
/// every record delivered exactly once across the three.
fn split(queue: Option<&str>) {
    let Some(py) = python() else { return };
    let (_t, dir) = data_dir();
    let s = start_kafka(&dir, &[]);
    const N: usize = 3_000;
    let name = queue.unwrap_or("split");
    if let Some(q) = queue {
        cli_ok(&s.server.addr, &["queue", "create", q], None);
    }
    produce(&py, &s.kafka, name, N, if queue.is_some() { 1 } else { 3 });
    let mut members: Vec<Streaming> = ["a", "b"]
        .iter()
        .map(|m| {
            Streaming::spawn(py_cmd(
                &py,
                "share.py",
                &[
                    "consume",
                    &s.kafka,
                    name,
                    "g",
                    m,
                    "--idle-s",
                    "4",
                    "--slow-ms",
                    "2",
                ],
            ))
        })
        .collect();
    // The native consumer starts once both share members have records (it is much faster
    // to start than a Python client).
    for m in members.iter_mut() {
        let deadline = Instant::now() + Duration::from_secs(60);
        assert!(m.until(deadline, |seen| seen.iter().any(|e| e["ev"] == "rec")));
    }
    let mut args = vec!["--json", "consume", name, "--wait-ms", "4000"];
    if queue.is_none() {
        args.extend(["--group", "g"]);
    }
    let native = spawn_cli(&s.server.addr, &args).wait_with_output().unwrap();
    assert!(native.status.success(), "native consume: {native:?}");
    let native_lines: Vec<String> = String::from_utf8_lossy(&native.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    let mut seen: BTreeMap<(i64, i64), Vec<String>> = BTreeMap::new();
    for v in json_lines(&native_lines) {
        seen.entry((int(&v, "partition"), int(&v, "offset")))
            .or_default()
            .push("native".into());
    }
    let native_count = seen.len();
    for (k, m) in members.drain(..).enumerate() {
        let (status, ev, stderr) = m.finish(false);
        assert!(status.success(), "member {k}: {stderr}");
        for (key, counts) in records(&ev) {
            assert_eq!(counts, vec![1], "{key:?}: first delivery only");
            seen.entry(key).or_default().push(format!("share-{k}"));
        }
    }
    assert_eq!(seen.len(), N, "every record");
    let twice: Vec<_> = seen.iter().filter(|(_, who)| who.len() > 1).collect();
    assert!(twice.is_empty(), "records delivered twice: {twice:?}");
    assert!(
        native_count > 0 && native_count < N,
        "native got {native_count}"
    );
    if let Some(q) = queue {
        let lines = cli_ok(&s.server.addr, &["--json", "queue", "describe", q], None);
        assert_eq!(
            json_lines(&lines)[0]["depth"],
            0,
            "every record acked: {lines:?}"
        );
    }
}

#[test]
fn closing_without_acknowledging_hands_records_to_the_next_member() {
    let Some(py) = python() else { return };
    let (_t, dir) = data_dir();
    let s = start_kafka(&dir, &[]);
    produce(&py, &s.kafka, "handover", 50, 1);
    let a = consume(
        &py,
        &s.kafka,
        "handover",
        "g",
        "a",
        &["--explicit", "--close-unacked-after", "10"],
    );
    let held: BTreeSet<(i64, i64)> = records(&a).keys().copied().collect();
    assert!(held.len() >= 10, "{a:?}");
    let b = consume(&py, &s.kafka, "handover", "g", "b", &[]);
    let recs = records(&b);
    // librdkafka accepts at close the records its application was given before the last one
    // and releases the rest (it does the same against Apache Kafka): the next member gets
    // every other record: those the first one held with delivery count 2, the others with 1
    // or 2 (2 for those its client had acquired and not given to the application).
    let accepted_at_close: BTreeSet<(i64, i64)> = (0..50)
        .map(|o| (0, o))
        .filter(|k| !recs.contains_key(k))
        .collect();
    assert!(
        accepted_at_close.is_subset(&held),
        "{accepted_at_close:?} not all held by a"
    );
    assert!(
        accepted_at_close.len() < held.len(),
        "a's last record comes back"
    );
    for (key, counts) in recs {
        if held.contains(&key) {
            assert_eq!(counts, vec![2], "{key:?}");
        } else {
            assert!(
                counts == vec![1] || counts == vec![2],
                "{key:?}: {counts:?}"
            );
        }
    }
}

#[test]
fn a_broker_kill_loses_no_confirmed_accept_and_redelivers_the_rest() {
    let Some(py) = python() else { return };
    let (_t, dir) = data_dir();
    let (native, kafka) = (free_port(), free_port());
    let mut server = start_on_ports(&dir, native, kafka);
    let bootstrap = format!("127.0.0.1:{kafka}");
    const N: usize = 3_000;
    produce(&py, &bootstrap, "kill", N, 1);
    let mut c = Streaming::spawn(py_cmd(
        &py,
        "share.py",
        &[
            "consume",
            &bootstrap,
            "kill",
            "g",
            "a",
            "--explicit",
            "--commit-every",
            "20",
            "--idle-s",
            "8",
            "--limit-s",
            "100",
        ],
    ));
    let deadline = Instant::now() + Duration::from_secs(60);
    let reached = c.until(deadline, |seen| confirmed(seen).len() >= 500);
    assert!(
        reached,
        "500 accepts confirmed before the kill: {:?}",
        c.seen.last()
    );
    server.kill9();
    let before = confirmed(&c.seen).len();
    // The client prints a record's delivery after receiving it: the events of records delivered
    // before the kill may still be on their way. Read them while the broker is down, when
    // nothing new can be delivered.
    c.until(Instant::now() + Duration::from_millis(500), |_| false);
    let seen_before_kill: BTreeSet<(i64, i64)> = records(&c.seen).into_keys().collect();
    let _server = start_on_ports(&dir, native, kafka);
    let (status, ev, stderr) = c.finish(false);
    assert!(status.success(), "{stderr}");
    no_violations(&ev);
    let all: BTreeSet<(i64, i64)> = (0..N as i64).map(|o| (0, o)).collect();
    // An accept in flight at the kill may have been made durable without its reply reaching
    // the client: such a record is not redelivered and its accept is never confirmed. Only
    // records delivered before the kill, at most one commit window (20) of them, may be so,
    // and the broker must hold none of them: a new member of the group gets nothing.
    let in_doubt: BTreeSet<(i64, i64)> = all.difference(&confirmed(&ev)).copied().collect();
    assert!(
        in_doubt.len() <= 20 && in_doubt.is_subset(&seen_before_kill),
        "unconfirmed records beyond the accepts in flight at the kill: {in_doubt:?}"
    );
    if !in_doubt.is_empty() {
        let late = Streaming::spawn(py_cmd(
            &py,
            "share.py",
            &[
                "consume",
                &bootstrap,
                "kill",
                "g",
                "b",
                "--idle-s",
                "4",
                "--limit-s",
                "30",
            ],
        ));
        let (status, late_ev, stderr) = late.finish(false);
        assert!(status.success(), "{stderr}");
        assert!(
            records(&late_ev).is_empty(),
            "{in_doubt:?} were never accepted"
        );
    }
    assert!(before < N, "the kill came mid-stream ({before} confirmed)");
    assert_eq!(records(&ev).len(), N);
}
