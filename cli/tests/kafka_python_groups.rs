//! Kafka consumer groups (classic protocol) driven by confluent-kafka (Python, librdkafka 2.16)
//! against the real `sluice serve`:
//! - a group of three consumers (`tests/kafka/py/groups.py`) over six partitions, one member
//!   SIGKILLed mid-stream: the others take its partitions over after its session times out,
//!   every record is processed, only the killed member's uncommitted records twice, and the
//!   group's committed offsets end at the partitions' ends (`sluice topic describe`);
//! - the AdminClient's group operations (`tests/kafka/py/group_admin.py`): list, describe,
//!   list and alter offsets, delete;
//! - confluent-kafka's kafkatest verifiable producer (idempotent, acks=all) with the broker
//!   SIGKILLed and restarted on the same ports and data directory while it produces, then the
//!   verifiable consumer in a group: every acknowledged record is consumed, none stored twice
//!   (`tests/kafka/py/verifiable.py` runs the scripts of the wheel).
//!
//! Installed by `tests/kafka/install.sh py`; without it the tests fail under `CI=true` and are
//! skipped elsewhere. Each runs in about 15 s.

#[path = "kafka_python_groups/clients.rs"]
mod clients;
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Output;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use clients::{
    describe_output, events, free_port, int, named, pairs, py_cmd, start_on_ports, text,
    topic_positions, Streaming,
};
use common::cli_ok;
use common::data_dir;
use common::kafka::{python, run, start_kafka};

/// The bound of every Python client run.
const CLIENT_LIMIT: Duration = Duration::from_secs(90);

const GROUP_TOPIC: &str = "orders";
const GROUP: &str = "billing";
const GROUP_PARTITIONS: i64 = 6;
const GROUP_RECORDS: usize = 600;
/// The killed member processes this many records while the group has three members...
const DIE_AFTER: usize = 20;
/// ...then dies right after its third record past a commit (it commits every 5).
const DIE_UNCOMMITTED: usize = 3;

/// What one member of `groups.py consume` printed.
#[derive(Default)]
struct Member {
    /// Records processed, in order: (partition, offset, key).
    recs: Vec<(i64, i64, String)>,
    /// Each assignment: partitions with the group's committed offset at that time.
    assigned: Vec<Vec<(i64, i64)>>,
    /// Each successful commit, with the index in `assigned` it happened under.
    commits: Vec<(usize, Vec<(i64, i64)>)>,
    commit_errors: Vec<String>,
    dying: bool,
    closed: bool,
}

fn member_events(out: &Output) -> Member {
    let mut m = Member::default();
    for e in events(out) {
        match text(&e, "ev") {
            "rec" => m
                .recs
                .push((int(&e, "p"), int(&e, "o"), text(&e, "k").to_owned())),
            "assigned" => m.assigned.push(pairs(&e, "committed")),
            "commit" => m
                .commits
                .push((m.assigned.len().saturating_sub(1), pairs(&e, "offsets"))),
            "commit_error" => m.commit_errors.push(text(&e, "error").to_owned()),
            "dying" => m.dying = true,
            "closed" => m.closed = true,
            "revoked" => {}
            other => panic!("unknown event {other}: {e}"),
        }
    }
    m
}

/// Produces the records of the group test; returns (partition, offset) -> key and every
/// partition's end.
fn produce_group_records(
    py: &Path,
    bootstrap: &str,
) -> (BTreeMap<(i64, i64), String>, BTreeMap<i64, i64>) {
    let (partitions, records) = (GROUP_PARTITIONS.to_string(), GROUP_RECORDS.to_string());
    let args = ["produce", bootstrap, GROUP_TOPIC, &partitions, &records];
    let out = run(py_cmd(py, "groups.py", &args), None, CLIENT_LIMIT);
    assert!(out.status.success(), "{}", describe_output("produce", &out));
    let mut produced = BTreeMap::new();
    for e in events(&out) {
        match text(&e, "ev") {
            "produced" => {
                let key = text(&e, "k").to_owned();
                assert!(produced.insert((int(&e, "p"), int(&e, "o")), key).is_none());
            }
            "produce_done" => {}
            _ => panic!("produce: {e}"),
        }
    }
    assert_eq!(produced.len(), GROUP_RECORDS);
    let mut ends = BTreeMap::new();
    for &(p, o) in produced.keys() {
        let end = ends.entry(p).or_insert(0);
        *end = (*end).max(o + 1);
    }
    assert_eq!(
        ends.len() as i64,
        GROUP_PARTITIONS,
        "a partition got nothing: {ends:?}"
    );
    for (&p, &end) in &ends {
        for o in 0..end {
            assert!(produced.contains_key(&(p, o)), "offset {o} of {p} missing");
        }
    }
    (produced, ends)
}

