//! `sluice inspect` and `sluice repair`: rendering of the storage engine's inspection reports
//! (`sluice_storage::inspect`) as lines for people or JSON lines for programs.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sluice_storage::inspect::{
    self, Item, LockStatus, RepairAction, RepairPlan, Severity, Summary, Visitor,
};
use sluice_storage::{StdFs, TimestampMs};

/// Inspect a data directory, a topic or queue directory, or one segment, index or state file.
/// Reads only; works while a broker runs.
#[derive(clap::Args, Debug, Clone)]
pub struct InspectArgs {
    /// A data directory, a topic or queue directory, or a `.log`, `.index`, `.timeindex`,
    /// `recovery-point`, `clean-shutdown`, `config`, `*.snapshot` or `*.journal` file.
    pub path: PathBuf,
    /// List every batch also when inspecting a directory (always on for a segment file).
    #[arg(long)]
    pub batches: bool,
    /// Add one line per record: offset, timestamp, key, header names, value size.
    #[arg(long)]
    pub records: bool,
    /// With --records, print record values too.
    #[arg(long)]
    pub payloads: bool,
    /// List every index entry also when inspecting a directory (always on for an index file).
    #[arg(long)]
    pub index_entries: bool,
    /// Check every checksum, offset order, index and state file; print only problems and a
    /// summary; exit 1 when anything is wrong.
    #[arg(long)]
    pub verify: bool,
    /// Set from the global `--json` flag.
    #[arg(skip)]
    pub json: bool,
}

/// Repair a data directory offline: cut a corrupt tail, set aside what follows, rebuild
/// indexes. Shows the plan and changes nothing without --yes; removed bytes go to side files.
#[derive(clap::Args, Debug, Clone)]
pub struct RepairArgs {
    /// A data directory or a topic or queue directory.
    pub path: PathBuf,
    /// Carry out the plan.
    #[arg(long)]
    pub yes: bool,
    /// Set from the global `--json` flag.
    #[arg(skip)]
    pub json: bool,
}

/// Exit code when inspection or verification found a problem, or repair has something to do
/// and was not told `--yes`.
pub const EXIT_PROBLEMS: i32 = 1;

