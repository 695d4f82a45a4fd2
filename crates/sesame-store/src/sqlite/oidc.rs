//! OpenID Connect records on SQLite: signing keys, clients, codes, refresh token families.

use super::{all, bad_json, changed, first, one, SqliteStore};
use crate::rows::{self, CLIENT_COLUMNS, SIGNING_KEY_COLUMNS};
use crate::{Client, NewFamily, OidcGrant, OidcStore, Redeemed, Result, Rotated, SigningKey};
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use sesame_core::{TenantId, UnixTime, UserId};

fn json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(bad_json)
}

fn grant(s: &str) -> Result<OidcGrant> {
    serde_json::from_str(s).map_err(bad_json)
}

fn revoke(c: &Connection, family: &str, now: UnixTime) -> Result<u64> {
    changed(
        c,
        "UPDATE oidc_families SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
        params![family, now],
    )
}

#[async_trait]
impl OidcStore for SqliteStore {
    async fn add_signing_key(&self, key: &SigningKey) -> Result<bool> {
        let sealed = self.key.seal(
            &crate::crypto::aad::signing_key(&key.kid),
            key.private_key.expose(),
        );
        let (kid, alg, jwk, created, retired) = (
            key.kid.clone(),
            key.alg.clone(),
            key.public_jwk.clone(),
            key.created_at,
            key.retired_at,
        );
        self.group
            .write(move |c| {
                // A second current key of the algorithm does nothing (`oidc_keys_one_current`);
                // a kid used before is still an error.
                let added = c
                    .prepare_cached(
                        "INSERT INTO oidc_keys (kid, alg, private_key, public_jwk, created_at, retired_at) \
                         VALUES (?, ?, ?, ?, ?, ?) \
                         ON CONFLICT (alg) WHERE retired_at IS NULL DO NOTHING",
                    )?
                    .execute(params![kid, alg, sealed, jwk, created, retired])
                    .map_err(super::conflict(|| format!("signing key {kid}")))?;
                Ok(added == 1)
            })
            .await
    }

    async fn replace_signing_key(&self, key: &SigningKey, now: UnixTime) -> Result<u64> {
        let sealed = self.key.seal(
            &crate::crypto::aad::signing_key(&key.kid),
            key.private_key.expose(),
        );
        let (kid, alg, jwk, created) = (
            key.kid.clone(),
            key.alg.clone(),
            key.public_jwk.clone(),
            key.created_at,
        );
        self.group
            .write(move |c| {
                let retired = changed(
                    c,
                    "UPDATE oidc_keys SET retired_at = ?2 WHERE alg = ?1 AND retired_at IS NULL",
                    params![alg, now],
                )?;
                c.prepare_cached(
                    "INSERT INTO oidc_keys (kid, alg, private_key, public_jwk, created_at, retired_at) \
                     VALUES (?, ?, ?, ?, ?, NULL)",
                )?
                .execute(params![kid, alg, sealed, jwk, created])
                .map_err(super::conflict(|| format!("signing key {kid}")))?;
                Ok(retired)
            })
            .await
    }

    async fn list_signing_keys(&self) -> Result<Vec<SigningKey>> {
        let sql = format!("SELECT {SIGNING_KEY_COLUMNS} FROM oidc_keys ORDER BY created_at, kid");
        let sealed = self.read(|c| all(c, &sql, [], |r| rows::signing_key(r)))?;
        sealed
            .into_iter()
            .map(|row| rows::open_signing_key(&self.key, row))
            .collect()
    }

    async fn remove_signing_keys_retired_before(&self, before: UnixTime) -> Result<u64> {
        self.execute(
            "DELETE FROM oidc_keys WHERE retired_at IS NOT NULL AND retired_at < ?",
            [before],
        )
        .await
    }

