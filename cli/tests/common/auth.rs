//! Authentication helpers of the HTTP tests (cli/tests/http_auth.rs): Basic credentials, calls
//! with extra headers and JSON answers, the login's session cookie, access rules as JSON, and
//! the console's login driven in headless Chromium by `tests/console/login.mjs`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use super::http::{request_with, samples, value};
use super::wait_bounded;

pub const ADMIN: (&str, &str) = ("admin", "admin-password");
pub const BOB: (&str, &str) = ("bob", "bob-password");

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The header line of Basic credentials.
pub fn basic((user, password): (&str, &str)) -> String {
    let b = base64(format!("{user}:{password}").as_bytes());
    format!("Authorization: Basic {b}\r\n")
}

/// A request with `extra` header lines; the status, the head (lower-case) and the JSON body
/// (`Null` when it is not JSON).
pub fn call(
    h: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
    extra: &str,
) -> (u16, String, Value) {
    let body = body.map(|b| b.to_string());
    let (status, head, text) = request_with(h, method, path, body.as_deref(), extra);
    let v = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, head.to_ascii_lowercase(), v)
}

/// [`call`] as `who` with Basic credentials.
pub fn as_user(
    h: &str,
    who: (&str, &str),
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let (s, _, v) = call(h, method, path, body, &basic(who));
    (s, v)
}

/// A sample of `/metrics` scraped as the admin.
pub fn metric(h: &str, key: &str) -> f64 {
    let (status, _, text) = request_with(h, "GET", "/metrics", None, &basic(ADMIN));
    assert_eq!(status, 200, "{text}");
    value(&samples(&text), key)
}

/// An access rule as the API takes it.
pub fn rule(
    permission: &str,
    who: &str,
    op: &str,
    resource: &str,
    pattern: &str,
    name: &str,
) -> Value {
    json!({"principal": who, "resource": resource, "pattern": pattern, "name": name,
           "operation": op, "permission": permission})
}

/// The session cookie's `name=value` from a login's head.
pub fn session_cookie(head: &str) -> String {
    let line = head
        .lines()
        .find(|l| l.starts_with("set-cookie: sluice_session="))
        .unwrap_or_else(|| panic!("no session cookie in {head}"));
    let pair = line
        .trim_start_matches("set-cookie: ")
        .split(';')
        .next()
        .unwrap();
    format!("Cookie: {pair}\r\n")
}

/// Logs `who` in; the `Cookie` header line of its session.
pub fn login(h: &str, (user, password): (&str, &str)) -> String {
    let (status, head, v) = call(
        h,
        "POST",
        "/api/login",
        Some(json!({"user": user, "password": password})),
        "",
    );
    assert_eq!(status, 200, "{head}{v}");
    assert_eq!(v["user"], user);
    session_cookie(&head)
}

/// Runs `tests/console/login.mjs` (Node's WebSocket and Chromium's DevTools protocol): opens
/// the console, logs in with the form, waits for a poll; the page's DOM then.
pub fn dom_after_login(chromium: &Path, url: &str, (user, password): (&str, &str)) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/console/login.mjs");
    let mut child = Command::new("node")
        .arg("--experimental-websocket")
        .arg(script)
        .args([chromium.to_str().unwrap(), url, user, password])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn node");
    let read = |mut from: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = from.read_to_string(&mut s);
            s
        })
    };
    let out = read(Box::new(child.stdout.take().unwrap()));
    let err = read(Box::new(child.stderr.take().unwrap()));
    let status = wait_bounded(&mut child, Duration::from_secs(60));
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    assert!(
        status.is_some_and(|s| s.success()),
        "login.mjs failed ({status:?}): {err}"
    );
    out
}
