//! First-run set-up: the page behind the one-time link `sesame serve` prints while nobody
//! administers the tenant.

use super::extract::Tenant;
use super::https::HttpsNeeded;
use super::templates::SetupPage;
use super::{page, see_other, sentence, CsrfForm, CsrfToken};
use crate::error::Error;
use crate::service::setup::{self, FirstAdmin, SetupError};
use crate::service::Origin;
use crate::AppState;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use sesame_core::secret::SecretString;

pub fn routes() -> Router<AppState> {
    Router::new().route("/setup", get(setup_page).post(setup_submit))
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

const INVALID: &str = "This set-up link is not valid: it has expired or has already been used. Restart the server to get a new one, or create an administrator with `sesame user add NAME --admin --password-stdin`.";

fn form(
    HttpsNeeded(https_needed): HttpsNeeded,
    csrf: &CsrfToken,
    status: StatusCode,
    token: &str,
    error: Option<&str>,
) -> Response {
    page(
        csrf,
        status,
        &SetupPage {
            https_needed,
            csrf: &csrf.token,
            error,
            token,
        },
    )
}

async fn setup_page(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    q: Query<TokenQuery>,
    https_needed: HttpsNeeded,
    csrf: CsrfToken,
) -> Result<Response, Error> {
    let token = q.token.clone().unwrap_or_default();
    if !setup::link_is_valid(&state, tenant, &token).await? {
        return Err(Error::forbidden(INVALID));
    }
    Ok(form(https_needed, &csrf, StatusCode::OK, &token, None))
}

async fn setup_submit(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    origin: Origin,
    https_needed: HttpsNeeded,
    csrf: CsrfToken,
    form_data: CsrfForm,
) -> Result<Response, Error> {
    let token = form_data.text("token").to_string();
    let first = FirstAdmin {
        token: token.clone(),
        username: form_data.text("username").to_string(),
        display_name: form_data.text("display_name").to_string(),
        password: SecretString::new(form_data.text("password").to_string()),
        confirm: SecretString::new(form_data.text("confirm").to_string()),
    };
    let retry = |m: &str| {
        Ok(form(
            https_needed,
            &csrf,
            StatusCode::BAD_REQUEST,
            &token,
            Some(m),
        ))
    };
    match setup::create_first_admin(&state, &origin, tenant, first).await {
        Ok(_) => Ok(see_other("/login")),
        Err(SetupError::InvalidLink) => Err(Error::forbidden(INVALID)),
        Err(SetupError::BadUsername) => retry("Enter a username (at most 256 characters)."),
        Err(SetupError::Name(e)) => retry(&sentence(&e.to_string())),
        Err(SetupError::Mismatch) => retry("The passwords do not match."),
        Err(SetupError::Password(e)) => retry(&e.to_string()),
        Err(SetupError::Taken) => Err(Error::bad_request(
            "That username is taken. Restart the server for a new set-up link.",
        )),
        Err(SetupError::Store(e)) => Err(e.into()),
        Err(SetupError::Server(e)) => Err(e),
    }
}
