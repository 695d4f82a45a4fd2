//! Verification codes (RFC 6238): 6 digits every 30 seconds from any authenticator app, each
//! code accepted once. Set up on My security info by scanning a QR code and typing one code.

use super::{Prompt, SecondStep, Verdict};
use crate::error::Error;
use crate::service::{Line, Origin, Services};
use crate::web::extract::{Checked, Recent};
use crate::web::templates::TotpSetupPage;
use crate::web::{page, qr_data_uri, see_other, CsrfToken};
use crate::AppState;
use async_trait::async_trait;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use rand::RngCore;
use sesame_core::audit::Event;
use sesame_core::lockout::AttemptGate;
use sesame_core::method::MethodKind;
use sesame_core::secret::SecretBytes;
use sesame_core::totp;
use sesame_store::{SignInRecord, User};

pub struct Codes;

/// How long a started authenticator set-up stays valid.
const ENROLLMENT_SECS: i64 = 600;

fn minutes_until(now: i64, until: i64) -> i64 {
    ((until - now).max(1) + 59) / 60
}

#[async_trait]
impl SecondStep for Codes {
    fn kind(&self) -> MethodKind {
        MethodKind::Totp
    }

    fn prompt(&self) -> Prompt {
        Prompt::Code {
            text: "Enter the code displayed in the authenticator app on your mobile device.",
            sent: false,
        }
    }

    fn enrolment(&self) -> Option<(&'static str, &'static str)> {
        Some((
            "/security-info/add/totp",
            "Authenticator app (verification code)",
        ))
    }

    async fn begin(
        &self,
        _: &Services,
        _: &Origin,
        _: &SignInRecord,
        _: &User,
    ) -> Result<Option<String>, Error> {
        // The code is on the phone already: nothing to send.
        Ok(None)
    }

    async fn verify(
        &self,
        svc: &Services,
        origin: &Origin,
        user: &User,
        input: &str,
    ) -> Result<Verdict, Error> {
        let refused = |status, message: &str| Verdict::Refused {
            status,
            message: message.to_string(),
        };
        let code = match totp::parse_code(input) {
            Ok(c) => c,
            Err(e) => return Ok(refused(StatusCode::BAD_REQUEST, &e.to_string())),
        };
        let fail = |reason: &str| {
            Line::of(user, Event::SignIn)
                .method(MethodKind::Totp)
                .failed(reason)
        };
        let now = svc.now();
        // The attempt is counted before the code is compared, per user and method, in the
        // store: new sessions, new codes and parallel requests share one counter.
        match svc
            .store
            .reserve_attempt(user.id, MethodKind::Totp, &svc.config.lockout, now)
            .await?
        {
            AttemptGate::Open => {}
            AttemptGate::SoftLocked { until } => {
                svc.audit(origin, fail("locked")).await;
                let m = minutes_until(now, until);
                let msg = format!(
                    "Too many wrong codes. Try again in {m} minute{}, or use a different verification option.",
                    if m == 1 { "" } else { "s" }
                );
                return Ok(refused(StatusCode::TOO_MANY_REQUESTS, &msg));
            }
            AttemptGate::HardLocked => {
                svc.audit(origin, fail("hard_locked")).await;
                return Ok(refused(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Verification codes are locked for your account after too many wrong codes. Contact your administrator, or use a different verification option.",
                ));
            }
        }
        let mut reused = false;
        let mut accepted = false;
        for m in svc
            .store
            .list_methods(user.id)
            .await?
            .iter()
            .filter(|m| m.kind == MethodKind::Totp)
        {
            let Some(secret) = &m.totp_secret else {
                continue;
            };
            if let Some(step) = totp::matching_step(secret, &code, now) {
                // Each step is claimed once, by a conditional update in the database.
                if svc.store.claim_totp_step(m.id, step, now).await? {
                    accepted = true;
                    break;
                }
                reused = true;
            }
        }
        if !accepted {
            let (reason, msg) = if reused {
                (
                    "code_reused",
                    "That code has already been used. Wait for the next code in your app and enter it.",
                )
            } else {
                (
                    "wrong_code",
                    "That code didn't work. Check the code and try again.",
                )
            };
            svc.audit(origin, fail(reason)).await;
            return Ok(refused(StatusCode::UNAUTHORIZED, msg));
        }
        svc.store.clear_failures(user.id, MethodKind::Totp).await?;
        Ok(Verdict::Accepted)
    }

