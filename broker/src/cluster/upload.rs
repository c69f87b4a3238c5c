//! The per-broker upload buffer: produced batches of every partition wait here until the linger
//! deadline or the size limit, go up as one object, and are committed in one transaction.
//!
//! Three steps, each its own task so they overlap: [`UploadBuffer::submit`] appends to the open
//! upload (synchronously, so a connection's produces enter in the order sent); the sealer closes
//! it at `cluster.upload.linger.ms` after its first batch or once it holds
//! `cluster.upload.max.bytes`, and starts its PUT; the committer takes sealed uploads strictly in
//! the order they were sealed, waits for each PUT, commits it, and answers every waiting
//! producer. So the next upload's PUT runs while the previous one commits, but commits (and with
//! them offsets and idempotent sequences) follow submission order.
//!
//! A failed PUT or commit answers every producer of that upload with an [`UploadError`], never
//! with offsets: an unknown commit outcome (the connection dropped mid-commit) is safe to retry
//! for idempotent producers, whose retry the commit recognises as a duplicate.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::types::{BatchAppend, BatchOutcome, UploadCommit};

/// Sealed uploads waiting for their commit; past this the sealer waits, and the open upload
/// fills up to [`Settings::max_buffered_bytes`] before producers are refused.
const SEALED_IN_FLIGHT: usize = 4;

/// Where uploads go: the object store and the metadata database (or fakes in tests).
pub trait UploadStore: Send + Sync + 'static {
    /// Stores the object `key` (the upload's batches, back to back).
    fn put(&self, key: String, body: Bytes)
        -> impl Future<Output = Result<(), UploadError>> + Send;
    /// Commits the upload's coordinates in one transaction: one outcome per batch, in order.
    fn commit(
        &self,
        upload: &UploadCommit,
    ) -> impl Future<Output = Result<Vec<BatchOutcome>, UploadError>> + Send;
}

/// Why the producers of an upload were not answered with offsets. Every kind is retriable by
/// the client: nothing was stored, or (for [`UploadError::CommitUnknown`]) a retry is
/// recognised as a duplicate.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UploadError {
    #[error("cannot store the upload in the object store: {0}")]
    Put(String),
    #[error("cannot commit the upload to the metadata database: {0}")]
    Commit(String),
    #[error("the commit of the upload may or may not have happened: {0}")]
    CommitUnknown(String),
    #[error("this broker's lease was lost (fenced); it re-registers before committing again")]
    Fenced,
    #[error(
        "the upload buffer is full ({0} bytes waiting); the object store or database is behind"
    )]
    Full(u64),
    #[error("the broker is shutting down")]
    Closed,
    #[error("the commit answered {got} outcomes for {sent} batches")]
    Mismatch { got: usize, sent: usize },
}

/// The buffer's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// How long the first batch of an upload waits for company (`cluster.upload.linger.ms`).
    pub linger: Duration,
    /// An upload is sealed once it holds this many bytes (`cluster.upload.max.bytes`).
    pub max_bytes: u64,
    /// Past this many bytes waiting (sealed uploads not counted), produces are refused with a
    /// retriable error instead of buffering without bound while the store is down.
    pub max_buffered_bytes: u64,
}

impl Settings {
    pub fn new(linger: Duration, max_bytes: u64) -> Settings {
        Settings {
            linger,
            max_bytes: max_bytes.max(1),
            max_buffered_bytes: max_bytes.max(1).saturating_mul(8),
        }
    }
}

/// A partition's validated batches from one produce, and the outputs transforms derived from
/// them: `batches` carry byte offsets relative to `records` and [`BatchAppend::follows`]
/// indexes relative to `batches`. They go in the same object and commit.
#[derive(Debug, Clone)]
pub struct Submission {
    pub records: Bytes,
    pub batches: Vec<BatchAppend>,
    /// How many of `batches`, from the first, the producer is answered with (the rest are
    /// outputs the broker derived from them).
    pub answered: usize,
}

impl Submission {
    /// A produce's batches, all of them answered.
    pub fn produced(records: Bytes, batches: Vec<BatchAppend>) -> Submission {
        let answered = batches.len();
        Submission {
            records,
            batches,
            answered,
        }
    }
}