/// Runs the three members at once: `a` and `b`, and `victim`, which kills itself.
fn run_members(py: &Path, bootstrap: &str) -> BTreeMap<&'static str, (Output, Member)> {
    let die_after = DIE_AFTER.to_string();
    let die_uncommitted = DIE_UNCOMMITTED.to_string();
    let runs: Vec<(&str, JoinHandle<Output>)> = ["a", "b", "victim"]
        .into_iter()
        .map(|name| {
            let mut args = vec!["consume", bootstrap, GROUP_TOPIC, GROUP, name];
            if name == "victim" {
                args.extend([
                    "--die-after",
                    &die_after,
                    "--die-uncommitted",
                    &die_uncommitted,
                ]);
            }
            let cmd = py_cmd(py, "groups.py", &args);
            (
                name,
                std::thread::spawn(move || run(cmd, None, CLIENT_LIMIT)),
            )
        })
        .collect();
    runs.into_iter()
        .map(|(name, h)| {
            let out = h.join().unwrap();
            let m = member_events(&out);
            (name, (out, m))
        })
        .collect()
}

/// The killed member's partitions at its death, each with the group's committed offset then
/// (its last commit of that partition, or the offset committed when it was assigned).
fn victim_positions(victim: &Member) -> BTreeMap<i64, i64> {
    let last = victim.assigned.len() - 1;
    let mut committed: BTreeMap<i64, i64> = victim.assigned[last]
        .iter()
        .map(|&(p, o)| (p, o.max(0)))
        .collect();
    for (_, offsets) in victim.commits.iter().filter(|(a, _)| *a == last) {
        for &(p, o) in offsets {
            committed.insert(p, o);
        }
    }
    committed
}

/// Every record was processed; twice only the victim's records past its last commit, each
/// once more by a survivor, which took the victim's partitions over from there to the end.
fn check_takeover(
    members: &BTreeMap<&str, (Output, Member)>,
    produced: &BTreeMap<(i64, i64), String>,
    ends: &BTreeMap<i64, i64>,
) {
    let victim = &members["victim"].1;
    let at_death = victim_positions(victim);
    assert_eq!(at_death.len(), 2, "victim's last assignment: {at_death:?}");
    assert!(victim.recs.len() >= DIE_AFTER);
    assert!(!victim.commits.is_empty(), "the victim never committed");
    let uncommitted: BTreeSet<(i64, i64)> = victim
        .recs
        .iter()
        .filter(|(p, o, _)| at_death.get(p).is_some_and(|c| o >= c))
        .map(|&(p, o, _)| (p, o))
        .collect();
    assert_eq!(
        uncommitted.len(),
        DIE_UNCOMMITTED,
        "victim's records past its commits {uncommitted:?}, commits at death {at_death:?}"
    );

    let mut times: BTreeMap<(i64, i64), usize> = BTreeMap::new();
    for (_, m) in members.values() {
        for &(p, o, _) in &m.recs {
            *times.entry((p, o)).or_default() += 1;
        }
    }
    let missing: Vec<_> = produced.keys().filter(|k| !times.contains_key(k)).collect();
    assert!(missing.is_empty(), "never processed: {missing:?}");
    assert!(times.values().all(|&n| n <= 2), "{times:?}");
    let twice: BTreeSet<(i64, i64)> = times
        .iter()
        .filter(|(_, &n)| n > 1)
        .map(|(&k, _)| k)
        .collect();
    assert_eq!(twice, uncommitted, "records processed twice");

    let survivors: BTreeSet<(i64, i64)> = ["a", "b"]
        .iter()
        .flat_map(|n| members[n].1.recs.iter().map(|&(p, o, _)| (p, o)))
        .collect();
    for (&p, &from) in &at_death {
        for o in from..ends[&p] {
            assert!(survivors.contains(&(p, o)), "{p}:{o} not taken over");
        }
    }
}

