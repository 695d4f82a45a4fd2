//! The sign-in pages: username -> password -> second step -> session.
//!
//! Each page loads the transaction named by the `__Host-sesame-signin` cookie and applies one
//! event of the core state machine; the stored state changes only by compare-and-set, so two
//! racing requests cannot both move it, and only `Done` mints a session.

use crate::audit::{self, Entry};
use crate::error::AppError;
use crate::session::SignedIn;
use crate::web::{
    clear_cookie, cookie, esc, host_cookie, layout, page, random_token, safe_next, see_other,
    token_hash, with_cookies, Client, CsrfForm, CsrfToken, SESSION_COOKIE, SIGNIN_COOKIE,
};
use crate::AppState;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use sesame_core::lockout::AttemptGate;
use sesame_core::method::MethodKind;
use sesame_core::policy::Allowed;
use sesame_core::secret::SecretString;
use sesame_core::signin::{SignInEvent, SignInState};
use sesame_core::{password, totp};
use sesame_proto::device::ChallengeKind;
use sesame_store::{AuditResult, SignInRecord, User};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(root))
        .route("/login", get(username_page).post(username_submit))
        .route("/login/password", get(password_page).post(password_submit))
        .route("/login/verify", get(verify_page).post(verify_submit))
        .route("/login/methods", get(methods_page).post(methods_submit))
}

/// Longest username accepted; longer input is refused before any lookup.
const MAX_USERNAME: usize = 256;
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
    reauth: Option<String>,
    expired: Option<String>,
}

fn username_form(
    csrf: &CsrfToken,
    next: Option<&str>,
    username: &str,
    message: Option<&str>,
) -> String {
    let next_field = next
        .map(|n| format!("<input type=\"hidden\" name=\"next\" value=\"{}\">", esc(n)))
        .unwrap_or_default();
    let msg = message
        .map(|m| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(m)))
        .unwrap_or_default();
    format!(
        "<h1>Sign in</h1>{msg}<form method=\"post\" action=\"/login\">{}{next_field}\
         <label for=\"username\">Username</label>\
         <input type=\"text\" id=\"username\" name=\"username\" value=\"{}\" autocomplete=\"username\" autofocus required maxlength=\"{MAX_USERNAME}\">\
         <button type=\"submit\">Next</button></form>",
        csrf.hidden_field(),
        esc(username)
    )
}

async fn username_page(q: Query<LoginQuery>, csrf: CsrfToken) -> Response {
    let message = if q.reauth.is_some() {
        Some("For your security, sign in again to continue.")
    } else if q.expired.is_some() {
        Some("Your sign-in took too long. Start again.")
    } else {
        None
    };
    let next = safe_next(q.next.as_deref());
    page(
        &csrf,
        StatusCode::OK,
        layout(
            "Sign in",
            &username_form(&csrf, next.as_deref(), "", message),
        ),
    )
}

async fn username_submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: Client,
    csrf: CsrfToken,
    form: CsrfForm,
) -> Result<Response, AppError> {
    let username = form.text("username").trim().to_string();
    let next = safe_next(form.get("next"));
    if username.is_empty() || username.chars().count() > MAX_USERNAME {
        let msg = if username.is_empty() {
            "Enter your username."
        } else {
            "That username is too long."
        };
        let html = layout(
            "Sign in",
            &username_form(&csrf, next.as_deref(), "", Some(msg)),
        );
        return Ok(page(&csrf, StatusCode::BAD_REQUEST, html));
    }
    // Unknown usernames get a transaction too, and the same next page: no enumeration.
    let user = state
        .store
        .find_user_by_username(state.tenant, &username)
        .await?;
    // A user with phone sign-in goes straight to the phone, unless they chose the password
    // last time; a pending request from an earlier attempt is superseded, never in the way.
    let identified = SignInState::Identified {
        user: user.as_ref().map(|u| u.id),
    };
    let phone_first = match &user {
        Some(u) => crate::phone_signin::offer_first(&state, &headers, u).await?,
        None => false,
    };
    let first_state = if phone_first {
        identified
            .next(SignInEvent::ChoosePhoneSignIn)
            .map_err(|_| AppError::internal("phone sign-in offered to an unknown user"))?
    } else {
        identified
    };
    let token = random_token();
    let now = state.now();
    let record = SignInRecord {
        id_hash: token_hash(&token),
        tenant: state.tenant,
        username,
        state: first_state,
        version: 0,
        next_path: next,
        created_at: now,
        expires_at: now + state.config.signin_lifetime_secs,
    };
    state.store.create_signin(&record).await?;
    let cookie = host_cookie(
        SIGNIN_COOKIE,
        &token,
        Some(state.config.signin_lifetime_secs),
    );
    if let (true, Some(user)) = (phone_first, &user) {
        crate::push_signin::start(&state, &client, &record, user, ChallengeKind::PhoneSignIn)
            .await?;
        return Ok(with_cookies(see_other("/login/app"), &[cookie]));
    }
    Ok(with_cookies(see_other("/login/password"), &[cookie]))
}

