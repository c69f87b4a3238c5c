//! The bridge that keeps the write path's v1 calls working on v2 guests: [`on_batch`] takes a
//! v1 input buffer (`sluice_sdk::codec::encode_input`), encodes its records in Kafka's format,
//! runs the guest through the v2 API and answers a v1 output buffer (`codec::decode_output`),
//! or a sink's result buffer. It copies every record several times, which v2 exists to avoid:
//! delete it once `transform/` calls [`Guest::transform`] itself.

use sluice_sdk::codec::{decode_input_v1, V1OutputWriter};

use super::abi::BatchInput;
use super::engine::ModuleKind;
use super::guest::{Guest, GuestError};
use crate::records::record::{write_record, RecordIter};

pub(crate) fn on_batch(guest: &mut Guest, input: &[u8]) -> Result<Vec<u8>, GuestError> {
    let bad_input = |e: String| GuestError::Malformed(format!("v1 input buffer: {e}"));
    let (topic, partition, records) = decode_input_v1(input).map_err(|e| bad_input(e.0))?;
    let base_offset = records.first().map_or(0, |r| r.offset);
    let base_timestamp = records.first().map_or(0, |r| r.timestamp);
    let mut area = Vec::new();
    for r in &records {
        let offset_delta = i32::try_from(r.offset.wrapping_sub(base_offset))
            .map_err(|_| bad_input(format!("offset {} is far from {base_offset}", r.offset)))?;
        write_record(
            &mut area,
            offset_delta,
            r.timestamp.wrapping_sub(base_timestamp),
            r.key,
            r.value,
            r.headers.iter().map(|(k, v)| (k.as_bytes(), *v)),
        );
    }
    let batch = BatchInput {
        topic,
        partition,
        base_offset,
        base_timestamp,
        record_count: u32::try_from(records.len()).unwrap_or(u32::MAX),
        records: &area,
    };
    if guest.kind() == ModuleKind::Sink {
        let result = guest.sink_batch(&batch)?;
        return Ok(sluice_sdk::sink::encode_result(&result));
    }
    let outputs = guest.outputs();
    let output = guest.transform(&batch, outputs)?;
    // v1 names the input behind each output record; v2 does not, and the write path only needs
    // records in input order per output, which sections keep. Index 0 satisfies v1's checks.
    let mut writer = V1OutputWriter::new();
    for section in &output.sections {
        for record in RecordIter::new(section.records) {
            let r = record.map_err(GuestError::Malformed)?;
            writer.push(
                0,
                section.output,
                section.base_timestamp.wrapping_add(r.timestamp_delta),
                r.key,
                r.value,
                r.headers,
            );
        }
    }
    Ok(writer.finish(&output.errors))
}
