//! The PostgreSQL backend: several Sesame nodes on one database.
//!
//! Every node is stateless; everything shared (sessions, sign-ins, approvals, counters, used
//! codes, policy, OpenID Connect grants, texted codes) lives in these tables, so a request may
//! land on any node. The rules are the embedded backend's, kept by PostgreSQL under its default
//! isolation (Read Committed):
//! - a single use or a one-winner transition is one statement (`UPDATE ... WHERE ...
//!   RETURNING`, `DELETE ... RETURNING`, `INSERT ... ON CONFLICT`): the row lock it takes
//!   orders racing statements, and the loser's `WHERE` is evaluated again on the winner's row
//!   (so it finds nothing to change);
//! - a write of several statements is one transaction (`write`), retried a bounded number of
//!   times when PostgreSQL reports a serialization failure or a deadlock, which it may do
//!   whatever the code does; so is a statement on its own (`PgStore::one`, `all`, `exec`),
//!   which such an abort undoes whole as well;
//! - writes that wait together commit together: PostgreSQL flushes its write-ahead log once
//!   for every transaction committing at that moment (its own group commit), so there is no
//!   batching writer here as there is for SQLite.
//!
//! The driver is `tokio-postgres` with a `deadpool-postgres` pool (see the workspace
//! `Cargo.toml` for why). Statements are prepared once per connection (`prepare_cached`).
//! Nodes tell each other about sign-in events with `LISTEN/NOTIFY` (`bus`).
//!
//! The SQL lives with its capability, as for SQLite: `users.rs`, `groups.rs`, `methods.rs`,
//! `guesses.rs`, `signins.rs`, `devices.rs`, `approvals.rs`, `policy.rs`, `audit.rs`,
//! `oidc.rs`, `phones.rs`, `access_passes.rs`. What several of them need is here.
//!
//! Writing a multi-statement write: `write!(self, |tx| { ... })`. The block is run again on a
//! retry, so it must not consume what it uses; it evaluates to a `Result`, and `?` or
//! `return` inside it end the attempt (an error rolls the transaction back):
//!
//! ```ignore
//! write!(self, |tx| {
//!     if exec(&tx, "UPDATE ... WHERE id = $1", &[&id]).await? == 0 {
//!         return Ok(false);
//!     }
//!     insert_audit(&tx, audit).await?;
//!     Ok(true)
//! })
//! ```
//!
//! Round trips are what PostgreSQL spends most on here (a phone sign-in's statements are
//! index lookups), so the hot writes send their statements together: futures polled at once
//! on one connection are pipelined by tokio-postgres, in the order they are first polled
//! (`tokio::try_join!` polls in the order written), and PostgreSQL runs them in that order.
//! The block first prepares every statement it may send (`prepared`), so that none waits for
//! its preparation behind the ones after it.
//! What a later statement needs of an earlier one it reads in SQL (a subquery), and when the
//! results say the write must not happen, the block calls `undo.undo()`: the transaction is
//! rolled back and the block's value returned.
//!
//! ```ignore
//! write!(self, |tx, undo| {
//!     prepared(&tx, &[UPDATE, INSERT_AUDIT]).await?;
//!     let (changed, _) = tokio::try_join!(
//!         exec(&tx, UPDATE, &[&id]),
//!         insert_audit(&tx, audit),
//!     )?;
//!     if changed == 0 {
//!         undo.undo();
//!     }
//!     Ok(changed == 1)
//! })
//! ```

/// Runs the block in one transaction and commits it; see the module's documentation.
/// PostgreSQL may abort a transaction that ran into another (a deadlock, a serialization
/// failure): the whole block then runs again (`retrying`). A COMMIT whose answer never came
/// is `Uncertain`, not `Unavailable`: it may have been applied.
macro_rules! write {
    ($store:expr, |$tx:ident| $body:block) => {
        write!($store, |$tx, _undo| $body)
    };
    ($store:expr, |$tx:ident, $undo:ident| $body:block) => {
        $crate::postgres::retrying(|| async {
            let mut conn = $store.conn().await?;
            let $tx = conn.transaction().await?;
            let $undo = $crate::postgres::Undo::default();
            let value: $crate::Result<_> = async { $body }.await;
            let value = value?;
            if $undo.wanted() {
                $tx.rollback().await?;
            } else {
                $tx.commit()
                    .await
                    .map_err($crate::postgres::commit_failed)?;
            }
            Ok(value)
        })
        .await
    };
}

