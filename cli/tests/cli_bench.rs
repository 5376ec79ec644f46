//! `sluice bench --local` runs end to end in both modes and reports a passing check; the figures
//! themselves are not asserted (speed is measured, not tested).

use std::process::Command;

fn bench(args: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .current_dir(dir.path())
        .args(["bench", "--local", "--json", "--idle-timeout-ms", "20000"])
        .args(args)
        .output()
        .expect("run sluice bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().last().expect("a JSON line");
    serde_json::from_str(line).expect("valid JSON")
}

#[test]
fn topic_bench_checks_every_message_reached_every_subscriber() {
    let r = bench(&[
        "--messages",
        "3000",
        "--batch",
        "100",
        "--producers",
        "2",
        "--consumers",
        "2",
    ]);
    assert_eq!(r["check"], "ok");
    assert_eq!(r["messages"], 3000);
    assert_eq!(
        r["delivery"]["messages"], 6000,
        "two subscribers each get everything"
    );
    assert!(
        r["publish"]["confirm_latency_per_batch"]["p99_us"]
            .as_f64()
            .unwrap()
            > 0.0
    );
}

#[test]
fn queue_bench_checks_consumers_split_the_messages_without_duplicates() {
    let r = bench(&[
        "--mode",
        "queue",
        "--messages",
        "3000",
        "--batch",
        "100",
        "--consumers",
        "2",
    ]);
    assert_eq!(r["check"], "ok");
    assert_eq!(
        r["delivery"]["messages"], 3000,
        "each message to one consumer"
    );
}

#[test]
fn kafka_protocol_bench_checks_every_message_over_the_kafka_listener_in_both_modes() {
    for extra in [&[][..], &["--read-after"][..]] {
        let mut args = vec![
            "--protocol",
            "kafka",
            "--messages",
            "3000",
            "--batch",
            "100",
            "--producers",
            "2",
            "--consumers",
            "2",
        ];
        args.extend_from_slice(extra);
        let r = bench(&args);
        assert_eq!(r["check"], "ok", "{extra:?}");
        assert_eq!(r["protocol"], "kafka");
        assert_eq!(r["delivery"]["messages"], 6000, "{extra:?}");
    }
    // Queue mode over Kafka: share consumers of one share group, each message to one of them.
    for extra in [&[][..], &["--read-after"][..]] {
        let mut args = vec![
            "--protocol",
            "kafka",
            "--mode",
            "queue",
            "--messages",
            "3000",
            "--batch",
            "100",
            "--consumers",
            "2",
            "--credit",
            "200",
        ];
        args.extend_from_slice(extra);
        let r = bench(&args);
        assert_eq!(r["check"], "ok", "{extra:?}");
        assert_eq!(
            r["delivery"]["messages"], 3000,
            "each message once: {extra:?}"
        );
    }
}

/// Runs `sluice bench --local ARGS`, expects it to fail at once, and returns its stderr.
fn bench_refused(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .current_dir(dir.path())
        .args(["bench", "--local"])
        .args(args)
        .output()
        .expect("run sluice bench");
    assert!(!out.status.success(), "bench {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bench_rejects_messages_too_small_for_its_header() {
    assert!(bench_refused(&["--message-bytes", "8"]).contains("at least 20"));
}

#[test]
fn warm_cache_reads_once_unmeasured_before_the_measured_read() {
    let r = bench(&[
        "--messages",
        "2000",
        "--batch",
        "100",
        "--read-after",
        "--warm-cache",
    ]);
    assert_eq!(r["check"], "ok");
    assert_eq!(
        r["delivery"]["messages"], 2000,
        "the warm-up read is not counted"
    );
}

#[test]
fn warm_cache_refuses_a_queue() {
    let err = bench_refused(&["--mode", "queue", "--read-after", "--warm-cache"]);
    assert!(err.contains("--warm-cache reads a topic"), "{err}");
}
