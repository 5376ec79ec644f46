//! Authentication and authorization on the HTTP listener of a running `sluice serve`
//! (docs/http.md, "Authentication").
//!
//! Each test starts a broker without users, makes known data with the CLI (topic `orders` with
//! three messages, queues `jobs` with four and `other`), then creates the first user, the
//! superuser `admin`, through the API (anonymous from loopback, allowed while no user exists):
//! from then on every request needs credentials. Shown: 401 without or with wrong ones (counted
//! in `/metrics`), Basic and the login cookie working, logout ending the session, a user
//! without rules refused (403, counted, the data untouched) until a rule allows it, deny
//! beating allow, listings filtered, a redrive moving dead letters only into queues the user
//! may write, users and rules managed through the API, a deleted or expired user's session
//! refused at its next request, passwords and session cookies refused over plain HTTP from
//! another host (users made offline with `sluice::security::Offline`, the listener on every
//! address, reached at this host's own address), and the web console asking to log in,
//! then showing the broker after the login (headless Chromium: `--dump-dom` for the form, and
//! `tests/console/login.mjs` driving the form over the DevTools protocol).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::auth::*;
use common::browser::{chromium, element, run_chromium};
use common::http::*;
use common::*;
use serde_json::{json, Value};

/// A broker with known data and the superuser `admin` (made through the API, anonymously from
/// loopback while no user exists), and the user `bob` without rules.
fn broker() -> (tempfile::TempDir, ServerProc) {
    let (tmp, dir) = data_dir();
    let server = start(&dir, None);
    let a = &server.addr;
    cli_ok(a, &["topic", "create", "orders"], None);
    cli_ok(a, &["publish", "orders", "o1", "o2", "o3"], None);
    cli_ok(a, &["queue", "create", "jobs"], None);
    cli_ok(a, &["queue", "create", "other"], None);
    cli_ok(a, &["publish", "jobs", "j1", "j2", "j3", "j4"], None);
    add_users(&server.http);
    (tmp, server)
}

/// Makes the superuser `admin` anonymously (allowed from loopback while no user exists), then
/// `bob` as `admin`.
fn add_users(h: &str) {
    let admin = json!({"name": ADMIN.0, "password": ADMIN.1, "superuser": true});
    let (status, _, v) = call(h, "POST", "/api/users", Some(admin), "");
    assert_eq!(
        status, 201,
        "the first user, anonymously from loopback: {v}"
    );
    let (status, _, v) = call(
        h,
        "POST",
        "/api/users",
        Some(json!({"name": "x", "password": "y"})),
        "",
    );
    assert_eq!(
        status, 401,
        "no more anonymous calls once a user exists: {v}"
    );
    let bob = json!({"name": BOB.0, "password": BOB.1});
    let (status, v) = as_user(h, ADMIN, "POST", "/api/users", Some(bob));
    assert_eq!(status, 201, "{v}");
}

/// The ready messages of queue `q`, as the admin sees them.
fn ready(h: &str, q: &str) -> u64 {
    let (status, v) = as_user(h, ADMIN, "GET", &format!("/api/queues/{q}"), None);
    assert_eq!(status, 200, "{v}");
    v["ready"]
        .as_u64()
        .unwrap_or_else(|| panic!("no ready in {v}"))
}

#[test]
fn requests_without_valid_credentials_get_401_and_basic_works() {
    let (_tmp, server) = broker();
    let h = &server.http;
    for path in ["/api/topics", "/metrics", "/api/whoami", "/api/nowhere"] {
        let (status, head, v) = call(h, "GET", path, None, "");
        assert_eq!(status, 401, "{path}: {head}");
        assert!(
            head.contains("www-authenticate: basic realm=\"sluice\""),
            "{path}: {head}"
        );
        assert_eq!(v["error"]["kind"], "Unauthenticated", "{path}: {v}");
    }
    // The console's calls get no challenge (no browser dialog); its files need no login.
    let (status, head, _) = call(
        h,
        "GET",
        "/api/topics",
        None,
        "X-Requested-With: sluice-console\r\n",
    );
    assert_eq!(status, 401);
    assert!(!head.contains("www-authenticate"), "{head}");
    let (status, head, _) = call(h, "GET", "/api/topics", None, "Sec-Fetch-Mode: cors\r\n");
    assert_eq!(status, 401);
    assert!(!head.contains("www-authenticate"), "{head}");
    for path in ["/", "/console/console.js", "/console/login.js"] {
        assert_eq!(get(h, path).0, 200, "{path}");
    }
    // Wrong password, unknown user, not Basic: 401; the first two are failed authentications.
    let (status, v) = as_user(h, (ADMIN.0, "wrong"), "GET", "/api/topics", None);
    assert_eq!(status, 401, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid credentials"),
        "{v}"
    );
    assert_eq!(
        as_user(h, ("nobody", "x"), "GET", "/api/topics", None).0,
        401
    );
    let (status, _, v) = call(
        h,
        "GET",
        "/api/topics",
        None,
        "Authorization: Bearer abc\r\n",
    );
    assert_eq!(status, 401, "{v}");
    let failures = r#"sluice_auth_failures_total{protocol="http"}"#;
    assert_eq!(metric(h, failures), 2.0);
    let (status, v) = as_user(h, ADMIN, "GET", "/api/topics", None);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["topics"], json!(["orders"]));
    let (status, v) = as_user(h, ADMIN, "GET", "/api/whoami", None);
    assert_eq!(
        (status, &v),
        (
            200,
            &json!({"user": "admin", "security": true, "superuser": true})
        )
    );
}

