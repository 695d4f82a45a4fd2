//! Tenants and users.

use super::{
    all, challenge_id, conflict, exec, first, in_statement, retrying, Params, PgStore,
    CANCEL_PENDING,
};
use crate::rows::{self, USER_COLUMNS};
use crate::{
    name_key, Blocked, EventBus, NewUser, Result, StoreError, TenantStore, User, UserStore,
};
use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use sesame_core::signin::SignInChoice;
use sesame_core::{MethodId, TenantId, UnixTime, UserId};
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;

/// The first row of an insert whose unique violation is `Conflict(what)` (`one` would report
/// it as a database error).
pub(crate) async fn insert_one<C: GenericClient, T>(
    c: &C,
    sql: &str,
    p: Params<'_>,
    what: impl FnOnce() -> String,
    f: impl FnOnce(&Row) -> Result<T>,
) -> Result<T> {
    let st = c.prepare_cached(sql).await.map_err(in_statement(sql))?;
    let rows = c.query(&st, p).await.map_err(|e| {
        if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
            conflict(what)(e)
        } else {
            in_statement(sql)(e)
        }
    })?;
    let row = rows
        .first()
        .ok_or_else(|| StoreError::Database("INSERT returned no row".into()))?;
    f(row)
}

#[async_trait]
impl TenantStore for PgStore {
    async fn check_ready(&self) -> Result<()> {
        // Reachable (a pooled connection answers) and the tables readable.
        self.default_tenant().await?;
        Ok(())
    }

    async fn flush(&self) -> Result<()> {
        // Nothing to do: a committed transaction is already durable in PostgreSQL's own
        // write-ahead log, and the server (not this node) owns its files.
        Ok(())
    }

    async fn default_tenant(&self) -> Result<TenantId> {
        let id: Option<i64> = self
            .one("SELECT id FROM tenants WHERE name = 'default'", &[], first)
            .await?;
        id.map(TenantId)
            .ok_or_else(|| StoreError::NotFound("default tenant".into()))
    }

    fn events(&self) -> Option<&dyn EventBus> {
        Some(self.bus())
    }

    async fn create_tenant(&self, name: &str, now: UnixTime) -> Result<TenantId> {
        let name = name.trim();
        let id: i64 = retrying(|| async {
            insert_one(
                &self.conn().await?,
                "INSERT INTO tenants (name, created_at) VALUES ($1, $2) RETURNING id",
                &[&name, &now],
                || format!("tenant {name:?}"),
                first,
            )
            .await
        })
        .await?;
        Ok(TenantId(id))
    }
}

#[async_trait]
impl UserStore for PgStore {
    async fn create_user(&self, new: NewUser, now: UnixTime) -> Result<User> {
        let sql = format!(
            "INSERT INTO users (tenant_id, username, username_key, display_name, password_hash, is_admin, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {USER_COLUMNS}"
        );
        let username = new.username.trim();
        let key = name_key(&new.username);
        retrying(|| async {
            insert_one(
                &self.conn().await?,
                &sql,
                &[
                    &new.tenant.0,
                    &username,
                    &key,
                    &new.display_name,
                    &new.password_hash,
                    &new.is_admin,
                    &now,
                ],
                || format!("user {username:?}"),
                rows::user,
            )
            .await
        })
        .await
    }

    async fn find_user(&self, id: UserId) -> Result<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        self.one(&sql, &[&id.0], rows::user).await
    }

    async fn find_user_by_username(
        &self,
        tenant: TenantId,
        username: &str,
    ) -> Result<Option<User>> {
        let sql =
            format!("SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 AND username_key = $2");
        self.one(&sql, &[&tenant.0, &name_key(username)], rows::user)
            .await
    }

    async fn list_users(&self, tenant: TenantId) -> Result<Vec<User>> {
        let sql =
            format!("SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 ORDER BY username_key");
        self.all(&sql, &[&tenant.0], rows::user).await
    }

    async fn count_admins(&self, tenant: TenantId) -> Result<i64> {
        let n: Option<i64> = self
            .one(
                "SELECT count(*) FROM users WHERE tenant_id = $1 AND is_admin",
                &[&tenant.0],
                first,
            )
            .await?;
        Ok(n.unwrap_or(0))
    }

    async fn update_user_password(&self, id: UserId, hash: Option<&str>) -> Result<()> {
        let n = self
            .exec(
                "UPDATE users SET password_hash = $1 WHERE id = $2",
                &[&hash, &id.0],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("user {id}")));
        }
        Ok(())
    }

    async fn block_user(&self, id: UserId, now: UnixTime) -> Result<Option<Blocked>> {
        write!(self, |tx| {
            if exec(
                &tx,
                "UPDATE users SET is_blocked = TRUE WHERE id = $1",
                &[&id.0],
            )
            .await?
                == 0
            {
                return Ok(None);
            }
            let sessions_ended = exec(
                &tx,
                "UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
                &[&now, &id.0],
            )
            .await?;
            let cancelled = all(&tx, CANCEL_PENDING, &[&id.0], challenge_id).await?;
            Ok(Some(Blocked {
                sessions_ended,
                cancelled,
            }))
        })
    }

    async fn unblock_user(&self, id: UserId) -> Result<bool> {
        Ok(self
            .exec(
                "UPDATE users SET is_blocked = FALSE, push_blocked_at = NULL WHERE id = $1",
                &[&id.0],
            )
            .await?
            == 1)
    }

    async fn update_user_push_blocked(&self, id: UserId, at: Option<UnixTime>) -> Result<()> {
        self.exec(
            "UPDATE users SET push_blocked_at = $1 WHERE id = $2",
            &[&at, &id.0],
        )
        .await?;
        Ok(())
    }

    async fn update_default_method(&self, id: UserId, method: Option<MethodId>) -> Result<()> {
        // The method must belong to the user; the subquery makes that part of the same statement.
        // A removal racing it may have begun after the subquery saw the method: the foreign key
        // then refuses the default (checked on the newest rows), and the method is not found.
        const SQL: &str = "UPDATE users SET default_method_id = $1 WHERE id = $2 \
             AND ($1::BIGINT IS NULL OR EXISTS (SELECT 1 FROM methods WHERE id = $1 AND user_id = $2))";
        let p: Params<'_> = &[&method.map(|m| m.0), &id.0];
        let n = retrying(|| async {
            let c = self.conn().await?;
            let st = c.prepare_cached(SQL).await.map_err(in_statement(SQL))?;
            c.execute(&st, p).await.map_err(|e| {
                if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) {
                    StoreError::NotFound("method".into())
                } else {
                    in_statement(SQL)(e)
                }
            })
        })
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
        self.exec(
            "UPDATE users SET signin_preference = $1 WHERE id = $2",
            &[&choice.map(SignInChoice::as_str), &user.0],
        )
        .await?;
        Ok(())
    }

    async fn delete_user(&self, id: UserId) -> Result<bool> {
        Ok(self
            .exec("DELETE FROM users WHERE id = $1", &[&id.0])
            .await?
            == 1)
    }
}