mod access_passes;
mod approvals;
mod audit;
pub mod bus;
mod devices;
mod groups;
mod guesses;
mod methods;
mod migrate;
mod oidc;
mod phones;
mod policy;
mod signins;
mod users;

pub(crate) use crate::rows::bad_json;
use crate::{crypto::MasterKey, AuditEvent, Result, StoreError};
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use rand::RngCore;
use sesame_core::audit::AuditMethod;
use sesame_core::ChallengeId;
use std::time::Duration;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

pub use migrate::migrate;

/// Connections each node keeps at most. PostgreSQL's default `max_connections` is 100: two
/// nodes with 32 each leave room for the `sesame` command and for administration.
pub const DEFAULT_POOL_SIZE: usize = 32;
/// How long a request waits for a free connection, and for a new one to open, before it is
/// told the database is busy or unreachable.
const POOL_WAIT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts of a write that PostgreSQL aborted for a serialization failure or a deadlock.
pub(crate) const WRITE_ATTEMPTS: u32 = 5;

/// Asked by a `write!` block whose pipelined statements found that the write must not happen:
/// the transaction is rolled back instead of committed.
#[derive(Default)]
pub(crate) struct Undo(std::sync::atomic::AtomicBool);

impl Undo {
    pub(crate) fn undo(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn wanted(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Parameters of a statement, as tokio-postgres takes them.
pub(crate) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

pub struct PgStore {
    pool: Pool,
    key: MasterKey,
    /// Where the database is, without the password (for messages and the log).
    target: String,
    bus: bus::Bus,
}

/// Which statement failed, and how: a message that names no secret (parameters are never
/// part of it).
impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.code() {
            Some(c) if retryable(c) => StoreError::Busy(format!(
                "the database could not order concurrent writes ({}); try again",
                c.code()
            )),
            // The server is going away, starting up, out of connections, or the connection
            // broke: temporary, nothing of this statement was written.
            Some(c) if unavailable(c) => StoreError::Unavailable(db_error_text(&e)),
            Some(_) => StoreError::Database(db_error_text(&e)),
            None if connection_failed(&e) => {
                StoreError::Unavailable(format!("the database connection failed: {e}"))
            }
            // A row that does not decode as this version expects.
            None => StoreError::Database(e.to_string()),
        }
    }
}

/// The connection itself failed (closed, refused, timed out), rather than a statement.
fn connection_failed(e: &tokio_postgres::Error) -> bool {
    use std::error::Error as _;
    e.is_closed()
        || e.source().is_some_and(|s| s.is::<std::io::Error>())
        || e.to_string().starts_with("timeout")
}

fn db_error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{} ({})", d.message(), d.code().code()),
        None => e.to_string(),
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        use deadpool_postgres::PoolError as P;
        match e {
            P::Backend(e) => e.into(),
            P::Timeout(_) => StoreError::Unavailable(
                "no database connection became free in time (the database is slow or unreachable)"
                    .into(),
            ),
            e => StoreError::Unavailable(format!("no database connection: {e}")),
        }
    }
}

/// SQLSTATEs of a server that cannot serve right now: connection exceptions (class 08),
/// shutdown and start-up (57P01-57P03), too many connections (53300).
fn unavailable(c: &SqlState) -> bool {
    let code = c.code();
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
}

fn retryable(c: &SqlState) -> bool {
    *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
}

fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// Maps a unique-constraint failure to `Conflict(what)`, anything else as usual.
pub(crate) fn conflict(
    what: impl FnOnce() -> String,
) -> impl FnOnce(tokio_postgres::Error) -> StoreError {
    move |e| {
        if is_unique_violation(&e) {
            StoreError::Conflict(what())
        } else {
            e.into()
        }
    }
}

/// The error of a COMMIT. One whose answer never came (the connection broke, the server went
/// away) leaves the transaction committed or not, and nothing here can tell which: it is
/// `Uncertain`, so that nobody is told that nothing was changed.
pub(crate) fn commit_failed(e: tokio_postgres::Error) -> StoreError {
    uncertain_if_unavailable(e.into())
}

fn uncertain_if_unavailable(e: StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(m) => StoreError::Uncertain(m),
        e => e,
    }
}

/// Converts an error, naming the statement when the statement itself is at fault (a bug to
/// report: a type or a constraint), never its parameters.
fn in_statement(sql: &str) -> impl FnOnce(tokio_postgres::Error) -> StoreError + '_ {
    move |e| match StoreError::from(e) {
        StoreError::Database(m) => {
            let head: String = sql.chars().take(70).collect();
            StoreError::Database(format!("{m}, in \"{head}...\""))
        }
        other => other,
    }
}

/// The rows of `sql`.
async fn query<C: GenericClient>(c: &C, sql: &str, p: Params<'_>) -> Result<Vec<Row>> {
    let st = c.prepare_cached(sql).await.map_err(in_statement(sql))?;
    c.query(&st, p).await.map_err(in_statement(sql))
}

/// The first row of `sql` (all of a `RETURNING` statement's changes are made whatever is
/// read), decoded by `f`.
pub(crate) async fn one<C: GenericClient, T>(
    c: &C,
    sql: &str,
    p: Params<'_>,
    f: impl FnOnce(&Row) -> Result<T>,
) -> Result<Option<T>> {
    query(c, sql, p).await?.first().map(f).transpose()
}

/// Every row of `sql`, each decoded by `f`.
pub(crate) async fn all<C: GenericClient, T>(
    c: &C,
    sql: &str,
    p: Params<'_>,
    f: impl FnMut(&Row) -> Result<T>,
) -> Result<Vec<T>> {
    query(c, sql, p).await?.iter().map(f).collect()
}

/// Prepares the statements of a pipeline on this connection before any of them is sent, in
/// one round trip (none when they are all prepared already, the usual case). Without it, a
/// statement not yet prepared on this connection would be sent only after its preparation's
/// round trip, behind the statements written after it, and run out of order.
pub(crate) async fn prepared<C: GenericClient>(c: &C, sqls: &[&str]) -> Result<()> {
    futures_util::future::try_join_all(
        sqls.iter()
            .map(|sql| async move { c.prepare_cached(sql).await.map_err(in_statement(sql)) }),
    )
    .await?;
    Ok(())
}

/// Runs a statement without rows; returns how many rows it changed.
pub(crate) async fn exec<C: GenericClient>(c: &C, sql: &str, p: Params<'_>) -> Result<u64> {
    let st = c.prepare_cached(sql).await.map_err(in_statement(sql))?;
    c.execute(&st, p).await.map_err(in_statement(sql))
}

/// The first column.
pub(crate) fn first<T: for<'a> tokio_postgres::types::FromSql<'a>>(r: &Row) -> Result<T> {
    Ok(r.try_get(0)?)
}

/// A challenge id from the first column.
pub(crate) fn challenge_id(r: &Row) -> Result<ChallengeId> {
    Ok(ChallengeId(r.try_get(0)?))
}

pub(crate) fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A stored name this version does not know (a newer version wrote it).
/// The URL without its password, for messages.
pub fn redact(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .collect::<Vec<_>>()
        .join(",");
    let port = config
        .get_ports()
        .first()
        .map_or(String::new(), |p| format!(":{p}"));
    format!(
        "postgres://{}@{host}{port}/{}",
        config.get_user().unwrap_or(""),
        config.get_dbname().unwrap_or("")
    )
}

