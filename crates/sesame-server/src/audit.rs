//! Writing the audit log. A failure to write is logged loudly but does not fail the request the
//! person is making.

use crate::web::Client;
use crate::AppState;
use sesame_core::UserId;
use sesame_store::{AuditEvent, AuditResult};

pub struct Entry<'a> {
    pub user: Option<UserId>,
    pub username: &'a str,
    pub event: &'a str,
    pub method: Option<&'a str>,
    pub result: AuditResult,
    pub reason: Option<&'a str>,
}

/// The log line for `e`, to be written by the caller (e.g. inside a store transaction).
pub fn event(state: &AppState, client: &Client, e: Entry<'_>) -> AuditEvent {
    tracing::info!(
        event = e.event,
        user = e.username,
        result = e.result.as_str(),
        reason = e.reason,
        "audit"
    );
    AuditEvent {
        id: 0,
        at: state.now(),
        tenant: state.tenant,
        user: e.user,
        username: e.username.chars().take(256).collect(),
        ip: client.ip.to_string(),
        user_agent: client.user_agent.clone(),
        event: e.event.to_string(),
        method: e.method.map(str::to_string),
        result: e.result,
        reason: e.reason.map(str::to_string),
    }
}

pub async fn record(state: &AppState, client: &Client, e: Entry<'_>) {
    let event = event(state, client, e);
    if let Err(err) = state.store.append_audit(&event).await {
        tracing::error!(%err, "could not write the audit log");
    }
}
