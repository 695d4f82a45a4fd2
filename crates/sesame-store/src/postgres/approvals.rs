//! Out-of-band approvals: requests to the phone and their one-winner transitions.

use super::{
    all, challenge_id, exec, first, insert_audit, one, prepared, random_hex, Params, PgStore,
    CANCEL_PENDING, INSERT_AUDIT,
};
use crate::rows::{self, CHALLENGE_COLUMNS};
use crate::{
    Answered, ApprovalStore, AuditEvent, ChallengeRecord, DeviceRow, NewChallenge, Result,
    StoreError,
};
use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use sesame_core::push::{ChallengeKind, ChallengeState, Replaces};
use sesame_core::{ChallengeId, UnixTime, UserId};

/// Takes the user's row lock until commit. A write that changes several of a user's requests,
/// or a request and the user, takes it first: so such writes queue on one lock instead of
/// meeting in each other's requests (a deadlock), and each statement after it sees what the
/// writes before it committed. NO KEY: the foreign key checks of other writes for the user
/// do not wait for it.
pub(crate) async fn lock_user<C: GenericClient>(c: &C, user: UserId) -> Result<()> {
    exec(c, LOCK_USER, &[&user.0]).await?;
    Ok(())
}

pub(crate) const LOCK_USER: &str = "SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE";

#[async_trait]
impl ApprovalStore for PgStore {
    async fn create_challenge(
        &self,
        new: NewChallenge,
        now: UnixTime,
        audit: Option<&AuditEvent>,
    ) -> Result<(ChallengeRecord, Vec<ChallengeId>)> {
        let sql = format!(
            "INSERT INTO challenges (public_id, tenant_id, user_id, signin_id_hash, kind, channel, nonce, number, state, \
             app_name, ip, location, user_agent, created_at, expires_at, browser) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9, $10, $11, $12, $13, $14, $15) \
             RETURNING {CHALLENGE_COLUMNS}"
        );
        let budget_sql = "SELECT (SELECT push_blocked_at IS NOT NULL FROM users WHERE id = $1), \
             (SELECT COUNT(*) FROM challenges WHERE user_id = $1 AND created_at >= $2 AND kind = $3 \
              AND browser IS NOT DISTINCT FROM $4)";
        let (supersede_sql, supersede): (&str, Params) = match sesame_core::push::replaces(new.kind) {
            Replaces::AllOfTheUser => (
                "UPDATE challenges SET state = 'superseded' \
                 WHERE user_id = $1 AND state = 'pending' RETURNING public_id",
                &[&new.user.0],
            ),
            Replaces::ItsOwnSignIn => (
                "UPDATE challenges SET state = 'superseded' \
                 WHERE user_id = $1 AND signin_id_hash = $2 AND state = 'pending' RETURNING public_id",
                &[&new.user.0, &new.signin_id_hash],
            ),
        };
        let kind = new.kind.as_str();
        let channel = new.channel.as_str();
        write!(self, |tx| {
            let (public_id, nonce) = (random_hex(16), random_hex(16));
            let insert: Params = &[
                &public_id,
                &new.tenant.0,
                &new.user.0,
                &new.signin_id_hash,
                &kind,
                &channel,
                &nonce,
                &new.number,
                &new.app_name,
                &new.ip,
                &new.location,
                &new.user_agent,
                &now,
                &new.expires_at,
                &new.browser,
            ];
            prepared(
                &tx,
                &[LOCK_USER, budget_sql, supersede_sql, &sql, INSERT_AUDIT],
            )
            .await?;
            // Sent together, run in this order. A user's requests are made one at a time, as
            // on SQLite: a racing request waits at the lock, and its UPDATE (a new snapshot)
            // then sees this one to supersede. Under that lock, the budget: no racing request
            // can be counted between the check and the insert, on any node. Refused, the
            // error rolls back what the statements after the check did.
            let (_locked, budget, superseded, record, _audited) = tokio::try_join!(
                lock_user(&tx, new.user),
                async {
                    let Some(b) = new.budget else {
                        return Ok(None);
                    };
                    one(
                        &tx,
                        budget_sql,
                        &[&new.user.0, &b.since, &kind, &new.browser],
                        |r| {
                            Ok((
                                r.try_get::<_, Option<bool>>(0)?.unwrap_or(false),
                                r.try_get::<_, i64>(1)?,
                            ))
                        },
                    )
                    .await
                    .map(|read| Some((b, read.unwrap_or((false, 0)))))
                },
                all(&tx, supersede_sql, supersede, challenge_id),
                one(&tx, &sql, insert, rows::challenge),
                async {
                    match audit {
                        Some(a) => insert_audit(&tx, a).await,
                        None => Ok(()),
                    }
                },
            )?;
            if let Some((b, (blocked, sent))) = budget {
                if blocked {
                    return Err(StoreError::Refused(crate::Refusal::Blocked));
                }
                if sent >= i64::from(b.limit) {
                    return Err(StoreError::Refused(crate::Refusal::Budget));
                }
            }
            let record =
                record.ok_or_else(|| StoreError::Database("INSERT returned no row".into()))?;
            Ok((record, superseded))
        })
    }