#[test]
fn a_login_cookie_works_until_logout() {
    let (_tmp, server) = broker();
    let h = &server.http;
    let wrong = json!({"user": "admin", "password": "nope"});
    let (status, head, v) = call(
        h,
        "POST",
        "/api/login",
        Some(wrong),
        "X-Requested-With: x\r\n",
    );
    assert_eq!(status, 401, "{v}");
    assert!(!head.contains("set-cookie"), "{head}");
    assert_eq!(
        metric(h, r#"sluice_auth_failures_total{protocol="http"}"#),
        1.0
    );
    let (status, head, _) = call(
        h,
        "POST",
        "/api/login",
        Some(json!({"user": ADMIN.0, "password": ADMIN.1})),
        "",
    );
    assert_eq!(status, 200);
    let set = head.lines().find(|l| l.starts_with("set-cookie:")).unwrap();
    for attr in ["httponly", "samesite=strict", "path=/", "max-age=43200"] {
        assert!(set.contains(attr), "{set}");
    }
    assert!(
        !set.contains("secure"),
        "plain HTTP: no Secure attribute: {set}"
    );
    assert!(!head.contains(ADMIN.1), "the password is never answered");
    let cookie = session_cookie(&head);
    let (status, _, v) = call(h, "GET", "/api/whoami", None, &cookie);
    assert_eq!((status, v["user"].as_str()), (200, Some("admin")), "{v}");
    let (status, _, v) = call(h, "GET", "/api/queues", None, &cookie);
    assert_eq!(
        (status, &v["queues"]),
        (200, &json!(["jobs", "other"])),
        "{v}"
    );
    let (status, head, v) = call(h, "POST", "/api/logout", None, &cookie);
    assert_eq!((status, &v), (200, &json!({"ended": true})), "{v}");
    assert!(head.contains("max-age=0"), "the cookie is removed: {head}");
    let (status, _, v) = call(h, "GET", "/api/whoami", None, &cookie);
    assert_eq!(status, 401, "the session ended: {v}");
    let (status, _, _) = call(
        h,
        "GET",
        "/api/whoami",
        None,
        "Cookie: sluice_session=00ff\r\n",
    );
    assert_eq!(status, 401, "an unknown token");
}

#[test]
fn a_user_without_rules_is_refused_and_nothing_changes() {
    let (_tmp, server) = broker();
    let h = &server.http;
    let refused: [(&str, &str, Option<Value>, &str); 6] = [
        (
            "GET",
            "/api/queues/jobs/messages",
            None,
            "bob may not read queue jobs",
        ),
        (
            "POST",
            "/api/queues/jobs/purge",
            None,
            "bob may not delete queue jobs",
        ),
        (
            "DELETE",
            "/api/topics/orders",
            None,
            "bob may not delete topic orders",
        ),
        (
            "POST",
            "/api/topics",
            Some(json!({"name": "new"})),
            "bob may not create topic new",
        ),
        ("GET", "/metrics", None, "bob may not describe cluster"),
        (
            "POST",
            "/api/queues/jobs/redrive",
            Some(json!({"to": "other"})),
            "bob may not read queue jobs",
        ),
    ];
    for (method, path, body, why) in refused.clone() {
        let (status, v) = as_user(h, BOB, method, path, body);
        assert_eq!(status, 403, "{method} {path}: {v}");
        assert_eq!(v["error"]["kind"], "Forbidden", "{v}");
        assert_eq!(v["error"]["message"], why, "{method} {path}");
    }
    assert_eq!(
        metric(h, r#"sluice_authorization_denials_total{protocol="http"}"#),
        6.0
    );
    assert_eq!(ready(h, "jobs"), 4, "nothing purged");
    let (_, v) = as_user(h, ADMIN, "GET", "/api/topics", None);
    assert_eq!(v["topics"], json!(["orders"]), "orders kept, new not made");
    // Listings show nothing bob may not describe.
    for (path, key) in [
        ("/api/topics", "topics"),
        ("/api/queues", "queues"),
        ("/api/groups", "groups"),
    ] {
        let (status, v) = as_user(h, BOB, "GET", path, None);
        assert_eq!((status, &v[key]), (200, &json!([])), "{path}");
    }
    // Bob may not manage users or rules.
    let (status, v) = as_user(h, BOB, "GET", "/api/users", None);
    assert_eq!(status, 403, "{v}");
    let (status, v) = as_user(
        h,
        BOB,
        "POST",
        "/api/acls",
        Some(rule("allow", "bob", "all", "cluster", "exact", "")),
    );
    assert_eq!(status, 403, "{v}");
    let (_, v) = as_user(h, ADMIN, "GET", "/api/acls", None);
    assert_eq!(v["rules"], json!([]), "no rule added by bob");
}

#[test]
fn rules_allow_deny_beats_allow_and_listings_follow_them() {
    let (_tmp, server) = broker();
    let h = &server.http;
    // Allowed: read jobs (describe implied), so bob peeks and lists it, not `other`.
    let add = |r: Value| {
        let (status, v) = as_user(h, ADMIN, "POST", "/api/acls", Some(r));
        assert_eq!(status, 201, "{v}");
        assert_eq!(v["added"], true, "{v}");
    };
    add(rule("allow", "bob", "read", "queue", "exact", "jobs"));
    let (status, v) = as_user(h, BOB, "GET", "/api/queues/jobs/messages", None);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["messages"].as_array().unwrap().len(), 4, "{v}");
    let (_, v) = as_user(h, BOB, "GET", "/api/queues", None);
    assert_eq!(v["queues"], json!(["jobs"]));
    add(rule("allow", "bob", "describe", "topic", "prefix", "ord"));
    let (_, v) = as_user(h, BOB, "GET", "/api/topics", None);
    assert_eq!(v["topics"], json!(["orders"]));
    // Deny beats allow: purge stays refused while both rules exist.
    add(rule("allow", "*", "delete", "queue", "prefix", "jo"));
    let deny = rule("deny", "bob", "delete", "queue", "exact", "jobs");
    add(deny.clone());
    let (status, v) = as_user(h, BOB, "POST", "/api/queues/jobs/purge", None);
    assert_eq!(status, 403, "{v}");
    assert_eq!(ready(h, "jobs"), 4);
    let (status, v) = as_user(h, ADMIN, "DELETE", "/api/acls", Some(deny.clone()));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["removed"]["text"], "deny bob delete queue jobs");
    let (status, v) = as_user(h, ADMIN, "DELETE", "/api/acls", Some(deny));
    assert_eq!(status, 404, "removed already: {v}");
    let (status, v) = as_user(h, BOB, "POST", "/api/queues/jobs/purge", None);
    assert_eq!((status, &v), (200, &json!({"purged": 4})), "{v}");
    assert_eq!(ready(h, "jobs"), 0);
    let (_, v) = as_user(h, ADMIN, "GET", "/api/acls", None);
    let texts: Vec<&str> = v["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        [
            "allow bob read queue jobs",
            "allow bob describe topic ord*",
            "allow * delete queue jo*"
        ]
    );
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn users_are_managed_through_the_api_and_a_deleted_or_expired_users_session_ends() {
    let (_tmp, server) = broker();
    let h = &server.http;
    let carol =
        json!({"name": "carol", "password": "carol-secret", "quotas": {"connections_max": 3}});
    let (status, v) = as_user(h, ADMIN, "POST", "/api/users", Some(carol.clone()));
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["name"], "carol");
    assert_eq!(v["superuser"], false);
    assert_eq!(v["quotas"]["connections_max"], 3);
    let (status, v) = as_user(h, ADMIN, "POST", "/api/users", Some(carol));
    assert_eq!(status, 409, "{v}");
    let bad = json!({"name": "a b", "password": "x"});
    assert_eq!(as_user(h, ADMIN, "POST", "/api/users", Some(bad)).0, 400);
    let quotas = json!({"produce_bytes_per_sec": 1000});
    let (status, v) = as_user(h, ADMIN, "PUT", "/api/users/carol/quotas", Some(quotas));
    assert_eq!(status, 200, "{v}");
    let (status, _, text) = request_with(h, "GET", "/api/users", None, &basic(ADMIN));
    assert_eq!(status, 200);
    assert!(
        !text.contains("carol-secret") && !text.contains("argon2"),
        "{text}"
    );
    let users: Value = serde_json::from_str(&text).unwrap();
    let names: Vec<&str> = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "bob", "carol"]);
    let c = &users["users"][2];
    assert_eq!(
        c["quotas"],
        json!({"produce_bytes_per_sec": 1000, "fetch_bytes_per_sec": null, "connections_max": null})
    );
    // Carol logs in; deleted, her session fails at its next request, and so does Basic.
    let cookie = login(h, ("carol", "carol-secret"));
    let (status, _, v) = call(h, "GET", "/api/whoami", None, &cookie);
    assert_eq!((status, &v["user"]), (200, &json!("carol")));
    let (status, v) = as_user(h, ADMIN, "DELETE", "/api/users/carol", None);
    assert_eq!((status, &v), (200, &json!({"deleted": "carol"})));
    assert_eq!(call(h, "GET", "/api/whoami", None, &cookie).0, 401);
    assert_eq!(
        as_user(h, ("carol", "carol-secret"), "GET", "/api/whoami", None).0,
        401
    );
    assert_eq!(as_user(h, ADMIN, "DELETE", "/api/users/carol", None).0, 404);
    // A user expiring in 2 s: logged in now, refused once it expired.
    let dave = json!({"name": "dave", "password": "dave-secret", "expires_at_ms": now_ms() + 2000});
    assert_eq!(as_user(h, ADMIN, "POST", "/api/users", Some(dave)).0, 201);
    let cookie = login(h, ("dave", "dave-secret"));
    assert_eq!(call(h, "GET", "/api/whoami", None, &cookie).0, 200);
    std::thread::sleep(Duration::from_millis(2100));
    let (status, _, v) = call(h, "GET", "/api/whoami", None, &cookie);
    assert_eq!(status, 401, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("expired"),
        "{v}"
    );
    // A rule that does not parse: 400, with the names it takes.
    let (status, v) = as_user(
        h,
        ADMIN,
        "POST",
        "/api/acls",
        Some(rule("allow", "bob", "fly", "topic", "exact", "x")),
    );
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("describe"),
        "{v}"
    );
}

