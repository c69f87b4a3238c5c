//! A deployment's outputs for one input batch, written as idempotent-producer streams: one
//! stream per (deployment, input partition, output partition), each with its own producer id and
//! sequence numbers, so re-running an input after a crash writes only what is missing.

use super::{append_at, codec_for, Durable};
use crate::broker::Broker;
use crate::log::AppendError;
use crate::records::partitioner::{follow_partition, murmur2};
use crate::records::record::{build_batch, BatchMeta};
use crate::records::{Compression, NewRecord};
use crate::transform::run::Source;
use crate::transform::Running;

use bytes::Bytes;

/// Whether outputs are written for the first time or re-written after a crash or in a backfill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Inline,
    /// Batches the output log has already passed (a duplicate, or an older sequence) are skipped.
    Replay,
}

/// The producer id of one output stream: stable across restarts, and in a range InitProducerId
/// never reaches (it counts up from 0).
pub(super) fn stream_producer_id(deployment: &str, input_partition: i32, stream: &str) -> i64 {
    let low = murmur2(format!("{deployment}\u{0}{input_partition}\u{0}{stream}").as_bytes()) as u32
        as i64;
    let high = (murmur2(deployment.as_bytes()) as u32 as i64) & 0x3fff_ffff;
    (1 << 62) | (high << 32) | low
}

/// The sequence after a batch of `count` starting at `seq` (sequences wrap at `i32::MAX`).
fn next_sequence(seq: i32, count: i32) -> i32 {
    if seq > i32::MAX - count {
        count - (i32::MAX - seq) - 1
    } else {
        seq + count
    }
}

/// Writes `records` (`(topic, record)`, in input order) for `running`'s input batch from
/// `source`: one batch per destination partition, each the next batch of its stream.
#[allow(clippy::too_many_arguments)]
pub(super) fn emit(
    broker: &Broker,
    running: &Running,
    source: Source<'_>,
    records: Vec<(String, NewRecord)>,
    codec: Compression,
    now: i64,
    depth: usize,
    mode: Mode,
    durable: &mut Vec<Durable>,
) -> Result<(), AppendError> {
    let name = running.name();
    let mut groups: Vec<((String, i32), Vec<NewRecord>)> = Vec::new();
    for (out_topic, rec) in records {
        let target = broker
            .catalog
            .get_or_auto_create(&out_topic)
            .map_err(|e| AppendError::InvalidRecord(format!("output topic {out_topic}: {e}")))?;
        let p = follow_partition(
            source.partition,
            rec.key.as_deref(),
            target.partition_count().max(1),
        );
        let key = (out_topic, p);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, list)) => list.push(rec),
            None => groups.push((key, vec![rec])),
        }
    }
    for ((out_topic, p), recs) in groups {
        let stream = format!("{out_topic}/{p}");
        let producer_id = stream_producer_id(&name, source.partition, &stream);
        let seq = match mode {
            // The output log knows where the stream is, whatever the checkpoint says (it may
            // be older than the log after a crash).
            Mode::Inline => super::partition_log(broker, &out_topic, p)?.next_sequence(producer_id),
            // Re-run inputs must carry the sequences their first run used, so the log can tell
            // what it already holds: those of the checkpoint, at the same batch boundary.
            Mode::Replay => running
                .progress
                .lock()
                .get(&source.partition)
                .and_then(|pp| pp.seqs.get(&stream).copied())
                .unwrap_or(0),
        };
        let meta = BatchMeta {
            base_offset: 0,
            producer_id,
            producer_epoch: 0,
            base_sequence: seq,
        };
        let count = recs.len() as i32;
        let batch = Bytes::from(build_batch(
            &recs,
            codec_for(broker, &out_topic, codec),
            &meta,
        ));
        match append_at(
            broker,
            super::Producer::default(),
            &out_topic,
            p,
            batch,
            now,
            depth + 1,
            durable,
        ) {
            Ok(_) => {}
            Err(AppendError::OutOfOrderSequence { expected, got, .. })
                if mode == Mode::Replay && got < expected => {}
            Err(e) => return Err(e),
        }
        running.update_progress(source.partition, |pp| {
            pp.seqs.insert(stream, next_sequence(seq, count));
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_wrap_after_i32_max() {
        assert_eq!(next_sequence(0, 3), 3);
        assert_eq!(next_sequence(i32::MAX - 1, 2), 0);
        assert_eq!(next_sequence(i32::MAX, 1), 0);
    }

    #[test]
    fn stream_ids_are_stable_and_out_of_init_producer_id_range() {
        let a = stream_producer_id("up", 0, "out/0");
        assert_eq!(a, stream_producer_id("up", 0, "out/0"));
        assert_ne!(a, stream_producer_id("up", 1, "out/0"));
        assert!(a >= 1 << 62);
    }
}
