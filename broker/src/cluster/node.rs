//! [`Cluster`]: what one broker in cluster mode holds — the metadata database, the object store,
//! its lease, the upload buffer, the read cache, a short-lived topic cache and the per-partition
//! watermark watches that commit notices feed — and the background tasks that keep them: the
//! lease renewal (re-registering after a fence) and the notice listener.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

use super::config::ClusterConfig;
use super::db::{Db, DbError};
use super::objects::{Objects, ObjectsError};
use super::read::ReadCache;
use super::types::{
    BatchOutcome, BrokerInfo, BrokerLease, CommitEvent, CommitNotice, PartitionOffsets, TopicMeta,
    UploadCommit,
};
use super::upload::{self, UploadBuffer, UploadError, UploadStore};
use crate::catalog::TopicDefaults;

/// How long a topic looked up in the database is trusted before it is looked up again (a
/// deleted or re-partitioned topic is seen within this).
const TOPIC_TTL: Duration = Duration::from_secs(2);
/// How long the live broker list of Metadata is reused.
const BROKERS_TTL: Duration = Duration::from_secs(1);
/// Waits between registration attempts while the database refuses or is down.
const REGISTER_RETRY: Duration = Duration::from_millis(500);

/// Cluster-mode settings of this broker.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where clients reach this broker (registered in the database, shown in Metadata).
    pub advertised_host: String,
    pub advertised_port: i32,
    pub rack: Option<String>,
    /// A registration lapses this long after its last renewal.
    pub lease: Duration,
    /// The upload buffer's linger and size limit.
    pub upload: upload::Settings,
    /// Defaults for topics: `num.partitions` for auto-creation, the configs' broker defaults.
    pub topics: TopicDefaults,
}

/// This broker's registration: the lease commits name, and whether it was fenced.
#[derive(Debug)]
struct LeaseState {
    current: RwLock<BrokerLease>,
    /// Set when a renewal or a commit found the lease superseded or lapsed; cleared once
    /// registered again. While set, nothing is committed.
    fenced: AtomicBool,
    /// Until when the registration is surely current: its length after the moment the last
    /// registration or renewal was sent (the database's expiry is at least that late). What
    /// this broker holds under its registration (group leases) is believed no longer.
    valid_until: Mutex<Instant>,
}

/// The per-partition watermark watches: fetches long-poll on them, commit notices (and this
/// broker's own commits) move them.
#[derive(Debug, Default)]
pub(crate) struct Watermarks {
    partitions: Mutex<HashMap<(Uuid, i32), watch::Sender<PartitionOffsets>>>,
}

impl Watermarks {
    /// Moves the partition's high watermark forward (never back: notices may arrive late or
    /// out of order). Unknown partitions are ignored: nobody watches them yet.
    pub(crate) fn advance(&self, topic_id: Uuid, partition: i32, high_watermark: i64) {
        if let Some(tx) = self.partitions.lock().get(&(topic_id, partition)) {
            tx.send_if_modified(|o| {
                let moved = high_watermark > o.high_watermark;
                if moved {
                    o.high_watermark = high_watermark;
                }
                moved
            });
        }
    }

    /// Moves the partition's log start forward (DeleteRecords or retention on some broker);
    /// the high watermark is at least the new log start. Unknown partitions are ignored.
    pub(crate) fn advance_log_start(&self, topic_id: Uuid, partition: i32, log_start_offset: i64) {
        if let Some(tx) = self.partitions.lock().get(&(topic_id, partition)) {
            tx.send_if_modified(|o| {
                let moved = log_start_offset > o.log_start_offset;
                if moved {
                    o.log_start_offset = log_start_offset;
                    o.high_watermark = o.high_watermark.max(log_start_offset);
                }
                moved
            });
        }
    }

