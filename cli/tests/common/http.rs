//! HTTP of the tests: one request per connection over a plain `TcpStream`, JSON bodies, and
//! the samples of a `GET /metrics` text by name and labels.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One HTTP/1.1 GET; returns the status, the head and the body.
pub fn get(addr: &str, path: &str) -> (u16, String, String) {
    request(addr, "GET", path, None)
}

/// One HTTP/1.1 request with an optional JSON body; returns the status, the head and the body.
pub fn request(addr: &str, method: &str, path: &str, body: Option<&str>) -> (u16, String, String) {
    request_with(addr, method, path, body, "")
}

/// [`request`] with `extra` header lines (each ending in `\r\n`).
pub fn request_with(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    extra: &str,
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the http listener");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = body.unwrap_or("");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}\
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
pub fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').expect("name and value");
            (k.to_string(), v.parse().expect("a number"))
        })
        .collect()
}

pub fn value(s: &HashMap<String, f64>, key: &str) -> f64 {
    *s.get(key)
        .unwrap_or_else(|| panic!("no sample {key} in {:#?}", s.keys().collect::<Vec<_>>()))
}

/// A request whose answer is JSON: its status and the parsed body.
pub fn json(addr: &str, method: &str, path: &str, body: Option<&str>) -> (u16, serde_json::Value) {
    let (status, head, text) = request(addr, method, path, body);
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {head}\n{text}"));
    (status, v)
}
