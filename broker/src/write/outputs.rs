//! A deployment's outputs for one input batch, written as idempotent-producer streams: one
//! stream per (deployment, input partition, output partition), each with its own producer id and
//! sequence numbers, so re-running an input after a crash writes only what is missing.
//!
//! The output batches are built straight from the guest's sections ([`OutputBatches`]); their
//! producer fields and CRC are set once the stream's next sequence is known ([`emit`]).

use super::{append_built, codec_for, Durable};
use crate::broker::Broker;
use crate::log::AppendError;
use crate::records::build::{BatchBuilder, EncodedRecords};
use crate::records::partitioner::{follow_partition, murmur2};
use crate::records::record::{BatchMeta, RecordIter};
use crate::records::{Compression, NewRecord};
use crate::transform::run::Source;
use crate::transform::Running;
use crate::wasm::abi::OutputSection;

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

/// A deployment's outputs for one input batch, gathered into one batch per destination
/// partition as the guest hands its sections over: a section is copied once, from guest memory
/// into its batch, unless the output topic has fewer partitions than the input's index (then
/// its records are spread by key, one by one).
pub(super) struct OutputBatches<'a> {
    broker: &'a Broker,
    source: Source<'a>,
    /// The deployment's output topics, by the index sections name.
    outputs: &'a [String],
    /// Partition counts of the topics written so far (auto-created on first use, as a producer
    /// would).
    partitions: Vec<(String, i32)>,
    batches: Vec<((String, i32), BatchBuilder)>,
    /// The first failure to reach an output topic; reported once the guest is done.
    error: Option<AppendError>,
}

impl<'a> OutputBatches<'a> {
    pub(super) fn new(
        broker: &'a Broker,
        source: Source<'a>,
        outputs: &'a [String],
    ) -> OutputBatches<'a> {
        OutputBatches {
            broker,
            source,
            outputs,
            partitions: Vec::new(),
            batches: Vec::new(),
            error: None,
        }
    }

    fn partition_count(&mut self, topic: &str) -> Result<i32, AppendError> {
        if let Some((_, n)) = self.partitions.iter().find(|(t, _)| t == topic) {
            return Ok(*n);
        }
        let target = self
            .broker
            .catalog
            .get_or_auto_create(topic)
            .map_err(|e| AppendError::InvalidRecord(format!("output topic {topic}: {e}")))?;
        let n = target.partition_count().max(1);
        self.partitions.push((topic.to_string(), n));
        Ok(n)
    }

    fn builder(&mut self, topic: &str, partition: i32) -> &mut BatchBuilder {
        let at = match self
            .batches
            .iter()
            .position(|((t, p), _)| *p == partition && t == topic)
        {
            Some(at) => at,
            None => {
                self.batches
                    .push(((topic.to_string(), partition), BatchBuilder::new()));
                self.batches.len() - 1
            }
        };
        &mut self.batches[at].1
    }

    fn fail(&mut self, e: AppendError) {
        self.error.get_or_insert(e);
    }

    /// Takes a section the guest wrote (checked, in guest memory).
    pub(super) fn section(&mut self, s: &OutputSection<'_>) {
        let topic = self
            .outputs
            .get(s.output as usize)
            .cloned()
            .unwrap_or_default();
        let count = match self.partition_count(&topic) {
            Ok(n) => n,
            Err(e) => return self.fail(e),
        };
        let source = self.source.partition;
        if source < count {
            // Every record follows the input partition: the section is the batch.
            let records = EncodedRecords {
                records: s.records,
                count: s.record_count as i32,
                base_timestamp: s.base_timestamp,
                max_timestamp: s.max_timestamp,
            };
            if let Err(e) = self.builder(&topic, source).push_encoded(&records) {
                self.fail(AppendError::InvalidRecord(format!("output section: {e}")));
            }
            return;
        }
        for r in RecordIter::new(s.records) {
            let Ok(r) = r else {
                return self.fail(AppendError::InvalidRecord(
                    "output section does not frame".into(),
                ));
            };
            let p = follow_partition(source, r.key, count);
            let timestamp = s.base_timestamp.wrapping_add(r.timestamp_delta);
            self.builder(&topic, p)
                .push(timestamp, r.key, r.value, r.headers.iter_bytes());
        }
    }

    /// Adds records built on the host (dead-letter copies), each to `topic`.
    pub(super) fn records(&mut self, records: Vec<(String, NewRecord)>) {
        for (topic, r) in records {
            let count = match self.partition_count(&topic) {
                Ok(n) => n,
                Err(e) => return self.fail(e),
            };
            let p = follow_partition(self.source.partition, r.key.as_deref(), count);
            self.builder(&topic, p).push(
                r.timestamp,
                r.key.as_deref(),
                r.value.as_deref(),
                r.headers.iter().map(|(k, v)| (k.as_bytes(), v.as_deref())),
            );
        }
    }
}

/// Writes what `batches` gathered for `running`'s input batch from `source`: one batch per
/// destination partition, each the next batch of its stream, appended as a batch the broker
/// built (not validated again).
#[allow(clippy::too_many_arguments)]
pub(super) fn emit(
    broker: &Broker,
    running: &Running,
    batches: OutputBatches<'_>,
    codec: Compression,
    now: i64,
    depth: usize,
    mode: Mode,
    durable: &mut Vec<Durable>,
) -> Result<(), AppendError> {
    if let Some(e) = batches.error {
        return Err(e);
    }
    let source = batches.source;
    let name = running.name();
    for ((out_topic, p), builder) in batches.batches {
        let count = builder.count();
        if count == 0 {
            continue;
        }
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
        let batch = builder.finish(codec_for(broker, &out_topic, codec), &meta);
        match append_built(broker, &out_topic, p, batch, now, depth + 1, durable) {
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
