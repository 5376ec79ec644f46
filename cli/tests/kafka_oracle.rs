//! Apache Kafka as an oracle: one scripted workload of Kafka's own Java client
//! (`tests/kafka/java/src/Oracle.java`: topics created, described and refused; idempotent
//! produces with keys, headers and timestamps; list-offsets earliest, latest, max-timestamp and
//! by time; consumption from the start and from the middle of a batch; a classic consumer group
//! of two splitting three partitions, one leaving, commits with metadata, the group listed,
//! described and deleted; configs altered and refused; partitions added and refused; topics
//! deleted) runs against Apache Kafka's broker (`kafka_2.13` 4.x from Maven Central, KRaft, on
//! loopback; `tests/kafka/kafka-broker.sh`) and against `sluice serve`, and the two transcripts
//! must be equal line for line. Where sluice differs from Kafka on purpose the workload leaves
//! the case out and docs/kafka.md says why. Installed by `tests/kafka/install.sh java`;
//! without it the test fails under `CI=true` and is skipped elsewhere.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::data_dir;
use common::kafka::{compile_java, java_classpath, run, start_kafka, ApacheKafka};

/// The workload's transcript against `bootstrap`.
fn transcript(cp: &str, classes: &Path, bootstrap: &str) -> Vec<String> {
    let mut cmd = Command::new("java");
    cmd.arg("-cp")
        .arg(format!("{cp}:{}", classes.display()))
        .args(["Oracle", bootstrap, "oracle"]);
    let out = run(cmd, None, Duration::from_secs(180));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "Oracle against {bootstrap}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.lines().map(str::to_owned).collect()
}

#[test]
fn sluice_answers_the_java_client_as_apache_kafka_does() {
    let Some(cp) = java_classpath() else { return };
    let (_t, dir) = data_dir();
    let classes = dir.join("classes");
    std::fs::create_dir_all(&classes).unwrap();
    compile_java(&cp, "Oracle.java", &classes);
    let kafka = ApacheKafka::start(&dir.join("apache-kafka"));
    let expected = transcript(&cp, &classes, &kafka.bootstrap);
    drop(kafka);
    let sluice = start_kafka(&dir.join("sluice"), &[]);
    let got = transcript(&cp, &classes, &sluice.kafka);
    assert!(expected.len() > 90, "a short transcript: {expected:#?}");
    let steps = |t: &[String], step: &str| t.iter().filter(|l| l.contains(step)).count();
    assert_eq!(steps(&expected, "\"step\":\"produced\""), 30);
    assert_eq!(steps(&expected, "\"step\":\"group-committed\""), 3);
    for (i, (want, have)) in expected.iter().zip(&got).enumerate() {
        assert_eq!(have, want, "line {i} differs (sluice, then Apache Kafka)");
    }
    assert_eq!(got.len(), expected.len(), "sluice: {got:#?}");
}
