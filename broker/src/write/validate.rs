//! Step one of every write: each batch of a request is validated once — framing, CRC32C,
//! sizes against `max.message.bytes`, record framing and counts — before anything runs on it.
//! A compressed batch is decompressed here, once, and its records are kept for the transforms.

use std::ops::Range;

use bytes::Bytes;

use crate::log::AppendError;
use crate::records::batch::{self, BatchHeader, HEADER_LEN};
use crate::records::conform::{self, BatchRules};
use crate::records::record::stored_records;

/// One validated batch of a request.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) header: BatchHeader,
    /// Where it is in the request's records.
    pub(crate) range: Range<usize>,
    /// Its records area, decompressed (for a compressed batch).
    decompressed: Option<Vec<u8>>,
}

impl Batch {
    /// A batch the broker built itself (checked by construction), spanning `range`;
    /// `decompressed` is its records area when it is compressed and the area is needed.
    pub(crate) fn built(
        header: BatchHeader,
        range: Range<usize>,
        decompressed: Option<Vec<u8>>,
    ) -> Batch {
        Batch {
            header,
            range,
            decompressed,
        }
    }

    /// The batch's records area, uncompressed: a slice of `request` unless it was compressed.
    pub(crate) fn records<'a>(&'a self, request: &'a [u8]) -> &'a [u8] {
        match &self.decompressed {
            Some(records) => records,
            None => request
                .get(self.range.start + HEADER_LEN..self.range.end)
                .unwrap_or_default(),
        }
    }
}

/// Validates every batch of `records`; the first bad one refuses the whole request.
pub(crate) fn validate(records: &Bytes, max_message_bytes: u32) -> Result<Vec<Batch>, AppendError> {
    let ranges = batch::split(records).map_err(AppendError::from)?;
    let mut batches = Vec::with_capacity(ranges.len());
    for range in ranges {
        let bytes = &records[range.clone()];
        let (header, records) =
            batch::validate_and_decompress(bytes, max_message_bytes).map_err(AppendError::from)?;
        let decompressed = match records {
            std::borrow::Cow::Owned(records) => Some(records),
            std::borrow::Cow::Borrowed(_) => None,
        };
        batches.push(Batch {
            header,
            range,
            decompressed,
        });
    }
    Ok(batches)
}

/// Applies the topic's rules (`compression.type`, timestamp bounds) to validated batches, with
/// the records already decompressed: the batches unchanged, or recompressed ones.
pub(crate) fn conform(
    records: Bytes,
    batches: Vec<Batch>,
    rules: &BatchRules,
    now: i64,
) -> Result<(Bytes, Vec<Batch>), AppendError> {
    let views: Vec<(Range<usize>, BatchHeader, &[u8])> = batches
        .iter()
        .map(|b| (b.range.clone(), b.header, b.records(&records)))
        .collect();
    let Some(rebuilt) =
        conform::conform_validated(&records, &views, rules, now).map_err(conform_error)?
    else {
        return Ok((records, batches));
    };
    drop(views);
    let ranges = batch::split(&rebuilt).map_err(AppendError::from)?;
    let mut out = Vec::with_capacity(batches.len());
    for (old, range) in batches.into_iter().zip(ranges) {
        let header = BatchHeader::parse(&rebuilt[range.clone()]).ok_or_else(|| {
            AppendError::CorruptMessage("a recompressed batch has no header".into())
        })?;
        // The records area stays as validated; it was in the old buffer if uncompressed.
        let decompressed = match old.decompressed {
            Some(area) => Some(area),
            None => Some(old.records(&records).to_vec()),
        };
        out.push(Batch {
            header,
            range,
            decompressed,
        });
    }
    Ok((Bytes::from(rebuilt), out))
}

fn conform_error(e: conform::ConformError) -> AppendError {
    match e {
        conform::ConformError::Batch(e) => e.into(),
        conform::ConformError::InvalidTimestamp {
            record_index,
            message,
        } => AppendError::InvalidTimestamp {
            record_index,
            message,
        },
    }
}

/// Compaction keeps the latest record per key, so a compacted topic has no place for a record
/// without one: the whole request is refused, naming every keyless record (KIP-467 indexes,
/// counted across the request's batches).
pub(crate) fn refuse_keyless(records: &[u8], batches: &[Batch]) -> Result<(), AppendError> {
    let mut keyless = Vec::new();
    let mut first = 0i32;
    for b in batches {
        let stored = stored_records(&b.header, b.records(records)).map_err(AppendError::from)?;
        keyless.extend(
            stored
                .iter()
                .enumerate()
                .filter(|(_, r)| r.key.is_none())
                .map(|(i, _)| first.saturating_add(i as i32)),
        );
        first = first.saturating_add(b.header.records_count);
    }
    if keyless.is_empty() {
        Ok(())
    } else {
        Err(AppendError::KeylessRecords { records: keyless })
    }
}

/// What the log needs to append validated batches: each one's range and header.
pub(crate) fn ranges(batches: &[Batch]) -> Vec<(Range<usize>, BatchHeader)> {
    batches
        .iter()
        .map(|b| (b.range.clone(), b.header))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::record::{build_batch, BatchMeta};
    use crate::records::{Compression, NewRecord};

    fn record(key: Option<&str>) -> NewRecord {
        NewRecord {
            timestamp: 1,
            key: key.map(|k| k.as_bytes().to_vec()),
            value: Some(b"x".to_vec()),
            headers: vec![],
        }
    }

    #[test]
    fn keyless_records_are_named_across_the_batches_of_a_request() {
        let first = build_batch(
            &[record(Some("a")), record(None), record(Some("b"))],
            Compression::Gzip,
            &BatchMeta::default(),
        );
        let second = build_batch(
            &[record(None), record(Some("c"))],
            Compression::None,
            &BatchMeta::default(),
        );
        let request = Bytes::from([first, second].concat());
        let batches = validate(&request, 1 << 20).unwrap();
        match refuse_keyless(&request, &batches) {
            Err(AppendError::KeylessRecords { records }) => assert_eq!(records, vec![1, 3]),
            other => panic!("{other:?}"),
        }
        let keyed = Bytes::from(build_batch(
            &[record(Some("a"))],
            Compression::Lz4,
            &BatchMeta::default(),
        ));
        let batches = validate(&keyed, 1 << 20).unwrap();
        assert!(refuse_keyless(&keyed, &batches).is_ok());
    }
}
