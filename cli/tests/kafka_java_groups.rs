//! Consumer groups (classic protocol) through Kafka's own Java client and tools against the real
//! `sluice serve`: members joining and leaving a group of 6 partitions
//! (`tests/kafka/java/src/Groups.java rebalance`), the AdminClient's topic and group calls
//! (`Groups.java admin`), the console producer and consumer with kafka-consumer-groups
//! (`--list`, `--describe`, `--reset-offsets`), and the producer and consumer perf tools.
//! Installed by `tests/kafka/install.sh java`; without it the tests fail under `CI=true` and are
//! skipped elsewhere.
//!
//! Longer than most files on purpose: each file under `tests/` is a binary of its own that links
//! the whole broker, so the scenarios of one subject share one binary (and one set of helpers)
//! rather than adding links to a CI run on two cores.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::data_dir;
use common::kafka::{java_classpath, missing, repo_root, run, start_kafka};

/// How long one JVM may run before it is killed.
const JAVA_LIMIT: Duration = Duration::from_secs(90);

fn java(cp: &str, class: &str, args: &[&str]) -> Command {
    let mut c = Command::new("java");
    c.args(["-Xmx256m", "-XX:TieredStopAtLevel=1", "-cp", cp, class])
        .args(args);
    c
}

/// Runs a Java program that must succeed; its stdout.
fn java_ok(cp: &str, class: &str, args: &[&str], stdin: Option<&[u8]>) -> String {
    let out = run(java(cp, class, args), stdin, JAVA_LIMIT);
    assert!(
        out.status.success(),
        "{class} {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// The class path with `Groups.java` compiled, once per source text: into
/// `<target tmp>/kafka-java-groups-<hash of the source>`, renamed into place when complete so
/// that a killed compile leaves nothing half-written behind.
fn groups_classpath() -> Option<String> {
    let lib = java_classpath()?;
    let has_javac = Command::new("javac")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_javac {
        return missing("javac (a JDK)");
    }
    static CLASSES: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let classes = CLASSES.get_or_init(|| {
        let src = repo_root().join("tests/kafka/java/src/Groups.java");
        let text = std::fs::read(&src).map_err(|e| format!("read {}: {e}", src.display()))?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        text.hash(&mut h);
        let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let dir = tmp.join(format!("kafka-java-groups-{:016x}", h.finish()));
        if dir.join("Groups.class").is_file() {
            return Ok(dir);
        }
        let building = tmp.join(format!("kafka-java-groups-build-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&building);
        let mut c = Command::new("javac");
        c.args(["-nowarn", "-Xlint:-removal", "-cp", &lib, "-d"])
            .arg(&building)
            .arg(&src);
        let out = run(c, None, Duration::from_secs(120));
        if !out.status.success() {
            return Err(format!(
                "javac Groups.java: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        // Another test process may have renamed its own copy first; either is complete.
        if std::fs::rename(&building, &dir).is_err() {
            let _ = std::fs::remove_dir_all(&building);
        }
        Ok(dir)
    });
    match classes {
        Ok(dir) => Some(format!("{lib}:{}", dir.display())),
        Err(e) => panic!("{e}"),
    }
}

/// Runs `Groups <args>` (it must succeed) and returns its lines as step -> `key=value` facts.
fn groups(cp: &str, args: &[&str]) -> (String, Facts) {
    let out = run(java(cp, "Groups", args), None, JAVA_LIMIT);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "Groups {args:?} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let facts = Facts::parse(&stdout);
    (stdout, facts)
}

/// The lines `step key=value ...` of a Groups run; a step printed more than once keeps each.
struct Facts(Vec<(String, HashMap<String, String>)>);

impl Facts {
    fn parse(stdout: &str) -> Facts {
        let mut v = Vec::new();
        for line in stdout.lines() {
            let mut words = line.split(' ');
            let step = words.next().unwrap_or_default().to_owned();
            let kv = words
                .filter_map(|w| w.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            v.push((step, kv));
        }
        Facts(v)
    }

    /// Every line of `step`.
    fn all(&self, step: &str) -> Vec<&HashMap<String, String>> {
        self.0
            .iter()
            .filter(|(s, _)| s == step)
            .map(|(_, kv)| kv)
            .collect()
    }

    /// The fact `key` of the one line of `step`.
    fn get(&self, step: &str, key: &str) -> &str {
        let lines = self.all(step);
        assert_eq!(lines.len(), 1, "one `{step}` line");
        lines[0]
            .get(key)
            .unwrap_or_else(|| panic!("`{step}` has no {key}"))
    }

    fn num(&self, step: &str, key: &str) -> i64 {
        let v = self.get(step, key);
        v.parse()
            .unwrap_or_else(|_| panic!("`{step}` {key}={v} is not a number"))
    }

    /// The fact `key` of `step` as a set of partitions ("-" is none).
    fn parts(&self, step: &str, key: &str) -> BTreeSet<i32> {
        let v = self.get(step, key);
        if v == "-" {
            return BTreeSet::new();
        }
        v.split(',').map(|p| p.parse().unwrap()).collect()
    }
}

#[test]
fn java_group_members_join_and_leave() {
    let Some(cp) = groups_classpath() else { return };
    let (_t, dir) = data_dir();
    let s = start_kafka(&dir, &[]);
    const N: i64 = 600;
    let (out, f) = groups(
        &cp,
        &["rebalance", &s.kafka, "six", "six-g", &N.to_string()],
    );
    let all: BTreeSet<i32> = (0..6).collect();
    let ctx = format!("Groups output:\n{out}");

    // A alone owns every partition; B's join splits them 3 and 3 in a later generation; after
    // A leaves, B owns all 6 in a later generation still.
    assert_eq!(f.parts("phase1", "a"), all, "{ctx}");
    let (a, b) = (f.parts("phase2", "a"), f.parts("phase2", "b"));
    assert_eq!((a.len(), b.len()), (3, 3), "{ctx}");
    assert_eq!(a.union(&b).copied().collect::<BTreeSet<_>>(), all, "{ctx}");
    assert_eq!(f.parts("phase3", "b"), all, "{ctx}");
    let generations = [
        f.num("phase1", "generation"),
        f.num("phase2", "generation"),
        f.num("phase3", "generation"),
    ];
    assert!(
        generations[0] >= 1 && generations[0] < generations[1] && generations[1] < generations[2],
        "{generations:?} {ctx}"
    );

    // Records produced after the split go to the owner of their partition only (record i of
    // the batch to partition i % 6); those produced after A left go to B.
    let owned_by_a = (0..N / 3).filter(|i| a.contains(&((i % 6) as i32))).count() as i64;
    assert_eq!(f.num("phase2-delivered", "a"), owned_by_a, "{ctx}");
    assert_eq!(f.num("phase2-delivered", "b"), N / 3 - owned_by_a, "{ctx}");
    assert_eq!(f.get("phase2-delivered", "a-foreign"), "0", "{ctx}");
    assert_eq!(f.get("phase2-delivered", "b-foreign"), "0", "{ctx}");
    assert_eq!(
        f.get("phase2-delivered", "same-assignment"),
        "true",
        "{ctx}"
    );
    assert_eq!(f.num("phase3-delivered", "b"), N - 2 * (N / 3), "{ctx}");

    // Every record consumed at least once with its value; the committed offsets are the ends.
    assert_eq!(f.num("consumed", "produced"), N, "{ctx}");
    assert_eq!(f.num("consumed", "distinct"), N, "{ctx}");
    assert_eq!(f.num("consumed", "missing"), 0, "{ctx}");
    assert_eq!(f.num("consumed", "wrong"), 0, "{ctx}");
    assert!(f.num("consumed", "delivered") >= N, "{ctx}");
    assert_eq!(f.get("consumed", "errors"), "none", "{ctx}");
    let committed = f.all("committed");
    assert_eq!(committed.len(), 6, "{ctx}");
    let mut total = 0;
    for c in committed {
        assert_eq!(c["offset"], c["end"], "{c:?} {ctx}");
        total += c["end"].parse::<i64>().unwrap();
    }
    assert_eq!(total, N, "{ctx}");

    // The group's commits are the topic's named subscriber `six-g`: at the end, lag 0.
    let described = common::cli_ok(&s.server.addr, &["topic", "describe", "six"], None);
    let at_end = described
        .iter()
        .filter(|l| l.contains("six-g committed") && l.ends_with("lag 0"))
        .count();
    assert_eq!(at_end, 6, "{described:#?}");
}

#[test]
fn java_admin_client_topics_and_groups() {
    let Some(cp) = groups_classpath() else { return };
    let (_t, dir) = data_dir();
    let s = start_kafka(&dir, &[]);
    let (out, f) = groups(&cp, &["admin", &s.kafka, "adm", "adm-g"]);
    let ctx = format!("Groups output:\n{out}");
    let line = |step: &str| -> String {
        out.lines()
            .find(|l| l.split(' ').next() == Some(step))
            .unwrap_or_else(|| panic!("no `{step}` line; {ctx}"))
            .to_owned()
    };

    assert_eq!(line("create"), "create result=ok");
    assert_eq!(
        line("create-again"),
        "create-again result=TopicExistsException"
    );
    assert_eq!(f.get("describe", "name"), "adm", "{ctx}");
    assert_eq!(f.get("describe", "partitions"), "0,1,2", "{ctx}");
    assert_eq!(f.get("describe", "leader"), "0", "{ctx}");
    assert_eq!(f.get("describe", "internal"), "false", "{ctx}");
    let id = f.get("describe", "topic-id");
    assert!(id.len() == 22 && id != "AAAAAAAAAAAAAAAAAAAAAA", "{ctx}");
    assert_eq!(
        line("describe-by-id"),
        "describe-by-id name=adm partitions=3"
    );
    assert_eq!(line("consumed"), "consumed count=30 assigned=0,1,2");

    // One member holds the group: listed and described as a stable classic group with the
    // member's assignment; the commits' metadata round-trips.
    assert_eq!(
        line("member-listed"),
        "member-listed count=1 state=Stable type=Classic simple=false"
    );
    assert_eq!(
        line("member-described"),
        "member-described state=Stable type=Classic members=1 assignor=range coordinator=0 \
         simple=false assignment=groups-admin@/127.0.0.1:0,1,2"
    );
    let committed = "count=3 offsets=adm-0:10:meta-0,adm-1:10:meta-1,adm-2:10:meta-2";
    assert_eq!(line("offsets"), format!("offsets {committed}"));
    // While it has a member the group can be neither deleted nor have its offsets altered.
    assert_eq!(
        line("delete-group-member"),
        "delete-group-member result=GroupNotEmptyException"
    );
    assert_eq!(
        line("alter-offsets-member"),
        "alter-offsets-member result=UnknownMemberIdException"
    );
    assert_eq!(
        line("offsets-unaltered"),
        format!("offsets-unaltered {committed}")
    );

    // The member closed (LeaveGroup): Empty, and now both are accepted.
    assert_eq!(f.get("empty-listed", "count"), "1", "{ctx}");
    assert_eq!(f.get("empty-listed", "state"), "Empty", "{ctx}");
    assert_eq!(f.get("empty-described", "state"), "Empty", "{ctx}");
    assert_eq!(f.get("empty-described", "members"), "0", "{ctx}");
    assert_eq!(f.get("empty-described", "coordinator"), "0", "{ctx}");
    // A difference from Kafka (docs/kafka-groups.md): an empty group leaves sluice's memory and
    // is listed from its offsets with an empty protocol type, which the admin client reads as
    // a "simple" group; Kafka keeps the type `consumer` and answers false.
    assert_eq!(f.get("empty-listed", "simple"), "true", "{ctx}");
    assert_eq!(f.get("empty-described", "simple"), "true", "{ctx}");
    assert_eq!(line("alter-offsets-empty"), "alter-offsets-empty result=ok");
    assert_eq!(
        line("offsets-altered"),
        "offsets-altered count=3 offsets=adm-0:1:reset,adm-1:10:meta-1,adm-2:10:meta-2"
    );
    assert_eq!(line("delete-group-empty"), "delete-group-empty result=ok");
    assert_eq!(
        line("listed-after-delete"),
        "listed-after-delete present=false"
    );
    assert_eq!(
        line("offsets-after-delete"),
        "offsets-after-delete count=0 offsets=-"
    );
    assert_eq!(
        line("delete-group-again"),
        "delete-group-again result=GroupIdNotFoundException"
    );

    assert_eq!(line("delete-topic"), "delete-topic result=ok");
    assert_eq!(
        line("describe-deleted"),
        "describe-deleted result=UnknownTopicOrPartitionException"
    );
    assert_eq!(
        line("topic-listed-after-delete"),
        "topic-listed-after-delete present=false"
    );
}

/// One row of `kafka-consumer-groups --describe`: partition -> (current, log end, lag).
type Rows = BTreeMap<i32, (String, i64, String)>;

/// Parses the table of `--describe --group GROUP` for `topic`, checking its header.
fn describe_rows(out: &str, group: &str, topic: &str) -> Rows {
    let mut lines = out.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_else(|| panic!("no table: {out}"))
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "GROUP",
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "LOG-END-OFFSET",
            "LAG",
            "CONSUMER-ID",
            "HOST",
            "CLIENT-ID"
        ],
        "{out}"
    );
    let mut rows = Rows::new();
    for l in lines {
        let w: Vec<&str> = l.split_whitespace().collect();
        assert_eq!(w.len(), 9, "row {l:?} of {out}");
        assert_eq!((w[0], w[1]), (group, topic), "{out}");
        let end = w[4].parse().unwrap_or_else(|_| panic!("{out}"));
        rows.insert(
            w[2].parse().unwrap(),
            (w[3].to_owned(), end, w[5].to_owned()),
        );
    }
    rows
}

#[test]
fn java_console_tools_and_kafka_consumer_groups() {
    let Some(cp) = java_classpath() else { return };
    let (_t, dir) = data_dir();
    let s = start_kafka(&dir, &[]);
    let b = s.kafka.as_str();
    let (topic, group) = ("console", "console-g");
    common::cli_ok(
        &s.server.addr,
        &["topic", "create", topic, "--partitions", "3"],
        None,
    );
    let c = Console {
        cp: &cp,
        bootstrap: b,
        topic,
        group,
    };

    c.produce(0..30);
    assert_eq!(c.consume(&["--from-beginning"], 30), sorted_lines(0..30));
    let listed = c.groups_tool(&["--list"]);
    assert!(listed.lines().any(|l| l.trim() == group), "{listed}");

    let rows = every_partition_committed_at_its_end(&c);
    more_lines_show_as_lag(&c, &rows);
    reset_to_earliest_reads_everything_again(&c);
}

/// Kafka's console producer, console consumer and kafka-consumer-groups, on one topic and one
/// group.
struct Console<'a> {
    cp: &'a str,
    bootstrap: &'a str,
    topic: &'a str,
    group: &'a str,
}

impl Console<'_> {
    /// Produces `k<i>:line-<i>` for each `i` of `range`, keyed.
    fn produce(&self, range: std::ops::Range<i32>) {
        let input: String = range.map(|i| format!("k{i}:line-{i}\n")).collect();
        let args = [
            "--bootstrap-server",
            self.bootstrap,
            "--topic",
            self.topic,
            "--reader-property",
            "parse.key=true",
            "--reader-property",
            "key.separator=:",
        ];
        java_ok(
            self.cp,
            "org.apache.kafka.tools.ConsoleProducer",
            &args,
            Some(input.as_bytes()),
        );
    }

    /// Consumes `n` messages in the group; the `line-` ones, sorted.
    fn consume(&self, extra: &[&str], n: usize) -> Vec<String> {
        let max = n.to_string();
        let mut args = vec![
            "--bootstrap-server",
            self.bootstrap,
            "--topic",
            self.topic,
            "--group",
            self.group,
            "--max-messages",
            &max,
            "--timeout-ms",
            "30000",
            "--command-property",
            "group.protocol=classic",
        ];
        args.extend_from_slice(extra);
        let out = java_ok(
            self.cp,
            "org.apache.kafka.tools.consumer.ConsoleConsumer",
            &args,
            None,
        );
        let mut got: Vec<String> = out
            .lines()
            .filter(|l| l.starts_with("line-"))
            .map(str::to_owned)
            .collect();
        got.sort();
        got
    }

    /// kafka-consumer-groups with `args`; its stdout.
    fn groups_tool(&self, args: &[&str]) -> String {
        let mut a = vec!["--bootstrap-server", self.bootstrap];
        a.extend_from_slice(args);
        java_ok(
            self.cp,
            "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
            &a,
            None,
        )
    }

    /// The group's rows in `kafka-consumer-groups --describe`.
    fn describe(&self) -> Rows {
        describe_rows(
            &self.groups_tool(&["--describe", "--group", self.group]),
            self.group,
            self.topic,
        )
    }
}

/// `line-<i>` for each `i` of `range`, sorted as strings.
fn sorted_lines(range: std::ops::Range<i32>) -> Vec<String> {
    let mut v: Vec<String> = range.map(|i| format!("line-{i}")).collect();
    v.sort();
    v
}

/// Every partition committed at its end (the keys spread the 30 lines over all 3).
fn every_partition_committed_at_its_end(c: &Console) -> Rows {
    let rows = c.describe();
    assert_eq!(
        rows.keys().copied().collect::<Vec<_>>(),
        [0, 1, 2],
        "{rows:?}"
    );
    for (p, (current, end, lag)) in &rows {
        assert!(*end > 0, "partition {p}: {rows:?}");
        assert_eq!(
            (current.as_str(), lag.as_str()),
            (&*end.to_string(), "0"),
            "{rows:?}"
        );
    }
    assert_eq!(rows.values().map(|r| r.1).sum::<i64>(), 30, "{rows:?}");
    rows
}

/// 12 more: the log ends move, the committed offsets do not, the lag is the difference.
fn more_lines_show_as_lag(c: &Console, rows: &Rows) {
    c.produce(30..42);
    let after = c.describe();
    let mut lag_total = 0;
    for (p, (current, end, lag)) in &after {
        assert_eq!(current, &rows[p].0, "{after:?}");
        let lag: i64 = lag.parse().unwrap();
        assert_eq!(lag, end - current.parse::<i64>().unwrap(), "{after:?}");
        lag_total += lag;
    }
    assert_eq!(lag_total, 12, "{after:?}");
}

/// Back to the earliest offsets: the group reads everything again, from its commits.
fn reset_to_earliest_reads_everything_again(c: &Console) {
    let group = c.group;
    let reset = c.groups_tool(&[
        "--reset-offsets",
        "--to-earliest",
        "--execute",
        "--group",
        group,
        "--topic",
        c.topic,
    ]);
    let new_offsets: BTreeSet<(String, String)> = reset
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|w| w.len() == 4 && w[0] == group)
        .map(|w| (w[2].to_owned(), w[3].to_owned()))
        .collect();
    let zeros: BTreeSet<(String, String)> = (0..3).map(|p| (p.to_string(), "0".into())).collect();
    assert_eq!(new_offsets, zeros, "{reset}");
    let reset_rows = c.describe();
    for (p, (current, end, lag)) in &reset_rows {
        assert_eq!(
            (current.as_str(), lag.as_str()),
            ("0", &*end.to_string()),
            "partition {p}: {reset_rows:?}"
        );
    }
    assert_eq!(c.consume(&[], 42), sorted_lines(0..42));
}

#[test]
fn java_perf_tools_complete() {
    let Some(cp) = java_classpath() else { return };
    let (_t, dir) = data_dir();
    let s = start_kafka(&dir, &[]);
    let b = s.kafka.as_str();
    common::cli_ok(
        &s.server.addr,
        &["topic", "create", "perf", "--partitions", "2"],
        None,
    );
    let out = java_ok(
        &cp,
        "org.apache.kafka.tools.ProducerPerformance",
        &[
            "--bootstrap-server",
            b,
            "--topic",
            "perf",
            "--num-records",
            "20000",
            "--record-size",
            "100",
            "--throughput",
            "-1",
            "--command-property",
            "acks=all",
        ],
        None,
    );
    let summary = out
        .lines()
        .find(|l| l.contains("records sent") && l.contains("99.9th"))
        .unwrap_or_else(|| panic!("no summary: {out}"));
    assert!(summary.starts_with("20000 records sent,"), "{out}");

    let out = java_ok(
        &cp,
        "org.apache.kafka.tools.ConsumerPerformance",
        &[
            "--bootstrap-server",
            b,
            "--topic",
            "perf",
            "--num-records",
            "20000",
            "--group",
            "perf-g",
            "--timeout",
            "30000",
            "--command-property",
            "group.protocol=classic",
        ],
        None,
    );
    // A CSV header, then one row of the same columns.
    let mut rows = out.lines().filter(|l| l.contains(", "));
    let header: Vec<&str> = rows
        .next()
        .unwrap_or_else(|| panic!("{out}"))
        .split(", ")
        .collect();
    let row: Vec<&str> = rows
        .next()
        .unwrap_or_else(|| panic!("{out}"))
        .split(", ")
        .collect();
    assert_eq!(header.len(), row.len(), "{out}");
    let col = |name: &str| {
        let i = header.iter().position(|h| *h == name);
        row[i.unwrap_or_else(|| panic!("no {name} column: {out}"))]
    };
    assert_eq!(col("data.consumed.in.nMsg"), "20000", "{out}");
    let mb: f64 = col("data.consumed.in.MB").parse().unwrap();
    assert!(
        (mb - 20000.0 * 100.0 / (1024.0 * 1024.0)).abs() < 0.001,
        "{out}"
    );
    // Its group committed what it read (auto-commit at close): both partitions at their ends.
    let described = common::cli_ok(&s.server.addr, &["topic", "describe", "perf"], None);
    let at_end = described
        .iter()
        .filter(|l| l.contains("perf-g committed") && l.ends_with("lag 0"))
        .count();
    assert_eq!(at_end, 2, "{described:#?}");
}
