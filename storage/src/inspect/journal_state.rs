//! Journaled state (subscriber offsets, ack state): a snapshot and its journal, checked and
//! decoded down to records, then replayed into what inspect reports.

use super::*;
use crate::journal;

/// A snapshot and its journal, checked and decoded down to records.
pub(super) struct Journaled {
    /// The snapshot file and its body.
    pub(super) snapshot: Option<(PathBuf, Vec<u8>)>,
    /// The snapshot file's layout version (0 without one).
    pub(super) snapshot_version: u16,
    pub(super) generation: u64,
    /// The journal of that generation, when present.
    pub(super) journal: Option<PathBuf>,
    /// Valid records, with their byte positions in the journal.
    pub(super) records: Vec<(u64, u8, Vec<u8>)>,
}

/// Reads `<prefix>.snapshot` and `<prefix>.<gen>.journal` of `dir` with the loader recovery
/// uses ([`journal::examine`]), without changing anything, and reports what it found. `None`
/// when there is no such file, or when recovery would refuse the state (reported in `out`).
pub(super) fn read_journaled(
    fs: &dyn FileSystem,
    dir: &Path,
    names: &[String],
    prefix: &str,
    magic: [u8; 8],
    out: &mut Vec<Item>,
) -> Result<Option<Journaled>> {
    let journals: Vec<(u64, &String)> = names
        .iter()
        .filter_map(|n| journal_generation(n, prefix).map(|g| (g, n)))
        .collect();
    let has_snapshot = names.iter().any(|n| *n == format!("{prefix}.snapshot"));
    if !has_snapshot && journals.is_empty() {
        return Ok(None);
    }
    let ex = journal::examine(fs, dir, prefix, magic)?;
    let mut st = Journaled {
        snapshot: None,
        snapshot_version: 0,
        generation: ex.generation,
        journal: None,
        records: Vec::new(),
    };
    if let Some(snap) = &ex.snapshot {
        match &snap.decoded {
            Ok((gen, body)) => {
                out.push(state_item(
                    &snap.path,
                    &format!("{prefix}-snapshot"),
                    snap.len,
                    vec![
                        uint("generation", *gen),
                        uint("body_bytes", body.len() as u64),
                    ],
                    Some(true),
                ));
                st.snapshot = Some((snap.path.clone(), body.clone()));
                st.snapshot_version = snap.version;
            }
            Err(reason) => {
                invalid_snapshot(fs, dir, snap, reason, &journals, prefix, out)?;
                return Ok(None);
            }
        }
    }
    let jp = journal::journal_path(dir, prefix, st.generation);
    other_journals(
        fs,
        dir,
        &journals,
        &jp,
        prefix,
        has_snapshot,
        st.generation,
        out,
    )?;
    let Some(j) = ex.journal else {
        if has_snapshot {
            out.push(problem_item(
                Severity::Warning,
                &jp,
                None,
                "journal named by the snapshot is missing (created empty at the next open; records written after the snapshot, if any, are lost)".into(),
            ));
        }
        return Ok(Some(st));
    };
    if !journal_header(&j, st.generation, prefix, out) {
        return Ok(None);
    }
    st.journal = Some(j.path.clone());
    if j.header.is_ok() {
        journal_records(&j, prefix, out);
        st.records = j.records;
    }
    Ok(Some(st))
}

/// Reports a snapshot that does not decode, and lists the journals beside it.
fn invalid_snapshot(
    fs: &dyn FileSystem,
    dir: &Path,
    snap: &journal::SnapshotFile,
    reason: &journal::StateFileError,
    journals: &[(u64, &String)],
    prefix: &str,
    out: &mut Vec<Item>,
) -> Result<()> {
    out.push(state_item(
        &snap.path,
        &format!("{prefix}-snapshot"),
        snap.len,
        vec![],
        Some(false),
    ));
    out.push(problem_item(
        Severity::Error,
        &snap.path,
        Some(reason.position()),
        format!("invalid snapshot: {reason}; snapshots are written atomically, so this is damage: the broker refuses to start until the file is restored"),
    ));
    for (g, n) in journals {
        let p = dir.join(n);
        out.push(state_item(
            &p,
            &format!("{prefix}-journal"),
            file_len(fs, &p)?,
            vec![uint("generation", *g)],
            None,
        ));
    }
    Ok(())
}

