//! Codes and tokens: the authorization code a signed-in person is sent back with, and what
//! the token endpoint gives for it (ID token, access token, refresh token), for a refresh
//! token, and for client credentials; checking access tokens (UserInfo, introspection) and
//! revoking them.

use super::keys::{Alg, Loaded};
use super::request::AuthRequest;
use super::{ACCESS_TOKEN_SECS, CODE_SECS, ID_TOKEN_SECS, REFRESH_SECS};
use crate::error::{Error, Kind};
use crate::service::sessions::Session;
use crate::service::{Line, Origin, Services};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use sesame_core::audit::Event;
use sesame_core::method::Amr;
use sesame_core::{UnixTime, UserId};
use sesame_store::{Client, NewFamily, OidcGrant, Redeemed, Rotated, User};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Access tokens are signed with ES256: fast to make and to check, and published in the key
/// set like the rest.
const ACCESS_ALG: Alg = Alg::Es256;
const ACCESS_TYP: &str = "at+jwt";

fn oauth(kind: Kind, code: &'static str, message: &'static str) -> Error {
    Error::new(kind, code, message)
}

fn invalid_grant(message: &'static str) -> Error {
    oauth(Kind::BadRequest, "invalid_grant", message)
}

/// What the token endpoint answers.
#[derive(Debug, serde::Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub scope: String,
}

/// The session's public name in tokens (`sid`): derived from its stored hash, so it says
/// nothing about the cookie.
pub fn sid(session: &Session) -> String {
    let d = Sha256::new()
        .chain_update(b"sid:")
        .chain_update(&session.id_hash)
        .finalize();
    URL_SAFE_NO_PAD.encode(&d[..16])
}

/// The Authentication Context Class the amr values amount to: `mfa` when two factors (or a
/// PIN-unlocked device key) were used, else `pwd`.
pub fn acr(amr: &[Amr]) -> &'static str {
    if amr.contains(&Amr::Mfa) {
        "mfa"
    } else {
        "pwd"
    }
}

fn pkce_s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// RFC 7636 §4.1: 43 to 128 characters of `[A-Za-z0-9-._~]`.
pub fn valid_pkce_value(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Issues an authorization code for the signed-in person and the checked request; the
/// person is sent back with it.
pub async fn issue_code(
    svc: &Services,
    origin: &Origin,
    session: &Session,
    client: &Client,
    req: &AuthRequest,
) -> Result<String, Error> {
    let code = crate::token::random();
    let grant = OidcGrant {
        tenant: session.user.tenant,
        user: session.user.id,
        client_id: client.client_id.clone(),
        scope: req.scope.clone(),
        redirect_uri: req.redirect_uri.clone(),
        nonce: req.nonce.clone(),
        code_challenge: Some(req.code_challenge.clone()),
        auth_time: session.record.auth_time,
        amr: session
            .record
            .amr
            .iter()
            .map(|a| a.as_str().to_string())
            .collect(),
        acr: acr(&session.record.amr).into(),
        sid: Some(sid(session)),
    };
    svc.store
        .create_code(&crate::token::hash(&code), &grant, svc.now() + CODE_SECS)
        .await?;
    svc.audit(
        origin,
        Line::of(&session.user, Event::AppSignIn).reason(client.name.clone()),
    )
    .await;
    Ok(code)
}

/// Everything that makes the tokens of one grant.
struct Minter<'a> {
    svc: &'a Services,
    keys: Arc<Loaded>,
    issuer: &'a str,
    now: UnixTime,
}

impl Minter<'_> {
    fn access_token(
        &self,
        sub: &str,
        client: &Client,
        scope: &str,
        family: Option<&str>,
    ) -> Result<String, Error> {
        let key = self
            .keys
            .signer(ACCESS_ALG)
            .ok_or_else(|| Error::internal("no access token key"))?;
        let mut claims = json!({
            "iss": self.issuer,
            "sub": sub,
            "aud": self.issuer,
            "client_id": client.client_id,
            "scope": scope,
            "iat": self.now,
            "exp": self.now + ACCESS_TOKEN_SECS,
            "jti": crate::token::random(),
        });
        if let Some(f) = family {
            claims["fam"] = json!(f);
        }
        Ok(key.sign(ACCESS_TYP, &claims))
    }

    fn id_token(&self, user: &User, client: &Client, g: &OidcGrant) -> Result<String, Error> {
        let alg = Alg::parse(&client.id_token_alg).unwrap_or(Alg::Rs256);
        let key = self
            .keys
            .signer(alg)
            .ok_or_else(|| Error::internal("no ID token key"))?;
        let mut claims = json!({
            "iss": self.issuer,
            "sub": user.id.0.to_string(),
            "aud": client.client_id,
            "azp": client.client_id,
            "iat": self.now,
            "exp": self.now + ID_TOKEN_SECS,
            "auth_time": g.auth_time,
            "amr": g.amr,
            "acr": g.acr,
        });
        if let Some(n) = &g.nonce {
            claims["nonce"] = json!(n);
        }
        if let Some(s) = &g.sid {
            claims["sid"] = json!(s);
        }
        if g.scope.split(' ').any(|s| s == "profile") {
            claims["name"] = json!(user.display_name);
            claims["preferred_username"] = json!(user.username);
        }
        Ok(key.sign("JWT", &claims))
    }

    async fn for_grant(
        &self,
        client: &Client,
        g: &OidcGrant,
        family: &str,
        refresh: String,
    ) -> Result<TokenResponse, Error> {
        // The user may have been removed or blocked since: nothing more is issued for them.
        let user = match self.svc.store.find_user(g.user).await? {
            Some(u) if !u.is_blocked => u,
            _ => {
                self.svc.store.revoke_family(family, self.now).await?;
                return Err(invalid_grant(
                    "The user of this grant can no longer sign in.",
                ));
            }
        };
        let sub = user.id.0.to_string();
        Ok(TokenResponse {
            access_token: self.access_token(&sub, client, &g.scope, Some(family))?,
            token_type: "Bearer",
            expires_in: ACCESS_TOKEN_SECS,
            id_token: Some(self.id_token(&user, client, g)?),
            refresh_token: Some(refresh),
            scope: g.scope.clone(),
        })
    }
}

