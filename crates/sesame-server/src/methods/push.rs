//! Notifications to the Sesame Authenticator app: the page shows a number, the phone asks for
//! it and answers signed with the device key (`service::approvals`). Set up on My security
//! info with a one-time activation link the app reads, which registers the device with its
//! notification and code methods.

use super::{Prompt, SecondStep, Verdict};
use crate::error::Error;
use crate::service::{approvals, devices, Origin, Services};
use crate::web::extract::{Recent, SignedIn};
use crate::web::templates::AddAppPage;
use crate::web::{page, qr_data_uri, CsrfToken};
use crate::AppState;
use async_trait::async_trait;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use sesame_core::method::MethodKind;
use sesame_core::push::ChallengeKind;
use sesame_store::{SignInRecord, User};

pub struct Notification;

#[async_trait]
impl SecondStep for Notification {
    fn kind(&self) -> MethodKind {
        MethodKind::Push
    }

    fn prompt(&self) -> Prompt {
        Prompt::Approval
    }

    fn enrolment(&self) -> Option<(&'static str, &'static str)> {
        Some((
            "/security-info/add/app",
            "Sesame Authenticator app (sign-in requests and codes)",
        ))
    }

    async fn begin(
        &self,
        svc: &Services,
        origin: &Origin,
        rec: &SignInRecord,
        user: &User,
    ) -> Result<Option<String>, Error> {
        approvals::start(svc, origin, rec, user, ChallengeKind::Mfa).await?;
        Ok(None)
    }

    async fn verify(&self, _: &Services, _: &Origin, _: &User, _: &str) -> Result<Verdict, Error> {
        // Codes are typed only on the code page; a crafted post cannot answer a request.
        Ok(Verdict::NotHere)
    }

    async fn cancel(&self, svc: &Services, rec: &SignInRecord, user: &User) -> Result<(), Error> {
        Ok(approvals::cancel_own(svc, rec, user).await?)
    }

    fn routes(&self) -> Router<AppState> {
        Router::new()
            .route("/security-info/add/app", get(add_app_page))
            .route("/security-info/add/app/status", get(add_app_status))
            .route("/static/activation.js", get(activation_script))
    }
}

/// The address the app should reach: the configured public URL, else this request's host
/// (plain HTTP is meant for loopback only).
fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(b) = &state.config.public_base_url {
        return b.trim_end_matches('/').to_string();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1:8080");
    format!("http://{host}")
}

async fn add_app_page(
    State(state): State<AppState>,
    Recent(me): Recent,
    headers: HeaderMap,
    csrf: CsrfToken,
) -> Result<Response, Error> {
    if let Some(reason) = devices::app_refused(&state, &me.user).await? {
        return Err(Error::forbidden(reason));
    }
    // 256 random bits, 10 minutes, single use (DESIGN §4 asks for at least 112).
    let code = crate::token::random();
    let hash = crate::token::hash(&code);
    let expires = state.now() + devices::ACTIVATION_SECS;
    state
        .store
        .create_activation(me.user.id, &hash, expires)
        .await?;
    let link = sesame_proto::device::activation_link(&base_url(&state, &headers), &code);
    let status_id = data_encoding::HEXLOWER.encode(&hash);
    Ok(page(
        &csrf,
        StatusCode::OK,
        &AddAppPage {
            qr: &qr_data_uri(&link)?,
            link: &link,
            status_id: &status_id,
        },
    ))
}

#[derive(Deserialize)]
struct StatusQuery {
    id: String,
}

/// Whether the app has used the activation code yet (the set-up page polls it).
async fn add_app_status(
    State(state): State<AppState>,
    me: SignedIn,
    q: Query<StatusQuery>,
) -> Result<Response, Error> {
    let hash = data_encoding::HEXLOWER
        .decode(q.id.as_bytes())
        .map_err(|_| Error::not_found())?;
    let done = state
        .store
        .find_activation_device(me.user.id, &hash)
        .await?
        .ok_or_else(Error::not_found)?;
    let name = match &done {
        Some(id) => state.store.find_device(id).await?.map(|d| d.name),
        None => None,
    };
    Ok(axum::Json(serde_json::json!({ "done": done.is_some(), "device": name })).into_response())
}

async fn activation_script() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/javascript; charset=utf-8",
        )],
        include_str!("../../static/activation.js"),
    )
        .into_response()
}
