//! The threads guests run on. A guest call may spin for its whole CPU cap; on the async workers
//! that serve connections that would stall every other client, so transformed writes are handed
//! to this bounded pool and the connection's task awaits the result.
//!
//! The pool's threads run at a lower scheduling priority than the rest of the process: when a
//! guest burns its CPU cap on every batch, the kernel still runs the network and log threads
//! first, so produces to other topics keep their latency.

use std::sync::mpsc;
use std::sync::Arc;

use parking_lot::Mutex;

/// `nice` value of guest threads (0 is normal; higher yields to the broker's own threads).
const GUEST_NICENESS: i32 = 10;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A fixed set of threads running guest work in submission order.
#[derive(Debug, Clone)]
pub struct GuestPool {
    jobs: mpsc::Sender<Job>,
    threads: usize,
}

/// The pool has shut down; the work was not run.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the guest thread pool has shut down")]
pub struct PoolClosed;

impl GuestPool {
    /// Starts `threads` (at least one) guest threads.
    pub fn new(threads: usize) -> GuestPool {
        let threads = threads.max(1);
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("sluice-guest-{i}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        // The lock is held only while waiting for the next job.
                        let job = queue.lock().recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!("cannot start guest thread {i}: {e}");
            }
        }
        GuestPool { jobs, threads }
    }

    /// One thread per CPU the process may use.
    pub fn sized_to_machine() -> GuestPool {
        GuestPool::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// How many threads run guests.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `job` on a guest thread and waits (asynchronously) for its result.
    pub async fn run<R: Send + 'static>(
        &self,
        job: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, PoolClosed> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = tx.send(job());
            }))
            .map_err(|_| PoolClosed)?;
        rx.await.map_err(|_| PoolClosed)
    }

    /// Runs `job` on a guest thread and blocks the calling (non-async) thread until it is done.
    pub fn run_blocking<R: Send + 'static>(
        &self,
        job: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, PoolClosed> {
        let (tx, rx) = mpsc::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = tx.send(job());
            }))
            .map_err(|_| PoolClosed)?;
        rx.recv().map_err(|_| PoolClosed)
    }
}

/// Makes the calling thread yield to the process's other threads.
#[allow(unsafe_code, reason = "setpriority(2) on the calling thread")]
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and setpriority take plain integers and touch no memory of ours; on
        // Linux PRIO_PROCESS with a thread id sets that one thread's nice value.
        let result = unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, GUEST_NICENESS)
        };
        if result != 0 {
            tracing::debug!(
                "cannot lower guest thread priority: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_off_the_calling_thread() {
        let pool = GuestPool::new(2);
        let caller = std::thread::current().id();
        let (ran_on, name) = pool
            .run(|| {
                let t = std::thread::current();
                (t.id(), t.name().map(str::to_string))
            })
            .await
            .unwrap();
        assert_ne!(ran_on, caller);
        assert_eq!(
            name.as_deref().map(|n| n.starts_with("sluice-guest-")),
            Some(true)
        );
        assert_eq!(pool.run_blocking(|| 6 * 7).unwrap(), 42);
    }

    #[tokio::test]
    async fn a_busy_thread_does_not_hold_up_the_others() {
        let pool = GuestPool::new(2);
        let (release, wait) = mpsc::channel::<()>();
        let busy = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.run(move || wait.recv().is_ok()).await })
        };
        // The second thread serves this while the first is blocked.
        assert_eq!(pool.run(|| 1).await.unwrap(), 1);
        release.send(()).unwrap();
        assert!(busy.await.unwrap().unwrap());
    }
}