async fn minter<'a>(svc: &'a Services, issuer: &'a str) -> Result<Minter<'a>, Error> {
    let now = svc.now();
    let keys = svc.oidc.keys.current(&*svc.store, now).await?;
    Ok(Minter {
        svc,
        keys,
        issuer,
        now,
    })
}

/// `grant_type=authorization_code`.
pub async fn exchange_code(
    svc: &Services,
    origin: &Origin,
    issuer: &str,
    client: &Client,
    code: &str,
    redirect_uri: &str,
    verifier: Option<&str>,
) -> Result<TokenResponse, Error> {
    let m = minter(svc, issuer).await?;
    let family = NewFamily {
        id: crate::token::random(),
        expires_at: m.now + REFRESH_SECS,
    };
    let refresh = crate::token::random();
    let redeemed = svc
        .store
        .redeem_code(
            &crate::token::hash(code),
            &client.client_id,
            &family,
            &crate::token::hash(&refresh),
            m.now,
        )
        .await?;
    let g = match redeemed {
        Redeemed::Issued(g) => g,
        Redeemed::Replayed => {
            tracing::warn!(client = %client.client_id, "an authorization code was used twice");
            replay_audit(svc, origin, client, "authorization code").await;
            return Err(invalid_grant("This authorization code was already used."));
        }
        Redeemed::Unknown => {
            return Err(invalid_grant(
                "The authorization code is not valid (or expired).",
            ))
        }
    };
    // Checked after the code is taken, so a wrong guess still uses the code up: an attacker
    // with a stolen code gets one try at the verifier.
    if g.redirect_uri != redirect_uri {
        svc.store.revoke_family(&family.id, m.now).await?;
        return Err(invalid_grant(
            "The redirect URI does not match the authorization request.",
        ));
    }
    let verified = match (&g.code_challenge, verifier) {
        (Some(challenge), Some(v)) => valid_pkce_value(v) && pkce_s256(v) == *challenge,
        _ => false,
    };
    if !verified {
        svc.store.revoke_family(&family.id, m.now).await?;
        return Err(invalid_grant("The PKCE code verifier is missing or wrong."));
    }
    m.for_grant(client, &g, &family.id, refresh).await
}

async fn replay_audit(svc: &Services, origin: &Origin, client: &Client, what: &str) {
    let line = Line::named(client.tenant, None, "", Event::TokenReplay).failed(format!(
        "{what} used twice by {} ({}): revoked what it issued",
        client.name, client.client_id
    ));
    svc.audit(origin, line).await;
}

/// `grant_type=refresh_token`: a new refresh token replaces the one presented.
pub async fn refresh(
    svc: &Services,
    origin: &Origin,
    issuer: &str,
    client: &Client,
    token: &str,
) -> Result<TokenResponse, Error> {
    let m = minter(svc, issuer).await?;
    let next = crate::token::random();
    match svc
        .store
        .rotate_refresh(
            &crate::token::hash(token),
            &client.client_id,
            &crate::token::hash(&next),
            m.now,
        )
        .await?
    {
        Rotated::Rotated { grant, family } => m.for_grant(client, &grant, &family, next).await,
        Rotated::Reused => {
            tracing::warn!(client = %client.client_id, "a refresh token was used twice");
            replay_audit(svc, origin, client, "refresh token").await;
            Err(invalid_grant("This refresh token was already used."))
        }
        Rotated::Unknown => Err(invalid_grant(
            "The refresh token is not valid (or expired).",
        )),
    }
}

