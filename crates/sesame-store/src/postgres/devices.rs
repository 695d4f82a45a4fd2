//! The authenticator app's registrations: activation codes, devices, nonces and PIN keys.

use super::approvals::lock_user;
use super::{all, challenge_id, conflict, exec, first, one, random_hex, PgStore, CANCEL_PENDING};
use crate::rows::{self, DEVICE_COLUMNS};
use crate::{Device, DeviceRow, DeviceStore, NewDevice, PinOutcome, Result, StoreError};
use async_trait::async_trait;
use sesame_core::secret::SecretBytes;
use sesame_core::{ChallengeId, DeviceId, UnixTime, UserId};

#[async_trait]
impl DeviceStore for PgStore {
    async fn create_activation(
        &self,
        user: UserId,
        code_hash: &[u8],
        expires_at: UnixTime,
    ) -> Result<()> {
        self.exec(
            "INSERT INTO activation_codes (code_hash, user_id, expires_at) VALUES ($1, $2, $3)",
            &[&code_hash, &user.0, &expires_at],
        )
        .await?;
        Ok(())
    }

    async fn consume_activation(&self, code_hash: &[u8], now: UnixTime) -> Result<Option<UserId>> {
        let user: Option<i64> = self
            .one(
                "UPDATE activation_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL AND expires_at > $1 \
                 RETURNING user_id",
                &[&now, &code_hash],
                first,
            )
            .await?;
        Ok(user.map(UserId))
    }

    async fn find_activation_device(
        &self,
        user: UserId,
        code_hash: &[u8],
    ) -> Result<Option<Option<DeviceId>>> {
        let found: Option<Option<String>> = self
            .one(
                "SELECT (SELECT d.public_id FROM devices d WHERE d.id = a.device_id) AS device \
                 FROM activation_codes a WHERE a.code_hash = $1 AND a.user_id = $2",
                &[&code_hash, &user.0],
                first,
            )
            .await?;
        Ok(found.map(|d| d.map(DeviceId)))
    }

    async fn create_device(
        &self,
        new: NewDevice,
        activation_hash: &[u8],
        totp_secret: &SecretBytes,
        now: UnixTime,
    ) -> Result<Device> {
        let totp_id = random_hex(16);
        let sealed = self.key.seal(
            &crate::crypto::aad::method(&totp_id, new.user),
            totp_secret.expose(),
        );
        let sql = format!(
            "INSERT INTO devices (public_id, tenant_id, user_id, name, alg, public_key, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {DEVICE_COLUMNS}"
        );
        // One transaction: a failure or a crash leaves a complete device or none.
        write!(self, |tx| {
            let st = tx.prepare_cached(&sql).await?;
            let rows = tx
                .query(
                    &st,
                    &[
                        &random_hex(16),
                        &new.tenant.0,
                        &new.user.0,
                        &new.name,
                        &new.alg,
                        &new.public_key,
                        &now,
                    ],
                )
                .await
                .map_err(conflict(|| "device key".into()))?;
            let device = match rows.first() {
                Some(r) => rows::device(r)?,
                None => return Err(StoreError::Database("INSERT returned no row".into())),
            };
            let push_row: i64 = one(
                &tx,
                "INSERT INTO methods (public_id, user_id, kind, label, created_at, device_id) \
                 VALUES ($1, $2, 'push', $3, $4, $5) RETURNING id",
                &[
                    &random_hex(16),
                    &new.user.0,
                    &new.name,
                    &now,
                    &device.row_id.0,
                ],
                first,
            )
            .await?
            .ok_or_else(|| StoreError::Database("INSERT returned no row".into()))?;
            exec(
                &tx,
                "INSERT INTO methods (public_id, user_id, kind, label, secret_enc, created_at, device_id) \
                 VALUES ($1, $2, 'totp', $3, $4, $5, $6)",
                &[&totp_id, &new.user.0, &new.name, &sealed, &now, &device.row_id.0],
            )
            .await?;
            // The app becomes the default method unless the user already chose one.
            exec(
                &tx,
                "UPDATE users SET default_method_id = $1 WHERE id = $2 AND default_method_id IS NULL",
                &[&push_row, &new.user.0],
            )
            .await?;
            let n = exec(
                &tx,
                "UPDATE activation_codes SET device_id = $1 WHERE code_hash = $2 AND user_id = $3",
                &[&device.row_id.0, &activation_hash, &new.user.0],
            )
            .await?;
            if n != 1 {
                return Err(StoreError::NotFound("activation code".into()));
            }
            Ok(device)
        })
    }