/// The current transaction, or a redirect to start again.
pub(crate) async fn load(state: &AppState, headers: &HeaderMap) -> Result<SignInRecord, Response> {
    let Some(token) = cookie(headers, SIGNIN_COOKIE) else {
        return Err(see_other("/login"));
    };
    let id_hash = token_hash(&token);
    match state.store.find_signin(&id_hash, state.now()).await {
        Ok(Some(rec)) => Ok(rec),
        Ok(None) => {
            // An expired transaction is deleted the first time it is refused, so a clock set
            // back later cannot revive it (SECURITY.md: expired things stay expired).
            if let Err(e) = state.store.delete_signin(&id_hash).await {
                return Err(AppError::from(e).into_response());
            }
            Err(with_cookies(
                see_other("/login?expired=1"),
                &[clear_cookie(SIGNIN_COOKIE)],
            ))
        }
        Err(e) => Err(AppError::from(e).into_response()),
    }
}

/// The sign-in transaction named by the `__Host-sesame-signin` cookie. Without a live one the
/// request is answered with a redirect to start again, so no handler can forget to check.
pub(crate) struct Transaction(pub SignInRecord);

impl FromRequestParts<AppState> for Transaction {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        load(state, &parts.headers).await.map(Transaction)
    }
}

/// Where a transaction in this state belongs.
pub(crate) fn page_for(state: &SignInState) -> &'static str {
    match state {
        SignInState::Identified { .. } => "/login/password",
        SignInState::SecondFactor { .. } => "/login/verify",
        SignInState::PhoneSignIn { .. } => "/login/app",
        SignInState::Done { .. } | SignInState::Failed => "/login",
    }
}

/// Applies one event by compare-and-set.
pub(crate) async fn advance(
    state: &AppState,
    rec: &SignInRecord,
    event: SignInEvent,
) -> Result<SignInState, Response> {
    let next = rec
        .state
        .next(event)
        .map_err(|_| see_other(page_for(&rec.state)))?;
    match state
        .store
        .update_signin_state(&rec.id_hash, rec.version, &next)
        .await
    {
        Ok(true) => Ok(next),
        // Someone else moved this transaction first (a second tab, a replayed request).
        Ok(false) => Err(AppError::BadRequest(
            "This sign-in has already moved on. Start again.".into(),
        )
        .into_response()),
        Err(e) => Err(AppError::from(e).into_response()),
    }
}

pub(crate) fn password_form(csrf: &CsrfToken, username: &str, message: Option<&str>) -> String {
    let msg = message
        .map(|m| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(m)))
        .unwrap_or_default();
    format!(
        "<p>{}</p><h1>Enter password</h1>{msg}<form method=\"post\" action=\"/login/password\">{}\
         <label for=\"password\">Password</label>\
         <input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" autofocus required>\
         <button type=\"submit\">Sign in</button></form>\
         <form method=\"post\" action=\"/login/app\">{}<button type=\"submit\" class=\"link\">Use an app instead</button></form>\
         <p><a href=\"/login/options\">Other ways to sign in</a></p>\
         <p><a href=\"/login\">Sign in with a different account</a></p>",
        esc(username),
        csrf.hidden_field(),
        csrf.hidden_field()
    )
}

async fn password_page(Transaction(rec): Transaction, csrf: CsrfToken) -> Response {
    if !matches!(rec.state, SignInState::Identified { .. }) {
        return see_other(page_for(&rec.state));
    }
    page(
        &csrf,
        StatusCode::OK,
        layout("Enter password", &password_form(&csrf, &rec.username, None)),
    )
}

