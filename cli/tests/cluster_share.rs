//! Kafka share groups (KIP-932) on a cluster: confluent-kafka's `ShareConsumer`
//! (`tests/kafka/py/share.py`) against three real `sluice serve` processes, each with its Kafka
//! listener. A topic of three partitions with replication factor 3 (each led by another node)
//! is shared by two consumers of one group, each accepting every record explicitly; the leader
//! of partition 0 is SIGKILLed mid-stream. Each partition's share of the group goes through its
//! replicated log, so the new leader delivers no record whose accept was confirmed, and every
//! record is accepted in the end. And Kafka's Java Admin moves and reads a share group's start
//! offsets on a topic of three partitions with two replicas each, so the group's coordinator
//! holds no replica of some partition, and deletes them, after which the group starts over on
//! each partition (`tests/kafka/java/src/ShareMove.java`). Installed by `tests/kafka/install.sh py java`;
//! without them the tests fail under `CI=true` and are skipped elsewhere.

#[path = "kafka_python_groups/clients.rs"]
#[allow(dead_code)]
mod clients;
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use clients::{describe_output, events, free_port, int, py_cmd, Streaming};
use common::cluster::{cluster_nodes, leader_of, statuses, Node};
use common::kafka::{compile_java, java_classpath, python, run};

const N: usize = 3_000;
/// Accepts a consumer sends before each commit: at most this many per consumer are in doubt
/// at a kill (made durable, their confirmation lost).
const COMMIT_EVERY: usize = 20;

fn kafka_cluster(root: &Path) -> (Vec<Node>, String) {
    let (mut nodes, spec) = cluster_nodes(root, 3);
    for n in nodes.iter_mut() {
        n.kafka = Some(format!("127.0.0.1:{}", free_port()));
        n.start(&spec);
    }
    let bootstrap = nodes
        .iter()
        .map(|n| n.kafka.clone().unwrap())
        .collect::<Vec<_>>()
        .join(",");
    (nodes, bootstrap)
}

/// (partition, offset) of the records delivered.
fn records(events: &[Value]) -> BTreeSet<(i64, i64)> {
    events
        .iter()
        .filter(|e| e["ev"] == "rec")
        .map(|e| (int(e, "p"), int(e, "o")))
        .collect()
}

/// (partition, offset) of the accepts the broker confirmed.
fn confirmed(events: &[Value]) -> BTreeSet<(i64, i64)> {
    let mut out = BTreeSet::new();
    for e in events.iter().filter(|e| e["ev"] == "confirmed") {
        let p = int(e, "p");
        for o in e["o"].as_array().unwrap() {
            out.insert((p, o.as_i64().unwrap()));
        }
    }
    out
}

fn consumer(py: &Path, bootstrap: &str, name: &str) -> Streaming {
    let every = COMMIT_EVERY.to_string();
    Streaming::spawn(py_cmd(
        py,
        "share.py",
        &[
            "consume",
            bootstrap,
            "shared",
            "g",
            name,
            "--explicit",
            "--commit-every",
            &every,
            "--idle-s",
            "10",
            "--limit-s",
            "150",
            // 3,000 records take two consumers 3 s at least: the kill comes mid-stream however
            // fast the machine.
            "--slow-ms",
            "2",
        ],
    ))
}

#[test]
fn share_consumers_lose_no_confirmed_accept_through_a_partition_leaders_kill() {
    let Some(py) = python() else { return };
    let root = tempfile::tempdir().unwrap();
    let (mut nodes, bootstrap) = kafka_cluster(root.path());
    let args = ["produce", &bootstrap, "shared", &N.to_string()];
    let mut cmd = py_cmd(&py, "share.py", &args);
    cmd.args(["--partitions", "3", "--replicas", "3"]);
    let out = run(cmd, None, Duration::from_secs(120));
    assert!(out.status.success(), "{}", describe_output("produce", &out));
    assert_eq!(events(&out).last().unwrap()["errors"], 0);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let lead = rt.block_on(leader_of(&nodes, "t/shared/0"));
    let mut a = consumer(&py, &bootstrap, "a");
    let mut b = consumer(&py, &bootstrap, "b");
    // Both consumers are read in turns: the kill comes once the two together have 300
    // accepts confirmed, whichever of them took the records.
    let deadline = Instant::now() + Duration::from_secs(90);
    let together =
        |a: &Streaming, b: &Streaming| confirmed(&a.seen).len() + confirmed(&b.seen).len();
    while together(&a, &b) < 300 && Instant::now() < deadline {
        a.until(Instant::now() + Duration::from_millis(20), |_| false);
        b.until(Instant::now() + Duration::from_millis(20), |_| false);
    }
    assert!(
        together(&a, &b) >= 300,
        "300 accepts confirmed before the kill: {:?} {:?}",
        a.seen.last(),
        b.seen.last()
    );
    nodes[lead].kill9();
    // Records delivered before the kill whose events are still on their way are read while
    // the partition has no leader.
    a.until(Instant::now() + Duration::from_millis(500), |_| false);
    b.until(Instant::now() + Duration::from_millis(500), |_| false);
    let before: BTreeSet<_> = records(&a.seen).union(&records(&b.seen)).copied().collect();
    let confirmed_before = confirmed(&a.seen).len() + confirmed(&b.seen).len();

    let (sa, ea, errs_a) = a.finish(false);
    let (sb, eb, errs_b) = b.finish(false);
    assert!(sa.success() && sb.success(), "{errs_a}\n{errs_b}");
    for e in ea.iter().chain(&eb) {
        assert_ne!(
            e["ev"], "violation",
            "a record delivered after its accept: {e}"
        );
    }
    let all: BTreeSet<_> = records(&ea).union(&records(&eb)).copied().collect();
    let accepted: BTreeSet<_> = confirmed(&ea).union(&confirmed(&eb)).copied().collect();
    assert_eq!(all.len(), N, "every record delivered");
    // An accept in flight at the kill may be durable with its confirmation lost: only records
    // delivered before the kill, one commit window per consumer at most, may be so.
    let in_doubt: BTreeSet<_> = all.difference(&accepted).copied().collect();
    assert!(
        in_doubt.len() <= 2 * COMMIT_EVERY && in_doubt.is_subset(&before),
        "records never accepted beyond those in flight at the kill: {in_doubt:?}"
    );
    assert!(confirmed_before < N, "the kill came mid-stream");
    eprintln!(
        "{confirmed_before} accepts confirmed before the kill of node {}, {} after, {} in doubt",
        nodes[lead].id,
        accepted.len() - confirmed_before.min(accepted.len()),
        in_doubt.len()
    );
}

