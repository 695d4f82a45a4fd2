//! Who is asking, as extractors: the tenant, the sign-in transaction in progress, the
//! signed-in user, and how freshly and how strongly they signed in. A handler that takes one
//! cannot forget the check: without it the request never reaches the handler.

use super::{clear_cookie, cookie, see_other, with_cookies, SESSION_COOKIE, SIGNIN_COOKIE};
use crate::error::Error;
use crate::service::sessions::{self, Session};
use crate::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, Method};
use axum::response::{IntoResponse, Response};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use sesame_core::TenantId;
use sesame_store::SignInRecord;

/// The tenant this request is for.
#[derive(Debug, Clone, Copy)]
pub struct Tenant(pub TenantId);

impl FromRequestParts<AppState> for Tenant {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok());
        Ok(Tenant(state.tenant_for_host(host)))
    }
}

/// The sign-in transaction named by the `__Host-sesame-signin` cookie. Without a live one the
/// request is answered with a redirect to start again.
pub struct Transaction(pub SignInRecord);

impl FromRequestParts<AppState> for Transaction {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Some(token) = cookie(&parts.headers, SIGNIN_COOKIE) else {
            return Err(see_other("/login"));
        };
        match crate::service::signin::load(state, &token).await {
            Ok(Some(rec)) => Ok(Transaction(rec)),
            Ok(None) => Err(with_cookies(
                see_other("/login?expired=1"),
                &[clear_cookie(SIGNIN_COOKIE)],
            )),
            Err(e) => Err(Error::from(e).into_response()),
        }
    }
}

/// Where a user who must add a second step is sent.
pub const SETUP_REQUIRED: &str = "/security-info?setup=required";

/// Where to send someone who must sign in (again) before going to `path`.
pub fn reauth_redirect(path: &str, reauth: bool) -> Response {
    let next = utf8_percent_encode(path, NON_ALPHANUMERIC);
    let flag = if reauth { "reauth=1&" } else { "" };
    see_other(&format!("/login?{flag}next={next}"))
}

/// The page to come back to after signing in again for this request: the page itself for a
/// GET; for a form, the page the form is on (an action on a method or device of My security
/// info, or on one user in the console, belongs to that page).
pub fn page_of(method: &Method, path: &str) -> String {
    if method == Method::GET {
        return path.to_string();
    }
    if path.starts_with("/security-info/methods/") || path.starts_with("/security-info/devices/") {
        return "/security-info".into();
    }
    for page in ["/admin/users/", "/admin/groups/"] {
        if let Some((name, _action)) = path.strip_prefix(page).and_then(|r| r.split_once('/')) {
            return format!("{page}{name}");
        }
    }
    path.to_string()
}

/// The signed-in user. Pages other than My security info (and signing out) stay closed to a
/// user who signed in with the password alone while the organisation requires a second step
/// they have not set up.
#[derive(Clone)]
pub struct SignedIn(pub Session);

impl std::ops::Deref for SignedIn {
    type Target = Session;
    fn deref(&self) -> &Session {
        &self.0
    }
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        // Extracted once per request, whichever extractors ask.
        if let Some(me) = parts.extensions.get::<SignedIn>() {
            return Ok(me.clone());
        }
        let to_login = || reauth_redirect(parts.uri.path(), false);
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(to_login());
        };
        let session = match sessions::find(state, &token).await {
            Ok(Some(s)) => s,
            Ok(None) => return Err(to_login()),
            Err(e) => return Err(Error::from(e).into_response()),
        };
        if !parts.uri.path().starts_with("/security-info") {
            match session.must_set_up_second_step(state).await {
                Ok(true) => return Err(see_other(SETUP_REQUIRED)),
                Ok(false) => {}
                Err(e) => return Err(Error::from(e).into_response()),
            }
        }
        let me = SignedIn(session);
        parts.extensions.insert(me.clone());
        Ok(me)
    }
}

/// Signed in recently: changes that add a way in or hand out power need it.
pub struct Recent(pub SignedIn);

impl FromRequestParts<AppState> for Recent {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let me = SignedIn::from_request_parts(parts, state).await?;
        if !me.is_recent(state) {
            return Err(reauth_redirect(
                &page_of(&parts.method, parts.uri.path()),
                true,
            ));
        }
        Ok(Recent(me))
    }
}

/// Signed in recently and with a second step: removing a way in needs it, so a stolen idle
/// session cannot strip an account's protection.
pub struct FreshSecondStep(pub SignedIn);

