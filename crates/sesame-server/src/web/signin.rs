//! The sign-in pages: username -> password -> second step -> session. The second step is
//! whatever method the transaction is at; the methods registry says how to ask for it.

use super::extract::{SignedIn, Tenant, Transaction, SETUP_REQUIRED};
use super::flow::{self, page_for, password_form, remembered, step_refused};
use super::https::HttpsNeeded;
use super::templates::{CodePage, MethodsPage, UsernamePage};
use super::{
    clear_cookie, host_cookie, page, safe_next, see_other, with_cookies, CsrfForm, CsrfToken,
    SIGNIN_COOKIE,
};
use crate::error::Error;
use crate::methods::{Prompt, Verdict};
use crate::service::signin::{self, PasswordOutcome, MAX_USERNAME};
use crate::service::{approvals, Origin};
use crate::AppState;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use sesame_core::audit::AuditMethod;
use sesame_core::method::MethodKind;
use sesame_core::push::ChallengeKind;
use sesame_core::secret::SecretString;
use sesame_core::signin::{SignInChoice, SignInEvent, SignInState};
use sesame_store::SignInRecord;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(root))
        .route("/login", get(username_page).post(username_submit))
        .route("/login/password", get(password_page).post(password_submit))
        .route("/login/verify", get(verify_page).post(verify_submit))
        .route("/login/methods", get(methods_page).post(methods_submit))
        .route("/login/verify/resend", axum::routing::post(resend_code))
        .route(
            "/login/access-pass",
            get(access_pass_page).post(access_pass_submit),
        )
}

const INCORRECT: &str = "Your account or password is incorrect. If you don't remember your password, ask your administrator to reset it.";

async fn root(me: Result<SignedIn, Response>) -> Response {
    match me {
        Ok(_) => see_other("/account"),
        Err(_) => see_other("/login"),
    }
}

#[derive(Deserialize)]
struct LoginQuery {
    next: Option<String>,
    /// Filled in from an application's sign-in request.
    login_hint: Option<String>,
    reauth: Option<String>,
    expired: Option<String>,
}

/// What the username page shows besides its form.
struct UsernameContext<'a> {
    next: Option<&'a str>,
    /// The name to fill in (an application's `login_hint`).
    username: &'a str,
    application: Option<String>,
}

impl<'a> UsernameContext<'a> {
    async fn new(state: &AppState, next: Option<&'a str>, username: &'a str) -> Self {
        let application = crate::service::oidc::application_asking(state, next).await;
        Self {
            next,
            username,
            application,
        }
    }
}

fn username_form(
    HttpsNeeded(https_needed): HttpsNeeded,
    csrf: &CsrfToken,
    status: StatusCode,
    ctx: &UsernameContext<'_>,
    error: Option<&str>,
) -> Response {
    page(
        csrf,
        status,
        &UsernamePage {
            https_needed,
            csrf: &csrf.token,
            error,
            next: ctx.next,
            username: ctx.username,
            max_username: MAX_USERNAME,
            application: ctx.application.as_deref(),
        },
    )
}

async fn username_page(
    State(state): State<AppState>,
    q: Query<LoginQuery>,
    https_needed: HttpsNeeded,
    csrf: CsrfToken,
) -> Response {
    let message = if q.reauth.is_some() {
        Some("For your security, sign in again to continue.")
    } else if q.expired.is_some() {
        Some("Your sign-in took too long. Start again.")
    } else {
        None
    };
    let next = safe_next(q.next.as_deref());
    let hint = q
        .login_hint
        .as_deref()
        .filter(|h| {
            h.chars().count() <= MAX_USERNAME && sesame_core::names::sign_in_name(h).is_ok()
        })
        .unwrap_or("");
    let ctx = UsernameContext::new(&state, next.as_deref(), hint).await;
    username_form(https_needed, &csrf, StatusCode::OK, &ctx, message)
}

