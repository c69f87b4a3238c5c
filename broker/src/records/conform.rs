//! What a topic asks of produced batches beyond their being valid, applied before they are
//! stored: record timestamps within `message.timestamp.before.max.ms` / `after.max.ms` of the
//! broker's clock (KIP-937), and the topic's `compression.type`.

use bytes::Bytes;

use super::batch::{self, BatchError, BatchHeader};
use super::compression::CompressionType;
use super::recompress::recompress_records;
use sluice_sdk::codec::records::{read_varint, read_varlong};

/// Kafka's "no timestamp" marker, which the bounds do not apply to.
const NO_TIMESTAMP: i64 = -1;

/// How far from the broker's clock a CreateTime record's timestamp may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampBounds {
    /// `message.timestamp.before.max.ms`: how far in the past.
    pub before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: how far in the future.
    pub after_max_ms: i64,
}

/// The rules a topic's batches are stored under, from its configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchRules {
    /// `compression.type` with the level of its codec.
    pub compression: CompressionType,
    /// `None` when timestamps are not checked (LogAppendTime, or both bounds unlimited).
    pub timestamps: Option<TimestampBounds>,
    /// `max.message.bytes`, which a batch must fit before it is decompressed.
    pub max_message_bytes: u32,
}

/// Why produced batches do not conform.
#[derive(Debug, thiserror::Error)]
pub enum ConformError {
    /// Not a valid batch (the same refusals as the log's validation).
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// INVALID_TIMESTAMP: a record's timestamp is out of bounds.
    #[error("{message}")]
    InvalidTimestamp {
        /// The record's index among the request's records for the partition (Kafka's
        /// `batch_index` in the Produce response's record errors).
        record_index: i32,
        message: String,
    },
}

/// Applies `rules` to one partition's produced records (one or more batches): refuses records
/// with timestamps out of bounds, and recompresses batches not in the topic's codec. Returns
/// `records` itself when nothing changes, so a topic with Kafka's defaults costs nothing here.
pub fn conform(records: Bytes, rules: &BatchRules, now_ms: i64) -> Result<Bytes, ConformError> {
    if rules.compression == CompressionType::Producer && rules.timestamps.is_none() {
        return Ok(records);
    }
    let mut batches = Vec::new();
    for range in batch::split(&records)? {
        let (header, data) =
            batch::validate_and_decompress(&records[range.clone()], rules.max_message_bytes)?;
        batches.push((range, header, data.into_owned()));
    }
    let views: Vec<_> = batches
        .iter()
        .map(|(range, header, data)| (range.clone(), *header, data.as_slice()))
        .collect();
    Ok(conform_validated(&records, &views, rules, now_ms)?.map_or(records, Bytes::from))
}

/// [`conform`] for batches the write path has validated: `batches` holds each one's range in
/// `records`, its header and its (decompressed) records area, so nothing is decompressed again.
/// `None` when the batches are stored as they are; else the batches to store instead.
pub fn conform_validated(
    records: &[u8],
    batches: &[(std::ops::Range<usize>, BatchHeader, &[u8])],
    rules: &BatchRules,
    now_ms: i64,
) -> Result<Option<Vec<u8>>, ConformError> {
    if rules.compression == CompressionType::Producer && rules.timestamps.is_none() {
        return Ok(None);
    }
    let mut out: Option<Vec<u8>> = None;
    let mut first_record = 0i32;
    for (range, header, data) in batches {
        if let Some(bounds) = rules.timestamps {
            check_timestamps(header, data, bounds, now_ms, first_record)?;
        }
        first_record = first_record.saturating_add(header.records_count);
        let bytes = &records[range.clone()];
        let target = header
            .compression()
            .and_then(|codec| rules.compression.target_for(codec));
        match target {
            Some(codec) => out
                .get_or_insert_with(|| records[..range.start].to_vec())
                .extend_from_slice(&recompress_records(bytes, data, codec)?),
            None => {
                if let Some(out) = &mut out {
                    out.extend_from_slice(bytes);
                }
            }
        }
    }
    Ok(out)
}

