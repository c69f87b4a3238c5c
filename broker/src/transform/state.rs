//! A deployment's state: the key-value store of each input partition (in memory, bounded by the
//! deployment's cap, rebuilt from its changelog topic) and the `--table` topics it looks up
//! (latest value per key, caught up from their logs before each batch).
//!
//! A batch's writes are applied as each guest call succeeds, so the next call of the same write
//! sees them, and remembered twice: as an undo list ([`DeploymentState::rollback`], when the
//! write fails or is rejected) and as the net change per key that the changelog gets
//! ([`DeploymentState::take_changes`], once the input and outputs are stored).
//!
//! The changelog's record with the empty key (a key guests cannot use) is the partition's
//! progress at the end of the last batch that changed the store: its next input offset and
//! output sequences. Restored with the store, it says exactly which inputs the store already
//! reflects, whatever the periodic checkpoint says.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::log::PartitionLog;
use crate::records::batch::BatchHeader;
use crate::records::record::decode_records;
use crate::records::RecordView;
use crate::wasm::state_host::StateBackend;

/// The store cap when a deployment names none (`--state-max-bytes`).
pub const DEFAULT_MAX_BYTES: u64 = 64 << 20;
/// The changelog key of the progress record.
pub const PROGRESS_KEY: &[u8] = b"";
/// A header the progress record carries, so a reader of the changelog can tell it apart.
pub const PROGRESS_HEADER: &str = "sluice.progress";
/// Most bytes a stored batch may inflate to when decoded.
const DECODE_LIMIT: usize = 256 << 20;

/// The changelog topic of deployment `name`.
pub fn changelog_topic(name: &str) -> String {
    format!("__sluice-state-{name}")
}

/// What the progress record holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    pub next_input: i64,
    pub seqs: BTreeMap<String, i32>,
}

/// One input partition's store.
#[derive(Debug, Default)]
struct PartitionStore {
    rows: HashMap<Vec<u8>, Vec<u8>>,
    /// Previous values of what the current write changed, oldest first.
    undo: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// The current write's net change per key.
    changes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

#[derive(Debug, Default)]
struct Stores {
    partitions: HashMap<i32, PartitionStore>,
    /// Keys plus values over all partitions.
    used: u64,
}

/// One `--table` topic: the latest value per key, and how far each partition was read.
#[derive(Debug, Default)]
struct Table {
    rows: HashMap<Vec<u8>, Vec<u8>>,
    next: HashMap<i32, i64>,
}

/// A deployment's stores and tables.
#[derive(Debug)]
pub struct DeploymentState {
    name: String,
    /// The module imports the state calls: its writes go to a changelog.
    pub stateful: bool,
    max_bytes: u64,
    stores: Mutex<Stores>,
    tables: BTreeMap<String, Mutex<Table>>,
}

impl DeploymentState {
    pub fn new(name: &str, stateful: bool, max_bytes: u64, tables: &[String]) -> DeploymentState {
        DeploymentState {
            name: name.to_string(),
            stateful,
            max_bytes,
            stores: Mutex::new(Stores::default()),
            tables: tables
                .iter()
                .map(|t| (t.clone(), Mutex::new(Table::default())))
                .collect(),
        }
    }

    /// Whether input `partition`'s store was restored (or started empty) already.
    pub fn is_loaded(&self, partition: i32) -> bool {
        self.stores.lock().partitions.contains_key(&partition)
    }

    /// Rebuilds input `partition`'s store from its changelog partition, read to its end;
    /// returns the last progress record found.
    pub fn restore(
        &self,
        partition: i32,
        changelog: &PartitionLog,
    ) -> Result<Option<Marker>, String> {
        let mut rows = HashMap::new();
        let mut marker = None;
        let end = changelog.high_watermark();
        read_from(
            changelog,
            changelog.log_start_offset(),
            end,
            |_| true,
            |r| {
                let Some(key) = r.key else { return };
                if key == PROGRESS_KEY {
                    if let Some(m) = r.value.and_then(|v| serde_json::from_slice(&v).ok()) {
                        marker = Some(m);
                    }
                    return;
                }
                match r.value {
                    Some(v) => rows.insert(key, v),
                    None => rows.remove(&key),
                };
            },
        )?;
        let size: u64 = rows.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();
        let mut stores = self.stores.lock();
        let old = stores.partitions.insert(
            partition,
            PartitionStore {
                rows,
                ..PartitionStore::default()
            },
        );
        let old_size: u64 = old.map_or(0, |s| {
            s.rows.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum()
        });
        stores.used = stores.used.saturating_sub(old_size) + size;
        Ok(marker)
    }

