//! Helpers of the integration tests: run the real `sluice` binary on a free port and a temporary
//! data directory, with bounded timeouts everywhere.

#![allow(dead_code)]

pub mod auth;
pub mod browser;
pub mod certs;
pub mod cluster;
pub mod cluster_check;
pub mod http;
pub mod kafka;
pub mod kafka_raw;
pub mod kafka_share;
pub mod link_proxy;
pub mod netns;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_sluice");

/// A running `sluice serve`.
pub struct ServerProc {
    pub child: Child,
    pub addr: String,
    /// The HTTP listener's address (`GET /metrics`); empty when a helper turned it off.
    pub http: String,
    pub dir: PathBuf,
}

/// First port [`free_port`] hands out, and how many ports it may use: the range below the
/// kernel's ephemeral ports (32768 and up on Linux).
const TEST_PORTS: (u32, u32) = (20_000, 12_000);

/// A free loopback port, below the kernel's ephemeral range and never handed out twice by one
/// test process.
///
/// Tests that restart a server on the port it had need this: a port picked by binding port 0
/// is an ephemeral one, which by the time of the restart may be the source port of some
/// outgoing connection, or another test's "free" port, so the restart fails, or worse, a node
/// of one test's cluster takes over the address of another test's killed node.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let (first, span) = TEST_PORTS;
    // Test processes run one after another; starting each elsewhere still keeps clear of a
    // port an earlier one's leftover process may hold.
    let start = std::process::id().wrapping_mul(997) % span;
    loop {
        let i = NEXT.fetch_add(1, Ordering::SeqCst);
        assert!(i < span, "every test port handed out");
        let port = (first + (start + i) % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Starts a server on `dir` with optional TOML `config` text; waits for `listening on`.
pub fn start(dir: &Path, config: Option<&str>) -> ServerProc {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--kafka-listen",
        "off",
        "--http-listen",
        "127.0.0.1:0",
        "--data-dir",
    ])
    .arg(dir)
    .env("RUST_LOG", "warn")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    if let Some(text) = config {
        let path = dir.with_extension("toml");
        std::fs::write(&path, text).unwrap();
        cmd.arg("--config").arg(path);
    }
    let mut child = cmd.spawn().expect("spawn sluice serve");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if let Some(addr) = line.strip_prefix("listening on ") {
                let _ = tx.send(addr.trim().to_string());
            } else if let Some(addr) = line.strip_prefix("http listening on ") {
                let _ = tx.send(format!("http {}", addr.trim()));
            }
        }
    });
    let (mut addr, mut http) = (None, None);
    while addr.is_none() || http.is_none() {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => match a.strip_prefix("http ") {
                Some(h) => http = Some(h.to_string()),
                None => addr = Some(a),
            },
            Err(_) => {
                let _ = child.kill();
                panic!("server did not print both `listening on` lines within 60 s");
            }
        }
    }
    ServerProc {
        child,
        addr: addr.unwrap(),
        http: http.unwrap(),
        dir: dir.to_owned(),
    }
}

impl ServerProc {
    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The server's process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends SIGKILL at once without waiting (reap later with [`ServerProc::kill9`]); safe to
    /// call from async code.
    pub fn sigkill(&self) {
        // SAFETY: kill(2) on our own child's pid, which is not reaped yet.
        unsafe { libc::kill(self.pid(), libc::SIGKILL) };
    }

    /// Resident memory of the server in KiB (`VmRSS` of `/proc/<pid>/status`).
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid())
    }

    /// Sends a signal and returns at once.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid, which is not reaped yet.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Sends a signal and waits (bounded) for the exit.
    pub fn signal_and_wait(&mut self, sig: i32) -> ExitStatus {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, sig) };
        wait_bounded(&mut self.child, Duration::from_secs(30)).expect("server did not exit")
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a CLI command against `addr` with optional stdin, killed after 60 s.
pub fn cli(addr: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env("SLUICE_ADDR", addr)
        .env("RUST_LOG", "warn")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sluice");
    if let Some(text) = stdin {
        let mut i = child.stdin.take().unwrap();
        let text = text.to_owned();
        std::thread::spawn(move || {
            let _ = i.write_all(text.as_bytes());
        });
    }
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let status = wait_bounded(&mut child, Duration::from_secs(60))
        .unwrap_or_else(|| panic!("`sluice {}` did not finish within 60 s", args.join(" ")));
    Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

/// Runs a CLI command that must succeed; returns its stdout lines.
pub fn cli_ok(addr: &str, args: &[&str], stdin: Option<&str>) -> Vec<String> {
    let o = cli(addr, args, stdin);
    assert!(
        o.status.success(),
        "`sluice {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Parses JSON lines.
pub fn json_lines(lines: &[String]) -> Vec<serde_json::Value> {
    lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// A temporary directory with a `data` path inside.
pub fn data_dir() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("data");
    (t, d)
}

/// Resident memory of a process in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc status")
}

/// Starts a CLI command against `addr` with stdout piped and stdin and stderr closed, for tests
/// that kill it mid-way (reap it with [`sigkill_and_output`]).
pub fn spawn_cli(addr: &str, args: &[&str]) -> Child {
    Command::new(BIN)
        .args(args)
        .env("SLUICE_ADDR", addr)
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sluice")
}

/// SIGKILLs a child started by [`spawn_cli`] (if it still runs), reaps it and returns what it
/// wrote to stdout.
pub fn sigkill_and_output(mut child: Child) -> String {
    // SAFETY: kill(2) on our own child's pid, which is not reaped yet.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
    let mut out = Vec::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_end(&mut out);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Threads of a process (`Threads` of `/proc/<pid>/status`).
pub fn threads(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("Threads in /proc status")
}