/// What a producer waits on: the outcome of each of its batches, or why there is none.
pub type Answer = oneshot::Receiver<Result<Vec<BatchOutcome>, UploadError>>;

type Waiter = (
    std::ops::Range<usize>,
    oneshot::Sender<Result<Vec<BatchOutcome>, UploadError>>,
);

/// The upload being filled.
#[derive(Default)]
struct Open {
    parts: Vec<Bytes>,
    batches: Vec<BatchAppend>,
    waiters: Vec<Waiter>,
    bytes: u64,
    /// When its first batch arrived (the linger clock).
    since: Option<Instant>,
}

/// A sealed upload on its way: its PUT running, its producers waiting for the commit.
struct Sealed {
    commit: UploadCommit,
    put: JoinHandle<Result<(), UploadError>>,
    waiters: Vec<Waiter>,
}

/// The open upload and the full ones not yet taken by the sealer.
#[derive(Default)]
struct Buffered {
    open: Open,
    full: std::collections::VecDeque<Open>,
    /// Bytes in `open` and `full`.
    bytes: u64,
}

struct Shared {
    buffered: Mutex<Buffered>,
    closed: std::sync::atomic::AtomicBool,
    wake: Notify,
    settings: Settings,
}

/// The upload buffer of one broker.
pub struct UploadBuffer {
    shared: Arc<Shared>,
    tasks: Mutex<Option<(JoinHandle<()>, JoinHandle<()>)>>,
}

impl std::fmt::Debug for UploadBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadBuffer")
            .field("settings", &self.shared.settings)
            .finish_non_exhaustive()
    }
}

impl UploadBuffer {
    /// Starts the sealer and committer tasks; objects are named `{key_prefix}{uuid}`.
    pub fn start<S: UploadStore>(store: Arc<S>, settings: Settings, key_prefix: String) -> Self {
        let shared = Arc::new(Shared {
            buffered: Mutex::new(Buffered::default()),
            closed: std::sync::atomic::AtomicBool::new(false),
            wake: Notify::new(),
            settings,
        });
        let (tx, rx) = mpsc::channel(SEALED_IN_FLIGHT);
        let sealer = tokio::spawn(seal_loop(shared.clone(), store.clone(), tx, key_prefix));
        let committer = tokio::spawn(commit_loop(store, rx));
        UploadBuffer {
            shared,
            tasks: Mutex::new(Some((sealer, committer))),
        }
    }

    /// Adds a partition's batches to the open upload. Called in the order a connection sent
    /// its produces, which is the order they are committed in.
    pub fn submit(&self, submission: Submission) -> Answer {
        let (tx, rx) = oneshot::channel();
        let shared = &self.shared;
        if shared.closed.load(std::sync::atomic::Ordering::Acquire) {
            let _ = tx.send(Err(UploadError::Closed));
            return rx;
        }
        let size = submission.records.len() as u64;
        let max = shared.settings.max_bytes;
        let mut buffered = shared.buffered.lock();
        if buffered.bytes >= shared.settings.max_buffered_bytes {
            let _ = tx.send(Err(UploadError::Full(buffered.bytes)));
            return rx;
        }
        // An upload never grows past the size limit because of this submission, unless the
        // submission alone is larger.
        if buffered.open.bytes > 0 && buffered.open.bytes + size > max {
            let full = std::mem::take(&mut buffered.open);
            buffered.full.push_back(full);
        }
        buffered.bytes += size;
        let open = &mut buffered.open;
        let base = open.bytes;
        let first = open.batches.len();
        open.batches
            .extend(submission.batches.into_iter().map(|mut b| {
                b.byte_offset += base;
                b.follows = b.follows.map(|leader| leader + first);
                b
            }));
        let end = open.batches.len().min(first + submission.answered);
        open.bytes += size;
        open.parts.push(submission.records);
        open.waiters.push((first..end, tx));
        let starts_linger = open.since.is_none();
        if starts_linger {
            open.since = Some(Instant::now());
        }
        if open.bytes >= max {
            let full = std::mem::take(&mut buffered.open);
            buffered.full.push_back(full);
        }
        let wake = starts_linger || !buffered.full.is_empty();
        drop(buffered);
        if wake {
            shared.wake.notify_one();
        }
        rx
    }

