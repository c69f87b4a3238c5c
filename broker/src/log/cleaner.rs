//! Log compaction (`cleanup.policy=compact`): the background cleaner, its bounded key map, and
//! the crash-safe swap of cleaned segments.
//!
//! A cleaning of one partition, as Kafka's cleaner does it:
//!
//! 1. **Decide.** The non-active segments split at the checkpointed *first dirty offset* into a
//!    clean head (already compacted) and a dirty tail. The tail stops at the active segment and at
//!    the first segment with a record younger than `min.compaction.lag.ms`. A cleaning runs when
//!    dirty bytes reach `min.cleanable.dirty.ratio` of head + tail, when a dirty segment is older
//!    than `max.compaction.lag.ms`, or when a kept tombstone's delete horizon has passed.
//! 2. **Map.** The dirty tail's records go into an [`OffsetMap`]: a fixed-size open-addressing
//!    table of 16-byte key digests (SHA-256 prefix) to the key's latest offset, sized by
//!    `log.cleaner.dedupe.buffer.size`. When it fills, the map stops at a batch boundary and the
//!    rest waits for the next cleaning.
//! 3. **Rewrite.** Every segment from the log start to the map's end is copied, in groups that fit
//!    `segment.bytes`, into a new segment built aside with the partition lock *not* held. A record
//!    is kept unless a later offset of its key is in the map, it has no key, or it is a tombstone
//!    whose delete horizon has passed. Offsets never change: a batch keeps its base offset and
//!    `lastOffsetDelta`, and is rewritten (decompressed, filtered, recompressed in its own codec)
//!    only when something in it goes. The first cleaning that keeps a tombstone stamps its batch
//!    with a delete horizon of now + `delete.retention.ms` (KIP-534: attributes bit 6, the horizon
//!    in `baseTimestamp`). A batch emptied of records is dropped, unless it is the last batch of
//!    an idempotent producer: that header stays (no records) so the producer's sequence is rebuilt
//!    from the log at the next open.
//!
//!    Transactions, as Kafka cleans them: nothing at or past the last stable offset is mapped or
//!    cleaned; records of aborted transactions are never mapped and are removed; a commit or
//!    abort marker stays while any record of its transaction does, then the first cleaning that
//!    finds its transaction empty stamps it with a delete horizon (as for tombstones), and a
//!    cleaning after the horizon removes it, with its aborted-index entry.
//! 4. **Swap** (under the partition lock, after checking the group is still what was cleaned).
//!
//! The swap protocol, for a group of segments with bases `B..` followed by the segment at `N`:
//!
//! 1. `B.log.cleaned`, `B.index.cleaned`, `B.timeindex.cleaned` are written and fsynced.
//! 2. `B.swap` is written atomically (temp file, fsync, rename, fsync of the directory) holding
//!    `"B N"`. **This is the commit point.**
//! 3. The replaced segments with bases in `(B, N)` are deleted, the `.cleaned` index files are
//!    renamed over `B.index` / `B.timeindex`, then `B.log.cleaned` over `B.log`; the directory is
//!    fsynced.
//! 4. `B.swap` is removed and the directory fsynced.
//!
//! At open ([`recover_swaps`]), a `B.swap` means the new segment is complete: step 3 is redone
//! (it is idempotent) and the marker removed. Without a marker, `.cleaned` files are leftovers of
//! a cleaning that never committed and are deleted. Either way the partition holds the old
//! segments or the new one, never a mix. Readers that captured a replaced segment's file keep
//! reading it: the unlinked file lives until its last handle closes.
//!
//! Progress — the first dirty offset and the earliest delete horizon of a kept tombstone — is
//! kept in the partition directory's `cleaner-offset-checkpoint`, written atomically.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::records::batch::{self, BatchHeader, LOG_OVERHEAD};
use crate::records::record::{rebuild_batch, records_area, stored_records, StoredRecord};

use super::aborted::AbortedTxn;
use super::segment::{self, cleaned_name, file_name, Segment};
use super::{LogConfig, LogError, PartitionLog};

/// The cleaner's progress in a partition directory: `"<first dirty offset> <horizon>\n"`.
const CHECKPOINT: &str = "cleaner-offset-checkpoint";
/// Suffix of the swap commit marker, `<base>.swap`.
const SWAP_SUFFIX: &str = ".swap";
/// Bytes of map memory per key: a 16-byte digest and an 8-byte offset.
pub const MAP_ENTRY_BYTES: usize = 24;
/// Most bytes one batch may inflate to when the cleaner decompresses it.
const DECODE_LIMIT: usize = 256 << 20;
/// Bytes read from a segment file at a time.
const READ_CHUNK: usize = 1 << 20;

/// The `log.cleaner.*` broker settings.
#[derive(Debug, Clone, PartialEq)]
pub struct CleanerConfig {
    /// `log.cleaner.enable`.
    pub enable: bool,
    /// `log.cleaner.threads`: partitions cleaned at once.
    pub threads: usize,
    /// `log.cleaner.dedupe.buffer.size`: key-map memory, shared by all threads.
    pub dedupe_buffer_size: usize,
    /// `log.cleaner.io.buffer.load.factor`: how full the key map may get.
    pub load_factor: f64,
    /// `log.cleaner.io.max.bytes.per.second`: read + write bandwidth of all cleaning.
    pub io_max_bytes_per_second: f64,
    /// `log.cleaner.backoff.ms`: the pause when no partition needs cleaning.
    pub backoff: Duration,
}

impl Default for CleanerConfig {
    /// Kafka's defaults.
    fn default() -> CleanerConfig {
        CleanerConfig {
            enable: true,
            threads: 1,
            dedupe_buffer_size: 128 << 20,
            load_factor: 0.9,
            io_max_bytes_per_second: f64::MAX,
            backoff: Duration::from_millis(15_000),
        }
    }
}

/// Why a cleaning failed. The log is unchanged unless the swap itself failed part way, which
/// the next open completes.
#[derive(Debug, thiserror::Error)]
pub enum CleanError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("storage error: {0}")]
    Io(#[from] std::io::Error),
    #[error("damaged batch at offset {offset}: {message}")]
    Damaged { offset: i64, message: String },
    #[error("log.cleaner.dedupe.buffer.size holds {entries} keys, not even one batch's worth")]
    BufferTooSmall { entries: usize },
}

/// How far the cleaner got in a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CleanerCheckpoint {
    /// Offsets below this were compacted by the last cleaning.
    pub(crate) first_dirty: i64,
    /// The earliest delete horizon of a tombstone still kept (`i64::MAX`: none).
    pub(crate) tombstone_horizon: i64,
}

impl CleanerCheckpoint {
    /// Reads the checkpoint; a missing one is a partition never cleaned. A damaged one only
    /// costs a cleaning from the start, so it is not an error.
    pub(crate) fn read(dir: &Path) -> Result<CleanerCheckpoint, LogError> {
        let path = dir.join(CHECKPOINT);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(CleanerCheckpoint {
                    first_dirty: 0,
                    tombstone_horizon: i64::MAX,
                })
            }
            Err(e) => return Err(e.into()),
        };
        let mut parts = text.split_whitespace().map(str::parse::<i64>);
        match (parts.next(), parts.next()) {
            (Some(Ok(first_dirty)), Some(Ok(tombstone_horizon))) => Ok(CleanerCheckpoint {
                first_dirty,
                tombstone_horizon,
            }),
            _ => {
                tracing::warn!(path = %path.display(), "ignoring a damaged cleaner checkpoint");
                Ok(CleanerCheckpoint {
                    first_dirty: 0,
                    tombstone_horizon: 0,
                })
            }
        }
    }

    pub(crate) fn write(&self, dir: &Path) -> std::io::Result<()> {
        crate::meta::write_atomically(
            &dir.join(CHECKPOINT),
            format!("{} {}\n", self.first_dirty, self.tombstone_horizon).as_bytes(),
        )
    }
}

