//! A write to a topic with transforms: offsets predicted, guests run, in-place outputs stored in
//! place of the input, the input stored, then the other deployments' outputs — all under the
//! input partition's lock, so guests see the offsets their records are stored at and outputs
//! keep input order.
//!
//! A transactional input batch's outputs join its transaction: the partitions they go to are
//! added to it in the coordinator before the input is stored (a refusal stores nothing), then
//! written as transactional batches ([`outputs`]); in-place outputs are stored with the
//! input's producer id, epoch, sequence and transactional flag, as the batch it replaces.
//! Stateful deployments refuse transactional inputs: their stores apply each write's changes
//! at once and could not take back an aborted transaction's.

use std::sync::Arc;

use bytes::Bytes;

use super::outputs::{self, OutputBatches};
use super::validate::{self, Batch};
use super::{changelog, Durable, TxnOwner, MAX_DEPTH};
use crate::broker::Broker;
use crate::log::{AppendError, AppendOutcome, PartitionLog};
use crate::records::batch::BatchHeader;
use crate::records::build::{BatchBuilder, EncodedRecords};
use crate::records::record::{empty_batch, BatchMeta};
use crate::records::Compression;
use crate::transform::run::{self, Decision, Source};
use crate::transform::Running;
use crate::wasm::abi::BatchInput;

/// The write being made.
pub(super) struct Input<'a> {
    pub(super) topic: &'a str,
    pub(super) partition: i32,
    pub(super) log: &'a Arc<PartitionLog>,
    pub(super) records: &'a Bytes,
    pub(super) batches: Vec<Batch>,
    /// The transaction the input's transactional batches belong to.
    pub(super) txn: Option<TxnOwner<'a>>,
}

/// What one input batch holds now: its records as validated, or what in-place transforms
/// replaced them with (gathered uncompressed, finished into the stored batch at the end).
enum Current {
    Input,
    Rewritten(BatchBuilder),
}

/// A deployment's outputs for one input batch, written once the input is stored.
type Pending<'a> = (Arc<Running>, OutputBatches<'a>);

