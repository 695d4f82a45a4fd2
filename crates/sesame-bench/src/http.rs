//! The browser side of a sign-in: a cookie jar, pages and the fields read from them, and the
//! sign-in steps, each checked the way a person would notice it went wrong.

use std::time::Duration;

pub const CSRF_COOKIE: &str = "__Host-sesame-csrf";
pub const SIGNIN_COOKIE: &str = "__Host-sesame-signin";
pub const SESSION_COOKIE: &str = "__Host-sesame-session";
const FORM: &str = "application/x-www-form-urlencoded";

/// An HTTP client for the sign-in pages: redirects are not followed (each step checks where it
/// leads), idle connections are kept for a minute, Nagle is off.
pub fn client(user_agent: &str, timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(user_agent)
        .timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        .build()
}

/// [`client`] whose connections come from `local` (a loopback address such as 127.0.0.2):
/// another client address, as the server sees it.
pub fn client_from(
    user_agent: &str,
    timeout: Duration,
    local: std::net::IpAddr,
) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(user_agent)
        .timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        .local_address(local)
        .build()
}

/// A failed step: where (`GET /login`, `phone`, ...), the HTTP status if the server answered,
/// and what was wrong. Shown as `stage: detail`.
#[derive(Debug, Clone)]
pub struct Failure {
    pub stage: String,
    pub status: Option<u16>,
    pub detail: String,
}

impl Failure {
    pub fn new(stage: impl Into<String>, status: Option<u16>, detail: impl ToString) -> Self {
        Failure {
            stage: stage.into(),
            status,
            detail: detail.to_string(),
        }
    }

    /// The server answered 503: too busy, try later.
    pub fn busy(&self) -> bool {
        self.status == Some(503)
    }

    /// The same failure under another stage name.
    pub fn at(mut self, stage: &str) -> Self {
        self.stage = stage.to_string();
        self
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.stage, self.detail)
    }
}

impl std::error::Error for Failure {}

/// One HTTP response, read in full.
#[derive(Debug, Clone)]
pub struct Page {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    pub async fn read(resp: reqwest::Response) -> reqwest::Result<Page> {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.text().await?;
        Ok(Page {
            status,
            headers,
            body,
        })
    }

    pub fn location(&self) -> Option<&str> {
        self.headers.get("location").and_then(|v| v.to_str().ok())
    }

    /// The CSRF token of the first form on the page.
    pub fn csrf(&self) -> Option<&str> {
        form_field(&self.body, "csrf")
    }

    /// The failure of `stage` for this unexpected answer: status, location and the start of the
    /// page's heading.
    fn unexpected(&self, stage: String) -> Failure {
        let snippet: String = self
            .body
            .split("<h1>")
            .nth(1)
            .unwrap_or(&self.body)
            .chars()
            .take(200)
            .collect();
        Failure::new(
            stage,
            Some(self.status),
            format!(
                "HTTP {} to {:?}, body {snippet:?}",
                self.status,
                self.location()
            ),
        )
    }
}

/// The value of the form field `name` (`name="NAME" value="..."`) in a page.
pub fn form_field<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = body;
    loop {
        rest = &rest[rest.find("name=\"")? + "name=\"".len()..];
        if let Some(v) = rest
            .strip_prefix(name)
            .and_then(|r| r.strip_prefix("\" value=\""))
        {
            return v.find('"').map(|end| &v[..end]);
        }
    }
}

/// The number on a waiting page: `<div class="number" id="push-number" ...>NN</div>`.
pub fn push_number(body: &str) -> Option<&str> {
    let at = body.find("id=\"push-number\"")?;
    let rest = &body[at..];
    let start = rest.find('>')? + 1;
    let end = rest[start..].find('<')? + start;
    let n = rest[start..end].trim();
    (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())).then_some(n)
}

/// A browser's cookies: what the server set and has not cleared.
#[derive(Debug, Default, Clone)]
pub struct Jar(Vec<(String, String)>);

impl Jar {
    pub fn absorb(&mut self, headers: &reqwest::header::HeaderMap) {
        for v in headers.get_all(reqwest::header::SET_COOKIE) {
            let Ok(v) = v.to_str() else { continue };
            let Some((k, val)) = v.split(';').next().and_then(|p| p.split_once('=')) else {
                continue;
            };
            self.0.retain(|(n, _)| n != k);
            if !v.contains("Max-Age=0") {
                self.0.push((k.to_string(), val.to_string()));
            }
        }
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }

