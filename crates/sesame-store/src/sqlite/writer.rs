//! Group commit for the SQLite file.
//!
//! With `synchronous=FULL` every commit waits for the disk to flush the write-ahead log, and
//! SQLite lets one writer in at a time, so a busy server spends most of a write's time in
//! that flush, one write after another. Here every write goes to one thread with its own
//! connection, which takes every write that is waiting, runs them one after another inside a
//! single `BEGIN IMMEDIATE ... COMMIT`, and answers each caller only after that commit
//! returned: one flush for many writes, and nobody hears "done" before the data is on disk.
//!
//! A write is a plain closure over the connection, run on the writer's thread: all its
//! statements run there without a round trip each to the caller (the async side hands the
//! whole write over once and is woken once).
//!
//! Each write runs in its own savepoint inside the batch: a write that fails (or panics)
//! leaves nothing behind and does not take the others with it. An error that ends the whole
//! transaction (disk full, I/O error) fails the writes already run in the batch, leaves the
//! rest unrun (their callers are told it failed), and the writer opens a fresh connection.

use crate::{Result, StoreError};
use rusqlite::Connection;
use std::panic::AssertUnwindSafe;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Most writes committed together; a bound keeps one commit (and its wait) short.
const MAX_BATCH: usize = 128;
/// Writes that may wait for the writer before callers wait to hand theirs over.
const QUEUE: usize = 4096;

/// Told whether the batch committed; hands the write's result to its caller.
type Finish = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;
/// Runs one write; says why it failed, if it did (its savepoint is rolled back), and how to
/// answer it.
type Job = Box<dyn FnOnce(&Connection) -> (Option<String>, Finish) + Send>;
/// Opens the writer's connection (again, after a failed batch).
pub type Connect = Box<dyn Fn() -> rusqlite::Result<Connection> + Send>;

#[derive(Debug, Clone)]
pub struct GroupWriter {
    jobs: mpsc::Sender<Job>,
}

fn unanswered() -> StoreError {
    StoreError::Database("the database write did not complete (see the server log)".into())
}

impl GroupWriter {
    /// Opens the writer's connection and starts its thread. The thread ends when the last
    /// `GroupWriter` clone is dropped and the queued writes are done.
    pub fn start(connect: Connect) -> Result<Self> {
        let conn = connect().map_err(|e| StoreError::Database(e.to_string()))?;
        let (jobs, rx) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name("sesame-db-writer".into())
            .spawn(move || run(conn, &connect, rx))
            .map_err(|e| StoreError::Database(format!("cannot start the database writer: {e}")))?;
        Ok(Self { jobs })
    }

    /// Runs `f` in the next batch; returns its result once the batch is committed.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = f(conn);
            let failed = result.as_ref().err().map(ToString::to_string);
            let finish = Box::new(move |commit: std::result::Result<(), String>| {
                // A write that failed left nothing behind whatever happened to the batch: its
                // caller hears its own error (the real cause, say "disk full").
                let _ = tx.send(match (result, commit) {
                    (Err(own), _) => Err(own),
                    (Ok(v), Ok(())) => Ok(v),
                    (Ok(_), Err(e)) => Err(StoreError::Database(e)),
                });
            }) as Finish;
            (failed, finish)
        });
        self.jobs.send(job).await.map_err(|_| unanswered())?;
        rx.await.map_err(|_| unanswered())?
    }
}

fn run(mut conn: Connection, connect: &Connect, mut rx: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut finish = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let writes = batch.len();
        let outcome = run_batch(&conn, &mut batch, &mut finish);
        if let Err(e) = &outcome {
            tracing::error!(error = %e, writes, run = finish.len(), "database write batch failed");
        }
        // Writes never run are dropped: their callers hear that the write did not complete.
        batch.clear();
        for f in finish.drain(..) {
            f(outcome.clone());
        }
        // After a failed batch (or anything that left a transaction open) the connection's
        // state is unknown: start again from a fresh one (closing it rolls back).
        if outcome.is_err() || !conn.is_autocommit() {
            drop(conn);
            match reconnect(connect, &mut rx) {
                Some(c) => conn = c,
                None => return,
            }
        }
    }
}

fn exec(conn: &Connection, sql: &str) -> std::result::Result<(), String> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.execute([]))
        .map(drop)
        .map_err(|e| e.to_string())
}

