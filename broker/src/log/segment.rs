//! A segment: `<base offset>.log` holding whole record batches back to back, with a sparse
//! `.index` (relative offset → file position) and `.timeindex` (max timestamp so far → relative
//! offset).
//!
//! Entry formats (big-endian): offset index `u32 relative offset, u32 position`; time index
//! `i64 timestamp, u32 relative offset`, appended only when a batch raises the segment's maximum
//! timestamp, so both indexes are sorted.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::records::batch::{self, BatchHeader, HEADER_LEN, LOG_OVERHEAD};

use super::index_file::IndexFile;
use super::LogError;

const OFFSET_ENTRY: usize = 8;
const TIME_ENTRY: usize = 12;
/// Enough of a header to know a batch's size and last offset.
const PEEK: usize = 27;

/// `<20-digit base offset>.<ext>`: sorts by name in offset order, as Kafka names them.
pub(crate) fn file_name(base_offset: i64, ext: &str) -> String {
    format!("{base_offset:020}.{ext}")
}

/// The files of one segment, by extension.
pub(crate) const EXTENSIONS: [&str; 3] = ["log", "index", "timeindex"];
/// Suffix of a segment file the cleaner is building aside.
pub(crate) const CLEANED_SUFFIX: &str = ".cleaned";

/// `<base>.<ext>.cleaned`.
pub(crate) fn cleaned_name(base_offset: i64, ext: &str) -> String {
    format!("{}{CLEANED_SUFFIX}", file_name(base_offset, ext))
}

/// One segment of a partition.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) base_offset: i64,
    /// Shared so reads can proceed without the partition lock.
    pub(crate) log: Arc<File>,
    log_path: PathBuf,
    index: IndexFile,
    time_index: IndexFile,
    /// Bytes of whole batches in the log file.
    pub(crate) size: u64,
    /// One past the last offset stored (the base offset while empty).
    pub(crate) next_offset: i64,
    /// Largest batch max timestamp, and the last offset of the batch carrying it.
    pub(crate) max_timestamp: i64,
    pub(crate) offset_of_max_timestamp: i64,
    /// Log bytes appended since the last offset-index entry.
    bytes_since_index: u64,
    /// When the segment received its first batch (for `segment.ms`), broker clock.
    pub(crate) first_append_ms: Option<i64>,
}

/// What a scan of a segment found.
struct Scan {
    valid_bytes: u64,
    batches: Vec<(u64, BatchHeader)>,
}

impl Segment {
    /// Creates a new, empty segment (the files must not exist).
    pub(crate) fn create(
        dir: &Path,
        base_offset: i64,
        index_bytes: usize,
    ) -> Result<Segment, LogError> {
        Segment::create_with_suffix(dir, base_offset, index_bytes, "")
    }

    /// Creates the files of a segment the cleaner builds aside (`<base>.log.cleaned`, ...),
    /// replacing leftovers of an abandoned attempt.
    pub(crate) fn create_cleaned(
        dir: &Path,
        base_offset: i64,
        index_bytes: usize,
    ) -> Result<Segment, LogError> {
        let _ = std::fs::remove_file(dir.join(cleaned_name(base_offset, "log")));
        Segment::create_with_suffix(dir, base_offset, index_bytes, CLEANED_SUFFIX)
    }

