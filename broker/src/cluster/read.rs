//! Fetches in cluster mode: batch coordinates from PostgreSQL (cached) and bytes by ranged GETs,
//! with each batch's base offset patched into its header (outside the CRC).
//!
//! Coordinates never change once committed, so they are cached per partition in offset order;
//! a read walks the cached chain from the fetch offset and asks the database only from where the
//! chain ends. Adjacent batches of one object are read with one ranged GET.

use std::collections::{BTreeMap, HashMap};

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use uuid::Uuid;

use super::db::DbError;
use super::node::Cluster;
use super::types::{BatchCoord, PartitionOffsets};
use crate::records::batch::set_base_offset;

/// Coordinates kept per partition; past this the partition's oldest are dropped (a consumer
/// at the tail reads the newest).
const COORDS_PER_PARTITION: usize = 4096;

/// Why a read answered no records.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
    #[error("offset {offset} is outside {log_start_offset}..={high_watermark}")]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        high_watermark: i64,
    },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("cannot read batches from the object store: {0}")]
    Objects(String),
}

/// What a read found.
#[derive(Debug, Clone)]
pub struct Slice {
    /// Whole batches, offsets patched in.
    pub records: Bytes,
    pub offsets: PartitionOffsets,
}

/// Batch coordinates of recent reads, per partition, by base offset.
#[derive(Debug, Default)]
pub struct ReadCache {
    partitions: Mutex<HashMap<(Uuid, i32), BTreeMap<i64, BatchCoord>>>,
}

impl ReadCache {
    /// The cached batches from the one holding `offset`, contiguous, up to `max_bytes` (and at
    /// least one when `at_least_one`); also the offset where the chain stops.
    fn chain(
        &self,
        topic_id: Uuid,
        partition: i32,
        offset: i64,
        max_bytes: usize,
        at_least_one: bool,
    ) -> (Vec<BatchCoord>, i64) {
        let partitions = self.partitions.lock();
        let mut out = Vec::new();
        let mut next = offset;
        let Some(coords) = partitions.get(&(topic_id, partition)) else {
            return (out, next);
        };
        let mut bytes = 0usize;
        while let Some((_, c)) = coords.range(..=next).next_back() {
            if c.last_offset < next {
                break;
            }
            let len = c.byte_length as usize;
            if bytes + len > max_bytes && !(at_least_one && out.is_empty()) {
                break;
            }
            bytes += len;
            next = c.last_offset + 1;
            out.push(c.clone());
        }
        (out, next)
    }

    fn insert(&self, topic_id: Uuid, partition: i32, coords: &[BatchCoord]) {
        let mut partitions = self.partitions.lock();
        let cached = partitions.entry((topic_id, partition)).or_default();
        for c in coords {
            cached.insert(c.base_offset, c.clone());
        }
        while cached.len() > COORDS_PER_PARTITION {
            cached.pop_first();
        }
    }

    /// Forgets a partition's coordinates (its objects were rewritten or it was deleted).
    pub fn forget(&self, topic_id: Uuid, partition: i32) {
        self.partitions.lock().remove(&(topic_id, partition));
    }
}

/// Reads whole batches of `topic_id`/`partition` from `offset`, at most `max_bytes` of them
/// unless `at_least_one` (KIP-74: the first partition with data returns a whole batch even if
/// it is larger, so a big batch never stalls a consumer). At the high watermark: no records.
pub async fn read(
    cluster: &Cluster,
    topic_id: Uuid,
    partition: i32,
    offset: i64,
    max_bytes: usize,
    at_least_one: bool,
) -> Result<Slice, ReadError> {
    let mut offsets = cluster
        .offsets(topic_id, partition)
        .await?
        .ok_or(ReadError::UnknownTopicOrPartition)?;
    if offset < offsets.log_start_offset || offset > offsets.high_watermark {
        // The watch may be behind (a missed notice) or the log start may have moved: ask the
        // database before telling the consumer it is out of range.
        offsets = cluster
            .refresh_offsets(topic_id, partition)
            .await?
            .ok_or(ReadError::UnknownTopicOrPartition)?;
        if offset < offsets.log_start_offset || offset > offsets.high_watermark {
            return Err(ReadError::OffsetOutOfRange {
                offset,
                log_start_offset: offsets.log_start_offset,
                high_watermark: offsets.high_watermark,
            });
        }
    }
    let empty = Slice {
        records: Bytes::new(),
        offsets,
    };
    if offset >= offsets.high_watermark || (max_bytes == 0 && !at_least_one) {
        return Ok(empty);
    }
    let (mut coords, next) =
        cluster
            .reads
            .chain(topic_id, partition, offset, max_bytes, at_least_one);
    let used: usize = coords.iter().map(|c| c.byte_length as usize).sum();
    let room = max_bytes.saturating_sub(used);
    if next < offsets.high_watermark && (room > 0 || coords.is_empty()) {
        let more = cluster
            .db
            .batches_from(topic_id, partition, next, room.max(1) as i64)
            .await?;
        cluster.reads.insert(topic_id, partition, &more);
        let mut bytes = used;
        for c in more {
            let len = c.byte_length as usize;
            if bytes + len > max_bytes && !(at_least_one && coords.is_empty()) {
                break;
            }
            bytes += len;
            coords.push(c);
        }
    }
    if coords.is_empty() {
        return Ok(empty);
    }
    // Every coordinate is of a committed batch, perhaps one committed after the watermark
    // was read: the watermark answered covers every batch answered.
    if let Some(last) = coords.last() {
        offsets.high_watermark = offsets.high_watermark.max(last.last_offset + 1);
    }
    let records = fetch_bytes(cluster, &coords).await?;
    Ok(Slice { records, offsets })
}

