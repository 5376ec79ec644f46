//! kafkajs, a pure-JavaScript Kafka client with its own version negotiation
//! (`tests/kafka/node`), against the real `sluice serve`: a produce-and-consume round trip in
//! a group (`smoke.js`), and a consumer group of two (`groups.js`): an idempotent producer,
//! partitions shared and taken over when a member leaves, the group described, refused
//! deletion while it has members, committed offsets at the partitions' ends, then listed and
//! deleted with its offsets. Installed by `tests/kafka/install.sh node`; without it the test
//! fails under `CI=true` and is skipped elsewhere.

mod common;

use std::process::Command;
use std::time::Duration;

use common::data_dir;
use common::kafka::{kafkajs, run, start_kafka};

fn node(dir: &std::path::Path, script: &str, bootstrap: &str, extra: &[&str]) -> String {
    let mut cmd = Command::new("node");
    cmd.current_dir(dir)
        .arg(script)
        .args(["--bootstrap", bootstrap])
        .args(extra);
    let out = run(cmd, None, Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn kafkajs_produces_and_consumes_in_a_group() {
    let Some(dir) = kafkajs() else { return };
    let (_t, data) = data_dir();
    let s = start_kafka(&data, &[]);
    let out = node(&dir, "smoke.js", &s.kafka, &["--topic", "kjs", "-n", "40"]);
    assert!(out.contains("produced 40 consumed 40"), "{out}");
}

#[test]
fn kafkajs_group_members_share_take_over_and_commit() {
    let Some(dir) = kafkajs() else { return };
    let (_t, data) = data_dir();
    let s = start_kafka(&data, &[]);
    let out = node(&dir, "groups.js", &s.kafka, &["--topic", "kjs-groups"]);
    let summary: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(summary["ok"], true, "{out}");
    assert_eq!(summary["b"], 3, "{out}");
    // The group's commits were deleted with it: no named subscriber is left on the topic.
    let described = common::cli_ok(&s.server.addr, &["topic", "describe", "kjs-groups"], None);
    assert!(
        !described.iter().any(|l| l.contains("kjs-groups-group")),
        "{described:#?}"
    );
}
