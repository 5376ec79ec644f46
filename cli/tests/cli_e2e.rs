//! The `sluice` command line against a real server.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{cli, cli_ok, data_dir, json_lines, start, wait_bounded, BIN};

#[test]
fn publish_then_subscribe_with_resume() {
    let (_t, dir) = data_dir();
    let server = start(&dir, None);
    let a = server.addr.as_str();
    cli_ok(
        a,
        &["topic", "create", "logs", "--segment-bytes", "1048576"],
        None,
    );
    assert_eq!(
        cli_ok(a, &["topic", "list", "--json"], None),
        [r#"{"name":"logs"}"#]
    );
    // Arguments.
    let out = json_lines(&cli_ok(a, &["publish", "logs", "--json", "a", "b"], None));
    assert_eq!(
        out,
        [
            serde_json::json!({"partition":0,"offset":0}),
            serde_json::json!({"partition":0,"offset":1})
        ]
    );
    // stdin, one message per line, offsets in input order.
    let input: String = (0..2500).map(|i| format!("line {i}\n")).collect();
    let out = cli_ok(a, &["publish", "logs"], Some(&input));
    assert_eq!(out.len(), 2500);
    for (i, l) in out.iter().enumerate() {
        assert_eq!(l, &(i + 2).to_string());
    }
    // A named subscriber from the start, 10 messages, then resuming where it committed.
    let lines = json_lines(&cli_ok(
        a,
        &[
            "subscribe",
            "logs",
            "--name",
            "s",
            "--from",
            "earliest",
            "--count",
            "10",
            "--json",
        ],
        None,
    ));
    assert_eq!(lines.len(), 10);
    assert_eq!(lines[0]["payload"], "a");
    assert_eq!(lines[2]["payload"], "line 0");
    assert_eq!(lines[9]["offset"], 9);
    assert!(lines[0]["timestamp"].as_i64().unwrap() > 0);
    let lines = json_lines(&cli_ok(
        a,
        &["--json", "subscribe", "logs", "--name", "s", "--count", "3"],
        None,
    ));
    assert_eq!(lines[0]["offset"], 10);
    // Stops after --wait-ms with nothing new, having committed what it printed.
    let lines = cli_ok(
        a,
        &["subscribe", "logs", "--name", "s", "--wait-ms", "500"],
        None,
    );
    assert_eq!(lines.len(), 2502 - 13);
    let d = json_lines(&cli_ok(a, &["topic", "describe", "logs", "--json"], None));
    assert_eq!(d[0]["partitions"][0]["subscribers"][0]["committed"], 2502);
    // Anonymous readers start at the end by default and commit nothing.
    let lines = cli_ok(a, &["subscribe", "logs", "--wait-ms", "300"], None);
    assert!(lines.is_empty());
    let lines = cli_ok(
        a,
        &["subscribe", "logs", "--from", "2501", "--wait-ms", "300"],
        None,
    );
    assert_eq!(lines, ["line 2499"]);
    let lines = cli_ok(
        a,
        &[
            "subscribe",
            "logs",
            "--from",
            "2000-01-01T00:00:00Z",
            "--count",
            "1",
        ],
        None,
    );
    assert_eq!(lines, ["a"]);
}

#[test]
fn missing_names_are_clear_errors() {
    let (_t, dir) = data_dir();
    let server = start(&dir, None);
    for args in [
        &["publish", "nope", "x"][..],
        &["subscribe", "nope", "--count", "1"],
        &["consume", "nope", "--count", "1"],
        &["topic", "describe", "nope"],
    ] {
        let o = cli(&server.addr, args, None);
        assert!(!o.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("nope"), "{args:?}: {err}");
    }
    let o = cli("127.0.0.1:1", &["topic", "list"], None);
    assert!(!o.status.success());
}

#[test]
fn queues_consume_ack_and_redeliver_after_no_ack_and_kill() {
    let (_t, dir) = data_dir();
    let server = start(&dir, None);
    let a = server.addr.as_str();
    let out = cli_ok(
        a,
        &[
            "queue",
            "create",
            "jobs",
            "--ack-timeout-ms",
            "60000",
            "--max-deliveries",
            "3",
            "--json",
        ],
        None,
    );
    assert_eq!(json_lines(&out)[0]["dead_letter"], "jobs.dlq");
    let queues = cli_ok(a, &["queue", "list"], None);
    // The dead-letter queue costs nothing until its first dead letter.
    assert!(queues.contains(&"jobs".to_string()) && !queues.contains(&"jobs.dlq".to_string()));
    let input: String = (0..6).map(|i| format!("job {i}\n")).collect();
    cli_ok(a, &["publish", "jobs"], Some(&input));

    // --no-ack: printed, then delivered again to the next consumer.
    let first = json_lines(&cli_ok(
        a,
        &["consume", "jobs", "--count", "2", "--no-ack", "--json"],
        None,
    ));
    assert_eq!(first.len(), 2);
    let again = json_lines(&cli_ok(
        a,
        &["consume", "jobs", "--count", "2", "--json"],
        None,
    ));
    let offs = |v: &[serde_json::Value]| {
        v.iter()
            .map(|m| m["offset"].as_u64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(offs(&again), offs(&first));
    assert!(again[0]["attempt"].as_u64().unwrap() >= 2);

    // A consumer process killed before acking: its messages go to the next one.
    let mut victim = Command::new(BIN)
        .args(["consume", "jobs", "--no-ack", "--addr", a])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut rd = BufReader::new(victim.stdout.take().unwrap());
    let mut line = String::new();
    rd.read_line(&mut line).unwrap();
    assert!(line.starts_with("job "));
    victim.kill().unwrap();
    wait_bounded(&mut victim, Duration::from_secs(10)).unwrap();
    let mut rest = cli_ok(a, &["consume", "jobs", "--wait-ms", "1000"], None);
    rest.sort();
    assert_eq!(rest, ["job 2", "job 3", "job 4", "job 5"]);
    let d = json_lines(&cli_ok(a, &["queue", "describe", "jobs", "--json"], None));
    assert_eq!(
        (d[0]["depth"].as_u64(), d[0]["in_flight"].as_u64()),
        (Some(0), Some(0))
    );
    assert!(cli_ok(a, &["consume", "jobs", "--wait-ms", "300"], None).is_empty());

    // Consumer groups over a topic.
    cli_ok(a, &["topic", "create", "ev"], None);
    cli_ok(a, &["publish", "ev", "--key", "k", "e1", "e2"], None);
    let got = json_lines(&cli_ok(
        a,
        &["consume", "ev", "--group", "g", "--count", "2", "--json"],
        None,
    ));
    assert_eq!(got[1]["payload"], "e2");
    assert_eq!(got[0]["key"], "k");
    assert!(cli_ok(
        a,
        &["consume", "ev", "--group", "g", "--wait-ms", "300"],
        None
    )
    .is_empty());

    cli_ok(a, &["queue", "delete", "jobs"], None);
    cli_ok(a, &["topic", "delete", "ev"], None);
    assert!(!cli_ok(a, &["queue", "list"], None).contains(&"jobs".to_string()));
}

#[test]
fn many_names_are_created_and_deleted_in_one_command() {
    let (_t, dir) = data_dir();
    let server = start(&dir, None);
    let a = server.addr.as_str();
    let out = json_lines(&cli_ok(a, &["queue", "create", "q1", "q2", "--json"], None));
    assert_eq!(out.len(), 2);
    assert_eq!(
        (out[0]["created"].as_str(), out[1]["created"].as_str()),
        (Some("q1"), Some("q2"))
    );
    // From standard input, with a blank line and a comment; one name exists already.
    let names: String = (3..300).map(|i| format!("q{i}\n")).collect();
    let input = format!("# queues\n\n{names}q1\n");
    let o = cli(
        a,
        &["queue", "create", "--from-file", "-", "--json"],
        Some(&input),
    );
    assert!(!o.status.success(), "q1 exists: the command fails");
    let lines = json_lines(
        &String::from_utf8(o.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>(),
    );
    assert_eq!(lines.len(), 298, "every name has its line, in order");
    for (i, l) in lines[..297].iter().enumerate() {
        assert_eq!(l["created"], format!("q{}", i + 3));
    }
    assert_eq!(lines[297]["name"], "q1");
    assert!(
        lines[297]["error"].as_str().unwrap().contains("exists"),
        "{}",
        lines[297]
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("1 of 298"));
    let listed = cli_ok(a, &["queue", "list"], None);
    assert_eq!(listed.len(), 299);
    // Topics too, and deletes.
    cli_ok(
        a,
        &["topic", "create", "t1", "t2", "t3", "--partitions", "2"],
        None,
    );
    assert_eq!(cli_ok(a, &["topic", "list"], None), ["t1", "t2", "t3"]);
    cli_ok(a, &["topic", "delete", "t1", "t3"], None);
    assert_eq!(cli_ok(a, &["topic", "list"], None), ["t2"]);
    let all: String = (1..300).map(|i| format!("q{i}\n")).collect();
    let gone = cli_ok(a, &["queue", "delete", "--from-file", "-"], Some(&all));
    assert_eq!(gone.len(), 299);
    assert!(cli_ok(a, &["queue", "list"], None).is_empty());
    // No names at all is an error, not a silent success.
    assert!(!cli(a, &["queue", "create"], None).status.success());
}

/// `--log-format json`: every line the server writes on stderr is one JSON object with its
/// level and message, and the fields say what a line concerns (the data directory, the peer).
#[test]
fn serve_writes_json_log_lines() {
    let (_t, dir) = data_dir();
    let mut child = Command::new(BIN)
        .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0"])
        .args([
            "--kafka-listen",
            "off",
            "--http-listen",
            "off",
            "--data-dir",
        ])
        .arg(&dir)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .expect("the address")
        .to_string();
    // A frame that is not the protocol's handshake: the server logs it and closes.
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    std::io::Write::write_all(&mut s, b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let _ = std::io::Read::read(&mut s, &mut [0u8; 64]);
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = wait_bounded(&mut child, Duration::from_secs(30)).expect("exits on SIGTERM");
    assert!(status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    let lines: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let find = |msg: &str| {
        lines
            .iter()
            .find(|l| {
                l["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(msg))
            })
            .unwrap_or_else(|| panic!("no line with {msg:?} in {err}"))
    };
    let open = find("store open");
    assert_eq!(open["level"], "INFO");
    assert_eq!(open["fields"]["data_dir"], dir.display().to_string());
    let closing = find("closing connection");
    assert_eq!(closing["level"], "WARN");
    assert!(closing["fields"]["peer"]
        .as_str()
        .is_some_and(|p| p.starts_with("127.0.0.1:")));
    // Every line about a connection carries its span: protocol, peer, registry id.
    let span = &closing["span"];
    assert_eq!(
        (span["name"].as_str(), span["protocol"].as_str()),
        (Some("conn"), Some("native"))
    );
    assert_eq!(span["peer"], closing["fields"]["peer"], "{closing}");
    assert!(span["id"].as_u64().is_some_and(|id| id >= 1), "{closing}");
    find("store closed cleanly");
}

/// `sluice serve` with `args` (data directory added); stdout and stderr piped.
fn serve(dir: &std::path::Path, args: &[&str]) -> std::process::Child {
    Command::new(BIN)
        .arg("serve")
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn a_listener_beyond_loopback_needs_client_certificates_or_allow_anonymous() {
    let (_t, dir) = data_dir();
    let off = ["--kafka-listen", "off", "--http-listen", "off"];
    for (args, key) in [
        (vec!["--listen", "0.0.0.0:0"], "listen 0.0.0.0"),
        (
            vec![
                "--listen",
                "127.0.0.1:0",
                "--http-listen",
                "0.0.0.0:0",
                "--kafka-listen",
                "off",
            ],
            "http_listen",
        ),
    ] {
        let args: Vec<&str> = if key == "listen 0.0.0.0" {
            [&args[..], &off[..]].concat()
        } else {
            args
        };
        let mut child = serve(&dir, &args);
        let status = wait_bounded(&mut child, Duration::from_secs(30)).expect("refuses to start");
        assert!(!status.success(), "{args:?}");
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        assert!(
            err.contains(key) && err.contains("--allow-anonymous"),
            "{err}"
        );
    }
    // Accepted explicitly: it serves, and says so loudly.
    let mut child = serve(
        &dir,
        &[
            &["--listen", "0.0.0.0:0", "--allow-anonymous"][..],
            &off[..],
        ]
        .concat(),
    );
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let port = line
        .trim()
        .rsplit(':')
        .next()
        .expect("listening on 0.0.0.0:PORT")
        .to_string();
    assert!(line.starts_with("listening on 0.0.0.0:"), "{line}");
    cli_ok(
        &format!("127.0.0.1:{port}"),
        &["topic", "create", "open"],
        None,
    );
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    wait_bounded(&mut child, Duration::from_secs(30)).expect("exits on SIGTERM");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("ANONYMOUS ACCESS"), "{err}");
}