/// The batches' bytes, one GET per run of adjacent batches in one object, base offsets patched.
async fn fetch_bytes(cluster: &Cluster, coords: &[BatchCoord]) -> Result<Bytes, ReadError> {
    let total: usize = coords.iter().map(|c| c.byte_length as usize).sum();
    let mut out = BytesMut::with_capacity(total);
    let mut i = 0;
    while i < coords.len() {
        let first = &coords[i];
        let mut end = first.byte_offset + u64::from(first.byte_length);
        let mut j = i + 1;
        while j < coords.len()
            && coords[j].object_key == first.object_key
            && coords[j].byte_offset == end
        {
            end += u64::from(coords[j].byte_length);
            j += 1;
        }
        let bytes = cluster
            .objects
            .get_range(&first.object_key, first.byte_offset..end)
            .await
            .map_err(|e| ReadError::Objects(e.to_string()))?;
        if bytes.len() as u64 != end - first.byte_offset {
            return Err(ReadError::Objects(format!(
                "{} answered {} bytes for {}..{end}",
                first.object_key,
                bytes.len(),
                first.byte_offset
            )));
        }
        let mut at = out.len();
        out.extend_from_slice(&bytes);
        for c in &coords[i..j] {
            let len = c.byte_length as usize;
            // The committed offset goes in the header, outside the CRC: the batch stays valid.
            set_base_offset(&mut out[at..at + len], c.base_offset);
            at += len;
        }
        i = j;
    }
    Ok(out.freeze())
}

/// Most bytes one batch's records inflate to when ListOffsets decodes it.
const DECODE_LIMIT: usize = 256 << 20;

/// ListOffsets by timestamp: `(offset, timestamp)` of the first record at or after `ts`, or
/// `None` when no record is that recent.
pub async fn offset_for_timestamp(
    cluster: &Cluster,
    topic_id: Uuid,
    partition: i32,
    ts: i64,
) -> Result<Option<(i64, i64)>, ReadError> {
    let Some(coord) = cluster
        .db
        .batch_for_timestamp(topic_id, partition, ts)
        .await?
    else {
        return Ok(None);
    };
    let records = records_of(cluster, &coord).await?;
    Ok(records
        .iter()
        .find(|r| r.timestamp >= ts)
        .map(|r| (r.offset, r.timestamp)))
}

/// ListOffsets MAX_TIMESTAMP: `(offset, timestamp)` of the first record with the partition's
/// largest timestamp.
pub async fn max_timestamp(
    cluster: &Cluster,
    topic_id: Uuid,
    partition: i32,
) -> Result<Option<(i64, i64)>, ReadError> {
    let Some(coord) = cluster.db.max_timestamp(topic_id, partition).await? else {
        return Ok(None);
    };
    let records = records_of(cluster, &coord).await?;
    Ok(records
        .iter()
        .find(|r| r.timestamp == coord.max_timestamp)
        .or(records.last())
        .map(|r| (r.offset, r.timestamp)))
}

/// The records of one committed batch, at their offsets.
async fn records_of(
    cluster: &Cluster,
    coord: &BatchCoord,
) -> Result<Vec<crate::records::record::RecordView>, ReadError> {
    let bytes = fetch_bytes(cluster, std::slice::from_ref(coord)).await?;
    crate::records::record::decode_records(&bytes, DECODE_LIMIT)
        .map(|(_, records)| records)
        .map_err(|e| ReadError::Objects(format!("batch in {}: {e}", coord.object_key)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::batch::{self, BatchHeader};
    use crate::records::record::{build_batch, BatchMeta, NewRecord};
    use crate::records::Compression;

    #[test]
    fn a_patched_batch_keeps_its_crc_and_carries_the_committed_offset() {
        let record = NewRecord {
            timestamp: 1,
            key: None,
            value: Some(b"v".to_vec()),
            headers: vec![],
        };
        let mut bytes = build_batch(
            &[record.clone(), record],
            Compression::None,
            &BatchMeta::default(),
        );
        set_base_offset(&mut bytes, 41_000);
        let header = batch::validate(&bytes, 1 << 20).expect("still valid");
        assert_eq!(header.base_offset, 41_000);
        assert_eq!(header.last_offset(), 41_001);
        assert_eq!(BatchHeader::parse(&bytes).map(|h| h.crc), Some(header.crc));
    }

    fn coord(base: i64, last: i64, at: u64, len: u32) -> BatchCoord {
        BatchCoord {
            base_offset: base,
            last_offset: last,
            max_timestamp: 0,
            object_key: "o".into(),
            byte_offset: at,
            byte_length: len,
        }
    }

    #[test]
    fn the_cached_chain_starts_at_the_batch_holding_the_offset_and_stops_at_a_gap() {
        let cache = ReadCache::default();
        let t = Uuid::nil();
        cache.insert(
            t,
            0,
            &[
                coord(0, 4, 0, 10),
                coord(5, 9, 10, 10),
                coord(20, 29, 40, 10),
            ],
        );
        let (chain, next) = cache.chain(t, 0, 7, 1 << 20, true);
        assert_eq!(chain.iter().map(|c| c.base_offset).collect::<Vec<_>>(), [5]);
        assert_eq!(next, 10);
        let (chain, next) = cache.chain(t, 0, 0, 15, false);
        assert_eq!(chain.len(), 1);
        assert_eq!(next, 5);
        // A batch larger than the limit still comes back when it is the first.
        let (chain, _) = cache.chain(t, 0, 0, 3, true);
        assert_eq!(chain.len(), 1);
        let (chain, _) = cache.chain(t, 0, 0, 3, false);
        assert!(chain.is_empty());
    }
}