/// A non-active segment as the cleaner sees it.
#[derive(Debug, Clone)]
pub(crate) struct SegmentRef {
    pub(crate) base_offset: i64,
    pub(crate) next_offset: i64,
    pub(crate) size: u64,
    pub(crate) max_timestamp: i64,
    pub(crate) log: Arc<File>,
}

/// A partition's state when a cleaning is considered.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub(crate) config: LogConfig,
    /// Every segment but the active one, in offset order.
    pub(crate) segments: Vec<SegmentRef>,
    pub(crate) active_base: i64,
    pub(crate) checkpoint: CleanerCheckpoint,
    /// Nothing at or past the last stable offset is cleaned: an open transaction may still
    /// abort, and its records must not stand as any key's latest.
    pub(crate) last_stable_offset: i64,
    /// The partition's aborted transactions: their records are removed, never mapped.
    pub(crate) aborted: Vec<AbortedTxn>,
}

impl Snapshot {
    /// The first offset a cleaning may not touch: the active segment, the first dirty segment
    /// holding a record younger than `min.compaction.lag.ms`, or the last stable offset.
    fn first_uncleanable(&self, now_ms: i64) -> i64 {
        let lag = self.config.min_compaction_lag_ms;
        if lag > 0 {
            let young = self.segments.iter().find(|s| {
                s.next_offset > self.checkpoint.first_dirty
                    && s.max_timestamp > now_ms.saturating_sub(lag)
            });
            if let Some(s) = young {
                return s.base_offset.min(self.last_stable_offset);
            }
        }
        self.active_base.min(self.last_stable_offset)
    }

    /// How urgently the partition needs cleaning (the dirty ratio, raised when overdue), or
    /// `None` if it does not.
    fn urgency(&self, now_ms: i64) -> Option<f64> {
        let first_dirty = self.checkpoint.first_dirty;
        let uncleanable = self.first_uncleanable(now_ms);
        let (mut clean, mut dirty, mut overdue) = (0u64, 0u64, false);
        for s in &self.segments {
            if s.next_offset <= first_dirty {
                clean += s.size;
            } else if s.base_offset < uncleanable && first_dirty < uncleanable {
                // (A segment the last stable offset cuts is dirty only below that offset.)
                dirty += s.size;
                // The segment's newest record is at least as young as its oldest, so this errs
                // towards cleaning late, never early.
                overdue |= s.max_timestamp >= 0
                    && now_ms.saturating_sub(s.max_timestamp) > self.config.max_compaction_lag_ms;
            }
        }
        let ratio = if clean + dirty == 0 {
            0.0
        } else {
            dirty as f64 / (clean + dirty) as f64
        };
        let by_dirt = dirty > 0 && (overdue || ratio >= self.config.min_cleanable_dirty_ratio);
        let by_tombstones = self.checkpoint.tombstone_horizon <= now_ms && clean > 0;
        (by_dirt || by_tombstones).then_some(if overdue { 1.0 + ratio } else { ratio })
    }
}

/// Key digest → latest offset, in fixed memory (linear probing). Offsets are stored plus one,
/// so the zeroed allocation is an empty table and untouched pages cost no memory.
#[derive(Debug)]
pub struct OffsetMap {
    digests: Vec<[u8; 16]>,
    offsets: Vec<i64>,
    entries: usize,
    max_entries: usize,
}

impl OffsetMap {
    /// A map using about `memory` bytes, filled to at most `load_factor` of its slots.
    pub fn new(memory: usize, load_factor: f64) -> OffsetMap {
        let slots = (memory / MAP_ENTRY_BYTES).max(16);
        let max_entries = ((slots as f64 * load_factor) as usize).clamp(1, slots - 1);
        OffsetMap {
            digests: vec![[0u8; 16]; slots],
            offsets: vec![0i64; slots],
            entries: 0,
            max_entries,
        }
    }

    fn digest(key: &[u8]) -> [u8; 16] {
        let full = Sha256::digest(key);
        let mut d = [0u8; 16];
        d.copy_from_slice(&full[..16]);
        d
    }

    /// The slot holding `digest`, or the empty slot where it would go.
    fn slot(&self, digest: &[u8; 16]) -> usize {
        let mut start = [0u8; 8];
        start.copy_from_slice(&digest[..8]);
        let n = self.digests.len();
        let mut i = (u64::from_le_bytes(start) % n as u64) as usize;
        // Terminates: `max_entries < slots` keeps at least one slot empty.
        while self.offsets[i] != 0 && self.digests[i] != *digest {
            i = (i + 1) % n;
        }
        i
    }

    /// Records `offset` as `key`'s latest; `false` (nothing changed) when the map is full.
    pub fn put(&mut self, key: &[u8], offset: i64) -> bool {
        let d = OffsetMap::digest(key);
        let i = self.slot(&d);
        if self.offsets[i] == 0 {
            if self.entries >= self.max_entries {
                return false;
            }
            self.entries += 1;
            self.digests[i] = d;
        }
        self.offsets[i] = self.offsets[i].max(offset.saturating_add(1));
        true
    }

    /// The latest offset recorded for `key`.
    pub fn get(&self, key: &[u8]) -> Option<i64> {
        let i = self.slot(&OffsetMap::digest(key));
        (self.offsets[i] != 0).then(|| self.offsets[i] - 1)
    }

    /// Keys recorded.
    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Empties the map. A fresh zeroed allocation, rather than writing zeroes, hands the pages
    /// back until a cleaning touches them again.
    fn clear(&mut self) {
        if self.entries > 0 {
            let slots = self.digests.len();
            self.digests = vec![[0u8; 16]; slots];
            self.offsets = vec![0i64; slots];
            self.entries = 0;
        }
    }
}

/// Tells cleaner threads to stop, waking them from their backoff.
#[derive(Debug, Default)]
pub struct StopSignal {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl StopSignal {
    pub fn stop(&self) {
        if let Ok(mut s) = self.stopped.lock() {
            *s = true;
        }
        self.wake.notify_all();
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.lock().map(|s| *s).unwrap_or(true)
    }

    /// Waits up to `timeout` or until stopped; true if stopped.
    fn wait(&self, timeout: Duration) -> bool {
        let Ok(guard) = self.stopped.lock() else {
            return true;
        };
        match self.wake.wait_timeout_while(guard, timeout, |s| !*s) {
            Ok((s, _)) => *s,
            Err(_) => true,
        }
    }
}

/// Keeps cleaning I/O under `log.cleaner.io.max.bytes.per.second`.
struct Throttle {
    rate: f64,
    start: Instant,
    bytes: f64,
}

impl Throttle {
    fn new(rate: f64) -> Throttle {
        Throttle {
            rate,
            start: Instant::now(),
            bytes: 0.0,
        }
    }

    /// Accounts `n` bytes and pauses for as long as the cleaning is ahead of its rate.
    fn consume(&mut self, n: usize, stop: &StopSignal) {
        self.bytes += n as f64;
        let due = Duration::from_secs_f64((self.bytes / self.rate).min(1e9));
        let elapsed = self.start.elapsed();
        if due > elapsed {
            stop.wait(due - elapsed);
        }
    }
}

/// Reads a segment file batch by batch in large chunks, checking each batch's CRC (a damaged
/// batch must not be rewritten with a fresh, valid checksum).
struct BatchReader<'a> {
    file: &'a File,
    end: u64,
    pos: u64,
    buf: Vec<u8>,
    /// File position of `buf[0]`.
    buf_at: u64,
}

