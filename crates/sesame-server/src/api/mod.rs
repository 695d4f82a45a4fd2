//! The JSON APIs: today the authenticator app's device API. Errors answer in the API's JSON
//! format ([`DeviceError`]); OpenID Connect endpoints will answer in OAuth's ([`OAuthError`]).

pub mod device;

use crate::error::{Error, Kind};
use crate::AppState;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};

pub fn routes() -> Router<AppState> {
    device::routes()
}

/// As the device API's JSON: `{"error": code, "message": text}`.
#[derive(Debug)]
pub struct DeviceError(pub Error);

impl<E: Into<Error>> From<E> for DeviceError {
    fn from(e: E) -> Self {
        DeviceError(e.into())
    }
}

impl IntoResponse for DeviceError {
    fn into_response(self) -> Response {
        let e = self.0;
        e.log();
        let message = match e.kind {
            Kind::Internal => "Something went wrong on the server. Try again.".to_string(),
            _ => e.message.to_string(),
        };
        let body = Json(sesame_proto::ApiError {
            error: e.code.to_string(),
            message,
        });
        let resp = (e.status(), body).into_response();
        e.with_retry_after(resp)
    }
}

/// As an OAuth 2.0 error (RFC 6749 §5.2): `{"error": code, "error_description": text}`, never
/// cached.
#[derive(Debug)]
pub struct OAuthError(pub Error);

impl<E: Into<Error>> From<E> for OAuthError {
    fn from(e: E) -> Self {
        OAuthError(e.into())
    }
}

impl OAuthError {
    /// The OAuth error code: the error's own when it is one, else the nearest standard one.
    fn code(e: &Error) -> &'static str {
        const OAUTH: [&str; 9] = [
            "invalid_request",
            "invalid_client",
            "invalid_grant",
            "unauthorized_client",
            "unsupported_grant_type",
            "invalid_scope",
            "access_denied",
            "server_error",
            "temporarily_unavailable",
        ];
        if OAUTH.contains(&e.code) {
            return e.code;
        }
        match e.kind {
            Kind::Unauthorized => "invalid_client",
            Kind::Forbidden => "access_denied",
            Kind::Busy | Kind::TooManyRequests => "temporarily_unavailable",
            Kind::Internal => "server_error",
            _ => "invalid_request",
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let e = self.0;
        e.log();
        let body = serde_json::json!({
            "error": Self::code(&e),
            "error_description": match e.kind {
                Kind::Internal => "The server could not complete the request.",
                _ => &e.message,
            },
        });
        let mut resp = (e.status(), Json(body)).into_response();
        let h = resp.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        e.with_retry_after(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    async fn body(resp: Response) -> (StatusCode, String) {
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn one_error_renders_as_a_page_as_device_json_and_as_oauth_json() {
        let e = || Error::new(Kind::Conflict, "not_pending", "Already <answered>.");
        let (status, page) = body(e().into_response()).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert!(page.contains("<h1>Something is not right</h1>"), "{page}");
        assert!(page.contains("Already &lt;answered&gt;."), "{page}");
        let (status, json) = body(DeviceError(e()).into_response()).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(
            json,
            r#"{"error":"not_pending","message":"Already <answered>."}"#
        );
        let resp = OAuthError(e()).into_response();
        assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-store");
        let (_, json) = body(resp).await;
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["error"], "invalid_request");
        assert_eq!(v["error_description"], "Already <answered>.");
    }

    #[tokio::test]
    async fn internal_details_stay_in_the_log() {
        let e = || Error::internal("disk on fire at /var/lib/secret");
        for resp in [
            e().into_response(),
            DeviceError(e()).into_response(),
            OAuthError(e()).into_response(),
        ] {
            let (status, text) = body(resp).await;
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
            assert!(!text.contains("disk on fire"), "{text}");
        }
        let (_, json) = body(OAuthError(e()).into_response()).await;
        assert!(json.contains("\"server_error\""));
        let busy = Error::busy().into_response();
        assert_eq!(busy.headers()[header::RETRY_AFTER], "1");
    }
}
