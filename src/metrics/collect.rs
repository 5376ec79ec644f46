//! The scrape: a snapshot of the counters and of the store's figures, encoded in the Prometheus
//! (OpenMetrics) text format by the Prometheus project's client. Blocking: it reads the figures
//! of every open topic and queue, `statvfs` of the data directory and `/proc/self/fd`.

use std::path::Path;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use sluice_storage::fs::{SyncStats, ROUND_FILES_BOUNDS, ROUND_US_BOUNDS};
use sluice_storage::{OpenStats, QueueStats, TopicStats};

use super::{native_request_name, Metrics, Protocol, ERROR_CODES_MAX, REQUEST_KINDS_MAX};
use crate::broker::Broker;
use crate::protocol::ErrorCode;

/// The Prometheus text of everything (`GET /metrics`).
pub fn render(broker: &Broker) -> String {
    let store = broker.store();
    let scrape = Scrape {
        counters: Counters::of(broker.metrics()),
        open: store.open_stats(),
        sync: store.sync_stats(),
        topics: store
            .open_topics()
            .iter()
            .map(|t| (t.name().to_string(), t.stats()))
            .collect(),
        queues: store.open_queues().iter().map(|q| queue_row(q)).collect(),
        groups: store
            .open_topics()
            .iter()
            .flat_map(|t| group_rows(t))
            .collect(),
        now_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64),
        disk: disk_space(store.root()),
        fds: open_fds(),
    };
    let mut registry = Registry::with_prefix("sluice");
    registry.register_collector(Box::new(scrape));
    if let Some(c) = broker.cluster() {
        registry.register_collector(Box::new(super::cluster::ClusterScrape::of(c)));
    }
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)
        .expect("writing to a String cannot fail");
    out
}

/// An open queue's row: its name, stats and oldest unacknowledged message's timestamp.
fn queue_row(q: &sluice_storage::Queue) -> (String, QueueStats, Option<i64>) {
    let s = q.stats();
    let oldest = crate::broker::oldest_unacked_ms(q, &s).unwrap_or(None);
    (q.name().to_string(), s, oldest)
}

/// The rows of an open topic's consumer groups: topic, group, partition, stats.
fn group_rows(t: &sluice_storage::Topic) -> Vec<(String, String, u32, QueueStats)> {
    let mut out = Vec::new();
    for g in t.list_groups() {
        if let Some(group) = t.existing_group(&g) {
            for (p, q) in group.partitions().iter().enumerate() {
                out.push((t.name().to_string(), g.clone(), p as u32, q.stats()));
            }
        }
    }
    out
}

/// The counters of [`Metrics`], copied.
#[derive(Debug)]
struct Counters {
    connections_open: [i64; 3],
    connections_accepted: [u64; 3],
    connections_refused: [u64; 3],
    tls_failures: [u64; 3],
    auth_failures: [u64; 3],
    denials: [u64; 3],
    throttled_us: [u64; 2],
    bytes_received: [u64; 3],
    bytes_sent: [u64; 3],
    requests: Vec<(Protocol, String, u64)>,
    errors: Vec<(Protocol, String, u64)>,
}

impl Counters {
    fn of(m: &Metrics) -> Counters {
        let load =
            |a: &[std::sync::atomic::AtomicU64; 3]| a.each_ref().map(|c| c.load(Ordering::Relaxed));
        let mut requests = Vec::new();
        let mut errors = Vec::new();
        for p in Protocol::ALL {
            for k in 0..REQUEST_KINDS_MAX {
                let n = m.requests[p as usize][k].load(Ordering::Relaxed);
                if n > 0 {
                    requests.push((p, request_name(p, k), n));
                }
            }
            for c in 0..ERROR_CODES_MAX {
                let n = m.errors[p as usize][c].load(Ordering::Relaxed);
                if n > 0 {
                    errors.push((p, error_name(p, c), n));
                }
            }
        }
        Counters {
            connections_open: m
                .connections_open
                .each_ref()
                .map(|c| c.load(Ordering::Relaxed)),
            connections_accepted: load(&m.connections_accepted),
            connections_refused: load(&m.connections_refused),
            tls_failures: load(&m.tls_failures),
            auth_failures: load(&m.auth_failures),
            denials: load(&m.denials),
            throttled_us: m.throttled_us.each_ref().map(|c| c.load(Ordering::Relaxed)),
            bytes_received: load(&m.bytes_received),
            bytes_sent: load(&m.bytes_sent),
            requests,
            errors,
        }
    }
}

