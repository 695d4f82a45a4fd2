//! OpenID Connect records on PostgreSQL: signing keys, clients, codes, refresh token families.

use super::{bad_json, conflict, exec, first, one, retrying, PgStore};
use crate::rows::{self, CLIENT_COLUMNS, SIGNING_KEY_COLUMNS};
use crate::{Client, NewFamily, OidcGrant, OidcStore, Redeemed, Result, Rotated, SigningKey};
use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use sesame_core::{TenantId, UnixTime, UserId};

fn json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(bad_json)
}

fn grant(s: &str) -> Result<OidcGrant> {
    serde_json::from_str(s).map_err(bad_json)
}

async fn revoke<C: GenericClient>(c: &C, family: &str, now: UnixTime) -> Result<u64> {
    exec(
        c,
        "UPDATE oidc_families SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
        &[&family, &now],
    )
    .await
}

#[async_trait]
impl OidcStore for PgStore {
    async fn add_signing_key(&self, key: &SigningKey) -> Result<bool> {
        let sealed = self.key.seal(
            &crate::crypto::aad::signing_key(&key.kid),
            key.private_key.expose(),
        );
        let added = retrying(|| async {
            let c = self.conn().await?;
            // Two nodes making their first key of an algorithm at once: the unique index
            // `oidc_keys_one_current` lets one in; the other's insert does nothing (it waits
            // for the first to commit, then finds its row). A kid used before is still an error.
            let st = c
                .prepare_cached(
                    "INSERT INTO oidc_keys (kid, alg, private_key, public_jwk, created_at, retired_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (alg) WHERE retired_at IS NULL DO NOTHING",
                )
                .await?;
            c.execute(
                &st,
                &[
                    &key.kid,
                    &key.alg,
                    &sealed,
                    &key.public_jwk,
                    &key.created_at,
                    &key.retired_at,
                ],
            )
            .await
            .map_err(conflict(|| format!("signing key {}", key.kid)))
        })
        .await?;
        Ok(added == 1)
    }

    async fn replace_signing_key(&self, key: &SigningKey, now: UnixTime) -> Result<u64> {
        let sealed = self.key.seal(
            &crate::crypto::aad::signing_key(&key.kid),
            key.private_key.expose(),
        );
        let sealed = &sealed;
        write!(self, |tx| {
            // Two rotations of one algorithm at once take turns: the second then retires the
            // first one's new key instead of failing on the one-current-key index.
            exec(
                &tx,
                "SELECT pg_advisory_xact_lock(hashtext('sesame:oidc-key:' || $1))",
                &[&key.alg],
            )
            .await?;
            let retired = exec(
                &tx,
                "UPDATE oidc_keys SET retired_at = $2 WHERE alg = $1 AND retired_at IS NULL",
                &[&key.alg, &now],
            )
            .await?;
            let st = tx
                .prepare_cached(
                    "INSERT INTO oidc_keys (kid, alg, private_key, public_jwk, created_at, retired_at) \
                     VALUES ($1, $2, $3, $4, $5, NULL)",
                )
                .await?;
            tx.execute(
                &st,
                &[&key.kid, &key.alg, sealed, &key.public_jwk, &key.created_at],
            )
            .await
            .map_err(conflict(|| format!("signing key {}", key.kid)))?;
            Ok(retired)
        })
    }

    async fn list_signing_keys(&self) -> Result<Vec<SigningKey>> {
        // COLLATE "C": byte order, as SQLite sorts, whatever the database's locale.
        let sql = format!(
            "SELECT {SIGNING_KEY_COLUMNS} FROM oidc_keys ORDER BY created_at, kid COLLATE \"C\""
        );
        let sealed = self.all(&sql, &[], rows::signing_key).await?;
        sealed
            .into_iter()
            .map(|row| rows::open_signing_key(&self.key, row))
            .collect()
    }

    async fn remove_signing_keys_retired_before(&self, before: UnixTime) -> Result<u64> {
        self.exec(
            "DELETE FROM oidc_keys WHERE retired_at IS NOT NULL AND retired_at < $1",
            &[&before],
        )
        .await
    }

