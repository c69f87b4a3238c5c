//! Append-only logs of framed records under `__sluice/` (the group offsets log, the
//! transaction log): each record is `u32 length, u32 CRC32C, payload`, big-endian. Opening one
//! replays it and cuts a torn or corrupt tail, so a crash mid-append loses only that append.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::Path;

/// `payload` framed for appending.
pub(crate) fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Hands each valid record's payload of `bytes` to `accept` in order, stopping at the first
/// frame that is torn, longer than `max_record`, fails its CRC, or that `accept` refuses
/// (returns false); returns how many leading bytes were valid.
pub(crate) fn walk(
    bytes: &[u8],
    max_record: usize,
    mut accept: impl FnMut(&[u8]) -> bool,
) -> usize {
    let mut at = 0;
    while let Some(head) = bytes.get(at..at + 8) {
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        if len > max_record {
            break;
        }
        let Some(payload) = bytes.get(at + 8..at + 8 + len) else {
            break;
        };
        if crc32c::crc32c(payload) != crc || !accept(payload) {
            break;
        }
        at += 8 + len;
    }
    at
}

/// Opens (or creates) the log at `path` for appending, `replay`s its contents (which returns
/// its state and the valid length) and cuts what follows the valid part. A new file's
/// directory entry is made durable, so the first append's fsync means something. Returns the
/// file, the replayed state and the valid length.
pub(crate) fn open<T>(
    path: &Path,
    what: &str,
    replay: impl FnOnce(&[u8]) -> (T, usize),
) -> std::io::Result<(File, T, u64)> {
    // Append mode: every write lands at the end, also after a torn tail was cut off.
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let (state, valid) = replay(&bytes);
    if valid < bytes.len() {
        tracing::warn!(file = %path.display(), kept = valid, dropped = bytes.len() - valid, "truncating a torn tail of the {what}");
        file.set_len(valid as u64)?;
        file.sync_all()?;
    }
    if bytes.is_empty() {
        if let Some(dir) = path.parent() {
            super::sync_dir(dir)?;
        }
    }
    Ok((file, state, valid as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_or_corrupt_tail_ends_the_walk() {
        let mut log = frame(b"one");
        log.extend(frame(b"two"));
        let good = log.len();
        let mut corrupt = frame(b"three");
        corrupt[9] ^= 1;
        log.extend(corrupt);
        let mut seen = Vec::new();
        assert_eq!(
            walk(&log, 1 << 20, |p| {
                seen.push(p.to_vec());
                true
            }),
            good
        );
        assert_eq!(seen, vec![b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(
            walk(&log[..good - 1], 1 << 20, |_| true),
            frame(b"one").len()
        );
        assert_eq!(walk(&log, 2, |_| true), 0, "over the size bound");
        assert_eq!(walk(&log, 1 << 20, |p| p != b"two"), frame(b"one").len());
    }
}