/// A request kind's label: the native kind's name, the Kafka API's name (`Produce`), or the
/// number when unknown.
fn request_name(p: Protocol, k: usize) -> String {
    let known = match p {
        Protocol::Native => u8::try_from(k)
            .ok()
            .and_then(native_request_name)
            .map(str::to_string),
        Protocol::Kafka => i16::try_from(k)
            .ok()
            .and_then(|k| kafka_protocol::messages::ApiKey::try_from(k).ok())
            .map(|a| format!("{a:?}")),
        Protocol::Http => match k {
            crate::server::http::kind::METRICS => Some("metrics".to_string()),
            crate::server::http::kind::NOT_FOUND => Some("not_found".to_string()),
            crate::server::http::kind::ADMIN => Some("admin".to_string()),
            crate::server::http::kind::CONSOLE => Some("console".to_string()),
            _ => None,
        },
    };
    known.unwrap_or_else(|| k.to_string())
}

/// An error code's label: the native code's name, or the Kafka code's number.
fn error_name(p: Protocol, c: usize) -> String {
    match p {
        Protocol::Native => format!("{:?}", ErrorCode::from_u16(c as u16)),
        Protocol::Kafka if c == super::KAFKA_FATAL => "connection_closed".to_string(),
        Protocol::Kafka if c == crate::server::kafka::UNKNOWN_SERVER_ERROR => {
            "UnknownServerError".to_string()
        }
        Protocol::Kafka => kafka_protocol::ResponseError::try_from_code(c as i16)
            .map_or_else(|| c.to_string(), |e| format!("{e:?}")),
        Protocol::Http => (c + crate::server::http::HTTP_ERROR_BASE).to_string(),
    }
}

/// Free and total bytes of the data directory's file system.
pub(crate) fn disk_space(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct we own; `path` is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let frsize = st.f_frsize as u64;
    Some((st.f_bavail as u64 * frsize, st.f_blocks as u64 * frsize))
}

/// Descriptors the process holds.
fn open_fds() -> Option<u64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as u64)
}

/// Everything one scrape shows.
#[derive(Debug)]
struct Scrape {
    counters: Counters,
    open: OpenStats,
    sync: Option<SyncStats>,
    topics: Vec<(String, TopicStats)>,
    queues: Vec<(String, QueueStats, Option<i64>)>,
    groups: Vec<(String, String, u32, QueueStats)>,
    now_ms: i64,
    disk: Option<(u64, u64)>,
    fds: Option<u64>,
}

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.encode_broker(&mut e)?;
        self.encode_store(&mut e)?;
        self.encode_topics(&mut e)?;
        self.encode_queues(&mut e)?;
        self.encode_groups(&mut e)
    }
}

/// Writes one family: its descriptor and a sample per row.
pub(super) fn family<L: EncodeLabelSet, V: Copy + Into<f64>>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    rows: impl IntoIterator<Item = (L, V)>,
) -> Result<(), std::fmt::Error> {
    let mut m = e.encode_descriptor(name, help, None, kind)?;
    for (labels, v) in rows {
        let mut f = m.encode_family(&labels)?;
        let v: f64 = v.into();
        match kind {
            MetricType::Counter => f.encode_counter::<NoLabelSet, _, f64>(&v, None)?,
            _ => f.encode_gauge(&v)?,
        }
    }
    Ok(())
}

/// One sample without labels.
pub(super) fn single(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    v: f64,
) -> Result<(), std::fmt::Error> {
    let mut m = e.encode_descriptor(name, help, None, kind)?;
    match kind {
        MetricType::Counter => m.encode_counter::<NoLabelSet, _, f64>(&v, None),
        _ => m.encode_gauge(&v),
    }
}

