//! The authenticator app's registrations: activation codes, devices, nonces and PIN keys.

use super::{all, challenge_id, changed, conflict, first, one, random_hex, SqliteStore};
use crate::rows::{self, DEVICE_COLUMNS};
use crate::{Device, DeviceRow, DeviceStore, NewDevice, PinOutcome, Result, StoreError};
use async_trait::async_trait;
use rusqlite::params;
use sesame_core::secret::SecretBytes;
use sesame_core::{ChallengeId, DeviceId, UnixTime, UserId};

#[async_trait]
impl DeviceStore for SqliteStore {
    async fn create_activation(
        &self,
        user: UserId,
        code_hash: &[u8],
        expires_at: UnixTime,
    ) -> Result<()> {
        self.execute(
            "INSERT INTO activation_codes (code_hash, user_id, expires_at) VALUES (?, ?, ?)",
            (code_hash.to_vec(), user.0, expires_at),
        )
        .await?;
        Ok(())
    }

    async fn consume_activation(&self, code_hash: &[u8], now: UnixTime) -> Result<Option<UserId>> {
        let code_hash = code_hash.to_vec();
        let user: Option<i64> = self
            .group
            .write(move |c| {
                one(
                    c,
                    "UPDATE activation_codes SET used_at = ?1 WHERE code_hash = ?2 AND used_at IS NULL AND expires_at > ?1 \
                     RETURNING user_id",
                    params![now, code_hash],
                    first,
                )
            })
            .await?;
        Ok(user.map(UserId))
    }

    async fn find_activation_device(
        &self,
        user: UserId,
        code_hash: &[u8],
    ) -> Result<Option<Option<DeviceId>>> {
        let found: Option<Option<String>> = self.read(|c| {
            one(
                c,
                "SELECT (SELECT d.public_id FROM devices d WHERE d.id = a.device_id) AS device \
                 FROM activation_codes a WHERE a.code_hash = ? AND a.user_id = ?",
                params![code_hash, user.0],
                first,
            )
        })?;
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
        let activation_hash = activation_hash.to_vec();
        // One write, so one savepoint: a failure or a crash leaves a complete device or none.
        self.group
            .write(move |c| {
                let sql = format!(
                    "INSERT INTO devices (public_id, tenant_id, user_id, name, alg, public_key, created_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING {DEVICE_COLUMNS}"
                );
                let mut st = c.prepare_cached(&sql)?;
                let key_conflict = || conflict(|| "device key".into());
                let mut rows = st
                    .query(params![
                        random_hex(16),
                        new.tenant.0,
                        new.user.0,
                        new.name,
                        new.alg,
                        new.public_key,
                        now
                    ])
                    .map_err(key_conflict())?;
                let device = match rows.next().map_err(key_conflict())? {
                    Some(r) => rows::device(r)?,
                    None => return Err(StoreError::Database("INSERT returned no row".into())),
                };
                drop(rows);
                drop(st);
                let push_row: i64 = c
                    .prepare_cached(
                        "INSERT INTO methods (public_id, user_id, kind, label, created_at, device_id) \
                         VALUES (?, ?, 'push', ?, ?, ?) RETURNING id",
                    )?
                    .query_row(
                        params![random_hex(16), new.user.0, new.name, now, device.row_id.0],
                        |r| r.get(0),
                    )?;
                changed(
                    c,
                    "INSERT INTO methods (public_id, user_id, kind, label, secret_enc, created_at, device_id) \
                     VALUES (?, ?, 'totp', ?, ?, ?, ?)",
                    params![totp_id, new.user.0, new.name, sealed, now, device.row_id.0],
                )?;
                // The app becomes the default method unless the user already chose one.
                changed(
                    c,
                    "UPDATE users SET default_method_id = ? WHERE id = ? AND default_method_id IS NULL",
                    params![push_row, new.user.0],
                )?;
                let n = changed(
                    c,
                    "UPDATE activation_codes SET device_id = ? WHERE code_hash = ? AND user_id = ?",
                    params![device.row_id.0, activation_hash, new.user.0],
                )?;
                if n != 1 {
                    return Err(StoreError::NotFound("activation code".into()));
                }
                Ok(device)
            })
            .await
    }

    async fn find_device(&self, id: &DeviceId) -> Result<Option<Device>> {
        let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE public_id = ?");
        self.read(|c| one(c, &sql, [id.as_str()], |r| rows::device(r)))
    }

    async fn list_devices(&self, user: UserId) -> Result<Vec<Device>> {
        let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE user_id = ? ORDER BY id");
        self.read(|c| all(c, &sql, [user.0], |r| rows::device(r)))
    }