    /// The `Cookie` header value.
    pub fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// A browser signing in: its cookies and the form token, and one method per step. Every step
/// fails with the stage `METHOD PATH` unless the server answers as it does for a person whose
/// sign-in goes through.
pub struct Browser<'a> {
    http: &'a reqwest::Client,
    base: &'a str,
    pub jar: Jar,
    csrf: String,
}

impl<'a> Browser<'a> {
    /// GET /login, as a fresh browser: the CSRF cookie and the form's token.
    pub async fn open(http: &'a reqwest::Client, base: &'a str) -> Result<Self, Failure> {
        let mut b = Browser {
            http,
            base,
            jar: Jar::default(),
            csrf: String::new(),
        };
        let page = b.get("/login").await?;
        let stage = "GET /login";
        if page.status != 200 {
            return Err(page.unexpected(stage.into()));
        }
        if !b.jar.has(CSRF_COOKIE) {
            return Err(Failure::new(stage, Some(200), "no CSRF cookie"));
        }
        b.csrf = page
            .csrf()
            .ok_or_else(|| Failure::new(stage, Some(200), "no CSRF token"))?
            .to_string();
        Ok(b)
    }

    /// POST /login with the username: 303 to `next` (`/login/password`, `/login/app`) and the
    /// sign-in cookie.
    pub async fn username(&mut self, username: &str, next: &str) -> Result<(), Failure> {
        self.post_expect("/login", &[("username", username)], next)
            .await?;
        if !self.jar.has(SIGNIN_COOKIE) {
            return Err(Failure::new("POST /login", Some(303), "no sign-in cookie"));
        }
        Ok(())
    }

    /// POST /login/password: 303 to /login/verify, the second step.
    pub async fn password(&mut self, password: &str) -> Result<(), Failure> {
        self.post_expect(
            "/login/password",
            &[("password", password)],
            "/login/verify",
        )
        .await
    }

    /// POST /login/password with a guess, as an attacker does it again and again on one
    /// sign-in: the status the server answered with (401 checked and wrong, 429 held, 503
    /// busy, 303 right).
    pub async fn guess(&mut self, password: &str) -> Result<u16, Failure> {
        let body = format!(
            "csrf={}&password={}",
            self.csrf,
            form_urlencoded::byte_serialize(password.as_bytes()).collect::<String>()
        );
        let sent = self
            .http
            .post(format!("{}/login/password", self.base))
            .header(reqwest::header::COOKIE, self.jar.header())
            .header(reqwest::header::CONTENT_TYPE, FORM)
            .body(body)
            .send();
        Ok(self
            .answer(sent, || "POST /login/password".into())
            .await?
            .status)
    }

    /// POST /login/verify with a code: 303 to /account with a session.
    pub async fn code(&mut self, code: &str) -> Result<(), Failure> {
        self.post_expect("/login/verify", &[("code", code)], "/account")
            .await?;
        self.session("POST /login/verify")
    }

    /// GET a waiting page (`/login/app`, `/login/verify`): the number the phone must confirm.
    pub async fn number(&mut self, path: &str) -> Result<String, Failure> {
        let page = self.get(path).await?;
        let stage = || format!("GET {path}");
        if page.status != 200 {
            return Err(page.unexpected(stage()));
        }
        if let Some(t) = page.csrf() {
            self.csrf = t.to_string();
        }
        push_number(&page.body)
            .map(str::to_string)
            .ok_or_else(|| Failure::new(stage(), Some(200), "no number on the page"))
    }

    /// GET /login/push/status, as the waiting page's script long-polls it, until the request
    /// is approved (at most `polls` times).
    pub async fn approved(&mut self, polls: usize) -> Result<(), Failure> {
        const STAGE: &str = "GET /login/push/status";
        for _ in 0..polls {
            let page = self.get("/login/push/status").await?;
            if page.status != 200 {
                return Err(page.unexpected(STAGE.into()));
            }
            let v: serde_json::Value =
                serde_json::from_str(&page.body).map_err(|e| Failure::new(STAGE, Some(200), e))?;
            match v["state"].as_str() {
                Some("approved") => return Ok(()),
                Some("pending") => continue,
                s => return Err(Failure::new(STAGE, Some(200), format!("state {s:?}"))),
            }
        }
        Err(Failure::new(
            STAGE,
            Some(200),
            format!("still pending after {polls} polls"),
        ))
    }

