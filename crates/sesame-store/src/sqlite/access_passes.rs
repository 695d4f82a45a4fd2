//! Temporary Access Passes.

use super::{changed, one, SqliteStore};
use crate::{AccessPass, AccessPassStore, Result};
use async_trait::async_trait;
use rusqlite::params;
use sesame_core::{UnixTime, UserId};

#[async_trait]
impl AccessPassStore for SqliteStore {
    async fn create_access_pass(
        &self,
        user: UserId,
        pass_hash: &[u8],
        one_time: bool,
        now: UnixTime,
        expires_at: UnixTime,
    ) -> Result<()> {
        let hash = pass_hash.to_vec();
        self.group
            .write(move |c| {
                changed(
                    c,
                    "INSERT OR REPLACE INTO access_passes (user_id, pass_hash, one_time, created_at, expires_at) \
                     VALUES (?, ?, ?, ?, ?)",
                    params![user.0, hash, one_time, now, expires_at],
                )?;
                Ok(())
            })
            .await
    }

    async fn find_access_pass(&self, user: UserId, now: UnixTime) -> Result<Option<AccessPass>> {
        self.read(|c| {
            one(
                c,
                "SELECT one_time, created_at, expires_at, used_at FROM access_passes \
                 WHERE user_id = ? AND expires_at > ?",
                params![user.0, now],
                |r| {
                    Ok(AccessPass {
                        one_time: r.get(0)?,
                        created_at: r.get(1)?,
                        expires_at: r.get(2)?,
                        used_at: r.get(3)?,
                    })
                },
            )
        })
    }

    async fn use_access_pass(&self, user: UserId, pass_hash: &[u8], now: UnixTime) -> Result<bool> {
        let hash = pass_hash.to_vec();
        self.group
            .write(move |c| {
                // One statement each, so that racing uses of a one-time pass have one winner.
                let taken = changed(
                    c,
                    "DELETE FROM access_passes WHERE user_id = ? AND pass_hash = ? AND one_time = 1 AND expires_at > ?",
                    params![user.0, hash, now],
                )?;
                if taken == 1 {
                    return Ok(true);
                }
                let used = changed(
                    c,
                    "UPDATE access_passes SET used_at = ?3 WHERE user_id = ?1 AND pass_hash = ?2 AND one_time = 0 AND expires_at > ?3",
                    params![user.0, hash, now],
                )?;
                Ok(used == 1)
            })
            .await
    }

    async fn revoke_access_pass(&self, user: UserId) -> Result<bool> {
        Ok(self
            .group
            .write(move |c| changed(c, "DELETE FROM access_passes WHERE user_id = ?", [user.0]))
            .await?
            == 1)
    }
}
