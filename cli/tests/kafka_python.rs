//! confluent-kafka (Python, librdkafka 2.16) against the real `sluice serve`:
//! `tests/kafka/py/sluice_checks.py` runs AdminClient create/delete topics and describe/alter
//! configs (incremental, and legacy read-modify-write), an idempotent Producer with
//! `acks=all`, a Consumer with `assign` and no group,
//! watermarks and offsets for times. Installed by `tests/kafka/install.sh`; without it the test
//! fails under `CI=true` and is skipped elsewhere.

mod common;

use std::process::Command;
use std::time::Duration;

use common::data_dir;
use common::kafka::{python, repo_root, run, start_kafka};

#[test]
fn confluent_kafka_admin_producer_and_consumer() {
    let Some(py) = python() else { return };
    let (_t, dir) = data_dir();
    let s = start_kafka(&dir, &[]);
    let mut cmd = Command::new(py);
    cmd.arg(repo_root().join("tests/kafka/py/sluice_checks.py"))
        .arg(&s.kafka)
        .env("PYTHONWARNINGS", "ignore::DeprecationWarning");
    let out = run(cmd, None, Duration::from_secs(180));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("all checks passed"),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for check in [
        "admin-create",
        "describe",
        "alter",
        "produce",
        "consume",
        "offsets",
        "delete",
    ] {
        assert!(
            stdout.contains(&format!("ok {check}\n")),
            "{check} did not run:\n{stdout}"
        );
    }
}