pub(super) fn append(
    broker: &Broker,
    input: Input<'_>,
    transforms: &[Arc<Running>],
    now: i64,
    depth: usize,
    durable: &mut Vec<Durable>,
) -> Result<AppendOutcome, AppendError> {
    let Input {
        topic,
        partition,
        log,
        records,
        batches,
        txn,
    } = input;
    if depth > MAX_DEPTH {
        return Err(AppendError::InvalidRecord(format!(
            "transform chain deeper than {MAX_DEPTH}"
        )));
    }
    if batches.iter().any(|b| b.header.is_transactional()) {
        refuse_stateful(topic, transforms)?;
    }
    if let [only] = batches.as_slice() {
        if let Some((base_offset, last_offset)) = log.stored_duplicate(&only.header) {
            // A retry of a stored batch: its outputs were written with it.
            durable.push(Durable {
                log: log.clone(),
                last_offset,
            });
            return Ok(AppendOutcome {
                base_offset,
                last_offset,
                log_append_time: -1,
                log_start_offset: log.log_start_offset(),
                duplicate: true,
            });
        }
    }
    let codec = batches
        .first()
        .and_then(|b| b.header.compression())
        .unwrap_or(Compression::None);
    let lock = broker.transforms.partition_lock(topic, partition);
    let _turn = lock.lock();

    let source = Source { topic, partition };
    let mut current: Vec<Current> = batches.iter().map(|_| Current::Input).collect();
    // Deployments' output lists, kept for the outputs' lifetime.
    let outputs_of: Vec<Vec<String>> = transforms
        .iter()
        .map(|t| t.deployment.read().outputs.clone())
        .collect();
    let mut pending: Vec<Pending<'_>> = Vec::new();
    // The deployments that ran, in order; their stores' changes are taken back on any early
    // return (`changing`), kept once written to their changelogs.
    let mut ran_deployments: Vec<Arc<Running>> = Vec::new();
    let mut changing = changelog::Changing::new(partition);
    for (t, outputs) in transforms.iter().zip(&outputs_of) {
        let in_place = t.deployment.read().in_place;
        if !in_place && t.is_backfilling(partition) {
            // The background catch-up reaches these records in order.
            continue;
        }
        changing.prepare(broker, t)?;
        ran_deployments.push(t.clone());
        // The records get the offsets they will be stored at.
        let mut next = log.high_watermark();
        let ran = pending.len();
        for (b, state) in batches.iter().zip(current.iter_mut()) {
            let (area, count, base_timestamp) = match state {
                Current::Input => (
                    b.records(records),
                    b.header.records_count,
                    b.header.base_timestamp,
                ),
                Current::Rewritten(built) => {
                    (built.records(), built.count(), built.base_timestamp())
                }
            };
            let base_offset = next;
            next += i64::from(count);
            if count <= 0 {
                continue;
            }
            let guest_input = BatchInput {
                topic,
                partition,
                base_offset,
                base_timestamp,
                record_count: count as u32,
                records: area,
            };
            let mut out = OutputBatches::new(broker, source, outputs).of_batch(&b.header);
            let dead_letters = if in_place {
                let mut replacement = BatchBuilder::new();
                let mut failed = None;
                let decision = run::decide(
                    &broker.transforms.engine,
                    &broker.authorizer,
                    t,
                    source,
                    &guest_input,
                    &mut |s| {
                        let section = EncodedRecords {
                            records: s.records,
                            count: s.record_count as i32,
                            base_timestamp: s.base_timestamp,
                            max_timestamp: s.max_timestamp,
                        };
                        if let Err(e) = replacement.push_encoded(&section) {
                            failed.get_or_insert(e);
                        }
                    },
                );
                if let Some(e) = failed {
                    return Err(AppendError::InvalidRecord(format!("transform output: {e}")));
                }
                let Decision::Write { dead_letters } = decision else {
                    return Err(reject(decision));
                };
                // The input's own records become what the guest wrote for them.
                *state = Current::Rewritten(replacement);
                dead_letters
            } else {
                let decision = run::decide(
                    &broker.transforms.engine,
                    &broker.authorizer,
                    t,
                    source,
                    &guest_input,
                    &mut |s| out.section(s),
                );
                let Decision::Write { dead_letters } = decision else {
                    return Err(reject(decision));
                };
                dead_letters
            };
            if !dead_letters.is_empty() {
                out.records(dead_letters);
            }
            pending.push((t.clone(), out));
        }
        if pending.len() == ran {
            // Nothing left to run on: the deployment's progress still moves past the input.
            pending.push((t.clone(), OutputBatches::new(broker, source, outputs)));
        }
    }

    join_transaction(broker, txn, &pending, now)?;
    let rewritten = current.iter().any(|c| matches!(c, Current::Rewritten(_)));
    let outcome = if rewritten {
        store_rewritten(log, records, &batches, current, now)?
    } else {
        log.append_validated(records, &validate::ranges(&batches), now, None)?
    };
    durable.push(Durable {
        log: log.clone(),
        last_offset: outcome.last_offset,
    });
    if outcome.duplicate {
        // A retry that raced its first copy to the lock: that copy's outputs and state changes
        // were written with it (and this run's changes are taken back with `changing`).
        return Ok(outcome);
    }
    let next_input = outcome.last_offset + 1;
    for (running, out) in pending {
        outputs::emit(
            broker,
            &running,
            out,
            txn,
            codec,
            now,
            depth,
            outputs::Mode::Inline,
            durable,
        )?;
    }
    // Each deployment's changelog batch comes after all its outputs of this write: stored, it
    // says every one of them is.
    for running in &ran_deployments {
        changelog::emit(broker, running, partition, next_input, now, depth, durable)?;
        running.update_progress(partition, |p| p.next_input = next_input);
    }
    Ok(outcome)
}

/// Refuses a transactional write to `topic` if a deployment on it keeps state.
fn refuse_stateful(topic: &str, transforms: &[Arc<Running>]) -> Result<(), AppendError> {
    match transforms.iter().find(|t| t.state.stateful) {
        Some(t) => Err(AppendError::Unsupported(format!(
            "transactional writes to {topic} are refused: transform '{}' keeps state, which \
             an aborted transaction could not take back",
            t.name()
        ))),
        None => Ok(()),
    }
}