    /// Applies one successful call's writes to input `partition`'s store.
    pub fn apply(&self, partition: i32, writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>) {
        if writes.is_empty() {
            return;
        }
        let mut stores = self.stores.lock();
        let Stores { partitions, used } = &mut *stores;
        let store = partitions.entry(partition).or_default();
        for (key, value) in writes {
            let previous = match &value {
                Some(v) => {
                    *used += (key.len() + v.len()) as u64;
                    store.rows.insert(key.clone(), v.clone())
                }
                None => store.rows.remove(&key),
            };
            if let Some(p) = &previous {
                *used = used.saturating_sub((key.len() + p.len()) as u64);
            }
            store.undo.push((key.clone(), previous));
            store.changes.insert(key, value);
        }
    }

    /// The current write's net changes to input `partition`'s store so far.
    pub fn changes(&self, partition: i32) -> BTreeMap<Vec<u8>, Option<Vec<u8>>> {
        self.stores
            .lock()
            .partitions
            .get(&partition)
            .map(|s| s.changes.clone())
            .unwrap_or_default()
    }

    /// The current write's net changes to input `partition`'s store, once they are kept.
    pub fn take_changes(&self, partition: i32) -> BTreeMap<Vec<u8>, Option<Vec<u8>>> {
        let mut stores = self.stores.lock();
        match stores.partitions.get_mut(&partition) {
            Some(store) => {
                store.undo.clear();
                std::mem::take(&mut store.changes)
            }
            None => BTreeMap::new(),
        }
    }

    /// Takes back the current write's changes to input `partition`'s store.
    pub fn rollback(&self, partition: i32) {
        let mut stores = self.stores.lock();
        let Stores { partitions, used } = &mut *stores;
        let Some(store) = partitions.get_mut(&partition) else {
            return;
        };
        store.changes.clear();
        while let Some((key, previous)) = store.undo.pop() {
            let current = match previous {
                Some(p) => {
                    *used += (key.len() + p.len()) as u64;
                    store.rows.insert(key.clone(), p)
                }
                None => store.rows.remove(&key),
            };
            if let Some(c) = current {
                *used = used.saturating_sub((key.len() + c.len()) as u64);
            }
        }
    }

    /// Keys held, all partitions together (`describe`).
    pub fn keys(&self) -> usize {
        self.stores
            .lock()
            .partitions
            .values()
            .map(|s| s.rows.len())
            .sum()
    }

    /// The table topics, by name.
    pub fn table_names(&self) -> Vec<String> {
        self.tables.keys().cloned().collect()
    }

    /// Reads what was appended to table `table`'s partition `partition` since the last time.
    pub fn catch_up_table(
        &self,
        table: &str,
        partition: i32,
        log: &PartitionLog,
    ) -> Result<(), String> {
        let Some(t) = self.tables.get(table) else {
            return Ok(());
        };
        let mut t = t.lock();
        let from = t
            .next
            .get(&partition)
            .copied()
            .unwrap_or(0)
            .max(log.log_start_offset());
        // Read committed, as a consumer of the table would: up to the last stable offset, and
        // nothing of an aborted transaction.
        let until = log.last_stable_offset();
        if from >= until {
            return Ok(());
        }
        let aborted = log.aborted_transactions(from, until);
        let committed = |h: &BatchHeader| {
            !h.is_transactional()
                || !aborted.iter().any(|a| {
                    a.producer_id == h.producer_id
                        && (a.first_offset..=a.last_offset).contains(&h.base_offset)
                })
        };
        let Table { rows, next } = &mut *t;
        let end = read_from(log, from, until, committed, |r| {
            let Some(key) = r.key else { return };
            match r.value {
                Some(v) => rows.insert(key, v),
                None => rows.remove(&key),
            };
        })?;
        next.insert(partition, end);
        Ok(())
    }
}

impl StateBackend for DeploymentState {
    fn get(&self, partition: i32, key: &[u8]) -> Option<Vec<u8>> {
        self.stores
            .lock()
            .partitions
            .get(&partition)
            .and_then(|s| s.rows.get(key).cloned())
    }

