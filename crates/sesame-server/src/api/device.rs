//! The device API (DESIGN §4): JSON over HTTP for the authenticator app.
//!
//! Activation is authorised by a one-time activation code; every other call is signed with the
//! device key over method, path, body hash, timestamp and nonce ([`SignedRequest`]), checked
//! for freshness, and its nonce is recorded in the database so a replay fails on every node.

use super::DeviceError;
use crate::delivery::hub::Received;
use crate::error::{Error, Kind};
use crate::service::approvals::{self, AppAnswer};
use crate::service::{devices, Origin};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use sesame_core::push::ApprovalChannel;
use sesame_core::totp;
use sesame_proto::device::{
    self as api, ActivateRequest, ActivateResponse, DeviceEvent, DeviceStatus, PendingResponse,
    PhoneSignInRequest, PinKeyRequest, RespondRequest, RespondResponse, TotpParams,
};
use sesame_store::{Device, User};
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

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, DeviceError> {
    serde_json::from_slice(body)
        .map_err(|e| DeviceError(Error::bad_request(format!("The request is not valid: {e}"))))
}

async fn read_body(req: Request, state: &AppState) -> Result<Bytes, DeviceError> {
    Bytes::from_request(req, state).await.map_err(|e| {
        DeviceError(if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::new(
                Kind::PayloadTooLarge,
                "too_large",
                "The request is too large.",
            )
        } else {
            Error::bad_request("The request body could not be read.")
        })
    })
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Result<&'a str, DeviceError> {
    h.get(name).and_then(|v| v.to_str().ok()).ok_or_else(|| {
        DeviceError(Error::new(
            Kind::Unauthorized,
            "unsigned",
            format!("The request must be signed by a device ({name} is missing)."),
        ))
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

impl FromRequest<AppState> for SignedRequest {
    type Rejection = DeviceError;

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
        let timestamp: i64 = header(&headers, api::HEADER_TIMESTAMP)?
            .parse()
            .map_err(|_| {
                Error::new(
                    Kind::Unauthorized,
                    "unsigned",
                    "The request timestamp is not a number.",
                )
            })?;
        let parts = devices::SignedParts {
            method: &method,
            path: &path,
            body: &body,
            device_id,
            timestamp,
            nonce: header(&headers, api::HEADER_NONCE)?,
            signature: header(&headers, api::HEADER_SIGNATURE)?,
        };
        let nonce = parts.nonce.to_string();
        let (device, user) = devices::authenticate(state, parts).await?;
        Ok(SignedRequest {
            device,
            user,
            body,
            nonce,
        })
    }
}

async fn activate(
    State(state): State<AppState>,
    origin: Origin,
    req: Request,
) -> Result<Json<ActivateResponse>, DeviceError> {
    let body = read_body(req, &state).await?;
    let r: ActivateRequest = parse_json(&body)?;
    let done = devices::activate(&state, &origin, &r).await?;
    Ok(Json(ActivateResponse {
        phone_sign_in_allowed: done.phone_sign_in_allowed,
        device_id: done.device.id.0,
        issuer: state.config.service_name.clone(),
        username: done.user.username.clone(),
        display_name: done.user.display_name.clone(),
        totp: TotpParams {
            secret_base32: totp::secret_base32(&done.totp_secret),
            algorithm: "SHA1".into(),
            digits: totp::DIGITS as u32,
            period: totp::STEP_SECONDS as u64,
        },
    }))
}

async fn pending(
    State(state): State<AppState>,
    signed: SignedRequest,
) -> Result<Json<PendingResponse>, DeviceError> {
    let list = state
        .store
        .list_pending_challenges(signed.user.id, state.now())
        .await?;
    let policy = state.user_policy(&signed.user).await?.policy;
    // Newest first: several sign-ins may wait at once (a phone sign-in never withdraws
    // another's request), and the newest is the one the person most likely has in front of them.
    Ok(Json(PendingResponse {
        challenges: list
            .iter()
            .rev()
            .filter(|c| c.channel == ApprovalChannel::App)
            .map(|c| approvals::challenge_view(c, &signed.user.username, &policy.authenticator))
            .collect(),
    }))
}

async fn events(
    State(state): State<AppState>,
    signed: SignedRequest,
) -> Result<Response, DeviceError> {
    let user = signed.user.clone();
    // Subscribe before reading the pending list, so nothing created in between is missed.
    let sub = state.hub.subscribe(user.id, signed.device.id.as_str());
    let policy = state.user_policy(&user).await?.policy;
    let first: Vec<DeviceEvent> = state
        .store
        .list_pending_challenges(user.id, state.now())
        .await?
        .iter()
        // A call is answered on the phone line, never in the app.
        .filter(|c| c.channel == ApprovalChannel::App)
        .map(|c| {
            DeviceEvent::Challenge(approvals::challenge_view(
                c,
                &user.username,
                &policy.authenticator,
            ))
        })
        .collect();
    // Events go to every stream of the user; a device removed while its stream is open must
    // not go on receiving requests (their application, address and location), so each request
    // is sent only after checking that this device is still registered. That a request closed
    // (its id and why) tells a removed device nothing: those go without a read.
    let device = signed.device.id.clone();
    let stream = futures_util::stream::unfold(
        (first.into_iter(), Some(sub), state, device),
        |(mut first, sub, state, device)| async move {
            if let Some(ev) = first.next() {
                return Some((to_sse(&ev), (first, sub, state, device)));
            }
            let mut sub = sub?;
            match sub.recv().await {
                Received::Event(ev @ DeviceEvent::Closed { .. }) => {
                    Some((to_sse(&ev), (first, Some(sub), state, device)))
                }
                Received::Event(ev) => match state.store.find_device(&device).await {
                    Ok(Some(_)) => Some((to_sse(&ev), (first, Some(sub), state, device))),
                    // Removed (or unknown for now): end the stream. A device that is still
                    // registered reconnects and re-reads the pending list.
                    _ => None,
                },
                // The last word before the stream ends: when to come back.
                Received::ShuttingDown => Some((
                    Ok(Event::default()
                        .comment("the server is restarting: reconnect")
                        .retry(RECONNECT_AFTER)),
                    (first, None, state, device),
                )),
                Received::Replaced => Some((
                    Ok(Event::default().comment("a newer stream of this device replaced this one")),
                    (first, None, state, device),
                )),
                // A stream that fell behind, or whose channel closed, ends: the app reconnects
                // and re-reads the pending list.
                Received::Closed => None,
            }
        },
    );
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(20)))
        .into_response())
}

