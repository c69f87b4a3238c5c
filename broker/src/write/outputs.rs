//! A deployment's outputs for one input batch, written as idempotent-producer streams: one
//! stream per (deployment, input partition, output partition), each with its own producer id and
//! sequence numbers, so re-running an input after a crash writes only what is missing.
//!
//! The output batches are built straight from the guest's sections ([`OutputBatches`]); their
//! producer fields and CRC are set once the stream's next sequence is known ([`emit`]).
//!
//! Outputs of a transactional input batch are transactional batches of the input's
//! transaction, on streams of their own: one producer id per (deployment, input partition,
//! output partition, input producer id and epoch) ([`derived_producer_id`]), at the input's
//! epoch. Its own id keeps each such stream's sequences private to one input partition's
//! ordered writes and one transaction's producer, and lets the coordinator end it with a
//! marker under that id ([`crate::txn::TransactionCoordinator::add_derived`]); derived from
//! the stored input's header, it is the same when the input is re-run after a crash.

use super::{append_built, codec_for, Durable, TxnOwner};
use crate::broker::Broker;
use crate::log::AppendError;
use crate::records::batch::{compute_crc, BatchHeader, HEADER_LEN};
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

/// The producer id of the outputs of one transactional producer (`producer_id` at `epoch`)'s
/// writes to one input partition, on one output stream: stable across restarts, and in a range
/// neither InitProducerId (counting up from 0) nor [`stream_producer_id`] (bit 62 set) reaches.
/// The epoch is part of it, so each epoch's stream starts at sequence 0, as a producer's does.
pub(super) fn derived_producer_id(
    deployment: &str,
    input_partition: i32,
    stream: &str,
    producer_id: i64,
    epoch: i16,
) -> i64 {
    let key =
        format!("{deployment}\u{0}{input_partition}\u{0}{stream}\u{0}{producer_id}\u{0}{epoch}");
    let low = murmur2(key.as_bytes()) as u32 as i64;
    let high = i64::from(crc32c::crc32c(key.as_bytes())) & 0x1fff_ffff;
    (1 << 61) | (high << 32) | low
}

/// The checkpoint's key for a derived stream's next sequence: the stream, then the input
/// producer id and epoch (`"<topic>/<partition>#<producer id>.<epoch>"`).
fn derived_key(stream: &str, producer_id: i64, epoch: i16) -> String {
    format!("{stream}#{producer_id}.{epoch}")
}