    async fn create_client(&self, cl: &Client) -> Result<()> {
        let (redirect, logout) = (
            json(&cl.redirect_uris)?,
            json(&cl.post_logout_redirect_uris)?,
        );
        let cl = cl.clone();
        self.group
            .write(move |c| {
                let sql = format!(
                    "INSERT INTO oidc_clients ({CLIENT_COLUMNS}) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                );
                c.prepare_cached(&sql)?
                    .execute(params![
                        cl.client_id,
                        cl.tenant.0,
                        cl.name,
                        cl.secret_hash,
                        redirect,
                        logout,
                        cl.first_party,
                        cl.require_mfa,
                        cl.id_token_alg,
                        cl.client_credentials,
                        cl.created_at,
                        cl.secret_set_at,
                    ])
                    .map_err(super::conflict(|| format!("client {}", cl.client_id)))?;
                Ok(())
            })
            .await
    }

    async fn find_client(&self, client_id: &str) -> Result<Option<Client>> {
        self.read(|c| {
            one(
                c,
                &format!("SELECT {CLIENT_COLUMNS} FROM oidc_clients WHERE client_id = ?"),
                [client_id],
                |r| rows::client(r),
            )
        })
    }

    async fn list_clients(&self, tenant: TenantId) -> Result<Vec<Client>> {
        self.read(|c| {
            all(
                c,
                &format!(
                    "SELECT {CLIENT_COLUMNS} FROM oidc_clients WHERE tenant_id = ? ORDER BY name, client_id"
                ),
                [tenant.0],
                |r| rows::client(r),
            )
        })
    }

    async fn update_client(&self, cl: &Client) -> Result<bool> {
        let (redirect, logout) = (
            json(&cl.redirect_uris)?,
            json(&cl.post_logout_redirect_uris)?,
        );
        let cl = cl.clone();
        Ok(self
            .group
            .write(move |c| {
                changed(
                    c,
                    "UPDATE oidc_clients SET name = ?2, secret_hash = ?3, redirect_uris = ?4, \
                     post_logout_redirect_uris = ?5, first_party = ?6, require_mfa = ?7, \
                     id_token_alg = ?8, client_credentials = ?9, secret_set_at = ?10 \
                     WHERE client_id = ?1",
                    params![
                        cl.client_id,
                        cl.name,
                        cl.secret_hash,
                        redirect,
                        logout,
                        cl.first_party,
                        cl.require_mfa,
                        cl.id_token_alg,
                        cl.client_credentials,
                        cl.secret_set_at,
                    ],
                )
            })
            .await?
            == 1)
    }

    async fn remove_client(&self, client_id: &str) -> Result<bool> {
        let id = client_id.to_string();
        Ok(self
            .group
            .write(move |c| changed(c, "DELETE FROM oidc_clients WHERE client_id = ?", [id]))
            .await?
            == 1)
    }

    async fn create_code(
        &self,
        code_hash: &[u8],
        grant: &OidcGrant,
        expires_at: UnixTime,
    ) -> Result<()> {
        let (hash, client, doc) = (code_hash.to_vec(), grant.client_id.clone(), json(grant)?);
        self.group
            .write(move |c| {
                changed(
                    c,
                    "INSERT INTO oidc_codes (code_hash, client_id, grant_json, expires_at) \
                     VALUES (?, ?, ?, ?)",
                    params![hash, client, doc, expires_at],
                )
            })
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
        let (hash, client, family, refresh) = (
            code_hash.to_vec(),
            client_id.to_string(),
            family.clone(),
            refresh_hash.to_vec(),
        );
        self.group
            .write(move |c| {
                let taken: Option<String> = one(
                    c,
                    "UPDATE oidc_codes SET used_at = ?3, family = ?4 \
                     WHERE code_hash = ?1 AND client_id = ?2 AND used_at IS NULL AND expires_at > ?3 \
                     RETURNING grant_json",
                    params![hash, client, now, family.id],
                    first,
                )?;
                let Some(doc) = taken else {
                    let used: Option<Option<String>> = c
                        .prepare_cached(
                            "SELECT family FROM oidc_codes \
                             WHERE code_hash = ? AND client_id = ? AND used_at IS NOT NULL",
                        )?
                        .query_row(params![hash, client], |r| r.get(0))
                        .optional()?;
                    return Ok(match used {
                        Some(issued) => {
                            if let Some(f) = issued {
                                revoke(c, &f, now)?;
                            }
                            Redeemed::Replayed
                        }
                        None => Redeemed::Unknown,
                    });
                };
                let g = grant(&doc)?;
                changed(
                    c,
                    "INSERT INTO oidc_families (id, client_id, user_id, created_at, expires_at) \
                     VALUES (?, ?, ?, ?, ?)",
                    params![family.id, client, g.user.0, now, family.expires_at],
                )?;
                changed(
                    c,
                    "INSERT INTO oidc_refresh_tokens (token_hash, family, grant_json, created_at) \
                     VALUES (?, ?, ?, ?)",
                    params![refresh, family.id, doc, now],
                )?;
                Ok(Redeemed::Issued(Box::new(g)))
            })
            .await
    }

    async fn rotate_refresh(
        &self,
        old_hash: &[u8],
        client_id: &str,
        new_hash: &[u8],
        now: UnixTime,
    ) -> Result<Rotated> {
        let (old, client, new) = (old_hash.to_vec(), client_id.to_string(), new_hash.to_vec());
        self.group
            .write(move |c| {
                let taken: Option<(String, String)> = one(
                    c,
                    "UPDATE oidc_refresh_tokens SET used_at = ?3 \
                     WHERE token_hash = ?1 AND used_at IS NULL AND family IN \
                       (SELECT id FROM oidc_families \
                        WHERE client_id = ?2 AND revoked_at IS NULL AND expires_at > ?3) \
                     RETURNING family, grant_json",
                    params![old, client, now],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                let Some((family, doc)) = taken else {
                    let used: Option<(String, Option<i64>)> = c
                        .prepare_cached(
                            "SELECT r.family, r.used_at FROM oidc_refresh_tokens r \
                             JOIN oidc_families f ON f.id = r.family \
                             WHERE r.token_hash = ? AND f.client_id = ?",
                        )?
                        .query_row(params![old, client], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()?;
                    return Ok(match used {
                        Some((family, Some(_))) => {
                            revoke(c, &family, now)?;
                            Rotated::Reused
                        }
                        _ => Rotated::Unknown,
                    });
                };
                changed(
                    c,
                    "INSERT INTO oidc_refresh_tokens (token_hash, family, grant_json, created_at) \
                     VALUES (?, ?, ?, ?)",
                    params![new, family, doc, now],
                )?;
                Ok(Rotated::Rotated {
                    grant: Box::new(grant(&doc)?),
                    family,
                })
            })
            .await
    }

    async fn family_active(&self, family: &str, now: UnixTime) -> Result<bool> {
        Ok(self
            .read(|c| {
                one(
                    c,
                    "SELECT 1 FROM oidc_families \
                     WHERE id = ? AND revoked_at IS NULL AND expires_at > ?",
                    params![family, now],
                    first::<i64>,
                )
            })?
            .is_some())
    }

    async fn revoke_family(&self, family: &str, now: UnixTime) -> Result<bool> {
        let family = family.to_string();
        Ok(self.group.write(move |c| revoke(c, &family, now)).await? == 1)
    }

    async fn revoke_refresh_token(
        &self,
        hash: &[u8],
        client_id: &str,
        now: UnixTime,
    ) -> Result<bool> {
        let (hash, client) = (hash.to_vec(), client_id.to_string());
        self.group
            .write(move |c| {
                let family: Option<String> = one(
                    c,
                    "SELECT r.family FROM oidc_refresh_tokens r \
                     JOIN oidc_families f ON f.id = r.family \
                     WHERE r.token_hash = ? AND f.client_id = ?",
                    params![hash, client],
                    first,
                )?;
                match family {
                    Some(f) => {
                        revoke(c, &f, now)?;
                        Ok(true)
                    }
                    None => Ok(false),
                }
            })
            .await
    }

    async fn revoke_user_families(&self, user: UserId, now: UnixTime) -> Result<u64> {
        self.group
            .write(move |c| {
                changed(
                    c,
                    "UPDATE oidc_families SET revoked_at = ?2 \
                     WHERE user_id = ?1 AND revoked_at IS NULL",
                    params![user.0, now],
                )
            })
            .await
    }

    async fn revoke_access_token(&self, jti: &str, expires_at: UnixTime) -> Result<()> {
        let jti = jti.to_string();
        self.group
            .write(move |c| {
                changed(
                    c,
                    "INSERT INTO oidc_revoked_tokens (jti, expires_at) VALUES (?, ?) \
                     ON CONFLICT (jti) DO NOTHING",
                    params![jti, expires_at],
                )
            })
            .await?;
        Ok(())
    }

    async fn access_token_revoked(&self, jti: &str) -> Result<bool> {
        Ok(self
            .read(|c| {
                one(
                    c,
                    "SELECT 1 FROM oidc_revoked_tokens WHERE jti = ?",
                    [jti],
                    first::<i64>,
                )
            })?
            .is_some())
    }

    async fn find_consent(&self, user: UserId, client_id: &str) -> Result<Option<String>> {
        self.read(|c| {
            one(
                c,
                "SELECT scope FROM oidc_consents WHERE user_id = ? AND client_id = ?",
                params![user.0, client_id],
                first,
            )
        })
    }

    async fn save_consent(
        &self,
        user: UserId,
        client_id: &str,
        scope: &str,
        now: UnixTime,
    ) -> Result<()> {
        let (client, scope) = (client_id.to_string(), scope.to_string());
        self.group
            .write(move |c| {
                changed(
                    c,
                    "INSERT INTO oidc_consents (user_id, client_id, scope, granted_at) \
                     VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (user_id, client_id) DO UPDATE SET scope = ?3, granted_at = ?4",
                    params![user.0, client, scope, now],
                )
            })
            .await?;
        Ok(())
    }

    async fn prune_oidc(&self, now: UnixTime) -> Result<u64> {
        self.group
            .write(move |c| {
                // A used code is kept a day past its expiry, so that a replay still revokes
                // what it issued.
                let mut n = changed(
                    c,
                    "DELETE FROM oidc_codes WHERE expires_at <= ?",
                    [now - 86_400],
                )?;
                n += changed(c, "DELETE FROM oidc_families WHERE expires_at <= ?", [now])?;
                n += changed(
                    c,
                    "DELETE FROM oidc_revoked_tokens WHERE expires_at <= ?",
                    [now],
                )?;
                Ok(n)
            })
            .await
    }
}
