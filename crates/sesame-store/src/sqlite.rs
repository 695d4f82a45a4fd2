//! The embedded backend: one SQLite file in WAL mode with `synchronous=FULL`.
//!
//! Reads use a pool of read-only connections, which in WAL mode never wait for the writer.
//! Writes go to one connection in groups (`writer`): everything waiting is committed in one
//! transaction, so one disk flush serves many writes. Each write runs in its own savepoint and
//! is a conditional statement (`UPDATE ... WHERE`, `INSERT ... ON CONFLICT`,
//! `DELETE ... RETURNING`) or a transaction of its own, so single use is enforced by the database.
//! Secrets are sealed with the master key before a write and opened after it, outside the group.

use crate::{
    crypto::MasterKey, name_key, AuditEvent, AuditFilter, AuditResult, ChallengeRecord, Device,
    Group, Method, NewChallenge, NewDevice, NewUser, PinOutcome, Result, SessionLimits,
    SessionRecord, SignInRecord, Store, StoreError, User,
};
use async_trait::async_trait;
use rand::RngCore;
use sesame_core::lockout::{AttemptGate, LockoutPolicy};
use sesame_core::method::{Amr, MethodKind};
use sesame_core::policy::MethodsPolicy;
use sesame_core::push::ChallengeState;
use sesame_core::secret::SecretBytes;
use sesame_core::signin::{CompletedSignIn, SignInState};
use sesame_core::{GroupId, MethodId, TenantId, UnixTime, UserId};
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Arguments, ConnectOptions, Connection, Row, SqlitePool};
use std::path::Path;
use std::time::Duration;

mod writer;

pub struct SqliteStore {
    /// Read-only connections: in WAL mode readers never wait for the writer.
    pool: SqlitePool,
    /// Every write, committed in groups (see `writer`): one connection writes, so writers
    /// queue here instead of sleeping in SQLite's busy handler.
    group: writer::GroupWriter,
    key: MasterKey,
}

fn db_err(e: sqlx::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
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

const USER_COLUMNS: &str =
    "id, tenant_id, username, display_name, password_hash, is_admin, is_blocked, \
     default_method_id, created_at, push_blocked_at, last_signin_at, signin_preference";

fn user_from_row(r: &SqliteRow) -> Result<User> {
    let hash: Option<String> = r.try_get("password_hash").map_err(db_err)?;
    Ok(User {
        id: UserId(r.try_get("id").map_err(db_err)?),
        tenant: TenantId(r.try_get("tenant_id").map_err(db_err)?),
        username: r.try_get("username").map_err(db_err)?,
        display_name: r.try_get("display_name").map_err(db_err)?,
        has_password: hash.is_some(),
        password_hash: hash,
        is_admin: r.try_get("is_admin").map_err(db_err)?,
        is_blocked: r.try_get("is_blocked").map_err(db_err)?,
        default_method: r
            .try_get::<Option<i64>, _>("default_method_id")
            .map_err(db_err)?
            .map(MethodId),
        created_at: r.try_get("created_at").map_err(db_err)?,
        push_blocked_at: r.try_get("push_blocked_at").map_err(db_err)?,
        last_signin_at: r.try_get("last_signin_at").map_err(db_err)?,
        signin_preference: r.try_get("signin_preference").map_err(db_err)?,
    })
}

const METHOD_COLUMNS: &str =
    "id, public_id, user_id, kind, label, secret_enc, created_at, last_used_at, \
     (SELECT d.public_id FROM devices d WHERE d.id = methods.device_id) AS device_public_id";

const DEVICE_COLUMNS: &str =
    "id, public_id, tenant_id, user_id, name, alg, public_key, created_at, last_used_at, \
     pin_key, pin_key_failures, pin_key_disabled_at, phone_sign_in_at";

fn device_from_row(r: &SqliteRow) -> Result<Device> {
    Ok(Device {
        row_id: r.try_get("id").map_err(db_err)?,
        id: r.try_get("public_id").map_err(db_err)?,
        tenant: TenantId(r.try_get("tenant_id").map_err(db_err)?),
        user: UserId(r.try_get("user_id").map_err(db_err)?),
        name: r.try_get("name").map_err(db_err)?,
        alg: r.try_get("alg").map_err(db_err)?,
        public_key: r.try_get("public_key").map_err(db_err)?,
        created_at: r.try_get("created_at").map_err(db_err)?,
        last_used_at: r.try_get("last_used_at").map_err(db_err)?,
        pin_key: r.try_get("pin_key").map_err(db_err)?,
        pin_key_failures: r.try_get("pin_key_failures").map_err(db_err)?,
        pin_key_disabled_at: r.try_get("pin_key_disabled_at").map_err(db_err)?,
        phone_sign_in_at: r.try_get("phone_sign_in_at").map_err(db_err)?,
    })
}

const CHALLENGE_COLUMNS: &str =
    "public_id, tenant_id, user_id, signin_id_hash, kind, nonce, number, state, app_name, \
     ip, location, user_agent, created_at, expires_at, answered_at, answered_by_device";

fn challenge_from_row(r: &SqliteRow) -> Result<ChallengeRecord> {
    let state: String = r.try_get("state").map_err(db_err)?;
    Ok(ChallengeRecord {
        id: r.try_get("public_id").map_err(db_err)?,
        tenant: TenantId(r.try_get("tenant_id").map_err(db_err)?),
        user: UserId(r.try_get("user_id").map_err(db_err)?),
        signin_id_hash: r.try_get("signin_id_hash").map_err(db_err)?,
        kind: r.try_get("kind").map_err(db_err)?,
        nonce: r.try_get("nonce").map_err(db_err)?,
        number: r.try_get("number").map_err(db_err)?,
        state: ChallengeState::parse(&state)
            .ok_or_else(|| StoreError::Database(format!("bad challenge state {state}")))?,
        app_name: r.try_get("app_name").map_err(db_err)?,
        ip: r.try_get("ip").map_err(db_err)?,
        location: r.try_get("location").map_err(db_err)?,
        user_agent: r.try_get("user_agent").map_err(db_err)?,
        created_at: r.try_get("created_at").map_err(db_err)?,
        expires_at: r.try_get("expires_at").map_err(db_err)?,
        answered_at: r.try_get("answered_at").map_err(db_err)?,
        answered_by: r.try_get("answered_by_device").map_err(db_err)?,
    })
}

fn group_from_row(r: &SqliteRow) -> Result<Group> {
    Ok(Group {
        id: GroupId(r.try_get("id").map_err(db_err)?),
        tenant: TenantId(r.try_get("tenant_id").map_err(db_err)?),
        name: r.try_get("name").map_err(db_err)?,
        member_count: r.try_get("member_count").map_err(db_err)?,
        created_at: r.try_get("created_at").map_err(db_err)?,
    })
}

const GROUP_SELECT: &str = "SELECT g.id, g.tenant_id, g.name, g.created_at, \
     (SELECT COUNT(*) FROM group_members m WHERE m.group_id = g.id) AS member_count FROM groups g";

/// Arguments owned by the statement, so that a write can be handed to the group writer.
macro_rules! args {
    ($($v:expr),* $(,)?) => {{
        #[allow(unused_mut)]
        let mut a = SqliteArguments::default();
        $(a.add($v).map_err(|e| StoreError::Database(e.to_string()))?;)*
        a
    }};
}

impl SqliteStore {
    /// One statement, committed with the next group; returns the rows it changed.
    async fn execute(&self, sql: &'static str, args: SqliteArguments<'static>) -> Result<u64> {
        self.group
            .write(move |c| {
                Box::pin(async move {
                    Ok(sqlx::query_with(sql, args)
                        .execute(&mut *c)
                        .await
                        .map_err(db_err)?
                        .rows_affected())
                })
            })
            .await
    }

    /// Opens (creating if needed) the database file and applies migrations.
    pub async fn open(path: &Path, key: MasterKey) -> Result<Self> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        // Migrations on a connection of their own, closed before the writer starts.
        let mut migrating = opts.connect().await.map_err(db_err)?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&mut migrating)
            .await
            .map_err(|e| StoreError::Migration(e.to_string()))?;
        migrating.close().await.map_err(db_err)?;
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            // Readers only read: no journal-mode or synchronous pragmas (a read-only connection
            // cannot set them; the writer made the file WAL above and that persists).
            .connect_with(
                SqliteConnectOptions::new()
                    .filename(path)
                    .read_only(true)
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true),
            )
            .await
            .map_err(db_err)?;
        let group = writer::GroupWriter::start(&opts).await?;
        Ok(Self { pool, group, key })
    }

    fn open_method(&self, r: &SqliteRow) -> Result<Method> {
        let user = UserId(r.try_get("user_id").map_err(db_err)?);
        let public_id: String = r.try_get("public_id").map_err(db_err)?;
        let kind_s: String = r.try_get("kind").map_err(db_err)?;
        let kind: MethodKind = kind_s.parse().map_err(StoreError::Database)?;
        let sealed: Option<Vec<u8>> = r.try_get("secret_enc").map_err(db_err)?;
        let totp_secret = match sealed {
            Some(s) => Some(
                self.key
                    .open(&method_aad(&public_id, user), &s)
                    .ok_or(StoreError::Decrypt)?,
            ),
            None => None,
        };
        Ok(Method {
            id: MethodId(r.try_get("id").map_err(db_err)?),
            user,
            kind,
            label: r.try_get("label").map_err(db_err)?,
            totp_secret,
            created_at: r.try_get("created_at").map_err(db_err)?,
            last_used_at: r.try_get("last_used_at").map_err(db_err)?,
            device: r.try_get("device_public_id").map_err(db_err)?,
        })
    }
}

