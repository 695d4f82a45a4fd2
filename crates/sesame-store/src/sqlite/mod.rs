//! The embedded backend: one SQLite file in WAL mode with `synchronous=FULL`.
//!
//! Reads run right where they are asked, on a read-only connection taken from a small pool:
//! in WAL mode a reader never waits for the writer, and a lookup of a few rows from the page
//! cache takes microseconds, less than handing it to another thread and being woken again
//! (which was most of the cost of a sign-in when every statement went through a worker
//! thread). Writes go to one connection on a thread of its own, in groups (`writer`):
//! everything waiting is committed in one transaction, so one disk flush serves many writes.
//! Each write runs in its own savepoint and is a conditional statement (`UPDATE ... WHERE`,
//! `INSERT ... ON CONFLICT`, `DELETE ... RETURNING`), so single use is enforced by the
//! database. Secrets are sealed with the master key before a write and opened after it,
//! outside the group. Migrations run first, on a connection of their own (`migrate`).
//!
//! The SQL lives with its capability: `users.rs`, `groups.rs`, `methods.rs`, `devices.rs`,
//! `approvals.rs`, `signins.rs` (sign-ins, sessions, set-up links), `policy.rs`, `audit.rs`.

mod access_passes;
mod approvals;
mod audit;
mod devices;
mod groups;
mod guesses;
mod methods;
mod migrate;
mod oidc;
mod phones;
mod policy;
mod rekey;
mod signins;
mod users;
mod writer;

use crate::rows::bad_json;
use crate::{crypto::MasterKey, Result, StoreError};
use rand::RngCore;
use rusqlite::{Connection, OpenFlags, Params, Row};
use sesame_core::ChallengeId;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// How long a write waits for a lock held by another process (the `sesame` command).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a read waits. In WAL mode readers wait only while a crashed writer's log is
/// recovered (milliseconds); they run on request threads, so they give up sooner than writes.
const READER_BUSY_TIMEOUT: Duration = Duration::from_secs(2);
/// Prepared statements kept per connection: every statement of the store fits.
const STATEMENT_CACHE: usize = 128;
/// Idle read connections kept; more are opened when more reads run at once, then closed.
const MAX_IDLE_READERS: usize = 16;
/// Longest the integrity check of a readiness probe may take, and how often it runs.
const READY_CHECK_BUDGET: Duration = Duration::from_secs(1);
const READY_CHECK_EVERY: Duration = Duration::from_secs(60);
/// Longest the integrity check at start may take. A database too large to check in this
/// time starts unchecked (and says so in the log) rather than keeping the server down.
const CHECK_BUDGET: Duration = Duration::from_secs(5);

pub struct SqliteStore {
    path: PathBuf,
    /// The last readiness check: when, and what it found.
    last_check: Mutex<Option<(std::time::Instant, std::result::Result<(), String>)>>,
    readers: Arc<Readers>,
    /// Every write, committed in groups (see `writer`): one connection writes, so writers
    /// queue here instead of sleeping in SQLite's busy handler.
    group: writer::GroupWriter,
    key: MasterKey,
}

/// Read-only connections, used by one read at a time and put back.
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    fn open(&self) -> Result<Connection> {
        let c = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )?;
        c.busy_timeout(READER_BUSY_TIMEOUT)?;
        c.pragma_update(None, "temp_store", "MEMORY")?;
        c.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(c)
    }

    /// Runs `f` on an idle reader (opening one if none is idle). Every statement ends before
    /// `f` returns, so a pooled connection holds no read snapshot.
    fn with<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let pooled = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match pooled {
            Some(c) => c,
            None => self.open()?,
        };
        let out = f(&conn);
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
        out
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    use rusqlite::ffi;
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == ffi::SQLITE_CONSTRAINT_UNIQUE
            || f.extended_code == ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

