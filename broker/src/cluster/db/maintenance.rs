//! Background maintenance on the metadata: moving log start offsets (DeleteRecords and
//! retention; batch rows wholly below go), finding objects no batch points at any more (to
//! delete from the bucket after a grace period), telling committed objects from never-committed
//! uploads, and repointing batches at a merged object. One broker at a time does it: the holder
//! of the maintenance lease.
//!
//! A committed batch is never lost here: an object's row goes only when no batch points at it,
//! and a rewrite moves only the rows still pointing at the object that was copied.

use std::collections::HashSet;
use std::time::Duration;

use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::{to_i64, Db, DbError};
use crate::cluster::types::BrokerLease;

/// How much of a partition retention keeps; `None` is unbounded (Kafka's -1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionPolicy {
    /// Batches whose newest record is older than this many milliseconds go.
    pub ms: Option<i64>,
    /// The oldest batches go while the partition holds more than this many bytes (the newest
    /// batch always stays, as Kafka keeps its active segment).
    pub bytes: Option<i64>,
}

impl RetentionPolicy {
    /// The policy of a topic with `configs` (as stored: set keys only), on top of the broker's
    /// `defaults`; `None` when its `cleanup.policy` has no `delete` (compacted only), and
    /// [`DbError::Corrupt`] naming a value that is not a number. -1 (or any negative) is
    /// unbounded, as in Kafka.
    pub fn for_topic(
        configs: &[(String, String)],
        defaults: RetentionPolicy,
    ) -> Result<Option<RetentionPolicy>, DbError> {
        let get = |key: &str| {
            configs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        if let Some(policy) = get("cleanup.policy") {
            if !policy.split(',').any(|p| p.trim() == "delete") {
                return Ok(None);
            }
        }
        let limit = |key: &str, default: Option<i64>| -> Result<Option<i64>, DbError> {
            match get(key) {
                None => Ok(default),
                Some(v) => match v.trim().parse::<i64>() {
                    Ok(n) if n < 0 => Ok(None),
                    Ok(n) => Ok(Some(n)),
                    Err(_) => Err(DbError::Corrupt(format!("{key}={v:?} is not a number"))),
                },
            }
        };
        Ok(Some(RetentionPolicy {
            ms: limit("retention.ms", defaults.ms)?,
            bytes: limit("retention.bytes", defaults.bytes)?,
        }))
    }
}

/// One batch of a rewrite: where it was, and where it is in the new object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchMove {
    pub topic_id: Uuid,
    pub partition: i32,
    pub base_offset: i64,
    /// The object the batch's bytes were copied from: the row moves only if it still points
    /// there (retention or another rewrite may have moved on since).
    pub from_object: String,
    pub byte_offset: u64,
}

