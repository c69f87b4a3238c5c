//! Records inside a batch: checking their framing, decoding them (transforms read them), and
//! building new batches (transforms write them).

use super::batch::{self, BatchError, BatchHeader, HEADER_LEN};
use super::compression::{self, Compression};
use super::varint::{read_varint, read_varlong, write_varlong};

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

/// Producer fields of a new batch; the defaults are a non-idempotent batch at offset 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMeta {
    pub base_offset: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
}

impl Default for BatchMeta {
    fn default() -> BatchMeta {
        BatchMeta {
            base_offset: 0,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
        }
    }
}

/// One record's fields, borrowed from the (decompressed) records area.
struct RawRecord<'a> {
    timestamp_delta: i64,
    offset_delta: i32,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    headers: Vec<(&'a [u8], Option<&'a [u8]>)>,
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if buf.len() < n {
        return None;
    }
    let (head, tail) = buf.split_at(n);
    *buf = tail;
    Some(head)
}

fn opt_bytes<'a>(buf: &mut &'a [u8]) -> Option<Option<&'a [u8]>> {
    match read_varint(buf)? {
        -1 => Some(None),
        n if n < 0 => None,
        n => take(buf, n as usize).map(Some),
    }
}

/// Parses one record from the front of `buf`.
fn next_record<'a>(buf: &mut &'a [u8]) -> Result<RawRecord<'a>, String> {
    let len = read_varint(buf).ok_or("record length is not a varint")?;
    let len = usize::try_from(len).map_err(|_| format!("record length {len} is negative"))?;
    let mut body =
        take(buf, len).ok_or_else(|| format!("record of {len} bytes overruns the batch"))?;
    let b = &mut body;
    take(b, 1).ok_or("record has no attributes")?;
    let timestamp_delta = read_varlong(b).ok_or("bad timestampDelta")?;
    let offset_delta = read_varint(b).ok_or("bad offsetDelta")?;
    let key = opt_bytes(b).ok_or("bad key")?;
    let value = opt_bytes(b).ok_or("bad value")?;
    let count = read_varint(b).ok_or("bad header count")?;
    if count < 0 || count as usize > b.len() {
        return Err(format!("header count {count} is impossible"));
    }
    let mut headers = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let key_len = read_varint(b).ok_or("bad header key length")?;
        let key_len = usize::try_from(key_len).map_err(|_| "negative header key length")?;
        let key = take(b, key_len).ok_or("header key overruns the record")?;
        let value = opt_bytes(b).ok_or("bad header value")?;
        headers.push((key, value));
    }
    if !b.is_empty() {
        return Err(format!("record has {} bytes past its last header", b.len()));
    }
    Ok(RawRecord {
        timestamp_delta,
        offset_delta,
        key,
        value,
        headers,
    })
}

/// Checks that `records` holds exactly `count` well-framed records with offset deltas 0..count.
pub fn check_records(mut records: &[u8], count: i32) -> Result<(), String> {
    for expected in 0..count {
        let record = next_record(&mut records)?;
        if record.offset_delta != expected {
            return Err(format!(
                "record {expected} has offsetDelta {}",
                record.offset_delta
            ));
        }
    }
    if !records.is_empty() {
        return Err(format!(
            "{} bytes follow the {count} records the header announces",
            records.len()
        ));
    }
    Ok(())
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
    let mut rest = data;
    let mut out = Vec::with_capacity(header.records_count.clamp(0, 1 << 16) as usize);
    for _ in 0..header.records_count {
        let r = next_record(&mut rest).map_err(BatchError::Corrupt)?;
        out.push(RecordView {
            offset: header.base_offset + i64::from(r.offset_delta),
            timestamp: if header.has_log_append_time() {
                header.max_timestamp
            } else {
                header.base_timestamp.saturating_add(r.timestamp_delta)
            },
            key: r.key.map(<[u8]>::to_vec),
            value: r.value.map(<[u8]>::to_vec),
            headers: r
                .headers
                .into_iter()
                .map(|(k, v)| {
                    (
                        String::from_utf8_lossy(k).into_owned(),
                        v.map(<[u8]>::to_vec),
                    )
                })
                .collect(),
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

fn corrupt(what: &str) -> BatchError {
    BatchError::Corrupt(format!("bad {what} in a stored record"))
}

/// Indexes (in batch order) of the records of a validated batch that have no key: a compacted
/// topic refuses them.
pub fn keyless_records(batch_bytes: &[u8], limit: usize) -> Result<Vec<i32>, BatchError> {
    let header = batch::check_frame(batch_bytes)?;
    let area = records_area(batch_bytes, &header, limit)?;
    Ok(stored_records(&header, &area)?
        .iter()
        .enumerate()
        .filter(|(_, r)| r.key.is_none())
        .map(|(i, _)| i as i32)
        .collect())
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

fn put_opt(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => write_varlong(out, -1),
        Some(b) => {
            write_varlong(out, b.len() as i64);
            out.extend_from_slice(b);
        }
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
    let mut one = Vec::new();
    for (i, r) in records.iter().enumerate() {
        one.clear();
        one.push(0); // attributes: unused in v2
        write_varlong(&mut one, r.timestamp - base_timestamp);
        write_varlong(&mut one, i as i64);
        put_opt(&mut one, r.key.as_deref());
        put_opt(&mut one, r.value.as_deref());
        write_varlong(&mut one, r.headers.len() as i64);
        for (k, v) in &r.headers {
            write_varlong(&mut one, k.len() as i64);
            one.extend_from_slice(k.as_bytes());
            put_opt(&mut one, v.as_deref());
        }
        write_varlong(&mut body, one.len() as i64);
        body.extend_from_slice(&one);
    }
    let payload = compression::compress(codec, &body);
    let count = records.len() as i32;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&meta.base_offset.to_be_bytes());
    out.extend_from_slice(&((HEADER_LEN - 12 + payload.len()) as i32).to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes()); // partition leader epoch
    out.push(2); // magic
    out.extend_from_slice(&0u32.to_be_bytes()); // crc, filled below
    out.extend_from_slice(&codec.id().to_be_bytes());
    out.extend_from_slice(&(count - 1).to_be_bytes());
    out.extend_from_slice(&base_timestamp.to_be_bytes());
    out.extend_from_slice(&max_timestamp.to_be_bytes());
    out.extend_from_slice(&meta.producer_id.to_be_bytes());
    out.extend_from_slice(&meta.producer_epoch.to_be_bytes());
    out.extend_from_slice(&meta.base_sequence.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(&payload);
    let crc = batch::compute_crc(&out);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