async fn password_submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Transaction(rec): Transaction,
    client: Client,
    csrf: CsrfToken,
    form: CsrfForm,
) -> Result<Response, AppError> {
    let SignInState::Identified { user: user_id } = rec.state else {
        return Ok(see_other(page_for(&rec.state)));
    };
    let user = match user_id {
        Some(id) => state.store.find_user(id).await?,
        None => None,
    };
    let typed = SecretString::new(form.text("password").to_string());
    let stored = user.as_ref().and_then(|u| u.password_hash.clone());
    // Unknown user, user without password and wrong password all cost one Argon2id check.
    let verified = state
        .hasher
        .run(move || password::verify(stored.as_deref(), &typed))
        .await?;
    let entry = |reason| Entry {
        user: user.as_ref().map(|u| u.id),
        username: &rec.username,
        event: "sign_in",
        method: Some("password"),
        result: AuditResult::Failure,
        reason,
    };
    let user = match (verified, &user) {
        (true, Some(u)) => u.clone(),
        _ => {
            let reason = if user.is_none() {
                "unknown_user"
            } else {
                "wrong_password"
            };
            audit::record(&state, &client, entry(Some(reason))).await;
            let html = layout(
                "Enter password",
                &password_form(&csrf, &rec.username, Some(INCORRECT)),
            );
            return Ok(page(&csrf, StatusCode::UNAUTHORIZED, html));
        }
    };
    if user.is_blocked {
        // Said only after the right password, so it reveals nothing to a guesser.
        audit::record(&state, &client, entry(Some("blocked"))).await;
        let _ = advance(&state, &rec, SignInEvent::Abort).await;
        return Err(AppError::Forbidden(
            "Your account has been blocked. Contact your administrator.".into(),
        ));
    }
    let up = crate::policy::for_user(&state, &user).await?;
    let second_factors = second_factor_kinds(&state, &user, &up.allowed).await?;
    let phone_ready = crate::phone_signin::available(&state, &user).await?;
    if second_factors.is_empty() && up.mfa_required && phone_ready {
        // Two-step verification required, no second step allowed after a password, but phone
        // sign-in is set up: the phone is the way in.
        audit::record(&state, &client, entry(Some("password_not_enough"))).await;
        let html = layout(
            "Enter password",
            &password_form(&csrf, &rec.username, Some("Your organisation requires you to sign in with the Authenticator app. Choose \"Use an app instead\".")),
        );
        return Ok(page(&csrf, StatusCode::FORBIDDEN, html));
    }
    let next = match advance(
        &state,
        &rec,
        SignInEvent::PasswordAccepted {
            user: user.id,
            second_factors,
        },
    )
    .await
    {
        Ok(s) => s,
        Err(resp) => return Ok(resp),
    };
    match next {
        SignInState::Done { .. } if up.mfa_required => {
            // Required but nothing to verify with: signed in only to add a method (the session
            // extractor keeps every other page closed until then).
            let rec = SignInRecord {
                next_path: Some(crate::session::SETUP_REQUIRED.into()),
                ..rec
            };
            finish(
                &state, &headers, &client, &rec, &next, &user, "password", None,
            )
            .await
        }
        SignInState::Done { .. } => {
            finish(
                &state, &headers, &client, &rec, &next, &user, "password", None,
            )
            .await
        }
        SignInState::SecondFactor {
            method: MethodKind::Push,
            ..
        } => {
            crate::push_signin::start(&state, &client, &rec, &user, ChallengeKind::Mfa).await?;
            Ok(see_other("/login/verify"))
        }
        _ => Ok(see_other("/login/verify")),
    }
}

/// The user's second-step method kinds the policy allows, the default method's kind first.
async fn second_factor_kinds(
    state: &AppState,
    user: &User,
    allowed: &Allowed,
) -> Result<Vec<MethodKind>, AppError> {
    let mut methods = state.store.list_methods(user.id).await?;
    methods.retain(|m| match m.kind {
        MethodKind::Push => allowed.push,
        MethodKind::Totp => allowed.codes,
    });
    let mut kinds: Vec<MethodKind> = Vec::new();
    if let Some(d) = user
        .default_method
        .and_then(|d| methods.iter().find(|m| m.id == d))
    {
        kinds.push(d.kind);
    }
    for m in &methods {
        if !kinds.contains(&m.kind) {
            kinds.push(m.kind);
        }
    }
    Ok(kinds)
}

