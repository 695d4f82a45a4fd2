//! Security regression tests for verification codes (SECURITY.md, "Codes"), driven through the
//! real HTTP server. Each test is named after the property it guards.

use sesame_core::secret::SecretBytes;
use sesame_core::totp::{code_for_step, secret_from_base32, step_at};
use sesame_core::{Clock, UserId};
use sesame_store::{AuditFilter, AuditResult};
use sesame_testkit::{Browser, Page, TestServer, START};

const PASSWORD: &str = "correct horse";
const REUSED: &str = "already been used";
/// The refusal of a wrong code, as HTML-escaped on the page.
const WRONG: &str = "That code didn&#39;t work";

fn secret() -> SecretBytes {
    SecretBytes::new(b"0123456789abcdefghij".to_vec())
}

fn now(srv: &TestServer) -> i64 {
    Clock::now(&*srv.clock)
}

/// The code for the step `offset` steps away from the current one.
fn code_at_offset(srv: &TestServer, secret: &SecretBytes, offset: i64) -> String {
    code_for_step(secret, step_at(now(srv)) + offset)
}

/// `n` distinct six-digit codes that match none of the steps within +-2 of now.
fn wrong_codes(srv: &TestServer, secret: &SecretBytes, n: usize) -> Vec<String> {
    let near: Vec<String> = (-2..=2).map(|o| code_at_offset(srv, secret, o)).collect();
    (0u64..)
        .map(|i| format!("{:06}", (i * 7919 + 13) % 1_000_000))
        .filter(|c| !near.contains(c))
        .take(n)
        .collect()
}

async fn user_with_totp(srv: &TestServer, name: &str) -> UserId {
    let u = srv.create_user(name, Some(PASSWORD)).await;
    srv.add_totp(u.id, &secret()).await;
    u.id
}

/// A browser whose sign-in transaction waits for the second step.
async fn at_code_step(srv: &TestServer, name: &str) -> Browser {
    let mut b = srv.browser();
    let p = b.password_step(name, PASSWORD).await;
    assert_eq!(p.location(), Some("/login/verify"), "{}", p.body);
    let verify = b.follow(p).await;
    assert_eq!(verify.status, 200, "{}", verify.body);
    b
}

async fn submit_code(b: &mut Browser, code: &str) -> Page {
    b.post("/login/verify", &[("code", code)]).await
}

/// A form post with every field given, CSRF token included. Unlike `Browser::post` its future
/// is `Send`, so it can run on spawned tasks.
async fn post_form(b: &mut Browser, path: &str, fields: &[(&str, &str)]) -> Page {
    let body = {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in fields {
            s.append_pair(k, v);
        }
        s.finish().into_bytes()
    };
    b.post_raw(path, "application/x-www-form-urlencoded", body)
        .await
}