/// Maps a unique-constraint failure to `Conflict(what)`, anything else to a database error.
fn conflict(what: impl FnOnce() -> String) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |e| {
        if is_unique_violation(&e) {
            StoreError::Conflict(what())
        } else {
            e.into()
        }
    }
}

/// The first row of `sql` (a statement with `RETURNING` makes all its changes at once, in
/// its first step), decoded by `f`.
fn one<T>(
    c: &Connection,
    sql: &str,
    p: impl Params,
    f: impl FnOnce(&Row) -> Result<T>,
) -> Result<Option<T>> {
    let mut st = c.prepare_cached(sql)?;
    let mut rows = st.query(p)?;
    let out = match rows.next()? {
        Some(r) => Some(f(r)?),
        None => return Ok(None),
    };
    // Run the statement to its end, so that an error while finishing it (a write's journal)
    // is seen here rather than dropped with the statement.
    while rows.next()?.is_some() {}
    Ok(out)
}

/// Every row of `sql`, each decoded by `f`.
fn all<T>(
    c: &Connection,
    sql: &str,
    p: impl Params,
    mut f: impl FnMut(&Row) -> Result<T>,
) -> Result<Vec<T>> {
    let mut st = c.prepare_cached(sql)?;
    let mut rows = st.query(p)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(f(r)?);
    }
    Ok(out)
}

/// Runs a statement without rows; returns how many rows it changed.
fn changed(c: &Connection, sql: &str, p: impl Params) -> Result<u64> {
    Ok(c.prepare_cached(sql)?.execute(p)? as u64)
}

fn first<T: rusqlite::types::FromSql>(r: &Row) -> Result<T> {
    Ok(r.get(0)?)
}

/// A challenge id from the first column.
fn challenge_id(r: &Row) -> Result<ChallengeId> {
    Ok(ChallengeId(r.get(0)?))
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A stored name this version does not know (a newer version wrote it).
/// What `PRAGMA quick_check` found.
#[derive(Debug, PartialEq, Eq)]
enum Checked {
    Sound,
    Damaged(String),
    /// Not finished within the budget.
    TooLarge,
}

/// Checks the structure of every table and index (`quick_check`), giving up after `budget`.
fn quick_check(c: &Connection, budget: Duration) -> Checked {
    let interrupt = c.get_interrupt_handle();
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let timer = std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = finished.recv_timeout(budget) {
            interrupt.interrupt();
        }
    });
    let found = (|| -> rusqlite::Result<Vec<String>> {
        let mut st = c.prepare("PRAGMA quick_check(20)")?;
        let rows = st.query_map([], |r| r.get(0))?;
        rows.collect()
    })();
    drop(done);
    let _ = timer.join();
    match found {
        Ok(rows) if rows == ["ok"] => Checked::Sound,
        Ok(rows) => Checked::Damaged(rows.join("; ")),
        Err(rusqlite::Error::SqliteFailure(f, _))
            if f.code == rusqlite::ErrorCode::OperationInterrupted =>
        {
            Checked::TooLarge
        }
        Err(e) => Checked::Damaged(e.to_string()),
    }
}

fn damaged(path: &Path, details: &str) -> StoreError {
    StoreError::Damaged(format!(
        "the database {} is damaged ({details}); restore it from your backup",
        path.display()
    ))
}

fn open_writer(path: &Path) -> rusqlite::Result<Connection> {
    let c = Connection::open(path)?;
    c.busy_timeout(BUSY_TIMEOUT)?;
    // Readers must never wait for the writer (they run on the request threads): that needs WAL,
    // which some file systems (network shares) cannot do.
    let mode: String = c.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
            Some(format!(
                "the database cannot use write-ahead logging (journal mode {mode:?}); put the data directory on a local file system"
            )),
        ));
    }
    c.pragma_update(None, "synchronous", "FULL")?;
    c.pragma_update(None, "foreign_keys", "ON")?;
    // `RETURNING` collects its rows in a temporary table: keep that in memory, not in a file.
    c.pragma_update(None, "temp_store", "MEMORY")?;
    c.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(c)
}

