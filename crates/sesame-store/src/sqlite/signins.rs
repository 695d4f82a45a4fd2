//! Sign-in transactions, sessions and first-administrator set-up links.

use super::audit::insert_audit;
use super::{bad_json, changed, first, one, SqliteStore};
use crate::{
    AuditEvent, Result, SessionLimits, SessionRecord, SessionStore, SetupStore, SignInRecord,
    SignInStore,
};
use async_trait::async_trait;
use rusqlite::{params, Connection};
use sesame_core::method::Amr;
use sesame_core::signin::{CompletedSignIn, SignInState};
use sesame_core::{ChallengeId, TenantId, UnixTime, UserId};

fn amr_to_json(amr: &[Amr]) -> String {
    serde_json::to_string(amr).expect("amr list serialises")
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

#[async_trait]
impl SignInStore for SqliteStore {
    async fn create_signin(&self, rec: &SignInRecord) -> Result<()> {
        let rec = rec.clone();
        let state = serde_json::to_string(&rec.state).expect("state serialises");
        let user = rec.state.user();
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
                    "INSERT INTO signin_transactions (id_hash, tenant_id, username, state, version, next_path, created_at, expires_at, user_id) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    params![
                        rec.id_hash,
                        rec.tenant.0,
                        rec.username,
                        state,
                        rec.version,
                        rec.next_path,
                        rec.created_at,
                        rec.expires_at,
                        user.map(|u| u.0)
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
        let user = state.user().map(|u| u.0);
        let state = serde_json::to_string(state).expect("state serialises");
        Ok(self
            .execute(
                "UPDATE signin_transactions SET state = ?, user_id = ?, version = version + 1 \
                 WHERE id_hash = ? AND version = ?",
                (state, user, id_hash.to_vec(), expected_version),
            )
            .await?
            == 1)
    }

    async fn end_user_signins(&self, user: UserId) -> Result<u64> {
        self.execute(
            "DELETE FROM signin_transactions WHERE user_id = ?",
            (user.0,),
        )
        .await
    }

    async fn delete_signin(&self, id_hash: &[u8]) -> Result<()> {
        self.execute(
            "DELETE FROM signin_transactions WHERE id_hash = ?",
            (id_hash.to_vec(),),
        )
        .await?;
        Ok(())
    }
}

#[async_trait]
impl SessionStore for SqliteStore {
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
        approval: Option<&ChallengeId>,
    ) -> Result<bool> {
        let signin_id_hash = signin_id_hash.to_vec();
        let session_id_hash = session_id_hash.to_vec();
        let signin = signin.clone();
        let audit = audit.clone();
        let approval = approval.cloned();
        // All or nothing: the write's savepoint undoes every statement if one fails.
        self.group
            .write(move |c| {
                if let Some(id) = &approval {
                    let approved_by: Option<Option<i64>> = one(
                        c,
                        "UPDATE challenges SET state = 'consumed' WHERE public_id = ? AND state = 'approved' \
                         RETURNING answered_by_device",
                        [id.as_str()],
                        first,
                    )?;
                    let Some(approved_by) = approved_by else {
                        return Ok(false);
                    };
                    // The approving device's notification method was used for this sign-in
                    // (phone sign-in too: the device has no method of its own for it). Recorded
                    // here, so "Last used" changes exactly when a sign-in completes.
                    changed(
                        c,
                        "UPDATE methods SET last_used_at = ? WHERE device_id = ? AND kind = 'push'",
                        params![now, approved_by],
                    )?;
                }
                // A sign-in ended meanwhile (a new password, another tab that finished it)
                // makes no session.
                if changed(
                    c,
                    "DELETE FROM signin_transactions WHERE id_hash = ?",
                    [&signin_id_hash],
                )? == 0
                {
                    return Ok(false);
                }
                insert_session(c, &session_id_hash, audit.tenant, &signin, now, limits)?;
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

    async fn revoke_other_sessions(&self, user: UserId, keep: &[u8], now: UnixTime) -> Result<u64> {
        self.execute(
            "UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL AND id_hash <> ?",
            (now, user.0, keep.to_vec()),
        )
        .await
    }
}

#[async_trait]
impl SetupStore for SqliteStore {
    async fn create_setup_token(&self, token_hash: &[u8], expires_at: UnixTime) -> Result<()> {
        let token_hash = token_hash.to_vec();
        self.group
            .write(move |c| {
                changed(c, "DELETE FROM setup_tokens WHERE used_at IS NULL", [])?;
                changed(
                    c,
                    "INSERT INTO setup_tokens (token_hash, expires_at) VALUES (?, ?)",
                    params![token_hash, expires_at],
                )?;
                Ok(())
            })
            .await
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
}