    async fn cancel(&self, _: &Services, _: &SignInRecord, _: &User) -> Result<(), Error> {
        Ok(())
    }

    fn routes(&self) -> Router<AppState> {
        Router::new().route("/security-info/add/totp", get(add_page).post(add_submit))
    }
}

fn grouped(secret_b32: &str) -> String {
    secret_b32
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The set-up page for `secret`, waiting for its first code.
fn setup_page(
    state: &AppState,
    user: &User,
    csrf: &CsrfToken,
    enrollment: &str,
    secret: &SecretBytes,
    status: StatusCode,
    error: Option<&str>,
) -> Result<Response, Error> {
    let uri = totp::otpauth_uri(&state.config.service_name, &user.username, secret);
    let qr = qr_data_uri(&uri)?;
    let secret = grouped(&totp::secret_base32(secret));
    Ok(page(
        csrf,
        status,
        &TotpSetupPage {
            csrf: &csrf.token,
            error,
            qr: &qr,
            secret: &secret,
            uri: &uri,
            enrollment,
        },
    ))
}

async fn add_page(
    State(state): State<AppState>,
    Recent(me): Recent,
    csrf: CsrfToken,
) -> Result<Response, Error> {
    let mut raw = vec![0u8; totp::SECRET_LEN];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let secret = SecretBytes::new(raw);
    let enrollment = state
        .store
        .create_totp_enrollment(me.user.id, &secret, state.now() + ENROLLMENT_SECS)
        .await?;
    setup_page(
        &state,
        &me.user,
        &csrf,
        &enrollment,
        &secret,
        StatusCode::OK,
        None,
    )
}

/// Why a set-up was not confirmed.
enum Refused {
    /// Gone or expired: start again.
    Expired,
    /// The code was not right (or not a code); the page says why.
    Code(String),
}

/// Confirms a set-up with one code from the app, once: creates the method (default if the
/// user had none) and records it.
async fn confirm(
    svc: &Services,
    origin: &Origin,
    user: &User,
    enrollment: &str,
    typed: &str,
) -> Result<Result<(), Refused>, Error> {
    let now = svc.now();
    let Some(secret) = svc
        .store
        .find_totp_enrollment(user.id, enrollment, now)
        .await?
    else {
        return Ok(Err(Refused::Expired));
    };
    let code = match totp::parse_code(typed) {
        Ok(c) => c,
        Err(e) => return Ok(Err(Refused::Code(e.to_string()))),
    };
    let Some(step) = totp::matching_step(&secret, &code, now) else {
        return Ok(Err(Refused::Code("That code didn't work. Check that the app shows this account and enter its current code.".into())));
    };
    // Taking the enrolment is the single-use point: a replayed confirmation finds nothing.
    let Some(secret) = svc
        .store
        .take_totp_enrollment(user.id, enrollment, now)
        .await?
    else {
        return Ok(Err(Refused::Expired));
    };
    let method = svc
        .store
        .create_totp_method(user.id, "Authenticator app", &secret, step, now)
        .await?;
    if user.default_method.is_none() {
        svc.store
            .update_default_method(user.id, Some(method.id))
            .await?;
    }
    svc.audit(
        origin,
        Line::of(user, Event::MethodAdded).method(MethodKind::Totp),
    )
    .await;
    Ok(Ok(()))
}

async fn add_submit(
    State(state): State<AppState>,
    origin: Origin,
    csrf: CsrfToken,
    Checked { me, form, .. }: Checked<Recent>,
) -> Result<Response, Error> {
    let enrollment = form.text("enrollment");
    let expired =
        || Error::bad_request("This set-up has expired. Start again from My security info.");
    match confirm(&state, &origin, &me.user, enrollment, form.text("code")).await? {
        Ok(()) => Ok(see_other("/security-info?done=added")),
        Err(Refused::Expired) => Err(expired()),
        Err(Refused::Code(message)) => {
            // Shown again with the same secret, so the person can simply try the next code.
            let secret = state
                .store
                .find_totp_enrollment(me.user.id, enrollment, state.now())
                .await?
                .ok_or_else(expired)?;
            setup_page(
                &state,
                &me.user,
                &csrf,
                enrollment,
                &secret,
                StatusCode::BAD_REQUEST,
                Some(&message),
            )
        }
    }
}