/// Lists the journals of other generations than `jp`'s: leftovers of an interrupted snapshot,
/// or, without a snapshot naming any journal, a sign the snapshot is missing.
#[allow(clippy::too_many_arguments)]
fn other_journals(
    fs: &dyn FileSystem,
    dir: &Path,
    journals: &[(u64, &String)],
    jp: &Path,
    prefix: &str,
    has_snapshot: bool,
    generation: u64,
    out: &mut Vec<Item>,
) -> Result<()> {
    for (g, n) in journals {
        let p = dir.join(n);
        if p == jp {
            continue;
        }
        out.push(state_item(
            &p,
            &format!("{prefix}-journal"),
            file_len(fs, &p)?,
            vec![uint("generation", *g)],
            None,
        ));
        let own = journals.iter().any(|(x, _)| *x == generation);
        if has_snapshot || own {
            out.push(problem_item(
                Severity::Warning,
                &p,
                None,
                format!("journal of generation {g}, not the one in use ({generation}): left over from an interrupted snapshot (removed at the next open)"),
            ));
        } else {
            out.push(problem_item(
                Severity::Error,
                &p,
                None,
                format!("journal of generation {g} but no {prefix}.snapshot names it: the snapshot is missing; the next open starts from an empty state and removes this journal"),
            ));
        }
    }
    Ok(())
}

/// Reports a journal header that does not decode or names another generation. False when
/// recovery refuses the state for it.
fn journal_header(
    j: &journal::JournalFile,
    generation: u64,
    prefix: &str,
    out: &mut Vec<Item>,
) -> bool {
    let kind = format!("{prefix}-journal");
    match &j.header {
        Ok(g) if *g == generation => true,
        Ok(g) => {
            out.push(state_item(
                &j.path,
                &kind,
                j.len,
                vec![uint("generation", *g)],
                Some(false),
            ));
            out.push(problem_item(
                Severity::Error,
                &j.path,
                Some(12),
                format!("journal header says generation {g}, its name and the snapshot say {generation}: the broker refuses to start"),
            ));
            false
        }
        Err(reason) => {
            let at = reason.position();
            out.push(state_item(
                &j.path,
                &kind,
                j.len,
                vec![uint("generation", generation)],
                Some(false),
            ));
            if j.never_durable {
                out.push(problem_item(
                    Severity::Warning,
                    &j.path,
                    Some(at),
                    format!("{reason}: the header never became durable (the file holds no record); recreated at the next open"),
                ));
            } else {
                out.push(problem_item(
                    Severity::Error,
                    &j.path,
                    Some(at),
                    format!("{reason}, with {} bytes after it: the broker refuses to open this state until the file is set aside", j.len.saturating_sub(journal::JOURNAL_HEADER_LEN as u64)),
                ));
            }
            true
        }
    }
}

/// Reports the records of a journal whose header is valid, and what follows them.
fn journal_records(j: &journal::JournalFile, prefix: &str, out: &mut Vec<Item>) {
    let at = j.valid_len;
    let torn = j.len - j.valid_len - j.zeroed_len;
    let problem = j.fault.as_ref().filter(|_| torn > 0).map(|reason| {
        if j.damaged_mid {
            problem_item(
                Severity::Error,
                &j.path,
                Some(at),
                format!("{reason}, and valid records follow: damage in the middle of the journal, not a torn write; the next open cuts the journal here and loses the {torn} bytes after it (acknowledged messages may be delivered again, offsets may move back)"),
            )
        } else {
            problem_item(
                Severity::Warning,
                &j.path,
                Some(at),
                format!("{reason}: torn tail of {torn} bytes (a write never confirmed; cut at the next open)"),
            )
        }
    });
    let ok = !matches!(&problem, Some(Item::Problem(p)) if p.severity == Severity::Error);
    out.push(state_item(
        &j.path,
        &format!("{prefix}-journal"),
        j.len,
        vec![
            uint("generation", *j.header.as_ref().expect("a valid header")),
            uint("records", j.records.len() as u64),
            uint("valid_bytes", at),
            uint("preallocated_bytes", j.zeroed_len),
            uint("torn_bytes", torn),
        ],
        Some(ok),
    ));
    out.extend(problem);
}

