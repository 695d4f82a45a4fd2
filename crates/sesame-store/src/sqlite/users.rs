//! Tenants and users.

use super::{all, challenge_id, changed, conflict, first, one, SqliteStore};
use crate::rows::{self, USER_COLUMNS};
use crate::{name_key, Blocked, NewUser, Result, StoreError, TenantStore, User, UserStore};
use async_trait::async_trait;
use rusqlite::params;
use sesame_core::signin::SignInChoice;
use sesame_core::{MethodId, TenantId, UnixTime, UserId};

#[async_trait]
impl TenantStore for SqliteStore {
    async fn check_ready(&self) -> Result<()> {
        self.default_tenant().await?;
        self.sound().await
    }

    async fn flush(&self) -> Result<()> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            // A connection of its own (the readers are read-only, the writer works in
            // transactions); TRUNCATE waits for any write still in flight, copies the whole
            // log into the file, and empties the log.
            let c = super::open_writer(&path)?;
            let (busy, log, copied): (i64, i64, i64) =
                c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?;
            if busy != 0 || log != copied {
                return Err(StoreError::Database(format!(
                    "the write-ahead log could not be checkpointed fully ({copied} of {log} pages)"
                )));
            }
            Ok(())
        })
        .await
        .map_err(|e| StoreError::Database(format!("checkpoint task failed: {e}")))?
    }

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

    async fn create_tenant(&self, name: &str, now: UnixTime) -> Result<TenantId> {
        let name = name.trim().to_owned();
        self.group
            .write(move |c| {
                let id: i64 = c
                    .prepare_cached(
                        "INSERT INTO tenants (name, created_at) VALUES (?, ?) RETURNING id",
                    )?
                    .query_row(params![name, now], |r| r.get(0))
                    .map_err(conflict(|| format!("tenant {name:?}")))?;
                Ok(TenantId(id))
            })
            .await
    }
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn create_user(&self, new: NewUser, now: UnixTime) -> Result<User> {
        self.group
            .write(move |c| {
                let sql = format!(
                    "INSERT INTO users (tenant_id, username, username_key, display_name, password_hash, is_admin, created_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING {USER_COLUMNS}"
                );
                let username = new.username.trim();
                let mut st = c.prepare_cached(&sql)?;
                let mut returned = st
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
                let row = returned
                    .next()
                    .map_err(conflict(|| format!("user {username:?}")))?
                    .ok_or_else(|| StoreError::Database("INSERT returned no row".into()))?;
                rows::user(row)
            })
            .await
    }

    async fn find_user(&self, id: UserId) -> Result<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?");
        self.read(|c| one(c, &sql, [id.0], |r| rows::user(r)))
    }

    async fn find_user_by_username(
        &self,
        tenant: TenantId,
        username: &str,
    ) -> Result<Option<User>> {
        let sql =
            format!("SELECT {USER_COLUMNS} FROM users WHERE tenant_id = ? AND username_key = ?");
        self.read(|c| {
            one(c, &sql, params![tenant.0, name_key(username)], |r| {
                rows::user(r)
            })
        })
    }

    async fn list_users(&self, tenant: TenantId) -> Result<Vec<User>> {
        let sql =
            format!("SELECT {USER_COLUMNS} FROM users WHERE tenant_id = ? ORDER BY username_key");
        self.read_blocking(move |c| all(c, &sql, [tenant.0], |r| rows::user(r)))
            .await
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

    async fn block_user(&self, id: UserId, now: UnixTime) -> Result<Option<Blocked>> {
        self.group
            .write(move |c| {
                if changed(c, "UPDATE users SET is_blocked = 1 WHERE id = ?", [id.0])? == 0 {
                    return Ok(None);
                }
                let sessions_ended = changed(
                    c,
                    "UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
                    params![now, id.0],
                )?;
                let cancelled = all(c, super::approvals::CANCEL_PENDING, [id.0], challenge_id)?;
                Ok(Some(Blocked {
                    sessions_ended,
                    cancelled,
                }))
            })
            .await
    }

    async fn unblock_user(&self, id: UserId) -> Result<bool> {
        Ok(self
            .execute(
                "UPDATE users SET is_blocked = 0, push_blocked_at = NULL WHERE id = ?",
                (id.0,),
            )
            .await?
            == 1)
    }

    async fn update_user_push_blocked(&self, id: UserId, at: Option<UnixTime>) -> Result<()> {
        self.execute(
            "UPDATE users SET push_blocked_at = ? WHERE id = ?",
            (at, id.0),
        )
        .await?;
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

    async fn update_signin_preference(
        &self,
        user: UserId,
        choice: Option<SignInChoice>,
    ) -> Result<()> {
        self.execute(
            "UPDATE users SET signin_preference = ? WHERE id = ?",
            (choice.map(SignInChoice::as_str), user.0),
        )
        .await?;
        Ok(())
    }

    async fn delete_user(&self, id: UserId) -> Result<bool> {
        Ok(self
            .execute("DELETE FROM users WHERE id = ?", (id.0,))
            .await?
            == 1)
    }
}