    /// Replaces what is known of the partition with the database's answer (after a resync,
    /// or when a read found the log start moved).
    pub(crate) fn set(&self, topic_id: Uuid, partition: i32, offsets: PartitionOffsets) {
        let mut partitions = self.partitions.lock();
        match partitions.get(&(topic_id, partition)) {
            Some(tx) => {
                tx.send_if_modified(|o| {
                    let next = PartitionOffsets {
                        log_start_offset: offsets.log_start_offset,
                        high_watermark: offsets.high_watermark.max(o.high_watermark),
                    };
                    let changed = next != *o;
                    *o = next;
                    changed
                });
            }
            None => {
                partitions.insert((topic_id, partition), watch::channel(offsets).0);
            }
        }
    }

    pub(crate) fn get(
        &self,
        topic_id: Uuid,
        partition: i32,
    ) -> Option<watch::Receiver<PartitionOffsets>> {
        self.partitions
            .lock()
            .get(&(topic_id, partition))
            .map(watch::Sender::subscribe)
    }

    fn known(&self) -> Vec<(Uuid, i32)> {
        self.partitions.lock().keys().copied().collect()
    }
}

/// Where uploads go in the bucket: `uploads/<node id>/<uuid>`; the maintenance sweep looks for
/// never-committed objects under it.
pub const UPLOAD_PREFIX: &str = "uploads/";

/// A broker in cluster mode.
pub struct Cluster {
    pub db: Db,
    pub objects: Objects,
    lease: Arc<LeaseState>,
    /// Produced batches on their way to an object and a commit.
    pub uploads: UploadBuffer,
    /// Batch coordinates of recent reads.
    pub(crate) reads: ReadCache,
    pub(crate) watermarks: Arc<Watermarks>,
    topics: Mutex<HashMap<String, (TopicMeta, Instant)>>,
    brokers: Mutex<Option<(Vec<BrokerInfo>, Instant)>>,
    /// Commit notices of every broker (LISTEN/NOTIFY); dropping it stops listening.
    feed: super::db::notify::CommitFeed,
    /// Serializes this broker's changes to its transform registry from the cluster's
    /// deployments ([`super::deployments`]): admin calls and reconciles take turns.
    pub(crate) deployments_turn: tokio::sync::Mutex<()>,
    pub settings: Settings,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("db", &self.db)
            .field("lease", &self.lease())
            .finish_non_exhaustive()
    }
}

/// Why the broker could not join the cluster.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Objects(#[from] ObjectsError),
}

impl Cluster {
    /// Connects to the metadata database (migrating its schema), opens the object store and
    /// registers this broker. The background tasks are started by [`Cluster::spawn_tasks`].
    pub async fn join(
        config: &ClusterConfig,
        settings: Settings,
    ) -> Result<Arc<Cluster>, JoinError> {
        // The object store first: a bad URL or missing credentials is named before the
        // database is touched (and its schema migrated).
        let objects = Objects::open(&config.objects_url, config.cache_bytes)?;
        let db = Db::connect_config(config.metadata_url.pg_config()).await?;
        let sent = Instant::now();
        let lease = db
            .register(
                &settings.advertised_host,
                settings.advertised_port,
                settings.rack.as_deref(),
                settings.lease,
            )
            .await?;
        tracing::info!(node_id = lease.node_id, epoch = lease.epoch, db = %db.target(), objects = %objects.url(), "joined the cluster");
        let valid_until = sent + settings.lease;
        let cluster = Self::with(db, objects, lease, settings);
        *cluster.lease.valid_until.lock() = valid_until;
        Ok(cluster)
    }

