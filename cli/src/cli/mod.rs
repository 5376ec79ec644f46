//! The `sluice` command line: `serve` and the client commands.

mod args;
pub mod bench;
mod cluster;
mod names;
pub(crate) mod security;
pub mod text;

pub use args::*;

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, Write};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::json;
use sluice::client::{Client, Published, SubscribeOptions};
use sluice::config::Config;
use sluice::protocol::{LogSettings, QueueSettings, Route, Source, Start, Target};
use sluice::server::Server;
use sluice::storage::Record;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Runs a parsed command line.
/// How client commands connect: `--addr`, and TLS when `--tls-ca` is given.
fn connect_options(cli: &Cli) -> Result<sluice::client::ConnectOptions> {
    let mut opts = Client::builder(cli.addr.clone())
        .client_name(format!("sluice-cli {}", env!("CARGO_PKG_VERSION")))
        .retry_deadline(Duration::from_millis(cli.retry_ms))
        .request_timeout(Duration::from_millis(cli.request_timeout_ms.max(1)));
    if let Some(user) = &cli.user {
        use sluice::client::{scram::Mechanism, AuthMechanism, Credentials};
        let mut c = Credentials::new(user.clone(), security::client_password(user)?);
        c.mechanism = match cli.auth_mechanism {
            AuthMechanismArg::ScramSha256 => AuthMechanism::Scram(Mechanism::Sha256),
            AuthMechanismArg::ScramSha512 => AuthMechanism::Scram(Mechanism::Sha512),
            AuthMechanismArg::Plain => AuthMechanism::Plain,
        };
        opts = opts.credentials(c);
    }
    let Some(ca) = &cli.tls_ca else {
        return Ok(opts);
    };
    let identity = cli
        .tls_client_cert
        .as_deref()
        .zip(cli.tls_client_key.as_deref());
    let mut tls =
        sluice::client::ClientTls::from_files(ca, identity).context("cannot set up TLS")?;
    if let Some(n) = &cli.tls_server_name {
        tls = tls.server_name(n.clone());
    }
    Ok(opts.tls(tls))
}

pub fn run(cli: Cli) -> Result<()> {
    let out = Out { json: cli.json };
    match cli.command {
        Command::User(c) if security::user_dir(&c).is_some() => {
            let dir = security::user_dir(&c).cloned().expect("checked");
            security::user_offline(&dir, &out, c)
        }
        Command::Acl(c) if security::acl_dir(&c).is_some() => {
            let dir = security::acl_dir(&c).cloned().expect("checked");
            security::acl_offline(&dir, &out, c)
        }
        command => run_online(Cli { command, ..cli }),
    }
}

fn run_online(cli: Cli) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let connect = connect_options(&cli);
    rt.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve(*args).await,
            Command::Bench(args) => bench::bench(&cli.addr, cli.json, args).await,
            Command::Inspect(_) | Command::Repair(_) => {
                unreachable!("offline commands run without the runtime")
            }
            Command::Cluster(c) => cluster::run(connect?, &Out { json: cli.json }, c).await,
            cmd => {
                let out = Out { json: cli.json };
                let hint = if cli.tls_ca.is_none() {
                    " (if its listeners speak TLS, give --tls-ca)"
                } else {
                    ""
                };
                let client = connect?
                    .connect()
                    .await
                    .with_context(|| format!("cannot reach the server at {}{hint}", cli.addr))?;
                match cmd {
                    Command::Serve(_)
                    | Command::Cluster(_)
                    | Command::Bench(_)
                    | Command::Inspect(_)
                    | Command::Repair(_) => {
                        unreachable!("handled before connecting")
                    }
                    Command::Topic(c) => topic(&client, &out, c).await,
                    Command::Queue(c) => queue(&client, &out, c).await,
                    Command::Publish(a) => publish(&client, &out, a).await,
                    Command::Subscribe(a) => subscribe(&client, &out, a).await,
                    Command::Consume(a) => consume(&client, &out, a).await,
                    Command::User(c) => {
                        security::user(security::Target::Online(&client), &out, c).await
                    }
                    Command::Acl(c) => {
                        security::acl(security::Target::Online(&client), &out, c).await
                    }
                }
            }
        }
    })
}

