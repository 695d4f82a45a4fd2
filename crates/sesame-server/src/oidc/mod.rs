//! The OpenID Connect endpoints: discovery, the key set, authorization (with the consent
//! page), token, UserInfo, RP-initiated logout, revocation (RFC 7009) and introspection
//! (RFC 7662). Parsing and rendering only: what they change is in `service::oidc`.
//!
//! Errors before the redirect URI is known to be the client's are shown to the person as a
//! page (never sent to an unchecked address); after, they go back to the application as
//! `error=...` with its `state` and our `iss` (RFC 9207). The token-side endpoints answer in
//! OAuth's JSON error format, never cached.

use crate::api::OAuthError;
use crate::error::{Error, Kind};
use crate::service::oidc::clients;
use crate::service::oidc::keys::Alg;
use crate::service::oidc::request::{self, AuthRequest};
use crate::service::oidc::{issuer, tokens, SCOPES};
use crate::service::sessions::{self, Session};
use crate::service::Origin;
use crate::web::templates::{ConsentPage, LogoutPage, NoticePage, ReturningPage};
use crate::web::{
    clear_cookie, cookie, page, parse_form, see_other, with_cookies, CsrfForm, CsrfToken,
    SESSION_COOKIE,
};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};
use sesame_core::audit::Event;
use sesame_store::Client;
use std::collections::HashMap;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/oauth/jwks", get(jwks))
        .route("/oauth/authorize", get(authorize).post(authorize))
        .route("/oauth/authorize/continue", get(resume))
        .route("/oauth/consent", post(consent))
        .route("/oauth/token", post(token))
        .route("/oauth/userinfo", get(userinfo).post(userinfo))
        .route("/oauth/logout", get(logout).post(logout))
        .route("/oauth/revoke", post(revoke))
        .route("/oauth/introspect", post(introspect))
}

/// Where a request ended up, for `continue` links: this path with the sealed request.
pub const CONTINUE_PATH: &str = "/oauth/authorize/continue";

/// Longest `state`, `nonce` and `login_hint` accepted (they travel in the sign-in's URL).
const MAX_PARAM: usize = 512;

fn host(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        // Only what a host and port can be: the issuer is built from it when no public URL is
        // configured, and must not carry anything else into a document.
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
}

fn iss(state: &AppState, headers: &HeaderMap) -> String {
    issuer(state.config.public_base_url.as_deref(), host(headers))
}