/// Username and password on a spawned task; returns the browser and the CSRF token of the
/// code page.
async fn to_code_step_send(mut b: Browser, name: &str) -> (Browser, String) {
    let csrf = b.get("/login").await.csrf().expect("csrf");
    let p = post_form(&mut b, "/login", &[("csrf", &csrf), ("username", name)]).await;
    let page = b.follow(p).await;
    let csrf = page.csrf().expect("csrf");
    let p = post_form(
        &mut b,
        "/login/password",
        &[("csrf", &csrf), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(p.location(), Some("/login/verify"), "{}", p.body);
    let verify = b.follow(p).await;
    let csrf = verify.csrf().expect("csrf");
    (b, csrf)
}

fn assert_signed_in(b: &Browser, p: &Page) {
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(p.location(), Some("/account"));
    assert!(b.has_session());
}

fn assert_refused(b: &Browser, p: &Page, status: u16, text: &str) {
    assert_eq!(p.status, status, "{}", p.body);
    assert!(p.body.contains(text), "expected {text:?} in {}", p.body);
    assert!(!b.has_session(), "a refused code must not create a session");
}

async fn sign_in_successes(srv: &TestServer, user: UserId) -> usize {
    srv.store
        .list_audit(&AuditFilter {
            user: Some(user),
            result: Some(AuditResult::Success),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .iter()
        .filter(|e| e.event == "sign_in")
        .count()
}

#[tokio::test]
async fn totp_code_is_accepted_once() {
    let srv = TestServer::spawn().await;
    user_with_totp(&srv, "alice").await;
    let code = srv.code(&secret());

    let mut first = at_code_step(&srv, "alice").await;
    let ok = submit_code(&mut first, &code).await;
    assert_signed_in(&first, &ok);

    // The same code in a new sign-in, still within its 30 seconds.
    let mut second = at_code_step(&srv, "alice").await;
    let again = submit_code(&mut second, &code).await;
    assert_refused(&second, &again, 401, REUSED);
    // The page stays usable: the transaction is still at the code step.
    assert!(again.body.contains("name=\"code\""), "{}", again.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totp_code_submitted_in_parallel_gives_one_session() {
    let srv = TestServer::spawn().await;
    let user = user_with_totp(&srv, "alice").await;

    // 50 separate sign-in transactions of the same user, all waiting for a code.
    // One after another: more than a few passwords of one account checked at once from
    // browsers it never signed in with are held (they are counted before they are checked).
    let mut browsers = Vec::new();
    for _ in 0..50 {
        browsers.push(to_code_step_send(srv.browser(), "alice").await);
    }
    assert_eq!(browsers.len(), 50);

    let code = srv.code(&secret());
    let mut submit = tokio::task::JoinSet::new();
    for (mut b, csrf) in browsers {
        let code = code.clone();
        submit.spawn(async move {
            let p = post_form(&mut b, "/login/verify", &[("csrf", &csrf), ("code", &code)]).await;
            (p, b.has_session())
        });
    }
    let results = submit.join_all().await;
    let sessions = results.iter().filter(|(_, s)| *s).count();
    let accepted = results.iter().filter(|(p, _)| p.status == 303).count();
    for (p, _) in &results {
        assert!(
            [303, 401, 429].contains(&p.status),
            "unexpected status {}: {}",
            p.status,
            p.body
        );
    }
    assert_eq!(sessions, 1, "exactly one session for one code");
    assert_eq!(accepted, 1);
    assert_eq!(sign_in_successes(&srv, user).await, 1);
}

#[tokio::test]
async fn older_code_after_newer_one_is_refused() {
    let srv = TestServer::spawn().await;
    user_with_totp(&srv, "alice").await;
    let newer = code_at_offset(&srv, &secret(), 1);
    let older = code_at_offset(&srv, &secret(), 0);
    assert_ne!(newer, older);

    let mut b = at_code_step(&srv, "alice").await;
    let ok = submit_code(&mut b, &newer).await;
    assert_signed_in(&b, &ok);

    let mut b = at_code_step(&srv, "alice").await;
    let p = submit_code(&mut b, &older).await;
    assert_refused(&b, &p, 401, REUSED);

    // Also the previous step, one step further back.
    let oldest = code_at_offset(&srv, &secret(), -1);
    let p = submit_code(&mut b, &oldest).await;
    assert_refused(&b, &p, 401, REUSED);
}

#[tokio::test]
async fn codes_two_steps_away_are_refused() {
    let srv = TestServer::spawn().await;
    user_with_totp(&srv, "alice").await;
    let near: Vec<String> = (-1..=1)
        .map(|o| code_at_offset(&srv, &secret(), o))
        .collect();
    let mut b = at_code_step(&srv, "alice").await;
    for offset in [-2, 2, -3, 3] {
        let code = code_at_offset(&srv, &secret(), offset);
        assert!(!near.contains(&code), "fixed secret gives no collision");
        let p = submit_code(&mut b, &code).await;
        assert_refused(&b, &p, 401, WRONG);
    }
    // The adjacent steps are still accepted, so the refusals above were about the window.
    let p = submit_code(&mut b, &code_at_offset(&srv, &secret(), -1)).await;
    assert_signed_in(&b, &p);
}

#[tokio::test]
async fn failed_codes_are_counted_per_user_across_sign_in_transactions() {
    let srv = TestServer::spawn().await;
    let user = user_with_totp(&srv, "alice").await;
    let wrong = wrong_codes(&srv, &secret(), 10);

    // A fresh sign-in transaction for every guess, as the 2024 brute force did.
    for (i, code) in wrong.iter().enumerate() {
        let mut b = at_code_step(&srv, "alice").await;
        let p = submit_code(&mut b, code).await;
        assert_refused(&b, &p, 401, WRONG);
        let (failures, _) = srv
            .store
            .find_failures(user, sesame_core::method::MethodKind::Totp)
            .await
            .unwrap();
        assert_eq!(failures as usize, i + 1);
    }

    // The 11th attempt, even with the right code and a new transaction, is not evaluated.
    let right = srv.code(&secret());
    let mut b = at_code_step(&srv, "alice").await;
    let p = submit_code(&mut b, &right).await;
    assert_refused(&b, &p, 429, "Too many");
    let (failures, _) = srv
        .store
        .find_failures(user, sesame_core::method::MethodKind::Totp)
        .await
        .unwrap();
    assert_eq!(failures, 10, "a refused attempt is not evaluated");

    // Once the lock has passed, one attempt is evaluated again; success clears the count.
    srv.clock.advance(60);
    let p = submit_code(&mut b, &srv.code(&secret())).await;
    assert_signed_in(&b, &p);
    assert_eq!(
        srv.store
            .find_failures(user, sesame_core::method::MethodKind::Totp)
            .await
            .unwrap()
            .0,
        0
    );
}

#[tokio::test]
async fn soft_lock_ends_after_its_time_and_then_doubles() {
    let srv = TestServer::spawn().await;
    let user = user_with_totp(&srv, "alice").await;
    let wrong = wrong_codes(&srv, &secret(), 12);
    let mut b = at_code_step(&srv, "alice").await;
    for code in &wrong[..10] {
        let p = submit_code(&mut b, code).await;
        assert_eq!(p.status, 401, "{}", p.body);
    }
    let p = submit_code(&mut b, &srv.code(&secret())).await;
    assert_refused(&b, &p, 429, "Too many");

    // One second short of the lock: still locked.
    srv.clock.advance(59);
    let p = submit_code(&mut b, &srv.code(&secret())).await;
    assert_refused(&b, &p, 429, "Too many");

    // After 60 s one attempt is evaluated again...
    srv.clock.advance(1);
    let wrong = wrong_codes(&srv, &secret(), 1);
    let p = submit_code(&mut b, &wrong[0]).await;
    assert_refused(&b, &p, 401, WRONG);
    assert_eq!(
        srv.store
            .find_failures(user, sesame_core::method::MethodKind::Totp)
            .await
            .unwrap()
            .0,
        11
    );
    // ...and only one: the next attempt is locked for twice as long.
    let p = submit_code(&mut b, &srv.code(&secret())).await;
    assert_refused(&b, &p, 429, "Try again in 2 minutes");
    srv.clock.advance(60);
    let p = submit_code(&mut b, &srv.code(&secret())).await;
    // One minute left: said in the singular.
    assert_refused(&b, &p, 429, "Try again in 1 minute,");
    srv.clock.advance(60);
    let p = submit_code(&mut b, &srv.code(&secret())).await;
    assert_signed_in(&b, &p);
    assert_eq!(
        srv.store
            .find_failures(user, sesame_core::method::MethodKind::Totp)
            .await
            .unwrap()
            .0,
        0
    );
}

#[tokio::test]
async fn hundred_failures_stop_codes_until_an_administrator_resets() {
    let srv = TestServer::spawn().await;
    let user = user_with_totp(&srv, "alice").await;
    // 99 earlier failures, each long enough after the one before for its lock to have ended.
    let policy = srv.state.config.lockout;
    for i in 0..99i64 {
        let at = START - (100 - i) * 2 * 86_400;
        let gate = srv
            .store
            .reserve_attempt(user, sesame_core::method::MethodKind::Totp, &policy, at)
            .await
            .unwrap();
        assert_eq!(gate, sesame_core::lockout::AttemptGate::Open, "failure {i}");
    }
    // The 100th is evaluated (and wrong)...
    let mut b = at_code_step(&srv, "alice").await;
    let p = submit_code(&mut b, &wrong_codes(&srv, &secret(), 1)[0]).await;
    assert_refused(&b, &p, 401, WRONG);
    assert_eq!(
        srv.store
            .find_failures(user, sesame_core::method::MethodKind::Totp)
            .await
            .unwrap()
            .0,
        100
    );

    // ...and from then on not even the right code, however long one waits.
    for wait in [0, 86_400, 365 * 86_400] {
        srv.clock.advance(wait);
        let mut b = at_code_step(&srv, "alice").await;
        let p = submit_code(&mut b, &srv.code(&secret())).await;
        assert_refused(&b, &p, 429, "Contact your administrator");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_wrong_codes_evaluate_at_most_the_limit() {
    // 500 connections at once from one address is past the per-client connection cap (whose
    // own test is elsewhere): raised here, so that every code reaches the lockout.
    let mut config = sesame_server::ServerConfig::default();
    config.connections.per_client = 1000;
    let srv = TestServer::spawn_with(config).await;
    let user = user_with_totp(&srv, "alice").await;
    // 500 wrong codes spread over 10 sign-in transactions, all sent at once.
    let mut browsers = Vec::new();
    for _ in 0..10 {
        browsers.push(to_code_step_send(srv.browser(), "alice").await);
    }
    let wrong = wrong_codes(&srv, &secret(), 500);
    let mut tasks = tokio::task::JoinSet::new();
    for (i, code) in wrong.into_iter().enumerate() {
        let (mut b, csrf) = browsers[i % browsers.len()].clone();
        tasks.spawn(async move {
            let p = post_form(&mut b, "/login/verify", &[("csrf", &csrf), ("code", &code)]).await;
            (p.status, b.has_session())
        });
    }
    let results = tasks.join_all().await;
    assert_eq!(results.len(), 500);
    assert!(
        results.iter().all(|(_, s)| !s),
        "no session from wrong codes"
    );
    let evaluated = results.iter().filter(|(st, _)| *st == 401).count();
    let locked = results.iter().filter(|(st, _)| *st == 429).count();
    assert_eq!(
        evaluated + locked,
        500,
        "every answer is 401 or 429 (no 5xx): {:?}",
        results.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    assert!(evaluated <= 10, "{evaluated} codes were evaluated");
    let (failures, _) = srv
        .store
        .find_failures(user, sesame_core::method::MethodKind::Totp)
        .await
        .unwrap();
    assert!(failures <= 10, "failure count {failures}");
    assert_eq!(failures as usize, evaluated);
    assert_eq!(sign_in_successes(&srv, user).await, 0);
}

#[tokio::test]
async fn malformed_codes_get_a_clear_4xx_and_never_a_session() {
    let srv = TestServer::spawn().await;
    let user = user_with_totp(&srv, "alice").await;
    let mut b = at_code_step(&srv, "alice").await;
    for bad in [
        "",
        "   ",
        "12345",
        "1234567",
        "１２３４５６",
        "abcdef",
        "12a456",
        "1e5",
        "-12345",
        "123.45",
        "123456\u{0}",
        "0x1E240",
    ] {
        let p = submit_code(&mut b, bad).await;
        assert_eq!(p.status, 400, "{bad:?}: {}", p.body);
        assert!(
            p.body.contains("Enter the code") || p.body.contains("6-digit code"),
            "{bad:?}: {}",
            p.body
        );
        assert!(!b.has_session(), "{bad:?}");
    }
    // Malformed input is refused before it is compared, so it does not count as a guess.
    assert_eq!(
        srv.store
            .find_failures(user, sesame_core::method::MethodKind::Totp)
            .await
            .unwrap()
            .0,
        0
    );

    // Not a form at all, or not UTF-8.
    let p = b
        .post_raw(
            "/login/verify",
            "application/json",
            br#"{"code":123456}"#.to_vec(),
        )
        .await;
    assert_eq!(p.status, 400, "{}", p.body);
    let p = b
        .post_raw(
            "/login/verify",
            "application/x-www-form-urlencoded",
            b"code=\xff\xfe".to_vec(),
        )
        .await;
    assert_eq!(p.status, 400, "{}", p.body);

    // A 10 MB code.
    let csrf = b.get("/login/verify").await.csrf().unwrap();
    let mut body = format!("csrf={csrf}&code=").into_bytes();
    body.resize(body.len() + 10 * 1024 * 1024, b'1');
    let p = b
        .post_raw("/login/verify", "application/x-www-form-urlencoded", body)
        .await;
    assert_eq!(p.status, 413, "{}", p.body);
    assert!(!b.has_session());

    // After all that the transaction still works with the right code.
    let p = submit_code(&mut b, &srv.code(&secret())).await;
    assert_signed_in(&b, &p);
}

#[tokio::test]
async fn enrolment_code_cannot_be_reused_as_first_sign_in_code() {
    let srv = TestServer::spawn().await;
    let user = srv.create_user("alice", Some(PASSWORD)).await;
    let mut b = srv.browser();
    let p = b.password_step("alice", PASSWORD).await;
    assert_eq!(p.location(), Some("/account"), "password-only sign-in");

    let setup = b.get("/security-info/add/totp").await;
    assert_eq!(setup.status, 200, "{}", setup.body);
    let enrollment = setup.hidden("enrollment").expect("enrollment field");
    let shown = text_of_id(&setup.body, "totp-secret").expect("secret shown");
    let secret = secret_from_base32(&shown).expect("base32 secret");
    let code = srv.code(&secret);
    let done = b
        .post(
            "/security-info/add/totp",
            &[("enrollment", &enrollment), ("code", &code)],
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(srv.store.list_methods(user.id).await.unwrap().len(), 1);
    b.get("/logout").await;
    assert!(!b.has_session());

    // Same 30 seconds, same code: refused as already used.
    let p = b.password_step("alice", PASSWORD).await;
    assert_eq!(p.location(), Some("/login/verify"), "{}", p.body);
    b.follow(p).await;
    let p = submit_code(&mut b, &code).await;
    assert_refused(&b, &p, 401, REUSED);

    // The next code works.
    let next = code_at_offset(&srv, &secret, 1);
    let p = submit_code(&mut b, &next).await;
    assert_signed_in(&b, &p);
}

/// The text inside the element with `id`.
fn text_of_id(body: &str, id: &str) -> Option<String> {
    let marker = format!("id=\"{id}\">");
    let start = body.find(&marker)? + marker.len();
    let end = body[start..].find('<')? + start;
    Some(body[start..end].to_string())
}
