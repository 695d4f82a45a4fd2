//! Passwordless phone sign-in on the sign-in pages (DESIGN §1, §3): after the username, a user
//! who has phone sign-in sees "Approve sign-in request" with a number; "Use your password
//! instead" is always there, and "Use an app instead" on the password page goes back. The last
//! choice is remembered for the user (in the database) and for the browser (a cookie tagged
//! with a keyed hash of the user id, so it names nobody), and offered first next time.
//!
//! The request itself is an ordinary challenge of kind `phone_sign_in`: the waiting page,
//! long-poll, resend and completion are shared with the notification second step.

use crate::error::AppError;
use crate::signin::{advance, page_for, password_form, Transaction};
use crate::web::{
    cookie, esc, host_cookie, layout, page, see_other, with_cookies, Client, CsrfForm, CsrfToken,
};
use crate::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use sesame_core::signin::{SignInEvent, SignInState};
use sesame_proto::device::ChallengeKind;
use sesame_store::{SignInRecord, User};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/login/app", get(waiting).post(use_app))
        .route("/login/password-instead", post(use_password))
        .route("/login/options", get(options))
}

pub const CHOICE_COOKIE: &str = "__Host-sesame-choice";
/// How long a browser remembers the choice.
const CHOICE_MAX_AGE: i64 = 180 * 24 * 3600;

const NOT_SET_UP: &str = "Phone sign-in isn't turned on for this account. Sign in with your password, or turn on phone sign-in in the Sesame Authenticator app.";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    App,
    Password,
}

impl Choice {
    pub fn as_str(self) -> &'static str {
        match self {
            Choice::App => "app",
            Choice::Password => "password",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "app" => Some(Choice::App),
            "password" => Some(Choice::Password),
            _ => None,
        }
    }
}

/// Whether phone sign-in can be used by `user` right now: a device with phone sign-in on and a
/// working PIN key, a policy that allows it, and requests not blocked by a fraud report.
pub async fn available(state: &AppState, user: &User) -> Result<bool, AppError> {
    if user.is_blocked || user.push_blocked_at.is_some() {
        return Ok(false);
    }
    if !crate::policy::for_user(state, user)
        .await?
        .allowed
        .phone_sign_in
    {
        return Ok(false);
    }
    Ok(state
        .store
        .list_devices(user.id)
        .await?
        .iter()
        .any(|d| d.phone_sign_in_ready()))
}

/// The choice this browser made for this user, else the user's last choice anywhere.
pub fn remembered(state: &AppState, headers: &HeaderMap, user: &User) -> Option<Choice> {
    let from_browser = cookie(headers, CHOICE_COOKIE).and_then(|v| {
        let (tag, choice) = v.split_once('.')?;
        (tag == state.user_tag(user.id))
            .then(|| Choice::parse(choice))
            .flatten()
    });
    from_browser.or_else(|| user.signin_preference.as_deref().and_then(Choice::parse))
}

/// Records the choice for the user and returns the cookie that records it for this browser.
pub async fn remember(state: &AppState, user: &User, choice: Choice) -> Result<String, AppError> {
    if user.signin_preference.as_deref() != Some(choice.as_str()) {
        state
            .store
            .update_signin_preference(user.id, Some(choice.as_str()))
            .await?;
    }
    let value = format!("{}.{}", state.user_tag(user.id), choice.as_str());
    Ok(host_cookie(CHOICE_COOKIE, &value, Some(CHOICE_MAX_AGE)))
}

/// After the username: go straight to the phone unless the password was chosen last.
pub async fn offer_first(
    state: &AppState,
    headers: &HeaderMap,
    user: &User,
) -> Result<bool, AppError> {
    Ok(
        remembered(state, headers, user) != Some(Choice::Password)
            && available(state, user).await?,
    )
}

/// Moves an identified sign-in to the phone and sends the request.
pub async fn begin(
    state: &AppState,
    client: &Client,
    rec: &SignInRecord,
    user: &User,
) -> Result<Response, AppError> {
    if let Err(resp) = advance(state, rec, SignInEvent::ChoosePhoneSignIn).await {
        return Ok(resp);
    }
    crate::push_signin::start(state, client, rec, user, ChallengeKind::PhoneSignIn).await?;
    Ok(see_other("/login/app"))
}

