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
use crate::cluster::types::BrokerLease;

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
    lease: BrokerLease,
}

impl Maintenance {
    /// Stops the task (between or within a round: every step is atomic on its own) and
    /// releases the lease so another broker takes over at once.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
        if let Err(e) = self.db.release_maintenance(&self.lease).await {
            tracing::warn!("releasing the maintenance lease: {e}");
        }
    }
}

/// Starts the maintenance task of the broker registered as `lease`.
pub fn spawn(db: Db, objects: Objects, lease: BrokerLease, settings: Settings) -> Maintenance {
    let task = {
        let db = db.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(settings.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match run_round(&db, &objects, &lease, &settings).await {
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
