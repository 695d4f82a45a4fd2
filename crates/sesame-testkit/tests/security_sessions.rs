//! Security regression tests for the sign-in flow and sessions (SECURITY.md, "Sign-in flow and
//! sessions"), driven through the real HTTP server. Each test is named after the property it
//! guards.

use sesame_core::secret::SecretBytes;
use sesame_core::UserId;
use sesame_server::ServerConfig;
use sesame_store::{AuditEvent, AuditFilter, AuditResult};
use sesame_testkit::{Browser, Page, TestServer, START};

const PASSWORD: &str = "correct horse";
const SESSION: &str = "__Host-sesame-session";
const SIGNIN: &str = "__Host-sesame-signin";
const CSRF: &str = "__Host-sesame-csrf";
const FORM: &str = "application/x-www-form-urlencoded";

fn secret() -> SecretBytes {
    SecretBytes::new(b"0123456789abcdefghij".to_vec())
}

async fn user_with_totp(srv: &TestServer, name: &str) -> UserId {
    let u = srv.create_user(name, Some(PASSWORD)).await;
    srv.add_totp(u.id, &secret()).await;
    u.id
}

/// A browser at the code step of a fresh sign-in.
async fn at_code_step(srv: &TestServer, name: &str) -> Browser {
    let mut b = srv.browser();
    let p = b.password_step(name, PASSWORD).await;
    assert_eq!(p.location(), Some("/login/verify"), "{}", p.body);
    b.follow(p).await;
    b
}

/// A browser signed in with password and code.
async fn signed_in(srv: &TestServer, name: &str) -> Browser {
    let mut b = at_code_step(srv, name).await;
    let p = b
        .post("/login/verify", &[("code", &srv.code(&secret()))])
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert!(b.has_session());
    b
}

/// A browser that carries only the given session cookie.
fn with_session_cookie(srv: &TestServer, token: &str) -> Browser {
    let mut b = srv.browser();
    b.cookies.insert(SESSION.into(), token.into());
    b
}

async fn is_signed_in(b: &mut Browser) -> bool {
    let p = b.get("/account").await;
    match p.status {
        200 => {
            assert!(p.body.contains("My account"), "{}", p.body);
            true
        }
        303 => {
            let loc = p.location().unwrap_or("");
            assert!(loc.starts_with("/login"), "{loc}");
            false
        }
        s => panic!("unexpected status {s}: {}", p.body),
    }
}

fn form(fields: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        s.append_pair(k, v);
    }
    s.finish()
}

/// A POST as a forger would send it: the body as given, extra headers, and the browser's
/// cookies minus `drop_cookie`. Does not change the browser.
async fn forged_post(
    b: &Browser,
    path: &str,
    body: String,
    headers: &[(&str, &str)],
    drop_cookie: Option<&str>,
) -> Page {
    let cookie = b
        .cookies
        .iter()
        .filter(|(k, _)| Some(k.as_str()) != drop_cookie)
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("sesame-testkit")
        .build()
        .unwrap();
    let mut req = client
        .post(format!("{}{path}", b.base))
        .header("cookie", cookie)
        .header("content-type", FORM)
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("POST");
    Page {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        body: resp.text().await.unwrap_or_default(),
    }
}

