//! Transforms on the write path: a produced batch's records go through every transform deployed
//! on its topic before the produce is answered. In-place transforms rewrite what the input topic
//! stores; the others write to their output topics (which may run transforms of their own).
//!
//! Per input partition, predicting offsets, running guests and appending happen under one lock,
//! so guests see the offsets their input records are stored at and outputs keep input order.
//!
//! Exactly once across crashes: the input is stored first, then the outputs. Each (deployment,
//! input partition, output partition) is an idempotent-producer stream with its own producer id
//! and sequence numbers, and the deployment's progress (next input offset, next sequence per
//! stream) is saved after each batch. At start, [`recover`] re-runs the inputs past the saved
//! progress with the saved sequences: outputs already stored are recognised by the log as
//! duplicates (or as sequences it has passed) and dropped; missing ones are written.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;

use super::deployment::OnError;
use super::registry::Running;
use crate::api::Broker;
use crate::log::{AppendError, AppendOutcome, PartitionLog};
use crate::records::batch::{self, BatchHeader};
use crate::records::record::{build_batch, decode_records, BatchMeta, NewRecord, RecordView};
use crate::records::Compression;

/// Transform chains deeper than this are refused (deploy-time cycle checks keep them finite).
const MAX_DEPTH: usize = 8;
/// Most bytes a batch may inflate to when decoded for a guest.
const DECODE_LIMIT: usize = 256 << 20;

/// A record bound for a named output topic.
type Addressed = (String, NewRecord);

/// An append another partition must make durable before an `acks=-1` produce is answered.
pub(crate) struct Written {
    pub(crate) log: Arc<PartitionLog>,
    pub(crate) last_offset: i64,
}

