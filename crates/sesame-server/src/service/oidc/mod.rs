//! OpenID Connect, the provider side: applications (clients), the signing keys, the
//! authorization requests that wait while a person signs in, and the tokens.
//!
//! The HTTP endpoints are in `crate::oidc`; everything they change is here.

pub mod clients;
pub mod keys;
pub mod request;
pub mod tokens;

use sesame_core::secret::SecretBytes;

/// How long an authorization code can be redeemed (RFC 6749 recommends at most 10 minutes).
pub const CODE_SECS: i64 = 60;
/// How long an access token is good for.
pub const ACCESS_TOKEN_SECS: i64 = 600;
/// How long an ID token is good for.
pub const ID_TOKEN_SECS: i64 = 3600;
/// How long a refresh token family lasts from the sign-in that started it.
pub const REFRESH_SECS: i64 = 14 * 24 * 3600;
/// How long an authorization request may wait for the person to sign in.
pub const REQUEST_SECS: i64 = 30 * 60;

/// The scopes Sesame knows; others are ignored (RFC 6749 lets the server grant less).
pub const SCOPES: &[&str] = &["openid", "profile", "email", "offline_access"];

/// What OpenID Connect keeps in memory.
pub struct Oidc {
    pub keys: keys::Keyring,
    /// Clients as the token endpoint last read them (see [`clients::ClientCache`]).
    pub clients: clients::ClientCache,
    /// Signs authorization requests while the person signs in.
    pub request_key: SecretBytes,
}

impl Oidc {
    pub fn new(request_key: SecretBytes) -> Self {
        Self {
            keys: keys::Keyring::default(),
            clients: clients::ClientCache::default(),
            request_key,
        }
    }
}

/// The issuer: the configured public URL, else the address this request came to (plain HTTP
/// at loopback, for trying Sesame out). No trailing slash, so that `iss` and the discovery
/// document's `issuer` are the same string.
pub fn issuer(public_base_url: Option<&str>, host: Option<&str>) -> String {
    match public_base_url {
        Some(b) => b.trim_end_matches('/').to_string(),
        None => format!("http://{}", host.unwrap_or("127.0.0.1:8080")),
    }
}

/// The application a sign-in is for, by name, when it returns to an authorization request
/// (`next` is `/oauth/authorize/continue?r=...`): what the sign-in pages and the phone show
/// as the application asking.
pub async fn application_asking(
    svc: &crate::service::Services,
    next: Option<&str>,
) -> Option<String> {
    let sealed = next?.strip_prefix("/oauth/authorize/continue?r=")?;
    let sealed = percent_encoding::percent_decode_str(sealed)
        .decode_utf8()
        .ok()?;
    let req = request::open(&svc.oidc.request_key, &sealed, svc.now())?;
    let client = svc.store.find_client(&req.client_id).await.ok()??;
    Some(client.name)
}
