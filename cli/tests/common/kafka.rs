//! Helpers of the Kafka tests: a server with its Kafka listener on a free port, the real Kafka
//! clients installed by `tests/kafka/install.sh` (found, or the test is skipped with a printed
//! reason, except under `CI=true` where a missing client fails the test), and commands bounded
//! in time.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{ServerProc, BIN};

/// A server started with its Kafka listener on.
pub struct KafkaServer {
    pub server: ServerProc,
    /// The Kafka listener's address.
    pub kafka: String,
}

/// Starts a server on `dir` with the Kafka listener on a free port and `extra` arguments;
/// waits for both `listening on` lines.
pub fn start_kafka(dir: &Path, extra: &[&str]) -> KafkaServer {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
        "--kafka-listen",
        "127.0.0.1:0",
    ])
    .args(extra)
    .arg("--data-dir")
    .arg(dir)
    .env("RUST_LOG", "warn")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    let mut child = cmd.spawn().expect("spawn sluice serve");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if let Some(a) = line.strip_prefix("listening on ") {
                let _ = tx.send((0, a.trim().to_string()));
            } else if let Some(a) = line.strip_prefix("kafka listening on ") {
                let _ = tx.send((1, a.trim().to_string()));
            } else if let Some(a) = line.strip_prefix("http listening on ") {
                let _ = tx.send((2, a.trim().to_string()));
            }
        }
    });
    let (mut native, mut kafka, mut http) = (None, None, None);
    while native.is_none() || kafka.is_none() || http.is_none() {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok((0, a)) => native = Some(a),
            Ok((1, a)) => kafka = Some(a),
            Ok((_, a)) => http = Some(a),
            Err(_) => {
                let _ = child.kill();
                panic!("server did not print its three `listening on` lines within 60 s");
            }
        }
    }
    KafkaServer {
        server: ServerProc {
            child,
            addr: native.unwrap(),
            http: http.unwrap(),
            dir: dir.to_owned(),
        },
        kafka: kafka.unwrap(),
    }
}

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// `what` is missing: under `CI=true` the test fails, elsewhere it is skipped with the reason
/// printed. Returns `None` to the caller, which returns.
pub fn missing<T>(what: &str) -> Option<T> {
    let why = format!("{what} is not installed (run `bash tests/kafka/install.sh`)");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{why}; CI must run this test");
    }
    eprintln!("SKIPPED: {why}");
    None
}

/// Debian's kcat, if installed.
pub fn kcat() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("kcat"))
            .find(|f| f.is_file())
    });
    found.or_else(|| missing("kcat"))
}

/// The folder holding the confluent-kafka wheel's newer librdkafka as `librdkafka.so.1`.
pub fn new_librdkafka() -> Option<PathBuf> {
    let dir = repo_root().join("tests/kafka/.librdkafka-new");
    if dir.join("librdkafka.so.1").exists() {
        Some(dir)
    } else {
        missing("the newer librdkafka of the confluent-kafka wheel")
    }
}

/// The venv's Python with confluent-kafka.
pub fn python() -> Option<PathBuf> {
    let py = repo_root().join("tests/kafka/.venv/bin/python");
    if py.is_file() {
        Some(py)
    } else {
        missing("the confluent-kafka venv")
    }
}

/// Runs `cmd` with `stdin`, killed after `limit`; its output.
pub fn run(mut cmd: Command, stdin: Option<&[u8]>, limit: Duration) -> Output {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child: Child = cmd.spawn().expect("spawn a Kafka client");
    if let Some(input) = stdin {
        let mut w = child.stdin.take().unwrap();
        w.write_all(input).unwrap();
    }
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let o = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        b
    });
    let e = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b);
        b
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let s = child.wait().unwrap();
            eprintln!("killed after {limit:?}: {cmd:?}");
            break s;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: o.join().unwrap(),
        stderr: e.join().unwrap(),
    }
}

/// A kcat command against `bootstrap`, on the newer librdkafka when `lib` is given.
pub fn kcat_cmd(kcat: &Path, lib: Option<&Path>, bootstrap: &str, args: &[&str]) -> Command {
    let mut c = Command::new(kcat);
    c.arg("-b").arg(bootstrap).args(args);
    if let Some(l) = lib {
        c.env("LD_LIBRARY_PATH", l);
    }
    c
}

/// Runs kcat and returns its stdout, failing the test with its stderr when it fails.
pub fn kcat_ok(
    kcat: &Path,
    lib: Option<&Path>,
    bootstrap: &str,
    args: &[&str],
    stdin: Option<&[u8]>,
) -> String {
    let out = run(
        kcat_cmd(kcat, lib, bootstrap, args),
        stdin,
        Duration::from_secs(60),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kcat {args:?} failed: {err}");
    String::from_utf8(out.stdout).expect("kcat printed UTF-8")
}

/// `java` and the class path of Kafka's Java client and tools (`tests/kafka/.lib/*`).
pub fn java_classpath() -> Option<String> {
    let lib = repo_root().join("tests/kafka/.lib");
    let has_clients = std::fs::read_dir(&lib).ok().is_some_and(|d| {
        d.filter_map(Result::ok).any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("kafka-clients-")
        })
    });
    let has_java = Command::new("java")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    if has_clients && has_java {
        Some(format!("{}/*", lib.display()))
    } else {
        missing("Kafka's Java client and tools (and java)")
    }
}

/// The franz-go program of `tests/kafka/go` (built by `install.sh go`).
pub fn franz_go() -> Option<PathBuf> {
    let bin = repo_root().join("tests/kafka/go/smoke");
    if bin.is_file() {
        Some(bin)
    } else {
        missing("the franz-go program (tests/kafka/go/smoke)")
    }
}

/// `node` and the kafkajs of `tests/kafka/node` (installed by `install.sh node`): the folder to
/// run the scripts in.
pub fn kafkajs() -> Option<PathBuf> {
    let dir = repo_root().join("tests/kafka/node");
    let installed = dir.join("node_modules/kafkajs/package.json").is_file();
    let has_node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if installed && has_node {
        Some(dir)
    } else {
        missing("node and kafkajs (tests/kafka/node)")
    }
}

/// Apache Kafka's broker, stopped when dropped.
pub struct ApacheKafka {
    dir: PathBuf,
    /// Its address.
    pub bootstrap: String,
}

impl ApacheKafka {
    /// Starts a broker (KRaft, one node) in `dir` on a free loopback port.
    pub fn start(dir: &Path) -> ApacheKafka {
        let port = super::free_port();
        let mut cmd = Command::new("bash");
        cmd.arg(repo_root().join("tests/kafka/kafka-broker.sh"))
            .arg("start")
            .arg(dir)
            .arg(port.to_string());
        let out = run(cmd, None, Duration::from_secs(120));
        assert!(
            out.status.success(),
            "Apache Kafka did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        ApacheKafka {
            dir: dir.to_owned(),
            bootstrap: format!("127.0.0.1:{port}"),
        }
    }
}

impl Drop for ApacheKafka {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo_root().join("tests/kafka/kafka-broker.sh"))
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

/// Compiles `tests/kafka/java/src/<file>` into `classes` (it must compile).
pub fn compile_java(cp: &str, file: &str, classes: &Path) {
    let mut cmd = Command::new("javac");
    cmd.args(["-nowarn", "-cp", cp, "-d"])
        .arg(classes)
        .arg(repo_root().join("tests/kafka/java/src").join(file));
    let out = run(cmd, None, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "javac {file}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
