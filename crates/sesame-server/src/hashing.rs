//! Bounded, fair password hashing. Argon2id takes ~17 ms and 19 MiB per call, so at most
//! `concurrency` calls run at once, and at most `queue` wait for a slot: memory stays bounded
//! however many sign-ins arrive, and the excess gets a fast 503.
//!
//! Waiting is fair between clients (their addresses): each client has its own line, and the
//! hashing threads take from the lines in turn, so a client flooding wrong passwords delays
//! another's sign-in by at most one hash per busy client, never by its whole flood; and one
//! client may hold at most `per_client` places. (Per account, the guess counters allow only a
//! few checks at a time, before any hashing.) Work that needs no hash never waits here: only
//! the hashing threads do.
//!
//! The calls run on `concurrency` long-lived threads of their own (`sesame-hash-N`), not on
//! tokio's blocking pool. On the blocking pool the 19 MiB Argon2 buffers wandered over many
//! threads and malloc arenas, each keeping up to ~58 MiB (peak RSS ~400-500 MiB on 2 cores
//! under load); on fixed threads the peak is ~180 MiB. (glibc still returns and re-faults
//! part of that memory; reusing one buffer per thread in `sesame_core::password` ends that.)

use crate::error::{Error, Kind};
use std::collections::{HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// The lines of waiting work, one per client, served in turn.
#[derive(Default)]
struct Lines {
    by_client: HashMap<String, VecDeque<Job>>,
    /// Clients with waiting work, in the order they are served next.
    turn: VecDeque<String>,
    waiting: usize,
    stopped: bool,
}

impl Lines {
    fn next(&mut self) -> Option<Job> {
        let client = self.turn.pop_front()?;
        let line = self.by_client.get_mut(&client)?;
        let job = line.pop_front();
        if line.is_empty() {
            self.by_client.remove(&client);
        } else {
            self.turn.push_back(client);
        }
        if job.is_some() {
            self.waiting -= 1;
        }
        job
    }
}

struct Shared {
    lines: Mutex<Lines>,
    ready: Condvar,
    /// Jobs run to the end (a cancelled one is not counted): how much hashing was done.
    ran: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Lines> {
        // A job never runs under the lock, so a poisoned lock holds consistent lines.
        self.lines.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub struct Hasher {
    shared: Arc<Shared>,
    max_waiting: usize,
    per_client: usize,
    /// False if no hashing thread could be started: then the blocking pool is used.
    threads: bool,
}

impl Hasher {
    /// `concurrency` threads; at most `max_waiting` calls wait, at most `per_client` of them
    /// from one client.
    pub fn new(concurrency: usize, max_waiting: usize, per_client: usize) -> Self {
        let shared = Arc::new(Shared {
            lines: Mutex::new(Lines::default()),
            ready: Condvar::new(),
            ran: AtomicU64::new(0),
        });
        let mut started = 0;
        for i in 0..concurrency.max(1) {
            let shared = shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("sesame-hash-{i}"))
                .spawn(move || work(&shared));
            match spawned {
                Ok(_) => started += 1,
                Err(e) => tracing::warn!(%e, "cannot start a password hashing thread"),
            }
        }
        Self {
            shared,
            max_waiting,
            per_client: per_client.max(1),
            threads: started > 0,
        }
    }

    /// Runs a CPU-heavy closure once it is `client`'s turn and a thread is free.
    pub async fn run<T: Send + 'static>(
        &self,
        client: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Error> {
        if !self.threads {
            return tokio::task::spawn_blocking(f)
                .await
                .map_err(|e| Error::internal(format!("hashing task failed: {e}")));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let shared = self.shared.clone();
        let job: Job = Box::new(move || {
            // The request went away while it waited (the client hung up): no work for it.
            if tx.is_closed() {
                return;
            }
            // A panic must not take the hashing thread down with it.
            let out = catch_unwind(AssertUnwindSafe(f));
            shared.ran.fetch_add(1, AtomicOrdering::Relaxed);
            let _ = tx.send(out);
        });
        {
            let mut lines = self.shared.lock();
            if lines.stopped || lines.waiting >= self.max_waiting {
                return Err(Error::busy());
            }
            let line = lines.by_client.entry(client.to_string()).or_default();
            if line.len() >= self.per_client {
                return Err(Error::new(
                    Kind::TooManyRequests,
                    "too_many_at_once",
                    "Too many sign-ins at once from your network. Wait a moment and try again.",
                ));
            }
            let first = line.is_empty();
            line.push_back(job);
            if first {
                lines.turn.push_back(client.to_string());
            }
            lines.waiting += 1;
        }
        self.shared.ready.notify_one();
        match rx.await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(_)) => Err(Error::internal("hashing task failed: it panicked")),
            Err(_) => Err(Error::internal("hashing task failed: no result")),
        }
    }

    /// How many jobs have run (on the hashing threads) since the start.
    pub fn jobs_run(&self) -> u64 {
        self.shared.ran.load(AtomicOrdering::Relaxed)
    }

    /// Sign-ins waiting for a hashing slot now (metrics).
    pub fn waiting(&self) -> usize {
        self.shared.lock().waiting
    }
}

impl Drop for Hasher {
    fn drop(&mut self) {
        self.shared.lock().stopped = true;
        self.shared.ready.notify_all();
    }
}

/// A hashing thread: takes the next job in turn, until the hasher is dropped and its lines
/// are empty.
fn work(shared: &Shared) {
    loop {
        let job = {
            let mut lines = shared.lock();
            loop {
                if let Some(job) = lines.next() {
                    break job;
                }
                if lines.stopped {
                    return;
                }
                lines = shared
                    .ready
                    .wait(lines)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        job();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// Waits until the hasher holds `n` waiting jobs.
    async fn until_waiting(h: &Hasher, n: usize) {
        while h.waiting() != n {
            tokio::task::yield_now().await;
        }
    }

    /// A job that holds its thread until told to finish, saying when it started.
    fn blocker(
        h: &Arc<Hasher>,
        client: &'static str,
    ) -> (
        tokio::task::JoinHandle<Result<(), Error>>,
        mpsc::Sender<()>,
        mpsc::Receiver<()>,
    ) {
        let (go, wait) = mpsc::channel::<()>();
        let (started_tx, started) = mpsc::channel::<()>();
        let h = h.clone();
        let task = tokio::spawn(async move {
            h.run(client, move || {
                let _ = started_tx.send(());
                let _ = wait.recv();
            })
            .await
        });
        (task, go, started)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn excess_waiters_are_refused_not_queued() {
        let h = Arc::new(Hasher::new(1, 2, 8));
        let (running, go, started) = blocker(&h, "a");
        started.recv().unwrap();
        let w1 = tokio::spawn({
            let h = h.clone();
            async move { h.run("b", || 1).await }
        });
        let w2 = tokio::spawn({
            let h = h.clone();
            async move { h.run("c", || 2).await }
        });
        until_waiting(&h, 2).await;
        assert!(matches!(h.run("d", || ()).await, Err(e) if e.kind == Kind::Busy));
        go.send(()).unwrap();
        assert!(running.await.unwrap().is_ok());
        assert_eq!(w1.await.unwrap().unwrap(), 1);
        assert_eq!(w2.await.unwrap().unwrap(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_client_holds_at_most_its_share_of_places() {
        let h = Arc::new(Hasher::new(1, 100, 2));
        let (running, go, started) = blocker(&h, "x");
        started.recv().unwrap();
        let mut queued = Vec::new();
        for i in 0..2 {
            let h = h.clone();
            queued.push(tokio::spawn(async move { h.run("flood", move || i).await }));
        }
        until_waiting(&h, 2).await;
        let third = h.run("flood", || 9).await;
        assert!(matches!(third, Err(e) if e.kind == Kind::TooManyRequests));
        // Another client still gets a place.
        let other = tokio::spawn({
            let h = h.clone();
            async move { h.run("someone", || 7).await }
        });
        until_waiting(&h, 3).await;
        go.send(()).unwrap();
        running.await.unwrap().unwrap();
        assert_eq!(other.await.unwrap().unwrap(), 7);
        for q in queued {
            q.await.unwrap().unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn clients_are_served_in_turn_not_in_arrival_order() {
        let h = Arc::new(Hasher::new(1, 100, 100));
        let (running, go, started) = blocker(&h, "x");
        started.recv().unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // Ten jobs of a flooding client arrive first, then one of a real user.
        for i in 0..10 {
            let (h2, order) = (h.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                h2.run("flood", move || {
                    order.lock().unwrap().push(format!("flood{i}"))
                })
                .await
            }));
            until_waiting(&h, i + 1).await;
        }
        let (h2, order2) = (h.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            h2.run("user", move || order2.lock().unwrap().push("user".into()))
                .await
        }));
        until_waiting(&h, 11).await;
        go.send(()).unwrap();
        running.await.unwrap().unwrap();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let order = order.lock().unwrap().clone();
        let user_at = order.iter().position(|o| o == "user").unwrap();
        assert!(user_at <= 1, "the user waited behind the flood: {order:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancelled_waiter_costs_no_hash() {
        let h = Arc::new(Hasher::new(1, 8, 8));
        let (running, go, started) = blocker(&h, "x");
        started.recv().unwrap();
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let waiter = tokio::spawn({
            let (h, ran) = (h.clone(), ran.clone());
            async move {
                h.run("y", move || {
                    ran.store(true, std::sync::atomic::Ordering::SeqCst)
                })
                .await
            }
        });
        until_waiting(&h, 1).await;
        waiter.abort();
        let _ = waiter.await;
        go.send(()).unwrap();
        running.await.unwrap().unwrap();
        // The next job runs after the cancelled one was taken (and skipped).
        assert_eq!(h.run("z", || 5).await.unwrap(), 5);
        assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(h.waiting(), 0);
    }

    #[tokio::test]
    async fn a_panicking_job_fails_alone_and_the_threads_keep_working() {
        let h = Hasher::new(1, 8, 8);
        let r = h.run("a", || -> u32 { panic!("boom") }).await;
        assert!(matches!(r, Err(e) if e.kind == Kind::Internal));
        assert_eq!(h.run("a", || 7).await.unwrap(), 7);
        assert_eq!(
            h.run("a", || std::thread::current().name().map(str::to_string))
                .await
                .unwrap()
                .as_deref(),
            Some("sesame-hash-0")
        );
    }
}
