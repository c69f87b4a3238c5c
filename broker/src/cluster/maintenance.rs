//! The background maintenance task of a broker in cluster mode: while it holds the maintenance
//! lease (one broker at a time, renewed before each step, fenced by its registration's epoch),
//! every interval it applies retention, deletes objects nothing refers to any more (and uploads
//! that were never committed), and merges small shared objects into per-partition ones.
//!
//! A committed batch is never lost: an object is deleted from the bucket only once no batch
//! row points at it (for the grace period, so fetches in flight finish), or when it has no row
//! at all and is older than the upload timeout (its uploader gave up committing it); a merge
//! moves a batch only if its row still points at the object its bytes were copied from.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::cluster::db::maintenance::{BatchMove, RetentionPolicy, SmallBatch};
use crate::cluster::db::{Db, DbError};
use crate::cluster::objects::{Objects, ObjectsError};
use crate::cluster::types::{BrokerLease, LeaseSource};

/// `cluster.maintenance.interval.ms`: a minute. Kafka checks retention every five minutes
/// (`log.retention.check.interval.ms`); here a round also merges the small objects of the last
/// interval, and a shorter interval keeps their number (rows to read, objects to pay for) low,
/// while each round's bounded work every minute is nothing next to the produce load.
pub const DEFAULT_INTERVAL_MS: u64 = 60_000;

/// What maintenance runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Between rounds.
    pub interval: Duration,
    /// How long the maintenance lease lasts without renewal; renewed before every step.
    pub lease: Duration,
    /// The broker's retention defaults (`log.retention.ms` / `log.retention.bytes`).
    pub retention: RetentionPolicy,
    /// How long an object nothing refers to stays, for fetches that read its coordinates.
    pub orphan_grace: Duration,
    /// A bucket object without a row older than this was never committed and goes; must be
    /// longer than an uploader ever tries to commit an object it has put.
    pub upload_timeout: Duration,
    /// The bucket prefix uploads (and merged objects) are written under.
    pub key_prefix: String,
    /// Objects smaller than this are merged.
    pub small_object_bytes: u64,
    /// At most this many bytes copied per round (and per merged object).
    pub merge_bytes_per_round: u64,
    /// At most this many small objects read per round.
    pub merge_objects_per_round: usize,
    /// At most this many objects deleted per round.
    pub deletes_per_round: usize,
}

impl Settings {
    /// The defaults with `interval` and `key_prefix`.
    pub fn new(interval: Duration, key_prefix: String) -> Settings {
        Settings {
            interval,
            // Three rounds: one slow round does not lose it; a crashed holder's lease frees
            // anyway when its broker registration lapses.
            lease: interval.saturating_mul(3).max(Duration::from_secs(1)),
            retention: RetentionPolicy {
                ms: Some(7 * 24 * 3600 * 1000),
                bytes: None,
            },
            orphan_grace: Duration::from_secs(300),
            upload_timeout: Duration::from_secs(600),
            key_prefix,
            small_object_bytes: 4 * 1024 * 1024,
            merge_bytes_per_round: 64 * 1024 * 1024,
            merge_objects_per_round: 1000,
            deletes_per_round: 1000,
        }
    }
}

/// Why a round stopped.
#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    #[error("metadata: {0}")]
    Db(#[from] DbError),
    #[error("objects: {0}")]
    Objects(#[from] ObjectsError),
}

/// What one round did (for logs and tests).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Round {
    /// Partitions whose log start moved.
    pub retention_moved: usize,
    /// Unreferenced objects deleted (bucket and row).
    pub collected: usize,
    /// Never-committed uploads deleted from the bucket.
    pub uncommitted_deleted: usize,
    /// Merged objects written, and batches moved into them.
    pub merged_objects: usize,
    pub batches_moved: u64,
}

/// The running task; stopping it gives the lease up.
pub struct Maintenance {
    task: JoinHandle<()>,
    db: Db,
    lease: LeaseSource,
}

