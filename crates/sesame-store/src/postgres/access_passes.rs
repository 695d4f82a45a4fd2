//! Temporary Access Passes.

use super::{exec, PgStore};
use crate::{AccessPass, AccessPassStore, Result};
use async_trait::async_trait;
use sesame_core::{UnixTime, UserId};

#[async_trait]
impl AccessPassStore for PgStore {
    async fn create_access_pass(
        &self,
        user: UserId,
        pass_hash: &[u8],
        one_time: bool,
        now: UnixTime,
        expires_at: UnixTime,
    ) -> Result<()> {
        self.exec(
            "INSERT INTO access_passes (user_id, pass_hash, one_time, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (user_id) DO UPDATE SET pass_hash = excluded.pass_hash, \
             one_time = excluded.one_time, created_at = excluded.created_at, \
             expires_at = excluded.expires_at, used_at = NULL",
            &[&user.0, &pass_hash, &one_time, &now, &expires_at],
        )
        .await?;
        Ok(())
    }

    async fn find_access_pass(&self, user: UserId, now: UnixTime) -> Result<Option<AccessPass>> {
        self.one(
            "SELECT one_time, created_at, expires_at, used_at FROM access_passes \
             WHERE user_id = $1 AND expires_at > $2",
            &[&user.0, &now],
            |r| {
                Ok(AccessPass {
                    one_time: r.try_get(0)?,
                    created_at: r.try_get(1)?,
                    expires_at: r.try_get(2)?,
                    used_at: r.try_get(3)?,
                })
            },
        )
        .await
    }

    async fn use_access_pass(&self, user: UserId, pass_hash: &[u8], now: UnixTime) -> Result<bool> {
        write!(self, |tx| {
            // One statement each, so that racing uses of a one-time pass have one winner: the
            // loser's DELETE waits for the winner's row lock, then finds no row.
            let taken = exec(
                &tx,
                "DELETE FROM access_passes WHERE user_id = $1 AND pass_hash = $2 AND one_time AND expires_at > $3",
                &[&user.0, &pass_hash, &now],
            )
            .await?;
            if taken == 1 {
                return Ok(true);
            }
            let used = exec(
                &tx,
                "UPDATE access_passes SET used_at = $3 WHERE user_id = $1 AND pass_hash = $2 AND NOT one_time AND expires_at > $3",
                &[&user.0, &pass_hash, &now],
            )
            .await?;
            Ok(used == 1)
        })
    }

    async fn revoke_access_pass(&self, user: UserId) -> Result<bool> {
        Ok(self
            .exec("DELETE FROM access_passes WHERE user_id = $1", &[&user.0])
            .await?
            == 1)
    }
}