/// The URL without Sesame's own `pool_size=N` parameter, and that size.
fn take_pool_size(url: &str) -> Result<(String, Option<usize>)> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), None));
    };
    let mut size = None;
    let mut rest = Vec::new();
    for pair in query.split('&') {
        match pair.strip_prefix("pool_size=") {
            Some(n) => {
                size = Some(n.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    StoreError::UnsupportedUrl(format!(
                        "pool_size={n} in the database URL: expected a number of connections above 0"
                    ))
                })?)
            }
            None => rest.push(pair),
        }
    }
    let url = if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok((url, size))
}

/// Parses a `postgres://` URL, saying what is wrong without repeating a password.
pub fn parse_url(url: &str) -> Result<tokio_postgres::Config> {
    let (url, _) = take_pool_size(url)?;
    url.parse::<tokio_postgres::Config>().map_err(|e| {
        StoreError::UnsupportedUrl(format!(
            "the PostgreSQL database URL is not valid ({e}); expected postgres://USER:PASSWORD@HOST:PORT/DATABASE"
        ))
    })
}

impl PgStore {
    /// Connects to the database the URL names, migrates it (under an advisory lock, so nodes
    /// starting together take turns) and starts listening for other nodes' events.
    ///
    /// `pool_size=N` in the URL's query sets how many connections this node keeps at most
    /// (default [`DEFAULT_POOL_SIZE`]); every other parameter is PostgreSQL's (libpq's).
    pub async fn open(url: &str, key: MasterKey) -> Result<Self> {
        let (url, pool_size) = take_pool_size(url)?;
        Self::open_with(&url, key, pool_size.unwrap_or(DEFAULT_POOL_SIZE)).await
    }

