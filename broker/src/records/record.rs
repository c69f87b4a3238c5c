//! Records inside a batch: checking their framing, decoding them (transforms read them), and
//! building new batches (transforms write them).

use super::batch::{self, BatchError, BatchHeader, HEADER_LEN};
pub use super::build::BatchMeta;
use super::build::{build_encoded, EncodedRecords};
use super::compression::{self, Compression};
use sluice_sdk::codec::records::{next_record, read_varint, read_varlong, write_varlong};
pub use sluice_sdk::codec::records::{write_record, RawRecord};

/// A decoded record with absolute offset and timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordView {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// A record to put in a new batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewRecord {
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl NewRecord {
    /// An owned copy of an encoded record, stamped `timestamp` (its batch's base plus its delta).
    pub fn from_raw(timestamp: i64, r: &RawRecord<'_>) -> NewRecord {
        NewRecord {
            timestamp,
            key: r.key.map(<[u8]>::to_vec),
            value: r.value.map(<[u8]>::to_vec),
            headers: r
                .headers
                .iter_bytes()
                .map(|(k, v)| {
                    (
                        String::from_utf8_lossy(k).into_owned(),
                        v.map(<[u8]>::to_vec),
                    )
                })
                .collect(),
        }
    }
}

/// Iterates the records of an uncompressed records area, front to back, without copying or
/// allocating: what the host reads on its slow paths (re-partitioning outputs by key,
/// dead-letter copies, narrowing failures). After an error it yields nothing more. The record
/// format itself is the guest ABI's (`sluice_sdk::codec::records`), one implementation for both
/// sides.
#[derive(Debug, Clone)]
pub struct RecordIter<'a> {
    rest: &'a [u8],
}

impl<'a> RecordIter<'a> {
    pub fn new(records: &'a [u8]) -> RecordIter<'a> {
        RecordIter { rest: records }
    }
    /// The bytes not yet iterated.
    pub fn rest(&self) -> &'a [u8] {
        self.rest
    }
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<RawRecord<'a>, String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let record = next_record(&mut self.rest).map_err(|e| e.0);
        if record.is_err() {
            self.rest = &[];
        }
        Some(record)
    }
}

/// What [`scan_records`] learnt of a well-framed records area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordsSummary {
    /// The largest timestampDelta (0 for no records).
    pub max_timestamp_delta: i64,
}

/// Checks that `records` holds exactly `count` well-framed records with offset deltas 0..count.
pub fn scan_records(records: &[u8], count: i32) -> Result<RecordsSummary, String> {
    let mut iter = RecordIter::new(records);
    let mut max_timestamp_delta = None::<i64>;
    for expected in 0..count {
        let record = iter.next().unwrap_or_else(|| {
            Err(format!(
                "{expected} records where the header announces {count}"
            ))
        })?;
        if record.offset_delta != expected {
            return Err(format!(
                "record {expected} has offsetDelta {}",
                record.offset_delta
            ));
        }
        max_timestamp_delta = Some(
            max_timestamp_delta.map_or(record.timestamp_delta, |m| m.max(record.timestamp_delta)),
        );
    }
    if !iter.rest().is_empty() {
        return Err(format!(
            "{} bytes follow the {count} records the header announces",
            iter.rest().len()
        ));
    }
    Ok(RecordsSummary {
        max_timestamp_delta: max_timestamp_delta.unwrap_or(0),
    })
}

/// Checks that `records` holds exactly `count` well-framed records with offset deltas 0..count.
pub fn check_records(records: &[u8], count: i32) -> Result<(), String> {
    scan_records(records, count).map(|_| ())
}

/// Decodes every record of a stored batch (decompressing it, bounded by `limit` bytes).
pub fn decode_records(
    batch_bytes: &[u8],
    limit: usize,
) -> Result<(BatchHeader, Vec<RecordView>), BatchError> {
    let header = batch::check_frame(batch_bytes)?;
    let codec = header
        .compression()
        .ok_or_else(|| BatchError::Invalid("unknown compression codec".into()))?;
    let payload = &batch_bytes[HEADER_LEN..];
    let data = compression::decompress(codec, payload, limit)
        .map_err(|e| BatchError::Corrupt(e.to_string()))?;
    Ok((header, decode_area(&header, &data)?))
}

