//! "Are you sure?" before what cannot be undone (deleting a method, removing a device,
//! blocking a user, resetting their methods): a page of its own, reached by a link, whose
//! button posts to the action. It works without JavaScript; the action itself keeps its own
//! checks (CSRF, recent sign-in), so the page is for the person, not a security boundary.

use super::{page, CsrfToken};
use askama::Template;
use axum::http::StatusCode;
use axum::response::Response;

#[derive(Template)]
#[template(path = "confirm.html")]
struct ConfirmPage<'a> {
    csrf: &'a str,
    title: &'a str,
    question: &'a str,
    detail: &'a str,
    action: &'a str,
    button: &'a str,
    cancel: &'a str,
}

/// What to ask before an action.
pub struct Ask<'a> {
    pub title: &'a str,
    /// "Delete Authenticator app (verification code)?"
    pub question: &'a str,
    /// What follows, in a sentence or two.
    pub detail: &'a str,
    /// Where the button posts.
    pub action: &'a str,
    pub button: &'a str,
    /// Where "Cancel" goes.
    pub cancel: &'a str,
}

pub fn ask(csrf: &CsrfToken, a: Ask<'_>) -> Response {
    page(
        csrf,
        StatusCode::OK,
        &ConfirmPage {
            csrf: &csrf.token,
            title: a.title,
            question: a.question,
            detail: a.detail,
            action: a.action,
            button: a.button,
            cancel: a.cancel,
        },
    )
}
