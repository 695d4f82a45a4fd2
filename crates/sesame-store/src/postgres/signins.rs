//! Sign-in transactions, sessions and first-administrator set-up links.

use super::approvals::{lock_user, LOCK_USER};
use super::{
    bad_json, exec, first, insert_audit, one, prepared, retrying, Params, PgStore, INSERT_AUDIT,
};
use crate::{
    AuditEvent, Result, SessionLimits, SessionRecord, SessionStore, SetupStore, SignInRecord,
    SignInStore,
};
use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use sesame_core::method::Amr;
use sesame_core::signin::{CompletedSignIn, SignInState};
use sesame_core::{ChallengeId, TenantId, UnixTime, UserId};

fn amr_to_json(amr: &[Amr]) -> String {
    serde_json::to_string(amr).expect("amr list serialises")
}

const INSERT_SESSION: &str =
    "INSERT INTO sessions (id_hash, tenant_id, user_id, amr, auth_time, created_at, last_seen_at, idle_expires_at, expires_at) \
     VALUES ($1, $2, $3, $4, $5, $5, $5, $6, $7)";

async fn insert_session<C: GenericClient>(
    c: &C,
    id_hash: &[u8],
    tenant: TenantId,
    signin: &CompletedSignIn,
    now: UnixTime,
    limits: SessionLimits,
) -> Result<()> {
    exec(
        c,
        INSERT_SESSION,
        &[
            &id_hash,
            &tenant.0,
            &signin.user().0,
            &amr_to_json(signin.amr()),
            &now,
            &(now + limits.idle_secs),
            &(now + limits.absolute_secs),
        ],
    )
    .await?;
    Ok(())
}

#[async_trait]
impl SignInStore for PgStore {
    async fn create_signin(&self, rec: &SignInRecord) -> Result<()> {
        let state = serde_json::to_string(&rec.state).expect("state serialises");
        let user = rec.state.user().map(|u| u.0);
        // Opportunistic clean-up keeps the table small without a background job; about one
        // sign-in in 64 pays for it (the id hash is uniformly random). It need not commit with
        // the insert, so neither needs a transaction (two round trips fewer).
        if rec.id_hash.first().is_some_and(|b| b % 64 == 0) {
            self.exec(
                "DELETE FROM signin_transactions WHERE expires_at < $1",
                &[&(rec.created_at - 3600)],
            )
            .await?;
        }
        self.exec(
            "INSERT INTO signin_transactions (id_hash, tenant_id, username, state, version, next_path, created_at, expires_at, user_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                &rec.id_hash,
                &rec.tenant.0,
                &rec.username,
                &state,
                &rec.version,
                &rec.next_path,
                &rec.created_at,
                &rec.expires_at,
                &user,
            ],
        )
        .await?;
        Ok(())
    }

    async fn find_signin(&self, id_hash: &[u8], now: UnixTime) -> Result<Option<SignInRecord>> {
        self.one(
            "SELECT tenant_id, username, state, version, next_path, created_at, expires_at \
             FROM signin_transactions WHERE id_hash = $1 AND expires_at > $2",
            &[&id_hash, &now],
            |r| {
                let state: String = r.try_get("state")?;
                Ok(SignInRecord {
                    id_hash: id_hash.to_vec(),
                    tenant: TenantId(r.try_get("tenant_id")?),
                    username: r.try_get("username")?,
                    state: serde_json::from_str(&state).map_err(bad_json)?,
                    version: r.try_get("version")?,
                    next_path: r.try_get("next_path")?,
                    created_at: r.try_get("created_at")?,
                    expires_at: r.try_get("expires_at")?,
                })
            },
        )
        .await
    }

    async fn update_signin_state(
        &self,
        id_hash: &[u8],
        expected_version: i64,
        state: &SignInState,
    ) -> Result<bool> {
        let user = state.user().map(|u| u.0);
        let state = serde_json::to_string(state).expect("state serialises");
        Ok(self
            .exec(
                "UPDATE signin_transactions SET state = $1, user_id = $2, version = version + 1 \
                 WHERE id_hash = $3 AND version = $4",
                &[&state, &user, &id_hash, &expected_version],
            )
            .await?
            == 1)
    }

    async fn end_user_signins(&self, user: UserId) -> Result<u64> {
        self.exec(
            "DELETE FROM signin_transactions WHERE user_id = $1",
            &[&user.0],
        )
        .await
    }

    async fn delete_signin(&self, id_hash: &[u8]) -> Result<()> {
        self.exec(
            "DELETE FROM signin_transactions WHERE id_hash = $1",
            &[&id_hash],
        )
        .await?;
        Ok(())
    }
}