impl FromRequestParts<AppState> for FreshSecondStep {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let me = SignedIn::from_request_parts(parts, state).await?;
        if !me.has_fresh_second_factor(state) {
            return Err(reauth_redirect(
                &page_of(&parts.method, parts.uri.path()),
                true,
            ));
        }
        Ok(FreshSecondStep(me))
    }
}

/// A signed-in administrator. Signed-in non-administrators get 403; people who are not signed
/// in are sent to sign in.
pub struct Admin(pub SignedIn);

impl FromRequestParts<AppState> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let me = SignedIn::from_request_parts(parts, state).await?;
        if !me.user.is_admin {
            return Err(
                Error::forbidden("Only administrators can use the admin console.").into_response(),
            );
        }
        Ok(Admin(me))
    }
}

/// An administrator who signed in recently: for changes that take access away or hand it out,
/// so a stolen idle administrator session cannot make them.
pub struct RecentAdmin(pub SignedIn);

impl FromRequestParts<AppState> for RecentAdmin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Admin(me) = Admin::from_request_parts(parts, state).await?;
        if !me.is_recent(state) {
            return Err(reauth_redirect(
                &page_of(&parts.method, parts.uri.path()),
                true,
            ));
        }
        Ok(RecentAdmin(me))
    }
}

/// What a form post requires of the signed-in user beyond the session: see [`Checked`].
pub trait Requirement: Send + Sync + 'static {
    /// Only administrators (others get 403 before anything else is looked at).
    const ADMIN: bool;
    fn met(me: &SignedIn, state: &AppState) -> bool;
}

impl Requirement for Recent {
    const ADMIN: bool = false;
    fn met(me: &SignedIn, state: &AppState) -> bool {
        me.is_recent(state)
    }
}

impl Requirement for FreshSecondStep {
    const ADMIN: bool = false;
    fn met(me: &SignedIn, state: &AppState) -> bool {
        me.has_fresh_second_factor(state)
    }
}

impl Requirement for RecentAdmin {
    const ADMIN: bool = true;
    fn met(me: &SignedIn, state: &AppState) -> bool {
        me.is_recent(state)
    }
}

/// A CSRF-checked form from a signed-in user who meets `R` (`Checked<Recent>`,
/// `Checked<FreshSecondStep>`, `Checked<RecentAdmin>`). The checks run in the order these
/// pages always had: the session (else sign in), administrators only (else 403), the form's
/// CSRF token (else 403), and only then `R` (else sign in again and come back to the form's
/// page): a forged post from a stale session is refused as forged, and takes nobody to a
/// sign-in page.
pub struct Checked<R> {
    pub me: SignedIn,
    pub form: super::CsrfForm,
    _requirement: std::marker::PhantomData<R>,
}

impl<R: Requirement> axum::extract::FromRequest<AppState> for Checked<R> {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let me = if R::ADMIN {
            Admin::from_request_parts(&mut parts, state).await?.0
        } else {
            SignedIn::from_request_parts(&mut parts, state).await?
        };
        let back = page_of(&parts.method, parts.uri.path());
        let req = axum::extract::Request::from_parts(parts, body);
        let form = super::CsrfForm::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        if !R::met(&me, state) {
            return Err(reauth_redirect(&back, true));
        }
        Ok(Checked {
            me,
            form,
            _requirement: std::marker::PhantomData,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_come_back_to_the_page_they_are_on() {
        let post = Method::POST;
        assert_eq!(
            page_of(&Method::GET, "/security-info/add"),
            "/security-info/add"
        );
        assert_eq!(
            page_of(&post, "/security-info/methods/4/delete"),
            "/security-info"
        );
        assert_eq!(
            page_of(&post, "/security-info/devices/ab/remove"),
            "/security-info"
        );
        assert_eq!(
            page_of(&post, "/security-info/add/totp"),
            "/security-info/add/totp"
        );
        assert_eq!(
            page_of(&post, "/admin/users/b%2Fob/block"),
            "/admin/users/b%2Fob"
        );
        assert_eq!(
            page_of(&post, "/admin/users/bob/devices/x/remove"),
            "/admin/users/bob"
        );
        assert_eq!(page_of(&post, "/admin/users"), "/admin/users");
        assert_eq!(
            page_of(&post, "/admin/groups/pilot/members/bob/remove"),
            "/admin/groups/pilot"
        );
        assert_eq!(page_of(&post, "/admin/policy"), "/admin/policy");
    }
}
