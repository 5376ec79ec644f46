//! franz-go, an independent Kafka protocol implementation in Go (`tests/kafka/go`), against the
//! real `sluice serve`: kadm creates the topic, a producer writes records one by one (waiting
//! for each acknowledgement), and a consumer reads partition 0 directly (no group), checking
//! every offset, key and value; then the same with franz-go's default idempotent producer
//! (InitProducerId). In a consumer group, on a topic of 3 partitions: a second run in the same
//! group reads only what it produced, so it resumed from the group's committed offsets.
//! Built by `tests/kafka/install.sh go`; without it the test fails under `CI=true` and is
//! skipped elsewhere.

mod common;

use std::process::Command;
use std::time::Duration;

use common::data_dir;
use common::kafka::{franz_go, run, start_kafka};

#[test]
fn franz_go_creates_produces_and_consumes() {
    let Some(bin) = franz_go() else { return };
    let (_t, dir) = data_dir();
    let s = start_kafka(&dir, &[]);
    for (topic, extra) in [("franz", vec!["-no-idempotence"]), ("franz-idem", vec![])] {
        let mut cmd = Command::new(&bin);
        cmd.args([
            "-bootstrap",
            &s.kafka,
            "-topic",
            topic,
            "-n",
            "50",
            "-assign",
        ])
        .args(&extra);
        let out = run(cmd, None, Duration::from_secs(90));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("produced 50 consumed 50"),
            "{topic}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let listed = common::cli_ok(&s.server.addr, &["topic", "list"], None);
    assert_eq!(listed, vec!["franz", "franz-idem"]);
}

#[test]
fn franz_go_groups_resume_from_their_commits() {
    let Some(bin) = franz_go() else { return };
    let (_t, dir) = data_dir();
    let s = start_kafka(&dir, &[]);
    for run_label in ["first", "second", "third"] {
        let mut cmd = Command::new(&bin);
        cmd.args([
            "-bootstrap",
            &s.kafka,
            "-topic",
            "franz-group",
            "-partitions",
            "3",
            "-n",
            "60",
            "-run",
            run_label,
        ]);
        let out = run(cmd, None, Duration::from_secs(90));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("produced 60 consumed 60"),
            "{run_label}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let described = common::cli_ok(&s.server.addr, &["topic", "describe", "franz-group"], None);
    let caught_up = described
        .iter()
        .filter(|l| l.contains("franz-group-group committed") && l.ends_with("lag 0"))
        .count();
    assert_eq!(caught_up, 3, "{described:#?}");
}
