//! Re-running stored inputs through a deployment: after a crash (the inputs past its last
//! checkpoint, before any client is served) and for a deployment made `--from` an earlier
//! offset (in the background, throttled, until it catches up with new writes).
//!
//! Both write outputs in [`Mode::Replay`](super::outputs::Mode::Replay): what the output logs
//! already hold is recognised by its stream's sequence numbers and skipped, so every input's
//! outputs exist exactly once.
//!
//! A stored transactional input is re-run by what became of its transaction ([`fate`]): still
//! open, its outputs join it (as when it was first written); aborted, it has none; committed,
//! what is missing of its outputs is written as plain batches of the same streams. The
//! background catch-up stops at the partition's last stable offset, so it only meets ended
//! transactions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::outputs::{self, Mode, OutputBatches};
use super::TxnOwner;
use crate::broker::{now_ms, Broker};
use crate::log::{AppendError, PartitionLog};
use crate::records::batch::BatchHeader;
use crate::records::record::{records_area, RecordIter};
use crate::records::Compression;
use crate::transform::run::{self, Decision, Source};
use crate::transform::Running;
use crate::txn::TxnState;
use crate::wasm::abi::BatchInput;

/// Most bytes a stored batch may inflate to when decoded for a guest.
const DECODE_LIMIT: usize = 256 << 20;
/// Bytes of stored batches one backfill step reads; the partition's writes wait at most one step.
const BACKFILL_STEP_BYTES: usize = 256 << 10;

/// Completes what a crash interrupted: for every deployment and input partition that is not
/// backfilling, runs the inputs stored past the checkpoint and writes what of their outputs is
/// missing.
pub fn recover(broker: &Broker) {
    for running in broker.transforms.list() {
        let (name, input, skip) = {
            let d = running.deployment.read();
            (d.name.clone(), d.input.clone(), d.in_place || d.paused)
        };
        if skip {
            continue;
        }
        let Some(topic) = broker.catalog.get(&input) else {
            continue;
        };
        if running.state.stateful {
            // The store (and the exact progress it stands for) first: re-running starts where
            // it stopped.
            for partition in 0..topic.partition_count() {
                if let Err(e) = super::changelog::restore(broker, &running, partition) {
                    tracing::error!(transform = %name, partition, "cannot restore the state store: {e}");
                }
            }
        }
        let starts: Vec<(i32, i64)> = running
            .progress
            .lock()
            .iter()
            .filter(|(_, p)| !p.backfilling)
            .map(|(p, pp)| (*p, pp.next_input))
            .collect();
        for (partition, from) in starts {
            let Some(log) = topic.partition(partition) else {
                continue;
            };
            if from >= log.high_watermark() {
                continue;
            }
            let lock = broker.transforms.partition_lock(&input, partition);
            let _turn = lock.lock();
            match replay(broker, &running, &input, partition, &log, usize::MAX, false) {
                Ok(n) => {
                    tracing::info!(transform = %name, partition, from, records = n, "re-ran inputs interrupted by a crash")
                }
                Err(e) => tracing::error!(transform = %name, partition, "recovery failed: {e}"),
            }
        }
    }
}

/// What became of a stored transactional input's transaction, for re-running it.
enum Fate {
    /// Still open: its outputs join it, in the transaction of this id.
    Open {
        transactional_id: String,
        producer_id: i64,
        epoch: i16,
    },
    /// Committed: its outputs are written as plain batches.
    Committed,
    /// Aborted, or being aborted: it has no outputs.
    Aborted,
}

fn fate(broker: &Broker, log: &PartitionLog, header: &BatchHeader) -> Fate {
    let pid = header.producer_id;
    let open = log
        .ongoing_transactions()
        .iter()
        .any(|&(p, first)| p == pid && first <= header.base_offset);
    if open {
        return match broker.transactions.owner_of(pid) {
            Some((
                transactional_id,
                producer_id,
                epoch,
                TxnState::Ongoing | TxnState::PrepareCommit,
            )) if epoch == header.producer_epoch => Fate::Open {
                transactional_id,
                producer_id,
                epoch,
            },
            // Fenced and being aborted, of an epoch since ended, or unknown to the coordinator
            // (which ends nothing it does not know): nothing of it may become visible.
            _ => Fate::Aborted,
        };
    }
    let aborted = log
        .aborted_transactions(header.base_offset, header.base_offset + 1)
        .iter()
        .any(|a| a.producer_id == pid && a.first_offset <= header.base_offset);
    if aborted {
        Fate::Aborted
    } else {
        Fate::Committed
    }
}

