//! Building a v2 batch around records that are already encoded (a guest's output section, a
//! slice of a stored batch): the header is written and the records copied (or compressed) once,
//! into one buffer.

use super::batch::{self, HEADER_LEN, LOG_OVERHEAD};
use super::compression::{self, Compression};

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
    out.extend_from_slice(&meta.base_offset.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes()); // batchLength, filled below
    out.extend_from_slice(&0i32.to_be_bytes()); // partition leader epoch
    out.push(2); // magic
    out.extend_from_slice(&0u32.to_be_bytes()); // crc, filled below
    out.extend_from_slice(&codec.id().to_be_bytes());
    out.extend_from_slice(&(records.count - 1).to_be_bytes());
    out.extend_from_slice(&records.base_timestamp.to_be_bytes());
    out.extend_from_slice(&records.max_timestamp.to_be_bytes());
    out.extend_from_slice(&meta.producer_id.to_be_bytes());
    out.extend_from_slice(&meta.producer_epoch.to_be_bytes());
    out.extend_from_slice(&meta.base_sequence.to_be_bytes());
    out.extend_from_slice(&records.count.to_be_bytes());
    compression::compress_into(codec, records.records, out);
    let batch = &mut out[start..];
    // A batch is bounded far below 2 GiB (max.message.bytes, guest memory).
    let batch_length = i32::try_from(batch.len() - LOG_OVERHEAD).unwrap_or(i32::MAX);
    batch[8..12].copy_from_slice(&batch_length.to_be_bytes());
    let crc = batch::compute_crc(batch);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
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
}
