//! Group commit for the SQLite file.
//!
//! With `synchronous=FULL` every commit waits for the disk to flush the write-ahead log, and
//! SQLite lets one writer in at a time, so a busy server spends most of a write's time in
//! that flush, one write after another. Here the hot writes (each sign-in makes several) go to
//! one task with its own connection, which takes every write that is waiting, runs them one
//! after another inside a single `BEGIN IMMEDIATE ... COMMIT`, and answers each caller only
//! after that commit returned: one flush for many writes, and nobody hears "done" before the
//! data is on disk.
//!
//! Each write runs in its own savepoint inside the batch: a write that fails (or panics)
//! leaves nothing behind and does not take the others with it. An error that ends the whole
//! transaction (disk full, I/O error) fails the writes already run in the batch, leaves the
//! rest unrun (their callers are told it failed), and the writer opens a fresh connection.

use crate::{Result, StoreError};
use futures_util::FutureExt;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Most writes committed together; a bound keeps one commit (and its wait) short.
const MAX_BATCH: usize = 128;
/// Writes that may wait for the writer before callers wait to hand theirs over.
const QUEUE: usize = 4096;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
/// Told whether the batch committed; hands the write's result to its caller.
type Finish = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;
/// Runs one write; says whether it succeeded (its savepoint is kept) and how to answer it.
type Job =
    Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, (bool, Finish)> + Send>;

#[derive(Debug, Clone)]
pub struct GroupWriter {
    jobs: mpsc::Sender<Job>,
}

fn unanswered() -> StoreError {
    StoreError::Database("the database write did not complete (see the server log)".into())
}

impl GroupWriter {
    /// Opens the writer's connection and starts its task on the current runtime.
    pub async fn start(opts: &SqliteConnectOptions) -> Result<Self> {
        let conn = opts
            .connect()
            .await
            .map_err(|e| StoreError::Database(e.to_string()))?;
        let (jobs, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(conn, opts.clone(), rx));
        Ok(Self { jobs })
    }

    /// Runs `f` in the next batch; returns its result once the batch is committed.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            Box::pin(async move {
                let result = f(conn).await;
                let ok = result.is_ok();
                let finish = Box::new(move |commit: std::result::Result<(), String>| {
                    let _ = tx.send(match commit {
                        Ok(()) => result,
                        Err(e) => Err(StoreError::Database(e)),
                    });
                }) as Finish;
                (ok, finish)
            })
        });
        self.jobs.send(job).await.map_err(|_| unanswered())?;
        rx.await.map_err(|_| unanswered())?
    }
}

async fn run(mut conn: SqliteConnection, opts: SqliteConnectOptions, mut rx: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut finish = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let outcome = run_batch(&mut conn, &mut batch, &mut finish).await;
        if let Err(e) = &outcome {
            tracing::error!(error = %e, writes = finish.len(), unrun = batch.len(), "database write batch failed");
        }
        // Writes never run are dropped: their callers hear that the write did not complete.
        batch.clear();
        for f in finish.drain(..) {
            f(outcome.clone());
        }
        // After a failed batch (or anything that left a transaction open) the connection's
        // state is unknown: start again from a fresh one.
        if outcome.is_err() || conn.is_in_transaction() {
            conn = reconnect(&opts).await;
        }
    }
}

/// One `BEGIN IMMEDIATE ... COMMIT` around the waiting writes, each in its own savepoint.
async fn run_batch(
    conn: &mut SqliteConnection,
    batch: &mut Vec<Job>,
    finish: &mut Vec<Finish>,
) -> std::result::Result<(), String> {
    let text = |e: sqlx::Error| e.to_string();
    // IMMEDIATE takes the write lock at once (waiting in the busy handler if another process,
    // such as the `sesame` command, holds it), so no write in the batch can fail for a read
    // snapshot that went stale.
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(text)?;
    while !batch.is_empty() {
        let job = batch.remove(0);
        let mut savepoint = tx.begin().await.map_err(text)?;
        let Ok((ok, f)) = AssertUnwindSafe(job(&mut savepoint)).catch_unwind().await else {
            return Err("a database write panicked".into());
        };
        finish.push(f);
        // If the savepoint cannot be released or rolled back, SQLite ended the whole
        // transaction (disk full, I/O error): the writes run so far are lost.
        if ok {
            savepoint.commit().await.map_err(text)?;
        } else {
            savepoint.rollback().await.map_err(text)?;
        }
    }
    tx.commit().await.map_err(text)
}

