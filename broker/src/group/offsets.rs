//! Committed offsets and group metadata, durable: an append-only file of CRC32C-framed JSON
//! records (`__sluice/offsets.log`), replayed at start, fsynced before an OffsetCommit is
//! acknowledged (group commit: concurrent commits share one fsync), and rewritten as a compact
//! snapshot when it has grown well past the live set.
//!
//! Group metadata (protocol type and generation, written when a rebalance completes) rides in the
//! same file without an fsync of its own: losing the latest one in a crash only means a group comes
//! back with an older generation, which no member relies on since live membership is not restored.
//!
//! Frame: `u32 BE payload length, u32 BE CRC32C of the payload, payload`. A torn or corrupt tail
//! (a crash mid-write) is truncated at open; everything before it is kept.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// Rewrite the file once it is this many times the size of a fresh snapshot (and at least 1 MiB).
const COMPACT_FACTOR: u64 = 4;
const COMPACT_MIN_BYTES: u64 = 1 << 20;
/// A record larger than this is corruption, not data (metadata is capped far below).
const MAX_RECORD: usize = 1 << 20;

/// One committed offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_timestamp: i64,
}

/// A change to the store, as written to the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Record {
    Commit {
        group: String,
        topic: String,
        partition: i32,
        committed: Committed,
    },
    DeleteOffset {
        group: String,
        topic: String,
        partition: i32,
    },
    DeleteGroup {
        group: String,
    },
    GroupMeta {
        group: String,
        #[serde(flatten)]
        meta: GroupMeta,
    },
}

/// What is kept of a group besides its offsets, so that after a restart it is still listed and
/// described (as Empty) and its generations keep counting up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMeta {
    pub protocol_type: String,
    pub generation: i32,
}

/// The replayed state: offsets and metadata by group.
#[derive(Debug, Default)]
struct Live {
    offsets: HashMap<String, GroupOffsets>,
    meta: HashMap<String, GroupMeta>,
}

/// Offsets by group, then `(topic, partition)`.
pub type GroupOffsets = BTreeMap<(String, i32), Committed>;

#[derive(Debug)]
struct Inner {
    file: File,
    /// Bytes in the file.
    size: u64,
    live: Live,
    /// Records appended so far; `durable` trails it.
    appended: u64,
}

/// The durable committed-offset store shared by all groups.
#[derive(Debug)]
pub struct OffsetStore {
    path: PathBuf,
    inner: Mutex<Inner>,
    durable: watch::Sender<u64>,
    sync_lock: tokio::sync::Mutex<()>,
}

fn frame(record: &Record) -> Vec<u8> {
    // Serializing plain data to JSON cannot fail.
    crate::meta::framed::frame(&serde_json::to_vec(record).unwrap_or_default())
}

fn apply(live: &mut Live, record: Record) {
    let offsets = &mut live.offsets;
    match record {
        Record::Commit {
            group,
            topic,
            partition,
            committed,
        } => {
            offsets
                .entry(group)
                .or_default()
                .insert((topic, partition), committed);
        }
        Record::DeleteOffset {
            group,
            topic,
            partition,
        } => {
            if let Some(g) = offsets.get_mut(&group) {
                g.remove(&(topic, partition));
                if g.is_empty() {
                    offsets.remove(&group);
                }
            }
        }
        Record::DeleteGroup { group } => {
            offsets.remove(&group);
            live.meta.remove(&group);
        }
        Record::GroupMeta { group, meta } => {
            live.meta.insert(group, meta);
        }
    }
}

/// Replays `bytes`; returns the state and how many leading bytes were valid.
fn replay(bytes: &[u8]) -> (Live, usize) {
    let mut live = Live::default();
    let valid =
        crate::meta::framed::walk(bytes, MAX_RECORD, |payload| {
            match serde_json::from_slice::<Record>(payload) {
                Ok(record) => {
                    apply(&mut live, record);
                    true
                }
                Err(_) => false,
            }
        });
    (live, valid)
}