impl<'a> BatchReader<'a> {
    fn new(file: &'a File, end: u64) -> BatchReader<'a> {
        BatchReader {
            file,
            end,
            pos: 0,
            buf: Vec::new(),
            buf_at: 0,
        }
    }

    /// Makes `buf` hold `[pos, pos + need)`.
    fn fill(&mut self, need: usize) -> Result<(), CleanError> {
        let have = (self.buf_at + self.buf.len() as u64).saturating_sub(self.pos);
        if self.pos >= self.buf_at && have >= need as u64 {
            return Ok(());
        }
        let left = self.end - self.pos;
        if (need as u64) > left {
            return Err(CleanError::Damaged {
                offset: -1,
                message: format!("a batch runs past the end of the segment at {}", self.pos),
            });
        }
        let len = (need.max(READ_CHUNK) as u64).min(left) as usize;
        self.buf.resize(len, 0);
        self.file.read_exact_at(&mut self.buf, self.pos)?;
        self.buf_at = self.pos;
        Ok(())
    }

    fn next(&mut self) -> Result<Option<(BatchHeader, &[u8])>, CleanError> {
        if self.pos >= self.end {
            return Ok(None);
        }
        self.fill(LOG_OVERHEAD)?;
        let at = (self.pos - self.buf_at) as usize;
        let Some((base, size)) = BatchHeader::peek_size(&self.buf[at..]) else {
            return Err(CleanError::Damaged {
                offset: -1,
                message: "unreadable batch header".into(),
            });
        };
        self.fill(size)?;
        let at = (self.pos - self.buf_at) as usize;
        let bytes = &self.buf[at..at + size];
        let header = batch::check_frame(bytes).map_err(|e| CleanError::Damaged {
            offset: base,
            message: e.to_string(),
        })?;
        self.pos += size as u64;
        Ok(Some((header, bytes)))
    }
}

/// What one cleaning did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanStats {
    /// Bytes of log read (map building and copying).
    pub bytes_read: u64,
    /// Bytes of cleaned log written.
    pub bytes_written: u64,
    /// Bytes of the segments that were rewritten, before and after.
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub records_before: u64,
    pub records_after: u64,
    pub segments_before: usize,
    pub segments_after: usize,
    /// Keys in the offset map.
    pub keys: usize,
    /// The new first dirty offset.
    pub cleaned_up_to: i64,
}

/// Cleans `log` once if it is due, with a map of `config.dedupe_buffer_size` bytes (tests,
/// benchmarks and tools; the broker runs a [`LogCleaner`]).
pub fn clean_now(
    log: &PartitionLog,
    config: &CleanerConfig,
    now_ms: i64,
) -> Result<Option<CleanStats>, CleanError> {
    let mut map = OffsetMap::new(config.dedupe_buffer_size, config.load_factor);
    clean_partition(log, &mut map, config, &StopSignal::default(), now_ms)
}

/// One cleaning of `log` if it is due; `None` if it was not, or it was abandoned because the
/// segments changed meanwhile or the cleaner is stopping.
fn clean_partition(
    log: &PartitionLog,
    map: &mut OffsetMap,
    config: &CleanerConfig,
    stop: &StopSignal,
    now_ms: i64,
) -> Result<Option<CleanStats>, CleanError> {
    let Some(snap) = log.cleaning_snapshot() else {
        return Ok(None);
    };
    if snap.urgency(now_ms).is_none() {
        return Ok(None);
    }
    let mut throttle = Throttle::new(config.io_max_bytes_per_second);
    let mut stats = CleanStats::default();
    let first_dirty = snap.checkpoint.first_dirty;
    let uncleanable = snap.first_uncleanable(now_ms);

    // Map the dirty tail.
    map.clear();
    let aborted = AbortedRanges::new(&snap.aborted);
    let mut end = first_dirty;
    let mut full = false;
    // The last stable offset may fall inside a segment: mapping stops at it.
    let mut unstable = false;
    for seg in snap
        .segments
        .iter()
        .filter(|s| s.base_offset < uncleanable && s.next_offset > first_dirty)
    {
        let mut reader = BatchReader::new(&seg.log, seg.size);
        while let Some((header, bytes)) = reader.next()? {
            if header.last_offset() < first_dirty {
                continue;
            }
            if header.base_offset >= uncleanable {
                // Every batch below it is mapped; what lies between is a gap compaction left.
                unstable = true;
                end = uncleanable;
                break;
            }
            stats.bytes_read += bytes.len() as u64;
            throttle.consume(bytes.len(), stop);
            // An aborted record never was any key's value.
            if !aborted.contains(&header) && !map_batch(map, &header, bytes)? {
                full = true;
                break;
            }
            end = header.last_offset() + 1;
        }
        if stop.is_stopped() {
            return Ok(None);
        }
        if full || unstable {
            break;
        }
        end = end.max(seg.next_offset);
    }
    if full && end == first_dirty {
        return Err(CleanError::BufferTooSmall {
            entries: map.max_entries,
        });
    }
    if unstable && end == first_dirty && snap.checkpoint.tombstone_horizon > now_ms {
        // Everything dirty is behind an open transaction.
        return Ok(None);
    }
    stats.keys = map.len();

    // Rewrite the log up to the map's end, in groups that fit a segment.
    let upto = snap
        .segments
        .iter()
        .take_while(|s| s.base_offset < end)
        .count();
    let producers = log.last_producer_batches();
    let mut horizon = i64::MAX;
    let mut txns = TxnScan::default();
    let mut i = 0;
    while i < upto {
        let mut j = i + 1;
        let mut size = snap.segments[i].size;
        while j < upto
            && size + snap.segments[j].size <= snap.config.segment_bytes
            && snap.segments[j].next_offset - snap.segments[i].base_offset <= i64::from(u32::MAX)
        {
            size += snap.segments[j].size;
            j += 1;
        }
        let group = &snap.segments[i..j];
        let next_base = snap
            .segments
            .get(j)
            .map_or(snap.active_base, |s| s.base_offset);
        let pass = Pass {
            map: &*map,
            end,
            now_ms,
            config: &snap.config,
            producers: &producers,
            aborted: &aborted,
        };
        match pass.rewrite(
            log,
            group,
            next_base,
            &mut throttle,
            stop,
            &mut stats,
            &mut txns,
        )? {
            Some(h) => horizon = horizon.min(h),
            None => return Ok(None),
        }
        i = j;
    }
    let checkpoint = CleanerCheckpoint {
        first_dirty: end.max(first_dirty),
        tombstone_horizon: horizon,
    };
    log.set_cleaner_checkpoint(checkpoint)?;
    stats.cleaned_up_to = checkpoint.first_dirty;
    Ok(Some(stats))
}