#[test]
fn the_console_asks_to_log_in_then_shows_the_broker() {
    let Some(chromium) = chromium() else { return };
    let (_tmp, server) = broker();
    let url = format!("http://{}/#queues", server.http);
    let dom = run_chromium(
        &chromium,
        &["--virtual-time-budget=5000", "--dump-dom", url.as_str()],
    );
    assert!(dom.contains("data-login=\"required\""), "{dom}");
    let form = element(&dom, "id=\"login\"");
    assert!(
        !form.starts_with("<section id=\"login\" class=\"login\" hidden"),
        "{form}"
    );
    assert!(form.contains("name=\"password\""), "{form}");
    assert!(!dom.contains(">jobs<"), "no data before the login");
    let node = Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        common::kafka::missing::<()>("node");
        return;
    }
    let dom = dom_after_login(&chromium, &url, ADMIN);
    assert!(dom.contains("data-login=\"done\""), "{dom}");
    assert!(dom.contains("data-polls=\""), "{dom}");
    let queues = element(&dom, "id=\"queues-table\"");
    assert!(
        queues.contains(">jobs<") && queues.contains(">other<"),
        "{queues}"
    );
    assert!(element(&dom, "id=\"whoami\"").contains(">admin<"), "{dom}");
}

/// This host's address on its default route (no packet is sent), if it has one.
fn outward_ip() -> Option<std::net::IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// `sluice serve` with its HTTP listener on every address; its HTTP port.
fn serve_everywhere(dir: &Path) -> (ServerProc, u16) {
    use std::io::BufRead;
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--kafka-listen", "off"])
        .args(["--http-listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn sluice serve");
    let out = std::io::BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            if let Some(a) = line.strip_prefix("http listening on ") {
                let _ = tx.send(a.trim().rsplit(':').next().unwrap().parse::<u16>().unwrap());
            }
        }
    });
    let server = ServerProc {
        child,
        addr: String::new(),
        http: String::new(),
        dir: dir.to_owned(),
    };
    let port = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the server prints `http listening on` within 60 s");
    (server, port)
}