#[test]
fn group_of_three_survives_a_sigkilled_member() {
    let Some(py) = python() else { return };
    let (_t, dir) = data_dir();
    let s = start_kafka(&dir, &[]);
    let (produced, ends) = produce_group_records(&py, &s.kafka);
    let members = run_members(&py, &s.kafka);

    // The victim died of SIGKILL mid-stream; the others left once the group was done.
    let (out, victim) = &members["victim"];
    let why = describe_output("victim", out);
    assert_eq!(out.status.signal(), Some(libc::SIGKILL), "{why}");
    assert!(victim.dying && !victim.closed, "{why}");
    for name in ["a", "b"] {
        let (out, m) = &members[name];
        assert!(
            out.status.success() && m.closed,
            "{}",
            describe_output(name, out)
        );
    }
    for (name, (_, m)) in &members {
        assert!(m.commit_errors.is_empty(), "{name}: {:?}", m.commit_errors);
        for (p, o, k) in &m.recs {
            assert_eq!(produced.get(&(*p, *o)), Some(k), "{name} got {p}:{o} {k}");
        }
    }
    check_takeover(&members, &produced, &ends);

    // The group's committed offsets are the partitions' ends, in sluice's own view.
    let positions = topic_positions(&s.server.addr, GROUP_TOPIC, GROUP);
    let want: BTreeMap<i64, (i64, Option<i64>)> =
        ends.iter().map(|(&p, &e)| (p, (e, Some(e)))).collect();
    assert_eq!(positions, want);
}

#[test]
fn admin_client_group_operations() {
    let Some(py) = python() else { return };
    let (_t, dir) = data_dir();
    let s = start_kafka(&dir, &[]);
    let args = [s.kafka.as_str(), "ledger", "auditors"];
    let out = run(py_cmd(&py, "group_admin.py", &args), None, CLIENT_LIMIT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("all checks passed"),
        "{}",
        describe_output("group_admin.py", &out)
    );
    for check in [
        "setup", "stable", "offsets", "busy", "empty", "alter", "delete",
    ] {
        assert!(
            stdout.contains(&format!("ok {check}\n")),
            "{check} did not run:\n{stdout}"
        );
    }
    // The deleted group's offsets are gone from sluice's named subscribers too.
    let positions = topic_positions(&s.server.addr, "ledger", "auditors");
    assert_eq!(positions.len(), 3);
    assert!(
        positions
            .values()
            .all(|&(end, committed)| end == 10 && committed.is_none()),
        "{positions:?}"
    );
}

const VERIFIABLE_TOPIC: &str = "payments";
const VERIFIABLE_GROUP: &str = "reconcile";
const VERIFIABLE_RECORDS: usize = 3000;

/// The verifiable producer writes 3000 records at 300 a second; the broker is SIGKILLed once
/// a third is acknowledged and restarted on the same ports and data directory. Returns the
/// restarted server and the acknowledged records, (partition, offset) -> value.
fn produce_across_a_kill(
    py: &Path,
    dir: &Path,
    ports: (u16, u16),
) -> (common::ServerProc, BTreeMap<(i64, i64), String>) {
    let mut server = start_on_ports(dir, ports.0, ports.1);
    let bootstrap = format!("127.0.0.1:{}", ports.1);
    let create = ["topic", "create", VERIFIABLE_TOPIC, "--partitions", "3"];
    cli_ok(&server.addr, &create, None);
    let max = VERIFIABLE_RECORDS.to_string();
    let mut producer = Streaming::spawn(py_cmd(
        py,
        "verifiable.py",
        &[
            "producer",
            "--topic",
            VERIFIABLE_TOPIC,
            "--broker-list",
            &bootstrap,
            "--max-messages",
            &max,
            "--throughput",
            "300",
            "--acks",
            "-1",
            "-X",
            "conf_enable.idempotence=true",
        ],
    ));
    let third = VERIFIABLE_RECORDS / 3;
    let acked_enough = producer.until(Instant::now() + Duration::from_secs(60), |seen| {
        named(seen, "producer_send_success").count() >= third
    });
    assert!(acked_enough, "the producer did not get {third} acks");
    server.kill9();
    let acked_before_kill = named(&producer.seen, "producer_send_success").count();
    std::thread::sleep(Duration::from_millis(500));
    let server = start_on_ports(dir, ports.0, ports.1);
    let (status, produced, stderr) = producer.finish(false);
    assert!(status.success(), "producer: {status:?}\n{stderr}");

    let mut acked = BTreeMap::new();
    for e in named(&produced, "producer_send_success") {
        let at = (int(e, "partition"), int(e, "offset"));
        assert!(
            acked.insert(at, text(e, "value").to_owned()).is_none(),
            "{at:?} acked twice"
        );
    }
    let errors: Vec<&Value> = named(&produced, "producer_send_error").collect();
    assert!(errors.is_empty(), "send errors: {errors:?}");
    assert_eq!(
        acked.len(),
        VERIFIABLE_RECORDS,
        "{acked_before_kill} acks before the kill"
    );
    assert!(
        acked_before_kill < VERIFIABLE_RECORDS,
        "the kill came after the last ack"
    );
    (server, acked)
}