impl Maintenance {
    /// Stops the task (between or within a round: every step is atomic on its own) and
    /// releases the lease so another broker takes over at once.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
        if let Err(e) = self.db.release_maintenance(&(self.lease)()).await {
            tracing::warn!("releasing the maintenance lease: {e}");
        }
    }
}

/// Starts the maintenance task of this broker; every round runs under the registration
/// `lease` gives at that moment, so the job goes on (and competes for the lease again) after
/// the broker registered again under a new epoch.
pub fn spawn(db: Db, objects: Objects, lease: LeaseSource, settings: Settings) -> Maintenance {
    let task = {
        let db = db.clone();
        let lease = lease.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(settings.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match run_round(&db, &objects, &lease(), &settings).await {
                    Ok(Some(round)) if round != Round::default() => {
                        tracing::info!(?round, "maintenance round");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!("maintenance round stopped: {e}"),
                }
            }
        })
    };
    Maintenance { task, db, lease }
}

/// One round, if this broker holds (or gets) the maintenance lease: `None` when it does not.
/// The lease is renewed before each step; losing it ends the round there.
pub async fn run_round(
    db: &Db,
    objects: &Objects,
    lease: &BrokerLease,
    settings: &Settings,
) -> Result<Option<Round>, MaintenanceError> {
    let mut round = Round::default();
    let holds = || db.acquire_maintenance(lease, settings.lease);
    if !holds().await? {
        return Ok(None);
    }
    round.retention_moved = apply_retention(db, settings).await?;
    if !holds().await? {
        return Ok(Some(round));
    }
    round.collected = collect_unreferenced(db, objects, settings).await?;
    if !holds().await? {
        return Ok(Some(round));
    }
    round.uncommitted_deleted = delete_uncommitted(db, objects, settings).await?;
    if !holds().await? {
        return Ok(Some(round));
    }
    let (merged, moved) = merge_small(db, objects, lease, settings).await?;
    round.merged_objects = merged;
    round.batches_moved = moved;
    Ok(Some(round))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Retention on every partition of every topic; a topic whose configs do not parse is skipped
/// (and named), the others go on.
async fn apply_retention(db: &Db, settings: &Settings) -> Result<usize, MaintenanceError> {
    let now = now_ms();
    let mut moved = 0;
    for topic in db.topics().await? {
        let policy = match RetentionPolicy::for_topic(&topic.configs, settings.retention) {
            Ok(Some(p)) => p,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(topic = %topic.name, "retention skipped: {e}");
                continue;
            }
        };
        if policy == RetentionPolicy::default() {
            continue;
        }
        for partition in 0..topic.partitions {
            let before = db.partition_offsets(topic.topic_id, partition).await?;
            match db
                .apply_retention(topic.topic_id, partition, policy, now)
                .await
            {
                Ok(after) => {
                    if before.is_some_and(|b| after > b.log_start_offset) {
                        moved += 1;
                    }
                }
                // Deleted while we went through it.
                Err(DbError::UnknownPartition { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(moved)
}

/// Objects no batch has pointed at for the grace period: out of the bucket, then their rows.
async fn collect_unreferenced(
    db: &Db,
    objects: &Objects,
    settings: &Settings,
) -> Result<usize, MaintenanceError> {
    let mut keys = db.collectable_objects(settings.orphan_grace).await?;
    keys.truncate(settings.deletes_per_round);
    for key in &keys {
        objects.delete(key).await?;
    }
    db.forget_objects(&keys).await?;
    Ok(keys.len())
}

/// Bucket objects under the prefix without a row, older than the upload timeout: uploads whose
/// commit never happened (the broker died, or the commit failed). A younger one may still be
/// being committed and stays.
async fn delete_uncommitted(
    db: &Db,
    objects: &Objects,
    settings: &Settings,
) -> Result<usize, MaintenanceError> {
    let Some(cutoff) = SystemTime::now().checked_sub(settings.upload_timeout) else {
        return Ok(0);
    };
    let old: Vec<String> = objects
        .list(&settings.key_prefix)
        .await?
        .into_iter()
        .filter(|o| o.last_modified < cutoff)
        .map(|o| o.key)
        .collect();
    let mut deleted = 0;
    for chunk in old.chunks(1000) {
        let committed = db.is_committed(chunk).await?;
        for key in chunk.iter().filter(|k| !committed.contains(*k)) {
            if deleted >= settings.deletes_per_round {
                return Ok(deleted);
            }
            objects.delete(key).await?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// Copies the batches of partitions spread over small objects into one object per partition,
/// within the round's bounds; returns the objects written and the batches moved.
async fn merge_small(
    db: &Db,
    objects: &Objects,
    lease: &BrokerLease,
    settings: &Settings,
) -> Result<(usize, u64), MaintenanceError> {
    let limit = i64::try_from(settings.merge_objects_per_round.saturating_mul(100))
        .unwrap_or(i64::MAX)
        .max(1);
    let candidates = db
        .merge_candidates(settings.small_object_bytes, limit)
        .await?;
    let mut by_partition: BTreeMap<(Uuid, i32), Vec<SmallBatch>> = BTreeMap::new();
    for b in candidates {
        by_partition
            .entry((b.topic_id, b.partition))
            .or_default()
            .push(b);
    }
    // Whole small objects are read once each (they are small, and one GET beats one per batch).
    let mut read: HashMap<String, Option<Bytes>> = HashMap::new();
    let mut bytes_left = settings.merge_bytes_per_round;
    let (mut written, mut moved) = (0usize, 0u64);
    for ((topic_id, partition), batches) in by_partition {
        // Only a prefix in offset order that fits the round, and only if it spans 2+ objects.
        let mut chosen = Vec::new();
        let mut size = 0u64;
        let mut sources = HashSet::new();
        for b in batches {
            let len = u64::from(b.byte_length);
            if size + len > bytes_left {
                break;
            }
            if !sources.contains(&b.object_key)
                && !read.contains_key(&b.object_key)
                && read.len() >= settings.merge_objects_per_round
            {
                break;
            }
            size += len;
            sources.insert(b.object_key.clone());
            chosen.push(b);
        }
        if sources.len() < 2 {
            continue;
        }
        let mut body = BytesMut::with_capacity(usize::try_from(size).unwrap_or(0));
        let mut moves = Vec::with_capacity(chosen.len());
        for b in &chosen {
            if !read.contains_key(&b.object_key) {
                let got = match objects.get(&b.object_key).await {
                    Ok(data) => Some(data),
                    // Collected since the candidates were read (retention ran elsewhere).
                    Err(ObjectsError::NotFound { .. }) => None,
                    Err(e) => return Err(e.into()),
                };
                read.insert(b.object_key.clone(), got);
            }
            let Some(Some(data)) = read.get(&b.object_key) else {
                continue;
            };
            let start = b.byte_offset;
            let end = start + u64::from(b.byte_length);
            let Some(slice) = usize::try_from(start)
                .ok()
                .zip(usize::try_from(end).ok())
                .filter(|&(_, e)| e <= data.len())
                .map(|(s, e)| data.slice(s..e))
            else {
                tracing::warn!(
                    object = %b.object_key,
                    size = data.len(),
                    "batch at {} of {topic_id}/{partition} lies outside its object \
                     ({start}..{end}); left where it is",
                    b.base_offset
                );
                continue;
            };
            moves.push(BatchMove {
                topic_id,
                partition,
                base_offset: b.base_offset,
                from_object: b.object_key.clone(),
                byte_offset: body.len() as u64,
            });
            body.extend_from_slice(&slice);
        }
        if moves.is_empty() {
            continue;
        }
        let key = format!("{}{}", settings.key_prefix, Uuid::new_v4().simple());
        let total = body.len() as u64;
        objects.put_if_absent(&key, body.freeze()).await?;
        // If this fails the new object has no row and goes as an uncommitted upload later.
        moved += db
            .rewrite_object(lease.node_id, &key, total, &moves)
            .await?;
        written += 1;
        bytes_left = bytes_left.saturating_sub(total);
        if bytes_left == 0 {
            break;
        }
    }
    Ok((written, moved))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;
    use crate::cluster::db::testing::TestDb;
    use crate::cluster::types::{BatchAppend, BatchCoord, UploadCommit};

    const LEASE: Duration = Duration::from_secs(30);
    const PREFIX: &str = "uploads/";

    fn settings() -> Settings {
        let mut s = Settings::new(Duration::from_millis(50), PREFIX.into());
        s.orphan_grace = Duration::ZERO;
        s
    }

    /// Puts and commits one object of batches, one per `(partition, timestamp, len)`, each of
    /// bytes of its own; returns the bytes of each batch in the order given.
    async fn upload(
        db: &Db,
        objects: &Objects,
        lease: &BrokerLease,
        topic: Uuid,
        batches: &[(i32, i64, u32)],
    ) -> (String, Vec<Bytes>) {
        let key = format!("{PREFIX}{}", Uuid::new_v4().simple());
        let mut body = BytesMut::new();
        let mut appends = Vec::new();
        let mut datas = Vec::new();
        for &(partition, ts, len) in batches {
            let fill = (body.len() % 251) as u8;
            let data: Vec<u8> = (0..len).map(|i| fill.wrapping_add(i as u8)).collect();
            appends.push(BatchAppend {
                topic_id: topic,
                partition,
                byte_offset: body.len() as u64,
                byte_length: len,
                record_count: 1,
                base_timestamp: ts,
                max_timestamp: ts,
                producer_id: -1,
                producer_epoch: -1,
                base_sequence: -1,
                is_transactional: false,
                is_control: false,
                follows: None,
            });
            body.extend_from_slice(&data);
            datas.push(Bytes::from(data));
        }
        let size = body.len() as u64;
        objects.put_if_absent(&key, body.freeze()).await.unwrap();
        let up = UploadCommit {
            object_key: key.clone(),
            object_size: size,
            batches: appends,
        };
        db.commit_upload(lease, &up).await.unwrap();
        (key, datas)
    }

    async fn coords(db: &Db, topic: Uuid, partition: i32) -> Vec<BatchCoord> {
        db.batches_from(topic, partition, 0, i64::MAX)
            .await
            .unwrap()
    }

    async fn bucket(objects: &Objects) -> HashSet<String> {
        objects
            .list(PREFIX)
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect()
    }

    /// Runs rounds until `done` holds of the bucket (collection waits for the orphan mark to
    /// be older than the grace, however short) or a deadline passes.
    async fn rounds_until(
        db: &Db,
        objects: &Objects,
        lease: &BrokerLease,
        settings: &Settings,
        done: impl Fn(&HashSet<String>) -> bool,
    ) -> HashSet<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            run_round(db, objects, lease, settings)
                .await
                .unwrap()
                .expect("holds the lease");
            let now = bucket(objects).await;
            if done(&now) || Instant::now() > deadline {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn setup(t: &TestDb, partitions: i32) -> (Db, BrokerLease, Uuid) {
        let db = t.connect().await;
        let topic = db
            .create_topic("t", partitions, &[])
            .await
            .unwrap()
            .topic_id;
        let lease = db.register("a", 1, None, LEASE).await.unwrap();
        (db, lease, topic)
    }

    #[tokio::test]
    async fn retention_removes_old_batches_and_their_objects_go() {
        let Some(t) = TestDb::if_installed().await else {
            return;
        };
        let (db, lease, topic) = setup(&t, 1).await;
        let objects = Objects::in_memory(0);
        let now = now_ms();
        let day = 24 * 3600 * 1000;
        // Eight days old (past the 7-day default), then fresh.
        let (old, _) = upload(&db, &objects, &lease, topic, &[(0, now - 8 * day, 10)]).await;
        let (fresh, _) = upload(&db, &objects, &lease, topic, &[(0, now, 10)]).await;
        let left = rounds_until(&db, &objects, &lease, &settings(), |b| !b.contains(&old)).await;
        assert_eq!(left, HashSet::from([fresh.clone()]));
        let kept = coords(&db, topic, 0).await;
        assert_eq!(kept.len(), 1);
        assert_eq!(
            (kept[0].base_offset, kept[0].object_key.as_str()),
            (1, fresh.as_str())
        );
        let offsets = db.partition_offsets(topic, 0).await.unwrap().unwrap();
        assert_eq!(offsets.log_start_offset, 1);
        assert!(db.is_committed(&[old]).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_uncommitted_upload_older_than_the_timeout_goes_and_a_fresh_one_stays() {
        let Some(t) = TestDb::if_installed().await else {
            return;
        };
        let (db, lease, topic) = setup(&t, 1).await;
        let objects = Objects::in_memory(0);
        let mut s = settings();
        s.upload_timeout = Duration::from_millis(500);
        let (committed, _) = upload(&db, &objects, &lease, topic, &[(0, now_ms(), 10)]).await;
        let stale = format!("{PREFIX}stale");
        objects.put(&stale, Bytes::from_static(b"x")).await.unwrap();
        // Something else's object under another prefix is not ours to delete.
        objects
            .put("other/old", Bytes::from_static(b"y"))
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let listed = objects.list(PREFIX).await.unwrap();
            let age = listed
                .iter()
                .filter_map(|o| SystemTime::now().duration_since(o.last_modified).ok())
                .min()
                .unwrap_or_default();
            if age > s.upload_timeout || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let fresh = format!("{PREFIX}fresh");
        objects.put(&fresh, Bytes::from_static(b"z")).await.unwrap();
        let round = run_round(&db, &objects, &lease, &s).await.unwrap().unwrap();
        assert_eq!(round.uncommitted_deleted, 1);
        assert_eq!(bucket(&objects).await, HashSet::from([committed, fresh]));
        assert_eq!(objects.list("other").await.unwrap().len(), 1);
    }

    /// Every batch of `expected` reads back at its offset with its bytes, through the db's
    /// coordinates and the objects.
    async fn assert_readable(
        db: &Db,
        objects: &Objects,
        topic: Uuid,
        expected: &BTreeMap<(i32, i64), Bytes>,
    ) {
        for (&(partition, base_offset), data) in expected {
            let coord = db
                .batches_from(topic, partition, base_offset, 1)
                .await
                .unwrap()
                .into_iter()
                .next()
                .expect("the batch is there");
            assert_eq!(coord.base_offset, base_offset);
            let got = objects
                .get_range(
                    &coord.object_key,
                    coord.byte_offset..coord.byte_offset + u64::from(coord.byte_length),
                )
                .await
                .unwrap();
            assert_eq!(&got, data, "partition {partition} offset {base_offset}");
        }
    }

    /// Three shared uploads of two partitions; returns each batch's bytes by (partition,
    /// offset), and the upload keys.
    async fn three_shared_uploads(
        db: &Db,
        objects: &Objects,
        lease: &BrokerLease,
        topic: Uuid,
    ) -> (BTreeMap<(i32, i64), Bytes>, Vec<String>) {
        let now = now_ms();
        let mut expected = BTreeMap::new();
        let mut keys = Vec::new();
        let mut next = [0i64, 0];
        for round in 0..3u32 {
            let batches = [(0, now, 30 + round), (1, now, 17), (0, now, 5)];
            let (key, datas) = upload(db, objects, lease, topic, &batches).await;
            keys.push(key);
            for (&(partition, _, _), data) in batches.iter().zip(datas) {
                let slot = &mut next[partition as usize];
                expected.insert((partition, *slot), data);
                *slot += 1;
            }
        }
        (expected, keys)
    }

    async fn merging_keeps_every_batch_readable(objects: Objects) {
        let Some(t) = TestDb::if_installed().await else {
            return;
        };
        let (db, lease, topic) = setup(&t, 2).await;
        let (expected, uploads) = three_shared_uploads(&db, &objects, &lease, topic).await;
        assert_readable(&db, &objects, topic, &expected).await;
        let s = settings();
        let round = run_round(&db, &objects, &lease, &s).await.unwrap().unwrap();
        assert_eq!((round.merged_objects, round.batches_moved), (2, 9));
        assert_readable(&db, &objects, topic, &expected).await;
        // One object per partition now, each holding only that partition.
        let mut merged = Vec::new();
        for partition in 0..2 {
            let keys: HashSet<String> = coords(&db, topic, partition)
                .await
                .into_iter()
                .map(|c| c.object_key)
                .collect();
            assert_eq!(keys.len(), 1, "partition {partition}: {keys:?}");
            merged.extend(keys);
        }
        assert!(merged.iter().all(|k| !uploads.contains(k)));
        // The uploads are unreferenced now and go; a partition in one object is not merged again.
        let left = rounds_until(&db, &objects, &lease, &s, |b| {
            uploads.iter().all(|u| !b.contains(u))
        })
        .await;
        assert_eq!(left, merged.iter().cloned().collect());
        let again = run_round(&db, &objects, &lease, &s).await.unwrap().unwrap();
        assert_eq!(again.merged_objects, 0);
        assert_readable(&db, &objects, topic, &expected).await;
    }

    #[tokio::test]
    async fn merging_small_objects_keeps_every_committed_batch_readable() {
        merging_keeps_every_batch_readable(Objects::in_memory(1 << 20)).await;
    }

    #[tokio::test]
    async fn merging_is_bounded_per_round() {
        let Some(t) = TestDb::if_installed().await else {
            return;
        };
        let (db, lease, topic) = setup(&t, 2).await;
        let objects = Objects::in_memory(0);
        let (expected, _) = three_shared_uploads(&db, &objects, &lease, topic).await;
        let mut s = settings();
        // Partition 0 (30, 5 | 31, 5 | 32, 5 bytes by upload) has no two objects within 34
        // bytes; partition 1 (17 | 17 | 17) has: only its first two batches move.
        s.merge_bytes_per_round = 34;
        let round = run_round(&db, &objects, &lease, &s).await.unwrap().unwrap();
        assert_eq!((round.merged_objects, round.batches_moved), (1, 2));
        let p1 = coords(&db, topic, 1).await;
        assert_eq!(p1[0].object_key, p1[1].object_key);
        assert_ne!(p1[1].object_key, p1[2].object_key);
        let p0_objects: HashSet<String> = coords(&db, topic, 0)
            .await
            .into_iter()
            .map(|c| c.object_key)
            .collect();
        assert_eq!(p0_objects.len(), 3);
        // 66 bytes: partition 0's first three batches, then the round's budget is spent.
        s.merge_bytes_per_round = 66;
        let round = run_round(&db, &objects, &lease, &s).await.unwrap().unwrap();
        assert_eq!((round.merged_objects, round.batches_moved), (1, 3));
        let p0 = coords(&db, topic, 0).await;
        assert!(p0[..3].iter().all(|c| c.object_key == p0[0].object_key));
        assert_ne!(p0[2].object_key, p0[3].object_key);
        assert_eq!(coords(&db, topic, 1).await, p1);
        assert_readable(&db, &objects, topic, &expected).await;
    }

    #[tokio::test]
    async fn only_the_lease_holder_runs_and_a_broker_losing_it_stops() {
        let Some(t) = TestDb::if_installed().await else {
            return;
        };
        let (db, a, topic) = setup(&t, 1).await;
        let b = db.register("b", 1, None, LEASE).await.unwrap();
        let objects = Objects::in_memory(0);
        let s = settings();
        assert!(run_round(&db, &objects, &a, &s).await.unwrap().is_some());
        assert!(run_round(&db, &objects, &b, &s).await.unwrap().is_none());
        // A's registration is superseded (it restarted): the old incarnation does nothing.
        let a2 = db.register("a", 1, None, LEASE).await.unwrap();
        let day = 24 * 3600 * 1000;
        upload(&db, &objects, &a2, topic, &[(0, now_ms() - 8 * day, 10)]).await;
        assert!(run_round(&db, &objects, &a, &s).await.unwrap().is_none());
        assert_eq!(coords(&db, topic, 0).await.len(), 1);
        // B takes over; the spawned task of the new A does not run while B holds it.
        let task_a2 = spawn(db.clone(), objects.clone(), Arc::new(move || a2), s.clone());
        let round = run_round(&db, &objects, &b, &s).await.unwrap().unwrap();
        assert_eq!(round.retention_moved, 1);
        assert!(coords(&db, topic, 0).await.is_empty());
        assert!(!db.acquire_maintenance(&a2, LEASE).await.unwrap());
        // B gives it up: A2's task takes it and runs (its retention empties a new old batch).
        db.release_maintenance(&b).await.unwrap();
        upload(&db, &objects, &a2, topic, &[(0, now_ms() - 8 * day, 10)]).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !coords(&db, topic, 0).await.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(coords(&db, topic, 0).await.is_empty());
        assert!(!db.acquire_maintenance(&b, LEASE).await.unwrap());
        // Stopping it releases the lease at once.
        task_a2.stop().await;
        assert!(db.acquire_maintenance(&b, LEASE).await.unwrap());
    }

    #[tokio::test]
    async fn the_task_goes_on_under_the_new_registration_after_the_broker_registers_again() {
        let Some(t) = TestDb::if_installed().await else {
            return;
        };
        let (db, a, topic) = setup(&t, 1).await;
        let objects = Objects::in_memory(0);
        let current = Arc::new(parking_lot::Mutex::new(a));
        let source: LeaseSource = {
            let current = current.clone();
            Arc::new(move || *current.lock())
        };
        let task = spawn(db.clone(), objects.clone(), source, settings());
        // The broker's registration lapses and it registers again (what the lease renewal
        // does after a pause): the running task must follow, not keep the dead epoch.
        let a2 = db.register("a", 1, None, LEASE).await.unwrap();
        *current.lock() = a2;
        let day = 24 * 3600 * 1000;
        upload(&db, &objects, &a2, topic, &[(0, now_ms() - 8 * day, 10)]).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !coords(&db, topic, 0).await.is_empty() {
            assert!(
                Instant::now() < deadline,
                "retention never ran under the new registration"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // It holds the lease under the new epoch: another broker cannot take it, and
        // stopping releases the new epoch's lease.
        let b = db.register("b", 1, None, LEASE).await.unwrap();
        assert!(!db.acquire_maintenance(&b, LEASE).await.unwrap());
        task.stop().await;
        assert!(db.acquire_maintenance(&b, LEASE).await.unwrap());
    }

    /// Against a real S3 server (SeaweedFS).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn merging_on_s3_keeps_every_committed_batch_readable() {
        use crate::cluster::config::ObjectsUrl;
        use crate::cluster::objects::Credentials;
        use sluice_engines::Weed;
        if !sluice_engines::require("SeaweedFS (weed)", Weed::installed()) {
            return;
        }
        let weed = tokio::task::spawn_blocking(Weed::start)
            .await
            .unwrap()
            .unwrap();
        let url = ObjectsUrl::parse(&weed.objects_url()).unwrap();
        let env: HashMap<&str, &str> = weed.env().into_iter().collect();
        let credentials = Credentials {
            access_key_id: env["AWS_ACCESS_KEY_ID"].to_string(),
            secret_access_key: env["AWS_SECRET_ACCESS_KEY"].to_string(),
            session_token: None,
        };
        let objects = Objects::open_with_credentials(&url, credentials, 1 << 20).unwrap();
        merging_keeps_every_batch_readable(objects).await;
    }
}