impl Db {
    /// Takes (or renews) the maintenance lease for `duration` under the broker's `lease`:
    /// `true` when this broker holds it now. It is free when it expired or its holder's
    /// registration lapsed or was superseded.
    pub async fn acquire_maintenance(
        &self,
        lease: &BrokerLease,
        duration: Duration,
    ) -> Result<bool, DbError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "INSERT INTO sluice_maintenance_lease (id, node_id, broker_epoch, lease_expires)
                 SELECT true, $1, $2, now() + make_interval(secs => $3)
                 WHERE EXISTS (SELECT 1 FROM sluice_brokers
                               WHERE node_id = $1 AND epoch = $2 AND lease_expires > now())
                 ON CONFLICT (id) DO UPDATE
                     SET node_id = EXCLUDED.node_id,
                         broker_epoch = EXCLUDED.broker_epoch,
                         lease_expires = EXCLUDED.lease_expires
                     WHERE sluice_maintenance_lease.lease_expires <= now()
                        OR (sluice_maintenance_lease.node_id = EXCLUDED.node_id
                            AND sluice_maintenance_lease.broker_epoch = EXCLUDED.broker_epoch)
                        OR NOT EXISTS (
                            SELECT 1 FROM sluice_brokers b
                            WHERE b.node_id = sluice_maintenance_lease.node_id
                              AND b.epoch = sluice_maintenance_lease.broker_epoch
                              AND b.lease_expires > now())
                 RETURNING 1",
                &[&lease.node_id, &lease.epoch, &duration.as_secs_f64()],
            )
            .await?;
        Ok(row.is_some())
    }

    /// Gives the maintenance lease up (a clean shutdown) if this broker holds it.
    pub async fn release_maintenance(&self, lease: &BrokerLease) -> Result<(), DbError> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM sluice_maintenance_lease WHERE node_id = $1 AND broker_epoch = $2",
                &[&lease.node_id, &lease.epoch],
            )
            .await?;
        Ok(())
    }

    /// DeleteRecords: moves the log start offset of a partition up to `offset` (-1: the high
    /// watermark) and drops the batch rows wholly below it. Returns the new log start offset
    /// (never lower than before). Past the high watermark is [`DbError::OffsetOutOfRange`].
    pub async fn delete_records_before(
        &self,
        topic_id: Uuid,
        partition: i32,
        offset: i64,
    ) -> Result<i64, DbError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let (start, high_watermark) = lock_partition(&tx, topic_id, partition).await?;
        let target = if offset == -1 { high_watermark } else { offset };
        if target < 0 || target > high_watermark {
            return Err(DbError::OffsetOutOfRange {
                offset,
                high_watermark,
            });
        }
        let new_start = advance_log_start(&tx, topic_id, partition, start, target).await?;
        tx.commit().await?;
        Ok(new_start)
    }

    /// Applies `policy` to a partition at wall-clock `now_ms`: the log start offset moves past
    /// the batches it no longer keeps, whose rows go. Returns the log start offset after.
    pub async fn apply_retention(
        &self,
        topic_id: Uuid,
        partition: i32,
        policy: RetentionPolicy,
        now_ms: i64,
    ) -> Result<i64, DbError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let (start, high_watermark) = lock_partition(&tx, topic_id, partition).await?;
        let mut target = start;
        if let Some(ms) = policy.ms.filter(|ms| *ms >= 0) {
            // Kafka deletes from the oldest while expired: the first batch still within the
            // retention time stops it (or, all expired, everything goes).
            let cutoff = now_ms.saturating_sub(ms);
            let first_kept: Option<i64> = tx
                .query_one(
                    "SELECT min(base_offset) FROM sluice_batches
                     WHERE topic_id = $1 AND partition = $2 AND max_timestamp >= $3",
                    &[&topic_id, &partition, &cutoff],
                )
                .await?
                .get(0);
            target = target.max(first_kept.unwrap_or(high_watermark));
        }
        if let Some(bytes) = policy.bytes.filter(|b| *b >= 0) {
            // The oldest batch whose suffix (it and all after) fits; else the newest alone.
            let row = tx
                .query_one(
                    "SELECT min(base_offset) FILTER (WHERE suffix <= $3), max(base_offset)
                     FROM (SELECT base_offset,
                                  sum(byte_length) OVER (ORDER BY base_offset DESC) AS suffix
                           FROM sluice_batches WHERE topic_id = $1 AND partition = $2) s",
                    &[&topic_id, &partition, &bytes],
                )
                .await?;
            let fits: Option<i64> = row.get(0);
            let newest: Option<i64> = row.get(1);
            if let Some(keep_from) = fits.or(newest) {
                target = target.max(keep_from);
            }
        }
        let new_start = advance_log_start(&tx, topic_id, partition, start, target).await?;
        tx.commit().await?;
        Ok(new_start)
    }

    /// Objects no batch points at any more and that have been so for at least `grace` (fetches
    /// that read their coordinates before have finished): delete them from the bucket, then
    /// [`Db::forget_objects`]. Marks newly orphaned objects as a side effect.
    pub async fn collectable_objects(&self, grace: Duration) -> Result<Vec<String>, DbError> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE sluice_objects o SET orphaned_at = now()
                 WHERE orphaned_at IS NULL
                   AND NOT EXISTS (SELECT 1 FROM sluice_batches b WHERE b.object_key = o.object_key)",
                &[],
            )
            .await?;
        let rows = client
            .query(
                "SELECT object_key FROM sluice_objects o
                 WHERE orphaned_at < now() - make_interval(secs => $1)
                   AND NOT EXISTS (SELECT 1 FROM sluice_batches b WHERE b.object_key = o.object_key)
                 ORDER BY object_key",
                &[&grace.as_secs_f64()],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Drops the rows of objects deleted from the bucket (only those still unreferenced).
    pub async fn forget_objects(&self, keys: &[String]) -> Result<u64, DbError> {
        let client = self.client().await?;
        Ok(client
            .execute(
                "DELETE FROM sluice_objects o WHERE object_key = ANY($1)
                   AND NOT EXISTS (SELECT 1 FROM sluice_batches b WHERE b.object_key = o.object_key)",
                &[&keys],
            )
            .await?)
    }

    /// Which of `keys` (objects found in the bucket) were committed. An object without a row
    /// that is older than the upload timeout was never committed and can be deleted: the
    /// uploader gives up committing an object once it is that old.
    pub async fn is_committed(&self, keys: &[String]) -> Result<HashSet<String>, DbError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT object_key FROM sluice_objects WHERE object_key = ANY($1)",
                &[&keys],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Records `new_object` (already in the bucket, `size` bytes, written by `node_id`) and
    /// points the batches of `moves` at it, atomically; a batch whose row no longer points at
    /// its `from_object` (deleted by retention, or moved by another rewrite) stays as it is.
    /// Returns how many batches moved; the old objects are collected once unreferenced.
    pub async fn rewrite_object(
        &self,
        node_id: i32,
        new_object: &str,
        size: u64,
        moves: &[BatchMove],
    ) -> Result<u64, DbError> {
        let size = to_i64("object size", size)?;
        let mut topics = Vec::with_capacity(moves.len());
        let mut parts = Vec::with_capacity(moves.len());
        let mut bases = Vec::with_capacity(moves.len());
        let mut froms = Vec::with_capacity(moves.len());
        let mut offsets = Vec::with_capacity(moves.len());
        for m in moves {
            topics.push(m.topic_id);
            parts.push(m.partition);
            bases.push(m.base_offset);
            froms.push(m.from_object.clone());
            offsets.push(to_i64("byte offset", m.byte_offset)?);
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO sluice_objects (object_key, node_id, size) VALUES ($1, $2, $3)",
            &[&new_object, &node_id, &size],
        )
        .await?;
        let params: [&(dyn ToSql + Sync); 6] =
            [&new_object, &topics, &parts, &bases, &froms, &offsets];
        let moved = tx
            .execute(
                "UPDATE sluice_batches b SET object_key = $1, byte_offset = m.byte_offset
                 FROM unnest($2::uuid[], $3::int[], $4::bigint[], $5::text[], $6::bigint[])
                      AS m(topic_id, partition, base_offset, from_object, byte_offset)
                 WHERE b.topic_id = m.topic_id AND b.partition = m.partition
                   AND b.base_offset = m.base_offset AND b.object_key = m.from_object",
                &params,
            )
            .await?;
        tx.commit().await?;
        Ok(moved)
    }
}

