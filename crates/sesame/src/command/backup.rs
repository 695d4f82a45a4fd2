//! `sesame backup FILE`: a consistent copy of the embedded database, taken while the server
//! runs, with SQLite's online backup API.
//!
//! The copy is read from one read transaction: in WAL mode that is a snapshot, so the copy is
//! the database as it was at one instant, the server's writers never wait for it, and a write
//! made meanwhile does not restart the copy (as it would if each step took a new snapshot).
//! It is written to `FILE.partial` (mode 0600: it holds password hashes), checked, flushed
//! to disk and only then renamed, so FILE is never half a backup.

use crate::Cli;
use anyhow::{Context, Result};
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};
use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Pages copied per step (1 MiB at SQLite's default 4 KiB pages), and the pause between
/// steps, so that a large copy shares the disk with the running server instead of taking it.
const PAGES_PER_STEP: i32 = 256;
const PAUSE: Duration = Duration::from_millis(5);
/// How long the copy waits for the database while it is locked (only while a crashed
/// writer's log is recovered, in WAL mode) before it gives up.
const BUSY_LIMIT: Duration = Duration::from_secs(30);

/// What restoring needs, in `--help` and after each backup.
const RESTORE_HELP: &str = "\
The master key is not in the backup. Secrets in the database (verification-code secrets,
phone numbers, OpenID Connect signing keys) are sealed with it, so restoring also needs the
same master key file:
master.key in the data directory (or the file --master-key-file, SESAME_MASTER_KEY_FILE or
master_key_file in the configuration names). Back that file up too, kept apart from the
database copies.

To restore:
  1. stop the server (e.g. systemctl stop sesame);
  2. remove sesame.db-wal and sesame.db-shm from the data directory if they are there: they
     belong to the database being replaced, and SQLite would apply them to the restored one;
  3. copy the backup to the data directory's sesame.db, owned by the server's user, mode 0600
     (e.g. install -o sesame -g sesame -m 600 FILE /var/lib/sesame/sesame.db);
  4. put the same master.key beside it if it is not there;
  5. start the server.";

#[derive(clap::Args)]
#[command(after_long_help = RESTORE_HELP)]
pub struct Args {
    /// Where to write the copy. Refused if it exists, unless --force.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Replace FILE if it exists (and a FILE.partial left by an interrupted backup).
    #[arg(long)]
    pub force: bool,
}

/// What a finished backup holds.
#[derive(Debug, serde::Serialize)]
struct Copied {
    pages: u64,
    page_size: u64,
    bytes: u64,
}

pub async fn run(cli: &Cli, args: &Args) -> Result<()> {
    let resolved = crate::config::resolve(
        cli.config.as_deref(),
        cli.data_dir.as_deref(),
        cli.database_url.as_deref(),
        cli.master_key_file.as_deref(),
        None,
    )
    .map_err(|e| match e.downcast_ref::<sesame_store::StoreError>() {
        Some(sesame_store::StoreError::UnsupportedUrl(_)) => e.context(
            "sesame backup copies the embedded SQLite database only; back up a PostgreSQL \
             database with pg_dump",
        ),
        _ => e,
    })?;
    // A PostgreSQL database is PostgreSQL's to copy: say so before anything else.
    let source = database_file(&resolved.database)?.to_path_buf();
    super::check_data(&resolved, super::Create::Refused)?;
    let target = args.file.clone();
    let partial = with_suffix(&target, ".partial");
    check_target(
        &target,
        &partial,
        &source,
        &resolved.master_key_file,
        args.force,
    )?;

    let started = Instant::now();
    let progress = std::io::stderr().is_terminal();
    let copied = {
        let (source, target, partial) = (source.clone(), target.clone(), partial.clone());
        tokio::task::spawn_blocking(move || copy(&source, &target, &partial, progress))
            .await
            .context("the backup stopped unexpectedly")??
    };
    let seconds = started.elapsed().as_secs_f64();
    let key = &resolved.master_key_file;
    super::output(
        cli.json,
        &serde_json::json!({
            "file": target,
            "database": source,
            "pages": copied.pages,
            "page_size": copied.page_size,
            "bytes": copied.bytes,
            "seconds": seconds,
            "integrity_check": "ok",
            "master_key_file": key,
            "master_key_included": false,
        }),
        || {
            say!(
                "Backed up {} to {}: {} pages of {} bytes ({}) in {:.2} s. Integrity check: ok.",
                source.display(),
                target.display(),
                copied.pages,
                copied.page_size,
                size(copied.bytes),
                seconds
            );
            say!(
                "The master key is not in the backup: restoring it also needs the same master \
                 key file, {}. Back that file up too, kept apart from the database copies \
                 (`sesame backup --help` shows how to restore).",
                key.display()
            );
        },
    )
}

