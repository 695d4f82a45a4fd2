//! "My account" and signing out.

use crate::audit::{self, Entry};
use crate::session::SignedIn;
use crate::web::{
    clear_cookie, cookie, esc, layout, page, token_hash, with_cookies, Client, CsrfForm, CsrfToken,
    SESSION_COOKIE,
};
use crate::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sesame_store::AuditResult;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/account", get(account))
        .route("/logout", get(logout).post(logout_form))
}

async fn account(State(state): State<AppState>, me: SignedIn, csrf: CsrfToken) -> Response {
    let admin = if me.user.is_admin {
        "<li><a href=\"/admin\">Administration</a></li>"
    } else {
        ""
    };
    let body = format!(
        "<h1>My account</h1><p>Signed in as <strong>{}</strong> ({}).</p>\
         <ul class=\"options\"><li><a href=\"/security-info\">My security info</a></li>{admin}</ul>\
         <form method=\"post\" action=\"/logout\">{}<button type=\"submit\">Sign out</button></form>",
        esc(&me.user.display_name),
        esc(&me.user.username),
        csrf.hidden_field()
    );
    let _ = state;
    page(&csrf, StatusCode::OK, layout("My account", &body))
}

async fn sign_out(state: &AppState, headers: &HeaderMap, client: &Client) -> Response {
    if let Some(token) = cookie(headers, SESSION_COOKIE) {
        let hash = token_hash(&token);
        if let Ok(Some(s)) = state.store.find_session(&hash, state.now()).await {
            let user = state.store.find_user(s.user).await.ok().flatten();
            let name = user.as_ref().map(|u| u.username.as_str()).unwrap_or("");
            audit::record(
                state,
                client,
                Entry {
                    user: Some(s.user),
                    username: name,
                    event: "sign_out",
                    method: None,
                    result: AuditResult::Success,
                    reason: None,
                },
            )
            .await;
        }
        if let Err(e) = state.store.revoke_session(&hash, state.now()).await {
            return crate::error::AppError::from(e).into_response();
        }
    }
    let body = "<h1>You signed out of your account</h1><p>It's a good idea to close all browser windows.</p><p><a href=\"/login\">Sign in again</a></p>";
    with_cookies(
        layout("Signed out", body).into_response(),
        &[clear_cookie(SESSION_COOKIE)],
    )
}

/// GET /logout signs out too, as DESIGN §8 promises; it never redirects anywhere (no open redirect).
async fn logout(State(state): State<AppState>, headers: HeaderMap, client: Client) -> Response {
    sign_out(&state, &headers, &client).await
}

async fn logout_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: Client,
    _form: CsrfForm,
) -> Response {
    sign_out(&state, &headers, &client).await
}