/// Puts a batch's keys in the map; `false` if it did not fit.
fn map_batch(map: &mut OffsetMap, header: &BatchHeader, bytes: &[u8]) -> Result<bool, CleanError> {
    if header.is_control() {
        return Ok(true);
    }
    let damaged = |e: crate::records::BatchError| CleanError::Damaged {
        offset: header.base_offset,
        message: e.to_string(),
    };
    let area = records_area(bytes, header, DECODE_LIMIT).map_err(damaged)?;
    for r in stored_records(header, &area).map_err(damaged)? {
        if let Some(key) = r.key {
            if !map.put(key, header.base_offset + i64::from(r.offset_delta)) {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Aborted transactions by producer: `(first offset, marker offset)` ranges.
struct AbortedRanges(HashMap<i64, Vec<(i64, i64)>>);

impl AbortedRanges {
    fn new(list: &[AbortedTxn]) -> AbortedRanges {
        let mut by_producer: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
        for t in list {
            by_producer
                .entry(t.producer_id)
                .or_default()
                .push((t.first_offset, t.last_offset));
        }
        AbortedRanges(by_producer)
    }

    /// Whether `header` is a data batch of an aborted transaction.
    fn contains(&self, header: &BatchHeader) -> bool {
        header.is_transactional()
            && !header.is_control()
            && self.0.get(&header.producer_id).is_some_and(|ranges| {
                ranges
                    .iter()
                    .any(|&(first, last)| first <= header.base_offset && header.base_offset <= last)
            })
    }
}

/// Transactions as a rewrite walks the log from its start: whether each producer's current
/// transaction still has records (its marker must stay), and the abort markers removed.
#[derive(Debug, Default)]
struct TxnScan {
    /// Producer id → the transaction being read has kept records.
    with_records: HashMap<i64, bool>,
    /// Offsets of the abort markers the current group dropped.
    dropped_markers: Vec<i64>,
}

/// What a rewrite of one group needs to judge records.
struct Pass<'a> {
    map: &'a OffsetMap,
    /// Batches at or past this offset are dirty and not in the map: copied as they are.
    end: i64,
    now_ms: i64,
    config: &'a LogConfig,
    /// Producer id → base offset of its last batch.
    producers: &'a HashMap<i64, i64>,
    aborted: &'a AbortedRanges,
}

impl Pass<'_> {
    /// Builds the cleaned segment for `group` aside and swaps it in. Returns the earliest delete
    /// horizon of a tombstone kept (`i64::MAX`: none), or `None` if the cleaning was abandoned.
    #[allow(clippy::too_many_arguments)]
    fn rewrite(
        &self,
        log: &PartitionLog,
        group: &[SegmentRef],
        next_base: i64,
        throttle: &mut Throttle,
        stop: &StopSignal,
        stats: &mut CleanStats,
        txns: &mut TxnScan,
    ) -> Result<Option<i64>, CleanError> {
        let dir = log.dir();
        let Some(first) = group.first() else {
            return Ok(Some(i64::MAX));
        };
        let base = first.base_offset;
        let interval = u64::from(self.config.index_interval_bytes);
        let mut out = Segment::create_cleaned(dir, base, self.config.segment_index_bytes as usize)?;
        let mut horizon = i64::MAX;
        let built = (|| -> Result<bool, CleanError> {
            for seg in group {
                stats.segments_before += 1;
                stats.bytes_before += seg.size;
                let mut reader = BatchReader::new(&seg.log, seg.size);
                while let Some((header, bytes)) = reader.next()? {
                    stats.bytes_read += bytes.len() as u64;
                    stats.records_before += header.records_count.max(0) as u64;
                    throttle.consume(bytes.len(), stop);
                    let Some(kept) = self.filter(&header, bytes, &mut horizon, txns)? else {
                        continue;
                    };
                    let Some(kept_header) = BatchHeader::parse(&kept) else {
                        continue;
                    };
                    if !out.can_take(kept.len(), kept_header.last_offset(), u64::MAX) {
                        return Err(CleanError::Damaged {
                            offset: kept_header.base_offset,
                            message: "the cleaned segment's index is full".into(),
                        });
                    }
                    out.append_parts(&kept, &[], &kept_header, interval, self.now_ms)?;
                    stats.bytes_written += kept.len() as u64;
                    stats.records_after += kept_header.records_count.max(0) as u64;
                    throttle.consume(kept.len(), stop);
                }
                if stop.is_stopped() {
                    return Ok(false);
                }
            }
            out.seal()?;
            out.log.sync_all()?;
            Ok(true)
        })();
        stats.bytes_after += out.size;
        drop(out);
        let complete = match built {
            Ok(complete) => complete,
            Err(e) => {
                discard_cleaned(dir, base);
                return Err(e);
            }
        };
        #[cfg(test)]
        crash_point(CrashPoint::Built)?;
        let dropped = std::mem::take(&mut txns.dropped_markers);
        if !complete || !log.swap_cleaned(group, next_base, &dropped)? {
            discard_cleaned(dir, base);
            return Ok(None);
        }
        stats.segments_after += 1;
        Ok(Some(horizon))
    }

    /// The batch as it stays in the log (borrowed when unchanged), or `None` if it goes.
    fn filter<'b>(
        &self,
        header: &BatchHeader,
        bytes: &'b [u8],
        horizon: &mut i64,
        txns: &mut TxnScan,
    ) -> Result<Option<Cow<'b, [u8]>>, CleanError> {
        if header.is_control() {
            let had_records = txns
                .with_records
                .remove(&header.producer_id)
                .unwrap_or(false);
            if header.base_offset >= self.end || had_records {
                return Ok(Some(Cow::Borrowed(bytes)));
            }
            return self.filter_marker(header, bytes, horizon, txns);
        }
        if header.base_offset >= self.end {
            if header.is_transactional() && header.records_count > 0 {
                txns.with_records.insert(header.producer_id, true);
            }
            return Ok(Some(Cow::Borrowed(bytes)));
        }
        let damaged = |e: crate::records::BatchError| CleanError::Damaged {
            offset: header.base_offset,
            message: e.to_string(),
        };
        let area = records_area(bytes, header, DECODE_LIMIT).map_err(damaged)?;
        let records = stored_records(header, &area).map_err(damaged)?;
        let old_horizon = header.delete_horizon();
        let tombstones_expired = old_horizon.is_some_and(|h| h <= self.now_ms);
        let aborted = self.aborted.contains(header);
        let kept: Vec<StoredRecord<'_>> = records
            .iter()
            .filter(|r| {
                if aborted {
                    return false;
                }
                let Some(key) = r.key else {
                    return false;
                };
                let offset = header.base_offset + i64::from(r.offset_delta);
                if self.map.get(key).is_some_and(|latest| offset < latest) {
                    return false;
                }
                !(r.value.is_none() && tombstones_expired)
            })
            .copied()
            .collect();
        if header.is_transactional() && !kept.is_empty() {
            txns.with_records.insert(header.producer_id, true);
        }
        if kept.is_empty() {
            let last_of_producer = header.is_idempotent()
                && self.producers.get(&header.producer_id) == Some(&header.base_offset);
            if !last_of_producer {
                return Ok(None);
            }
            if records.is_empty() {
                return Ok(Some(Cow::Borrowed(bytes)));
            }
            return Ok(Some(Cow::Owned(rebuild_batch(header, &[], None))));
        }
        let mut new_horizon = None;
        if kept.iter().any(|r| r.value.is_none()) {
            let h = match old_horizon {
                Some(h) => h,
                None => {
                    let h = self.now_ms.saturating_add(self.config.delete_retention_ms);
                    new_horizon = Some(h);
                    h
                }
            };
            *horizon = (*horizon).min(h);
        }
        if kept.len() == records.len() && new_horizon.is_none() {
            return Ok(Some(Cow::Borrowed(bytes)));
        }
        Ok(Some(Cow::Owned(rebuild_batch(header, &kept, new_horizon))))
    }

    /// A marker whose transaction has no records left: the first cleaning that sees it so stamps
    /// it with a delete horizon of now + `delete.retention.ms` (so a consumer that read the
    /// transaction's records still reads its end), a cleaning after the horizon removes it.
    fn filter_marker<'b>(
        &self,
        header: &BatchHeader,
        bytes: &'b [u8],
        horizon: &mut i64,
        txns: &mut TxnScan,
    ) -> Result<Option<Cow<'b, [u8]>>, CleanError> {
        match header.delete_horizon() {
            Some(h) if h <= self.now_ms => {
                txns.dropped_markers.push(header.base_offset);
                Ok(None)
            }
            Some(h) => {
                *horizon = (*horizon).min(h);
                Ok(Some(Cow::Borrowed(bytes)))
            }
            None => {
                let damaged = |e: crate::records::BatchError| CleanError::Damaged {
                    offset: header.base_offset,
                    message: e.to_string(),
                };
                let area = records_area(bytes, header, DECODE_LIMIT).map_err(damaged)?;
                let records = stored_records(header, &area).map_err(damaged)?;
                let h = self.now_ms.saturating_add(self.config.delete_retention_ms);
                *horizon = (*horizon).min(h);
                Ok(Some(Cow::Owned(rebuild_batch(header, &records, Some(h)))))
            }
        }
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Removes the files of a cleaned segment that will not be swapped in.
fn discard_cleaned(dir: &Path, base: i64) {
    for ext in segment::EXTENSIONS {
        if let Err(e) = remove_if_present(&dir.join(cleaned_name(base, ext))) {
            tracing::warn!(dir = %dir.display(), "cannot remove an abandoned cleaned segment: {e}");
        }
    }
}

