//! The commit of one upload, in one transaction and a few round trips: the lease checked, the
//! object recorded, the touched partitions locked in one fixed order (so brokers committing
//! overlapping partitions never deadlock), offsets assigned in upload order, idempotent
//! producers' sequences checked (a retry through any broker answers its original offsets),
//! and a notification per partition that grew.
//!
//! Retrying a commit whose outcome was lost (the connection dropped at COMMIT) is safe: the
//! object key is recorded with the batches, so a second commit of the same object stores
//! nothing again and answers what the first one stored.

use std::collections::{HashMap, HashSet};

use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::notify::notice_payload;
use super::{to_i64, Db, DbError};
use crate::cluster::types::{
    BatchAppend, BatchOutcome, BatchRefusal, BrokerLease, CommitNotice, UploadCommit,
};

/// The lease is current; `FOR SHARE` holds off a re-registration (which bumps the epoch) until
/// this commit ends, so a superseded incarnation can never commit after its successor starts.
const LEASE_SQL: &str = "SELECT 1 FROM sluice_brokers
     WHERE node_id = $1 AND epoch = $2 AND lease_expires > now() FOR SHARE";

/// Records the object; nothing when it is recorded already (a retried commit).
const OBJECT_SQL: &str = "INSERT INTO sluice_objects (object_key, node_id, size)
     VALUES ($1, $2, $3) ON CONFLICT (object_key) DO NOTHING RETURNING 1";

/// Locks the touched partitions in key order (rows are locked in the order they are returned,
/// after the sort) and reads their offsets as last committed.
const PARTITIONS_SQL: &str = "SELECT p.topic_id, p.partition, p.log_start_offset, p.high_watermark
     FROM sluice_partitions p
     JOIN unnest($1::uuid[], $2::int[]) AS k(topic_id, partition)
       ON p.topic_id = k.topic_id AND p.partition = k.partition
     ORDER BY p.topic_id, p.partition
     FOR UPDATE OF p";

/// The producers' state on the touched partitions (guarded by the partition locks above:
/// every writer of these rows holds them).
const PRODUCERS_SQL: &str =
    "SELECT s.topic_id, s.partition, s.producer_id, s.producer_epoch, s.last_sequence
     FROM sluice_producers s
     JOIN unnest($1::uuid[], $2::int[], $3::bigint[]) AS k(topic_id, partition, producer_id)
       ON s.topic_id = k.topic_id AND s.partition = k.partition AND s.producer_id = k.producer_id";

/// Stored batches of the given producer, epoch and first sequence: retries.
const DUPLICATES_SQL: &str =
    "SELECT b.topic_id, b.partition, b.producer_id, b.producer_epoch, b.base_sequence,
            b.base_offset
     FROM sluice_batches b
     JOIN unnest($1::uuid[], $2::int[], $3::bigint[], $4::smallint[], $5::int[])
          AS k(topic_id, partition, producer_id, producer_epoch, base_sequence)
       ON b.topic_id = k.topic_id AND b.partition = k.partition
      AND b.producer_id = k.producer_id AND b.producer_epoch = k.producer_epoch
      AND b.base_sequence = k.base_sequence
     WHERE b.producer_id >= 0";

const BATCHES_SQL: &str =
    "INSERT INTO sluice_batches (topic_id, partition, base_offset, last_offset,
         base_timestamp, max_timestamp, object_key, byte_offset, byte_length, producer_id,
         producer_epoch, base_sequence, is_transactional, is_control)
     SELECT t, p, bo, lo, bt, mt, $1, byo, byl, pid, pe, bs, tx, ctl
     FROM unnest($2::uuid[], $3::int[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[],
                 $8::bigint[], $9::int[], $10::bigint[], $11::smallint[], $12::int[],
                 $13::bool[], $14::bool[])
          AS u(t, p, bo, lo, bt, mt, byo, byl, pid, pe, bs, tx, ctl)";

const UPSERT_PRODUCERS_SQL: &str =
    "INSERT INTO sluice_producers (topic_id, partition, producer_id, producer_epoch,
         last_sequence, last_offset)
     SELECT * FROM unnest($1::uuid[], $2::int[], $3::bigint[], $4::smallint[], $5::int[],
                          $6::bigint[])
     ON CONFLICT (topic_id, partition, producer_id) DO UPDATE
         SET producer_epoch = EXCLUDED.producer_epoch,
             last_sequence = EXCLUDED.last_sequence,
             last_offset = EXCLUDED.last_offset,
             updated_at = now()";

const WATERMARKS_SQL: &str = "UPDATE sluice_partitions p SET high_watermark = u.hw
     FROM unnest($1::uuid[], $2::int[], $3::bigint[]) AS u(t, part, hw)
     WHERE p.topic_id = u.t AND p.partition = u.part";

const NOTIFY_SQL: &str = "SELECT pg_notify('sluice_commits', n) FROM unnest($1::text[]) AS n";

/// What a retried commit reads back: the batches the first commit stored from this object.
const REPLAY_SQL: &str = "SELECT topic_id, partition, byte_offset, base_offset FROM sluice_batches
     WHERE object_key = $1";

type PartitionKey = (Uuid, i32);
type ProducerKey = (Uuid, i32, i64);
/// A batch's identity for idempotence: producer, epoch, first sequence on a partition.
type SequenceKey = (Uuid, i32, i64, i16, i32);

/// A producer's state on a partition, as this commit sees it.
#[derive(Debug, Clone, Copy)]
struct ProducerState {
    epoch: i16,
    last_sequence: i32,
    last_offset: i64,
}