/// The verifiable consumer, in a group, until it consumed every record of `acked`; then
/// SIGTERM (it commits and leaves). Its events.
fn consume_all(py: &Path, bootstrap: &str, acked: &BTreeMap<(i64, i64), String>) -> Vec<Value> {
    let mut consumer = Streaming::spawn(py_cmd(
        py,
        "verifiable.py",
        &[
            "consumer",
            "--topic",
            VERIFIABLE_TOPIC,
            "--group-id",
            VERIFIABLE_GROUP,
            "--broker-list",
            bootstrap,
            "--session-timeout",
            "6000",
            "--verbose",
        ],
    ));
    let consumed_all = consumer.until(Instant::now() + Duration::from_secs(60), |seen| {
        let got: BTreeSet<(i64, i64)> = named(seen, "record_data")
            .map(|e| (int(e, "partition"), int(e, "offset")))
            .collect();
        acked.keys().all(|k| got.contains(k))
    });
    let (status, consumed, stderr) = consumer.finish(true);
    assert!(
        consumed_all,
        "not every acked record was consumed\n{stderr}"
    );
    assert!(status.success(), "consumer: {status:?}\n{stderr}");
    let shutdown: Vec<&Value> = named(&consumed, "shutdown_complete").collect();
    assert_eq!(shutdown.len(), 1, "{stderr}");
    assert_eq!(shutdown[0]["failed"], false, "{stderr}");
    consumed
}

#[test]
fn verifiable_clients_across_a_broker_sigkill() {
    let Some(py) = python() else { return };
    let (_t, dir) = data_dir();
    let ports = (free_port(), free_port());
    let (server, acked) = produce_across_a_kill(&py, &dir, ports);
    let consumed = consume_all(&py, &format!("127.0.0.1:{}", ports.1), &acked);

    // Every acknowledged record was consumed at its offset; the idempotent producer's retries
    // across the crash stored no record twice.
    let mut values: BTreeMap<(i64, i64), String> = BTreeMap::new();
    for e in named(&consumed, "record_data") {
        let at = (int(e, "partition"), int(e, "offset"));
        let value = text(e, "value").to_owned();
        if let Some(before) = values.insert(at, value.clone()) {
            assert_eq!(before, value, "{at:?} read back as two values");
        }
    }
    for (at, value) in &acked {
        assert_eq!(values.get(at), Some(value), "acked record {at:?}");
    }
    let distinct: BTreeSet<&String> = values.values().collect();
    assert_eq!(distinct.len(), values.len(), "a value stored twice");

    // The consumer's commits end at the partitions' ends, in sluice's view too. A commit
    // reports a partition with nothing new to commit as offset -1001: the highest offset
    // reported is the last one committed.
    let commits: Vec<&Value> = named(&consumed, "offsets_committed").collect();
    let mut last_commit: BTreeMap<i64, i64> = BTreeMap::new();
    for e in &commits {
        assert_eq!(e["success"], true, "{e}");
        for o in e["offsets"].as_array().unwrap() {
            let highest = last_commit.entry(int(o, "partition")).or_insert(-1);
            *highest = (*highest).max(int(o, "offset"));
        }
    }
    let positions = topic_positions(&server.addr, VERIFIABLE_TOPIC, VERIFIABLE_GROUP);
    assert_eq!(positions.len(), 3);
    for (p, (end, committed)) in &positions {
        assert_eq!(*committed, Some(*end), "partition {p}: {positions:?}");
        assert_eq!(last_commit.get(p), Some(end), "partition {p}: {commits:#?}");
    }
}