/// `grant_type=client_credentials`: the application acting as itself.
pub async fn client_credentials(
    svc: &Services,
    issuer: &str,
    client: &Client,
    scope: Option<&str>,
) -> Result<TokenResponse, Error> {
    if !client.client_credentials || client.secret_hash.is_none() {
        return Err(oauth(
            Kind::BadRequest,
            "unauthorized_client",
            "This client may not use client credentials.",
        ));
    }
    // No user, so none of the OpenID scopes apply.
    let scope = scope
        .unwrap_or("")
        .split(' ')
        .filter(|s| !s.is_empty() && !super::SCOPES.contains(s))
        .collect::<Vec<_>>()
        .join(" ");
    let m = minter(svc, issuer).await?;
    Ok(TokenResponse {
        access_token: m.access_token(&client.client_id, client, &scope, None)?,
        token_type: "Bearer",
        expires_in: ACCESS_TOKEN_SECS,
        id_token: None,
        refresh_token: None,
        scope,
    })
}

/// An access token that checks out: signed by Sesame, for this issuer, unexpired, not revoked.
#[derive(Debug, Clone)]
pub struct Access {
    pub claims: Value,
    pub user: Option<UserId>,
    pub jti: String,
    pub exp: UnixTime,
}

/// Checks an access token; None if it does not check out.
pub async fn check_access_token(
    svc: &Services,
    issuer: &str,
    token: &str,
) -> Result<Option<Access>, Error> {
    let now = svc.now();
    let keys = svc.oidc.keys.current(&*svc.store, now).await?;
    let Some(claims) = keys.verify(token, &[ACCESS_ALG], ACCESS_TYP, now) else {
        return Ok(None);
    };
    let exp = claims["exp"].as_i64().unwrap_or(0);
    let jti = claims["jti"].as_str().unwrap_or("").to_string();
    if claims["iss"] != issuer || exp <= now || jti.is_empty() {
        return Ok(None);
    }
    if svc.store.access_token_revoked(&jti).await? {
        return Ok(None);
    }
    if let Some(f) = claims["fam"].as_str() {
        if !svc.store.family_active(f, now).await? {
            return Ok(None);
        }
    }
    let user = claims["fam"]
        .as_str()
        .and(claims["sub"].as_str())
        .and_then(|s| s.parse().ok())
        .map(UserId);
    Ok(Some(Access {
        claims,
        user,
        jti,
        exp,
    }))
}

/// RFC 7009: revokes a refresh token (its whole family) or an access token of `client`.
/// Unknown tokens are not an error (the answer must not tell).
pub async fn revoke(
    svc: &Services,
    issuer: &str,
    client: &Client,
    token: &str,
) -> Result<(), Error> {
    let now = svc.now();
    if svc
        .store
        .revoke_refresh_token(&crate::token::hash(token), &client.client_id, now)
        .await?
    {
        return Ok(());
    }
    if let Some(a) = check_access_token(svc, issuer, token).await? {
        if a.claims["client_id"] == client.client_id.as_str() {
            svc.store.revoke_access_token(&a.jti, a.exp).await?;
            if let Some(f) = a.claims["fam"].as_str() {
                svc.store.revoke_family(f, now).await?;
            }
        }
    }
    Ok(())
}

/// RFC 7662: what a resource server (a confidential client) may know about a token.
pub async fn introspect(svc: &Services, issuer: &str, token: &str) -> Result<Value, Error> {
    let Some(a) = check_access_token(svc, issuer, token).await? else {
        return Ok(json!({ "active": false }));
    };
    let c = &a.claims;
    let mut out = json!({
        "active": true,
        "token_type": "Bearer",
        "scope": c["scope"],
        "client_id": c["client_id"],
        "sub": c["sub"],
        "aud": c["aud"],
        "iss": c["iss"],
        "iat": c["iat"],
        "exp": c["exp"],
        "jti": c["jti"],
    });
    if let Some(user) = a.user {
        // A removed or blocked user's tokens are no longer active, whatever their expiry.
        match svc.store.find_user(user).await? {
            Some(u) if !u.is_blocked => out["username"] = json!(u.username),
            _ => return Ok(json!({ "active": false })),
        }
    }
    Ok(out)
}

/// OpenID Connect UserInfo for a checked access token of a user.
pub async fn userinfo(svc: &Services, access: &Access) -> Result<Option<Value>, Error> {
    let Some(user) = access.user else {
        return Ok(None);
    };
    let Some(u) = svc.store.find_user(user).await? else {
        return Ok(None);
    };
    if u.is_blocked {
        return Ok(None);
    }
    let mut out = json!({ "sub": u.id.0.to_string() });
    let scope = access.claims["scope"].as_str().unwrap_or("");
    if scope.split(' ').any(|s| s == "profile") {
        out["name"] = json!(u.display_name);
        out["preferred_username"] = json!(u.username);
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc_7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(valid_pkce_value(verifier));
        assert_eq!(
            pkce_s256(verifier),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
