//! The device API (DESIGN §4): JSON over HTTP for the authenticator app.
//!
//! Activation is authorised by a one-time activation code; every other call is signed with the
//! device key over method, path, body hash, timestamp and nonce ([`SignedRequest`]), checked
//! for freshness, and its nonce is recorded in the database so a replay fails on every node.

use crate::audit::{self, Entry};
use crate::web::{token_hash, Client};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::ecdsa::VerifyingKey;
use rand::RngCore;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use sesame_core::lockout::AttemptGate;
use sesame_core::method::MethodKind;
use sesame_core::policy::{Allowed, AuthenticatorPolicy};
use sesame_core::push::{self, Answer, ChallengeState};
use sesame_core::secret::SecretBytes;
use sesame_core::totp;
use sesame_proto::device::{
    self as api, ActivateRequest, ActivateResponse, Decision, DeviceEvent, DeviceStatus,
    PendingResponse, PhoneSignInRequest, PinKeyRequest, RespondRequest, RespondResponse,
    TotpParams,
};
use sesame_proto::ApiError;
use sesame_store::{AuditResult, ChallengeRecord, Device, NewDevice, PinOutcome, StoreError, User};
use std::convert::Infallible;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(api::PATH_ACTIVATE, post(activate))
        .route(api::PATH_EVENTS, get(events))
        .route(api::PATH_PENDING, get(pending))
        .route(api::PATH_RESPOND, post(respond))
        .route(api::PATH_UNREGISTER, post(unregister))
        .route(api::PATH_PIN_KEY, post(pin_key))
        .route(api::PATH_PHONE_SIGN_IN, post(phone_sign_in))
        .route(api::PATH_STATUS, get(status))
}

/// An error in the device API's JSON format.
#[derive(Debug)]
pub struct ApiErr(pub StatusCode, pub &'static str, pub String);

impl ApiErr {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiErr(status, code, message.into())
    }
}

impl IntoResponse for ApiErr {
    fn into_response(self) -> Response {
        (
            self.0,
            Json(ApiError {
                error: self.1.to_string(),
                message: self.2,
            }),
        )
            .into_response()
    }
}

impl From<StoreError> for ApiErr {
    fn from(e: StoreError) -> Self {
        tracing::error!(%e, "device API store error");
        ApiErr::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "Something went wrong on the server. Try again.",
        )
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiErr> {
    serde_json::from_slice(body).map_err(|e| {
        ApiErr::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("The request is not valid: {e}"),
        )
    })
}

async fn read_body(req: Request, state: &AppState) -> Result<Bytes, ApiErr> {
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiErr::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "The request is too large.",
            )
        } else {
            ApiErr::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "The request body could not be read.",
            )
        }
    })
}

/// A request signed by a registered, active device of an unblocked user.
pub struct SignedRequest {
    pub device: Device,
    pub user: User,
    pub body: Bytes,
    /// The request's nonce (already claimed): proofs that must not be reused bind to it.
    pub nonce: String,
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Result<&'a str, ApiErr> {
    h.get(name).and_then(|v| v.to_str().ok()).ok_or_else(|| {
        ApiErr::new(
            StatusCode::UNAUTHORIZED,
            "unsigned",
            format!("The request must be signed by a device ({name} is missing)."),
        )
    })
}

/// A stored P-256 public key, checked and in the uncompressed SEC1 form that ring verifies with.
struct EcdsaKey(p256::EncodedPoint);

/// Parses a stored SEC1 key (uncompressed, compressed or compact, as registration accepts).
/// p256 decides which keys are valid, exactly as when the key was registered; ring, which only
/// takes uncompressed points, then verifies several times faster than p256 would.
fn parse_key(sec1: &[u8]) -> Option<EcdsaKey> {
    let key = VerifyingKey::from_sec1_bytes(sec1).ok()?;
    Some(EcdsaKey(key.to_encoded_point(false)))
}

fn verifying_key(device: &Device) -> Option<EcdsaKey> {
    (device.alg == api::ALG_ES256)
        .then(|| parse_key(&device.public_key))
        .flatten()
}

/// Checks an ES256 signature: base64url (no padding) of the fixed-size r || s, over SHA-256 of
/// `message`. Like p256, ring rejects r or s outside 1..n and accepts high-S signatures.
fn verify(key: &EcdsaKey, message: &[u8], signature_b64: &str) -> bool {
    let Ok(raw) = URL_SAFE_NO_PAD.decode(signature_b64) else {
        return false;
    };
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key.0.as_bytes())
        .verify(message, &raw)
        .is_ok()
}

