//! Bounded password hashing. Argon2id takes ~17 ms and 19 MiB per call, so at most
//! `concurrency` calls run at once, and at most `queue` requests wait for a slot: memory stays
//! bounded however many sign-ins arrive, and the excess gets a fast 503.
//!
//! The calls run on `concurrency` long-lived threads of their own (`sesame-hash-N`), not on
//! tokio's blocking pool. On the blocking pool the 19 MiB Argon2 buffers wandered over many
//! threads and malloc arenas, each keeping up to ~58 MiB (peak RSS ~400-500 MiB on 2 cores
//! under load); on fixed threads the peak is ~180 MiB. (glibc still returns and re-faults
//! part of that memory; reusing one buffer per thread in `sesame_core::password` ends that.)

use crate::error::Error;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use tokio::sync::Semaphore;

type Job = Box<dyn FnOnce() + Send + 'static>;

pub struct Hasher {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
    /// Work for the hashing threads; `None` if none could be started (then the blocking pool
    /// is used). Dropping the sender ends the threads.
    jobs: Option<mpsc::Sender<Job>>,
}

/// A place in the waiting queue.
struct QueuePlace<'a>(&'a AtomicUsize);

impl Drop for QueuePlace<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Hasher {
    pub fn new(concurrency: usize, max_waiting: usize) -> Self {
        let n = concurrency.max(1);
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut started = 0;
        for i in 0..n {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("sesame-hash-{i}"))
                .spawn(move || loop {
                    // The lock is held only while waiting for the next job.
                    let job = match rx.lock() {
                        Ok(r) => r.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                });
            match spawned {
                Ok(_) => started += 1,
                Err(e) => tracing::warn!(%e, "cannot start a password hashing thread"),
            }
        }
        Self {
            permits: Arc::new(Semaphore::new(n)),
            waiting: AtomicUsize::new(0),
            max_waiting,
            jobs: (started > 0).then_some(tx),
        }
    }

    /// Runs a CPU-heavy closure once a slot is free.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Error> {
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(Error::busy());
        }
        // Given back on drop, so a request cancelled while it waits frees its place too.
        let place = QueuePlace(&self.waiting);
        let permit = self.permits.clone().acquire_owned().await;
        drop(place);
        let permit = permit.map_err(|_| Error::busy())?;
        let Some(jobs) = &self.jobs else {
            return tokio::task::spawn_blocking(move || {
                let out = f();
                drop(permit);
                out
            })
            .await
            .map_err(|e| Error::internal(format!("hashing task failed: {e}")));
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            // A panic must not take the hashing thread down with it.
            let out = catch_unwind(AssertUnwindSafe(f));
            drop(permit);
            let _ = tx.send(out);
        });
        jobs.send(job)
            .map_err(|_| Error::internal("hashing threads have stopped"))?;
        match rx.await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(_)) => Err(Error::internal("hashing task failed: it panicked")),
            Err(_) => Err(Error::internal("hashing task failed: no result")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn excess_waiters_are_refused_not_queued() {
        let h = Arc::new(Hasher::new(1, 2));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let h = h.clone();
            let rx = rx.clone();
            tasks.push(tokio::spawn(async move {
                h.run(move || rx.lock().unwrap().recv().ok()).await
            }));
        }
        // One runs, two wait; the fourth finds the queue full.
        while h.waiting.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(h.run(|| ()).await, Err(e) if e.kind == crate::error::Kind::Busy));
        for _ in 0..3 {
            tx.send(()).unwrap();
        }
        for t in tasks {
            assert!(t.await.unwrap().is_ok());
        }
    }

    #[tokio::test]
    async fn a_cancelled_waiter_gives_its_queue_place_back() {
        let h = Arc::new(Hasher::new(1, 1));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let h1 = h.clone();
        let running = tokio::spawn(async move { h1.run(move || rx.recv().ok()).await });
        while h.permits.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        let h2 = h.clone();
        let waiter = tokio::spawn(async move { h2.run(|| ()).await });
        while h.waiting.load(Ordering::SeqCst) < 1 {
            tokio::task::yield_now().await;
        }
        waiter.abort();
        let _ = waiter.await;
        assert_eq!(h.waiting.load(Ordering::SeqCst), 0);
        // The place is free again: the next request waits instead of getting a 503.
        let h3 = h.clone();
        let next = tokio::spawn(async move { h3.run(|| 5).await });
        while h.waiting.load(Ordering::SeqCst) < 1 {
            tokio::task::yield_now().await;
        }
        tx.send(()).unwrap();
        assert!(running.await.unwrap().is_ok());
        assert_eq!(next.await.unwrap().unwrap(), 5);
    }

    #[tokio::test]
    async fn a_panicking_job_fails_alone_and_the_threads_keep_working() {
        let h = Hasher::new(1, 8);
        let r = h.run(|| -> u32 { panic!("boom") }).await;
        assert!(matches!(r, Err(e) if e.kind == crate::error::Kind::Internal));
        assert_eq!(h.run(|| 7).await.unwrap(), 7);
        assert_eq!(
            h.run(|| std::thread::current().name().map(str::to_string))
                .await
                .unwrap()
                .as_deref(),
            Some("sesame-hash-0")
        );
    }
}