/// The file of the embedded database. A PostgreSQL database is PostgreSQL's to back up.
fn database_file(backend: &sesame_store::Backend) -> Result<&Path> {
    match backend {
        sesame_store::Backend::Sqlite(path) => Ok(path),
        #[cfg(feature = "postgres")]
        sesame_store::Backend::Postgres(_) => anyhow::bail!(
            "sesame backup copies the embedded database; {backend} is a PostgreSQL database:              back it up with pg_dump (for example `pg_dump --format=custom --file=sesame.dump              DATABASE_URL`), and keep the master key file with it, apart"
        ),
    }
}

/// `PATH` with `suffix` added to its file name (`backup.db` -> `backup.db.partial`).
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = OsString::from(path.as_os_str());
    s.push(suffix);
    PathBuf::from(s)
}

/// Whether `a` and `b` are the same existing file (any path to it, links included).
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// The files SQLite keeps beside a database while it is open.
fn sidecars(db: &Path) -> [PathBuf; 3] {
    [
        with_suffix(db, "-journal"),
        with_suffix(db, "-wal"),
        with_suffix(db, "-shm"),
    ]
}

/// Refuses a target that would replace the data itself, or a file someone did not ask to
/// replace.
fn check_target(
    target: &Path,
    partial: &Path,
    source: &Path,
    key: &Path,
    force: bool,
) -> Result<()> {
    // Even with --force: renaming a copy over the live database, its log or its key under a
    // running server would destroy what the backup is meant to keep.
    let live = std::iter::once(source.to_path_buf())
        .chain(sidecars(source))
        .chain(std::iter::once(key.to_path_buf()));
    for file in live {
        if same_file(target, &file) || same_file(partial, &file) {
            anyhow::bail!(
                "{} is Sesame's own {}: write the backup somewhere else",
                target.display(),
                file.display()
            );
        }
    }
    match std::fs::symlink_metadata(target) {
        Ok(m) if m.is_dir() => anyhow::bail!(
            "{} is a directory: name the backup file (e.g. {})",
            target.display(),
            target.join("sesame-backup.db").display()
        ),
        Ok(_) if !force => anyhow::bail!(
            "{} exists: choose another name, or pass --force to replace it",
            target.display()
        ),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", target.display())),
    }
    if std::fs::symlink_metadata(partial).is_ok() {
        if !force {
            anyhow::bail!(
                "{} exists: another backup may be writing it, or one was interrupted. Remove it, \
                 or pass --force",
                partial.display()
            );
        }
        remove_partial(partial).with_context(|| format!("cannot remove {}", partial.display()))?;
    }
    Ok(())
}

/// Removes a partial copy and whatever SQLite left beside it.
fn remove_partial(partial: &Path) -> std::io::Result<()> {
    for file in std::iter::once(partial.to_path_buf()).chain(sidecars(partial)) {
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Removes the partial copy when the backup does not finish (an error, a panic), so that no
/// half backup is left to be mistaken for one.
struct PartialFile<'a> {
    path: &'a Path,
    kept: bool,
}

impl Drop for PartialFile<'_> {
    fn drop(&mut self) {
        if !self.kept {
            let _ = remove_partial(self.path);
        }
    }
}

