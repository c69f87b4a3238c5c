//! The transaction log, `__sluice/transactions.log`: every state transition of a transactional
//! id appended as the id's whole new metadata, fsynced before the transition takes effect (and
//! before any request that depends on it is answered). Replay keeps each id's last record.
//!
//! Why a log and not a rewritten file: a transition costs one small append and one fsync
//! whatever the number of transactional ids, where rewriting a snapshot costs the whole set.
//! The log is rewritten as a snapshot (temp file, fsync, rename) at open and whenever it grows
//! past [`COMPACT_FACTOR`] times the live set, so replay stays short.
//!
//! Frame: `u32 BE payload length, u32 BE CRC32C of the payload, JSON payload`. A torn or corrupt
//! tail (kill -9 mid-append) is cut at open; the transition it held was never acknowledged.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::state::TxnMeta;

/// Rewrite the log once it holds this many times more records than live ids (and at least
/// [`COMPACT_MIN_RECORDS`]).
const COMPACT_FACTOR: usize = 4;
const COMPACT_MIN_RECORDS: usize = 1024;
/// A record larger than this is corruption, not data: a transaction's partitions and offsets
/// are bounded by the request sizes that added them, far below.
const MAX_RECORD: usize = 64 << 20;

/// One record: a transactional id and its metadata after a transition, or (`meta` absent) the
/// id forgotten (`transactional.id.expiration.ms`).
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    meta: Option<TxnMeta>,
}

/// The open log.
#[derive(Debug)]
pub struct TxnStore {
    path: PathBuf,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Open for appending.
    file: File,
    /// Bytes of valid records (where a failed append is cut back to).
    size: u64,
    /// Records in the file, live or superseded.
    records: usize,
}

fn frame(record: &Record) -> std::io::Result<Vec<u8>> {
    let payload = serde_json::to_vec(record).map_err(std::io::Error::other)?;
    Ok(crate::meta::framed::frame(&payload))
}

/// Replays `bytes`: each id's last metadata and the number of valid records, and where they
/// end.
fn replay(bytes: &[u8]) -> ((HashMap<String, TxnMeta>, usize), usize) {
    let mut live = HashMap::new();
    let mut records = 0;
    let valid =
        crate::meta::framed::walk(bytes, MAX_RECORD, |payload| {
            match serde_json::from_slice::<Record>(payload) {
                Ok(record) => {
                    match record.meta {
                        Some(meta) => live.insert(record.id, meta),
                        None => live.remove(&record.id),
                    };
                    records += 1;
                    true
                }
                Err(_) => false,
            }
        });
    ((live, records), valid)
}

impl TxnStore {
    /// Opens (or creates) the log at `path`: replays it, cuts a torn tail, and rewrites it as a
    /// snapshot when superseded records dominate. Returns the live metadata.
    pub fn open(path: &Path) -> std::io::Result<(TxnStore, HashMap<String, TxnMeta>)> {
        let (file, (live, records), valid) =
            crate::meta::framed::open(path, "transaction log", replay)?;
        let store = TxnStore {
            path: path.to_path_buf(),
            inner: Mutex::new(Inner {
                file,
                size: valid,
                records,
            }),
        };
        if records > live.len() {
            store.snapshot(&mut store.inner.lock(), &live)?;
        }
        Ok((store, live))
    }

    /// Appends `id`'s new metadata and fsyncs it. `live` is every id's current metadata with
    /// this change applied, for the snapshot a grown log is rewritten to.
    pub fn append(
        &self,
        id: &str,
        meta: &TxnMeta,
        live: &HashMap<String, TxnMeta>,
    ) -> std::io::Result<()> {
        self.write(id, Some(meta), live)
    }

    /// Records that `id` is forgotten and fsyncs it; `live` is without it already.
    pub fn remove(&self, id: &str, live: &HashMap<String, TxnMeta>) -> std::io::Result<()> {
        self.write(id, None, live)
    }

