//! Security regression tests for "My security info" (SECURITY.md: a fresh second factor to
//! remove a method; the enrolment code is single use; a phone sign-in request shows its
//! random code), driven through the real HTTP server.
//! Each test is named after the property it guards.

use sesame_core::secret::SecretBytes;
use sesame_core::totp::{code_for_step, secret_from_base32, step_at};
use sesame_core::{Clock, UserId};
use sesame_store::{AuditEvent, AuditFilter, AuditResult};
use sesame_testkit::{Browser, Page, TestServer};

const PASSWORD: &str = "correct horse";
const FORM: &str = "application/x-www-form-urlencoded";

fn secret() -> SecretBytes {
    SecretBytes::new(b"0123456789abcdefghij".to_vec())
}

fn now(srv: &TestServer) -> i64 {
    Clock::now(&*srv.clock)
}

/// A password-only user, signed in (the session has `pwd` but no second step).
async fn password_only_session(srv: &TestServer, name: &str) -> (UserId, Browser) {
    let u = srv.create_user(name, Some(PASSWORD)).await;
    let mut b = srv.browser();
    let p = b.password_step(name, PASSWORD).await;
    assert_eq!(p.location(), Some("/account"), "{}", p.body);
    (u.id, b)
}

/// Signs in with password and a code for the step `offset` steps from now.
async fn sign_in_with_code(
    srv: &TestServer,
    name: &str,
    secret: &SecretBytes,
    offset: i64,
) -> Browser {
    let mut b = srv.browser();
    let p = b.password_step(name, PASSWORD).await;
    assert_eq!(p.location(), Some("/login/verify"), "{}", p.body);
    b.follow(p).await;
    let code = code_for_step(secret, step_at(now(srv)) + offset);
    let p = b.post("/login/verify", &[("code", &code)]).await;
    assert_eq!(p.location(), Some("/account"), "{}", p.body);
    b
}

/// A user with a TOTP method, signed in with password and code.
async fn mfa_session(srv: &TestServer, name: &str) -> (UserId, Browser) {
    let u = srv.create_user(name, Some(PASSWORD)).await;
    srv.add_totp(u.id, &secret()).await;
    (u.id, sign_in_with_code(srv, name, &secret(), 0).await)
}

/// The set-up page of the authenticator app: enrolment id, secret and CSRF token.
struct Setup {
    enrollment: String,
    secret: SecretBytes,
    csrf: String,
}

async fn open_setup(b: &mut Browser) -> Setup {
    let page = b.get("/security-info/add/totp").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let marker = "id=\"totp-secret\">";
    let start = page.body.find(marker).expect("secret shown") + marker.len();
    let end = page.body[start..].find('<').unwrap() + start;
    Setup {
        enrollment: page.hidden("enrollment").expect("enrollment field"),
        secret: secret_from_base32(&page.body[start..end]).expect("base32 secret"),
        csrf: page.csrf().expect("csrf"),
    }
}

fn form(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        s.append_pair(k, v);
    }
    s.finish().into_bytes()
}

/// Confirms an enrolment. Its future is `Send`, so it can run on spawned tasks.
async fn confirm(b: &mut Browser, setup_csrf: &str, enrollment: &str, code: &str) -> Page {
    let body = form(&[
        ("csrf", setup_csrf),
        ("enrollment", enrollment),
        ("code", code),
    ]);
    b.post_raw("/security-info/add/totp", FORM, body).await
}

async fn delete(b: &mut Browser, method: sesame_core::MethodId) -> Page {
    b.get("/security-info").await;
    b.post(&format!("/security-info/methods/{method}/delete"), &[])
        .await
}

