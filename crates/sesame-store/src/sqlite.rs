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
//! outside the group. Migrations run first, on a connection of their own.

use crate::{
    crypto::MasterKey, name_key, AuditEvent, AuditFilter, AuditResult, ChallengeRecord, Device,
    Group, Method, NewChallenge, NewDevice, NewUser, PinOutcome, Result, SessionLimits,
    SessionRecord, SignInRecord, Store, StoreError, User,
};
use async_trait::async_trait;
use rand::RngCore;
use rusqlite::{params, Connection, OpenFlags, Params, Row};
use sesame_core::lockout::{AttemptGate, LockoutPolicy};
use sesame_core::method::{Amr, MethodKind};
use sesame_core::policy::MethodsPolicy;
use sesame_core::push::ChallengeState;
use sesame_core::secret::SecretBytes;
use sesame_core::signin::{CompletedSignIn, SignInState};
use sesame_core::{GroupId, MethodId, TenantId, UnixTime, UserId};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection as _};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

mod writer;

/// How long a write waits for a lock held by another process (the `sesame` command).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a read waits. In WAL mode readers wait only while a crashed writer's log is
/// recovered (milliseconds); they run on request threads, so they give up sooner than writes.
const READER_BUSY_TIMEOUT: Duration = Duration::from_secs(2);
/// Prepared statements kept per connection: every statement of the store fits.
const STATEMENT_CACHE: usize = 128;
/// Idle read connections kept; more are opened when more reads run at once, then closed.
const MAX_IDLE_READERS: usize = 16;