#[test]
fn a_share_groups_start_offsets_move_and_read_through_each_partitions_leader() {
    let Some(cp) = java_classpath() else { return };
    let root = tempfile::tempdir().unwrap();
    let classes = root.path().join("classes");
    std::fs::create_dir_all(&classes).unwrap();
    compile_java(&cp, "ShareMove.java", &classes);
    let (nodes, bootstrap) = kafka_cluster(root.path());
    let mut cmd = std::process::Command::new("java");
    cmd.args(["-Xmx256m", "-XX:TieredStopAtLevel=1", "-cp"])
        .arg(format!("{cp}:{}", classes.display()))
        .args(["ShareMove", &bootstrap, "moved", "g", "3", "40", "15", "2"]);
    let out = run(cmd, None, Duration::from_secs(240));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ShareMove: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |prefix: &str| -> &str {
        let l = stdout.lines().find(|l| l.starts_with(prefix));
        l.unwrap_or_else(|| panic!("no {prefix:?} line in {stdout}"))
    };
    let starts: Vec<BTreeMap<u32, i64>> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("starts "))
        .map(start_offsets)
        .collect();
    assert_eq!(line("produced"), "produced partitions=3 each=40");
    assert_eq!(line("moved"), "moved to=15");
    assert_eq!(starts.len(), 3, "{stdout}");
    assert!(
        !stdout.contains("extra"),
        "a record delivered twice: {stdout}"
    );
    // A partition's log holds entries that are not records (a leader's first entry, the
    // group's changes): its 40 records follow them, and the start offset passes both.
    let first = records_seen(line("first "));
    assert_eq!(first.len(), 3, "{stdout}");
    for (p, &(n, from, to)) in &first {
        assert_eq!((n, to - from + 1), (40, 40), "partition {p}: {stdout}");
        assert!(starts[0][p] > to, "all settled on partition {p}: {stdout}");
        assert_eq!(starts[1][p], 15, "moved on partition {p}: {stdout}");
        assert!(
            starts[2][p] > to,
            "all settled again on partition {p}: {stdout}"
        );
    }
    // What follows the moved start is delivered again, as first deliveries.
    let again = records_seen(line("again "));
    let want: BTreeMap<u32, (i64, i64, i64)> = first
        .iter()
        .map(|(&p, &(_, _, to))| (p, (to - 15 + 1, 15, to)))
        .collect();
    assert_eq!(again, want, "{stdout}");
    assert!(line("first ").ends_with("counts=[1]") && line("again ").ends_with("counts=[1]"));
    // Its offsets deleted, the group starts over on each partition: all 40 records again, as
    // first deliveries.
    assert_eq!(line("deleted"), "deleted");
    assert_eq!(records_seen(line("anew ")), first, "{stdout}");
    assert!(line("anew ").ends_with("counts=[1]"), "{stdout}");
    // Two replicas of each partition on three nodes: the coordinator (the metadata's leader)
    // holds no replica of some partition, whose moves and reads went through its leader.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let coordinator = nodes[rt.block_on(leader_of(&nodes, "meta"))].id;
    let statuses = rt.block_on(statuses(&nodes));
    let held: Vec<&str> = statuses
        .iter()
        .filter(|s| s.node_id == coordinator)
        .flat_map(|s| s.groups.iter().map(|g| g.group.as_str()))
        .filter(|g| g.starts_with("t/moved/"))
        .collect();
    assert!(held.len() < 3, "node {coordinator} holds {held:?}");
}

/// `{0=44,1=44}` as partition -> start offset.
fn start_offsets(s: &str) -> BTreeMap<u32, i64> {
    s.trim_matches(|c| c == '{' || c == '}')
        .split(',')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.parse().unwrap(), v.parse().unwrap())
        })
        .collect()
}

/// `first 0:40@2-41,1:40@2-41 counts=[1]` as partition -> (records, first offset, last).
fn records_seen(line: &str) -> BTreeMap<u32, (i64, i64, i64)> {
    let parts = line.split(' ').nth(1).unwrap();
    parts
        .split(',')
        .map(|part| {
            let (p, rest) = part.split_once(':').unwrap();
            let (n, range) = rest.split_once('@').unwrap();
            let (from, to) = range.split_once('-').unwrap();
            let num = |x: &str| x.parse::<i64>().unwrap();
            (p.parse().unwrap(), (num(n), num(from), num(to)))
        })
        .collect()
}
