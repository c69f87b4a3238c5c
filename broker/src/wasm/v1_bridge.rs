//! The bridge that keeps the write path's v1 calls working on v2 guests: [`on_batch`] takes a
//! v1 input buffer (`sluice_sdk::codec::encode_input`), encodes its records in Kafka's format,
//! runs the guest through the v2 API and answers a v1 output buffer (`codec::decode_output`),
//! or a sink's result buffer. It copies every record several times, which v2 exists to avoid:
//! delete it once `transform/` calls [`Guest::transform`] itself.

use sluice_sdk::codec::{decode_input_v1, V1OutputWriter};

use super::abi::BatchInput;
use super::engine::ModuleKind;
use super::guest::{Guest, GuestError};
use crate::records::record::{RecordIter, RecordsArea};

pub(crate) fn on_batch(guest: &mut Guest, input: &[u8]) -> Result<Vec<u8>, GuestError> {
    let bad_input = |e: String| GuestError::Malformed(format!("v1 input buffer: {e}"));
    let (topic, partition, records) = decode_input_v1(input).map_err(|e| bad_input(e.0))?;
    let mut area = RecordsArea::new();
    for r in &records {
        area.push(
            r.offset,
            r.timestamp,
            r.key,
            r.value,
            r.headers.iter().map(|(k, v)| (k.as_bytes(), *v)),
        )
        .map_err(bad_input)?;
    }
    let batch = BatchInput::of_area(topic, partition, &area);
    if guest.kind() == ModuleKind::Sink {
        let result = guest.sink_batch(&batch)?;
        return Ok(sluice_sdk::sink::encode_result(&result));
    }
    let outputs = guest.outputs();
    let output = match guest.transform(&batch, outputs) {
        // v1 answered a batch unchecked; the deploy probe (an empty batch) relies on that to
        // accept a module that only misbehaves on real records.
        Err(GuestError::Malformed(_)) if records.is_empty() => {
            return Ok(V1OutputWriter::new().finish(&[]))
        }
        other => other?,
    };
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
                r.headers.iter_bytes(),
            );
        }
    }
    Ok(writer.finish(&output.errors))
}