impl FromRequest<AppState> for SignedRequest {
    type Rejection = ApiErr;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let method = req.method().as_str().to_string();
        let path = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default();
        let headers = req.headers().clone();
        let body = read_body(req, state).await?;
        let device_id = header(&headers, api::HEADER_DEVICE)?;
        let ts: i64 = header(&headers, api::HEADER_TIMESTAMP)?
            .parse()
            .map_err(|_| {
                ApiErr::new(
                    StatusCode::UNAUTHORIZED,
                    "unsigned",
                    "The request timestamp is not a number.",
                )
            })?;
        let nonce = header(&headers, api::HEADER_NONCE)?;
        let signature = header(&headers, api::HEADER_SIGNATURE)?;
        let now = state.now();
        if (ts - now).abs() > api::MAX_CLOCK_SKEW_SECS {
            return Err(ApiErr::new(
                StatusCode::UNAUTHORIZED,
                "clock_skew",
                "This device's clock is off. Set the date and time automatically and try again.",
            ));
        }
        if !(16..=128).contains(&nonce.len()) {
            return Err(ApiErr::new(
                StatusCode::UNAUTHORIZED,
                "unsigned",
                "The request nonce is not valid.",
            ));
        }
        let refused = || {
            ApiErr::new(StatusCode::UNAUTHORIZED, "unknown_device", "This device is not registered with Sesame (it may have been removed). Add the account again.")
        };
        let device = state
            .store
            .find_device(device_id)
            .await?
            .ok_or_else(refused)?;
        let key = verifying_key(&device).ok_or_else(refused)?;
        let message = api::request_message(&method, &path, &body, ts, nonce, &device.id);
        if !verify(&key, &message, signature) {
            return Err(ApiErr::new(
                StatusCode::UNAUTHORIZED,
                "bad_signature",
                "The request signature is not valid.",
            ));
        }
        // Recorded only after the signature checks out, so strangers cannot fill the table.
        let keep_until = ts + api::MAX_CLOCK_SKEW_SECS + 60;
        if !state
            .store
            .claim_device_nonce(device.row_id, nonce, keep_until, now)
            .await?
        {
            return Err(ApiErr::new(
                StatusCode::UNAUTHORIZED,
                "replayed",
                "This request was already received once.",
            ));
        }
        let user = state
            .store
            .find_user(device.user)
            .await?
            .ok_or_else(refused)?;
        if user.is_blocked {
            return Err(ApiErr::new(
                StatusCode::FORBIDDEN,
                "user_blocked",
                "This account is blocked. Contact your administrator.",
            ));
        }
        state.store.touch_device(device.row_id, now).await?;
        let nonce = nonce.to_string();
        Ok(SignedRequest {
            device,
            user,
            body,
            nonce,
        })
    }
}

/// How long an activation code works.
pub const ACTIVATION_SECS: i64 = 600;
const MAX_DEVICE_NAME: usize = 64;

async fn activate(
    State(state): State<AppState>,
    client: Client,
    req: Request,
) -> Result<Json<ActivateResponse>, ApiErr> {
    let body = read_body(req, &state).await?;
    let r: ActivateRequest = parse_json(&body)?;
    if r.alg != api::ALG_ES256 {
        return Err(ApiErr::new(
            StatusCode::BAD_REQUEST,
            "unsupported_alg",
            format!(
                "Signature algorithm {:?} is not supported (use ES256).",
                r.alg
            ),
        ));
    }
    let public_key = URL_SAFE_NO_PAD
        .decode(&r.public_key)
        .ok()
        .filter(|pk| VerifyingKey::from_sec1_bytes(pk).is_ok())
        .ok_or_else(|| {
            ApiErr::new(
                StatusCode::BAD_REQUEST,
                "invalid_key",
                "The device public key is not a valid P-256 key.",
            )
        })?;
    let name: String = r
        .device_name
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_DEVICE_NAME)
        .collect();
    let name = if name.is_empty() {
        "Authenticator".to_string()
    } else {
        name
    };
    let now = state.now();
    let hash = token_hash(r.code.trim());
    let user_id = state.store.consume_activation(&hash, now).await?.ok_or_else(|| {
        ApiErr::new(StatusCode::BAD_REQUEST, "invalid_code", "This activation code is not valid: it has expired or was already used. Start again on My security info.")
    })?;
    let user = state
        .store
        .find_user(user_id)
        .await?
        .filter(|u| !u.is_blocked)
        .ok_or_else(|| {
            ApiErr::new(
                StatusCode::FORBIDDEN,
                "user_blocked",
                "This account cannot add devices. Contact your administrator.",
            )
        })?;
    let mut raw = vec![0u8; totp::SECRET_LEN];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let secret = SecretBytes::new(raw);
    let new = NewDevice {
        tenant: user.tenant,
        user: user.id,
        name: name.clone(),
        alg: r.alg.clone(),
        public_key,
    };
    let device = match state.store.create_device(new, &hash, &secret, now).await {
        Ok(d) => d,
        Err(StoreError::Conflict(_)) => {
            return Err(ApiErr::new(
                StatusCode::CONFLICT,
                "device_exists",
                "This device is already registered in this organisation.",
            ))
        }
        Err(e) => return Err(e.into()),
    };
    audit::record(
        &state,
        &client,
        Entry {
            user: Some(user.id),
            username: &user.username,
            event: "device_added",
            method: Some("push"),
            result: AuditResult::Success,
            reason: Some(&name),
        },
    )
    .await;
    let phone_sign_in_allowed = crate::policy::for_user(&state, &user)
        .await?
        .allowed
        .phone_sign_in;
    Ok(Json(ActivateResponse {
        phone_sign_in_allowed,
        device_id: device.id,
        issuer: state.config.issuer.clone(),
        username: user.username.clone(),
        display_name: user.display_name.clone(),
        totp: TotpParams {
            secret_base32: totp::secret_base32(&secret),
            algorithm: "SHA1".into(),
            digits: totp::DIGITS as u32,
            period: totp::STEP_SECONDS as u64,
        },
    }))
}