fn per_protocol<T: Copy>(
    values: [T; 3],
) -> impl Iterator<Item = ([(&'static str, &'static str); 1], T)> {
    Protocol::ALL
        .into_iter()
        .map(move |p| ([("protocol", p.name())], values[p as usize]))
}

/// Histogram buckets: each bound divided by `divisor` (µs to seconds), then +Inf.
fn bucketed(bounds: &[u64], counts: &[u64], divisor: f64) -> Vec<(f64, u64)> {
    counts
        .iter()
        .enumerate()
        .map(|(i, c)| (bounds.get(i).map_or(f64::MAX, |b| *b as f64 / divisor), *c))
        .collect()
}

impl Scrape {
    fn encode_broker(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use MetricType::{Counter, Gauge};
        let c = &self.counters;
        let open = c.connections_open.map(|v| v as f64);
        family(
            e,
            "connections",
            "Open client connections.",
            Gauge,
            per_protocol(open),
        )?;
        let accepted = c.connections_accepted.map(|v| v as f64);
        family(
            e,
            "connections_accepted",
            "Client connections accepted.",
            Counter,
            per_protocol(accepted),
        )?;
        let refused = c.connections_refused.map(|v| v as f64);
        family(
            e,
            "connections_refused",
            "Client connections refused at connections_max.",
            Counter,
            per_protocol(refused),
        )?;
        let tls = c.tls_failures.map(|v| v as f64);
        family(
            e,
            "tls_handshake_failures",
            "Client connections closed because their TLS handshake failed.",
            Counter,
            per_protocol(tls),
        )?;
        let auth = c.auth_failures.map(|v| v as f64);
        family(
            e,
            "auth_failures",
            "Failed authentications: wrong password, unknown or expired user, a user at its connection quota.",
            Counter,
            per_protocol(auth),
        )?;
        let denied = c.denials.map(|v| v as f64);
        family(
            e,
            "authorization_denials",
            "Requests refused by access control.",
            Counter,
            per_protocol(denied),
        )?;
        let [produce, fetch] = c.throttled_us.map(|v| v as f64 / 1e6);
        family(
            e,
            "quota_throttle_seconds",
            "Time clients were delayed by their users' byte-rate quotas.",
            Counter,
            [
                ([("direction", "produce")], produce),
                ([("direction", "fetch")], fetch),
            ],
        )?;
        let rx = c.bytes_received.map(|v| v as f64);
        family(
            e,
            "received_bytes",
            "Bytes read from clients.",
            Counter,
            per_protocol(rx),
        )?;
        let tx = c.bytes_sent.map(|v| v as f64);
        family(
            e,
            "sent_bytes",
            "Bytes written to clients.",
            Counter,
            per_protocol(tx),
        )?;
        let requests = c
            .requests
            .iter()
            .map(|(p, k, n)| ([("protocol", p.name()), ("request", k.as_str())], *n as f64));
        family(
            e,
            "requests",
            "Requests received, by protocol and kind.",
            Counter,
            requests,
        )?;
        let errors = c
            .errors
            .iter()
            .map(|(p, k, n)| ([("protocol", p.name()), ("code", k.as_str())], *n as f64));
        family(
            e,
            "errors",
            "Error replies and refused frames, by protocol and error code.",
            Counter,
            errors,
        )
    }