/// One `BEGIN IMMEDIATE ... COMMIT` around the waiting writes, each in its own savepoint.
fn run_batch(
    conn: &Connection,
    batch: &mut Vec<Job>,
    finish: &mut Vec<Finish>,
) -> std::result::Result<(), String> {
    // IMMEDIATE takes the write lock at once (waiting in the busy handler if another process,
    // such as the `sesame` command, holds it), so no write in the batch can fail for a read
    // snapshot that went stale.
    exec(conn, "BEGIN IMMEDIATE")?;
    let mut jobs = batch.drain(..);
    for job in jobs.by_ref() {
        exec(conn, "SAVEPOINT write")?;
        // A panic drops the job's answer with it: its caller hears the write did not complete.
        let failed = match std::panic::catch_unwind(AssertUnwindSafe(|| job(conn))) {
            Ok((failed, f)) => {
                finish.push(f);
                failed
            }
            Err(_) => {
                tracing::error!("a database write panicked; it is rolled back");
                Some("a database write panicked".into())
            }
        };
        // Some errors (disk full, I/O error) make SQLite roll back the whole transaction, not
        // just the statement: the writes run so far in this batch are lost. Say why.
        if conn.is_autocommit() {
            return Err(format!(
                "{}; SQLite rolled back the whole batch",
                failed
                    .as_deref()
                    .unwrap_or("the transaction ended inside a write")
            ));
        }
        if failed.is_some() {
            exec(conn, "ROLLBACK TO write")?;
        }
        exec(conn, "RELEASE write")?;
    }
    drop(jobs);
    exec(conn, "COMMIT")
}