fn no_store(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

async fn discovery(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let i = iss(&state, &headers);
    let algs: Vec<&str> = Alg::ALL.iter().map(|a| a.as_str()).collect();
    let doc = json!({
        "issuer": i,
        "authorization_endpoint": format!("{i}/oauth/authorize"),
        "token_endpoint": format!("{i}/oauth/token"),
        "userinfo_endpoint": format!("{i}/oauth/userinfo"),
        "jwks_uri": format!("{i}/oauth/jwks"),
        "end_session_endpoint": format!("{i}/oauth/logout"),
        "revocation_endpoint": format!("{i}/oauth/revoke"),
        "introspection_endpoint": format!("{i}/oauth/introspect"),
        "scopes_supported": SCOPES,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
        "userinfo_signing_alg_values_supported": ["none"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "amr", "acr", "azp", "sid", "name", "preferred_username"],
        "acr_values_supported": ["pwd", "mfa"],
        "prompt_values_supported": ["none", "login", "consent"],
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "authorization_response_iss_parameter_supported": true,
    });
    let mut resp = Json(doc).into_response();
    // Cacheable only when the issuer is configured: otherwise it comes from the request's Host.
    let cache = if state.config.public_base_url.is_some() {
        "public, max-age=300"
    } else {
        "no-store"
    };
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    resp
}

async fn jwks(State(state): State<AppState>) -> Result<Response, OAuthError> {
    let now = state.now();
    let keys = state.oidc.keys.current(&*state.store, now).await?;
    let mut resp = Json(keys.jwks(now)).into_response();
    // Short, so that a rotated key is picked up soon (relying parties also refetch on an
    // unknown kid).
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    Ok(resp)
}

/// The parameters of a request: its query, or its form body for POST. A parameter sent twice
/// is refused (RFC 6749 §3.1).
fn params(
    method: &Method,
    query: Option<&str>,
    body: &[u8],
) -> Result<HashMap<String, String>, Error> {
    let raw: &[u8] = if method == Method::POST {
        body
    } else {
        query.unwrap_or("").as_bytes()
    };
    parse_form(raw).map_err(|e| Error::bad_request(e.message.replace("form field", "parameter")))
}

/// The current session of the browser, if any.
async fn session_of(state: &AppState, headers: &HeaderMap) -> Result<Option<Session>, Error> {
    match cookie(headers, SESSION_COOKIE) {
        Some(t) => Ok(sessions::find(state, &t).await?),
        None => Ok(None),
    }
}

/// How the browser goes back to an application.
#[derive(Clone, Copy)]
enum Back<'a> {
    /// A 303: the request came straight from the application.
    Redirect,
    /// A page that navigates on by itself (named for the application): the request is the end
    /// of a form post on Sesame's pages, whose redirects `form-action 'self'` keeps on Sesame
    /// (browsers apply it to every redirect after a form post).
    Page(&'a str),
}

fn go_back(back: Back<'_>, url: &str) -> Response {
    match back {
        Back::Redirect => no_store(see_other(url)),
        Back::Page(app) => match crate::web::templates::render(&ReturningPage { app, url }) {
            Ok(html) => no_store((StatusCode::OK, html).into_response()),
            Err(e) => e.into_response(),
        },
    }
}

/// Sends the person back to the application with an error (RFC 6749 §4.1.2.1).
fn error_to_client(issuer: &str, req: &AuthRequest, error: &str, description: &str) -> Response {
    error_back(Back::Redirect, issuer, req, error, description)
}

fn error_back(
    back: Back<'_>,
    issuer: &str,
    req: &AuthRequest,
    error: &str,
    description: &str,
) -> Response {
    let mut url = url::Url::parse(&req.redirect_uri).expect("registered URIs parse");
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("error", error);
        q.append_pair("error_description", description);
        if let Some(s) = &req.state {
            q.append_pair("state", s);
        }
        q.append_pair("iss", issuer);
    }
    go_back(back, url.as_str())
}

/// An error page for the person: the request cannot be trusted to say where to go back to.
fn refuse(message: String) -> Response {
    Error::bad_request(message).into_response()
}