/// Decodes the records of a batch from its (uncompressed) records area.
pub fn decode_area(header: &BatchHeader, data: &[u8]) -> Result<Vec<RecordView>, BatchError> {
    let mut iter = RecordIter::new(data);
    let mut out = Vec::with_capacity(header.records_count.clamp(0, 1 << 16) as usize);
    for _ in 0..header.records_count {
        let r = iter
            .next()
            .unwrap_or_else(|| Err("fewer records than the header announces".into()))
            .map_err(BatchError::Corrupt)?;
        let timestamp = if header.has_log_append_time() {
            header.max_timestamp
        } else {
            header.base_timestamp.saturating_add(r.timestamp_delta)
        };
        let owned = NewRecord::from_raw(timestamp, &r);
        out.push(RecordView {
            offset: header.base_offset + i64::from(r.offset_delta),
            timestamp,
            key: owned.key,
            value: owned.value,
            headers: owned.headers,
        });
    }
    Ok(out)
}

/// A record of a stored batch, borrowed from its decompressed records area: what the log
/// cleaner reads and rewrites without decoding headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredRecord<'a> {
    pub offset_delta: i32,
    /// Absolute timestamp: baseTimestamp + timestampDelta.
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// The header count and headers, exactly as encoded.
    headers: &'a [u8],
}

/// The records area of a batch, decompressed (bounded by `limit` bytes) when needed.
pub fn records_area<'a>(
    batch_bytes: &'a [u8],
    header: &BatchHeader,
    limit: usize,
) -> Result<std::borrow::Cow<'a, [u8]>, BatchError> {
    let codec = header
        .compression()
        .ok_or_else(|| BatchError::Invalid("unknown compression codec".into()))?;
    let payload = batch_bytes
        .get(HEADER_LEN..)
        .ok_or_else(|| BatchError::Corrupt("batch shorter than its header".into()))?;
    match codec {
        Compression::None => Ok(std::borrow::Cow::Borrowed(payload)),
        codec => compression::decompress(codec, payload, limit)
            .map(std::borrow::Cow::Owned)
            .map_err(|e| BatchError::Corrupt(e.to_string())),
    }
}

/// Splits a records area into its `header.records_count` records.
pub fn stored_records<'a>(
    header: &BatchHeader,
    mut area: &'a [u8],
) -> Result<Vec<StoredRecord<'a>>, BatchError> {
    let mut out = Vec::with_capacity(header.records_count.clamp(0, 1 << 16) as usize);
    for _ in 0..header.records_count {
        let len = read_varint(&mut area).ok_or_else(|| corrupt("record length"))?;
        let len = usize::try_from(len).map_err(|_| corrupt("record length"))?;
        let mut body = take(&mut area, len).ok_or_else(|| corrupt("record overruns the batch"))?;
        let b = &mut body;
        take(b, 1).ok_or_else(|| corrupt("record attributes"))?;
        let timestamp_delta = read_varlong(b).ok_or_else(|| corrupt("timestampDelta"))?;
        let offset_delta = read_varint(b).ok_or_else(|| corrupt("offsetDelta"))?;
        let key = opt_bytes(b).ok_or_else(|| corrupt("key"))?;
        let value = opt_bytes(b).ok_or_else(|| corrupt("value"))?;
        out.push(StoredRecord {
            offset_delta,
            timestamp: header.base_timestamp.saturating_add(timestamp_delta),
            key,
            value,
            headers: body,
        });
    }
    Ok(out)
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if buf.len() < n {
        return None;
    }
    let (head, tail) = buf.split_at(n);
    *buf = tail;
    Some(head)
}

fn put_opt(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => write_varlong(out, -1),
        Some(b) => {
            write_varlong(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}

/// A nullable byte string: varint length (-1 for null), then the bytes.
fn opt_bytes<'a>(buf: &mut &'a [u8]) -> Option<Option<&'a [u8]>> {
    match read_varint(buf)? {
        -1 => Some(None),
        n if n < 0 => None,
        n => take(buf, n as usize).map(Some),
    }
}