fn kind_of(c: &ChallengeRecord) -> api::ChallengeKind {
    if c.kind == crate::push_signin::kind_name(api::ChallengeKind::PhoneSignIn) {
        api::ChallengeKind::PhoneSignIn
    } else {
        api::ChallengeKind::Mfa
    }
}

/// What the phone is shown of a challenge (never the number), as the policy allows.
pub fn challenge_view(
    c: &ChallengeRecord,
    username: &str,
    policy: &AuthenticatorPolicy,
) -> api::Challenge {
    let kind = kind_of(c);
    let hidden = |show: bool, v: &str| if show { v.to_string() } else { String::new() };
    api::Challenge {
        id: c.id.clone(),
        kind,
        nonce: c.nonce.clone(),
        username: username.to_string(),
        app_name: hidden(policy.show_app_name, &c.app_name),
        ip: hidden(policy.show_location, &c.ip),
        location: hidden(policy.show_location, &c.location),
        user_agent: c.user_agent.clone(),
        requested_at: c.created_at,
        expires_at: c.expires_at,
        // Phone sign-in always needs the PIN: it is the second factor.
        pin_required: kind == api::ChallengeKind::PhoneSignIn || policy.pin_required,
    }
}

/// Whether the policy allows `user` to answer a challenge of this kind now.
fn kind_allowed(allowed: &Allowed, kind: api::ChallengeKind) -> bool {
    match kind {
        api::ChallengeKind::Mfa => allowed.push,
        api::ChallengeKind::PhoneSignIn => allowed.phone_sign_in,
    }
}

/// Re-judges an approved challenge just before it becomes a session: the policy must still
/// allow its kind, and the device that approved must still be registered (and, for phone
/// sign-in, still have it on).
pub async fn approval_still_valid(
    state: &AppState,
    user: &User,
    c: &ChallengeRecord,
) -> Result<bool, StoreError> {
    let up = crate::policy::for_user(state, user).await?;
    let kind = kind_of(c);
    if !kind_allowed(&up.allowed, kind) {
        return Ok(false);
    }
    let devices = state.store.list_devices(user.id).await?;
    let Some(d) = devices.iter().find(|d| Some(d.row_id) == c.answered_by) else {
        return Ok(false);
    };
    Ok(kind == api::ChallengeKind::Mfa || d.phone_sign_in_ready())
}

async fn pending(
    State(state): State<AppState>,
    signed: SignedRequest,
) -> Result<Json<PendingResponse>, ApiErr> {
    let list = state
        .store
        .list_pending_challenges(signed.user.id, state.now())
        .await?;
    let policy = crate::policy::for_user(&state, &signed.user).await?.policy;
    Ok(Json(PendingResponse {
        challenges: list
            .iter()
            .map(|c| challenge_view(c, &signed.user.username, &policy.authenticator))
            .collect(),
    }))
}

async fn events(State(state): State<AppState>, signed: SignedRequest) -> Result<Response, ApiErr> {
    let user = signed.user.clone();
    // Subscribe before reading the pending list, so nothing created in between is missed.
    let rx = state.hub.subscribe(user.id);
    let policy = crate::policy::for_user(&state, &user).await?.policy;
    let first: Vec<DeviceEvent> = state
        .store
        .list_pending_challenges(user.id, state.now())
        .await?
        .iter()
        .map(|c| DeviceEvent::Challenge(challenge_view(c, &user.username, &policy.authenticator)))
        .collect();
    // Events go to every stream of the user; a device removed while its stream is open must
    // not go on receiving them (a request's application, address and location), so each
    // event is sent only after checking that this device is still registered.
    let device = signed.device.id.clone();
    let stream = futures_util::stream::unfold(
        (first.into_iter(), rx, state, device),
        |(mut first, mut rx, state, device)| async move {
            if let Some(ev) = first.next() {
                return Some((to_sse(&ev), (first, rx, state, device)));
            }
            // A stream that fell behind, or whose channel closed, ends: the app reconnects and
            // re-reads the pending list.
            let ev = rx.recv().await.ok()?;
            match state.store.find_device(&device).await {
                Ok(Some(_)) => Some((to_sse(&ev), (first, rx, state, device))),
                // Removed (or unknown for now): end the stream. A device that is still
                // registered reconnects and re-reads the pending list.
                _ => None,
            }
        },
    );
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(20)))
        .into_response())
}