/// Subscriber offsets of a topic's state directory, on partition `partition` (whose log ends at
/// `end`). What is wrong with the offsets files themselves goes to `file_out` (so that a topic's
/// partitions report it once), what is wrong on this partition to `out`.
pub(super) fn read_offsets(
    fs: &dyn FileSystem,
    dir: &Path,
    names: &[String],
    (partition, end): (u32, Option<Offset>),
    file_out: &mut Vec<Item>,
    out: &mut Vec<Item>,
) -> Result<Option<Vec<SubscriberState>>> {
    use crate::offsets::{OFFSETS_MAGIC, OFFSETS_PREFIX, REC_COMMIT, REC_COMMIT_PARTITION};
    use std::collections::BTreeMap;
    let Some(j) = read_journaled(fs, dir, names, OFFSETS_PREFIX, OFFSETS_MAGIC, file_out)? else {
        return Ok(None);
    };
    let body_at = crate::journal::SNAPSHOT_HEADER_LEN as u64;
    // Where each subscriber's offset was last set (on any partition).
    let mut set_at: BTreeMap<String, (PathBuf, u64)> = BTreeMap::new();
    let snapshot = j
        .snapshot
        .as_ref()
        .map(|(_, b)| (j.snapshot_version, b.as_slice()));
    let records = j.records.iter().map(|(_, k, p)| (*k, p.as_slice()));
    let replayed = crate::offsets::replay(snapshot, records, |name, step| match step {
        None => {
            if let Some((sp, _)) = &j.snapshot {
                set_at.insert(name.to_string(), (sp.clone(), body_at));
            }
        }
        Some((i, k)) if k == REC_COMMIT || k == REC_COMMIT_PARTITION => {
            if let Some(jp) = &j.journal {
                set_at.insert(name.to_string(), (jp.clone(), j.records[i].0));
            }
        }
        Some(_) => {}
    });
    let map = match replayed {
        Ok(m) => m,
        Err(fault) => {
            let what = "offsets snapshot body does not decode";
            file_out.push(replay_problem(&j, fault, what, "offsets"));
            return Ok(None);
        }
    };
    let mut subs = Vec::new();
    for (name, parts) in map {
        let Some(committed) = parts.get(&partition).map(|c| c.offset) else {
            continue;
        };
        if let Some(e) = end.filter(|e| committed > e.0) {
            let (file, pos) = set_at.get(&name).cloned().unwrap_or_default();
            out.push(problem_item(
                Severity::Warning,
                &file,
                Some(pos),
                format!("subscriber {name} committed offset {committed} is past the log end {e} of partition {partition} (the next open clamps it to {e})"),
            ));
        }
        subs.push(SubscriberState {
            lag: end.map_or(0, |e| e.0.saturating_sub(committed)),
            name,
            committed: Offset(committed),
        });
    }
    Ok(Some(subs))
}