fn corrupt(what: &str) -> BatchError {
    BatchError::Corrupt(format!("bad {what} in a stored record"))
}

/// Rebuilds a stored batch holding only `kept` (records of it, in order; possibly none), in the
/// batch's own codec. Base offset, lastOffsetDelta and the producer fields are the original's,
/// so offsets do not move and producer sequences still add up. `delete_horizon` sets the KIP-534
/// horizon (the baseTimestamp then carries it and record timestamps are re-based on it).
pub fn rebuild_batch(
    original: &BatchHeader,
    kept: &[StoredRecord<'_>],
    delete_horizon: Option<i64>,
) -> Vec<u8> {
    let codec = original.compression().unwrap_or(Compression::None);
    let mut attributes = original.attributes;
    let base_timestamp = match delete_horizon.or(original.delete_horizon()) {
        Some(h) => {
            attributes |= batch::DELETE_HORIZON_BIT;
            h
        }
        None => kept
            .iter()
            .map(|r| r.timestamp)
            .min()
            .unwrap_or(original.base_timestamp),
    };
    let max_timestamp = if original.has_log_append_time() || kept.is_empty() {
        original.max_timestamp
    } else {
        kept.iter()
            .map(|r| r.timestamp)
            .max()
            .unwrap_or(original.max_timestamp)
    };
    let mut body = Vec::new();
    let mut one = Vec::new();
    for r in kept {
        one.clear();
        one.push(0);
        write_varlong(&mut one, r.timestamp.wrapping_sub(base_timestamp));
        write_varlong(&mut one, i64::from(r.offset_delta));
        put_opt(&mut one, r.key);
        put_opt(&mut one, r.value);
        one.extend_from_slice(r.headers);
        write_varlong(&mut body, one.len() as i64);
        body.extend_from_slice(&one);
    }
    let payload = if kept.is_empty() {
        // As Kafka writes an emptied batch: header only, so no codec applies.
        attributes &= !0x07;
        Vec::new()
    } else {
        compression::compress(codec, &body)
    };
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&original.base_offset.to_be_bytes());
    out.extend_from_slice(&((HEADER_LEN - 12 + payload.len()) as i32).to_be_bytes());
    out.extend_from_slice(&original.partition_leader_epoch.to_be_bytes());
    out.push(2);
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&attributes.to_be_bytes());
    out.extend_from_slice(&original.last_offset_delta.to_be_bytes());
    out.extend_from_slice(&base_timestamp.to_be_bytes());
    out.extend_from_slice(&max_timestamp.to_be_bytes());
    out.extend_from_slice(&original.producer_id.to_be_bytes());
    out.extend_from_slice(&original.producer_epoch.to_be_bytes());
    out.extend_from_slice(&original.base_sequence.to_be_bytes());
    out.extend_from_slice(&(kept.len() as i32).to_be_bytes());
    out.extend_from_slice(&payload);
    let crc = batch::compute_crc(&out);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Records with absolute offsets and timestamps, encoded as a records area with deltas from the
/// first record's: how owned records become a guest's input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordsArea {
    pub base_offset: i64,
    pub base_timestamp: i64,
    pub count: u32,
    pub records: Vec<u8>,
}

impl RecordsArea {
    pub fn new() -> RecordsArea {
        RecordsArea::default()
    }

    /// Appends one record; the first one sets the bases. Refused if its offset is more than
    /// `i32::MAX` from the first one's.
    pub fn push<'h, H>(
        &mut self,
        offset: i64,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: H,
    ) -> Result<(), String>
    where
        H: Iterator<Item = (&'h [u8], Option<&'h [u8]>)> + Clone,
    {
        if self.count == 0 {
            self.base_offset = offset;
            self.base_timestamp = timestamp;
        }
        let offset_delta = i32::try_from(offset.wrapping_sub(self.base_offset))
            .map_err(|_| format!("offset {offset} is too far from {}", self.base_offset))?;
        write_record(
            &mut self.records,
            offset_delta,
            timestamp.wrapping_sub(self.base_timestamp),
            key,
            value,
            headers,
        );
        self.count += 1;
        Ok(())
    }
}

