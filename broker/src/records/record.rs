//! Records inside a batch: checking their framing, decoding them (transforms read them), and
//! building new batches (transforms write them).

use super::batch::{self, BatchError, BatchHeader, HEADER_LEN};
pub use super::build::BatchMeta;
use super::build::{build_encoded, EncodedRecords};
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

/// One record's fields, borrowed from an uncompressed records area: what the host reads on its
/// slow paths (re-partitioning outputs by key, dead-letter copies, narrowing failures) without
/// copying or allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodedRecord<'a> {
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: HeaderViews<'a>,
    /// The whole record as encoded, length prefix included: a sub-range of a records area is
    /// the concatenation of such slices.
    pub raw: &'a [u8],
}

/// A record's headers, `(key, value)` views parsed on demand from bytes whose framing was
/// already checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderViews<'a> {
    raw: &'a [u8],
    remaining: usize,
}

impl HeaderViews<'_> {
    /// How many headers are left to iterate.
    pub fn count_left(&self) -> usize {
        self.remaining
    }
}

impl<'a> Iterator for HeaderViews<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        // The framing was checked when the record was parsed, so `None` here cannot happen;
        // stopping early is the total answer if it ever did.
        let header = next_header(&mut self.raw);
        self.remaining = if header.is_some() {
            self.remaining - 1
        } else {
            0
        };
        header
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for HeaderViews<'_> {}

/// Iterates the records of an uncompressed records area, front to back, without allocating.
/// After an error it yields nothing more.
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
    type Item = Result<EncodedRecord<'a>, String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let record = next_record(&mut self.rest);
        if record.is_err() {
            self.rest = &[];
        }
        Some(record)
    }
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

fn next_header<'a>(buf: &mut &'a [u8]) -> Option<(&'a [u8], Option<&'a [u8]>)> {
    let key_len = usize::try_from(read_varint(buf)?).ok()?;
    let key = take(buf, key_len)?;
    let value = opt_bytes(buf)?;
    Some((key, value))
}

/// Parses one record from the front of `buf`, checking its whole framing.
fn next_record<'a>(buf: &mut &'a [u8]) -> Result<EncodedRecord<'a>, String> {
    let whole = *buf;
    let len = read_varint(buf).ok_or("record length is not a varint")?;
    let len = usize::try_from(len).map_err(|_| format!("record length {len} is negative"))?;
    let mut body =
        take(buf, len).ok_or_else(|| format!("record of {len} bytes overruns the batch"))?;
    let raw = &whole[..whole.len() - buf.len()];
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
    let headers = HeaderViews {
        raw: b,
        remaining: count as usize,
    };
    for _ in 0..count {
        next_header(b).ok_or("a header overruns the record")?;
    }
    if !b.is_empty() {
        return Err(format!("record has {} bytes past its last header", b.len()));
    }
    Ok(EncodedRecord {
        timestamp_delta,
        offset_delta,
        key,
        value,
        headers,
        raw,
    })
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
    let mut iter = RecordIter::new(&data);
    let mut out = Vec::with_capacity(header.records_count.clamp(0, 1 << 16) as usize);
    for _ in 0..header.records_count {
        let r = iter
            .next()
            .unwrap_or_else(|| Err("fewer records than the header announces".into()))
            .map_err(BatchError::Corrupt)?;
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
                .map(|(k, v)| {
                    (
                        String::from_utf8_lossy(k).into_owned(),
                        v.map(<[u8]>::to_vec),
                    )
                })
                .collect(),
        });
    }
    Ok((header, out))
}

fn varint_len(value: i64) -> usize {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn opt_len(b: Option<&[u8]>) -> usize {
    b.map_or(1, |b| varint_len(b.len() as i64) + b.len())
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

/// Appends one record in Kafka's v2 record format, length prefix first (sized up front, so no
/// scratch buffer).
pub fn write_record<'h, H>(
    out: &mut Vec<u8>,
    offset_delta: i32,
    timestamp_delta: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: H,
) where
    H: Iterator<Item = (&'h [u8], Option<&'h [u8]>)> + Clone,
{
    let mut header_count = 0usize;
    let mut headers_len = 0usize;
    for (k, v) in headers.clone() {
        header_count += 1;
        headers_len += varint_len(k.len() as i64) + k.len() + opt_len(v);
    }
    let body = 1
        + varint_len(timestamp_delta)
        + varint_len(i64::from(offset_delta))
        + opt_len(key)
        + opt_len(value)
        + varint_len(header_count as i64)
        + headers_len;
    out.reserve(varint_len(body as i64) + body);
    write_varlong(out, body as i64);
    out.push(0); // attributes: unused in v2
    write_varlong(out, timestamp_delta);
    write_varlong(out, i64::from(offset_delta));
    put_opt(out, key);
    put_opt(out, value);
    write_varlong(out, header_count as i64);
    for (k, v) in headers {
        write_varlong(out, k.len() as i64);
        out.extend_from_slice(k);
        put_opt(out, v);
    }
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
