//! Applications that sign their users in through Sesame: registering them, their secrets, and
//! checking who is calling the token endpoint.

use super::keys::Alg;
use crate::service::{Admin, Services};
use sesame_core::audit::Event;
use sesame_core::TenantId;
use sesame_store::{Client, StoreError};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// Longest application name, in characters.
pub const MAX_NAME: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Invalid(String),
    #[error("no application with client id {0:?}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an administrator registers.
#[derive(Debug, Clone)]
pub struct NewClient {
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    /// A public client (a single-page or native app) has no secret and must use PKCE.
    pub public: bool,
    pub first_party: bool,
    pub require_mfa: bool,
    pub id_token_alg: Alg,
    pub client_credentials: bool,
}

/// A registered client and, once, its secret.
#[derive(Debug)]
pub struct Created {
    pub client: Client,
    pub secret: Option<String>,
}

fn secret_hash(secret: &str) -> Vec<u8> {
    // A secret is 256 random bits: a fast hash is as strong as a slow one here, and the
    // token endpoint stays fast.
    Sha256::digest(secret.as_bytes()).to_vec()
}

fn new_secret() -> String {
    crate::token::random()
}

fn new_client_id() -> String {
    let mut b = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
    data_encoding::HEXLOWER.encode(&b)
}

/// Checks a redirect URI for registration. It is matched exactly later, so what is refused
/// here is what can never be safe: no fragment (RFC 6749 §3.1.2), no user information (an
/// `@` that hides the real host), and plain `http` only to this machine (RFC 8252 §7.3).
/// Native apps may use a private-use scheme with a dot (`com.example.app:/callback`).
pub fn check_redirect_uri(uri: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("redirect URI {uri:?}: {why}"));
    if uri.len() > 512 || uri.chars().any(|c| !c.is_ascii_graphic()) {
        return bad("must be at most 512 printable ASCII characters, without spaces");
    }
    let url = match url::Url::parse(uri) {
        Ok(u) => u,
        Err(e) => return bad(&format!("is not an absolute URL ({e})")),
    };
    if url.fragment().is_some() || uri.contains('#') {
        return bad("cannot have a fragment (#...)");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return bad("cannot name a user (user@host)");
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" => match url.host() {
            Some(url::Host::Ipv4(a)) if a.is_loopback() => Ok(()),
            Some(url::Host::Ipv6(a)) if a.is_loopback() => Ok(()),
            Some(url::Host::Domain("localhost")) => Ok(()),
            _ => bad("must use https (plain http only at localhost or 127.0.0.1)"),
        },
        "javascript" | "data" | "file" | "vbscript" | "blob" | "about" => {
            bad("cannot use that scheme")
        }
        s if s.contains('.') => Ok(()),
        _ => bad("must use https, or a private-use scheme like com.example.app:/callback"),
    }
}

fn check(new: &NewClient) -> Result<String, ClientError> {
    let invalid = |m: String| Err(ClientError::Invalid(m));
    let name = sesame_core::names::label(&new.name)
        .map_err(|e| ClientError::Invalid(format!("application name: {e}")))?;
    if name.chars().count() > MAX_NAME {
        return invalid(format!(
            "the application name is longer than {MAX_NAME} characters"
        ));
    }
    if new.redirect_uris.is_empty() && !new.client_credentials {
        return invalid("give at least one redirect URI (--redirect-uri)".into());
    }
    for u in new
        .redirect_uris
        .iter()
        .chain(&new.post_logout_redirect_uris)
    {
        check_redirect_uri(u).map_err(ClientError::Invalid)?;
    }
    if new.public && new.client_credentials {
        return invalid(
            "a public client has no secret, so it cannot use client credentials".into(),
        );
    }
    Ok(name.to_string())
}

/// Registers an application; its secret (for a confidential client) is shown this once.
pub async fn add(
    svc: &Services,
    admin: &Admin,
    tenant: TenantId,
    new: NewClient,
) -> Result<Created, ClientError> {
    let name = check(&new)?;
    let now = svc.now();
    let secret = (!new.public).then(new_secret);
    let client = Client {
        client_id: new_client_id(),
        tenant,
        name,
        secret_hash: secret.as_deref().map(secret_hash),
        redirect_uris: new.redirect_uris,
        post_logout_redirect_uris: new.post_logout_redirect_uris,
        first_party: new.first_party,
        require_mfa: new.require_mfa,
        id_token_alg: new.id_token_alg.as_str().into(),
        client_credentials: new.client_credentials,
        created_at: now,
        secret_set_at: secret.as_ref().map(|_| now),
    };
    svc.store.create_client(&client).await?;
    let detail = format!("{} ({})", client.name, client.client_id);
    svc.audit(
        &admin.origin,
        admin.line(tenant, None, Event::AdminClientAdded, Some(&detail)),
    )
    .await;
    Ok(Created { client, secret })
}

/// The application of `client_id` in `tenant`.
pub async fn find(
    svc: &Services,
    tenant: TenantId,
    client_id: &str,
) -> Result<Client, ClientError> {
    match svc.store.find_client(client_id).await? {
        Some(c) if c.tenant == tenant => Ok(c),
        _ => Err(ClientError::NotFound(client_id.into())),
    }
}

/// Removes an application and everything issued to it.
pub async fn remove(
    svc: &Services,
    admin: &Admin,
    tenant: TenantId,
    client_id: &str,
) -> Result<Client, ClientError> {
    let client = find(svc, tenant, client_id).await?;
    svc.store.remove_client(client_id).await?;
    svc.oidc.clients.forget(client_id);
    let detail = format!("{} ({})", client.name, client.client_id);
    svc.audit(
        &admin.origin,
        admin.line(tenant, None, Event::AdminClientRemoved, Some(&detail)),
    )
    .await;
    Ok(client)
}