/// Copies the database at `source` to `target` through `partial`.
fn copy(source: &Path, target: &Path, partial: &Path, show_progress: bool) -> Result<Copied> {
    use std::os::unix::fs::OpenOptionsExt;
    // Made here, empty and private, before SQLite opens it: a backup holds password hashes,
    // and create_new refuses a file another backup made since the check.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(partial)
        .with_context(|| format!("cannot create the backup file {}", partial.display()))?;
    let mut guard = PartialFile {
        path: partial,
        kept: false,
    };
    let cannot = || format!("cannot back up {}", source.display());
    // Read-only: the backup never writes to the database it copies.
    let src = Connection::open_with_flags(
        source,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(cannot)?;
    src.busy_timeout(Duration::from_secs(10))
        .with_context(cannot)?;
    // The snapshot: a read transaction begins at its first read and lasts until COMMIT.
    src.execute_batch("BEGIN")
        .and_then(|()| {
            src.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
                r.get::<_, i64>(0)
            })
        })
        .with_context(cannot)?;
    let mut dst = Connection::open_with_flags(
        partial,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open the backup file {}", partial.display()))?;
    let writing = || format!("cannot write the backup file {}", partial.display());
    {
        let backup = Backup::new(&src, &mut dst).with_context(writing)?;
        let mut busy_since: Option<Instant> = None;
        loop {
            match backup.step(PAGES_PER_STEP).with_context(writing)? {
                StepResult::Done => break,
                StepResult::More => busy_since = None,
                StepResult::Busy | StepResult::Locked => {
                    let since = *busy_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > BUSY_LIMIT {
                        anyhow::bail!(
                            "cannot back up {}: the database stayed locked for {} s",
                            source.display(),
                            BUSY_LIMIT.as_secs()
                        );
                    }
                }
                // The enum is non-exhaustive: anything new is treated as a failed step.
                other => anyhow::bail!("cannot back up {}: {other:?}", source.display()),
            }
            if show_progress {
                let p = backup.progress();
                let done = p.pagecount - p.remaining;
                let percent = if p.pagecount > 0 {
                    100 * i64::from(done) / i64::from(p.pagecount)
                } else {
                    100
                };
                let mut err = std::io::stderr().lock();
                let _ = write!(
                    err,
                    "\rcopying: {done} of {} pages ({percent}%)",
                    p.pagecount
                );
                let _ = err.flush();
            }
            std::thread::sleep(PAUSE);
        }
    }
    if show_progress {
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[Kchecking the copy...");
        let _ = err.flush();
    }
    src.execute_batch("COMMIT").with_context(cannot)?;
    drop(src);

    let problems = integrity_problems(&dst)
        .with_context(|| format!("cannot check the backup file {}", partial.display()))?;
    if show_progress {
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K");
        let _ = err.flush();
    }
    if !problems.is_empty() {
        anyhow::bail!(
            "the copy failed its integrity check ({}); nothing was written to {}. Check the \
             database itself with `sqlite3 {} 'PRAGMA integrity_check'`",
            problems.join("; "),
            target.display(),
            source.display()
        );
    }
    let pages: u64 = dst
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .with_context(writing)?;
    let page_size: u64 = dst
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .with_context(writing)?;
    dst.close().map_err(|(_, e)| e).with_context(writing)?;
    // A connection that closed cleanly leaves nothing beside the file; anything left would
    // hold part of the copy, which the rename below would leave behind.
    if let Some(left) = sidecars(partial).iter().find(|f| f.exists()) {
        anyhow::bail!(
            "the backup file was not closed cleanly ({} is left); nothing was written to {}",
            left.display(),
            target.display()
        );
    }
    // On disk before it has its name, and the name on disk before we say it is done.
    std::fs::File::open(partial)
        .and_then(|f| f.sync_all())
        .with_context(writing)?;
    let bytes = std::fs::metadata(partial).with_context(writing)?.len();
    std::fs::rename(partial, target).with_context(|| {
        format!(
            "cannot rename {} to {}",
            partial.display(),
            target.display()
        )
    })?;
    guard.kept = true;
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot flush the directory {}", dir.display()))?;
    Ok(Copied {
        pages,
        page_size,
        bytes,
    })
}

/// What `PRAGMA integrity_check` found: nothing when the copy is sound (its first ten
/// findings otherwise).
fn integrity_problems(db: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut st = db.prepare("PRAGMA integrity_check(10)")?;
    let rows = st.query_map([], |r| r.get::<_, String>(0))?;
    let found = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(found.into_iter().filter(|line| line != "ok").collect())
}

/// A size as people read it: `512 bytes`, `3.4 MB`.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if bytes < 1000 {
        return super::counted(bytes, "byte", "bytes");
    }
    let mut value = bytes as f64 / 1000.0;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_read_them() {
        assert_eq!(size(0), "0 bytes");
        assert_eq!(size(1), "1 byte");
        assert_eq!(size(999), "999 bytes");
        assert_eq!(size(1_000), "1.0 kB");
        assert_eq!(size(3_400_000), "3.4 MB");
        assert_eq!(size(2_500_000_000), "2.5 GB");
    }

    #[test]
    fn the_partial_file_is_the_name_with_a_suffix() {
        assert_eq!(
            with_suffix(Path::new("/b/sesame.db"), ".partial"),
            PathBuf::from("/b/sesame.db.partial")
        );
    }

    /// Even --force never lets a copy replace the live database or its key.
    #[test]
    fn the_live_database_and_key_are_never_a_target() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("sesame.db");
        let key = dir.path().join("master.key");
        std::fs::write(&db, b"x").unwrap();
        std::fs::write(&key, b"k").unwrap();
        for target in [&db, &key] {
            let partial = with_suffix(target, ".partial");
            let e = check_target(target, &partial, &db, &key, true).unwrap_err();
            assert!(e.to_string().contains("is Sesame's own"), "{e}");
        }
        let other = dir.path().join("copy.db");
        std::fs::write(&other, b"old").unwrap();
        let partial = with_suffix(&other, ".partial");
        let e = check_target(&other, &partial, &db, &key, false).unwrap_err();
        assert!(e.to_string().contains("--force"), "{e}");
        check_target(&other, &partial, &db, &key, true).unwrap();
    }
}