    /// Seals what is open, waits until every upload is committed (or failed) and its producers
    /// answered, and stops the tasks. Later submissions are refused with [`UploadError::Closed`].
    pub async fn close(&self) {
        self.shared
            .closed
            .store(true, std::sync::atomic::Ordering::Release);
        self.shared.wake.notify_one();
        let tasks = self.tasks.lock().take();
        if let Some((sealer, committer)) = tasks {
            let _ = sealer.await;
            let _ = committer.await;
        }
    }
}

/// What the sealer does next.
enum Next {
    Seal(Open),
    /// Until the linger deadline (if a batch is waiting) or a wake-up.
    Wait(Option<Instant>),
}

async fn seal_loop<S: UploadStore>(
    shared: Arc<Shared>,
    store: Arc<S>,
    sealed: mpsc::Sender<Sealed>,
    key_prefix: String,
) {
    loop {
        let closed = shared.closed.load(std::sync::atomic::Ordering::Acquire);
        let linger = shared.settings.linger;
        let next = {
            let mut buffered = shared.buffered.lock();
            let since = buffered.open.since;
            let taken = match buffered.full.pop_front() {
                Some(full) => Next::Seal(full),
                None => match since {
                    Some(since) if closed || Instant::now() >= since + linger => {
                        Next::Seal(std::mem::take(&mut buffered.open))
                    }
                    Some(since) => Next::Wait(Some(since + linger)),
                    None if closed => return,
                    None => Next::Wait(None),
                },
            };
            if let Next::Seal(open) = &taken {
                buffered.bytes -= open.bytes;
            }
            taken
        };
        let open = match next {
            Next::Seal(open) => open,
            Next::Wait(Some(due)) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => {}
                    _ = shared.wake.notified() => {}
                }
                continue;
            }
            Next::Wait(None) => {
                shared.wake.notified().await;
                continue;
            }
        };
        let key = format!("{key_prefix}{}", uuid::Uuid::new_v4().simple());
        let mut body = BytesMut::with_capacity(open.bytes as usize);
        for part in &open.parts {
            body.extend_from_slice(part);
        }
        let body = body.freeze();
        let commit = UploadCommit {
            object_key: key.clone(),
            object_size: body.len() as u64,
            batches: open.batches,
        };
        let put = {
            let store = store.clone();
            tokio::spawn(async move { store.put(key, body).await })
        };
        let upload = Sealed {
            commit,
            put,
            waiters: open.waiters,
        };
        if let Err(mpsc::error::SendError(upload)) = sealed.send(upload).await {
            // The committer is gone (only at a shutdown gone wrong): nobody gets offsets.
            answer_all(upload.waiters, &Err(UploadError::Closed));
            return;
        }
    }
}

async fn commit_loop<S: UploadStore>(store: Arc<S>, mut sealed: mpsc::Receiver<Sealed>) {
    while let Some(upload) = sealed.recv().await {
        let put = match upload.put.await {
            Ok(result) => result,
            Err(e) => Err(UploadError::Put(format!("the upload task failed: {e}"))),
        };
        let result = match put {
            Err(e) => Err(e),
            Ok(()) => match store.commit(&upload.commit).await {
                Ok(outcomes) if outcomes.len() != upload.commit.batches.len() => {
                    Err(UploadError::Mismatch {
                        got: outcomes.len(),
                        sent: upload.commit.batches.len(),
                    })
                }
                other => other,
            },
        };
        match result {
            Ok(outcomes) => {
                crate::metrics::upload_committed(upload.commit.object_size);
                for (range, tx) in upload.waiters {
                    let mine = outcomes.get(range).map(<[BatchOutcome]>::to_vec);
                    let _ = tx.send(mine.ok_or(UploadError::Mismatch {
                        got: outcomes.len(),
                        sent: upload.commit.batches.len(),
                    }));
                }
            }
            Err(e) => {
                tracing::warn!(object = %upload.commit.object_key, "upload failed: {e}");
                answer_all(upload.waiters, &Err(e));
            }
        }
    }
}