async fn authorize(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    origin: Origin,
    csrf: CsrfToken,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let p = match params(&method, query.as_deref(), &body) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let issuer = iss(&state, &headers);
    // First the client and the redirect URI, exactly as registered.
    let Some(client_id) = p.get("client_id") else {
        return refuse("The application did not say who it is (client_id is missing).".into());
    };
    let client = match state.store.find_client(client_id).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return refuse(
                "The application is not registered with Sesame (unknown client_id).".into(),
            )
        }
        Err(e) => return Error::from(e).into_response(),
    };
    let Some(redirect_uri) = p.get("redirect_uri") else {
        return refuse(format!(
            "{} did not say where to return to (redirect_uri is missing).",
            client.name
        ));
    };
    if !client.redirect_uris.iter().any(|r| r == redirect_uri) {
        return refuse(format!(
            "{} asked to return to an address that is not registered for it.",
            client.name
        ));
    }
    let mut req = AuthRequest {
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.clone(),
        scope: String::new(),
        state: p.get("state").cloned(),
        nonce: None,
        code_challenge: String::new(),
        login: false,
        consent: false,
        max_age: None,
        login_hint: None,
        mfa: client.require_mfa,
        at: state.now(),
    };
    if req.state.as_ref().is_some_and(|s| s.len() > MAX_PARAM) {
        req.state = None;
        return error_to_client(&issuer, &req, "invalid_request", "state is too long");
    }
    let fail =
        |req: &AuthRequest, e: &str, d: &str| Err(Box::new(error_to_client(&issuer, req, e, d)));
    let checked = (|| -> Result<bool, Box<Response>> {
        if ["request", "request_uri"]
            .iter()
            .any(|k| p.contains_key(*k))
        {
            return fail(
                &req,
                "request_not_supported",
                "request objects are not supported",
            );
        }
        match p.get("response_type").map(String::as_str) {
            Some("code") => {}
            Some(_) => {
                return fail(
                    &req,
                    "unsupported_response_type",
                    "only response_type=code is supported",
                )
            }
            None => return fail(&req, "invalid_request", "response_type is missing"),
        }
        if p.get("response_mode").is_some_and(|m| m != "query") {
            return fail(
                &req,
                "invalid_request",
                "only response_mode=query is supported",
            );
        }
        let asked: Vec<&str> = p
            .get("scope")
            .map(|s| s.split(' ').filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        if !asked.contains(&"openid") {
            return fail(&req, "invalid_scope", "scope must include openid");
        }
        let mut granted: Vec<&str> = Vec::new();
        for s in asked {
            if SCOPES.contains(&s) && !granted.contains(&s) {
                granted.push(s);
            }
        }
        req.scope = granted.join(" ");
        // PKCE S256, always: it binds the code to the one who asked for it.
        match (
            p.get("code_challenge"),
            p.get("code_challenge_method").map(String::as_str),
        ) {
            (None, _) => {
                return fail(
                    &req,
                    "invalid_request",
                    "code_challenge is required (PKCE with S256)",
                )
            }
            (Some(_), Some("plain")) | (Some(_), None) => {
                return fail(
                    &req,
                    "invalid_request",
                    "code_challenge_method must be S256",
                )
            }
            (Some(_), Some(m)) if m != "S256" => {
                return fail(
                    &req,
                    "invalid_request",
                    "code_challenge_method must be S256",
                )
            }
            (Some(c), _) if c.len() != 43 || !tokens::valid_pkce_value(c) => {
                return fail(
                    &req,
                    "invalid_request",
                    "code_challenge is not a S256 challenge",
                )
            }
            (Some(c), _) => req.code_challenge = c.clone(),
        }
        for k in ["nonce", "login_hint"] {
            if p.get(k).is_some_and(|v| v.len() > MAX_PARAM) {
                return fail(&req, "invalid_request", &format!("{k} is too long"));
            }
        }
        req.nonce = p.get("nonce").cloned();
        req.login_hint = p.get("login_hint").cloned();
        if let Some(m) = p.get("max_age") {
            match m.parse::<i64>() {
                Ok(n) if n >= 0 => req.max_age = Some(n),
                _ => {
                    return fail(
                        &req,
                        "invalid_request",
                        "max_age must be a number of seconds",
                    )
                }
            }
        }
        if p.get("acr_values")
            .is_some_and(|v| v.split(' ').any(|a| a == "mfa"))
        {
            req.mfa = true;
        }
        let prompts: Vec<&str> = p
            .get("prompt")
            .map(|s| s.split(' ').filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        let none = prompts.contains(&"none");
        if none && prompts.len() > 1 {
            return fail(
                &req,
                "invalid_request",
                "prompt=none cannot be combined with other values",
            );
        }
        req.login = prompts.contains(&"login");
        req.consent = prompts.contains(&"consent");
        Ok(none)
    })();
    let none = match checked {
        Ok(none) => none,
        Err(resp) => return *resp,
    };
    let session = match session_of(&state, &headers).await {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    decide(
        &state, &csrf, &origin, &issuer, &client, req, session, none, false,
    )
    .await
}

/// What to do with a checked request and the browser's session: sign in first, step up, ask
/// for consent, or send the person back with a code.
#[allow(clippy::too_many_arguments)]
async fn decide(
    state: &AppState,
    csrf: &CsrfToken,
    origin: &Origin,
    issuer: &str,
    client: &Client,
    req: AuthRequest,
    session: Option<Session>,
    none: bool,
    after_form: bool,
) -> Response {
    let back = if after_form {
        Back::Page(&client.name)
    } else {
        Back::Redirect
    };
    let sealed = request::seal(&state.oidc.request_key, &req);
    let resume = format!("{CONTINUE_PATH}?r={sealed}");
    let to_login = |reauth: bool| {
        let mut url = format!(
            "/login?next={}",
            percent_encoding::utf8_percent_encode(&resume, percent_encoding::NON_ALPHANUMERIC)
        );
        if let Some(h) = &req.login_hint {
            url.push_str("&login_hint=");
            url.push_str(
                &percent_encoding::utf8_percent_encode(h, percent_encoding::NON_ALPHANUMERIC)
                    .to_string(),
            );
        }
        if reauth {
            url.push_str("&reauth=1");
        }
        no_store(see_other(&url))
    };
    let Some(session) = session else {
        if none {
            return error_back(back, issuer, &req, "login_required", "nobody is signed in");
        }
        return to_login(false);
    };
    let now = state.now();
    let signed_in_since_asked = session.record.auth_time >= req.at;
    let too_old = req
        .max_age
        .is_some_and(|m| now - session.record.auth_time > m);
    let needs_login = (req.login || too_old) && !signed_in_since_asked;
    let needs_mfa = req.mfa && !session.record.amr.contains(&sesame_core::method::Amr::Mfa);
    if needs_login || needs_mfa {
        if none {
            let e = if needs_mfa {
                "interaction_required"
            } else {
                "login_required"
            };
            return error_back(back, issuer, &req, e, "a new sign-in is needed");
        }
        if needs_mfa && (signed_in_since_asked || !has_methods(state, &session).await) {
            // Signed in again and still one factor: this user has nothing to verify with.
            return notice(
                StatusCode::FORBIDDEN,
                "Two-step verification needed",
                &format!(
                    "{} requires two-step verification. Add a verification method (the Authenticator app) on My security info, then sign in to {} again.",
                    client.name, client.name
                ),
                Some(("/security-info", "Go to My security info")),
            );
        }
        return to_login(true);
    }
    if !client.first_party {
        let agreed = match state
            .store
            .find_consent(session.user.id, &client.client_id)
            .await
        {
            Ok(c) => c,
            Err(e) => return Error::from(e).into_response(),
        };
        let covered = agreed.is_some_and(|a| req.scopes().all(|s| a.split(' ').any(|x| x == s)));
        if !covered || req.consent {
            if none {
                return error_back(
                    back,
                    issuer,
                    &req,
                    "consent_required",
                    "the user has not agreed yet",
                );
            }
            return consent_page(state, csrf, &session, client, &req, &sealed);
        }
    }
    finish(state, origin, issuer, client, &req, &session, back).await
}

async fn has_methods(state: &AppState, session: &Session) -> bool {
    state
        .store
        .list_methods(session.user.id)
        .await
        .map(|m| !m.is_empty())
        .unwrap_or(true)
}

fn notice(status: StatusCode, title: &str, message: &str, link: Option<(&str, &str)>) -> Response {
    match crate::web::templates::render(&NoticePage {
        title,
        message,
        link,
    }) {
        Ok(html) => no_store((status, html).into_response()),
        Err(e) => e.into_response(),
    }
}

/// Sends the person back to the application with a code.
async fn finish(
    state: &AppState,
    origin: &Origin,
    issuer: &str,
    client: &Client,
    req: &AuthRequest,
    session: &Session,
    back: Back<'_>,
) -> Response {
    let code = match tokens::issue_code(state, origin, session, client, req).await {
        Ok(c) => c,
        Err(e) => return error_back(back, issuer, req, "server_error", e.message.as_ref()),
    };
    let mut url = url::Url::parse(&req.redirect_uri).expect("registered URIs parse");
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("code", &code);
        if let Some(s) = &req.state {
            q.append_pair("state", s);
        }
        q.append_pair("iss", issuer);
    }
    go_back(back, url.as_str())
}

/// `/oauth/authorize/continue`: back from the sign-in pages.
async fn resume(
    State(state): State<AppState>,
    headers: HeaderMap,
    origin: Origin,
    csrf: CsrfToken,
    RawQuery(query): RawQuery,
) -> Response {
    let p = match parse_form(query.unwrap_or_default().as_bytes()) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let (req, client) = match waiting_request(&state, p.get("r").map(String::as_str)).await {
        Ok(found) => found,
        Err(resp) => return *resp,
    };
    let session = match session_of(&state, &headers).await {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let issuer = iss(&state, &headers);
    // Reached at the end of the sign-in pages' form posts.
    decide(
        &state, &csrf, &origin, &issuer, &client, req, session, false, true,
    )
    .await
}

/// The sealed authorization request `r` carries, and its application (still registered,
/// with the same redirect URI), or the page that says why not.
async fn waiting_request(
    state: &AppState,
    r: Option<&str>,
) -> Result<(AuthRequest, Client), Box<Response>> {
    let Some(req) = r.and_then(|r| request::open(&state.oidc.request_key, r, state.now())) else {
        return Err(Box::new(notice(
            StatusCode::BAD_REQUEST,
            "This sign-in link has expired",
            "Go back to the application and sign in again.",
            None,
        )));
    };
    match state.store.find_client(&req.client_id).await {
        Ok(Some(c)) if c.redirect_uris.contains(&req.redirect_uri) => Ok((req, c)),
        Ok(_) => Err(Box::new(refuse(
            "The application is no longer registered with Sesame.".into(),
        ))),
        Err(e) => Err(Box::new(Error::from(e).into_response())),
    }
}

fn asks(req: &AuthRequest) -> Vec<&'static str> {
    let mut out = vec!["Sign you in and know who you are"];
    for s in req.scopes() {
        match s {
            "profile" => out.push("See your name and username"),
            "offline_access" => out.push("Keep you signed in when you are not using it"),
            _ => {}
        }
    }
    out
}

fn consent_page(
    _state: &AppState,
    csrf: &CsrfToken,
    session: &Session,
    client: &Client,
    req: &AuthRequest,
    sealed: &str,
) -> Response {
    no_store(page(
        csrf,
        StatusCode::OK,
        &ConsentPage {
            csrf: &csrf.token,
            username: &session.user.username,
            app: &client.name,
            asks: asks(req),
            request: sealed,
        },
    ))
}

/// The answer on the consent page.
async fn consent(
    State(state): State<AppState>,
    headers: HeaderMap,
    origin: Origin,
    csrf: CsrfToken,
    form: CsrfForm,
) -> Response {
    let now = state.now();
    let (req, client) = match waiting_request(&state, form.get("r")).await {
        Ok(found) => found,
        Err(resp) => return *resp,
    };
    let issuer = iss(&state, &headers);
    let session = match session_of(&state, &headers).await {
        Ok(Some(s)) => s,
        Ok(None) => return see_other(&format!("{CONTINUE_PATH}?r={}", form.text("r"))),
        Err(e) => return e.into_response(),
    };
    if form.get("answer") != Some("allow") {
        return error_back(
            Back::Page(&client.name),
            &issuer,
            &req,
            "access_denied",
            "the user did not allow it",
        );
    }
    if let Err(e) = state
        .store
        .save_consent(session.user.id, &client.client_id, &req.scope, now)
        .await
    {
        return Error::from(e).into_response();
    }
    state
        .audit(
            &origin,
            crate::service::Line::of(&session.user, Event::AppConsent)
                .reason(format!("{}: {}", client.name, req.scope)),
        )
        .await;
    // The request as it was (prompt=consent is answered now).
    let req = AuthRequest {
        consent: false,
        ..req
    };
    decide(
        &state,
        &csrf,
        &origin,
        &issuer,
        &client,
        req,
        Some(session),
        false,
        true,
    )
    .await
}

/// The client calling: HTTP Basic (RFC 6749 §2.3.1: each part form-encoded) or
/// `client_id`/`client_secret` in the body, never both.
async fn calling_client(
    state: &AppState,
    headers: &HeaderMap,
    p: &HashMap<String, String>,
) -> Result<std::sync::Arc<Client>, Error> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        });
    let (id, secret) = match basic {
        Some(b) => {
            if p.contains_key("client_secret") {
                return Err(Error::bad_request(
                    "Use one way of client authentication, not two.",
                ));
            }
            let decoded = STANDARD
                .decode(b.trim())
                .ok()
                .and_then(|d| String::from_utf8(d).ok())
                .ok_or_else(invalid_client)?;
            let (id, secret) = decoded.split_once(':').ok_or_else(invalid_client)?;
            let dec = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8()
                    .map(|c| c.into_owned())
                    .map_err(|_| invalid_client())
            };
            let id = dec(id)?;
            if p.get("client_id").is_some_and(|c| *c != id) {
                return Err(Error::bad_request(
                    "client_id does not match the credentials.",
                ));
            }
            (id, Some(dec(secret)?))
        }
        None => {
            let id = p.get("client_id").cloned().ok_or_else(invalid_client)?;
            (id, p.get("client_secret").cloned())
        }
    };
    clients::authenticate(state, &id, secret.as_deref())
        .await?
        .ok_or_else(invalid_client)
}

