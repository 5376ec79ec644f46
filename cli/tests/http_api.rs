//! The HTTP listener of a running `sluice serve`.
//!
//! `GET /metrics`: after publishing, subscribing, consuming and a refused request over the
//! native protocol, the scrape shows each topic partition, subscriber, queue, request kind,
//! error code and the store's syncs with the values the work produced, in the OpenMetrics text
//! that Prometheus's own parser (its Python client) reads.
//!
//! The admin API: topics and queues created, listed, described and deleted as JSON, each refusal
//! with its status and error kind, and what it did seen by the native protocol's CLI.

mod common;

use std::io::Write;
use std::process::Command;

use common::http::*;
use common::*;

/// Runs the work the scrape must show.
fn work(a: &str) {
    cli_ok(a, &["topic", "create", "logs"], None);
    cli_ok(a, &["publish", "logs", "a", "b", "c"], None);
    cli_ok(
        a,
        &[
            "subscribe",
            "logs",
            "--name",
            "s",
            "--from",
            "earliest",
            "--count",
            "2",
        ],
        None,
    );
    cli_ok(a, &["queue", "create", "jobs"], None);
    cli_ok(a, &["publish", "jobs", "j1", "j2", "j3", "j4"], None);
    cli_ok(a, &["consume", "jobs", "--count", "1"], None);
    let refused = cli(a, &["publish", "nope", "x"], None);
    assert!(
        !refused.status.success(),
        "publishing to an unknown topic fails"
    );
}

