//! kcat against the real `sluice serve`'s Kafka listener, with Debian's librdkafka (2.0.2, an
//! old client on purpose) and with the newer librdkafka of the confluent-kafka wheel: metadata
//! (and topic auto-creation, on and off), produce and consume round trips of keys, values and
//! headers, consuming from an offset, from the end and from a time, offsets by time (`-Q`),
//! every compression codec, and a balanced consumer group (`-G`) that resumes from its
//! committed offsets. Clients are installed by `tests/kafka/install.sh`; without them the tests
//! fail under `CI=true` and are skipped (with the reason printed) elsewhere.

mod common;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::data_dir;
use common::kafka::{kcat, kcat_cmd, kcat_ok, new_librdkafka, run, start_kafka};
use serde_json::Value;

/// The two librdkafkas kcat runs on: Debian's (no override) and the newer one.
fn librdkafkas() -> Vec<(&'static str, Option<PathBuf>)> {
    let mut v = vec![("debian", None)];
    if let Some(lib) = new_librdkafka() {
        v.push(("new", Some(lib)));
    }
    v
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// `kcat -C` of a whole topic from `start` to its end, one line per record in `format`.
fn consume(
    k: &std::path::Path,
    lib: Option<&std::path::Path>,
    b: &str,
    topic: &str,
    start: &str,
    format: &str,
) -> Vec<String> {
    let out = kcat_ok(
        k,
        lib,
        b,
        &["-C", "-t", topic, "-o", start, "-e", "-q", "-f", format],
        None,
    );
    out.lines().map(str::to_owned).collect()
}

#[test]
fn metadata_lists_the_one_broker_and_creates_topics_asked_for() {
    let Some(k) = kcat() else { return };
    let (_t, dir) = data_dir();
    let s = start_kafka(&dir, &[]);
    for (label, lib) in librdkafkas() {
        let lib = lib.as_deref();
        let all: Value =
            serde_json::from_str(&kcat_ok(&k, lib, &s.kafka, &["-L", "-J"], None)).unwrap();
        let brokers = all["brokers"].as_array().unwrap();
        assert_eq!(brokers.len(), 1, "{label}: {all}");
        assert_eq!(brokers[0]["id"], 0);
        assert_eq!(brokers[0]["name"].as_str().unwrap(), s.kafka);
        assert_eq!(all["controllerid"], 0, "{label}");
        let topic = format!("auto-{label}");
        let one: Value = serde_json::from_str(&kcat_ok(
            &k,
            lib,
            &s.kafka,
            &["-L", "-J", "-t", &topic],
            None,
        ))
        .unwrap();
        let t = &one["topics"][0];
        assert_eq!(t["topic"], topic.as_str(), "{label}: {one}");
        assert!(t.get("error").is_none(), "{label}: {one}");
        let p = &t["partitions"][0];
        assert_eq!(p["partition"], 0);
        assert_eq!(p["leader"], 0);
        assert_eq!(p["replicas"][0]["id"], 0);
        assert_eq!(p["isrs"][0]["id"], 0);
        assert_eq!(t["partitions"].as_array().unwrap().len(), 1);
    }
    // The topics created are sluice topics.
    let listed = common::cli_ok(&s.server.addr, &["topic", "list"], None);
    assert!(listed.contains(&"auto-debian".to_string()), "{listed:?}");
}

#[test]
fn with_auto_creation_off_an_unknown_topic_is_unknown() {
    let Some(k) = kcat() else { return };
    let (_t, dir) = data_dir();
    let s = start_kafka(&dir, &["--kafka-auto-create-topics", "false"]);
    let one: Value = serde_json::from_str(&kcat_ok(
        &k,
        None,
        &s.kafka,
        &["-L", "-J", "-t", "nosuch"],
        None,
    ))
    .unwrap();
    let err = one["topics"][0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(err.contains("unknown topic"), "{one}");
    let listed = common::cli_ok(&s.server.addr, &["topic", "list"], None);
    assert!(listed.is_empty(), "nothing was created: {listed:?}");
}

#[test]
fn keys_values_and_headers_round_trip() {
    let Some(k) = kcat() else { return };
    let (_t, dir) = data_dir();
    let s = start_kafka(&dir, &[]);
    for (label, lib) in librdkafkas() {
        let lib = lib.as_deref();
        let topic = format!("rt-{label}");
        let input = "k1:v1\nk2:second value\nk3:v3\n";
        kcat_ok(
            &k,
            lib,
            &s.kafka,
            &["-P", "-t", &topic, "-K:", "-H", "h1=x", "-H", "h2=y y"],
            Some(input.as_bytes()),
        );
        let got = consume(&k, lib, &s.kafka, &topic, "beginning", "%o|%k|%s|%h\n");
        assert_eq!(
            got,
            vec![
                "0|k1|v1|h1=x,h2=y y",
                "1|k2|second value|h1=x,h2=y y",
                "2|k3|v3|h1=x,h2=y y"
            ],
            "{label}"
        );
    }
}

#[test]
fn consuming_from_an_offset_the_end_and_a_time() {
    let Some(k) = kcat() else { return };
    let (_t, dir) = data_dir();
    let s = start_kafka(&dir, &[]);
    for (label, lib) in librdkafkas() {
        let lib = lib.as_deref();
        let topic = format!("seek-{label}");
        kcat_ok(
            &k,
            lib,
            &s.kafka,
            &["-P", "-t", &topic],
            Some(b"a0\na1\na2\n"),
        );
        std::thread::sleep(Duration::from_millis(100));
        let t = now_ms();
        std::thread::sleep(Duration::from_millis(100));
        kcat_ok(&k, lib, &s.kafka, &["-P", "-t", &topic], Some(b"b3\nb4\n"));
        assert_eq!(
            consume(&k, lib, &s.kafka, &topic, "2", "%o %s\n"),
            vec!["2 a2", "3 b3", "4 b4"],
            "{label}"
        );
        assert_eq!(
            consume(&k, lib, &s.kafka, &topic, "-2", "%o %s\n"),
            vec!["3 b3", "4 b4"],
            "{label}"
        );
        assert!(
            consume(&k, lib, &s.kafka, &topic, "end", "%o %s\n").is_empty(),
            "{label}"
        );
        let at = format!("s@{t}");
        assert_eq!(
            consume(&k, lib, &s.kafka, &topic, &at, "%o %s\n"),
            vec!["3 b3", "4 b4"],
            "{label}"
        );
        // `-Q`: the offset of the first record at or after a time (-1: none is).
        let query = |ts: i64| {
            let arg = format!("{topic}:0:{ts}");
            kcat_ok(&k, lib, &s.kafka, &["-Q", "-t", &arg], None)
        };
        assert!(query(t).contains("offset 3"), "{label}: {}", query(t));
        assert!(query(0).contains("offset 0"), "{label}: {}", query(0));
        let later = query(t + 3_600_000);
        assert!(later.contains("offset -1"), "{label}: {later}");
        // Each record keeps the producer's timestamp.
        let ts: Vec<i64> = consume(&k, lib, &s.kafka, &topic, "beginning", "%T\n")
            .iter()
            .map(|l| l.parse().unwrap())
            .collect();
        assert!(
            ts[..3].iter().all(|&x| x < t) && ts[3..].iter().all(|&x| x > t),
            "{label}: {ts:?} around {t}"
        );
    }
}

#[test]
fn every_compression_codec_round_trips() {
    let Some(k) = kcat() else { return };
    let (_t, dir) = data_dir();
    let s = start_kafka(&dir, &[]);
    for (label, lib) in librdkafkas() {
        let lib = lib.as_deref();
        for codec in ["gzip", "snappy", "lz4", "zstd"] {
            let topic = format!("z-{codec}-{label}");
            let lines: Vec<String> = (0..200)
                .map(|i| format!("{codec} record {i} {}", "x".repeat(i % 50)))
                .collect();
            let input = lines.join("\n") + "\n";
            kcat_ok(
                &k,
                lib,
                &s.kafka,
                &["-P", "-t", &topic, "-z", codec],
                Some(input.as_bytes()),
            );
            let got = consume(&k, lib, &s.kafka, &topic, "beginning", "%s\n");
            assert_eq!(got, lines, "{label} {codec}");
        }
    }
}

#[test]
fn a_consumer_at_the_end_waits_for_new_records() {
    let Some(k) = kcat() else { return };
    let (_t, dir) = data_dir();
    let s = start_kafka(&dir, &[]);
    kcat_ok(&k, None, &s.kafka, &["-P", "-t", "wait"], Some(b"first\n"));
    // A consumer from offset 1 (the end) that stops after one record: it must get the record
    // produced after it started (long poll woken by the append).
    let consumer = std::thread::spawn({
        let (k, b) = (k.clone(), s.kafka.clone());
        move || {
            run(
                kcat_cmd(
                    &k,
                    None,
                    &b,
                    &[
                        "-C", "-t", "wait", "-o", "1", "-c", "1", "-q", "-f", "%o %s\n",
                    ],
                ),
                None,
                Duration::from_secs(60),
            )
        }
    });
    std::thread::sleep(Duration::from_millis(1500));
    kcat_ok(&k, None, &s.kafka, &["-P", "-t", "wait"], Some(b"second\n"));
    let out = consumer.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1 second\n");
}

/// `kcat -G` (a balanced consumer group) of `topic` until every partition's end.
fn consume_group(
    k: &std::path::Path,
    lib: Option<&std::path::Path>,
    b: &str,
    group: &str,
    topic: &str,
) -> Vec<String> {
    let args = [
        "-G",
        group,
        topic,
        "-X",
        "auto.offset.reset=earliest",
        "-e",
        "-q",
        "-f",
        "%p:%o:%s\n",
    ];
    let out = kcat_ok(k, lib, b, &args, None);
    let mut lines: Vec<String> = out.lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

#[test]
fn a_group_reads_every_partition_once_and_resumes_from_its_commits() {
    let Some(k) = kcat() else { return };
    let (_t, dir) = data_dir();
    let s = start_kafka(&dir, &[]);
    common::cli_ok(
        &s.server.addr,
        &["topic", "create", "grouped", "--partitions", "3"],
        None,
    );
    let first: String = (0..30).map(|i| format!("k{i}:v{i}\n")).collect();
    kcat_ok(
        &k,
        None,
        &s.kafka,
        &["-P", "-t", "grouped", "-K:"],
        Some(first.as_bytes()),
    );
    for (label, lib) in librdkafkas() {
        let lib = lib.as_deref();
        let group = format!("g-{label}");
        let got = consume_group(&k, lib, &s.kafka, &group, "grouped");
        assert_eq!(got.len(), 30, "{label}: {got:?}");
        let mut values: Vec<&str> = got.iter().map(|l| l.rsplit(':').next().unwrap()).collect();
        values.sort();
        values.dedup();
        assert_eq!(values.len(), 30, "{label}: every record once");
        let partitions: std::collections::BTreeSet<&str> =
            got.iter().map(|l| l.split(':').next().unwrap()).collect();
        assert_eq!(
            partitions.len(),
            3,
            "{label}: keys spread over the partitions"
        );
        // The group's commits are the topic's named subscriber of the same name.
        let described = common::cli_ok(&s.server.addr, &["topic", "describe", "grouped"], None);
        let committed = described
            .iter()
            .filter(|l| l.contains(&format!("{group} committed")) && l.ends_with("lag 0"))
            .count();
        assert_eq!(committed, 3, "{label}: {described:#?}");
    }
    // Five more: each group reads exactly those.
    let more: String = (30..35).map(|i| format!("k{i}:v{i}\n")).collect();
    kcat_ok(
        &k,
        None,
        &s.kafka,
        &["-P", "-t", "grouped", "-K:"],
        Some(more.as_bytes()),
    );
    for (label, lib) in librdkafkas() {
        let got = consume_group(
            &k,
            lib.as_deref(),
            &s.kafka,
            &format!("g-{label}"),
            "grouped",
        );
        let mut values: Vec<&str> = got.iter().map(|l| l.rsplit(':').next().unwrap()).collect();
        values.sort();
        assert_eq!(
            values,
            ["v30", "v31", "v32", "v33", "v34"],
            "{label}: {got:?}"
        );
    }
}

/// `GET /api/connections` until a Kafka connection of client `client` is (or is no longer)
/// listed as a member of `group`; at most 30 s.
fn wait_member(http: &str, client: &str, group: &str, listed: bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, v) = common::http::json(http, "GET", "/api/connections", None);
        let found = v["connections"].as_array().unwrap().iter().any(|c| {
            c["protocol"] == "kafka"
                && c["client"] == client
                && c["subscriptions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s["kind"] == "group" && s["name"] == group)
        });
        if found == listed {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "member listed != {listed}: {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_group_member_is_listed_by_client_id_and_its_group_is_reset_over_http_once_it_leaves() {
    let Some(k) = kcat() else { return };
    let (_t, dir) = data_dir();
    let s = start_kafka(&dir, &[]);
    let h = &s.server.http;
    let records: String = (0..10).map(|i| format!("r{i}\n")).collect();
    kcat_ok(
        &k,
        None,
        &s.kafka,
        &["-P", "-t", "resettable"],
        Some(records.as_bytes()),
    );
    let args = [
        "-G",
        "rg",
        "resettable",
        "-X",
        "client.id=kcat-member",
        "-X",
        "auto.offset.reset=earliest",
        "-q",
    ];
    let mut member = kcat_cmd(&k, None, &s.kafka, &args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn kcat");
    wait_member(h, "kcat-member", "rg", true);
    let reset = r#"{"topic":"resettable","to":"earliest"}"#;
    let (st, e) = common::http::json(h, "POST", "/api/groups/rg/reset", Some(reset));
    assert_eq!(
        (st, e["error"]["kind"].as_str()),
        (409, Some("InUse")),
        "{e}"
    );
    // SIGTERM: kcat leaves the group and closes its connections.
    // SAFETY: kill(2) on our own child, not reaped yet.
    unsafe { libc::kill(member.id() as i32, libc::SIGTERM) };
    let _ = common::wait_bounded(&mut member, Duration::from_secs(30));
    wait_member(h, "kcat-member", "rg", false);
    // The group at the start again (made if kcat left before committing): all ten once more.
    let g = r#"{"name":"rg","topic":"resettable","start":"earliest"}"#;
    let (st, v) = common::http::json(h, "POST", "/api/groups", Some(g));
    assert_eq!((st, &v["offsets"][0]["committed"]), (201, &0.into()), "{v}");
    let again = consume_group(&k, None, &s.kafka, "rg", "resettable");
    assert_eq!(again.len(), 10, "{again:?}");
}
