//! A write to a topic with transforms: offsets predicted, guests run, in-place outputs stored in
//! place of the input, the input stored, then the other deployments' outputs — all under the
//! input partition's lock, so guests see the offsets their records are stored at and outputs
//! keep input order.

use std::sync::Arc;

use bytes::Bytes;

use super::validate::{self, Batch};
use super::{outputs, Durable, MAX_DEPTH};
use crate::broker::Broker;
use crate::log::{AppendError, AppendOutcome, PartitionLog};
use crate::records::batch::BatchHeader;
use crate::records::record::{build_batch, decode_area, BatchMeta};
use crate::records::{Compression, NewRecord, RecordView};
use crate::transform::run::{self, Decision, Source};
use crate::transform::Running;

/// The write being made.
pub(super) struct Input<'a> {
    pub(super) topic: &'a str,
    pub(super) partition: i32,
    pub(super) log: &'a Arc<PartitionLog>,
    pub(super) records: &'a Bytes,
    pub(super) batches: Vec<Batch>,
}

/// Records a deployment writes once the input is stored: `(topic, record)`.
type Pending = (Arc<Running>, Vec<(String, NewRecord)>);

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
    } = input;
    if depth > MAX_DEPTH {
        return Err(AppendError::InvalidRecord(format!(
            "transform chain deeper than {MAX_DEPTH}"
        )));
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

    // The records, at the offsets they will be stored at.
    let mut next = log.high_watermark();
    let mut decoded: Vec<(BatchHeader, Vec<RecordView>)> = Vec::with_capacity(batches.len());
    for b in &batches {
        let mut recs = decode_area(&b.header, b.records(records)).map_err(AppendError::from)?;
        for r in &mut recs {
            r.offset = next;
            next += 1;
        }
        decoded.push((b.header, recs));
    }

    let source = Source { topic, partition };
    let mut pending: Vec<Pending> = Vec::new();
    let mut rewritten = false;
    for t in transforms {
        let (in_place, outputs) = {
            let d = t.deployment.read();
            (d.in_place, d.outputs.clone())
        };
        if !in_place && t.is_backfilling(partition) {
            // The background catch-up reaches these records in order.
            continue;
        }
        let mut to_write = Vec::new();
        for (_, recs) in &mut decoded {
            if recs.is_empty() {
                continue;
            }
            let writes = match run::decide(
                &broker.transforms.engine,
                &broker.authorizer,
                t,
                source,
                recs,
            ) {
                Decision::Reject(message) => return Err(AppendError::InvalidRecord(message)),
                Decision::Write(writes) => writes,
            };
            to_write.extend(writes.dead_letters);
            if in_place {
                // The input's own records become what the guest wrote for them.
                let kept = writes
                    .outputs
                    .into_iter()
                    .map(|(input_index, _, rec)| RecordView {
                        offset: recs.get(input_index).map_or(0, |r| r.offset),
                        timestamp: rec.timestamp,
                        key: rec.key,
                        value: rec.value,
                        headers: rec.headers,
                    })
                    .collect();
                *recs = kept;
                rewritten = true;
            } else {
                for (_, output, rec) in writes.outputs {
                    to_write.push((outputs.get(output).cloned().unwrap_or_default(), rec));
                }
            }
        }
        pending.push((t.clone(), to_write));
    }

    let outcome = if rewritten {
        store_rewritten(log, &decoded, now)?
    } else {
        log.append_validated(records, &validate::ranges(&batches), now, None)?
    };
    durable.push(Durable {
        log: log.clone(),
        last_offset: outcome.last_offset,
    });
    let next_input = outcome.last_offset + 1;
    for (running, to_write) in pending {
        outputs::emit(
            broker,
            &running,
            source,
            to_write,
            codec,
            now,
            depth,
            outputs::Mode::Inline,
            durable,
        )?;
        running.update_progress(partition, |p| p.next_input = next_input);
    }
    Ok(outcome)
}

/// Stores what in-place transforms left of each batch. Each stored batch carries its producer's
/// id, epoch and last sequence (the base sequence shifted by the records dropped), so the
/// producer state rebuilt from the log after a restart follows what the producer sent; a batch
/// emptied of records is kept as an empty batch for the same reason, as Kafka's cleaner does.
fn store_rewritten(
    log: &PartitionLog,
    decoded: &[(BatchHeader, Vec<RecordView>)],
    now: i64,
) -> Result<AppendOutcome, AppendError> {
    let mut bytes = Vec::new();
    let mut stored = Vec::new();
    let mut sent = Vec::new();
    for (header, recs) in decoded {
        if recs.is_empty() && !header.is_idempotent() {
            continue;
        }
        let meta = if header.is_idempotent() {
            BatchMeta {
                base_offset: 0,
                producer_id: header.producer_id,
                producer_epoch: header.producer_epoch,
                base_sequence: shifted_base_sequence(header.last_sequence(), recs.len()),
            }
        } else {
            BatchMeta::default()
        };
        let new: Vec<NewRecord> = recs
            .iter()
            .map(|r| NewRecord {
                timestamp: r.timestamp,
                key: r.key.clone(),
                value: r.value.clone(),
                headers: r.headers.clone(),
            })
            .collect();
        let batch = if new.is_empty() {
            crate::records::record::empty_batch(&meta, header.max_timestamp)
        } else {
            build_batch(
                &new,
                header.compression().unwrap_or(Compression::None),
                &meta,
            )
        };
        let parsed = BatchHeader::parse(&batch)
            .ok_or_else(|| AppendError::InvalidRecord("a rebuilt batch has no header".into()))?;
        let start = bytes.len();
        bytes.extend_from_slice(&batch);
        stored.push((start..bytes.len(), parsed));
        sent.push(*header);
    }
    if stored.is_empty() {
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
