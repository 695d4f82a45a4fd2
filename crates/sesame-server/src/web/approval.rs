//! Approving a sign-in on the phone, from the browser's side (DESIGN §1, §3): passwordless
//! phone sign-in ("Use an app instead", "Use your password instead", "Other ways to sign in"),
//! and the waiting page's status poll, completion and "Send another request", shared with the
//! notification second step.
//!
//! The last choice between app and password is remembered for the browser (a cookie tagged
//! with a keyed hash of the user id, so it names nobody) at once, and for the user (in the
//! database) once a sign-in made that way completes: a sign-in that has only named a user
//! changes nothing of theirs, and withdraws only the requests it sent itself.

use super::extract::Transaction;
use super::flow::{self, choice_cookie, page_for, password_form, step_refused};
use super::templates::OptionsPage;
use super::{page, see_other, with_cookies, CsrfForm, CsrfToken, SIGNIN_COOKIE};
use crate::error::Error;
use crate::service::approvals::{self, Shown};
use crate::service::signin::{self, Completion};
use crate::service::Origin;
use crate::AppState;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use sesame_core::method::MethodKind;
use sesame_core::policy::{AuthenticatorMode, MethodsPolicy, Targets};
use sesame_core::push::ChallengeKind;
use sesame_core::signin::{SignInChoice, SignInEvent, SignInState};
use sesame_core::UserId;
use sesame_store::{SignInRecord, User};
use std::time::Duration;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/login/app", get(waiting).post(use_app))
        .route("/login/password-instead", post(use_password))
        .route("/login/options", get(options))
        .route("/login/push/status", get(status))
        .route("/login/push/complete", post(complete))
        .route("/login/push/resend", post(resend))
        .route("/static/push.js", get(script))
}

/// Longest a status request waits for a change before answering "pending".
const LONG_POLL: Duration = Duration::from_secs(25);

const NOT_SET_UP: &str = "Phone sign-in isn't turned on for this account. Sign in with your password, or turn on phone sign-in in the Sesame Authenticator app.";

/// Why "Use an app instead" cannot go to the phone, as far as the policy of everyone says.
fn not_offered(policy: &MethodsPolicy) -> &'static str {
    match &policy.authenticator {
        a if !a.enabled => "Your organisation's policy does not allow the Sesame Authenticator app. Sign in with your password.",
        a if a.targets == (Targets::All { mode: AuthenticatorMode::Push }) => "Your organisation's policy allows the Sesame Authenticator app for notifications and codes after your password, not for signing in without one. Sign in with your password.",
        _ => NOT_SET_UP,
    }
}

async fn waiting(
    State(state): State<AppState>,
    Transaction(rec): Transaction,
    origin: Origin,
    csrf: CsrfToken,
) -> Result<Response, Error> {
    if !matches!(rec.state, SignInState::PhoneSignIn { .. }) {
        return Ok(see_other(page_for(&rec.state)));
    }
    flow::waiting_page(&state, &origin, &rec, &csrf, None).await
}

/// The user of an identified sign-in (None for unknown usernames), and whether phone sign-in
/// is offered to them. An unknown username costs the same reads as a known one, so the
/// answers of "Use an app instead" and "Other ways to sign in" do not time apart.
async fn identified_user(
    state: &AppState,
    rec: &SignInRecord,
) -> Result<(Option<User>, bool), Error> {
    let id = match rec.state {
        SignInState::Identified { user: Some(id) } | SignInState::PhoneSignIn { user: id } => id,
        // An id no user has (ids start at 1).
        SignInState::Identified { user: None } => UserId(0),
        _ => return Ok((None, false)),
    };
    let user = state.store.find_user(id).await?;
    let offered = signin::phone_sign_in_offered(state, rec.tenant, user.as_ref()).await?;
    Ok((user, offered))
}

/// "Use an app instead".
async fn use_app(
    State(state): State<AppState>,
    Transaction(rec): Transaction,
    origin: Origin,
    csrf: CsrfToken,
    _form: CsrfForm,
) -> Result<Response, Error> {
    match rec.state {
        SignInState::Identified { .. } => {}
        SignInState::PhoneSignIn { .. } => return Ok(see_other("/login/app")),
        _ => return Ok(see_other(page_for(&rec.state))),
    }
    match identified_user(&state, &rec).await? {
        (Some(user), true) => {
            let cookie = choice_cookie(&state, &user, SignInChoice::App);
            if let Err(e) = signin::advance(&state, &rec, SignInEvent::ChoosePhoneSignIn).await {
                return Ok(with_cookies(step_refused(&rec, e), &[cookie]));
            }
            approvals::start(&state, &origin, &rec, &user, ChallengeKind::PhoneSignIn).await?;
            Ok(with_cookies(see_other("/login/app"), &[cookie]))
        }
        // Unknown users and users without phone sign-in are told the same thing: the reason
        // when the policy of everyone rules phone sign-in out, else that it is not turned on.
        // (A group's policy is never the reason given: it would tell who is in the group.)
        _ => {
            let (policy, _) = state.current_policy(rec.tenant).await?;
            Ok(password_form(
                &csrf,
                StatusCode::OK,
                &rec.username,
                Some(not_offered(&policy)),
            ))
        }
    }
}

