//! Building a v2 batch around records that are already encoded (a guest's output section, a
//! slice of a stored batch): the header is written and the records copied (or compressed) once,
//! into one buffer. [`BatchBuilder`] does the same for records gathered from several places
//! (the halves of a narrowed batch, records re-partitioned by key), uncompressed batches being
//! finished in place.

use super::batch::{self, HEADER_LEN, LOG_OVERHEAD};
use super::compression::{self, Compression};
use sluice_sdk::codec::records::{next_record, write_record};

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

/// Encoded records (Kafka v2 record format, offset deltas 0..count, timestamp deltas from
/// `base_timestamp`) and the header fields that describe them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodedRecords<'a> {
    pub records: &'a [u8],
    pub count: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
}

/// A complete batch holding `records`, compressed with `codec`.
pub fn build_encoded(
    records: &EncodedRecords<'_>,
    codec: Compression,
    meta: &BatchMeta,
) -> Vec<u8> {
    let mut out = Vec::new();
    append_encoded(&mut out, records, codec, meta);
    out
}

/// Writes the header fields (everything but `batchLength` and the CRC) of a batch of `records`
/// into `head`.
fn write_header(
    head: &mut [u8],
    records: &EncodedRecords<'_>,
    codec: Compression,
    meta: &BatchMeta,
) {
    head[0..8].copy_from_slice(&meta.base_offset.to_be_bytes());
    head[12..16].copy_from_slice(&0i32.to_be_bytes()); // partition leader epoch
    head[16] = 2; // magic
    head[21..23].copy_from_slice(&codec.id().to_be_bytes());
    head[23..27].copy_from_slice(&(records.count - 1).to_be_bytes());
    head[27..35].copy_from_slice(&records.base_timestamp.to_be_bytes());
    head[35..43].copy_from_slice(&records.max_timestamp.to_be_bytes());
    head[57..61].copy_from_slice(&records.count.to_be_bytes());
    set_producer_fields(head, meta);
}

fn set_producer_fields(head: &mut [u8], meta: &BatchMeta) {
    head[43..51].copy_from_slice(&meta.producer_id.to_be_bytes());
    head[51..53].copy_from_slice(&meta.producer_epoch.to_be_bytes());
    head[53..57].copy_from_slice(&meta.base_sequence.to_be_bytes());
}