    pub async fn open_with(url: &str, key: MasterKey, pool_size: usize) -> Result<Self> {
        let mut config = parse_url(url)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("sesame");
        }
        let target = redact(&config);
        // Migrate first, on a connection of its own.
        migrate::run(&config)
            .await
            .map_err(|e| with_target(e, &target))?;
        let manager = Manager::from_config(
            config.clone(),
            tokio_postgres::NoTls,
            ManagerConfig {
                // A connection that broke (the database restarted) is found out before it is
                // handed to a request, not by the request's statement.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Database(format!("cannot make the connection pool: {e}")))?;
        let bus = bus::Bus::start(config);
        let store = Self {
            pool,
            key,
            target,
            bus,
        };
        // Fail at start, not at the first request, if the tables cannot be read.
        drop(store.conn().await?);
        Ok(store)
    }

    /// A pooled connection.
    pub(crate) async fn conn(&self) -> Result<deadpool_postgres::Object> {
        Ok(self.pool.get().await?)
    }

    /// Where the database is (no password).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The events other nodes publish, and how to publish ours.
    pub fn bus(&self) -> &bus::Bus {
        &self.bus
    }

    // The statements below run on their own (autocommit), again if PostgreSQL aborts them for a
    // serialization failure or a deadlock (`retrying`): such an abort undoes the whole
    // statement, so running it again cannot apply it twice.

    /// The first row of a statement run on its own (autocommit).
    pub(crate) async fn one<T>(
        &self,
        sql: &str,
        p: Params<'_>,
        f: impl FnOnce(&Row) -> Result<T>,
    ) -> Result<Option<T>> {
        let rows = retrying(|| async { query(&self.conn().await?, sql, p).await }).await?;
        rows.first().map(f).transpose()
    }

    /// Every row of a statement run on its own.
    pub(crate) async fn all<T>(
        &self,
        sql: &str,
        p: Params<'_>,
        f: impl FnMut(&Row) -> Result<T>,
    ) -> Result<Vec<T>> {
        let rows = retrying(|| async { query(&self.conn().await?, sql, p).await }).await?;
        rows.iter().map(f).collect()
    }

    /// One statement on its own; returns the rows it changed.
    pub(crate) async fn exec(&self, sql: &str, p: Params<'_>) -> Result<u64> {
        retrying(|| async { exec(&self.conn().await?, sql, p).await }).await
    }
}

/// Runs `attempt` until PostgreSQL does not abort it for a serialization failure or a
/// deadlock (`Busy`), at most `WRITE_ATTEMPTS` times, after a short random pause each time.
/// Only for work such an abort undoes whole: a transaction (`write!`), or one statement in
/// autocommit (`PgStore::one`, `all`, `exec`).
pub(crate) async fn retrying<T, F: std::future::Future<Output = Result<T>>>(
    mut attempt: impl FnMut() -> F,
) -> Result<T> {
    let mut n = 1;
    loop {
        match attempt().await {
            Err(StoreError::Busy(why)) if n < WRITE_ATTEMPTS => {
                pause_before_retry(n, &why).await;
                n += 1;
            }
            outcome => return outcome,
        }
    }
}

/// A short random pause, longer after each failed attempt, so that the racing writes do not
/// meet again at once.
pub(crate) async fn pause_before_retry(attempt: u32, why: &str) {
    tracing::debug!(attempt, %why, "retrying a database write");
    let pause = rand::random::<u64>() % (5 * u64::from(attempt)) + 1;
    tokio::time::sleep(Duration::from_millis(pause)).await;
}

fn with_target(e: StoreError, target: &str) -> StoreError {
    match e {
        StoreError::Unavailable(m) => StoreError::Unavailable(format!("{target}: {m}")),
        e => e,
    }
}

// --- What several capabilities share -------------------------------------------------------

/// Appends a line as part of a larger write (so the line and the change it records commit
/// together).
pub(crate) const INSERT_AUDIT: &str =
    "INSERT INTO audit_log (at, tenant_id, user_id, username, ip, user_agent, event, method, result, reason) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

pub(crate) async fn insert_audit<C: GenericClient>(c: &C, e: &AuditEvent) -> Result<()> {
    exec(
        c,
        INSERT_AUDIT,
        &[
            &e.at,
            &e.tenant.0,
            &e.user.map(|u| u.0),
            &e.username,
            &e.ip,
            &e.user_agent,
            &e.event.as_str(),
            &e.method.as_ref().map(AuditMethod::as_str),
            &e.result.as_str(),
            &e.reason,
        ],
    )
    .await?;
    Ok(())
}

/// Cancels a user's pending requests ($1: the user), returning their ids.
pub(crate) const CANCEL_PENDING: &str =
    "UPDATE challenges SET state = 'cancelled' WHERE user_id = $1 AND state = 'pending' RETURNING public_id";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_size_is_sesames_and_the_rest_of_the_url_is_postgresqls() {
        let t = |u: &str| take_pool_size(u).map_err(|e| e.to_string());
        assert_eq!(
            t("postgres://h/db").unwrap(),
            ("postgres://h/db".into(), None)
        );
        assert_eq!(
            t("postgres://h/db?pool_size=8").unwrap(),
            ("postgres://h/db".into(), Some(8))
        );
        assert_eq!(
            t("postgres://h/db?sslmode=disable&pool_size=4&application_name=x").unwrap(),
            (
                "postgres://h/db?sslmode=disable&application_name=x".into(),
                Some(4)
            )
        );
        assert!(t("postgres://h/db?pool_size=0")
            .unwrap_err()
            .contains("above 0"));
        assert!(parse_url("postgres://u@h/db?pool_size=8").is_ok());
    }

    /// Runs `retrying` on attempts that fail with the given errors in turn (then succeed);
    /// returns its outcome and how many attempts it made.
    async fn retried(mut errors: Vec<StoreError>) -> (Result<()>, usize) {
        errors.reverse();
        let attempts = std::sync::atomic::AtomicUsize::new(0);
        let outcome = retrying(|| {
            attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let next = errors.pop();
            async move { next.map_or(Ok(()), Err) }
        })
        .await;
        (outcome, attempts.into_inner())
    }

    fn busy() -> StoreError {
        StoreError::Busy("deadlock".into())
    }