/// A partition's offsets as this commit moves them.
#[derive(Debug, Clone, Copy)]
struct PartitionState {
    log_start_offset: i64,
    high_watermark: i64,
    /// Whether a batch of this upload was appended to it.
    grew: bool,
}

impl Db {
    /// Commits every batch of `upload` under `lease` in one transaction; the outcomes are in
    /// the order of `upload.batches`. [`DbError::Fenced`] (nothing committed) when the lease
    /// is superseded or lapsed. When no batch is appended (all duplicates or refused), nothing
    /// at all is stored, not even the object.
    pub async fn commit_upload(
        &self,
        lease: &BrokerLease,
        upload: &UploadCommit,
    ) -> Result<Vec<BatchOutcome>, DbError> {
        for (i, b) in upload.batches.iter().enumerate() {
            if b.record_count < 1 {
                return Err(DbError::Invalid(format!(
                    "a batch of {} records in {}",
                    b.record_count, upload.object_key
                )));
            }
            to_i64("byte offset", b.byte_offset)?;
            if let Some(leader) = b.follows {
                let leads = upload.batches[..i].get(leader);
                if b.producer_id >= 0 || leads.is_none_or(|l| l.follows.is_some()) {
                    return Err(DbError::Invalid(format!(
                        "batch {i} of {} follows {leader}: a follower is a plain batch after \
                         its leader, which follows nothing",
                        upload.object_key
                    )));
                }
            }
            i32::try_from(b.byte_length)
                .map_err(|_| DbError::Invalid(format!("a batch of {} bytes", b.byte_length)))?;
        }
        let object_size = to_i64("object size", upload.object_size)?;

        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let (lease_stmt, object_stmt, partitions_stmt, producers_stmt) = tokio::try_join!(
            tx.prepare_cached(LEASE_SQL),
            tx.prepare_cached(OBJECT_SQL),
            tx.prepare_cached(PARTITIONS_SQL),
            tx.prepare_cached(PRODUCERS_SQL),
        )?;

        let mut part_keys: Vec<PartitionKey> = upload
            .batches
            .iter()
            .map(|b| (b.topic_id, b.partition))
            .collect();
        part_keys.sort_unstable();
        part_keys.dedup();
        let (pk_topics, pk_parts): (Vec<Uuid>, Vec<i32>) = part_keys.iter().copied().unzip();
        let mut producer_keys: Vec<ProducerKey> = upload
            .batches
            .iter()
            .filter(|b| b.producer_id >= 0)
            .map(|b| (b.topic_id, b.partition, b.producer_id))
            .collect();
        producer_keys.sort_unstable();
        producer_keys.dedup();
        let pr_topics: Vec<Uuid> = producer_keys.iter().map(|k| k.0).collect();
        let pr_parts: Vec<i32> = producer_keys.iter().map(|k| k.1).collect();
        let pr_ids: Vec<i64> = producer_keys.iter().map(|k| k.2).collect();

        // One round trip: the statements are pipelined and run in this order.
        let lease_params: [&(dyn ToSql + Sync); 2] = [&lease.node_id, &lease.epoch];
        let object_params: [&(dyn ToSql + Sync); 3] =
            [&upload.object_key, &lease.node_id, &object_size];
        let partitions_params: [&(dyn ToSql + Sync); 2] = [&pk_topics, &pk_parts];
        let producers_params: [&(dyn ToSql + Sync); 3] = [&pr_topics, &pr_parts, &pr_ids];
        let (current, recorded, partition_rows, producer_rows) = tokio::try_join!(
            tx.query_opt(&lease_stmt, &lease_params),
            tx.query_opt(&object_stmt, &object_params),
            tx.query(&partitions_stmt, &partitions_params),
            tx.query(&producers_stmt, &producers_params),
        )?;
        if current.is_none() {
            return Err(DbError::Fenced);
        }
        let mut partitions: HashMap<PartitionKey, PartitionState> = partition_rows
            .iter()
            .map(|r| {
                (
                    (r.get(0), r.get(1)),
                    PartitionState {
                        log_start_offset: r.get(2),
                        high_watermark: r.get(3),
                        grew: false,
                    },
                )
            })
            .collect();
        if recorded.is_none() {
            let outcomes = replay(&tx, upload, &partitions).await?;
            return Ok(outcomes);
        }
        let mut producers: HashMap<ProducerKey, ProducerState> = producer_rows
            .iter()
            .map(|r| {
                (
                    (r.get(0), r.get(1), r.get(2)),
                    ProducerState {
                        epoch: r.get(3),
                        last_sequence: r.get(4),
                        last_offset: -1,
                    },
                )
            })
            .collect();

        let plan = assign(&upload.batches, &mut partitions, &mut producers);
        let mut outcomes = plan.outcomes;
        if !plan.maybe_duplicates.is_empty() {
            let found = stored_duplicates(&tx, &upload.batches, &plan.maybe_duplicates).await?;
            for &i in &plan.maybe_duplicates {
                let b = &upload.batches[i];
                let log_start_offset = partitions
                    .get(&(b.topic_id, b.partition))
                    .map_or(0, |p| p.log_start_offset);
                outcomes[i] = Some(match found.get(&sequence_key(b)) {
                    Some(&base_offset) => BatchOutcome::Duplicate {
                        base_offset,
                        log_start_offset,
                    },
                    None => BatchOutcome::Refused(BatchRefusal::OutOfOrderSequence),
                });
            }
        }
        let mut appended = plan.appended;
        follow_leaders(
            &upload.batches,
            &mut outcomes,
            &mut partitions,
            &mut appended,
        );
        // `assign` decided every batch but the possible duplicates, decided just above, and
        // the followers, decided by their leaders.
        let outcomes: Vec<BatchOutcome> = outcomes
            .into_iter()
            .map(|o| o.unwrap_or(BatchOutcome::Refused(BatchRefusal::OutOfOrderSequence)))
            .collect();
        if appended.is_empty() {
            // Dropping the transaction rolls it back: not even the object row is kept.
            return Ok(outcomes);
        }
        write(&tx, upload, &appended, &partitions, &producers).await?;
        tx.commit().await?;
        Ok(outcomes)
    }
}

