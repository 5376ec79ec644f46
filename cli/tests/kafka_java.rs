//! Kafka's own Java client (4.x, through its console tools) against the real `sluice serve`: a
//! producer with `enable.idempotence=false`, a consumer with an assigned partition (no group),
//! and the default producer (idempotent, acks=all: InitProducerId and sequence checks). Installed by `tests/kafka/install.sh java`; without it the test fails
//! under `CI=true` and is skipped elsewhere.

mod common;

use std::process::Command;
use std::time::Duration;

use common::data_dir;
use common::kafka::{java_classpath, run, start_kafka};

fn java(cp: &str, class: &str, args: &[&str]) -> Command {
    let mut c = Command::new("java");
    c.args(["-Xmx256m", "-XX:TieredStopAtLevel=1", "-cp", cp, class])
        .args(args);
    c
}

#[test]
fn java_console_producer_and_consumer() {
    let Some(cp) = java_classpath() else { return };
    let (_t, dir) = data_dir();
    let s = start_kafka(&dir, &[]);
    let b = s.kafka.as_str();
    let producer = "org.apache.kafka.tools.ConsoleProducer";
    let lines: Vec<String> = (0..20).map(|i| format!("java {i}")).collect();
    let input = lines.join("\n") + "\n";
    let out = run(
        java(
            &cp,
            producer,
            &[
                "--bootstrap-server",
                b,
                "--topic",
                "java",
                "--command-property",
                "enable.idempotence=false",
                "--command-property",
                "acks=all",
            ],
        ),
        Some(input.as_bytes()),
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "producer: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(
        java(
            &cp,
            "org.apache.kafka.tools.consumer.ConsoleConsumer",
            &[
                "--bootstrap-server",
                b,
                "--topic",
                "java",
                "--partition",
                "0",
                "--offset",
                "earliest",
                "--max-messages",
                "20",
                "--timeout-ms",
                "30000",
            ],
        ),
        None,
        Duration::from_secs(120),
    );
    let got: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        got,
        lines,
        "consumer: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The default producer is idempotent (InitProducerId, then sequence-checked batches).
    let idem: Vec<String> = (0..5).map(|i| format!("idempotent {i}")).collect();
    let out = run(
        java(&cp, producer, &["--bootstrap-server", b, "--topic", "java"]),
        Some((idem.join("\n") + "\n").as_bytes()),
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "idempotent producer: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = common::cli_ok(
        &s.server.addr,
        &["topic", "describe", "java", "--json"],
        None,
    );
    assert!(listed[0].contains("\"end_offset\":25"), "{listed:?}");
}