async fn events(srv: &TestServer, user: UserId, event: &str) -> Vec<AuditEvent> {
    srv.store
        .list_audit(&AuditFilter {
            user: Some(user),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event == event)
        .collect()
}

/// A redirect to sign in again, coming back to `next` afterwards.
fn assert_reauth(p: &Page, next: &str) {
    assert_eq!(p.status, 303, "{}", p.body);
    let loc = p.location().unwrap();
    let query = loc
        .strip_prefix("/login?")
        .unwrap_or_else(|| panic!("{loc}"));
    let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    assert!(params.contains(&("reauth".into(), "1".into())), "{loc}");
    assert!(params.contains(&("next".into(), next.into())), "{loc}");
}

#[tokio::test]
async fn security_info_needs_a_session() {
    let srv = TestServer::spawn().await;
    let mut b = srv.browser();
    for path in [
        "/security-info",
        "/security-info/add",
        "/security-info/add/totp",
    ] {
        let p = b.get(path).await;
        assert_eq!(p.status, 303, "{path}");
        assert!(p.location().unwrap().starts_with("/login?next="), "{path}");
    }
    b.get("/login").await;
    let p = b
        .post(
            "/security-info/add/totp",
            &[("enrollment", "x"), ("code", "123456")],
        )
        .await;
    assert_eq!(p.status, 303);
    assert!(p.location().unwrap().starts_with("/login"));
}

#[tokio::test]
async fn adding_totp_requires_a_recent_sign_in() {
    let srv = TestServer::spawn().await;
    let (user, mut b) = password_only_session(&srv, "alice").await;
    // Recent: the set-up page opens.
    let setup = open_setup(&mut b).await;

    srv.clock.advance(601);
    assert_reauth(&b.get("/security-info/add").await, "/security-info/add");
    assert_reauth(
        &b.get("/security-info/add/totp").await,
        "/security-info/add/totp",
    );
    // A set-up opened while the sign-in was recent cannot be finished once it no longer is.
    let code = srv.code(&setup.secret);
    let p = confirm(&mut b, &setup.csrf, &setup.enrollment, &code).await;
    assert_reauth(&p, "/security-info/add/totp");
    assert!(srv.store.list_methods(user).await.unwrap().is_empty());
    // The session itself still works: only the sensitive step asks again.
    assert_eq!(b.get("/security-info").await.status, 200);

    // Signing in again through the re-authentication link leads back to the set-up.
    let reauth = b.get("/security-info/add/totp").await;
    let login = b.get(reauth.location().unwrap()).await;
    assert!(login.body.contains("sign in again"), "{}", login.body);
    // The form carries where to go back to, as a browser would submit it.
    let next = login.hidden("next").expect("next kept in the form");
    assert_eq!(next, "/security-info/add/totp");
    let p = b
        .post("/login", &[("username", "alice"), ("next", &next)])
        .await;
    b.follow(p).await;
    let p = b.post("/login/password", &[("password", PASSWORD)]).await;
    assert_eq!(p.location(), Some("/security-info/add/totp"));
    let setup = open_setup(&mut b).await;
    let p = confirm(
        &mut b,
        &setup.csrf,
        &setup.enrollment,
        &srv.code(&setup.secret),
    )
    .await;
    assert_eq!(
        p.location(),
        Some("/security-info?done=added"),
        "{}",
        p.body
    );
    assert_eq!(srv.store.list_methods(user).await.unwrap().len(), 1);
}

#[tokio::test]
async fn enrolment_confirmation_cannot_be_replayed() {
    let srv = TestServer::spawn().await;
    let (user, mut b) = password_only_session(&srv, "alice").await;
    let setup = open_setup(&mut b).await;
    let code = srv.code(&setup.secret);
    let p = confirm(&mut b, &setup.csrf, &setup.enrollment, &code).await;
    assert_eq!(
        p.location(),
        Some("/security-info?done=added"),
        "{}",
        p.body
    );

    // The same confirmation again, and again with the next code: nothing new.
    let p = confirm(&mut b, &setup.csrf, &setup.enrollment, &code).await;
    assert_eq!(p.status, 400, "{}", p.body);
    assert!(p.body.contains("expired"), "{}", p.body);
    let next = code_for_step(&setup.secret, step_at(now(&srv)) + 1);
    let p = confirm(&mut b, &setup.csrf, &setup.enrollment, &next).await;
    assert_eq!(p.status, 400, "{}", p.body);
    assert_eq!(srv.store.list_methods(user).await.unwrap().len(), 1);
    assert_eq!(events(&srv, user, "method_added").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_enrolment_confirmations_create_one_method() {
    let srv = TestServer::spawn().await;
    let (user, mut b) = password_only_session(&srv, "alice").await;
    let setup = open_setup(&mut b).await;
    let code = srv.code(&setup.secret);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let mut b = b.clone();
        let (csrf, enrollment, code) = (setup.csrf.clone(), setup.enrollment.clone(), code.clone());
        tasks.spawn(async move { confirm(&mut b, &csrf, &enrollment, &code).await.status });
    }
    let statuses = tasks.join_all().await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 303).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 303 || *s == 400),
        "{statuses:?}"
    );
    assert_eq!(srv.store.list_methods(user).await.unwrap().len(), 1);
    assert_eq!(events(&srv, user, "method_added").await.len(), 1);
}

