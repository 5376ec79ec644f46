//! Share groups (KIP-932) through Kafka's own Java client (`KafkaShareConsumer` of kafka-clients
//! 4.x) against the real `sluice serve`, with Apache Kafka's broker as the oracle: one scripted
//! workload (`tests/kafka/java/src/ShareOracle.java`: explicit ACCEPT, RELEASE and REJECT, a
//! member closing without acknowledging and the next one getting its records, a poison record
//! released until the delivery limit, the group described, its start offset listed and
//! deleted) must give the same transcript on both, and two members consuming at once must get
//! disjoint records that cover everything on both. On sluice the rejected and poison records
//! are then in the group's dead-letter queue. Installed by `tests/kafka/install.sh java`;
//! without it the tests fail under `CI=true` and are skipped elsewhere.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::kafka::{compile_java, java_classpath, run, start_kafka, ApacheKafka};
use common::{cli_ok, data_dir, json_lines};

/// Runs `ShareOracle <bootstrap> <args>`: its transcript.
fn share_oracle(cp: &str, classes: &Path, bootstrap: &str, args: &[&str]) -> Vec<String> {
    let mut cmd = Command::new("java");
    cmd.args(["-Xmx256m", "-XX:TieredStopAtLevel=1", "-cp"])
        .arg(format!("{cp}:{}", classes.display()))
        .args(["ShareOracle", bootstrap])
        .args(args);
    let out = run(cmd, None, Duration::from_secs(240));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ShareOracle {args:?} against {bootstrap}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.lines().map(str::to_owned).collect()
}

/// The start offset a transcript's `start-offset` line reports.
fn start_offset(t: &[String]) -> i64 {
    let line = t
        .iter()
        .find(|l| l.starts_with("start-offset "))
        .unwrap_or_else(|| panic!("no start-offset line in {t:#?}"));
    line.rsplit("offset=").next().unwrap().parse().unwrap()
}

#[test]
fn sluice_serves_share_consumers_as_apache_kafka_does() {
    let Some(cp) = java_classpath() else { return };
    let (_t, dir) = data_dir();
    let classes = dir.join("classes");
    std::fs::create_dir_all(&classes).unwrap();
    compile_java(&cp, "ShareOracle.java", &classes);
    let kafka = ApacheKafka::start(&dir.join("apache-kafka"));
    let expected = share_oracle(&cp, &classes, &kafka.bootstrap, &["o"]);
    let pair_kafka = share_oracle(&cp, &classes, &kafka.bootstrap, &["p", "pair", "1000"]);
    drop(kafka);
    let sluice = start_kafka(&dir.join("sluice"), &[]);
    let got = share_oracle(&cp, &classes, &sluice.kafka, &["o"]);
    let pair = share_oracle(&cp, &classes, &sluice.kafka, &["p", "pair", "1000"]);

    assert!(expected.len() >= 18, "a short transcript: {expected:#?}");
    assert!(expected.contains(&"poison deliveries=1,2,3,4,5".to_string()));
    // Kafka writes a share partition's state lazily, so the start offset it reports lags: it
    // is compared with what sluice reports (everything before 30 is settled), not equal to it.
    assert_eq!(start_offset(&got), 30, "{got:#?}");
    assert!(start_offset(&expected) <= 30, "{expected:#?}");
    let same = |t: &[String]| -> Vec<String> {
        t.iter()
            .filter(|l| !l.starts_with("start-offset "))
            .cloned()
            .collect()
    };
    assert_eq!(
        same(&got),
        same(&expected),
        "sluice:\n{got:#?}\nkafka:\n{expected:#?}"
    );

    // Two members at once: disjoint, everything, and both got records; on both brokers.
    for (who, t) in [("kafka", &pair_kafka), ("sluice", &pair)] {
        let line = t
            .iter()
            .find(|l| l.starts_with("pair "))
            .expect("a pair line");
        let facts: std::collections::HashMap<&str, i64> = line
            .split(' ')
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k, v.parse().unwrap()))
            .collect();
        assert_eq!(facts["total"], 1000, "{who}: {line}");
        assert_eq!(facts["distinct"], 1000, "{who}: every record once: {line}");
        assert_eq!((facts["first"], facts["last"]), (0, 999), "{who}: {line}");
        assert!(
            facts["a"] > 0 && facts["b"] > 0,
            "{who}: both members got records: {line}"
        );
    }

    // On sluice the 5 rejected records and the poison record went to the dead-letter queue.
    let lines = cli_ok(
        &sluice.server.addr,
        &["--json", "queue", "describe", "o-t.o-g.dlq"],
        None,
    );
    assert_eq!(json_lines(&lines)[0]["depth"], 6, "{lines:?}");
}
