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

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::*;

/// One HTTP/1.1 GET; returns the status, the head and the body.
fn get(addr: &str, path: &str) -> (u16, String, String) {
    request(addr, "GET", path, None)
}

/// One HTTP/1.1 request with an optional JSON body; returns the status, the head and the body.
fn request(addr: &str, method: &str, path: &str, body: Option<&str>) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the http listener");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = body.unwrap_or("");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    // A server that refuses a body early may close before reading it all.
    let _ = s.write_all(body.as_bytes());
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head and a body");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_string(), body.to_string())
}

/// Samples by their printed name and labels (`name{a="b"}`).
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').expect("name and value");
            (k.to_string(), v.parse().expect("a number"))
        })
        .collect()
}

fn value(s: &HashMap<String, f64>, key: &str) -> f64 {
    *s.get(key)
        .unwrap_or_else(|| panic!("no sample {key} in {:#?}", s.keys().collect::<Vec<_>>()))
}

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
fn json(addr: &str, method: &str, path: &str, body: Option<&str>) -> (u16, serde_json::Value) {
    let (status, head, text) = request(addr, method, path, body);
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {head}\n{text}"));
    (status, v)
}

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
