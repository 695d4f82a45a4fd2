//! Sesame's storage: the records, the capability traits that together make a [`Store`], and
//! the backends. [`open`] picks the backend from a database URL: `sqlite://FILE` (embedded,
//! the default) now; a PostgreSQL backend implements the same traits and passes the same
//! [`conformance`] suite.
//!
//! Rules every backend keeps:
//! - single use is enforced by the database (conditional `UPDATE`, `DELETE ... RETURNING`,
//!   compare-and-set on a version), never by a read-then-write in application code;
//! - secrets at rest are sealed with the [`crypto::MasterKey`], the row identity as
//!   associated data;
//! - time comes in as a parameter (`now`), never from the database clock.

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod crypto;
mod model;
#[cfg(feature = "postgres")]
pub mod postgres;
mod rows;
pub mod sqlite;
mod traits;

pub use crypto::MasterKey;
pub use model::*;
pub use traits::*;

use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} already exists")]
    Conflict(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("a stored secret could not be decrypted (wrong master key?)")]
    Decrypt,
    #[error("database error: {0}")]
    Database(String),
    #[error("database migration failed: {0}")]
    Migration(String),
    #[error("{0}")]
    UnsupportedUrl(String),
    /// The data is damaged: what and where, and what to restore.
    #[error("{0}")]
    Damaged(String),
    /// The database cannot be reached right now (restarting, network): worth trying again in
    /// a moment; nothing was written.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// A request to the phone was not made: its budget is spent, or a fraud report blocks it.
    #[error("{0}")]
    Refused(Refusal),
    /// The database could not order this write against concurrent ones, even after retries:
    /// nothing was written; try again.
    #[error("the database is busy: {0}")]
    Busy(String),
    /// The connection was lost while the database committed a write (its answer never came):
    /// the write may or may not have been applied. Not retried: it may be there already.
    #[error("the database connection was lost while committing; the write may or may not have been applied: {0}")]
    Uncertain(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Why a request to the phone was not made (see [`NewChallenge::budget`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A fraud report blocks requests to the user's phone.
    Blocked,
    /// The budget of requests is spent for now.
    Budget,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::Blocked => "requests to the phone are blocked by a fraud report",
            Refusal::Budget => "the budget of requests to the phone is spent",
        })
    }
}

/// Opens the store a database URL names, creating and migrating the database if needed.
///
/// `sqlite://FILE` (or `sqlite:FILE`; a `?query` is ignored) is the embedded backend. Any
/// other scheme is refused with a message that says what is supported.
pub async fn open(url: &str, key: MasterKey) -> Result<Arc<dyn Store>> {
    open_backend(&Backend::parse(url)?, key).await
}

/// Opens the store of a backend already resolved (a data directory's default database is a
/// path, which a URL could not always name).
pub async fn open_backend(backend: &Backend, key: MasterKey) -> Result<Arc<dyn Store>> {
    match backend {
        Backend::Sqlite(path) => Ok(Arc::new(sqlite::SqliteStore::open(path, key).await?)),
        #[cfg(feature = "postgres")]
        Backend::Postgres(url) => Ok(Arc::new(postgres::PgStore::open(url, key).await?)),
    }
}

/// A backend and where its data lives, as a database URL names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// The embedded database in this file.
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL database, shared by every node (the URL as given: it may hold a password).
    #[cfg(feature = "postgres")]
    Postgres(String),
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Sqlite(path) => write!(f, "{}", path.display()),
            #[cfg(feature = "postgres")]
            Backend::Postgres(url) => match postgres::parse_url(url) {
                Ok(c) => write!(f, "{}", postgres::redact(&c)),
                Err(_) => write!(f, "a PostgreSQL database"),
            },
        }
    }
}

impl Backend {
    pub fn parse(url: &str) -> Result<Self> {
        if let Some(p) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            let p = p.split('?').next().unwrap_or(p);
            if p.is_empty() {
                return Err(StoreError::UnsupportedUrl(format!(
                    "database URL {url:?} names no file"
                )));
            }
            return Ok(Backend::Sqlite(p.into()));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            #[cfg(feature = "postgres")]
            {
                postgres::parse_url(url)?;
                return Ok(Backend::Postgres(url.to_string()));
            }
            #[cfg(not(feature = "postgres"))]
            return Err(StoreError::UnsupportedUrl(
                "this build of Sesame has no PostgreSQL support (built without the `postgres` feature); use sqlite://FILE or a build with it".into(),
            ));
        }
        // Never repeat the URL: it may hold a password.
        let scheme = url.split(':').next().unwrap_or("");
        Err(StoreError::UnsupportedUrl(format!(
            "unsupported database URL (scheme {scheme:?}): expected sqlite://FILE or postgres://USER:PASSWORD@HOST/DATABASE"
        )))
    }

    /// The URL of an embedded database file.
    pub fn sqlite_url(path: &std::path::Path) -> String {
        format!("sqlite://{}", path.display())
    }
}

/// The key that makes a username or group name unique and finds it: its PRECIS
/// UsernameCaseMapped form (RFC 8265), so that `ａｌｉｃｅ` and `Alice` are `alice`
/// (see [`sesame_core::names::lookup_key`]). Plain ASCII names keep the key they always had.
pub fn name_key(name: &str) -> String {
    sesame_core::names::lookup_key(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn urls_pick_the_backend_or_say_what_is_supported() {
        assert_eq!(
            Backend::parse("sqlite:///tmp/x.db").unwrap(),
            Backend::Sqlite(PathBuf::from("/tmp/x.db"))
        );
        assert_eq!(
            Backend::parse("sqlite://rel.db?mode=rwc").unwrap(),
            Backend::Sqlite(PathBuf::from("rel.db"))
        );
        assert_eq!(
            Backend::parse("sqlite:data/s.db").unwrap(),
            Backend::Sqlite(PathBuf::from("data/s.db"))
        );
        let err = |u: &str| Backend::parse(u).unwrap_err().to_string();
        assert!(err("mysql://u:hunter2@x/db").contains("expected sqlite://FILE"));
        assert!(!err("mysql://u:hunter2@x/db").contains("hunter2"));
        assert!(err("sqlite://").contains("names no file"));
        assert_eq!(
            Backend::parse(&Backend::sqlite_url(std::path::Path::new("/a b/c.db"))).unwrap(),
            Backend::Sqlite(PathBuf::from("/a b/c.db"))
        );
    }
}