    fn write(
        &self,
        id: &str,
        meta: Option<&TxnMeta>,
        live: &HashMap<String, TxnMeta>,
    ) -> std::io::Result<()> {
        let bytes = frame(&Record {
            id: id.to_string(),
            meta: meta.cloned(),
        })?;
        let mut inner = self.inner.lock();
        let written = inner
            .file
            .write_all(&bytes)
            .and_then(|()| inner.file.sync_data());
        if let Err(e) = written {
            // A partial record would hide every later one from replay.
            let size = inner.size;
            let _ = inner.file.set_len(size);
            return Err(e);
        }
        inner.size += bytes.len() as u64;
        inner.records += 1;
        if inner.records > (live.len() * COMPACT_FACTOR).max(COMPACT_MIN_RECORDS) {
            // The record above is durable already: a failed rewrite only leaves a longer log.
            if let Err(e) = self.snapshot(&mut inner, live) {
                tracing::warn!(file = %self.path.display(), "cannot compact the transaction log: {e}");
            }
        }
        Ok(())
    }

    /// Replaces the log with one record per live id, atomically, and appends from there on.
    fn snapshot(&self, inner: &mut Inner, live: &HashMap<String, TxnMeta>) -> std::io::Result<()> {
        let mut bytes = Vec::new();
        let mut ids: Vec<_> = live.keys().collect();
        ids.sort();
        for id in ids {
            bytes.extend(frame(&Record {
                id: id.clone(),
                meta: Some(live[id].clone()),
            })?);
        }
        crate::meta::write_atomically(&self.path, &bytes)?;
        inner.file = OpenOptions::new().append(true).open(&self.path)?;
        inner.size = bytes.len() as u64;
        inner.records = live.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::state::TxnState;

    fn meta(epoch: i16) -> TxnMeta {
        let mut m = TxnMeta::new(1, 1000, 0);
        m.producer_epoch = epoch;
        m
    }

    #[test]
    fn reopening_keeps_each_ids_last_metadata_and_compacts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("transactions.log");
        let (store, mut live) = TxnStore::open(&path).unwrap();
        for epoch in 0..5 {
            let m = meta(epoch);
            live.insert("a".into(), m.clone());
            store.append("a", &m, &live).unwrap();
        }
        let mut b = meta(0);
        b.state = TxnState::Ongoing;
        b.partitions.insert(("t".into(), 2));
        live.insert("b".into(), b.clone());
        store.append("b", &b, &live).unwrap();
        drop(store);
        let (_store, live) = TxnStore::open(&path).unwrap();
        assert_eq!(live["a"].producer_epoch, 4);
        assert_eq!(live["b"], b);
        let ((_, records), _) = replay(&std::fs::read(&path).unwrap());
        assert_eq!(records, 2, "rewritten to one record per id");
    }

    #[test]
    fn a_torn_tail_is_cut_and_earlier_transitions_survive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("transactions.log");
        let (store, mut live) = TxnStore::open(&path).unwrap();
        live.insert("a".into(), meta(1));
        store.append("a", &meta(1), &live).unwrap();
        drop(store);
        let mut torn = frame(&Record {
            id: "a".into(),
            meta: Some(meta(2)),
        })
        .unwrap();
        torn.truncate(torn.len() - 3);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&torn).unwrap();
        drop(f);
        let (store, live) = TxnStore::open(&path).unwrap();
        assert_eq!(live["a"].producer_epoch, 1);
        let mut live = live;
        live.insert("a".into(), meta(3));
        store.append("a", &meta(3), &live).unwrap();
        drop(store);
        let (_, live) = TxnStore::open(&path).unwrap();
        assert_eq!(live["a"].producer_epoch, 3, "appends after the cut replay");
    }

    #[test]
    fn a_grown_log_is_rewritten_while_running() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("transactions.log");
        let (store, mut live) = TxnStore::open(&path).unwrap();
        for i in 0..(COMPACT_MIN_RECORDS as i16 + 10) {
            let m = meta(i);
            live.insert("a".into(), m.clone());
            store.append("a", &m, &live).unwrap();
        }
        let ((_, records), _) = replay(&std::fs::read(&path).unwrap());
        assert!(records < 20, "{records} records");
        drop(store);
        let (_, live) = TxnStore::open(&path).unwrap();
        assert_eq!(live["a"].producer_epoch, COMPACT_MIN_RECORDS as i16 + 9);
    }
}