fn to_sse(ev: &DeviceEvent) -> Result<Event, Infallible> {
    Ok(Event::default().data(serde_json::to_string(ev).expect("events serialise")))
}

async fn respond(
    State(state): State<AppState>,
    client: Client,
    signed: SignedRequest,
) -> Result<Json<RespondResponse>, ApiErr> {
    let r: RespondRequest = parse_json(&signed.body)?;
    let user = &signed.user;
    let not_found = || {
        ApiErr::new(
            StatusCode::NOT_FOUND,
            "unknown_request",
            "This sign-in request does not exist.",
        )
    };
    let c = state
        .store
        .find_challenge(&r.challenge_id)
        .await?
        .filter(|c| c.user == user.id)
        .ok_or_else(not_found)?;
    let key = verifying_key(&signed.device).ok_or_else(not_found)?;
    let message = api::approval_message(&c.id, &c.nonce, r.decision, &r.number, &signed.device.id);
    if !verify(&key, &message, &r.signature) {
        return Err(ApiErr::new(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            "The answer's signature is not valid.",
        ));
    }
    let now = state.now();
    if !push::is_answerable(c.state, c.expires_at, now) {
        let msg = match c.state {
            ChallengeState::Pending => "This sign-in request has expired.",
            ChallengeState::Superseded => "This sign-in request was replaced by a newer one.",
            ChallengeState::Cancelled => "This sign-in request was cancelled.",
            _ => "This sign-in request was already answered.",
        };
        return Err(ApiErr::new(StatusCode::CONFLICT, "not_pending", msg));
    }
    let entry = |result, reason| Entry {
        user: Some(user.id),
        username: &user.username,
        event: "push_answer",
        method: Some("push"),
        result,
        reason,
    };
    let answer = match r.decision {
        Decision::Approve => Answer::Approve,
        Decision::Deny => Answer::Deny,
        Decision::Report => Answer::Report,
    };
    if answer == Answer::Approve {
        let kind = kind_of(&c);
        let up = crate::policy::for_user(&state, user).await?;
        if !kind_allowed(&up.allowed, kind) {
            audit::record(
                &state,
                &client,
                entry(AuditResult::Failure, Some("not_allowed")),
            )
            .await;
            let msg = match kind {
                api::ChallengeKind::PhoneSignIn => crate::policy::PHONE_SIGN_IN_NOT_ALLOWED,
                api::ChallengeKind::Mfa => {
                    "Your organisation's policy no longer allows approving sign-ins with this app."
                }
            };
            return Err(ApiErr::new(StatusCode::FORBIDDEN, "not_allowed", msg));
        }
        if kind == api::ChallengeKind::PhoneSignIn && signed.device.pin_key_disabled_at.is_some() {
            return Err(pin_disabled());
        }
        if kind == api::ChallengeKind::PhoneSignIn && !signed.device.phone_sign_in_ready() {
            return Err(ApiErr::new(
                StatusCode::FORBIDDEN,
                "phone_sign_in_off",
                "Phone sign-in is not turned on for this device. Turn it on in the app, or use your password.",
            ));
        }
        if kind == api::ChallengeKind::PhoneSignIn || up.policy.authenticator.pin_required {
            check_pin(
                &state,
                &client,
                user,
                &signed.device,
                &message,
                r.pin_signature.as_deref(),
            )
            .await?;
        }
    }
    if answer == Answer::Approve {
        // Counted before judging, per user and method, like verification codes.
        match state
            .store
            .reserve_attempt(
                user.id,
                MethodKind::Push.as_str(),
                &state.config.lockout,
                now,
            )
            .await?
        {
            AttemptGate::Open => {}
            _ => {
                audit::record(&state, &client, entry(AuditResult::Failure, Some("locked"))).await;
                return Err(ApiErr::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "locked",
                    "Too many wrong numbers. Approvals are paused for this account for a while.",
                ));
            }
        }
    }
    let to = push::judge(answer, &c.number, &r.number);
    let (outcome, message, result, event, reason) = match to {
        ChallengeState::Approved => (
            "approved",
            "Approved. Return to the sign-in page.",
            AuditResult::Success,
            "push_answer",
            "approved",
        ),
        ChallengeState::WrongNumber => (
            "wrong_number",
            "The number didn't match. The sign-in was not approved.",
            AuditResult::Failure,
            "push_answer",
            "wrong_number",
        ),
        ChallengeState::Reported => (
            "reported",
            "Thanks for reporting it. Further sign-in requests are blocked until your administrator looks into it.",
            AuditResult::Failure,
            "fraud_reported",
            "reported_by_user",
        ),
        _ => (
            "denied",
            "Denied. The sign-in was not approved.",
            AuditResult::Failure,
            "push_answer",
            "denied",
        ),
    };
    let line = audit::event(
        &state,
        &client,
        Entry {
            event,
            ..entry(result, Some(reason))
        },
    );
    // The answer, its audit line and (for an approval) clearing the failed approvals: one commit.
    if !state
        .store
        .answer_challenge(&c.id, to, signed.device.row_id, now, &line)
        .await?
    {
        return Err(ApiErr::new(
            StatusCode::CONFLICT,
            "not_pending",
            "This sign-in request was already answered or has expired.",
        ));
    }
    state.hub.challenge_changed(&c.id);
    state.hub.publish(
        user.id,
        DeviceEvent::Closed {
            id: c.id.clone(),
            reason: to.as_str().into(),
        },
    );
    if to == ChallengeState::Reported {
        state
            .store
            .update_user_push_blocked(user.id, Some(now))
            .await?;
        for id in state.store.cancel_pending_challenges(user.id).await? {
            state.hub.challenge_changed(&id);
        }
    }
    Ok(Json(RespondResponse {
        outcome: outcome.into(),
        message: message.into(),
    }))
}