/// How long an app waits before reconnecting to a server that is restarting.
const RECONNECT_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

fn to_sse(ev: &DeviceEvent) -> Result<Event, Infallible> {
    Ok(Event::default().data(serde_json::to_string(ev).expect("events serialise")))
}

async fn respond(
    State(state): State<AppState>,
    origin: Origin,
    signed: SignedRequest,
) -> Result<Json<RespondResponse>, DeviceError> {
    let r: RespondRequest = parse_json(&signed.body)?;
    let answer = AppAnswer {
        user: &signed.user,
        device: &signed.device,
        challenge_id: &r.challenge_id,
        decision: r.decision,
        number: &r.number,
        signature: &r.signature,
        pin_signature: r.pin_signature.as_deref(),
    };
    Ok(Json(approvals::answer(&state, &origin, answer).await?))
}

/// Registers the device's PIN key, or replaces it when the current one signs the new one.
async fn pin_key(
    State(state): State<AppState>,
    origin: Origin,
    signed: SignedRequest,
) -> Result<Json<DeviceStatus>, DeviceError> {
    let r: PinKeyRequest = parse_json(&signed.body)?;
    let status =
        devices::register_pin_key(&state, &origin, &signed.user, &signed.device, &r).await?;
    Ok(Json(status))
}

/// Turns phone sign-in on (policy permitting, proven with the PIN) or off.
async fn phone_sign_in(
    State(state): State<AppState>,
    origin: Origin,
    signed: SignedRequest,
) -> Result<Json<DeviceStatus>, DeviceError> {
    let r: PhoneSignInRequest = parse_json(&signed.body)?;
    let status = devices::set_phone_sign_in(
        &state,
        &origin,
        &signed.user,
        &signed.device,
        &r,
        &signed.nonce,
    )
    .await?;
    Ok(Json(status))
}

async fn status(
    State(state): State<AppState>,
    signed: SignedRequest,
) -> Result<Json<DeviceStatus>, DeviceError> {
    Ok(Json(
        devices::status(&state, &signed.user, &signed.device.id).await?,
    ))
}

async fn unregister(
    State(state): State<AppState>,
    origin: Origin,
    signed: SignedRequest,
) -> Result<Json<serde_json::Value>, DeviceError> {
    devices::remove(&state, &origin, &signed.user, &signed.device.id).await?;
    Ok(Json(serde_json::json!({"removed": true})))
}
