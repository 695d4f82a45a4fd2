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
use crate::service::{browsers, Origin};
use crate::AppState;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use sesame_core::audit::AuditMethod;
use sesame_core::method::MethodKind;
use sesame_core::push::{ApprovalChannel, ChallengeKind};
use sesame_core::signin::{SignInChoice, SignInState};
use sesame_core::TenantId;
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
    tag(state, &user.0.to_string())
}

fn tag(state: &AppState, subject: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(state.web().choice_key.expose())
        .expect("HMAC takes any key length");
    mac.update(subject.as_bytes());
    data_encoding::HEXLOWER.encode(&mac.finalize().into_bytes()[..12])
}

/// The choice this browser made for this user, if any.
fn from_browser(state: &AppState, headers: &HeaderMap, user: &User) -> Option<SignInChoice> {
    cookie(headers, CHOICE_COOKIE).and_then(|v| {
        let (tag, choice) = v.split_once('.')?;
        (tag == user_tag(state, user.id))
            .then(|| SignInChoice::parse(choice))
            .flatten()
    })
}

/// The cookie "use your password instead" sets for a username nobody has: the same name, the
/// same length and shape as a user's (a keyed tag of the name instead of the id, which no user
/// id tag can equal), so the answer does not tell whether the user exists.
pub fn unknown_choice_cookie(state: &AppState, tenant: TenantId, typed: &str) -> String {
    let subject = format!("unknown:{}:{}", tenant.0, sesame_store::name_key(typed));
    let value = format!(
        "{}.{}",
        tag(state, &subject),
        SignInChoice::Password.as_str()
    );
    host_cookie(CHOICE_COOKIE, &value, Some(CHOICE_MAX_AGE))
}

/// After a sign-in with the password completed: the browser's "use your password" becomes
/// the user's choice only now that the sign-in proved who it is (a username alone changes
/// nothing of the user's).
pub async fn password_chosen(
    state: &AppState,
    headers: &HeaderMap,
    user: &User,
) -> Result<(), Error> {
    if from_browser(state, headers, user) == Some(SignInChoice::Password) {
        signin::remember_choice(state, user, SignInChoice::Password).await?;
    }
    Ok(())
}

/// The choice this browser made for this user, else the user's last choice at a completed
/// sign-in.
pub fn remembered(state: &AppState, headers: &HeaderMap, user: &User) -> Option<SignInChoice> {
    from_browser(state, headers, user).or(user.signin_preference)
}

/// The cookie that remembers `choice` for this user in this browser.
pub fn choice_cookie(state: &AppState, user: &User, choice: SignInChoice) -> String {
    let value = format!("{}.{}", user_tag(state, user.id), choice.as_str());
    host_cookie(CHOICE_COOKIE, &value, Some(CHOICE_MAX_AGE))
}

/// The response to a finished sign-in: the session cookie, the sign-in cookie gone, this
/// browser known to the user from now on (its device cookie), on to where the person was
/// going.
pub fn signed_in(
    state: &AppState,
    origin: &Origin,
    rec: &SignInRecord,
    user: &User,
    token: &str,
) -> Response {
    let target = rec.next_path.clone().unwrap_or_else(|| "/account".into());
    let cookies = [
        host_cookie(
            SESSION_COOKIE,
            token,
            Some(state.config.session_absolute_secs),
        ),
        clear_cookie(SIGNIN_COOKIE),
        host_cookie(
            browsers::COOKIE,
            &state.browsers.after_sign_in(origin, user.id),
            Some(browsers::MAX_AGE_SECS),
        ),
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
    let Some(token) = token else {
        return Ok(see_other(page_for(&rec.state)));
    };
    password_chosen(state, headers, user).await?;
    Ok(signed_in(state, origin, rec, user, &token))
}

/// The page of a sign-in waiting for an approval on the phone: the number while pending,
/// else what became of the request.
pub async fn waiting_page(
    state: &AppState,
    origin: &Origin,
    rec: &SignInRecord,
    csrf: &CsrfToken,
    notice: Option<&str>,
) -> Result<Response, Error> {
    let (user, phone_sign_in, kind, method) = match rec.state {
        SignInState::SecondFactor { user, method, .. } => {
            (user, false, ChallengeKind::Mfa, Some(method))
        }
        SignInState::PhoneSignIn { user } => (user, true, ChallengeKind::PhoneSignIn, None),
        _ => return Ok(see_other(page_for(&rec.state))),
    };
    let user = state
        .store
        .find_user(user)
        .await?
        .ok_or_else(Error::not_found)?;
    let now = state.now();
    // A call: the page names the phone, and shows only the call's requests.
    let call_to = match method {
        Some(k @ (MethodKind::Voice | MethodKind::OfficeVoice)) => Some(
            crate::service::phones::method_of(state, &user, k)
                .await?
                .as_ref()
                .and_then(crate::service::phones::number_of)
                .map(|n| n.short())
                .unwrap_or_else(|| "phone".into()),
        ),
        _ => None,
    };
    let channel = if call_to.is_some() {
        ApprovalChannel::Voice
    } else {
        ApprovalChannel::App
    };
    let latest = approvals::latest(state, rec)
        .await?
        .filter(|c| c.channel == channel);
    let shown = match &latest {
        Some(c) => Some(approvals::shown(state, c).await?),
        None => None,
    };
    // When the sign-in has no live request, a new one may be refused (the budget, a report
    // block): the page says so rather than offering "Send another request" that cannot work.
    // With phone sign-in turned off, the page says that (and a new request could not work).
    let refusal = match shown {
        Some(
            Shown::Pending
            | Shown::Approved
            | Shown::Reported
            | Shown::PhoneSignInOff
            | Shown::TooManyWrongPins,
        ) => None,
        // Calls have their own limits, checked when one is placed (`notice`).
        _ if call_to.is_some() => None,
        _ => {
            let push = state.user_policy(&user).await?.push;
            approvals::refusal(state, origin, &user, &push, kind).await?
        }
    };
    let refusal = notice.or(refusal);
    let view = match (&latest, shown, refusal) {
        (_, _, Some(reason)) if notice.is_some() => Waiting::Refused { reason },
        (Some(c), Some(Shown::Pending), _) => Waiting::Pending {
            number: &c.number,
            expires_in: (c.expires_at - now).max(0),
        },
        (_, Some(Shown::Approved), _) => Waiting::Approved,
        (_, _, Some(reason)) => Waiting::Refused { reason },
        (_, Some(shown), None) => Waiting::NotApproved {
            message: shown.message(),
            may_resend: !matches!(
                shown,
                Shown::Reported | Shown::PhoneSignInOff | Shown::TooManyWrongPins
            ),
        },
        (_, None, None) => Waiting::NoRequest,
    };
    Ok(page(
        csrf,
        StatusCode::OK,
        &WaitingPage {
            csrf: &csrf.token,
            username: &user.username,
            call_to: call_to.as_deref(),
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
