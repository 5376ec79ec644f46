//! The state of a topic or queue beside its log: where it lives, its `config`, the files none of
//! the readers handles, and [`read_log_state`], which gathers it for a log directory.

use super::*;

// Topic and queue state files
//
// In a data directory a topic or queue keeps its log in `<root>/{topics,queues}/<name>/log/` and
// its state beside it (`docs/format-state.md`): `config`, `offsets.snapshot` and
// `offsets.<gen>.journal` (topic subscribers), `acks.snapshot` and `acks.<gen>.journal` (queue
// ack state), `groups/<group>/{config,acks.*}` (consumer groups of a topic). `read_log_state`
// decodes them read-only, the way recovery does, and reports every checksum or consistency
// failure with the file, the byte position and what recovery will do about it.
// ---------------------------------------------------------------------------------------------

/// Kind, name and state directory of a log directory: `<root>/topics/<name>/log` (or `log-<n>`,
/// partition n) is topic `<name>` with its state in `<root>/topics/<name>`; a log directory directly in `topics/` or
/// `queues/` keeps its state files beside its segments; anything else is a bare `log`.
pub(super) fn layout(dir: &Path) -> (&'static str, String, PathBuf) {
    let file_name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let kind_of = |p: Option<&Path>| match p.and_then(|p| p.file_name()).and_then(|n| n.to_str()) {
        Some("topics") => Some("topic"),
        Some("queues") => Some("queue"),
        _ => None,
    };
    let parent = dir.parent();
    if crate::store::partition_of(&file_name(dir), crate::store::PARTITION_LOG_PREFIX).is_some() {
        if let (Some(p), Some(kind)) = (parent, kind_of(parent.and_then(|p| p.parent()))) {
            return (kind, file_name(p), p.to_path_buf());
        }
    }
    match kind_of(parent) {
        Some(kind) => (kind, file_name(dir), dir.to_path_buf()),
        None => ("log", file_name(dir), dir.to_path_buf()),
    }
}

/// The partition of a topic a log directory holds: `n` for `<root>/topics/<name>/log-<n>`, 0
/// for anything else (`log`, a queue's, a bare log).
pub(super) fn dir_partition(dir: &Path) -> u32 {
    let (kind, _, state_dir) = layout(dir);
    if kind != "topic" || state_dir == dir {
        return 0;
    }
    dir.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| crate::store::partition_of(n, crate::store::PARTITION_LOG_PREFIX))
        .unwrap_or(0)
}

