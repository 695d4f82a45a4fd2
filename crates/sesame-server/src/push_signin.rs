//! The "approve on your phone" second step: the page shows a number, the phone asks for it.
//!
//! Starting a request checks the push budget (DESIGN §7) and the report block; a new request
//! supersedes the user's pending one and the phone is told. The page long-polls
//! `/login/push/status`; once the phone approves, `/login/push/complete` turns the approval
//! into a session exactly once (approved -> consumed is a compare-and-set in the store).

use crate::audit::{self, Entry};
use crate::device_api::challenge_view;
use crate::error::AppError;
use crate::signin::{finish, load, page_for, Transaction};
use crate::web::{esc, layout, page, see_other, Client, CsrfForm, CsrfToken};
use crate::AppState;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use sesame_core::method::MethodKind;
use sesame_core::push::PushPolicy;
use sesame_core::push::{self, ChallengeState};
use sesame_core::signin::{SignInEvent, SignInState};
use sesame_proto::device::{ChallengeKind, DeviceEvent};
use sesame_store::{AuditResult, ChallengeRecord, NewChallenge, SignInRecord, User};
use std::net::IpAddr;
use std::time::Duration;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/login/push/status", get(status))
        .route("/login/push/complete", post(complete))
        .route("/login/push/resend", post(resend))
        .route("/static/push.js", get(script))
}

/// Longest a status request waits for a change before answering "pending".
const LONG_POLL: Duration = Duration::from_secs(25);

/// Sesame ships no IP geolocation database, so "approximate location" is what can be said
/// honestly from the address itself.
pub fn approximate_location(ip: IpAddr) -> String {
    let private = match ip {
        IpAddr::V4(v4) => v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00,
    };
    if ip.is_loopback() {
        "This computer".into()
    } else if private {
        "Local network".into()
    } else {
        "Unknown location".into()
    }
}

/// Why no request can be sent now, if so.
async fn push_refusal(
    state: &AppState,
    user: &User,
    policy: &PushPolicy,
) -> Result<Option<&'static str>, AppError> {
    if user.push_blocked_at.is_some() {
        return Ok(Some("Sign-in requests to your phone are blocked because one was reported as not you. Use a different verification option, or contact your administrator."));
    }
    let since = policy.window_start(state.now(), user.last_signin_at);
    if !policy.may_push(state.store.count_challenges_since(user.id, since).await?) {
        return Ok(Some("Too many sign-in requests were sent to your phone. Use a different verification option, or try again later."));
    }
    Ok(None)
}

/// The wire and log name of a challenge kind.
pub fn kind_name(kind: ChallengeKind) -> &'static str {
    match kind {
        ChallengeKind::Mfa => "mfa",
        ChallengeKind::PhoneSignIn => "phone_sign_in",
    }
}

/// The method name the audit log uses for a kind.
fn method_name(kind: ChallengeKind) -> &'static str {
    match kind {
        ChallengeKind::Mfa => "push",
        ChallengeKind::PhoneSignIn => "phone_sign_in",
    }
}

/// Sends a new request to the user's phone for this sign-in, if allowed. A new request
/// supersedes the user's pending one, whatever its kind: an unanswered request never blocks
/// the next attempt.
pub(crate) async fn start(
    state: &AppState,
    client: &Client,
    rec: &SignInRecord,
    user: &User,
    kind: ChallengeKind,
) -> Result<(), AppError> {
    let up = crate::policy::for_user(state, user).await?;
    if let Some(reason) = push_refusal(state, user, &up.push).await? {
        audit::record(
            state,
            client,
            Entry {
                user: Some(user.id),
                username: &user.username,
                event: "push_not_sent",
                method: Some(method_name(kind)),
                result: AuditResult::Failure,
                reason: Some(if user.push_blocked_at.is_some() {
                    "reported_block"
                } else {
                    "rate_limited"
                }),
            },
        )
        .await;
        tracing::info!(user = %user.username, reason, "push not sent");
        return Ok(());
    }
    let now = state.now();
    let policy = &up.push;
    let new = NewChallenge {
        tenant: user.tenant,
        user: user.id,
        signin_id_hash: rec.id_hash.clone(),
        kind: kind_name(kind).into(),
        number: push::generate_number(policy.digits, &mut rand::rngs::OsRng),
        app_name: state.config.issuer.clone(),
        ip: client.ip.to_string(),
        location: approximate_location(client.ip),
        user_agent: client.user_agent.clone(),
        expires_at: now + policy.lifetime_secs.min(push::MAX_LIFETIME_SECS),
    };
    let sent = audit::event(
        state,
        client,
        Entry {
            user: Some(user.id),
            username: &user.username,
            event: "push_sent",
            method: Some(method_name(kind)),
            result: AuditResult::Success,
            reason: None,
        },
    );
    let (challenge, superseded) = state.store.create_challenge(new, now, Some(&sent)).await?;
    for id in superseded {
        state.hub.challenge_changed(&id);
        state.hub.publish(
            user.id,
            DeviceEvent::Closed {
                id,
                reason: "superseded".into(),
            },
        );
    }
    state.hub.publish(
        user.id,
        DeviceEvent::Challenge(challenge_view(
            &challenge,
            &user.username,
            &up.policy.authenticator,
        )),
    );
    Ok(())
}

