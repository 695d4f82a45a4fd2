//! Phone numbers (stored as methods), texted codes, send limits, delivery reports, outbox.

use super::{all, changed, first, one, random_hex, SqliteStore};
use crate::rows::{self, METHOD_COLUMNS, OUTBOX_COLUMNS};
use crate::{Method, OutboxItem, PhoneStore, Result};
use async_trait::async_trait;
use rusqlite::params;
use sesame_core::method::{MethodKind, PhoneSlot};
use sesame_core::{MethodId, UnixTime, UserId};

fn slot_label(slot: PhoneSlot) -> &'static str {
    match slot {
        PhoneSlot::Mobile => "Mobile phone",
        PhoneSlot::Office => "Office phone",
    }
}

#[async_trait]
impl PhoneStore for SqliteStore {
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
        let extension = extension.map(str::to_owned);
        let ids: Vec<i64> = self
            .group
            .write(move |c| {
                let old: Vec<(i64, String)> = all(
                    c,
                    "SELECT id, kind FROM methods WHERE user_id = ? AND phone_slot = ?",
                    params![user.0, slot.as_str()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                changed(
                    c,
                    "DELETE FROM methods WHERE user_id = ? AND phone_slot = ?",
                    params![user.0, slot.as_str()],
                )?;
                let default: Option<i64> = one(
                    c,
                    "SELECT default_method_id FROM users WHERE id = ?",
                    [user.0],
                    first,
                )?
                .flatten();
                let mut ids = Vec::new();
                for (kind, public_id, sealed) in &rows {
                    let id: i64 = c
                        .prepare_cached(
                            "INSERT INTO methods (public_id, user_id, kind, label, secret_enc, phone_slot, extension, created_at) \
                             VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                        )?
                        .query_row(
                            params![
                                public_id,
                                user.0,
                                kind.as_str(),
                                slot_label(slot),
                                sealed,
                                slot.as_str(),
                                extension,
                                now
                            ],
                            |r| r.get(0),
                        )?;
                    // The default stays on the same kind of method with the new number.
                    if old
                        .iter()
                        .any(|(o, k)| Some(*o) == default && k == kind.as_str())
                    {
                        changed(
                            c,
                            "UPDATE users SET default_method_id = ? WHERE id = ?",
                            params![id, user.0],
                        )?;
                    }
                    ids.push(id);
                }
                Ok(ids)
            })
            .await?;
        let sql = format!("SELECT {METHOD_COLUMNS} FROM methods WHERE user_id = ? ORDER BY id");
        let methods = self.read(|c| all(c, &sql, [user.0], |r| rows::method(&self.key, r)))?;
        Ok(methods
            .into_iter()
            .filter(|m| ids.contains(&m.id.0))
            .collect())
    }

    async fn touch_method(&self, method: MethodId, now: UnixTime) -> Result<()> {
        self.execute(
            "UPDATE methods SET last_used_at = ? WHERE id = ?",
            (now, method.0),
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
        let (purpose, tag, hash) = (purpose.to_owned(), number_tag.to_vec(), code_hash.to_vec());
        self.group
            .write(move |c| {
                changed(
                    c,
                    "INSERT INTO phone_codes (user_id, purpose, number_tag, code_hash, created_at, expires_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (user_id, purpose) DO UPDATE SET \
                     number_tag = ?3, code_hash = ?4, created_at = ?5, expires_at = ?6",
                    params![user.0, purpose, tag, hash, now, expires_at],
                )?;
                Ok(())
            })
            .await
    }

    async fn take_phone_code(
        &self,
        user: UserId,
        purpose: &str,
        number_tag: &[u8],
        code_hash: &[u8],
        now: UnixTime,
    ) -> Result<bool> {
        let (purpose, tag, hash) = (purpose.to_owned(), number_tag.to_vec(), code_hash.to_vec());
        self.group
            .write(move |c| {
                // The single-use point: of racing takes one deletes the row.
                let n = changed(
                    c,
                    "DELETE FROM phone_codes WHERE user_id = ? AND purpose = ? AND number_tag = ? \
                     AND code_hash = ? AND expires_at > ?",
                    params![user.0, purpose, tag, hash, now],
                )?;
                Ok(n == 1)
            })
            .await
    }

    async fn drop_phone_code(&self, user: UserId, purpose: &str) -> Result<()> {
        let purpose = purpose.to_owned();
        self.group
            .write(move |c| {
                changed(
                    c,
                    "DELETE FROM phone_codes WHERE user_id = ? AND purpose = ?",
                    params![user.0, purpose],
                )?;
                Ok(())
            })
            .await
    }

    async fn reserve_phone_send(
        &self,
        keys: &[String],
        limit: u32,
        since: UnixTime,
        now: UnixTime,
    ) -> Result<Option<String>> {
        let keys = keys.to_vec();
        self.group
            .write(move |c| {
                // One write: counting and adding cannot interleave with another node's.
                for k in &keys {
                    let n: i64 = one(
                        c,
                        "SELECT COUNT(*) FROM phone_sends WHERE limit_key = ? AND sent_at > ?",
                        params![k, since],
                        first,
                    )?
                    .unwrap_or(0);
                    if n >= i64::from(limit) {
                        return Ok(Some(k.clone()));
                    }
                }
                changed(c, "DELETE FROM phone_sends WHERE sent_at <= ?", [since])?;
                for k in &keys {
                    changed(
                        c,
                        "INSERT INTO phone_sends (limit_key, sent_at) VALUES (?, ?)",
                        params![k, now],
                    )?;
                }
                Ok(None)
            })
            .await
    }

    async fn record_message(
        &self,
        reference: &str,
        user: Option<UserId>,
        status: &str,
        now: UnixTime,
    ) -> Result<()> {
        let (reference, status) = (reference.to_owned(), status.to_owned());
        self.group
            .write(move |c| {
                changed(
                    c,
                    "INSERT OR REPLACE INTO phone_messages (reference, user_id, status, created_at, updated_at) \
                     VALUES (?1, ?2, ?3, ?4, ?4)",
                    params![reference, user.map(|u| u.0), status, now],
                )?;
                Ok(())
            })
            .await
    }

    async fn update_message_status(
        &self,
        reference: &str,
        status: &str,
        detail: Option<&str>,
        now: UnixTime,
    ) -> Result<bool> {
        let (reference, status, detail) = (
            reference.to_owned(),
            status.to_owned(),
            detail.map(str::to_owned),
        );
        self.group
            .write(move |c| {
                // Reports arrive out of order: "delivered" or "failed" is never overwritten
                // by a late "sent".
                let n = changed(
                    c,
                    "UPDATE phone_messages SET status = ?1, detail = ?2, updated_at = ?3 \
                     WHERE reference = ?4 AND NOT (status IN ('delivered', 'failed') AND ?1 = 'sent')",
                    params![status, detail, now, reference],
                )?;
                let known: Option<i64> = one(
                    c,
                    "SELECT 1 FROM phone_messages WHERE reference = ?",
                    [&reference],
                    first,
                )?;
                Ok(n == 1 || known.is_some())
            })
            .await
    }

    async fn last_message_status(&self, user: UserId) -> Result<Option<String>> {
        self.read(|c| {
            one(
                c,
                "SELECT status FROM phone_messages WHERE user_id = ? ORDER BY created_at DESC, rowid DESC LIMIT 1",
                [user.0],
                first,
            )
        })
    }

    async fn outbox_add(&self, item: &OutboxItem) -> Result<i64> {
        let i = item.clone();
        self.group
            .write(move |c| {
                Ok(c.prepare_cached(
                    "INSERT INTO outbox (kind, reference, to_number, extension, body, state, created_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                )?
                .query_row(
                    params![i.kind, i.reference, i.to, i.extension, i.body, i.state, i.created_at],
                    |r| r.get(0),
                )?)
            })
            .await
    }

    async fn outbox_list(&self, limit: u32) -> Result<Vec<OutboxItem>> {
        let sql = format!("SELECT {OUTBOX_COLUMNS} FROM outbox ORDER BY id DESC LIMIT ?");
        self.read(|c| all(c, &sql, [limit], |r| rows::outbox_item(r)))
    }

    async fn outbox_find(&self, id: i64) -> Result<Option<OutboxItem>> {
        let sql = format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = ?");
        self.read(|c| one(c, &sql, [id], |r| rows::outbox_item(r)))
    }

    async fn outbox_answer(&self, id: i64, state: &str, now: UnixTime) -> Result<bool> {
        let state = state.to_owned();
        Ok(self
            .group
            .write(move |c| {
                changed(
                    c,
                    "UPDATE outbox SET state = ?, answered_at = ? WHERE id = ? AND kind = 'call' AND state = 'ringing'",
                    params![state, now, id],
                )
            })
            .await?
            == 1)
    }
}