fn swap_marker(base: i64) -> String {
    format!("{base:020}{SWAP_SUFFIX}")
}

/// Steps 2-4 of the swap protocol for the group with `bases` (sorted; the first is the new
/// segment's base) followed by the segment at `next_base`.
pub(crate) fn commit_swap(dir: &Path, bases: &[i64], next_base: i64) -> Result<(), LogError> {
    let Some(&base) = bases.first() else {
        return Ok(());
    };
    crate::meta::write_atomically(
        &dir.join(swap_marker(base)),
        format!("{base} {next_base}\n").as_bytes(),
    )?;
    #[cfg(test)]
    crash_point(CrashPoint::Committed)?;
    finish_swap(dir, base, next_base, bases)?;
    Ok(())
}

/// Step 3 and 4: idempotent, so recovery can redo it from any point.
fn finish_swap(dir: &Path, base: i64, next_base: i64, bases: &[i64]) -> std::io::Result<()> {
    for &b in bases.iter().filter(|&&b| b > base && b < next_base) {
        for ext in segment::EXTENSIONS {
            remove_if_present(&dir.join(file_name(b, ext)))?;
        }
    }
    #[cfg(test)]
    crash_point(CrashPoint::OldDeleted)?;
    let cleaned_log = dir.join(cleaned_name(base, "log"));
    for ext in ["index", "timeindex"] {
        let cleaned = dir.join(cleaned_name(base, ext));
        if cleaned.exists() {
            std::fs::rename(&cleaned, dir.join(file_name(base, ext)))?;
        } else if cleaned_log.exists() {
            // The old log's index must not be trusted for the new log: rebuilt at open.
            remove_if_present(&dir.join(file_name(base, ext)))?;
        }
    }
    #[cfg(test)]
    crash_point(CrashPoint::IndexesRenamed)?;
    if cleaned_log.exists() {
        std::fs::rename(&cleaned_log, dir.join(file_name(base, "log")))?;
    }
    sync_dir(dir)?;
    #[cfg(test)]
    crash_point(CrashPoint::LogRenamed)?;
    remove_if_present(&dir.join(swap_marker(base)))?;
    sync_dir(dir)
}

/// Finishes swaps a crash interrupted after their commit point and deletes cleaned segments
/// that never reached it (run by [`PartitionLog::open`] before it lists segments).
pub(crate) fn recover_swaps(dir: &Path) -> Result<(), LogError> {
    let mut markers = Vec::new();
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(stem) = name.strip_suffix(SWAP_SUFFIX) {
            if let Ok(base) = stem.parse::<i64>() {
                markers.push(base);
            }
        } else if let Some(stem) = name.strip_suffix(".log") {
            if let Ok(base) = stem.parse::<i64>() {
                bases.push(base);
            }
        } else if let Some(stem) = name.strip_suffix(".tmp") {
            // A marker whose atomic write never completed: its swap never committed.
            if stem.parse::<i64>().is_ok() {
                remove_if_present(&dir.join(name))?;
            }
        }
    }
    bases.sort_unstable();
    markers.sort_unstable();
    for base in markers {
        let path = dir.join(swap_marker(base));
        let text = std::fs::read_to_string(&path)?;
        let mut parts = text.split_whitespace().map(str::parse::<i64>);
        let next_base = match (parts.next(), parts.next()) {
            (Some(Ok(b)), Some(Ok(n))) if b == base && n > base => n,
            _ => {
                return Err(LogError::Corrupt(format!(
                    "{} does not hold a segment range",
                    path.display()
                )))
            }
        };
        tracing::info!(dir = %dir.display(), base, next_base, "finishing a cleaned-segment swap");
        finish_swap(dir, base, next_base, &bases)?;
    }
    let mut removed = false;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name
            .to_str()
            .is_some_and(|n| n.ends_with(segment::CLEANED_SUFFIX))
        {
            remove_if_present(&entry.path())?;
            removed = true;
        }
    }
    if removed {
        sync_dir(dir)?;
    }
    Ok(())
}

/// The background cleaner: `log.cleaner.threads` threads, each taking the partition that most
/// needs cleaning, off the request path.
pub struct LogCleaner {
    stop: Arc<StopSignal>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// Lists the partitions the cleaner considers.
pub type PartitionSource = dyn Fn() -> Vec<Arc<PartitionLog>> + Send + Sync;

impl LogCleaner {
    /// Starts the threads; `now_ms` is the clock (record timestamps are wall-clock ms).
    pub fn start(
        config: CleanerConfig,
        partitions: Arc<PartitionSource>,
        now_ms: fn() -> i64,
    ) -> std::io::Result<LogCleaner> {
        let stop = Arc::new(StopSignal::default());
        let mut threads = Vec::new();
        if config.enable {
            for n in 0..config.threads.max(1) {
                let (config, partitions, stop) = (config.clone(), partitions.clone(), stop.clone());
                threads.push(
                    std::thread::Builder::new()
                        .name(format!("log-cleaner-{n}"))
                        .spawn(move || run(&config, &*partitions, &stop, now_ms))?,
                );
            }
        }
        Ok(LogCleaner { stop, threads })
    }