#[test]
fn passwords_over_plain_http_from_another_host_are_refused() {
    let Some(ip) = outward_ip() else {
        eprintln!("SKIPPED: this host has no address besides loopback");
        return;
    };
    let (_tmp, dir) = data_dir();
    std::fs::create_dir_all(&dir).unwrap();
    {
        let fs = std::sync::Arc::new(sluice::storage::StdFs);
        let offline = sluice::security::Offline::open(fs, &dir).unwrap();
        let o = sluice::security::UserOptions {
            superuser: true,
            ..Default::default()
        };
        offline.security.add_user(ADMIN.0, ADMIN.1, o).unwrap();
    }
    let (_server, port) = serve_everywhere(&dir);
    let (remote, local) = (format!("{ip}:{port}"), format!("127.0.0.1:{port}"));
    let (status, _, v) = call(&remote, "GET", "/api/topics", None, "");
    assert_eq!(status, 401, "{v}");
    let (status, v) = as_user(&remote, ADMIN, "GET", "/api/topics", None);
    assert_eq!(status, 403, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("TLS"),
        "{v}"
    );
    let creds = json!({"user": ADMIN.0, "password": ADMIN.1});
    let (status, head, v) = call(&remote, "POST", "/api/login", Some(creds.clone()), "");
    assert_eq!(status, 403, "{v}");
    assert!(!head.contains("set-cookie"), "{head}");
    // From loopback the same credentials work; the session's cookie is refused in the clear
    // from another host too (a token seen on the wire is as good as the password).
    let (status, v) = as_user(&local, ADMIN, "GET", "/api/topics", None);
    assert_eq!(status, 200, "{v}");
    let cookie = login(&local, ADMIN);
    assert_eq!(call(&local, "GET", "/api/whoami", None, &cookie).0, 200);
    let (status, _, v) = call(&remote, "GET", "/api/whoami", None, &cookie);
    assert_eq!(status, 403, "{v}");
    assert_eq!(
        metric(&local, r#"sluice_auth_failures_total{protocol="http"}"#),
        0.0
    );
}

#[test]
fn a_redrive_moves_dead_letters_only_into_queues_the_user_may_write() {
    let (_tmp, dir) = data_dir();
    let server = start(&dir, None);
    let (a, h) = (&server.addr, &server.http);
    let (status, _, v) = call(
        h,
        "POST",
        "/api/queues",
        Some(json!({"name": "work", "max_deliveries": 2})),
        "",
    );
    assert_eq!(status, 201, "{v}");
    cli_ok(a, &["publish", "work", "m1", "m2", "m3"], None);
    // Two deliveries without an ack each; the third attempt dead-letters them.
    for _ in 0..2 {
        cli_ok(a, &["consume", "work", "--no-ack", "--count", "3"], None);
    }
    cli_ok(a, &["consume", "work", "--wait-ms", "300"], None);
    add_users(h);
    let depth =
        |q: &str| as_user(h, ADMIN, "GET", &format!("/api/queues/{q}"), None).1["depth"].clone();
    assert_eq!(depth("work.dlq"), 3);
    let allow = |op: &str, q: &str| {
        let r = rule("allow", "bob", op, "queue", "exact", q);
        assert_eq!(as_user(h, ADMIN, "POST", "/api/acls", Some(r)).0, 201);
    };
    allow("read", "work.dlq");
    // Each message goes back to `work`, which bob may not write: nothing moves.
    let (status, v) = as_user(h, BOB, "POST", "/api/queues/work.dlq/redrive", None);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["moved"], 0, "{v}");
    let stopped = v["stopped"].as_str().unwrap_or_else(|| panic!("{v}"));
    assert!(stopped.contains("bob may not write queue work"), "{v}");
    let (status, v) = as_user(
        h,
        BOB,
        "POST",
        "/api/queues/work.dlq/redrive",
        Some(json!({"to": "work"})),
    );
    assert_eq!(status, 403, "{v}");
    assert_eq!(depth("work.dlq"), 3, "nothing moved");
    assert_eq!(
        metric(h, r#"sluice_authorization_denials_total{protocol="http"}"#),
        2.0
    );
    allow("write", "work");
    let (status, v) = as_user(h, BOB, "POST", "/api/queues/work.dlq/redrive", None);
    assert_eq!(
        (status, &v),
        (200, &json!({"moved": 3, "stopped": null})),
        "{v}"
    );
    assert_eq!(depth("work.dlq"), 0);
}