    async fn count_challenges_since(
        &self,
        user: UserId,
        kind: ChallengeKind,
        browser: Option<&[u8]>,
        since: UnixTime,
    ) -> Result<u32> {
        let n: Option<i64> = self
            .one(
                "SELECT COUNT(*) FROM challenges WHERE user_id = $1 AND created_at >= $2 AND kind = $3 \
                 AND browser IS NOT DISTINCT FROM $4",
                &[&user.0, &since, &kind.as_str(), &browser],
                first,
            )
            .await?;
        Ok(u32::try_from(n.unwrap_or(0)).unwrap_or(u32::MAX))
    }

    async fn find_challenge(&self, id: &ChallengeId) -> Result<Option<ChallengeRecord>> {
        let sql = format!("SELECT {CHALLENGE_COLUMNS} FROM challenges WHERE public_id = $1");
        self.one(&sql, &[&id.as_str()], rows::challenge).await
    }

    async fn find_latest_challenge_for_signin(
        &self,
        signin_id_hash: &[u8],
    ) -> Result<Option<ChallengeRecord>> {
        let sql = format!(
            "SELECT {CHALLENGE_COLUMNS} FROM challenges WHERE signin_id_hash = $1 ORDER BY id DESC LIMIT 1"
        );
        self.one(&sql, &[&signin_id_hash], rows::challenge).await
    }

    async fn list_pending_challenges(
        &self,
        user: UserId,
        now: UnixTime,
    ) -> Result<Vec<ChallengeRecord>> {
        let sql = format!(
            "SELECT {CHALLENGE_COLUMNS} FROM challenges WHERE user_id = $1 AND state = 'pending' AND expires_at > $2 ORDER BY id"
        );
        self.all(&sql, &[&user.0, &now], rows::challenge).await
    }