/// Adds the partitions the outputs of transactional inputs go to (with their producer ids)
/// to the inputs' transaction, durably, before anything is stored.
fn join_transaction(
    broker: &Broker,
    txn: Option<TxnOwner<'_>>,
    pending: &[Pending<'_>],
    now: i64,
) -> Result<(), AppendError> {
    let mut derived = Vec::new();
    for (running, out) in pending.iter().filter(|(_, out)| out.is_transactional()) {
        derived.extend(out.derived(&running.name()));
    }
    if derived.is_empty() {
        return Ok(());
    }
    let Some(owner) = txn else {
        return Err(AppendError::InvalidTxnState(
            "a transactional batch outside any transaction".into(),
        ));
    };
    broker
        .transactions
        .add_derived(owner.id, owner.producer_id, owner.epoch, &derived, now)
        .map_err(|e| {
            let code = super::control::txn_error_code(&e);
            AppendError::TransactionRejected {
                code: code.code(),
                message: e.to_string(),
            }
        })
}

fn reject(decision: Decision) -> AppendError {
    match decision {
        Decision::Reject(message) => AppendError::InvalidRecord(message),
        Decision::Write { .. } => AppendError::InvalidRecord("transform refused the batch".into()),
    }
}

/// Stores the batches with what in-place transforms left of them. Each stored batch carries its
/// producer's id, epoch and last sequence (the base sequence shifted by the records dropped), so
/// the producer state rebuilt from the log after a restart follows what the producer sent; a
/// batch emptied of records is kept as an empty batch for the same reason, as Kafka's cleaner
/// does. Uncompressed, a single rewritten batch is stored from the buffer it was gathered in.
fn store_rewritten(
    log: &PartitionLog,
    records: &[u8],
    batches: &[Batch],
    current: Vec<Current>,
    now: i64,
) -> Result<AppendOutcome, AppendError> {
    let mut built: Vec<Vec<u8>> = Vec::with_capacity(batches.len());
    let mut sent = Vec::with_capacity(batches.len());
    for (b, state) in batches.iter().zip(current) {
        let header = &b.header;
        let batch = match state {
            // Not rewritten (an in-place transform skipped it): stored as it came.
            Current::Input => records.get(b.range.clone()).unwrap_or_default().to_vec(),
            Current::Rewritten(replacement) => {
                let count = replacement.count().max(0) as usize;
                if count == 0 && !header.is_idempotent() {
                    continue;
                }
                let meta = if header.is_idempotent() {
                    BatchMeta {
                        base_offset: 0,
                        producer_id: header.producer_id,
                        producer_epoch: header.producer_epoch,
                        base_sequence: shifted_base_sequence(header.last_sequence(), count),
                    }
                } else {
                    BatchMeta::default()
                };
                let mut batch = if count == 0 {
                    empty_batch(&meta, header.max_timestamp)
                } else {
                    replacement.finish(header.compression().unwrap_or(Compression::None), &meta)
                };
                if header.is_transactional() {
                    // Still the producer's batch: in its transaction, ended by its markers.
                    super::outputs::set_transactional(&mut batch);
                }
                batch
            }
        };
        built.push(batch);
        sent.push(*header);
    }
    if built.is_empty() {
        // Every record was filtered out: nothing is stored, the produce still succeeds.
        let end = log.high_watermark();
        return Ok(AppendOutcome {
            base_offset: end,
            last_offset: end - 1,
            log_append_time: -1,
            log_start_offset: log.log_start_offset(),
            duplicate: false,
        });
    }
    let bytes = if built.len() == 1 {
        built.pop().unwrap_or_default()
    } else {
        built.concat()
    };
    let mut stored = Vec::with_capacity(sent.len());
    let mut at = 0;
    while at < bytes.len() {
        let parsed = BatchHeader::parse(&bytes[at..])
            .ok_or_else(|| AppendError::InvalidRecord("a rebuilt batch has no header".into()))?;
        let end = at + parsed.total_size();
        stored.push((at..end, parsed));
        at = end;
    }
    log.append_validated(&bytes, &stored, now, Some(&sent))
}

/// The base sequence that makes a batch of `count` records end at `last_sequence` (sequences
/// wrap from `i32::MAX` to 0); an empty batch ends where it starts.
fn shifted_base_sequence(last_sequence: i32, count: usize) -> i32 {
    let back = count.saturating_sub(1) as i64;
    (i64::from(last_sequence) - back).rem_euclid(i64::from(i32::MAX) + 1) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifted_sequences_end_where_the_producer_ended() {
        assert_eq!(shifted_base_sequence(9, 10), 0);
        assert_eq!(shifted_base_sequence(9, 3), 7);
        assert_eq!(shifted_base_sequence(9, 0), 9);
        assert_eq!(shifted_base_sequence(1, 4), i32::MAX - 1);
    }
}