fn amr_to_json(amr: &[Amr]) -> String {
    serde_json::to_string(amr).expect("amr list serialises")
}

fn audit_from_row(r: &SqliteRow) -> Result<AuditEvent> {
    let result: String = r.try_get("result").map_err(db_err)?;
    Ok(AuditEvent {
        id: r.try_get("id").map_err(db_err)?,
        at: r.try_get("at").map_err(db_err)?,
        tenant: TenantId(r.try_get("tenant_id").map_err(db_err)?),
        user: r
            .try_get::<Option<i64>, _>("user_id")
            .map_err(db_err)?
            .map(UserId),
        username: r.try_get("username").map_err(db_err)?,
        ip: r.try_get("ip").map_err(db_err)?,
        user_agent: r.try_get("user_agent").map_err(db_err)?,
        event: r.try_get("event").map_err(db_err)?,
        method: r.try_get("method").map_err(db_err)?,
        result: if result == "success" {
            AuditResult::Success
        } else {
            AuditResult::Failure
        },
        reason: r.try_get("reason").map_err(db_err)?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn default_tenant(&self) -> Result<TenantId> {
        let id: i64 = sqlx::query_scalar("SELECT id FROM tenants WHERE name = 'default'")
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(TenantId(id))
    }

    async fn create_user(&self, new: NewUser, now: UnixTime) -> Result<User> {
        self.group
            .write(move |c| {
                Box::pin(async move {
                    let sql = format!(
                        "INSERT INTO users (tenant_id, username, username_key, display_name, password_hash, is_admin, created_at) \
                         VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING {USER_COLUMNS}"
                    );
                    let row = sqlx::query(&sql)
                        .bind(new.tenant.0)
                        .bind(new.username.trim())
                        .bind(name_key(&new.username))
                        .bind(&new.display_name)
                        .bind(&new.password_hash)
                        .bind(new.is_admin)
                        .bind(now)
                        .fetch_one(&mut *c)
                        .await
                        .map_err(|e| {
                            if is_unique_violation(&e) {
                                StoreError::Conflict(format!("user {:?}", new.username.trim()))
                            } else {
                                db_err(e)
                            }
                        })?;
                    user_from_row(&row)
                })
            })
            .await
    }

    async fn find_user(&self, id: UserId) -> Result<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?");
        let row = sqlx::query(&sql)
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn find_user_by_username(
        &self,
        tenant: TenantId,
        username: &str,
    ) -> Result<Option<User>> {
        let sql =
            format!("SELECT {USER_COLUMNS} FROM users WHERE tenant_id = ? AND username_key = ?");
        let row = sqlx::query(&sql)
            .bind(tenant.0)
            .bind(name_key(username))
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn list_users(&self, tenant: TenantId) -> Result<Vec<User>> {
        let sql =
            format!("SELECT {USER_COLUMNS} FROM users WHERE tenant_id = ? ORDER BY username_key");
        let rows = sqlx::query(&sql)
            .bind(tenant.0)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(user_from_row).collect()
    }

    async fn update_user_password(&self, id: UserId, hash: Option<&str>) -> Result<()> {
        let hash = hash.map(str::to_owned);
        self.group
            .write(move |c| {
                Box::pin(async move {
                    let hash = hash.as_deref();
                    let n = sqlx::query("UPDATE users SET password_hash = ? WHERE id = ?")
                        .bind(hash)
                        .bind(id.0)
                        .execute(&mut *c)
                        .await
                        .map_err(db_err)?
                        .rows_affected();
                    if n == 0 {
                        return Err(StoreError::NotFound(format!("user {id}")));
                    }
                    Ok(())
                })
            })
            .await
    }

    async fn update_user_blocked(&self, id: UserId, blocked: bool) -> Result<()> {
        self.group
            .write(move |c| {
                Box::pin(async move {
                    let n = sqlx::query("UPDATE users SET is_blocked = ? WHERE id = ?")
                        .bind(blocked)
                        .bind(id.0)
                        .execute(&mut *c)
                        .await
                        .map_err(db_err)?
                        .rows_affected();
                    if n == 0 {
                        return Err(StoreError::NotFound(format!("user {id}")));
                    }
                    Ok(())
                })
            })
            .await
    }

    async fn update_default_method(&self, id: UserId, method: Option<MethodId>) -> Result<()> {
        self.group
            .write(move |c| {
                Box::pin(async move {
                    // The method must belong to the user; the subquery makes that part of the same statement.
                    let n = sqlx::query(
                        "UPDATE users SET default_method_id = ?1 WHERE id = ?2 \
                         AND (?1 IS NULL OR EXISTS (SELECT 1 FROM methods WHERE id = ?1 AND user_id = ?2))",
                    )
                    .bind(method.map(|m| m.0))
                    .bind(id.0)
                    .execute(&mut *c)
                    .await
                    .map_err(db_err)?
                    .rows_affected();
                    if n == 0 {
                        return Err(StoreError::NotFound("method".into()));
                    }
                    Ok(())
                })
            })
            .await
    }

    async fn delete_user(&self, id: UserId) -> Result<bool> {
        Ok(self
            .execute("DELETE FROM users WHERE id = ?", args![id.0])
            .await?
            == 1)
    }

    async fn count_admins(&self, tenant: TenantId) -> Result<i64> {
        sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE tenant_id = ? AND is_admin = 1")
            .bind(tenant.0)
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)
    }

    async fn create_group(&self, tenant: TenantId, name: &str, now: UnixTime) -> Result<Group> {
        let group_name = name.to_owned();
        self.group
            .write(move |c| {
                Box::pin(async move {
                    let name = group_name.as_str();
                    sqlx::query(
                        "INSERT INTO groups (tenant_id, name, name_key, created_at) VALUES (?, ?, ?, ?)",
                    )
                    .bind(tenant.0)
                    .bind(name.trim())
                    .bind(name_key(name))
                    .bind(now)
                    .execute(&mut *c)
                    .await
                    .map_err(|e| {
                        if is_unique_violation(&e) {
                            StoreError::Conflict(format!("group {:?}", name.trim()))
                        } else {
                            db_err(e)
                        }
                    })?;
                    Ok(())
                })
            })
            .await?;
        self.find_group_by_name(tenant, name)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("group {name:?}")))
    }

    async fn find_group_by_name(&self, tenant: TenantId, name: &str) -> Result<Option<Group>> {
        let sql = format!("{GROUP_SELECT} WHERE g.tenant_id = ? AND g.name_key = ?");
        let row = sqlx::query(&sql)
            .bind(tenant.0)
            .bind(name_key(name))
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(group_from_row).transpose()
    }

    async fn list_groups(&self, tenant: TenantId) -> Result<Vec<Group>> {
        let sql = format!("{GROUP_SELECT} WHERE g.tenant_id = ? ORDER BY g.name_key");
        let rows = sqlx::query(&sql)
            .bind(tenant.0)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(group_from_row).collect()
    }

    async fn list_user_groups(&self, user: UserId) -> Result<Vec<Group>> {
        let sql = format!(
            "{GROUP_SELECT} WHERE g.id IN (SELECT group_id FROM group_members WHERE user_id = ?) ORDER BY g.name_key"
        );
        let rows = sqlx::query(&sql)
            .bind(user.0)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(group_from_row).collect()
    }

    async fn list_group_members(&self, group: GroupId) -> Result<Vec<User>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users WHERE id IN (SELECT user_id FROM group_members WHERE group_id = ?) \
             ORDER BY username_key"
        );
        let rows = sqlx::query(&sql)
            .bind(group.0)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(user_from_row).collect()
    }

    async fn add_group_member(&self, group: GroupId, user: UserId) -> Result<bool> {
        Ok(self.execute(
            "INSERT INTO group_members (group_id, user_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
            args![group.0, user.0],
        )
        .await? == 1)
    }

    async fn remove_group_member(&self, group: GroupId, user: UserId) -> Result<bool> {
        self.group
            .write(move |c| {
                Box::pin(async move {
                    let n =
                        sqlx::query("DELETE FROM group_members WHERE group_id = ? AND user_id = ?")
                            .bind(group.0)
                            .bind(user.0)
                            .execute(&mut *c)
                            .await
                            .map_err(db_err)?
                            .rows_affected();
                    Ok(n == 1)
                })
            })
            .await
    }

    async fn create_totp_enrollment(
        &self,
        user: UserId,
        secret: &SecretBytes,
        expires_at: UnixTime,
    ) -> Result<String> {
        let id = random_hex(16);
        let sealed = self.key.seal(&enrollment_aad(&id, user), secret.expose());
        self.group
            .write(move |c| {
                Box::pin(async move {
                    sqlx::query("INSERT INTO totp_enrollments (id, user_id, secret_enc, expires_at) VALUES (?, ?, ?, ?)")
                        .bind(&id)
                        .bind(user.0)
                        .bind(sealed)
                        .bind(expires_at)
                        .execute(&mut *c)
                        .await
                        .map_err(db_err)?;
                    Ok(id)
                })
            })
            .await
    }

    async fn find_totp_enrollment(
        &self,
        user: UserId,
        id: &str,
        now: UnixTime,
    ) -> Result<Option<SecretBytes>> {
        let sealed: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT secret_enc FROM totp_enrollments WHERE id = ? AND user_id = ? AND expires_at > ?",
        )
        .bind(id)
        .bind(user.0)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
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
                Box::pin(async move {
                    let id = owned_id.as_str();
                    let sealed: Option<Vec<u8>> = sqlx::query_scalar(
                        "DELETE FROM totp_enrollments WHERE id = ? AND user_id = ? AND expires_at > ? RETURNING secret_enc",
                    )
                    .bind(id)
                    .bind(user.0)
                    .bind(now)
                    .fetch_optional(&mut *c)
                    .await
                    .map_err(db_err)?;
                    // Expired enrolments of this user are garbage now.
                    sqlx::query("DELETE FROM totp_enrollments WHERE user_id = ? AND expires_at <= ?")
                        .bind(user.0)
                        .bind(now)
                        .execute(&mut *c)
                        .await
                        .map_err(db_err)?;
                    Ok(sealed)
                })
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
        let row = self
            .group
            .write(move |c| {
                Box::pin(async move {
                    let label = label.as_str();
                    sqlx::query(
                        "INSERT INTO methods (public_id, user_id, kind, label, secret_enc, last_totp_step, created_at) \
                         VALUES (?, ?, 'totp', ?, ?, ?, ?) \
                         RETURNING id, public_id, user_id, kind, label, secret_enc, created_at, last_used_at, NULL AS device_public_id",
                    )
                    .bind(&public_id)
                    .bind(user.0)
                    .bind(label)
                    .bind(sealed)
                    .bind(used_step)
                    .bind(now)
                    .fetch_one(&mut *c)
                    .await
                    .map_err(db_err)
                })
            })
            .await?;
        self.open_method(&row)
    }

    async fn list_methods(&self, user: UserId) -> Result<Vec<Method>> {
        let sql = format!("SELECT {METHOD_COLUMNS} FROM methods WHERE user_id = ? ORDER BY id");
        let rows = sqlx::query(&sql)
            .bind(user.0)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(|r| self.open_method(r)).collect()
    }

    async fn delete_method(&self, user: UserId, method: MethodId) -> Result<bool> {
        self.group
            .write(move |c| {
                Box::pin(async move {
                    let n = sqlx::query("DELETE FROM methods WHERE id = ? AND user_id = ?")
                        .bind(method.0)
                        .bind(user.0)
                        .execute(&mut *c)
                        .await
                        .map_err(db_err)?
                        .rows_affected();
                    if n == 1 {
                        sqlx::query(
                            "UPDATE users SET default_method_id = NULL WHERE id = ? AND default_method_id = ?",
                        )
                        .bind(user.0)
                        .bind(method.0)
                        .execute(&mut *c)
                        .await
                        .map_err(db_err)?;
                    }
                    Ok(n == 1)
                })
            })
            .await
    }

    async fn delete_all_methods(&self, user: UserId) -> Result<u64> {
        self.group
            .write(move |c| {
                Box::pin(async move {
                    let n = sqlx::query("DELETE FROM methods WHERE user_id = ?")
                        .bind(user.0)
                        .execute(&mut *c)
                        .await
                        .map_err(db_err)?
                        .rows_affected();
                    sqlx::query("UPDATE users SET default_method_id = NULL WHERE id = ?")
                        .bind(user.0)
                        .execute(&mut *c)
                        .await
                        .map_err(db_err)?;
                    sqlx::query("DELETE FROM attempt_counters WHERE user_id = ?")
                        .bind(user.0)
                        .execute(&mut *c)
                        .await
                        .map_err(db_err)?;
                    Ok(n)
                })
            })
            .await
    }

    async fn claim_totp_step(&self, method: MethodId, step: i64, now: UnixTime) -> Result<bool> {
        self.group
            .write(move |c| {
                Box::pin(async move {
                    let n = sqlx::query(
                        "UPDATE methods SET last_totp_step = ?1, last_used_at = ?2 \
                         WHERE id = ?3 AND (last_totp_step IS NULL OR last_totp_step < ?1)",
                    )
                    .bind(step)
                    .bind(now)
                    .bind(method.0)
                    .execute(&mut *c)
                    .await
                    .map_err(db_err)?
                    .rows_affected();
                    Ok(n == 1)
                })
            })
            .await
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
                Box::pin(async move {
                    let (kind, policy) = (kind.as_str(), &policy);
                    // Compare-and-set on the failure count: of N parallel attempts that read the same count,
                    // exactly one increments it; the others read again and see the new count.
                    for _ in 0..10_000 {
                        let row = sqlx::query("SELECT failures, last_failure_at FROM attempt_counters WHERE user_id = ? AND kind = ?")
                            .bind(user.0)
                            .bind(kind)
                            .fetch_optional(&mut *c)
                            .await
                            .map_err(db_err)?;
                        let (failures, last): (i64, Option<i64>) = match row {
                            Some(r) => (r.try_get(0).map_err(db_err)?, r.try_get(1).map_err(db_err)?),
                            None => {
                                sqlx::query(
                                    "INSERT INTO attempt_counters (user_id, kind, failures, last_failure_at) VALUES (?, ?, 0, NULL) \
                                     ON CONFLICT DO NOTHING",
                                )
                                .bind(user.0)
                                .bind(kind)
                                .execute(&mut *c)
                                .await
                                .map_err(db_err)?;
                                continue;
                            }
                        };
                        let gate = policy.gate(u32::try_from(failures).unwrap_or(u32::MAX), last, now);
                        if gate != AttemptGate::Open {
                            return Ok(gate);
                        }
                        let n = sqlx::query(
                            "UPDATE attempt_counters SET failures = failures + 1, last_failure_at = ? \
                             WHERE user_id = ? AND kind = ? AND failures = ?",
                        )
                        .bind(now)
                        .bind(user.0)
                        .bind(kind)
                        .bind(failures)
                        .execute(&mut *c)
                        .await
                        .map_err(db_err)?
                        .rows_affected();
                        if n == 1 {
                            return Ok(AttemptGate::Open);
                        }
                    }
                    Err(StoreError::Database(
                        "attempt counter contention did not settle".into(),
                    ))
                })
            })
            .await
    }

    async fn clear_failures(&self, user: UserId, kind: &str) -> Result<()> {
        let kind = kind.to_owned();
        self.execute(
            "UPDATE attempt_counters SET failures = 0 WHERE user_id = ? AND kind = ? AND failures <> 0",
            args![user.0, kind],
        )
        .await?;
        Ok(())
    }

    async fn find_failures(&self, user: UserId, kind: &str) -> Result<(u32, Option<UnixTime>)> {
        let row = sqlx::query(
            "SELECT failures, last_failure_at FROM attempt_counters WHERE user_id = ? AND kind = ?",
        )
        .bind(user.0)
        .bind(kind)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        match row {
            Some(r) => {
                let f: i64 = r.try_get(0).map_err(db_err)?;
                Ok((
                    u32::try_from(f).unwrap_or(u32::MAX),
                    r.try_get(1).map_err(db_err)?,
                ))
            }
            None => Ok((0, None)),
        }
    }

    async fn create_signin(&self, rec: &SignInRecord) -> Result<()> {
        let rec = rec.clone();
        self.group
            .write(move |c| {
                Box::pin(async move {
                    let rec = &rec;
                    // Opportunistic clean-up keeps the table small without a background job; about one
                    // sign-in in 64 pays for it (the id hash is uniformly random).
                    if rec.id_hash.first().is_some_and(|b| b % 64 == 0) {
                        sqlx::query("DELETE FROM signin_transactions WHERE expires_at < ?")
                            .bind(rec.created_at - 3600)
                            .execute(&mut *c)
                            .await
                            .map_err(db_err)?;
                    }
                    sqlx::query(
                        "INSERT INTO signin_transactions (id_hash, tenant_id, username, state, version, next_path, created_at, expires_at) \
                         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    )
                    .bind(&rec.id_hash)
                    .bind(rec.tenant.0)
                    .bind(&rec.username)
                    .bind(serde_json::to_string(&rec.state).expect("state serialises"))
                    .bind(rec.version)
                    .bind(&rec.next_path)
                    .bind(rec.created_at)
                    .bind(rec.expires_at)
                    .execute(&mut *c)
                    .await
                    .map_err(db_err)?;
                    Ok(())
                })
            })
            .await
    }

    async fn find_signin(&self, id_hash: &[u8], now: UnixTime) -> Result<Option<SignInRecord>> {
        let row = sqlx::query(
            "SELECT tenant_id, username, state, version, next_path, created_at, expires_at \
             FROM signin_transactions WHERE id_hash = ? AND expires_at > ?",
        )
        .bind(id_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        let Some(r) = row else { return Ok(None) };
        let state: String = r.try_get("state").map_err(db_err)?;
        Ok(Some(SignInRecord {
            id_hash: id_hash.to_vec(),
            tenant: TenantId(r.try_get("tenant_id").map_err(db_err)?),
            username: r.try_get("username").map_err(db_err)?,
            state: serde_json::from_str(&state).map_err(|e| StoreError::Database(e.to_string()))?,
            version: r.try_get("version").map_err(db_err)?,
            next_path: r.try_get("next_path").map_err(db_err)?,
            created_at: r.try_get("created_at").map_err(db_err)?,
            expires_at: r.try_get("expires_at").map_err(db_err)?,
        }))
    }

    async fn update_signin_state(
        &self,
        id_hash: &[u8],
        expected_version: i64,
        state: &SignInState,
    ) -> Result<bool> {
        let id_hash = id_hash.to_vec();
        let state = state.clone();
        self.group
            .write(move |c| {
                Box::pin(async move {
                    let (id_hash, state) = (id_hash.as_slice(), &state);
                    let n = sqlx::query(
                        "UPDATE signin_transactions SET state = ?, version = version + 1 WHERE id_hash = ? AND version = ?",
                    )
                    .bind(serde_json::to_string(state).expect("state serialises"))
                    .bind(id_hash)
                    .bind(expected_version)
                    .execute(&mut *c)
                    .await
                    .map_err(db_err)?
                    .rows_affected();
                    Ok(n == 1)
                })
            })
            .await
    }

    async fn delete_signin(&self, id_hash: &[u8]) -> Result<()> {
        let id_hash = id_hash.to_vec();
        self.execute(
            "DELETE FROM signin_transactions WHERE id_hash = ?",
            args![id_hash],
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
            .write(move |c| {
                Box::pin(async move {
                    let (id_hash, signin) = (id_hash.as_slice(), &signin);
                    insert_session(&mut *c, id_hash, tenant, signin, now, limits).await
                })
            })
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
        self.group
            .write(move |c| {
                Box::pin(async move {
                    let (signin_id_hash, session_id_hash, signin, audit, approval) = (signin_id_hash.as_slice(), session_id_hash.as_slice(), &signin, &audit, approval.as_deref());
                    let mut tx = c.begin().await.map_err(db_err)?;
                    if let Some(id) = approval {
                        let n = sqlx::query(
                            "UPDATE challenges SET state = 'consumed' WHERE public_id = ? AND state = 'approved'",
                        )
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err)?
                        .rows_affected();
                        if n != 1 {
                            return Ok(false);
                        }
                    }
                    insert_session(&mut *tx, session_id_hash, audit.tenant, signin, now, limits).await?;
                    sqlx::query("DELETE FROM signin_transactions WHERE id_hash = ?")
                        .bind(signin_id_hash)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err)?;
                    sqlx::query("UPDATE users SET last_signin_at = ? WHERE id = ?")
                        .bind(now)
                        .bind(signin.user().0)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err)?;
                    insert_audit(&mut *tx, audit).await?;
                    tx.commit().await.map_err(db_err)?;
                    Ok(true)
                })
            })
            .await
    }

    async fn find_session(&self, id_hash: &[u8], now: UnixTime) -> Result<Option<SessionRecord>> {
        let row = sqlx::query(
            "SELECT tenant_id, user_id, amr, auth_time, created_at, last_seen_at FROM sessions \
             WHERE id_hash = ?1 AND revoked_at IS NULL AND idle_expires_at > ?2 AND expires_at > ?2",
        )
        .bind(id_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        let Some(r) = row else { return Ok(None) };
        let amr: String = r.try_get("amr").map_err(db_err)?;
        Ok(Some(SessionRecord {
            tenant: TenantId(r.try_get("tenant_id").map_err(db_err)?),
            user: UserId(r.try_get("user_id").map_err(db_err)?),
            amr: serde_json::from_str(&amr).map_err(|e| StoreError::Database(e.to_string()))?,
            auth_time: r.try_get("auth_time").map_err(db_err)?,
            created_at: r.try_get("created_at").map_err(db_err)?,
            last_seen_at: r.try_get("last_seen_at").map_err(db_err)?,
        }))
    }

    async fn touch_session(
        &self,
        id_hash: &[u8],
        now: UnixTime,
        limits: SessionLimits,
    ) -> Result<()> {
        let id_hash = id_hash.to_vec();
        self.group
            .write(move |c| {
                Box::pin(async move {
                    let id_hash = id_hash.as_slice();
                    // At most one write a minute per session: the idle timeout does not need more precision.
                    sqlx::query(
                        "UPDATE sessions SET last_seen_at = ?1, idle_expires_at = ?2 \
                         WHERE id_hash = ?3 AND revoked_at IS NULL AND last_seen_at < ?1 - 60",
                    )
                    .bind(now)
                    .bind(now + limits.idle_secs)
                    .bind(id_hash)
                    .execute(&mut *c)
                    .await
                    .map_err(db_err)?;
                    Ok(())
                })
            })
            .await
    }

    async fn revoke_session(&self, id_hash: &[u8], now: UnixTime) -> Result<()> {
        let id_hash = id_hash.to_vec();
        self.execute(
            "UPDATE sessions SET revoked_at = ? WHERE id_hash = ? AND revoked_at IS NULL",
            args![now, id_hash],
        )
        .await?;
        Ok(())
    }

    async fn revoke_user_sessions(&self, user: UserId, now: UnixTime) -> Result<u64> {
        self.group
            .write(move |c| {
                Box::pin(async move {
                    Ok(sqlx::query(
                        "UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
                    )
                    .bind(now)
                    .bind(user.0)
                    .execute(&mut *c)
                    .await
                    .map_err(db_err)?
                    .rows_affected())
                })
            })
            .await
    }

    async fn create_setup_token(&self, token_hash: &[u8], expires_at: UnixTime) -> Result<()> {
        let token_hash = token_hash.to_vec();
        self.execute(
            "INSERT INTO setup_tokens (token_hash, expires_at) VALUES (?, ?)",
            args![token_hash, expires_at],
        )
        .await?;
        Ok(())
    }

    async fn consume_setup_token(&self, token_hash: &[u8], now: UnixTime) -> Result<bool> {
        let token_hash = token_hash.to_vec();
        Ok(self.execute(
            "UPDATE setup_tokens SET used_at = ?1 WHERE token_hash = ?2 AND used_at IS NULL AND expires_at > ?1",
            args![now, token_hash],
        )
        .await? == 1)
    }

    async fn is_setup_token_valid(&self, token_hash: &[u8], now: UnixTime) -> Result<bool> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM setup_tokens WHERE token_hash = ? AND used_at IS NULL AND expires_at > ?",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(n == 1)
    }

    async fn create_activation(
        &self,
        user: UserId,
        code_hash: &[u8],
        expires_at: UnixTime,
    ) -> Result<()> {
        let code_hash = code_hash.to_vec();
        self.execute(
            "INSERT INTO activation_codes (code_hash, user_id, expires_at) VALUES (?, ?, ?)",
            args![code_hash, user.0, expires_at],
        )
        .await?;
        Ok(())
    }

    async fn consume_activation(&self, code_hash: &[u8], now: UnixTime) -> Result<Option<UserId>> {
        let code_hash = code_hash.to_vec();
        self.group
            .write(move |c| {
                Box::pin(async move {
                    let code_hash = code_hash.as_slice();
                    let user: Option<i64> = sqlx::query_scalar(
                        "UPDATE activation_codes SET used_at = ?1 WHERE code_hash = ?2 AND used_at IS NULL AND expires_at > ?1 \
                         RETURNING user_id",
                    )
                    .bind(now)
                    .bind(code_hash)
                    .fetch_optional(&mut *c)
                    .await
                    .map_err(db_err)?;
                    Ok(user.map(UserId))
                })
            })
            .await
    }

    async fn find_activation_device(
        &self,
        user: UserId,
        code_hash: &[u8],
    ) -> Result<Option<Option<String>>> {
        let row = sqlx::query(
            "SELECT (SELECT d.public_id FROM devices d WHERE d.id = a.device_id) AS device \
             FROM activation_codes a WHERE a.code_hash = ? AND a.user_id = ?",
        )
        .bind(code_hash)
        .bind(user.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.map(|r| r.try_get::<Option<String>, _>("device").map_err(db_err))
            .transpose()
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
        self.group
            .write(move |c| {
                Box::pin(async move {
                    let activation_hash = activation_hash.as_slice();
                    // One transaction: a crash leaves either a complete device or none.
                    let mut tx = c.begin()
                        .await
                        .map_err(db_err)?;
                    let public_id = random_hex(16);
                    let sql = format!(
                        "INSERT INTO devices (public_id, tenant_id, user_id, name, alg, public_key, created_at) \
                         VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING {DEVICE_COLUMNS}"
                    );
                    let row = sqlx::query(&sql)
                        .bind(&public_id)
                        .bind(new.tenant.0)
                        .bind(new.user.0)
                        .bind(&new.name)
                        .bind(&new.alg)
                        .bind(&new.public_key)
                        .bind(now)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(|e| {
                            if is_unique_violation(&e) {
                                StoreError::Conflict("device key".into())
                            } else {
                                db_err(e)
                            }
                        })?;
                    let device = device_from_row(&row)?;
                    let push_id = random_hex(16);
                    let push_row: i64 = sqlx::query_scalar(
                        "INSERT INTO methods (public_id, user_id, kind, label, created_at, device_id) VALUES (?, ?, 'push', ?, ?, ?) \
                         RETURNING id",
                    )
                    .bind(&push_id)
                    .bind(new.user.0)
                    .bind(&new.name)
                    .bind(now)
                    .bind(device.row_id)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db_err)?;

                    sqlx::query(
                        "INSERT INTO methods (public_id, user_id, kind, label, secret_enc, created_at, device_id) \
                         VALUES (?, ?, 'totp', ?, ?, ?, ?)",
                    )
                    .bind(&totp_id)
                    .bind(new.user.0)
                    .bind(&new.name)
                    .bind(sealed)
                    .bind(now)
                    .bind(device.row_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                    // The app becomes the default method unless the user already chose one.
                    sqlx::query(
                        "UPDATE users SET default_method_id = ? WHERE id = ? AND default_method_id IS NULL",
                    )
                    .bind(push_row)
                    .bind(new.user.0)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                    let n = sqlx::query(
                        "UPDATE activation_codes SET device_id = ? WHERE code_hash = ? AND user_id = ?",
                    )
                    .bind(device.row_id)
                    .bind(activation_hash)
                    .bind(new.user.0)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?
                    .rows_affected();
                    if n != 1 {
                        return Err(StoreError::NotFound("activation code".into()));
                    }
                    tx.commit().await.map_err(db_err)?;
                    Ok(device)
                })
            })
            .await
    }

    async fn find_device(&self, public_id: &str) -> Result<Option<Device>> {
        let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE public_id = ?");
        let row = sqlx::query(&sql)
            .bind(public_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(device_from_row).transpose()
    }

    async fn list_devices(&self, user: UserId) -> Result<Vec<Device>> {
        let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE user_id = ? ORDER BY id");
        let rows = sqlx::query(&sql)
            .bind(user.0)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(device_from_row).collect()
    }

    async fn delete_device(&self, user: UserId, public_id: &str) -> Result<Option<Vec<String>>> {
        let public_id = public_id.to_owned();
        self.group
            .write(move |c| {
                Box::pin(async move {
                    let public_id = public_id.as_str();
                    let mut tx = c.begin()
                        .await
                        .map_err(db_err)?;
                    let n = sqlx::query("DELETE FROM devices WHERE public_id = ? AND user_id = ?")
                        .bind(public_id)
                        .bind(user.0)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err)?
                        .rows_affected();
                    if n == 0 {
                        return Ok(None);
                    }
                    // Its methods went with it (ON DELETE CASCADE); a default that pointed at them is gone.
                    sqlx::query(
                        "UPDATE users SET default_method_id = (SELECT MIN(id) FROM methods WHERE user_id = ?1) \
                         WHERE id = ?1 AND default_method_id NOT IN (SELECT id FROM methods WHERE user_id = ?1)",
                    )
                    .bind(user.0)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                    // Its pending requests stop at once.
                    let cancelled: Vec<String> = sqlx::query_scalar(
                        "UPDATE challenges SET state = 'cancelled' WHERE user_id = ? AND state = 'pending' RETURNING public_id",
                    )
                    .bind(user.0)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db_err)?;
                    tx.commit().await.map_err(db_err)?;
                    Ok(Some(cancelled))
                })
            })
            .await
    }

    async fn touch_device(&self, row_id: i64, now: UnixTime) -> Result<()> {
        self.execute(
            "UPDATE devices SET last_used_at = ?1 WHERE id = ?2 AND (last_used_at IS NULL OR last_used_at < ?1 - 60)",
            args![now, row_id],
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
                Box::pin(async move {
                    let nonce = nonce.as_str();
                    let n = sqlx::query("INSERT INTO device_nonces (device_id, nonce, expires_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING")
                        .bind(row_id)
                        .bind(nonce)
                        .bind(expires_at)
                        .execute(&mut *c)
                        .await
                        .map_err(db_err)?
                        .rows_affected();
                    if n == 1 && nonce.as_bytes().first().is_some_and(|b| b % 16 == 0) {
                        // Now and then, forget nonces whose timestamps could no longer pass the freshness check.
                        sqlx::query("DELETE FROM device_nonces WHERE expires_at < ?")
                            .bind(now)
                            .execute(&mut *c)
                            .await
                            .map_err(db_err)?;
                    }
                    Ok(n == 1)
                })
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
                Box::pin(async move {
                    let audit = audit.as_ref();
                    let mut tx = c.begin().await.map_err(db_err)?;
                    let superseded: Vec<String> = sqlx::query_scalar(
                        "UPDATE challenges SET state = 'superseded' WHERE user_id = ? AND state = 'pending' RETURNING public_id",
                    )
                    .bind(new.user.0)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db_err)?;
                    let sql = format!(
                        "INSERT INTO challenges (public_id, tenant_id, user_id, signin_id_hash, kind, nonce, number, state, app_name, ip, \
                         location, user_agent, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?) \
                         RETURNING {CHALLENGE_COLUMNS}"
                    );
                    let row = sqlx::query(&sql)
                        .bind(random_hex(16))
                        .bind(new.tenant.0)
                        .bind(new.user.0)
                        .bind(&new.signin_id_hash)
                        .bind(&new.kind)
                        .bind(random_hex(16))
                        .bind(&new.number)
                        .bind(&new.app_name)
                        .bind(&new.ip)
                        .bind(&new.location)
                        .bind(&new.user_agent)
                        .bind(now)
                        .bind(new.expires_at)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(db_err)?;
                    let record = challenge_from_row(&row)?;
                    if let Some(a) = audit {
                        insert_audit(&mut *tx, a).await?;
                    }
                    tx.commit().await.map_err(db_err)?;
                    Ok((record, superseded))
                })
            })
            .await
    }

    async fn count_challenges_since(&self, user: UserId, since: UnixTime) -> Result<u32> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM challenges WHERE user_id = ? AND created_at >= ?",
        )
        .bind(user.0)
        .bind(since)
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    async fn find_challenge(&self, public_id: &str) -> Result<Option<ChallengeRecord>> {
        let sql = format!("SELECT {CHALLENGE_COLUMNS} FROM challenges WHERE public_id = ?");
        let row = sqlx::query(&sql)
            .bind(public_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(challenge_from_row).transpose()
    }

    async fn find_latest_challenge_for_signin(
        &self,
        signin_id_hash: &[u8],
    ) -> Result<Option<ChallengeRecord>> {
        let sql = format!("SELECT {CHALLENGE_COLUMNS} FROM challenges WHERE signin_id_hash = ? ORDER BY id DESC LIMIT 1");
        let row = sqlx::query(&sql)
            .bind(signin_id_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(challenge_from_row).transpose()
    }

    async fn list_pending_challenges(
        &self,
        user: UserId,
        now: UnixTime,
    ) -> Result<Vec<ChallengeRecord>> {
        let sql = format!(
            "SELECT {CHALLENGE_COLUMNS} FROM challenges WHERE user_id = ? AND state = 'pending' AND expires_at > ? ORDER BY id"
        );
        let rows = sqlx::query(&sql)
            .bind(user.0)
            .bind(now)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(challenge_from_row).collect()
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
                Box::pin(async move {
                    let (public_id, audit) = (public_id.as_str(), &audit);
                    let mut tx = c.begin().await.map_err(db_err)?;
                    let user: Option<i64> = sqlx::query_scalar(
                        "UPDATE challenges SET state = ?1, answered_at = ?2, answered_by_device = ?3 \
                         WHERE public_id = ?4 AND state = 'pending' AND expires_at > ?2 RETURNING user_id",
                    )
                    .bind(to.as_str())
                    .bind(now)
                    .bind(device_row)
                    .bind(public_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_err)?;
                    let Some(user) = user else {
                        return Ok(false);
                    };
                    if to == ChallengeState::Approved {
                        sqlx::query(
                            "UPDATE attempt_counters SET failures = 0 WHERE user_id = ? AND kind = 'push' AND failures <> 0",
                        )
                        .bind(user)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err)?;
                    }
                    insert_audit(&mut *tx, audit).await?;
                    tx.commit().await.map_err(db_err)?;
                    Ok(true)
                })
            })
            .await
    }

    async fn consume_challenge(&self, public_id: &str) -> Result<bool> {
        let public_id = public_id.to_owned();
        Ok(self.execute(
            "UPDATE challenges SET state = 'consumed' WHERE public_id = ? AND state = 'approved'",
            args![public_id],
        )
        .await? == 1)
    }

    async fn cancel_pending_challenges(&self, user: UserId) -> Result<Vec<String>> {
        self.group
            .write(move |c| {
                Box::pin(async move {
                    sqlx::query_scalar("UPDATE challenges SET state = 'cancelled' WHERE user_id = ? AND state = 'pending' RETURNING public_id")
                        .bind(user.0)
                        .fetch_all(&mut *c)
                        .await
                        .map_err(db_err)
                })
            })
            .await
    }

    async fn update_user_push_blocked(&self, user: UserId, at: Option<UnixTime>) -> Result<()> {
        self.execute(
            "UPDATE users SET push_blocked_at = ? WHERE id = ?",
            args![at, user.0],
        )
        .await?;
        Ok(())
    }

    async fn update_user_last_signin(&self, user: UserId, at: UnixTime) -> Result<()> {
        self.execute(
            "UPDATE users SET last_signin_at = ? WHERE id = ?",
            args![at, user.0],
        )
        .await?;
        Ok(())
    }

    async fn set_pin_key(&self, row_id: i64, key: &[u8], replacing: Option<&[u8]>) -> Result<bool> {
        let key = key.to_vec();
        let replacing = replacing.map(<[u8]>::to_vec);
        self.group
            .write(move |c| {
                Box::pin(async move {
                    let (key, replacing) = (key.as_slice(), replacing.as_deref());
                    let n = sqlx::query(
                        "UPDATE devices SET pin_key = ?1, pin_key_failures = 0 \
                         WHERE id = ?2 AND pin_key_disabled_at IS NULL AND pin_key IS ?3",
                    )
                    .bind(key)
                    .bind(row_id)
                    .bind(replacing)
                    .execute(&mut *c)
                    .await
                    .map_err(db_err)?
                    .rows_affected();
                    Ok(n == 1)
                })
            })
            .await
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
                Box::pin(async move {
                    let key = key.as_slice();
                    let row: Option<(i64, Option<i64>)> = sqlx::query_as(
                        "UPDATE devices SET \
                         pin_key_failures = CASE WHEN ?1 THEN 0 ELSE pin_key_failures + 1 END, \
                         pin_key_disabled_at = CASE WHEN NOT ?1 AND pin_key_failures + 1 >= ?2 THEN ?3 END \
                         WHERE id = ?4 AND pin_key = ?5 AND pin_key_disabled_at IS NULL AND pin_key_failures < ?2 \
                         RETURNING pin_key_failures, pin_key_disabled_at",
                    )
                    .bind(valid)
                    .bind(max)
                    .bind(now)
                    .bind(row_id)
                    .bind(key)
                    .fetch_optional(&mut *c)
                    .await
                    .map_err(db_err)?;
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
                    let current: Option<(Option<Vec<u8>>, Option<i64>)> =
                        sqlx::query_as("SELECT pin_key, pin_key_disabled_at FROM devices WHERE id = ?")
                            .bind(row_id)
                            .fetch_optional(&mut *c)
                            .await
                            .map_err(db_err)?;
                    Ok(match current {
                        Some((Some(k), d)) if k == key && d.is_some() => PinOutcome::Disabled,
                        // Same key, not disabled, but at the limit: a race lost to the check that disabled it.
                        Some((Some(k), _)) if k == key => PinOutcome::Disabled,
                        _ => PinOutcome::NoKey,
                    })
                })
            })
            .await
    }

    async fn disable_pin_key(&self, row_id: i64, now: UnixTime) -> Result<bool> {
        Ok(self.execute(
            "UPDATE devices SET pin_key_disabled_at = ? WHERE id = ? AND pin_key_disabled_at IS NULL",
            args![now, row_id],
        )
        .await? == 1)
    }

    async fn clear_pin_key(&self, user: UserId, public_id: &str) -> Result<bool> {
        let public_id = public_id.to_owned();
        self.group
            .write(move |c| {
                Box::pin(async move {
                    let public_id = public_id.as_str();
                    let n = sqlx::query(
                        "UPDATE devices SET pin_key = NULL, pin_key_failures = 0, pin_key_disabled_at = NULL, \
                         phone_sign_in_at = NULL WHERE user_id = ? AND public_id = ?",
                    )
                    .bind(user.0)
                    .bind(public_id)
                    .execute(&mut *c)
                    .await
                    .map_err(db_err)?
                    .rows_affected();
                    Ok(n == 1)
                })
            })
            .await
    }

    async fn set_phone_sign_in(&self, row_id: i64, at: Option<UnixTime>) -> Result<()> {
        self.execute(
            "UPDATE devices SET phone_sign_in_at = ? WHERE id = ?",
            args![at, row_id],
        )
        .await?;
        Ok(())
    }

    async fn update_signin_preference(&self, user: UserId, choice: Option<&str>) -> Result<()> {
        let choice = choice.map(str::to_owned);
        self.execute(
            "UPDATE users SET signin_preference = ? WHERE id = ?",
            args![choice, user.0],
        )
        .await?;
        Ok(())
    }

    async fn find_policy(&self, tenant: TenantId) -> Result<Option<(MethodsPolicy, i64)>> {
        let row: Option<(String, i64)> =
            sqlx::query_as("SELECT policy, version FROM tenant_policies WHERE tenant_id = ?")
                .bind(tenant.0)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
        row.map(|(text, version)| {
            serde_json::from_str(&text)
                .map(|p| (p, version))
                .map_err(|e| StoreError::Database(format!("stored policy is not valid: {e}")))
        })
        .transpose()
    }

    async fn save_policy(
        &self,
        tenant: TenantId,
        policy: &MethodsPolicy,
        expected_version: i64,
        now: UnixTime,
        audit: &AuditEvent,
    ) -> Result<bool> {
        let policy = policy.clone();
        let audit = audit.clone();
        self.group
            .write(move |c| {
                Box::pin(async move {
                    let (policy, audit) = (&policy, &audit);
                    let text = serde_json::to_string(policy)
                        .map_err(|e| StoreError::Database(format!("policy does not serialise: {e}")))?;
                    let mut tx = c.begin()
                        .await
                        .map_err(db_err)?;
                    // Insert at version 1 when none exists yet, otherwise bump the expected version: either
                    // way exactly one of two racing saves from the same version wins.
                    let n = sqlx::query(
                        "INSERT INTO tenant_policies (tenant_id, policy, version, updated_at) VALUES (?1, ?2, 1, ?3) \
                         ON CONFLICT (tenant_id) DO UPDATE SET policy = excluded.policy, \
                         version = tenant_policies.version + 1, updated_at = excluded.updated_at \
                         WHERE tenant_policies.version = ?4",
                    )
                    .bind(tenant.0)
                    .bind(&text)
                    .bind(now)
                    .bind(expected_version)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?
                    .rows_affected();
                    if n != 1 {
                        return Ok(false);
                    }
                    insert_audit(&mut *tx, audit).await?;
                    tx.commit().await.map_err(db_err)?;
                    Ok(true)
                })
            })
            .await
    }

    async fn append_audit(&self, e: &AuditEvent) -> Result<()> {
        let e = e.clone();
        self.group
            .write(move |c| {
                Box::pin(async move {
                    let e = &e;
                    insert_audit(&mut *c, e).await
                })
            })
            .await
    }

    async fn list_audit(&self, f: &AuditFilter) -> Result<Vec<AuditEvent>> {
        let rows = sqlx::query(
            "SELECT id, at, tenant_id, user_id, username, ip, user_agent, event, method, result, reason FROM audit_log \
             WHERE (?1 IS NULL OR tenant_id = ?1) AND (?2 IS NULL OR user_id = ?2) AND (?3 IS NULL OR result = ?3) \
             AND (?5 IS NULL OR method = ?5) AND (?6 IS NULL OR at >= ?6) AND (?7 IS NULL OR at < ?7) \
             ORDER BY id DESC LIMIT ?4",
        )
        .bind(f.tenant.map(|t| t.0))
        .bind(f.user.map(|u| u.0))
        .bind(f.result.map(|r| r.as_str()))
        .bind(if f.limit > 0 { f.limit } else { 100 })
        .bind(f.method.as_deref())
        .bind(f.since)
        .bind(f.until)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(audit_from_row).collect()
    }
}

