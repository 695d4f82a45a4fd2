//! Wrong-password counters by scope, on PostgreSQL.

use super::{exec, PgStore};
use crate::{GuessStore, Result};
use async_trait::async_trait;
use sesame_core::UnixTime;

fn count(n: i64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// `prefix` as a LIKE pattern matching keys that start with it (keys may hold `%` and `_`:
/// account names are typed by anyone).
fn starts_with(prefix: &str) -> String {
    let mut p = String::with_capacity(prefix.len() + 1);
    for ch in prefix.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(ch);
    }
    p.push('%');
    p
}

#[async_trait]
impl GuessStore for PgStore {
    async fn find_guesses(&self, key: &str) -> Result<(u32, Option<UnixTime>)> {
        let row: Option<(i64, i64)> = self
            .one(
                "SELECT failures, last_failure_at FROM password_guesses WHERE scope = $1",
                &[&key],
                |r| Ok((r.try_get(0)?, r.try_get(1)?)),
            )
            .await?;
        Ok(row.map_or((0, None), |(f, last)| (count(f), Some(last))))
    }

    async fn set_guesses_if(&self, key: &str, seen: u32, to: u32, now: UnixTime) -> Result<bool> {
        // A key with no row counts as 0; the first wrong password creates it.
        let sql = if seen == 0 {
            "INSERT INTO password_guesses (scope, failures, last_failure_at) VALUES ($1, $2, $3) \
             ON CONFLICT (scope) DO UPDATE SET failures = $2, last_failure_at = $3 \
             WHERE password_guesses.failures = $4"
        } else {
            "UPDATE password_guesses SET failures = $2, last_failure_at = $3 \
             WHERE scope = $1 AND failures = $4"
        };
        Ok(self
            .exec(sql, &[&key, &i64::from(to), &now, &i64::from(seen)])
            .await?
            == 1)
    }

    async fn clear_guesses(&self, keys: &[String], prefixes: &[String]) -> Result<u64> {
        let patterns: Vec<String> = prefixes.iter().map(|p| starts_with(p)).collect();
        write!(self, |tx| {
            let mut n = 0;
            for k in keys {
                n += exec(&tx, "DELETE FROM password_guesses WHERE scope = $1", &[k]).await?;
            }
            for p in &patterns {
                // E'\\' is one backslash whatever standard_conforming_strings says.
                n += exec(
                    &tx,
                    "DELETE FROM password_guesses WHERE scope LIKE $1 ESCAPE E'\\\\'",
                    &[p],
                )
                .await?;
            }
            Ok(n)
        })
    }

    async fn list_guesses(&self, prefix: &str) -> Result<Vec<(String, u32, UnixTime)>> {
        let pattern = starts_with(prefix);
        self.all(
            "SELECT scope, failures, last_failure_at FROM password_guesses \
             WHERE scope LIKE $1 ESCAPE E'\\\\' ORDER BY last_failure_at DESC",
            &[&pattern],
            |r| Ok((r.try_get(0)?, count(r.try_get(1)?), r.try_get(2)?)),
        )
        .await
    }

    async fn refund_guess(&self, key: &str) -> Result<()> {
        self.exec(
            "UPDATE password_guesses SET failures = failures - 1 WHERE scope = $1 AND failures > 0",
            &[&key],
        )
        .await?;
        Ok(())
    }

    async fn prune_guesses(&self, before: UnixTime, keep_from: u32) -> Result<u64> {
        self.exec(
            "DELETE FROM password_guesses WHERE last_failure_at < $1 AND failures < $2",
            &[&before, &i64::from(keep_from)],
        )
        .await
    }
}
