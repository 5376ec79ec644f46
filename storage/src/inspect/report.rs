//! The report types of inspection: options, problems, one item per segment, batch, record,
//! index, state file and log directory, the summary, and the visitor they stream to.

use super::*;

/// What to show.
#[derive(Clone, Debug)]
pub struct InspectOptions {
    /// List every batch. Always on for a single segment file.
    pub batches: bool,
    /// List every record (implies `batches`).
    pub records: bool,
    /// Include record values (implies `records`).
    pub payloads: bool,
    /// List every index entry. Always on for a single index file.
    pub index_entries: bool,
    /// Largest batch accepted as valid. Inspection is lenient by default (`u32::MAX`): a batch
    /// is still bounded by its file's length.
    pub batch_bytes_max: u32,
}

impl Default for InspectOptions {
    fn default() -> Self {
        InspectOptions {
            batches: false,
            records: false,
            payloads: false,
            index_entries: false,
            batch_bytes_max: u32::MAX,
        }
    }
}

/// How bad a problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Data or state is wrong: verification fails.
    Error,
    /// Harmless or repaired at the next open (a missing index, a leftover temporary file).
    Warning,
}

/// Something wrong, with the file and the byte position where it starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// The file (or directory) it is in.
    pub file: PathBuf,
    /// Byte position in that file, when it applies.
    pub position: Option<u64>,
    /// What is wrong.
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        match self.position {
            Some(p) => write!(
                f,
                "{sev}: {} at byte {p}: {}",
                self.file.display(),
                self.what
            ),
            None => write!(f, "{sev}: {}: {}", self.file.display(), self.what),
        }
    }
}

/// Bytes shown to a person: UTF-8 text when printable, hex otherwise.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Shown {
    /// Valid UTF-8 without control characters.
    Utf8(String),
    /// Anything else, as lowercase hex.
    Hex(String),
}

impl Shown {
    /// Classifies bytes.
    pub fn of(b: &[u8]) -> Shown {
        match std::str::from_utf8(b) {
            Ok(s) if !s.chars().any(|c| c.is_control()) => Shown::Utf8(s.to_string()),
            _ => Shown::Hex(b.iter().map(|x| format!("{x:02x}")).collect()),
        }
    }
}

impl std::fmt::Display for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shown::Utf8(s) => write!(f, "{s:?}"),
            Shown::Hex(h) => write!(f, "0x{h}"),
        }
    }
}

/// A segment (`.log`) file, before its batches.
#[derive(Clone, Debug, Serialize)]
pub struct SegmentReport {
    /// The file.
    pub file: PathBuf,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Base offset from the file header (`None` when the header is invalid or absent).
    pub base_offset: Option<Offset>,
    /// True when the 32-byte file header is valid and matches the file name.
    pub header_valid: bool,
    /// True for a repair side file holding a cut tail (batches without a file header).
    pub headerless: bool,
}

/// One batch.
#[derive(Clone, Debug, Serialize)]
pub struct BatchReport {
    /// The segment file.
    pub file: PathBuf,
    /// Byte position of the batch in the file.
    pub position: u64,
    /// Size in bytes, header included.
    pub size_bytes: u32,
    /// First offset.
    pub base_offset: Offset,
    /// Last offset.
    pub last_offset: Offset,
    /// Number of records.
    pub record_count: u32,
    /// Timestamp of the first record (header field).
    pub first_timestamp_ms: TimestampMs,
    /// Timestamp of the last record (from the records; `None` when they do not parse).
    pub last_timestamp_ms: Option<TimestampMs>,
    /// Largest record timestamp (header field).
    pub max_timestamp_ms: TimestampMs,
    /// Attribute bits.
    pub attributes: u8,
    /// Header checksum as stored (always valid here: a batch with a bad header checksum is a
    /// problem, since its length cannot be trusted).
    pub header_crc: u32,
    /// Records checksum as stored.
    pub records_crc: u32,
    /// Records checksum as computed.
    pub records_crc_computed: u32,
    /// True when they match.
    pub records_crc_valid: bool,
    /// In a replicated log, the term of the leader that appended the batch's Raft entry
    /// (`None` in a single node's log, whose batches carry no Raft stamp).
    pub raft_term: Option<u64>,
    /// In a replicated log, the index of the batch's Raft entry.
    pub raft_index: Option<u64>,
}

/// One record.
#[derive(Clone, Debug, Serialize)]
pub struct RecordReport {
    /// The segment file.
    pub file: PathBuf,
    /// Its offset.
    pub offset: Offset,
    /// Its timestamp.
    pub timestamp_ms: TimestampMs,
    /// Its key.
    pub key: Option<Shown>,
    /// Names of its headers.
    pub header_names: Vec<Shown>,
    /// Size of the value in bytes.
    pub value_size: usize,
    /// The value (with `payloads`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Shown>,
}