/// Formats milliseconds since the epoch as UTC ISO-8601 (`2026-11-24T21:30:00.123Z`).
pub fn fmt_ts(ms: TimestampMs) -> String {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

fn ts(ms: TimestampMs) -> String {
    if ms == i64::MIN {
        "-".into()
    } else {
        fmt_ts(ms)
    }
}

/// One item as a line for people.
///
/// Longer than most functions on purpose: one arm per kind of inspection item, each the
/// wording of its line, so every line `sluice inspect` prints reads in one place.
pub fn render(item: &Item) -> String {
    match item {
        Item::Note { message } => format!("note: {message}"),
        Item::Segment(s) => {
            let base = s
                .base_offset
                .map_or("?".to_string(), |b| b.to_string());
            let header = if s.headerless {
                "none (cut tail kept by repair)"
            } else if s.header_valid {
                "valid"
            } else {
                "INVALID"
            };
            format!(
                "segment {} base={base} size={} header={header}",
                s.file.display(),
                s.size_bytes
            )
        }
        Item::Batch(b) => format!(
            "  batch base={} last={} count={} pos={} size={} first_ts={} last_ts={} max_ts={} attrs={:#04x} header_crc={:#010x} valid records_crc={:#010x} {}{}",
            b.base_offset,
            b.last_offset,
            b.record_count,
            b.position,
            b.size_bytes,
            ts(b.first_timestamp_ms),
            b.last_timestamp_ms.map_or("?".into(), ts),
            ts(b.max_timestamp_ms),
            b.attributes,
            b.header_crc,
            b.records_crc,
            if b.records_crc_valid {
                "valid".to_string()
            } else {
                format!("INVALID (computed {:#010x})", b.records_crc_computed)
            },
            b.raft_term
                .zip(b.raft_index)
                .map_or(String::new(), |(t, i)| format!(" raft_term={t} raft_index={i}"))
        ),
        Item::Record(r) => {
            let names: Vec<String> = r.header_names.iter().map(|n| n.to_string()).collect();
            let mut s = format!(
                "    record offset={} ts={} key={} headers=[{}] value_size={}",
                r.offset,
                ts(r.timestamp_ms),
                r.key.as_ref().map_or("-".into(), |k| k.to_string()),
                names.join(","),
                r.value_size
            );
            if let Some(v) = &r.value {
                s.push_str(&format!(" value={v}"));
            }
            s
        }
        Item::Index(i) => format!(
            "{} {} entries={} size={} {}",
            match i.kind {
                inspect::IndexKind::Offset => "index",
                inspect::IndexKind::Time => "timeindex",
            },
            i.file.display(),
            i.entries,
            i.size_bytes,
            if i.valid { "valid" } else { "INVALID" }
        ),
        Item::IndexEntry(e) => {
            let what = match (e.log_position, e.timestamp_ms) {
                (Some(p), _) => format!("offset={} position={p}", e.offset),
                (_, Some(t)) => format!("timestamp={} ({t}) offset={}", ts(t), e.offset),
                _ => format!("offset={}", e.offset),
            };
            format!(
                "  entry at={} {what} {}",
                e.entry_position,
                if e.valid { "valid" } else { "INVALID" }
            )
        }
        Item::State(s) => {
            let fields: Vec<String> = s.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let valid = match s.valid {
                Some(true) => " valid",
                Some(false) => " INVALID",
                None => "",
            };
            format!(
                "{} {} size={}{}{valid}",
                s.kind,
                s.file.display(),
                s.size_bytes,
                if fields.is_empty() {
                    String::new()
                } else {
                    format!(" {}", fields.join(" "))
                }
            )
        }
        Item::LogDir(d) => {
            // A topic's partition n >= 1 is named `<topic>/<n>`.
            let name = if d.partition > 0 {
                format!("{}/{}", d.name, d.partition)
            } else {
                d.name.clone()
            };
            let mut out = format!(
                "{} {} ({}): offsets {}..{}, {} segment(s), {} bytes",
                d.kind,
                name,
                d.dir.display(),
                d.start_offset.map_or("-".into(), |o| o.to_string()),
                d.end_offset.map_or("-".into(), |o| o.to_string()),
                d.segments.len(),
                d.size_bytes
            );
            for s in &d.segments {
                out.push_str(&format!(
                    "\n  {} offsets {}..{} size={} valid_bytes={} batches={} records={} max_ts={} index={} timeindex={}",
                    s.file.file_name().unwrap_or_default().to_string_lossy(),
                    s.base_offset,
                    s.end_offset,
                    s.size_bytes,
                    s.valid_bytes,
                    s.batches,
                    s.records,
                    s.max_timestamp_ms.map_or("-".into(), ts),
                    s.index_entries.map_or("missing".into(), |n| format!("{n} entries")),
                    s.time_index_entries.map_or("missing".into(), |n| format!("{n} entries")),
                ));
            }
            match &d.retention {
                Some(r) => out.push_str(&format!(
                    "\n  retention: bytes={} ms={}",
                    r.retention_bytes.map_or("none".into(), |b| b.to_string()),
                    r.retention_ms.map_or("none".into(), |b| b.to_string())
                )),
                None => out.push_str("\n  retention: no readable config file"),
            }
            if let Some(subs) = &d.subscribers {
                if subs.is_empty() {
                    out.push_str("\n  subscribers: none");
                }
                for s in subs {
                    out.push_str(&format!(
                        "\n  subscriber {} committed={} lag={}",
                        s.name, s.committed, s.lag
                    ));
                }
            }
            if let Some(q) = &d.queue {
                render_queue(&mut out, "queue", q);
            }
            for g in &d.groups {
                match &g.state {
                    Some(q) => render_queue(&mut out, &format!("group {}", g.name), q),
                    None => out.push_str(&format!(
                        "\n  group {}: ack state unreadable (see the problems above)",
                        g.name
                    )),
                }
            }
            for u in &d.unknown_files {
                out.push_str(&format!(
                    "\n  unknown file {} ({} bytes)",
                    u.name, u.size_bytes
                ));
            }
            out
        }
        Item::Problem(p) => p.to_string(),
    }
}

/// The ack state lines of a queue or group.
fn render_queue(out: &mut String, who: &str, q: &inspect::QueueState) {
    out.push_str(&format!(
        "\n  {who} ack_floor={} cursor={} acked_above_floor={} in_flight={} dead_lettered={} depth={} undelivered={}",
        q.ack_floor,
        q.cursor,
        q.acked_above_floor,
        q.in_flight.len(),
        q.dead_lettered,
        q.depth,
        q.undelivered
    ));
    for f in &q.in_flight {
        out.push_str(&format!(
            "\n    in-flight offset={} deliveries={}",
            f.offset, f.deliveries
        ));
    }
}

fn render_summary(s: &Summary, verify: bool) -> String {
    let mut out = format!(
        "summary: {} log dir(s), {} segment(s), {} batches, {} records, {} bytes, {} index file(s), {} state file(s), {} error(s), {} warning(s) in {} ms",
        s.log_dirs,
        s.segments,
        s.batches,
        s.records,
        s.bytes,
        s.indexes,
        s.state_files,
        s.errors,
        s.warnings,
        s.elapsed_ms
    );
    if verify {
        out.push_str(if s.errors == 0 {
            "\nverify: OK"
        } else {
            "\nverify: FAILED"
        });
    }
    out
}

fn json_line(out: &mut impl Write, v: &impl serde::Serialize) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *out, v)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// A progress bar on stderr, only when both outputs are terminals.
fn progress_bar(json: bool) -> Option<ProgressBar> {
    if json || !std::io::stdout().is_terminal() || !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    pb.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    Some(pb)
}