async fn insert_audit<'e, E: sqlx::Executor<'e, Database = sqlx::Sqlite>>(
    exec: E,
    e: &AuditEvent,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (at, tenant_id, user_id, username, ip, user_agent, event, method, result, reason) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(e.at)
    .bind(e.tenant.0)
    .bind(e.user.map(|u| u.0))
    .bind(&e.username)
    .bind(&e.ip)
    .bind(&e.user_agent)
    .bind(&e.event)
    .bind(&e.method)
    .bind(e.result.as_str())
    .bind(&e.reason)
    .execute(exec)
    .await
    .map_err(db_err)?;
    Ok(())
}

async fn insert_session<'e, E: sqlx::Executor<'e, Database = sqlx::Sqlite>>(
    exec: E,
    id_hash: &[u8],
    tenant: TenantId,
    signin: &CompletedSignIn,
    now: UnixTime,
    limits: SessionLimits,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO sessions (id_hash, tenant_id, user_id, amr, auth_time, created_at, last_seen_at, idle_expires_at, expires_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(id_hash)
    .bind(tenant.0)
    .bind(signin.user().0)
    .bind(amr_to_json(signin.amr()))
    .bind(now)
    .bind(now)
    .bind(now)
    .bind(now + limits.idle_secs)
    .bind(now + limits.absolute_secs)
    .execute(exec)
    .await
    .map_err(db_err)?;
    Ok(())
}