    /// POST /login/push/complete: 303 to /account with a session.
    pub async fn complete(&mut self) -> Result<(), Failure> {
        self.post_expect("/login/push/complete", &[], "/account")
            .await?;
        self.session("POST /login/push/complete")
    }

    fn session(&self, stage: &str) -> Result<(), Failure> {
        if self.jar.has(SESSION_COOKIE) {
            Ok(())
        } else {
            Err(Failure::new(stage, Some(303), "no session cookie"))
        }
    }

    async fn get(&mut self, path: &str) -> Result<Page, Failure> {
        let sent = self
            .http
            .get(format!("{}{path}", self.base))
            .header(reqwest::header::COOKIE, self.jar.header())
            .send();
        self.answer(sent, || format!("GET {path}")).await
    }

    /// Posts the form `fields` with the CSRF token; the answer must be 303 to `to`.
    async fn post_expect(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        to: &str,
    ) -> Result<(), Failure> {
        let body = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("csrf", &self.csrf);
            for (k, v) in fields {
                form.append_pair(k, v);
            }
            form.finish()
        };
        let sent = self
            .http
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::COOKIE, self.jar.header())
            .header(reqwest::header::CONTENT_TYPE, FORM)
            .body(body)
            .send();
        let stage = || format!("POST {path}");
        let page = self.answer(sent, stage).await?;
        if page.status != 303 || page.location() != Some(to) {
            return Err(page.unexpected(stage()));
        }
        Ok(())
    }

    /// Reads the answer in full and keeps its cookies.
    async fn answer(
        &mut self,
        sent: impl std::future::Future<Output = reqwest::Result<reqwest::Response>>,
        stage: impl Fn() -> String,
    ) -> Result<Page, Failure> {
        let resp = sent.await.map_err(|e| Failure::new(stage(), None, e))?;
        let page = Page::read(resp)
            .await
            .map_err(|e| Failure::new(stage(), None, e))?;
        self.jar.absorb(&page.headers);
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue, SET_COOKIE};

    #[test]
    fn fields_are_read_by_name() {
        let body = r#"<form><input type="hidden" name="csrfx" value="no"><input type="hidden" name="csrf" value="abc-_1"><input name="next" value="/account"></form>"#;
        assert_eq!(form_field(body, "csrf"), Some("abc-_1"));
        assert_eq!(form_field(body, "next"), Some("/account"));
        assert_eq!(form_field(body, "other"), None);
    }

    #[test]
    fn the_number_is_read_off_the_waiting_page() {
        let body =
            r#"<p>Tap</p><div class="number" id="push-number" aria-live="polite"> 42 </div>"#;
        assert_eq!(push_number(body), Some("42"));
        assert_eq!(push_number(r#"<div id="push-number"></div>"#), None);
        assert_eq!(push_number(r#"<div id="push-number">4x</div>"#), None);
    }

    #[test]
    fn the_jar_keeps_set_cookies_and_drops_cleared_ones() {
        let mut jar = Jar::default();
        let mut h = HeaderMap::new();
        h.append(
            SET_COOKIE,
            HeaderValue::from_static("a=1; Path=/; HttpOnly"),
        );
        h.append(SET_COOKIE, HeaderValue::from_static("b=2; Path=/"));
        jar.absorb(&h);
        assert_eq!(jar.header(), "a=1; b=2");
        let mut h = HeaderMap::new();
        h.append(SET_COOKIE, HeaderValue::from_static("a=; Max-Age=0"));
        h.append(SET_COOKIE, HeaderValue::from_static("b=3"));
        jar.absorb(&h);
        assert!(!jar.has("a"));
        assert_eq!(jar.header(), "b=3");
    }

    #[test]
    fn failures_read_as_stage_and_detail() {
        let f = Failure::new("POST /login", Some(503), "busy");
        assert!(f.busy());
        assert_eq!(f.to_string(), "POST /login: busy");
        assert_eq!(f.at("post_login").stage, "post_login");
    }
}
