//! Kafka clients of a cluster: confluent-kafka (librdkafka) against three real `sluice serve`
//! processes, each with its Kafka listener. `tests/kafka/py/cluster.py` creates a topic of
//! three partitions through AdminClient (each partition led by a different node), produces
//! with `acks=all`, commits a consumer group's offsets, SIGKILLs the leader of partition 0 (the
//! group coordinator too) while a producer goes on, then checks that a new member of the group
//! resumes from the offsets committed before the kill and that every confirmed record is on
//! the survivors. Installed by `tests/kafka/install.sh`; without it the test fails under
//! `CI=true` and is skipped elsewhere.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use common::cluster::{cluster_nodes, free_port, Node};
use common::kafka::{python, repo_root, run};
use common::kafka_raw;

/// Three nodes, each with its Kafka listener (and, with `http`, its HTTP listener), started;
/// with their Kafka addresses and native addresses, comma-separated.
fn kafka_cluster(root: &std::path::Path, http: bool) -> (Vec<Node>, String, String) {
    kafka_cluster_of(root, 3, http)
}

/// [`kafka_cluster`] of `count` nodes.
fn kafka_cluster_of(root: &std::path::Path, count: u64, http: bool) -> (Vec<Node>, String, String) {
    let (nodes, kafka, native, _spec) = kafka_cluster_with(root, count, http, &[]);
    (nodes, kafka, native)
}

/// [`kafka_cluster_of`], each node's `sluice serve` given `args` too.
fn kafka_cluster_with(
    root: &std::path::Path,
    count: u64,
    http: bool,
    args: &[&str],
) -> (Vec<Node>, String, String, String) {
    let (mut nodes, spec) = cluster_nodes(root, count);
    for n in nodes.iter_mut() {
        n.args = args.iter().map(|a| a.to_string()).collect();
        n.kafka = Some(format!("127.0.0.1:{}", free_port()));
        n.http = http.then(|| format!("127.0.0.1:{}", free_port()));
        n.start(&spec);
    }
    let list = |f: fn(&Node) -> String| nodes.iter().map(f).collect::<Vec<_>>().join(",");
    let kafka = list(|n| n.kafka.clone().unwrap());
    let native = list(|n| n.native.clone());
    (nodes, kafka, native, spec)
}

#[test]
fn confluent_kafka_produces_and_consumes_through_a_leader_kill() {
    let Some(py) = python() else { return };
    let root = tempfile::tempdir().unwrap();
    let (nodes, bootstrap, _) = kafka_cluster(root.path(), true);
    let pids = nodes
        .iter()
        .map(|n| format!("{}={}", n.id, n.child.as_ref().unwrap().id()))
        .collect::<Vec<_>>()
        .join(",");
    let mut cmd = Command::new(py);
    cmd.arg(repo_root().join("tests/kafka/py/cluster.py"))
        .args([&bootstrap, &pids])
        .env("PYTHONWARNINGS", "ignore::DeprecationWarning");
    let out = run(cmd, None, Duration::from_secs(240));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("all checks passed"),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    for step in [
        "metadata",
        "produce",
        "group",
        "failover",
        "committed",
        "nothing-lost",
    ] {
        assert!(
            stdout.contains(&format!("ok {step}\n")),
            "{step} did not run"
        );
    }
}