    /// A cluster handle over an open database and object store, registered as `lease`.
    pub fn with(db: Db, objects: Objects, lease: BrokerLease, settings: Settings) -> Arc<Cluster> {
        let lease = Arc::new(LeaseState {
            current: RwLock::new(lease),
            fenced: AtomicBool::new(false),
            // The caller registered just now; `join` sets the exact bound.
            valid_until: Mutex::new(Instant::now() + settings.lease),
        });
        let watermarks = Arc::new(Watermarks::default());
        let uploader = Arc::new(Uploader {
            db: db.clone(),
            objects: objects.clone(),
            lease: lease.clone(),
            watermarks: watermarks.clone(),
        });
        let node_id = lease.current.read().node_id;
        let uploads = UploadBuffer::start(
            uploader,
            settings.upload,
            format!("{UPLOAD_PREFIX}{node_id}/"),
        );
        Arc::new(Cluster {
            db: db.clone(),
            objects,
            lease,
            uploads,
            reads: ReadCache::default(),
            watermarks,
            topics: Mutex::new(HashMap::new()),
            brokers: Mutex::new(None),
            feed: db.commit_feed(),
            deployments_turn: tokio::sync::Mutex::new(()),
            settings,
        })
    }

    /// This broker's current registration.
    pub fn lease(&self) -> BrokerLease {
        *self.lease.current.read()
    }

    /// Until when this broker's registration is surely current (unless fenced meanwhile):
    /// past it, the database may already have freed what was held under it.
    pub fn registration_valid_until(&self) -> Instant {
        if self.lease.fenced.load(Ordering::Acquire) {
            // Fenced: nothing is held under the old registration any more.
            return Instant::now();
        }
        *self.lease.valid_until.lock()
    }

    /// This broker's node id in the cluster.
    pub fn node_id(&self) -> i32 {
        self.lease().node_id
    }

    /// Starts the lease renewal and the commit notice listener; they end when `stop` turns true.
    pub fn spawn_tasks(
        self: &Arc<Self>,
        stop: watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        vec![
            tokio::spawn(renew_lease(self.clone(), stop.clone())),
            tokio::spawn(listen_notices(self.clone(), stop)),
        ]
    }

    /// Commits what is buffered, then removes this broker's registration (a clean shutdown:
    /// the others stop showing it at once instead of when its lease lapses).
    pub async fn leave(&self) {
        self.uploads.close().await;
        if let Err(e) = self.db.deregister(&self.lease()).await {
            tracing::warn!("cannot deregister from the cluster: {e}");
        }
    }

    /// The topic `name`, from the cache or (on a miss or once stale) the database.
    pub async fn topic(&self, name: &str) -> Result<Option<TopicMeta>, DbError> {
        if let Some((meta, at)) = self.topics.lock().get(name) {
            if at.elapsed() < TOPIC_TTL {
                return Ok(Some(meta.clone()));
            }
        }
        let found = self.db.topic(name).await?;
        let mut topics = self.topics.lock();
        match &found {
            Some(meta) => {
                topics.insert(name.to_string(), (meta.clone(), Instant::now()));
            }
            None => {
                topics.remove(name);
            }
        }
        Ok(found)
    }

    /// Every topic, from the database (filling the cache).
    pub async fn all_topics(&self) -> Result<Vec<TopicMeta>, DbError> {
        let topics = self.db.topics().await?;
        let now = Instant::now();
        let mut cache = self.topics.lock();
        cache.clear();
        for t in &topics {
            cache.insert(t.name.clone(), (t.clone(), now));
        }
        Ok(topics)
    }

    /// Events of the commit feed from now on (commits, deployment changes, resyncs).
    pub fn events(&self) -> tokio::sync::broadcast::Receiver<CommitEvent> {
        self.feed.subscribe()
    }

    /// Drops a topic from the cache (it was deleted or changed by an admin call).
    pub fn forget_topic(&self, name: &str) {
        self.topics.lock().remove(name);
    }

    /// The topic, created with `num.partitions` if missing (auto-creation).
    pub async fn topic_or_create(&self, name: &str) -> Result<TopicMeta, DbError> {
        if let Some(meta) = self.topic(name).await? {
            return Ok(meta);
        }
        match self
            .db
            .create_topic(name, self.settings.topics.num_partitions.max(1), &[])
            .await
        {
            Ok(meta) => {
                self.topics
                    .lock()
                    .insert(name.to_string(), (meta.clone(), Instant::now()));
                Ok(meta)
            }
            // Another broker created it first.
            Err(DbError::TopicAlreadyExists(_)) => self
                .topic(name)
                .await?
                .ok_or_else(|| DbError::UnknownTopic(name.to_string())),
            Err(e) => Err(e),
        }
    }