/// Mints the session for a finished transaction and ends the transaction.
#[allow(clippy::too_many_arguments)] // each is one fact about this sign-in; a struct would only rename them
pub(crate) async fn finish(
    state: &AppState,
    headers: &HeaderMap,
    client: &Client,
    rec: &SignInRecord,
    done: &SignInState,
    user: &User,
    method: &str,
    approval: Option<&str>,
) -> Result<Response, AppError> {
    let completed = done
        .completed()
        .ok_or_else(|| AppError::internal("finish called before Done"))?;
    let now = state.now();
    // The session id is new at every sign-in (no fixation); any previous session ends.
    if let Some(old) = cookie(headers, SESSION_COOKIE) {
        state.store.revoke_session(&token_hash(&old), now).await?;
    }
    let token = random_token();
    let success = audit::event(
        state,
        client,
        Entry {
            user: Some(user.id),
            username: &user.username,
            event: "sign_in",
            method: Some(method),
            result: AuditResult::Success,
            reason: None,
        },
    );
    // Session, end of the transaction, last sign-in (resets the push budget), the audit line
    // and, for a phone approval, approved -> consumed are written together: all or nothing,
    // one commit. Two tabs or two nodes cannot both use one approval.
    if !state
        .store
        .complete_signin(
            &rec.id_hash,
            &token_hash(&token),
            &completed,
            now,
            state.config.session_limits(),
            &success,
            approval,
        )
        .await?
    {
        return Ok(see_other(page_for(&rec.state)));
    }
    let target = rec.next_path.clone().unwrap_or_else(|| "/account".into());
    let cookies = [
        host_cookie(
            SESSION_COOKIE,
            &token,
            Some(state.config.session_absolute_secs),
        ),
        clear_cookie(SIGNIN_COOKIE),
    ];
    Ok(with_cookies(see_other(&target), &cookies))
}

fn verify_form(csrf: &CsrfToken, method: MethodKind, message: Option<&str>) -> String {
    let msg = message
        .map(|m| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(m)))
        .unwrap_or_default();
    let prompt = match method {
        MethodKind::Totp | MethodKind::Push => {
            "Enter the code displayed in the authenticator app on your mobile device."
        }
    };
    format!(
        "<h1>Enter code</h1><p>{prompt}</p>{msg}<form method=\"post\" action=\"/login/verify\">{}\
         <label for=\"code\">Code</label>\
         <input type=\"text\" id=\"code\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" pattern=\"[0-9 ]*\" maxlength=\"12\" autofocus required>\
         <button type=\"submit\">Verify</button></form>\
         <p><a href=\"/login/methods\">Use a different verification option</a></p>",
        csrf.hidden_field()
    )
}

async fn verify_page(
    State(state): State<AppState>,
    Transaction(rec): Transaction,
    csrf: CsrfToken,
) -> Response {
    let SignInState::SecondFactor { method, .. } = rec.state else {
        return see_other(page_for(&rec.state));
    };
    if method == MethodKind::Push {
        return crate::push_signin::waiting_page(&state, &rec, &csrf).await;
    }
    page(
        &csrf,
        StatusCode::OK,
        layout("Enter code", &verify_form(&csrf, method, None)),
    )
}

fn minutes_until(now: i64, until: i64) -> i64 {
    ((until - now).max(1) + 59) / 60
}

