//! One classification of errors, for every layer. The doors render it three ways: an HTML
//! page for people (`web`), JSON for the authenticator app (`api::DeviceError`) and the OAuth
//! error format for OpenID Connect clients (`api::OAuthError`). People and apps see a short
//! message; the log gets the detail, never the page.

use axum::http::StatusCode;
use std::borrow::Cow;

/// The code of [`Error::https_required`].
pub const HTTPS_REQUIRED: &str = "https_required";

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

    /// A form came without its cookie from a browser that keeps none at this address: Sesame
    /// is served over plain HTTP at a name other than localhost (see `web::https`).
    pub fn https_required() -> Self {
        Self::new(
            Kind::Forbidden,
            HTTPS_REQUIRED,
            "This form cannot be accepted: over plain HTTP at this address your browser keeps none of Sesame's cookies.",
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
        if self.code == HTTPS_REQUIRED {
            return "HTTPS needed";
        }
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
    pub fn log(&self) {
        if self.kind == Kind::Internal {
            tracing::error!(
                detail = self.detail.as_deref().unwrap_or(""),
                "internal error"
            );
        }
    }

    /// Adds what a response of this error needs besides its body (`Retry-After: 1` when busy).
    pub fn with_retry_after(&self, mut resp: axum::response::Response) -> axum::response::Response {
        if self.kind == Kind::Busy {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        resp
    }
}

impl From<sesame_store::StoreError> for Error {
    fn from(e: sesame_store::StoreError) -> Self {
        use sesame_store::StoreError as S;
        match e {
            // Nothing was written: the person may simply try again (503 with Retry-After).
            S::Unavailable(_) | S::Busy(_) => {
                tracing::warn!(error = %e, "database temporarily unavailable");
                Error {
                    kind: Kind::Busy,
                    code: "database_unavailable",
                    message: "Sesame cannot reach its database right now. Nothing was changed: wait a moment and try again.".into(),
                    detail: Some(e.to_string()),
                }
            }
            // The connection broke while the database committed: the change may be saved. The
            // person must not be told that nothing changed, nor invited to do it again blindly.
            S::Uncertain(_) => {
                tracing::warn!(error = %e, "database connection lost while committing");
                Error {
                    kind: Kind::Busy,
                    code: "database_uncertain",
                    message: "Sesame lost its database connection while saving. Your change may or may not have been saved: reload the page to see where things stand.".into(),
                    detail: Some(e.to_string()),
                }
            }
            e => Error::internal(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sesame_store::StoreError;

    fn response(e: &Error) -> axum::response::Response {
        e.with_retry_after(axum::response::IntoResponse::into_response(e.status()))
    }

    #[test]
    fn a_write_that_may_have_been_saved_is_not_reported_as_nothing_changed() {
        let e = Error::from(StoreError::Uncertain("connection closed".into()));
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(!e.message.contains("Nothing was changed"), "{}", e.message);
        assert!(e.message.contains("may or may not have been saved"));
        assert!(
            !e.message.contains("connection closed"),
            "the detail is for the log"
        );
        assert!(response(&e)
            .headers()
            .contains_key(axum::http::header::RETRY_AFTER));
        // What nothing wrote still says so.
        for e in [
            StoreError::Unavailable("down".into()),
            StoreError::Busy("40P01".into()),
        ] {
            let e = Error::from(e);
            assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert!(e.message.contains("Nothing was changed"), "{}", e.message);
            assert!(response(&e)
                .headers()
                .contains_key(axum::http::header::RETRY_AFTER));
        }
    }
}