fn snapshot(live: &Live) -> Vec<u8> {
    let mut out = Vec::new();
    for (group, meta) in &live.meta {
        out.extend(frame(&Record::GroupMeta {
            group: group.clone(),
            meta: meta.clone(),
        }));
    }
    for (group, entries) in &live.offsets {
        for ((topic, partition), committed) in entries {
            out.extend(frame(&Record::Commit {
                group: group.clone(),
                topic: topic.clone(),
                partition: *partition,
                committed: committed.clone(),
            }));
        }
    }
    out
}

impl OffsetStore {
    /// Opens the store at `path`, replaying it and truncating a torn tail.
    pub fn open(path: &Path) -> std::io::Result<OffsetStore> {
        let (file, live, valid) = crate::meta::framed::open(path, "offsets log", replay)?;
        let store = OffsetStore {
            path: path.to_path_buf(),
            inner: Mutex::new(Inner {
                file,
                size: valid,
                live,
                appended: 0,
            }),
            durable: watch::Sender::new(0),
            sync_lock: tokio::sync::Mutex::new(()),
        };
        store.maybe_compact()?;
        Ok(store)
    }

    /// Appends records and applies them; returns the sequence to wait on for durability.
    fn write(&self, records: Vec<Record>) -> std::io::Result<u64> {
        let mut bytes = Vec::new();
        for r in &records {
            bytes.extend(frame(r));
        }
        let mut inner = self.inner.lock();
        if let Err(e) = inner.file.write_all(&bytes) {
            // A partial record would poison replay of everything after it.
            let size = inner.size;
            let _ = inner.file.set_len(size);
            return Err(e);
        }
        inner.size += bytes.len() as u64;
        for r in records {
            apply(&mut inner.live, r);
        }
        inner.appended += 1;
        Ok(inner.appended)
    }

    /// Stores commits for `group`; resolves once they are durable.
    pub async fn commit(
        &self,
        group: &str,
        entries: Vec<(String, i32, Committed)>,
    ) -> std::io::Result<()> {
        let records = entries
            .into_iter()
            .map(|(topic, partition, committed)| Record::Commit {
                group: group.to_string(),
                topic,
                partition,
                committed,
            })
            .collect();
        let seq = self.write(records)?;
        self.wait_durable(seq).await
    }

    /// Deletes some of a group's offsets, durably.
    pub async fn delete_offsets(
        &self,
        group: &str,
        partitions: Vec<(String, i32)>,
    ) -> std::io::Result<()> {
        let records = partitions
            .into_iter()
            .map(|(topic, partition)| Record::DeleteOffset {
                group: group.to_string(),
                topic,
                partition,
            })
            .collect();
        let seq = self.write(records)?;
        self.wait_durable(seq).await
    }

    /// Deletes every group's offsets of a deleted topic, durably (Kafka does the same, so a
    /// topic created again under the name starts without stale positions).
    pub async fn delete_topic(&self, topic: &str) -> std::io::Result<()> {
        let records: Vec<Record> = {
            let inner = self.inner.lock();
            inner
                .live
                .offsets
                .iter()
                .flat_map(|(group, entries)| {
                    entries
                        .keys()
                        .filter(|(t, _)| t == topic)
                        .map(|(t, partition)| Record::DeleteOffset {
                            group: group.clone(),
                            topic: t.clone(),
                            partition: *partition,
                        })
                })
                .collect()
        };
        if records.is_empty() {
            return Ok(());
        }
        let seq = self.write(records)?;
        self.wait_durable(seq).await
    }

    /// Deletes all of a group's offsets and metadata, durably.
    pub async fn delete_group(&self, group: &str) -> std::io::Result<()> {
        let seq = self.append_delete_group(group)?;
        self.wait_durable(seq).await
    }

    /// Appends a group's deletion (applied at once, durable once [`Self::wait_durable`] of the
    /// returned sequence resolves): synchronous, so it can be done under the group's lock.
    pub fn append_delete_group(&self, group: &str) -> std::io::Result<u64> {
        self.write(vec![Record::DeleteGroup {
            group: group.to_string(),
        }])
    }

