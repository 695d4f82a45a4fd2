//! An authorization request, checked, while the person signs in. It travels in the URL the
//! sign-in pages return to (`/oauth/authorize/continue?r=...`), signed with a key only the
//! server has, so nothing about it is stored and any node can pick it up; it is good for
//! [`super::REQUEST_SECS`].

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sesame_core::secret::SecretBytes;
use sesame_core::UnixTime;

/// What an application asked for, as checked at `/oauth/authorize`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthRequest {
    pub client_id: String,
    pub redirect_uri: String,
    /// The scopes granted: those asked for that Sesame knows.
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    /// PKCE S256.
    pub code_challenge: String,
    /// `prompt=login`: a sign-in after `at` is needed, whatever session there is.
    pub login: bool,
    /// `prompt=consent`: ask again even if the person agreed before.
    pub consent: bool,
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
    /// Two-step verification needed (the client requires it, or `acr_values` asked for it).
    pub mfa: bool,
    /// When the application asked.
    pub at: UnixTime,
}

impl AuthRequest {
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.split(' ').filter(|s| !s.is_empty())
    }
}

fn mac(key: &SecretBytes, body: &str) -> Vec<u8> {
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(key.expose()).expect("any key length");
    m.update(b"oidc-request-v1:");
    m.update(body.as_bytes());
    m.finalize().into_bytes()[..16].to_vec()
}

/// The request as a URL-safe string, signed.
pub fn seal(key: &SecretBytes, req: &AuthRequest) -> String {
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(req).expect("serialises"));
    let tag = URL_SAFE_NO_PAD.encode(mac(key, &body));
    format!("{body}.{tag}")
}

/// The request `sealed` carries, if the signature holds and it has not expired.
pub fn open(key: &SecretBytes, sealed: &str, now: UnixTime) -> Option<AuthRequest> {
    let (body, tag) = sealed.split_once('.')?;
    let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
    let ok: bool = subtle::ConstantTimeEq::ct_eq(tag.as_slice(), mac(key, body).as_slice()).into();
    if !ok {
        return None;
    }
    let req: AuthRequest = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).ok()?).ok()?;
    (now >= req.at && now - req.at < super::REQUEST_SECS).then_some(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> AuthRequest {
        AuthRequest {
            client_id: "c".into(),
            redirect_uri: "https://app/cb".into(),
            scope: "openid profile".into(),
            state: Some("s".into()),
            nonce: Some("n".into()),
            code_challenge: "x".repeat(43),
            login: false,
            consent: false,
            max_age: None,
            login_hint: None,
            mfa: false,
            at: 1000,
        }
    }

    #[test]
    fn a_sealed_request_opens_unchanged_only_with_its_key_and_in_time() {
        let key = SecretBytes::new(vec![1; 32]);
        let sealed = seal(&key, &req());
        assert_eq!(open(&key, &sealed, 1000), Some(req()));
        assert_eq!(open(&SecretBytes::new(vec![2; 32]), &sealed, 1000), None);
        assert_eq!(open(&key, &sealed, 1000 + super::super::REQUEST_SECS), None);
        assert_eq!(open(&key, &sealed, 999), None, "a clock set back");
        // A changed body (another redirect URI) does not open.
        let mut other = req();
        other.redirect_uri = "https://evil/cb".into();
        let forged_body = seal(&key, &other);
        let tag = sealed.split_once('.').unwrap().1;
        let forged = format!("{}.{tag}", forged_body.split_once('.').unwrap().0);
        assert_eq!(open(&key, &forged, 1000), None);
    }
}