    /// Stops the threads, abandoning cleanings in progress (their files are removed, the log
    /// is unchanged), and waits for them.
    pub fn shutdown(self) {
        self.stop.stop();
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn run(
    config: &CleanerConfig,
    partitions: &PartitionSource,
    stop: &StopSignal,
    now_ms: fn() -> i64,
) {
    let mut map: Option<OffsetMap> = None;
    while !stop.is_stopped() {
        let now = now_ms();
        let mut due: Vec<(f64, Arc<PartitionLog>)> = partitions()
            .into_iter()
            .filter_map(|p| {
                let urgency = p.cleaning_snapshot()?.urgency(now)?;
                Some((urgency, p))
            })
            .collect();
        due.sort_by(|a, b| b.0.total_cmp(&a.0));
        let Some(log) = due
            .into_iter()
            .map(|(_, p)| p)
            .find(|p| p.try_claim_cleaning())
        else {
            stop.wait(config.backoff);
            continue;
        };
        let map = map.get_or_insert_with(|| {
            OffsetMap::new(
                config.dedupe_buffer_size / config.threads.max(1),
                config.load_factor,
            )
        });
        let started = Instant::now();
        let result = clean_partition(&log, map, config, stop, now);
        log.release_cleaning();
        match result {
            Ok(Some(s)) => tracing::info!(
                dir = %log.dir().display(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                bytes_before = s.bytes_before,
                bytes_after = s.bytes_after,
                records_before = s.records_before,
                records_after = s.records_after,
                keys = s.keys,
                cleaned_up_to = s.cleaned_up_to,
                "log cleaned"
            ),
            Ok(None) => {
                stop.wait(config.backoff);
            }
            Err(e) => {
                tracing::error!(dir = %log.dir().display(), "cleaning failed, partition left uncleaned until restart: {e}");
                log.mark_uncleanable();
            }
        }
    }
}

/// Points of the swap protocol where tests simulate a crash.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CrashPoint {
    Built,
    Committed,
    OldDeleted,
    IndexesRenamed,
    LogRenamed,
}

#[cfg(test)]
thread_local! {
    pub(crate) static CRASH_AT: std::cell::Cell<Option<CrashPoint>> = const { std::cell::Cell::new(None) };
}

#[cfg(test)]
fn crash_point(at: CrashPoint) -> std::io::Result<()> {
    if CRASH_AT.with(|c| c.get()) == Some(at) {
        return Err(std::io::Error::other(format!("simulated crash at {at:?}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::partition::tests::config;
    use crate::log::{AppendError, CleanupPolicy};
    use crate::records::record::{build_batch, decode_records, BatchMeta, NewRecord};
    use crate::records::Compression;
    use bytes::Bytes;

    fn compacted() -> LogConfig {
        LogConfig {
            segment_bytes: 400,
            cleanup_policy: CleanupPolicy {
                compact: true,
                delete: false,
            },
            min_cleanable_dirty_ratio: 0.01,
            delete_retention_ms: 500,
            ..config()
        }
    }

    fn cleaner() -> CleanerConfig {
        CleanerConfig {
            dedupe_buffer_size: 1 << 16,
            ..CleanerConfig::default()
        }
    }

    fn records(pairs: &[(&str, Option<&str>)], ts: i64) -> Vec<NewRecord> {
        pairs
            .iter()
            .map(|(k, v)| NewRecord {
                timestamp: ts,
                key: Some(k.as_bytes().to_vec()),
                value: v.map(|v| v.as_bytes().to_vec()),
                headers: vec![("h".into(), Some(b"x".to_vec()))],
            })
            .collect()
    }

    fn kv(pairs: &[(&str, Option<&str>)], ts: i64) -> Bytes {
        Bytes::from(build_batch(
            &records(pairs, ts),
            Compression::None,
            &BatchMeta::default(),
        ))
    }

    /// (offset, key, value) of stored records.
    type Records = Vec<(i64, String, Option<String>)>;

    /// Every stored record from the log start, plus each batch's codec.
    fn stored(log: &PartitionLog) -> (Records, Vec<i16>) {
        let mut out = Vec::new();
        let mut codecs = Vec::new();
        let mut next = log.log_start_offset();
        while next < log.high_watermark() {
            let slice = log.read(next, 1 << 20, true).unwrap();
            let mut rest = &slice.records[..];
            if rest.is_empty() {
                break;
            }
            while !rest.is_empty() {
                let (_, size) = BatchHeader::peek_size(rest).unwrap();
                let (header, recs) = decode_records(&rest[..size], 1 << 20).unwrap();
                codecs.push(header.attributes & 7);
                for r in recs.into_iter().filter(|r| r.offset >= next) {
                    assert_eq!(r.headers, vec![("h".to_string(), Some(b"x".to_vec()))]);
                    out.push((
                        r.offset,
                        String::from_utf8(r.key.unwrap()).unwrap(),
                        r.value.map(|v| String::from_utf8(v).unwrap()),
                    ));
                }
                next = next.max(header.last_offset() + 1);
                rest = &rest[size..];
            }
        }
        (out, codecs)
    }

    /// The latest (offset, value) of every key in `records`.
    fn latest(records: &[(i64, String, Option<String>)]) -> Records {
        let mut m: std::collections::BTreeMap<String, (i64, Option<String>)> = Default::default();
        for (o, k, v) in records {
            m.insert(k.clone(), (*o, v.clone()));
        }
        let mut v: Vec<_> = m.into_iter().map(|(k, (o, v))| (o, k, v)).collect();
        v.sort();
        v
    }

    fn log_bytes(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum()
    }

    /// 10 keys overwritten 20 times, one record per batch; the last few stay in the active segment.
    fn overwritten(dir: &Path) -> PartitionLog {
        let log = PartitionLog::open(dir, compacted()).unwrap();
        for round in 0..20 {
            for k in 0..10 {
                let v = format!("v{round}");
                log.append(kv(&[(&format!("k{k}"), Some(&v))], 100), 0)
                    .unwrap();
            }
        }
        log
    }

    /// A transactional batch of producer `pid` (epoch 0) at sequence `seq`.
    fn txn_kv(pid: i64, seq: i32, pairs: &[(&str, Option<&str>)]) -> Bytes {
        let meta = BatchMeta {
            base_offset: 0,
            producer_id: pid,
            producer_epoch: 0,
            base_sequence: seq,
        };
        let mut bytes = build_batch(&records(pairs, 100), Compression::None, &meta);
        bytes[22] |= 0x10; // attributes: transactional
        let crc = batch::compute_crc(&bytes);
        bytes[17..21].copy_from_slice(&crc.to_be_bytes());
        Bytes::from(bytes)
    }

    /// `(user records as (offset, key, value), control batch offsets)` from the log start.
    fn with_markers(log: &PartitionLog) -> (Records, Vec<i64>) {
        let (mut records, mut markers) = (Vec::new(), Vec::new());
        let slice = log.read(log.log_start_offset(), 1 << 24, true).unwrap();
        // The read stops at a segment's end: read segment after segment.
        let mut next = log.log_start_offset();
        let mut rest = slice.records;
        loop {
            let mut at = &rest[..];
            while let Some(header) = BatchHeader::parse(at) {
                let size = header.total_size();
                let (_, recs) = decode_records(&at[..size], 1 << 20).unwrap();
                if header.is_control() {
                    markers.push(header.base_offset);
                } else {
                    records.extend(recs.into_iter().map(|r| {
                        (
                            r.offset,
                            String::from_utf8(r.key.unwrap()).unwrap(),
                            r.value.map(|v| String::from_utf8(v).unwrap()),
                        )
                    }));
                }
                next = header.last_offset() + 1;
                at = &at[size..];
            }
            if next >= log.high_watermark() {
                break;
            }
            rest = log.read(next, 1 << 24, true).unwrap().records;
            if rest.is_empty() {
                break;
            }
        }
        (records, markers)
    }

    fn filler(log: &PartitionLog, n: usize) {
        for i in 0..n {
            log.append(kv(&[(&format!("f{i}"), Some("x"))], 100), 0)
                .unwrap();
        }
    }

    #[test]
    fn aborted_records_go_and_markers_outlive_their_transactions_by_delete_retention_ms() {
        let dir = tempfile::tempdir().unwrap();
        let log = PartitionLog::open(dir.path(), compacted()).unwrap();
        log.append(txn_kv(1, 0, &[("k1", Some("aborted"))]), 0)
            .unwrap(); // 0
        log.append(txn_kv(2, 0, &[("k1", Some("committed"))]), 0)
            .unwrap(); // 1
        log.append_marker(1, 0, false, 0, 0).unwrap(); // 2
        log.append_marker(2, 0, true, 0, 0).unwrap(); // 3
        log.append(txn_kv(3, 0, &[("k2", Some("open"))]), 0)
            .unwrap(); // 4
        filler(&log, 12);
        assert_eq!(log.last_stable_offset(), 4);
        clean_now(&log, &cleaner(), 1000).unwrap().expect("due");
        let (records, markers) = with_markers(&log);
        assert!(
            !records.iter().any(|r| r.2.as_deref() == Some("aborted")),
            "{records:?}"
        );
        assert!(records.contains(&(1, "k1".into(), Some("committed".into()))));
        assert_eq!(markers, vec![2, 3], "markers stay until their horizon");
        assert!(
            clean_now(&log, &cleaner(), 1000).unwrap().is_none(),
            "what the open transaction holds back is not due (no cleaning spins on it)"
        );
        assert_eq!(log.aborted_transactions(0, 100).len(), 1);
        let filler_before: Vec<_> = records.iter().filter(|r| r.0 > 4).cloned().collect();
        assert!(
            filler_before.len() == 12,
            "nothing at or past the LSO is cleaned"
        );

        // The open transaction commits, overwriting nothing; k1 is overwritten by a plain write.
        log.append_marker(3, 0, true, 0, 0).unwrap();
        log.append(kv(&[("k1", Some("plain"))], 100), 0).unwrap();
        filler(&log, 12);
        clean_now(&log, &cleaner(), 2000).unwrap().expect("due");
        let (records, markers) = with_markers(&log);
        assert!(!records.iter().any(|r| r.2.as_deref() == Some("committed")));
        assert!(records.iter().any(|r| r.2.as_deref() == Some("open")));
        assert!(
            !markers.contains(&2),
            "the abort marker's horizon passed: {markers:?}"
        );
        assert!(
            markers.contains(&3),
            "stamped only now its transaction is empty"
        );
        assert!(log.aborted_transactions(0, 100).is_empty());
        filler(&log, 12);
        clean_now(&log, &cleaner(), 3000).unwrap().expect("due");
        let (_, markers) = with_markers(&log);
        assert!(!markers.contains(&3), "{markers:?}");
        assert!(
            markers.iter().any(|&m| m > 4),
            "producer 3's marker stays: its record does"
        );

        // Producer state and open transactions survive cleaning and a restart.
        log.close().unwrap();
        drop(log);
        let log = PartitionLog::open(dir.path(), compacted()).unwrap();
        assert!(log.ongoing_transactions().is_empty());
        assert_eq!(log.last_stable_offset(), log.high_watermark());
        assert!(
            log.append(txn_kv(2, 0, &[("k1", Some("committed"))]), 0)
                .unwrap()
                .duplicate
        );
        assert!(log
            .append(txn_kv(1, 1, &[("k9", Some("again"))]), 0)
            .is_ok());
    }

    #[test]
    fn offset_map_keeps_the_latest_offset_and_refuses_when_full() {
        let mut map = OffsetMap::new(16 * MAP_ENTRY_BYTES, 0.5);
        assert!(map.put(b"a", 5));
        assert!(
            map.put(b"a", 3),
            "an older offset is accepted but does not win"
        );
        assert_eq!(map.get(b"a"), Some(5));
        assert_eq!(map.get(b"b"), None);
        for i in 1..8 {
            assert!(map.put(format!("k{i}").as_bytes(), i));
        }
        assert!(!map.put(b"one too many", 9));
        assert!(map.put(b"a", 10), "updating a present key needs no room");
        assert_eq!(map.len(), 8);
        map.clear();
        assert!(map.is_empty() && map.get(b"a").is_none());
    }

    #[test]
    fn cleaning_keeps_the_latest_record_per_key_at_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let log = overwritten(dir.path());
        let (before, _) = stored(&log);
        let active_base = log.cleaning_snapshot().unwrap().active_base;
        let size_before = log_bytes(dir.path());
        let stats = clean_now(&log, &cleaner(), 1000).unwrap().expect("due");
        assert!(stats.records_after < stats.records_before);
        let (after, _) = stored(&log);
        // Below the active segment: exactly the latest per key; the active segment: untouched.
        let cleaned: Vec<_> = after
            .iter()
            .filter(|r| r.0 < active_base)
            .cloned()
            .collect();
        let below: Vec<_> = before
            .iter()
            .filter(|r| r.0 < active_base)
            .cloned()
            .collect();
        let active: Vec<_> = before
            .iter()
            .filter(|r| r.0 >= active_base)
            .cloned()
            .collect();
        let expected: Vec<_> = latest(&below)
            .into_iter()
            .filter(|r| !active.iter().any(|a| a.1 == r.1))
            .collect();
        let mut want = expected.clone();
        want.extend(active.iter().cloned());
        let kept_below: Vec<_> = after
            .iter()
            .filter(|r| r.0 < active_base)
            .cloned()
            .collect();
        assert_eq!(
            kept_below
                .iter()
                .map(|r| &r.1)
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            kept_below.len(),
            "one record per key below the active segment: {cleaned:?}"
        );
        assert_eq!(
            latest(&after),
            latest(&before),
            "every key's latest value and offset"
        );
        assert_eq!(&after[after.len() - active.len()..], &active[..]);
        assert_eq!(log.high_watermark(), 200);
        assert!(log_bytes(dir.path()) < size_before / 2);
        // Reopened, the cleaned log reads the same and takes appends at the same offset.
        log.close().unwrap();
        drop(log);
        let log = PartitionLog::open(dir.path(), compacted()).unwrap();
        assert_eq!(stored(&log).0, after);
        // Nothing new is dirty: a second cleaning waits.
        assert!(clean_now(&log, &cleaner(), 1000).unwrap().is_none());
        assert_eq!(
            log.append(kv(&[("k0", Some("new"))], 100), 0)
                .unwrap()
                .base_offset,
            200
        );
    }

    #[test]
    fn the_active_segment_is_never_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig {
            segment_bytes: 1 << 20,
            ..compacted()
        };
        let log = PartitionLog::open(dir.path(), cfg).unwrap();
        for i in 0..50 {
            log.append(kv(&[("same", Some(&format!("v{i}")))], 1), 0)
                .unwrap();
        }
        assert!(clean_now(&log, &cleaner(), 1000).unwrap().is_none());
        assert_eq!(stored(&log).0.len(), 50);
    }

    #[test]
    fn tombstones_outlive_the_first_cleaning_by_delete_retention_ms() {
        let dir = tempfile::tempdir().unwrap();
        let log = PartitionLog::open(dir.path(), compacted()).unwrap();
        log.append(kv(&[("gone", Some("v1")), ("kept", Some("k1"))], 1), 0)
            .unwrap();
        log.append(kv(&[("gone", None)], 2), 0).unwrap();
        for i in 0..20 {
            log.append(kv(&[("filler", Some(&format!("f{i}")))], 3), 0)
                .unwrap();
        }
        clean_now(&log, &cleaner(), 1000).unwrap().expect("due");
        let (after, _) = stored(&log);
        assert!(after.contains(&(2, "gone".into(), None)), "{after:?}");
        assert!(!after.iter().any(|r| r.2.as_deref() == Some("v1")));
        assert!(after.contains(&(1, "kept".into(), Some("k1".into()))));
        // Still within delete.retention.ms (500 ms after the cleaning at 1000): kept.
        assert!(clean_now(&log, &cleaner(), 1400).unwrap().is_none());
        assert!(stored(&log).0.contains(&(2, "gone".into(), None)));
        // Past the horizon the cleaner runs for the tombstone alone and removes it.
        log.close().unwrap();
        drop(log);
        let log = PartitionLog::open(dir.path(), compacted()).unwrap();
        clean_now(&log, &cleaner(), 1501)
            .unwrap()
            .expect("the horizon passed");
        let (after, _) = stored(&log);
        assert!(!after.iter().any(|r| r.1 == "gone"), "{after:?}");
        assert!(after.contains(&(1, "kept".into(), Some("k1".into()))));
    }

    #[test]
    fn compressed_batches_are_rewritten_in_their_codec() {
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let dir = tempfile::tempdir().unwrap();
            let log = PartitionLog::open(dir.path(), compacted()).unwrap();
            for round in 0..8 {
                let v = format!("value-{round}");
                let recs = records(&[("a", Some(&v)), ("b", Some(&v)), ("c", Some(&v))], round);
                let bytes = build_batch(&recs, codec, &BatchMeta::default());
                log.append(Bytes::from(bytes), 0).unwrap();
            }
            let (before, _) = stored(&log);
            clean_now(&log, &cleaner(), 1000).unwrap().expect("due");
            let (after, codecs) = stored(&log);
            assert!(after.len() < before.len(), "{codec:?}");
            assert_eq!(latest(&after), latest(&before), "{codec:?}");
            assert!(
                codecs.iter().all(|c| *c == codec.id()),
                "{codec:?}: {codecs:?}"
            );
        }
    }

    #[test]
    fn an_idempotent_producer_continues_after_cleaning_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let log = PartitionLog::open(dir.path(), compacted()).unwrap();
        let meta = |seq| BatchMeta {
            base_offset: 0,
            producer_id: 7,
            producer_epoch: 0,
            base_sequence: seq,
        };
        let idem = |seq, v: &str| {
            Bytes::from(build_batch(
                &records(&[("k", Some(v)), ("k", Some(v))], 1),
                Compression::Zstd,
                &meta(seq),
            ))
        };
        log.append(idem(0, "a"), 0).unwrap();
        log.append(idem(2, "b"), 0).unwrap();
        // Another writer supersedes the producer's records, and rolls segments.
        for i in 0..20 {
            log.append(kv(&[("k", Some(&format!("plain{i}")))], 1), 0)
                .unwrap();
        }
        clean_now(&log, &cleaner(), 1000).unwrap().expect("due");
        let (after, _) = stored(&log);
        assert!(
            !after.iter().any(|r| r.0 < 4),
            "the producer's records went: {after:?}"
        );
        // Crash (no close), reopen: the producer state comes back from the kept empty batch.
        drop(log);
        let log = PartitionLog::open(dir.path(), compacted()).unwrap();
        let retry = log.append(idem(2, "b"), 0).unwrap();
        assert!(retry.duplicate, "the last batch is still recognised");
        assert_eq!(retry.base_offset, 2);
        let next = log.append(idem(4, "c"), 0).unwrap();
        assert!(!next.duplicate);
        assert_eq!(next.base_offset, 24);
        assert!(matches!(
            log.append(idem(9, "gap"), 0),
            Err(AppendError::OutOfOrderSequence { expected: 6, .. })
        ));
    }

    #[test]
    fn a_crash_at_any_step_of_the_swap_leaves_old_or_new_segments() {
        for at in [
            CrashPoint::Built,
            CrashPoint::Committed,
            CrashPoint::OldDeleted,
            CrashPoint::IndexesRenamed,
            CrashPoint::LogRenamed,
        ] {
            let dir = tempfile::tempdir().unwrap();
            let log = overwritten(dir.path());
            let (before, _) = stored(&log);
            CRASH_AT.with(|c| c.set(Some(at)));
            let result = clean_now(&log, &cleaner(), 1000);
            CRASH_AT.with(|c| c.set(None));
            assert!(result.is_err(), "{at:?}");
            drop(log);
            let log = PartitionLog::open(dir.path(), compacted()).unwrap();
            let (after, _) = stored(&log);
            assert_eq!(latest(&after), latest(&before), "{at:?}");
            if at == CrashPoint::Built {
                assert_eq!(after, before, "not committed: the old segments");
            } else {
                assert!(
                    after.len() < before.len(),
                    "{at:?}: committed: the new segment"
                );
                // No record that was not in the log before, none twice.
                assert!(after.iter().all(|r| before.contains(r)), "{at:?}");
                let offsets: std::collections::BTreeSet<_> = after.iter().map(|r| r.0).collect();
                assert_eq!(offsets.len(), after.len(), "{at:?}");
            }
            let leftovers: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".cleaned") || n.ends_with(".swap") || n.ends_with(".tmp"))
                .collect();
            assert!(leftovers.is_empty(), "{at:?}: {leftovers:?}");
            assert_eq!(
                log.append(kv(&[("k1", Some("after"))], 1), 0)
                    .unwrap()
                    .base_offset,
                200
            );
            // And the next cleaning works on the recovered log.
            clean_now(&log, &cleaner(), 1000).unwrap();
            assert_eq!(latest(&stored(&log).0), {
                let mut b = before.clone();
                b.push((200, "k1".into(), Some("after".into())));
                latest(&b)
            });
        }
    }