/// Checks a PIN-key signature over `message`; 10 consecutive invalid ones turn the PIN key
/// off (DESIGN §4). The database orders racing checks, so no more than 10 in a row are judged.
/// Only the server can tell a wrong PIN: the key is sealed on the phone without integrity tag.
async fn check_pin(
    state: &AppState,
    client: &Client,
    user: &User,
    device: &Device,
    message: &[u8],
    signature: Option<&str>,
) -> Result<(), ApiErr> {
    let Some(signature) = signature else {
        return Err(ApiErr::new(
            StatusCode::UNAUTHORIZED,
            "pin_required",
            "This request needs your app PIN.",
        ));
    };
    let Some(key) = device.pin_key.as_deref() else {
        return Err(no_pin_key());
    };
    // Checked first, then recorded by one compare-and-set that also decides whether the result
    // may count at all (not after 10 wrong in a row, not against a replaced key).
    let valid = parse_key(key).is_some_and(|k| verify(&k, message, signature));
    let n = match state
        .store
        .record_pin_check(
            device.row_id,
            key,
            valid,
            api::MAX_PIN_FAILURES,
            state.now(),
        )
        .await?
    {
        PinOutcome::Accepted => return Ok(()),
        PinOutcome::Wrong {
            consecutive,
            disabled,
        } => {
            let entry = |event, reason| Entry {
                user: Some(user.id),
                username: &user.username,
                event,
                method: Some("pin"),
                result: AuditResult::Failure,
                reason: Some(reason),
            };
            audit::record(state, client, entry("pin_check", "wrong_pin")).await;
            if disabled {
                audit::record(
                    state,
                    client,
                    entry("phone_sign_in_disabled", "too_many_wrong_pins"),
                )
                .await;
                return Err(pin_disabled());
            }
            consecutive
        }
        PinOutcome::Disabled => return Err(pin_disabled()),
        PinOutcome::NoKey => return Err(no_pin_key()),
    };
    let left = api::MAX_PIN_FAILURES - n;
    Err(ApiErr::new(
        StatusCode::UNAUTHORIZED,
        "wrong_pin",
        format!("Wrong PIN. {left} attempt(s) left before phone sign-in is turned off."),
    ))
}

fn no_pin_key() -> ApiErr {
    ApiErr::new(
        StatusCode::FORBIDDEN,
        "no_pin_key",
        "Set an app PIN first: sesame-authenticator pin set.",
    )
}

fn pin_disabled() -> ApiErr {
    ApiErr::new(
        StatusCode::FORBIDDEN,
        "pin_disabled",
        "Phone sign-in and PIN approvals are turned off for this device after 10 wrong PINs. \
         Sign in with your password, choose \"Allow phone sign-in again\" for this device on \
         My security info, then turn phone sign-in on again in the app.",
    )
}

fn decode_p256(b64: &str) -> Result<Vec<u8>, ApiErr> {
    URL_SAFE_NO_PAD
        .decode(b64)
        .ok()
        .filter(|pk| VerifyingKey::from_sec1_bytes(pk).is_ok())
        .ok_or_else(|| {
            ApiErr::new(
                StatusCode::BAD_REQUEST,
                "invalid_key",
                "The public key is not a valid P-256 key.",
            )
        })
}

