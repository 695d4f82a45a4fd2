//! First-run set-up: while a tenant has no administrator, `sesame serve` prints a one-time
//! link to this page, where the first administrator is created.

use crate::audit::{self, Entry};
use crate::error::AppError;
use crate::web::{
    esc, layout, page, random_token, see_other, token_hash, Client, CsrfForm, CsrfToken,
};
use crate::AppState;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use sesame_core::password;
use sesame_core::secret::SecretString;
use sesame_store::{AuditResult, NewUser, StoreError};

pub fn routes() -> Router<AppState> {
    Router::new().route("/setup", get(setup_page).post(setup_submit))
}

/// How long a printed set-up link works.
pub const SETUP_LINK_SECS: i64 = 24 * 3600;

/// If the tenant has no administrator yet, makes a fresh one-time set-up token and returns the
/// path (`/setup?token=...`) to print.
pub async fn ensure_setup_link(state: &AppState) -> Result<Option<String>, StoreError> {
    if state.store.count_admins(state.tenant).await? > 0 {
        return Ok(None);
    }
    let token = random_token();
    state
        .store
        .create_setup_token(&token_hash(&token), state.now() + SETUP_LINK_SECS)
        .await?;
    Ok(Some(format!("/setup?token={token}")))
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

const INVALID: &str = "This set-up link is not valid: it has expired or has already been used. Restart the server to get a new one, or create an administrator with `sesame user add NAME --admin --password-stdin`.";

fn form_html(csrf: &CsrfToken, token: &str, message: Option<&str>) -> String {
    let msg = message
        .map(|m| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(m)))
        .unwrap_or_default();
    format!(
        "<h1>Create the first administrator</h1><p>Welcome to Sesame. Choose the administrator's username and password.</p>{msg}\
         <form method=\"post\" action=\"/setup\">{}<input type=\"hidden\" name=\"token\" value=\"{}\">\
         <label for=\"username\">Username</label><input type=\"text\" id=\"username\" name=\"username\" autocomplete=\"username\" required>\
         <label for=\"display_name\">Display name</label><input type=\"text\" id=\"display_name\" name=\"display_name\">\
         <label for=\"password\">Password</label><input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"new-password\" required minlength=\"8\">\
         <label for=\"confirm\">Confirm password</label><input type=\"password\" id=\"confirm\" name=\"confirm\" autocomplete=\"new-password\" required>\
         <button type=\"submit\">Create administrator</button></form>",
        csrf.hidden_field(),
        esc(token)
    )
}

async fn setup_page(
    State(state): State<AppState>,
    q: Query<TokenQuery>,
    csrf: CsrfToken,
) -> Result<Response, AppError> {
    let token = q.token.clone().unwrap_or_default();
    if !state
        .store
        .is_setup_token_valid(&token_hash(&token), state.now())
        .await?
    {
        return Err(AppError::Forbidden(INVALID.into()));
    }
    Ok(page(
        &csrf,
        StatusCode::OK,
        layout("Set up Sesame", &form_html(&csrf, &token, None)),
    ))
}

async fn setup_submit(
    State(state): State<AppState>,
    client: Client,
    csrf: CsrfToken,
    form: CsrfForm,
) -> Result<Response, AppError> {
    let token = form.text("token").to_string();
    let hash = token_hash(&token);
    if !state.store.is_setup_token_valid(&hash, state.now()).await? {
        return Err(AppError::Forbidden(INVALID.into()));
    }
    let retry = |m: &str| {
        page(
            &csrf,
            StatusCode::BAD_REQUEST,
            layout("Set up Sesame", &form_html(&csrf, &token, Some(m))),
        )
    };
    let username = form.text("username").trim().to_string();
    if username.is_empty() || username.len() > 256 {
        return Ok(retry("Enter a username (at most 256 characters)."));
    }
    let pw = SecretString::new(form.text("password").to_string());
    if form.text("password") != form.text("confirm") {
        return Ok(retry("The passwords do not match."));
    }
    if let Err(e) = password::validate_new(&pw) {
        return Ok(retry(&e.to_string()));
    }
    let hashed = state
        .hasher
        .run(move || password::hash(&pw, &mut rand::rngs::OsRng))
        .await?;
    let hashed = hashed.map_err(|e| AppError::internal(e.to_string()))?;
    // Consuming the token is the single-use point; a second submission finds it used.
    if !state.store.consume_setup_token(&hash, state.now()).await? {
        return Err(AppError::Forbidden(INVALID.into()));
    }
    let display = match form.text("display_name").trim() {
        "" => username.clone(),
        d => d.to_string(),
    };
    let new = NewUser {
        tenant: state.tenant,
        username: username.clone(),
        display_name: display,
        password_hash: Some(hashed),
        is_admin: true,
    };
    let user = match state.store.create_user(new, state.now()).await {
        Ok(u) => u,
        Err(StoreError::Conflict(_)) => {
            return Err(AppError::BadRequest(
                "That username is taken. Restart the server for a new set-up link.".into(),
            ))
        }
        Err(e) => return Err(e.into()),
    };
    audit::record(
        &state,
        &client,
        Entry {
            user: Some(user.id),
            username: &user.username,
            event: "admin_created",
            method: None,
            result: AuditResult::Success,
            reason: Some("setup_link"),
        },
    )
    .await;
    Ok(see_other("/login"))
}