pub struct SqliteStore {
    readers: Arc<Readers>,
    /// Each tenant's policy as last parsed, with its version: the version is read from the
    /// database every time (so a change applies at once, on every node), the text and its
    /// parsing only when the version moved. Versions only grow (compare-and-set on save).
    policies: Mutex<HashMap<i64, (i64, MethodsPolicy)>>,
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

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn method_aad(public_id: &str, user: UserId) -> String {
    format!("sesame:method:{public_id}:user:{user}")
}

fn enrollment_aad(id: &str, user: UserId) -> String {
    format!("sesame:totp-enrollment:{id}:user:{user}")
}

fn bad_json(e: serde_json::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

const USER_COLUMNS: &str =
    "id, tenant_id, username, display_name, password_hash, is_admin, is_blocked, \
     default_method_id, created_at, push_blocked_at, last_signin_at, signin_preference";

fn user_from_row(r: &Row) -> Result<User> {
    let hash: Option<String> = r.get("password_hash")?;
    Ok(User {
        id: UserId(r.get("id")?),
        tenant: TenantId(r.get("tenant_id")?),
        username: r.get("username")?,
        display_name: r.get("display_name")?,
        has_password: hash.is_some(),
        password_hash: hash,
        is_admin: r.get("is_admin")?,
        is_blocked: r.get("is_blocked")?,
        default_method: r.get::<_, Option<i64>>("default_method_id")?.map(MethodId),
        created_at: r.get("created_at")?,
        push_blocked_at: r.get("push_blocked_at")?,
        last_signin_at: r.get("last_signin_at")?,
        signin_preference: r.get("signin_preference")?,
    })
}

const METHOD_COLUMNS: &str =
    "id, public_id, user_id, kind, label, secret_enc, created_at, last_used_at, \
     (SELECT d.public_id FROM devices d WHERE d.id = methods.device_id) AS device_public_id";

const DEVICE_COLUMNS: &str =
    "id, public_id, tenant_id, user_id, name, alg, public_key, created_at, last_used_at, \
     pin_key, pin_key_failures, pin_key_disabled_at, phone_sign_in_at";

fn device_from_row(r: &Row) -> Result<Device> {
    Ok(Device {
        row_id: r.get("id")?,
        id: r.get("public_id")?,
        tenant: TenantId(r.get("tenant_id")?),
        user: UserId(r.get("user_id")?),
        name: r.get("name")?,
        alg: r.get("alg")?,
        public_key: r.get("public_key")?,
        created_at: r.get("created_at")?,
        last_used_at: r.get("last_used_at")?,
        pin_key: r.get("pin_key")?,
        pin_key_failures: r.get("pin_key_failures")?,
        pin_key_disabled_at: r.get("pin_key_disabled_at")?,
        phone_sign_in_at: r.get("phone_sign_in_at")?,
    })
}

const CHALLENGE_COLUMNS: &str =
    "public_id, tenant_id, user_id, signin_id_hash, kind, nonce, number, state, app_name, \
     ip, location, user_agent, created_at, expires_at, answered_at, answered_by_device";

fn challenge_from_row(r: &Row) -> Result<ChallengeRecord> {
    let state: String = r.get("state")?;
    Ok(ChallengeRecord {
        id: r.get("public_id")?,
        tenant: TenantId(r.get("tenant_id")?),
        user: UserId(r.get("user_id")?),
        signin_id_hash: r.get("signin_id_hash")?,
        kind: r.get("kind")?,
        nonce: r.get("nonce")?,
        number: r.get("number")?,
        state: ChallengeState::parse(&state)
            .ok_or_else(|| StoreError::Database(format!("bad challenge state {state}")))?,
        app_name: r.get("app_name")?,
        ip: r.get("ip")?,
        location: r.get("location")?,
        user_agent: r.get("user_agent")?,
        created_at: r.get("created_at")?,
        expires_at: r.get("expires_at")?,
        answered_at: r.get("answered_at")?,
        answered_by: r.get("answered_by_device")?,
    })
}

fn group_from_row(r: &Row) -> Result<Group> {
    Ok(Group {
        id: GroupId(r.get("id")?),
        tenant: TenantId(r.get("tenant_id")?),
        name: r.get("name")?,
        member_count: r.get("member_count")?,
        created_at: r.get("created_at")?,
    })
}

const GROUP_SELECT: &str = "SELECT g.id, g.tenant_id, g.name, g.created_at, \
     (SELECT COUNT(*) FROM group_members m WHERE m.group_id = g.id) AS member_count FROM groups g";

fn amr_to_json(amr: &[Amr]) -> String {
    serde_json::to_string(amr).expect("amr list serialises")
}

fn audit_from_row(r: &Row) -> Result<AuditEvent> {
    let result: String = r.get("result")?;
    Ok(AuditEvent {
        id: r.get("id")?,
        at: r.get("at")?,
        tenant: TenantId(r.get("tenant_id")?),
        user: r.get::<_, Option<i64>>("user_id")?.map(UserId),
        username: r.get("username")?,
        ip: r.get("ip")?,
        user_agent: r.get("user_agent")?,
        event: r.get("event")?,
        method: r.get("method")?,
        result: if result == "success" {
            AuditResult::Success
        } else {
            AuditResult::Failure
        },
        reason: r.get("reason")?,
    })
}

fn insert_audit(c: &Connection, e: &AuditEvent) -> Result<()> {
    changed(
        c,
        "INSERT INTO audit_log (at, tenant_id, user_id, username, ip, user_agent, event, method, result, reason) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        params![
            e.at,
            e.tenant.0,
            e.user.map(|u| u.0),
            e.username,
            e.ip,
            e.user_agent,
            e.event,
            e.method,
            e.result.as_str(),
            e.reason
        ],
    )?;
    Ok(())
}

fn insert_session(
    c: &Connection,
    id_hash: &[u8],
    tenant: TenantId,
    signin: &CompletedSignIn,
    now: UnixTime,
    limits: SessionLimits,
) -> Result<()> {
    changed(
        c,
        "INSERT INTO sessions (id_hash, tenant_id, user_id, amr, auth_time, created_at, last_seen_at, idle_expires_at, expires_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        params![
            id_hash,
            tenant.0,
            signin.user().0,
            amr_to_json(signin.amr()),
            now,
            now,
            now,
            now + limits.idle_secs,
            now + limits.absolute_secs
        ],
    )?;
    Ok(())
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
    /// Opens (creating if needed) the database file and applies migrations.
    pub async fn open(path: &Path, key: MasterKey) -> Result<Self> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        // Migrations on a connection of their own, closed before the writer starts.
        let mut migrating = opts
            .connect()
            .await
            .map_err(|e| StoreError::Database(e.to_string()))?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&mut migrating)
            .await
            .map_err(|e| StoreError::Migration(e.to_string()))?;
        migrating
            .close()
            .await
            .map_err(|e| StoreError::Database(e.to_string()))?;
        let writer_path = path.to_path_buf();
        let group = writer::GroupWriter::start(Box::new(move || open_writer(&writer_path)))?;
        let readers = Arc::new(Readers {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
        });
        // Fail at start, not at the first request, if the file cannot be read.
        readers.with(|c| Ok(c.query_row("SELECT 1", [], |_| Ok(()))?))?;
        Ok(Self {
            readers,
            policies: Mutex::new(HashMap::new()),
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

    /// One statement, committed with the next group; returns the rows it changed.
    async fn execute<P: Params + Send + 'static>(&self, sql: &'static str, p: P) -> Result<u64> {
        self.group.write(move |c| changed(c, sql, p)).await
    }

    fn open_method(&self, r: &Row) -> Result<Method> {
        let user = UserId(r.get("user_id")?);
        let public_id: String = r.get("public_id")?;
        let kind_s: String = r.get("kind")?;
        let kind: MethodKind = kind_s.parse().map_err(StoreError::Database)?;
        let sealed: Option<Vec<u8>> = r.get("secret_enc")?;
        let totp_secret = match sealed {
            Some(s) => Some(
                self.key
                    .open(&method_aad(&public_id, user), &s)
                    .ok_or(StoreError::Decrypt)?,
            ),
            None => None,
        };
        Ok(Method {
            id: MethodId(r.get("id")?),
            user,
            kind,
            label: r.get("label")?,
            totp_secret,
            created_at: r.get("created_at")?,
            last_used_at: r.get("last_used_at")?,
            device: r.get("device_public_id")?,
        })
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn default_tenant(&self) -> Result<TenantId> {
        let id = self.read(|c| {
            one(
                c,
                "SELECT id FROM tenants WHERE name = 'default'",
                [],
                first,
            )
        })?;
        id.map(TenantId)
            .ok_or_else(|| StoreError::NotFound("default tenant".into()))
    }

    async fn create_user(&self, new: NewUser, now: UnixTime) -> Result<User> {
        self.group
            .write(move |c| {
                let sql = format!(
                    "INSERT INTO users (tenant_id, username, username_key, display_name, password_hash, is_admin, created_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING {USER_COLUMNS}"
                );
                let username = new.username.trim();
                let mut st = c.prepare_cached(&sql)?;
                let mut rows = st
                    .query(params![
                        new.tenant.0,
                        username,
                        name_key(&new.username),
                        new.display_name,
                        new.password_hash,
                        new.is_admin,
                        now
                    ])
                    .map_err(conflict(|| format!("user {username:?}")))?;
                let row = rows
                    .next()
                    .map_err(conflict(|| format!("user {username:?}")))?
                    .ok_or_else(|| StoreError::Database("INSERT returned no row".into()))?;
                user_from_row(row)
            })
            .await
    }

    async fn find_user(&self, id: UserId) -> Result<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?");
        self.read(|c| one(c, &sql, [id.0], user_from_row))
    }

    async fn find_user_by_username(
        &self,
        tenant: TenantId,
        username: &str,
    ) -> Result<Option<User>> {
        let sql =
            format!("SELECT {USER_COLUMNS} FROM users WHERE tenant_id = ? AND username_key = ?");
        self.read(|c| {
            one(
                c,
                &sql,
                params![tenant.0, name_key(username)],
                user_from_row,
            )
        })
    }

    async fn list_users(&self, tenant: TenantId) -> Result<Vec<User>> {
        let sql =
            format!("SELECT {USER_COLUMNS} FROM users WHERE tenant_id = ? ORDER BY username_key");
        self.read_blocking(move |c| all(c, &sql, [tenant.0], user_from_row))
            .await
    }

    async fn update_user_password(&self, id: UserId, hash: Option<&str>) -> Result<()> {
        let hash = hash.map(str::to_owned);
        let n = self
            .execute(
                "UPDATE users SET password_hash = ? WHERE id = ?",
                (hash, id.0),
            )
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("user {id}")));
        }
        Ok(())
    }

    async fn update_user_blocked(&self, id: UserId, blocked: bool) -> Result<()> {
        let n = self
            .execute(
                "UPDATE users SET is_blocked = ? WHERE id = ?",
                (blocked, id.0),
            )
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("user {id}")));
        }
        Ok(())
    }

    async fn update_default_method(&self, id: UserId, method: Option<MethodId>) -> Result<()> {
        // The method must belong to the user; the subquery makes that part of the same statement.
        let n = self
            .execute(
                "UPDATE users SET default_method_id = ?1 WHERE id = ?2 \
                 AND (?1 IS NULL OR EXISTS (SELECT 1 FROM methods WHERE id = ?1 AND user_id = ?2))",
                (method.map(|m| m.0), id.0),
            )
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound("method".into()));
        }
        Ok(())
    }

    async fn delete_user(&self, id: UserId) -> Result<bool> {
        Ok(self
            .execute("DELETE FROM users WHERE id = ?", (id.0,))
            .await?
            == 1)
    }

    async fn count_admins(&self, tenant: TenantId) -> Result<i64> {
        self.read(|c| {
            Ok(
                c.prepare_cached(
                    "SELECT COUNT(*) FROM users WHERE tenant_id = ? AND is_admin = 1",
                )?
                .query_row([tenant.0], |r| r.get(0))?,
            )
        })
    }

    async fn create_group(&self, tenant: TenantId, name: &str, now: UnixTime) -> Result<Group> {
        let name = name.to_owned();
        self.group
            .write(move |c| {
                let trimmed = name.trim();
                let id: i64 = c
                    .prepare_cached(
                        "INSERT INTO groups (tenant_id, name, name_key, created_at) VALUES (?, ?, ?, ?) RETURNING id",
                    )?
                    .query_row(params![tenant.0, trimmed, name_key(&name), now], |r| r.get(0))
                    .map_err(conflict(|| format!("group {trimmed:?}")))?;
                Ok(Group {
                    id: GroupId(id),
                    tenant,
                    name: trimmed.to_owned(),
                    member_count: 0,
                    created_at: now,
                })
            })
            .await
    }

    async fn find_group_by_name(&self, tenant: TenantId, name: &str) -> Result<Option<Group>> {
        let sql = format!("{GROUP_SELECT} WHERE g.tenant_id = ? AND g.name_key = ?");
        self.read(|c| one(c, &sql, params![tenant.0, name_key(name)], group_from_row))
    }

    async fn list_groups(&self, tenant: TenantId) -> Result<Vec<Group>> {
        let sql = format!("{GROUP_SELECT} WHERE g.tenant_id = ? ORDER BY g.name_key");
        self.read(|c| all(c, &sql, [tenant.0], group_from_row))
    }

    async fn list_user_groups(&self, user: UserId) -> Result<Vec<Group>> {
        let sql = format!(
            "{GROUP_SELECT} WHERE g.id IN (SELECT group_id FROM group_members WHERE user_id = ?) ORDER BY g.name_key"
        );
        self.read(|c| all(c, &sql, [user.0], group_from_row))
    }

    async fn list_group_members(&self, group: GroupId) -> Result<Vec<User>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users WHERE id IN (SELECT user_id FROM group_members WHERE group_id = ?) \
             ORDER BY username_key"
        );
        self.read_blocking(move |c| all(c, &sql, [group.0], user_from_row))
            .await
    }

    async fn add_group_member(&self, group: GroupId, user: UserId) -> Result<bool> {
        Ok(self
            .execute(
                "INSERT INTO group_members (group_id, user_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (group.0, user.0),
            )
            .await?
            == 1)
    }

    async fn remove_group_member(&self, group: GroupId, user: UserId) -> Result<bool> {
        Ok(self
            .execute(
                "DELETE FROM group_members WHERE group_id = ? AND user_id = ?",
                (group.0, user.0),
            )
            .await?
            == 1)
    }

    async fn create_totp_enrollment(
        &self,
        user: UserId,
        secret: &SecretBytes,
        expires_at: UnixTime,
    ) -> Result<String> {
        let id = random_hex(16);
        let sealed = self.key.seal(&enrollment_aad(&id, user), secret.expose());
        self.execute(
            "INSERT INTO totp_enrollments (id, user_id, secret_enc, expires_at) VALUES (?, ?, ?, ?)",
            (id.clone(), user.0, sealed, expires_at),
        )
        .await?;
        Ok(id)
    }

    async fn find_totp_enrollment(
        &self,
        user: UserId,
        id: &str,
        now: UnixTime,
    ) -> Result<Option<SecretBytes>> {
        let sealed: Option<Vec<u8>> = self.read(|c| {
            one(
                c,
                "SELECT secret_enc FROM totp_enrollments WHERE id = ? AND user_id = ? AND expires_at > ?",
                params![id, user.0, now],
                first,
            )
        })?;
        sealed
            .map(|s| {
                self.key
                    .open(&enrollment_aad(id, user), &s)
                    .ok_or(StoreError::Decrypt)
            })
            .transpose()
    }

    async fn take_totp_enrollment(
        &self,
        user: UserId,
        id: &str,
        now: UnixTime,
    ) -> Result<Option<SecretBytes>> {
        let owned_id = id.to_owned();
        let sealed: Option<Vec<u8>> = self
            .group
            .write(move |c| {
                let sealed = one(
                    c,
                    "DELETE FROM totp_enrollments WHERE id = ? AND user_id = ? AND expires_at > ? RETURNING secret_enc",
                    params![owned_id, user.0, now],
                    first,
                )?;
                // Expired enrolments of this user are garbage now.
                changed(
                    c,
                    "DELETE FROM totp_enrollments WHERE user_id = ? AND expires_at <= ?",
                    params![user.0, now],
                )?;
                Ok(sealed)
            })
            .await?;
        sealed
            .map(|s| {
                self.key
                    .open(&enrollment_aad(id, user), &s)
                    .ok_or(StoreError::Decrypt)
            })
            .transpose()
    }

    async fn create_totp_method(
        &self,
        user: UserId,
        label: &str,
        secret: &SecretBytes,
        used_step: i64,
        now: UnixTime,
    ) -> Result<Method> {
        let public_id = random_hex(16);
        let sealed = self
            .key
            .seal(&method_aad(&public_id, user), secret.expose());
        let label = label.to_owned();
        let (id, label) = self
            .group
            .write(move |c| {
                let id: i64 = c
                    .prepare_cached(
                        "INSERT INTO methods (public_id, user_id, kind, label, secret_enc, last_totp_step, created_at) \
                         VALUES (?, ?, 'totp', ?, ?, ?, ?) RETURNING id",
                    )?
                    .query_row(
                        params![public_id, user.0, label, sealed, used_step, now],
                        |r| r.get(0),
                    )?;
                Ok((id, label))
            })
            .await?;
        Ok(Method {
            id: MethodId(id),
            user,
            kind: MethodKind::Totp,
            label,
            totp_secret: Some(secret.clone()),
            created_at: now,
            last_used_at: None,
            device: None,
        })
    }

    async fn list_methods(&self, user: UserId) -> Result<Vec<Method>> {
        let sql = format!("SELECT {METHOD_COLUMNS} FROM methods WHERE user_id = ? ORDER BY id");
        self.read(|c| all(c, &sql, [user.0], |r| self.open_method(r)))
    }

    async fn delete_method(&self, user: UserId, method: MethodId) -> Result<bool> {
        self.group
            .write(move |c| {
                let n = changed(
                    c,
                    "DELETE FROM methods WHERE id = ? AND user_id = ?",
                    params![method.0, user.0],
                )?;
                if n == 1 {
                    changed(
                        c,
                        "UPDATE users SET default_method_id = NULL WHERE id = ? AND default_method_id = ?",
                        params![user.0, method.0],
                    )?;
                }
                Ok(n == 1)
            })
            .await
    }

    async fn delete_all_methods(&self, user: UserId) -> Result<u64> {
        self.group
            .write(move |c| {
                let n = changed(c, "DELETE FROM methods WHERE user_id = ?", [user.0])?;
                changed(
                    c,
                    "UPDATE users SET default_method_id = NULL WHERE id = ?",
                    [user.0],
                )?;
                changed(
                    c,
                    "DELETE FROM attempt_counters WHERE user_id = ?",
                    [user.0],
                )?;
                Ok(n)
            })
            .await
    }

    async fn claim_totp_step(&self, method: MethodId, step: i64, now: UnixTime) -> Result<bool> {
        Ok(self
            .execute(
                "UPDATE methods SET last_totp_step = ?1, last_used_at = ?2 \
                 WHERE id = ?3 AND (last_totp_step IS NULL OR last_totp_step < ?1)",
                (step, now, method.0),
            )
            .await?
            == 1)
    }

    async fn reserve_attempt(
        &self,
        user: UserId,
        kind: &str,
        policy: &LockoutPolicy,
        now: UnixTime,
    ) -> Result<AttemptGate> {
        let kind = kind.to_owned();
        let policy = *policy;
        self.group
            .write(move |c| {
                // Compare-and-set on the failure count: of N parallel attempts that read the
                // same count, exactly one increments it; the others read again and see the new
                // count. (The writer runs writes one at a time, so the loop settles at once;
                // the compare-and-set keeps it right for any other writer too.)
                for _ in 0..10_000 {
                    let row: Option<(i64, Option<i64>)> = one(
                        c,
                        "SELECT failures, last_failure_at FROM attempt_counters WHERE user_id = ? AND kind = ?",
                        params![user.0, kind],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )?;
                    let Some((failures, last)) = row else {
                        changed(
                            c,
                            "INSERT INTO attempt_counters (user_id, kind, failures, last_failure_at) VALUES (?, ?, 0, NULL) \
                             ON CONFLICT DO NOTHING",
                            params![user.0, kind],
                        )?;
                        continue;
                    };
                    let gate = policy.gate(u32::try_from(failures).unwrap_or(u32::MAX), last, now);
                    if gate != AttemptGate::Open {
                        return Ok(gate);
                    }
                    let n = changed(
                        c,
                        "UPDATE attempt_counters SET failures = failures + 1, last_failure_at = ? \
                         WHERE user_id = ? AND kind = ? AND failures = ?",
                        params![now, user.0, kind, failures],
                    )?;
                    if n == 1 {
                        return Ok(AttemptGate::Open);
                    }
                }
                Err(StoreError::Database(
                    "attempt counter contention did not settle".into(),
                ))
            })
            .await
    }

    async fn clear_failures(&self, user: UserId, kind: &str) -> Result<()> {
        self.execute(
            "UPDATE attempt_counters SET failures = 0 WHERE user_id = ? AND kind = ? AND failures <> 0",
            (user.0, kind.to_owned()),
        )
        .await?;
        Ok(())
    }

    async fn find_failures(&self, user: UserId, kind: &str) -> Result<(u32, Option<UnixTime>)> {
        let row: Option<(i64, Option<i64>)> = self.read(|c| {
            one(
                c,
                "SELECT failures, last_failure_at FROM attempt_counters WHERE user_id = ? AND kind = ?",
                params![user.0, kind],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })?;
        Ok(match row {
            Some((f, last)) => (u32::try_from(f).unwrap_or(u32::MAX), last),
            None => (0, None),
        })
    }

    async fn create_signin(&self, rec: &SignInRecord) -> Result<()> {
        let rec = rec.clone();
        let state = serde_json::to_string(&rec.state).expect("state serialises");
        self.group
            .write(move |c| {
                // Opportunistic clean-up keeps the table small without a background job; about
                // one sign-in in 64 pays for it (the id hash is uniformly random).
                if rec.id_hash.first().is_some_and(|b| b % 64 == 0) {
                    changed(
                        c,
                        "DELETE FROM signin_transactions WHERE expires_at < ?",
                        [rec.created_at - 3600],
                    )?;
                }
                changed(
                    c,
                    "INSERT INTO signin_transactions (id_hash, tenant_id, username, state, version, next_path, created_at, expires_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    params![
                        rec.id_hash,
                        rec.tenant.0,
                        rec.username,
                        state,
                        rec.version,
                        rec.next_path,
                        rec.created_at,
                        rec.expires_at
                    ],
                )?;
                Ok(())
            })
            .await
    }

    async fn find_signin(&self, id_hash: &[u8], now: UnixTime) -> Result<Option<SignInRecord>> {
        self.read(|c| {
            one(
                c,
                "SELECT tenant_id, username, state, version, next_path, created_at, expires_at \
                 FROM signin_transactions WHERE id_hash = ? AND expires_at > ?",
                params![id_hash, now],
                |r| {
                    let state: String = r.get("state")?;
                    Ok(SignInRecord {
                        id_hash: id_hash.to_vec(),
                        tenant: TenantId(r.get("tenant_id")?),
                        username: r.get("username")?,
                        state: serde_json::from_str(&state).map_err(bad_json)?,
                        version: r.get("version")?,
                        next_path: r.get("next_path")?,
                        created_at: r.get("created_at")?,
                        expires_at: r.get("expires_at")?,
                    })
                },
            )
        })
    }

    async fn update_signin_state(
        &self,
        id_hash: &[u8],
        expected_version: i64,
        state: &SignInState,
    ) -> Result<bool> {
        let state = serde_json::to_string(state).expect("state serialises");
        Ok(self
            .execute(
                "UPDATE signin_transactions SET state = ?, version = version + 1 WHERE id_hash = ? AND version = ?",
                (state, id_hash.to_vec(), expected_version),
            )
            .await?
            == 1)
    }

    async fn delete_signin(&self, id_hash: &[u8]) -> Result<()> {
        self.execute(
            "DELETE FROM signin_transactions WHERE id_hash = ?",
            (id_hash.to_vec(),),
        )
        .await?;
        Ok(())
    }

    async fn create_session(
        &self,
        id_hash: &[u8],
        tenant: TenantId,
        signin: &CompletedSignIn,
        now: UnixTime,
        limits: SessionLimits,
    ) -> Result<()> {
        let id_hash = id_hash.to_vec();
        let signin = signin.clone();
        self.group
            .write(move |c| insert_session(c, &id_hash, tenant, &signin, now, limits))
            .await
    }

    async fn complete_signin(
        &self,
        signin_id_hash: &[u8],
        session_id_hash: &[u8],
        signin: &CompletedSignIn,
        now: UnixTime,
        limits: SessionLimits,
        audit: &AuditEvent,
        approval: Option<&str>,
    ) -> Result<bool> {
        let signin_id_hash = signin_id_hash.to_vec();
        let session_id_hash = session_id_hash.to_vec();
        let signin = signin.clone();
        let audit = audit.clone();
        let approval = approval.map(str::to_owned);
        // All or nothing: the write's savepoint undoes every statement if one fails.
        self.group
            .write(move |c| {
                if let Some(id) = &approval {
                    let n = changed(
                        c,
                        "UPDATE challenges SET state = 'consumed' WHERE public_id = ? AND state = 'approved'",
                        [id],
                    )?;
                    if n != 1 {
                        return Ok(false);
                    }
                }
                insert_session(c, &session_id_hash, audit.tenant, &signin, now, limits)?;
                changed(
                    c,
                    "DELETE FROM signin_transactions WHERE id_hash = ?",
                    [&signin_id_hash],
                )?;
                changed(
                    c,
                    "UPDATE users SET last_signin_at = ? WHERE id = ?",
                    params![now, signin.user().0],
                )?;
                insert_audit(c, &audit)?;
                Ok(true)
            })
            .await
    }

    async fn find_session(&self, id_hash: &[u8], now: UnixTime) -> Result<Option<SessionRecord>> {
        self.read(|c| {
            one(
                c,
                "SELECT tenant_id, user_id, amr, auth_time, created_at, last_seen_at FROM sessions \
                 WHERE id_hash = ?1 AND revoked_at IS NULL AND idle_expires_at > ?2 AND expires_at > ?2",
                params![id_hash, now],
                |r| {
                    let amr: String = r.get("amr")?;
                    Ok(SessionRecord {
                        tenant: TenantId(r.get("tenant_id")?),
                        user: UserId(r.get("user_id")?),
                        amr: serde_json::from_str(&amr).map_err(bad_json)?,
                        auth_time: r.get("auth_time")?,
                        created_at: r.get("created_at")?,
                        last_seen_at: r.get("last_seen_at")?,
                    })
                },
            )
        })
    }

    async fn touch_session(
        &self,
        id_hash: &[u8],
        now: UnixTime,
        limits: SessionLimits,
    ) -> Result<()> {
        // At most one write a minute per session: the idle timeout does not need more precision.
        self.execute(
            "UPDATE sessions SET last_seen_at = ?1, idle_expires_at = ?2 \
             WHERE id_hash = ?3 AND revoked_at IS NULL AND last_seen_at < ?1 - 60",
            (now, now + limits.idle_secs, id_hash.to_vec()),
        )
        .await?;
        Ok(())
    }

    async fn revoke_session(&self, id_hash: &[u8], now: UnixTime) -> Result<()> {
        self.execute(
            "UPDATE sessions SET revoked_at = ? WHERE id_hash = ? AND revoked_at IS NULL",
            (now, id_hash.to_vec()),
        )
        .await?;
        Ok(())
    }

    async fn revoke_user_sessions(&self, user: UserId, now: UnixTime) -> Result<u64> {
        self.execute(
            "UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
            (now, user.0),
        )
        .await
    }

    async fn create_setup_token(&self, token_hash: &[u8], expires_at: UnixTime) -> Result<()> {
        self.execute(
            "INSERT INTO setup_tokens (token_hash, expires_at) VALUES (?, ?)",
            (token_hash.to_vec(), expires_at),
        )
        .await?;
        Ok(())
    }

    async fn consume_setup_token(&self, token_hash: &[u8], now: UnixTime) -> Result<bool> {
        Ok(self
            .execute(
                "UPDATE setup_tokens SET used_at = ?1 WHERE token_hash = ?2 AND used_at IS NULL AND expires_at > ?1",
                (now, token_hash.to_vec()),
            )
            .await?
            == 1)
    }

    async fn is_setup_token_valid(&self, token_hash: &[u8], now: UnixTime) -> Result<bool> {
        let n: Option<i64> = self.read(|c| {
            one(
                c,
                "SELECT COUNT(*) FROM setup_tokens WHERE token_hash = ? AND used_at IS NULL AND expires_at > ?",
                params![token_hash, now],
                first,
            )
        })?;
        Ok(n == Some(1))
    }

    async fn create_activation(
        &self,
        user: UserId,
        code_hash: &[u8],
        expires_at: UnixTime,
    ) -> Result<()> {
        self.execute(
            "INSERT INTO activation_codes (code_hash, user_id, expires_at) VALUES (?, ?, ?)",
            (code_hash.to_vec(), user.0, expires_at),
        )
        .await?;
        Ok(())
    }

    async fn consume_activation(&self, code_hash: &[u8], now: UnixTime) -> Result<Option<UserId>> {
        let code_hash = code_hash.to_vec();
        let user: Option<i64> = self
            .group
            .write(move |c| {
                one(
                    c,
                    "UPDATE activation_codes SET used_at = ?1 WHERE code_hash = ?2 AND used_at IS NULL AND expires_at > ?1 \
                     RETURNING user_id",
                    params![now, code_hash],
                    first,
                )
            })
            .await?;
        Ok(user.map(UserId))
    }

    async fn find_activation_device(
        &self,
        user: UserId,
        code_hash: &[u8],
    ) -> Result<Option<Option<String>>> {
        self.read(|c| {
            one(
                c,
                "SELECT (SELECT d.public_id FROM devices d WHERE d.id = a.device_id) AS device \
                 FROM activation_codes a WHERE a.code_hash = ? AND a.user_id = ?",
                params![code_hash, user.0],
                first,
            )
        })
    }

    async fn create_device(
        &self,
        new: NewDevice,
        activation_hash: &[u8],
        totp_secret: &SecretBytes,
        now: UnixTime,
    ) -> Result<Device> {
        let totp_id = random_hex(16);
        let sealed = self
            .key
            .seal(&method_aad(&totp_id, new.user), totp_secret.expose());
        let activation_hash = activation_hash.to_vec();
        // One write, so one savepoint: a failure or a crash leaves a complete device or none.
        self.group
            .write(move |c| {
                let sql = format!(
                    "INSERT INTO devices (public_id, tenant_id, user_id, name, alg, public_key, created_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING {DEVICE_COLUMNS}"
                );
                let mut st = c.prepare_cached(&sql)?;
                let key_conflict = || conflict(|| "device key".into());
                let mut rows = st
                    .query(params![
                        random_hex(16),
                        new.tenant.0,
                        new.user.0,
                        new.name,
                        new.alg,
                        new.public_key,
                        now
                    ])
                    .map_err(key_conflict())?;
                let device = match rows.next().map_err(key_conflict())? {
                    Some(r) => device_from_row(r)?,
                    None => return Err(StoreError::Database("INSERT returned no row".into())),
                };
                drop(rows);
                drop(st);
                let push_row: i64 = c
                    .prepare_cached(
                        "INSERT INTO methods (public_id, user_id, kind, label, created_at, device_id) \
                         VALUES (?, ?, 'push', ?, ?, ?) RETURNING id",
                    )?
                    .query_row(
                        params![random_hex(16), new.user.0, new.name, now, device.row_id],
                        |r| r.get(0),
                    )?;
                changed(
                    c,
                    "INSERT INTO methods (public_id, user_id, kind, label, secret_enc, created_at, device_id) \
                     VALUES (?, ?, 'totp', ?, ?, ?, ?)",
                    params![totp_id, new.user.0, new.name, sealed, now, device.row_id],
                )?;
                // The app becomes the default method unless the user already chose one.
                changed(
                    c,
                    "UPDATE users SET default_method_id = ? WHERE id = ? AND default_method_id IS NULL",
                    params![push_row, new.user.0],
                )?;
                let n = changed(
                    c,
                    "UPDATE activation_codes SET device_id = ? WHERE code_hash = ? AND user_id = ?",
                    params![device.row_id, activation_hash, new.user.0],
                )?;
                if n != 1 {
                    return Err(StoreError::NotFound("activation code".into()));
                }
                Ok(device)
            })
            .await
    }

    async fn find_device(&self, public_id: &str) -> Result<Option<Device>> {
        let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE public_id = ?");
        self.read(|c| one(c, &sql, [public_id], device_from_row))
    }

    async fn list_devices(&self, user: UserId) -> Result<Vec<Device>> {
        let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE user_id = ? ORDER BY id");
        self.read(|c| all(c, &sql, [user.0], device_from_row))
    }

    async fn delete_device(&self, user: UserId, public_id: &str) -> Result<Option<Vec<String>>> {
        let public_id = public_id.to_owned();
        self.group
            .write(move |c| {
                let n = changed(
                    c,
                    "DELETE FROM devices WHERE public_id = ? AND user_id = ?",
                    params![public_id, user.0],
                )?;
                if n == 0 {
                    return Ok(None);
                }
                // Its methods went with it (ON DELETE CASCADE); a default that pointed at them is gone.
                changed(
                    c,
                    "UPDATE users SET default_method_id = (SELECT MIN(id) FROM methods WHERE user_id = ?1) \
                     WHERE id = ?1 AND default_method_id NOT IN (SELECT id FROM methods WHERE user_id = ?1)",
                    [user.0],
                )?;
                // Its pending requests stop at once.
                let cancelled = all(
                    c,
                    "UPDATE challenges SET state = 'cancelled' WHERE user_id = ? AND state = 'pending' RETURNING public_id",
                    [user.0],
                    first,
                )?;
                Ok(Some(cancelled))
            })
            .await
    }

    async fn touch_device(&self, row_id: i64, now: UnixTime) -> Result<()> {
        self.execute(
            "UPDATE devices SET last_used_at = ?1 WHERE id = ?2 AND (last_used_at IS NULL OR last_used_at < ?1 - 60)",
            (now, row_id),
        )
        .await?;
        Ok(())
    }

    async fn claim_device_nonce(
        &self,
        row_id: i64,
        nonce: &str,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> Result<bool> {
        let nonce = nonce.to_owned();
        self.group
            .write(move |c| {
                let n = changed(
                    c,
                    "INSERT INTO device_nonces (device_id, nonce, expires_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                    params![row_id, nonce, expires_at],
                )?;
                if n == 1 && nonce.as_bytes().first().is_some_and(|b| b % 16 == 0) {
                    // Now and then, forget nonces whose timestamps could no longer pass the freshness check.
                    changed(c, "DELETE FROM device_nonces WHERE expires_at < ?", [now])?;
                }
                Ok(n == 1)
            })
            .await
    }

    async fn create_challenge(
        &self,
        new: NewChallenge,
        now: UnixTime,
        audit: Option<&AuditEvent>,
    ) -> Result<(ChallengeRecord, Vec<String>)> {
        let audit = audit.cloned();
        self.group
            .write(move |c| {
                let superseded = all(
                    c,
                    "UPDATE challenges SET state = 'superseded' WHERE user_id = ? AND state = 'pending' RETURNING public_id",
                    [new.user.0],
                    first,
                )?;
                let sql = format!(
                    "INSERT INTO challenges (public_id, tenant_id, user_id, signin_id_hash, kind, nonce, number, state, app_name, ip, \
                     location, user_agent, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?) \
                     RETURNING {CHALLENGE_COLUMNS}"
                );
                let record = one(
                    c,
                    &sql,
                    params![
                        random_hex(16),
                        new.tenant.0,
                        new.user.0,
                        new.signin_id_hash,
                        new.kind,
                        random_hex(16),
                        new.number,
                        new.app_name,
                        new.ip,
                        new.location,
                        new.user_agent,
                        now,
                        new.expires_at
                    ],
                    challenge_from_row,
                )?
                .ok_or_else(|| StoreError::Database("INSERT returned no row".into()))?;
                if let Some(a) = &audit {
                    insert_audit(c, a)?;
                }
                Ok((record, superseded))
            })
            .await
    }

    async fn count_challenges_since(&self, user: UserId, since: UnixTime) -> Result<u32> {
        let n: Option<i64> = self.read(|c| {
            one(
                c,
                "SELECT COUNT(*) FROM challenges WHERE user_id = ? AND created_at >= ?",
                params![user.0, since],
                first,
            )
        })?;
        Ok(u32::try_from(n.unwrap_or(0)).unwrap_or(u32::MAX))
    }

    async fn find_challenge(&self, public_id: &str) -> Result<Option<ChallengeRecord>> {
        let sql = format!("SELECT {CHALLENGE_COLUMNS} FROM challenges WHERE public_id = ?");
        self.read(|c| one(c, &sql, [public_id], challenge_from_row))
    }

    async fn find_latest_challenge_for_signin(
        &self,
        signin_id_hash: &[u8],
    ) -> Result<Option<ChallengeRecord>> {
        let sql = format!(
            "SELECT {CHALLENGE_COLUMNS} FROM challenges WHERE signin_id_hash = ? ORDER BY id DESC LIMIT 1"
        );
        self.read(|c| one(c, &sql, [signin_id_hash], challenge_from_row))
    }

    async fn list_pending_challenges(
        &self,
        user: UserId,
        now: UnixTime,
    ) -> Result<Vec<ChallengeRecord>> {
        let sql = format!(
            "SELECT {CHALLENGE_COLUMNS} FROM challenges WHERE user_id = ? AND state = 'pending' AND expires_at > ? ORDER BY id"
        );
        self.read(|c| all(c, &sql, params![user.0, now], challenge_from_row))
    }

    async fn answer_challenge(
        &self,
        public_id: &str,
        to: ChallengeState,
        device_row: i64,
        now: UnixTime,
        audit: &AuditEvent,
    ) -> Result<bool> {
        let public_id = public_id.to_owned();
        let audit = audit.clone();
        self.group
            .write(move |c| {
                let user: Option<i64> = one(
                    c,
                    "UPDATE challenges SET state = ?1, answered_at = ?2, answered_by_device = ?3 \
                     WHERE public_id = ?4 AND state = 'pending' AND expires_at > ?2 RETURNING user_id",
                    params![to.as_str(), now, device_row, public_id],
                    first,
                )?;
                let Some(user) = user else {
                    return Ok(false);
                };
                if to == ChallengeState::Approved {
                    changed(
                        c,
                        "UPDATE attempt_counters SET failures = 0 WHERE user_id = ? AND kind = 'push' AND failures <> 0",
                        [user],
                    )?;
                }
                insert_audit(c, &audit)?;
                Ok(true)
            })
            .await
    }

    async fn consume_challenge(&self, public_id: &str) -> Result<bool> {
        Ok(self
            .execute(
                "UPDATE challenges SET state = 'consumed' WHERE public_id = ? AND state = 'approved'",
                (public_id.to_owned(),),
            )
            .await?
            == 1)
    }

    async fn cancel_pending_challenges(&self, user: UserId) -> Result<Vec<String>> {
        self.group
            .write(move |c| {
                all(
                    c,
                    "UPDATE challenges SET state = 'cancelled' WHERE user_id = ? AND state = 'pending' RETURNING public_id",
                    [user.0],
                    first,
                )
            })
            .await
    }

    async fn update_user_push_blocked(&self, user: UserId, at: Option<UnixTime>) -> Result<()> {
        self.execute(
            "UPDATE users SET push_blocked_at = ? WHERE id = ?",
            (at, user.0),
        )
        .await?;
        Ok(())
    }

    async fn update_user_last_signin(&self, user: UserId, at: UnixTime) -> Result<()> {
        self.execute(
            "UPDATE users SET last_signin_at = ? WHERE id = ?",
            (at, user.0),
        )
        .await?;
        Ok(())
    }

    async fn set_pin_key(&self, row_id: i64, key: &[u8], replacing: Option<&[u8]>) -> Result<bool> {
        Ok(self
            .execute(
                "UPDATE devices SET pin_key = ?1, pin_key_failures = 0 \
                 WHERE id = ?2 AND pin_key_disabled_at IS NULL AND pin_key IS ?3",
                (key.to_vec(), row_id, replacing.map(<[u8]>::to_vec)),
            )
            .await?
            == 1)
    }

    async fn record_pin_check(
        &self,
        row_id: i64,
        key: &[u8],
        valid: bool,
        max: i64,
        now: UnixTime,
    ) -> Result<PinOutcome> {
        let key = key.to_vec();
        self.group
            .write(move |c| {
                let row: Option<(i64, Option<i64>)> = one(
                    c,
                    "UPDATE devices SET \
                     pin_key_failures = CASE WHEN ?1 THEN 0 ELSE pin_key_failures + 1 END, \
                     pin_key_disabled_at = CASE WHEN NOT ?1 AND pin_key_failures + 1 >= ?2 THEN ?3 END \
                     WHERE id = ?4 AND pin_key = ?5 AND pin_key_disabled_at IS NULL AND pin_key_failures < ?2 \
                     RETURNING pin_key_failures, pin_key_disabled_at",
                    params![valid, max, now, row_id, key],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                if let Some((n, disabled)) = row {
                    return Ok(if valid {
                        PinOutcome::Accepted
                    } else {
                        PinOutcome::Wrong {
                            consecutive: n,
                            disabled: disabled.is_some(),
                        }
                    });
                }
                let current: Option<(Option<Vec<u8>>, Option<i64>)> = one(
                    c,
                    "SELECT pin_key, pin_key_disabled_at FROM devices WHERE id = ?",
                    [row_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                Ok(match current {
                    Some((Some(k), d)) if k == key && d.is_some() => PinOutcome::Disabled,
                    // Same key, not disabled, but at the limit: a race lost to the check that disabled it.
                    Some((Some(k), _)) if k == key => PinOutcome::Disabled,
                    _ => PinOutcome::NoKey,
                })
            })
            .await
    }

    async fn disable_pin_key(&self, row_id: i64, now: UnixTime) -> Result<bool> {
        Ok(self
            .execute(
                "UPDATE devices SET pin_key_disabled_at = ? WHERE id = ? AND pin_key_disabled_at IS NULL",
                (now, row_id),
            )
            .await?
            == 1)
    }

    async fn clear_pin_key(&self, user: UserId, public_id: &str) -> Result<bool> {
        Ok(self
            .execute(
                "UPDATE devices SET pin_key = NULL, pin_key_failures = 0, pin_key_disabled_at = NULL, \
                 phone_sign_in_at = NULL WHERE user_id = ? AND public_id = ?",
                (user.0, public_id.to_owned()),
            )
            .await?
            == 1)
    }

    async fn set_phone_sign_in(&self, row_id: i64, at: Option<UnixTime>) -> Result<()> {
        self.execute(
            "UPDATE devices SET phone_sign_in_at = ? WHERE id = ?",
            (at, row_id),
        )
        .await?;
        Ok(())
    }

    async fn update_signin_preference(&self, user: UserId, choice: Option<&str>) -> Result<()> {
        self.execute(
            "UPDATE users SET signin_preference = ? WHERE id = ?",
            (choice.map(str::to_owned), user.0),
        )
        .await?;
        Ok(())
    }

    async fn find_policy(&self, tenant: TenantId) -> Result<Option<(MethodsPolicy, i64)>> {
        self.read(|c| {
            one(
                c,
                "SELECT policy, version FROM tenant_policies WHERE tenant_id = ?",
                [tenant.0],
                |r| {
                    let text: String = r.get(0)?;
                    let policy = serde_json::from_str(&text).map_err(|e| {
                        StoreError::Database(format!("stored policy is not valid: {e}"))
                    })?;
                    Ok((policy, r.get(1)?))
                },
            )
        })
    }

    async fn find_policy_for_user(
        &self,
        tenant: TenantId,
        user: UserId,
    ) -> Result<(Option<(MethodsPolicy, i64)>, Vec<GroupId>)> {
        let cached = self
            .policies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&tenant.0)
            .map(|(v, _)| *v);
        // One statement, so one snapshot: the version, the text only if it is not the cached
        // version, and the user's groups.
        let (version, text, groups): (Option<i64>, Option<String>, Option<String>) =
            self.read(|c| {
                Ok(c.prepare_cached(
                    "SELECT (SELECT version FROM tenant_policies WHERE tenant_id = ?1), \
                     (SELECT policy FROM tenant_policies WHERE tenant_id = ?1 AND version IS NOT ?3), \
                     (SELECT group_concat(group_id) FROM group_members WHERE user_id = ?2)",
                )?
                .query_row(params![tenant.0, user.0, cached], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?)
            })?;
        let groups = groups
            .as_deref()
            .unwrap_or("")
            .split(',')
            .filter(|g| !g.is_empty())
            .map(|g| {
                g.parse()
                    .map(GroupId)
                    .map_err(|_| StoreError::Database(format!("bad group id {g:?}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let Some(version) = version else {
            return Ok((None, groups));
        };
        let policy = {
            let mut cache = self.policies.lock().unwrap_or_else(PoisonError::into_inner);
            match text {
                Some(text) => {
                    let policy: MethodsPolicy = serde_json::from_str(&text).map_err(|e| {
                        StoreError::Database(format!("stored policy is not valid: {e}"))
                    })?;
                    // A slower reader of an older version must not replace a newer one.
                    if cache.get(&tenant.0).is_none_or(|(v, _)| *v < version) {
                        cache.insert(tenant.0, (version, policy.clone()));
                    }
                    Some(policy)
                }
                // Cached at exactly this version, unless a newer one replaced it meanwhile.
                None => cache
                    .get(&tenant.0)
                    .filter(|(v, _)| *v == version)
                    .map(|(_, p)| p.clone()),
            }
        };
        let Some(policy) = policy else {
            return Ok((self.find_policy(tenant).await?, groups));
        };
        Ok((Some((policy, version)), groups))
    }

    async fn save_policy(
        &self,
        tenant: TenantId,
        policy: &MethodsPolicy,
        expected_version: i64,
        now: UnixTime,
        audit: &AuditEvent,
    ) -> Result<bool> {
        let text = serde_json::to_string(policy)
            .map_err(|e| StoreError::Database(format!("policy does not serialise: {e}")))?;
        let audit = audit.clone();
        self.group
            .write(move |c| {
                // Insert at version 1 when none exists yet, otherwise bump the expected version:
                // either way exactly one of two racing saves from the same version wins.
                let n = changed(
                    c,
                    "INSERT INTO tenant_policies (tenant_id, policy, version, updated_at) VALUES (?1, ?2, 1, ?3) \
                     ON CONFLICT (tenant_id) DO UPDATE SET policy = excluded.policy, \
                     version = tenant_policies.version + 1, updated_at = excluded.updated_at \
                     WHERE tenant_policies.version = ?4",
                    params![tenant.0, text, now, expected_version],
                )?;
                if n != 1 {
                    return Ok(false);
                }
                insert_audit(c, &audit)?;
                Ok(true)
            })
            .await
    }

    async fn append_audit(&self, e: &AuditEvent) -> Result<()> {
        let e = e.clone();
        self.group.write(move |c| insert_audit(c, &e)).await
    }

    async fn list_audit(&self, f: &AuditFilter) -> Result<Vec<AuditEvent>> {
        use rusqlite::types::Value;
        // Only the filters given, so that SQLite can use the (user_id, at) and (at) indexes
        // instead of walking the whole log.
        let mut sql = String::from(
            "SELECT id, at, tenant_id, user_id, username, ip, user_agent, event, method, result, reason \
             FROM audit_log WHERE 1",
        );
        let mut args: Vec<Value> = Vec::new();
        let mut and = |cond: &str, v: Value| {
            sql.push_str(" AND ");
            sql.push_str(cond);
            args.push(v);
        };
        if let Some(t) = f.tenant {
            and("tenant_id = ?", t.0.into());
        }
        if let Some(u) = f.user {
            and("user_id = ?", u.0.into());
        }
        if let Some(r) = f.result {
            and("result = ?", r.as_str().to_owned().into());
        }
        if let Some(m) = &f.method {
            and("method = ?", m.clone().into());
        }
        if let Some(t) = f.since {
            and("at >= ?", t.into());
        }
        if let Some(t) = f.until {
            and("at < ?", t.into());
        }
        sql.push_str(" ORDER BY id DESC LIMIT ?");
        args.push(Value::from(if f.limit > 0 { f.limit } else { 100 }));
        self.read_blocking(move |c| all(c, &sql, rusqlite::params_from_iter(args), audit_from_row))
            .await
    }
}