/// Cancels the user's pending requests (the sign-in moved to another method).
pub(crate) async fn cancel(state: &AppState, user: &User) -> Result<(), sesame_store::StoreError> {
    for id in state.store.cancel_pending_challenges(user.id).await? {
        state.hub.challenge_changed(&id);
        state.hub.publish(
            user.id,
            DeviceEvent::Closed {
                id,
                reason: "cancelled".into(),
            },
        );
    }
    Ok(())
}

/// The state the page should show: a pending challenge past its expiry is "expired".
fn shown_state(c: &ChallengeRecord, now: i64) -> &'static str {
    match c.state {
        ChallengeState::Pending if now >= c.expires_at => "expired",
        s => s.as_str(),
    }
}

fn final_message(state: &str) -> &'static str {
    match state {
        "expired" => "The request timed out before it was approved.",
        "denied" => "The request was denied on your phone.",
        "wrong_number" => "The number entered on your phone didn't match. The sign-in was not approved.",
        "reported" => "You reported this sign-in as not you. Requests to your phone are now blocked; your administrator has been told.",
        "superseded" => "A newer request was sent to your phone.",
        "cancelled" => "The request was cancelled.",
        _ => "The request is no longer valid.",
    }
}

const OTHER_OPTION: &str =
    "<p><a href=\"/login/methods\">Use a different verification option</a></p>";

/// The way out of a phone sign-in page: the password is always there.
fn phone_ways_out(csrf: &CsrfToken) -> String {
    format!(
        "<form method=\"post\" action=\"/login/password-instead\">{}<button type=\"submit\" class=\"link\">Use your password instead</button></form>\
         <p><a href=\"/login/options\">Other ways to sign in</a></p>",
        csrf.hidden_field()
    )
}