struct Printer<W: Write> {
    out: W,
    json: bool,
    verify: bool,
    pb: Option<ProgressBar>,
    err: Option<std::io::Error>,
}

impl<W: Write> Printer<W> {
    fn emit(&mut self, item: &Item) -> std::io::Result<()> {
        if self.json {
            serde_json::to_writer(&mut self.out, item)?;
            self.out.write_all(b"\n")
        } else {
            writeln!(self.out, "{}", render(item))
        }
    }
}

impl<W: Write> Visitor for Printer<W> {
    fn item(&mut self, item: Item) {
        if self.err.is_some() {
            return;
        }
        // In verify mode only what is wrong (and notes) is shown; the summary follows.
        if self.verify && !matches!(item, Item::Problem(_) | Item::Note { .. }) {
            return;
        }
        let r = match self.pb.clone() {
            Some(pb) => pb.suspend(|| self.emit(&item)),
            None => self.emit(&item),
        };
        if let Err(e) = r {
            self.err = Some(e);
        }
    }
    fn progress(&mut self, done: u64, total: u64) {
        if let Some(pb) = &self.pb {
            pb.set_length(total);
            pb.set_position(done);
        }
    }
}

/// Runs `sluice inspect`; returns the exit code (0, or 1 when `--verify` found a problem).
pub fn run_inspect(args: InspectArgs) -> anyhow::Result<i32> {
    let opts = inspect::InspectOptions {
        batches: args.batches,
        records: args.records || args.payloads,
        payloads: args.payloads,
        index_entries: args.index_entries,
        ..Default::default()
    };
    let stdout = std::io::stdout().lock();
    let mut p = Printer {
        out: std::io::BufWriter::new(stdout),
        json: args.json,
        verify: args.verify,
        pb: progress_bar(args.json),
        err: None,
    };
    let summary = inspect::walk(&StdFs, &args.path, &opts, &mut p)
        .with_context(|| format!("inspecting {}", args.path.display()))?;
    if let Some(pb) = p.pb.take() {
        pb.finish_and_clear();
    }
    if let Some(e) = p.err.take() {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            return Ok(0);
        }
        return Err(e).context("writing output");
    }
    if args.json {
        #[derive(serde::Serialize)]
        struct Tagged<'a> {
            r#type: &'static str,
            #[serde(flatten)]
            summary: &'a Summary,
            ok: bool,
        }
        json_line(
            &mut p.out,
            &Tagged {
                r#type: "summary",
                summary: &summary,
                ok: summary.errors == 0,
            },
        )?;
    } else {
        writeln!(p.out, "{}", render_summary(&summary, args.verify))?;
    }
    p.out.flush()?;
    Ok(if args.verify && summary.errors > 0 {
        EXIT_PROBLEMS
    } else {
        0
    })
}