    fn used_bytes(&self) -> u64 {
        self.stores.lock().used
    }

    fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    fn lookup(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        match self.tables.get(table) {
            Some(t) => Ok(t.lock().rows.get(key).cloned()),
            None => Err(format!(
                "'{table}' is not a table of transform '{}' (deploy it with --table {table})",
                self.name
            )),
        }
    }

    fn name(&self) -> &str {
        &self.name
    }
}

/// Calls `each` on every record stored in `log` from `from` up to `until`, in the batches
/// `keep` accepts (control batches skipped); returns the offset after the last batch read.
fn read_from(
    log: &PartitionLog,
    from: i64,
    until: i64,
    keep: impl Fn(&BatchHeader) -> bool,
    mut each: impl FnMut(RecordView),
) -> Result<i64, String> {
    let mut next = from;
    while next < until {
        let slice = log.read(next, 1 << 20, true).map_err(|e| e.to_string())?;
        if slice.records.is_empty() {
            return Ok(until);
        }
        let mut rest = &slice.records[..];
        while let Some((_, size)) = BatchHeader::peek_size(rest) {
            let size = size.min(rest.len());
            let (header, records) =
                decode_records(&rest[..size], DECODE_LIMIT).map_err(|e| e.to_string())?;
            rest = &rest[size..];
            if header.base_offset >= until {
                return Ok(next);
            }
            if !header.is_control() && keep(&header) {
                for r in records.into_iter().filter(|r| r.offset >= next) {
                    each(r);
                }
            }
            next = next.max(header.last_offset() + 1);
        }
    }
    Ok(next)
}

/// Points `guest`'s state calls at `running`'s store for input `partition` (if it keeps state
/// or looks up tables); whether the call's writes are to be applied after it.
pub(crate) fn prepare_call(
    running: &super::Running,
    guest: &mut crate::wasm::Guest,
    partition: i32,
) -> bool {
    let state = &running.state;
    if !state.stateful && state.tables.is_empty() {
        return false;
    }
    let backend: Arc<dyn StateBackend> = state.clone();
    guest.set_state(crate::wasm::state_host::CallState::new(backend, partition));
    state.stateful
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writes(pairs: &[(&str, Option<&str>)]) -> BTreeMap<Vec<u8>, Option<Vec<u8>>> {
        pairs
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec())))
            .collect()
    }

    #[test]
    fn a_rolled_back_write_leaves_the_store_and_its_size_as_they_were() {
        let s = DeploymentState::new("t", true, 100, &[]);
        s.apply(0, writes(&[("a", Some("1"))]));
        assert_eq!(s.take_changes(0), writes(&[("a", Some("1"))]));
        assert_eq!(s.used_bytes(), 2);
        s.apply(0, writes(&[("a", Some("22")), ("b", Some("3"))]));
        s.apply(0, writes(&[("a", None)]));
        assert_eq!(s.used_bytes(), 2);
        s.rollback(0);
        assert_eq!(StateBackend::get(&s, 0, b"a"), Some(b"1".to_vec()));
        assert_eq!(StateBackend::get(&s, 0, b"b"), None);
        assert_eq!(s.used_bytes(), 2);
        assert!(s.take_changes(0).is_empty());
        // Net change per key: the last write wins.
        s.apply(0, writes(&[("a", Some("5"))]));
        s.apply(0, writes(&[("a", Some("6"))]));
        assert_eq!(s.take_changes(0), writes(&[("a", Some("6"))]));
        assert_eq!(s.keys(), 1);
    }
}
