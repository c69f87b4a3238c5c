//! The host side of the v2 batch buffers (`sdk/ABI.md`): what goes into a guest
//! ([`BatchInput`]: a small header and the batch's records exactly as Kafka encodes them) and
//! what comes back ([`GuestOutput`]: per output, records already in Kafka's format, borrowed
//! from guest memory once their framing is checked).

use sluice_sdk::codec::{self, InputHeader};

use super::guest::GuestError;
use crate::records::record::{scan_records, RecordsArea};

/// One batch's records for a guest. `records` is a Kafka v2 records area (uncompressed), as in
/// the batch body: a record's offset is `base_offset + offsetDelta`, its timestamp
/// `base_timestamp + timestampDelta`. A sub-range of a batch (to re-run part of it) is a shorter
/// `records` slice with its `record_count`, and the same base offset and timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchInput<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub base_offset: i64,
    pub base_timestamp: i64,
    pub record_count: u32,
    pub records: &'a [u8],
}

impl<'a> BatchInput<'a> {
    /// The records of `area` (from `topic`/`partition`) as a guest's input.
    pub fn of_area(topic: &'a str, partition: i32, area: &'a RecordsArea) -> BatchInput<'a> {
        BatchInput {
            topic,
            partition,
            base_offset: area.base_offset,
            base_timestamp: area.base_timestamp,
            record_count: area.count,
            records: &area.records,
        }
    }

    /// Appends the input buffer's fixed part (what precedes the records) to `out`.
    pub(crate) fn encode_header(&self, out: &mut Vec<u8>) -> Result<(), GuestError> {
        let records_len = u32::try_from(self.records.len())
            .map_err(|_| GuestError::Malformed("input larger than 4 GiB".into()))?;
        codec::encode_input_header(
            out,
            &InputHeader {
                topic: self.topic,
                partition: self.partition,
                base_offset: self.base_offset,
                base_timestamp: self.base_timestamp,
                record_count: self.record_count,
            },
            records_len,
        );
        Ok(())
    }
}

/// One output's records of a batch: Kafka v2 records with offset deltas `0..record_count` and
/// timestamp deltas from `base_timestamp`, ready to be copied into a batch
/// (`records::build::append_encoded`). `records` borrows guest memory and is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputSection<'a> {
    /// Index into the deployment's outputs.
    pub output: u32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub record_count: u32,
    pub records: &'a [u8],
}

/// What a guest made of a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestOutput<'a> {
    /// In increasing output index, at most one per output; outputs that got nothing are absent.
    /// Each keeps the input order of its records.
    pub sections: Vec<OutputSection<'a>>,
    /// `(input index, message)` for every input record the guest refused; those wrote nothing.
    pub errors: Vec<(u32, String)>,
}

fn malformed(message: impl Into<String>) -> GuestError {
    GuestError::Malformed(message.into())
}

/// Reads the output table at `table` in guest `memory` and checks everything it points to: a
/// guest is untrusted, so bad varints, lengths, counts, output indices or pointers are
/// [`GuestError::Malformed`] (handled like a trap).
pub(crate) fn read_output<'g>(
    memory: &'g [u8],
    table: std::ops::Range<usize>,
    input_count: u32,
    outputs: u32,
) -> Result<GuestOutput<'g>, GuestError> {
    let bytes = memory
        .get(table.clone())
        .ok_or_else(|| malformed(format!("output table at {table:?} is outside guest memory")))?;
    let table = codec::decode_output_table(bytes, input_count, outputs)
        .map_err(|e| malformed(e.to_string()))?;
    let mut sections = Vec::with_capacity(table.sections.len());
    for s in table.sections {
        let (ptr, len) = (s.records_ptr as usize, s.records_len as usize);
        let records = memory.get(ptr..ptr + len).ok_or_else(|| {
            malformed(format!(
                "output section {} at {ptr}+{len} is outside guest memory",
                s.output
            ))
        })?;
        let count = i32::try_from(s.record_count).map_err(|_| {
            malformed(format!(
                "output section {} claims {} records",
                s.output, s.record_count
            ))
        })?;
        let summary = scan_records(records, count)
            .map_err(|e| malformed(format!("output section {}: {e}", s.output)))?;
        let max_timestamp = s.base_timestamp.wrapping_add(summary.max_timestamp_delta);
        if s.max_timestamp != max_timestamp {
            return Err(malformed(format!(
                "output section {} says max_timestamp {} but its records' is {max_timestamp}",
                s.output, s.max_timestamp
            )));
        }
        sections.push(OutputSection {
            output: s.output,
            base_timestamp: s.base_timestamp,
            max_timestamp,
            record_count: s.record_count,
            records,
        });
    }
    Ok(GuestOutput {
        sections,
        errors: table.errors,
    })
}