/// One repair action as a line for people.
pub fn render_action(a: &RepairAction) -> String {
    match a {
        RepairAction::RemoveStateFile { file, reason } => {
            format!("  remove {} ({reason})", file.display())
        }
        RepairAction::Truncate {
            file,
            position,
            dropped_bytes,
            first_dropped_offset,
            reason,
            side_file,
            ..
        } => format!(
            "  cut {} at byte {position}: drop {dropped_bytes} bytes, offsets from {first_dropped_offset} on ({reason}); the bytes are kept in {}",
            file.display(),
            side_file.display()
        ),
        RepairAction::SetAside {
            file,
            file_len,
            base_offset,
            end_offset,
            reason,
            renames,
        } => format!(
            "  set aside {} ({file_len} bytes, offsets {base_offset}..{end_offset}; {reason}) as {}",
            file.display(),
            renames
                .iter()
                .map(|(_, to)| to.file_name().unwrap_or_default().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        RepairAction::CreateEmptySegment { file, base_offset } => format!(
            "  create empty segment {} so offsets continue at {base_offset}",
            file.display()
        ),
        RepairAction::RebuildIndexes { file, reason } => {
            format!("  rebuild the indexes of {} ({reason})", file.display())
        }
    }
}

fn print_plan(out: &mut impl Write, plan: &RepairPlan, json: bool) -> anyhow::Result<()> {
    if json {
        for d in &plan.dirs {
            for a in &d.actions {
                json_line(
                    out,
                    &serde_json::json!({"type": "action", "dir": d.dir, "partition": d.partition, "action": a}),
                )?;
            }
            for n in &d.state_notes {
                json_line(
                    out,
                    &serde_json::json!({"type": "note", "dir": d.dir, "partition": d.partition, "message": n}),
                )?;
            }
        }
        return Ok(());
    }
    for d in &plan.dirs {
        let part = if d.partition > 0 {
            format!(" (partition {})", d.partition)
        } else {
            String::new()
        };
        writeln!(
            out,
            "{}{part}: keeps offsets {}..{}, moves {} bytes to side files",
            d.dir.display(),
            d.kept.0,
            d.kept.1,
            d.dropped_bytes
        )?;
        for a in &d.actions {
            writeln!(out, "{}", render_action(a))?;
        }
        for n in &d.state_notes {
            writeln!(out, "  note: {n}")?;
        }
    }
    for d in &plan.clean_dirs {
        writeln!(out, "{}: nothing to repair", d.display())?;
    }
    Ok(())
}

/// Runs `sluice repair`; returns the exit code: 0 when nothing needs repair or the repair was
/// done, 1 when a repair is needed and `--yes` was not given.
pub fn run_repair(args: RepairArgs) -> anyhow::Result<i32> {
    if let LockStatus::Held(lock) = inspect::lock_status(&args.path) {
        bail!(
            "{} is held by a running broker: stop the broker before repairing (inspect works while it runs)",
            lock.display()
        );
    }
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let plan = inspect::plan_repair(&StdFs, &args.path, stamp)
        .with_context(|| format!("planning the repair of {}", args.path.display()))?;
    let mut out = std::io::stdout().lock();
    print_plan(&mut out, &plan, args.json)?;
    if plan.is_empty() {
        if args.json {
            json_line(
                &mut out,
                &serde_json::json!({"type": "summary", "repaired": false, "needed": false}),
            )?;
        } else {
            writeln!(out, "nothing to repair")?;
        }
        return Ok(0);
    }
    if !args.yes {
        if args.json {
            json_line(
                &mut out,
                &serde_json::json!({"type": "summary", "repaired": false, "needed": true}),
            )?;
        } else {
            writeln!(out, "nothing was changed: run again with --yes to repair")?;
        }
        return Ok(EXIT_PROBLEMS);
    }
    let outcome = inspect::apply_repair(&StdFs, &plan)
        .with_context(|| format!("repairing {}", args.path.display()))?;
    if args.json {
        json_line(
            &mut out,
            &serde_json::json!({"type": "summary", "repaired": true, "needed": true, "outcome": outcome}),
        )?;
    } else {
        writeln!(
            out,
            "repaired: {} bytes moved to {} side file(s), indexes of {} segment(s) rebuilt, {} state file(s) removed",
            outcome.dropped_bytes,
            outcome.side_files.len(),
            outcome.rebuilt_indexes,
            outcome.removed_state_files
        )?;
        for f in &outcome.side_files {
            writeln!(out, "  kept {}", f.display())?;
        }
    }
    // The repaired directory must verify now.
    let v = inspect::verify(&StdFs, &args.path)?;
    let errors: Vec<_> = v
        .problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .collect();
    if !errors.is_empty() {
        // Damage recovery does not cut at (a malformed record under a valid checksum) stays.
        eprintln!("after the repair, verification still finds:");
        for p in &errors {
            eprintln!("  {p}");
        }
        return Ok(EXIT_PROBLEMS);
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::fmt_ts;

    #[test]
    fn timestamps_format_as_utc() {
        assert_eq!(fmt_ts(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(fmt_ts(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(fmt_ts(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(fmt_ts(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