fn invalid_client() -> Error {
    Error::new(
        Kind::Unauthorized,
        "invalid_client",
        "Client authentication failed.",
    )
}

fn oauth_error(e: Error) -> Response {
    let basic = e.code == "invalid_client";
    let mut resp = OAuthError(e).into_response();
    if basic {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"sesame\""),
        );
    }
    resp
}

fn form_only(headers: &HeaderMap) -> Result<(), Error> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct.split(';').next().is_some_and(|m| {
        m.trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    }) {
        Ok(())
    } else {
        Err(Error::bad_request(
            "Send the parameters as application/x-www-form-urlencoded.",
        ))
    }
}

async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    origin: Origin,
    body: Bytes,
) -> Response {
    let out = async {
        form_only(&headers)?;
        let p = parse_form(&body).map_err(|e| Error::bad_request(e.message))?;
        let client = calling_client(&state, &headers, &p).await?;
        let issuer = iss(&state, &headers);
        let need = |k: &str| {
            p.get(k)
                .map(String::as_str)
                .ok_or_else(|| Error::bad_request(format!("{k} is missing.")))
        };
        match p.get("grant_type").map(String::as_str) {
            Some("authorization_code") => {
                tokens::exchange_code(
                    &state,
                    &origin,
                    &issuer,
                    &client,
                    need("code")?,
                    need("redirect_uri")?,
                    p.get("code_verifier").map(String::as_str),
                )
                .await
            }
            Some("refresh_token") => {
                tokens::refresh(&state, &origin, &issuer, &client, need("refresh_token")?).await
            }
            Some("client_credentials") => {
                tokens::client_credentials(
                    &state,
                    &issuer,
                    &client,
                    p.get("scope").map(String::as_str),
                )
                .await
            }
            Some(_) => Err(Error::new(
                Kind::BadRequest,
                "unsupported_grant_type",
                "That grant type is not supported.",
            )),
            None => Err(Error::bad_request("grant_type is missing.")),
        }
    }
    .await;
    match out {
        Ok(t) => no_store(Json(t).into_response()),
        Err(e) => oauth_error(e),
    }
}