async fn waiting(
    State(state): State<AppState>,
    Transaction(rec): Transaction,
    csrf: CsrfToken,
) -> Response {
    if !matches!(rec.state, SignInState::PhoneSignIn { .. }) {
        return see_other(page_for(&rec.state));
    }
    crate::push_signin::waiting_page(&state, &rec, &csrf).await
}

/// The user of an identified sign-in (None for unknown usernames).
async fn identified_user(state: &AppState, rec: &SignInRecord) -> Result<Option<User>, AppError> {
    match rec.state {
        SignInState::Identified { user: Some(id) } | SignInState::PhoneSignIn { user: id } => {
            Ok(state.store.find_user(id).await?)
        }
        _ => Ok(None),
    }
}

/// "Use an app instead".
async fn use_app(
    State(state): State<AppState>,
    Transaction(rec): Transaction,
    client: Client,
    csrf: CsrfToken,
    _form: CsrfForm,
) -> Result<Response, AppError> {
    match rec.state {
        SignInState::Identified { .. } => {}
        SignInState::PhoneSignIn { .. } => return Ok(see_other("/login/app")),
        _ => return Ok(see_other(page_for(&rec.state))),
    }
    let user = identified_user(&state, &rec).await?;
    match user {
        Some(user) if available(&state, &user).await? => {
            let cookie = remember(&state, &user, Choice::App).await?;
            let resp = begin(&state, &client, &rec, &user).await?;
            Ok(with_cookies(resp, &[cookie]))
        }
        // Unknown users and users without phone sign-in are told the same thing.
        _ => Ok(page(
            &csrf,
            StatusCode::OK,
            layout(
                "Enter password",
                &password_form(&csrf, &rec.username, Some(NOT_SET_UP)),
            ),
        )),
    }
}

/// "Use your password instead": always works, and is remembered.
async fn use_password(
    State(state): State<AppState>,
    Transaction(rec): Transaction,
    _form: CsrfForm,
) -> Result<Response, AppError> {
    let user = identified_user(&state, &rec).await?;
    match rec.state {
        SignInState::PhoneSignIn { .. } => {
            if let Err(resp) = advance(&state, &rec, SignInEvent::UsePassword).await {
                return Ok(resp);
            }
        }
        SignInState::Identified { .. } => {}
        _ => return Ok(see_other(page_for(&rec.state))),
    }
    let Some(user) = user else {
        return Ok(see_other("/login/password"));
    };
    // The choice is stored before the request is withdrawn: withdrawing it wakes the page's
    // waiting poll, and anything that poll makes the page do must find the choice made.
    let cookie = remember(&state, &user, Choice::Password).await?;
    // The request on the phone must not stay answerable once the user walked away from it.
    crate::push_signin::cancel(&state, &user).await?;
    Ok(with_cookies(see_other("/login/password"), &[cookie]))
}

/// "Other ways to sign in": what this user can use.
async fn options(
    State(state): State<AppState>,
    Transaction(rec): Transaction,
    csrf: CsrfToken,
) -> Result<Response, AppError> {
    if !matches!(
        rec.state,
        SignInState::Identified { .. } | SignInState::PhoneSignIn { .. }
    ) {
        return Ok(see_other(page_for(&rec.state)));
    }
    let user = identified_user(&state, &rec).await?;
    let app = match &user {
        Some(u) => available(&state, u).await?,
        None => false,
    };
    let button = |action: &str, label: &str| {
        format!(
            "<li><form method=\"post\" action=\"{action}\">{}<button type=\"submit\" class=\"link\">{label}</button></form></li>",
            csrf.hidden_field()
        )
    };
    let mut items = String::new();
    if app {
        items.push_str(&button(
            "/login/app",
            "Approve a request on my Authenticator app",
        ));
    }
    items.push_str(&button("/login/password-instead", "Use my password"));
    let body = format!(
        "<p>{}</p><h1>Other ways to sign in</h1><ul class=\"options\">{items}</ul><p><a href=\"/login\">Sign in with a different account</a></p>",
        esc(&rec.username)
    );
    Ok(page(
        &csrf,
        StatusCode::OK,
        layout("Other ways to sign in", &body),
    ))
}