/// Checks every record's timestamp in `records` (a validated batch's records area) against
/// `bounds` around `now_ms`, with Kafka's message.
fn check_timestamps(
    header: &BatchHeader,
    mut records: &[u8],
    bounds: TimestampBounds,
    now_ms: i64,
    first_record: i32,
) -> Result<(), ConformError> {
    let corrupt = |what: &str| ConformError::Batch(BatchError::Corrupt(what.to_owned()));
    let earliest = i128::from(now_ms) - i128::from(bounds.before_max_ms);
    let latest = i128::from(now_ms) + i128::from(bounds.after_max_ms);
    for i in 0..header.records_count {
        let len = read_varint(&mut records).ok_or_else(|| corrupt("bad record length"))?;
        let len = usize::try_from(len).map_err(|_| corrupt("negative record length"))?;
        let body = records
            .get(..len)
            .ok_or_else(|| corrupt("record overruns the batch"))?;
        records = &records[len..];
        // attributes (1 byte), then timestampDelta.
        let mut fields = body.get(1..).ok_or_else(|| corrupt("empty record"))?;
        let delta = read_varlong(&mut fields).ok_or_else(|| corrupt("bad timestampDelta"))?;
        let offset_delta = read_varint(&mut fields).ok_or_else(|| corrupt("bad offsetDelta"))?;
        let timestamp = header.base_timestamp.saturating_add(delta);
        if timestamp == NO_TIMESTAMP {
            continue;
        }
        let t = i128::from(timestamp);
        if t < earliest || t > latest {
            return Err(ConformError::InvalidTimestamp {
                record_index: first_record.saturating_add(i),
                message: format!(
                    "Timestamp {timestamp} of message with offset {} is out of range. The timestamp should be within [{}, {}]",
                    header.base_offset.saturating_add(i64::from(offset_delta)),
                    earliest.clamp(i64::MIN.into(), i64::MAX.into()),
                    latest.clamp(i64::MIN.into(), i64::MAX.into()),
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::compression::{Codec, Compression};
    use crate::records::record::{build_batch, decode_records, BatchMeta, NewRecord};

    const NOW: i64 = 1_700_000_000_000;

    fn batch(codec: Compression, timestamps: &[i64]) -> Vec<u8> {
        let records: Vec<NewRecord> = timestamps
            .iter()
            .map(|&timestamp| NewRecord {
                timestamp,
                key: Some(b"k".to_vec()),
                value: Some(b"a value that compresses, a value that compresses".to_vec()),
                headers: vec![],
            })
            .collect();
        build_batch(&records, codec, &BatchMeta::default())
    }

    fn rules(compression: CompressionType, timestamps: Option<TimestampBounds>) -> BatchRules {
        BatchRules {
            compression,
            timestamps,
            max_message_bytes: 1 << 20,
        }
    }

    fn codecs(records: &[u8]) -> Vec<Compression> {
        batch::split(records)
            .unwrap()
            .into_iter()
            .map(|r| {
                batch::validate(&records[r], 1 << 20)
                    .unwrap()
                    .compression()
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn kafka_defaults_hand_back_the_same_bytes() {
        let input = Bytes::from(batch(Compression::Gzip, &[NOW]));
        let out = conform(input.clone(), &rules(CompressionType::Producer, None), NOW).unwrap();
        assert_eq!(out.as_ptr(), input.as_ptr());
    }

    #[test]
    fn batches_not_in_the_topic_codec_are_recompressed_others_kept() {
        let zstd = CompressionType::Broker(Codec::new(Compression::Zstd));
        let input = [
            batch(Compression::Zstd, &[NOW]),
            batch(Compression::Snappy, &[NOW, NOW + 1]),
            batch(Compression::None, &[NOW]),
        ]
        .concat();
        let out = conform(Bytes::from(input.clone()), &rules(zstd, None), NOW).unwrap();
        assert_eq!(codecs(&out), [Compression::Zstd; 3]);
        // The first batch was already zstd: kept byte for byte.
        let first = batch::split(&input).unwrap()[0].clone();
        assert_eq!(out[first.clone()], input[first]);
        let records = |b: &[u8]| {
            batch::split(b)
                .unwrap()
                .into_iter()
                .flat_map(|r| decode_records(&b[r], 1 << 20).unwrap().1)
                .collect::<Vec<_>>()
        };
        assert_eq!(records(&out), records(&input));

        let same = Bytes::from(batch(Compression::Zstd, &[NOW]));
        let kept = conform(same.clone(), &rules(zstd, None), NOW).unwrap();
        assert_eq!(kept.as_ptr(), same.as_ptr());
    }

    #[test]
    fn uncompressed_topics_store_plain_batches() {
        let none = CompressionType::Broker(Codec::new(Compression::None));
        let input = Bytes::from(batch(Compression::Lz4, &[NOW]));
        let out = conform(input, &rules(none, None), NOW).unwrap();
        assert_eq!(codecs(&out), [Compression::None]);
    }

    #[test]
    fn timestamps_out_of_bounds_are_refused_with_kafkas_message() {
        let bounds = TimestampBounds {
            before_max_ms: 1000,
            after_max_ms: 10,
        };
        let r = rules(CompressionType::Producer, Some(bounds));
        for ts in [NOW - 1000, NOW, NOW + 10, NO_TIMESTAMP] {
            let input = Bytes::from(batch(Compression::Gzip, &[ts]));
            conform(input, &r, NOW).unwrap_or_else(|e| panic!("{ts}: {e}"));
        }
        let input = [
            batch(Compression::None, &[NOW, NOW]),
            batch(Compression::Gzip, &[NOW, NOW - 1001]),
        ]
        .concat();
        match conform(Bytes::from(input), &r, NOW) {
            Err(ConformError::InvalidTimestamp {
                record_index,
                message,
            }) => {
                assert_eq!(record_index, 3);
                assert_eq!(
                    message,
                    format!(
                        "Timestamp {} of message with offset 1 is out of range. The timestamp should be within [{}, {}]",
                        NOW - 1001,
                        NOW - 1000,
                        NOW + 10
                    )
                );
            }
            other => panic!("{other:?}"),
        }
        let future = Bytes::from(batch(Compression::Zstd, &[NOW + 11]));
        assert!(matches!(
            conform(future, &r, NOW),
            Err(ConformError::InvalidTimestamp { .. })
        ));
    }

    #[test]
    fn unlimited_bounds_do_not_overflow() {
        let r = rules(
            CompressionType::Producer,
            Some(TimestampBounds {
                before_max_ms: i64::MAX,
                after_max_ms: 0,
            }),
        );
        let input = Bytes::from(batch(Compression::None, &[0, NOW]));
        conform(input, &r, NOW).unwrap();
    }

    #[test]
    fn corrupt_input_is_refused_before_anything_is_rebuilt() {
        let zstd = CompressionType::Broker(Codec::new(Compression::Zstd));
        let mut bad = batch(Compression::Gzip, &[NOW]);
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(
            conform(Bytes::from(bad), &rules(zstd, None), NOW),
            Err(ConformError::Batch(BatchError::Corrupt(_)))
        ));
        let mut r = rules(zstd, None);
        r.max_message_bytes = 10;
        assert!(matches!(
            conform(Bytes::from(batch(Compression::Gzip, &[NOW])), &r, NOW),
            Err(ConformError::Batch(BatchError::TooLarge { .. }))
        ));
    }
}
