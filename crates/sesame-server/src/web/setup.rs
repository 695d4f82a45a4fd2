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

const INVALID: &str = "This set-up link no longer works: it has expired, or an administrator was already created with it. If that was you, sign in. Otherwise restart the server for a new link, or create an administrator on the server with the command: sesame user add NAME --admin --password-stdin";

/// What the form shows again after a mistake (never the passwords).
#[derive(Default)]
struct Typed<'a> {
    username: &'a str,
    display_name: &'a str,
}

fn form(
    HttpsNeeded(https_needed): HttpsNeeded,
    csrf: &CsrfToken,
    status: StatusCode,
    token: &str,
    typed: Typed<'_>,
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
            username: typed.username,
            display_name: typed.display_name,
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
    Ok(form(
        https_needed,
        &csrf,
        StatusCode::OK,
        &token,
        Typed::default(),
        None,
    ))
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
            Typed {
                username: form_data.text("username"),
                display_name: form_data.text("display_name"),
            },
            Some(m),
        ))
    };
    match setup::create_first_admin(&state, &origin, tenant, first).await {
        // Said and signed in: the console welcomes them.
        Ok(user) => match setup::sign_in_first_admin(&state, &origin, tenant, &user).await? {
            Some((rec, token)) => Ok(super::flow::signed_in(&state, &origin, &rec, &user, &token)),
            None => Ok(see_other("/login")),
        },
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
