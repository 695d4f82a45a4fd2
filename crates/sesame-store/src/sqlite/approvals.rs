//! Out-of-band approvals: requests to the phone and their one-winner transitions.

use super::audit::insert_audit;
use super::{all, challenge_id, changed, first, one, random_hex, SqliteStore};
use crate::rows::{self, CHALLENGE_COLUMNS};
use crate::{
    Answered, ApprovalStore, AuditEvent, ChallengeRecord, DeviceRow, NewChallenge, Result,
    StoreError,
};
use async_trait::async_trait;
use rusqlite::params;
use sesame_core::push::{ChallengeKind, ChallengeState, Replaces};
use sesame_core::{ChallengeId, UnixTime, UserId};

/// Cancels a user's pending requests, returning their ids.
pub(super) const CANCEL_PENDING: &str =
    "UPDATE challenges SET state = 'cancelled' WHERE user_id = ? AND state = 'pending' RETURNING public_id";

#[async_trait]
impl ApprovalStore for SqliteStore {
    async fn create_challenge(
        &self,
        new: NewChallenge,
        now: UnixTime,
        audit: Option<&AuditEvent>,
    ) -> Result<(ChallengeRecord, Vec<ChallengeId>)> {
        let audit = audit.cloned();
        self.group
            .write(move |c| {
                // The budget, in the same write as the insert (the writer runs one write at a
                // time, so no racing request is counted in between).
                if let Some(b) = new.budget {
                    let (blocked, sent): (bool, i64) = one(
                        c,
                        "SELECT (SELECT push_blocked_at IS NOT NULL FROM users WHERE id = ?1), \
                         (SELECT COUNT(*) FROM challenges WHERE user_id = ?1 AND created_at >= ?2 AND kind = ?3 \
                          AND browser IS ?4)",
                        params![new.user.0, b.since, new.kind.as_str(), new.browser],
                        |r| Ok((r.get::<_, Option<bool>>(0)?.unwrap_or(false), r.get(1)?)),
                    )?
                    .unwrap_or((false, 0));
                    if blocked {
                        return Err(StoreError::Refused(crate::Refusal::Blocked));
                    }
                    if sent >= i64::from(b.limit) {
                        return Err(StoreError::Refused(crate::Refusal::Budget));
                    }
                }
                let superseded = match sesame_core::push::replaces(new.kind) {
                    Replaces::AllOfTheUser => all(
                        c,
                        "UPDATE challenges SET state = 'superseded' \
                         WHERE user_id = ? AND state = 'pending' RETURNING public_id",
                        [new.user.0],
                        challenge_id,
                    )?,
                    Replaces::ItsOwnSignIn => all(
                        c,
                        "UPDATE challenges SET state = 'superseded' \
                         WHERE user_id = ? AND signin_id_hash = ? AND state = 'pending' RETURNING public_id",
                        params![new.user.0, new.signin_id_hash],
                        challenge_id,
                    )?,
                };
                let sql = format!(
                    "INSERT INTO challenges (public_id, tenant_id, user_id, signin_id_hash, kind, channel, nonce, number, state, \
                     app_name, ip, location, user_agent, created_at, expires_at, browser) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?) RETURNING {CHALLENGE_COLUMNS}"
                );
                let record = one(
                    c,
                    &sql,
                    params![
                        random_hex(16),
                        new.tenant.0,
                        new.user.0,
                        new.signin_id_hash,
                        new.kind.as_str(),
                        new.channel.as_str(),
                        random_hex(16),
                        new.number,
                        new.app_name,
                        new.ip,
                        new.location,
                        new.user_agent,
                        now,
                        new.expires_at,
                        new.browser
                    ],
                    |r| rows::challenge(r),
                )?
                .ok_or_else(|| StoreError::Database("INSERT returned no row".into()))?;
                if let Some(a) = &audit {
                    insert_audit(c, a)?;
                }
                Ok((record, superseded))
            })
            .await
    }