/// Partitions on three of four nodes: confluent-kafka creates the topic with replication
/// factor 3, finds each partition's leader and replicas, produces and consumes through them
/// (`tests/kafka/py/placement.py`), and grows the topic to six partitions with
/// CreatePartitions, and places a topic's partitions by hand (CreateTopics' and
/// CreatePartitions' replica assignments); then every node, those without a replica of a
/// partition included, names the same leader and replicas for each of the six in its
/// Metadata.
#[test]
fn confluent_kafka_uses_partitions_placed_on_some_nodes() {
    let Some(py) = python() else { return };
    let root = tempfile::tempdir().unwrap();
    let (nodes, bootstrap, _) = kafka_cluster_of(root.path(), 4, false);
    let mut cmd = Command::new(py);
    cmd.arg(repo_root().join("tests/kafka/py/placement.py"))
        .arg(&bootstrap)
        .env("PYTHONWARNINGS", "ignore::DeprecationWarning");
    let out = run(cmd, None, Duration::from_secs(180));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("all checks passed"),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    for step in [
        "create", "metadata", "produce", "consume", "alter", "grow", "assign",
    ] {
        assert!(
            stdout.contains(&format!("ok {step}\n")),
            "{step} did not run"
        );
    }
    let views: Vec<Vec<(i32, i32, Vec<i32>)>> = nodes
        .iter()
        .map(|n| {
            let mut c = kafka_raw::Raw::connect(n.kafka.as_ref().unwrap());
            let md = kafka_raw::metadata(&mut c, "placed");
            let t = &md.topics[0];
            assert_eq!(t.error_code, 0, "node {}", n.id);
            let mut parts: Vec<(i32, i32, Vec<i32>)> = t
                .partitions
                .iter()
                .map(|p| {
                    let mut replicas: Vec<i32> = p.replica_nodes.iter().map(|r| r.0).collect();
                    replicas.sort_unstable();
                    (p.partition_index, p.leader_id.0, replicas)
                })
                .collect();
            parts.sort_unstable();
            parts
        })
        .collect();
    eprintln!("node 1's view: {:?}", views[0]);
    assert_eq!(views[0].len(), 6, "the grown topic's partitions");
    for (p, leader, replicas) in &views[0] {
        assert_eq!(replicas.len(), 3, "partition {p}");
        assert!(replicas.contains(leader), "partition {p}: leader {leader}");
    }
    for (i, v) in views.iter().enumerate() {
        assert_eq!(v, &views[0], "node {} and node 1 disagree", i + 1);
    }
    // The retention set through one node is every node's (the metadata's SetTopicRetention).
    for n in &nodes {
        let mut c = kafka_raw::Raw::connect(n.kafka.as_ref().unwrap());
        assert_eq!(
            topic_config(&mut c, "placed", "retention.ms").as_deref(),
            Some("3600000"),
            "node {}",
            n.id
        );
    }
}

/// A topic's config `name` as a node's DescribeConfigs gives it.
fn topic_config(c: &mut kafka_raw::Raw, topic: &str, name: &str) -> Option<String> {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use kafka_protocol::messages::{ApiKey, DescribeConfigsRequest, DescribeConfigsResponse};
    use kafka_protocol::protocol::StrBytes;
    let res = DescribeConfigsResource::default()
        .with_resource_type(2)
        .with_resource_name(StrBytes::from_string(topic.into()));
    let req = DescribeConfigsRequest::default().with_resources(vec![res]);
    let r: DescribeConfigsResponse = c.call(ApiKey::DescribeConfigs, 4, &req);
    assert_eq!(
        r.results[0].error_code, 0,
        "{:?}",
        r.results[0].error_message
    );
    r.results[0]
        .configs
        .iter()
        .find(|e| e.name.as_str() == name)
        .and_then(|e| e.value.as_ref().map(|v| v.to_string()))
}

fn java(cp: &str, class: &str, args: &[&str]) -> Command {
    let mut c = Command::new("java");
    c.args(["-Xmx256m", "-XX:TieredStopAtLevel=1", "-cp", cp, class])
        .args(args);
    c
}