/// A batch in a small object, as the merge sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmallBatch {
    pub topic_id: Uuid,
    pub partition: i32,
    pub base_offset: i64,
    pub object_key: String,
    pub byte_offset: u64,
    pub byte_length: u32,
}

impl Db {
    /// Batches (in partition and offset order, at most `limit`) of partitions whose batches
    /// sit in at least two objects smaller than `small_below` bytes: what a merge copies into
    /// one object per partition. A partition in one small object is left alone, so merged
    /// objects are not merged again and again.
    pub async fn merge_candidates(
        &self,
        small_below: u64,
        limit: i64,
    ) -> Result<Vec<SmallBatch>, DbError> {
        let small_below = to_i64("small object size", small_below)?;
        let client = self.client().await?;
        let rows = client
            .query(
                "WITH small AS (
                     SELECT b.topic_id, b.partition, b.base_offset, b.object_key,
                            b.byte_offset, b.byte_length
                     FROM sluice_batches b JOIN sluice_objects o USING (object_key)
                     WHERE o.size < $1
                 ), parts AS (
                     SELECT topic_id, partition FROM small GROUP BY topic_id, partition
                     HAVING count(DISTINCT object_key) >= 2
                 )
                 SELECT s.topic_id, s.partition, s.base_offset, s.object_key,
                        s.byte_offset, s.byte_length
                 FROM small s JOIN parts p USING (topic_id, partition)
                 ORDER BY s.topic_id, s.partition, s.base_offset
                 LIMIT $2",
                &[&small_below, &limit],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let byte_offset: i64 = r.get(4);
                let byte_length: i32 = r.get(5);
                Ok(SmallBatch {
                    topic_id: r.get(0),
                    partition: r.get(1),
                    base_offset: r.get(2),
                    object_key: r.get(3),
                    byte_offset: u64::try_from(byte_offset).map_err(|_| {
                        DbError::Corrupt(format!("negative byte offset {byte_offset}"))
                    })?,
                    byte_length: u32::try_from(byte_length).map_err(|_| {
                        DbError::Corrupt(format!("negative byte length {byte_length}"))
                    })?,
                })
            })
            .collect()
    }
}