/// Sets `batchLength` and the CRC of a complete batch.
fn seal(batch: &mut [u8]) {
    // A batch is bounded far below 2 GiB (max.message.bytes, guest memory).
    let batch_length = i32::try_from(batch.len() - LOG_OVERHEAD).unwrap_or(i32::MAX);
    batch[8..12].copy_from_slice(&batch_length.to_be_bytes());
    let crc = batch::compute_crc(batch);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// Appends a complete batch holding `records` to `out` (which may already hold batches).
pub fn append_encoded(
    out: &mut Vec<u8>,
    records: &EncodedRecords<'_>,
    codec: Compression,
    meta: &BatchMeta,
) {
    let start = out.len();
    // Uncompressed the size is exact; compressed it is a good first guess.
    out.reserve(HEADER_LEN + records.records.len());
    out.resize(start + HEADER_LEN, 0);
    write_header(&mut out[start..], records, codec, meta);
    compression::compress_into(codec, records.records, out);
    seal(&mut out[start..]);
}

/// One batch's records gathered in pieces: whole encoded sections (copied once, as they are)
/// or single records, renumbered as they are added. The records are kept behind room for the
/// header, so an uncompressed batch is finished where it was gathered, without another copy.
#[derive(Debug)]
pub struct BatchBuilder {
    /// `HEADER_LEN` bytes of room, then the records (uncompressed).
    buf: Vec<u8>,
    count: i32,
    base_timestamp: i64,
    max_timestamp: i64,
}

impl Default for BatchBuilder {
    fn default() -> BatchBuilder {
        BatchBuilder::new()
    }
}

impl BatchBuilder {
    pub fn new() -> BatchBuilder {
        BatchBuilder {
            buf: vec![0; HEADER_LEN],
            count: 0,
            base_timestamp: 0,
            max_timestamp: 0,
        }
    }

    /// How many records it holds.
    pub fn count(&self) -> i32 {
        self.count
    }

    /// The records gathered so far (uncompressed), offset deltas `0..count`.
    pub fn records(&self) -> &[u8] {
        &self.buf[HEADER_LEN..]
    }

    /// The first record's timestamp (what timestamp deltas are relative to).
    pub fn base_timestamp(&self) -> i64 {
        self.base_timestamp
    }

    /// Adds encoded records (offset deltas `0..records.count`, well framed: checked by the
    /// caller). The first piece is copied as it is; a later one record by record, renumbered and
    /// with its timestamps rebased.
    pub fn push_encoded(&mut self, records: &EncodedRecords<'_>) -> Result<(), String> {
        if records.count <= 0 {
            return Ok(());
        }
        if self.count == 0 {
            self.buf.extend_from_slice(records.records);
            self.count = records.count;
            self.base_timestamp = records.base_timestamp;
            self.max_timestamp = records.max_timestamp;
            return Ok(());
        }
        let mut rest = records.records;
        while !rest.is_empty() {
            let r = next_record(&mut rest).map_err(|e| e.0)?;
            let timestamp = records.base_timestamp.wrapping_add(r.timestamp_delta);
            self.push_raw(timestamp, r.key, r.value, r.headers.iter_bytes());
        }
        Ok(())
    }

    /// Adds one record.
    pub fn push<'h, H>(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: H,
    ) where
        H: Iterator<Item = (&'h [u8], Option<&'h [u8]>)> + Clone,
    {
        self.push_raw(timestamp, key, value, headers);
    }

    fn push_raw<'h, H>(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: H,
    ) where
        H: Iterator<Item = (&'h [u8], Option<&'h [u8]>)> + Clone,
    {
        if self.count == 0 {
            self.base_timestamp = timestamp;
            self.max_timestamp = timestamp;
        }
        write_record(
            &mut self.buf,
            self.count,
            timestamp.wrapping_sub(self.base_timestamp),
            key,
            value,
            headers,
        );
        self.count += 1;
        self.max_timestamp = self.max_timestamp.max(timestamp);
    }

    /// The complete batch (at least one record must have been added), in `codec`. An
    /// uncompressed batch is the gathering buffer itself, finished in place.
    pub fn finish(self, codec: Compression, meta: &BatchMeta) -> Vec<u8> {
        let BatchBuilder {
            mut buf,
            count,
            base_timestamp,
            max_timestamp,
        } = self;
        let encoded = EncodedRecords {
            records: &[],
            count,
            base_timestamp,
            max_timestamp,
        };
        if codec == Compression::None {
            write_header(&mut buf, &encoded, codec, meta);
            seal(&mut buf);
            return buf;
        }
        let mut out = Vec::with_capacity(HEADER_LEN + buf.len() / 2);
        out.resize(HEADER_LEN, 0);
        write_header(&mut out, &encoded, codec, meta);
        compression::compress_into(codec, &buf[HEADER_LEN..], &mut out);
        seal(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::record::{decode_records, write_record, RecordIter};

    #[test]
    fn encoded_records_become_a_valid_batch_for_every_codec() {
        let mut area = Vec::new();
        write_record(&mut area, 0, 0, Some(b"k"), Some(b"v0"), std::iter::empty());
        write_record(
            &mut area,
            1,
            -5,
            None,
            Some(b"v1"),
            [(&b"h"[..], Some(&b"x"[..]))].into_iter(),
        );
        let records = EncodedRecords {
            records: &area,
            count: 2,
            base_timestamp: 1000,
            max_timestamp: 1000,
        };
        let meta = BatchMeta {
            producer_id: 7,
            producer_epoch: 0,
            base_sequence: 3,
            ..BatchMeta::default()
        };
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let mut out = b"earlier batch".to_vec();
            append_encoded(&mut out, &records, codec, &meta);
            let batch = &out[13..];
            let header = batch::validate(batch, 1 << 20).unwrap();
            assert_eq!(header.records_count, 2);
            assert_eq!(header.last_offset_delta, 1);
            assert_eq!(header.max_timestamp, 1000);
            assert_eq!(header.producer_id, 7);
            assert_eq!(header.base_sequence, 3);
            assert_eq!(header.compression(), Some(codec));
            let (_, decoded) = decode_records(batch, 1 << 20).unwrap();
            assert_eq!(decoded[1].timestamp, 995);
            assert_eq!(decoded[1].headers, vec![("h".into(), Some(b"x".to_vec()))]);
        }
        let views: Vec<_> = RecordIter::new(&area).map(Result::unwrap).collect();
        assert_eq!(views[0].key, Some(&b"k"[..]));
        assert_eq!(views[1].headers.len(), 1);
        assert_eq!([views[0].raw, views[1].raw].concat(), area);
    }

    #[test]
    fn a_builder_joins_sections_renumbered_and_rebased() {
        let mut first = Vec::new();
        write_record(&mut first, 0, 0, Some(b"a"), Some(b"1"), std::iter::empty());
        write_record(&mut first, 1, 4, None, Some(b"2"), std::iter::empty());
        let mut second = Vec::new();
        write_record(
            &mut second,
            0,
            0,
            Some(b"c"),
            None,
            [(&b"h"[..], None)].into_iter(),
        );
        for codec in [Compression::None, Compression::Zstd] {
            let mut builder = BatchBuilder::new();
            builder
                .push_encoded(&EncodedRecords {
                    records: &first,
                    count: 2,
                    base_timestamp: 100,
                    max_timestamp: 104,
                })
                .unwrap();
            builder
                .push_encoded(&EncodedRecords {
                    records: &second,
                    count: 1,
                    base_timestamp: 90,
                    max_timestamp: 90,
                })
                .unwrap();
            builder.push(200, None, Some(b"4"), std::iter::empty());
            assert_eq!(builder.count(), 4);
            let batch = builder.finish(codec, &BatchMeta::default());
            let header = batch::validate(&batch, 1 << 20).unwrap();
            assert_eq!(header.records_count, 4);
            assert_eq!((header.base_timestamp, header.max_timestamp), (100, 200));
            let (_, decoded) = decode_records(&batch, 1 << 20).unwrap();
            let got: Vec<(i64, i64, Option<&[u8]>)> = decoded
                .iter()
                .map(|r| (r.offset, r.timestamp, r.key.as_deref()))
                .collect();
            assert_eq!(
                got,
                vec![
                    (0, 100, Some(&b"a"[..])),
                    (1, 104, None),
                    (2, 90, Some(&b"c"[..])),
                    (3, 200, None)
                ]
            );
            assert_eq!(decoded[2].headers, vec![("h".into(), None)]);
        }
    }
}
