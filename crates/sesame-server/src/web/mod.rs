//! The pages people use: sign-in, My account, My security info, first-run set-up and the
//! admin console. Each module is one sub-router; handlers parse the request, call a service
//! and render a template, and never call each other's handlers.
//!
//! This file holds the plumbing every page shares: cookies, CSRF-checked forms, who is asking
//! (`Origin`), redirects and security headers.

pub mod account;
pub mod admin;
pub mod approval;
pub mod confirm;
pub mod extract;
pub mod flow;
pub mod health;
pub mod https;
pub mod security_info;
pub mod setup;
pub mod signin;
pub mod telephony;
pub mod templates;

use crate::error::Error;
use crate::service::Origin;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

/// Every page.
pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(health::routes())
        .merge(signin::routes())
        .merge(approval::routes())
        .merge(account::routes())
        .merge(security_info::routes())
        .merge(setup::routes())
        .merge(admin::routes())
        .merge(telephony::routes())
}

pub const SESSION_COOKIE: &str = "__Host-sesame-session";
pub const SIGNIN_COOKIE: &str = "__Host-sesame-signin";
pub const CSRF_COOKIE: &str = "__Host-sesame-csrf";

/// A service's lower-case error message as a sentence for a page: "That username cannot be
/// used: ...".
pub fn sentence(message: &str) -> String {
    let mut chars = message.chars();
    let mut out: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => return String::new(),
    };
    if !out.ends_with(['.', '?', '!']) {
        out.push('.');
    }
    out
}

/// A 303 redirect (the browser follows with GET).
pub fn see_other(location: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, location.to_string())],
    )
        .into_response()
}

/// Attaches `Set-Cookie` headers to a response.
pub fn with_cookies(mut resp: Response, cookies: &[String]) -> Response {
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

/// A `__Host-` cookie: Secure, HttpOnly, SameSite=Lax, Path=/, no Domain.
pub fn host_cookie(name: &str, value: &str, max_age: Option<i64>) -> String {
    let age = max_age
        .map(|a| format!("; Max-Age={a}"))
        .unwrap_or_default();
    format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Lax{age}")
}

pub fn clear_cookie(name: &str) -> String {
    host_cookie(name, "", Some(0))
}

/// The value of one cookie from the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Accepts only local paths for `next=`: no scheme, no `//host`, no backslash tricks.
pub fn safe_next(next: Option<&str>) -> Option<String> {
    let n = next?;
    let ok = n.starts_with('/')
        && !n.starts_with("//")
        && !n.starts_with("/\\")
        && n.len() <= 4096
        && n.chars().all(|c| c.is_ascii_graphic());
    ok.then(|| n.to_string())
}

impl FromRequestParts<AppState> for Origin {
    type Rejection = std::convert::Infallible;

    /// Who is asking: the peer address (or the client behind a trusted proxy) and the user
    /// agent.
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let ip = client_ip(peer, &parts.headers, &state.config.trusted_proxies);
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .chars()
            .take(300)
            .collect();
        let browsers = cookie(&parts.headers, crate::service::browsers::COOKIE)
            .map(|v| crate::service::browsers::parse(&v))
            .unwrap_or_default();
        Ok(Origin {
            ip: ip.to_string(),
            user_agent,
            browsers,
        })
    }
}

/// `X-Forwarded-For` is believed only when the peer is a trusted proxy, and then only up to the
/// first address (from the right) that is not itself a trusted proxy.
///
/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) count as the IPv4 address, wherever they
/// appear: a dual-stack listener reports an IPv4 proxy that way, and the address is logged and
/// counted for guessing limits, where one client must not get two names.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|t| t.to_canonical() == ip);
    let peer = peer.to_canonical();
    if !is_trusted(peer) {
        return peer;
    }
    let mut ip = peer;
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .map(|hop| hop.to_canonical())
        .collect();
    for hop in hops.into_iter().rev() {
        ip = hop;
        if !is_trusted(hop) {
            break;
        }
    }
    ip
}

/// The CSRF token for the browser's CSRF cookie, and the `Set-Cookie` to send if the browser
/// has none yet. Forms carry the token; [`CsrfForm`] checks it.
pub struct CsrfToken {
    pub token: String,
    pub set_cookie: Option<String>,
}