fn bearer_error(code: &str) -> Response {
    let mut resp = (StatusCode::UNAUTHORIZED, Json(json!({ "error": code }))).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("Bearer error=\"{code}\"")) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    no_store(resp)
}

async fn userinfo(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
    else {
        let mut resp = (StatusCode::UNAUTHORIZED, "").into_response();
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return resp;
    };
    let issuer = iss(&state, &headers);
    let access = match tokens::check_access_token(&state, &issuer, token.trim()).await {
        Ok(Some(a)) => a,
        Ok(None) => return bearer_error("invalid_token"),
        Err(e) => return oauth_error(e),
    };
    if !access.claims["scope"]
        .as_str()
        .unwrap_or("")
        .split(' ')
        .any(|s| s == "openid")
    {
        return bearer_error("insufficient_scope");
    }
    match tokens::userinfo(&state, &access).await {
        Ok(Some(v)) => no_store(Json(v).into_response()),
        Ok(None) => bearer_error("invalid_token"),
        Err(e) => oauth_error(e),
    }
}

async fn revoke(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let out = async {
        form_only(&headers)?;
        let p = parse_form(&body).map_err(|e| Error::bad_request(e.message))?;
        let client = calling_client(&state, &headers, &p).await?;
        if client.secret_hash.is_none() {
            return Err(invalid_client());
        }
        let token = p
            .get("token")
            .ok_or_else(|| Error::bad_request("token is missing."))?;
        tokens::revoke(&state, &iss(&state, &headers), &client, token).await
    }
    .await;
    match out {
        Ok(()) => no_store(StatusCode::OK.into_response()),
        Err(e) => oauth_error(e),
    }
}