/// Registers the device's PIN key, or replaces it when the current one signs the new one.
async fn pin_key(
    State(state): State<AppState>,
    client: Client,
    signed: SignedRequest,
) -> Result<Json<DeviceStatus>, ApiErr> {
    let r: PinKeyRequest = parse_json(&signed.body)?;
    if r.alg != api::ALG_ES256 {
        return Err(ApiErr::new(
            StatusCode::BAD_REQUEST,
            "unsupported_alg",
            format!(
                "Signature algorithm {:?} is not supported (use ES256).",
                r.alg
            ),
        ));
    }
    let new_key = decode_p256(&r.public_key)?;
    let d = &signed.device;
    if d.pin_key_disabled_at.is_some() {
        return Err(pin_disabled());
    }
    let replacing = match (&d.pin_key, &r.proof) {
        (None, _) => None,
        (Some(_), None) => {
            return Err(ApiErr::new(
                StatusCode::CONFLICT,
                "pin_key_exists",
                "This device already has a PIN key; change the PIN with `sesame-authenticator pin change`.",
            ))
        }
        (Some(old), Some(proof)) => {
            let msg = api::pin_key_message(&d.id, &r.public_key);
            check_pin(&state, &client, &signed.user, d, &msg, Some(proof)).await?;
            Some(old.as_slice())
        }
    };
    if !state
        .store
        .set_pin_key(d.row_id, &new_key, replacing)
        .await?
    {
        return Err(ApiErr::new(
            StatusCode::CONFLICT,
            "pin_key_changed",
            "The PIN key changed meanwhile. Try again.",
        ));
    }
    audit::record(
        &state,
        &client,
        Entry {
            user: Some(signed.user.id),
            username: &signed.user.username,
            event: if replacing.is_some() {
                "pin_key_replaced"
            } else {
                "pin_key_registered"
            },
            method: Some("pin"),
            result: AuditResult::Success,
            reason: Some(&d.name),
        },
    )
    .await;
    device_status(&state, &signed.user, &d.id).await.map(Json)
}

/// Turns phone sign-in on (policy permitting, proven with the PIN) or off.
async fn phone_sign_in(
    State(state): State<AppState>,
    client: Client,
    signed: SignedRequest,
) -> Result<Json<DeviceStatus>, ApiErr> {
    let r: PhoneSignInRequest = parse_json(&signed.body)?;
    let user = &signed.user;
    let d = &signed.device;
    if r.enabled {
        if !crate::policy::for_user(&state, user)
            .await?
            .allowed
            .phone_sign_in
        {
            audit::record(
                &state,
                &client,
                Entry {
                    user: Some(user.id),
                    username: &user.username,
                    event: "phone_sign_in_enabled",
                    method: Some("phone_sign_in"),
                    result: AuditResult::Failure,
                    reason: Some("not_allowed"),
                },
            )
            .await;
            return Err(ApiErr::new(
                StatusCode::FORBIDDEN,
                "not_allowed",
                crate::policy::PHONE_SIGN_IN_NOT_ALLOWED,
            ));
        }
        let msg = api::phone_sign_in_message(&d.id, &signed.nonce);
        check_pin(&state, &client, user, d, &msg, r.proof.as_deref()).await?;
    }
    state
        .store
        .set_phone_sign_in(d.row_id, r.enabled.then(|| state.now()))
        .await?;
    audit::record(
        &state,
        &client,
        Entry {
            user: Some(user.id),
            username: &user.username,
            event: if r.enabled {
                "phone_sign_in_enabled"
            } else {
                "phone_sign_in_disabled"
            },
            method: Some("phone_sign_in"),
            result: AuditResult::Success,
            reason: Some(&d.name),
        },
    )
    .await;
    device_status(&state, user, &d.id).await.map(Json)
}

async fn status(
    State(state): State<AppState>,
    signed: SignedRequest,
) -> Result<Json<DeviceStatus>, ApiErr> {
    device_status(&state, &signed.user, &signed.device.id)
        .await
        .map(Json)
}

async fn device_status(
    state: &AppState,
    user: &User,
    device_id: &str,
) -> Result<DeviceStatus, ApiErr> {
    let d = state.store.find_device(device_id).await?.ok_or_else(|| {
        ApiErr::new(
            StatusCode::UNAUTHORIZED,
            "unknown_device",
            "This device is not registered with Sesame.",
        )
    })?;
    let allowed = crate::policy::for_user(state, user)
        .await?
        .allowed
        .phone_sign_in;
    let message = if d.pin_key_disabled_at.is_some() {
        pin_disabled().2
    } else if !allowed {
        crate::policy::PHONE_SIGN_IN_NOT_ALLOWED.to_string()
    } else if d.phone_sign_in_ready() {
        "Phone sign-in is on: sign in with your username and this app.".to_string()
    } else {
        "Phone sign-in is available: turn it on with `sesame-authenticator phone-sign-in enable`."
            .to_string()
    };
    Ok(DeviceStatus {
        username: user.username.clone(),
        phone_sign_in_allowed: allowed,
        phone_sign_in_enabled: d.phone_sign_in_at.is_some(),
        pin_key_registered: d.pin_key.is_some(),
        pin_key_disabled: d.pin_key_disabled_at.is_some(),
        message,
    })
}

