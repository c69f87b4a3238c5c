//! Recompression: the same batch with its records area in another codec, which is what a topic's
//! `compression.type` does to a batch its producer compressed otherwise.
//!
//! The records themselves are not re-encoded: their offset and timestamp deltas stay valid, so
//! every header field (producer id, epoch, base sequence, timestamps, lastOffsetDelta, records
//! count, the attributes other than the codec bits) is kept; only batchLength, the codec bits and
//! the CRC32C change.

use super::batch::{self, BatchError, ATTRIBUTES_AT, CRC_AT, HEADER_LEN, LOG_OVERHEAD};
use super::compression::{self, Codec};

/// Attributes bits 0–2 name the codec.
const CODEC_BITS: i16 = 0x07;

/// Validates `batch` (as a produced batch, against `max_message_bytes`), decompresses it once and
/// returns it recompressed as `to`.
pub fn recompress(batch: &[u8], to: Codec, max_message_bytes: u32) -> Result<Vec<u8>, BatchError> {
    let (_, records) = batch::validate_and_decompress(batch, max_message_bytes)?;
    recompress_records(batch, &records, to)
}

/// Builds `batch` anew around `records`, its records area already decompressed (by
/// [`batch::validate_and_decompress`]), compressed as `to`. `batch` supplies the header; its
/// records area is not read.
pub fn recompress_records(batch: &[u8], records: &[u8], to: Codec) -> Result<Vec<u8>, BatchError> {
    let header = batch.get(..HEADER_LEN).ok_or_else(|| {
        BatchError::Corrupt(format!(
            "batch of {} bytes is shorter than its header",
            batch.len()
        ))
    })?;
    let payload = compression::compress_with(to, records);
    let size = HEADER_LEN + payload.len();
    let batch_length = i32::try_from(size - LOG_OVERHEAD).map_err(|_| BatchError::TooLarge {
        size,
        max: i32::MAX as u32,
    })?;
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(header);
    out.extend_from_slice(&payload);
    out[8..12].copy_from_slice(&batch_length.to_be_bytes());
    let attributes = i16::from_be_bytes([out[ATTRIBUTES_AT], out[ATTRIBUTES_AT + 1]]);
    let attributes = (attributes & !CODEC_BITS) | to.compression.id();
    out[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    let crc = batch::compute_crc(&out);
    out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::batch::{validate, BatchHeader};
    use crate::records::compression::Compression;
    use crate::records::record::{build_batch, decode_records, BatchMeta, NewRecord};

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    fn records() -> Vec<NewRecord> {
        (0..200)
            .map(|i| NewRecord {
                timestamp: 1_700_000_000_000 + i * 7,
                key: (i % 5 != 0).then(|| format!("key-{i}").into_bytes()),
                value: (i % 11 != 0).then(|| format!("value {i} ").repeat(8).into_bytes()),
                headers: vec![
                    ("h".into(), Some(format!("{i}").into_bytes())),
                    ("null".into(), None),
                ],
            })
            .collect()
    }

    /// An idempotent producer's batch, with the transactional-free attributes a client sets.
    fn produced(codec: Compression) -> Vec<u8> {
        let meta = BatchMeta {
            base_offset: 0,
            producer_id: 4242,
            producer_epoch: 3,
            base_sequence: 1000,
        };
        build_batch(&records(), codec, &meta)
    }

    fn without_codec_fields(h: BatchHeader) -> BatchHeader {
        BatchHeader {
            batch_length: 0,
            crc: 0,
            attributes: h.attributes & !CODEC_BITS,
            ..h
        }
    }

    #[test]
    fn every_codec_recompresses_to_every_other_keeping_records_and_producer_fields() {
        for from in CODECS {
            let original = produced(from);
            let before = validate(&original, 1 << 20).unwrap();
            let (_, want) = decode_records(&original, 1 << 22).unwrap();
            for to in CODECS {
                let out = recompress(&original, Codec::new(to), 1 << 20).unwrap();
                // A valid batch: CRC32C, framing, record count all check out.
                let after = validate(&out, 1 << 20).unwrap();
                assert_eq!(after.compression(), Some(to), "{from:?} -> {to:?}");
                assert_eq!(
                    without_codec_fields(after),
                    without_codec_fields(before),
                    "{from:?} -> {to:?}"
                );
                assert_eq!(
                    (after.producer_id, after.producer_epoch, after.base_sequence),
                    (4242, 3, 1000)
                );
                let (_, got) = decode_records(&out, 1 << 22).unwrap();
                assert_eq!(got, want, "{from:?} -> {to:?}");
            }
        }
    }

    #[test]
    fn attribute_bits_other_than_the_codec_are_kept() {
        let mut batch = produced(Compression::Gzip);
        // The log-append-time bit (3) as an example of a non-codec bit; the CRC is fixed up so
        // only the bit differs from a producer's batch.
        batch::set_log_append_time(&mut batch, 1_700_000_000_999);
        let out = recompress(&batch, Codec::new(Compression::Zstd), 1 << 20).unwrap();
        let header = validate(&out, 1 << 20).unwrap();
        assert!(header.has_log_append_time());
        assert_eq!(header.max_timestamp, 1_700_000_000_999);
        assert_eq!(header.compression(), Some(Compression::Zstd));
    }

    #[test]
    fn the_level_is_used() {
        let original = produced(Compression::None);
        let fast = recompress(
            &original,
            Codec {
                compression: Compression::Zstd,
                level: -7,
            },
            1 << 20,
        )
        .unwrap();
        let small = recompress(
            &original,
            Codec {
                compression: Compression::Zstd,
                level: 19,
            },
            1 << 20,
        )
        .unwrap();
        assert!(
            small.len() < fast.len(),
            "{} vs {}",
            small.len(),
            fast.len()
        );
    }

    #[test]
    fn a_bad_or_oversized_batch_is_refused_not_recompressed() {
        let mut corrupt = produced(Compression::Lz4);
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0x55;
        assert!(matches!(
            recompress(&corrupt, Codec::new(Compression::None), 1 << 20),
            Err(BatchError::Corrupt(_))
        ));
        let big = produced(Compression::None);
        assert!(matches!(
            recompress(&big, Codec::new(Compression::Zstd), 100),
            Err(BatchError::TooLarge { .. })
        ));
        assert!(recompress_records(&big[..20], b"", Codec::new(Compression::Gzip)).is_err());
    }
}