    /// Records a group's protocol type and generation; durable with the next fsync.
    pub fn record_group(&self, group: &str, meta: GroupMeta) {
        if self.inner.lock().live.meta.get(group) == Some(&meta) {
            return;
        }
        let record = Record::GroupMeta {
            group: group.to_string(),
            meta,
        };
        if let Err(e) = self.write(vec![record]) {
            tracing::warn!(group, "recording group metadata failed: {e}");
        }
    }

    /// A group's recorded metadata.
    pub fn group_meta(&self, group: &str) -> Option<GroupMeta> {
        self.inner.lock().live.meta.get(group).cloned()
    }

    /// One fsync covers every write made before it started.
    pub async fn wait_durable(&self, seq: u64) -> std::io::Result<()> {
        loop {
            if *self.durable.borrow() >= seq {
                return Ok(());
            }
            let _turn = self.sync_lock.lock().await;
            if *self.durable.borrow() >= seq {
                return Ok(());
            }
            let (upto, file) = {
                let inner = self.inner.lock();
                (inner.appended, inner.file.try_clone()?)
            };
            tokio::task::spawn_blocking(move || file.sync_data())
                .await
                .map_err(std::io::Error::other)??;
            self.durable.send_if_modified(|d| {
                let moved = upto > *d;
                *d = (*d).max(upto);
                moved
            });
            if let Err(e) = self.maybe_compact() {
                tracing::warn!(file = %self.path.display(), "offsets log compaction failed: {e}");
            }
        }
    }

    /// Rewrites the file as a snapshot of the live offsets when it has grown enough.
    fn maybe_compact(&self) -> std::io::Result<()> {
        let mut inner = self.inner.lock();
        if inner.size < COMPACT_MIN_BYTES {
            return Ok(());
        }
        let snap = snapshot(&inner.live);
        if inner.size < COMPACT_FACTOR * snap.len() as u64 {
            return Ok(());
        }
        crate::meta::write_atomically(&self.path, &snap)?;
        inner.file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)?;
        inner.size = snap.len() as u64;
        Ok(())
    }

    /// A group's committed offsets.
    pub fn group(&self, group: &str) -> GroupOffsets {
        self.inner
            .lock()
            .live
            .offsets
            .get(group)
            .cloned()
            .unwrap_or_default()
    }

    /// Groups that have committed offsets or recorded metadata, with the metadata if any.
    pub fn groups(&self) -> Vec<(String, Option<GroupMeta>)> {
        let inner = self.inner.lock();
        let live = &inner.live;
        let mut out: Vec<(String, Option<GroupMeta>)> = live
            .meta
            .iter()
            .map(|(g, m)| (g.clone(), Some(m.clone())))
            .collect();
        out.extend(
            live.offsets
                .keys()
                .filter(|g| !live.meta.contains_key(*g))
                .map(|g| (g.clone(), None)),
        );
        out
    }

    /// Whether the group has committed offsets or recorded metadata.
    pub fn has_group(&self, group: &str) -> bool {
        let inner = self.inner.lock();
        inner.live.offsets.contains_key(group) || inner.live.meta.contains_key(group)
    }
}

/// Shared handle.
pub type SharedOffsets = Arc<OffsetStore>;

#[cfg(test)]
mod tests {
    use super::*;

    fn c(offset: i64) -> Committed {
        Committed {
            offset,
            leader_epoch: -1,
            metadata: Some("m".into()),
            commit_timestamp: 1,
        }
    }

