//! The JSON APIs: today the authenticator app's device API. Errors answer in the API's JSON
//! format ([`crate::error::DeviceError`]); OpenID Connect endpoints will answer in OAuth's.

pub mod device;

use crate::AppState;
use axum::Router;

pub fn routes() -> Router<AppState> {
    device::routes()
}