/// Turns phone sign-in off for a device (the user on My security info, or an administrator);
/// its pending phone sign-in requests end at once.
pub async fn turn_off_phone_sign_in(
    state: &AppState,
    client: &Client,
    user: &User,
    device: &Device,
    by: &str,
) -> Result<(), StoreError> {
    state.store.set_phone_sign_in(device.row_id, None).await?;
    crate::push_signin::cancel(state, user).await?;
    audit::record(
        state,
        client,
        Entry {
            user: Some(user.id),
            username: &user.username,
            event: "phone_sign_in_disabled",
            method: Some("phone_sign_in"),
            result: AuditResult::Success,
            reason: Some(by),
        },
    )
    .await;
    Ok(())
}

/// Forgets a device's PIN key (after it was turned off by wrong PINs), so the app can set up a
/// new one; phone sign-in stays off until the app turns it on again.
pub async fn reset_pin_key(
    state: &AppState,
    client: &Client,
    user: &User,
    device: &Device,
    by: &str,
) -> Result<(), StoreError> {
    state.store.clear_pin_key(user.id, &device.id).await?;
    crate::push_signin::cancel(state, user).await?;
    audit::record(
        state,
        client,
        Entry {
            user: Some(user.id),
            username: &user.username,
            event: "pin_key_reset",
            method: Some("pin"),
            result: AuditResult::Success,
            reason: Some(by),
        },
    )
    .await;
    Ok(())
}

async fn unregister(
    State(state): State<AppState>,
    client: Client,
    signed: SignedRequest,
) -> Result<Json<serde_json::Value>, ApiErr> {
    remove_device(&state, &client, &signed.user, &signed.device.id).await?;
    Ok(Json(serde_json::json!({"removed": true})))
}