/// The decisions made before any stored batch is looked up.
struct Plan {
    /// Per batch; `None` for the ones in `maybe_duplicates`.
    outcomes: Vec<Option<BatchOutcome>>,
    /// Appended batches: index in the upload and base offset.
    appended: Vec<(usize, i64)>,
    /// Batches behind their producer's sequence, same epoch: a retry of a stored batch
    /// (a duplicate) or else out of order.
    maybe_duplicates: Vec<usize>,
}

/// Offsets and producer checks in upload order, on the locked partitions' state. A batch
/// awaiting the duplicate lookup changes no state (it ends up a duplicate or refused), so
/// every other decision here is final.
fn assign(
    batches: &[BatchAppend],
    partitions: &mut HashMap<PartitionKey, PartitionState>,
    producers: &mut HashMap<ProducerKey, ProducerState>,
) -> Plan {
    let mut plan = Plan {
        outcomes: Vec::with_capacity(batches.len()),
        appended: Vec::new(),
        maybe_duplicates: Vec::new(),
    };
    // Appended by this very upload, for a retry that lands in the same upload.
    let mut appended_here: HashMap<SequenceKey, i64> = HashMap::new();
    for (i, b) in batches.iter().enumerate() {
        if b.follows.is_some() {
            // Decided by its leader's outcome, once every leader's is known.
            plan.outcomes.push(None);
            continue;
        }
        let Some(part) = partitions.get_mut(&(b.topic_id, b.partition)) else {
            plan.outcomes.push(Some(BatchOutcome::Refused(
                BatchRefusal::UnknownTopicOrPartition,
            )));
            continue;
        };
        if b.producer_id >= 0 {
            let key = (b.topic_id, b.partition, b.producer_id);
            let refusal = match producers.get(&key) {
                // No state: Kafka takes any first sequence (the producer's earlier batches may
                // have been deleted by retention).
                None => None,
                Some(s) if b.producer_epoch < s.epoch => Some(BatchRefusal::InvalidProducerEpoch),
                Some(s) if b.producer_epoch > s.epoch => {
                    (b.base_sequence != 0).then_some(BatchRefusal::OutOfOrderSequence)
                }
                Some(s) if b.base_sequence == next_sequence(s.last_sequence) => None,
                Some(_) => {
                    if let Some(&base_offset) = appended_here.get(&sequence_key(b)) {
                        plan.outcomes.push(Some(BatchOutcome::Duplicate {
                            base_offset,
                            log_start_offset: part.log_start_offset,
                        }));
                    } else {
                        plan.outcomes.push(None);
                        plan.maybe_duplicates.push(i);
                    }
                    continue;
                }
            };
            if let Some(r) = refusal {
                plan.outcomes.push(Some(BatchOutcome::Refused(r)));
                continue;
            }
            let base_offset = part.high_watermark;
            producers.insert(
                key,
                ProducerState {
                    epoch: b.producer_epoch,
                    last_sequence: last_sequence(b.base_sequence, b.record_count),
                    last_offset: base_offset + i64::from(b.record_count) - 1,
                },
            );
            appended_here.insert(sequence_key(b), base_offset);
        }
        let base_offset = part.high_watermark;
        part.high_watermark += i64::from(b.record_count);
        part.grew = true;
        plan.appended.push((i, base_offset));
        plan.outcomes.push(Some(BatchOutcome::Appended {
            base_offset,
            log_start_offset: part.log_start_offset,
        }));
    }
    plan
}

/// Decides the followers (transform outputs) by their leaders' final outcomes: appended after
/// the upload's other batches of their partitions when the leader was appended, else dropped,
/// so an idempotent retry of an input adds none of its outputs again.
fn follow_leaders(
    batches: &[BatchAppend],
    outcomes: &mut [Option<BatchOutcome>],
    partitions: &mut HashMap<PartitionKey, PartitionState>,
    appended: &mut Vec<(usize, i64)>,
) {
    for (i, b) in batches.iter().enumerate() {
        let Some(leader) = b.follows else {
            continue;
        };
        let leader_appended = matches!(
            outcomes.get(leader),
            Some(Some(BatchOutcome::Appended { .. }))
        );
        let decided = match partitions.get_mut(&(b.topic_id, b.partition)) {
            _ if !leader_appended => BatchOutcome::Dropped,
            None => BatchOutcome::Refused(BatchRefusal::UnknownTopicOrPartition),
            Some(part) => {
                let base_offset = part.high_watermark;
                part.high_watermark += i64::from(b.record_count);
                part.grew = true;
                appended.push((i, base_offset));
                BatchOutcome::Appended {
                    base_offset,
                    log_start_offset: part.log_start_offset,
                }
            }
        };
        outcomes[i] = Some(decided);
    }
}