#[tokio::test]
async fn another_users_enrolment_cannot_be_confirmed() {
    let srv = TestServer::spawn().await;
    let (alice, mut a) = password_only_session(&srv, "alice").await;
    let (bob, mut b) = password_only_session(&srv, "bob").await;
    let bobs = open_setup(&mut b).await;
    let alices = open_setup(&mut a).await;
    // Alice submits Bob's enrolment with Bob's right code.
    let p = confirm(
        &mut a,
        &alices.csrf,
        &bobs.enrollment,
        &srv.code(&bobs.secret),
    )
    .await;
    assert_eq!(p.status, 400, "{}", p.body);
    assert!(srv.store.list_methods(alice).await.unwrap().is_empty());
    assert!(srv.store.list_methods(bob).await.unwrap().is_empty());
    // Bob's own enrolment is untouched and still works.
    let p = confirm(
        &mut b,
        &bobs.csrf,
        &bobs.enrollment,
        &srv.code(&bobs.secret),
    )
    .await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(srv.store.list_methods(bob).await.unwrap().len(), 1);
}

#[tokio::test]
async fn enrolment_needs_a_right_code() {
    let srv = TestServer::spawn().await;
    let (user, mut b) = password_only_session(&srv, "alice").await;
    let setup = open_setup(&mut b).await;
    let two_ahead = code_for_step(&setup.secret, step_at(now(&srv)) + 2);
    for bad in ["", "12345", "１２３４５６", "abcdef", two_ahead.as_str()] {
        let p = confirm(&mut b, &setup.csrf, &setup.enrollment, bad).await;
        assert_eq!(p.status, 400, "{bad:?}: {}", p.body);
    }
    assert!(srv.store.list_methods(user).await.unwrap().is_empty());
    // The enrolment survives wrong codes.
    let p = confirm(
        &mut b,
        &setup.csrf,
        &setup.enrollment,
        &srv.code(&setup.secret),
    )
    .await;
    assert_eq!(p.status, 303, "{}", p.body);
}

