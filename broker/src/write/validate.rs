//! Step one of every write: each batch of a request is validated once — framing, CRC32C,
//! sizes against `max.message.bytes`, record framing and counts — before anything runs on it.
//! A compressed batch is decompressed here, once, and its records are kept for the transforms.

use std::ops::Range;

use bytes::Bytes;

use crate::log::AppendError;
use crate::records::batch::{self, BatchError, BatchHeader, HEADER_LEN};
use crate::records::conform::{self, BatchRules};

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

/// The Kafka meaning of a refused batch.
pub(crate) fn batch_error(e: BatchError) -> AppendError {
    match e {
        BatchError::Corrupt(m) => AppendError::CorruptMessage(m),
        BatchError::Invalid(m) => AppendError::InvalidRecord(m),
        BatchError::Unsupported(m) => AppendError::Unsupported(m),
        BatchError::TooLarge { size, max } => AppendError::MessageTooLarge { size, max },
    }
}

/// Validates every batch of `records`; the first bad one refuses the whole request.
pub(crate) fn validate(records: &Bytes, max_message_bytes: u32) -> Result<Vec<Batch>, AppendError> {
    let ranges = batch::split(records).map_err(batch_error)?;
    let mut batches = Vec::with_capacity(ranges.len());
    for range in ranges {
        let bytes = &records[range.clone()];
        let (header, records) =
            batch::validate_and_decompress(bytes, max_message_bytes).map_err(batch_error)?;
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
    let ranges = batch::split(&rebuilt).map_err(batch_error)?;
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
        conform::ConformError::Batch(e) => batch_error(e),
        conform::ConformError::InvalidTimestamp {
            record_index,
            message,
        } => AppendError::InvalidTimestamp {
            record_index,
            message,
        },
    }
}

/// What the log needs to append validated batches: each one's range and header.
pub(crate) fn ranges(batches: &[Batch]) -> Vec<(Range<usize>, BatchHeader)> {
    batches
        .iter()
        .map(|b| (b.range.clone(), b.header))
        .collect()
}
