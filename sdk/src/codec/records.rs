//! Kafka's v2 record format, as records cross the ABI: zig-zag varints, and one record's
//! framing (`length, attributes, timestampDelta, offsetDelta, key, value, headers`). The broker
//! reads and writes records with this same module (its `records` module builds on it), so the
//! guest and the host cannot disagree on the format.
//!
//! Decoding borrows from the buffer and never allocates or panics: the buffer comes from the
//! other side of a sandbox. Encoding sizes a record first, so it is written in one pass with no
//! scratch buffer.

use super::CodecError;
use crate::record::{Encoded, Header, Headers, Record};

/// Reads a zig-zag varint of at most 10 bytes from the front of `buf`.
pub fn read_varlong(buf: &mut &[u8]) -> Option<i64> {
    // Most fields of a record (attributes aside) are small: one byte, read without the loop.
    if let Some((&byte, rest)) = buf.split_first() {
        if byte < 0x80 {
            *buf = rest;
            let v = u64::from(byte);
            return Some(((v >> 1) as i64) ^ -((v & 1) as i64));
        }
    }
    let mut value: u64 = 0;
    for i in 0..10 {
        let (&byte, rest) = buf.split_first()?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    None
}

/// Reads a varint that must fit in i32.
pub fn read_varint(buf: &mut &[u8]) -> Option<i32> {
    read_varlong(buf).and_then(|v| i32::try_from(v).ok())
}

/// Appends a zig-zag varint.
pub fn write_varlong(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Bytes [`write_varlong`] takes for `value`.
pub fn varlong_len(value: i64) -> usize {
    let v = ((value << 1) ^ (value >> 63)) as u64;
    // 7 bits a byte; 0 still takes one.
    ((64 - v.leading_zeros() as usize).max(1)).div_ceil(7)
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

/// One header from the front of `buf`: key bytes and optional value.
pub(crate) fn next_header<'a>(buf: &mut &'a [u8]) -> Option<(&'a [u8], Option<&'a [u8]>)> {
    let key_len = usize::try_from(read_varint(buf)?).ok()?;
    let key = take(buf, key_len)?;
    Some((key, opt_bytes(buf)?))
}

/// One record's fields as encoded, borrowed from the records area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawRecord<'a> {
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: Headers<'a>,
    /// The whole record as encoded, length prefix included: a sub-range of a records area is
    /// the concatenation of such slices.
    pub raw: &'a [u8],
}

fn bad(what: impl Into<String>) -> CodecError {
    CodecError(what.into())
}

/// Parses the record at the front of `buf`, checking its whole framing.
pub fn next_record<'a>(buf: &mut &'a [u8]) -> Result<RawRecord<'a>, CodecError> {
    let whole = *buf;
    let len = read_varint(buf).ok_or_else(|| bad("record length is not a varint"))?;
    let len = usize::try_from(len).map_err(|_| bad(format!("record length {len} is negative")))?;
    let mut body =
        take(buf, len).ok_or_else(|| bad(format!("record of {len} bytes overruns the batch")))?;
    let raw = &whole[..whole.len() - buf.len()];
    let b = &mut body;
    take(b, 1).ok_or_else(|| bad("record has no attributes"))?;
    let timestamp_delta = read_varlong(b).ok_or_else(|| bad("bad timestampDelta"))?;
    let offset_delta = read_varint(b).ok_or_else(|| bad("bad offsetDelta"))?;
    let key = opt_bytes(b).ok_or_else(|| bad("bad key"))?;
    let value = opt_bytes(b).ok_or_else(|| bad("bad value"))?;
    let count = read_varint(b).ok_or_else(|| bad("bad header count"))?;
    // Each header takes at least two bytes, which bounds a hostile count.
    let count = u32::try_from(count)
        .ok()
        .filter(|&c| c as usize <= b.len() / 2)
        .ok_or_else(|| bad(format!("header count {count} is impossible")))?;
    let headers = Headers::new(b, count);
    for _ in 0..count {
        next_header(b).ok_or_else(|| bad("a header overruns the record"))?;
    }
    if !b.is_empty() {
        return Err(bad(format!(
            "record has {} bytes past its last header",
            b.len()
        )));
    }
    Ok(RawRecord {
        timestamp_delta,
        offset_delta,
        key,
        value,
        headers,
        raw,
    })
}

/// The records of an input batch as [`Record`]s borrowed from the buffer, in order.
#[derive(Debug, Clone)]
pub struct RecordReader<'a> {
    rest: &'a [u8],
    left: u32,
    topic: &'a str,
    partition: i32,
    base_offset: i64,
    base_timestamp: i64,
}

impl<'a> RecordReader<'a> {
    /// Reads `count` records from `records`, which must hold exactly those.
    pub fn new(header: &super::InputHeader<'a>, records: &'a [u8]) -> RecordReader<'a> {
        RecordReader {
            rest: records,
            left: header.record_count,
            topic: header.topic,
            partition: header.partition,
            base_offset: header.base_offset,
            base_timestamp: header.base_timestamp,
        }
    }
}