pub(crate) async fn waiting_page(
    state: &AppState,
    rec: &SignInRecord,
    csrf: &CsrfToken,
) -> Response {
    match render_waiting(state, rec, csrf).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn render_waiting(
    state: &AppState,
    rec: &SignInRecord,
    csrf: &CsrfToken,
) -> Result<Response, AppError> {
    let (user, kind) = match rec.state {
        SignInState::SecondFactor { user, .. } => (user, ChallengeKind::Mfa),
        SignInState::PhoneSignIn { user } => (user, ChallengeKind::PhoneSignIn),
        _ => return Ok(see_other(page_for(&rec.state))),
    };
    let user = state
        .store
        .find_user(user)
        .await?
        .ok_or(AppError::NotFound)?;
    let other = match kind {
        ChallengeKind::Mfa => OTHER_OPTION.to_string(),
        ChallengeKind::PhoneSignIn => phone_ways_out(csrf),
    };
    let (intro, pin_note) = match kind {
        ChallengeKind::Mfa => (
            "Open your Authenticator app, and enter the number shown to sign in.",
            "",
        ),
        ChallengeKind::PhoneSignIn => (
            "Open your Authenticator app, and enter the number shown to sign in. Then unlock it with your app PIN.",
            "<p class=\"note\">Signing in with your phone counts as two-step verification.</p>",
        ),
    };
    let push_policy = crate::policy::for_user(state, &user).await?.push;
    let now = state.now();
    let latest = state
        .store
        .find_latest_challenge_for_signin(&rec.id_hash)
        .await?;
    let resend = format!(
        "<form method=\"post\" action=\"/login/push/resend\">{}<button type=\"submit\">Send another request</button></form>",
        csrf.hidden_field()
    );
    let body = match latest {
        Some(c) if shown_state(&c, now) == "pending" => format!(
            "<p>{}</p><h1>Approve sign-in request</h1>\
             <p>{intro}</p>\
             <div class=\"number\" id=\"push-number\" aria-live=\"polite\">{}</div>\
             <p class=\"note\" id=\"push-status\" role=\"status\">Waiting for your phone… The request expires in {} seconds.</p>\
             <form id=\"push-complete\" method=\"post\" action=\"/login/push/complete\">{}\
             <noscript><button type=\"submit\">I approved it on my phone</button></noscript></form>\
             {pin_note}<p class=\"note\">No numbers in your app? Make sure to upgrade to the latest version.</p>{other}\
             <script src=\"/static/push.js\"></script>",
            esc(&user.username),
            esc(&c.number),
            (c.expires_at - now).max(0),
            csrf.hidden_field(),
        ),
        Some(c) if c.state == ChallengeState::Approved => format!(
            "<h1>Approved</h1><p>Your phone approved the sign-in.</p>\
             <form id=\"push-complete\" method=\"post\" action=\"/login/push/complete\">{}<button type=\"submit\">Continue</button></form>",
            csrf.hidden_field()
        ),
        Some(c) => {
            let shown = shown_state(&c, now);
            let again = if shown == "reported" { String::new() } else { resend.clone() };
            format!("<h1>Request not approved</h1><p class=\"error\" role=\"alert\">{}</p>{again}{other}", esc(final_message(shown)))
        }
        None => match push_refusal(state, &user, &push_policy).await? {
            Some(reason) => format!("<h1>We couldn't send a request</h1><p class=\"error\" role=\"alert\">{}</p>{other}", esc(reason)),
            None => format!("<h1>Approve sign-in request</h1><p>Send a request to your Authenticator app.</p>{resend}{other}"),
        },
    };
    Ok(page(
        csrf,
        StatusCode::OK,
        layout("Approve sign-in request", &body),
    ))
}

#[derive(Serialize)]
struct Status {
    state: &'static str,
    message: &'static str,
}

async fn status(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let rec = match load(&state, &headers).await {
        Ok(r) => r,
        Err(_) => {
            return Json(Status {
                state: "gone",
                message: "This sign-in has ended. Start again.",
            })
            .into_response()
        }
    };
    let Some(c) = read_latest(&state, &rec).await else {
        return Json(Status {
            state: "none",
            message: "",
        })
        .into_response();
    };
    if shown_state(&c, state.now()) != "pending" {
        return Json(Status {
            state: shown_state(&c, state.now()),
            message: final_message(shown_state(&c, state.now())),
        })
        .into_response();
    }
    // Register the waiter first, then re-read, then sleep: no change can slip in between.
    let notify = state.hub.waiter(&c.id);
    let woken = notify.notified();
    tokio::pin!(woken);
    woken.as_mut().enable();
    let c = read_latest(&state, &rec).await.unwrap_or(c);
    if shown_state(&c, state.now()) == "pending" {
        let until_expiry = Duration::from_secs(
            (c.expires_at - state.now()).clamp(0, LONG_POLL.as_secs() as i64) as u64,
        );
        let _ = tokio::time::timeout(until_expiry.min(LONG_POLL), woken).await;
    }
    let c = read_latest(&state, &rec).await.unwrap_or(c);
    let shown = shown_state(&c, state.now());
    Json(Status {
        state: shown,
        message: if shown == "pending" {
            ""
        } else {
            final_message(shown)
        },
    })
    .into_response()
}

async fn read_latest(state: &AppState, rec: &SignInRecord) -> Option<ChallengeRecord> {
    state
        .store
        .find_latest_challenge_for_signin(&rec.id_hash)
        .await
        .ok()
        .flatten()
}

async fn complete(
    State(state): State<AppState>,
    headers: HeaderMap,
    Transaction(rec): Transaction,
    client: Client,
    _form: CsrfForm,
) -> Result<Response, AppError> {
    let (user, event, method) = match rec.state {
        SignInState::SecondFactor {
            user,
            method: MethodKind::Push,
            ..
        } => (
            user,
            SignInEvent::SecondFactorAccepted(MethodKind::Push),
            "push",
        ),
        SignInState::PhoneSignIn { user } => {
            (user, SignInEvent::PhoneSignInApproved, "phone_sign_in")
        }
        _ => return Ok(see_other(page_for(&rec.state))),
    };
    let back = page_for(&rec.state);
    let Some(c) = state
        .store
        .find_latest_challenge_for_signin(&rec.id_hash)
        .await?
    else {
        return Ok(see_other(back));
    };
    let Some(user) = state
        .store
        .find_user(user)
        .await?
        .filter(|u| u.id == c.user)
    else {
        return Ok(see_other("/login"));
    };
    if user.is_blocked {
        return Err(AppError::Forbidden(
            "Your account has been blocked. Contact your administrator.".into(),
        ));
    }
    if c.state != ChallengeState::Approved {
        return Ok(see_other(back));
    }
    // Judged again at the last moment: a policy switched off, or a device removed or turned
    // off, between the approval and this request stops the sign-in.
    if !crate::device_api::approval_still_valid(&state, &user, &c).await? {
        audit::record(
            &state,
            &client,
            Entry {
                user: Some(user.id),
                username: &user.username,
                event: "sign_in",
                method: Some(method),
                result: AuditResult::Failure,
                reason: Some("no_longer_allowed"),
            },
        )
        .await;
        crate::push_signin::cancel(&state, &user).await?;
        let _ = state.store.consume_challenge(&c.id).await?;
        return Err(AppError::Forbidden(format!(
            "{} Use your password instead.",
            crate::policy::PHONE_SIGN_IN_NOT_ALLOWED
        )));
    }
    // The approval is consumed (approved -> consumed, once) in the same commit as the session
    // that ends the transaction: the Done state need not be stored first.
    let Ok(done) = rec.state.next(event) else {
        return Ok(see_other(back));
    };
    let resp = finish(
        &state,
        &headers,
        &client,
        &rec,
        &done,
        &user,
        method,
        Some(&c.id),
    )
    .await?;
    if method == "phone_sign_in" {
        let cookie =
            crate::phone_signin::remember(&state, &user, crate::phone_signin::Choice::App).await?;
        return Ok(crate::web::with_cookies(resp, &[cookie]));
    }
    Ok(resp)
}

async fn resend(
    State(state): State<AppState>,
    Transaction(rec): Transaction,
    client: Client,
    _form: CsrfForm,
) -> Result<Response, AppError> {
    let (user, kind) = match rec.state {
        SignInState::SecondFactor {
            user,
            method: MethodKind::Push,
            ..
        } => (user, ChallengeKind::Mfa),
        SignInState::PhoneSignIn { user } => (user, ChallengeKind::PhoneSignIn),
        _ => return Ok(see_other(page_for(&rec.state))),
    };
    if let Some(user) = state.store.find_user(user).await? {
        start(&state, &client, &rec, &user, kind).await?;
    }
    Ok(see_other(page_for(&rec.state)))
}

const PUSH_JS: &str = r#"(function () {
  var status = document.getElementById('push-status');
  var form = document.getElementById('push-complete');
  if (!status || !form) return;
  // Once the user submits a form here ("Use your password instead", "Send another request"),
  // the page is leaving: a poll answer arriving now (the server just withdrew the request)
  // must not reload the page, which would abort that submission and lose the cookie its
  // response sets (the remembered choice).
  var leaving = false;
  document.addEventListener('submit', function () { leaving = true; }, true);
  window.addEventListener('pagehide', function () { leaving = true; });
  function poll() {
    if (leaving) return;
    fetch('/login/push/status', { credentials: 'same-origin', cache: 'no-store' })
      .then(function (r) { return r.json(); })
      .then(function (s) {
        if (leaving) return;
        if (s.state === 'approved') { leaving = true; status.textContent = 'Approved. Signing you in…'; form.submit(); return; }
        if (s.state === 'pending') { poll(); return; }
        window.location.reload();
      })
      .catch(function () { setTimeout(poll, 2000); });
  }
  poll();
})();
"#;

async fn script() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                "application/javascript; charset=utf-8",
            ),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PUSH_JS,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_is_only_what_the_address_tells() {
        assert_eq!(
            approximate_location("127.0.0.1".parse().unwrap()),
            "This computer"
        );
        assert_eq!(
            approximate_location("192.168.1.4".parse().unwrap()),
            "Local network"
        );
        assert_eq!(
            approximate_location("fd00::1".parse().unwrap()),
            "Local network"
        );
        assert_eq!(
            approximate_location("203.0.113.7".parse().unwrap()),
            "Unknown location"
        );
    }
}
