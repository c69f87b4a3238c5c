//! Producer id allocation for idempotent producers (InitProducerId), durable across restarts.
//!
//! Ids are reserved in blocks: the file holds the first id not yet handed out of any block, and is
//! advanced (atomically, fsynced) before an id of a new block is given away, so a crash can skip
//! ids but never reuse one.

use std::path::{Path, PathBuf};

use parking_lot::Mutex;

/// Ids reserved per write of the file.
const BLOCK: i64 = 1000;

/// Hands out unique producer ids.
#[derive(Debug)]
pub struct ProducerIds {
    /// The file recording the end of the reserved block.
    path: PathBuf,
    /// `(next id to hand out, end of the reserved block)`.
    state: Mutex<(i64, i64)>,
}

impl ProducerIds {
    /// Opens (or starts) the allocator stored at `path`.
    pub fn open(path: &Path) -> std::io::Result<ProducerIds> {
        let next = match std::fs::read_to_string(path) {
            Ok(text) => text.trim().parse::<i64>().map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} does not hold a producer id", path.display()),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        Ok(ProducerIds {
            path: path.to_path_buf(),
            state: Mutex::new((next, next)),
        })
    }

    /// The next unused id.
    pub fn allocate(&self) -> std::io::Result<i64> {
        let mut state = self.state.lock();
        if state.0 >= state.1 {
            let end = state.0 + BLOCK;
            crate::meta::write_atomically(&self.path, end.to_string().as_bytes())?;
            state.1 = end;
        }
        let id = state.0;
        state.0 += 1;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_never_reused_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("producer-ids");
        let first = ProducerIds::open(&path).unwrap();
        let a = first.allocate().unwrap();
        let b = first.allocate().unwrap();
        assert_ne!(a, b);
        drop(first);
        let second = ProducerIds::open(&path).unwrap();
        let c = second.allocate().unwrap();
        assert!(c > b, "{c} after {b}");
    }
}