    #[test]
    fn retention_applies_to_compact_delete_but_not_to_compact_alone() {
        for (delete, expect_deleted) in [(true, true), (false, false)] {
            let dir = tempfile::tempdir().unwrap();
            let cfg = LogConfig {
                retention_ms: 1000,
                cleanup_policy: CleanupPolicy {
                    compact: true,
                    delete,
                },
                ..compacted()
            };
            let log = PartitionLog::open(dir.path(), cfg).unwrap();
            for i in 0..30 {
                log.append(kv(&[(&format!("k{i}"), Some("v"))], 10), 0)
                    .unwrap();
            }
            let deleted = log.enforce_retention(100_000).unwrap();
            assert_eq!(deleted > 0, expect_deleted, "delete={delete}");
        }
    }

    #[test]
    fn min_compaction_lag_holds_young_segments_back() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig {
            min_compaction_lag_ms: 10_000,
            ..compacted()
        };
        let log = PartitionLog::open(dir.path(), cfg).unwrap();
        for i in 0..30 {
            log.append(kv(&[("k", Some(&format!("v{i}")))], 5_000), 0)
                .unwrap();
        }
        assert!(
            clean_now(&log, &cleaner(), 6_000).unwrap().is_none(),
            "too young"
        );
        clean_now(&log, &cleaner(), 20_000)
            .unwrap()
            .expect("old enough");
    }

