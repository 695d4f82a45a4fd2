//! The device API (DESIGN §4): activation, device-signed requests, the event stream and
//! answers to sign-in challenges. Paths are under `/api/v1/device`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const PATH_ACTIVATE: &str = "/api/v1/device/activate";
pub const PATH_EVENTS: &str = "/api/v1/device/events";
pub const PATH_PENDING: &str = "/api/v1/device/pending";
pub const PATH_RESPOND: &str = "/api/v1/device/respond";
pub const PATH_UNREGISTER: &str = "/api/v1/device/unregister";
pub const PATH_PIN_KEY: &str = "/api/v1/device/pin-key";
pub const PATH_PHONE_SIGN_IN: &str = "/api/v1/device/phone-sign-in";
pub const PATH_STATUS: &str = "/api/v1/device/status";

/// Consecutive invalid PIN signatures after which the server turns the PIN key off.
pub const MAX_PIN_FAILURES: i64 = 10;

/// The only signature algorithm today; the field exists so others can follow.
pub const ALG_ES256: &str = "ES256";

/// Headers of a device-signed request.
pub const HEADER_DEVICE: &str = "sesame-device";
pub const HEADER_TIMESTAMP: &str = "sesame-timestamp";
pub const HEADER_NONCE: &str = "sesame-nonce";
pub const HEADER_SIGNATURE: &str = "sesame-signature";

/// How far a signed request's timestamp may be from the server's clock.
pub const MAX_CLOCK_SKEW_SECS: i64 = 120;

/// `sesame://activate?server=...&code=...`, shown as a QR code on My security info.
pub const ACTIVATION_SCHEME: &str = "sesame";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivateRequest {
    pub code: String,
    pub device_name: String,
    pub alg: String,
    /// SEC1 uncompressed P-256 point, base64url.
    pub public_key: String,
}

/// Parameters of the verification codes the server issues with an activation.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpParams {
    pub secret_base32: String,
    pub algorithm: String,
    pub digits: u32,
    pub period: u64,
}

impl std::fmt::Debug for TotpParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpParams")
            .field("secret_base32", &"[redacted]")
            .field("digits", &self.digits)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivateResponse {
    pub device_id: String,
    pub issuer: String,
    pub username: String,
    pub display_name: String,
    pub totp: TotpParams,
    /// Whether the organisation's policy lets this user turn on phone sign-in.
    #[serde(default)]
    pub phone_sign_in_allowed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChallengeKind {
    /// Second step after a password.
    Mfa,
    /// Passwordless phone sign-in.
    PhoneSignIn,
}

impl ChallengeKind {
    /// The stable name, as on the wire and in the server's records.
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeKind::Mfa => "mfa",
            ChallengeKind::PhoneSignIn => "phone_sign_in",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "mfa" => Some(ChallengeKind::Mfa),
            "phone_sign_in" => Some(ChallengeKind::PhoneSignIn),
            _ => None,
        }
    }
}

/// A sign-in request as the phone sees it. The number to type is NOT here: the person must
/// read it from the sign-in page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    pub id: String,
    pub kind: ChallengeKind,
    pub nonce: String,
    pub username: String,
    pub app_name: String,
    pub ip: String,
    pub location: String,
    /// The browser that asks, as a short label the server makes ("Firefox on Linux",
    /// "Unknown browser"), never the browser's own User-Agent text, which anyone can fill
    /// with instructions. Sent as `user_agent`, the name apps before the label read.
    #[serde(rename = "user_agent")]
    pub browser: String,
    pub requested_at: i64,
    pub expires_at: i64,
    /// Whether approving needs the app PIN (organisation policy).
    pub pin_required: bool,
}

/// What arrives on the event stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DeviceEvent {
    Challenge(Challenge),
    /// A request ended without this device: superseded, answered elsewhere, expired, cancelled.
    Closed {
        id: String,
        reason: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    Deny,
    /// "Deny and report": this wasn't me.
    Report,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Deny => "deny",
            Decision::Report => "report",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RespondRequest {
    pub challenge_id: String,
    pub decision: Decision,
    /// The number the person typed ("" when denying).
    pub number: String,
    /// ES256 over [`approval_message`], raw r||s, base64url.
    pub signature: String,
    /// The same message signed by the PIN key (phone sign-in, and approvals when the
    /// organisation requires the PIN). Only the server can tell whether the PIN was right.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_signature: Option<String>,
}

/// Registers the device's PIN key (first time), or replaces it (PIN change: `proof` is the
/// current PIN key's signature over [`pin_key_message`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinKeyRequest {
    pub alg: String,
    pub public_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<String>,
}

/// Turns phone sign-in on (with `proof`: the PIN key's signature over
/// [`phone_sign_in_message`]) or off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhoneSignInRequest {
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<String>,
}

/// Where this device stands with the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceStatus {
    pub username: String,
    pub phone_sign_in_allowed: bool,
    pub phone_sign_in_enabled: bool,
    pub pin_key_registered: bool,
    /// Turned off after too many wrong PINs.
    pub pin_key_disabled: bool,
    /// The app asked to turn phone sign-in on; the person must confirm it on My security info.
    #[serde(default)]
    pub phone_sign_in_awaiting_confirmation: bool,
    /// In the answer to the app's request to turn phone sign-in on: the request's random code
    /// (`XXXX-XXXX`), which My security info shows beside "Turn on phone sign-in"; the person
    /// confirms only if the two match. Random, so it reveals nothing about the PIN or its key.
    /// Absent otherwise (and from servers that predate it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_sign_in_code: Option<String>,
    /// What to tell the person (why phone sign-in is not available, what to do).
    pub message: String,
}