/// A new secret for a confidential client; the old one stops working at once.
pub async fn rotate_secret(
    svc: &Services,
    admin: &Admin,
    tenant: TenantId,
    client_id: &str,
) -> Result<String, ClientError> {
    let mut client = find(svc, tenant, client_id).await?;
    if client.secret_hash.is_none() {
        return Err(ClientError::Invalid(format!(
            "{} is a public client: it has no secret",
            client.name
        )));
    }
    let secret = new_secret();
    client.secret_hash = Some(secret_hash(&secret));
    client.secret_set_at = Some(svc.now());
    svc.store.update_client(&client).await?;
    svc.oidc.clients.forget(client_id);
    let detail = format!("{} ({})", client.name, client.client_id);
    svc.audit(
        &admin.origin,
        admin.line(tenant, None, Event::AdminClientSecretRotated, Some(&detail)),
    )
    .await;
    Ok(secret)
}

/// Changes what an administrator may change after registration (not the id or the secret).
pub async fn update(
    svc: &Services,
    admin: &Admin,
    tenant: TenantId,
    client_id: &str,
    change: NewClient,
) -> Result<Client, ClientError> {
    let name = check(&change)?;
    let old = find(svc, tenant, client_id).await?;
    if change.public != old.secret_hash.is_none() {
        return Err(ClientError::Invalid(
            "a client cannot change between public and confidential: register a new one".into(),
        ));
    }
    let client = Client {
        name,
        redirect_uris: change.redirect_uris,
        post_logout_redirect_uris: change.post_logout_redirect_uris,
        first_party: change.first_party,
        require_mfa: change.require_mfa,
        id_token_alg: change.id_token_alg.as_str().into(),
        client_credentials: change.client_credentials,
        ..old
    };
    svc.store.update_client(&client).await?;
    svc.oidc.clients.forget(client_id);
    let detail = format!("{} ({})", client.name, client.client_id);
    svc.audit(
        &admin.origin,
        admin.line(tenant, None, Event::AdminClientChanged, Some(&detail)),
    )
    .await;
    Ok(client)
}

/// Clients as the token endpoint last read them, for at most [`CACHE_SECS`]: most token
/// requests come from a few applications, and a database read per request is most of what
/// client credentials cost after the signature. Changes made in this process are seen at
/// once (the entry is dropped); changes made elsewhere (`sesame client` in another process,
/// another node) within a second.
#[derive(Default)]
pub struct ClientCache {
    entries: std::sync::RwLock<HashMap<String, (Arc<Client>, Instant)>>,
}

/// How long a cached client is trusted.
pub const CACHE_SECS: u64 = 1;
/// Entries kept at most (ids are typed by anyone; a flood of them must not grow memory).
const CACHE_MAX: usize = 4096;

impl ClientCache {
    async fn get(
        &self,
        svc: &Services,
        client_id: &str,
    ) -> Result<Option<Arc<Client>>, StoreError> {
        let fresh = |(c, at): &(Arc<Client>, Instant)| {
            (at.elapsed() < Duration::from_secs(CACHE_SECS)).then(|| c.clone())
        };
        if let Some(c) = self
            .entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(client_id)
            .and_then(fresh)
        {
            return Ok(Some(c));
        }
        let Some(client) = svc.store.find_client(client_id).await? else {
            return Ok(None);
        };
        let client = Arc::new(client);
        let mut map = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= CACHE_MAX {
            map.clear();
        }
        map.insert(client_id.to_string(), (client.clone(), Instant::now()));
        Ok(Some(client))
    }

    /// Drops what this process knows of `client_id` (it was just changed).
    pub fn forget(&self, client_id: &str) {
        self.entries
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(client_id);
    }
}

/// The client calling the token endpoint (and revocation, introspection): a confidential
/// client must present its secret; a public one presents none. None when it does not check
/// out: unknown id, wrong or missing secret, a secret for a public client.
pub async fn authenticate(
    svc: &Services,
    client_id: &str,
    secret: Option<&str>,
) -> Result<Option<Arc<Client>>, StoreError> {
    let Some(client) = svc.oidc.clients.get(svc, client_id).await? else {
        return Ok(None);
    };
    let ok = match (&client.secret_hash, secret) {
        (Some(stored), Some(given)) => bool::from(stored.ct_eq(&secret_hash(given))),
        (None, None) => true,
        _ => false,
    };
    Ok(ok.then_some(client))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_that_can_never_be_safe_are_refused() {
        for ok in [
            "https://app.example.com/callback",
            "https://app.example.com/cb?x=1",
            "http://127.0.0.1:9000/cb",
            "http://localhost:3000/cb",
            "http://[::1]:3000/cb",
            "com.example.app:/callback",
        ] {
            assert_eq!(check_redirect_uri(ok), Ok(()), "{ok}");
        }
        for bad in [
            "/callback",
            "https://app.example.com/cb#frag",
            "https://app.example.com/cb#",
            "https://evil@app.example.com/cb",
            "http://app.example.com/cb",
            "javascript:alert(1)",
            "data:text/html,hi",
            "myapp:/cb",
            "https://app.example.com/c b",
        ] {
            assert!(check_redirect_uri(bad).is_err(), "{bad}");
        }
    }
}