fn csrf_mac(state: &AppState, cookie_value: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(state.web().csrf_key.expose())
        .expect("HMAC takes any key length");
    mac.update(cookie_value.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

impl FromRequestParts<AppState> for CsrfToken {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match cookie(&parts.headers, CSRF_COOKIE).filter(|v| v.len() >= 32) {
            Some(v) => Ok(CsrfToken {
                token: csrf_mac(state, &v),
                set_cookie: None,
            }),
            None => {
                let v = crate::token::random();
                Ok(CsrfToken {
                    token: csrf_mac(state, &v),
                    set_cookie: Some(host_cookie(CSRF_COOKIE, &v, None)),
                })
            }
        }
    }
}

/// Renders a page that carries forms, setting the CSRF cookie when it is new.
pub fn page(csrf: &CsrfToken, status: StatusCode, t: &impl askama::Template) -> Response {
    let resp = match templates::render(t) {
        Ok(html) => (status, html).into_response(),
        Err(e) => e.into_response(),
    };
    match &csrf.set_cookie {
        Some(c) => with_cookies(resp, std::slice::from_ref(c)),
        None => resp,
    }
}

/// A URL-encoded form whose CSRF token has been checked. Duplicate fields, invalid UTF-8 and
/// other content types are refused with a 400; oversized bodies with a 413.
#[derive(Debug)]
pub struct CsrfForm {
    fields: HashMap<String, String>,
}

impl CsrfForm {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    pub fn text(&self, name: &str) -> &str {
        self.get(name).unwrap_or("")
    }
}

/// Parses a form body, refusing duplicate keys.
pub fn parse_form(body: &[u8]) -> Result<HashMap<String, String>, Error> {
    std::str::from_utf8(body)
        .map_err(|_| Error::bad_request("The form data is not valid UTF-8."))?;
    let mut fields = HashMap::new();
    for (k, v) in form_urlencoded::parse(body) {
        if fields.insert(k.to_string(), v.to_string()).is_some() {
            return Err(Error::bad_request(format!(
                "The form field {k:?} was sent twice."
            )));
        }
    }
    Ok(fields)
}

/// Whether a state-changing request comes from our own pages. Browsers that send
/// `Sec-Fetch-Site` are judged by it alone (it cannot be set by page scripts, and Chromium sends
/// `Origin: null` on form posts from pages with a strict referrer policy); otherwise the
/// `Origin` header, when present, must name this host. The CSRF token is checked as well.
fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return site.as_bytes() == b"same-origin";
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match origin.to_str().ok().and_then(|o| url::Url::parse(o).ok()) {
        Some(u) => {
            let authority = match u.port() {
                Some(p) => format!("{}:{p}", u.host_str().unwrap_or("")),
                None => u.host_str().unwrap_or("").to_string(),
            };
            !host.is_empty() && authority.eq_ignore_ascii_case(host)
        }
        None => false,
    }
}

impl FromRequest<AppState> for CsrfForm {
    type Rejection = Error;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let headers = req.headers().clone();
        let (parts, body) = req.into_parts();
        let https_needed = https::request_needs_https(&parts, &state.config);
        let req = Request::from_parts(parts, body);
        let ctype = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !ctype.starts_with("application/x-www-form-urlencoded") {
            return Err(Error::bad_request("Expected a form submission."));
        }
        let body = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Error::payload_too_large()
            } else {
                Error::bad_request("The form could not be read.")
            }
        })?;
        let fields = parse_form(&body)?;
        check_csrf(state, &headers, &fields, https_needed)?;
        Ok(CsrfForm { fields })
    }
}

impl CsrfForm {
    /// Checks fields already parsed (an endpoint that takes posts from other sites too, and
    /// from our own page with a token).
    pub fn check_fields(
        state: &AppState,
        headers: &HeaderMap,
        fields: &HashMap<String, String>,
    ) -> Result<(), Error> {
        check_csrf(state, headers, fields, false)
    }
}

fn check_csrf(
    state: &AppState,
    headers: &HeaderMap,
    fields: &HashMap<String, String>,
    https_needed: bool,
) -> Result<(), Error> {
    let forbidden = || {
        Error::forbidden("This form has expired or came from another site. Go back, reload the page and try again.")
    };
    if !same_origin(headers) {
        return Err(forbidden());
    }
    let Some(cookie_value) = cookie(headers, CSRF_COOKIE) else {
        // Over plain HTTP at a real name the browser kept no cookie: say why.
        return Err(if https_needed {
            Error::https_required()
        } else {
            forbidden()
        });
    };
    let expected = csrf_mac(state, &cookie_value);
    let given = fields.get("csrf").map(String::as_str).unwrap_or("");
    if !sesame_core::secret::ct_eq(expected.as_bytes(), given.as_bytes()) {
        return Err(forbidden());
    }
    Ok(())
}

/// An error as people see it: a page.
impl IntoResponse for Error {
    fn into_response(self) -> Response {
        self.log();
        let page = templates::ErrorPage {
            title: self.title(),
            message: &self.message,
            https_needed: self.code == crate::error::HTTPS_REQUIRED,
        };
        let resp = match templates::render(&page) {
            Ok(html) => (self.status(), html).into_response(),
            Err(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::response::Html(templates::UNRENDERED),
            )
                .into_response(),
        };
        self.with_retry_after(resp)
    }
}

