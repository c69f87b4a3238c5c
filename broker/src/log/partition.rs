//! [`PartitionLog`]: one partition's ordered list of segments, with appends, reads, offset and
//! timestamp lookups, retention, DeleteRecords, crash recovery and group-committed fsyncs.
//!
//! Locking: one mutex guards the segment list and counters; it is held for appends and for the
//! short lookups that start a read, never for the file reads themselves (segment files are
//! append-only, so a reader that captured a file handle and a size reads a stable prefix).
//! The log cleaner ([`super::cleaner`]) builds cleaned segments without the lock and swaps them
//! in under it; a reader holding a replaced segment's file keeps reading the old, unlinked file.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::records::batch::{self, BatchHeader, HEADER_LEN};
use crate::records::control;
use crate::records::record::decode_records;

use super::aborted::{AbortedIndex, AbortedTxn};
use super::cleaner::{self, CleanerCheckpoint, SegmentRef, Snapshot};
use super::producer_state::{Check, MarkerCheck, ProducerState, ProducerView};
use super::segment::{self, Segment};
use super::{
    AppendError, AppendOutcome, FlushPolicy, LogConfig, LogError, ReadSlice, TimestampType,
};

/// Written by a clean close, removed at open: its presence means the indexes can be trusted.
const CLEAN_SHUTDOWN: &str = ".clean-shutdown";
/// The log start offset raised by DeleteRecords.
const LOG_START_CHECKPOINT: &str = "log-start-offset";
/// Most bytes a batch may inflate to when decoded for a timestamp lookup.
const DECODE_LIMIT: usize = 256 << 20;
/// Most bytes of a control batch read at open to learn its marker type (ours are ~80 bytes).
const MARKER_READ_LIMIT: usize = 4096;

/// One partition's log. Share it as `Arc<PartitionLog>`.
#[derive(Debug)]
pub struct PartitionLog {
    dir: PathBuf,
    inner: Mutex<Inner>,
    /// The high watermark (= log end offset on a single node), watched by fetch long-polls.
    high_watermark: watch::Sender<i64>,
    /// Every offset below this is fsynced.
    durable: watch::Sender<i64>,
    /// Serializes fsyncs so that waiters queue behind one sync rather than each issuing one.
    sync_lock: tokio::sync::Mutex<()>,
    /// fsyncs issued for `acks=-1` (group commit makes this far smaller than the produce count).
    fsyncs: AtomicU64,
    /// A cleaner thread has claimed the partition (one cleaning at a time).
    cleaning: AtomicBool,
    /// Cleaning failed (damaged data, a too-small dedupe buffer): not retried until restart.
    uncleanable: AtomicBool,
}

#[derive(Debug)]
struct Inner {
    config: LogConfig,
    /// Sorted by base offset; the last one is active. Never empty.
    segments: Vec<Segment>,
    log_start_offset: i64,
    producers: ProducerState,
    /// Transactions ended by an abort marker, for read_committed fetches.
    aborted: AbortedIndex,
    /// Log files of rolled segments whose data may not be synced yet.
    unsynced: Vec<Arc<File>>,
    /// A segment file was created or removed since the directory was last synced.
    dir_dirty: bool,
    /// How far the cleaner got, persisted in `cleaner-offset-checkpoint`.
    cleaned: CleanerCheckpoint,
}

impl Inner {
    fn active(&self) -> &Segment {
        // `segments` is never empty: open and every deletion keep the active segment.
        &self.segments[self.segments.len() - 1]
    }
    fn active_mut(&mut self) -> &mut Segment {
        let last = self.segments.len() - 1;
        &mut self.segments[last]
    }
    fn next_offset(&self) -> i64 {
        self.active().next_offset
    }
    /// Applies a stored marker (`header` carries its assigned offset): the producer's open
    /// transaction ends, and an aborted one is indexed. An unreadable marker (`None`) still
    /// ends the transaction, as a commit: its records stay visible rather than held forever.
    fn end_transaction(&mut self, header: &BatchHeader, marker: Option<control::ControlMarker>) {
        let coordinator_epoch = marker.map_or(-1, |m| m.coordinator_epoch);
        let first = self.producers.end_transaction(header, coordinator_epoch);
        if let (Some(first_offset), Some(m)) = (first, marker) {
            if !m.commit {
                self.aborted.push(AbortedTxn {
                    producer_id: header.producer_id,
                    first_offset,
                    last_offset: header.base_offset,
                });
            }
        }
    }
    /// Last stable offset: no record at or past it belongs to an open transaction.
    fn last_stable_offset(&self) -> i64 {
        let hw = self.next_offset();
        self.producers
            .first_unstable_offset()
            .map_or(hw, |first| first.min(hw))
            .max(self.log_start_offset)
    }
}

/// Reads the marker of the control batch at `pos` (`None` if it is not one we understand).
fn read_marker(
    file: &File,
    pos: u64,
    header: &BatchHeader,
) -> Result<Option<control::ControlMarker>, LogError> {
    let size = header.total_size();
    if size > MARKER_READ_LIMIT {
        return Ok(None);
    }
    let mut bytes = vec![0u8; size];
    std::os::unix::fs::FileExt::read_exact_at(file, &mut bytes, pos)?;
    Ok(control::parse_marker(header, &bytes))
}

use crate::meta::sync_dir;