    async fn count_challenges_since(
        &self,
        user: UserId,
        kind: ChallengeKind,
        browser: Option<&[u8]>,
        since: UnixTime,
    ) -> Result<u32> {
        let n: Option<i64> = self.read(|c| {
            one(
                c,
                "SELECT COUNT(*) FROM challenges WHERE user_id = ? AND created_at >= ? AND kind = ? \
                 AND browser IS ?",
                params![user.0, since, kind.as_str(), browser],
                first,
            )
        })?;
        Ok(u32::try_from(n.unwrap_or(0)).unwrap_or(u32::MAX))
    }

    async fn find_challenge(&self, id: &ChallengeId) -> Result<Option<ChallengeRecord>> {
        let sql = format!("SELECT {CHALLENGE_COLUMNS} FROM challenges WHERE public_id = ?");
        self.read(|c| one(c, &sql, [id.as_str()], |r| rows::challenge(r)))
    }

    async fn find_latest_challenge_for_signin(
        &self,
        signin_id_hash: &[u8],
    ) -> Result<Option<ChallengeRecord>> {
        let sql = format!(
            "SELECT {CHALLENGE_COLUMNS} FROM challenges WHERE signin_id_hash = ? ORDER BY id DESC LIMIT 1"
        );
        self.read(|c| one(c, &sql, [signin_id_hash], |r| rows::challenge(r)))
    }

    async fn list_pending_challenges(
        &self,
        user: UserId,
        now: UnixTime,
    ) -> Result<Vec<ChallengeRecord>> {
        let sql = format!(
            "SELECT {CHALLENGE_COLUMNS} FROM challenges WHERE user_id = ? AND state = 'pending' AND expires_at > ? ORDER BY id"
        );
        self.read(|c| all(c, &sql, params![user.0, now], |r| rows::challenge(r)))
    }

    async fn answer_challenge(
        &self,
        id: &ChallengeId,
        to: ChallengeState,
        device: Option<DeviceRow>,
        now: UnixTime,
        audit: &AuditEvent,
    ) -> Result<Answered> {
        let public_id = id.0.clone();
        let audit = audit.clone();
        self.group
            .write(move |c| {
                let user: Option<i64> = one(
                    c,
                    "UPDATE challenges SET state = ?1, answered_at = ?2, answered_by_device = ?3 \
                     WHERE public_id = ?4 AND state = 'pending' AND expires_at > ?2 RETURNING user_id",
                    params![to.as_str(), now, device.map(|d| d.0), public_id],
                    first,
                )?;
                let Some(user) = user else {
                    return Ok(Answered::default());
                };
                let mut cancelled = Vec::new();
                match to {
                    ChallengeState::Approved => {
                        changed(
                            c,
                            "UPDATE attempt_counters SET failures = 0 WHERE user_id = ? AND kind = 'push' AND failures <> 0",
                            [user],
                        )?;
                    }
                    ChallengeState::Reported => {
                        changed(
                            c,
                            "UPDATE users SET push_blocked_at = ? WHERE id = ?",
                            params![now, user],
                        )?;
                        cancelled = all(c, CANCEL_PENDING, [user], challenge_id)?;
                    }
                    _ => {}
                }
                insert_audit(c, &audit)?;
                Ok(Answered {
                    answered: true,
                    cancelled,
                })
            })
            .await
    }

    async fn consume_challenge(&self, id: &ChallengeId) -> Result<bool> {
        Ok(self
            .execute(
                "UPDATE challenges SET state = 'consumed' WHERE public_id = ? AND state = 'approved'",
                (id.0.clone(),),
            )
            .await?
            == 1)
    }

    async fn cancel_signin_challenges(&self, signin_id_hash: &[u8]) -> Result<Vec<ChallengeId>> {
        let hash = signin_id_hash.to_vec();
        self.group
            .write(move |c| {
                all(
                    c,
                    "UPDATE challenges SET state = 'cancelled' \
                     WHERE signin_id_hash = ? AND state = 'pending' RETURNING public_id",
                    [hash],
                    challenge_id,
                )
            })
            .await
    }

    async fn cancel_pending_challenges(&self, user: UserId) -> Result<Vec<ChallengeId>> {
        self.group
            .write(move |c| all(c, CANCEL_PENDING, [user.0], challenge_id))
            .await
    }
}
