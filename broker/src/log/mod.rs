//! Storage: a partition is an append-only list of segments on disk.
//!
//! CONTRACT SKELETON — the bodies are filled in by the log work; the signatures are what the
//! API layer (`crate::api`) and the catalog (`crate::catalog`) call.

use std::path::Path;

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
    #[error("producer {producer_id} epoch {epoch} is older than the current {current}")]
    InvalidProducerEpoch {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    #[error("unsupported record batch: {0}")]
    Unsupported(String),
    #[error("storage error: {0}")]
    Io(#[from] std::io::Error),
}

/// A read from a partition.
#[derive(Debug, Clone)]
pub struct ReadSlice {
    /// Whole record batches, starting with the one that holds the fetch offset.
    pub records: Bytes,
    pub high_watermark: i64,
    pub log_start_offset: i64,
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

/// One partition's log. Safe to share across tasks (`Arc<PartitionLog>`); every method takes `&self`.
#[derive(Debug)]
pub struct PartitionLog {
    _private: (),
}

impl PartitionLog {
    /// Opens (creating if missing) the partition directory and recovers it.
    pub fn open(dir: &Path, config: LogConfig) -> Result<PartitionLog, LogError> {
        let _ = (dir, config);
        todo!()
    }
    /// Validates and appends one or more v2 record batches exactly as received in a Produce request.
    pub fn append(&self, records: Bytes, now_ms: i64) -> Result<AppendOutcome, AppendError> {
        let _ = (records, now_ms);
        todo!()
    }
    /// Resolves once everything up to and including `offset` is fsynced (group commit).
    pub async fn wait_durable(&self, offset: i64) -> Result<(), LogError> {
        let _ = offset;
        todo!()
    }
    /// Whole batches from the one holding `offset`, up to `max_bytes` (at least one batch when
    /// `min_one_batch`, even if larger).
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<ReadSlice, LogError> {
        let _ = (offset, max_bytes, min_one_batch);
        todo!()
    }
    /// A receiver that changes whenever the high watermark moves (fetch long-poll).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<i64> {
        todo!()
    }
    pub fn high_watermark(&self) -> i64 {
        todo!()
    }
    pub fn log_start_offset(&self) -> i64 {
        todo!()
    }
    /// The first offset whose batch max timestamp is >= `timestamp`, with that timestamp.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(i64, i64)>, LogError> {
        let _ = timestamp;
        todo!()
    }
    /// The largest timestamp in the log and the offset carrying it (ListOffsets -3).
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        todo!()
    }
    /// DeleteRecords: moves the log start offset up to `offset` (-1 = high watermark).
    pub fn delete_records_before(&self, offset: i64) -> Result<i64, LogError> {
        let _ = offset;
        todo!()
    }
    /// Deletes segments past `retention.ms` / `retention.bytes`; returns how many went.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<usize, LogError> {
        let _ = now_ms;
        todo!()
    }
    pub fn update_config(&self, config: LogConfig) {
        let _ = config;
        todo!()
    }
    /// Flushes and writes the clean-shutdown marker.
    pub fn close(&self) -> Result<(), LogError> {
        todo!()
    }
}