    async fn delete_device(&self, user: UserId, id: &DeviceId) -> Result<Option<Vec<ChallengeId>>> {
        let public_id = id.0.clone();
        self.group
            .write(move |c| {
                let n = changed(
                    c,
                    "DELETE FROM devices WHERE public_id = ? AND user_id = ?",
                    params![public_id, user.0],
                )?;
                if n == 0 {
                    return Ok(None);
                }
                // Its methods went with it (ON DELETE CASCADE); a default that pointed at them is gone.
                changed(
                    c,
                    "UPDATE users SET default_method_id = (SELECT MIN(id) FROM methods WHERE user_id = ?1) \
                     WHERE id = ?1 AND default_method_id NOT IN (SELECT id FROM methods WHERE user_id = ?1)",
                    [user.0],
                )?;
                // Its pending requests stop at once.
                let cancelled = all(
                    c,
                    super::approvals::CANCEL_PENDING,
                    [user.0],
                    challenge_id,
                )?;
                Ok(Some(cancelled))
            })
            .await
    }

    async fn touch_device(&self, row: DeviceRow, now: UnixTime) -> Result<()> {
        self.execute(
            "UPDATE devices SET last_used_at = ?1 WHERE id = ?2 AND (last_used_at IS NULL OR last_used_at < ?1 - 60)",
            (now, row.0),
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
        let nonce = nonce.to_owned();
        self.group
            .write(move |c| {
                let n = changed(
                    c,
                    "INSERT INTO device_nonces (device_id, nonce, expires_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                    params![row.0, nonce, expires_at],
                )?;
                if n == 1 && nonce.as_bytes().first().is_some_and(|b| b % 16 == 0) {
                    // Now and then, forget nonces whose timestamps could no longer pass the freshness check.
                    changed(c, "DELETE FROM device_nonces WHERE expires_at < ?", [now])?;
                }
                Ok(n == 1)
            })
            .await
    }

    async fn set_pin_key(
        &self,
        row: DeviceRow,
        key: &[u8],
        replacing: Option<&[u8]>,
    ) -> Result<bool> {
        Ok(self
            .execute(
                "UPDATE devices SET pin_key = ?1, pin_key_failures = 0 \
                 WHERE id = ?2 AND pin_key_disabled_at IS NULL AND pin_key IS ?3",
                (key.to_vec(), row.0, replacing.map(<[u8]>::to_vec)),
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
        let key = key.to_vec();
        self.group
            .write(move |c| {
                let counted: Option<(i64, Option<i64>)> = one(
                    c,
                    "UPDATE devices SET \
                     pin_key_failures = CASE WHEN ?1 THEN 0 ELSE pin_key_failures + 1 END, \
                     pin_key_disabled_at = CASE WHEN NOT ?1 AND pin_key_failures + 1 >= ?2 THEN ?3 END \
                     WHERE id = ?4 AND pin_key = ?5 AND pin_key_disabled_at IS NULL AND pin_key_failures < ?2 \
                     RETURNING pin_key_failures, pin_key_disabled_at",
                    params![valid, max, now, row.0, key],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
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
                let current: Option<Option<Vec<u8>>> = one(
                    c,
                    "SELECT pin_key FROM devices WHERE id = ?",
                    [row.0],
                    first,
                )?;
                Ok(match current {
                    // Same key, but disabled or at the limit (a race lost to the check that
                    // disabled it): nothing is judged any more.
                    Some(Some(k)) if k == key => PinOutcome::Disabled,
                    _ => PinOutcome::NoKey,
                })
            })
            .await
    }

    async fn disable_pin_key(&self, row: DeviceRow, now: UnixTime) -> Result<bool> {
        Ok(self
            .execute(
                "UPDATE devices SET pin_key_disabled_at = ? WHERE id = ? AND pin_key_disabled_at IS NULL",
                (now, row.0),
            )
            .await?
            == 1)
    }

    async fn clear_pin_key(&self, user: UserId, id: &DeviceId) -> Result<bool> {
        Ok(self
            .execute(
                "UPDATE devices SET pin_key = NULL, pin_key_failures = 0, pin_key_disabled_at = NULL, \
                 phone_sign_in_at = NULL, phone_sign_in_requested_at = NULL, phone_sign_in_code = NULL \
                 WHERE user_id = ? AND public_id = ?",
                (user.0, id.0.clone()),
            )
            .await?
            == 1)
    }

    async fn set_phone_sign_in(&self, row: DeviceRow, at: Option<UnixTime>) -> Result<()> {
        self.execute(
            "UPDATE devices SET phone_sign_in_at = ?, phone_sign_in_requested_at = NULL, \
             phone_sign_in_code = NULL WHERE id = ?",
            (at, row.0),
        )
        .await?;
        Ok(())
    }

    async fn request_phone_sign_in(&self, row: DeviceRow, now: UnixTime, code: &str) -> Result<()> {
        self.execute(
            "UPDATE devices SET phone_sign_in_requested_at = ?, phone_sign_in_code = ? WHERE id = ?",
            (now, code.to_owned(), row.0),
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
            .execute(
                "UPDATE devices SET phone_sign_in_at = ?, phone_sign_in_requested_at = NULL, \
                 phone_sign_in_code = NULL \
                 WHERE id = ? AND phone_sign_in_requested_at >= ? \
                 AND pin_key IS NOT NULL AND pin_key_disabled_at IS NULL",
                (now, row.0, requested_since),
            )
            .await?
            == 1)
    }
}