/// Ack state of a queue's or group's state directory. With no snapshot the state starts at
/// `start` (the log start), as recovery does.
///
/// Long because it is one replay of the snapshot and journal that also notes where the floor
/// and the cursor went past the log end; splitting it would hand the half-built state around.
pub(super) fn read_acks(
    fs: &dyn FileSystem,
    dir: &Path,
    names: &[String],
    start: Offset,
    end: Option<Offset>,
    out: &mut Vec<Item>,
) -> Result<Option<QueueState>> {
    use crate::ackstate::{AckState, ACK_MAGIC, ACK_PREFIX};
    let Some(j) = read_journaled(fs, dir, names, ACK_PREFIX, ACK_MAGIC, out)? else {
        return Ok(None);
    };
    let body_at = crate::journal::SNAPSHOT_HEADER_LEN as u64;
    // Where the floor and the cursor first went past the log end.
    type Place = Option<(PathBuf, u64)>;
    let mut floor_past: Place = None;
    let mut cursor_past: Place = None;
    let past = |st: &AckState, file: &Path, pos: u64, f: &mut Place, c: &mut Place| {
        if let Some(e) = end {
            if st.acks.floor() > e.0 && f.is_none() {
                *f = Some((file.to_path_buf(), pos));
            }
            if st.cursor > e.0 && c.is_none() {
                *c = Some((file.to_path_buf(), pos));
            }
        }
    };
    let snapshot = j.snapshot.as_ref().map(|(_, b)| b.as_slice());
    let records = j.records.iter().map(|(_, k, p)| (*k, p.as_slice()));
    let replayed = AckState::replay(snapshot, records, start.0, |st, step| {
        let (file, pos) = match step {
            None => match &j.snapshot {
                Some((sp, _)) => (sp.as_path(), body_at),
                None => return,
            },
            Some(i) => match &j.journal {
                Some(jp) => (jp.as_path(), j.records[i].0),
                None => return,
            },
        };
        past(st, file, pos, &mut floor_past, &mut cursor_past);
    });
    let st = match replayed {
        Ok(st) => st,
        Err(fault) => {
            out.push(replay_problem(&j, fault, "ack snapshot body", "ack"));
            return Ok(None);
        }
    };
    let floor = st.acks.floor();
    let above = st.acks.above();
    let mut in_flight: Vec<InFlight> = st
        .counts
        .iter()
        .map(|(&offset, &deliveries)| InFlight {
            offset: Offset(offset),
            deliveries,
        })
        .collect();
    in_flight.sort_unstable_by_key(|f| f.offset);
    if let Some(e) = end {
        ack_past_end(&st, e, &in_flight, floor_past, cursor_past, out);
    }
    let e = end.map_or(st.cursor, |e| e.0);
    Ok(Some(QueueState {
        ack_floor: Offset(floor),
        cursor: Offset(st.cursor),
        acked_above_floor: above,
        in_flight,
        dead_lettered: st.dead_lettered,
        depth: e.saturating_sub(floor).saturating_sub(above),
        undelivered: e.saturating_sub(st.cursor),
        generation: j.generation,
        journal_records: j.records.len() as u64,
    }))
}

/// Warns where the ack floor and the cursor first went past the log end `e` (the next open
/// clamps them).
fn ack_past_end(
    st: &crate::ackstate::AckState,
    e: Offset,
    in_flight: &[InFlight],
    floor_past: Option<(PathBuf, u64)>,
    cursor_past: Option<(PathBuf, u64)>,
    out: &mut Vec<Item>,
) {
    let floor = st.acks.floor();
    if let Some((file, pos)) = floor_past {
        out.push(problem_item(
            Severity::Warning,
            &file,
            Some(pos),
            format!("ack floor {floor} is past the log end {e} (the next open clamps it to {e})"),
        ));
    }
    if let Some((file, pos)) = cursor_past {
        let dropped = in_flight.iter().filter(|f| f.offset >= e).count();
        out.push(problem_item(
            Severity::Warning,
            &file,
            Some(pos),
            format!(
                "cursor {} is past the log end {e} (the next open clamps it to {e} and forgets {dropped} in-flight and {} acknowledged offsets at or above it)",
                st.cursor,
                st.acks.acked_above().iter().filter(|o| **o >= e.0).count()
            ),
        ));
    }
}

/// The problem a replay fault is: the snapshot body that does not decode (`snapshot_what`), or
/// the malformed `record_what` record, with the file and position it is at. Recovery refuses
/// the same state.
fn replay_problem(
    j: &Journaled,
    fault: crate::ackstate::ReplayFault,
    snapshot_what: &str,
    record_what: &str,
) -> Item {
    use crate::ackstate::ReplayFault;
    let body_at = crate::journal::SNAPSHOT_HEADER_LEN as u64;
    let (file, at, what) = match fault {
        ReplayFault::Snapshot(e) => (
            j.snapshot.as_ref().map(|(p, _)| p.clone()),
            body_at,
            format!("{snapshot_what}: {e}"),
        ),
        ReplayFault::Record { index, reason } => (
            j.journal.clone(),
            j.records.get(index).map_or(0, |r| r.0),
            format!("{record_what} record under a valid checksum is malformed: {reason}"),
        ),
    };
    problem_item(
        Severity::Error,
        &file.unwrap_or_default(),
        Some(at),
        format!("{what}: the broker refuses to start"),
    )
}