    async fn find_device(&self, id: &DeviceId) -> Result<Option<Device>> {
        let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE public_id = $1");
        self.one(&sql, &[&id.as_str()], rows::device).await
    }

    async fn list_devices(&self, user: UserId) -> Result<Vec<Device>> {
        let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE user_id = $1 ORDER BY id");
        self.all(&sql, &[&user.0], rows::device).await
    }

    async fn delete_device(&self, user: UserId, id: &DeviceId) -> Result<Option<Vec<ChallengeId>>> {
        write!(self, |tx| {
            // It changes the user and their requests: the user's lock first (see `lock_user`).
            lock_user(&tx, user).await?;
            // Its methods go with it (ON DELETE CASCADE), and a default on one of them would be
            // cleared (the foreign key's ON DELETE SET NULL): the default moves first to the
            // user's first other method.
            exec(
                &tx,
                "UPDATE users SET default_method_id = \
                 (SELECT MIN(m.id) FROM methods m WHERE m.user_id = $1 AND m.device_id IS DISTINCT FROM d.id) \
                 FROM devices d WHERE users.id = $1 AND d.public_id = $2 AND d.user_id = $1 \
                 AND users.default_method_id IN (SELECT id FROM methods WHERE device_id = d.id)",
                &[&user.0, &id.as_str()],
            )
            .await?;
            let n = exec(
                &tx,
                "DELETE FROM devices WHERE public_id = $1 AND user_id = $2",
                &[&id.as_str(), &user.0],
            )
            .await?;
            if n == 0 {
                return Ok(None);
            }
            // Its pending requests stop at once.
            let cancelled = all(&tx, CANCEL_PENDING, &[&user.0], challenge_id).await?;
            Ok(Some(cancelled))
        })
    }

    async fn touch_device(&self, row: DeviceRow, now: UnixTime) -> Result<()> {
        self.exec(
            "UPDATE devices SET last_used_at = $1::BIGINT WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1::BIGINT - 60)",
            &[&now, &row.0],
        )
        .await?;
        Ok(())
    }