/// Locks a partition's row for the rest of `tx` and gives its `(log start, high watermark)`.
async fn lock_partition(
    tx: &deadpool_postgres::Transaction<'_>,
    topic_id: Uuid,
    partition: i32,
) -> Result<(i64, i64), DbError> {
    let Some(row) = tx
        .query_opt(
            "SELECT log_start_offset, high_watermark FROM sluice_partitions
             WHERE topic_id = $1 AND partition = $2 FOR UPDATE",
            &[&topic_id, &partition],
        )
        .await?
    else {
        return Err(DbError::UnknownPartition {
            topic_id,
            partition,
        });
    };
    Ok((row.get(0), row.get(1)))
}

/// Moves a locked partition's log start from `start` up to `target` (never down), drops the
/// batch rows wholly below it and tells every broker (a log-start notice, sent on commit), so
/// no fetch anywhere reads below it. Returns the log start after.
async fn advance_log_start(
    tx: &deadpool_postgres::Transaction<'_>,
    topic_id: Uuid,
    partition: i32,
    start: i64,
    target: i64,
) -> Result<i64, DbError> {
    if target <= start {
        return Ok(start);
    }
    tx.execute(
        "UPDATE sluice_partitions SET log_start_offset = $3
         WHERE topic_id = $1 AND partition = $2",
        &[&topic_id, &partition, &target],
    )
    .await?;
    tx.execute(
        "DELETE FROM sluice_batches
         WHERE topic_id = $1 AND partition = $2 AND last_offset < $3",
        &[&topic_id, &partition, &target],
    )
    .await?;
    tx.execute(
        super::notify::NOTIFY_ONE_SQL,
        &[&super::notify::log_start_payload(
            topic_id, partition, target,
        )],
    )
    .await?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::db::testing::TestDb;
    use crate::cluster::types::{BatchAppend, BatchCoord, UploadCommit};

    const LEASE: Duration = Duration::from_secs(30);

    /// Commits one object `key` of batches of 2 records and 100 bytes, one per timestamp.
    async fn commit(db: &Db, lease: &BrokerLease, topic: Uuid, key: &str, timestamps: &[i64]) {
        let batches = timestamps
            .iter()
            .zip(0u64..)
            .map(|(&ts, i)| BatchAppend {
                topic_id: topic,
                partition: 0,
                byte_offset: i * 100,
                byte_length: 100,
                record_count: 2,
                base_timestamp: ts,
                max_timestamp: ts,
                producer_id: -1,
                producer_epoch: -1,
                base_sequence: -1,
                is_transactional: false,
                is_control: false,
                follows: None,
            })
            .collect();
        let up = UploadCommit {
            object_key: key.into(),
            object_size: 100 * timestamps.len() as u64,
            batches,
        };
        db.commit_upload(lease, &up).await.unwrap();
    }

    async fn coords(db: &Db, topic: Uuid) -> Vec<BatchCoord> {
        db.batches_from(topic, 0, 0, i64::MAX).await.unwrap()
    }

    async fn setup(t: &TestDb) -> (Db, BrokerLease, Uuid) {
        let db = t.connect().await;
        let topic = db.create_topic("t", 1, &[]).await.unwrap().topic_id;
        let lease = db.register("a", 1, None, LEASE).await.unwrap();
        (db, lease, topic)
    }

    #[test]
    fn a_topics_retention_comes_from_its_configs_over_the_defaults() {
        let kv = |k: &str, v: &str| (k.to_string(), v.to_string());
        let defaults = RetentionPolicy {
            ms: Some(604_800_000),
            bytes: None,
        };
        assert_eq!(
            RetentionPolicy::for_topic(&[], defaults).unwrap(),
            Some(defaults)
        );
        let set = [kv("retention.ms", "-1"), kv("retention.bytes", "1000")];
        assert_eq!(
            RetentionPolicy::for_topic(&set, defaults).unwrap(),
            Some(RetentionPolicy {
                ms: None,
                bytes: Some(1000)
            })
        );
        let compacted = [kv("cleanup.policy", "compact")];
        assert_eq!(
            RetentionPolicy::for_topic(&compacted, defaults).unwrap(),
            None
        );
        let both = [kv("cleanup.policy", "compact,delete")];
        assert_eq!(
            RetentionPolicy::for_topic(&both, defaults).unwrap(),
            Some(defaults)
        );
        let bad = [kv("retention.ms", "soon")];
        assert!(matches!(
            RetentionPolicy::for_topic(&bad, defaults),
            Err(DbError::Corrupt(_))
        ));
    }

    #[tokio::test]
    async fn deleting_records_moves_the_log_start_and_drops_whole_batches_below() {
        let Some(t) = TestDb::if_installed().await else {
            return;
        };
        let (db, lease, topic) = setup(&t).await;
        commit(&db, &lease, topic, "o1", &[1, 2, 3]).await;
        // Offset 3 is inside the batch at 2: it stays, the one at 0 goes.
        assert_eq!(db.delete_records_before(topic, 0, 3).await.unwrap(), 3);
        let left: Vec<_> = coords(&db, topic)
            .await
            .iter()
            .map(|c| c.base_offset)
            .collect();
        assert_eq!(left, [2, 4]);
        let offsets = db.partition_offsets(topic, 0).await.unwrap().unwrap();
        assert_eq!((offsets.log_start_offset, offsets.high_watermark), (3, 6));
        // Never backwards; past the high watermark refused; -1 is the high watermark.
        assert_eq!(db.delete_records_before(topic, 0, 1).await.unwrap(), 3);
        assert!(matches!(
            db.delete_records_before(topic, 0, 7).await,
            Err(DbError::OffsetOutOfRange { .. })
        ));
        assert_eq!(db.delete_records_before(topic, 0, -1).await.unwrap(), 6);
        assert!(coords(&db, topic).await.is_empty());
        assert!(matches!(
            db.delete_records_before(topic, 1, 0).await,
            Err(DbError::UnknownPartition { .. })
        ));
        // The next commit goes on from the high watermark, reporting the new log start.
        commit(&db, &lease, topic, "o2", &[4]).await;
        assert_eq!(coords(&db, topic).await[0].base_offset, 6);
    }

    #[tokio::test]
    async fn retention_by_time_and_by_bytes() {
        let Some(t) = TestDb::if_installed().await else {
            return;
        };
        let (db, lease, topic) = setup(&t).await;
        commit(&db, &lease, topic, "o1", &[100, 500, 200, 900, 950]).await;
        let by_time = |ms| RetentionPolicy {
            ms: Some(ms),
            bytes: None,
        };
        // At 1000 with 600 ms: the batch at 0 (ts 100) expired; the one at 2 (500) did not,
        // which keeps the one at 4 (200) behind it, as Kafka keeps a segment order.
        assert_eq!(
            db.apply_retention(topic, 0, by_time(600), 1000)
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            db.apply_retention(topic, 0, RetentionPolicy::default(), 1000)
                .await
                .unwrap(),
            2
        );
        // 250 bytes: the newest two batches fit.
        let by_bytes = RetentionPolicy {
            ms: None,
            bytes: Some(250),
        };
        assert_eq!(
            db.apply_retention(topic, 0, by_bytes, 1000).await.unwrap(),
            6
        );
        // 10 bytes: the newest batch stays anyway.
        let tiny = RetentionPolicy {
            ms: None,
            bytes: Some(10),
        };
        assert_eq!(db.apply_retention(topic, 0, tiny, 1000).await.unwrap(), 8);
        // Everything expired: the log start reaches the high watermark.
        assert_eq!(
            db.apply_retention(topic, 0, by_time(1), 10_000)
                .await
                .unwrap(),
            10
        );
        assert!(coords(&db, topic).await.is_empty());
    }

    #[tokio::test]
    async fn unreferenced_objects_are_collected_after_the_grace_and_committed_ones_known() {
        let Some(t) = TestDb::if_installed().await else {
            return;
        };
        let (db, lease, topic) = setup(&t).await;
        commit(&db, &lease, topic, "o1", &[1, 2]).await;
        commit(&db, &lease, topic, "o2", &[3]).await;
        let committed = db
            .is_committed(&["o1".into(), "o2".into(), "never".into()])
            .await
            .unwrap();
        assert_eq!(
            committed,
            HashSet::from(["o1".to_string(), "o2".to_string()])
        );
        assert!(db
            .collectable_objects(Duration::ZERO)
            .await
            .unwrap()
            .is_empty());
        db.delete_records_before(topic, 0, 4).await.unwrap();
        // Orphaned now, but within a long grace: kept for fetches in flight.
        assert!(db
            .collectable_objects(Duration::from_secs(3600))
            .await
            .unwrap()
            .is_empty());
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let collectable = loop {
            let c = db
                .collectable_objects(Duration::from_millis(1))
                .await
                .unwrap();
            if !c.is_empty() || std::time::Instant::now() > deadline {
                break c;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        assert_eq!(collectable, ["o1"]);
        assert_eq!(db.forget_objects(&collectable).await.unwrap(), 1);
        // A referenced object is never forgotten, even if asked.
        assert_eq!(db.forget_objects(&["o2".into()]).await.unwrap(), 0);
        assert!(db.is_committed(&["o1".into()]).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_rewrite_moves_only_the_batches_still_in_the_old_object() {
        let Some(t) = TestDb::if_installed().await else {
            return;
        };
        let (db, lease, topic) = setup(&t).await;
        commit(&db, &lease, topic, "small-1", &[1, 2]).await;
        commit(&db, &lease, topic, "small-2", &[3]).await;
        // Retention takes the first batch while the merge was being written.
        db.delete_records_before(topic, 0, 2).await.unwrap();
        let mv = |base_offset, from: &str, byte_offset| BatchMove {
            topic_id: topic,
            partition: 0,
            base_offset,
            from_object: from.into(),
            byte_offset,
        };
        let moves = [
            mv(0, "small-1", 0),
            mv(2, "small-1", 100),
            mv(4, "small-2", 200),
        ];
        assert_eq!(
            db.rewrite_object(lease.node_id, "merged", 300, &moves)
                .await
                .unwrap(),
            2
        );
        let now = coords(&db, topic).await;
        assert_eq!(
            now.iter()
                .map(|c| (c.base_offset, c.object_key.as_str(), c.byte_offset))
                .collect::<Vec<_>>(),
            [(2, "merged", 100), (4, "merged", 200)]
        );
        // A second rewrite from the old objects moves nothing: the rows moved on.
        assert_eq!(
            db.rewrite_object(lease.node_id, "merged-2", 300, &moves)
                .await
                .unwrap(),
            0
        );
        assert_eq!(coords(&db, topic).await, now);
    }

    #[tokio::test]
    async fn one_broker_at_a_time_holds_the_maintenance_lease() {
        let Some(t) = TestDb::if_installed().await else {
            return;
        };
        let db = t.connect().await;
        let a = db.register("a", 1, None, LEASE).await.unwrap();
        let b = db.register("b", 1, None, LEASE).await.unwrap();
        assert!(db.acquire_maintenance(&a, LEASE).await.unwrap());
        assert!(!db.acquire_maintenance(&b, LEASE).await.unwrap());
        assert!(db.acquire_maintenance(&a, LEASE).await.unwrap());
        // A's registration superseded (it restarted): the lease is free for B.
        let a2 = db.register("a", 1, None, LEASE).await.unwrap();
        assert!(db.acquire_maintenance(&b, LEASE).await.unwrap());
        assert!(!db.acquire_maintenance(&a, LEASE).await.unwrap());
        assert!(!db.acquire_maintenance(&a2, LEASE).await.unwrap());
        db.release_maintenance(&b).await.unwrap();
        assert!(db.acquire_maintenance(&a2, LEASE).await.unwrap());
    }
}
