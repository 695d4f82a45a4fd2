//! The admin web console under `/admin` (users, groups, the authentication methods policy,
//! the sign-in log). Administrators only; everyone else gets 403.

use crate::AppState;
use axum::Router;

pub fn routes() -> Router<AppState> {
    Router::new()
}
