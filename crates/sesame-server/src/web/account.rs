//! "My account" and signing out.

use super::extract::SignedIn;
use super::templates::{AccountPage, SignedOutPage};
use super::{
    clear_cookie, cookie, page, templates, with_cookies, CsrfForm, CsrfToken, SESSION_COOKIE,
};
use crate::error::Error;
use crate::service::{sessions, Origin};
use crate::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/account", get(account))
        .route("/logout", get(logout).post(logout_form))
}

async fn account(me: SignedIn, csrf: CsrfToken) -> Response {
    page(
        &csrf,
        StatusCode::OK,
        &AccountPage {
            csrf: &csrf.token,
            display_name: &me.user.display_name,
            username: &me.user.username,
            is_admin: me.user.is_admin,
        },
    )
}

async fn sign_out(state: &AppState, headers: &HeaderMap, origin: &Origin) -> Response {
    if let Some(token) = cookie(headers, SESSION_COOKIE) {
        if let Err(e) = sessions::sign_out(state, origin, &token).await {
            return Error::from(e).into_response();
        }
    }
    let page = match templates::render(&SignedOutPage) {
        Ok(html) => html.into_response(),
        Err(e) => e.into_response(),
    };
    with_cookies(page, &[clear_cookie(SESSION_COOKIE)])
}

/// GET /logout signs out too, as DESIGN §8 promises; it never redirects anywhere (no open
/// redirect).
async fn logout(State(state): State<AppState>, headers: HeaderMap, origin: Origin) -> Response {
    sign_out(&state, &headers, &origin).await
}

async fn logout_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    origin: Origin,
    _form: CsrfForm,
) -> Response {
    sign_out(&state, &headers, &origin).await
}