/// Removes a device, stops its pending requests at once and records it.
pub async fn remove_device(
    state: &AppState,
    client: &Client,
    user: &User,
    device_id: &str,
) -> Result<bool, StoreError> {
    let Some(cancelled) = state.store.delete_device(user.id, device_id).await? else {
        return Ok(false);
    };
    for id in cancelled {
        state.hub.challenge_changed(&id);
        state.hub.publish(
            user.id,
            DeviceEvent::Closed {
                id,
                reason: "device_removed".into(),
            },
        );
    }
    audit::record(
        state,
        client,
        Entry {
            user: Some(user.id),
            username: &user.username,
            event: "device_removed",
            method: Some("push"),
            result: AuditResult::Success,
            reason: None,
        },
    )
    .await;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::{Signer, Verifier};
    use p256::ecdsa::{Signature, SigningKey};

    /// The check as it was before ring: `None` when the key itself is refused.
    fn p256_verdict(sec1: &[u8], message: &[u8], signature_b64: &str) -> Option<bool> {
        let key = VerifyingKey::from_sec1_bytes(sec1).ok()?;
        let Ok(raw) = URL_SAFE_NO_PAD.decode(signature_b64) else {
            return Some(false);
        };
        let Ok(sig) = Signature::from_slice(&raw) else {
            return Some(false);
        };
        Some(key.verify(message, &sig).is_ok())
    }

    fn ring_verdict(sec1: &[u8], message: &[u8], signature_b64: &str) -> Option<bool> {
        parse_key(sec1).map(|k| verify(&k, message, signature_b64))
    }

    fn signing_key(seed: u8) -> SigningKey {
        SigningKey::from_slice(&[seed; 32]).unwrap()
    }

    /// Every SEC1 form p256 accepts for `key`: uncompressed, compressed, and compact (0x05 || x)
    /// when that decodes to this point rather than its negation.
    fn encodings(key: &VerifyingKey) -> Vec<Vec<u8>> {
        let mut out = vec![
            key.to_encoded_point(false).as_bytes().to_vec(),
            key.to_encoded_point(true).as_bytes().to_vec(),
        ];
        let compact = [&[5u8][..], key.to_encoded_point(true).x().unwrap()].concat();
        if VerifyingKey::from_sec1_bytes(&compact).ok().as_ref() == Some(key) {
            out.push(compact);
        }
        out
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// P-256 group order n, big-endian.
    const N: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63,
        0x25, 0x51,
    ];

    #[test]
    fn ring_verification_agrees_with_p256_on_every_input() {
        let message = b"POST\n/api/v1/device/respond\nbody-hash\n1700000000\nnonce\ndevice";
        let mut tampered_message = message.to_vec();
        tampered_message[0] ^= 1;
        let (mut compared, mut compact_keys) = (0, 0);
        for seed in 1..=8u8 {
            let sk = signing_key(seed);
            let vk = *sk.verifying_key();
            let other = *signing_key(seed + 100).verifying_key();
            let sig: Signature = sk.sign(message);
            let raw = sig.to_bytes().to_vec();
            let (r, s) = sig.split_scalars();
            let high_s = Signature::from_scalars(r, -s).unwrap();
            assert_ne!(high_s.to_bytes(), sig.to_bytes());
            let flip = |i: usize| {
                let mut b = raw.clone();
                b[i] ^= 0x01;
                b64(&b)
            };
            let with = |r: &[u8], s: &[u8]| b64(&[r, s].concat());

            // (signature, message, verdict for the signing key, for another key)
            let cases: Vec<(String, &[u8], bool, bool)> = vec![
                (b64(&raw), message, true, false),
                (b64(&high_s.to_bytes()), message, true, false),
                (b64(&raw), &tampered_message, false, false),
                (flip(0), message, false, false),
                (flip(31), message, false, false),
                (flip(32), message, false, false),
                (flip(63), message, false, false),
                // Malformed: padded or non-URL base64, wrong length, DER, r or s of 0 or >= n.
                (format!("{}==", b64(&raw)), message, false, false),
                (format!("+{}", &b64(&raw)[1..]), message, false, false),
                ("not base64!".into(), message, false, false),
                (String::new(), message, false, false),
                (b64(&raw[..63]), message, false, false),
                (b64(&[&raw[..], &[0]].concat()), message, false, false),
                (b64(sig.to_der().as_bytes()), message, false, false),
                (with(&[0; 32], &raw[32..]), message, false, false),
                (with(&raw[..32], &[0; 32]), message, false, false),
                (with(&N, &raw[32..]), message, false, false),
                (with(&raw[..32], &N), message, false, false),
                (b64(&[0xff; 64]), message, false, false),
            ];
            let forms = encodings(&vk);
            compact_keys += forms.iter().filter(|k| k[0] == 5).count();
            for key in forms {
                for (sig_b64, msg, expected, _) in &cases {
                    let old = p256_verdict(&key, msg, sig_b64);
                    assert_eq!(old, Some(*expected), "p256, key {key:?}, sig {sig_b64}");
                    assert_eq!(
                        ring_verdict(&key, msg, sig_b64),
                        old,
                        "key {key:?}, sig {sig_b64}"
                    );
                    compared += 1;
                }
            }
            for key in encodings(&other) {
                for (sig_b64, msg, _, expected) in &cases {
                    let old = p256_verdict(&key, msg, sig_b64);
                    assert_eq!(old, Some(*expected));
                    assert_eq!(ring_verdict(&key, msg, sig_b64), old, "wrong key {key:?}");
                    compared += 1;
                }
            }
        }
        assert!(
            compared >= 8 * 2 * 2 * 19,
            "compressed and uncompressed keys all compared"
        );
        assert!(compact_keys > 0, "some compact keys compared");
    }

    #[test]
    fn malformed_keys_are_refused_as_before() {
        let sk = signing_key(7);
        let sig = b64(&Signature::to_bytes(&sk.sign(b"m")));
        let vk = sk.verifying_key();
        let uncompressed = vk.to_encoded_point(false).as_bytes().to_vec();
        let compressed = vk.to_encoded_point(true).as_bytes().to_vec();
        let mut off_curve = uncompressed.clone();
        off_curve[64] ^= 1;
        let mut hybrid = uncompressed.clone();
        hybrid[0] = 6 | (uncompressed[64] & 1);
        let mut wrong_parity = compressed.clone();
        wrong_parity[0] ^= 1;
        let p = [
            0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0xff,
        ];
        let x_too_big = [&[2u8][..], &p[..]].concat();
        let keys: Vec<Vec<u8>> = vec![
            vec![],
            vec![0],
            vec![4],
            off_curve,
            hybrid,
            x_too_big,
            uncompressed[..64].to_vec(),
            compressed[..32].to_vec(),
            [&compressed[..], &[0]].concat(),
            vec![4; 65],
        ];
        for key in &keys {
            let old = p256_verdict(key, b"m", &sig);
            assert_eq!(ring_verdict(key, b"m", &sig), old, "key {key:?}");
            assert_eq!(old, None, "key {key:?}");
        }
        // A flipped compression bit is another valid point: accepted as a key, fails to verify.
        assert_eq!(p256_verdict(&wrong_parity, b"m", &sig), Some(false));
        assert_eq!(ring_verdict(&wrong_parity, b"m", &sig), Some(false));
    }
}