    /// The live brokers (briefly cached); this broker is always among them.
    pub async fn live_brokers(&self) -> Result<Vec<BrokerInfo>, DbError> {
        if let Some((brokers, at)) = &*self.brokers.lock() {
            if at.elapsed() < BROKERS_TTL {
                return Ok(brokers.clone());
            }
        }
        let mut brokers = self.db.live_brokers().await?;
        let me = self.node_id();
        if !brokers.iter().any(|b| b.node_id == me) {
            brokers.push(BrokerInfo {
                node_id: me,
                host: self.settings.advertised_host.clone(),
                port: self.settings.advertised_port,
                rack: self.settings.rack.clone(),
            });
        }
        brokers.sort_by_key(|b| b.node_id);
        *self.brokers.lock() = Some((brokers.clone(), Instant::now()));
        Ok(brokers)
    }

    /// The partition's offsets: from its watch when one exists (kept current by notices),
    /// else from the database (and a watch is made). `None` for an unknown partition.
    pub async fn offsets(
        &self,
        topic_id: Uuid,
        partition: i32,
    ) -> Result<Option<PartitionOffsets>, DbError> {
        if let Some(rx) = self.watermarks.get(topic_id, partition) {
            return Ok(Some(*rx.borrow()));
        }
        self.refresh_offsets(topic_id, partition).await
    }

    /// Re-reads the partition's offsets from the database into its watch.
    pub async fn refresh_offsets(
        &self,
        topic_id: Uuid,
        partition: i32,
    ) -> Result<Option<PartitionOffsets>, DbError> {
        let found = self.db.partition_offsets(topic_id, partition).await?;
        if let Some(offsets) = found {
            self.watermarks.set(topic_id, partition, offsets);
        }
        Ok(found)
    }

    /// A watch on the partition's offsets (made from the database if there is none yet).
    pub async fn watch(
        &self,
        topic_id: Uuid,
        partition: i32,
    ) -> Result<Option<watch::Receiver<PartitionOffsets>>, DbError> {
        if self.watermarks.get(topic_id, partition).is_none()
            && self.refresh_offsets(topic_id, partition).await?.is_none()
        {
            return Ok(None);
        }
        Ok(self.watermarks.get(topic_id, partition))
    }
}

/// The upload buffer's way out: PUT to the object store, commit under this broker's lease.
struct Uploader {
    db: Db,
    objects: Objects,
    lease: Arc<LeaseState>,
    watermarks: Arc<Watermarks>,
}

impl UploadStore for Uploader {
    async fn put(&self, key: String, body: bytes::Bytes) -> Result<(), UploadError> {
        // Every put failure is retriable for the producer: nothing was committed, so a retry
        // stores the batches again (under a new key); the lost object is collected as orphaned.
        self.objects
            .put(&key, body)
            .await
            .map_err(|e| UploadError::Put(e.to_string()))
    }

    async fn commit(&self, upload: &UploadCommit) -> Result<Vec<BatchOutcome>, UploadError> {
        if self.lease.fenced.load(Ordering::Acquire) {
            return Err(UploadError::Fenced);
        }
        let lease = *self.lease.current.read();
        match self.db.commit_upload(&lease, upload).await {
            Ok(outcomes) => {
                // This broker's long polls wake without waiting for the notice's round trip.
                for (b, o) in upload.batches.iter().zip(outcomes.iter()) {
                    if let BatchOutcome::Appended { base_offset, .. } = o {
                        self.watermarks.advance(
                            b.topic_id,
                            b.partition,
                            base_offset + i64::from(b.record_count),
                        );
                    }
                }
                Ok(outcomes)
            }
            Err(DbError::Fenced) => {
                self.lease.fenced.store(true, Ordering::Release);
                Err(UploadError::Fenced)
            }
            // A commit that failed before or while it ran may have committed: the outcome is
            // unknown unless the database said no outright.
            Err(e) if e.is_retriable() => Err(UploadError::CommitUnknown(e.to_string())),
            Err(e) => Err(UploadError::Commit(e.to_string())),
        }
    }
}