#[test]
fn metrics_show_what_the_broker_did() {
    let (_tmp, dir) = data_dir();
    let server = start(&dir, None);
    work(&server.addr);
    let (status, head, body) = get(&server.http, "/metrics");
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    assert!(body.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    let s = samples(&body);
    let topic = r#"{topic="logs",partition="0"}"#;
    assert_eq!(
        value(&s, &format!("sluice_topic_end_offset_total{topic}")),
        3.0
    );
    assert_eq!(value(&s, &format!("sluice_topic_start_offset{topic}")), 0.0);
    assert_eq!(value(&s, &format!("sluice_topic_segments{topic}")), 1.0);
    assert!(value(&s, &format!("sluice_topic_size_bytes{topic}")) > 0.0);
    let sub = r#"{topic="logs",partition="0",subscriber="s"}"#;
    assert_eq!(
        value(&s, &format!("sluice_subscriber_committed_offset{sub}")),
        2.0
    );
    assert_eq!(value(&s, &format!("sluice_subscriber_lag{sub}")), 1.0);
    let q = r#"{queue="jobs"}"#;
    assert_eq!(value(&s, &format!("sluice_queue_published_total{q}")), 4.0);
    assert_eq!(value(&s, &format!("sluice_queue_acked_total{q}")), 1.0);
    assert_eq!(value(&s, &format!("sluice_queue_ready{q}")), 3.0);
    assert_eq!(value(&s, &format!("sluice_queue_in_flight{q}")), 0.0);
    assert_eq!(
        value(&s, &format!("sluice_queue_dead_lettered_total{q}")),
        0.0
    );
    let native = |what: &str| {
        value(
            &s,
            &format!(r#"sluice_requests_total{{protocol="native",request="{what}"}}"#),
        )
    };
    assert_eq!(native("publish"), 3.0, "three publishes, one refused");
    assert_eq!(native("create_topic"), 1.0);
    assert_eq!(native("create_queue"), 1.0);
    assert_eq!(
        value(
            &s,
            r#"sluice_errors_total{protocol="native",code="NotFound"}"#
        ),
        1.0
    );
    // Seven CLI commands, one connection each, all closed by now; this scrape's is open.
    assert_eq!(
        value(
            &s,
            r#"sluice_connections_accepted_total{protocol="native"}"#
        ),
        7.0
    );
    assert_eq!(value(&s, r#"sluice_connections{protocol="native"}"#), 0.0);
    assert_eq!(value(&s, r#"sluice_connections{protocol="http"}"#), 1.0);
    assert!(value(&s, r#"sluice_received_bytes_total{protocol="native"}"#) > 0.0);
    assert!(value(&s, r#"sluice_sent_bytes_total{protocol="native"}"#) > 0.0);
    assert_eq!(value(&s, r#"sluice_logs{kind="topic"}"#), 1.0);
    assert_eq!(value(&s, r#"sluice_logs{kind="queue"}"#), 1.0);
    let syncs = value(&s, "sluice_syncs_total");
    assert!(syncs > 0.0, "publishes under fsync always sync");
    assert_eq!(value(&s, "sluice_sync_duration_seconds_count"), syncs);
    assert_eq!(
        value(&s, r#"sluice_sync_duration_seconds_bucket{le="+Inf"}"#),
        syncs
    );
    assert!(value(&s, "sluice_sync_requests_total") >= syncs);
    assert!(value(&s, "sluice_data_dir_free_bytes") > 0.0);
    assert!(value(&s, "sluice_process_open_fds") > 0.0);
    prometheus_parses(&body);
    let (status, _, _) = get(&server.http, "/nothing-here");
    assert_eq!(status, 404);
    let (_, _, again) = get(&server.http, "/metrics");
    let again = samples(&again);
    assert_eq!(
        value(
            &again,
            r#"sluice_requests_total{protocol="http",request="metrics"}"#
        ),
        2.0
    );
    assert_eq!(
        value(
            &again,
            r#"sluice_requests_total{protocol="http",request="not_found"}"#
        ),
        1.0
    );
}

/// Prometheus's Python client parses the text, and finds the families with their types.
fn prometheus_parses(body: &str) {
    let Some(py) = common::kafka::python() else {
        return;
    };
    let script = r#"
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
fams = {f.name: f for f in text_string_to_metric_families(sys.stdin.read())}
want = {"sluice_topic_end_offset": "counter", "sluice_queue_ready": "gauge",
        "sluice_sync_duration_seconds": "histogram", "sluice_requests": "counter"}
for name, kind in want.items():
    assert fams[name].type == kind, (name, fams[name].type)
ends = [s for s in fams["sluice_topic_end_offset"].samples if s.labels.get("topic") == "logs"]
assert ends and ends[0].value == 3, ends
print("parsed", len(fams))
"#;
    let mut child = Command::new(py)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client could not parse: {}\n{body}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A JSON call: the status and the parsed body.
#[test]
fn the_admin_api_creates_lists_describes_and_deletes() {
    let (_tmp, dir) = data_dir();
    let server = start(&dir, None);
    let h = &server.http;
    let (st, t) = json(
        h,
        "POST",
        "/api/topics",
        Some(r#"{"name":"orders","partitions":3}"#),
    );
    assert_eq!(st, 201, "{t}");
    assert_eq!(t["name"], "orders");
    assert_eq!(t["partitions"].as_array().unwrap().len(), 3);
    let (st, e) = json(h, "POST", "/api/topics", Some(r#"{"name":"orders"}"#));
    assert_eq!(
        (st, e["error"]["kind"].as_str()),
        (409, Some("AlreadyExists"))
    );
    for bad in [
        r#"{"name":"#,
        r#"{"name":"x","colour":"red"}"#,
        r#"{"name":"a/b"}"#,
    ] {
        let (st, e) = json(h, "POST", "/api/topics", Some(bad));
        assert_eq!(st, 400, "{bad}: {e}");
        assert!(e["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    let huge = format!(r#"{{"name":"{}"}}"#, "x".repeat(70 * 1024));
    assert_eq!(request(h, "POST", "/api/topics", Some(&huge)).0, 413);
    assert_eq!(
        json(h, "GET", "/api/topics", None).1["topics"],
        serde_json::json!(["orders"])
    );
    let (st, t) = json(h, "GET", "/api/topics/orders", None);
    assert_eq!(
        (st, t["partitions"][2]["partition"].as_u64()),
        (200, Some(2))
    );
    let (st, e) = json(h, "GET", "/api/topics/nope", None);
    assert_eq!((st, e["error"]["kind"].as_str()), (404, Some("NotFound")));

    let q = r#"{"name":"jobs","max_deliveries":3,"ack_timeout_ms":5000}"#;
    let (st, created) = json(h, "POST", "/api/queues", Some(q));
    assert_eq!(st, 201, "{created}");
    assert_eq!(created["max_deliveries"], 3);
    cli_ok(&server.addr, &["publish", "jobs", "j1", "j2"], None);
    let (st, q) = json(h, "GET", "/api/queues/jobs", None);
    assert_eq!((st, q["depth"].as_u64()), (200, Some(2)), "{q}");
    let (_, list) = json(h, "GET", "/api/queues", None);
    assert!(
        list["queues"].as_array().unwrap().contains(&"jobs".into()),
        "{list}"
    );
    browse_and_purge(&server.addr, h);
    // What the API made, the native protocol sees.
    let names = cli_ok(&server.addr, &["topic", "list"], None);
    assert!(names.iter().any(|n| n == "orders"), "{names:?}");

    assert_eq!(json(h, "DELETE", "/api/queues/jobs", None).0, 200);
    assert_eq!(json(h, "GET", "/api/queues/jobs", None).0, 404);
    assert_eq!(json(h, "DELETE", "/api/topics/orders", None).0, 200);
    assert_eq!(json(h, "DELETE", "/api/topics/orders", None).0, 404);
    let s = samples(&get(h, "/metrics").2);
    for (code, n) in [(409, 1.0), (400, 7.0), (413, 1.0), (404, 5.0)] {
        let key = format!(r#"sluice_errors_total{{protocol="http",code="{code}"}}"#);
        assert_eq!(value(&s, &key), n, "{key}");
    }
}

/// Peeking reads without consuming (acked messages too); a purge settles what waits.
fn browse_and_purge(native: &str, h: &str) {
    let (st, peek) = json(h, "GET", "/api/queues/jobs/messages", None);
    assert_eq!(st, 200, "{peek}");
    let values: Vec<_> = peek["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"]["text"].clone())
        .collect();
    assert_eq!(values, ["j1", "j2"]);
    cli_ok(native, &["consume", "jobs", "--count", "1"], None);
    let (_, again) = json(h, "GET", "/api/queues/jobs/messages?offset=1&count=5", None);
    assert_eq!(again["messages"][0]["offset"], 1);
    assert_eq!(again["messages"].as_array().unwrap().len(), 1);
    let (st, purged) = json(h, "POST", "/api/queues/jobs/purge", None);
    assert_eq!((st, purged["purged"].as_u64()), (200, Some(1)), "{purged}");
    assert_eq!(json(h, "GET", "/api/queues/jobs", None).1["depth"], 0);
    let nothing = cli_ok(native, &["consume", "jobs", "--wait-ms", "300"], None);
    assert!(
        nothing.is_empty(),
        "purged messages are not delivered: {nothing:?}"
    );
    for bad in ["count=0", "count=1001", "count=abc", "colour=red"] {
        let (st, e) = json(h, "GET", &format!("/api/queues/jobs/messages?{bad}"), None);
        assert_eq!(st, 400, "{bad}: {e}");
    }
    cli_ok(native, &["topic", "create", "events"], None);
    cli_ok(
        native,
        &["publish", "events", "--key", "k", "e1", "e2"],
        None,
    );
    let (st, t) = json(
        h,
        "GET",
        "/api/topics/events/messages?partition=0&offset=1",
        None,
    );
    assert_eq!(st, 200, "{t}");
    let m = &t["messages"][0];
    assert_eq!(
        (m["offset"].as_u64(), &m["key"]["text"], &m["value"]["text"]),
        (Some(1), &"k".into(), &"e2".into())
    );
    assert!(m["timestamp_ms"].as_i64().unwrap() > 0);
    assert_eq!(
        json(h, "GET", "/api/topics/events/messages?partition=7", None).0,
        404
    );
    assert_eq!(json(h, "GET", "/api/topics/nope/messages", None).0, 404);
}

/// `GET /api/connections` until `pred` holds for its list (at most 20 s).
fn connections_until(h: &str, pred: impl Fn(&[serde_json::Value]) -> bool) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (st, v) = json(h, "GET", "/api/connections", None);
        assert_eq!(st, 200, "{v}");
        if pred(v["connections"].as_array().unwrap()) {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "connections never matched: {v}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn subscribed(c: &serde_json::Value, kind: &str, name: &str) -> bool {
    c["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["kind"] == kind && s["name"] == name)
}

#[test]
fn groups_are_listed_created_reset_and_refused_while_a_client_holds_them() {
    let (_tmp, dir) = data_dir();
    let server = start(&dir, None);
    let (a, h) = (&server.addr, &server.http);
    cli_ok(a, &["topic", "create", "orders"], None);
    let lines: String = (0..200).map(|i| format!("order-{i}\n")).collect();
    cli_ok(a, &["publish", "orders"], Some(&lines));
    let g = r#"{"name":"billing","topic":"orders","start":"earliest"}"#;
    let (st, v) = json(h, "POST", "/api/groups", Some(g));
    assert_eq!(st, 201, "{v}");
    assert_eq!(
        (&v["offsets"][0]["committed"], &v["offsets"][0]["lag"]),
        (&0.into(), &200.into())
    );
    let reset = |to: &str| {
        let body = format!(r#"{{"topic":"orders","to":{to}}}"#);
        json(h, "POST", "/api/groups/billing/reset", Some(&body))
    };
    let (st, v) = reset(r#"{"offset":150}"#);
    assert_eq!((st, &v["offsets"][0]["lag"]), (200, &50.into()), "{v}");
    let (_, v) = reset(r#"{"time_ms":9000000000000}"#);
    assert_eq!(
        v["offsets"][0]["committed"], 200,
        "a time past every message is the end"
    );
    let (_, v) = reset(r#""earliest""#);
    assert_eq!(v["offsets"][0]["committed"], 0);
    assert_eq!(reset(r#""sideways""#).0, 400);
    let (_, list) = json(h, "GET", "/api/groups", None);
    assert_eq!(
        list["groups"],
        serde_json::json!([{"name": "billing", "topics": ["orders"]}])
    );
    assert_eq!(json(h, "GET", "/api/groups/nobody", None).0, 404);

    // A native subscriber holding the name: listed on its connection, and the group is in use.
    let sub = spawn_cli(
        a,
        &[
            "subscribe",
            "orders",
            "--name",
            "billing",
            "--wait-ms",
            "60000",
        ],
    );
    let v = connections_until(h, |cs| cs.iter().any(|c| subscribed(c, "topic", "orders")));
    let c = v["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| subscribed(c, "topic", "orders"))
        .unwrap();
    assert_eq!(c["protocol"], "native");
    assert!(c["client"].as_str().unwrap().starts_with("sluice"), "{c}");
    assert_eq!(c["subscriptions"][0]["detail"], "billing");
    assert!(c["requests"].as_u64().unwrap() >= 2 && c["bytes_in"].as_u64().unwrap() > 0);
    for (method, path, body) in [
        ("DELETE", "/api/groups/billing", None),
        (
            "POST",
            "/api/groups/billing/reset",
            Some(r#"{"topic":"orders","to":"latest"}"#),
        ),
    ] {
        let (st, e) = json(h, method, path, body);
        assert_eq!(
            (st, e["error"]["kind"].as_str()),
            (409, Some("InUse")),
            "{path}"
        );
    }
    sigkill_and_output(sub);
    connections_until(h, |cs| cs.is_empty());
    assert_eq!(json(h, "DELETE", "/api/groups/billing", None).0, 200);
    assert_eq!(json(h, "GET", "/api/groups/billing", None).0, 404);

    // A topic's consumer group: listed with its acks, counted in metrics, deleted.
    cli_ok(
        a,
        &["consume", "orders", "--group", "workers", "--count", "5"],
        None,
    );
    let (_, v) = json(h, "GET", "/api/topics/orders/groups", None);
    assert_eq!(v["groups"][0]["name"], "workers", "{v}");
    assert_eq!(v["groups"][0]["partitions"][0]["ack_floor"], 5, "{v}");
    let s = samples(&get(h, "/metrics").2);
    let key = r#"sluice_group_acked_total{topic="orders",group="workers",partition="0"}"#;
    assert_eq!(value(&s, key), 5.0);
    assert_eq!(
        json(h, "DELETE", "/api/topics/orders/groups/workers", None).0,
        200
    );
    let (_, v) = json(h, "GET", "/api/topics/orders/groups", None);
    assert_eq!(v["groups"], serde_json::json!([]));
}

#[test]
fn dead_letters_go_back_to_their_queue_without_their_dead_letter_headers() {
    let (_tmp, dir) = data_dir();
    let server = start(&dir, None);
    let (a, h) = (&server.addr, &server.http);
    let q = r#"{"name":"jobs","max_deliveries":2}"#;
    assert_eq!(json(h, "POST", "/api/queues", Some(q)).0, 201);
    cli_ok(a, &["publish", "jobs", "m1", "m2", "m3"], None);
    // Two deliveries without an ack each; the third attempt dead-letters them.
    for _ in 0..2 {
        cli_ok(a, &["consume", "jobs", "--no-ack", "--count", "3"], None);
    }
    cli_ok(a, &["consume", "jobs", "--wait-ms", "300"], None);
    let (_, jobs) = json(h, "GET", "/api/queues/jobs", None);
    assert_eq!(
        (&jobs["dead_lettered"], &jobs["redelivered"]),
        (&3.into(), &3.into()),
        "{jobs}"
    );
    assert_eq!(jobs["oldest_unacked_timestamp_ms"], serde_json::Value::Null);
    let (_, dlq) = json(h, "GET", "/api/queues/jobs.dlq", None);
    assert_eq!(dlq["ready"], 3, "{dlq}");
    let s = samples(&get(h, "/metrics").2);
    assert_eq!(
        value(&s, r#"sluice_queue_redelivered_total{queue="jobs"}"#),
        3.0
    );
    let age = value(
        &s,
        r#"sluice_queue_oldest_unacked_age_seconds{queue="jobs.dlq"}"#,
    );
    assert!((0.0..60.0).contains(&age), "{age}");

    let (st, e) = json(
        h,
        "POST",
        "/api/queues/jobs.dlq/redrive",
        Some(r#"{"to":"nope"}"#),
    );
    assert_eq!((st, e["error"]["kind"].as_str()), (404, Some("NotFound")));
    // A page on another origin cannot make a browser move (or purge) anything.
    let evil = "Origin: http://evil.example\r\n";
    let (st, _, body) = request_with(h, "POST", "/api/queues/jobs.dlq/redrive", None, evil);
    assert_eq!(st, 403, "{body}");
    let (st, _, _) = request_with(h, "POST", "/api/queues/jobs.dlq/purge", None, evil);
    assert_eq!(st, 403);
    assert_eq!(json(h, "GET", "/api/queues/jobs.dlq", None).1["depth"], 3);
    let (st, v) = json(
        h,
        "POST",
        "/api/queues/jobs.dlq/redrive",
        Some(r#"{"count":2}"#),
    );
    assert_eq!((st, &v["moved"]), (200, &2.into()), "{v}");
    let (st, v) = json(h, "POST", "/api/queues/jobs.dlq/redrive", None);
    assert_eq!((st, &v["moved"]), (200, &1.into()), "{v}");
    assert_eq!(json(h, "GET", "/api/queues/jobs.dlq", None).1["depth"], 0);
    let (_, jobs) = json(h, "GET", "/api/queues/jobs", None);
    assert_eq!(
        (&jobs["ready"], &jobs["end_offset"]),
        (&3.into(), &6.into()),
        "{jobs}"
    );
    assert!(
        jobs["oldest_unacked_timestamp_ms"].as_i64().is_some(),
        "{jobs}"
    );
    let (_, peek) = json(h, "GET", "/api/queues/jobs/messages?offset=3&count=3", None);
    let msgs = peek["messages"].as_array().unwrap();
    let values: Vec<&str> = msgs
        .iter()
        .map(|m| m["value"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(values, ["m1", "m2", "m3"]);
    assert!(
        msgs.iter().all(|m| m["headers"] == serde_json::json!([])),
        "{peek}"
    );
    // And they are delivered again, once each.
    let got = cli_ok(a, &["consume", "jobs", "--count", "3"], None);
    assert_eq!(got, ["m1", "m2", "m3"]);
}

#[test]
fn the_segment_map_and_overview_show_offsets_sizes_times_and_retention() {
    let (_tmp, dir) = data_dir();
    let server = start(&dir, Some("[limits]\nsegment_bytes_min = 4096\n"));
    let (a, h) = (&server.addr, &server.http);
    let t = r#"{"name":"orders","segment_bytes_max":4096,"retention_ms":86400000}"#;
    assert_eq!(json(h, "POST", "/api/topics", Some(t)).0, 201);
    // Ten batches of 30 (a batch is never split across segments).
    for b in 0..10 {
        let lines: String = (0..30)
            .map(|i| format!("order-{:04}-{}\n", b * 30 + i, "x".repeat(40)))
            .collect();
        cli_ok(a, &["publish", "orders"], Some(&lines));
    }
    let (st, m) = json(h, "GET", "/api/topics/orders/segments?partition=0", None);
    assert_eq!(st, 200, "{m}");
    assert_eq!(m["retention_ms"], 86_400_000);
    let segs = m["segments"].as_array().unwrap();
    assert!(segs.len() > 2, "{m}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut next = 0;
    for (i, s) in segs.iter().enumerate() {
        assert_eq!(s["base_offset"], next, "segments are contiguous: {m}");
        next = s["next_offset"].as_u64().unwrap();
        let active = i + 1 == segs.len();
        assert_eq!(s["active"], active);
        let (first, max) = (
            s["first_timestamp_ms"].as_i64(),
            s["max_timestamp_ms"].as_i64(),
        );
        assert!(
            first.unwrap() <= max.unwrap() && now - max.unwrap() < 60_000,
            "{s}"
        );
        if active {
            assert_eq!(s["reclaim"], serde_json::Value::Null);
        } else {
            assert_eq!(s["reclaim"], "retention_ms");
            let at = s["reclaim_at_ms"].as_i64().unwrap();
            assert!((at - now - 86_400_000).abs() < 60_000, "{s}");
        }
    }
    assert_eq!(next, 300);
    assert_eq!(
        json(h, "GET", "/api/topics/orders/segments?partition=1", None).0,
        404
    );
    cli_ok(a, &["queue", "create", "jobs"], None);
    cli_ok(a, &["publish", "jobs", "j1"], None);
    let (_, m) = json(h, "GET", "/api/queues/jobs/segments", None);
    assert_eq!(
        (&m["ack_floor"], &m["segments"][0]["next_offset"]),
        (&0.into(), &1.into())
    );

    let (st, o) = json(h, "GET", "/api/overview?prefix=or", None);
    assert_eq!(st, 200, "{o}");
    assert_eq!(
        (&o["broker"]["topics"], &o["broker"]["queues"]),
        (&1.into(), &1.into())
    );
    assert_eq!(o["topics"][0]["partitions"][0]["end_offset"], 300, "{o}");
    assert_eq!(
        o["queues"],
        serde_json::json!([]),
        "the prefix leaves jobs out"
    );
    let (_, o) = json(h, "GET", "/api/overview", None);
    assert_eq!(o["queues"][0]["ready"], 1, "{o}");
    assert!(o["broker"]["connections"]["http"].as_u64().unwrap() >= 1);
    assert!(o["broker"]["disk_free_bytes"].as_u64().unwrap() > 0);
}