#[async_trait]
impl SessionStore for PgStore {
    async fn create_session(
        &self,
        id_hash: &[u8],
        tenant: TenantId,
        signin: &CompletedSignIn,
        now: UnixTime,
        limits: SessionLimits,
    ) -> Result<()> {
        retrying(|| async {
            insert_session(&self.conn().await?, id_hash, tenant, signin, now, limits).await
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
        approval: Option<&ChallengeId>,
    ) -> Result<bool> {
        // All or nothing: one transaction, its statements sent together (one round trip) and
        // run in this order. The user's row is locked first, in the order every other write of
        // a user's requests, devices and methods takes (no deadlock between them).
        const CONSUME: &str =
            "UPDATE challenges SET state = 'consumed' WHERE public_id = $1 AND state = 'approved' \
             RETURNING answered_by_device";
        const METHOD_USED: &str = "UPDATE methods SET last_used_at = $1 WHERE kind = 'push' AND device_id = \
             (SELECT answered_by_device FROM challenges WHERE public_id = $2 AND state = 'consumed')";
        const END_SIGNIN: &str = "DELETE FROM signin_transactions WHERE id_hash = $1";
        const LAST_SIGNIN: &str = "UPDATE users SET last_signin_at = $1 WHERE id = $2";
        let user = signin.user();
        write!(self, |tx, undo| {
            prepared(
                &tx,
                &[
                    LOCK_USER,
                    CONSUME,
                    METHOD_USED,
                    END_SIGNIN,
                    INSERT_SESSION,
                    LAST_SIGNIN,
                    INSERT_AUDIT,
                ],
            )
            .await?;
            let (delete, last_signin): (Params, Params) = (&[&signin_id_hash], &[&now, &user.0]);
            let (_locked, approved_by, _method_used, deleted, _session, _last_signin, _audited) = tokio::try_join!(
                lock_user(&tx, user),
                async {
                    let Some(id) = approval else {
                        return Ok(None);
                    };
                    // One statement, so of racing completions with one approval one wins:
                    // the loser waits for the winner's row lock, then finds it consumed.
                    one(&tx, CONSUME, &[&id.as_str()], first::<Option<i64>>)
                        .await
                        .map(|consumed| Some(consumed.is_some()))
                },
                async {
                    let Some(id) = approval else {
                        return Ok(0);
                    };
                    // The approving device's notification method was used for this sign-in
                    // (phone sign-in too: the device has no method of its own for it).
                    // Recorded here, so "Last used" changes exactly when a sign-in completes.
                    exec(&tx, METHOD_USED, &[&now, &id.as_str()]).await
                },
                // A sign-in ended meanwhile (a new password, another tab that finished it)
                // makes no session: the DELETE waits for a racing one, then finds no row.
                exec(&tx, END_SIGNIN, delete),
                insert_session(&tx, session_id_hash, audit.tenant, signin, now, limits),
                exec(&tx, LAST_SIGNIN, last_signin),
                insert_audit(&tx, audit),
            )?;
            if deleted == 0 || approved_by == Some(false) {
                undo.undo();
                return Ok(false);
            }
            Ok(true)
        })
    }

    async fn find_session(&self, id_hash: &[u8], now: UnixTime) -> Result<Option<SessionRecord>> {
        self.one(
            "SELECT tenant_id, user_id, amr, auth_time, created_at, last_seen_at FROM sessions \
             WHERE id_hash = $1 AND revoked_at IS NULL AND idle_expires_at > $2 AND expires_at > $2",
            &[&id_hash, &now],
            |r| {
                let amr: String = r.try_get("amr")?;
                Ok(SessionRecord {
                    tenant: TenantId(r.try_get("tenant_id")?),
                    user: UserId(r.try_get("user_id")?),
                    amr: serde_json::from_str(&amr).map_err(bad_json)?,
                    auth_time: r.try_get("auth_time")?,
                    created_at: r.try_get("created_at")?,
                    last_seen_at: r.try_get("last_seen_at")?,
                })
            },
        )
        .await
    }

    async fn touch_session(
        &self,
        id_hash: &[u8],
        now: UnixTime,
        limits: SessionLimits,
    ) -> Result<()> {
        // At most one write a minute per session: the idle timeout does not need more precision.
        // ($1 - 60 alone would make PostgreSQL take $1 for an INTEGER.)
        self.exec(
            "UPDATE sessions SET last_seen_at = $1, idle_expires_at = $2 \
             WHERE id_hash = $3 AND revoked_at IS NULL AND last_seen_at < $1::BIGINT - 60",
            &[&now, &(now + limits.idle_secs), &id_hash],
        )
        .await?;
        Ok(())
    }

    async fn revoke_session(&self, id_hash: &[u8], now: UnixTime) -> Result<()> {
        self.exec(
            "UPDATE sessions SET revoked_at = $1 WHERE id_hash = $2 AND revoked_at IS NULL",
            &[&now, &id_hash],
        )
        .await?;
        Ok(())
    }

    async fn revoke_user_sessions(&self, user: UserId, now: UnixTime) -> Result<u64> {
        self.exec(
            "UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
            &[&now, &user.0],
        )
        .await
    }

    async fn revoke_other_sessions(&self, user: UserId, keep: &[u8], now: UnixTime) -> Result<u64> {
        self.exec(
            "UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL AND id_hash <> $3",
            &[&now, &user.0, &keep],
        )
        .await
    }
}

#[async_trait]
impl SetupStore for PgStore {
    async fn create_setup_token(&self, token_hash: &[u8], expires_at: UnixTime) -> Result<()> {
        // One transaction: only the newest printed link works. Nodes starting together take
        // turns (otherwise both deletes could run before either insert, and two links work).
        write!(self, |tx| {
            exec(
                &tx,
                "SELECT pg_advisory_xact_lock(hashtext('sesame:setup-token'))",
                &[],
            )
            .await?;
            exec(&tx, "DELETE FROM setup_tokens WHERE used_at IS NULL", &[]).await?;
            exec(
                &tx,
                "INSERT INTO setup_tokens (token_hash, expires_at) VALUES ($1, $2)",
                &[&token_hash, &expires_at],
            )
            .await?;
            Ok(())
        })
    }

    async fn consume_setup_token(&self, token_hash: &[u8], now: UnixTime) -> Result<bool> {
        Ok(self
            .exec(
                "UPDATE setup_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1",
                &[&now, &token_hash],
            )
            .await?
            == 1)
    }

    async fn is_setup_token_valid(&self, token_hash: &[u8], now: UnixTime) -> Result<bool> {
        let n: Option<i64> = self
            .one(
                "SELECT count(*) FROM setup_tokens WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
                &[&token_hash, &now],
                first,
            )
            .await?;
        Ok(n == Some(1))
    }
}