impl<'a> Iterator for RecordReader<'a> {
    type Item = Result<Record<'a>, CodecError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            if self.rest.is_empty() {
                return None;
            }
            self.rest = &[];
            return Some(Err(CodecError(
                "input buffer has bytes past its last record".into(),
            )));
        }
        self.left -= 1;
        let raw = match next_record(&mut self.rest) {
            Ok(raw) => raw,
            Err(e) => {
                self.left = 0;
                self.rest = &[];
                return Some(Err(e));
            }
        };
        Some(Ok(Record {
            topic: self.topic,
            partition: self.partition,
            offset: self.base_offset.wrapping_add(i64::from(raw.offset_delta)),
            timestamp: self.base_timestamp.wrapping_add(raw.timestamp_delta),
            key: raw.key,
            value: raw.value,
            headers: raw.headers,
            encoded: Encoded {
                bytes: raw.raw,
                offset_delta: raw.offset_delta,
                timestamp_delta: raw.timestamp_delta,
                // Both borrow the same buffer, the value inside the record.
                value_at: raw
                    .value
                    .map_or(0, |v| v.as_ptr() as usize - raw.raw.as_ptr() as usize),
            },
        }))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left as usize + 1))
    }
}

fn opt_len(b: Option<&[u8]>) -> usize {
    b.map_or(1, |b| varlong_len(b.len() as i64) + b.len())
}

fn put_opt(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => out.push(1), // zig-zag -1
        Some(b) => {
            write_varlong(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}

/// Appends one record, length prefix first.
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
    write_record_locating_value(out, offset_delta, timestamp_delta, key, value, headers);
}

/// [`write_record`], returning where in `out` the value's bytes went (`None` for a null
/// value), so a caller can edit them in place instead of building the value elsewhere first.
pub fn write_record_locating_value<'h, H>(
    out: &mut Vec<u8>,
    offset_delta: i32,
    timestamp_delta: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: H,
) -> Option<std::ops::Range<usize>>
where
    H: Iterator<Item = (&'h [u8], Option<&'h [u8]>)> + Clone,
{
    let mut header_count = 0usize;
    let mut headers_len = 0usize;
    for (k, v) in headers.clone() {
        header_count += 1;
        headers_len += varlong_len(k.len() as i64) + k.len() + opt_len(v);
    }
    let body = 1
        + varlong_len(timestamp_delta)
        + varlong_len(i64::from(offset_delta))
        + opt_len(key)
        + opt_len(value)
        + varlong_len(header_count as i64)
        + headers_len;
    out.reserve(varlong_len(body as i64) + body);
    write_varlong(out, body as i64);
    out.push(0); // attributes: unused in v2
    write_varlong(out, timestamp_delta);
    write_varlong(out, i64::from(offset_delta));
    put_opt(out, key);
    put_opt(out, value);
    let value_at = value.map(|v| out.len() - v.len()..out.len());
    write_varlong(out, header_count as i64);
    for (k, v) in headers {
        write_varlong(out, k.len() as i64);
        out.extend_from_slice(k);
        put_opt(out, v);
    }
    value_at
}

/// A header key as text: Kafka header keys are UTF-8; one that is not reads as U+FFFD.
pub(crate) fn header_from<'a>(key: &'a [u8], value: Option<&'a [u8]>) -> Header<'a> {
    Header {
        key: std::str::from_utf8(key).unwrap_or("\u{fffd}"),
        value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_are_sized_right() {
        for v in [
            0i64,
            1,
            -1,
            63,
            -64,
            64,
            300,
            i32::MAX as i64,
            i64::MIN,
            i64::MAX,
        ] {
            let mut out = Vec::new();
            write_varlong(&mut out, v);
            assert_eq!(out.len(), varlong_len(v), "{v}");
            let mut slice = &out[..];
            assert_eq!(read_varlong(&mut slice), Some(v));
            assert!(slice.is_empty());
        }
        assert_eq!(read_varlong(&mut &[0xff; 11][..]), None);
        assert_eq!(read_varlong(&mut &[0x80][..]), None);
    }

    #[test]
    fn a_record_round_trips_with_nulls_and_headers() {
        let mut out = Vec::new();
        let headers = [(&b"a"[..], Some(&b"1"[..])), (&b"n"[..], None)];
        write_record(&mut out, 3, -7, None, Some(b""), headers.iter().copied());
        let mut rest = &out[..];
        let r = next_record(&mut rest).unwrap();
        assert!(rest.is_empty());
        assert_eq!((r.offset_delta, r.timestamp_delta), (3, -7));
        assert_eq!((r.key, r.value), (None, Some(&b""[..])));
        let h: Vec<_> = r.headers.iter().map(|h| (h.key, h.value)).collect();
        assert_eq!(h, vec![("a", Some(&b"1"[..])), ("n", None)]);
    }

    #[test]
    fn hostile_records_are_errors() {
        let mut good = Vec::new();
        write_record(&mut good, 0, 0, Some(b"k"), Some(b"v"), std::iter::empty());
        // Every truncation, and every single-byte corruption, is an error or a record: never a
        // panic.
        for cut in 0..good.len() {
            assert!(next_record(&mut &good[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..good.len() {
            for b in [0x00, 0x7f, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[i] = b;
                let _ = next_record(&mut &bad[..]);
            }
        }
        // A header count far beyond the bytes left.
        let mut huge = vec![0u8, 0, 0, 1, 1];
        write_varlong(&mut huge, 1 << 30);
        let mut framed = Vec::new();
        write_varlong(&mut framed, huge.len() as i64);
        framed.extend_from_slice(&huge);
        assert!(next_record(&mut &framed[..])
            .unwrap_err()
            .0
            .contains("header count"));
    }
}