pub async fn not_found() -> Error {
    Error::not_found()
}

/// Headers every response gets: no framing, no sniffing, no referrer leaks, no caching of pages.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; script-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}

/// The message code the page shows after a device action (My security info and the console
/// show the same messages).
pub fn device_done(action: crate::service::devices::DeviceAction) -> &'static str {
    use crate::service::devices::DeviceAction;
    match action {
        DeviceAction::Remove => "device_removed",
        DeviceAction::TurnOffPhoneSignIn => "phone_sign_in_off",
        DeviceAction::AllowPhoneSignInAgain => "allowed_again",
    }
}

/// A QR code of `text`, as an image URL to put in a page.
pub fn qr_data_uri(text: &str) -> Result<String, Error> {
    use base64::engine::general_purpose::STANDARD;
    let code = qrcode::QrCode::new(text.as_bytes())
        .map_err(|e| Error::internal(format!("QR code: {e}")))?;
    let svg = code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(220, 220)
        .quiet_zone(true)
        .build();
    Ok(format!(
        "data:image/svg+xml;base64,{}",
        STANDARD.encode(svg)
    ))
}

/// Formats a Unix time for people (UTC).
pub fn fmt_time(t: sesame_core::UnixTime) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| d.format(&fmt).ok())
        .unwrap_or_else(|| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_accepts_only_local_paths() {
        for bad in [
            "https://evil.example",
            "//evil.example",
            "/\\evil.example",
            "javascript:alert(1)",
            "evil",
            "/a b",
        ] {
            assert_eq!(safe_next(Some(bad)), None, "{bad}");
        }
        assert_eq!(
            safe_next(Some("/security-info?x=1")).as_deref(),
            Some("/security-info?x=1")
        );
    }

    #[test]
    fn forwarded_for_is_trusted_only_from_proxies() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.9, 10.0.0.2".parse().unwrap());
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let proxy2: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(client_ip(peer, &h, &[]), peer);
        assert_eq!(client_ip(peer, &h, &[peer]), proxy2);
        assert_eq!(
            client_ip(peer, &h, &[peer, proxy2]),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn ipv4_mapped_addresses_are_the_ipv4_address_for_proxies_and_clients() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "::ffff:203.0.113.9, ::ffff:10.0.0.2".parse().unwrap(),
        );
        let proxies = [ip("10.0.0.1"), ip("10.0.0.2")];
        // A v4 proxy as a dual-stack listener reports it.
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.1"), &h, &proxies),
            ip("203.0.113.9")
        );
        // A mapped address in the list matches the plain peer, too.
        assert_eq!(
            client_ip(ip("10.0.0.1"), &h, &[ip("::ffff:10.0.0.1"), ip("10.0.0.2")]),
            ip("203.0.113.9")
        );
        // Without a proxy, the peer itself, in one form.
        assert_eq!(
            client_ip(ip("::ffff:198.51.100.4"), &h, &[]),
            ip("198.51.100.4")
        );
        assert_eq!(client_ip(ip("2001:db8::1"), &h, &[]), ip("2001:db8::1"));
    }

    #[test]
    fn duplicate_form_fields_are_refused() {
        assert!(parse_form(b"a=1&a=2").is_err());
        assert!(parse_form(b"a=1&b=2").is_ok());
        assert!(parse_form(&[0x61, 0x3d, 0xff]).is_err());
    }

    #[test]
    fn chromium_form_posts_with_null_origin_are_same_origin() {
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, HeaderValue::from_static(v));
            }
            m
        };
        let host = ("host", "127.0.0.1:8080");
        // What Chromium sends for a form post from a page with a strict referrer policy.
        assert!(same_origin(&h(&[
            host,
            ("origin", "null"),
            ("sec-fetch-site", "same-origin")
        ])));
        for site in ["same-site", "cross-site", "none"] {
            assert!(
                !same_origin(&h(&[
                    host,
                    ("origin", "http://127.0.0.1:8080"),
                    ("sec-fetch-site", site)
                ])),
                "{site}"
            );
        }
        // Without Fetch Metadata, Origin decides.
        assert!(same_origin(&h(&[
            host,
            ("origin", "http://127.0.0.1:8080")
        ])));
        assert!(!same_origin(&h(&[host, ("origin", "null")])));
        assert!(!same_origin(&h(&[host, ("origin", "http://evil.example")])));
        assert!(
            same_origin(&h(&[host])),
            "non-browser clients without Origin rely on the CSRF token"
        );
    }
}