/// Runs the stored inputs from `running`'s progress in `partition` on, up to about `max_bytes`
/// of stored batches (and, with `stable_only`, not past the last stable offset); returns how
/// many records ran. The caller holds the partition lock.
fn replay(
    broker: &Broker,
    running: &Arc<Running>,
    topic: &str,
    partition: i32,
    log: &Arc<PartitionLog>,
    max_bytes: usize,
    stable_only: bool,
) -> Result<usize, AppendError> {
    let mut next = running
        .progress
        .lock()
        .get(&partition)
        .map_or(0, |p| p.next_input)
        .max(log.log_start_offset());
    let mut count = 0;
    let mut read = 0;
    let mut durable = Vec::new();
    let outputs_of = running.deployment.read().outputs.clone();
    let source = Source { topic, partition };
    let end = if stable_only {
        log.last_stable_offset()
    } else {
        log.high_watermark()
    };
    'read: while next < end && read < max_bytes {
        let slice = log
            .read(next, 1 << 20, true)
            .map_err(|e| AppendError::Io(std::io::Error::other(e.to_string())))?;
        if slice.records.is_empty() {
            break;
        }
        read += slice.records.len();
        let mut rest = &slice.records[..];
        while let Some((_, size)) = BatchHeader::peek_size(rest) {
            let size = size.min(rest.len());
            let bytes = &rest[..size];
            rest = &rest[size..];
            let header = BatchHeader::parse(bytes).ok_or_else(|| {
                AppendError::CorruptMessage("a stored batch has no header".into())
            })?;
            if header.base_offset >= end {
                break 'read;
            }
            let area = records_area(bytes, &header, DECODE_LIMIT).map_err(AppendError::from)?;
            // The records of the batch from `next` on (a batch may be half done).
            let (records, left) = records_from(&area, header.base_offset, next)?;
            next = next.max(header.last_offset() + 1);
            let fate = header
                .is_transactional()
                .then(|| fate(broker, log, &header));
            // A transaction marker is not an input to transform, nor is an aborted one's.
            if left > 0 && !header.is_control() && !matches!(fate, Some(Fate::Aborted)) {
                let codec = header.compression().unwrap_or(Compression::None);
                let mut changing = super::changelog::Changing::new(partition);
                changing.prepare(broker, running)?;
                let input = BatchInput {
                    topic,
                    partition,
                    base_offset: header.base_offset,
                    base_timestamp: header.base_timestamp,
                    record_count: left,
                    records,
                };
                let fresh = || {
                    let out = OutputBatches::new(broker, source, &outputs_of).of_batch(&header);
                    match fate {
                        Some(Fate::Committed) => out.committed(),
                        _ => out,
                    }
                };
                let mut out = fresh();
                match run::decide(
                    &broker.transforms.engine,
                    &broker.authorizer,
                    running,
                    source,
                    &input,
                    &mut |s| out.section(s),
                ) {
                    // A rejected input is stored already; nothing of it is written.
                    Decision::Reject(_) => out = fresh(),
                    Decision::Write { dead_letters } => out.records(dead_letters),
                }
                let txn = match &fate {
                    Some(Fate::Open {
                        transactional_id,
                        producer_id,
                        epoch,
                    }) => Some(TxnOwner {
                        id: transactional_id,
                        producer_id: *producer_id,
                        epoch: *epoch,
                    }),
                    _ => None,
                };
                if let Some(owner) = txn {
                    let derived = out.derived(&running.name());
                    if !derived.is_empty() {
                        broker
                            .transactions
                            .add_derived(
                                owner.id,
                                owner.producer_id,
                                owner.epoch,
                                &derived,
                                now_ms(),
                            )
                            .map_err(|e| AppendError::TransactionRejected {
                                code: super::control::txn_error_code(&e).code(),
                                message: e.to_string(),
                            })?;
                    }
                }
                outputs::emit(
                    broker,
                    running,
                    out,
                    txn,
                    codec,
                    now_ms(),
                    0,
                    Mode::Replay,
                    &mut durable,
                )?;
                super::changelog::emit(
                    broker,
                    running,
                    partition,
                    next,
                    now_ms(),
                    0,
                    &mut durable,
                )?;
                count += left as usize;
            }
            running.update_progress(partition, |p| p.next_input = next);
        }
    }
    Ok(count)
}