#[tokio::test]
async fn removing_a_method_requires_a_recent_second_factor() {
    let srv = TestServer::spawn().await;

    // A session without a second step cannot remove the method it just added.
    let (user, mut b) = password_only_session(&srv, "alice").await;
    let setup = open_setup(&mut b).await;
    let p = confirm(
        &mut b,
        &setup.csrf,
        &setup.enrollment,
        &srv.code(&setup.secret),
    )
    .await;
    assert_eq!(p.status, 303, "{}", p.body);
    let method = srv.store.list_methods(user).await.unwrap()[0].id;
    let p = delete(&mut b, method).await;
    assert_reauth(&p, "/security-info");
    assert_eq!(srv.store.list_methods(user).await.unwrap().len(), 1);

    // A second step that is no longer recent is not enough either.
    let mut b = sign_in_with_code(&srv, "alice", &setup.secret, 1).await;
    srv.clock.advance(601);
    let p = delete(&mut b, method).await;
    assert_reauth(&p, "/security-info");
    assert_eq!(srv.store.list_methods(user).await.unwrap().len(), 1);
    assert!(events(&srv, user, "method_removed").await.is_empty());

    // A fresh second step is.
    let mut b = sign_in_with_code(&srv, "alice", &setup.secret, 0).await;
    let p = delete(&mut b, method).await;
    assert_eq!(
        p.location(),
        Some("/security-info?done=deleted"),
        "{}",
        p.body
    );
    assert!(srv.store.list_methods(user).await.unwrap().is_empty());
    let user_row = srv.store.find_user(user).await.unwrap().unwrap();
    assert_eq!(user_row.default_method, None);
}

#[tokio::test]
async fn another_users_method_cannot_be_deleted() {
    let srv = TestServer::spawn().await;
    let (_alice, mut a) = mfa_session(&srv, "alice").await;
    let bob = srv.create_user("bob", Some(PASSWORD)).await;
    let bobs = srv.add_totp(bob.id, &secret()).await;

    let p = delete(&mut a, bobs.id).await;
    assert_eq!(p.status, 404, "{}", p.body);
    let p = delete(&mut a, sesame_core::MethodId(bobs.id.0 + 1000)).await;
    assert_eq!(p.status, 404, "{}", p.body);
    let p = a
        .post("/security-info/methods/not-a-number/delete", &[])
        .await;
    assert!((400..500).contains(&p.status), "{}: {}", p.status, p.body);

    assert_eq!(srv.store.list_methods(bob.id).await.unwrap().len(), 1);
    let bob_row = srv.store.find_user(bob.id).await.unwrap().unwrap();
    assert_eq!(bob_row.default_method, Some(bobs.id));
    assert!(events(&srv, bob.id, "method_removed").await.is_empty());
}

#[tokio::test]
async fn default_method_cannot_point_at_another_users_method() {
    let srv = TestServer::spawn().await;
    let (alice, mut a) = mfa_session(&srv, "alice").await;
    let alices = srv.store.list_methods(alice).await.unwrap()[0].id;
    let bob = srv.create_user("bob", Some(PASSWORD)).await;
    let bobs = srv.add_totp(bob.id, &secret()).await;

    a.get("/security-info/default").await;
    let p = a
        .post(
            "/security-info/default",
            &[("method", &bobs.id.to_string())],
        )
        .await;
    assert_eq!(p.status, 400, "{}", p.body);
    let row = srv.store.find_user(alice).await.unwrap().unwrap();
    assert_eq!(row.default_method, Some(alices));
}

#[tokio::test]
async fn audit_records_method_added_and_removed() {
    let srv = TestServer::spawn().await;
    let (user, mut b) = password_only_session(&srv, "alice").await;
    let setup = open_setup(&mut b).await;
    let p = confirm(
        &mut b,
        &setup.csrf,
        &setup.enrollment,
        &srv.code(&setup.secret),
    )
    .await;
    assert_eq!(p.status, 303, "{}", p.body);
    let method = srv.store.list_methods(user).await.unwrap()[0].id;

    let mut b = sign_in_with_code(&srv, "alice", &setup.secret, 1).await;
    let p = delete(&mut b, method).await;
    assert_eq!(p.status, 303, "{}", p.body);

    for event in ["method_added", "method_removed"] {
        let found = events(&srv, user, event).await;
        assert_eq!(found.len(), 1, "{event}");
        let e = &found[0];
        assert_eq!(e.result, AuditResult::Success, "{event}");
        assert_eq!(
            e.method.as_ref().map(|m| m.as_str()),
            Some("totp"),
            "{event}"
        );
        assert_eq!(e.username, "alice");
        assert_eq!(e.ip, "127.0.0.1");
    }
}