    async fn answer_challenge(
        &self,
        id: &ChallengeId,
        to: ChallengeState,
        device: Option<DeviceRow>,
        now: UnixTime,
        audit: &AuditEvent,
    ) -> Result<Answered> {
        let device = device.map(|d| d.0);
        let to_state = to.as_str();
        if to != ChallengeState::Reported {
            // One statement (a statement is what PostgreSQL spends most on here): the
            // answer, the cleared wrong answers (approve) and the audit line, the last two only
            // if the answer was made. The row lock orders racing answers: the loser finds the
            // request no longer pending, and writes nothing.
            const ANSWER_ALONE: &str = "WITH answered AS (\
                 UPDATE challenges SET state = $1, answered_at = $2, answered_by_device = $3 \
                 WHERE public_id = $4 AND state = 'pending' AND expires_at > $2 RETURNING user_id), \
                 cleared AS (UPDATE attempt_counters SET failures = 0 \
                 WHERE $5::BOOLEAN AND user_id IN (SELECT user_id FROM answered) AND kind = 'push' AND failures <> 0), \
                 logged AS (INSERT INTO audit_log (at, tenant_id, user_id, username, ip, user_agent, event, method, result, reason) \
                 SELECT $6::BIGINT, $7::BIGINT, $8::BIGINT, $9::TEXT, $10::TEXT, $11::TEXT, $12::TEXT, $13::TEXT, $14::TEXT, $15::TEXT \
                 FROM answered) \
                 SELECT user_id FROM answered";
            let approved = to == ChallengeState::Approved;
            let (user, event, method, result) = (
                audit.user.map(|u| u.0),
                audit.event.as_str(),
                audit
                    .method
                    .as_ref()
                    .map(sesame_core::audit::AuditMethod::as_str),
                audit.result.as_str(),
            );
            let answered: Option<i64> = self
                .one(
                    ANSWER_ALONE,
                    &[
                        &to_state,
                        &now,
                        &device,
                        &id.as_str(),
                        &approved,
                        &audit.at,
                        &audit.tenant.0,
                        &user,
                        &audit.username,
                        &audit.ip,
                        &audit.user_agent,
                        &event,
                        &method,
                        &result,
                        &audit.reason,
                    ],
                    first,
                )
                .await?;
            return Ok(Answered {
                answered: answered.is_some(),
                cancelled: Vec::new(),
            });
        }
        // A report changes the user and their other requests: one transaction, its statements
        // sent together and run in this order. The user first, as every such write does, so
        // that two reports never wait for each other's requests.
        const LOCK_REPORTER: &str =
            "SELECT 1 FROM users WHERE id = (SELECT user_id FROM challenges WHERE public_id = $1) \
             FOR NO KEY UPDATE";
        const ANSWER: &str =
            "UPDATE challenges SET state = $1, answered_at = $2, answered_by_device = $3 \
             WHERE public_id = $4 AND state = 'pending' AND expires_at > $2 RETURNING user_id";
        const BLOCK: &str = "UPDATE users SET push_blocked_at = $2 \
             WHERE id = (SELECT user_id FROM challenges WHERE public_id = $1)";
        const CANCEL_OTHERS: &str = "UPDATE challenges SET state = 'cancelled' \
             WHERE user_id = (SELECT user_id FROM challenges WHERE public_id = $1) \
             AND state = 'pending' RETURNING public_id";
        write!(self, |tx, undo| {
            prepared(
                &tx,
                &[LOCK_REPORTER, ANSWER, BLOCK, CANCEL_OTHERS, INSERT_AUDIT],
            )
            .await?;
            let id = id.as_str();
            let (answer, block, of_it): (Params, Params, Params) =
                (&[&to_state, &now, &device, &id], &[&id, &now], &[&id]);
            let (_locked, user, _blocked, cancelled, _audited) = tokio::try_join!(
                exec(&tx, LOCK_REPORTER, of_it),
                // The one-winner point: a racing answer waits for this row's lock, then finds
                // it no longer pending.
                one(&tx, ANSWER, answer, first::<i64>),
                exec(&tx, BLOCK, block),
                all(&tx, CANCEL_OTHERS, of_it, challenge_id),
                insert_audit(&tx, audit),
            )?;
            if user.is_none() {
                undo.undo();
                return Ok(Answered::default());
            }
            Ok(Answered {
                answered: true,
                cancelled,
            })
        })
    }

    async fn consume_challenge(&self, id: &ChallengeId) -> Result<bool> {
        Ok(self
            .exec(
                "UPDATE challenges SET state = 'consumed' WHERE public_id = $1 AND state = 'approved'",
                &[&id.as_str()],
            )
            .await?
            == 1)
    }

    async fn cancel_signin_challenges(&self, signin_id_hash: &[u8]) -> Result<Vec<ChallengeId>> {
        // In a transaction only to be retried: it may meet a report cancelling the same
        // requests in another order (a deadlock).
        write!(self, |tx| {
            all(
                &tx,
                "UPDATE challenges SET state = 'cancelled' \
                 WHERE signin_id_hash = $1 AND state = 'pending' RETURNING public_id",
                &[&signin_id_hash],
                challenge_id,
            )
            .await
        })
    }

    async fn cancel_pending_challenges(&self, user: UserId) -> Result<Vec<ChallengeId>> {
        write!(self, |tx| {
            lock_user(&tx, user).await?;
            all(&tx, CANCEL_PENDING, &[&user.0], challenge_id).await
        })
    }
}