/// A fresh connection, retried with backoff. Meanwhile writes sent are refused (their callers
/// hear the write did not complete, rather than wait); None when every sender is gone.
fn reconnect(connect: &Connect, rx: &mut mpsc::Receiver<Job>) -> Option<Connection> {
    let mut wait = Duration::from_millis(50);
    loop {
        match connect() {
            Ok(c) => return Some(c),
            Err(e) => {
                tracing::error!(error = %e, "database writer cannot reconnect; retrying");
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_secs(5));
                while rx.try_recv().is_ok() {}
                if rx.is_closed() && rx.is_empty() {
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::OptionalExtension;
    use std::path::{Path, PathBuf};

    fn e(x: rusqlite::Error) -> StoreError {
        StoreError::Database(x.to_string())
    }

    fn connect(path: &Path) -> Connect {
        let path = path.to_path_buf();
        Box::new(move || {
            let c = Connection::open(&path)?;
            c.busy_timeout(Duration::from_secs(10))?;
            c.pragma_update(None, "journal_mode", "WAL")?;
            c.pragma_update(None, "synchronous", "FULL")?;
            Ok(c)
        })
    }

    async fn setup() -> (tempfile::TempDir, PathBuf, GroupWriter) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let g = GroupWriter::start(connect(&path)).unwrap();
        g.write(|c| {
            c.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, tag TEXT UNIQUE, b BLOB)")
                .map_err(e)
        })
        .await
        .unwrap();
        (dir, path, g)
    }

    /// Rows with `tag`, read through a connection of its own (what another process sees).
    fn on_disk(path: &Path, tag: &str) -> i64 {
        Connection::open(path)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM t WHERE tag = ?", [tag], |r| r.get(0))
            .unwrap()
    }

    /// Holds the writer for a while, so that the writes sent meanwhile share the next batch.
    fn hold(g: &GroupWriter) -> tokio::task::JoinHandle<()> {
        let g = g.clone();
        tokio::spawn(async move {
            g.write(|_c| {
                std::thread::sleep(Duration::from_millis(300));
                Ok(())
            })
            .await
            .unwrap();
        })
    }

    /// Sends `f` to the writer from a task of its own; its answer comes with the handle.
    fn spawn_write<T, F>(g: &GroupWriter, f: F) -> tokio::task::JoinHandle<Result<T>>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let g = g.clone();
        tokio::spawn(async move { g.write(f).await })
    }

    fn insert(g: &GroupWriter, tag: &'static str) -> tokio::task::JoinHandle<Result<()>> {
        spawn_write(g, move |c| {
            c.execute("INSERT INTO t (tag) VALUES (?)", [tag])
                .map(drop)
                .map_err(e)
        })
    }

    /// A write that runs out of disk: the file may not grow (max_page_count), and the row is big.
    fn write_to_a_full_disk(c: &Connection) -> Result<()> {
        c.query_row("PRAGMA max_page_count = 1", [], |_| Ok(()))
            .optional()
            .map_err(e)?;
        c.execute_batch("INSERT INTO t (tag, b) VALUES ('big', zeroblob(1000000))")
            .map_err(e)
    }

    async fn pause() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_write_leaves_nothing_and_the_batch_goes_on() {
        let (_d, path, g) = setup().await;
        insert(&g, "dup").await.unwrap().unwrap();
        let h = hold(&g);
        pause().await;
        let first = insert(&g, "x1");
        pause().await;
        // Two statements: the first succeeds, the second fails; neither may remain.
        let half = spawn_write(&g, |c| {
            c.execute_batch("INSERT INTO t (tag) VALUES ('half')")
                .map_err(e)?;
            c.execute_batch("INSERT INTO t (tag) VALUES ('dup')")
                .map_err(e)
        });
        pause().await;
        // A write that wrote and then returned an error of its own: what it wrote is undone.
        let early = spawn_write(&g, |c| {
            c.execute_batch("INSERT INTO t (tag) VALUES ('early')")
                .map_err(e)?;
            Err::<(), _>(StoreError::Conflict("early".into()))
        });
        pause().await;
        let next = spawn_write(&g, |c| {
            c.query_row(
                "SELECT COUNT(*) FROM t WHERE tag IN ('half', 'early')",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(e)
        });
        pause().await;
        let last = insert(&g, "x2");
        h.await.unwrap();
        assert!(first.await.unwrap().is_ok());
        assert!(half.await.unwrap().is_err());
        assert!(matches!(early.await.unwrap(), Err(StoreError::Conflict(_))));
        assert_eq!(
            next.await.unwrap().unwrap(),
            0,
            "the next write saw leftovers"
        );
        assert!(last.await.unwrap().is_ok());
        for (tag, n) in [("x1", 1), ("x2", 1), ("half", 0), ("early", 0), ("dup", 1)] {
            assert_eq!(on_disk(&path, tag), n, "{tag}");
        }
    }

    /// Disk full (forced with max_page_count) can end the whole transaction under the batch.
    /// Whatever happens, each caller hears the truth: Ok only for writes that are on disk; and
    /// the writer keeps working afterwards.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn disk_full_mid_batch_tells_each_caller_the_truth_and_recovers() {
        let (_d, path, g) = setup().await;
        let h = hold(&g);
        pause().await;
        let before = insert(&g, "before");
        pause().await;
        let full = spawn_write(&g, write_to_a_full_disk);
        pause().await;
        let after = insert(&g, "after");
        h.await.unwrap();
        assert!(full.await.unwrap().is_err());
        assert_eq!(on_disk(&path, "big"), 0);
        for (tag, r) in [("before", before), ("after", after)] {
            let ok = r.await.unwrap().is_ok();
            assert_eq!(on_disk(&path, tag), i64::from(ok), "{tag}: told ok={ok}");
        }
        // Writes work again (a fresh connection, or the limit lifted with the rollback).
        g.write(|c| {
            c.query_row("PRAGMA max_page_count = 1073741823", [], |_| Ok(()))
                .optional()
                .map_err(e)?;
            Ok(())
        })
        .await
        .unwrap();
        insert(&g, "later").await.unwrap().unwrap();
        assert_eq!(on_disk(&path, "later"), 1);
    }

    /// Disk full on a one-row INSERT makes SQLite roll back the whole transaction (the
    /// statement has no statement journal of its own), so `ROLLBACK TO write` fails with "no
    /// such savepoint". The caller (and the log) must still learn the real cause, not the
    /// bookkeeping error that followed it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_that_ends_the_transaction_is_told_why() {
        let (_d, _path, g) = setup().await;
        let err = g.write(write_to_a_full_disk).await.unwrap_err();
        assert!(
            err.to_string().contains("full"),
            "the caller was told: {err}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_write_fails_alone_and_the_writer_lives_on() {
        let (_d, path, g) = setup().await;
        let h = hold(&g);
        pause().await;
        let before = insert(&g, "before");
        pause().await;
        let boom = spawn_write(&g, |c| {
            c.execute_batch("INSERT INTO t (tag) VALUES ('boom')")
                .map_err(e)?;
            if !c.is_autocommit() {
                panic!("a bug in a write");
            }
            Ok(())
        });
        pause().await;
        let after = insert(&g, "after");
        h.await.unwrap();
        assert!(boom.await.unwrap().is_err());
        // The others in the same batch are not taken down with it.
        assert!(before.await.unwrap().is_ok());
        assert!(after.await.unwrap().is_ok());
        for (tag, n) in [("boom", 0), ("before", 1), ("after", 1)] {
            assert_eq!(on_disk(&path, tag), n, "{tag}");
        }
        insert(&g, "x").await.unwrap().unwrap();
        assert_eq!(on_disk(&path, "x"), 1);
    }
}
