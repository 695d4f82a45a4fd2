//! One classification of errors, rendered three ways: an HTML page for people ([`Error`]
//! itself), JSON for the authenticator app ([`DeviceError`]) and the OAuth error format for
//! OpenID Connect clients ([`OAuthError`]). People and apps see a short message; the log gets
//! the detail, never the page.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::borrow::Cow;

/// What went wrong, as far as the one asking needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The request itself is wrong (malformed, incomplete, not allowed in this state).
    BadRequest,
    /// Who is asking could not be established (signature, PIN, credentials).
    Unauthorized,
    /// Known, but not allowed.
    Forbidden,
    NotFound,
    /// The thing changed or was used meanwhile.
    Conflict,
    PayloadTooLarge,
    TooManyRequests,
    /// Over capacity right now; worth retrying in a moment.
    Busy,
    /// Our fault: logged in detail, shown as a generic message.
    Internal,
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub kind: Kind,
    /// A stable machine-readable code (the device API's `error`, an OAuth error code).
    pub code: &'static str,
    /// What a person is told.
    pub message: Cow<'static, str>,
    /// For the log only.
    detail: Option<String>,
}

impl Error {
    pub fn new(kind: Kind, code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Error {
            kind,
            code,
            message: message.into(),
            detail: None,
        }
    }

    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(Kind::BadRequest, "invalid_request", message)
    }

    pub fn forbidden(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(Kind::Forbidden, "forbidden", message)
    }

    pub fn not_found() -> Self {
        Self::new(
            Kind::NotFound,
            "not_found",
            "There is nothing at this address.",
        )
    }

    pub fn payload_too_large() -> Self {
        Self::new(
            Kind::PayloadTooLarge,
            "too_large",
            "The request was too large.",
        )
    }

    pub fn busy() -> Self {
        Self::new(
            Kind::Busy,
            "busy",
            "The server is busy right now. Wait a moment and try again.",
        )
    }

    /// Something broke on our side; `detail` goes to the log only.
    pub fn internal(detail: impl Into<String>) -> Self {
        Error {
            kind: Kind::Internal,
            code: "server_error",
            message: "Something went wrong on our side. Try again in a moment.".into(),
            detail: Some(detail.into()),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self.kind {
            Kind::BadRequest => StatusCode::BAD_REQUEST,
            Kind::Unauthorized => StatusCode::UNAUTHORIZED,
            Kind::Forbidden => StatusCode::FORBIDDEN,
            Kind::NotFound => StatusCode::NOT_FOUND,
            Kind::Conflict => StatusCode::CONFLICT,
            Kind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Kind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Kind::Busy => StatusCode::SERVICE_UNAVAILABLE,
            Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The page title people see for this kind of error.
    pub fn title(&self) -> &'static str {
        match self.kind {
            Kind::BadRequest | Kind::Conflict => "Something is not right",
            Kind::Unauthorized | Kind::Forbidden => "Not allowed",
            Kind::NotFound => "Page not found",
            Kind::PayloadTooLarge => "Too much data",
            Kind::TooManyRequests => "Too many attempts",
            Kind::Busy => "Busy",
            Kind::Internal => "Something went wrong",
        }
    }

    /// Logs what people are not told, once, where the error becomes a response.
    fn log(&self) {
        if self.kind == Kind::Internal {
            tracing::error!(
                detail = self.detail.as_deref().unwrap_or(""),
                "internal error"
            );
        }
    }

    fn with_retry_after(&self, mut resp: Response) -> Response {
        if self.kind == Kind::Busy {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

impl From<sesame_store::StoreError> for Error {
    fn from(e: sesame_store::StoreError) -> Self {
        Error::internal(e.to_string())
    }
}

/// As an HTML page: the page people see.
impl IntoResponse for Error {
    fn into_response(self) -> Response {
        self.log();
        let page = crate::web::templates::ErrorPage {
            title: self.title(),
            message: &self.message,
        };
        let resp = (self.status(), crate::web::templates::html(&page)).into_response();
        self.with_retry_after(resp)
    }
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