    fn encode_store(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use MetricType::{Counter, Gauge};
        let o = &self.open;
        let kinds = [
            ("topic", o.topics, o.topics_open),
            ("queue", o.queues, o.queues_open),
        ];
        family(
            e,
            "logs",
            "Topics and queues in the data directory.",
            Gauge,
            kinds.map(|(k, n, _)| ([("kind", k)], n as f64)),
        )?;
        family(
            e,
            "logs_open",
            "Topics and queues open now (closed ones cost no file).",
            Gauge,
            kinds.map(|(k, _, n)| ([("kind", k)], n as f64)),
        )?;
        single(
            e,
            "log_files_open",
            "Files the open topics and queues hold.",
            Gauge,
            o.files as f64,
        )?;
        single(
            e,
            "log_files_budget",
            "Most files open topics and queues may hold (open_files_max).",
            Gauge,
            o.files_budget as f64,
        )?;
        if let Some(n) = self.fds {
            single(
                e,
                "process_open_fds",
                "File descriptors the process holds.",
                Gauge,
                n as f64,
            )?;
        }
        if let Some((free, total)) = self.disk {
            single(
                e,
                "data_dir_free_bytes",
                "Bytes available to the broker on the data directory's file system.",
                Gauge,
                free as f64,
            )?;
            single(
                e,
                "data_dir_size_bytes",
                "Size of the data directory's file system.",
                Gauge,
                total as f64,
            )?;
        }
        let Some(s) = &self.sync else { return Ok(()) };
        single(
            e,
            "syncs",
            "Sync rounds: one fdatasync or one sync of the file system each.",
            Counter,
            s.rounds as f64,
        )?;
        single(
            e,
            "file_system_syncs",
            "Sync rounds that synced the whole file system (syncfs).",
            Counter,
            s.file_system_syncs as f64,
        )?;
        single(
            e,
            "sync_requests",
            "File syncs asked for; sync_requests / syncs is the mean group size.",
            Counter,
            s.requests as f64,
        )?;
        let mut m = e.encode_descriptor(
            "sync_duration_seconds",
            "Time of a sync round.",
            None,
            MetricType::Histogram,
        )?;
        let buckets = bucketed(&ROUND_US_BOUNDS, &s.round_us_buckets, 1e6);
        m.encode_histogram::<NoLabelSet>(s.round_us_total as f64 / 1e6, s.rounds, &buckets, None)?;
        let mut m = e.encode_descriptor(
            "sync_group_size",
            "Sync requests served by one round (group commit).",
            None,
            MetricType::Histogram,
        )?;
        let buckets = bucketed(&ROUND_FILES_BOUNDS, &s.round_files_buckets, 1.0);
        m.encode_histogram::<NoLabelSet>(s.requests as f64, s.rounds, &buckets, None)
    }

    fn encode_topics(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use MetricType::{Counter, Gauge};
        let parts: Vec<_> = self
            .topics
            .iter()
            .flat_map(|(t, s)| s.partitions.iter().map(move |p| (t.as_str(), p)))
            .collect();
        let labels = |t: &str, p: u32| vec![("topic", t.to_string()), ("partition", p.to_string())];
        let rows = |f: &dyn Fn(&sluice_storage::PartitionStats) -> u64| {
            parts
                .iter()
                .map(|(t, p)| (labels(t, p.partition), f(p) as f64))
                .collect::<Vec<_>>()
        };
        family(
            e,
            "topic_start_offset",
            "First offset a topic partition holds (open topics).",
            Gauge,
            rows(&|p| p.start_offset.0),
        )?;
        family(e, "topic_end_offset", "One past the last visible offset: messages published ever (rate() of it is the publish rate).", Counter, rows(&|p| p.end_offset.0))?;
        family(
            e,
            "topic_size_bytes",
            "Bytes a topic partition holds on disk.",
            Gauge,
            rows(&|p| p.size_bytes),
        )?;
        family(
            e,
            "topic_segments",
            "Segments of a topic partition.",
            Gauge,
            rows(&|p| p.segments as u64),
        )?;
        let subs: Vec<_> = parts
            .iter()
            .flat_map(|(t, p)| p.subscribers.iter().map(move |s| (*t, p.partition, s)))
            .collect();
        let sub_labels = |t: &str, p: u32, s: &str| {
            vec![
                ("topic", t.to_string()),
                ("partition", p.to_string()),
                ("subscriber", s.to_string()),
            ]
        };
        let committed = subs
            .iter()
            .map(|(t, p, s)| (sub_labels(t, *p, &s.name), s.committed.0 as f64));
        family(
            e,
            "subscriber_committed_offset",
            "Next offset a named subscriber or Kafka group reads on a partition.",
            Gauge,
            committed,
        )?;
        let lag = subs
            .iter()
            .map(|(t, p, s)| (sub_labels(t, *p, &s.name), s.lag as f64));
        family(
            e,
            "subscriber_lag",
            "Messages a named subscriber or Kafka group has not committed yet.",
            Gauge,
            lag,
        )
    }