/// The sequence after `last`: Kafka's sequences wrap from i32::MAX to 0.
fn next_sequence(last: i32) -> i32 {
    if last == i32::MAX {
        0
    } else {
        last + 1
    }
}

/// The sequence of the last record of a batch of `count` records starting at `base`, wrapping
/// past i32::MAX as Kafka does.
fn last_sequence(base: i32, count: i32) -> i32 {
    let last = i64::from(base) + i64::from(count) - 1;
    // Within 0..=i32::MAX after the modulo: the cast cannot truncate.
    (last % (i64::from(i32::MAX) + 1)) as i32
}

fn sequence_key(b: &BatchAppend) -> SequenceKey {
    (
        b.topic_id,
        b.partition,
        b.producer_id,
        b.producer_epoch,
        b.base_sequence,
    )
}

/// The stored batches among `candidates` (indexes into `batches`): their base offsets.
async fn stored_duplicates(
    tx: &deadpool_postgres::Transaction<'_>,
    batches: &[BatchAppend],
    candidates: &[usize],
) -> Result<HashMap<SequenceKey, i64>, DbError> {
    let keys: Vec<SequenceKey> = candidates
        .iter()
        .map(|&i| sequence_key(&batches[i]))
        .collect();
    let topics: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
    let parts: Vec<i32> = keys.iter().map(|k| k.1).collect();
    let pids: Vec<i64> = keys.iter().map(|k| k.2).collect();
    let epochs: Vec<i16> = keys.iter().map(|k| k.3).collect();
    let seqs: Vec<i32> = keys.iter().map(|k| k.4).collect();
    let stmt = tx.prepare_cached(DUPLICATES_SQL).await?;
    let rows = tx
        .query(&stmt, &[&topics, &parts, &pids, &epochs, &seqs])
        .await?;
    Ok(rows
        .iter()
        .map(|r| ((r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)), r.get(5)))
        .collect())
}

/// The batch rows, producer states, watermarks and notifications, in one pipelined round trip.
async fn write(
    tx: &deadpool_postgres::Transaction<'_>,
    upload: &UploadCommit,
    appended: &[(usize, i64)],
    partitions: &HashMap<PartitionKey, PartitionState>,
    producers: &HashMap<ProducerKey, ProducerState>,
) -> Result<(), DbError> {
    let n = appended.len();
    let mut topics = Vec::with_capacity(n);
    let mut parts = Vec::with_capacity(n);
    let mut base_offsets = Vec::with_capacity(n);
    let mut last_offsets = Vec::with_capacity(n);
    let mut base_timestamps = Vec::with_capacity(n);
    let mut max_timestamps = Vec::with_capacity(n);
    let mut byte_offsets = Vec::with_capacity(n);
    let mut byte_lengths = Vec::with_capacity(n);
    let mut pids = Vec::with_capacity(n);
    let mut epochs = Vec::with_capacity(n);
    let mut seqs = Vec::with_capacity(n);
    let mut transactional = Vec::with_capacity(n);
    let mut control = Vec::with_capacity(n);
    let mut touched_producers: HashSet<ProducerKey> = HashSet::new();
    for &(i, base_offset) in appended {
        let b = &upload.batches[i];
        topics.push(b.topic_id);
        parts.push(b.partition);
        base_offsets.push(base_offset);
        last_offsets.push(base_offset + i64::from(b.record_count) - 1);
        base_timestamps.push(b.base_timestamp);
        max_timestamps.push(b.max_timestamp);
        byte_offsets.push(to_i64("byte offset", b.byte_offset)?);
        byte_lengths.push(
            i32::try_from(b.byte_length)
                .map_err(|_| DbError::Invalid(format!("a batch of {} bytes", b.byte_length)))?,
        );
        pids.push(b.producer_id);
        epochs.push(b.producer_epoch);
        seqs.push(b.base_sequence);
        transactional.push(b.is_transactional);
        control.push(b.is_control);
        if b.producer_id >= 0 {
            touched_producers.insert((b.topic_id, b.partition, b.producer_id));
        }
    }
    let mut p_topics = Vec::new();
    let mut p_parts = Vec::new();
    let mut p_ids = Vec::new();
    let mut p_epochs = Vec::new();
    let mut p_seqs = Vec::new();
    let mut p_offsets = Vec::new();
    for key in &touched_producers {
        if let Some(s) = producers.get(key) {
            p_topics.push(key.0);
            p_parts.push(key.1);
            p_ids.push(key.2);
            p_epochs.push(s.epoch);
            p_seqs.push(s.last_sequence);
            p_offsets.push(s.last_offset);
        }
    }
    let mut w_topics = Vec::new();
    let mut w_parts = Vec::new();
    let mut w_marks = Vec::new();
    let mut notices = Vec::new();
    for (&(topic_id, partition), p) in partitions.iter().filter(|(_, p)| p.grew) {
        w_topics.push(topic_id);
        w_parts.push(partition);
        w_marks.push(p.high_watermark);
        notices.push(notice_payload(&CommitNotice {
            topic_id,
            partition,
            high_watermark: p.high_watermark,
        }));
    }

    let (batches_stmt, producers_stmt, marks_stmt, notify_stmt) = tokio::try_join!(
        tx.prepare_cached(BATCHES_SQL),
        tx.prepare_cached(UPSERT_PRODUCERS_SQL),
        tx.prepare_cached(WATERMARKS_SQL),
        tx.prepare_cached(NOTIFY_SQL),
    )?;
    let batches_params: [&(dyn ToSql + Sync); 14] = [
        &upload.object_key,
        &topics,
        &parts,
        &base_offsets,
        &last_offsets,
        &base_timestamps,
        &max_timestamps,
        &byte_offsets,
        &byte_lengths,
        &pids,
        &epochs,
        &seqs,
        &transactional,
        &control,
    ];
    let producers_params: [&(dyn ToSql + Sync); 6] =
        [&p_topics, &p_parts, &p_ids, &p_epochs, &p_seqs, &p_offsets];
    let marks_params: [&(dyn ToSql + Sync); 3] = [&w_topics, &w_parts, &w_marks];
    let notify_params: [&(dyn ToSql + Sync); 1] = [&notices];
    tokio::try_join!(
        tx.execute(&batches_stmt, &batches_params),
        tx.execute(&producers_stmt, &producers_params),
        tx.execute(&marks_stmt, &marks_params),
        tx.execute(&notify_stmt, &notify_params),
    )?;
    Ok(())
}