    #[test]
    fn reads_and_appends_are_served_correctly_while_cleanings_run() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(overwritten(dir.path()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let cleaning = {
            let (log, stop) = (log.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut cleaned = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    cleaned += usize::from(clean_now(&log, &cleaner(), 1000).unwrap().is_some());
                }
                cleaned
            })
        };
        let mut written = stored(&log).0;
        for round in 20..60 {
            for k in 0..10 {
                let v = format!("v{round}");
                let at = log
                    .append(kv(&[(&format!("k{k}"), Some(&v))], 100), 0)
                    .unwrap()
                    .base_offset;
                written.push((at, format!("k{k}"), Some(v)));
            }
            let (now, _) = stored(&log);
            assert_eq!(latest(&now), latest(&written), "round {round}");
            assert!(now.windows(2).all(|w| w[0].0 < w[1].0));
            assert!(now.iter().all(|r| written.contains(r)));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(cleaning.join().unwrap() > 1);
    }

    #[test]
    fn a_small_map_cleans_in_several_passes() {
        let dir = tempfile::tempdir().unwrap();
        let log = PartitionLog::open(dir.path(), compacted()).unwrap();
        for round in 0..5 {
            for k in 0..40 {
                log.append(
                    kv(&[(&format!("key{k}"), Some(&format!("r{round}")))], 1),
                    0,
                )
                .unwrap();
            }
        }
        let (before, _) = stored(&log);
        let small = CleanerConfig {
            dedupe_buffer_size: 64 * MAP_ENTRY_BYTES,
            load_factor: 0.5,
            ..cleaner()
        };
        let mut passes = 0;
        while clean_now(&log, &small, 1000).unwrap().is_some() {
            passes += 1;
            assert!(passes < 50);
        }
        assert!(passes > 1, "{passes}");
        let (after, _) = stored(&log);
        assert_eq!(latest(&after), latest(&before));
        assert!(
            after.len() < before.len() / 2,
            "{} of {}",
            after.len(),
            before.len()
        );
    }
}
