//! A transform's durable key-value store, and lookups in `--table` topics.
//!
//! The store belongs to the deployment and the input partition the current batch came from:
//! records of one partition see each other's writes, in order. The broker keeps it in a compacted
//! changelog topic written with the batch's outputs, so after a crash the store, the outputs and
//! the deployment's progress agree exactly.
//!
//! ```
//! use sluice_sdk::prelude::*;
//!
//! #[transform]
//! fn count(record: Record<'_>, out: &mut Output) -> Result<(), Error> {
//!     let key = record.key().unwrap_or_default();
//!     let seen = state::get(key).map_or(0, |v| sluice_sdk::state::decode_u64(&v));
//!     state::put(key, (seen + 1).to_string())?;
//!     out.write(record.with_value(Some((seen + 1).to_string())))
//! }
//! ```
//!
//! A record the transform refuses (returns `Err` for) leaves the store as it found it: its
//! writes are held until it succeeds. A batch that fails as a whole (a trap, the CPU or memory
//! cap, the store's size cap) leaves nothing in the store either.

use std::cell::{Cell, RefCell};

use crate::Error;

/// Longest key the store takes.
pub const MAX_KEY_BYTES: usize = 64 << 10;

/// A write to the store: the key and its new value (`None`: deleted).
type Write = (Vec<u8>, Option<Vec<u8>>);
/// Passes a record's writes to the host.
type Flush = fn(Vec<Write>);

thread_local! {
    /// The current record's writes, in order: passed to the host only if the record succeeds.
    static PENDING: RefCell<Vec<Write>> = const { RefCell::new(Vec::new()) };
    /// Set by the first write: what passes writes to the host. Reached only through a write, so
    /// a module that never writes does not import the host's write calls (and gets no
    /// changelog).
    static FLUSH: Cell<Option<Flush>> = const { Cell::new(None) };
}

/// The value stored under `key`, if any (the current record's own writes included).
pub fn get(key: impl AsRef<[u8]>) -> Option<Vec<u8>> {
    let key = key.as_ref();
    let pending = PENDING.with(|p| {
        p.borrow()
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    });
    match pending {
        Some(value) => value,
        None if key.is_empty() => None,
        None => host::get(key),
    }
}

/// [`get`], read as UTF-8 (`None` also when the value is not UTF-8).
pub fn get_string(key: impl AsRef<[u8]>) -> Option<String> {
    get(key).and_then(|v| String::from_utf8(v).ok())
}

/// Stores `value` under `key`. Refuses (for the current record) an empty key or one longer than
/// [`MAX_KEY_BYTES`].
pub fn put(key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<(), Error> {
    let key = key.as_ref();
    check_key(key)?;
    PENDING.with(|p| {
        p.borrow_mut()
            .push((key.to_vec(), Some(value.as_ref().to_vec())))
    });
    FLUSH.with(|f| f.set(Some(flush)));
    Ok(())
}

/// Removes `key` (nothing happens if it is not there; an empty key is never there).
pub fn delete(key: impl AsRef<[u8]>) {
    let key = key.as_ref();
    if check_key(key).is_ok() {
        PENDING.with(|p| p.borrow_mut().push((key.to_vec(), None)));
        FLUSH.with(|f| f.set(Some(flush)));
    }
}

/// A counter stored as decimal text (what [`put`] of `n.to_string()` leaves); 0 if it does not
/// parse.
pub fn decode_u64(value: &[u8]) -> u64 {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn check_key(key: &[u8]) -> Result<(), Error> {
    if key.is_empty() {
        return Err(Error::new("state keys must not be empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(Error::new(format!(
            "state key of {} bytes is longer than {MAX_KEY_BYTES}",
            key.len()
        )));
    }
    Ok(())
}

/// The current record succeeded: its writes go to the host.
pub(crate) fn commit_record() {
    if let Some(flush) = FLUSH.with(Cell::get) {
        flush(PENDING.with(|p| std::mem::take(&mut *p.borrow_mut())));
    }
}

fn flush(writes: Vec<Write>) {
    for (key, value) in writes {
        match value {
            Some(v) => host::put(&key, &v),
            None => host::delete(&key),
        }
    }
}

/// The current record was refused: its writes are dropped.
pub(crate) fn discard_record() {
    PENDING.with(|p| p.borrow_mut().clear());
}

/// The latest value of `key` in the `--table` topic `table` (the broker keeps it current as the
/// topic is written). `None` if the key has no value there (or its latest is a tombstone).
pub fn lookup(table: &str, key: impl AsRef<[u8]>) -> Option<Vec<u8>> {
    host::lookup(table, key.as_ref())
}

/// Reading another compacted topic as a table: `table::lookup(TOPIC, key)`.
pub mod table {
    pub use super::lookup;

    /// [`lookup`], read as UTF-8 (`None` also when the value is not UTF-8).
    pub fn lookup_string(table: &str, key: impl AsRef<[u8]>) -> Option<String> {
        lookup(table, key).and_then(|v| String::from_utf8(v).ok())
    }
}

/// Where the store lives: the broker (wasm) or the test harness's memory (native).
#[cfg(target_arch = "wasm32")]
mod host {
    pub(super) fn get(key: &[u8]) -> Option<Vec<u8>> {
        crate::__private::wasm_state_get(key)
    }
    pub(super) fn put(key: &[u8], value: &[u8]) {
        crate::__private::wasm_state_put(key, value)
    }
    pub(super) fn delete(key: &[u8]) {
        crate::__private::wasm_state_delete(key)
    }
    pub(super) fn lookup(table: &str, key: &[u8]) -> Option<Vec<u8>> {
        crate::__private::wasm_table_lookup(table, key)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod host {
    pub(super) fn get(key: &[u8]) -> Option<Vec<u8>> {
        crate::testing::STATE.with(|s| s.borrow().get(key).cloned())
    }
    pub(super) fn put(key: &[u8], value: &[u8]) {
        crate::testing::STATE.with(|s| s.borrow_mut().insert(key.to_vec(), value.to_vec()));
    }
    pub(super) fn delete(key: &[u8]) {
        crate::testing::STATE.with(|s| s.borrow_mut().remove(key));
    }
    pub(super) fn lookup(table: &str, key: &[u8]) -> Option<Vec<u8>> {
        crate::testing::TABLES.with(|t| {
            t.borrow()
                .get(table)
                .and_then(|rows| rows.get(key))
                .cloned()
        })
    }
}
