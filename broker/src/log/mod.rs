//! Storage: a partition is an append-only list of segments on disk.
//!
//! - [`partition`]: [`PartitionLog`], the partition's segments, appends, reads, retention,
//!   recovery and group-committed fsyncs.
//! - [`segment`]: one `<base>.log` with its `.index` and `.timeindex`.
//! - [`index_file`]: the memory-mapped entry files behind both indexes.
//! - [`producer_state`]: idempotent-producer sequence checks and open transactions.
//! - [`aborted`]: the aborted-transaction index read_committed fetches answer from.
//! - [`cleaner`]: log compaction: the background cleaner, its key map and the segment swap.

mod aborted;
pub mod cleaner;
mod index_file;
pub mod partition;
mod producer_state;
mod segment;

use bytes::Bytes;

/// How durable an acknowledged `acks=-1` write is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FlushPolicy {
    /// `acks=-1` is answered only after the data is fsynced (group commit per partition).
    Fsync,
    /// Kafka's default: acknowledged once in the page cache; the OS flushes later.
    PageCache,
}

/// Which timestamp a stored batch carries (`message.timestamp.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// Per-partition settings, derived from the topic's configs.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes`: roll to a new segment once the active one reaches this size.
    pub segment_bytes: u64,
    /// `segment.ms`: roll once the active segment's first batch is this old.
    pub segment_ms: i64,
    /// `retention.ms`: delete segments whose newest record is older; -1 keeps forever.
    pub retention_ms: i64,
    /// `retention.bytes`: delete oldest segments while the partition is larger; -1 unlimited.
    pub retention_bytes: i64,
    /// `index.interval.bytes`: bytes of log between two offset-index entries.
    pub index_interval_bytes: u32,
    /// `segment.index.bytes`: the most an index file may hold; a full index rolls the segment.
    pub segment_index_bytes: u32,
    /// `max.message.bytes`: the largest batch accepted.
    pub max_message_bytes: u32,
    /// `message.timestamp.type`.
    pub timestamp_type: TimestampType,
    /// Durability of `acks=-1`.
    pub flush: FlushPolicy,
    /// `cleanup.policy`: whether old segments are deleted, compacted, or both.
    pub cleanup_policy: CleanupPolicy,
    /// `min.compaction.lag.ms`: a record stays uncompacted at least this long.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: a dirty segment older than this is cleaned whatever the ratio.
    pub max_compaction_lag_ms: i64,
    /// `min.cleanable.dirty.ratio`: clean once dirty bytes are this share of the cleanable log.
    pub min_cleanable_dirty_ratio: f64,
    /// `delete.retention.ms`: how long a tombstone outlives the cleaning that first saw it.
    pub delete_retention_ms: i64,
}

impl LogConfig {
    /// How old the active segment may grow before the next append rolls it: `segment.ms`, or
    /// on a compacted topic `max.compaction.lag.ms` when that is sooner, since the cleaner never
    /// touches the active segment and a record in it could otherwise stay dirty forever
    /// (KIP-354).
    pub fn roll_ms(&self) -> i64 {
        if self.cleanup_policy.compact && self.max_compaction_lag_ms > 0 {
            self.segment_ms.min(self.max_compaction_lag_ms)
        } else {
            self.segment_ms
        }
    }
}

/// `cleanup.policy`: `delete`, `compact` or `compact,delete`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupPolicy {
    /// Segments past `retention.ms` / `retention.bytes` are deleted.
    pub delete: bool,
    /// The cleaner keeps only the latest record per key.
    pub compact: bool,
}

impl CleanupPolicy {
    /// Kafka's default.
    pub const DELETE: CleanupPolicy = CleanupPolicy {
        delete: true,
        compact: false,
    };
    /// Kafka's list value, in the canonical order.
    pub fn name(self) -> &'static str {
        match (self.compact, self.delete) {
            (true, true) => "compact,delete",
            (true, false) => "compact",
            _ => "delete",
        }
    }
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The broker's time stamped on the batch, or -1 under `CreateTime`.
    pub log_append_time: i64,
    pub log_start_offset: i64,
    /// The batch was a retry of one already stored (idempotent producer); nothing was written
    /// and the offsets are those of the stored copy.
    pub duplicate: bool,
}

/// Why an append was refused. Nothing of the request was written when one of these is returned.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("unknown topic or partition {0}")]
    UnknownTopicOrPartition(String),
    /// A record's timestamp is outside the topic's bounds (KIP-937).
    #[error("{message}")]
    InvalidTimestamp { record_index: i32, message: String },
    #[error("corrupt record batch: {0}")]
    CorruptMessage(String),
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    #[error("batch of {size} bytes is larger than max.message.bytes {max}")]
    MessageTooLarge { size: usize, max: u32 },
    #[error(
        "out of order sequence number for producer {producer_id}: expected {expected}, got {got}"
    )]
    OutOfOrderSequence {
        producer_id: i64,
        expected: i32,
        got: i32,
    },
    /// The transaction coordinator refused a transactional write (KIP-890): `code` is the Kafka
    /// error code to answer.
    #[error("{message}")]
    TransactionRejected { code: i16, message: String },
    /// A producer broke the transaction protocol (e.g. a plain batch inside its transaction).
    #[error("invalid transaction state: {0}")]
    InvalidTxnState(String),
    #[error("producer {producer_id} epoch {epoch} is older than the current {current}")]
    InvalidProducerEpoch {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    #[error("unsupported record batch: {0}")]
    Unsupported(String),
    /// A compacted topic refuses records without a key; `records` are their indexes within the
    /// request's records (KIP-467 `batch_index`).
    #[error("compacted topic cannot accept records without a key ({} of them)", records.len())]
    KeylessRecords { records: Vec<i32> },
    #[error("storage error: {0}")]
    Io(#[from] std::io::Error),
}

/// The Kafka meaning of a refused batch: framing damage is CORRUPT_MESSAGE, the rest INVALID_RECORD
/// or MESSAGE_TOO_LARGE.
impl From<crate::records::BatchError> for AppendError {
    fn from(e: crate::records::BatchError) -> AppendError {
        use crate::records::BatchError;
        match e {
            BatchError::Corrupt(m) => AppendError::CorruptMessage(m),
            BatchError::Invalid(m) => AppendError::InvalidRecord(m),
            BatchError::Unsupported(m) => AppendError::Unsupported(m),
            BatchError::TooLarge { size, max } => AppendError::MessageTooLarge { size, max },
        }
    }
}

impl From<LogError> for AppendError {
    fn from(e: LogError) -> AppendError {
        match e {
            LogError::Io(e) => AppendError::Io(e),
            other => AppendError::Io(std::io::Error::other(other.to_string())),
        }
    }
}

/// A read from a partition.
#[derive(Debug, Clone)]
pub struct ReadSlice {
    /// Whole record batches, starting with the one that holds the fetch offset.
    pub records: Bytes,
    pub high_watermark: i64,
    /// No record at or past it belongs to an open transaction.
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    /// For a read_committed read: the aborted transactions with records in `records`.
    pub aborted: Vec<AbortedTxn>,
}

/// Storage failures other than a refused append.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("offset {offset} is out of range [{log_start_offset}, {high_watermark}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        high_watermark: i64,
    },
    #[error("storage error: {0}")]
    Io(#[from] std::io::Error),
    #[error("corrupt log: {0}")]
    Corrupt(String),
}

pub use aborted::AbortedTxn;
pub use partition::PartitionLog;
pub use producer_state::ProducerView;