/// Renews the lease at a third of its length; when fenced (or lapsed during an outage),
/// stops commits and registers again.
async fn renew_lease(cluster: Arc<Cluster>, mut stop: watch::Receiver<bool>) {
    let every = cluster.settings.lease / 3;
    let mut renewed = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let fenced = cluster.lease.fenced.load(Ordering::Acquire);
        if !fenced {
            let sent = Instant::now();
            match cluster
                .db
                .heartbeat(&cluster.lease(), cluster.settings.lease)
                .await
            {
                Ok(()) => {
                    renewed = Instant::now();
                    *cluster.lease.valid_until.lock() = sent + cluster.settings.lease;
                    continue;
                }
                Err(DbError::Fenced) => {
                    tracing::warn!(lease = ?cluster.lease(), "lease lost (fenced): committing nothing until registered again");
                    cluster.lease.fenced.store(true, Ordering::Release);
                }
                Err(e) => {
                    tracing::warn!("cannot renew the lease: {e}");
                    if renewed.elapsed() < cluster.settings.lease {
                        continue;
                    }
                    // Lapsed: the database refuses this lease's commits anyway.
                    cluster.lease.fenced.store(true, Ordering::Release);
                }
            }
        }
        let s = &cluster.settings;
        let sent = Instant::now();
        match cluster
            .db
            .register(
                &s.advertised_host,
                s.advertised_port,
                s.rack.as_deref(),
                s.lease,
            )
            .await
        {
            Ok(lease) => {
                tracing::info!(
                    node_id = lease.node_id,
                    epoch = lease.epoch,
                    "registered again"
                );
                *cluster.lease.current.write() = lease;
                *cluster.lease.valid_until.lock() = sent + s.lease;
                cluster.lease.fenced.store(false, Ordering::Release);
                renewed = Instant::now();
            }
            Err(e) => {
                tracing::warn!("cannot register again: {e}");
                tokio::select! {
                    _ = tokio::time::sleep(REGISTER_RETRY) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        }
    }
}

/// Moves the watermark watches on every commit notice and log start notice, drops a changed
/// topic from the cache; after the listener reconnected (notices may have been missed)
/// re-reads every watched partition from the database and forgets every cached topic.
async fn listen_notices(cluster: Arc<Cluster>, mut stop: watch::Receiver<bool>) {
    let mut notices = cluster.feed.subscribe();
    loop {
        let notice = tokio::select! {
            n = notices.recv() => n,
            _ = stop.wait_for(|s| *s) => return,
        };
        match notice {
            Ok(CommitEvent::Commit(CommitNotice {
                topic_id,
                partition,
                high_watermark,
            })) => cluster
                .watermarks
                .advance(topic_id, partition, high_watermark),
            Ok(CommitEvent::TopicChanged(name)) => cluster.forget_topic(&name),
            Ok(CommitEvent::LogStartMoved {
                topic_id,
                partition,
                log_start_offset,
            }) => cluster
                .watermarks
                .advance_log_start(topic_id, partition, log_start_offset),
            Ok(CommitEvent::Resync) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                // Topic changes may have been missed too: every topic is looked up again.
                cluster.topics.lock().clear();
                for (topic_id, partition) in cluster.watermarks.known() {
                    if let Err(e) = cluster.refresh_offsets(topic_id, partition).await {
                        tracing::debug!("cannot re-read offsets after a resync: {e}");
                    }
                }
            }
            // Applied by `cluster::deployments`, which subscribes on its own.
            Ok(CommitEvent::Deployments) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::read;
    use crate::cluster::types::BatchOutcome;
    use crate::records::batch::{self, BatchHeader};
    use crate::records::record::{build_batch, BatchMeta, NewRecord};
    use crate::records::Compression;
    use bytes::Bytes;
    use sluice_engines::Postgres;

    fn batch_of(values: &[&str], meta: BatchMeta) -> Bytes {
        let records: Vec<NewRecord> = values
            .iter()
            .map(|v| NewRecord {
                timestamp: 1_700_000_000_000,
                key: None,
                value: Some(v.as_bytes().to_vec()),
                headers: vec![],
            })
            .collect();
        build_batch(&records, Compression::None, &meta).into()
    }

    fn settings() -> Settings {
        Settings {
            advertised_host: "127.0.0.1".into(),
            advertised_port: 1,
            rack: None,
            lease: Duration::from_secs(10),
            upload: upload::Settings::new(Duration::from_millis(20), 1 << 20),
            topics: TopicDefaults::default(),
        }
    }

    /// A throwaway PostgreSQL and a cluster handle on it with in-memory objects, or `None`
    /// (the test skips) when PostgreSQL is not installed outside CI.
    async fn cluster() -> Option<(Postgres, Arc<Cluster>)> {
        if !sluice_engines::require("PostgreSQL", Postgres::installed()) {
            return None;
        }
        let pg = tokio::task::spawn_blocking(Postgres::start)
            .await
            .expect("start task")
            .expect("start PostgreSQL");
        let db = Db::connect(&pg.url()).await.expect("connect");
        let lease = db
            .register("127.0.0.1", 1, None, Duration::from_secs(10))
            .await
            .expect("register");
        let cluster = Cluster::with(db, Objects::in_memory(1 << 20), lease, settings());
        Some((pg, cluster))
    }

    fn base(outcomes: &[BatchOutcome]) -> (i64, bool) {
        match outcomes.first() {
            Some(BatchOutcome::Appended { base_offset, .. }) => (*base_offset, false),
            Some(BatchOutcome::Duplicate { base_offset, .. }) => (*base_offset, true),
            other => panic!("refused: {other:?}"),
        }
    }

    #[tokio::test]
    async fn produced_batches_are_committed_and_read_back_at_their_offsets() {
        let Some((_pg, cluster)) = cluster().await else {
            return;
        };
        let (_dir, broker) = crate::broker::test_broker();
        let topic = cluster.db.create_topic("t", 1, &[]).await.expect("create");
        let pid = cluster
            .db
            .allocate_producer_id()
            .await
            .expect("producer id");
        let idempotent = |seq| BatchMeta {
            base_offset: 0,
            producer_id: pid,
            producer_epoch: 0,
            base_sequence: seq,
        };
        let submit = |records: Bytes| {
            crate::write::cluster::submit_produced(
                &broker,
                &cluster,
                None,
                &topic,
                0,
                records,
                crate::broker::now_ms(),
            )
            .expect("valid batch")
        };
        let first = submit(batch_of(&["a", "b"], idempotent(0)));
        let second = submit(batch_of(&["c", "d", "e"], idempotent(2)));
        let first = first.await.expect("answered").expect("committed");
        let second = second.await.expect("answered").expect("committed");
        assert_eq!(base(&first), (0, false));
        assert_eq!(base(&second), (2, false));
        // A retry of the first (say, through another broker after a lost answer) is answered
        // with its original offsets and stores nothing.
        let retry = submit(batch_of(&["a", "b"], idempotent(0)));
        assert_eq!(base(&retry.await.unwrap().unwrap()), (0, true));

        let slice = read::read(&cluster, topic.topic_id, 0, 0, 1 << 20, true)
            .await
            .expect("read");
        assert_eq!(slice.offsets.high_watermark, 5);
        let ranges = batch::split(&slice.records).expect("whole batches");
        let bases: Vec<i64> = ranges
            .iter()
            .map(|r| {
                // Still valid after patching: the base offset is outside the CRC.
                batch::validate(&slice.records[r.clone()], 1 << 20)
                    .expect("valid batch")
                    .base_offset
            })
            .collect();
        assert_eq!(bases, [0, 2]);
        // From an offset inside the second batch: that batch, whole.
        let slice = read::read(&cluster, topic.topic_id, 0, 3, 1 << 20, true)
            .await
            .expect("read");
        let header = BatchHeader::parse(&slice.records).expect("a batch");
        assert_eq!((header.base_offset, header.last_offset()), (2, 4));
        // At the high watermark: nothing yet; past it: out of range.
        let at_end = read::read(&cluster, topic.topic_id, 0, 5, 1 << 20, true)
            .await
            .expect("read");
        assert!(at_end.records.is_empty());
        assert!(matches!(
            read::read(&cluster, topic.topic_id, 0, 6, 1 << 20, true).await,
            Err(read::ReadError::OffsetOutOfRange { .. })
        ));
        // By timestamp: the first record at or after it.
        let found = read::offset_for_timestamp(&cluster, topic.topic_id, 0, 1_700_000_000_000)
            .await
            .expect("lookup");
        assert_eq!(found.map(|(offset, _)| offset), Some(0));
    }

    #[tokio::test]
    async fn a_fenced_broker_answers_a_retriable_error_and_commits_nothing() {
        let Some((_pg, cluster)) = cluster().await else {
            return;
        };
        let (_dir, broker) = crate::broker::test_broker();
        let topic = cluster.db.create_topic("t", 1, &[]).await.expect("create");
        // The same host:port registers again (a restarted incarnation): this one is a zombie.
        cluster
            .db
            .register("127.0.0.1", 1, None, Duration::from_secs(10))
            .await
            .expect("register");
        let answer = crate::write::cluster::submit_produced(
            &broker,
            &cluster,
            None,
            &topic,
            0,
            batch_of(&["x"], BatchMeta::default()),
            crate::broker::now_ms(),
        )
        .expect("valid batch");
        assert!(matches!(answer.await.unwrap(), Err(UploadError::Fenced)));
        let offsets = cluster
            .db
            .partition_offsets(topic.topic_id, 0)
            .await
            .expect("offsets");
        assert_eq!(offsets.map(|o| o.high_watermark), Some(0));
    }

    #[tokio::test]
    async fn a_commit_by_another_broker_wakes_a_watch_through_the_notice() {
        let Some((pg, cluster)) = cluster().await else {
            return;
        };
        let topic = cluster.db.create_topic("t", 1, &[]).await.expect("create");
        let mut watch = cluster
            .watch(topic.topic_id, 0)
            .await
            .expect("watch")
            .expect("partition exists");
        let (_stop, stop) = watch::channel(false);
        cluster.spawn_tasks(stop);
        // Another broker: its own database handle and lease, the same database.
        let other_db = Db::connect(&pg.url()).await.expect("connect");
        let other = other_db
            .register("127.0.0.1", 2, None, Duration::from_secs(10))
            .await
            .expect("register");
        let other = Cluster::with(other_db, Objects::in_memory(1 << 20), other, settings());
        let (_dir, broker) = crate::broker::test_broker();
        let answer = crate::write::cluster::submit_produced(
            &broker,
            &other,
            None,
            &topic,
            0,
            batch_of(&["x", "y"], BatchMeta::default()),
            crate::broker::now_ms(),
        )
        .expect("valid batch");
        answer.await.unwrap().expect("committed");
        tokio::time::timeout(
            Duration::from_secs(10),
            watch.wait_for(|o| o.high_watermark == 2),
        )
        .await
        .expect("the notice arrived")
        .expect("watch open");
    }
}
