//! Pieces of the sign-in flow that its pages share (not handlers): where a transaction in a
//! state belongs, the waiting page of an approval, the remembered choice between the app and
//! the password, and turning a finished sign-in into cookies.

use super::templates::{PasswordPage, Waiting, WaitingPage};
use super::{
    clear_cookie, cookie, host_cookie, page, see_other, with_cookies, CsrfToken, SESSION_COOKIE,
    SIGNIN_COOKIE,
};
use crate::error::Error;
use crate::service::approvals::{self, Shown};
use crate::service::signin::{self, StepError};
use crate::service::Origin;
use crate::AppState;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use sesame_core::audit::AuditMethod;
use sesame_core::signin::{SignInChoice, SignInState};
use sesame_store::{SignInRecord, User};

pub const CHOICE_COOKIE: &str = "__Host-sesame-choice";
/// How long a browser remembers the choice.
const CHOICE_MAX_AGE: i64 = 180 * 24 * 3600;

/// Where a transaction in this state belongs.
pub fn page_for(state: &SignInState) -> &'static str {
    match state {
        SignInState::Identified { .. } => "/login/password",
        SignInState::SecondFactor { .. } => "/login/verify",
        SignInState::PhoneSignIn { .. } => "/login/app",
        SignInState::Done { .. } | SignInState::Failed => "/login",
    }
}

/// A step that could not be applied, as a response: back to the transaction's page, or the
/// explanation that it moved on meanwhile.
pub fn step_refused(rec: &SignInRecord, e: StepError) -> Response {
    match e {
        StepError::NotNow => see_other(page_for(&rec.state)),
        e => crate::service::signin::step_error(e).into_response(),
    }
}

/// A short keyed tag of a user id: lets a browser cookie remember a choice for one user
/// without naming the user.
fn user_tag(state: &AppState, user: sesame_core::UserId) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(state.web().choice_key.expose())
        .expect("HMAC takes any key length");
    mac.update(user.0.to_string().as_bytes());
    data_encoding::HEXLOWER.encode(&mac.finalize().into_bytes()[..12])
}

/// The choice this browser made for this user, else the user's last choice anywhere.
pub fn remembered(state: &AppState, headers: &HeaderMap, user: &User) -> Option<SignInChoice> {
    let from_browser = cookie(headers, CHOICE_COOKIE).and_then(|v| {
        let (tag, choice) = v.split_once('.')?;
        (tag == user_tag(state, user.id))
            .then(|| SignInChoice::parse(choice))
            .flatten()
    });
    from_browser.or(user.signin_preference)
}

/// The cookie that remembers `choice` for this user in this browser.
pub fn choice_cookie(state: &AppState, user: &User, choice: SignInChoice) -> String {
    let value = format!("{}.{}", user_tag(state, user.id), choice.as_str());
    host_cookie(CHOICE_COOKIE, &value, Some(CHOICE_MAX_AGE))
}

/// The response to a finished sign-in: the session cookie, the sign-in cookie gone, on to
/// where the person was going.
pub fn signed_in(rec: &SignInRecord, token: &str, state: &AppState) -> Response {
    let target = rec.next_path.clone().unwrap_or_else(|| "/account".into());
    let cookies = [
        host_cookie(
            SESSION_COOKIE,
            token,
            Some(state.config.session_absolute_secs),
        ),
        clear_cookie(SIGNIN_COOKIE),
    ];
    with_cookies(see_other(&target), &cookies)
}

/// Ends a finished sign-in with a password (and a code): the session, or back to the
/// transaction's page if it moved on meanwhile.
pub async fn finish(
    state: &AppState,
    origin: &Origin,
    headers: &HeaderMap,
    rec: &SignInRecord,
    done: &SignInState,
    user: &User,
    method: AuditMethod,
) -> Result<Response, Error> {
    let previous = current_session(headers);
    let token = signin::finish(
        state,
        origin,
        rec,
        done,
        user,
        method,
        None,
        previous.as_deref(),
    )
    .await?;
    Ok(match token {
        Some(token) => signed_in(rec, &token, state),
        None => see_other(page_for(&rec.state)),
    })
}

/// The page of a sign-in waiting for an approval on the phone: the number while pending,
/// else what became of the request.
pub async fn waiting_page(
    state: &AppState,
    rec: &SignInRecord,
    csrf: &CsrfToken,
) -> Result<Response, Error> {
    let (user, phone_sign_in) = match rec.state {
        SignInState::SecondFactor { user, .. } => (user, false),
        SignInState::PhoneSignIn { user } => (user, true),
        _ => return Ok(see_other(page_for(&rec.state))),
    };
    let user = state
        .store
        .find_user(user)
        .await?
        .ok_or_else(Error::not_found)?;
    let now = state.now();
    let latest = approvals::latest(state, rec).await?;
    let refusal;
    let view = match &latest {
        Some(c) => match Shown::of(c, now) {
            Shown::Pending => Waiting::Pending {
                number: &c.number,
                expires_in: (c.expires_at - now).max(0),
            },
            Shown::Approved => Waiting::Approved,
            shown => Waiting::NotApproved {
                message: shown.message(),
                may_resend: shown != Shown::Reported,
            },
        },
        None => {
            let push = state.user_policy(&user).await?.push;
            refusal = approvals::refusal(state, &user, &push).await?;
            match refusal {
                Some(reason) => Waiting::Refused { reason },
                None => Waiting::NoRequest,
            }
        }
    };
    Ok(page(
        csrf,
        StatusCode::OK,
        &WaitingPage {
            csrf: &csrf.token,
            username: &user.username,
            phone_sign_in,
            view,
        },
    ))
}

/// The password page (again), with `error` if there is one.
pub fn password_form(
    csrf: &CsrfToken,
    status: StatusCode,
    username: &str,
    error: Option<&str>,
) -> Response {
    page(
        csrf,
        status,
        &PasswordPage {
            csrf: &csrf.token,
            error,
            username,
        },
    )
}

/// The session cookie this browser sends, if any (it ends when a new sign-in finishes).
pub fn current_session(headers: &HeaderMap) -> Option<String> {
    cookie(headers, SESSION_COOKIE)
}