/// "Use your password instead": always works, and is remembered by this browser (and for
/// the user once the password sign-in completes).
async fn use_password(
    State(state): State<AppState>,
    Transaction(rec): Transaction,
    _form: CsrfForm,
) -> Result<Response, Error> {
    let (user, _) = identified_user(&state, &rec).await?;
    match rec.state {
        SignInState::PhoneSignIn { .. } => {
            if let Err(e) = signin::advance(&state, &rec, SignInEvent::UsePassword).await {
                return Ok(step_refused(&rec, e));
            }
            // The request this sign-in sent must not stay answerable once the user walked
            // away from it; nobody else's is touched. (Only a sign-in that went to the phone
            // sent one: unknown usernames never do.)
            if let Some(user) = &user {
                approvals::cancel_own(&state, &rec, user).await?;
            }
        }
        SignInState::Identified { .. } => {}
        _ => return Ok(see_other(page_for(&rec.state))),
    }
    let cookie = match &user {
        Some(user) => choice_cookie(&state, user, SignInChoice::Password),
        None => flow::unknown_choice_cookie(&state, rec.tenant, &rec.username),
    };
    Ok(with_cookies(see_other("/login/password"), &[cookie]))
}

/// "Other ways to sign in": what this user can use.
async fn options(
    State(state): State<AppState>,
    Transaction(rec): Transaction,
    csrf: CsrfToken,
) -> Result<Response, Error> {
    if !matches!(
        rec.state,
        SignInState::Identified { .. } | SignInState::PhoneSignIn { .. }
    ) {
        return Ok(see_other(page_for(&rec.state)));
    }
    let (_, app) = identified_user(&state, &rec).await?;
    Ok(page(
        &csrf,
        StatusCode::OK,
        &OptionsPage {
            csrf: &csrf.token,
            username: &rec.username,
            app,
        },
    ))
}

#[derive(Serialize)]
struct Status {
    state: &'static str,
    message: &'static str,
}

fn status_of(shown: Shown) -> Json<Status> {
    Json(Status {
        state: shown.as_str(),
        message: if shown == Shown::Pending {
            ""
        } else {
            shown.message()
        },
    })
}

/// The waiting page's long poll: answers at once when the request is over, else when it
/// changes (or after a while, "pending").
async fn status(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let gone = || {
        Json(Status {
            state: "gone",
            message: "This sign-in has ended. Start again.",
        })
        .into_response()
    };
    let Some(token) = super::cookie(&headers, SIGNIN_COOKIE) else {
        return gone();
    };
    let rec = match signin::load(&state, &token).await {
        Ok(Some(r)) => r,
        _ => return gone(),
    };
    let Ok(Some(c)) = approvals::latest(&state, &rec).await else {
        return Json(Status {
            state: "none",
            message: "",
        })
        .into_response();
    };
    status_of(approvals::wait(&state, &rec, c, LONG_POLL).await).into_response()
}

async fn complete(
    State(state): State<AppState>,
    headers: HeaderMap,
    Transaction(rec): Transaction,
    origin: Origin,
    _form: CsrfForm,
) -> Result<Response, Error> {
    let back = page_for(&rec.state);
    let previous = flow::current_session(&headers);
    match signin::complete_approval(&state, &origin, &rec, previous.as_deref()).await? {
        Completion::NotApproved => Ok(see_other(back)),
        Completion::Gone => Ok(see_other("/login")),
        Completion::SignedIn { token, user, kind } => {
            let resp = flow::signed_in(&state, &origin, &rec, &user, &token);
            if kind == ChallengeKind::PhoneSignIn {
                let cookie = choice_cookie(&state, &user, SignInChoice::App);
                return Ok(with_cookies(resp, &[cookie]));
            }
            flow::password_chosen(&state, &headers, &user).await?;
            Ok(resp)
        }
    }
}

async fn resend(
    State(state): State<AppState>,
    Transaction(rec): Transaction,
    origin: Origin,
    csrf: CsrfToken,
    _form: CsrfForm,
) -> Result<Response, Error> {
    let (user, kind) = match rec.state {
        SignInState::SecondFactor {
            user,
            method: MethodKind::Push,
            ..
        } => (user, ChallengeKind::Mfa),
        SignInState::SecondFactor {
            user,
            method: m @ (MethodKind::Voice | MethodKind::OfficeVoice),
            ..
        } => {
            // "Call again".
            let Some(user) = state.store.find_user(user).await? else {
                return Ok(see_other("/login"));
            };
            let notice = match state.methods().get(m) {
                Some(method) => method.begin(&state, &origin, &rec, &user).await?,
                None => None,
            };
            if let Some(notice) = notice {
                return flow::waiting_page(&state, &origin, &rec, &csrf, Some(&notice)).await;
            }
            return Ok(see_other(page_for(&rec.state)));
        }
        SignInState::PhoneSignIn { user } => (user, ChallengeKind::PhoneSignIn),
        _ => return Ok(see_other(page_for(&rec.state))),
    };
    if let Some(user) = state.store.find_user(user).await? {
        approvals::start(&state, &origin, &rec, &user, kind).await?;
    }
    Ok(see_other(page_for(&rec.state)))
}

async fn script() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                "application/javascript; charset=utf-8",
            ),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("../../static/push.js"),
    )
        .into_response()
}