async fn is_signed_in(b: &mut Browser) -> bool {
    b.get("/account").await.status == 200
}

async fn change(b: &mut Browser, current: &str, new: &str, confirm: &str) -> Page {
    b.post(
        "/security-info/password",
        &[("current", current), ("new", new), ("confirm", confirm)],
    )
    .await
}

/// Changing one's own password needs the current one (counted like a sign-in), refuses a bad
/// new one, ends every other session and keeps this one.
#[tokio::test]
async fn changing_the_password_ends_the_other_sessions_and_keeps_this_one() {
    let srv = TestServer::spawn().await;
    let (_, mut here) = password_only_session(&srv, "alice").await;
    let mut elsewhere = srv.browser();
    elsewhere.password_step("alice", PASSWORD).await;
    assert!(is_signed_in(&mut elsewhere).await);
    let page = here.get("/security-info").await;
    assert!(
        page.body.contains("/security-info/password"),
        "{}",
        page.body
    );
    here.get("/security-info/password").await;
    let p = change(&mut here, "wrong", "new password 1", "new password 1").await;
    assert_eq!(p.status, 401, "{}", p.body);
    assert!(p.body.contains("current password is incorrect"));
    let p = change(&mut here, PASSWORD, "new password 1", "other").await;
    assert_eq!(p.status, 400);
    assert!(p.body.contains("do not match"));
    let p = change(&mut here, PASSWORD, "short", "short").await;
    assert_eq!(p.status, 400);
    assert!(p.body.contains("at least 8 characters"), "{}", p.body);
    // Nothing changed so far: the other session lives.
    assert!(is_signed_in(&mut elsewhere).await);
    let p = change(&mut here, PASSWORD, "new password 1", "new password 1").await;
    assert_eq!(p.location(), Some("/security-info?done=password_changed"));
    assert!(is_signed_in(&mut here).await, "this session stays");
    assert!(!is_signed_in(&mut elsewhere).await, "the other one ended");
    assert_eq!(
        srv.browser().password_step("alice", PASSWORD).await.status,
        401
    );
    assert_eq!(
        srv.browser()
            .password_step("alice", "new password 1")
            .await
            .location(),
        Some("/account")
    );
    let log = srv.store.list_audit(&AuditFilter::default()).await.unwrap();
    let changes: Vec<&AuditEvent> = log
        .iter()
        .filter(|e| e.event == "password_changed")
        .collect();
    assert_eq!(
        changes.len(),
        2,
        "the wrong current password and the change"
    );
    assert!(changes.iter().any(|e| e.result == AuditResult::Success
        && e.reason.as_deref() == Some("ended 1 other session(s)")));
}

/// The current password on this page is guessed no faster than at sign-in: a stolen session
/// is not a way around the counters.
#[tokio::test]
async fn the_current_password_is_counted_like_a_sign_in() {
    let srv = TestServer::spawn().await;
    let (_, mut b) = password_only_session(&srv, "alice").await;
    b.get("/security-info/password").await;
    let mut last = None;
    for i in 0..6 {
        let guess = format!("guess {i}");
        let p = b
            .post(
                "/security-info/password",
                &[
                    ("current", guess.as_str()),
                    ("new", "new password 1"),
                    ("confirm", "new password 1"),
                ],
            )
            .await;
        last = Some(p);
    }
    let p = last.unwrap();
    assert_eq!(p.status, 429, "{}", p.body);
    assert!(p.body.contains("Too many wrong passwords"));
}

/// A fresh confirmation code, as the server makes one for each phone sign-in request.
fn new_code() -> String {
    sesame_server::service::devices::confirmation_code(&mut rand::rngs::OsRng)
}