/// Marks a batch the broker built as transactional (attributes bit 4), its CRC redone.
pub(super) fn set_transactional(batch: &mut [u8]) {
    // Attributes are the i16 at byte 21 of the header, the CRC the u32 at 17 covering from 21.
    if batch.len() < HEADER_LEN {
        return;
    }
    batch[22] |= 0x10;
    let crc = compute_crc(batch);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// The sequence after a batch of `count` starting at `seq` (sequences wrap at `i32::MAX`).
fn next_sequence(seq: i32, count: i32) -> i32 {
    if seq > i32::MAX - count {
        count - (i32::MAX - seq) - 1
    } else {
        seq + count
    }
}

/// An output batch being gathered, with the topic and partition it goes to.
pub(super) type Destined = ((String, i32), BatchBuilder);

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
    batches: Vec<Destined>,
    /// The first failure to reach an output topic; reported once the guest is done.
    error: Option<AppendError>,
    /// The producer id and epoch of the input batch when it is transactional: its outputs
    /// are written on that producer's derived streams.
    txn: Option<(i64, i16)>,
    /// Whether those outputs go in the input's transaction (not when it is known committed:
    /// a re-run then writes what is missing as plain batches of the same streams).
    open: bool,
    /// In cluster mode, the partition counts of every topic the deployment may write, looked
    /// up before the guest ran (the local catalog does not hold the cluster's topics).
    known: Option<&'a [(String, i32)]>,
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
            txn: None,
            open: false,
            known: None,
        }
    }

    /// Outputs whose topics' partition counts are `known` (cluster mode): a topic not among
    /// them fails the outputs.
    pub(super) fn with_partitions(mut self, known: &'a [(String, i32)]) -> OutputBatches<'a> {
        self.known = Some(known);
        self
    }

    /// The gathered batches by destination partition, or the first failure to reach one.
    pub(super) fn into_batches(self) -> Result<Vec<Destined>, AppendError> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.batches),
        }
    }

    /// The outputs of `input`: in its transaction if it is a transactional batch.
    pub(super) fn of_batch(mut self, input: &BatchHeader) -> OutputBatches<'a> {
        if input.is_transactional() {
            self.txn = Some((input.producer_id, input.producer_epoch));
            self.open = true;
        }
        self
    }

    /// The outputs of a transactional input whose transaction is known to have committed.
    pub(super) fn committed(mut self) -> OutputBatches<'a> {
        self.open = false;
        self
    }

    /// Whether these outputs belong to an open transaction.
    pub(super) fn is_transactional(&self) -> bool {
        self.txn.is_some() && self.open
    }

    /// The partitions (and producer ids) the outputs of a transactional input will be written
    /// to by `deployment`, which must join its transaction first; empty for other inputs.
    pub(super) fn derived(&self, deployment: &str) -> Vec<crate::txn::DerivedPartition> {
        let Some((producer_id, epoch)) = self.txn.filter(|_| self.open) else {
            return Vec::new();
        };
        self.batches
            .iter()
            .filter(|(_, b)| b.count() > 0)
            .map(|((topic, p), _)| {
                let stream = format!("{topic}/{p}");
                let id = derived_producer_id(
                    deployment,
                    self.source.partition,
                    &stream,
                    producer_id,
                    epoch,
                );
                (topic.clone(), *p, id)
            })
            .collect()
    }

    fn partition_count(&mut self, topic: &str) -> Result<i32, AppendError> {
        if let Some((_, n)) = self.partitions.iter().find(|(t, _)| t == topic) {
            return Ok(*n);
        }
        if let Some(known) = self.known {
            return known
                .iter()
                .find(|(t, _)| t == topic)
                .map(|(_, n)| (*n).max(1))
                .ok_or_else(|| {
                    AppendError::InvalidRecord(format!(
                        "output topic '{topic}' is not one of the deployment's"
                    ))
                });
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
/// built (not validated again). Outputs of a transactional input go in `txn`, the input's
/// transaction, which their partitions joined already ([`OutputBatches::derived`]).
#[allow(clippy::too_many_arguments)]
pub(super) fn emit(
    broker: &Broker,
    running: &Running,
    batches: OutputBatches<'_>,
    txn: Option<TxnOwner<'_>>,
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
    let input_txn = batches.txn;
    let open = batches.open;
    let name = running.name();
    for ((out_topic, p), builder) in batches.batches {
        let count = builder.count();
        if count == 0 {
            continue;
        }
        let stream = format!("{out_topic}/{p}");
        let (producer_id, producer_epoch, key) = match input_txn {
            None => (
                stream_producer_id(&name, source.partition, &stream),
                0,
                None,
            ),
            Some((input_id, epoch)) => (
                derived_producer_id(&name, source.partition, &stream, input_id, epoch),
                epoch,
                Some(derived_key(&stream, input_id, epoch)),
            ),
        };
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
                .and_then(|pp| pp.seqs.get(key.as_ref().unwrap_or(&stream)).copied())
                .unwrap_or(0),
        };
        let meta = BatchMeta {
            base_offset: 0,
            producer_id,
            producer_epoch,
            base_sequence: seq,
        };
        let mut batch = builder.finish(codec_for(broker, &out_topic, codec), &meta);
        if input_txn.is_some() && open {
            set_transactional(&mut batch);
        }
        match append_built(broker, &out_topic, p, batch, txn, now, depth + 1, durable) {
            Ok(_) => {}
            Err(AppendError::OutOfOrderSequence { expected, got, .. })
                if mode == Mode::Replay && got < expected => {}
            // The transaction was ended with a newer epoch (fenced, aborted): what a re-run
            // would add to it must not be stored.
            Err(AppendError::InvalidProducerEpoch { .. })
                if mode == Mode::Replay && input_txn.is_some() => {}
            Err(e) => return Err(e),
        }
        let next = next_sequence(seq, count);
        running.update_progress(source.partition, |pp| match key {
            None => {
                pp.seqs.insert(stream, next);
            }
            Some(key) => {
                // Only the producer's latest epoch on the stream can still be re-run.
                if let Some((prefix, _)) = key.rsplit_once('.') {
                    let prefix = format!("{prefix}.");
                    pp.seqs.retain(|k, _| !k.starts_with(&prefix));
                }
                pp.seqs.insert(key, next);
            }
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
    fn derived_ids_are_stable_per_epoch_and_apart_from_stream_ids() {
        let a = derived_producer_id("up", 0, "out/0", 7, 3);
        assert_eq!(a, derived_producer_id("up", 0, "out/0", 7, 3));
        assert_ne!(a, derived_producer_id("up", 0, "out/0", 7, 4));
        assert_ne!(a, derived_producer_id("up", 1, "out/0", 7, 3));
        assert_ne!(a, derived_producer_id("up", 0, "out/0", 8, 3));
        assert!(((1 << 61)..(1 << 62)).contains(&a), "{a:#x}");
        assert_eq!(derived_key("out/0", 7, 3), "out/0#7.3");
    }

    #[test]
    fn a_built_batch_marked_transactional_keeps_a_valid_crc() {
        let meta = BatchMeta {
            base_offset: 0,
            producer_id: 9,
            producer_epoch: 1,
            base_sequence: 0,
        };
        let record = NewRecord {
            timestamp: 1,
            key: None,
            value: Some(b"v".to_vec()),
            headers: vec![],
        };
        let mut batch = crate::records::record::build_batch(&[record], Compression::None, &meta);
        set_transactional(&mut batch);
        let header = BatchHeader::parse(&batch).unwrap();
        assert!(header.is_transactional() && !header.is_control());
        assert_eq!(header.crc, compute_crc(&batch));
    }

    #[test]
    fn stream_ids_are_stable_and_out_of_init_producer_id_range() {
        let a = stream_producer_id("up", 0, "out/0");
        assert_eq!(a, stream_producer_id("up", 0, "out/0"));
        assert_ne!(a, stream_producer_id("up", 1, "out/0"));
        assert!(a >= 1 << 62);
    }
}
