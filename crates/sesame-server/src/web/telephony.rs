//! What gateways call back: Kannel's delivery reports, and a Twilio-compatible provider's
//! voice webhooks (the TwiML prompt, the keys pressed, call and message status). Each route
//! answers only when its gateway is configured; every Twilio request must carry a valid
//! `X-Twilio-Signature` (HMAC-SHA1 with the account's token over the URL and parameters),
//! checked before anything is read from it.

use crate::service::phones::{self, CallReports};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, OriginalUri, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use sesame_telephony::twilio::{self, GatherStep, STAGE_FIRST, STAGE_FRAUD};
use sesame_telephony::{CallOutcome, Reports};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/telephony/kannel/dlr", get(kannel_dlr))
        .route("/telephony/twilio/voice/{reference}", post(twilio_voice))
        .route("/telephony/twilio/gather/{reference}", post(twilio_gather))
        .route(
            "/telephony/twilio/call-status/{reference}",
            post(twilio_call_status),
        )
        .route(
            "/telephony/twilio/message-status/{reference}",
            post(twilio_message_status),
        )
}

async fn kannel_dlr(State(state): State<AppState>, uri: OriginalUri) -> Response {
    if !state.telephony.kannel {
        return StatusCode::NOT_FOUND.into_response();
    }
    match sesame_telephony::kannel::parse_dlr(uri.query().unwrap_or("")) {
        Some((reference, status)) => {
            CallReports(state.services().clone())
                .message_status(&reference, status)
                .await;
            StatusCode::OK.into_response()
        }
        None => StatusCode::BAD_REQUEST.into_response(),
    }
}

/// A Twilio webhook whose signature is valid: its account, its form parameters, and the
/// reference (the path's last segment). Anything else is refused before a handler runs: 404
/// when no Twilio-compatible gateway is configured, 403 for a missing or wrong signature or
/// another account.
struct Signed {
    cfg: twilio::TwilioConfig,
    params: Vec<(String, String)>,
    reference: String,
    query: String,
}

impl Signed {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl FromRequest<AppState> for Signed {
    type Rejection = StatusCode;

    async fn from_request(
        req: axum::extract::Request,
        state: &AppState,
    ) -> Result<Self, StatusCode> {
        let Some(cfg) = state.telephony.twilio.clone() else {
            return Err(StatusCode::NOT_FOUND);
        };
        let (mut parts, body) = req.into_parts();
        let uri = OriginalUri::from_request_parts(&mut parts, state)
            .await
            .map_err(|_| StatusCode::BAD_REQUEST)?;
        let sig = parts
            .headers
            .get("x-twilio-signature")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = Bytes::from_request(axum::extract::Request::from_parts(parts, body), state)
            .await
            .map_err(|_| StatusCode::BAD_REQUEST)?;
        let params: Vec<(String, String)> = form_urlencoded::parse(&body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        // The URL the provider requested, as it knows Sesame: the configured public base,
        // never the Host header a caller chooses.
        let url = format!(
            "{}{}",
            cfg.webhook_base.trim_end_matches('/'),
            uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
        );
        if !twilio::verify_signature(&url, &params, sig.as_deref(), &cfg.auth_token) {
            tracing::warn!("a Twilio webhook with a missing or wrong signature was refused");
            return Err(StatusCode::FORBIDDEN);
        }
        let signed = Signed {
            reference: uri.path().rsplit('/').next().unwrap_or("").to_string(),
            query: uri.query().unwrap_or("").to_string(),
            cfg,
            params,
        };
        if signed
            .param("AccountSid")
            .is_some_and(|v| v != signed.cfg.account_sid)
        {
            return Err(StatusCode::FORBIDDEN);
        }
        Ok(signed)
    }
}

fn twiml(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], body).into_response()
}

async fn twilio_voice(State(state): State<AppState>, hook: Signed) -> Response {
    let words = match state
        .store
        .find_challenge(&sesame_core::ChallengeId(hook.reference.clone()))
        .await
    {
        Ok(Some(c)) => phones::prompt_of(&state, &c),
        _ => phones::prompt(&state),
    };
    twiml(twilio::voice_twiml(
        &words,
        &hook.cfg.gather_url(&hook.reference, STAGE_FIRST),
        state.config.telephony.call_key_timeout_secs,
    ))
}

async fn report(state: &AppState, reference: &str, outcome: CallOutcome) {
    CallReports(state.services().clone())
        .call_ended(reference, outcome)
        .await;
}

async fn twilio_gather(State(state): State<AppState>, hook: Signed) -> Response {
    let stage = url::form_urlencoded::parse(hook.query.as_bytes())
        .find(|(k, _)| k == "stage")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let reference = &hook.reference;
    match twilio::gather_step(&stage, hook.param("Digits").unwrap_or("")) {
        GatherStep::AskFraudConfirm => twiml(twilio::confirm_fraud_twiml(
            &hook.cfg.gather_url(reference, STAGE_FRAUD),
            state.config.telephony.call_key_timeout_secs,
        )),
        GatherStep::Approve => {
            report(&state, reference, CallOutcome::Approved).await;
            twiml(twilio::say_and_hangup_twiml(
                "Thank you. You are signed in. Goodbye.",
            ))
        }
        GatherStep::Fraud => {
            report(&state, reference, CallOutcome::Fraud).await;
            twiml(twilio::say_and_hangup_twiml(
                "Thank you. The sign-in was refused and reported. Goodbye.",
            ))
        }
        GatherStep::NoKey => {
            report(&state, reference, CallOutcome::NoKey).await;
            twiml(twilio::say_and_hangup_twiml(
                "The sign-in was not approved. Goodbye.",
            ))
        }
    }
}

async fn twilio_call_status(State(state): State<AppState>, hook: Signed) -> Response {
    let status = hook.param("CallStatus").unwrap_or("");
    // A completed call whose keys decided nothing ends without a key; a call already decided
    // by its keys is not pending any more, so this changes nothing.
    let outcome = twilio::call_status_outcome(status)
        .or_else(|| (status == "completed").then_some(CallOutcome::NoKey));
    if let Some(outcome) = outcome {
        report(&state, &hook.reference, outcome).await;
    }
    StatusCode::OK.into_response()
}

async fn twilio_message_status(State(state): State<AppState>, hook: Signed) -> Response {
    let status = hook.param("MessageStatus").unwrap_or("");
    if let Some(s) = twilio::message_status(status, hook.param("ErrorCode")) {
        CallReports(state.services().clone())
            .message_status(&hook.reference, s)
            .await;
    }
    StatusCode::OK.into_response()
}