async fn username_submit(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    headers: HeaderMap,
    origin: Origin,
    https_needed: HttpsNeeded,
    csrf: CsrfToken,
    form: CsrfForm,
) -> Result<Response, Error> {
    let username = form.text("username").trim().to_string();
    let next = safe_next(form.get("next"));
    if username.is_empty() || username.chars().count() > MAX_USERNAME {
        let msg = if username.is_empty() {
            "Enter your username."
        } else {
            "That username is too long."
        };
        let ctx = UsernameContext::new(&state, next.as_deref(), "").await;
        return Ok(username_form(
            https_needed,
            &csrf,
            StatusCode::BAD_REQUEST,
            &ctx,
            Some(msg),
        ));
    }
    // Refused before anything is stored or logged: a name with control characters, zero-width
    // or bidirectional ones names nobody, and must not reach the transaction, the audit log
    // or a terminal that prints it. (Other names RFC 8265 refuses are looked up: users
    // stored before the profile applied keep signing in.)
    if let Err(e) = sesame_core::names::sign_in_name(&username) {
        let ctx = UsernameContext::new(&state, next.as_deref(), "").await;
        return Ok(username_form(
            https_needed,
            &csrf,
            StatusCode::BAD_REQUEST,
            &ctx,
            Some(&format!("That username cannot be used: {e}.")),
        ));
    }
    // Found by its RFC 8265 form (the store's key): "ａｌｉｃｅ" and "Alice" are "alice".
    let user = state.store.find_user_by_username(tenant, &username).await?;
    // A user with phone sign-in goes straight to the phone, unless they chose the password
    // last time; a pending request from an earlier attempt is superseded, never in the way.
    // The same reads whether the username is known or not (see `phone_sign_in_offered`).
    let (offered, policy) = signin::phone_sign_in_offer(&state, tenant, user.as_ref()).await?;
    let phone_first = offered
        && user
            .as_ref()
            .is_some_and(|u| remembered(&state, &headers, u) != Some(SignInChoice::Password));
    let started =
        signin::start(&state, tenant, &username, user.as_ref(), next, phone_first).await?;
    let cookie = host_cookie(
        SIGNIN_COOKIE,
        &started.token,
        Some(state.config.signin_lifetime_secs),
    );
    if let (true, Some(user)) = (phone_first, &user) {
        approvals::start_with(
            &state,
            &origin,
            &started.record,
            user,
            ChallengeKind::PhoneSignIn,
            &policy,
        )
        .await?;
        return Ok(with_cookies(see_other("/login/app"), &[cookie]));
    }
    Ok(with_cookies(see_other("/login/password"), &[cookie]))
}

async fn password_page(Transaction(rec): Transaction, csrf: CsrfToken) -> Response {
    if !matches!(rec.state, SignInState::Identified { .. }) {
        return see_other(page_for(&rec.state));
    }
    password_form(&csrf, StatusCode::OK, &rec.username, None)
}

/// How long a held password attempt waits before it is answered.
const HELD_ANSWER_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

async fn password_submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Transaction(rec): Transaction,
    origin: Origin,
    csrf: CsrfToken,
    form: CsrfForm,
) -> Result<Response, Error> {
    if !matches!(rec.state, SignInState::Identified { .. }) {
        return Ok(see_other(page_for(&rec.state)));
    }
    let typed = SecretString::new(form.text("password").to_string());
    match signin::check_password(&state, &origin, &rec, typed).await? {
        PasswordOutcome::Incorrect => Ok(password_form(
            &csrf,
            StatusCode::UNAUTHORIZED,
            &rec.username,
            Some(INCORRECT),
        )),
        PasswordOutcome::Held(held) => {
            // A held attempt is answered slowly on purpose: a guesser's connections then spend
            // their time waiting, not the server's processors (the answer costs no hashing
            // either way). A person who is held loses one second.
            tokio::time::sleep(HELD_ANSWER_DELAY).await;
            let now = state.now();
            let mut page = password_form(
                &csrf,
                StatusCode::TOO_MANY_REQUESTS,
                &rec.username,
                Some(&held.message(now)),
            );
            if let Some(secs) = held.retry_after(now) {
                page.headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
            }
            Ok(page)
        }
        PasswordOutcome::UseTheApp => Ok(password_form(
            &csrf,
            StatusCode::FORBIDDEN,
            &rec.username,
            Some("Your organisation requires you to sign in with the Authenticator app. Choose \"Use an app instead\"."),
        )),
        PasswordOutcome::SecondStep { user, method } => {
            begun(&state, &origin, &rec, &user, method, &csrf).await
        }
        PasswordOutcome::Done {
            user,
            state: done,
            setup_required,
        } => {
            // Signed in only to add a method: every other page stays closed until then.
            let rec = if setup_required {
                SignInRecord {
                    next_path: Some(SETUP_REQUIRED.into()),
                    ..rec
                }
            } else {
                rec
            };
            flow::finish(&state, &origin, &headers, &rec, &done, &user, AuditMethod::Password).await
        }
    }
}