/// Runs one of Kafka's tools; its stdout, or a panic with its stderr.
fn java_ok(cp: &str, class: &str, args: &[&str], stdin: Option<&str>) -> String {
    let out = run(
        java(cp, class, args),
        stdin.map(str::as_bytes),
        Duration::from_secs(120),
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{class} {args:?}: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `(partition, current offset, log end offset)` of each row of `kafka-consumer-groups
/// --describe` for `topic`.
fn group_rows(text: &str, topic: &str) -> Vec<(u32, String, String)> {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|w| w.len() >= 6 && w[1] == topic)
        .map(|w| (w[2].parse().unwrap(), w[3].to_string(), w[4].to_string()))
        .collect()
}

/// The metadata's leader (the controller and group coordinator), as the nodes report it.
fn meta_leader(addrs: &str) -> u64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let lines = common::cli_ok(addrs, &["--json", "cluster", "status"], None);
        let leader = common::json_lines(&lines)
            .iter()
            .filter(|v| v["group"] == "meta")
            .find_map(|v| v["leader"].as_u64());
        if let Some(l) = leader {
            return l;
        }
        assert!(std::time::Instant::now() < deadline, "no metadata leader");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn kafka_java_tools_create_produce_consume_and_keep_group_offsets_through_a_coordinator_kill() {
    let Some(cp) = common::kafka::java_classpath() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let (mut nodes, bootstrap, natives) = kafka_cluster(root.path(), false);
    let b = bootstrap.as_str();
    meta_leader(&natives);
    let topics = "org.apache.kafka.tools.TopicCommand";
    java_ok(
        &cp,
        topics,
        &[
            "--bootstrap-server",
            b,
            "--create",
            "--topic",
            "jc",
            "--partitions",
            "3",
            "--replication-factor",
            "3",
        ],
        None,
    );
    // Each partition led by a different node, every node a replica.
    let described = java_ok(
        &cp,
        topics,
        &["--bootstrap-server", b, "--describe", "--topic", "jc"],
        None,
    );
    let mut leaders: Vec<&str> = described
        .lines()
        .filter_map(|l| l.split("Leader: ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    leaders.sort_unstable();
    assert_eq!(leaders, ["1", "2", "3"], "{described}");
    // Replicas are listed preferred leader first, as Kafka lists an assignment.
    let replicas: Vec<Vec<&str>> = described
        .lines()
        .filter_map(|l| l.split("Replicas: ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(|r| {
            let mut ids: Vec<&str> = r.split(',').collect();
            ids.sort_unstable();
            ids
        })
        .collect();
    assert_eq!(replicas, vec![vec!["1", "2", "3"]; 3], "{described}");

    // The default producer: idempotent, acks=all; keys spread the lines over the partitions.
    let input: String = (0..60).map(|i| format!("k{i}:line-{i}\n")).collect();
    java_ok(
        &cp,
        "org.apache.kafka.tools.ConsoleProducer",
        &[
            "--bootstrap-server",
            b,
            "--topic",
            "jc",
            "--reader-property",
            "parse.key=true",
            "--reader-property",
            "key.separator=:",
        ],
        Some(&input),
    );
    let consumed = java_ok(
        &cp,
        "org.apache.kafka.tools.consumer.ConsoleConsumer",
        &[
            "--bootstrap-server",
            b,
            "--topic",
            "jc",
            "--group",
            "jg",
            "--from-beginning",
            "--max-messages",
            "60",
            "--timeout-ms",
            "60000",
            "--command-property",
            "group.protocol=classic",
        ],
        None,
    );
    let mut got: Vec<&str> = consumed
        .lines()
        .filter(|l| l.starts_with("line-"))
        .collect();
    got.sort_unstable();
    let mut want: Vec<String> = (0..60).map(|i| format!("line-{i}")).collect();
    want.sort();
    assert_eq!(got, want);

    // The group's offsets, committed through the coordinator, are every partition's end; they
    // are still there once the coordinator is SIGKILLed and another node coordinates.
    let groups = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand";
    let describe = ["--bootstrap-server", b, "--describe", "--group", "jg"];
    let before = group_rows(&java_ok(&cp, groups, &describe, None), "jc");
    assert_eq!(before.len(), 3, "{before:?}");
    // The ends count the leaders' control batches too (each takes an offset), so more than 60.
    let total: u64 = before.iter().map(|r| r.2.parse::<u64>().unwrap()).sum();
    assert!(total >= 60, "{before:?}");
    assert!(before.iter().all(|r| r.1 == r.2), "{before:?}");
    let coordinator = meta_leader(&natives);
    nodes[coordinator as usize - 1].kill9();
    let survivors: String = nodes
        .iter()
        .filter(|n| n.child.is_some())
        .map(|n| n.kafka.clone().unwrap())
        .collect::<Vec<_>>()
        .join(",");
    // The describe waits for the survivors to elect a coordinator: until then they name the
    // dead one, whose connection the tool would wait out its (5 s) timeout for.
    let live: Vec<String> = nodes
        .iter()
        .filter(|n| n.child.is_some())
        .map(|n| n.native.clone())
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while live.iter().any(|a| meta_leader(a) == coordinator) {
        assert!(std::time::Instant::now() < deadline, "no new coordinator");
        std::thread::sleep(Duration::from_millis(100));
    }
    let describe = [
        "--bootstrap-server",
        survivors.as_str(),
        "--describe",
        "--group",
        "jg",
        "--timeout",
        "30000",
    ];
    let text = java_ok(&cp, groups, &describe, None);
    let after = group_rows(&text, "jc");
    let committed = |rows: &[(u32, String, String)]| {
        rows.iter().map(|r| (r.0, r.1.clone())).collect::<Vec<_>>()
    };
    assert_eq!(committed(&after), committed(&before), "{text}");
    eprintln!("coordinator node {coordinator} killed; offsets kept: {after:?}");
}

/// The Kafka address of the node leading partition 0 of `topic`, asked of `via` until one
/// other than `not` leads.
fn partition_leader(via: &str, topic: &str, nodes: &[Node], not: Option<u64>) -> (u64, String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut c = kafka_raw::Raw::connect(via);
        let md = kafka_raw::metadata(&mut c, topic);
        let leader = md.topics[0]
            .partitions
            .first()
            .map_or(-1, |p| p.leader_id.0);
        if let Some(n) = nodes
            .iter()
            .find(|n| n.id as i32 == leader && Some(n.id) != not)
        {
            return (n.id, n.kafka.clone().unwrap());
        }
        assert!(std::time::Instant::now() < deadline, "no leader: {md:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn an_idempotent_producers_retries_are_answered_not_stored_again_even_by_a_new_leader() {
    use kafka_protocol::records::Compression::None as Plain;
    let root = tempfile::tempdir().unwrap();
    let (mut nodes, _, natives) = kafka_cluster(root.path(), false);
    meta_leader(&natives);
    common::cli_ok(&natives, &["topic", "create", "idem"], None);
    let (leader, at) = partition_leader(nodes[0].kafka.as_deref().unwrap(), "idem", &nodes, None);
    let mut c = kafka_raw::Raw::connect(&at);
    let batch = |values: &[&str], seq| kafka_raw::producer_batch(values, Plain, (4242, 0, seq));

    // InitProducerId on every node: ids no other node hands out (the node id in high bits).
    let ids: Vec<i64> = nodes
        .iter()
        .map(|n| {
            use kafka_protocol::messages::{ApiKey, InitProducerIdRequest, InitProducerIdResponse};
            let mut c = kafka_raw::Raw::connect(n.kafka.as_deref().unwrap());
            let r: InitProducerIdResponse = c.call(
                ApiKey::InitProducerId,
                1,
                &InitProducerIdRequest::default()
                    .with_transactional_id(None)
                    .with_transaction_timeout_ms(60_000),
            );
            assert_eq!(r.error_code, 0);
            assert_eq!(r.producer_id.0 >> 44, n.id as i64, "node {}", n.id);
            r.producer_id.0
        })
        .collect();
    assert_eq!(
        ids.iter().collect::<std::collections::BTreeSet<_>>().len(),
        ids.len()
    );

    let (code, first) = kafka_raw::produce(&mut c, "idem", batch(&["a", "b"], 0));
    assert_eq!(code, 0);
    // The same batch again (a retry): its first offsets, nothing stored.
    assert_eq!(
        kafka_raw::produce(&mut c, "idem", batch(&["a", "b"], 0)),
        (0, first)
    );
    // A gap in the sequence: OUT_OF_ORDER_SEQUENCE_NUMBER (45), nothing stored.
    assert_eq!(kafka_raw::produce(&mut c, "idem", batch(&["x"], 5)).0, 45);
    let (code, second) = kafka_raw::produce(&mut c, "idem", batch(&["c"], 2));
    assert_eq!(code, 0);
    assert!(second > first);
    let end = kafka_raw::latest(&mut c, "idem");

    // The leader dies; the producer's retry of its last batch reaches the new leader, which
    // rebuilt the producer's state from its log: answered with the same offset.
    nodes[leader as usize - 1].kill9();
    let survivor = nodes.iter().find(|n| n.child.is_some()).unwrap();
    let (new_leader, at) = partition_leader(
        survivor.kafka.as_deref().unwrap(),
        "idem",
        &nodes,
        Some(leader),
    );
    assert_ne!(new_leader, leader);
    let mut c = kafka_raw::Raw::connect(&at);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let retried = loop {
        let r = kafka_raw::produce(&mut c, "idem", batch(&["c"], 2));
        // NOT_LEADER_OR_FOLLOWER (6) or REQUEST_TIMED_OUT (7) while the new leader settles.
        if !matches!(r.0, 6 | 7) || std::time::Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(retried, (0, second), "the retry on the new leader");
    // Nothing stored twice: the partition holds a, b and c once each (the new leader's own
    // control batch takes an offset too, which fetches skip).
    assert!(kafka_raw::latest(&mut c, "idem") <= end + 1);
    let r: kafka_protocol::messages::FetchResponse = c.call(
        kafka_protocol::messages::ApiKey::Fetch,
        11,
        &kafka_raw::fetch_req("idem", 0, 1 << 20, 0, 0),
    );
    let (code, _, batches) = kafka_raw::fetched(&r);
    assert_eq!(code, 0);
    let offsets: Vec<i64> = batches.into_iter().flat_map(|(_, o)| o).collect();
    assert_eq!(offsets, [first, first + 1, second], "{offsets:?}");
    let (code, third) = kafka_raw::produce(&mut c, "idem", batch(&["d"], 3));
    assert_eq!(code, 0);
    assert!(third > second);
    assert_eq!(
        kafka_raw::produce(&mut c, "idem", batch(&["y"], 9)).0,
        45,
        "out of order on the new leader too"
    );
}

/// Each group's voters as its leader reports them (`sluice cluster status --json`).
fn voters_of(addrs: &str) -> BTreeMap<String, Vec<u64>> {
    let lines = common::cli_ok(addrs, &["--json", "cluster", "status"], None);
    common::json_lines(&lines)
        .iter()
        .filter(|v| v["from_leader"] == true)
        .filter_map(|v| {
            let voters = v["voters"].as_array()?.iter().filter_map(|n| n.as_u64());
            let group = v["group"].as_str()?.to_string();
            let settled = v["learners"].as_array()?.is_empty();
            settled.then(|| (group, voters.collect()))
        })
        .collect()
}

/// Kafka's own reassignment tool moves a cluster's partitions: one partition from one replica
/// to three, the other to two named nodes; `--verify` reports both completed, each group then
/// has exactly those voters, and the nodes holding both partitions serve every message
/// published before.
#[test]
fn kafka_reassign_partitions_moves_replicas_to_the_nodes_named() {
    let Some(cp) = common::kafka::java_classpath() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let (_nodes, bootstrap, natives) = kafka_cluster(root.path(), false);
    let b = bootstrap.as_str();
    meta_leader(&natives);
    let topic_args = ["--bootstrap-server", b, "--create", "--topic", "moved"];
    let sizes = ["--partitions", "2", "--replication-factor", "1"];
    let create: Vec<&str> = topic_args.iter().chain(&sizes).copied().collect();
    java_ok(&cp, "org.apache.kafka.tools.TopicCommand", &create, None);
    let lines: String = (0..10).map(|i| format!("m{i}\n")).collect();
    for p in ["0", "1"] {
        common::cli_ok(
            &natives,
            &["publish", "moved", "--partition", p],
            Some(&lines),
        );
    }
    let plan = root.path().join("plan.json");
    std::fs::write(
        &plan,
        r#"{"version":1,"partitions":[
            {"topic":"moved","partition":0,"replicas":[1,2,3]},
            {"topic":"moved","partition":1,"replicas":[3,2]}]}"#,
    )
    .unwrap();
    let tool = "org.apache.kafka.tools.reassign.ReassignPartitionsCommand";
    let plan = plan.to_str().unwrap();
    let args = ["--bootstrap-server", b, "--reassignment-json-file", plan];
    let run_tool = |what: &[&str]| {
        let all: Vec<&str> = args.iter().chain(what).copied().collect();
        java_ok(&cp, tool, &all, None)
    };
    let started = run_tool(&["--execute"]);
    assert!(started.contains("Successfully started"), "{started}");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let verified = run_tool(&["--verify", "--preserve-throttles"]);
        let done = verified.matches("is completed").count();
        if done == 2 {
            eprintln!("{verified}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{verified}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let v = voters_of(&natives);
        let (p0, p1) = (v.get("t/moved/0"), v.get("t/moved/1"));
        if p0 == Some(&vec![1, 2, 3]) && p1 == Some(&vec![2, 3]) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{v:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Nodes 2 and 3 hold both partitions now, and serve all 20 messages.
    for addr in natives.split(',').skip(1) {
        let read = common::cli_ok(
            addr,
            &["subscribe", "moved", "--from", "earliest", "--count", "20"],
            None,
        );
        assert_eq!(read.len(), 20, "{addr}: {read:?}");
    }
}

/// Has the live nodes (all but `down`) compact the metadata's log (each saving its image after
/// now), then SIGKILLs and restarts them.
fn compact_and_restart(nodes: &mut [Node], spec: &str, down: u64, live: &str) {
    let since = std::time::SystemTime::now();
    let saved_since = |n: &Node| {
        let image = n.dir.join("cluster/meta-image");
        std::fs::metadata(image)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t > since)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut i = 0;
    while !nodes.iter().filter(|n| n.id != down).all(saved_since) {
        assert!(std::time::Instant::now() < deadline, "no compaction");
        let name = format!("filler{i}");
        common::cli_ok(live, &["topic", "create", &name], None);
        i += 1;
    }
    for n in nodes.iter_mut().filter(|n| n.id != down) {
        n.kill9();
        n.start(spec);
    }
    meta_leader(live);
}

/// A reassignment that cannot finish (onto a node that is down) is cancelled with Kafka's own
/// tool (`--cancel`), after a compaction of the metadata's log past the reassignment and a
/// restart of the live nodes (which then know where the partition came from only through
/// their metadata image): it is listed while under way, then no longer; the partition keeps
/// the one replica it had, with no learner left, and still takes publishes.
#[test]
fn kafka_reassign_partitions_cancels_a_move_that_cannot_finish() {
    let Some(cp) = common::kafka::java_classpath() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let compact_often = ["--meta-snapshot-entries", "4"];
    let (mut nodes, bootstrap, natives, spec) =
        kafka_cluster_with(root.path(), 3, false, &compact_often);
    let b = bootstrap.as_str();
    let meta = meta_leader(&natives);
    let topic_args = ["--bootstrap-server", b, "--create", "--topic", "stuck"];
    let sizes = ["--partitions", "1", "--replication-factor", "1"];
    let create: Vec<&str> = topic_args.iter().chain(&sizes).copied().collect();
    java_ok(&cp, "org.apache.kafka.tools.TopicCommand", &create, None);
    let lines: String = (0..10).map(|i| format!("m{i}\n")).collect();
    common::cli_ok(&natives, &["publish", "stuck"], Some(&lines));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let holder = loop {
        if let Some(v) = voters_of(&natives).get("t/stuck/0") {
            break v[0];
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no leader of t/stuck/0"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // The move's target: a node that is neither the holder nor the metadata's leader, down.
    let down = (1..=3).find(|n| *n != holder && *n != meta).unwrap();
    nodes[down as usize - 1].kill9();
    let live = common::cluster::live_addrs(&nodes);
    let plan = root.path().join("plan.json");
    let json = format!(
        r#"{{"version":1,"partitions":[{{"topic":"stuck","partition":0,"replicas":[{holder},{down}]}}]}}"#
    );
    std::fs::write(&plan, json).unwrap();
    let tool = "org.apache.kafka.tools.reassign.ReassignPartitionsCommand";
    let plan = plan.to_str().unwrap();
    let run_tool = |what: &[&str]| {
        let mut all = vec!["--bootstrap-server", b];
        all.extend(what);
        java_ok(&cp, tool, &all, None)
    };
    let started = run_tool(&["--reassignment-json-file", plan, "--execute"]);
    assert!(started.contains("Successfully started"), "{started}");
    let listed_until = |want: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let listed = run_tool(&["--list"]);
            if listed.contains(want) {
                return listed;
            }
            assert!(std::time::Instant::now() < deadline, "{listed}");
            std::thread::sleep(Duration::from_millis(500));
        }
    };
    eprintln!("{}", listed_until("stuck-0"));
    compact_and_restart(&mut nodes, &spec, down, &live);
    eprintln!("{}", listed_until("stuck-0"));
    // Throttles kept: clearing them asks every broker, and one is down (as with Kafka).
    let cancel = [
        "--reassignment-json-file",
        plan,
        "--cancel",
        "--preserve-throttles",
    ];
    let cancelled = run_tool(&cancel);
    eprintln!("{cancelled}");
    assert!(
        cancelled.contains("Successfully cancelled") && !cancelled.contains("rror"),
        "{cancelled}"
    );
    eprintln!("{}", listed_until("No partition reassignments found"));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let v = voters_of(&live);
        if v.get("t/stuck/0") == Some(&vec![holder]) {
            break;
        }
        if std::time::Instant::now() >= deadline {
            let status = common::cli_ok(&live, &["--json", "cluster", "status"], None);
            panic!("{v:?}\n{}", status.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    common::cli_ok(&live, &["publish", "stuck"], Some("after\n"));
    let read = common::cli_ok(
        &live,
        &["subscribe", "stuck", "--from", "earliest", "--count", "11"],
        None,
    );
    assert_eq!(read.len(), 11, "{read:?}");
}