/// A v2 batch without records that still carries a producer's id, epoch and sequence (and
/// takes one offset): what is left of a batch every record of which was filtered out, kept so
/// the producer state rebuilt from the log follows the producer (Kafka's cleaner does the same).
pub fn empty_batch(meta: &BatchMeta, timestamp: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN);
    out.extend_from_slice(&meta.base_offset.to_be_bytes());
    out.extend_from_slice(&((HEADER_LEN - batch::LOG_OVERHEAD) as i32).to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes()); // partition leader epoch
    out.push(2); // magic
    out.extend_from_slice(&0u32.to_be_bytes()); // crc, set below
    out.extend_from_slice(&0i16.to_be_bytes()); // attributes
    out.extend_from_slice(&0i32.to_be_bytes()); // lastOffsetDelta
    out.extend_from_slice(&timestamp.to_be_bytes());
    out.extend_from_slice(&timestamp.to_be_bytes());
    out.extend_from_slice(&meta.producer_id.to_be_bytes());
    out.extend_from_slice(&meta.producer_epoch.to_be_bytes());
    out.extend_from_slice(&meta.base_sequence.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes()); // records count
    let crc = batch::compute_crc(&out);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Builds a v2 batch holding `records` (at least one), compressed with `codec`.
pub fn build_batch(records: &[NewRecord], codec: Compression, meta: &BatchMeta) -> Vec<u8> {
    let base_timestamp = records.iter().map(|r| r.timestamp).min().unwrap_or(0);
    let max_timestamp = records.iter().map(|r| r.timestamp).max().unwrap_or(0);
    let mut body = Vec::new();
    for (i, r) in records.iter().enumerate() {
        write_record(
            &mut body,
            i as i32,
            r.timestamp - base_timestamp,
            r.key.as_deref(),
            r.value.as_deref(),
            r.headers.iter().map(|(k, v)| (k.as_bytes(), v.as_deref())),
        );
    }
    build_encoded(
        &EncodedRecords {
            records: &body,
            count: records.len() as i32,
            base_timestamp,
            max_timestamp,
        },
        codec,
        meta,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::codec::records::write_varlong;

    #[test]
    fn records_round_trip_with_nulls_and_headers() {
        let records = vec![
            NewRecord {
                timestamp: 5,
                key: None,
                value: Some(b"v".to_vec()),
                headers: vec![("a".into(), Some(b"1".to_vec())), ("n".into(), None)],
            },
            NewRecord {
                timestamp: 3,
                key: Some(vec![]),
                value: None,
                headers: vec![],
            },
        ];
        for codec in [Compression::None, Compression::Zstd] {
            let meta = BatchMeta {
                base_offset: 40,
                ..BatchMeta::default()
            };
            let bytes = build_batch(&records, codec, &meta);
            let (header, decoded) = decode_records(&bytes, 1 << 20).unwrap();
            assert_eq!(header.records_count, 2);
            assert_eq!(decoded[0].offset, 40);
            assert_eq!(decoded[1].offset, 41);
            assert_eq!(decoded[0].timestamp, 5);
            assert_eq!(decoded[1].timestamp, 3);
            assert_eq!(decoded[0].key, None);
            assert_eq!(decoded[1].key, Some(vec![]));
            assert_eq!(decoded[1].value, None);
            assert_eq!(decoded[0].headers, records[0].headers);
        }
    }

    #[test]
    fn hostile_record_framing_is_an_error() {
        // length claims 100 bytes, only 2 follow
        assert!(check_records(&[0xc8, 0x01, 0, 0], 1).is_err());
        // header count absurd
        let mut r = vec![0u8];
        write_varlong(&mut r, 0);
        write_varlong(&mut r, 0);
        write_varlong(&mut r, -1);
        write_varlong(&mut r, -1);
        write_varlong(&mut r, 1_000_000);
        let mut framed = Vec::new();
        write_varlong(&mut framed, r.len() as i64);
        framed.extend_from_slice(&r);
        assert!(check_records(&framed, 1)
            .unwrap_err()
            .contains("header count"));
        // trailing bytes after the announced records
        assert!(check_records(&[0x00, 0x00], 0).is_err());
    }
}