    async fn create_client(&self, cl: &Client) -> Result<()> {
        let (redirect, logout) = (
            json(&cl.redirect_uris)?,
            json(&cl.post_logout_redirect_uris)?,
        );
        let sql = format!(
            "INSERT INTO oidc_clients ({CLIENT_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        );
        retrying(|| async {
            let c = self.conn().await?;
            let st = c.prepare_cached(&sql).await?;
            c.execute(
                &st,
                &[
                    &cl.client_id,
                    &cl.tenant.0,
                    &cl.name,
                    &cl.secret_hash,
                    &redirect,
                    &logout,
                    &cl.first_party,
                    &cl.require_mfa,
                    &cl.id_token_alg,
                    &cl.client_credentials,
                    &cl.created_at,
                    &cl.secret_set_at,
                ],
            )
            .await
            .map_err(conflict(|| format!("client {}", cl.client_id)))
        })
        .await?;
        Ok(())
    }

    async fn find_client(&self, client_id: &str) -> Result<Option<Client>> {
        self.one(
            &format!("SELECT {CLIENT_COLUMNS} FROM oidc_clients WHERE client_id = $1"),
            &[&client_id],
            rows::client,
        )
        .await
    }

    async fn list_clients(&self, tenant: TenantId) -> Result<Vec<Client>> {
        self.all(
            &format!(
                "SELECT {CLIENT_COLUMNS} FROM oidc_clients WHERE tenant_id = $1 \
                 ORDER BY name COLLATE \"C\", client_id COLLATE \"C\""
            ),
            &[&tenant.0],
            rows::client,
        )
        .await
    }

    async fn update_client(&self, cl: &Client) -> Result<bool> {
        let (redirect, logout) = (
            json(&cl.redirect_uris)?,
            json(&cl.post_logout_redirect_uris)?,
        );
        Ok(self
            .exec(
                "UPDATE oidc_clients SET name = $2, secret_hash = $3, redirect_uris = $4, \
                 post_logout_redirect_uris = $5, first_party = $6, require_mfa = $7, \
                 id_token_alg = $8, client_credentials = $9, secret_set_at = $10 \
                 WHERE client_id = $1",
                &[
                    &cl.client_id,
                    &cl.name,
                    &cl.secret_hash,
                    &redirect,
                    &logout,
                    &cl.first_party,
                    &cl.require_mfa,
                    &cl.id_token_alg,
                    &cl.client_credentials,
                    &cl.secret_set_at,
                ],
            )
            .await?
            == 1)
    }

    async fn remove_client(&self, client_id: &str) -> Result<bool> {
        Ok(self
            .exec(
                "DELETE FROM oidc_clients WHERE client_id = $1",
                &[&client_id],
            )
            .await?
            == 1)
    }

    async fn create_code(
        &self,
        code_hash: &[u8],
        grant: &OidcGrant,
        expires_at: UnixTime,
    ) -> Result<()> {
        let doc = json(grant)?;
        self.exec(
            "INSERT INTO oidc_codes (code_hash, client_id, grant_json, expires_at) \
             VALUES ($1, $2, $3, $4)",
            &[&code_hash, &grant.client_id, &doc, &expires_at],
        )
        .await?;
        Ok(())
    }

    async fn redeem_code(
        &self,
        code_hash: &[u8],
        client_id: &str,
        family: &NewFamily,
        refresh_hash: &[u8],
        now: UnixTime,
    ) -> Result<Redeemed> {
        write!(self, |tx| {
            // The single-use point: a racing redemption waits for this row's lock, then finds
            // the code used (and, in its next statement, what this one issued).
            let taken: Option<String> = one(
                &tx,
                "UPDATE oidc_codes SET used_at = $3, family = $4 \
                 WHERE code_hash = $1 AND client_id = $2 AND used_at IS NULL AND expires_at > $3 \
                 RETURNING grant_json",
                &[&code_hash, &client_id, &now, &family.id],
                first,
            )
            .await?;
            let Some(doc) = taken else {
                let used: Option<Option<String>> = one(
                    &tx,
                    "SELECT family FROM oidc_codes \
                     WHERE code_hash = $1 AND client_id = $2 AND used_at IS NOT NULL",
                    &[&code_hash, &client_id],
                    first,
                )
                .await?;
                return Ok(match used {
                    Some(issued) => {
                        if let Some(f) = issued {
                            revoke(&tx, &f, now).await?;
                        }
                        Redeemed::Replayed
                    }
                    None => Redeemed::Unknown,
                });
            };
            let g = grant(&doc)?;
            exec(
                &tx,
                "INSERT INTO oidc_families (id, client_id, user_id, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5)",
                &[&family.id, &client_id, &g.user.0, &now, &family.expires_at],
            )
            .await?;
            exec(
                &tx,
                "INSERT INTO oidc_refresh_tokens (token_hash, family, grant_json, created_at) \
                 VALUES ($1, $2, $3, $4)",
                &[&refresh_hash, &family.id, &doc, &now],
            )
            .await?;
            Ok(Redeemed::Issued(Box::new(g)))
        })
    }

    async fn rotate_refresh(
        &self,
        old_hash: &[u8],
        client_id: &str,
        new_hash: &[u8],
        now: UnixTime,
    ) -> Result<Rotated> {
        write!(self, |tx| {
            // The single-use point, as for a code.
            let taken: Option<(String, String)> = one(
                &tx,
                "UPDATE oidc_refresh_tokens SET used_at = $3 \
                 WHERE token_hash = $1 AND used_at IS NULL AND family IN \
                   (SELECT id FROM oidc_families \
                    WHERE client_id = $2 AND revoked_at IS NULL AND expires_at > $3) \
                 RETURNING family, grant_json",
                &[&old_hash, &client_id, &now],
                |r| Ok((r.try_get(0)?, r.try_get(1)?)),
            )
            .await?;
            let Some((family, doc)) = taken else {
                let used: Option<(String, Option<i64>)> = one(
                    &tx,
                    "SELECT r.family, r.used_at FROM oidc_refresh_tokens r \
                     JOIN oidc_families f ON f.id = r.family \
                     WHERE r.token_hash = $1 AND f.client_id = $2",
                    &[&old_hash, &client_id],
                    |r| Ok((r.try_get(0)?, r.try_get(1)?)),
                )
                .await?;
                return Ok(match used {
                    Some((family, Some(_))) => {
                        revoke(&tx, &family, now).await?;
                        Rotated::Reused
                    }
                    _ => Rotated::Unknown,
                });
            };
            exec(
                &tx,
                "INSERT INTO oidc_refresh_tokens (token_hash, family, grant_json, created_at) \
                 VALUES ($1, $2, $3, $4)",
                &[&new_hash, &family, &doc, &now],
            )
            .await?;
            Ok(Rotated::Rotated {
                grant: Box::new(grant(&doc)?),
                family,
            })
        })
    }

    async fn family_active(&self, family: &str, now: UnixTime) -> Result<bool> {
        Ok(self
            .one(
                "SELECT 1 FROM oidc_families \
                 WHERE id = $1 AND revoked_at IS NULL AND expires_at > $2",
                &[&family, &now],
                first::<i32>,
            )
            .await?
            .is_some())
    }

    async fn revoke_family(&self, family: &str, now: UnixTime) -> Result<bool> {
        Ok(retrying(|| async { revoke(&self.conn().await?, family, now).await }).await? == 1)
    }

    async fn revoke_refresh_token(
        &self,
        hash: &[u8],
        client_id: &str,
        now: UnixTime,
    ) -> Result<bool> {
        write!(self, |tx| {
            let family: Option<String> = one(
                &tx,
                "SELECT r.family FROM oidc_refresh_tokens r \
                 JOIN oidc_families f ON f.id = r.family \
                 WHERE r.token_hash = $1 AND f.client_id = $2",
                &[&hash, &client_id],
                first,
            )
            .await?;
            match family {
                Some(f) => {
                    revoke(&tx, &f, now).await?;
                    Ok(true)
                }
                None => Ok(false),
            }
        })
    }

    async fn revoke_user_families(&self, user: UserId, now: UnixTime) -> Result<u64> {
        self.exec(
            "UPDATE oidc_families SET revoked_at = $2 \
             WHERE user_id = $1 AND revoked_at IS NULL",
            &[&user.0, &now],
        )
        .await
    }

    async fn revoke_access_token(&self, jti: &str, expires_at: UnixTime) -> Result<()> {
        self.exec(
            "INSERT INTO oidc_revoked_tokens (jti, expires_at) VALUES ($1, $2) \
             ON CONFLICT (jti) DO NOTHING",
            &[&jti, &expires_at],
        )
        .await?;
        Ok(())
    }

    async fn access_token_revoked(&self, jti: &str) -> Result<bool> {
        Ok(self
            .one(
                "SELECT 1 FROM oidc_revoked_tokens WHERE jti = $1",
                &[&jti],
                first::<i32>,
            )
            .await?
            .is_some())
    }

    async fn find_consent(&self, user: UserId, client_id: &str) -> Result<Option<String>> {
        self.one(
            "SELECT scope FROM oidc_consents WHERE user_id = $1 AND client_id = $2",
            &[&user.0, &client_id],
            first,
        )
        .await
    }

    async fn save_consent(
        &self,
        user: UserId,
        client_id: &str,
        scope: &str,
        now: UnixTime,
    ) -> Result<()> {
        self.exec(
            "INSERT INTO oidc_consents (user_id, client_id, scope, granted_at) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id, client_id) DO UPDATE SET scope = excluded.scope, \
             granted_at = excluded.granted_at",
            &[&user.0, &client_id, &scope, &now],
        )
        .await?;
        Ok(())
    }

    async fn prune_oidc(&self, now: UnixTime) -> Result<u64> {
        write!(self, |tx| {
            // A used code is kept a day past its expiry, so that a replay still revokes
            // what it issued.
            let mut n = exec(
                &tx,
                "DELETE FROM oidc_codes WHERE expires_at <= $1",
                &[&(now - 86_400)],
            )
            .await?;
            n += exec(
                &tx,
                "DELETE FROM oidc_families WHERE expires_at <= $1",
                &[&now],
            )
            .await?;
            n += exec(
                &tx,
                "DELETE FROM oidc_revoked_tokens WHERE expires_at <= $1",
                &[&now],
            )
            .await?;
            Ok(n)
        })
    }
}
