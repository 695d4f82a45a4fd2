//! Phone numbers (stored as methods), texted codes, send limits, delivery reports, outbox.

use super::{all, exec, first, one, random_hex, PgStore};
use crate::rows::{self, METHOD_COLUMNS, OUTBOX_COLUMNS};
use crate::{Method, OutboxItem, PhoneStore, Result, StoreError};
use async_trait::async_trait;
use sesame_core::method::{MethodKind, PhoneSlot};
use sesame_core::{MethodId, UnixTime, UserId};

/// The first key of the advisory locks that order sends counted against one limit key
/// ("send" in ASCII); the second is the hash of the limit key.
const SEND_LOCK: i32 = 0x7365_6e64;

fn slot_label(slot: PhoneSlot) -> &'static str {
    match slot {
        PhoneSlot::Mobile => "Mobile phone",
        PhoneSlot::Office => "Office phone",
    }
}

#[async_trait]
impl PhoneStore for PgStore {
    async fn save_phone(
        &self,
        user: UserId,
        slot: PhoneSlot,
        number: &str,
        extension: Option<&str>,
        now: UnixTime,
    ) -> Result<Vec<Method>> {
        // Sealed before the write: each row's own identity is the associated data.
        let rows: Vec<(MethodKind, String, Vec<u8>)> = slot
            .methods()
            .iter()
            .map(|&kind| {
                let public_id = random_hex(16);
                let sealed = self.key.seal(
                    &crate::crypto::aad::method(&public_id, user),
                    number.as_bytes(),
                );
                (kind, public_id, sealed)
            })
            .collect();
        let sql = format!("SELECT {METHOD_COLUMNS} FROM methods WHERE id = ANY($1) ORDER BY id");
        write!(self, |tx| {
            // The user's row lock first (see `lock_user`): it orders racing saves, as SQLite's
            // one writer does, so the second replaces what the first saved instead of failing
            // on the index that allows one method of each kind per phone.
            let default: Option<i64> = one(
                &tx,
                "SELECT default_method_id FROM users WHERE id = $1 FOR NO KEY UPDATE",
                &[&user.0],
                first,
            )
            .await?
            .flatten();
            let old: Vec<(i64, String)> = all(
                &tx,
                "DELETE FROM methods WHERE user_id = $1 AND phone_slot = $2 RETURNING id, kind",
                &[&user.0, &slot.as_str()],
                |r| Ok((r.try_get(0)?, r.try_get(1)?)),
            )
            .await?;
            let mut ids = Vec::new();
            for (kind, public_id, sealed) in &rows {
                let id: i64 = one(
                    &tx,
                    "INSERT INTO methods (public_id, user_id, kind, label, secret_enc, phone_slot, extension, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                    &[
                        public_id,
                        &user.0,
                        &kind.as_str(),
                        &slot_label(slot),
                        sealed,
                        &slot.as_str(),
                        &extension,
                        &now,
                    ],
                    first,
                )
                .await?
                .ok_or_else(|| StoreError::Database("INSERT returned no row".into()))?;
                // The default stays on the same kind of method with the new number.
                if old
                    .iter()
                    .any(|(o, k)| Some(*o) == default && k == kind.as_str())
                {
                    exec(
                        &tx,
                        "UPDATE users SET default_method_id = $1 WHERE id = $2",
                        &[&id, &user.0],
                    )
                    .await?;
                }
                ids.push(id);
            }
            // Read before the commit: a racing save may replace them right after it.
            all(&tx, &sql, &[&ids], |r| rows::method(&self.key, r)).await
        })
    }

    async fn touch_method(&self, method: MethodId, now: UnixTime) -> Result<()> {
        self.exec(
            "UPDATE methods SET last_used_at = $1 WHERE id = $2",
            &[&now, &method.0],
        )
        .await?;
        Ok(())
    }

    async fn put_phone_code(
        &self,
        user: UserId,
        purpose: &str,
        number_tag: &[u8],
        code_hash: &[u8],
        now: UnixTime,
        expires_at: UnixTime,
    ) -> Result<()> {
        self.exec(
            "INSERT INTO phone_codes (user_id, purpose, number_tag, code_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_id, purpose) DO UPDATE SET \
             number_tag = excluded.number_tag, code_hash = excluded.code_hash, \
             created_at = excluded.created_at, expires_at = excluded.expires_at",
            &[&user.0, &purpose, &number_tag, &code_hash, &now, &expires_at],
        )
        .await?;
        Ok(())
    }

    async fn take_phone_code(
        &self,
        user: UserId,
        purpose: &str,
        number_tag: &[u8],
        code_hash: &[u8],
        now: UnixTime,
    ) -> Result<bool> {
        // The single-use point: of racing takes one deletes the row; the others wait for
        // its lock, then find it gone.
        let n = self
            .exec(
                "DELETE FROM phone_codes WHERE user_id = $1 AND purpose = $2 AND number_tag = $3 \
                 AND code_hash = $4 AND expires_at > $5",
                &[&user.0, &purpose, &number_tag, &code_hash, &now],
            )
            .await?;
        Ok(n == 1)
    }

    async fn drop_phone_code(&self, user: UserId, purpose: &str) -> Result<()> {
        self.exec(
            "DELETE FROM phone_codes WHERE user_id = $1 AND purpose = $2",
            &[&user.0, &purpose],
        )
        .await?;
        Ok(())
    }

    async fn reserve_phone_send(
        &self,
        keys: &[String],
        limit: u32,
        since: UnixTime,
        now: UnixTime,
    ) -> Result<Option<String>> {
        // Taken in one order everywhere, so that two sends never wait for each other's.
        let mut locks: Vec<&String> = keys.iter().collect();
        locks.sort();
        locks.dedup();
        write!(self, |tx| {
            // A count has no row to lock (the sends of a key are rows of their own, and a
            // racing send's row is not there yet): a lock per key orders the sends counted
            // against it, and each COUNT below, a new statement, sees every send committed
            // before its lock was granted. Held until commit.
            for k in &locks {
                exec(
                    &tx,
                    "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                    &[&SEND_LOCK, k],
                )
                .await?;
            }
            for k in keys {
                let n: i64 = one(
                    &tx,
                    "SELECT COUNT(*) FROM phone_sends WHERE limit_key = $1 AND sent_at > $2",
                    &[k, &since],
                    first,
                )
                .await?
                .unwrap_or(0);
                if n >= i64::from(limit) {
                    return Ok(Some(k.clone()));
                }
            }
            exec(
                &tx,
                "DELETE FROM phone_sends WHERE sent_at <= $1",
                &[&since],
            )
            .await?;
            for k in keys {
                exec(
                    &tx,
                    "INSERT INTO phone_sends (limit_key, sent_at) VALUES ($1, $2)",
                    &[k, &now],
                )
                .await?;
            }
            Ok(None)
        })
    }

    async fn record_message(
        &self,
        reference: &str,
        user: Option<UserId>,
        status: &str,
        now: UnixTime,
    ) -> Result<()> {
        // Replaces a row of the same reference entirely, as SQLite's INSERT OR REPLACE.
        self.exec(
            "INSERT INTO phone_messages (reference, user_id, status, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $4) ON CONFLICT (reference) DO UPDATE SET \
             user_id = excluded.user_id, status = excluded.status, detail = NULL, \
             created_at = excluded.created_at, updated_at = excluded.updated_at",
            &[&reference, &user.map(|u| u.0), &status, &now],
        )
        .await?;
        Ok(())
    }

    async fn update_message_status(
        &self,
        reference: &str,
        status: &str,
        detail: Option<&str>,
        now: UnixTime,
    ) -> Result<bool> {
        write!(self, |tx| {
            // Reports arrive out of order: "delivered" or "failed" is never overwritten
            // by a late "sent".
            let n = exec(
                &tx,
                "UPDATE phone_messages SET status = $1, detail = $2, updated_at = $3 \
                 WHERE reference = $4 AND NOT (status IN ('delivered', 'failed') AND $1 = 'sent')",
                &[&status, &detail, &now, &reference],
            )
            .await?;
            let known: Option<i32> = one(
                &tx,
                "SELECT 1 FROM phone_messages WHERE reference = $1",
                &[&reference],
                first,
            )
            .await?;
            Ok(n == 1 || known.is_some())
        })
    }

    async fn last_message_status(&self, user: UserId) -> Result<Option<String>> {
        // No rowid: of texts recorded in the same second, the last to change wins (then the
        // reference, so the answer is the same on every node).
        self.one(
            "SELECT status FROM phone_messages WHERE user_id = $1 \
             ORDER BY created_at DESC, seq DESC LIMIT 1",
            &[&user.0],
            first,
        )
        .await
    }

    async fn outbox_add(&self, item: &OutboxItem) -> Result<i64> {
        self.one(
            "INSERT INTO outbox (kind, reference, to_number, extension, body, state, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            &[
                &item.kind,
                &item.reference,
                &item.to,
                &item.extension,
                &item.body,
                &item.state,
                &item.created_at,
            ],
            first,
        )
        .await?
        .ok_or_else(|| StoreError::Database("INSERT returned no row".into()))
    }

    async fn outbox_list(&self, limit: u32) -> Result<Vec<OutboxItem>> {
        let sql = format!("SELECT {OUTBOX_COLUMNS} FROM outbox ORDER BY id DESC LIMIT $1");
        self.all(&sql, &[&i64::from(limit)], rows::outbox_item)
            .await
    }

    async fn outbox_find(&self, id: i64) -> Result<Option<OutboxItem>> {
        let sql = format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = $1");
        self.one(&sql, &[&id], rows::outbox_item).await
    }

    async fn outbox_answer(&self, id: i64, state: &str, now: UnixTime) -> Result<bool> {
        Ok(self
            .exec(
                "UPDATE outbox SET state = $1, answered_at = $2 WHERE id = $3 AND kind = 'call' AND state = 'ringing'",
                &[&state, &now, &id],
            )
            .await?
            == 1)
    }
}