async fn serve(args: ServeArgs) -> Result<()> {
    let mut config = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if let Some(d) = args.data_dir {
        config.data_dir = d;
    }
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(f) = args.fsync {
        config.log.fsync = f;
    }
    if let Some(l) = args.kafka_listen {
        config.kafka_listen = l;
    }
    if let Some(a) = args.advertised {
        config.advertised = Some(a);
    }
    if let Some(a) = args.kafka_advertised {
        config.kafka_advertised = Some(a);
    }
    if let Some(b) = args.kafka_auto_create_topics {
        config.kafka_auto_create_topics = b;
    }
    if let Some(h) = args.http_listen {
        config.http_listen = h;
    }
    if args.tls_cert.is_some() {
        config.tls_cert = args.tls_cert;
        config.tls_key = args.tls_key;
    }
    if args.tls_client_ca.is_some() {
        config.tls_client_ca = args.tls_client_ca;
    }
    if args.allow_anonymous {
        config.allow_anonymous = true;
    }
    if let (Some(id), Some(spec)) = (args.node_id, &args.cluster) {
        let mut cluster = sluice::cluster::ClusterConfig::parse(id, spec)
            .map_err(|e| anyhow::anyhow!("--cluster: {e}"))?;
        if let Some(uuid) = &args.cluster_id {
            cluster.cluster_id = Some(
                sluice::cluster::config::parse_cluster_id(uuid)
                    .map_err(|e| anyhow::anyhow!("--cluster-id: {e}"))?,
            );
        }
        cluster.join = args.join;
        cluster.listen = args.cluster_listen.clone();
        cluster.heartbeat_ms = args.raft_heartbeat_ms;
        cluster.quiet_ms = args.raft_quiet_ms;
        cluster.leader_balance_ms = args.leader_balance_ms;
        cluster.meta_snapshot_entries = args.meta_snapshot_entries;
        if let (Some(cert), Some(key), Some(ca)) = (
            args.cluster_tls_cert.clone(),
            args.cluster_tls_key.clone(),
            args.cluster_tls_ca.clone(),
        ) {
            cluster.tls = Some(sluice::cluster::tls::ClusterTlsFiles { cert, key, ca });
        }
        config.cluster = Some(cluster);
    }
    let server = Server::bind(config)
        .await
        .context("cannot start the server")?;
    let addr = server.local_addr()?;
    tracing::info!(%addr, "ready");
    println!("listening on {addr}");
    if let Some(kafka) = server.kafka_local_addr() {
        let kafka = kafka?;
        tracing::info!(%kafka, "kafka ready");
        println!("kafka listening on {kafka}");
    }
    if let Some(http) = server.http_local_addr() {
        let http = http?;
        tracing::info!(%http, "http ready");
        println!("http listening on {http}");
    }
    std::io::stdout().flush()?;
    server.run(shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot watch SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
}

/// Output lines: text, or JSON with `--json`.
pub(crate) struct Out {
    json: bool,
}

impl Out {
    pub(crate) fn line(
        &self,
        plain: impl FnOnce() -> String,
        json: impl FnOnce() -> serde_json::Value,
    ) {
        let mut o = std::io::stdout().lock();
        let _ = if self.json {
            writeln!(o, "{}", json())
        } else {
            writeln!(o, "{}", plain())
        };
    }
}

fn flush() {
    let _ = std::io::stdout().flush();
}

async fn topic(c: &Client, out: &Out, cmd: TopicCmd) -> Result<()> {
    match cmd {
        TopicCmd::Create {
            names,
            from_file,
            partitions,
            replicas,
            log,
        } => {
            let names = names::gather(names, from_file.as_deref())?;
            let settings = LogSettings {
                replicas,
                ..log.settings()
            };
            let op = move |c: Client, n: String| {
                let settings = settings.clone();
                async move {
                    c.create_topic_with_partitions(&n, settings, partitions)
                        .await
                }
            };
            names::run_each(c, out, "create topic", names, op, |n| {
                (
                    format!("created topic {n} with {partitions} partition(s)"),
                    json!({"created": n, "partitions": partitions}),
                )
            })
            .await?;
        }
        TopicCmd::Alter { name, partitions } => {
            c.add_partitions(&name, partitions).await?;
            out.line(
                || format!("topic {name} has {partitions} partition(s)"),
                || json!({"altered": name, "partitions": partitions}),
            );
        }
        TopicCmd::List => {
            for n in c.list_topics().await? {
                out.line(|| n.clone(), || json!({"name": n}));
            }
        }
        TopicCmd::Describe { name } => {
            let t = c.describe_topic(&name).await?;
            out.line(
                || describe_text(&t),
                || serde_json::to_value(&t).unwrap_or_default(),
            );
        }
        TopicCmd::Delete { names, from_file } => {
            let names = names::gather(names, from_file.as_deref())?;
            let op = |c: Client, n: String| async move { c.delete_topic(&n).await };
            names::run_each(c, out, "delete topic", names, op, |n| {
                (format!("deleted topic {n}"), json!({"deleted": n}))
            })
            .await?;
        }
    }
    Ok(())
}

async fn queue(c: &Client, out: &Out, cmd: QueueCmd) -> Result<()> {
    match cmd {
        QueueCmd::Create {
            names,
            from_file,
            ack_timeout_ms,
            max_deliveries,
            dead_letter,
            replicas,
            log,
        } => {
            let names = names::gather(names, from_file.as_deref())?;
            let settings = QueueSettings {
                log: LogSettings {
                    replicas,
                    ..log.settings()
                },
                ack_timeout_ms,
                max_deliveries: max_deliveries.map(u64::from),
                dead_letter: dead_letter.clone(),
            };
            let op = move |c: Client, n: String| {
                let settings = settings.clone();
                async move { c.create_queue(&n, settings).await }
            };
            names::run_each(c, out, "create queue", names, op, |n| {
                let dlq = dead_letter.clone().unwrap_or_else(|| format!("{n}.dlq"));
                (
                    format!("created queue {n} (dead letters go to {dlq})"),
                    json!({"created": n, "dead_letter": dlq}),
                )
            })
            .await?;
        }
        QueueCmd::List => {
            for n in c.list_queues().await? {
                out.line(|| n.clone(), || json!({"name": n}));
            }
        }
        QueueCmd::Describe { name } => {
            let q = c.describe_queue(&name).await?;
            out.line(
                || {
                    format!(
                        "queue {}\n  start offset {}\n  end offset {}\n  depth {}\n  in flight {}\n  dead-lettered {} (to {})\n  ack floor {}\n  cursor {}\n  size {} bytes\n  ack timeout {} ms, max deliveries {}",
                        q.name, q.start_offset, q.end_offset, q.depth, q.in_flight, q.dead_lettered,
                        q.dead_letter, q.ack_floor, q.cursor, q.size_bytes, q.ack_timeout_ms, q.max_deliveries
                    )
                },
                || serde_json::to_value(&q).unwrap_or_default(),
            );
        }
        QueueCmd::Delete { names, from_file } => {
            let names = names::gather(names, from_file.as_deref())?;
            let op = |c: Client, n: String| async move { c.delete_queue(&n).await };
            names::run_each(c, out, "delete queue", names, op, |n| {
                (format!("deleted queue {n}"), json!({"deleted": n}))
            })
            .await?;
        }
    }
    Ok(())
}

/// Messages per batch read from stdin.
const STDIN_BATCH: usize = 1000;
/// Batches in flight (pipelined) at once.
const PUBLISH_WINDOW: usize = 8;

fn record(key: &Option<String>, value: Vec<u8>) -> Record {
    Record {
        key: key.as_ref().map(|k| k.as_bytes().to_vec()),
        ..Record::from_value(value)
    }
}

/// The text of `topic describe`.
fn describe_text(t: &sluice::client::TopicInfo) -> String {
    let mut s = format!(
        "topic {}\n  id {}\n  partitions {}",
        t.name,
        t.id,
        t.partitions.len()
    );
    for p in &t.partitions {
        s += &format!(
            "\n  partition {}\n    start offset {}\n    end offset {}\n    size {} bytes in {} segment(s)\n    subscribers {}",
            p.partition, p.start_offset, p.end_offset, p.size_bytes, p.segments, p.subscribers.len()
        );
        for sub in &p.subscribers {
            s += &format!(
                "\n      {} committed {} lag {}",
                sub.name, sub.committed, sub.lag
            );
        }
    }
    s
}

/// Prints the offsets of a published batch: one line each, `<offset>` on partition 0 and
/// `<partition>:<offset>` on another (JSON: `{"partition", "offset"}`).
fn print_offsets(out: &Out, p: &Published) {
    for o in p.base_offset..=p.last_offset {
        out.line(
            || {
                if p.partition == 0 {
                    o.to_string()
                } else {
                    format!("{}:{o}", p.partition)
                }
            },
            || json!({"partition": p.partition, "offset": o}),
        );
    }
    flush();
}

/// Lines of standard input, without their line ends, read by a thread of their own.
fn stdin_lines() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel::<Vec<u8>>(4 * STDIN_BATCH);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        loop {
            let mut line = Vec::new();
            match stdin.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if line.last() == Some(&b'\n') {
                        line.pop();
                        if line.last() == Some(&b'\r') {
                            line.pop();
                        }
                    }
                    if tx.blocking_send(line).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

async fn publish(c: &Client, out: &Out, a: PublishArgs) -> Result<()> {
    let target = Target::Any(a.name.clone());
    if !a.messages.is_empty() {
        let records: Vec<Record> = a
            .messages
            .into_iter()
            .map(|m| record(&a.key, m.into_bytes()))
            .collect();
        for chunk in records.chunks(STDIN_BATCH) {
            let p = match a.partition {
                Some(p) => c.publish_to_partition(&a.name, p, chunk).await,
                None => c.publish_to(target.clone(), chunk).await,
            }
            .with_context(|| format!("cannot publish to {}", a.name))?;
            print_offsets(out, &p);
        }
        return Ok(());
    }
    let route = match a.partition {
        Some(partition) => Route::Partition {
            partition,
            expected_partitions: 0,
        },
        None => Route::Any,
    };
    // stdin: a thread reads lines; batches are whatever arrived, pipelined, printed in order.
    let mut rx = stdin_lines();
    let mut inflight: VecDeque<JoinHandle<Result<Published, sluice::client::ClientError>>> =
        VecDeque::new();
    let mut eof = false;
    loop {
        tokio::select! {
            biased;
            r = async { inflight.front_mut().unwrap().await }, if !inflight.is_empty() => {
                inflight.pop_front();
                let p = r
                    .context("publish task failed")?
                    .with_context(|| format!("cannot publish to {}", a.name))?;
                print_offsets(out, &p);
            }
            line = rx.recv(), if !eof && inflight.len() < PUBLISH_WINDOW => match line {
                None => eof = true,
                Some(l) => {
                    let mut batch = vec![record(&a.key, l)];
                    while batch.len() < STDIN_BATCH {
                        match rx.try_recv() {
                            Ok(l) => batch.push(record(&a.key, l)),
                            Err(_) => break,
                        }
                    }
                    // Sent here, in input order; confirmations are awaited concurrently.
                    let pending = match route {
                        Route::Any => c.send_publish(target.clone(), &batch).await,
                        r => {
                            let b = sluice::storage::format::encode_batch(&batch, sluice::storage::now_ms());
                            c.send_publish_encoded(target.clone(), r, b).await
                        }
                    }
                    .with_context(|| format!("cannot publish to {}", a.name))?;
                    inflight.push_back(tokio::spawn(pending.confirmed()));
                }
            },
            else => break,
        }
    }
    Ok(())
}

fn parse_from(s: &str) -> Result<Start> {
    Ok(match s {
        "earliest" => Start::Earliest,
        "latest" => Start::Latest,
        _ => {
            if let Ok(o) = s.parse::<u64>() {
                Start::Offset(o)
            } else if let Some(t) = text::parse_rfc3339(s) {
                Start::Timestamp(t)
            } else {
                bail!("--from {s:?}: expected earliest, latest, an offset or an RFC 3339 time (2024-05-01T12:00:00Z)")
            }
        }
    })
}

/// Waits for the next item, or `None` after `wait_ms` with nothing.
async fn next_within<T>(
    wait_ms: Option<u64>,
    f: impl std::future::Future<Output = T>,
) -> Option<T> {
    match wait_ms {
        Some(ms) => tokio::time::timeout(Duration::from_millis(ms), f)
            .await
            .ok(),
        None => Some(f.await),
    }
}

fn print_message(out: &Out, (partition, offset): (u32, u64), r: &Record, attempt: Option<u32>) {
    let ts = r.timestamp_ms.unwrap_or(0);
    out.line(
        || String::from_utf8_lossy(&r.value).into_owned(),
        || {
            serde_json::from_str(&text::message_json(
                partition,
                offset,
                ts,
                r.key.as_deref(),
                &r.headers,
                &r.value,
                attempt,
            ))
            .unwrap_or_default()
        },
    );
}

async fn subscribe(c: &Client, out: &Out, a: SubscribeArgs) -> Result<()> {
    let start = match &a.from {
        Some(f) => parse_from(f)?,
        None => Start::Default,
    };
    let credit = a.count.unwrap_or(1000).clamp(1, 1000) as u32;
    let opts = SubscribeOptions {
        name: a.name.clone(),
        partitions: a.partition.clone(),
        start,
        credit,
    };
    let mut sub = c
        .subscribe(&a.topic, opts)
        .await
        .with_context(|| format!("cannot subscribe to {}", a.topic))?;
    let mut seen = 0u64;
    // Per partition: the next offset to read, and whether it is committed.
    let mut next: BTreeMap<u32, (u64, bool)> = BTreeMap::new();
    while !matches!(a.count, Some(n) if seen >= n) {
        let Some(item) = next_within(a.wait_ms, sub.next()).await else {
            break;
        };
        let m = match item {
            Some(m) => m.context("subscription failed")?,
            None => bail!("the server closed the subscription"),
        };
        print_message(out, (m.partition, m.offset), &m.record, None);
        seen += 1;
        next.insert(m.partition, (m.offset + 1, false));
        if sub.buffered() == 0 {
            flush();
            commit_read(&sub, a.name.is_some(), &mut next).await?;
        }
    }
    flush();
    commit_read(&sub, a.name.is_some(), &mut next).await
}

/// Commits, for a named subscriber, the next offset of every partition read since the last
/// commit.
async fn commit_read(
    sub: &sluice::client::Subscription,
    named: bool,
    next: &mut BTreeMap<u32, (u64, bool)>,
) -> Result<()> {
    if !named {
        return Ok(());
    }
    for (p, (n, done)) in next.iter_mut() {
        if !*done {
            sub.commit(*p, *n).await.context("commit failed")?;
            *done = true;
        }
    }
    Ok(())
}

async fn consume(c: &Client, out: &Out, a: ConsumeArgs) -> Result<()> {
    let source = match &a.group {
        Some(g) => Source::Group {
            topic: a.name.clone(),
            group: g.clone(),
        },
        None => Source::Queue(a.name.clone()),
    };
    let prefetch = a.count.unwrap_or(100).clamp(1, 100) as u32;
    let mut consumer = c
        .consume(source, prefetch)
        .await
        .with_context(|| format!("cannot consume {}", a.name))?;
    let acker = consumer.acker();
    let mut seen = 0u64;
    let mut to_ack = Vec::new();
    while !matches!(a.count, Some(n) if seen >= n) {
        let Some(item) = next_within(a.wait_ms, consumer.next()).await else {
            break;
        };
        let d = match item {
            Some(d) => d.context("consumer failed")?,
            None => bail!("the server closed the consumer"),
        };
        print_message(out, d.id(), &d.record, Some(d.attempt));
        seen += 1;
        if !a.no_ack {
            to_ack.push(d.id());
        }
        if consumer.buffered() == 0 {
            flush();
            if !to_ack.is_empty() {
                acker.ack(&to_ack).await.context("ack failed")?;
                to_ack.clear();
            }
        }
    }
    flush();
    if !to_ack.is_empty() {
        acker.ack(&to_ack).await.context("ack failed")?;
    }
    Ok(())
}