    #[tokio::test]
    async fn only_a_write_the_database_aborted_is_run_again_and_at_most_write_attempts_times() {
        let (outcome, n) = retried(vec![busy(), busy()]).await;
        assert!(outcome.is_ok(), "{outcome:?}");
        assert_eq!(n, 3, "run again after each abort");
        let (outcome, n) = retried((0..WRITE_ATTEMPTS).map(|_| busy()).collect()).await;
        assert!(matches!(outcome, Err(StoreError::Busy(_))), "{outcome:?}");
        assert_eq!(n, WRITE_ATTEMPTS as usize, "then the abort is reported");
        // Anything else may have been applied, or will fail the same way again.
        for e in [
            StoreError::Unavailable("gone".into()),
            StoreError::Uncertain("lost".into()),
            StoreError::Database("bad".into()),
        ] {
            let (outcome, n) = retried(vec![e]).await;
            assert!(outcome.is_err());
            assert_eq!(n, 1, "{outcome:?}");
        }
    }

    #[test]
    fn a_commit_without_an_answer_is_uncertain_and_other_commit_errors_keep_their_meaning() {
        assert!(matches!(
            uncertain_if_unavailable(StoreError::Unavailable("connection closed".into())),
            StoreError::Uncertain(_)
        ));
        // A serialization failure at commit rolled the transaction back: it is retried.
        assert!(matches!(
            uncertain_if_unavailable(busy()),
            StoreError::Busy(_)
        ));
    }

    /// A store on a schema of its own of `SESAME_TEST_DATABASE_URL`'s database, and the
    /// schema's URL; None (the test is skipped) without the variable.
    async fn pg_store(name: &str) -> Option<(PgStore, String)> {
        let url = match std::env::var("SESAME_TEST_DATABASE_URL") {
            Ok(u) if !u.is_empty() => u,
            _ => {
                assert!(
                    std::env::var_os("SESAME_REQUIRE_POSTGRES").is_none(),
                    "SESAME_REQUIRE_POSTGRES is set but SESAME_TEST_DATABASE_URL is not"
                );
                return None;
            }
        };
        let schema = format!("u_{name}_{}", random_hex(6));
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        let task = tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .await
            .unwrap();
        drop(client);
        let _ = task.await;
        let sep = if url.contains('?') { '&' } else { '?' };
        let url = format!("{url}{sep}options=-csearch_path%3D{schema}");
        let store = PgStore::open_with(&url, MasterKey::from_bytes([5; 32]), 4)
            .await
            .unwrap();
        Some((store, url))
    }

    /// Two statements on their own that lock the same two rows in opposite orders deadlock;
    /// PostgreSQL aborts one of them (40P01), which is then run again, and each is applied once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_statement_on_its_own_aborted_by_a_deadlock_is_run_again() {
        let Some((store, _)) = pg_store("deadlock").await else {
            return;
        };
        store
            .exec(
                "CREATE TABLE t (id BIGINT PRIMARY KEY, x BIGINT NOT NULL)",
                &[],
            )
            .await
            .unwrap();
        store
            .exec("INSERT INTO t VALUES (1, 0), (2, 0)", &[])
            .await
            .unwrap();
        // Each row is locked, then the statement pauses before it locks the next one.
        let update = |order: &'static str| {
            format!(
                "UPDATE t SET x = x + 1 WHERE id IN (SELECT id FROM \
                 (SELECT id FROM t ORDER BY id {order} FOR UPDATE) locked WHERE pg_sleep(0.3) IS NOT NULL)"
            )
        };
        let (up, down) = (update("ASC"), update("DESC"));
        let (a, b) = tokio::join!(store.exec(&up, &[]), store.exec(&down, &[]));
        assert_eq!((a.unwrap(), b.unwrap()), (2, 2), "both applied");
        let xs: Vec<i64> = store
            .all("SELECT x FROM t ORDER BY id", &[], first)
            .await
            .unwrap();
        assert_eq!(xs, [2, 2], "each once");
    }
}