/// Bytes the current PIN key signs to let a new one replace it.
pub fn pin_key_message(device_id: &str, new_public_key: &str) -> Vec<u8> {
    format!("sesame-pin-key-v1|{device_id}|{new_public_key}").into_bytes()
}

/// Bytes the PIN key signs to turn phone sign-in on; bound to the request's nonce so an old
/// proof cannot turn it on again later.
pub fn phone_sign_in_message(device_id: &str, request_nonce: &str) -> Vec<u8> {
    format!("sesame-phone-sign-in-v1|{device_id}|{request_nonce}").into_bytes()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RespondResponse {
    /// approved | denied | reported
    pub outcome: String,
    pub message: String,
}

/// The requests waiting for an answer, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingResponse {
    pub challenges: Vec<Challenge>,
}

/// Bytes a device signs to answer a challenge (DESIGN §4).
pub fn approval_message(
    challenge_id: &str,
    nonce: &str,
    decision: Decision,
    number: &str,
    device_id: &str,
) -> Vec<u8> {
    format!(
        "sesame-approval-v1|{challenge_id}|{nonce}|{}|{number}|{device_id}",
        decision.as_str()
    )
    .into_bytes()
}

/// Bytes a device signs for any API request: method, path, body hash, time, nonce, device.
pub fn request_message(
    method: &str,
    path: &str,
    body: &[u8],
    timestamp: i64,
    nonce: &str,
    device_id: &str,
) -> Vec<u8> {
    let body_hash = URL_SAFE_NO_PAD.encode(Sha256::digest(body));
    format!(
        "sesame-request-v1|{}|{path}|{body_hash}|{timestamp}|{nonce}|{device_id}",
        method.to_ascii_uppercase()
    )
    .into_bytes()
}

/// Parses `sesame://activate?server=<base url>&code=<code>`.
pub fn parse_activation_link(link: &str) -> Option<(String, String)> {
    let rest = link.trim().strip_prefix("sesame://activate?")?;
    let (mut server, mut code) = (None, None);
    for pair in rest.split('&') {
        let (k, v) = pair.split_once('=')?;
        let v = percent_decode(v)?;
        match k {
            "server" if server.is_none() => server = Some(v),
            "code" if code.is_none() => code = Some(v),
            "server" | "code" => return None,
            _ => {}
        }
    }
    let server = server?.trim_end_matches('/').to_string();
    if !(server.starts_with("https://") || server.starts_with("http://")) {
        return None;
    }
    Some((server, code?))
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'%' => return None,
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Builds the activation link for a server base URL and code.
pub fn activation_link(server: &str, code: &str) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    format!(
        "sesame://activate?server={}&code={}",
        enc(server),
        enc(code)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_link_round_trips() {
        let link = activation_link("http://127.0.0.1:8080", "abc-DEF_123");
        assert_eq!(
            link,
            "sesame://activate?server=http%3A%2F%2F127.0.0.1%3A8080&code=abc-DEF_123"
        );
        assert_eq!(
            parse_activation_link(&link),
            Some(("http://127.0.0.1:8080".into(), "abc-DEF_123".into()))
        );
    }

    #[test]
    fn bad_activation_links_are_refused() {
        for bad in [
            "sesame://activate?code=x",
            "sesame://activate?server=ftp%3A%2F%2Fx&code=y",
            "sesame://activate?server=http%3A%2F%2Fa&code=1&code=2",
            "https://activate?server=http%3A%2F%2Fa&code=1",
            "sesame://activate?server=http%3A%2F%2Fa&code=%zz",
            "sesame://activate?server=http%3A%2F%2Fa&code=%4",
        ] {
            assert_eq!(parse_activation_link(bad), None, "{bad}");
        }
    }

    #[test]
    fn signed_messages_bind_every_field() {
        let base = approval_message("c1", "n1", Decision::Approve, "42", "d1");
        assert_eq!(base, b"sesame-approval-v1|c1|n1|approve|42|d1");
        assert_ne!(
            base,
            approval_message("c2", "n1", Decision::Approve, "42", "d1")
        );
        assert_ne!(
            base,
            approval_message("c1", "n1", Decision::Deny, "42", "d1")
        );
        assert_ne!(
            base,
            approval_message("c1", "n1", Decision::Approve, "42", "d2")
        );
        let r = request_message("post", "/p", b"{}", 5, "n", "d");
        assert!(String::from_utf8(r.clone())
            .unwrap()
            .starts_with("sesame-request-v1|POST|/p|"));
        assert_ne!(r, request_message("POST", "/p", b"{ }", 5, "n", "d"));
    }

    #[test]
    fn events_are_tagged_json() {
        let e = DeviceEvent::Closed {
            id: "c".into(),
            reason: "superseded".into(),
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"type":"closed","id":"c","reason":"superseded"}"#
        );
    }
}