impl PartitionLog {
    /// Opens (creating if missing) the partition directory and recovers it.
    pub fn open(dir: &Path, config: LogConfig) -> Result<PartitionLog, LogError> {
        std::fs::create_dir_all(dir)?;
        // A cleaning interrupted by a crash is finished or discarded before segments are listed.
        cleaner::recover_swaps(dir)?;
        let marker = dir.join(CLEAN_SHUTDOWN);
        let clean = marker.exists();
        let mut bases = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let name = entry?.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(stem) = name.strip_suffix(".log") {
                match stem.parse::<i64>() {
                    Ok(base) if base >= 0 => bases.push(base),
                    _ => {
                        tracing::warn!(dir = %dir.display(), file = name, "ignoring a file that is not a segment")
                    }
                }
            }
        }
        bases.sort_unstable();
        let index_bytes = config.segment_index_bytes as usize;
        let interval = u64::from(config.index_interval_bytes);
        let mut segments = Vec::with_capacity(bases.len());
        for (i, &base) in bases.iter().enumerate() {
            let active = i + 1 == bases.len();
            let mut seg =
                Segment::open(dir, base, !clean && active, active, index_bytes, interval)?;
            if !clean && !active && !seg.tail_is_whole() {
                seg = Segment::open(dir, base, true, false, 0, interval)?;
            }
            segments.push(seg);
        }
        let checkpoint = read_checkpoint(&dir.join(LOG_START_CHECKPOINT))?;
        if segments.is_empty() {
            segments.push(Segment::create(
                dir,
                checkpoint.unwrap_or(0).max(0),
                index_bytes,
            )?);
            sync_dir(dir)?;
        } else if let Some(last) = segments.last_mut() {
            last.unseal(index_bytes)?;
        }
        let first_base = segments.first().map_or(0, |s| s.base_offset);
        let mut inner = Inner {
            config,
            segments,
            log_start_offset: checkpoint.unwrap_or(first_base).max(first_base),
            producers: ProducerState::default(),
            aborted: AbortedIndex::default(),
            unsynced: Vec::new(),
            dir_dirty: false,
            cleaned: CleanerCheckpoint::read(dir)?,
        };
        inner.log_start_offset = inner.log_start_offset.min(inner.next_offset());
        inner.cleaned.first_dirty = inner
            .cleaned
            .first_dirty
            .clamp(inner.log_start_offset, inner.next_offset());
        // Producer state, open transactions and the aborted list are rebuilt from the log
        // itself (after the torn tail is cut, so they agree with what survived).
        for i in 0..inner.segments.len() {
            let log = inner.segments[i].log.clone();
            for (pos, header) in segment::headers(&log, inner.segments[i].size) {
                if header.is_control() {
                    let marker = read_marker(&log, pos, &header)?;
                    inner.end_transaction(&header, marker);
                } else {
                    inner.producers.record(&header);
                }
            }
        }
        let log_start = inner.log_start_offset;
        inner.aborted.prune_below(log_start);
        if clean {
            std::fs::remove_file(&marker)?;
            sync_dir(dir)?;
        }
        let end = inner.next_offset();
        tracing::debug!(dir = %dir.display(), clean, end, log_start = inner.log_start_offset, "partition opened");
        Ok(PartitionLog {
            dir: dir.to_path_buf(),
            inner: Mutex::new(inner),
            high_watermark: watch::Sender::new(end),
            durable: watch::Sender::new(end),
            sync_lock: tokio::sync::Mutex::new(()),
            fsyncs: AtomicU64::new(0),
            cleaning: AtomicBool::new(false),
            uncleanable: AtomicBool::new(false),
        })
    }

    /// Validates and appends one or more v2 record batches exactly as received in a Produce request.
    pub fn append(&self, records: Bytes, now_ms: i64) -> Result<AppendOutcome, AppendError> {
        let ranges = batch::split(&records).map_err(AppendError::from)?;
        let max = self.inner.lock().config.max_message_bytes;
        let mut batches = Vec::with_capacity(ranges.len());
        for r in ranges {
            let header = batch::validate(&records[r.clone()], max).map_err(AppendError::from)?;
            batches.push((r, header));
        }
        self.append_validated(&records, &batches, now_ms, None)
    }

    /// Whether the topic is compacted (`cleanup.policy` includes `compact`): its records need keys.
    pub fn is_compacted(&self) -> bool {
        self.inner.lock().config.cleanup_policy.compact
    }

    /// The largest batch this partition accepts (`max.message.bytes`).
    pub fn max_message_bytes(&self) -> u32 {
        self.inner.lock().config.max_message_bytes
    }

    /// Appends batches the caller has validated (the write path validates each batch once):
    /// `batches` are the ranges of `records` holding each batch and its parsed header.
    ///
    /// `producer`, when given, holds the headers of the batches a producer sent, one per stored
    /// batch: idempotence is judged and recorded by those (an in-place transform may store a
    /// different number of records than were sent, and the producer's sequence numbers must keep
    /// following what it sent).
    ///
    /// The bytes are not copied before the write: the broker-owned header fields (base offset,
    /// log-append time and then the CRC) are patched in a copy of the 61-byte header, which is
    /// written ahead of the untouched body.
    pub fn append_validated(
        &self,
        records: &[u8],
        batches: &[(std::ops::Range<usize>, BatchHeader)],
        now_ms: i64,
        producer: Option<&[BatchHeader]>,
    ) -> Result<AppendOutcome, AppendError> {
        if producer.is_some_and(|p| p.len() != batches.len()) {
            return Err(AppendError::InvalidRecord(
                "one producer header is needed per stored batch".into(),
            ));
        }
        let mut inner = self.inner.lock();
        for (i, (_, stored)) in batches.iter().enumerate() {
            let header = producer.map_or(stored, |p| &p[i]);
            if let Check::Duplicate {
                base_offset,
                last_offset,
            } = inner.producers.check(header)?
            {
                if batches.len() == 1 {
                    return Ok(AppendOutcome {
                        base_offset,
                        last_offset,
                        log_append_time: -1,
                        log_start_offset: inner.log_start_offset,
                        duplicate: true,
                    });
                }
                return Err(AppendError::InvalidRecord(
                    "a request mixing already-stored and new batches of one producer".into(),
                ));
            }
        }
        let log_append = inner.config.timestamp_type == TimestampType::LogAppendTime;
        let first_offset = inner.next_offset();
        let mut last_offset = first_offset - 1;
        for (i, (range, stored)) in batches.iter().enumerate() {
            let bytes = records.get(range.clone()).ok_or_else(|| {
                AppendError::CorruptMessage("batch range outside the request".into())
            })?;
            let header = self.write_batch(&mut inner, bytes, stored, now_ms)?;
            // Remember what the producer sent, at the offsets it was stored under.
            let sent = producer.map_or(&header, |p| &p[i]);
            inner
                .producers
                .record_stored(sent, header.base_offset, header.last_offset());
            last_offset = header.last_offset();
        }
        let outcome = AppendOutcome {
            base_offset: first_offset,
            last_offset,
            log_append_time: if log_append { now_ms } else { -1 },
            log_start_offset: inner.log_start_offset,
            duplicate: false,
        };
        let end = inner.next_offset();
        drop(inner);
        self.high_watermark.send_replace(end);
        Ok(outcome)
    }

    /// Writes one validated batch at the log end: the broker-owned header fields (base offset,
    /// log-append time and then the CRC) are patched in a copy of the 61-byte header, written
    /// ahead of the untouched body. Returns the header as stored.
    fn write_batch(
        &self,
        inner: &mut Inner,
        bytes: &[u8],
        stored: &BatchHeader,
        now_ms: i64,
    ) -> Result<BatchHeader, AppendError> {
        if bytes.len() < HEADER_LEN {
            return Err(AppendError::CorruptMessage(
                "batch shorter than its header".into(),
            ));
        }
        let mut header = *stored;
        let base = inner.next_offset();
        let mut head = [0u8; HEADER_LEN];
        head.copy_from_slice(&bytes[..HEADER_LEN]);
        batch::set_base_offset(&mut head, base);
        header.base_offset = base;
        if inner.config.timestamp_type == TimestampType::LogAppendTime {
            batch::set_log_append_time_split(&mut head, &bytes[HEADER_LEN..], now_ms);
            header.max_timestamp = now_ms;
            header.attributes |= 0x08;
        }
        self.maybe_roll(inner, bytes.len(), header.last_offset(), now_ms)?;
        let interval = u64::from(inner.config.index_interval_bytes);
        inner
            .active_mut()
            .append_parts(&head, &bytes[HEADER_LEN..], &header, interval, now_ms)?;
        Ok(header)
    }

    /// Appends a commit or abort marker for `producer_id`, ending its open transaction here
    /// (the last stable offset moves past it; an abort is indexed for read_committed fetches).
    ///
    /// A marker for a transaction already ended here (a retry) writes nothing and answers
    /// `duplicate`, with the log end as its offsets so a durability wait covers the first copy.
    /// A marker at an epoch older than the producer's is refused (`InvalidProducerEpoch`).
    pub fn append_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendOutcome, AppendError> {
        let mut inner = self.inner.lock();
        if inner.producers.check_marker(producer_id, producer_epoch)? == MarkerCheck::AlreadyEnded {
            let end = inner.next_offset() - 1;
            return Ok(AppendOutcome {
                base_offset: end,
                last_offset: end,
                log_append_time: -1,
                log_start_offset: inner.log_start_offset,
                duplicate: true,
            });
        }
        let bytes = control::build_marker(
            producer_id,
            producer_epoch,
            commit,
            coordinator_epoch,
            now_ms,
        );
        let header = BatchHeader::parse(&bytes)
            .ok_or_else(|| AppendError::CorruptMessage("a marker without a header".into()))?;
        let stored = self.write_batch(&mut inner, &bytes, &header, now_ms)?;
        inner.end_transaction(
            &stored,
            Some(control::ControlMarker {
                commit,
                coordinator_epoch,
            }),
        );
        let outcome = AppendOutcome {
            base_offset: stored.base_offset,
            last_offset: stored.last_offset(),
            log_append_time: if stored.has_log_append_time() {
                now_ms
            } else {
                -1
            },
            log_start_offset: inner.log_start_offset,
            duplicate: false,
        };
        let end = inner.next_offset();
        drop(inner);
        self.high_watermark.send_replace(end);
        Ok(outcome)
    }

    /// Last stable offset: min(first offset of the open transactions, high watermark).
    pub fn last_stable_offset(&self) -> i64 {
        self.inner.lock().last_stable_offset()
    }

    /// Open transactions here: `(producer id, first offset)`, earliest first.
    pub fn ongoing_transactions(&self) -> Vec<(i64, i64)> {
        self.inner.lock().producers.ongoing_transactions()
    }

    /// Every producer this partition knows (DescribeProducers).
    pub fn producers(&self) -> Vec<ProducerView> {
        self.inner.lock().producers.views()
    }

    /// Aborted transactions with records in `[from, to)`, by first offset.
    pub fn aborted_transactions(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        self.inner.lock().aborted.overlapping(from, to)
    }

    /// Rolls to a new segment if the batch does not fit the active one or it is too old.
    fn maybe_roll(
        &self,
        inner: &mut Inner,
        size: usize,
        last_offset: i64,
        now_ms: i64,
    ) -> Result<(), LogError> {
        let config = &inner.config;
        let active = inner.active();
        let too_old = active
            .first_append_ms
            .is_some_and(|t| now_ms.saturating_sub(t) >= config.roll_ms());
        if active.size > 0 && (too_old || !active.can_take(size, last_offset, config.segment_bytes))
        {
            let base = active.next_offset;
            let index_bytes = config.segment_index_bytes as usize;
            let new = Segment::create(&self.dir, base, index_bytes)?;
            let old = inner.active_mut();
            old.seal()?;
            let old_log = old.log.clone();
            inner.unsynced.push(old_log);
            inner.segments.push(new);
            inner.dir_dirty = true;
        }
        Ok(())
    }

    /// Resolves once everything up to and including `offset` is fsynced (group commit).
    pub async fn wait_durable(&self, offset: i64) -> Result<(), LogError> {
        if self.inner.lock().config.flush == FlushPolicy::PageCache {
            return Ok(());
        }
        loop {
            if *self.durable.borrow() > offset {
                return Ok(());
            }
            let _turn = self.sync_lock.lock().await;
            if *self.durable.borrow() > offset {
                return Ok(());
            }
            // Everything appended so far rides on this one fsync.
            let (end, files, dir) = {
                let mut inner = self.inner.lock();
                let mut files = std::mem::take(&mut inner.unsynced);
                files.push(inner.active().log.clone());
                let dir = std::mem::take(&mut inner.dir_dirty).then(|| self.dir.clone());
                (inner.next_offset(), files, dir)
            };
            self.fsyncs.fetch_add(1, Ordering::Relaxed);
            let started = crate::metrics::clock();
            let synced = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                for f in &files {
                    f.sync_data()?;
                }
                if let Some(dir) = dir {
                    sync_dir(&dir)?;
                }
                Ok(())
            })
            .await
            .map_err(|e| LogError::Io(std::io::Error::other(e)))?;
            if let Err(e) = synced {
                tracing::error!(dir = %self.dir.display(), "fsync failed: {e}");
                return Err(e.into());
            }
            crate::metrics::fsync(started, end - *self.durable.borrow());
            self.durable.send_if_modified(|d| {
                let moved = end > *d;
                *d = (*d).max(end);
                moved
            });
        }
    }

    /// Offsets of an already-stored retry of `header` (idempotent producer), if it is one.
    pub fn stored_duplicate(&self, header: &BatchHeader) -> Option<(i64, i64)> {
        match self.inner.lock().producers.check(header) {
            Ok(Check::Duplicate {
                base_offset,
                last_offset,
            }) => Some((base_offset, last_offset)),
            _ => None,
        }
    }

    /// The sequence the next batch of idempotent producer `producer_id` must start at here.
    pub fn next_sequence(&self, producer_id: i64) -> i32 {
        self.inner.lock().producers.next_sequence(producer_id)
    }

    /// How many segments the log has and their bytes on disk (metrics and the console).
    pub fn size(&self) -> (usize, u64) {
        let inner = self.inner.lock();
        let bytes = inner.segments.iter().map(|s| s.size).sum();
        (inner.segments.len(), bytes)
    }

    /// fsyncs issued so far (tests and metrics).
    pub fn fsync_count(&self) -> u64 {
        self.fsyncs.load(Ordering::Relaxed)
    }

    /// Whole batches from the one holding `offset`, up to `max_bytes` (at least one batch when
    /// `min_one_batch`, even if larger).
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<ReadSlice, LogError> {
        self.read_isolated(offset, max_bytes, min_one_batch, false)
    }

    /// [`read`](Self::read), and with `committed` (read_committed) only batches below the last
    /// stable offset, with the aborted transactions of what is returned.
    pub fn read_isolated(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
        committed: bool,
    ) -> Result<ReadSlice, LogError> {
        let (file, start, end, high_watermark, log_start_offset, stable) = {
            let inner = self.inner.lock();
            let hw = inner.next_offset();
            let lso = inner.log_start_offset;
            let stable = inner.last_stable_offset();
            if offset < lso || offset > hw {
                return Err(LogError::OffsetOutOfRange {
                    offset,
                    log_start_offset: lso,
                    high_watermark: hw,
                });
            }
            let found = inner
                .segments
                .iter()
                .skip(
                    inner
                        .segments
                        .partition_point(|s| s.base_offset <= offset)
                        .saturating_sub(1),
                )
                // Compaction may leave empty segments and gaps: the first one holding data at
                // or past `offset`.
                .find(|s| s.next_offset > offset && s.size > 0);
            let empty = ReadSlice {
                records: Bytes::new(),
                high_watermark: hw,
                last_stable_offset: stable,
                log_start_offset: lso,
                aborted: Vec::new(),
            };
            if committed && offset >= stable {
                return Ok(empty);
            }
            match found {
                Some(seg) => (
                    seg.log.clone(),
                    seg.position_for(offset),
                    seg.size,
                    hw,
                    lso,
                    stable,
                ),
                None => return Ok(empty),
            }
        };
        let upper = if committed { stable } else { i64::MAX };
        let (records, next) =
            read_batches(&file, start, end, offset, max_bytes, min_one_batch, upper)?;
        let aborted = if committed && !records.is_empty() {
            self.aborted_transactions(offset, next)
        } else {
            Vec::new()
        };
        Ok(ReadSlice {
            records,
            high_watermark,
            last_stable_offset: stable,
            log_start_offset,
            aborted,
        })
    }

    /// A receiver that changes whenever the high watermark moves (fetch long-poll).
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.high_watermark.subscribe()
    }

    pub fn high_watermark(&self) -> i64 {
        self.inner.lock().next_offset()
    }

    pub fn log_start_offset(&self) -> i64 {
        self.inner.lock().log_start_offset
    }

    /// The first offset whose record timestamp is >= `timestamp`, with that timestamp.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(i64, i64)>, LogError> {
        let (file, start_pos, end, from) = {
            let inner = self.inner.lock();
            let lso = inner.log_start_offset;
            let Some(seg) = inner
                .segments
                .iter()
                .find(|s| s.max_timestamp >= timestamp && s.next_offset > lso)
            else {
                return Ok(None);
            };
            let from = seg.offset_before_timestamp(timestamp).max(lso);
            (seg.log.clone(), seg.position_for(from), seg.size, from)
        };
        let mut pos = start_pos;
        while pos < end {
            let mut head = [0u8; HEADER_LEN];
            std::os::unix::fs::FileExt::read_exact_at(&*file, &mut head, pos)?;
            let header = BatchHeader::parse(&head)
                .ok_or_else(|| LogError::Corrupt("short batch header".into()))?;
            let size = header.total_size();
            if header.last_offset() >= from && header.max_timestamp >= timestamp {
                let mut bytes = vec![0u8; size];
                std::os::unix::fs::FileExt::read_exact_at(&*file, &mut bytes, pos)?;
                let (_, records) = decode_records(&bytes, DECODE_LIMIT)
                    .map_err(|e| LogError::Corrupt(e.to_string()))?;
                if let Some(r) = records
                    .iter()
                    .find(|r| r.offset >= from && r.timestamp >= timestamp)
                {
                    return Ok(Some((r.offset, r.timestamp)));
                }
            }
            pos += size as u64;
        }
        Ok(None)
    }

    /// The largest timestamp in the log and the last offset of the batch carrying it.
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        let inner = self.inner.lock();
        inner
            .segments
            .iter()
            .filter(|s| s.max_timestamp >= 0 && s.next_offset > inner.log_start_offset)
            .max_by_key(|s| s.max_timestamp)
            .map(|s| (s.max_timestamp, s.offset_of_max_timestamp))
    }

    /// DeleteRecords: moves the log start offset up to `offset` (-1 = high watermark).
    pub fn delete_records_before(&self, offset: i64) -> Result<i64, LogError> {
        let mut inner = self.inner.lock();
        let hw = inner.next_offset();
        let target = if offset == -1 { hw } else { offset };
        if target < 0 || target > hw {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start_offset: inner.log_start_offset,
                high_watermark: hw,
            });
        }
        if target > inner.log_start_offset {
            crate::meta::write_atomically(
                &self.dir.join(LOG_START_CHECKPOINT),
                target.to_string().as_bytes(),
            )?;
            inner.log_start_offset = target;
            self.delete_old_segments(&mut inner, |_, _| false)?;
        }
        Ok(inner.log_start_offset)
    }

    /// Deletes leading non-active segments that are below the log start offset or for which
    /// `expired(segment, bytes of the log from it on)` holds.
    fn delete_old_segments(
        &self,
        inner: &mut Inner,
        expired: impl Fn(&Segment, u64) -> bool,
    ) -> Result<usize, LogError> {
        let mut total: u64 = inner.segments.iter().map(|s| s.size).sum();
        let mut count = 0;
        while inner.segments.len() > 1 {
            let first = &inner.segments[0];
            if !(first.next_offset <= inner.log_start_offset || expired(first, total)) {
                break;
            }
            total -= first.size;
            let seg = inner.segments.remove(0);
            seg.delete()?;
            count += 1;
        }
        if count > 0 {
            inner.log_start_offset = inner.log_start_offset.max(inner.segments[0].base_offset);
            inner.dir_dirty = true;
        }
        let log_start = inner.log_start_offset;
        inner.aborted.prune_below(log_start);
        Ok(count)
    }

    /// Deletes segments past `retention.ms` / `retention.bytes`; returns how many went.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<usize, LogError> {
        let mut inner = self.inner.lock();
        let retention_ms = inner.config.retention_ms;
        let retention_bytes = inner.config.retention_bytes;
        // `cleanup.policy=compact` alone keeps segments however old or large the log is.
        let delete = inner.config.cleanup_policy.delete;
        let deleted = self.delete_old_segments(&mut inner, |seg, total| {
            if !delete {
                return false;
            }
            // Compaction can leave a segment empty; it holds nothing to keep.
            if seg.size == 0 {
                return true;
            }
            let too_old = retention_ms >= 0
                && seg.max_timestamp >= 0
                && now_ms.saturating_sub(seg.max_timestamp) > retention_ms;
            let too_big = retention_bytes >= 0
                && total > retention_bytes as u64
                && total - seg.size >= retention_bytes as u64;
            too_old || too_big
        })?;
        if deleted > 0 {
            tracing::info!(dir = %self.dir.display(), deleted, log_start = inner.log_start_offset, "retention deleted segments");
        }
        Ok(deleted)
    }

    pub fn update_config(&self, config: LogConfig) {
        self.inner.lock().config = config;
    }

    /// Flushes and writes the clean-shutdown marker.
    pub fn close(&self) -> Result<(), LogError> {
        let mut inner = self.inner.lock();
        for f in std::mem::take(&mut inner.unsynced) {
            f.sync_data()?;
        }
        inner.active().log.sync_data()?;
        inner.active_mut().seal()?;
        File::create(self.dir.join(CLEAN_SHUTDOWN))?.sync_all()?;
        sync_dir(&self.dir)?;
        Ok(())
    }

    /// The partition's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What the cleaner needs to decide and plan a cleaning: the non-active segments, the
    /// config and the checkpoint. `None` unless the topic is compacted and cleaning may run.
    pub(crate) fn cleaning_snapshot(&self) -> Option<Snapshot> {
        if self.uncleanable.load(Ordering::Relaxed) {
            return None;
        }
        let inner = self.inner.lock();
        if !inner.config.cleanup_policy.compact {
            return None;
        }
        let n = inner.segments.len() - 1;
        Some(Snapshot {
            config: inner.config.clone(),
            segments: inner.segments[..n]
                .iter()
                .map(|s| SegmentRef {
                    base_offset: s.base_offset,
                    next_offset: s.next_offset,
                    size: s.size,
                    max_timestamp: s.max_timestamp,
                    log: s.log.clone(),
                })
                .collect(),
            active_base: inner.active().base_offset,
            checkpoint: inner.cleaned,
            last_stable_offset: inner.last_stable_offset(),
            aborted: inner.aborted.entries().to_vec(),
        })
    }

    /// Base offset of each idempotent producer's last stored batch.
    pub(crate) fn last_producer_batches(&self) -> std::collections::HashMap<i64, i64> {
        self.inner.lock().producers.last_batches()
    }

    /// Claims the partition for one cleaner thread; `false` if another holds it.
    pub(crate) fn try_claim_cleaning(&self) -> bool {
        self.cleaning
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    pub(crate) fn release_cleaning(&self) {
        self.cleaning.store(false, Ordering::Release);
    }

    /// Stops cleaning this partition until the broker restarts.
    pub(crate) fn mark_uncleanable(&self) {
        self.uncleanable.store(true, Ordering::Relaxed);
    }

    /// Swaps the cleaned segment built aside at `replaced[0]`'s base offset in for `replaced`
    /// (consecutive non-active segments, followed by the segment at `next_base`). Returns
    /// `false`, changing nothing, if the segments changed meanwhile (retention, DeleteRecords).
    ///
    /// `dropped_markers` are the offsets of the abort markers the cleaning removed: their
    /// aborted-index entries go in the same critical section as the segments.
    pub(crate) fn swap_cleaned(
        &self,
        replaced: &[SegmentRef],
        next_base: i64,
        dropped_markers: &[i64],
    ) -> Result<bool, LogError> {
        let mut inner = self.inner.lock();
        let Some(first) = replaced.first() else {
            return Ok(false);
        };
        let Some(at) = inner
            .segments
            .iter()
            .position(|s| s.base_offset == first.base_offset)
        else {
            return Ok(false);
        };
        let same = inner.segments.len() > at + replaced.len()
            && inner.segments[at + replaced.len()].base_offset == next_base
            && replaced.iter().zip(&inner.segments[at..]).all(|(r, s)| {
                r.base_offset == s.base_offset && Arc::ptr_eq(&r.log, &s.log) && r.size == s.size
            });
        if !same {
            return Ok(false);
        }
        let bases: Vec<i64> = replaced.iter().map(|r| r.base_offset).collect();
        cleaner::commit_swap(&self.dir, &bases, next_base)?;
        let interval = u64::from(inner.config.index_interval_bytes);
        let index_bytes = inner.config.segment_index_bytes as usize;
        let new = Segment::open(
            &self.dir,
            first.base_offset,
            false,
            false,
            index_bytes,
            interval,
        )?;
        // The replaced segments' files are gone; dropping them only unmaps and closes.
        inner
            .segments
            .splice(at..at + replaced.len(), std::iter::once(new));
        inner.aborted.remove_markers(dropped_markers);
        Ok(true)
    }

    /// Records (and persists) how far the cleaner got.
    pub(crate) fn set_cleaner_checkpoint(
        &self,
        checkpoint: CleanerCheckpoint,
    ) -> Result<(), LogError> {
        checkpoint.write(&self.dir)?;
        self.inner.lock().cleaned = checkpoint;
        Ok(())
    }
}

