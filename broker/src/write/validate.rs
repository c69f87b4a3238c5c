//! Step one of every write: each batch of a request is validated once — framing, CRC32C,
//! sizes against `max.message.bytes`, record framing and counts — before anything runs on it.
//! A compressed batch is decompressed here, once, and its records are kept for the transforms.

use std::ops::Range;

use bytes::Bytes;

use crate::log::AppendError;
use crate::records::batch::{self, BatchError, BatchHeader, HEADER_LEN};

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
        let (header, decompressed) =
            batch::validate_keeping_records(bytes, max_message_bytes).map_err(batch_error)?;
        batches.push(Batch {
            header,
            range,
            decompressed,
        });
    }
    Ok(batches)
}

/// What the log needs to append validated batches: each one's range and header.
pub(crate) fn ranges(batches: &[Batch]) -> Vec<(Range<usize>, BatchHeader)> {
    batches
        .iter()
        .map(|b| (b.range.clone(), b.header))
        .collect()
}