async fn verify_submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Transaction(rec): Transaction,
    client: Client,
    csrf: CsrfToken,
    form: CsrfForm,
) -> Result<Response, AppError> {
    let SignInState::SecondFactor {
        user: user_id,
        method,
        ..
    } = rec.state
    else {
        return Ok(see_other(page_for(&rec.state)));
    };
    if method != MethodKind::Totp {
        // Codes are typed only on the code page; a crafted post cannot answer a push.
        return Ok(see_other("/login/verify"));
    }
    let again = |status: StatusCode, message: &str| {
        page(
            &csrf,
            status,
            layout("Enter code", &verify_form(&csrf, method, Some(message))),
        )
    };
    let code = match totp::parse_code(form.text("code")) {
        Ok(c) => c,
        Err(e) => return Ok(again(StatusCode::BAD_REQUEST, &e.to_string())),
    };
    let Some(user) = state.store.find_user(user_id).await? else {
        return Ok(with_cookies(
            see_other("/login"),
            &[clear_cookie(SIGNIN_COOKIE)],
        ));
    };
    let fail = |reason: &'static str| Entry {
        user: Some(user.id),
        username: &user.username,
        event: "sign_in",
        method: Some(method.as_str()),
        result: AuditResult::Failure,
        reason: Some(reason),
    };
    if user.is_blocked {
        audit::record(&state, &client, fail("blocked")).await;
        let _ = advance(&state, &rec, SignInEvent::Abort).await;
        return Err(AppError::Forbidden(
            "Your account has been blocked. Contact your administrator.".into(),
        ));
    }
    let now = state.now();
    // The attempt is counted before the code is compared, per user and method, in the store:
    // new sessions, new codes and parallel requests share one counter.
    match state
        .store
        .reserve_attempt(user.id, method.as_str(), &state.config.lockout, now)
        .await?
    {
        AttemptGate::Open => {}
        AttemptGate::SoftLocked { until } => {
            audit::record(&state, &client, fail("locked")).await;
            let msg = format!(
                "Too many wrong codes. Try again in {} minute(s), or use a different verification option.",
                minutes_until(now, until)
            );
            return Ok(again(StatusCode::TOO_MANY_REQUESTS, &msg));
        }
        AttemptGate::HardLocked => {
            audit::record(&state, &client, fail("hard_locked")).await;
            return Ok(again(
                StatusCode::TOO_MANY_REQUESTS,
                "Verification codes are locked for your account after too many wrong codes. Contact your administrator, or use a different verification option.",
            ));
        }
    }
    let mut reused = false;
    let mut accepted = false;
    for m in state
        .store
        .list_methods(user.id)
        .await?
        .iter()
        .filter(|m| m.kind == method)
    {
        let Some(secret) = &m.totp_secret else {
            continue;
        };
        if let Some(step) = totp::matching_step(secret, &code, now) {
            if state.store.claim_totp_step(m.id, step, now).await? {
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
        audit::record(&state, &client, fail(reason)).await;
        return Ok(again(StatusCode::UNAUTHORIZED, msg));
    }
    state.store.clear_failures(user.id, method.as_str()).await?;
    let done = match advance(&state, &rec, SignInEvent::SecondFactorAccepted(method)).await {
        Ok(s) => s,
        Err(resp) => return Ok(resp),
    };
    finish(
        &state,
        &headers,
        &client,
        &rec,
        &done,
        &user,
        method.as_str(),
        None,
    )
    .await
}

async fn methods_page(Transaction(rec): Transaction, csrf: CsrfToken) -> Response {
    let SignInState::SecondFactor { available, .. } = &rec.state else {
        return see_other(page_for(&rec.state));
    };
    let items: String = available
        .iter()
        .map(|k| {
            format!(
                "<li><form method=\"post\" action=\"/login/methods\">{}<input type=\"hidden\" name=\"method\" value=\"{}\">\
                 <button type=\"submit\" class=\"link\">{}</button></form></li>",
                csrf.hidden_field(),
                k.as_str(),
                esc(k.display_name())
            )
        })
        .collect();
    let body = format!("<h1>Verify your identity</h1><ul class=\"options\">{items}</ul><p><a href=\"/login/verify\">Back</a></p>");
    page(&csrf, StatusCode::OK, layout("Verify your identity", &body))
}

async fn methods_submit(
    State(state): State<AppState>,
    Transaction(rec): Transaction,
    client: Client,
    form: CsrfForm,
) -> Result<Response, AppError> {
    let kind: MethodKind = form.text("method").parse().map_err(|_| {
        AppError::BadRequest("Choose one of the listed verification options.".into())
    })?;
    let next = match advance(&state, &rec, SignInEvent::ChooseMethod(kind)).await {
        Ok(s) => s,
        Err(resp) => return Ok(resp),
    };
    if let SignInState::SecondFactor { user, method, .. } = next {
        let Some(user) = state.store.find_user(user).await? else {
            return Ok(see_other("/login"));
        };
        if method == MethodKind::Push {
            crate::push_signin::start(&state, &client, &rec, &user, ChallengeKind::Mfa).await?;
        } else {
            // Moving away from the phone: its request must not stay answerable.
            crate::push_signin::cancel(&state, &user).await?;
        }
    }
    Ok(see_other("/login/verify"))
}