/// Kafka's murmur2, as the Java client's default partitioner hashes keys.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    match tail.len() {
        3 => {
            h ^= u32::from(tail[2]) << 16;
            h ^= u32::from(tail[1]) << 8;
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        2 => {
            h ^= u32::from(tail[1]) << 8;
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        1 => {
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        _ => {}
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The output partition for a record from input partition `input_partition`: the same index if
/// the output topic has it, else by key (murmur2), else by input partition.
fn output_partition(input_partition: i32, key: Option<&[u8]>, count: i32) -> i32 {
    if input_partition < count {
        return input_partition;
    }
    match key {
        Some(k) => (murmur2(k) & 0x7fff_ffff) % count,
        None => input_partition % count,
    }
}

/// Appends `records` to `topic`/`partition`, running the transforms deployed on the topic.
pub(crate) fn append(
    broker: &Broker,
    topic: &str,
    partition: i32,
    log: &Arc<PartitionLog>,
    records: Bytes,
    now: i64,
    written: &mut Vec<Written>,
) -> Result<AppendOutcome, AppendError> {
    append_at_depth(broker, topic, partition, log, records, now, written, 0)
}

#[allow(clippy::too_many_arguments)]
fn append_at_depth(
    broker: &Broker,
    topic: &str,
    partition: i32,
    log: &Arc<PartitionLog>,
    records: Bytes,
    now: i64,
    written: &mut Vec<Written>,
    depth: usize,
) -> Result<AppendOutcome, AppendError> {
    let transforms = broker.transforms.for_topic(topic);
    if transforms.is_empty() {
        return log.append(records, now);
    }
    if depth > MAX_DEPTH {
        return Err(AppendError::InvalidRecord(format!(
            "transform chain deeper than {MAX_DEPTH}"
        )));
    }
    // Decode the input: validation first, exactly as the log would.
    let ranges = batch::split(&records).map_err(|e| AppendError::CorruptMessage(e.to_string()))?;
    let mut batches: Vec<(BatchHeader, Vec<RecordView>)> = Vec::with_capacity(ranges.len());
    for r in ranges {
        let bytes = &records[r];
        batch::validate(bytes, u32::MAX).map_err(|e| AppendError::CorruptMessage(e.to_string()))?;
        batches.push(
            decode_records(bytes, DECODE_LIMIT)
                .map_err(|e| AppendError::CorruptMessage(e.to_string()))?,
        );
    }
    if let [(header, _)] = batches.as_slice() {
        if let Some((base_offset, last_offset)) = log.stored_duplicate(header) {
            // A retry of a stored batch: its outputs were written with it.
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
        .and_then(|(h, _)| h.compression())
        .unwrap_or(Compression::None);
    let lock = broker.transforms.partition_lock(topic, partition);
    let _turn = lock.lock();

    // Offsets the input records will be stored at.
    let mut next = log.high_watermark();
    for (_, recs) in &mut batches {
        for r in recs.iter_mut() {
            r.offset = next;
            next += 1;
        }
    }
    // Per deployment: what to write once the input is stored.
    let mut pending: Vec<(Arc<Running>, Vec<Addressed>)> = Vec::new();
    let mut rewritten = false;
    for t in &transforms {
        let d = t.deployment.read().clone();
        let mut to_write: Vec<(String, NewRecord)> = Vec::new();
        for (_, recs) in &mut batches {
            if recs.is_empty() {
                continue;
            }
            let result = run(broker, t, topic, partition, recs);
            t.stats.batches.fetch_add(1, Ordering::Relaxed);
            t.stats
                .records_in
                .fetch_add(recs.len() as u64, Ordering::Relaxed);
            let (produced, errors) = match result {
                Ok(ok) => ok,
                Err(message) => {
                    t.failed(&message);
                    (
                        Vec::new(),
                        (0..recs.len()).map(|i| (i, message.clone())).collect(),
                    )
                }
            };
            if let Some((_, message)) = errors.first() {
                match &d.on_error {
                    OnError::Reject => {
                        t.stats.rejected.fetch_add(1, Ordering::Relaxed);
                        return Err(AppendError::InvalidRecord(format!(
                            "transform {}: {message}",
                            d.name
                        )));
                    }
                    OnError::Skip => {
                        t.stats
                            .skipped
                            .fetch_add(errors.len() as u64, Ordering::Relaxed);
                    }
                    OnError::DeadLetter(dlq) => {
                        t.stats
                            .dead_lettered
                            .fetch_add(errors.len() as u64, Ordering::Relaxed);
                        for (i, message) in &errors {
                            if let Some(r) = recs.get(*i) {
                                to_write.push((
                                    dlq.clone(),
                                    dead_letter(topic, partition, r, message, &d.name),
                                ));
                            }
                        }
                    }
                }
            }
            t.stats
                .records_out
                .fetch_add(produced.len() as u64, Ordering::Relaxed);
            if d.in_place {
                // The input's own records become what the guest wrote for them.
                let mut kept = Vec::with_capacity(produced.len());
                for (input_index, _, rec) in produced {
                    let source = recs.get(input_index).map_or(0, |r| r.offset);
                    kept.push(RecordView {
                        offset: source,
                        timestamp: rec.timestamp,
                        key: rec.key,
                        value: rec.value,
                        headers: rec.headers,
                    });
                }
                *recs = kept;
                rewritten = true;
            } else {
                for (_, output, rec) in produced {
                    to_write.push((d.outputs.get(output).cloned().unwrap_or_default(), rec));
                }
            }
        }
        pending.push((t.clone(), to_write));
    }

    // Store the input (rewritten by in-place transforms, or exactly as received).
    let outcome = if rewritten {
        let mut bytes = Vec::new();
        let mut sent = Vec::new();
        for (header, recs) in &batches {
            if recs.is_empty() {
                continue;
            }
            let new: Vec<NewRecord> = recs
                .iter()
                .map(|r| NewRecord {
                    timestamp: r.timestamp,
                    key: r.key.clone(),
                    value: r.value.clone(),
                    headers: r.headers.clone(),
                })
                .collect();
            bytes.extend(build_batch(
                &new,
                header.compression().unwrap_or(Compression::None),
                &BatchMeta::default(),
            ));
            sent.push(*header);
        }
        if bytes.is_empty() {
            // Every record was filtered out: nothing is stored, the produce still succeeds.
            let end = log.high_watermark();
            AppendOutcome {
                base_offset: end,
                last_offset: end - 1,
                log_append_time: -1,
                log_start_offset: log.log_start_offset(),
                duplicate: false,
            }
        } else {
            log.append_as(Bytes::from(bytes), now, Some(&sent))?
        }
    } else {
        log.append(records, now)?
    };
    written.push(Written {
        log: log.clone(),
        last_offset: outcome.last_offset,
    });
    let next_input = outcome.last_offset + 1;
    for (running, records) in pending {
        emit(
            broker, &running, topic, partition, records, codec, now, written, depth, false,
        )?;
        advance(&running, partition, next_input);
    }
    Ok(outcome)
}

/// The dead-letter copy of an input record: its key, value and headers, plus why.
fn dead_letter(
    topic: &str,
    partition: i32,
    r: &RecordView,
    message: &str,
    deployment: &str,
) -> NewRecord {
    let mut headers = r.headers.clone();
    headers.push(("sluice.error".into(), Some(message.as_bytes().to_vec())));
    headers.push((
        "sluice.transform".into(),
        Some(deployment.as_bytes().to_vec()),
    ));
    headers.push((
        "sluice.source".into(),
        Some(format!("{topic}/{partition}@{}", r.offset).into_bytes()),
    ));
    NewRecord {
        timestamp: r.timestamp,
        key: r.key.clone(),
        value: r.value.clone(),
        headers,
    }
}

/// The producer id of one output stream: stable across restarts, and in a range InitProducerId
/// never reaches (it counts up from 0).
fn stream_producer_id(deployment: &str, input_partition: i32, stream: &str) -> i64 {
    let low = murmur2(format!("{deployment}\u{0}{input_partition}\u{0}{stream}").as_bytes()) as u32
        as i64;
    let high = (murmur2(deployment.as_bytes()) as u32 as i64) & 0x3fff_ffff;
    (1 << 62) | (high << 32) | low
}

/// Writes one deployment's outputs for one input batch, one batch per destination partition,
/// each the next batch of its idempotent stream. In `replay`, batches the log already holds (a
/// duplicate, or a sequence it has passed) are skipped.
#[allow(clippy::too_many_arguments)]
fn emit(
    broker: &Broker,
    running: &Running,
    topic: &str,
    partition: i32,
    records: Vec<(String, NewRecord)>,
    codec: Compression,
    now: i64,
    written: &mut Vec<Written>,
    depth: usize,
    replay: bool,
) -> Result<(), AppendError> {
    let name = running.name();
    let _ = topic;
    let mut groups: Vec<((String, i32), Vec<NewRecord>)> = Vec::new();
    for (out_topic, rec) in records {
        let target = broker
            .catalog
            .get_or_auto_create(&out_topic)
            .map_err(|e| AppendError::InvalidRecord(format!("output topic {out_topic}: {e}")))?;
        let p = output_partition(
            partition,
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
        let Some(out_log) = broker.catalog.get(&out_topic).and_then(|t| t.partition(p)) else {
            continue;
        };
        let stream = format!("{out_topic}/{p}");
        let seq = running
            .progress
            .lock()
            .get(&partition)
            .and_then(|pp| pp.seqs.get(&stream).copied())
            .unwrap_or(0);
        let meta = BatchMeta {
            base_offset: 0,
            producer_id: stream_producer_id(&name, partition, &stream),
            producer_epoch: 0,
            base_sequence: seq,
        };
        let count = recs.len() as i32;
        let bytes = Bytes::from(build_batch(&recs, codec, &meta));
        match append_at_depth(
            broker,
            &out_topic,
            p,
            &out_log,
            bytes,
            now,
            written,
            depth + 1,
        ) {
            Ok(out) => {
                if !out.duplicate {
                    written.push(Written {
                        log: out_log.clone(),
                        last_offset: out.last_offset,
                    });
                }
            }
            Err(AppendError::OutOfOrderSequence { expected, got, .. })
                if replay && got < expected => {}
            Err(e) => return Err(e),
        }
        let next = if seq > i32::MAX - count {
            count - (i32::MAX - seq) - 1
        } else {
            seq + count
        };
        running
            .progress
            .lock()
            .entry(partition)
            .or_default()
            .seqs
            .insert(stream, next);
    }
    Ok(())
}

/// Marks input `partition` of `running` done up to `next_input` and saves the progress.
fn advance(running: &Running, partition: i32, next_input: i64) {
    running
        .progress
        .lock()
        .entry(partition)
        .or_default()
        .next_input = next_input;
    if let Err(e) = running.save_progress() {
        tracing::warn!(transform = %running.name(), "cannot save transform progress: {e}");
    }
}

/// Completes transforms a crash interrupted: for every deployment and input partition, runs the
/// inputs stored past the saved progress and writes whatever of their outputs is missing.
pub fn recover(broker: &Broker) {
    for running in broker.transforms.list() {
        let d = running.deployment.read().clone();
        if d.in_place || d.paused {
            continue;
        }
        let Some(input) = broker.catalog.get(&d.input) else {
            continue;
        };
        let starts: Vec<(i32, i64)> = running
            .progress
            .lock()
            .iter()
            .map(|(p, pp)| (*p, pp.next_input))
            .collect();
        for (partition, from) in starts {
            let Some(log) = input.partition(partition) else {
                continue;
            };
            if from >= log.high_watermark() {
                continue;
            }
            match replay(broker, &running, &d.input, partition, &log, from) {
                Ok(n) => {
                    tracing::info!(transform = %d.name, partition, from, records = n, "re-ran inputs interrupted by a crash")
                }
                Err(e) => tracing::error!(transform = %d.name, partition, "recovery failed: {e}"),
            }
        }
    }
}

fn replay(
    broker: &Broker,
    running: &Running,
    topic: &str,
    partition: i32,
    log: &Arc<PartitionLog>,
    from: i64,
) -> Result<usize, AppendError> {
    let mut next = from.max(log.log_start_offset());
    let mut count = 0;
    let mut written = Vec::new();
    let (policy, name, outputs) = {
        let d = running.deployment.read();
        (d.on_error.clone(), d.name.clone(), d.outputs.clone())
    };
    while next < log.high_watermark() {
        let slice = log
            .read(next, 1 << 20, true)
            .map_err(|e| AppendError::Io(std::io::Error::other(e.to_string())))?;
        if slice.records.is_empty() {
            break;
        }
        let mut rest = &slice.records[..];
        while let Some((_, size)) = BatchHeader::peek_size(rest) {
            let size = size.min(rest.len());
            let (header, recs) = decode_records(&rest[..size], DECODE_LIMIT)
                .map_err(|e| AppendError::CorruptMessage(e.to_string()))?;
            rest = &rest[size..];
            let recs: Vec<RecordView> = recs.into_iter().filter(|r| r.offset >= next).collect();
            next = next.max(header.last_offset() + 1);
            if recs.is_empty() {
                continue;
            }
            let codec = header.compression().unwrap_or(Compression::None);
            let (produced, errors) =
                run(broker, running, topic, partition, &recs).unwrap_or_else(|m| {
                    (
                        Vec::new(),
                        (0..recs.len()).map(|i| (i, m.clone())).collect(),
                    )
                });
            let mut to_write: Vec<(String, NewRecord)> = Vec::new();
            if let OnError::DeadLetter(dlq) = &policy {
                for (i, m) in &errors {
                    if let Some(r) = recs.get(*i) {
                        to_write.push((dlq.clone(), dead_letter(topic, partition, r, m, &name)));
                    }
                }
            }
            to_write.extend(
                produced
                    .into_iter()
                    .map(|(_, o, r)| (outputs.get(o).cloned().unwrap_or_default(), r)),
            );
            emit(
                broker,
                running,
                topic,
                partition,
                to_write,
                codec,
                crate::api::now_ms(),
                &mut written,
                0,
                true,
            )?;
            count += recs.len();
            advance(running, partition, next);
        }
    }
    Ok(count)
}

/// Stored records as the ABI's input buffer for a guest (transforms and sinks alike).
pub(crate) fn guest_input(topic: &str, partition: i32, records: &[RecordView]) -> Vec<u8> {
    let inputs: Vec<sluice_sdk::codec::InRecord<'_>> = records
        .iter()
        .map(|r| sluice_sdk::codec::InRecord {
            offset: r.offset,
            timestamp: r.timestamp,
            key: r.key.as_deref(),
            value: r.value.as_deref(),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_deref()))
                .collect(),
        })
        .collect();
    sluice_sdk::codec::encode_input(topic, partition, &inputs)
}

/// What a guest produced for a batch: `(input index, output index, record)` and refused inputs.
type GuestResult = (Vec<(usize, usize, NewRecord)>, Vec<(usize, String)>);

/// Runs one transform over records; a whole-batch failure (trap, timeout, bad output) is `Err`.
fn run(
    broker: &Broker,
    t: &Running,
    topic: &str,
    partition: i32,
    recs: &[RecordView],
) -> Result<GuestResult, String> {
    let input = guest_input(topic, partition, recs);
    let outputs = t.deployment.read().outputs.len().max(1);
    let raw = t
        .call(&broker.transforms.engine, &input)
        .map_err(|e| e.to_string())?;
    let decoded = sluice_sdk::codec::decode_output(&raw, recs.len(), outputs)
        .map_err(|e| format!("guest returned malformed output: {e}"))?;
    Ok((
        decoded
            .records
            .into_iter()
            .map(|r| {
                (
                    r.input_index as usize,
                    r.output as usize,
                    NewRecord {
                        timestamp: r.timestamp,
                        key: r.key,
                        value: r.value,
                        headers: r.headers,
                    },
                )
            })
            .collect(),
        decoded
            .errors
            .into_iter()
            .map(|(i, m)| (i as usize, m))
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka() {
        // Values from Kafka's own partitioner tests (Utils.murmur2).
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58897971
        );
        assert_eq!(murmur2(b"abc"), 479470107);
    }

    #[test]
    fn outputs_follow_the_input_partition_or_the_key() {
        assert_eq!(output_partition(2, None, 4), 2);
        assert_eq!(output_partition(5, None, 4), 1);
        let by_key = output_partition(5, Some(b"foobar"), 3);
        assert_eq!(by_key, ((-790332482i32) & 0x7fff_ffff) % 3);
    }
}