/// Generation in a journal file name `<prefix>.<16 hex>.journal`.
pub(super) fn journal_generation(name: &str, prefix: &str) -> Option<u64> {
    let hex = name
        .strip_prefix(prefix)?
        .strip_prefix('.')?
        .strip_suffix(".journal")?;
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// File names of a state directory that [`read_log_state`] reads.
pub fn is_known_state_file(name: &str) -> bool {
    use crate::ackstate::ACK_PREFIX;
    use crate::offsets::OFFSETS_PREFIX;
    name == crate::store::CONFIG_FILE
        || name == crate::store::GROUPS_DIR
        || [ACK_PREFIX, OFFSETS_PREFIX]
            .iter()
            .any(|p| name == format!("{p}.snapshot") || journal_generation(name, p).is_some())
}

pub(super) fn problem_item(
    severity: Severity,
    file: &Path,
    position: Option<u64>,
    what: String,
) -> Item {
    Item::Problem(Problem {
        severity,
        file: file.to_path_buf(),
        position,
        what,
    })
}

pub(super) fn state_item(
    file: &Path,
    kind: &str,
    size: u64,
    fields: Vec<(String, Field)>,
    valid: Option<bool>,
) -> Item {
    Item::State(StateFileReport {
        file: file.to_path_buf(),
        kind: kind.into(),
        size_bytes: size,
        fields,
        valid,
    })
}

pub(super) fn uint(k: &str, v: u64) -> (String, Field) {
    (k.into(), Field::UInt(v))
}

/// A decoded config file (a topic config written before partitions reads as one partition with
/// the nil id).
pub(super) enum ConfigFile {
    Topic(crate::store::TopicConfig),
    Queue(crate::store::QueueConfig),
}

/// Reads the `config` file of a topic (`want` = [`crate::store::KIND_TOPIC`]), queue or group
/// (`KIND_QUEUE`); `None` when it is unreadable (reported in `out`).
///
/// Long because it is one decode of the config file followed by the report of its fields,
/// which are many; each step is a few lines.
pub(super) fn read_config_file(
    fs: &dyn FileSystem,
    path: &Path,
    want: Option<u64>,
    out: &mut Vec<Item>,
) -> Result<Option<ConfigFile>> {
    use crate::store::{TopicConfig, TopicId, CONFIG_MAGIC, KIND_QUEUE, KIND_TOPIC, KIND_TOPIC_V2};
    let bytes = crate::fs::read_all(fs, path).at(path)?;
    let size = bytes.len() as u64;
    let fail = |out: &mut Vec<Item>, at: u64, what: String| {
        out.push(state_item(path, "config", size, vec![], Some(false)));
        out.push(problem_item(
            Severity::Error,
            path,
            Some(at),
            format!("{what}: the broker refuses to start until the file is restored"),
        ));
    };
    let (kind, body) = match crate::journal::decode_snapshot(&bytes, CONFIG_MAGIC) {
        Ok(x) => x,
        Err(reason) => {
            // Same layout as a snapshot: say which file it is.
            let at = reason.position();
            let reason = reason.to_string().replace("snapshot", "config");
            fail(out, at, format!("invalid config file: {reason}"));
            return Ok(None);
        }
    };
    let name = |k: u64| match k {
        KIND_TOPIC | KIND_TOPIC_V2 => "topic",
        KIND_QUEUE => "queue or group",
        _ => "unknown",
    };
    let same = |w: u64| w == kind || (w == KIND_TOPIC && kind == KIND_TOPIC_V2);
    if let Some(w) = want.filter(|w| !same(*w)) {
        fail(
            out,
            12,
            format!(
                "config kind {kind} ({}), expected {w} ({})",
                name(kind),
                name(w)
            ),
        );
        return Ok(None);
    }
    let body_at = crate::journal::SNAPSHOT_HEADER_LEN as u64;
    let cfg = match kind {
        KIND_TOPIC => postcard::from_bytes::<LogConfig>(body).map(|log| {
            ConfigFile::Topic(TopicConfig {
                log,
                partitions: 1,
                id: TopicId([0; 16]),
            })
        }),
        KIND_TOPIC_V2 => postcard::from_bytes::<TopicConfig>(body).map(ConfigFile::Topic),
        KIND_QUEUE => {
            postcard::from_bytes::<crate::store::QueueConfig>(body).map(ConfigFile::Queue)
        }
        k => {
            fail(out, 12, format!("unknown config kind {k}"));
            return Ok(None);
        }
    };
    let cfg = match cfg {
        Ok(c) => c,
        Err(e) => {
            fail(out, body_at, format!("config body: {e}"));
            return Ok(None);
        }
    };
    let log = match &cfg {
        ConfigFile::Topic(t) => &t.log,
        ConfigFile::Queue(q) => &q.log,
    };
    let mut fields = vec![(
        "kind".to_string(),
        Field::Text(match &cfg {
            ConfigFile::Topic(_) => "topic".into(),
            ConfigFile::Queue(_) => "queue".into(),
        }),
    )];
    if let Some(b) = log.retention_bytes {
        fields.push(uint("retention_bytes", b));
    }
    if let Some(ms) = log.retention_ms {
        fields.push(uint("retention_ms", ms));
    }
    fields.push(uint("segment_bytes_max", log.segment_bytes_max));
    fields.push(("fsync".into(), Field::Text(log.fsync.to_string())));
    if let ConfigFile::Topic(t) = &cfg {
        fields.push(uint("partitions", t.partitions as u64));
        if !t.id.is_nil() {
            fields.push(("id".into(), Field::Text(t.id.to_string())));
        }
    }
    if let ConfigFile::Queue(q) = &cfg {
        fields.push(uint("ack_timeout_ms", q.ack_timeout_ms));
        fields.push(uint("max_deliveries", q.max_deliveries as u64));
        if let Some(d) = &q.dead_letter {
            fields.push(("dead_letter".into(), Field::Text(d.clone())));
        }
        fields.push(uint("max_unacked", q.max_unacked as u64));
        fields.push(uint(
            "max_unacked_per_consumer",
            q.max_unacked_per_consumer as u64,
        ));
    }
    out.push(state_item(path, "config", size, fields, Some(true)));
    Ok(Some(cfg))
}

/// Files of a state directory that none of the readers handles: temporaries (warned) and
/// unknown files (listed). `rel` prefixes the names listed as unknown.
pub(super) fn other_state_files(
    fs: &dyn FileSystem,
    dir: &Path,
    names: &[String],
    rel: &str,
    skip: &[&str],
    report: &mut LogDirReport,
    out: &mut Vec<Item>,
) -> Result<()> {
    for n in names {
        if is_known_state_file(n) || skip.contains(&n.as_str()) {
            continue;
        }
        let p = dir.join(n);
        let is_dir = fs.is_dir(&p);
        let size = if is_dir { 0 } else { file_len(fs, &p)? };
        if n.ends_with(".tmp") {
            out.push(state_item(&p, "temporary", size, vec![], None));
            out.push(problem_item(
                Severity::Warning,
                &p,
                None,
                "leftover temporary file of an interrupted atomic write (the file it was to replace is intact)".into(),
            ));
        } else {
            out.push(state_item(
                &p,
                if is_dir { "directory" } else { "unknown" },
                size,
                vec![],
                None,
            ));
            report.unknown_files.push(UnknownFile {
                name: format!("{rel}{n}"),
                size_bytes: size,
            });
        }
    }
    Ok(())
}

/// Reads the topic or queue state files of a log directory (see the section comment above) into
/// `report`: retention from `config`, subscribers with their lag, the queue's ack state, and the
/// topic's consumer groups. Pushes a [`Item::State`] per file and a [`Item::Problem`] per
/// failure (file, byte position, what) into `out`. Reads only.
///
/// Long because it visits each kind of state file in turn (config, offsets, acks, each
/// consumer group, the others); each visit is a call of a few lines.
pub fn read_log_state(
    fs: &dyn FileSystem,
    report: &mut LogDirReport,
    out: &mut Vec<Item>,
) -> Result<()> {
    use crate::store::{CONFIG_FILE, GROUPS_DIR, KIND_QUEUE, KIND_TOPIC};
    let sdir = report.state_dir.clone();
    let store_layout = sdir != report.dir;
    let names = fs.read_dir(&sdir).at(&sdir)?;
    let end = report.end_offset;
    let start = report.start_offset.unwrap_or_default();
    // The files a topic's partitions share are reported with partition 0 only.
    let p = report.partition;
    let mut shared = Vec::new();
    let want = match report.kind.as_str() {
        "topic" => Some(KIND_TOPIC),
        "queue" => Some(KIND_QUEUE),
        _ => None,
    };
    let cfg_path = sdir.join(CONFIG_FILE);
    if names.iter().any(|n| n == CONFIG_FILE) {
        let file_out = if p == 0 { &mut *out } else { &mut shared };
        if let Some(c) = read_config_file(fs, &cfg_path, want, file_out)? {
            let log = match &c {
                ConfigFile::Topic(t) => &t.log,
                ConfigFile::Queue(q) => &q.log,
            };
            report.retention = Some(Retention {
                retention_bytes: log.retention_bytes,
                retention_ms: log.retention_ms,
            });
        }
    } else if store_layout && p == 0 {
        out.push(problem_item(
            Severity::Warning,
            &cfg_path,
            None,
            "missing: the broker takes the directory for an unfinished creation and removes it at the next open".into(),
        ));
    }
    let mut offsets_out = Vec::new();
    report.subscribers = read_offsets(fs, &sdir, &names, (p, end), &mut offsets_out, out)?;
    if p == 0 {
        out.extend(offsets_out);
        report.queue = read_acks(fs, &sdir, &names, start, end, out)?;
    }
    let gdir = sdir.join(GROUPS_DIR);
    if names.iter().any(|n| n == GROUPS_DIR) && fs.is_dir(&gdir) {
        for g in fs.read_dir(&gdir).at(&gdir)? {
            let d = gdir.join(&g);
            if !fs.is_dir(&d) {
                continue;
            }
            let gnames = fs.read_dir(&d).at(&d)?;
            let mut max_deliveries = None;
            if gnames.iter().any(|n| n == CONFIG_FILE) {
                let file_out = if p == 0 { &mut *out } else { &mut shared };
                if let Some(ConfigFile::Queue(q)) =
                    read_config_file(fs, &d.join(CONFIG_FILE), Some(KIND_QUEUE), file_out)?
                {
                    max_deliveries = Some(q.max_deliveries);
                }
            } else if p == 0 {
                out.push(problem_item(
                    Severity::Warning,
                    &d.join(CONFIG_FILE),
                    None,
                    "missing: the broker takes the group for an unfinished creation and removes it at the next open".into(),
                ));
            }
            // A group's ack state over this partition: it starts at the log start like a queue.
            let qd = crate::store::group_partition_dir(&d, p);
            let state = if qd == d {
                read_acks(fs, &d, &gnames, start, end, out)?
            } else if fs.is_dir(&qd) {
                let qnames = fs.read_dir(&qd).at(&qd)?;
                read_acks(fs, &qd, &qnames, start, end, out)?
            } else {
                None
            };
            if p == 0 {
                let parts: Vec<&str> = gnames
                    .iter()
                    .filter(|n| {
                        crate::store::partition_of(n, crate::store::GROUP_PARTITION_PREFIX)
                            .is_some()
                    })
                    .map(|n| n.as_str())
                    .collect();
                other_state_files(
                    fs,
                    &d,
                    &gnames,
                    &format!("{GROUPS_DIR}/{g}/"),
                    &parts,
                    report,
                    out,
                )?;
            }
            report.groups.push(GroupState {
                name: g,
                dir: qd,
                max_deliveries,
                state,
            });
        }
    }
    if store_layout && p == 0 {
        let logs: Vec<&str> = names
            .iter()
            .filter(|n| crate::store::partition_of(n, crate::store::PARTITION_LOG_PREFIX).is_some())
            .map(|n| n.as_str())
            .collect();
        other_state_files(fs, &sdir, &names, "", &logs, report, out)?;
    }
    Ok(())
}
