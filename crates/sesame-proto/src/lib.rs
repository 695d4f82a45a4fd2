//! Wire types shared by the Sesame server and its clients (the authenticator app).
//!
//! Everything here is serialised on the network, so changes must stay backwards compatible
//! within a protocol version. The byte strings that get signed are built here, in one place,
//! so the app and the server can never disagree on them.

pub mod device;
pub mod text;

use serde::{Deserialize, Serialize};

/// Version of the JSON APIs described in this crate.
pub const PROTOCOL_VERSION: u32 = 1;

/// The error body every JSON endpoint answers with: a stable machine-readable code and a short
/// message meant for a person. Details stay in the server log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
    pub message: String,
}

/// Answer of `/healthz` and `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_error_round_trips_as_json() {
        let e = ApiError {
            error: "invalid_code".into(),
            message: "Enter the 6-digit code.".into(),
        };
        let text = serde_json::to_string(&e).unwrap();
        assert_eq!(
            text,
            r#"{"error":"invalid_code","message":"Enter the 6-digit code."}"#
        );
        assert_eq!(serde_json::from_str::<ApiError>(&text).unwrap(), e);
    }
}