/// The outcomes of an upload already committed (this is a retry of its commit): what was
/// stored is answered as appended; the rest was a duplicate or refused the first time, and is
/// decided again the same way (a stored sequence is a duplicate, anything else refused).
async fn replay(
    tx: &deadpool_postgres::Transaction<'_>,
    upload: &UploadCommit,
    partitions: &HashMap<PartitionKey, PartitionState>,
) -> Result<Vec<BatchOutcome>, DbError> {
    let stmt = tx.prepare_cached(REPLAY_SQL).await?;
    let rows = tx.query(&stmt, &[&upload.object_key]).await?;
    let stored: HashMap<(Uuid, i32, i64), i64> = rows
        .iter()
        .map(|r| ((r.get(0), r.get(1), r.get(2)), r.get(3)))
        .collect();
    let idempotent: Vec<usize> = upload
        .batches
        .iter()
        .enumerate()
        .filter(|(_, b)| b.producer_id >= 0)
        .map(|(i, _)| i)
        .collect();
    let duplicates = stored_duplicates(tx, &upload.batches, &idempotent).await?;
    let mut outcomes = Vec::with_capacity(upload.batches.len());
    for b in &upload.batches {
        let Some(part) = partitions.get(&(b.topic_id, b.partition)) else {
            outcomes.push(BatchOutcome::Refused(BatchRefusal::UnknownTopicOrPartition));
            continue;
        };
        let log_start_offset = part.log_start_offset;
        let at = (
            b.topic_id,
            b.partition,
            to_i64("byte offset", b.byte_offset)?,
        );
        outcomes.push(if let Some(&base_offset) = stored.get(&at) {
            BatchOutcome::Appended {
                base_offset,
                log_start_offset,
            }
        } else if b.follows.is_some() {
            // Not stored with the upload: its leader was not appended the first time.
            BatchOutcome::Dropped
        } else if let Some(&base_offset) = duplicates.get(&sequence_key(b)) {
            BatchOutcome::Duplicate {
                base_offset,
                log_start_offset,
            }
        } else if b.producer_id >= 0 {
            BatchOutcome::Refused(BatchRefusal::OutOfOrderSequence)
        } else {
            BatchOutcome::Refused(BatchRefusal::UnknownTopicOrPartition)
        });
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::cluster::db::testing::TestDb;
    use crate::cluster::types::{CommitEvent, TopicMeta};

    const LEASE: Duration = Duration::from_secs(30);

    fn batch(topic: &TopicMeta, partition: i32, records: i32) -> BatchAppend {
        BatchAppend {
            topic_id: topic.topic_id,
            partition,
            byte_offset: 0,
            byte_length: 100,
            record_count: records,
            base_timestamp: 1_000,
            max_timestamp: 1_000,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            is_transactional: false,
            is_control: false,
            follows: None,
        }
    }

    fn idempotent(topic: &TopicMeta, pid: i64, epoch: i16, seq: i32, records: i32) -> BatchAppend {
        BatchAppend {
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            ..batch(topic, 0, records)
        }
    }

    /// An upload of `batches`, laid out one after the other in a fresh object.
    fn upload(mut batches: Vec<BatchAppend>) -> UploadCommit {
        let mut at = 0;
        for b in &mut batches {
            b.byte_offset = at;
            at += u64::from(b.byte_length);
        }
        UploadCommit {
            object_key: format!("test/{}", Uuid::new_v4()),
            object_size: at,
            batches,
        }
    }

    async fn count(db: &Db, table: &str) -> i64 {
        let c = db.client().await.unwrap();
        c.query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap()
            .get(0)
    }

    fn base(o: &BatchOutcome) -> i64 {
        match o {
            BatchOutcome::Appended { base_offset, .. } => *base_offset,
            other => panic!("not appended: {other:?}"),
        }
    }

    #[tokio::test]
    async fn concurrent_commits_get_contiguous_offsets_in_each_ones_order() {
        let Some(t) = TestDb::if_installed().await else {
            return;
        };
        let db = t.connect().await;
        let topic = db.create_topic("t", 2, &[]).await.unwrap();
        let a = db.register("a", 1, None, LEASE).await.unwrap();
        let b = db.register("b", 1, None, LEASE).await.unwrap();
        // Each broker commits uploads touching both partitions, in opposite orders, so lock
        // order matters: a deadlock would fail a commit.
        let commits = |lease: BrokerLease, first: i32, tag: i64| {
            let db = db.clone();
            let topic = topic.clone();
            async move {
                let mut mine = Vec::new();
                for i in 0..15 {
                    let mut batches = Vec::new();
                    for j in 0..4 {
                        let mut x = batch(&topic, (first + j) % 2, 1 + (j % 3));
                        // Timestamps say who sent the batch and in what order.
                        x.base_timestamp = tag * 1_000_000 + i64::from(i) * 10 + i64::from(j);
                        batches.push(x);
                    }
                    let up = upload(batches);
                    let out = db.commit_upload(&lease, &up).await.unwrap();
                    mine.push((up, out));
                }
                mine
            }
        };
        let (from_a, from_b) = tokio::join!(commits(a, 0, 1), commits(b, 1, 2));
        for p in 0..2 {
            let offsets = db
                .partition_offsets(topic.topic_id, p)
                .await
                .unwrap()
                .unwrap();
            let coords = db
                .batches_from(topic.topic_id, p, 0, i64::MAX)
                .await
                .unwrap();
            // Contiguous from 0 to the high watermark, no overlap.
            let mut next = 0;
            for c in &coords {
                assert_eq!(c.base_offset, next);
                next = c.last_offset + 1;
            }
            assert_eq!(next, offsets.high_watermark);
            // Each broker's batches appear in the order it sent them.
            for mine in [&from_a, &from_b] {
                let mut sent = Vec::new();
                for (up, out) in mine {
                    for (x, o) in up.batches.iter().zip(out) {
                        if x.partition == p {
                            sent.push(base(o));
                        }
                    }
                }
                assert!(sent.windows(2).all(|w| w[0] < w[1]), "{sent:?}");
            }
        }
        assert_eq!(count(&db, "sluice_objects").await, 30);
        assert_eq!(count(&db, "sluice_batches").await, 120);
    }

    #[tokio::test]
    async fn outputs_are_stored_with_their_input_and_dropped_with_its_retry() {
        let Some(t) = TestDb::if_installed().await else {
            return;
        };
        let db = t.connect().await;
        let input = db.create_topic("in", 1, &[]).await.unwrap();
        let output = db.create_topic("out", 1, &[]).await.unwrap();
        let a = db.register("a", 1, None, LEASE).await.unwrap();
        let b = db.register("b", 1, None, LEASE).await.unwrap();
        let follower = |leader, records| BatchAppend {
            follows: Some(leader),
            ..batch(&output, 0, records)
        };
        // Input batch, its two output batches; a plain write to the output between them.
        let first = upload(vec![
            idempotent(&input, 7, 0, 0, 2),
            batch(&output, 0, 1),
            follower(0, 2),
            follower(0, 1),
        ]);
        let stored = db.commit_upload(&a, &first).await.unwrap();
        assert_eq!(base(&stored[0]), 0);
        // Followers come after the upload's other batches of their partition, in order.
        assert_eq!(
            (base(&stored[1]), base(&stored[2]), base(&stored[3])),
            (0, 1, 3)
        );

        // The input retried through another broker (its answer was lost): a duplicate, and its
        // outputs are not stored again; a refused input's outputs are not stored either.
        let retry = upload(vec![
            idempotent(&input, 7, 0, 0, 2),
            follower(0, 2),
            idempotent(&input, 7, 0, 9, 1),
            follower(2, 1),
        ]);
        let again = db.commit_upload(&b, &retry).await.unwrap();
        assert_eq!(
            again,
            vec![
                BatchOutcome::Duplicate {
                    base_offset: 0,
                    log_start_offset: 0
                },
                BatchOutcome::Dropped,
                BatchOutcome::Refused(BatchRefusal::OutOfOrderSequence),
                BatchOutcome::Dropped,
            ]
        );
        let hw = |topic: Uuid| {
            let db = &db;
            async move {
                db.partition_offsets(topic, 0)
                    .await
                    .unwrap()
                    .unwrap()
                    .high_watermark
            }
        };
        assert_eq!(
            (hw(input.topic_id).await, hw(output.topic_id).await),
            (2, 4)
        );
        // A retried commit of the same object answers what was stored, followers included.
        assert_eq!(db.commit_upload(&a, &first).await.unwrap(), stored);
        assert_eq!(count(&db, "sluice_batches").await, 4);

        // A follower must be a plain batch after a leader that follows nothing.
        let bad = upload(vec![batch(&input, 0, 1), follower(1, 1)]);
        assert!(matches!(
            db.commit_upload(&a, &bad).await,
            Err(DbError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn a_retry_is_answered_with_its_original_offsets_and_stored_once() {
        let Some(t) = TestDb::if_installed().await else {
            return;
        };
        let db = t.connect().await;
        let topic = db.create_topic("t", 1, &[]).await.unwrap();
        let a = db.register("a", 1, None, LEASE).await.unwrap();
        let b = db.register("b", 1, None, LEASE).await.unwrap();
        db.commit_upload(&a, &upload(vec![batch(&topic, 0, 3)]))
            .await
            .unwrap();
        let first = db
            .commit_upload(
                &a,
                &upload(vec![
                    idempotent(&topic, 7, 0, 0, 5),
                    idempotent(&topic, 7, 0, 5, 2),
                ]),
            )
            .await
            .unwrap();
        assert_eq!(first.iter().map(base).collect::<Vec<_>>(), [3, 8]);
        let (batches, objects) = (
            count(&db, "sluice_batches").await,
            count(&db, "sluice_objects").await,
        );

        // The same batches retried through the other broker.
        let retry = upload(vec![
            idempotent(&topic, 7, 0, 0, 5),
            idempotent(&topic, 7, 0, 5, 2),
        ]);
        let again = db.commit_upload(&b, &retry).await.unwrap();
        let dup = |base_offset| BatchOutcome::Duplicate {
            base_offset,
            log_start_offset: 0,
        };
        assert_eq!(again, vec![dup(3), dup(8)]);
        assert_eq!(count(&db, "sluice_batches").await, batches);
        assert_eq!(count(&db, "sluice_objects").await, objects);
        let hw = db
            .partition_offsets(topic.topic_id, 0)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(hw.high_watermark, 10);

        // A retry within one upload: the second copy is the first one's duplicate.
        let twice = upload(vec![
            idempotent(&topic, 7, 0, 7, 1),
            idempotent(&topic, 7, 0, 7, 1),
        ]);
        let out = db.commit_upload(&a, &twice).await.unwrap();
        assert_eq!(
            out[0],
            BatchOutcome::Appended {
                base_offset: 10,
                log_start_offset: 0
            }
        );
        assert_eq!(out[1], dup(10));
    }

    #[tokio::test]
    async fn out_of_order_and_old_epoch_batches_are_refused() {
        let Some(t) = TestDb::if_installed().await else {
            return;
        };
        let db = t.connect().await;
        let topic = db.create_topic("t", 1, &[]).await.unwrap();
        let a = db.register("a", 1, None, LEASE).await.unwrap();
        db.commit_upload(&a, &upload(vec![idempotent(&topic, 9, 1, 0, 5)]))
            .await
            .unwrap();
        let refused = |r| BatchOutcome::Refused(r);
        let out = db
            .commit_upload(
                &a,
                &upload(vec![
                    // A gap after sequence 4.
                    idempotent(&topic, 9, 1, 6, 1),
                    // Behind, but never stored.
                    idempotent(&topic, 9, 1, 2, 1),
                    // An older epoch.
                    idempotent(&topic, 9, 0, 5, 1),
                    // A new epoch not starting at 0.
                    idempotent(&topic, 9, 2, 5, 1),
                    // In order: taken, and the refusals above changed nothing.
                    idempotent(&topic, 9, 1, 5, 1),
                ]),
            )
            .await
            .unwrap();
        assert_eq!(
            out,
            vec![
                refused(BatchRefusal::OutOfOrderSequence),
                refused(BatchRefusal::OutOfOrderSequence),
                refused(BatchRefusal::InvalidProducerEpoch),
                refused(BatchRefusal::OutOfOrderSequence),
                BatchOutcome::Appended {
                    base_offset: 5,
                    log_start_offset: 0
                },
            ]
        );
        // A new epoch from 0, then the old epoch is fenced.
        let out = db
            .commit_upload(
                &a,
                &upload(vec![
                    idempotent(&topic, 9, 2, 0, 1),
                    idempotent(&topic, 9, 1, 6, 1),
                ]),
            )
            .await
            .unwrap();
        assert_eq!(
            out[0],
            BatchOutcome::Appended {
                base_offset: 6,
                log_start_offset: 0
            }
        );
        assert_eq!(out[1], refused(BatchRefusal::InvalidProducerEpoch));
        assert_eq!(count(&db, "sluice_batches").await, 3);
    }

    #[tokio::test]
    async fn sequences_wrap_at_i32_max() {
        let Some(t) = TestDb::if_installed().await else {
            return;
        };
        let db = t.connect().await;
        let topic = db.create_topic("t", 1, &[]).await.unwrap();
        let a = db.register("a", 1, None, LEASE).await.unwrap();
        let out = db
            .commit_upload(
                &a,
                &upload(vec![
                    idempotent(&topic, 3, 0, i32::MAX - 1, 2),
                    idempotent(&topic, 3, 0, 0, 3),
                    idempotent(&topic, 3, 0, 3, 1),
                ]),
            )
            .await
            .unwrap();
        assert_eq!(out.iter().map(base).collect::<Vec<_>>(), [0, 2, 5]);
    }

    #[tokio::test]
    async fn unknown_partitions_are_refused_and_the_rest_committed() {
        let Some(t) = TestDb::if_installed().await else {
            return;
        };
        let db = t.connect().await;
        let topic = db.create_topic("t", 1, &[]).await.unwrap();
        let a = db.register("a", 1, None, LEASE).await.unwrap();
        let mut stranger = batch(&topic, 0, 1);
        stranger.topic_id = Uuid::new_v4();
        let out = db
            .commit_upload(
                &a,
                &upload(vec![batch(&topic, 1, 1), stranger, batch(&topic, 0, 2)]),
            )
            .await
            .unwrap();
        let unknown = BatchOutcome::Refused(BatchRefusal::UnknownTopicOrPartition);
        assert_eq!(out[0], unknown);
        assert_eq!(out[1], unknown);
        assert_eq!(
            out[2],
            BatchOutcome::Appended {
                base_offset: 0,
                log_start_offset: 0
            }
        );
    }

    #[tokio::test]
    async fn a_fenced_lease_commits_nothing() {
        let Some(t) = TestDb::if_installed().await else {
            return;
        };
        let db = t.connect().await;
        let topic = db.create_topic("t", 1, &[]).await.unwrap();
        let old = db.register("a", 1, None, LEASE).await.unwrap();
        let _new = db.register("a", 1, None, LEASE).await.unwrap();
        let up = upload(vec![batch(&topic, 0, 1)]);
        assert!(matches!(
            db.commit_upload(&old, &up).await,
            Err(DbError::Fenced)
        ));

        let lapsing = db
            .register("b", 1, None, Duration::from_millis(1))
            .await
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while db.lease_is_current(&lapsing).await.unwrap() {
            assert!(std::time::Instant::now() < deadline, "lease never lapsed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(matches!(
            db.commit_upload(&lapsing, &up).await,
            Err(DbError::Fenced)
        ));
        let never = BrokerLease {
            node_id: 999,
            epoch: 1,
        };
        assert!(matches!(
            db.commit_upload(&never, &up).await,
            Err(DbError::Fenced)
        ));

        assert_eq!(count(&db, "sluice_batches").await, 0);
        assert_eq!(count(&db, "sluice_objects").await, 0);
        let hw = db
            .partition_offsets(topic.topic_id, 0)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(hw.high_watermark, 0);
    }

    #[tokio::test]
    async fn a_retried_commit_of_the_same_object_stores_nothing_again() {
        let Some(t) = TestDb::if_installed().await else {
            return;
        };
        let db = t.connect().await;
        let topic = db.create_topic("t", 2, &[]).await.unwrap();
        let a = db.register("a", 1, None, LEASE).await.unwrap();
        let mut stranger = batch(&topic, 0, 1);
        stranger.topic_id = Uuid::new_v4();
        let up = upload(vec![
            batch(&topic, 0, 2),
            batch(&topic, 1, 3),
            idempotent(&topic, 4, 0, 0, 1),
            stranger,
        ]);
        let first = db.commit_upload(&a, &up).await.unwrap();
        let batches = count(&db, "sluice_batches").await;
        let second = db.commit_upload(&a, &up).await.unwrap();
        assert_eq!(count(&db, "sluice_batches").await, batches);
        assert_eq!(&second[..2], &first[..2]);
        assert_eq!(
            second[2],
            BatchOutcome::Appended {
                base_offset: 2,
                log_start_offset: 0
            }
        );
        assert_eq!(second[3], first[3]);
    }

    #[tokio::test]
    async fn commits_are_announced_on_the_feed() {
        let Some(t) = TestDb::if_installed().await else {
            return;
        };
        let db = t.connect().await;
        let topic = db.create_topic("t", 2, &[]).await.unwrap();
        let a = db.register("a", 1, None, LEASE).await.unwrap();
        let feed = db.commit_feed();
        let mut events = feed.subscribe();
        let first = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first, CommitEvent::Resync);
        db.commit_upload(&a, &upload(vec![batch(&topic, 1, 4), batch(&topic, 1, 1)]))
            .await
            .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            got,
            CommitEvent::Commit(CommitNotice {
                topic_id: topic.topic_id,
                partition: 1,
                high_watermark: 5,
            })
        );
    }

    #[tokio::test]
    async fn a_broker_stalled_inside_a_commit_does_not_block_the_others() {
        let Some(t) = TestDb::if_installed().await else {
            return;
        };
        let db = t.connect().await;
        let topic = db.create_topic("t", 1, &[]).await.unwrap();
        let b = db.register("b", 1, None, LEASE).await.unwrap();
        // Broker A stops (SIGSTOP) halfway through a commit: its partition lock is taken and
        // its transaction left open.
        let mut stalled = db.client().await.unwrap();
        let tx = stalled.transaction().await.unwrap();
        tx.execute(
            "SELECT 1 FROM sluice_partitions WHERE topic_id = $1 FOR UPDATE",
            &[&topic.topic_id],
        )
        .await
        .unwrap();
        // B's commit waits for the lock, then PostgreSQL ends A's idle transaction.
        let started = std::time::Instant::now();
        let out = db
            .commit_upload(&b, &upload(vec![batch(&topic, 0, 1)]))
            .await
            .unwrap();
        assert_eq!(
            out[0],
            BatchOutcome::Appended {
                base_offset: 0,
                log_start_offset: 0
            }
        );
        assert!(
            started.elapsed() < Duration::from_secs(14),
            "{:?}",
            started.elapsed()
        );
        // A, resumed, finds its transaction gone: nothing of it commits.
        let e: DbError = tx.commit().await.unwrap_err().into();
        assert!(e.is_retriable(), "{e}");
    }

    async fn next(events: &mut tokio::sync::broadcast::Receiver<CommitEvent>) -> CommitEvent {
        tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("an event in time")
            .expect("the feed is open")
    }

    #[tokio::test]
    async fn the_feed_reconnects_and_resyncs_after_losing_its_connection() {
        let Some(t) = TestDb::if_installed().await else {
            return;
        };
        let db = t.connect().await;
        let topic = db.create_topic("t", 1, &[]).await.unwrap();
        let a = db.register("a", 1, None, LEASE).await.unwrap();
        let feed = db.commit_feed();
        let mut events = feed.subscribe();
        assert_eq!(next(&mut events).await, CommitEvent::Resync);
        // The server ends the feed's connection, as a restart would.
        let c = db.client().await.unwrap();
        let ended: i64 = c
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE application_name = $1 AND datname = current_database()",
                &[&crate::cluster::db::notify::FEED_APPLICATION_NAME],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(ended, 1);
        assert_eq!(next(&mut events).await, CommitEvent::Resync);
        db.commit_upload(&a, &upload(vec![batch(&topic, 0, 2)]))
            .await
            .unwrap();
        assert!(matches!(next(&mut events).await, CommitEvent::Commit(n) if n.high_watermark == 2));
    }
}