fn answer_all(waiters: Vec<Waiter>, result: &Result<Vec<BatchOutcome>, UploadError>) {
    for (_, tx) in waiters {
        let _ = tx.send(result.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A store that keeps objects in memory and assigns offsets per partition, as the commit
    /// does, with switches to make PUTs or commits fail and a gate to hold PUTs back.
    #[derive(Default)]
    struct FakeStore {
        objects: Mutex<HashMap<String, Bytes>>,
        next: Mutex<HashMap<i32, i64>>,
        commits: Mutex<Vec<UploadCommit>>,
        fail_put: std::sync::atomic::AtomicBool,
        fail_commit: std::sync::atomic::AtomicBool,
        /// PUTs of objects whose first batch is of this partition wait for `release`.
        slow_partition: Mutex<Option<i32>>,
        release: Notify,
    }

    impl UploadStore for FakeStore {
        async fn put(&self, key: String, body: Bytes) -> Result<(), UploadError> {
            if self.fail_put.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(UploadError::Put("bucket unreachable".into()));
            }
            let slow = *self.slow_partition.lock();
            if slow.is_some() && body.first() == slow.map(|p| p as u8).as_ref() {
                self.release.notified().await;
            }
            self.objects.lock().insert(key, body);
            Ok(())
        }
        async fn commit(&self, upload: &UploadCommit) -> Result<Vec<BatchOutcome>, UploadError> {
            if self.fail_commit.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(UploadError::CommitUnknown("connection reset".into()));
            }
            assert!(self.objects.lock().contains_key(&upload.object_key));
            let mut next = self.next.lock();
            let outcomes = upload
                .batches
                .iter()
                .map(|b| {
                    let hw = next.entry(b.partition).or_default();
                    let base_offset = *hw;
                    *hw += i64::from(b.record_count);
                    BatchOutcome::Appended {
                        base_offset,
                        log_start_offset: 0,
                    }
                })
                .collect();
            self.commits.lock().push(upload.clone());
            Ok(outcomes)
        }
    }

    /// A one-batch submission for `partition` of `len` bytes, its first byte the partition
    /// (so the fake can recognise it).
    fn submission(partition: i32, len: usize, records: i32) -> Submission {
        let mut body = vec![0u8; len];
        body[0] = partition as u8;
        Submission::produced(
            Bytes::from(body),
            vec![BatchAppend {
                topic_id: uuid::Uuid::nil(),
                partition,
                byte_offset: 0,
                byte_length: len as u32,
                record_count: records,
                base_timestamp: 0,
                max_timestamp: 0,
                producer_id: -1,
                producer_epoch: -1,
                base_sequence: -1,
                is_transactional: false,
                is_control: false,
                follows: None,
            }],
        )
    }

    fn base(outcomes: &[BatchOutcome]) -> i64 {
        match outcomes.first() {
            Some(BatchOutcome::Appended { base_offset, .. }) => *base_offset,
            other => panic!("not appended: {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn batches_wait_for_the_linger_then_go_up_as_one_object() {
        let store = Arc::new(FakeStore::default());
        let settings = Settings::new(Duration::from_millis(50), 1 << 20);
        let buffer = UploadBuffer::start(store.clone(), settings, "t/".into());
        let started = Instant::now();
        let a = buffer.submit(submission(0, 100, 2));
        let b = buffer.submit(submission(1, 50, 1));
        let c = buffer.submit(submission(0, 70, 3));
        let (a, b, c) = (
            a.await.unwrap().unwrap(),
            b.await.unwrap().unwrap(),
            c.await.unwrap().unwrap(),
        );
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert_eq!((base(&a), base(&b), base(&c)), (0, 0, 2));
        let commits = store.commits.lock();
        assert_eq!(commits.len(), 1, "one object for all three");
        let offsets: Vec<(u64, u32)> = commits[0]
            .batches
            .iter()
            .map(|b| (b.byte_offset, b.byte_length))
            .collect();
        assert_eq!(offsets, [(0, 100), (100, 50), (150, 70)]);
        assert_eq!(commits[0].object_size, 220);
        assert_eq!(store.objects.lock()[&commits[0].object_key].len(), 220);
    }

    #[tokio::test(start_paused = true)]
    async fn an_upload_is_sealed_at_the_size_limit_without_waiting_for_the_linger() {
        let store = Arc::new(FakeStore::default());
        let settings = Settings::new(Duration::from_secs(3600), 1000);
        let buffer = UploadBuffer::start(store.clone(), settings, "t/".into());
        let started = Instant::now();
        let a = buffer.submit(submission(0, 600, 1));
        // Would pass the limit with `a`: `a` goes up alone.
        let b = buffer.submit(submission(0, 600, 1));
        // Reaches the limit with `b`: both go up at once.
        let c = buffer.submit(submission(1, 400, 1));
        assert_eq!(base(&a.await.unwrap().unwrap()), 0);
        assert_eq!(base(&b.await.unwrap().unwrap()), 1);
        assert_eq!(base(&c.await.unwrap().unwrap()), 0);
        assert!(started.elapsed() < Duration::from_secs(1));
        let sizes: Vec<u64> = store.commits.lock().iter().map(|c| c.object_size).collect();
        assert_eq!(sizes, [600, 1000]);
    }

    #[tokio::test(start_paused = true)]
    async fn uploads_commit_in_submission_order_even_when_a_later_put_finishes_first() {
        let store = Arc::new(FakeStore::default());
        *store.slow_partition.lock() = Some(7);
        // Every submission fills an upload: each is its own object.
        let settings = Settings::new(Duration::from_secs(3600), 10);
        let buffer = UploadBuffer::start(store.clone(), settings, "t/".into());
        let first = buffer.submit(submission(7, 10, 1));
        let second = buffer.submit(submission(3, 10, 1));
        let third = buffer.submit(submission(3, 10, 1));
        // The later PUTs finish while the first is held back; nothing commits before it.
        let deadline = Instant::now() + Duration::from_secs(5);
        while store.objects.lock().len() < 2 {
            assert!(Instant::now() < deadline, "later PUTs did not run");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(store.commits.lock().is_empty());
        store.release.notify_one();
        for answer in [first, second, third] {
            answer.await.unwrap().unwrap();
        }
        let order: Vec<i32> = store
            .commits
            .lock()
            .iter()
            .map(|c| c.batches[0].partition)
            .collect();
        assert_eq!(order, [7, 3, 3]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_put_or_commit_answers_an_error_never_offsets() {
        let store = Arc::new(FakeStore::default());
        let settings = Settings::new(Duration::from_millis(5), 1 << 20);
        let buffer = UploadBuffer::start(store.clone(), settings, "t/".into());
        store
            .fail_put
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let put_failed = buffer.submit(submission(0, 10, 1)).await.unwrap();
        assert!(matches!(put_failed, Err(UploadError::Put(_))));
        store
            .fail_put
            .store(false, std::sync::atomic::Ordering::SeqCst);
        store
            .fail_commit
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let commit_failed = buffer.submit(submission(0, 10, 1)).await.unwrap();
        assert!(matches!(commit_failed, Err(UploadError::CommitUnknown(_))));
        store
            .fail_commit
            .store(false, std::sync::atomic::Ordering::SeqCst);
        // Nothing was committed, so the next batch is the partition's first.
        let ok = buffer.submit(submission(0, 10, 1)).await.unwrap().unwrap();
        assert_eq!(base(&ok), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn close_commits_what_is_open_and_refuses_later_batches() {
        let store = Arc::new(FakeStore::default());
        let settings = Settings::new(Duration::from_secs(3600), 1 << 20);
        let buffer = UploadBuffer::start(store.clone(), settings, "t/".into());
        let waiting = buffer.submit(submission(0, 10, 4));
        buffer.close().await;
        assert_eq!(base(&waiting.await.unwrap().unwrap()), 0);
        let late = buffer.submit(submission(0, 10, 1)).await.unwrap();
        assert!(matches!(late, Err(UploadError::Closed)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_buffer_refuses_with_a_retriable_error() {
        let store = Arc::new(FakeStore::default());
        store
            .fail_put
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let mut settings = Settings::new(Duration::from_secs(3600), 1 << 20);
        settings.max_buffered_bytes = 100;
        let buffer = UploadBuffer::start(store.clone(), settings, "t/".into());
        let _first = buffer.submit(submission(0, 100, 1));
        let refused = buffer.submit(submission(0, 10, 1)).await.unwrap();
        assert!(matches!(refused, Err(UploadError::Full(100))));
    }
}