impl SqliteStore {
    /// Opens (creating if needed, with its directory) the database file and applies
    /// migrations.
    pub async fn open(path: &Path, key: MasterKey) -> Result<Self> {
        let owned = path.to_path_buf();
        // Migrations on a connection of their own, closed before the writer starts; on a
        // blocking thread, as opening a large database can take a while.
        tokio::task::spawn_blocking(move || {
            if let Some(parent) = owned.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| {
                    StoreError::Database(format!("cannot create {}: {e}", parent.display()))
                })?;
            }
            let mut c = open_writer(&owned).map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _)
                    if matches!(
                        f.code,
                        rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase
                    ) =>
                {
                    damaged(&owned, &e.to_string())
                }
                e => e.into(),
            })?;
            // A damaged database is refused at start (not found by the first sign-in that
            // reads the damaged page), and never migrated.
            match quick_check(&c, CHECK_BUDGET) {
                Checked::Sound => {}
                Checked::Damaged(details) => return Err(damaged(&owned, &details)),
                Checked::TooLarge => tracing::warn!(
                    path = %owned.display(),
                    "the database is too large to check at start within {CHECK_BUDGET:?}; starting unchecked"
                ),
            }
            migrate::run(&mut c)
        })
        .await
        .map_err(|e| StoreError::Migration(format!("the migration did not complete: {e}")))??;
        let writer_path = path.to_path_buf();
        let group = writer::GroupWriter::start(Box::new(move || open_writer(&writer_path)))?;
        let readers = Arc::new(Readers {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
        });
        // Fail at start, not at the first request, if the file cannot be read.
        readers.with(|c| Ok(c.query_row("SELECT 1", [], |_| Ok(()))?))?;
        Ok(Self {
            path: path.to_path_buf(),
            last_check: Mutex::new(None),
            readers,
            group,
            key,
        })
    }

    /// A lookup of a few rows by key: run right here (microseconds; a thread hop costs more).
    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.readers.with(f)
    }

    /// A listing whose size the data decides (administration pages): on a blocking thread, so
    /// that a long one does not hold up the requests sharing this runtime thread.
    async fn read_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || readers.with(f))
            .await
            .map_err(|e| StoreError::Database(format!("a database read did not complete: {e}")))?
    }

    /// Whether the database is sound, as far as a `quick_check` of at most
    /// `READY_CHECK_BUDGET` on a connection of its own (so nothing comes from a cache) can
    /// tell; checked again at most every `READY_CHECK_EVERY`, so readiness probes stay cheap.
    async fn sound(&self) -> Result<()> {
        let due = {
            let last = self
                .last_check
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match &*last {
                Some((at, verdict)) if at.elapsed() < READY_CHECK_EVERY => {
                    return verdict.clone().map_err(|m| damaged(&self.path, &m));
                }
                _ => true,
            }
        };
        debug_assert!(due);
        let path = self.path.clone();
        let checked = tokio::task::spawn_blocking(move || -> Result<Checked> {
            let c = Connection::open_with_flags(
                &path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            c.busy_timeout(READER_BUSY_TIMEOUT)?;
            Ok(quick_check(&c, READY_CHECK_BUDGET))
        })
        .await
        .map_err(|e| StoreError::Database(format!("the check did not complete: {e}")))??;
        let verdict = match checked {
            Checked::Damaged(m) => Err(m),
            Checked::Sound | Checked::TooLarge => Ok(()),
        };
        *self
            .last_check
            .lock()
            .unwrap_or_else(PoisonError::into_inner) =
            Some((std::time::Instant::now(), verdict.clone()));
        verdict.map_err(|m| damaged(&self.path, &m))
    }

    /// One statement, committed with the next group; returns the rows it changed.
    async fn execute<P: Params + Send + 'static>(&self, sql: &'static str, p: P) -> Result<u64> {
        self.group.write(move |c| changed(c, sql, p)).await
    }
}
