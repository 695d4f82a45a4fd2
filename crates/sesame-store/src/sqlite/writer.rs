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
//! A write keeps the atomicity it would have on its own connection: one statement is atomic
//! by itself (a failing statement undoes only itself), and a write of several statements
//! opens its own transaction, which inside the batch is a savepoint. A batch whose commit
//! fails fails every write in it.

use crate::{Result, StoreError};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};
use std::future::Future;
use std::pin::Pin;
use tokio::sync::{mpsc, oneshot};

/// Most writes committed together; a bound keeps one commit (and its wait) short.
const MAX_BATCH: usize = 128;
/// Writes that may wait for the writer before callers wait to hand theirs over.
const QUEUE: usize = 4096;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
/// Told whether the batch committed; hands the write's result to its caller.
type Finish = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;
type Job = Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Finish> + Send>;

#[derive(Debug, Clone)]
pub struct GroupWriter {
    jobs: mpsc::Sender<Job>,
}

fn stopped() -> StoreError {
    StoreError::Database("the database writer is not running".into())
}

impl GroupWriter {
    /// Opens the writer's connection and starts its task on the current runtime.
    pub async fn start(opts: &SqliteConnectOptions) -> Result<Self> {
        let conn = opts
            .connect()
            .await
            .map_err(|e| StoreError::Database(e.to_string()))?;
        let (jobs, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(conn, rx));
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
                Box::new(move |commit: std::result::Result<(), String>| {
                    let _ = tx.send(match commit {
                        Ok(()) => result,
                        Err(e) => Err(StoreError::Database(e)),
                    });
                }) as Finish
            })
        });
        self.jobs.send(job).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

async fn run(mut conn: SqliteConnection, mut rx: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut finish = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // IMMEDIATE takes the write lock at once (waiting in the busy handler if another
        // process, such as the `sesame` command, holds it), so no write in the batch can fail
        // for a read snapshot that went stale.
        let outcome = match conn.begin_with("BEGIN IMMEDIATE").await {
            Ok(mut tx) => {
                for job in batch.drain(..) {
                    finish.push(job(&mut tx).await);
                }
                tx.commit().await.map_err(|e| e.to_string())
            }
            Err(e) => {
                tracing::error!(error = %e, "database write batch could not start");
                // Dropping the writes tells their callers they failed.
                batch.clear();
                Err(e.to_string())
            }
        };
        if let Err(e) = &outcome {
            tracing::error!(error = %e, writes = finish.len(), "database write batch failed");
        }
        for f in finish.drain(..) {
            f(outcome.clone());
        }
    }
}
