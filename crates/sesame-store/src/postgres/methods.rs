//! Verification methods, their enrolments, and the failed-attempt counters.

use super::{exec, first, one, random_hex, PgStore};
use crate::rows::{self, METHOD_COLUMNS};
use crate::{AttemptStore, Method, MethodStore, Result, StoreError};
use async_trait::async_trait;
use sesame_core::lockout::{AttemptGate, LockoutPolicy};
use sesame_core::method::MethodKind;
use sesame_core::secret::SecretBytes;
use sesame_core::{MethodId, UnixTime, UserId};

#[async_trait]
impl MethodStore for PgStore {
    async fn create_totp_enrollment(
        &self,
        user: UserId,
        secret: &SecretBytes,
        expires_at: UnixTime,
    ) -> Result<String> {
        let id = random_hex(16);
        let sealed = self
            .key
            .seal(&crate::crypto::aad::enrollment(&id, user), secret.expose());
        self.exec(
            "INSERT INTO totp_enrollments (id, user_id, secret_enc, expires_at) VALUES ($1, $2, $3, $4)",
            &[&id, &user.0, &sealed, &expires_at],
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
        let sealed: Option<Vec<u8>> = self
            .one(
                "SELECT secret_enc FROM totp_enrollments WHERE id = $1 AND user_id = $2 AND expires_at > $3",
                &[&id, &user.0, &now],
                first,
            )
            .await?;
        sealed
            .map(|s| {
                self.key
                    .open(&crate::crypto::aad::enrollment(id, user), &s)
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
        let sealed: Option<Vec<u8>> = write!(self, |tx| {
            let sealed = one(
                &tx,
                "DELETE FROM totp_enrollments WHERE id = $1 AND user_id = $2 AND expires_at > $3 RETURNING secret_enc",
                &[&id, &user.0, &now],
                first,
            )
            .await?;
            // Expired enrolments of this user are garbage now.
            exec(
                &tx,
                "DELETE FROM totp_enrollments WHERE user_id = $1 AND expires_at <= $2",
                &[&user.0, &now],
            )
            .await?;
            Ok(sealed)
        })?;
        sealed
            .map(|s| {
                self.key
                    .open(&crate::crypto::aad::enrollment(id, user), &s)
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
        let sealed = self.key.seal(
            &crate::crypto::aad::method(&public_id, user),
            secret.expose(),
        );
        let id: i64 = self
            .one(
                "INSERT INTO methods (public_id, user_id, kind, label, secret_enc, last_totp_step, created_at) \
                 VALUES ($1, $2, 'totp', $3, $4, $5, $6) RETURNING id",
                &[&public_id, &user.0, &label, &sealed, &used_step, &now],
                first,
            )
            .await?
            .ok_or_else(|| StoreError::Database("INSERT returned no row".into()))?;
        Ok(Method {
            id: MethodId(id),
            user,
            kind: MethodKind::Totp,
            label: label.to_owned(),
            totp_secret: Some(secret.clone()),
            created_at: now,
            last_used_at: None,
            device: None,
            phone: None,
            extension: None,
        })
    }

    async fn list_methods(&self, user: UserId) -> Result<Vec<Method>> {
        let sql = format!("SELECT {METHOD_COLUMNS} FROM methods WHERE user_id = $1 ORDER BY id");
        self.all(&sql, &[&user.0], |r| rows::method(&self.key, r))
            .await
    }

    async fn delete_method(&self, user: UserId, method: MethodId) -> Result<bool> {
        write!(self, |tx| {
            // The user first, as every write of a user's methods, devices and requests does.
            super::approvals::lock_user(&tx, user).await?;
            // A default that pointed at it is cleared by the removal (the foreign key's ON
            // DELETE SET NULL), even one set by a statement racing this one.
            let n = exec(
                &tx,
                "DELETE FROM methods WHERE id = $1 AND user_id = $2",
                &[&method.0, &user.0],
            )
            .await?;
            Ok(n == 1)
        })
    }

    async fn delete_all_methods(&self, user: UserId) -> Result<u64> {
        write!(self, |tx| {
            super::approvals::lock_user(&tx, user).await?;
            // The default goes with the methods (the foreign key's ON DELETE SET NULL).
            let n = exec(&tx, "DELETE FROM methods WHERE user_id = $1", &[&user.0]).await?;
            exec(
                &tx,
                "DELETE FROM attempt_counters WHERE user_id = $1",
                &[&user.0],
            )
            .await?;
            Ok(n)
        })
    }

    async fn claim_totp_step(&self, method: MethodId, step: i64, now: UnixTime) -> Result<bool> {
        Ok(self
            .exec(
                "UPDATE methods SET last_totp_step = $1, last_used_at = $2 \
                 WHERE id = $3 AND (last_totp_step IS NULL OR last_totp_step < $1)",
                &[&step, &now, &method.0],
            )
            .await?
            == 1)
    }
}

#[async_trait]
impl AttemptStore for PgStore {
    async fn find_failures(
        &self,
        user: UserId,
        kind: MethodKind,
    ) -> Result<(u32, Option<UnixTime>)> {
        let row: Option<(i64, Option<i64>)> = self
            .one(
                "SELECT failures, last_failure_at FROM attempt_counters WHERE user_id = $1 AND kind = $2",
                &[&user.0, &kind.as_str()],
                |r| Ok((r.try_get(0)?, r.try_get(1)?)),
            )
            .await?;
        Ok(match row {
            Some((f, last)) => (u32::try_from(f).unwrap_or(u32::MAX), last),
            None => (0, None),
        })
    }

    async fn count_failure_if(
        &self,
        user: UserId,
        kind: MethodKind,
        seen: u32,
        now: UnixTime,
    ) -> Result<bool> {
        // A counter that does not exist yet counts as 0; the first failure creates it.
        let sql = if seen == 0 {
            "INSERT INTO attempt_counters (user_id, kind, failures, last_failure_at) VALUES ($1, $2, 1, $3) \
             ON CONFLICT (user_id, kind) DO UPDATE SET failures = attempt_counters.failures + 1, last_failure_at = $3 \
             WHERE attempt_counters.failures = $4"
        } else {
            "UPDATE attempt_counters SET failures = failures + 1, last_failure_at = $3 \
             WHERE user_id = $1 AND kind = $2 AND failures = $4"
        };
        Ok(self
            .exec(sql, &[&user.0, &kind.as_str(), &now, &i64::from(seen)])
            .await?
            == 1)
    }

    async fn reserve_attempt(
        &self,
        user: UserId,
        kind: MethodKind,
        policy: &LockoutPolicy,
        now: UnixTime,
    ) -> Result<AttemptGate> {
        // Below the first lock every attempt may be judged, whatever the time: counted then in
        // one statement, which the row lock orders against racing ones (each sees the count
        // the one before it left). At or past it, the time of the last failure decides: read,
        // judge and compare-and-set.
        let open_below = policy.soft_after.min(policy.hard_after);
        if open_below > 0 {
            let counted = self
                .exec(
                    "INSERT INTO attempt_counters (user_id, kind, failures, last_failure_at) VALUES ($1, $2, 1, $3) \
                     ON CONFLICT (user_id, kind) DO UPDATE SET failures = attempt_counters.failures + 1, last_failure_at = $3 \
                     WHERE attempt_counters.failures < $4",
                    &[&user.0, &kind.as_str(), &now, &i64::from(open_below)],
                )
                .await?;
            if counted == 1 {
                return Ok(AttemptGate::Open);
            }
        }
        crate::traits::reserve_attempt_by_compare_and_set(self, user, kind, policy, now).await
    }

    async fn clear_failures(&self, user: UserId, kind: MethodKind) -> Result<()> {
        self.exec(
            "UPDATE attempt_counters SET failures = 0 WHERE user_id = $1 AND kind = $2 AND failures <> 0",
            &[&user.0, &kind.as_str()],
        )
        .await?;
        Ok(())
    }
}