async fn verify_page(
    State(state): State<AppState>,
    Transaction(rec): Transaction,
    origin: Origin,
    csrf: CsrfToken,
) -> Result<Response, Error> {
    let SignInState::SecondFactor { method, user, .. } = rec.state else {
        return Ok(see_other(page_for(&rec.state)));
    };
    let Some(m) = state.methods().get(method) else {
        return Err(Error::internal(format!("no module for method {method}")));
    };
    match m.prompt() {
        Prompt::Code { text, sent } => {
            let notice = m.notice(&state, user).await?;
            Ok(code_form(
                &csrf,
                StatusCode::OK,
                (text, sent),
                notice.as_deref(),
            ))
        }
        _ => flow::waiting_page(&state, &origin, &rec, &csrf, None).await,
    }
}

/// Starts `method` for the sign-in (sends the text, places the call, sends the request) and
/// goes to its page; when nothing could be sent, that page says why at once.
async fn begun(
    state: &AppState,
    origin: &Origin,
    rec: &SignInRecord,
    user: &sesame_store::User,
    method: MethodKind,
    csrf: &CsrfToken,
) -> Result<Response, Error> {
    let Some(m) = state.methods().get(method) else {
        return Ok(see_other("/login/verify"));
    };
    let Some(notice) = m.begin(state, origin, rec, user).await? else {
        return Ok(see_other("/login/verify"));
    };
    // The record as it is now (the method may just have changed).
    let rec = match signin::reload(state, rec).await? {
        Some(r) => r,
        None => return Ok(see_other("/login")),
    };
    match m.prompt() {
        Prompt::Code { text, sent } => Ok(code_form(
            csrf,
            StatusCode::SERVICE_UNAVAILABLE,
            (text, sent),
            Some(&notice),
        )),
        Prompt::Approval => flow::waiting_page(state, origin, &rec, csrf, Some(&notice)).await,
    }
}

/// The code page: `prompt` is the method's words and whether Sesame sent the code.
fn code_form(
    csrf: &CsrfToken,
    status: StatusCode,
    (prompt, sent): (&str, bool),
    error: Option<&str>,
) -> Response {
    page(
        csrf,
        status,
        &CodePage {
            csrf: &csrf.token,
            error,
            prompt,
            resend: sent,
        },
    )
}

async fn verify_submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Transaction(rec): Transaction,
    origin: Origin,
    csrf: CsrfToken,
    form: CsrfForm,
) -> Result<Response, Error> {
    let SignInState::SecondFactor {
        user: user_id,
        method,
        ..
    } = rec.state
    else {
        return Ok(see_other(page_for(&rec.state)));
    };
    let Some(m) = state.methods().get(method) else {
        return Err(Error::internal(format!("no module for method {method}")));
    };
    let Prompt::Code { text, sent } = m.prompt() else {
        return Ok(see_other("/login/verify"));
    };
    let prompt = (text, sent);
    if let Some(message) = m.malformed(form.text("code")) {
        return Ok(code_form(
            &csrf,
            StatusCode::BAD_REQUEST,
            prompt,
            Some(&message),
        ));
    }
    let Some(user) = state.store.find_user(user_id).await? else {
        return Ok(with_cookies(
            see_other("/login"),
            &[clear_cookie(SIGNIN_COOKIE)],
        ));
    };
    if user.is_blocked {
        return Err(signin::refuse_blocked(&state, &origin, &rec, &user, method.into()).await);
    }
    match m.verify(&state, &origin, &user, form.text("code")).await? {
        Verdict::Accepted => {}
        Verdict::Refused { status, message } => {
            return Ok(code_form(&csrf, status, prompt, Some(&message)))
        }
        Verdict::NotHere => return Ok(see_other("/login/verify")),
    }
    let done = match signin::advance(&state, &rec, SignInEvent::SecondFactorAccepted(method)).await
    {
        Ok(s) => s,
        Err(e) => return Ok(step_refused(&rec, e)),
    };
    flow::finish(&state, &origin, &headers, &rec, &done, &user, method.into()).await
}

async fn methods_page(
    State(state): State<AppState>,
    Transaction(rec): Transaction,
    csrf: CsrfToken,
) -> Result<Response, Error> {
    let SignInState::SecondFactor {
        user, available, ..
    } = &rec.state
    else {
        return Ok(see_other(page_for(&rec.state)));
    };
    // Named as the person knows them: "Text ••78", "Call ••78", default first.
    let methods = state.store.list_methods(*user).await?;
    let options = available
        .iter()
        .filter_map(|k| state.methods().get(*k))
        .map(|m| (m.kind().as_str(), m.option_label(&methods)))
        .collect();
    Ok(page(
        &csrf,
        StatusCode::OK,
        &MethodsPage {
            csrf: &csrf.token,
            options,
        },
    ))
}