/// A registered app of `user` with a PIN key that asked to turn phone sign-in on: what the
/// device API stores for `sesame-authenticator phone-sign-in enable`, with the request's
/// `code`.
async fn app_asking_for_phone_sign_in(
    srv: &TestServer,
    user: UserId,
    name: &str,
    code: &str,
) -> sesame_store::Device {
    let tenant = srv.store.default_tenant().await.unwrap();
    let activation = format!("code-{name}").into_bytes();
    srv.store
        .create_activation(user, &activation, now(srv) + 600)
        .await
        .unwrap();
    srv.store
        .consume_activation(&activation, now(srv))
        .await
        .unwrap();
    let new = sesame_store::NewDevice {
        tenant,
        user,
        name: name.into(),
        alg: "ES256".into(),
        public_key: format!("device-key-{name}").into_bytes(),
    };
    let d = srv
        .store
        .create_device(new, &activation, &SecretBytes::new(vec![7; 20]), now(srv))
        .await
        .unwrap();
    let pin_key = format!("pin-key-{name}").into_bytes();
    assert!(srv
        .store
        .set_pin_key(d.row_id, &pin_key, None)
        .await
        .unwrap());
    srv.store
        .request_phone_sign_in(d.row_id, now(srv), code)
        .await
        .unwrap();
    d
}

/// The row of the devices table that names `device`.
fn device_row<'a>(body: &'a str, device: &str) -> &'a str {
    let table = &body[body.find("id=\"devices\"").expect("a devices table")..];
    table
        .split("<tr>")
        .find(|row| row.contains(&format!("<td>{device}</td>")))
        .unwrap_or_else(|| panic!("no row for {device} in {body}"))
}

/// Someone with a copy of the device key could ask for phone sign-in too: beside the
/// confirmation, the page shows the random code of the request it would confirm, for the
/// person to compare with the one their app printed. A new request shows its new code, each
/// device its own; only the owner sees it, and only while the request waits.
#[tokio::test]
async fn a_phone_sign_in_request_shows_its_code() {
    let srv = TestServer::spawn().await;
    let (user, mut b) = mfa_session(&srv, "alice").await;
    let first = new_code();
    let phone = app_asking_for_phone_sign_in(&srv, user, "phone", &first).await;

    let page = b.get("/security-info").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let row = device_row(&page.body, "phone");
    assert!(row.contains("Turn on phone sign-in"), "{row}");
    assert!(
        row.contains(&format!("Confirm only if your app shows code {first}")),
        "{row}"
    );

    // The app asks again: the new request's code replaces the first on the page.
    let second = new_code();
    assert_ne!(second, first);
    srv.store
        .request_phone_sign_in(phone.row_id, now(&srv), &second)
        .await
        .unwrap();
    let page = b.get("/security-info").await;
    let row = device_row(&page.body, "phone");
    assert!(
        row.contains(&format!("Confirm only if your app shows code {second}")),
        "{row}"
    );
    assert!(!row.contains(&first), "{row}");

    // Another device's request shows its own code, in its own row.
    let tablet = new_code();
    assert_ne!(tablet, second);
    app_asking_for_phone_sign_in(&srv, user, "tablet", &tablet).await;
    let page = b.get("/security-info").await;
    assert!(device_row(&page.body, "tablet").contains(&tablet));
    assert!(!device_row(&page.body, "phone").contains(&tablet));
    assert!(device_row(&page.body, "phone").contains(&second));

    // The administrator's view of the same devices: no confirmation, so no code.
    srv.create_admin("root", Some(PASSWORD)).await;
    let mut admin = srv.browser();
    admin.password_step("root", PASSWORD).await;
    let page = admin.get("/admin/users/alice").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(!page.body.contains("shows code"), "{}", page.body);
    assert!(!page.body.contains(&second), "{}", page.body);
    assert!(!page.body.contains(&tablet), "{}", page.body);

    // Once the requests are past their 10 minutes there is nothing to confirm, nor to compare.
    srv.clock.advance(601);
    let page = b.get("/security-info").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(!page.body.contains("shows code"), "{}", page.body);
    assert!(!page.body.contains(&second), "{}", page.body);
}