async fn audit(srv: &TestServer, user: Option<UserId>) -> Vec<AuditEvent> {
    srv.store
        .list_audit(&AuditFilter {
            user,
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
}

fn session_cookie_header(p: &Page) -> Option<String> {
    p.set_cookies()
        .into_iter()
        .find(|c| c.starts_with(&format!("{SESSION}=")) && !c.contains("Max-Age=0"))
}

// ---- A half-finished sign-in is never a session ----

#[tokio::test]
async fn partial_sign_in_is_not_a_session() {
    let srv = TestServer::spawn().await;
    user_with_totp(&srv, "alice").await;
    let mut b = at_code_step(&srv, "alice").await;
    assert!(!b.has_session());
    let p = b.get("/account").await;
    assert_eq!(p.status, 303);
    assert_eq!(p.location(), Some("/login?next=%2Faccount"));
    let p = b.get("/security-info").await;
    assert_eq!(p.status, 303);
    assert!(p.location().unwrap().starts_with("/login"));
    assert_eq!(b.get("/").await.location(), Some("/login"));

    // The transaction token is not a session token, even under the session cookie's name.
    let signin = b.cookies.get(SIGNIN).expect("transaction cookie").clone();
    let mut crafted = with_session_cookie(&srv, &signin);
    assert!(!is_signed_in(&mut crafted).await);
}

#[tokio::test]
async fn crafted_verify_post_without_a_transaction_creates_no_session() {
    let srv = TestServer::spawn().await;
    let user = user_with_totp(&srv, "alice").await;
    let mut b = srv.browser();
    b.get("/login").await;
    let p = b
        .post("/login/verify", &[("code", &srv.code(&secret()))])
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert!(p.location().unwrap().starts_with("/login"));
    assert!(!b.has_session());
    let p = b.post("/login/methods", &[("method", "totp")]).await;
    assert!(p.location().unwrap().starts_with("/login"));
    assert!(!b.has_session());
    assert!(!is_signed_in(&mut b).await);
    assert!(audit(&srv, Some(user))
        .await
        .iter()
        .all(|e| e.result != AuditResult::Success));
}

#[tokio::test]
async fn crafted_post_never_skips_the_password_step() {
    let srv = TestServer::spawn().await;
    user_with_totp(&srv, "alice").await;
    let code = srv.code(&secret());
    let mut b = srv.browser();
    b.get("/login").await;
    let p = b.post("/login", &[("username", "alice")]).await;
    assert_eq!(p.location(), Some("/login/password"));
    b.follow(p).await;

    // Identified state: the code step and the method choice are not reachable.
    let p = b.post("/login/verify", &[("code", &code)]).await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(p.location(), Some("/login/password"));
    assert!(!b.has_session());
    let p = b.post("/login/methods", &[("method", "totp")]).await;
    assert_eq!(p.location(), Some("/login/password"));
    assert!(!b.has_session());
    // An empty password is a wrong password.
    let p = b.post("/login/password", &[]).await;
    assert_eq!(p.status, 401, "{}", p.body);
    assert!(!b.has_session());
    assert!(!is_signed_in(&mut b).await);

    // The code was not spent by the crafted post: the real flow accepts it.
    let p = b.post("/login/password", &[("password", PASSWORD)]).await;
    assert_eq!(p.location(), Some("/login/verify"));
    let replay = b.clone();
    let p = b.post("/login/verify", &[("code", &code)]).await;
    assert_eq!(p.location(), Some("/account"), "{}", p.body);
    assert!(b.has_session());

    // The finished transaction cannot mint a second session.
    let mut replay = replay;
    let next = sesame_core::totp::code_for_step(&secret(), sesame_core::totp::step_at(START) + 1);
    let p = replay.post("/login/verify", &[("code", &next)]).await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert!(p.location().unwrap().starts_with("/login"));
    assert!(!replay.has_session());
}

#[tokio::test]
async fn unknown_user_gets_no_further_than_a_wrong_password() {
    let srv = TestServer::spawn().await;
    let mut b = srv.browser();
    b.get("/login").await;
    let p = b.post("/login", &[("username", "nobody")]).await;
    assert_eq!(p.location(), Some("/login/password"));
    b.follow(p).await;
    let p = b.post("/login/verify", &[("code", "123456")]).await;
    assert_eq!(p.location(), Some("/login/password"));
    let p = b.post("/login/password", &[("password", "")]).await;
    assert_eq!(p.status, 401);
    assert!(!b.has_session());
}

// ---- No enumeration ----

/// The page with the CSRF token and the typed username taken out.
fn normalised(p: &Page, username: &str) -> String {
    let mut body = p.body.clone();
    if let Some(t) = p.csrf() {
        body = body.replace(&t, "CSRF");
    }
    body.replace(username, "USERNAME")
}

#[tokio::test]
async fn unknown_user_and_wrong_password_look_the_same() {
    let srv = TestServer::spawn().await;
    srv.create_user("alice", Some(PASSWORD)).await;
    let u = srv.create_user("bob", Some(PASSWORD)).await;
    srv.add_totp(u.id, &secret()).await;

    let mut pages = Vec::new();
    for name in ["alice", "bob", "mallory"] {
        let mut b = srv.browser();
        b.get("/login").await;
        let step1 = b.post("/login", &[("username", name)]).await;
        let page = b.follow(step1.clone()).await;
        let wrong = b.post("/login/password", &[("password", "wrong")]).await;
        assert!(!b.has_session());
        pages.push((name, step1, page, wrong));
    }
    let (first_name, first_step, first_page, first_wrong) = &pages[0];
    for (name, step1, page, wrong) in &pages[1..] {
        assert_eq!(step1.status, first_step.status, "{name}");
        assert_eq!(step1.location(), first_step.location(), "{name}");
        assert_eq!(page.status, first_page.status, "{name}");
        assert_eq!(
            normalised(page, name),
            normalised(first_page, first_name),
            "{name}: password page"
        );
        assert_eq!(wrong.status, 401, "{name}");
        assert_eq!(wrong.status, first_wrong.status, "{name}");
        assert_eq!(
            normalised(wrong, name),
            normalised(first_wrong, first_name),
            "{name}: wrong-password page"
        );
    }
    assert!(first_wrong
        .body
        .contains("Your account or password is incorrect"));
}

// ---- The session cookie ----

#[tokio::test]
async fn session_cookie_is_host_prefixed_secure_httponly_lax_and_random() {
    let srv = TestServer::spawn().await;
    user_with_totp(&srv, "alice").await;
    let mut tokens = Vec::new();
    for i in 0..3 {
        let mut b = at_code_step(&srv, "alice").await;
        let code =
            sesame_core::totp::code_for_step(&secret(), sesame_core::totp::step_at(START) - 1 + i);
        let p = b.post("/login/verify", &[("code", &code)]).await;
        assert_eq!(p.status, 303, "{}", p.body);
        let header = session_cookie_header(&p).expect("session cookie set");
        let attrs: Vec<&str> = header.split(';').map(str::trim).collect();
        for want in ["Path=/", "Secure", "HttpOnly", "SameSite=Lax"] {
            assert!(attrs.contains(&want), "{want} missing: {header}");
        }
        assert!(
            !attrs
                .iter()
                .any(|a| a.to_ascii_lowercase().starts_with("domain")),
            "__Host- cookies carry no Domain: {header}"
        );
        let token = attrs[0].strip_prefix(&format!("{SESSION}=")).unwrap();
        // URL-safe base64: 6 bits a character; at least 64 bits.
        assert!(
            token
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
            "{token}"
        );
        assert!(token.len() * 6 >= 64, "only {} characters", token.len());
        tokens.push(token.to_string());

        // Every other cookie the sign-in sets is a __Host- cookie with the same protections.
        for c in p.set_cookies() {
            assert!(c.starts_with("__Host-"), "{c}");
            assert!(c.contains("; Secure") && c.contains("HttpOnly") && c.contains("Path=/"));
        }
    }
    tokens.sort();
    tokens.dedup();
    assert_eq!(tokens.len(), 3, "every sign-in gets a different session id");
}

#[tokio::test]
async fn session_id_is_replaced_at_sign_in() {
    let srv = TestServer::spawn().await;
    srv.create_user("alice", Some(PASSWORD)).await;

    // A session id planted before sign-in (fixation) is not adopted.
    let planted = "A".repeat(43);
    let mut b = with_session_cookie(&srv, &planted);
    let p = b.password_step("alice", PASSWORD).await;
    assert_eq!(p.location(), Some("/account"));
    let first = b.cookies.get(SESSION).unwrap().clone();
    assert_ne!(first, planted);
    assert!(!is_signed_in(&mut with_session_cookie(&srv, &planted)).await);
    assert!(is_signed_in(&mut b).await);

    // Signing in again in the same browser gives a new id and ends the old session.
    let p = b.password_step("alice", PASSWORD).await;
    assert_eq!(p.location(), Some("/account"));
    let second = b.cookies.get(SESSION).unwrap().clone();
    assert_ne!(first, second);
    assert!(is_signed_in(&mut b).await);
    assert!(!is_signed_in(&mut with_session_cookie(&srv, &first)).await);
}

#[tokio::test]
async fn session_is_gone_after_sign_out() {
    let srv = TestServer::spawn().await;
    srv.create_user("alice", Some(PASSWORD)).await;

    // GET /logout.
    let mut b = srv.browser();
    b.password_step("alice", PASSWORD).await;
    let token = b.cookies.get(SESSION).unwrap().clone();
    assert!(is_signed_in(&mut with_session_cookie(&srv, &token)).await);
    let out = b.get("/logout").await;
    assert_eq!(out.status, 200);
    assert!(out
        .set_cookies()
        .iter()
        .any(|c| c.starts_with(&format!("{SESSION}=;")) && c.contains("Max-Age=0")));
    assert!(!b.has_session());
    assert!(!is_signed_in(&mut b).await);
    assert!(
        !is_signed_in(&mut with_session_cookie(&srv, &token)).await,
        "the old cookie value is refused after sign-out"
    );

    // The "Sign out" form.
    let mut b = srv.browser();
    b.password_step("alice", PASSWORD).await;
    let token = b.cookies.get(SESSION).unwrap().clone();
    b.get("/account").await;
    let out = b.post("/logout", &[]).await;
    assert_eq!(out.status, 200, "{}", out.body);
    assert!(!is_signed_in(&mut with_session_cookie(&srv, &token)).await);

    let events = audit(&srv, None).await;
    assert_eq!(events.iter().filter(|e| e.event == "sign_out").count(), 2);
}

#[tokio::test]
async fn idle_session_expires_after_an_hour() {
    let srv = TestServer::spawn().await;
    srv.create_user("alice", Some(PASSWORD)).await;
    let mut b = srv.browser();
    b.password_step("alice", PASSWORD).await;

    // Activity keeps it alive.
    srv.clock.advance(3000);
    assert!(is_signed_in(&mut b).await);
    srv.clock.advance(3000);
    assert!(is_signed_in(&mut b).await);

    // An hour and a second without activity ends it.
    srv.clock.advance(3601);
    let p = b.get("/account").await;
    assert_eq!(p.status, 303);
    assert_eq!(p.location(), Some("/login?next=%2Faccount"));
}

#[tokio::test]
async fn session_ends_after_24_hours_even_when_active() {
    let srv = TestServer::spawn().await;
    srv.create_user("alice", Some(PASSWORD)).await;
    let mut b = srv.browser();
    b.password_step("alice", PASSWORD).await;
    while sesame_core::Clock::now(&*srv.clock) + 3000 < START + 24 * 3600 {
        srv.clock.advance(3000);
        assert!(is_signed_in(&mut b).await);
    }
    srv.clock.set(START + 24 * 3600 - 1);
    assert!(is_signed_in(&mut b).await);
    srv.clock.set(START + 24 * 3600);
    assert!(!is_signed_in(&mut b).await);
}

// ---- Cross-site request forgery ----

/// What a forger sends: the body, extra headers, and a cookie of the browser's to leave out.
struct Forged {
    body: String,
    headers: Vec<(&'static str, String)>,
    drop_cookie: Option<&'static str>,
}

/// Builds a forged post from the browser's valid token, a valid token of another browser on
/// the same server, and the real form fields.
type Forge = dyn Fn(&str, &str, &[(&str, &str)]) -> Forged;

async fn send_forged(
    b: &Browser,
    path: &str,
    fields: &[(&str, &str)],
    token: &str,
    foreign: &str,
    forge: &Forge,
) -> Page {
    let f = forge(token, foreign, fields);
    let headers: Vec<(&str, &str)> = f.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    forged_post(b, path, f.body, &headers, f.drop_cookie).await
}

/// Sends one forged form post to the username step, the code step, sign-out and method
/// removal, and checks that each is refused with 403 and changes nothing.
async fn forged_posts_are_refused(forge: &Forge) {
    let srv = TestServer::spawn().await;
    let user = user_with_totp(&srv, "alice").await;
    let method = srv.store.list_methods(user).await.unwrap()[0].id;
    let foreign = srv.browser().get("/login").await.csrf().unwrap();
    let mut b = at_code_step(&srv, "alice").await;
    let code = srv.code(&secret());

    let token = b.get("/login/verify").await.csrf().unwrap();
    let p = send_forged(
        &b,
        "/login/verify",
        &[("code", &code)],
        &token,
        &foreign,
        forge,
    )
    .await;
    assert_eq!(p.status, 403, "{}", p.body);
    assert!(p.body.contains("another site"), "{}", p.body);
    assert!(session_cookie_header(&p).is_none());
    assert_eq!(
        srv.store
            .find_failures(user, sesame_core::method::MethodKind::Totp)
            .await
            .unwrap()
            .0,
        0
    );

    // Nothing moved: the same code still completes the sign-in.
    let p = b.post("/login/verify", &[("code", &code)]).await;
    assert_eq!(p.location(), Some("/account"), "{}", p.body);

    let token = b.get("/account").await.csrf().unwrap();
    let p = send_forged(&b, "/logout", &[], &token, &foreign, forge).await;
    assert_eq!(p.status, 403, "{}", p.body);
    assert!(is_signed_in(&mut b).await, "still signed in");

    let path = format!("/security-info/methods/{method}/delete");
    // The token of the page the button is on (the question asked before deleting).
    let token = b.get(&path).await.csrf().unwrap();
    let p = send_forged(&b, &path, &[], &token, &foreign, forge).await;
    assert_eq!(p.status, 403, "{}", p.body);
    assert_eq!(srv.store.list_methods(user).await.unwrap().len(), 1);

    // A fresh username step is refused too and starts no transaction.
    let mut fresh = srv.browser();
    let token = fresh.get("/login").await.csrf().unwrap();
    let p = send_forged(
        &fresh,
        "/login",
        &[("username", "alice")],
        &token,
        &foreign,
        forge,
    )
    .await;
    assert_eq!(p.status, 403, "{}", p.body);
    assert!(!p.set_cookies().iter().any(|c| c.starts_with(SIGNIN)));
}

/// The real fields with `csrf` first.
fn with_token(token: &str, fields: &[(&str, &str)]) -> String {
    let mut all = vec![("csrf", token)];
    all.extend_from_slice(fields);
    form(&all)
}

#[tokio::test]
async fn post_without_csrf_field_is_refused() {
    forged_posts_are_refused(&|_, _, fields| Forged {
        body: form(fields),
        headers: vec![],
        drop_cookie: None,
    })
    .await;
}

#[tokio::test]
async fn post_with_wrong_csrf_token_is_refused() {
    forged_posts_are_refused(&|token, _, fields| {
        // Same length and alphabet as the real token, one character changed.
        let mut wrong = token.as_bytes().to_vec();
        wrong[0] = if wrong[0] == b'A' { b'B' } else { b'A' };
        Forged {
            body: with_token(&String::from_utf8(wrong).unwrap(), fields),
            headers: vec![],
            drop_cookie: None,
        }
    })
    .await;
}

#[tokio::test]
async fn post_with_another_browsers_csrf_token_is_refused() {
    forged_posts_are_refused(&|_, foreign, fields| Forged {
        body: with_token(foreign, fields),
        headers: vec![],
        drop_cookie: None,
    })
    .await;
}

#[tokio::test]
async fn post_without_csrf_cookie_is_refused() {
    forged_posts_are_refused(&|token, _, fields| Forged {
        body: with_token(token, fields),
        headers: vec![],
        drop_cookie: Some(CSRF),
    })
    .await;
}

#[tokio::test]
async fn post_from_another_origin_is_refused() {
    for (header, value) in [
        ("origin", "http://evil.example"),
        ("origin", "null"),
        ("sec-fetch-site", "cross-site"),
    ] {
        forged_posts_are_refused(&move |token, _, fields| Forged {
            body: with_token(token, fields),
            headers: vec![(header, value.to_string())],
            drop_cookie: None,
        })
        .await;
    }
}

#[tokio::test]
async fn post_from_the_same_origin_is_accepted() {
    // The control for the tests above: a correct token with a same-origin Origin works.
    let srv = TestServer::spawn().await;
    srv.create_user("alice", Some(PASSWORD)).await;
    let mut b = srv.browser();
    let token = b.get("/login").await.csrf().unwrap();
    let origin = srv.base.clone();
    let p = forged_post(
        &b,
        "/login",
        form(&[("csrf", &token), ("username", "alice")]),
        &[("origin", &origin), ("sec-fetch-site", "same-origin")],
        None,
    )
    .await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(p.location(), Some("/login/password"));
}

#[tokio::test]
async fn duplicate_form_fields_are_refused() {
    let srv = TestServer::spawn().await;
    let user = user_with_totp(&srv, "alice").await;
    let mut b = at_code_step(&srv, "alice").await;
    let token = b.get("/login/verify").await.csrf().unwrap();
    let code = srv.code(&secret());
    for body in [
        form(&[("csrf", &token), ("code", "000000"), ("code", &code)]),
        form(&[("csrf", &token), ("code", &code), ("code", &code)]),
        form(&[("csrf", &token), ("csrf", &token), ("code", &code)]),
    ] {
        let p = b.post_raw("/login/verify", FORM, body.into_bytes()).await;
        assert_eq!(p.status, 400, "{}", p.body);
        assert!(p.body.contains("sent twice"), "{}", p.body);
        assert!(!b.has_session());
    }
    assert_eq!(
        srv.store
            .find_failures(user, sesame_core::method::MethodKind::Totp)
            .await
            .unwrap()
            .0,
        0
    );

    let mut fresh = srv.browser();
    let token = fresh.get("/login").await.csrf().unwrap();
    let body = form(&[("csrf", &token), ("username", "alice"), ("username", "bob")]);
    let p = fresh.post_raw("/login", FORM, body.into_bytes()).await;
    assert_eq!(p.status, 400, "{}", p.body);
    assert!(!fresh.cookies.contains_key(SIGNIN));

    // Nothing was used up.
    let p = b.post("/login/verify", &[("code", &code)]).await;
    assert_eq!(p.location(), Some("/account"), "{}", p.body);
}

// ---- Redirects ----

#[tokio::test]
async fn next_parameter_cannot_redirect_off_site() {
    let srv = TestServer::spawn().await;
    srv.create_user("alice", Some(PASSWORD)).await;
    for bad in [
        "//evil.example",
        "https://evil.example",
        "http://evil.example/account",
        "/\\evil.example",
        "\\\\evil.example",
        "javascript:alert(1)",
        "/\t/evil.example",
        "evil.example",
    ] {
        // Through the page, as a link would carry it.
        let mut b = srv.browser();
        let enc: String = form_urlencoded::byte_serialize(bad.as_bytes()).collect();
        let page = b.get(&format!("/login?next={enc}")).await;
        assert_eq!(page.status, 200);
        assert!(page.hidden("next").is_none(), "{bad:?} kept in the form");
        let p = b.post("/login", &[("username", "alice")]).await;
        b.follow(p).await;
        let p = b.post("/login/password", &[("password", PASSWORD)]).await;
        assert_eq!(p.location(), Some("/account"), "{bad:?}");

        // Posted directly with the form.
        let mut b = srv.browser();
        b.get("/login").await;
        let p = b
            .post("/login", &[("username", "alice"), ("next", bad)])
            .await;
        assert_eq!(p.location(), Some("/login/password"), "{bad:?}");
        b.follow(p).await;
        let p = b.post("/login/password", &[("password", PASSWORD)]).await;
        assert_eq!(p.location(), Some("/account"), "{bad:?}");
    }

    // A local path is honoured, so the refusals above are about the target.
    let mut b = srv.browser();
    b.get("/login?next=%2Fsecurity-info").await;
    let p = b
        .post(
            "/login",
            &[("username", "alice"), ("next", "/security-info")],
        )
        .await;
    b.follow(p).await;
    let p = b.post("/login/password", &[("password", PASSWORD)]).await;
    assert_eq!(p.location(), Some("/security-info"));
}

// ---- Client address ----

async fn failed_password_with_forwarded_for(srv: &TestServer, forwarded: &str) -> AuditEvent {
    let mut b = srv.browser();
    b.get("/login").await;
    let p = b.post("/login", &[("username", "alice")]).await;
    let token = b.follow(p).await.csrf().unwrap();
    let p = forged_post(
        &b,
        "/login/password",
        form(&[("csrf", &token), ("password", "wrong")]),
        &[("x-forwarded-for", forwarded), ("x-real-ip", forwarded)],
        None,
    )
    .await;
    assert_eq!(p.status, 401, "{}", p.body);
    audit(srv, None)
        .await
        .into_iter()
        .find(|e| e.event == "sign_in" && e.reason.as_deref() == Some("wrong_password"))
        .expect("audit entry")
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    let srv = TestServer::spawn().await;
    srv.create_user("alice", Some(PASSWORD)).await;
    let e = failed_password_with_forwarded_for(&srv, "203.0.113.7").await;
    assert_eq!(e.ip, "127.0.0.1");
}

#[tokio::test]
async fn forwarded_for_from_a_trusted_proxy_is_recorded_and_changes_nothing_else() {
    let srv = TestServer::spawn_with(ServerConfig {
        trusted_proxies: vec!["127.0.0.1".parse().unwrap()],
        ..ServerConfig::default()
    })
    .await;
    let u = srv.create_user("alice", Some(PASSWORD)).await;
    let e = failed_password_with_forwarded_for(&srv, "203.0.113.7").await;
    assert_eq!(e.ip, "203.0.113.7");

    // A loopback address claimed through the proxy does not skip the second step.
    srv.add_totp(u.id, &secret()).await;
    let mut b = srv.browser();
    b.get("/login").await;
    let p = b.post("/login", &[("username", "alice")]).await;
    let token = b.follow(p).await.csrf().unwrap();
    let p = forged_post(
        &b,
        "/login/password",
        form(&[("csrf", &token), ("password", PASSWORD)]),
        &[("x-forwarded-for", "127.0.0.1")],
        None,
    )
    .await;
    assert_eq!(p.location(), Some("/login/verify"));
    assert!(session_cookie_header(&p).is_none());
}

// ---- Blocked users ----

#[tokio::test]
async fn blocked_user_cannot_sign_in_and_loses_sessions() {
    let srv = TestServer::spawn().await;
    let user = user_with_totp(&srv, "alice").await;
    let mut existing = signed_in(&srv, "alice").await;
    let token = existing.cookies.get(SESSION).unwrap().clone();
    let mut half = at_code_step(&srv, "alice").await;

    srv.store
        .block_user(user, sesame_testkit::START)
        .await
        .unwrap();

    // The existing session stops working.
    assert!(!is_signed_in(&mut existing).await);

    // A sign-in in progress cannot be finished, even with the right code.
    let p = half
        .post(
            "/login/verify",
            &[(
                "code",
                &sesame_core::totp::code_for_step(&secret(), sesame_core::totp::step_at(START) + 1),
            )],
        )
        .await;
    assert_eq!(p.status, 403, "{}", p.body);
    assert!(!half.has_session());

    // The right password is refused, and only the right password learns why.
    let mut b = srv.browser();
    let p = b.password_step("alice", PASSWORD).await;
    assert_eq!(p.status, 403, "{}", p.body);
    assert!(p.body.contains("blocked"), "{}", p.body);
    assert!(!b.has_session());
    let mut b = srv.browser();
    let p = b.password_step("alice", "wrong").await;
    assert_eq!(p.status, 401);
    assert!(!p.body.contains("blocked"));

    // Unblocking does not bring the old session back.
    srv.store.unblock_user(user).await.unwrap();
    assert!(!is_signed_in(&mut with_session_cookie(&srv, &token)).await);

    let reasons: Vec<String> = audit(&srv, Some(user))
        .await
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    assert_eq!(
        reasons.iter().filter(|r| *r == "blocked").count(),
        2,
        "{reasons:?}"
    );
}

// ---- Audit log ----

#[tokio::test]
async fn audit_log_records_sign_in_successes_and_failures_with_reasons() {
    let srv = TestServer::spawn().await;
    let alice = user_with_totp(&srv, "alice").await;
    let bob = srv.create_user("bob", Some(PASSWORD)).await.id;

    let mut b = srv.browser();
    b.password_step("mallory", "guess").await;
    let mut b = srv.browser();
    b.password_step("alice", "wrong").await;
    let mut b = at_code_step(&srv, "alice").await;
    b.post("/login/verify", &[("code", "000000")]).await;
    let code = srv.code(&secret());
    b.post("/login/verify", &[("code", &code)]).await;
    assert!(b.has_session());
    let mut b = at_code_step(&srv, "alice").await;
    b.post("/login/verify", &[("code", &code)]).await;
    let mut b = srv.browser();
    b.password_step("bob", PASSWORD).await;
    assert!(b.has_session());

    let all = audit(&srv, None).await;
    let sign_ins: Vec<&AuditEvent> = all.iter().filter(|e| e.event == "sign_in").collect();
    let find = |user: Option<UserId>, result: AuditResult, reason: Option<&str>| {
        sign_ins
            .iter()
            .find(|e| e.user == user && e.result == result && e.reason.as_deref() == reason)
            .copied()
    };
    let unknown = find(None, AuditResult::Failure, Some("unknown_user")).expect("unknown user");
    assert_eq!(unknown.username, "mallory");
    let wrong_pw =
        find(Some(alice), AuditResult::Failure, Some("wrong_password")).expect("wrong password");
    assert_eq!(
        wrong_pw.method.as_ref().map(|m| m.as_str()),
        Some("password")
    );
    assert_eq!(wrong_pw.ip, "127.0.0.1");
    assert_eq!(wrong_pw.user_agent, "sesame-testkit");
    let wrong_code =
        find(Some(alice), AuditResult::Failure, Some("wrong_code")).expect("wrong code");
    assert_eq!(wrong_code.method.as_ref().map(|m| m.as_str()), Some("totp"));
    find(Some(alice), AuditResult::Failure, Some("code_reused")).expect("reused code");
    let ok = find(Some(alice), AuditResult::Success, None).expect("success");
    assert_eq!(ok.method.as_ref().map(|m| m.as_str()), Some("totp"));
    assert_eq!(ok.username, "alice");
    let ok = find(Some(bob), AuditResult::Success, None).expect("password success");
    assert_eq!(ok.method.as_ref().map(|m| m.as_str()), Some("password"));
    assert_eq!(sign_ins.len(), 6, "{sign_ins:?}");
    assert!(sign_ins.iter().all(|e| e.at == START));
}

// ---- Clock moved back ----

#[tokio::test]
async fn expired_session_stays_expired_when_the_clock_moves_back() {
    let srv = TestServer::spawn().await;
    srv.create_user("alice", Some(PASSWORD)).await;
    let mut b = srv.browser();
    b.password_step("alice", PASSWORD).await;
    let token = b.cookies.get(SESSION).unwrap().clone();
    srv.clock.advance(3601);
    assert!(!is_signed_in(&mut b).await, "idle timeout");

    // Someone sets the server clock back (NTP step, VM restore).
    srv.clock.set(START + 10);
    assert!(
        !is_signed_in(&mut with_session_cookie(&srv, &token)).await,
        "a session refused as expired must not come back"
    );
}

#[tokio::test]
async fn expired_sign_in_stays_expired_when_the_clock_moves_back() {
    let srv = TestServer::spawn().await;
    user_with_totp(&srv, "alice").await;
    let mut b = at_code_step(&srv, "alice").await;
    let kept = b.clone();
    srv.clock.advance(601);
    let p = b.get("/login/verify").await;
    assert_eq!(p.location(), Some("/login?expired=1"));
    assert!(
        !b.cookies.contains_key(SIGNIN),
        "the transaction cookie is cleared"
    );

    // A copy of the old transaction cookie, with the clock set back, does not revive it.
    srv.clock.set(START + 10);
    let mut replay = kept;
    let p = replay.get("/login/verify").await;
    assert_ne!(p.status, 200, "{}", p.body);
    let p = replay
        .post("/login/verify", &[("code", &srv.code(&secret()))])
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert!(!replay.has_session());
}

/// The form's CSRF token is judged before how fresh the sign-in is: a forged post from a
/// stale session is refused as forged, and takes nobody to a sign-in page; a genuine one from
/// the same stale session is asked to sign in again and come back to the form's page.
#[tokio::test]
async fn forged_post_from_a_stale_session_is_refused_before_any_reauthentication() {
    let srv = TestServer::spawn().await;
    user_with_totp(&srv, "alice").await;
    let mut b = signed_in(&srv, "alice").await;
    let token = b
        .get("/security-info/methods/1/delete")
        .await
        .csrf()
        .unwrap();
    srv.clock.advance(3_000);
    let p = b
        .post("/security-info/methods/1/delete", &[("csrf", "forged")])
        .await;
    assert_eq!(p.status, 403, "{}", p.body);
    assert!(p.body.contains("another site"), "{}", p.body);
    let p = b
        .post("/security-info/methods/1/delete", &[("csrf", &token)])
        .await;
    assert_eq!(p.status, 303);
    assert_eq!(
        p.location(),
        Some("/login?reauth=1&next=%2Fsecurity%2Dinfo")
    );
}
