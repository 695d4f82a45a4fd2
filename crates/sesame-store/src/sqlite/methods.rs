//! Verification methods, their enrolments, and the failed-attempt counters.

use super::{all, changed, first, one, random_hex, SqliteStore};
use crate::rows::{self, METHOD_COLUMNS};
use crate::{AttemptStore, Method, MethodStore, Result, StoreError};
use async_trait::async_trait;
use rusqlite::params;
use sesame_core::method::MethodKind;
use sesame_core::secret::SecretBytes;
use sesame_core::{MethodId, UnixTime, UserId};

#[async_trait]
impl MethodStore for SqliteStore {
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
            phone: None,
            extension: None,
        })
    }

    async fn list_methods(&self, user: UserId) -> Result<Vec<Method>> {
        let sql = format!("SELECT {METHOD_COLUMNS} FROM methods WHERE user_id = ? ORDER BY id");
        self.read(|c| all(c, &sql, [user.0], |r| rows::method(&self.key, r)))
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
}

#[async_trait]
impl AttemptStore for SqliteStore {
    async fn find_failures(
        &self,
        user: UserId,
        kind: MethodKind,
    ) -> Result<(u32, Option<UnixTime>)> {
        let row: Option<(i64, Option<i64>)> = self.read(|c| {
            one(
                c,
                "SELECT failures, last_failure_at FROM attempt_counters WHERE user_id = ? AND kind = ?",
                params![user.0, kind.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })?;
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
            "INSERT INTO attempt_counters (user_id, kind, failures, last_failure_at) VALUES (?1, ?2, 1, ?3) \
             ON CONFLICT (user_id, kind) DO UPDATE SET failures = failures + 1, last_failure_at = ?3 \
             WHERE attempt_counters.failures = ?4"
        } else {
            "UPDATE attempt_counters SET failures = failures + 1, last_failure_at = ?3 \
             WHERE user_id = ?1 AND kind = ?2 AND failures = ?4"
        };
        Ok(self
            .execute(sql, (user.0, kind.as_str(), now, i64::from(seen)))
            .await?
            == 1)
    }

    async fn clear_failures(&self, user: UserId, kind: MethodKind) -> Result<()> {
        self.execute(
            "UPDATE attempt_counters SET failures = 0 WHERE user_id = ? AND kind = ? AND failures <> 0",
            (user.0, kind.as_str()),
        )
        .await?;
        Ok(())
    }
}
