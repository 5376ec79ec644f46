//! Typed errors of the byte layouts: why a file header, a batch or a record is not valid.
//!
//! Each variant carries what was found; its `Display` text is the message users see (in
//! `Corruption` reasons, `InvalidBatch` errors and `sluice inspect`), so callers match on the
//! variant and print the text, never the other way round.

use crate::types::TimestampMs;

use super::file_header::FILE_HEADER_LEN;

/// Why a file header (of a `.log`, `.index` or `.timeindex` file) is not valid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FileHeaderError {
    /// Fewer bytes than a file header.
    #[error("file header is {len} bytes, expected {FILE_HEADER_LEN}")]
    Short {
        /// Bytes there are.
        len: usize,
    },
    /// The header checksum does not match.
    #[error("file header checksum mismatch")]
    Checksum,
    /// The magic is not the one expected for this kind of file.
    #[error(
        "bad magic {:?}, expected {:?}",
        String::from_utf8_lossy(found),
        String::from_utf8_lossy(expected)
    )]
    BadMagic {
        /// The magic found.
        found: [u8; 8],
        /// The magic expected.
        expected: [u8; 8],
    },
    /// A format version this reader does not know.
    #[error("unsupported format version {0}")]
    UnsupportedVersion(u16),
    /// The entry size field differs from the kind of file.
    #[error("entry size {found}, expected {expected}")]
    EntrySize {
        /// The entry size found.
        found: u16,
        /// The entry size expected.
        expected: u16,
    },
}

/// Why a record of a batch is malformed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// A record's fields do not parse or do not fill its length (at a byte of the batch).
    #[error("malformed record at batch byte {at}")]
    Malformed {
        /// Byte position in the batch where the record starts.
        at: usize,
    },
    /// Bytes are left in the batch after its last record.
    #[error("{len} bytes after the last record")]
    TrailingBytes {
        /// How many.
        len: usize,
    },
}

/// Why a batch is not valid: its header, its checksums, its length or one of its records.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// Fewer bytes than a batch header.
    #[error("short batch header")]
    Short {
        /// Bytes there are.
        len: usize,
    },
    /// The header checksum does not match (checked before any other field is trusted).
    #[error("batch header checksum mismatch")]
    HeaderCrc {
        /// The checksum stored in the header.
        stored: u32,
        /// The checksum of the header's bytes.
        computed: u32,
    },
    /// Not a batch magic this reader knows.
    #[error("bad batch magic {0:#010x}")]
    BadMagic(u32),
    /// A batch version this reader does not know.
    #[error("unsupported batch version {0}")]
    UnsupportedVersion(u8),
    /// Reserved attribute bits or a compression codec are set.
    #[error("unsupported attributes {0:#04x}")]
    UnsupportedAttributes(u8),
    /// `batch_len` is below the header's length.
    #[error("batch length {0} is below the header length")]
    LengthBelowHeader(u32),
    /// `batch_len` is above the limit.
    #[error("batch length {len} exceeds the limit of {max}")]
    LengthOverLimit {
        /// The length field.
        len: u32,
        /// The limit (`batch_bytes_max`).
        max: u32,
    },
    /// `record_count` is 0.
    #[error("batch has no records")]
    NoRecords,
    /// `record_count` records cannot fit in the batch (each takes at least 5 bytes).
    #[error("record count {count} does not fit in {len} bytes")]
    CountDoesNotFit {
        /// The record count field.
        count: u32,
        /// The batch length field.
        len: u32,
    },
    /// `base_offset + record_count` overflows.
    #[error("offsets overflow")]
    OffsetOverflow,
    /// The length field differs from the bytes given for one whole batch.
    #[error("batch length field says {stated} bytes but {given} were given")]
    LengthMismatch {
        /// The length field.
        stated: u32,
        /// Bytes given.
        given: usize,
    },
    /// The records checksum does not match.
    #[error("records checksum mismatch")]
    RecordsCrc {
        /// The checksum stored in the header.
        stored: u32,
        /// The checksum of the records' bytes.
        computed: u32,
    },
    /// A record is malformed.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// A record carries more headers than allowed.
    #[error("record {record} has {count} headers, more than the limit of {max}")]
    TooManyHeaders {
        /// Index of the record in the batch.
        record: u32,
        /// Its header count.
        count: u64,
        /// The limit.
        max: usize,
    },
    /// Fewer bytes than a Kafka batch header (or its length field).
    #[error("kafka record batch is {len} bytes, too short for its header")]
    KafkaTooShort {
        /// Bytes there are.
        len: usize,
    },
    /// A Kafka batch's `batchLength` does not match the bytes it came in.
    #[error("kafka batchLength {stated} does not match the {given} bytes given")]
    KafkaLength {
        /// The `batchLength` field.
        stated: i32,
        /// Bytes given from the batch's start.
        given: usize,
    },
    /// Not a record batch v2 (magic 0 and 1 are the message sets of Kafka before 0.11).
    #[error("kafka record batch magic {0} is not served (only magic 2)")]
    KafkaMagic(i8),
    /// The CRC-32C of a Kafka batch does not match.
    #[error(
        "kafka record batch CRC-32C mismatch (stored {stored:#010x}, computed {computed:#010x})"
    )]
    KafkaCrc {
        /// The `crc` field.
        stored: u32,
        /// The CRC-32C of the bytes.
        computed: u32,
    },
    /// A transactional batch: transactions are not served.
    #[error("transactional batches are not served")]
    Transactional,
    /// A control batch (transaction markers): not accepted from clients.
    #[error("control batches are not accepted")]
    Control,
    /// `lastOffsetDelta` is not `recordCount - 1`.
    #[error("kafka lastOffsetDelta {last_offset_delta} with {count} records")]
    KafkaLastOffsetDelta {
        /// The `lastOffsetDelta` field.
        last_offset_delta: i32,
        /// The `recordCount` field.
        count: i32,
    },
    /// A record's `offsetDelta` is not its position in the batch.
    #[error("record {record} has offsetDelta {found}")]
    KafkaOffsetDelta {
        /// Index of the record.
        record: u32,
        /// Its `offsetDelta`.
        found: i32,
    },
    /// The records of a compressed batch do not decompress.
    #[error("{codec} records do not decompress: {reason}")]
    Decompress {
        /// The codec.
        codec: &'static str,
        /// What the decoder said.
        reason: String,
    },
    /// The records of a compressed batch decompress to more than the limit.
    #[error("records decompress to more than {max} bytes")]
    DecompressedTooLarge {
        /// The limit.
        max: usize,
    },
    /// The header of a version 2 batch and the Kafka batch it holds disagree.
    #[error("batch header and its kafka record batch disagree on {field}")]
    EnvelopeMismatch {
        /// The field.
        field: &'static str,
    },
    /// The max timestamp field differs from the largest record timestamp.
    #[error("max timestamp field {field} differs from the records' {records}")]
    MaxTimestamp {
        /// The header's field.
        field: TimestampMs,
        /// The largest timestamp of the records.
        records: TimestampMs,
    },
}

/// The text of a record error, for callers that carry reasons as strings (a wire error).
impl From<RecordError> for String {
    fn from(e: RecordError) -> String {
        e.to_string()
    }
}

/// The text of a batch error, for callers that carry reasons as strings (a wire error).
impl From<BatchError> for String {
    fn from(e: BatchError) -> String {
        e.to_string()
    }
}

/// The text of a file header error, for callers that carry reasons as strings.
impl From<FileHeaderError> for String {
    fn from(e: FileHeaderError) -> String {
        e.to_string()
    }
}