    fn create_with_suffix(
        dir: &Path,
        base_offset: i64,
        index_bytes: usize,
        suffix: &str,
    ) -> Result<Segment, LogError> {
        let name = |ext: &str| format!("{}{suffix}", file_name(base_offset, ext));
        let log_path = dir.join(name("log"));
        let log = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&log_path)?;
        // Stale indexes of a segment that was deleted at this base must not be trusted.
        let _ = std::fs::remove_file(dir.join(name("index")));
        let _ = std::fs::remove_file(dir.join(name("timeindex")));
        Ok(Segment {
            base_offset,
            log: Arc::new(log),
            index: IndexFile::open(&dir.join(name("index")), OFFSET_ENTRY, index_bytes)?,
            time_index: IndexFile::open(&dir.join(name("timeindex")), TIME_ENTRY, index_bytes)?,
            log_path,
            size: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            offset_of_max_timestamp: -1,
            bytes_since_index: 0,
            first_append_ms: None,
        })
    }

    /// Opens an existing segment. With `verify`, every batch is checked (CRC) and the file is
    /// truncated at the first torn or corrupt one, and the indexes are rebuilt; otherwise the
    /// indexes are trusted if they look sane and only the tail past the last index entry is read.
    /// `active` segments get index room to grow.
    pub(crate) fn open(
        dir: &Path,
        base_offset: i64,
        verify: bool,
        active: bool,
        index_bytes: usize,
        index_interval: u64,
    ) -> Result<Segment, LogError> {
        let log_path = dir.join(file_name(base_offset, "log"));
        let log = OpenOptions::new().read(true).write(true).open(&log_path)?;
        let room = if active { index_bytes } else { 0 };
        let index_path = dir.join(file_name(base_offset, "index"));
        let time_path = dir.join(file_name(base_offset, "timeindex"));
        let indexes_present = index_path.exists() && time_path.exists();
        let mut segment = Segment {
            base_offset,
            log: Arc::new(log),
            index: IndexFile::open(&index_path, OFFSET_ENTRY, room)?,
            time_index: IndexFile::open(&time_path, TIME_ENTRY, room)?,
            log_path,
            size: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            offset_of_max_timestamp: -1,
            bytes_since_index: 0,
            first_append_ms: None,
        };
        let file_len = segment.log.metadata()?.len();
        if !verify && indexes_present && segment.indexes_sane(file_len) {
            segment.load_tail(file_len)?;
        } else {
            segment.recover(file_len, index_interval)?;
        }
        Ok(segment)
    }

    fn offset_entry(&self, i: usize) -> Option<(u32, u32)> {
        self.index.entry(i).map(|e| {
            (
                u32::from_be_bytes([e[0], e[1], e[2], e[3]]),
                u32::from_be_bytes([e[4], e[5], e[6], e[7]]),
            )
        })
    }

    fn time_entry(&self, i: usize) -> Option<(i64, u32)> {
        self.time_index.entry(i).map(|e| {
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&e[..8]);
            (
                i64::from_be_bytes(ts),
                u32::from_be_bytes([e[8], e[9], e[10], e[11]]),
            )
        })
    }

    /// Entries strictly increasing and pointing inside the file.
    fn indexes_sane(&self, file_len: u64) -> bool {
        let mut last: Option<(u32, u32)> = None;
        for i in 0..self.index.len() {
            let Some(e) = self.offset_entry(i) else {
                return false;
            };
            if u64::from(e.1) >= file_len || last.is_some_and(|l| e.0 <= l.0 || e.1 <= l.1) {
                return false;
            }
            last = Some(e);
        }
        let mut last_ts: Option<(i64, u32)> = None;
        for i in 0..self.time_index.len() {
            let Some(e) = self.time_entry(i) else {
                return false;
            };
            if last_ts.is_some_and(|l| e.0 <= l.0 || e.1 < l.1) {
                return false;
            }
            last_ts = Some(e);
        }
        true
    }

    /// Trusting the indexes: read batch headers from the last index entry to the end.
    fn load_tail(&mut self, file_len: u64) -> Result<(), LogError> {
        let start = match self
            .index
            .len()
            .checked_sub(1)
            .and_then(|i| self.offset_entry(i))
        {
            Some((_, pos)) => u64::from(pos),
            None => 0,
        };
        if let Some((ts, rel)) = self
            .time_index
            .len()
            .checked_sub(1)
            .and_then(|i| self.time_entry(i))
        {
            self.max_timestamp = ts;
            self.offset_of_max_timestamp = self.base_offset + i64::from(rel);
        }
        let mut pos = start;
        while pos < file_len {
            let mut head = [0u8; PEEK];
            if pos + PEEK as u64 > file_len || self.log.read_exact_at(&mut head, pos).is_err() {
                break;
            }
            let Some((base, size)) = BatchHeader::peek_size(&head) else {
                break;
            };
            if size < HEADER_LEN || pos + size as u64 > file_len {
                break;
            }
            let delta = i32::from_be_bytes([head[23], head[24], head[25], head[26]]);
            self.next_offset = base + i64::from(delta) + 1;
            pos += size as u64;
        }
        if pos != file_len {
            // The clean-shutdown promise does not hold: do it the careful way.
            return self.recover(file_len, 4096);
        }
        self.size = pos;
        self.bytes_since_index = pos - start;
        Ok(())
    }

    /// Validates every batch, truncates a torn or corrupt tail, rebuilds both indexes.
    fn recover(&mut self, file_len: u64, index_interval: u64) -> Result<(), LogError> {
        let scan = scan(&self.log, file_len, self.base_offset)?;
        if scan.valid_bytes < file_len {
            tracing::warn!(
                segment = %self.log_path.display(),
                kept = scan.valid_bytes,
                dropped = file_len - scan.valid_bytes,
                "truncating a torn or corrupt tail"
            );
            self.log.set_len(scan.valid_bytes)?;
            self.log.sync_all()?;
        }
        self.index.truncate(0);
        self.time_index.truncate(0);
        self.size = 0;
        self.next_offset = self.base_offset;
        self.max_timestamp = -1;
        self.offset_of_max_timestamp = -1;
        self.bytes_since_index = 0;
        for (pos, header) in scan.batches {
            // Rebuilding from the file we just read: an index that fills up simply stays sparse.
            self.index_batch(pos, &header, index_interval);
            self.size = pos + header.total_size() as u64;
        }
        Ok(())
    }

    /// Records a batch now at `pos` in the indexes and the segment's counters.
    fn index_batch(&mut self, pos: u64, header: &BatchHeader, index_interval: u64) -> bool {
        let mut fits = true;
        let rel = (header.base_offset - self.base_offset) as u32;
        if self.index.len() == 0 || self.bytes_since_index >= index_interval {
            fits &= self
                .index
                .push(&[rel.to_be_bytes(), (pos as u32).to_be_bytes()].concat());
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += header.total_size() as u64;
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.offset_of_max_timestamp = header.last_offset();
            let last_rel = (header.last_offset() - self.base_offset) as u32;
            let mut entry = header.max_timestamp.to_be_bytes().to_vec();
            entry.extend_from_slice(&last_rel.to_be_bytes());
            fits &= self.time_index.push(&entry);
        }
        self.next_offset = header.last_offset() + 1;
        fits
    }

    /// Whether a batch of `size` bytes ending at `last_offset` still fits this segment's
    /// addressing (u32 positions and relative offsets) and its indexes.
    pub(crate) fn can_take(&self, size: usize, last_offset: i64, segment_bytes: u64) -> bool {
        let fits_bytes = self.size == 0 || self.size + size as u64 <= segment_bytes;
        let fits_u32 = self.size + size as u64 <= u64::from(u32::MAX)
            && last_offset - self.base_offset <= i64::from(u32::MAX);
        fits_bytes && fits_u32 && !self.index.is_full() && !self.time_index.is_full()
    }

    /// Appends a batch whose header carries its final base offset, given as that (patched)
    /// header and the untouched body, written back to back.
    pub(crate) fn append_parts(
        &mut self,
        head: &[u8],
        body: &[u8],
        header: &BatchHeader,
        index_interval: u64,
        now_ms: i64,
    ) -> Result<(), LogError> {
        let pos = self.size;
        let len = (head.len() + body.len()) as u64;
        let written = self
            .log
            .write_all_at(head, pos)
            .and_then(|()| self.log.write_all_at(body, pos + head.len() as u64));
        if let Err(e) = written {
            // A partial write must not stay behind: the next append would land after it.
            let _ = self.log.set_len(pos);
            return Err(e.into());
        }
        self.size += len;
        self.first_append_ms.get_or_insert(now_ms);
        self.index_batch(pos, header, index_interval);
        Ok(())
    }

    /// The file position to start scanning from for `offset` (a batch at or before it).
    pub(crate) fn position_for(&self, offset: i64) -> u64 {
        let rel = (offset - self.base_offset).clamp(0, i64::from(u32::MAX)) as u32;
        let key = |e: &[u8]| u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
        self.index
            .floor(rel, key)
            .and_then(|i| self.offset_entry(i))
            .map_or(0, |(_, pos)| u64::from(pos))
    }

    /// The offset to start scanning from for the first batch with max timestamp >= `ts`.
    pub(crate) fn offset_before_timestamp(&self, ts: i64) -> i64 {
        // The last time-index entry below `ts` marks where the max timestamp was still lower.
        let key = |e: &[u8]| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&e[..8]);
            i64::from_be_bytes(b)
        };
        match self
            .time_index
            .floor(ts.saturating_sub(1), key)
            .and_then(|i| self.time_entry(i))
        {
            Some((_, rel)) => self.base_offset + i64::from(rel),
            None => self.base_offset,
        }
    }

    /// The segment stops being active: shrink the index files to their entries.
    pub(crate) fn seal(&mut self) -> Result<(), LogError> {
        self.index.trim()?;
        self.time_index.trim()?;
        Ok(())
    }

    /// Makes a sealed segment appendable again (it is the newest after a restart).
    pub(crate) fn unseal(&mut self, index_bytes: usize) -> Result<(), LogError> {
        self.index.reopen_for_append(index_bytes)?;
        self.time_index.reopen_for_append(index_bytes)?;
        Ok(())
    }

    /// Removes the segment's files.
    pub(crate) fn delete(self) -> Result<(), LogError> {
        let paths = [
            self.log_path.clone(),
            self.index.path().to_path_buf(),
            self.time_index.path().to_path_buf(),
        ];
        drop(self);
        for p in paths {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Checks that the last batch of the file is whole and undamaged (cheap check of a segment
    /// that was not active at a crash). Returns false if a full recovery is needed.
    pub(crate) fn tail_is_whole(&self) -> bool {
        let mut pos = self.position_for(self.next_offset.saturating_sub(1));
        let mut last = None;
        while pos < self.size {
            let mut head = [0u8; LOG_OVERHEAD];
            if self.log.read_exact_at(&mut head, pos).is_err() {
                return false;
            }
            match BatchHeader::peek_size(&head) {
                Some((_, size)) if size >= HEADER_LEN => {
                    last = Some((pos, size));
                    pos += size as u64;
                }
                _ => return false,
            }
        }
        match last {
            None => self.size == 0,
            Some((pos, size)) => {
                let mut buf = vec![0u8; size];
                self.log.read_exact_at(&mut buf, pos).is_ok() && batch::check_frame(&buf).is_ok()
            }
        }
    }
}

/// Reads every batch of a segment file, validating each; stops at the first bad one.
fn scan(file: &File, file_len: u64, base_offset: i64) -> Result<Scan, LogError> {
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file.try_clone()?);
    reader.seek(SeekFrom::Start(0))?;
    let mut pos = 0u64;
    let mut batches = Vec::new();
    let mut buf = Vec::new();
    let mut expected_min = base_offset;
    loop {
        let mut head = [0u8; LOG_OVERHEAD];
        if pos + LOG_OVERHEAD as u64 > file_len || reader.read_exact(&mut head).is_err() {
            break;
        }
        let Some((_, size)) = BatchHeader::peek_size(&head) else {
            break;
        };
        if size < HEADER_LEN || pos + size as u64 > file_len {
            break;
        }
        buf.clear();
        buf.extend_from_slice(&head);
        buf.resize(size, 0);
        if reader.read_exact(&mut buf[LOG_OVERHEAD..]).is_err() {
            break;
        }
        let Ok(header) = batch::check_frame(&buf) else {
            break;
        };
        if header.base_offset < expected_min {
            break;
        }
        expected_min = header.last_offset() + 1;
        batches.push((pos, header));
        pos += size as u64;
    }
    Ok(Scan {
        valid_bytes: pos,
        batches,
    })
}

/// Reads the headers of every batch (producer-state rebuild): `(position, header)` in order.
pub(crate) fn headers(file: &File, size: u64) -> Vec<(u64, BatchHeader)> {
    let mut out = Vec::new();
    let mut pos = 0u64;
    let mut head = [0u8; HEADER_LEN];
    while pos + HEADER_LEN as u64 <= size {
        if file.read_exact_at(&mut head, pos).is_err() {
            break;
        }
        let Some(h) = BatchHeader::parse(&head) else {
            break;
        };
        if h.total_size() < HEADER_LEN {
            break;
        }
        out.push((pos, h));
        pos += h.total_size() as u64;
    }
    out
}

/// Peeks `(base offset, total size, last offset)` of the batch at `pos`.
pub(crate) fn peek(file: &File, pos: u64) -> Option<(i64, usize, i64)> {
    let mut head = [0u8; PEEK];
    file.read_exact_at(&mut head, pos).ok()?;
    let (base, size) = BatchHeader::peek_size(&head)?;
    if size < HEADER_LEN {
        return None;
    }
    let delta = i32::from_be_bytes([head[23], head[24], head[25], head[26]]);
    Some((base, size, base + i64::from(delta)))
}
