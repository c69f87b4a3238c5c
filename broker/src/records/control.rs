//! Control batches: the commit and abort markers that end a transaction on a partition.
//!
//! A marker is a v2 batch with the control and transactional attribute bits, the producer's id and
//! epoch, no sequence (-1), uncompressed, holding one record whose key is
//! `[version i16 = 0, type i16]` (0 = abort, 1 = commit) and whose value is
//! `[version i16 = 0, coordinator epoch i32]` — Kafka's `EndTransactionMarker`.

use super::batch::{self, BatchHeader, ATTRIBUTES_AT, CONTROL_BIT, CRC_AT, HEADER_LEN};
use super::record::{build_batch, BatchMeta, NewRecord, RecordIter};
use super::Compression;

/// Control record key type of an abort marker.
const ABORT: i16 = 0;
/// Control record key type of a commit marker.
const COMMIT: i16 = 1;
/// The only control key and marker value version Kafka defines.
const VERSION: i16 = 0;

/// What a control batch says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlMarker {
    /// Commit (true) or abort (false).
    pub commit: bool,
    /// The coordinator epoch carried in the marker's value (-1 if the value is missing).
    pub coordinator_epoch: i32,
}

/// Builds the marker batch (base offset 0: the log assigns it).
pub fn build_marker(
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
    timestamp: i64,
) -> Vec<u8> {
    let kind = if commit { COMMIT } else { ABORT };
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&VERSION.to_be_bytes());
    key.extend_from_slice(&kind.to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&VERSION.to_be_bytes());
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    let record = NewRecord {
        timestamp,
        key: Some(key),
        value: Some(value),
        headers: vec![],
    };
    let meta = BatchMeta {
        base_offset: 0,
        producer_id,
        producer_epoch,
        base_sequence: -1,
    };
    let mut out = build_batch(&[record], Compression::None, &meta);
    let attributes = batch::TRANSACTIONAL_BIT | CONTROL_BIT;
    out[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    let crc = batch::compute_crc(&out);
    out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Reads the marker of a stored control batch (`batch` is the whole batch). `None` when the
/// batch is not a control batch or its record is not a marker this broker understands (Kafka
/// skips unknown control types too).
pub fn parse_marker(header: &BatchHeader, batch: &[u8]) -> Option<ControlMarker> {
    if !header.is_control() || header.records_count < 1 {
        return None;
    }
    // Markers are written uncompressed; a compressed control batch is not one of ours.
    if header.compression() != Some(Compression::None) {
        return None;
    }
    let record = RecordIter::new(batch.get(HEADER_LEN..)?).next()?.ok()?;
    let key = record.key?;
    if key.len() < 4 {
        return None;
    }
    let commit = match i16::from_be_bytes([key[2], key[3]]) {
        ABORT => false,
        COMMIT => true,
        _ => return None,
    };
    let coordinator_epoch = record
        .value
        .filter(|v| v.len() >= 6)
        .map_or(-1, |v| i32::from_be_bytes([v[2], v[3], v[4], v[5]]));
    Some(ControlMarker {
        commit,
        coordinator_epoch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_is_a_valid_control_batch_that_reads_back() {
        for commit in [true, false] {
            let bytes = build_marker(42, 3, commit, 7, 1000);
            let header = batch::check_frame(&bytes).unwrap();
            assert!(header.is_control() && header.is_transactional());
            assert_eq!((header.producer_id, header.producer_epoch), (42, 3));
            assert_eq!((header.base_sequence, header.records_count), (-1, 1));
            let record = RecordIter::new(&bytes[HEADER_LEN..])
                .next()
                .unwrap()
                .unwrap();
            let kind = if commit { [0, 1] } else { [0, 0] };
            assert_eq!(record.key.unwrap(), [0, 0, kind[0], kind[1]]);
            assert_eq!(record.value.unwrap(), [0, 0, 0, 0, 0, 7]);
            assert_eq!(
                parse_marker(&header, &bytes),
                Some(ControlMarker {
                    commit,
                    coordinator_epoch: 7
                })
            );
        }
    }
}
