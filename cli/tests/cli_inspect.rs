//! The real `sluice` binary: `inspect` and `repair` exit codes, human and JSON-lines output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use sluice_storage::{Log, LogConfig, Record, StdFs};

fn sluice(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .output()
        .expect("run sluice")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `<tmp>/data/topics/orders` with 30 batches over several segments, closed cleanly.
fn data_dir() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    let topic = root.join("topics").join("orders");
    let cfg = LogConfig {
        segment_bytes_max: 2048,
        index_interval_bytes: 256,
        ..LogConfig::default()
    };
    let log = Log::open(Arc::new(StdFs), &topic, cfg).unwrap();
    for i in 0..30u64 {
        let r = Record {
            timestamp_ms: Some(1_700_000_000_000 + i as i64),
            key: Some(format!("k{i}").into_bytes()),
            headers: vec![],
            value: format!("order {i} {}", "x".repeat(60)).into_bytes(),
        };
        log.append(&[r.clone(), r]).unwrap();
    }
    log.close().unwrap();
    (tmp, root, topic)
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn clean_directory_verifies_with_exit_zero() {
    let (_t, root, _) = data_dir();
    let out = sluice(&["inspect", "--verify", root.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains("verify: OK"), "{s}");
    assert!(s.contains("60 records"), "{s}");
    // Not a terminal: no progress bar, nothing on stderr.
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
}

#[test]
fn damage_fails_verify_naming_file_and_position() {
    let (_t, root, topic) = data_dir();
    let seg = segments(&topic)[1].clone();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[32 + 60] ^= 0xff; // inside the first batch's records
    std::fs::write(&seg, bytes).unwrap();
    let out = sluice(&["inspect", "--verify", root.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let s = text(&out.stdout);
    assert!(
        s.contains(&format!(
            "error: {} at byte 32: records checksum mismatch",
            seg.display()
        )),
        "{s}"
    );
    assert!(s.contains("verify: FAILED"), "{s}");

    let out = sluice(&["inspect", "--verify", "--json", root.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let lines = json_lines(&out);
    let p = &lines[0];
    assert_eq!(p["type"], "problem");
    assert_eq!(p["severity"], "error");
    assert_eq!(p["file"], seg.to_str().unwrap());
    assert_eq!(p["position"], 32);
    let last = lines.last().unwrap();
    assert_eq!(last["type"], "summary");
    assert_eq!(last["ok"], false);
}

#[test]
fn json_lines_of_a_segment_have_one_object_per_batch_and_record() {
    let (_t, _root, topic) = data_dir();
    let seg = segments(&topic)[0].clone();
    let out = sluice(&["inspect", "--json", "--payloads", seg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines = json_lines(&out);
    assert_eq!(lines[0]["type"], "segment");
    assert_eq!(lines[0]["header_valid"], true);
    let batches: Vec<_> = lines.iter().filter(|l| l["type"] == "batch").collect();
    let records: Vec<_> = lines.iter().filter(|l| l["type"] == "record").collect();
    assert!(!batches.is_empty());
    assert_eq!(records.len(), 2 * batches.len());
    let b = batches[0];
    for field in [
        "position",
        "size_bytes",
        "base_offset",
        "last_offset",
        "record_count",
        "first_timestamp_ms",
        "last_timestamp_ms",
        "max_timestamp_ms",
        "attributes",
        "header_crc",
        "records_crc",
        "records_crc_valid",
    ] {
        assert!(!b[field].is_null(), "batch lacks {field}: {b}");
    }
    assert_eq!(b["position"], 32);
    assert_eq!(b["base_offset"], 0);
    assert_eq!(b["last_offset"], 1);
    assert_eq!(records[0]["key"]["utf8"], "k0");
    assert!(records[0]["value"]["utf8"]
        .as_str()
        .unwrap()
        .starts_with("order 0 "));
    let last = lines.last().unwrap();
    assert_eq!(last["type"], "summary");
    assert_eq!(last["batches"], batches.len());
    assert_eq!(last["ok"], true);
}

#[test]
fn repair_asks_before_changing_anything_then_repairs() {
    let (_t, root, topic) = data_dir();
    let seg = segments(&topic).last().unwrap().clone();
    let len = std::fs::metadata(&seg).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let before = std::fs::read(&seg).unwrap();
    let out = sluice(&["repair", root.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains(&format!("cut {} at byte", seg.display())), "{s}");
    assert!(s.contains("run again with --yes"), "{s}");
    assert_eq!(std::fs::read(&seg).unwrap(), before);

    let out = sluice(&["repair", "--yes", root.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("repaired:"));
    let out = sluice(&["inspect", "--verify", root.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    // The broker opens the repaired log: every complete batch is there.
    let log = Log::open(Arc::new(StdFs), &topic, LogConfig::default()).unwrap();
    assert_eq!(log.end_offset().0, 58);
    log.close().unwrap();

    let out = sluice(&["repair", root.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("nothing to repair"));
}

#[test]
fn a_running_broker_allows_inspect_and_refuses_repair() {
    let (_t, root, topic) = data_dir();
    let lock = root.join("LOCK");
    std::fs::write(&lock, b"").unwrap();
    let held = std::fs::File::open(&lock).unwrap();
    {
        use std::os::unix::io::AsRawFd;
        // SAFETY: flock on a descriptor this test owns.
        let rc = unsafe { libc::flock(held.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        assert_eq!(rc, 0);
    }
    let out = sluice(&["inspect", topic.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("held by a running broker"));
    let out = sluice(&["repair", "--yes", root.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("stop the broker"),
        "{}",
        text(&out.stderr)
    );
    drop(held);
}

#[test]
fn a_missing_path_is_an_error() {
    let out = sluice(&["inspect", "/nonexistent/sluice-data"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).starts_with("error: inspecting /nonexistent/sluice-data"));
}

#[test]
fn json_lines_of_a_directory_summarise_each_log() {
    let (_t, root, topic) = data_dir();
    std::fs::write(topic.join("subscribers.state"), b"future format").unwrap();
    let out = sluice(&["inspect", "--json", root.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines = json_lines(&out);
    let dir = lines.iter().find(|l| l["type"] == "log_dir").unwrap();
    assert_eq!(dir["kind"], "topic");
    assert_eq!(dir["name"], "orders");
    assert_eq!(dir["start_offset"], 0);
    assert_eq!(dir["end_offset"], 60);
    let segs = dir["segments"].as_array().unwrap();
    assert_eq!(segs.len(), segments(&topic).len());
    assert_eq!(segs[1]["base_offset"], segs[0]["end_offset"]);
    assert!(dir["subscribers"].is_null());
    assert_eq!(dir["unknown_files"][0]["name"], "subscribers.state");
    assert_eq!(dir["unknown_files"][0]["size_bytes"], 13);
    let rp = lines
        .iter()
        .find(|l| l["type"] == "state" && l["kind"] == "recovery-point")
        .unwrap();
    assert_eq!(rp["fields"]["next_offset"], 60);
    assert_eq!(rp["valid"], true);
    assert_eq!(lines.last().unwrap()["type"], "summary");
}

#[test]
fn json_of_a_queue_directory_carries_its_ack_state() {
    use sluice_storage::{ConsumerId, Offset, QueueConfig, Store, StoreConfig};
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    let s = Store::open(Arc::new(StdFs), &root, StoreConfig::default()).unwrap();
    let q = s
        .create_queue(
            "jobs",
            QueueConfig {
                max_deliveries: 2,
                ..QueueConfig::default()
            },
        )
        .unwrap();
    let recs: Vec<Record> = (0..6)
        .map(|i| Record::from_value(format!("job {i}")))
        .collect();
    q.publish(&recs).unwrap();
    let c = ConsumerId(1);
    assert_eq!(q.deliver(c, 4).unwrap().len(), 4);
    q.ack(c, &[Offset(0), Offset(2)]).unwrap();
    q.nack(c, &[Offset(1)], 0).unwrap();
    assert_eq!(q.deliver(c, 1).unwrap()[0].attempt, 2);
    q.nack(c, &[Offset(1)], 0).unwrap(); // dead-lettered
    s.close().unwrap();

    let dir = root.join("queues").join("jobs");
    let out = sluice(&["inspect", "--json", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines = json_lines(&out);
    assert!(lines.iter().all(|l| l["type"].is_string()));
    let d = lines.iter().find(|l| l["type"] == "log_dir").unwrap();
    assert_eq!(d["kind"], "queue");
    assert_eq!(d["name"], "jobs");
    assert_eq!(d["end_offset"], 6);
    assert_eq!(d["state_dir"], dir.to_str().unwrap());
    assert_eq!(d["retention"]["retention_bytes"], serde_json::Value::Null);
    assert!(d["subscribers"].is_null());
    let qs = &d["queue"];
    assert_eq!(qs["ack_floor"], 3);
    assert_eq!(qs["cursor"], 4);
    assert_eq!(qs["acked_above_floor"], 0);
    assert_eq!(qs["dead_lettered"], 1);
    assert_eq!(qs["depth"], 3);
    assert_eq!(qs["undelivered"], 2);
    assert_eq!(
        qs["in_flight"],
        serde_json::json!([{"offset": 3, "deliveries": 1}])
    );
    let kinds: Vec<&str> = lines
        .iter()
        .filter(|l| l["type"] == "state")
        .filter_map(|l| l["kind"].as_str())
        .collect();
    for k in ["config", "acks-snapshot", "acks-journal"] {
        assert!(kinds.contains(&k), "{kinds:?}");
    }
    let cfg = lines
        .iter()
        .find(|l| l["type"] == "state" && l["kind"] == "config")
        .unwrap();
    assert_eq!(cfg["fields"]["max_deliveries"], 2);
    assert_eq!(cfg["valid"], true);
    assert_eq!(lines.last().unwrap()["ok"], true);
}