    fn encode_queues(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use MetricType::{Counter, Gauge};
        let rows = |f: &dyn Fn(&QueueStats) -> u64| {
            self.queues
                .iter()
                .map(|(q, s, _)| ([("queue", q.as_str())], f(s) as f64))
                .collect::<Vec<_>>()
        };
        family(
            e,
            "queue_ready",
            "Messages of a queue waiting to be delivered now: not acked, not in flight, not delayed (open queues).",
            Gauge,
            rows(&|s| s.depth.saturating_sub(s.in_flight + s.delayed)),
        )?;
        family(
            e,
            "queue_in_flight",
            "Messages delivered and not yet acked.",
            Gauge,
            rows(&|s| s.in_flight),
        )?;
        family(
            e,
            "queue_redelivery_ready",
            "Messages returned (nack, expiry, consumer gone) and waiting to be delivered again.",
            Gauge,
            rows(&|s| s.redelivery_ready),
        )?;
        family(
            e,
            "queue_delayed",
            "Messages nacked with a delay, waiting it out.",
            Gauge,
            rows(&|s| s.delayed),
        )?;
        family(
            e,
            "queue_acked",
            "Messages acked ever (every offset below the ack floor, and those acked above it).",
            Counter,
            rows(&|s| s.ack_floor.0 + s.acked_above_floor),
        )?;
        family(
            e,
            "queue_dead_lettered",
            "Messages moved to the dead-letter queue.",
            Counter,
            rows(&|s| s.dead_lettered),
        )?;
        family(
            e,
            "queue_published",
            "One past the last visible offset: messages published ever.",
            Counter,
            rows(&|s| s.end_offset.0),
        )?;
        family(
            e,
            "queue_consumers",
            "Consumers holding at least one message.",
            Gauge,
            rows(&|s| s.consumers_holding),
        )?;
        family(
            e,
            "queue_redelivered",
            "Deliveries of a message delivered before (since the queue was opened).",
            Counter,
            rows(&|s| s.redelivered),
        )?;
        let now = self.now_ms;
        let age = self.queues.iter().map(|(q, _, oldest)| {
            let ms = oldest.map_or(0, |t| now.saturating_sub(t).max(0));
            ([("queue", q.as_str())], ms as f64 / 1000.0)
        });
        family(
            e,
            "queue_oldest_unacked_age_seconds",
            "Age of the oldest message not yet acked, by its timestamp (0 when none).",
            Gauge,
            age,
        )?;
        family(
            e,
            "queue_size_bytes",
            "Bytes a queue's log holds on disk.",
            Gauge,
            rows(&|s| s.size_bytes),
        )
    }

    /// The consumer groups of open topics, per partition.
    fn encode_groups(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use MetricType::{Counter, Gauge};
        let rows = |f: &dyn Fn(&QueueStats) -> u64| {
            self.groups
                .iter()
                .map(|(t, g, p, s)| {
                    let l = vec![
                        ("topic", t.clone()),
                        ("group", g.clone()),
                        ("partition", p.to_string()),
                    ];
                    (l, f(s) as f64)
                })
                .collect::<Vec<_>>()
        };
        family(
            e,
            "group_ready",
            "Messages of a topic's consumer group waiting to be delivered now, per partition.",
            Gauge,
            rows(&|s| s.depth.saturating_sub(s.in_flight + s.delayed)),
        )?;
        family(
            e,
            "group_in_flight",
            "Messages of a consumer group delivered and not yet acked.",
            Gauge,
            rows(&|s| s.in_flight),
        )?;
        family(
            e,
            "group_acked",
            "Messages a consumer group acked ever.",
            Counter,
            rows(&|s| s.ack_floor.0 + s.acked_above_floor),
        )?;
        family(
            e,
            "group_redelivered",
            "Deliveries of a message delivered before (since the group was opened).",
            Counter,
            rows(&|s| s.redelivered),
        )?;
        family(
            e,
            "group_dead_lettered",
            "Messages a consumer group moved to its dead-letter queue.",
            Counter,
            rows(&|s| s.dead_lettered),
        )
    }
}