fn read_checkpoint(path: &Path) -> Result<Option<i64>, LogError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            text.trim().parse().map(Some).map_err(|_| {
                LogError::Corrupt(format!("{} does not hold an offset", path.display()))
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Reads whole batches from `start` (a position at or before the batch holding `offset`) up to
/// `end`, skipping batches below `offset`, within `max_bytes` (or one batch if `min_one`), and
/// none that starts at or past `upper`. Returns them and the offset after the last one.
fn read_batches(
    file: &File,
    start: u64,
    end: u64,
    offset: i64,
    max_bytes: usize,
    min_one: bool,
    upper: i64,
) -> Result<(Bytes, i64), LogError> {
    let mut pos = start;
    while pos < end {
        let (_, size, last) = segment::peek(file, pos)
            .ok_or_else(|| LogError::Corrupt("unreadable batch header".into()))?;
        if last >= offset {
            break;
        }
        pos += size as u64;
    }
    let begin = pos;
    let mut next = offset;
    while pos < end {
        let (base, size, last) = segment::peek(file, pos)
            .ok_or_else(|| LogError::Corrupt("unreadable batch header".into()))?;
        if base >= upper {
            break;
        }
        if (pos - begin) as usize + size > max_bytes {
            if pos == begin && min_one {
                pos += size as u64;
                next = last + 1;
            }
            break;
        }
        pos += size as u64;
        next = last + 1;
    }
    let mut buf = vec![0u8; (pos - begin) as usize];
    std::os::unix::fs::FileExt::read_exact_at(file, &mut buf, begin)?;
    Ok((Bytes::from(buf), next))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::records::record::{build_batch, BatchMeta, NewRecord};
    use crate::records::Compression;

    pub(crate) fn config() -> LogConfig {
        LogConfig {
            segment_bytes: 1 << 20,
            segment_ms: i64::MAX,
            retention_ms: -1,
            retention_bytes: -1,
            index_interval_bytes: 256,
            segment_index_bytes: 1 << 16,
            max_message_bytes: 1 << 20,
            timestamp_type: TimestampType::CreateTime,
            flush: FlushPolicy::Fsync,
            cleanup_policy: super::super::CleanupPolicy::DELETE,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            min_cleanable_dirty_ratio: 0.5,
            delete_retention_ms: 86_400_000,
        }
    }

    fn batch(values: &[&str], timestamp: i64) -> Bytes {
        batch_with(values, timestamp, Compression::None, BatchMeta::default())
    }

    fn batch_with(values: &[&str], timestamp: i64, codec: Compression, meta: BatchMeta) -> Bytes {
        let records: Vec<NewRecord> = values
            .iter()
            .map(|v| NewRecord {
                timestamp,
                key: Some(b"k".to_vec()),
                value: Some(v.as_bytes().to_vec()),
                headers: vec![],
            })
            .collect();
        Bytes::from(build_batch(&records, codec, &meta))
    }

    fn idempotent(pid: i64, seq: i32, values: &[&str]) -> Bytes {
        batch_with(
            values,
            1,
            Compression::None,
            BatchMeta {
                base_offset: 0,
                producer_id: pid,
                producer_epoch: 0,
                base_sequence: seq,
            },
        )
    }

    /// Every record value readable from `offset` on, in order.
    fn values_from(log: &PartitionLog, offset: i64) -> Vec<(i64, String)> {
        let mut out = Vec::new();
        let mut next = offset;
        while next < log.high_watermark() {
            let slice = log.read(next, 1 << 20, true).unwrap();
            let mut rest = &slice.records[..];
            while !rest.is_empty() {
                let (_, size) = BatchHeader::peek_size(rest).unwrap();
                let (_, records) = decode_records(&rest[..size], 1 << 20).unwrap();
                for r in records.into_iter().filter(|r| r.offset >= next) {
                    out.push((r.offset, String::from_utf8(r.value.unwrap()).unwrap()));
                }
                rest = &rest[size..];
            }
            next = out.last().map_or(next, |(o, _)| o + 1);
        }
        out
    }

    #[test]
    fn appends_get_consecutive_offsets_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let log = PartitionLog::open(dir.path(), config()).unwrap();
        let a = log.append(batch(&["a", "b"], 10), 0).unwrap();
        let b = log.append(batch(&["c"], 11), 0).unwrap();
        assert_eq!((a.base_offset, a.last_offset), (0, 1));
        assert_eq!((b.base_offset, b.last_offset), (2, 2));
        assert_eq!(log.high_watermark(), 3);
        assert_eq!(
            values_from(&log, 1),
            vec![(1, "b".into()), (2, "c".into())],
            "a fetch from mid-batch returns the whole batch; the client skips earlier records"
        );
        assert!(log.read(3, 100, true).unwrap().records.is_empty());
        assert!(matches!(
            log.read(4, 100, true),
            Err(LogError::OffsetOutOfRange { .. })
        ));
    }

    #[test]
    fn reads_cross_segment_rolls_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config();
        cfg.segment_bytes = 300;
        let log = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
        for i in 0..50 {
            log.append(batch(&[&format!("v{i}")], i), 0).unwrap();
        }
        let segments = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "log")
            })
            .count();
        assert!(segments > 5, "rolled into {segments} segments");
        let expected: Vec<(i64, String)> = (0..50).map(|i| (i, format!("v{i}"))).collect();
        assert_eq!(values_from(&log, 0), expected);
        log.close().unwrap();
        drop(log);
        let log = PartitionLog::open(dir.path(), cfg).unwrap();
        assert_eq!(values_from(&log, 0), expected);
        assert_eq!(log.append(batch(&["more"], 99), 0).unwrap().base_offset, 50);
    }

    #[test]
    fn max_compaction_lag_rolls_the_active_segment_of_a_compacted_topic() {
        let segments = |dir: &Path| {
            std::fs::read_dir(dir)
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .path()
                        .extension()
                        .is_some_and(|x| x == "log")
                })
                .count()
        };
        for (compact, expected) in [(true, 2), (false, 1)] {
            let dir = tempfile::tempdir().unwrap();
            let mut cfg = config();
            cfg.max_compaction_lag_ms = 1_000;
            if compact {
                cfg.cleanup_policy = super::super::CleanupPolicy {
                    compact: true,
                    delete: false,
                };
            }
            let log = PartitionLog::open(dir.path(), cfg).unwrap();
            log.append(batch(&["old"], 0), 10_000).unwrap();
            log.append(batch(&["young"], 0), 10_500).unwrap();
            assert_eq!(segments(dir.path()), 1, "not yet past the lag");
            log.append(batch(&["late"], 0), 11_001).unwrap();
            assert_eq!(segments(dir.path()), expected, "compact={compact}");
        }
    }

    #[test]
    fn a_torn_tail_is_truncated_and_good_records_kept() {
        let dir = tempfile::tempdir().unwrap();
        let log = PartitionLog::open(dir.path(), config()).unwrap();
        for i in 0..10 {
            log.append(batch(&[&format!("v{i}")], i), 0).unwrap();
        }
        // A crash: no close(). Then the last batch is cut in half and garbage follows.
        drop(log);
        let file = dir.path().join(segment::file_name(0, "log"));
        let len = std::fs::metadata(&file).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
        f.set_len(len - 10).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, b"garbage garbage", len - 10).unwrap();
        drop(f);
        let log = PartitionLog::open(dir.path(), config()).unwrap();
        assert_eq!(log.high_watermark(), 9);
        let expected: Vec<(i64, String)> = (0..9).map(|i| (i, format!("v{i}"))).collect();
        assert_eq!(values_from(&log, 0), expected);
        assert_eq!(log.append(batch(&["new"], 1), 0).unwrap().base_offset, 9);
    }

    #[test]
    fn a_flipped_byte_in_the_tail_is_dropped_on_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let log = PartitionLog::open(dir.path(), config()).unwrap();
        for i in 0..5 {
            log.append(batch(&[&format!("v{i}")], i), 0).unwrap();
        }
        drop(log);
        let file = dir.path().join(segment::file_name(0, "log"));
        let mut bytes = std::fs::read(&file).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 0x55;
        std::fs::write(&file, bytes).unwrap();
        let log = PartitionLog::open(dir.path(), config()).unwrap();
        assert_eq!(log.high_watermark(), 4);
    }

    #[test]
    fn missing_indexes_are_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let log = PartitionLog::open(dir.path(), config()).unwrap();
        for i in 0..40 {
            log.append(batch(&[&format!("v{i}")], 1000 + i), 0).unwrap();
        }
        log.close().unwrap();
        drop(log);
        std::fs::remove_file(dir.path().join(segment::file_name(0, "index"))).unwrap();
        std::fs::remove_file(dir.path().join(segment::file_name(0, "timeindex"))).unwrap();
        let log = PartitionLog::open(dir.path(), config()).unwrap();
        assert_eq!(values_from(&log, 33)[0], (33, "v33".to_string()));
        assert_eq!(log.offset_for_timestamp(1020).unwrap(), Some((20, 1020)));
    }

    #[test]
    fn timestamps_find_the_first_record_at_or_after() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config();
        cfg.segment_bytes = 400;
        let log = PartitionLog::open(dir.path(), cfg).unwrap();
        for i in 0..30 {
            log.append(batch(&["x", "y"], 100 * i), 0).unwrap();
        }
        assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((0, 0)));
        assert_eq!(log.offset_for_timestamp(1050).unwrap(), Some((22, 1100)));
        assert_eq!(log.offset_for_timestamp(2900).unwrap(), Some((58, 2900)));
        assert_eq!(log.offset_for_timestamp(5000).unwrap(), None);
        assert_eq!(log.max_timestamp(), Some((2900, 59)));
    }

    #[test]
    fn oversized_batch_is_returned_whole_only_as_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let log = PartitionLog::open(dir.path(), config()).unwrap();
        let big = "z".repeat(5000);
        log.append(batch(&[&big], 1), 0).unwrap();
        assert!(log.read(0, 100, true).unwrap().records.len() > 5000);
        assert!(log.read(0, 100, false).unwrap().records.is_empty());
    }

    #[test]
    fn retention_by_bytes_and_time_deletes_old_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config();
        cfg.segment_bytes = 300;
        cfg.retention_bytes = 600;
        let log = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
        for i in 0..40 {
            log.append(batch(&[&format!("v{i}")], i), 0).unwrap();
        }
        assert!(log.enforce_retention(0).unwrap() > 0);
        let start = log.log_start_offset();
        assert!(start > 0);
        assert!(matches!(
            log.read(0, 100, true),
            Err(LogError::OffsetOutOfRange { .. })
        ));
        assert_eq!(values_from(&log, start).last().unwrap().0, 39);

        cfg.retention_bytes = -1;
        cfg.retention_ms = 1000;
        log.update_config(cfg);
        log.enforce_retention(10_000).unwrap();
        // Only the active segment is left.
        assert!(log.log_start_offset() > start);
        assert_eq!(log.high_watermark(), 40);
    }

    #[test]
    fn delete_records_moves_the_start_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let log = PartitionLog::open(dir.path(), config()).unwrap();
        for i in 0..10 {
            log.append(batch(&[&format!("v{i}")], i), 0).unwrap();
        }
        assert_eq!(log.delete_records_before(4).unwrap(), 4);
        assert!(matches!(
            log.read(3, 100, true),
            Err(LogError::OffsetOutOfRange { .. })
        ));
        assert!(matches!(
            log.delete_records_before(11),
            Err(LogError::OffsetOutOfRange { .. })
        ));
        drop(log);
        let log = PartitionLog::open(dir.path(), config()).unwrap();
        assert_eq!(log.log_start_offset(), 4);
        assert_eq!(values_from(&log, 4)[0], (4, "v4".to_string()));
        assert_eq!(log.delete_records_before(-1).unwrap(), 10);
    }

    #[test]
    fn idempotent_retries_are_deduplicated_across_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let log = PartitionLog::open(dir.path(), config()).unwrap();
        log.append(idempotent(9, 0, &["a", "b"]), 0).unwrap();
        let retry = log.append(idempotent(9, 0, &["a", "b"]), 0).unwrap();
        assert!(retry.duplicate);
        assert_eq!((retry.base_offset, retry.last_offset), (0, 1));
        assert!(matches!(
            log.append(idempotent(9, 5, &["c"]), 0),
            Err(AppendError::OutOfOrderSequence { expected: 2, .. })
        ));
        drop(log);
        let log = PartitionLog::open(dir.path(), config()).unwrap();
        assert!(
            log.append(idempotent(9, 0, &["a", "b"]), 0)
                .unwrap()
                .duplicate
        );
        assert_eq!(
            log.append(idempotent(9, 2, &["c"]), 0).unwrap().base_offset,
            2
        );
        assert_eq!(log.high_watermark(), 3);
    }

    /// A transactional batch of producer `pid` (epoch 0) starting at sequence `seq`.
    pub(crate) fn transactional(pid: i64, seq: i32, values: &[&str]) -> Bytes {
        let mut bytes = idempotent(pid, seq, values).to_vec();
        let attributes = i16::from_be_bytes([bytes[21], bytes[22]]) | 0x10;
        bytes[21..23].copy_from_slice(&attributes.to_be_bytes());
        let crc = batch::compute_crc(&bytes);
        bytes[17..21].copy_from_slice(&crc.to_be_bytes());
        Bytes::from(bytes)
    }

    #[test]
    fn the_last_stable_offset_waits_for_the_earliest_open_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let log = PartitionLog::open(dir.path(), config()).unwrap();
        log.append(batch(&["plain"], 1), 0).unwrap();
        assert_eq!(log.last_stable_offset(), 1);
        log.append(transactional(7, 0, &["a", "b"]), 0).unwrap(); // 1..=2
        log.append(transactional(8, 0, &["c"]), 0).unwrap(); // 3
        log.append(transactional(7, 2, &["d"]), 0).unwrap(); // 4
        assert_eq!(log.high_watermark(), 5);
        assert_eq!(log.last_stable_offset(), 1);
        assert_eq!(log.ongoing_transactions(), vec![(7, 1), (8, 3)]);
        let committed = log.append_marker(7, 0, true, 0, 0).unwrap(); // 5
        assert_eq!((committed.base_offset, committed.duplicate), (5, false));
        assert_eq!(
            log.last_stable_offset(),
            3,
            "producer 8 still holds it back"
        );
        let aborted = log.append_marker(8, 0, false, 0, 0).unwrap(); // 6
        assert_eq!(aborted.base_offset, 6);
        assert_eq!(log.last_stable_offset(), 7);
        assert!(log.ongoing_transactions().is_empty());
        let again = log.append_marker(8, 0, false, 0, 0).unwrap();
        assert!(again.duplicate, "a retried marker writes nothing");
        assert_eq!(log.high_watermark(), 7);
        assert!(matches!(
            log.append_marker(8, -1, false, 0, 0),
            Err(AppendError::InvalidProducerEpoch { .. })
        ));

        // read_committed stops at the last stable offset and names the aborted transaction.
        log.append(transactional(9, 0, &["open"]), 0).unwrap(); // 7, open
        let slice = log.read_isolated(0, 1 << 20, true, true).unwrap();
        assert_eq!(slice.last_stable_offset, 7);
        let mut offsets = Vec::new();
        let mut rest = &slice.records[..];
        while !rest.is_empty() {
            let header = BatchHeader::parse(rest).unwrap();
            offsets.push(header.base_offset);
            rest = &rest[header.total_size()..];
        }
        assert_eq!(
            offsets,
            vec![0, 1, 3, 4, 5, 6],
            "nothing at or past the LSO"
        );
        assert_eq!(
            slice.aborted,
            vec![AbortedTxn {
                producer_id: 8,
                first_offset: 3,
                last_offset: 6
            }]
        );
        let tail = log.read_isolated(7, 1 << 20, true, true).unwrap();
        assert!(tail.records.is_empty() && tail.aborted.is_empty());
        assert!(!log
            .read_isolated(7, 1 << 20, true, false)
            .unwrap()
            .records
            .is_empty());
        assert!(
            log.read_isolated(5, 1 << 20, true, true)
                .unwrap()
                .aborted
                .len()
                == 1
        );
    }

    #[test]
    fn transactional_writes_are_fenced_and_sequenced() {
        let dir = tempfile::tempdir().unwrap();
        let log = PartitionLog::open(dir.path(), config()).unwrap();
        log.append(transactional(7, 0, &["a"]), 0).unwrap();
        assert!(
            log.append(transactional(7, 0, &["a"]), 0)
                .unwrap()
                .duplicate
        );
        assert!(matches!(
            log.append(transactional(7, 3, &["gap"]), 0),
            Err(AppendError::OutOfOrderSequence { expected: 1, .. })
        ));
        assert!(matches!(
            log.append(idempotent(7, 1, &["plain"]), 0),
            Err(AppendError::InvalidTxnState(_))
        ));
        // The coordinator fences the producer: an abort at epoch 1.
        log.append_marker(7, 1, false, 0, 0).unwrap();
        assert!(matches!(
            log.append(transactional(7, 1, &["zombie"]), 0),
            Err(AppendError::InvalidProducerEpoch { .. })
        ));
        assert_eq!(log.last_stable_offset(), log.high_watermark());
        let view = log.producers()[0];
        assert_eq!((view.producer_id, view.producer_epoch), (7, 1));
        assert_eq!(view.current_txn_start_offset, -1);
    }

    #[test]
    fn open_transactions_and_aborts_survive_a_crash_with_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let log = PartitionLog::open(dir.path(), config()).unwrap();
        log.append(transactional(1, 0, &["aborted"]), 0).unwrap(); // 0
        log.append(transactional(2, 0, &["open"]), 0).unwrap(); // 1
        log.append_marker(1, 0, false, 5, 0).unwrap(); // 2
        log.append(transactional(3, 0, &["committed"]), 0).unwrap(); // 3
        log.append_marker(3, 0, true, 5, 0).unwrap(); // 4: torn below
        drop(log);
        // kill -9 mid-write of the last marker: its batch is cut short.
        let file = dir.path().join(segment::file_name(0, "log"));
        let len = std::fs::metadata(&file).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
        f.set_len(len - 7).unwrap();
        drop(f);
        let log = PartitionLog::open(dir.path(), config()).unwrap();
        assert_eq!(log.high_watermark(), 4);
        assert_eq!(log.ongoing_transactions(), vec![(2, 1), (3, 3)]);
        assert_eq!(log.last_stable_offset(), 1);
        assert_eq!(
            log.aborted_transactions(0, 4),
            vec![AbortedTxn {
                producer_id: 1,
                first_offset: 0,
                last_offset: 2
            }]
        );
        let coordinator_epochs: Vec<i32> = log
            .producers()
            .iter()
            .map(|p| p.coordinator_epoch)
            .collect();
        assert_eq!(coordinator_epochs, vec![5, -1, -1]);
        // The coordinator rewrites the lost marker; the producers continue.
        log.append_marker(3, 0, true, 5, 0).unwrap();
        log.append_marker(2, 0, true, 5, 0).unwrap();
        assert_eq!(log.last_stable_offset(), log.high_watermark());
        log.close().unwrap();
        drop(log);
        let log = PartitionLog::open(dir.path(), config()).unwrap();
        assert!(log.ongoing_transactions().is_empty());
        assert_eq!(log.last_stable_offset(), 6);
        assert_eq!(log.aborted_transactions(0, 6).len(), 1);
    }

    #[test]
    fn a_torn_transactional_batch_opens_no_transaction_and_retention_forgets_old_aborts() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config();
        cfg.segment_bytes = 300;
        let log = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
        log.append(transactional(1, 0, &["gone"]), 0).unwrap();
        log.append_marker(1, 0, false, 0, 0).unwrap();
        for i in 0..20 {
            log.append(batch(&[&format!("v{i}")], i), 0).unwrap();
        }
        let end = log.high_watermark();
        log.append(transactional(2, 0, &["torn"]), 0).unwrap();
        assert_eq!(log.last_stable_offset(), end);
        drop(log);
        // kill -9 while the transaction's only batch was half written.
        let last = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .max()
            .unwrap();
        let len = std::fs::metadata(&last).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&last).unwrap();
        f.set_len(len - 5).unwrap();
        drop(f);
        let log = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
        assert_eq!(log.high_watermark(), end);
        assert!(
            log.ongoing_transactions().is_empty(),
            "nothing of it survived"
        );
        assert_eq!(log.last_stable_offset(), end);
        assert_eq!(log.aborted_transactions(0, end).len(), 1);
        // Retention takes the segment with the aborted transaction and its marker.
        cfg.retention_bytes = 300;
        log.update_config(cfg);
        assert!(log.enforce_retention(0).unwrap() > 0);
        assert!(log.log_start_offset() > 1);
        assert!(log.aborted_transactions(0, end).is_empty());
    }

    #[test]
    fn a_bad_batch_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let log = PartitionLog::open(dir.path(), config()).unwrap();
        log.append(batch(&["a"], 1), 0).unwrap();
        let good = batch(&["b"], 1);
        let mut bad = good.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let both = Bytes::from([good.to_vec(), bad].concat());
        assert!(matches!(
            log.append(both, 0),
            Err(AppendError::CorruptMessage(_))
        ));
        assert_eq!(log.high_watermark(), 1);
        assert!(matches!(
            log.append(Bytes::from_static(b"short"), 0),
            Err(AppendError::CorruptMessage(_))
        ));
    }

    #[test]
    fn compressed_batches_are_stored_byte_identical() {
        let dir = tempfile::tempdir().unwrap();
        let log = PartitionLog::open(dir.path(), config()).unwrap();
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let sent = batch_with(&["one", "two"], 5, codec, BatchMeta::default());
            let at = log.append(sent.clone(), 0).unwrap().base_offset;
            let stored = log.read(at, 1 << 20, true).unwrap().records;
            assert_eq!(
                &stored[8..],
                &sent[8..],
                "{codec:?}: only the base offset differs"
            );
        }
    }

    #[test]
    fn log_append_time_is_stamped() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config();
        cfg.timestamp_type = TimestampType::LogAppendTime;
        let log = PartitionLog::open(dir.path(), cfg).unwrap();
        let out = log.append(batch(&["a"], 5), 777).unwrap();
        assert_eq!(out.log_append_time, 777);
        let stored = log.read(0, 1 << 20, true).unwrap().records;
        let (_, records) = decode_records(&stored, 1 << 20).unwrap();
        assert_eq!(records[0].timestamp, 777);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_waiters_share_fsyncs() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(PartitionLog::open(dir.path(), config()).unwrap());
        let mut waits = Vec::new();
        for i in 0..200 {
            let out = log.append(batch(&[&format!("v{i}")], i), 0).unwrap();
            let log = log.clone();
            waits.push(tokio::spawn(async move {
                log.wait_durable(out.last_offset).await
            }));
        }
        for w in waits {
            w.await.unwrap().unwrap();
        }
        assert!(log.fsync_count() >= 1);
        assert!(
            log.fsync_count() < 50,
            "{} fsyncs for 200 waiters",
            log.fsync_count()
        );
    }
}