/// The part of a stored batch's records area (at `base_offset`) from offset `from` on, and how
/// many records it holds.
fn records_from(area: &[u8], base_offset: i64, from: i64) -> Result<(&[u8], u32), AppendError> {
    let mut start = area;
    let mut left = 0u32;
    let mut iter = RecordIter::new(area);
    while let Some(record) = iter.next() {
        let record = record.map_err(AppendError::CorruptMessage)?;
        if base_offset + i64::from(record.offset_delta) < from {
            start = iter.rest();
        } else {
            left += 1;
        }
    }
    Ok((start, left))
}

/// Starts the background catch-up of every deployment that has partitions backfilling (at
/// start, after [`recover`]).
pub fn spawn_backfills(broker: &Arc<Broker>) {
    for running in broker.transforms.list() {
        if running.progress.lock().values().any(|p| p.backfilling) {
            spawn_backfill(broker, running.name());
        }
    }
}

/// Runs the deployment `name` over its partitions' earlier records, a step at a time on the
/// guest pool, resting as long as each step took (so it uses at most about half a guest thread),
/// until every partition has caught up; then new writes are transformed inline again.
pub fn spawn_backfill(broker: &Arc<Broker>, name: String) {
    let broker = broker.clone();
    tokio::spawn(async move {
        loop {
            let started = Instant::now();
            let b = broker.clone();
            let n = name.clone();
            let step = broker.guests.run(move || backfill_step(&b, &n)).await;
            match step {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => {
                    tracing::info!(transform = %name, "backfill caught up");
                    return;
                }
                Ok(Err(e)) => {
                    tracing::error!(transform = %name, "backfill step failed, retrying: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(_) => return,
            }
            tokio::time::sleep(started.elapsed().max(Duration::from_millis(1))).await;
        }
    });
}

/// One step over each backfilling partition; `Ok(false)` once none is left (or the deployment
/// is gone).
fn backfill_step(broker: &Broker, name: &str) -> Result<bool, AppendError> {
    let Some(running) = broker.transforms.get(name) else {
        return Ok(false);
    };
    let (input, paused) = {
        let d = running.deployment.read();
        (d.input.clone(), d.paused)
    };
    let Some(topic) = broker.catalog.get(&input) else {
        return Ok(false);
    };
    let partitions: Vec<i32> = running
        .progress
        .lock()
        .iter()
        .filter(|(_, p)| p.backfilling)
        .map(|(p, _)| *p)
        .collect();
    if partitions.is_empty() {
        return Ok(false);
    }
    if paused {
        return Ok(true);
    }
    for partition in partitions {
        let Some(log) = topic.partition(partition) else {
            running.update_progress(partition, |p| p.backfilling = false);
            continue;
        };
        let lock = broker.transforms.partition_lock(&input, partition);
        let _turn = lock.lock();
        // Only ended transactions: an open one's outputs could not join it from here.
        replay(
            broker,
            &running,
            &input,
            partition,
            &log,
            BACKFILL_STEP_BYTES,
            true,
        )?;
        let done = running
            .progress
            .lock()
            .get(&partition)
            .is_none_or(|p| p.next_input >= log.high_watermark());
        if done {
            // Under the partition lock: the next write is the first one run inline.
            running.update_progress(partition, |p| p.backfilling = false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::record::write_record;

    #[test]
    fn a_half_done_batch_resumes_at_its_first_record_not_yet_run() {
        let mut area = Vec::new();
        for i in 0..4 {
            write_record(&mut area, i, 0, None, Some(b"v"), std::iter::empty());
        }
        let (all, n) = records_from(&area, 100, 90).unwrap();
        assert_eq!((all.len(), n), (area.len(), 4));
        let (rest, n) = records_from(&area, 100, 102).unwrap();
        assert_eq!(n, 2);
        let offsets: Vec<i32> = RecordIter::new(rest)
            .map(|r| r.unwrap().offset_delta)
            .collect();
        assert_eq!(offsets, vec![2, 3]);
        assert_eq!(records_from(&area, 100, 104).unwrap().1, 0);
        assert!(records_from(&[0x03, 0x00], 0, 0).is_err());
    }
}