/// Which index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexKind {
    /// `.index`: offset to position.
    Offset,
    /// `.timeindex`: timestamp to offset.
    Time,
}

/// An index file.
#[derive(Clone, Debug, Serialize)]
pub struct IndexReport {
    /// The file.
    pub file: PathBuf,
    /// Which index.
    pub kind: IndexKind,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Number of entries.
    pub entries: u64,
    /// True when the header, the order of entries and every entry agree with the log.
    pub valid: bool,
}

/// One index entry.
#[derive(Clone, Debug, Serialize)]
pub struct IndexEntryReport {
    /// The index file.
    pub file: PathBuf,
    /// Byte position of the entry in the index file.
    pub entry_position: u64,
    /// Absolute offset (segment base plus the relative offset).
    pub offset: Offset,
    /// For `.index`: the byte position in the log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_position: Option<u32>,
    /// For `.timeindex`: the timestamp.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp_ms: Option<TimestampMs>,
    /// True when the entry agrees with the log.
    pub valid: bool,
}

/// A state file of a log directory, or any other file found there.
#[derive(Clone, Debug, Serialize)]
pub struct StateFileReport {
    /// The file.
    pub file: PathBuf,
    /// What it is: `recovery-point`, `clean-shutdown`, `lock`, `temporary`, `repair-side-file`,
    /// `orphan-index`, `directory` or `unknown`.
    pub kind: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Decoded fields, in order, when the format is known (a JSON object).
    #[serde(serialize_with = "fields_as_map")]
    pub fields: Vec<(String, Field)>,
    /// Whether it decoded and agrees with the log (`None`: not checked, format unknown).
    pub valid: Option<bool>,
}

/// A decoded field of a state file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Field {
    /// An unsigned integer (offsets, positions, sizes).
    UInt(u64),
    /// A signed integer (timestamps).
    Int(i64),
    /// Text.
    Text(String),
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Field::UInt(v) => v.fmt(f),
            Field::Int(v) => v.fmt(f),
            Field::Text(v) => v.fmt(f),
        }
    }
}

pub(super) fn fields_as_map<S: serde::Serializer>(
    fields: &[(String, Field)],
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.collect_map(fields.iter().map(|(k, v)| (k, v)))
}

/// A file of a log directory that this tool does not know.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UnknownFile {
    /// Its name.
    pub name: String,
    /// Its size in bytes (0 for a directory).
    pub size_bytes: u64,
}

/// One segment of a log directory, as found by the scan.
#[derive(Clone, Debug, Serialize)]
pub struct SegmentRange {
    /// The `.log` file.
    pub file: PathBuf,
    /// Base offset (from the file name).
    pub base_offset: Offset,
    /// One past the last valid offset.
    pub end_offset: Offset,
    /// Size of the file.
    pub size_bytes: u64,
    /// Bytes up to the end of the last batch before the first invalid one.
    pub valid_bytes: u64,
    /// Batches (with a valid header).
    pub batches: u64,
    /// Records in them.
    pub records: u64,
    /// Largest timestamp.
    pub max_timestamp_ms: Option<TimestampMs>,
    /// Entries of `.index` (`None` when missing).
    pub index_entries: Option<u64>,
    /// Entries of `.timeindex` (`None` when missing).
    pub time_index_entries: Option<u64>,
}

/// A subscriber of a topic as its state file records it.
#[derive(Clone, Debug, Serialize)]
pub struct SubscriberState {
    /// Its name.
    pub name: String,
    /// The next offset it will read.
    pub committed: Offset,
    /// End of the log minus committed.
    pub lag: u64,
}

/// An in-flight message of a queue.
#[derive(Clone, Debug, Serialize)]
pub struct InFlight {
    /// Its offset.
    pub offset: Offset,
    /// How many times it was delivered.
    pub deliveries: u32,
}

/// The ack state of a queue (or of a consumer group) as its state files record it: the
/// snapshot with the journal replayed over it, not clamped to the log (recovery clamps it).
#[derive(Clone, Debug, Serialize)]
pub struct QueueState {
    /// Every offset below is acknowledged.
    pub ack_floor: Offset,
    /// Next never-delivered offset.
    pub cursor: Offset,
    /// Acknowledged offsets above the floor.
    pub acked_above_floor: u64,
    /// Delivered, not yet acknowledged, with their delivery counts (redelivered after a
    /// restart, with these counts), ascending.
    pub in_flight: Vec<InFlight>,
    /// Messages dead-lettered so far.
    pub dead_lettered: u64,
    /// Messages not yet acknowledged, delivered or not: log end minus floor minus
    /// `acked_above_floor`.
    pub depth: u64,
    /// Messages never delivered: log end minus cursor.
    pub undelivered: u64,
    /// Journal generation in use.
    pub generation: u64,
    /// Valid journal records replayed over the snapshot.
    pub journal_records: u64,
}

