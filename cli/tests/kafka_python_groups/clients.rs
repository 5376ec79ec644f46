//! Helpers of `kafka_python_groups.rs`: running the Python clients of `tests/kafka/py` and
//! reading their JSON events (at the end, or line by line as they come), the group positions
//! `sluice topic describe` shows, and a server on ports chosen by the test so that a restart
//! keeps the bootstrap address.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::kafka::repo_root;
use crate::common::{cli_ok, json_lines, wait_bounded, ServerProc, BIN};

/// A Python script of `tests/kafka/py` with its arguments.
pub fn py_cmd(py: &Path, script: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(py);
    cmd.arg(repo_root().join("tests/kafka/py").join(script))
        .args(args)
        .env("PYTHONWARNINGS", "ignore::DeprecationWarning");
    cmd
}

fn parse(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON line {line:?}: {e}"))
}

/// The JSON events a client printed, one per line.
pub fn events(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(parse)
        .collect()
}

/// The events of one kind (`name`, the kafkatest clients' field).
pub fn named<'a>(events: &'a [Value], name: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    events.iter().filter(move |e| e["name"] == name)
}

pub fn int(v: &Value, field: &str) -> i64 {
    v[field]
        .as_i64()
        .unwrap_or_else(|| panic!("no integer {field} in {v}"))
}

pub fn text<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("no string {field} in {v}"))
}

/// `[[partition, offset], ...]` of an event.
pub fn pairs(v: &Value, field: &str) -> Vec<(i64, i64)> {
    v[field]
        .as_array()
        .unwrap_or_else(|| panic!("no list {field} in {v}"))
        .iter()
        .map(|p| (p[0].as_i64().unwrap(), p[1].as_i64().unwrap()))
        .collect()
}

/// A client's exit status and output, for a failure message.
pub fn describe_output(what: &str, out: &Output) -> String {
    format!(
        "{what}: {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Partition -> (end offset, committed offset of `subscriber` if it has one), from
/// `sluice topic describe --json` (a Kafka group's offsets are the named subscriber's).
pub fn topic_positions(
    addr: &str,
    topic: &str,
    subscriber: &str,
) -> BTreeMap<i64, (i64, Option<i64>)> {
    let described = json_lines(&cli_ok(addr, &["topic", "describe", topic, "--json"], None));
    described[0]["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| {
            let committed = p["subscribers"]
                .as_array()
                .expect("subscribers")
                .iter()
                .find(|s| s["name"] == subscriber)
                .map(|s| int(s, "committed"));
            (int(p, "partition"), (int(p, "end_offset"), committed))
        })
        .collect()
}

pub use crate::common::free_port;

/// Starts `sluice serve` on `dir` with both listeners on the given ports; waits until both
/// listen.
pub fn start_on_ports(dir: &Path, native: u16, kafka: u16) -> ServerProc {
    let native = format!("127.0.0.1:{native}");
    let kafka = format!("127.0.0.1:{kafka}");
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", &native, "--kafka-listen", &kafka])
        .args(["--http-listen", "off"])
        .arg("--data-dir")
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn sluice serve");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if line.starts_with("listening on ") || line.starts_with("kafka listening on ") {
                let _ = tx.send(());
            }
        }
    });
    for _ in 0..2 {
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("server on {native} and {kafka} did not listen within 60 s");
        }
    }
    ServerProc {
        child,
        addr: native,
        http: String::new(),
        dir: dir.to_owned(),
    }
}

/// A client whose stdout lines (JSON events) are read as they come.
pub struct Streaming {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: Option<JoinHandle<Vec<u8>>>,
    /// The events read so far.
    pub seen: Vec<Value>,
}

impl Streaming {
    pub fn spawn(mut cmd: Command) -> Streaming {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn a Kafka client");
        let stdout = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = err.read_to_end(&mut b);
            b
        });
        Streaming {
            child,
            lines,
            stderr: Some(stderr),
            seen: Vec::new(),
        }
    }

    /// Reads events until `done` holds for those seen so far, or `deadline`, or the end of the
    /// output; whether `done` held.
    pub fn until(&mut self, deadline: Instant, mut done: impl FnMut(&[Value]) -> bool) -> bool {
        while !done(&self.seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self
                .lines
                .recv_timeout(left.min(Duration::from_millis(200)))
            {
                Ok(line) => self.seen.push(parse(&line)),
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(_) => return false,
            }
        }
        true
    }

    /// Waits (at most 60 s) for the exit, after a SIGTERM when `term`; the exit status, every
    /// event and the stderr.
    pub fn finish(mut self, term: bool) -> (ExitStatus, Vec<Value>, String) {
        if term {
            // SAFETY: kill(2) on our own child's pid, which is not reaped yet.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        }
        let status = wait_bounded(&mut self.child, Duration::from_secs(60))
            .expect("client did not exit within 60 s");
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(10)) {
            self.seen.push(parse(&line));
        }
        let stderr = self.stderr.take().unwrap().join().unwrap();
        let stderr = String::from_utf8_lossy(&stderr).into_owned();
        (status, std::mem::take(&mut self.seen), stderr)
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