    #[tokio::test]
    async fn offsets_survive_reopen_and_deletes_stick() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("offsets.log");
        let store = OffsetStore::open(&path).unwrap();
        store
            .commit("g", vec![("t".into(), 0, c(5)), ("t".into(), 1, c(7))])
            .await
            .unwrap();
        store
            .commit("g", vec![("t".into(), 0, c(9))])
            .await
            .unwrap();
        store
            .commit("h", vec![("t".into(), 0, c(1))])
            .await
            .unwrap();
        store
            .delete_offsets("g", vec![("t".into(), 1)])
            .await
            .unwrap();
        store.delete_group("h").await.unwrap();
        drop(store);
        let store = OffsetStore::open(&path).unwrap();
        let g = store.group("g");
        assert_eq!(g.len(), 1);
        assert_eq!(g[&("t".to_string(), 0)].offset, 9);
        assert!(!store.has_group("h"));
    }

    #[tokio::test]
    async fn deleting_a_topic_forgets_every_groups_offsets_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("offsets.log");
        let store = OffsetStore::open(&path).unwrap();
        store
            .commit("g", vec![("t".into(), 0, c(1)), ("u".into(), 0, c(2))])
            .await
            .unwrap();
        store
            .commit("h", vec![("t".into(), 3, c(3))])
            .await
            .unwrap();
        store.delete_topic("t").await.unwrap();
        drop(store);
        let store = OffsetStore::open(&path).unwrap();
        assert_eq!(
            store.group("g").keys().cloned().collect::<Vec<_>>(),
            vec![("u".to_string(), 0)]
        );
        assert!(store.group("h").is_empty());
    }

    #[tokio::test]
    async fn a_torn_tail_is_truncated_and_earlier_commits_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("offsets.log");
        let store = OffsetStore::open(&path).unwrap();
        store
            .commit("g", vec![("t".into(), 0, c(5))])
            .await
            .unwrap();
        store
            .commit("g", vec![("t".into(), 0, c(6))])
            .await
            .unwrap();
        drop(store);
        let len = std::fs::metadata(&path).unwrap().len();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 3).unwrap();
        drop(f);
        let store = OffsetStore::open(&path).unwrap();
        assert_eq!(store.group("g")[&("t".to_string(), 0)].offset, 5);
        store
            .commit("g", vec![("t".into(), 0, c(8))])
            .await
            .unwrap();
        drop(store);
        assert_eq!(
            OffsetStore::open(&path).unwrap().group("g")[&("t".to_string(), 0)].offset,
            8
        );
    }

    #[tokio::test]
    async fn group_metadata_survives_reopen_and_compaction_and_goes_with_the_group() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("offsets.log");
        let store = OffsetStore::open(&path).unwrap();
        let meta = |generation| GroupMeta {
            protocol_type: "connect".into(),
            generation,
        };
        store.record_group("g", meta(3));
        store.record_group("gone", meta(1));
        store.delete_group("gone").await.unwrap();
        drop(store);
        let store = OffsetStore::open(&path).unwrap();
        assert_eq!(store.group_meta("g"), Some(meta(3)));
        assert!(
            store.has_group("g"),
            "a group without offsets is still known"
        );
        assert!(!store.has_group("gone"));
        let snap = snapshot(&store.inner.lock().live);
        let (live, valid) = replay(&snap);
        assert_eq!(valid, snap.len());
        assert_eq!(live.meta.get("g"), Some(&meta(3)));
    }

    #[tokio::test]
    async fn a_grown_log_is_compacted_to_the_live_set() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("offsets.log");
        let store = OffsetStore::open(&path).unwrap();
        for i in 0..20_000 {
            let seq = store
                .write(vec![Record::Commit {
                    group: "g".into(),
                    topic: "t".into(),
                    partition: 0,
                    committed: c(i),
                }])
                .unwrap();
            // An fsync (and the compaction check after it) every 100 commits, as concurrent
            // commits would share them; 20 000 fsyncs would only make the test slow.
            if i % 100 == 99 {
                store.wait_durable(seq).await.unwrap();
            }
        }
        assert!(std::fs::metadata(&path).unwrap().len() < COMPACT_MIN_BYTES + 4096);
        drop(store);
        assert_eq!(
            OffsetStore::open(&path).unwrap().group("g")[&("t".to_string(), 0)].offset,
            19_999
        );
    }
}