async fn methods_submit(
    State(state): State<AppState>,
    Transaction(rec): Transaction,
    origin: Origin,
    csrf: CsrfToken,
    form: CsrfForm,
) -> Result<Response, Error> {
    let kind: MethodKind = form
        .text("method")
        .parse()
        .map_err(|_| Error::bad_request("Choose one of the listed verification options."))?;
    let next = match signin::advance(&state, &rec, SignInEvent::ChooseMethod(kind)).await {
        Ok(s) => s,
        Err(e) => return Ok(step_refused(&rec, e)),
    };
    if let SignInState::SecondFactor { user, method, .. } = next {
        let Some(user) = state.store.find_user(user).await? else {
            return Ok(see_other("/login"));
        };
        // Moving to another method: what the others sent must not stay answerable.
        for m in state.methods().iter().filter(|m| m.kind() != method) {
            m.cancel(&state, &rec, &user).await?;
        }
        return begun(&state, &origin, &rec, &user, method, &csrf).await;
    }
    Ok(see_other("/login/verify"))
}

/// "Send a new code": the method sends again (a text method replaces its code; the count of
/// wrong codes stays).
async fn resend_code(
    State(state): State<AppState>,
    Transaction(rec): Transaction,
    origin: Origin,
    csrf: CsrfToken,
    _form: CsrfForm,
) -> Result<Response, Error> {
    let SignInState::SecondFactor { user, method, .. } = rec.state else {
        return Ok(see_other(page_for(&rec.state)));
    };
    let Some(user) = state.store.find_user(user).await? else {
        return Ok(see_other("/login"));
    };
    if user.is_blocked {
        return Err(signin::refuse_blocked(&state, &origin, &rec, &user, method.into()).await);
    }
    begun(&state, &origin, &rec, &user, method, &csrf).await
}

fn access_pass_form(
    csrf: &CsrfToken,
    status: StatusCode,
    username: &str,
    error: Option<&str>,
) -> Response {
    page(
        csrf,
        status,
        &super::templates::AccessPassPage {
            csrf: &csrf.token,
            error,
            username,
        },
    )
}

/// A Temporary Access Pass instead of the password (any username may ask: the page is the
/// same for all).
async fn access_pass_page(Transaction(rec): Transaction, csrf: CsrfToken) -> Response {
    if !matches!(rec.state, SignInState::Identified { .. }) {
        return see_other(page_for(&rec.state));
    }
    access_pass_form(&csrf, StatusCode::OK, &rec.username, None)
}

async fn access_pass_submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Transaction(rec): Transaction,
    origin: Origin,
    csrf: CsrfToken,
    form: CsrfForm,
) -> Result<Response, Error> {
    use crate::service::access_pass::{self, PassOutcome};
    if !matches!(rec.state, SignInState::Identified { .. }) {
        return Ok(see_other(page_for(&rec.state)));
    }
    match access_pass::sign_in(&state, &origin, &rec, form.text("pass")).await? {
        PassOutcome::Incorrect => Ok(access_pass_form(
            &csrf,
            StatusCode::UNAUTHORIZED,
            &rec.username,
            Some("That Temporary Access Pass didn't work. Check it, or ask your administrator for a new one."),
        )),
        PassOutcome::Held(held) => {
            tokio::time::sleep(HELD_ANSWER_DELAY).await;
            Ok(access_pass_form(
                &csrf,
                StatusCode::TOO_MANY_REQUESTS,
                &rec.username,
                Some(&held.message(state.now())),
            ))
        }
        PassOutcome::Done { user, state: done } => {
            // Someone with no method yet goes straight to set one up (an application's
            // sign-in keeps its way back).
            let has_methods = !state.store.list_methods(user.id).await?.is_empty();
            let rec = if rec.next_path.is_none() && !has_methods {
                SignInRecord {
                    next_path: Some("/security-info".into()),
                    ..rec
                }
            } else {
                rec
            };
            let token = signin::finish(
                &state,
                &origin,
                &rec,
                &done,
                &user,
                AuditMethod::AccessPass,
                None,
                flow::current_session(&headers).as_deref(),
            )
            .await?;
            match token {
                Some(token) => Ok(flow::signed_in(&state, &origin, &rec, &user, &token)),
                None => Ok(see_other("/login")),
            }
        }
    }
}
