//! Re-running stored inputs through a deployment: after a crash (the inputs past its last
//! checkpoint, before any client is served) and for a deployment made `--from` an earlier
//! offset (in the background, throttled, until it catches up with new writes).
//!
//! Both write outputs in [`Mode::Replay`](super::outputs::Mode::Replay): what the output logs
//! already hold is recognised by its stream's sequence numbers and skipped, so every input's
//! outputs exist exactly once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::outputs::{self, Mode};
use crate::broker::{now_ms, Broker};
use crate::log::{AppendError, PartitionLog};
use crate::records::batch::BatchHeader;
use crate::records::record::decode_records;
use crate::records::{Compression, RecordView};
use crate::transform::run::{self, Decision, Source};
use crate::transform::Running;

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
            match replay(broker, &running, &input, partition, &log, usize::MAX) {
                Ok(n) => {
                    tracing::info!(transform = %name, partition, from, records = n, "re-ran inputs interrupted by a crash")
                }
                Err(e) => tracing::error!(transform = %name, partition, "recovery failed: {e}"),
            }
        }
    }
}

/// Runs the stored inputs from `running`'s progress in `partition` on, up to about `max_bytes`
/// of stored batches; returns how many records ran. The caller holds the partition lock.
fn replay(
    broker: &Broker,
    running: &Running,
    topic: &str,
    partition: i32,
    log: &Arc<PartitionLog>,
    max_bytes: usize,
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
    while next < log.high_watermark() && read < max_bytes {
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
            let (header, recs) =
                decode_records(&rest[..size], DECODE_LIMIT).map_err(AppendError::from)?;
            rest = &rest[size..];
            let recs: Vec<RecordView> = recs.into_iter().filter(|r| r.offset >= next).collect();
            next = next.max(header.last_offset() + 1);
            // A transaction marker is not an input to transform.
            if !recs.is_empty() && !header.is_control() {
                let codec = header.compression().unwrap_or(Compression::None);
                let mut to_write = Vec::new();
                match run::decide(
                    &broker.transforms.engine,
                    &broker.authorizer,
                    running,
                    source,
                    &recs,
                ) {
                    // A rejected input is stored already; nothing of it is written.
                    Decision::Reject(_) => {}
                    Decision::Write(writes) => {
                        to_write.extend(writes.dead_letters);
                        to_write.extend(
                            writes.outputs.into_iter().map(|(_, o, r)| {
                                (outputs_of.get(o).cloned().unwrap_or_default(), r)
                            }),
                        );
                    }
                }
                outputs::emit(
                    broker,
                    running,
                    source,
                    to_write,
                    codec,
                    now_ms(),
                    0,
                    Mode::Replay,
                    &mut durable,
                )?;
                count += recs.len();
            }
            running.update_progress(partition, |p| p.next_input = next);
        }
    }
    Ok(count)
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
        replay(
            broker,
            &running,
            &input,
            partition,
            &log,
            BACKFILL_STEP_BYTES,
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