    async fn claim_device_nonce(
        &self,
        row: DeviceRow,
        nonce: &str,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> Result<bool> {
        // One statement decides: a racing claim of the same nonce waits for this one's key,
        // then inserts nothing. (No transaction: the clean-up below need not go with it.)
        let n = self
            .exec(
                "INSERT INTO device_nonces (device_id, nonce, expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&row.0, &nonce, &expires_at],
            )
            .await?;
        if n == 1 && nonce.as_bytes().first().is_some_and(|b| b % 16 == 0) {
            // Now and then, forget nonces whose timestamps could no longer pass the freshness check.
            self.exec("DELETE FROM device_nonces WHERE expires_at < $1", &[&now])
                .await?;
        }
        Ok(n == 1)
    }

    async fn set_pin_key(
        &self,
        row: DeviceRow,
        key: &[u8],
        replacing: Option<&[u8]>,
    ) -> Result<bool> {
        Ok(self
            .exec(
                "UPDATE devices SET pin_key = $1, pin_key_failures = 0 \
                 WHERE id = $2 AND pin_key_disabled_at IS NULL AND pin_key IS NOT DISTINCT FROM $3",
                &[&key, &row.0, &replacing],
            )
            .await?
            == 1)
    }

    async fn record_pin_check(
        &self,
        row: DeviceRow,
        key: &[u8],
        valid: bool,
        max: i64,
        now: UnixTime,
    ) -> Result<PinOutcome> {
        // One statement decides: a racing check waits for this row's lock, then is judged (and
        // counted) on the row this one left. No transaction: under Read Committed the read
        // below, which only says why nothing was counted, would see a new snapshot anyway.
        let counted: Option<(i64, Option<i64>)> = self
            .one(
                "UPDATE devices SET \
                 pin_key_failures = CASE WHEN $1::boolean THEN 0 ELSE pin_key_failures + 1 END, \
                 pin_key_disabled_at = CASE WHEN NOT $1::boolean AND pin_key_failures + 1 >= $2 THEN $3::bigint END \
                 WHERE id = $4 AND pin_key = $5 AND pin_key_disabled_at IS NULL AND pin_key_failures < $2 \
                 RETURNING pin_key_failures, pin_key_disabled_at",
                &[&valid, &max, &now, &row.0, &key],
                |r| Ok((r.try_get(0)?, r.try_get(1)?)),
            )
            .await?;
        if let Some((n, disabled)) = counted {
            return Ok(if valid {
                PinOutcome::Accepted
            } else {
                PinOutcome::Wrong {
                    consecutive: n,
                    disabled: disabled.is_some(),
                }
            });
        }
        let current: Option<Option<Vec<u8>>> = self
            .one(
                "SELECT pin_key FROM devices WHERE id = $1",
                &[&row.0],
                first,
            )
            .await?;
        Ok(match current {
            // Same key, but disabled or at the limit (a race lost to the check that disabled
            // it): nothing is judged any more.
            Some(Some(k)) if k == key => PinOutcome::Disabled,
            _ => PinOutcome::NoKey,
        })
    }

    async fn disable_pin_key(&self, row: DeviceRow, now: UnixTime) -> Result<bool> {
        Ok(self
            .exec(
                "UPDATE devices SET pin_key_disabled_at = $1 WHERE id = $2 AND pin_key_disabled_at IS NULL",
                &[&now, &row.0],
            )
            .await?
            == 1)
    }

    async fn clear_pin_key(&self, user: UserId, id: &DeviceId) -> Result<bool> {
        Ok(self
            .exec(
                "UPDATE devices SET pin_key = NULL, pin_key_failures = 0, pin_key_disabled_at = NULL, \
                 phone_sign_in_at = NULL, phone_sign_in_requested_at = NULL, phone_sign_in_code = NULL \
                 WHERE user_id = $1 AND public_id = $2",
                &[&user.0, &id.as_str()],
            )
            .await?
            == 1)
    }

    async fn set_phone_sign_in(&self, row: DeviceRow, at: Option<UnixTime>) -> Result<()> {
        self.exec(
            "UPDATE devices SET phone_sign_in_at = $1, phone_sign_in_requested_at = NULL, \
             phone_sign_in_code = NULL WHERE id = $2",
            &[&at, &row.0],
        )
        .await?;
        Ok(())
    }

    async fn request_phone_sign_in(&self, row: DeviceRow, now: UnixTime, code: &str) -> Result<()> {
        self.exec(
            "UPDATE devices SET phone_sign_in_requested_at = $1, phone_sign_in_code = $2 WHERE id = $3",
            &[&now, &code, &row.0],
        )
        .await?;
        Ok(())
    }

    async fn confirm_phone_sign_in(
        &self,
        row: DeviceRow,
        requested_since: UnixTime,
        now: UnixTime,
    ) -> Result<bool> {
        Ok(self
            .exec(
                "UPDATE devices SET phone_sign_in_at = $1, phone_sign_in_requested_at = NULL, \
                 phone_sign_in_code = NULL \
                 WHERE id = $2 AND phone_sign_in_requested_at >= $3 \
                 AND pin_key IS NOT NULL AND pin_key_disabled_at IS NULL",
                &[&now, &row.0, &requested_since],
            )
            .await?
            == 1)
    }
}
