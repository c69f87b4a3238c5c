//! A memory-mapped file of fixed-size entries: the storage behind the offset index and the time
//! index.
//!
//! The file is pre-sized to its capacity while its segment is active, so appends are plain memory
//! writes, and trimmed to its entries when the segment is rolled or closed. After a crash an
//! active segment's index may hold a pre-sized zero tail; recovery rebuilds active-segment indexes
//! from the log, so that tail is never trusted.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use memmap2::MmapMut;

/// Fixed-size entries in a memory-mapped file.
#[derive(Debug)]
pub(crate) struct IndexFile {
    path: PathBuf,
    file: File,
    /// `None` while the file is empty (a zero-length mapping is not allowed).
    mmap: Option<MmapMut>,
    entry_size: usize,
    /// Entries written.
    entries: usize,
    /// Entries the mapped file has room for.
    capacity: usize,
}

impl IndexFile {
    /// Opens (creating if missing) the index at `path`, trusting `entries_hint` entries when
    /// given, or every whole entry in the file otherwise; maps room for `max_bytes`.
    pub(crate) fn open(
        path: &Path,
        entry_size: usize,
        max_bytes: usize,
    ) -> std::io::Result<IndexFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let len = file.metadata()?.len() as usize;
        let entries = len / entry_size;
        let mut index = IndexFile {
            path: path.to_path_buf(),
            file,
            mmap: None,
            entry_size,
            entries,
            capacity: 0,
        };
        index.resize((max_bytes / entry_size).max(entries).max(1))?;
        Ok(index)
    }

    /// Remaps the file to hold `capacity` entries.
    #[allow(unsafe_code, reason = "memory-mapping the index file")]
    fn resize(&mut self, capacity: usize) -> std::io::Result<()> {
        self.mmap = None;
        self.file.set_len((capacity * self.entry_size) as u64)?;
        // SAFETY: the file is ours alone (the data dir is locked by this process and index files
        // are only touched through this type), so it is not truncated or written behind the
        // mapping's back; the mapping is dropped before any later `set_len` shrinks the file.
        self.mmap = Some(unsafe { MmapMut::map_mut(&self.file)? });
        self.capacity = capacity;
        Ok(())
    }

    pub(crate) fn len(&self) -> usize {
        self.entries
    }

    pub(crate) fn is_full(&self) -> bool {
        self.entries >= self.capacity
    }

    /// The `i`th entry's bytes.
    pub(crate) fn entry(&self, i: usize) -> Option<&[u8]> {
        if i >= self.entries {
            return None;
        }
        let start = i * self.entry_size;
        self.mmap
            .as_ref()
            .and_then(|m| m.get(start..start + self.entry_size))
    }

    /// Appends an entry; `false` when full (the segment should roll).
    pub(crate) fn push(&mut self, entry: &[u8]) -> bool {
        if self.is_full() || entry.len() != self.entry_size {
            return false;
        }
        let start = self.entries * self.entry_size;
        match self
            .mmap
            .as_mut()
            .and_then(|m| m.get_mut(start..start + entry.len()))
        {
            Some(slot) => {
                slot.copy_from_slice(entry);
                self.entries += 1;
                true
            }
            None => false,
        }
    }

    /// Drops entries past the first `entries`.
    pub(crate) fn truncate(&mut self, entries: usize) {
        self.entries = self.entries.min(entries);
    }

    /// Binary search: the last entry whose key (decoded by `key`) is `<= target`.
    pub(crate) fn floor<K: Ord>(&self, target: K, key: impl Fn(&[u8]) -> K) -> Option<usize> {
        let (mut lo, mut hi) = (0usize, self.entries);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.entry(mid) {
                Some(e) if key(e) <= target => lo = mid + 1,
                _ => hi = mid,
            }
        }
        lo.checked_sub(1)
    }

    /// Writes the mapping out and shrinks the file to its entries (segment no longer active).
    pub(crate) fn trim(&mut self) -> std::io::Result<()> {
        if let Some(m) = &self.mmap {
            m.flush()?;
        }
        self.mmap = None;
        self.file.set_len((self.entries * self.entry_size) as u64)?;
        self.file.sync_all()?;
        self.capacity = self.entries;
        if self.entries > 0 {
            self.resize(self.entries)?;
        }
        Ok(())
    }

    /// Re-grows a trimmed index so it can take entries again.
    pub(crate) fn reopen_for_append(&mut self, max_bytes: usize) -> std::io::Result<()> {
        let capacity = (max_bytes / self.entry_size).max(self.entries).max(1);
        if capacity > self.capacity {
            self.resize(capacity)?;
        }
        Ok(())
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_trim_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.index");
        let mut index = IndexFile::open(&path, 8, 800).unwrap();
        for i in 0u32..10 {
            assert!(index.push(&[i.to_be_bytes(), (i * 100).to_be_bytes()].concat()));
        }
        index.trim().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 80);
        drop(index);
        let index = IndexFile::open(&path, 8, 800).unwrap();
        assert_eq!(index.len(), 10);
        let key = |e: &[u8]| u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
        assert_eq!(index.floor(5, key), Some(5));
        assert_eq!(index.floor(100, key), Some(9));
    }

    #[test]
    fn a_full_index_refuses_more() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = IndexFile::open(&dir.path().join("y.index"), 8, 16).unwrap();
        assert!(index.push(&[0; 8]));
        assert!(index.push(&[1; 8]));
        assert!(index.is_full());
        assert!(!index.push(&[2; 8]));
    }
}
