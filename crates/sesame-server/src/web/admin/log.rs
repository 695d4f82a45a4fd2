//! The sign-in log, filtered by user, result, method and time.

use super::users::log_rows;
use crate::error::Error;
use crate::web::extract::Admin as AdminUser;
use crate::web::templates::LogPage;
use crate::web::{page, CsrfToken};
use crate::AppState;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use sesame_core::audit::AuditMethod;
use sesame_core::{TenantId, UnixTime};
use sesame_store::{AuditFilter, AuditResult};

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/admin/log", get(log_page))
}

#[derive(Deserialize, Default)]
struct LogQuery {
    user: Option<String>,
    result: Option<String>,
    method: Option<String>,
    from: Option<String>,
    to: Option<String>,
    hours: Option<String>,
}

/// Most entries one page shows.
const LOG_LIMIT: i64 = 200;

/// `YYYY-MM-DD` (what `<input type="date">` sends) as the Unix time of that day's start, UTC.
fn day_start(s: &str) -> Option<UnixTime> {
    let mut parts = s.splitn(3, '-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let month = time::Month::try_from(m.parse::<u8>().ok()?).ok()?;
    let date = time::Date::from_calendar_date(y.parse().ok()?, month, d.parse().ok()?).ok()?;
    Some(date.midnight().assume_utc().unix_timestamp())
}

fn blank(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// The store filter for the query, or what is wrong with it.
async fn log_filter(
    state: &AppState,
    tenant: TenantId,
    q: &LogQuery,
) -> Result<Result<AuditFilter, String>, Error> {
    let mut f = AuditFilter {
        tenant: Some(tenant),
        limit: LOG_LIMIT,
        ..Default::default()
    };
    if let Some(name) = blank(&q.user) {
        match state.store.find_user_by_username(tenant, name).await? {
            Some(u) => f.user = Some(u.id),
            None => return Ok(Err(format!("There is no user named {name:?}."))),
        }
    }
    f.result = match blank(&q.result) {
        None => None,
        Some("success") => Some(AuditResult::Success),
        Some("failure") => Some(AuditResult::Failure),
        Some(_) => return Ok(Err("Result must be success or failure.".into())),
    };
    f.method = match blank(&q.method) {
        None => None,
        Some(m) => match AuditMethod::parse(m) {
            Ok(m) => Some(m),
            Err(_) => return Ok(Err("Choose a method from the list.".into())),
        },
    };
    let (from, to, hours) = (blank(&q.from), blank(&q.to), blank(&q.hours));
    if hours.is_some() && (from.is_some() || to.is_some()) {
        return Ok(Err(
            "Give either a date range or a number of hours, not both.".into(),
        ));
    }
    if let Some(h) = hours {
        match h.parse::<i64>() {
            Ok(h) if (1..=24 * 366 * 10).contains(&h) => f.since = Some(state.now() - h * 3600),
            _ => return Ok(Err("Hours must be a whole number, at least 1.".into())),
        }
    }
    if let Some(d) = from {
        match day_start(d) {
            Some(t) => f.since = Some(t),
            None => return Ok(Err("The From date must look like 2025-06-15.".into())),
        }
    }
    if let Some(d) = to {
        // Up to and including that day.
        match day_start(d) {
            Some(t) => f.until = Some(t + 86_400),
            None => return Ok(Err("The To date must look like 2025-06-15.".into())),
        }
    }
    if let (Some(s), Some(u)) = (f.since, f.until) {
        if s >= u {
            return Ok(Err("The From date must not be after the To date.".into()));
        }
    }
    Ok(Ok(f))
}

async fn log_page(
    State(state): State<AppState>,
    AdminUser(me): AdminUser,
    csrf: CsrfToken,
    q: Query<LogQuery>,
) -> Result<Response, Error> {
    let (status, entries, error) = match log_filter(&state, me.user.tenant, &q).await? {
        Ok(f) => (StatusCode::OK, state.store.list_audit(&f).await?, None),
        Err(m) => (StatusCode::BAD_REQUEST, Vec::new(), Some(m)),
    };
    let value = |s: &Option<String>| s.as_deref().unwrap_or("").to_string();
    let mut methods = vec![("", "Any")];
    methods.extend(
        AuditMethod::ALL
            .iter()
            .map(|m| (m.as_str(), m.display_name())),
    );
    let (q_user, q_from, q_to, q_hours) = (
        value(&q.user),
        value(&q.from),
        value(&q.to),
        value(&q.hours),
    );
    Ok(page(
        &csrf,
        status,
        &LogPage {
            error: error.as_deref(),
            q_user: &q_user,
            q_result: blank(&q.result).unwrap_or(""),
            q_method: blank(&q.method).unwrap_or(""),
            q_from: &q_from,
            q_to: &q_to,
            q_hours: &q_hours,
            results: vec![("", "Any"), ("success", "Success"), ("failure", "Failure")],
            methods,
            entries: log_rows(&entries),
            limit: LOG_LIMIT,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_read_as_utc_days() {
        assert_eq!(day_start("1970-01-02"), Some(86_400));
        assert_eq!(day_start("2025-06-15"), Some(1_749_945_600));
        for bad in [
            "2025-6-15",
            "2025-13-01",
            "2025-02-30",
            "x",
            "",
            "2025-06-15T00",
        ] {
            assert_eq!(day_start(bad), None, "{bad}");
        }
    }
}
