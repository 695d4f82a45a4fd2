//! `/admin/outbox`: the development outbox in the browser (only with
//! `[server.telephony] outbox_page = true`): read the texts (with their codes) and answer
//! ringing calls as the phone would, like `sesame outbox`. Administrators only; 404 when the
//! page is off, so a production server shows nothing here.

use crate::error::Error;
use crate::service::phones;
use crate::web::extract::{Admin as AdminUser, Checked, RecentAdmin};
use crate::web::{fmt_time, page, see_other, CsrfToken};
use crate::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use sesame_core::ChallengeId;
use sesame_telephony::CallOutcome;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/outbox", get(list))
        .route("/admin/outbox/{id}/answer", post(answer))
}

/// One row: what a person reads of a text or a call.
struct Row {
    id: i64,
    sent: String,
    to: String,
    extension: Option<String>,
    kind: &'static str,
    body: String,
    state: String,
    ringing: bool,
}

#[derive(Template)]
#[template(path = "admin/outbox.html")]
struct OutboxPage<'a> {
    csrf: &'a str,
    notice: Option<&'a str>,
    error: Option<&'a str>,
    items: Vec<Row>,
}

#[derive(Deserialize)]
struct Flash {
    done: Option<String>,
}

fn enabled(state: &AppState) -> Result<(), Error> {
    if state.config.telephony.outbox_page {
        Ok(())
    } else {
        Err(Error::not_found())
    }
}

async fn list(
    State(state): State<AppState>,
    _admin: AdminUser,
    csrf: CsrfToken,
    q: Query<Flash>,
) -> Result<Response, Error> {
    enabled(&state)?;
    let items = state
        .store
        .outbox_list(100)
        .await?
        .into_iter()
        .map(|i| Row {
            id: i.id,
            sent: fmt_time(i.created_at),
            to: i.to,
            extension: i.extension,
            kind: if i.kind == "sms" { "Text" } else { "Call" },
            ringing: i.kind == "call" && i.state == "ringing",
            body: i.body,
            state: i.state.replace('_', " "),
        })
        .collect();
    let notice = match q.done.as_deref() {
        Some("answered") => Some("Answered."),
        _ => None,
    };
    Ok(page(
        &csrf,
        StatusCode::OK,
        &OutboxPage {
            csrf: &csrf.token,
            notice,
            error: None,
            items,
        },
    ))
}

/// Answers a ringing call as the phone would: # approves, 0# reports fraud, "none" lets it
/// ring out unanswered.
async fn answer(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Checked { form, .. }: Checked<RecentAdmin>,
) -> Result<Response, Error> {
    enabled(&state)?;
    let outcome = match form.text("press") {
        "#" => CallOutcome::Approved,
        "0#" => CallOutcome::Fraud,
        "none" => CallOutcome::NotAnswered,
        _ => return Err(Error::bad_request("Choose #, 0# or let it ring.")),
    };
    let item = state
        .store
        .outbox_find(id)
        .await?
        .filter(|i| i.kind == "call")
        .ok_or_else(Error::not_found)?;
    if !state
        .store
        .outbox_answer(item.id, outcome.as_str(), state.now())
        .await?
    {
        return Err(Error::bad_request("That call has ended already."));
    }
    phones::call_ended(&state, &ChallengeId(item.reference), outcome).await?;
    Ok(see_other("/admin/outbox?done=answered"))
}