async fn introspect(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let out = async {
        form_only(&headers)?;
        let p = parse_form(&body).map_err(|e| Error::bad_request(e.message))?;
        let client = calling_client(&state, &headers, &p).await?;
        if client.secret_hash.is_none() {
            return Err(invalid_client());
        }
        let token = p
            .get("token")
            .ok_or_else(|| Error::bad_request("token is missing."))?;
        tokens::introspect(&state, &iss(&state, &headers), token).await
    }
    .await;
    match out {
        Ok(v) => no_store(Json::<Value>(v).into_response()),
        Err(e) => oauth_error(e),
    }
}

/// RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0). With an ID token of ours as
/// `id_token_hint`, the person is signed out at once; without, they confirm on a page (so a
/// link on another site cannot sign them out). The return address must be registered for the
/// application, exactly.
async fn logout(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    origin: Origin,
    csrf: CsrfToken,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let p = match params(&method, query.as_deref(), &body) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let issuer = iss(&state, &headers);
    let now = state.now();
    // Whose logout this is: the hint's audience, else client_id.
    let hinted = match p.get("id_token_hint") {
        Some(t) => {
            let keys = match state.oidc.keys.current(&*state.store, now).await {
                Ok(k) => k,
                Err(e) => return Error::from(e).into_response(),
            };
            match keys.verify(t, &Alg::ALL, "JWT", now) {
                Some(c) if c["iss"] == issuer.as_str() => Some(c),
                _ => {
                    return refuse("The application sent an ID token Sesame did not issue.".into())
                }
            }
        }
        None => None,
    };
    let client_id = hinted
        .as_ref()
        .and_then(|c| c["aud"].as_str().map(str::to_string))
        .or_else(|| p.get("client_id").cloned());
    if let (Some(h), Some(c)) = (&hinted, p.get("client_id")) {
        if h["aud"].as_str() != Some(c.as_str()) {
            return refuse("client_id does not match the ID token.".into());
        }
    }
    let client = match &client_id {
        Some(id) => match state.store.find_client(id).await {
            Ok(Some(c)) => Some(c),
            Ok(None) => return refuse("The application is not registered with Sesame.".into()),
            Err(e) => return Error::from(e).into_response(),
        },
        None => None,
    };
    let back =
        match p.get("post_logout_redirect_uri") {
            Some(uri) => match &client {
                Some(c) if c.post_logout_redirect_uris.iter().any(|r| r == uri) => {
                    let mut url = url::Url::parse(uri).expect("registered URIs parse");
                    if let Some(s) = p.get("state") {
                        url.query_pairs_mut().append_pair("state", s);
                    }
                    Some(url.to_string())
                }
                _ => return refuse(
                    "The application asked to return to an address that is not registered for it."
                        .into(),
                ),
            },
            None => None,
        };
    let confirmed = method == Method::POST && p.get("confirm").map(String::as_str) == Some("yes");
    if confirmed {
        // A posted confirmation comes from our own page: its CSRF token must check out.
        if let Err(e) = CsrfForm::check_fields(&state, &headers, &p) {
            return e.into_response();
        }
    }
    // A hint about someone else than who is signed in here (an old or a leaked token) does
    // not sign anyone out without asking.
    let session = match session_of(&state, &headers).await {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let hint_matches = match (&hinted, &session) {
        (Some(h), Some(s)) => h["sub"].as_str() == Some(s.user.id.0.to_string().as_str()),
        (Some(_), None) => true,
        (None, _) => false,
    };
    if !hint_matches && !confirmed {
        let mut carry: Vec<(&'static str, String)> = Vec::new();
        for k in [
            "client_id",
            "post_logout_redirect_uri",
            "state",
            "id_token_hint",
        ] {
            if let Some(v) = p.get(k) {
                carry.push((k, v.clone()));
            }
        }
        return no_store(page(
            &csrf,
            StatusCode::OK,
            &LogoutPage {
                csrf: &csrf.token,
                app: client.as_ref().map(|c| c.name.as_str()),
                carry,
            },
        ));
    }
    if let Some(t) = cookie(&headers, SESSION_COOKIE) {
        if let Err(e) = sessions::sign_out(&state, &origin, &t).await {
            return Error::from(e).into_response();
        }
    }
    let resp = match back {
        // After our own confirmation form, a page that navigates on (see `Back`).
        Some(url) if confirmed => go_back(
            Back::Page(
                client
                    .as_ref()
                    .map_or("the application", |c| c.name.as_str()),
            ),
            &url,
        ),
        Some(url) => see_other(&url),
        None => notice(
            StatusCode::OK,
            "You signed out",
            "You are signed out of Sesame.",
            Some(("/login", "Sign in again")),
        ),
    };
    no_store(with_cookies(resp, &[clear_cookie(SESSION_COOKIE)]))
}
