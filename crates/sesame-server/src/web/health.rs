//! Liveness (`/healthz`: the process answers) and readiness (`/readyz`: the database answers).

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