async fn reconnect(opts: &SqliteConnectOptions) -> SqliteConnection {
    let mut wait = Duration::from_millis(50);
    loop {
        match opts.connect().await {
            Ok(c) => return c,
            Err(e) => {
                tracing::error!(error = %e, "database writer cannot reconnect; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
    use sqlx::Row;

    fn e(x: sqlx::Error) -> StoreError {
        StoreError::Database(x.to_string())
    }

    async fn setup() -> (tempfile::TempDir, SqliteConnectOptions, GroupWriter) {
        let dir = tempfile::tempdir().unwrap();
        let opts = SqliteConnectOptions::new()
            .filename(dir.path().join("t.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        let g = GroupWriter::start(&opts).await.unwrap();
        g.write(|c| {
            Box::pin(async move {
                sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY, tag TEXT UNIQUE, b BLOB)")
                    .execute(&mut *c)
                    .await
                    .map_err(e)?;
                Ok(())
            })
        })
        .await
        .unwrap();
        (dir, opts, g)
    }

    /// Rows with `tag`, read through a connection of its own (what another process sees).
    async fn on_disk(opts: &SqliteConnectOptions, tag: &str) -> i64 {
        let mut c = opts.connect().await.unwrap();
        sqlx::query("SELECT COUNT(*) FROM t WHERE tag = ?")
            .bind(tag)
            .fetch_one(&mut c)
            .await
            .unwrap()
            .get(0)
    }

    /// Holds the writer for a while, so that the writes sent meanwhile share the next batch.
    fn hold(g: &GroupWriter) -> tokio::task::JoinHandle<()> {
        let g = g.clone();
        tokio::spawn(async move {
            g.write(|_c| {
                Box::pin(async move {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok(())
                })
            })
            .await
            .unwrap();
        })
    }

    fn insert(g: &GroupWriter, tag: &'static str) -> tokio::task::JoinHandle<Result<()>> {
        let g = g.clone();
        tokio::spawn(async move {
            g.write(move |c| {
                Box::pin(async move {
                    sqlx::query("INSERT INTO t (tag) VALUES (?)")
                        .bind(tag)
                        .execute(&mut *c)
                        .await
                        .map_err(e)?;
                    Ok(())
                })
            })
            .await
        })
    }

    async fn pause() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_write_leaves_nothing_and_the_batch_goes_on() {
        let (_d, opts, g) = setup().await;
        insert(&g, "dup").await.unwrap().unwrap();
        let h = hold(&g);
        pause().await;
        let first = insert(&g, "x1");
        pause().await;
        // Two statements: the first succeeds, the second fails; neither may remain.
        let g1 = g.clone();
        let half = tokio::spawn(async move {
            g1.write(|c| {
                Box::pin(async move {
                    sqlx::query("INSERT INTO t (tag) VALUES ('half')")
                        .execute(&mut *c)
                        .await
                        .map_err(e)?;
                    sqlx::query("INSERT INTO t (tag) VALUES ('dup')")
                        .execute(&mut *c)
                        .await
                        .map_err(e)?;
                    Ok(())
                })
            })
            .await
        });
        pause().await;
        // Its own transaction, left without commit: rolled back before the next write runs.
        let g2 = g.clone();
        let early = tokio::spawn(async move {
            g2.write(|c| {
                Box::pin(async move {
                    let mut tx = c.begin().await.map_err(e)?;
                    sqlx::query("INSERT INTO t (tag) VALUES ('early')")
                        .execute(&mut *tx)
                        .await
                        .map_err(e)?;
                    Ok(false)
                })
            })
            .await
        });
        pause().await;
        let g3 = g.clone();
        let next = tokio::spawn(async move {
            g3.write(|c| {
                Box::pin(async move {
                    sqlx::query_scalar::<_, i64>(
                        "SELECT COUNT(*) FROM t WHERE tag IN ('half', 'early')",
                    )
                    .fetch_one(&mut *c)
                    .await
                    .map_err(e)
                })
            })
            .await
        });
        pause().await;
        let last = insert(&g, "x2");
        h.await.unwrap();
        assert!(first.await.unwrap().is_ok());
        assert!(half.await.unwrap().is_err());
        assert!(!early.await.unwrap().unwrap());
        assert_eq!(
            next.await.unwrap().unwrap(),
            0,
            "the next write saw leftovers"
        );
        assert!(last.await.unwrap().is_ok());
        for (tag, n) in [("x1", 1), ("x2", 1), ("half", 0), ("early", 0), ("dup", 1)] {
            assert_eq!(on_disk(&opts, tag).await, n, "{tag}");
        }
    }

    /// Disk full (forced with max_page_count) can end the whole transaction under the batch.
    /// Whatever happens, each caller hears the truth: Ok only for writes that are on disk; and
    /// the writer keeps working afterwards.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn disk_full_mid_batch_tells_each_caller_the_truth_and_recovers() {
        let (_d, opts, g) = setup().await;
        let h = hold(&g);
        pause().await;
        let before = insert(&g, "before");
        pause().await;
        let g1 = g.clone();
        let full = tokio::spawn(async move {
            g1.write(|c| {
                Box::pin(async move {
                    sqlx::query("PRAGMA max_page_count = 1")
                        .execute(&mut *c)
                        .await
                        .map_err(e)?;
                    sqlx::query("INSERT INTO t (tag, b) VALUES ('big', zeroblob(1000000))")
                        .execute(&mut *c)
                        .await
                        .map_err(e)?;
                    Ok(())
                })
            })
            .await
        });
        pause().await;
        let after = insert(&g, "after");
        h.await.unwrap();
        assert!(full.await.unwrap().is_err());
        assert_eq!(on_disk(&opts, "big").await, 0);
        for (tag, r) in [("before", before), ("after", after)] {
            let ok = r.await.unwrap().is_ok();
            assert_eq!(
                on_disk(&opts, tag).await,
                i64::from(ok),
                "{tag}: told ok={ok}"
            );
        }
        // A fresh connection: the page limit is gone and writes work again.
        g.write(|c| {
            Box::pin(async move {
                sqlx::query("PRAGMA max_page_count = 1073741823")
                    .execute(&mut *c)
                    .await
                    .map_err(e)?;
                Ok(())
            })
        })
        .await
        .unwrap();
        insert(&g, "later").await.unwrap().unwrap();
        assert_eq!(on_disk(&opts, "later").await, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_write_fails_alone_and_the_writer_lives_on() {
        let (_d, opts, g) = setup().await;
        let g1 = g.clone();
        let boom = tokio::spawn(async move {
            g1.write(|c| {
                Box::pin(async move {
                    sqlx::query("INSERT INTO t (tag) VALUES ('boom')")
                        .execute(&mut *c)
                        .await
                        .map_err(e)?;
                    if c.is_in_transaction() {
                        panic!("a bug in a write");
                    }
                    Ok(())
                })
            })
            .await
        });
        assert!(boom.await.unwrap().is_err());
        assert_eq!(on_disk(&opts, "boom").await, 0);
        insert(&g, "x").await.unwrap().unwrap();
        assert_eq!(on_disk(&opts, "x").await, 1);
    }
}