/// A consumer group of a topic (`<topic>/groups/<group>/`).
#[derive(Clone, Debug, Serialize)]
pub struct GroupState {
    /// Its name.
    pub name: String,
    /// Its directory.
    pub dir: PathBuf,
    /// Its dead-letter bound (`max_deliveries` of its config; `None` when the config is
    /// unreadable).
    pub max_deliveries: Option<u32>,
    /// Its ack state (`None` when its state files are unreadable: see the problems).
    pub state: Option<QueueState>,
}

/// Retention settings of a log.
#[derive(Clone, Debug, Serialize)]
pub struct Retention {
    /// Size bound.
    pub retention_bytes: Option<u64>,
    /// Age bound.
    pub retention_ms: Option<u64>,
}

/// A log directory (a topic, a queue, or a bare log): summary after its scan.
#[derive(Clone, Debug, Serialize)]
pub struct LogDirReport {
    /// The directory.
    pub dir: PathBuf,
    /// `topic`, `queue` or `log` (from the parent directory's name).
    pub kind: String,
    /// Its name (the directory name).
    pub name: String,
    /// The partition of the topic this log is (0 for a queue or a bare log).
    pub partition: u32,
    /// Segments, oldest first.
    pub segments: Vec<SegmentRange>,
    /// First offset held.
    pub start_offset: Option<Offset>,
    /// One past the last valid offset.
    pub end_offset: Option<Offset>,
    /// Bytes of all segment files.
    pub size_bytes: u64,
    /// Retention settings from the `config` file (`None`: no readable config file).
    pub retention: Option<Retention>,
    /// Named subscribers of a topic (`None`: no offsets files, or unreadable: see the problems).
    pub subscribers: Option<Vec<SubscriberState>>,
    /// Ack state of a queue (`None`: no ack state files, or unreadable: see the problems).
    pub queue: Option<QueueState>,
    /// Consumer groups of a topic, by name.
    pub groups: Vec<GroupState>,
    /// The directory of the topic's or queue's state files (`config`, `offsets.*`, `acks.*`,
    /// `groups/`): the parent of a `log` directory in a data directory, else the log directory.
    pub state_dir: PathBuf,
    /// Files of the directory this tool does not know, by name and size.
    pub unknown_files: Vec<UnknownFile>,
}

/// Counts and time of a walk.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    /// Log directories.
    pub log_dirs: u64,
    /// Segment files.
    pub segments: u64,
    /// Batches with a valid header.
    pub batches: u64,
    /// Records in them.
    pub records: u64,
    /// Bytes of segment files read.
    pub bytes: u64,
    /// Index files checked.
    pub indexes: u64,
    /// State files checked.
    pub state_files: u64,
    /// Problems of severity error.
    pub errors: u64,
    /// Problems of severity warning.
    pub warnings: u64,
    /// Wall-clock time in milliseconds.
    pub elapsed_ms: u64,
    /// True when a running broker holds the data directory's lock.
    pub locked: bool,
}

/// One thing found by a walk. Serialized with a `type` field (`"batch"`, `"record"`, ...).
// Items are streamed to a visitor one at a time, and `LogDir` comes once per directory: its size
// costs nothing worth a box that every caller would have to look through.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Item {
    /// A note for the operator (for example: the directory is locked by a running broker).
    Note {
        /// The note.
        message: String,
    },
    /// A segment file starts.
    Segment(SegmentReport),
    /// A batch.
    Batch(BatchReport),
    /// A record.
    Record(RecordReport),
    /// An index file.
    Index(IndexReport),
    /// An index entry.
    IndexEntry(IndexEntryReport),
    /// A state or other file.
    State(StateFileReport),
    /// A log directory, after its segments.
    LogDir(LogDirReport),
    /// A problem.
    Problem(Problem),
}

/// Receives what a walk finds, as it finds it.
pub trait Visitor {
    /// One item.
    fn item(&mut self, item: Item);
    /// Progress: `done` of `total` segment bytes read.
    fn progress(&mut self, _done: u64, _total: u64) {}
}

impl<F: FnMut(Item)> Visitor for F {
    fn item(&mut self, item: Item) {
        self(item)
    }
}

/// Everything a walk found.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The items, in order.
    pub items: Vec<Item>,
    /// The summary.
    pub summary: Summary,
}

impl Report {
    /// The problems among the items.
    pub fn problems(&self) -> impl Iterator<Item = &Problem> {
        self.items.iter().filter_map(|i| match i {
            Item::Problem(p) => Some(p),
            _ => None,
        })
    }
}

/// What [`verify`] found.
#[derive(Clone, Debug, Serialize)]
pub struct Verification {
    /// Every problem, in the order found.
    pub problems: Vec<Problem>,
    /// The summary.
    pub summary: Summary,
}

impl Verification {
    /// True when no problem of severity error was found.
    pub fn ok(&self) -> bool {
        self.summary.errors == 0
    }
}
