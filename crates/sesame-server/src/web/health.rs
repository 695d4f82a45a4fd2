//! Liveness (`/healthz`: the process answers), readiness (`/readyz`: the database answers),
//! and `/metrics` (Prometheus text, for the addresses in `server.metrics_allow`).

use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use sesame_proto::Health;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/favicon.ico", get(favicon))
}

/// Browsers ask for it on every page; "no content" keeps logs and consoles free of 404s.
async fn favicon() -> (StatusCode, [(axum::http::HeaderName, &'static str); 1]) {
    (
        StatusCode::NO_CONTENT,
        [(axum::http::header::CACHE_CONTROL, "public, max-age=86400")],
    )
}

async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    match state.store.check_ready().await {
        Ok(_) => (
            StatusCode::OK,
            Json(Health {
                status: "ok".into(),
            }),
        ),
        Err(e) => {
            tracing::warn!(%e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(Health {
                    status: "database unavailable".into(),
                }),
            )
        }
    }
}

/// The Prometheus text format, for the allowed addresses only (404 for others: the page is
/// not advertised).
async fn metrics(
    State(state): State<AppState>,
    origin: crate::service::Origin,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let allowed = origin
        .ip
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| state.config.metrics_allow.contains(&ip));
    if !allowed {
        return StatusCode::NOT_FOUND.into_response();
    }
    let text = state.metrics.render(
        state.hasher.waiting(),
        state.hub.open_streams(),
        state.hub.connected_users(),
    );
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
