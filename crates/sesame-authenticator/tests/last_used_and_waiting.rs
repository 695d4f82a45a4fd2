//! What a person sees after approving (or failing to approve) in the app, end to end with the
//! real `sesame-authenticator` binary and a real server (issue 14): the notification method's
//! "Last used" follows approved sign-ins, and the phone sign-in waiting page learns at once
//! that 10 wrong PINs turned phone sign-in off.

mod common;

use common::*;
use sesame_core::method::MethodKind;
use sesame_testkit::{Browser, TestServer};
use std::path::Path;
use std::time::{Duration, Instant};

const PIN: &str = "482913";
const WRONG_PIN: &str = "111222";
const TURNED_OFF: &str =
    "Phone sign-in was turned off after too many wrong PINs. Use your password instead.";

fn now(srv: &TestServer) -> i64 {
    sesame_core::Clock::now(&*srv.clock)
}

async fn alice(srv: &TestServer) -> sesame_store::User {
    srv.store
        .find_user_by_username(srv.state.default_tenant, "alice")
        .await
        .unwrap()
        .unwrap()
}

/// The `last_used_at` of Alice's notification method, as `sesame user show` and the console
/// read it.
async fn push_last_used(srv: &TestServer) -> Option<i64> {
    let methods = srv.store.list_methods(alice(srv).await.id).await.unwrap();
    let push: Vec<_> = methods
        .iter()
        .filter(|m| m.kind == MethodKind::Push)
        .collect();
    assert_eq!(push.len(), 1, "{methods:?}");
    push[0].last_used_at
}

/// The text of the table row that names the notification method (My security info and the
/// console both have one).
fn push_row(body: &str) -> String {
    let at = body
        .find("<td>Authenticator app (notification)")
        .unwrap_or_else(|| panic!("no notification row in {body}"));
    let end = at + body[at..].find("</tr>").unwrap();
    body[at..end].to_string()
}

async fn with_pin(vault: &Path, pin: &str, args: &[&str]) -> std::process::Output {
    app_env(vault, args, &[("SESAME_AUTHENTICATOR_PIN", pin)]).await
}

/// Answers the one waiting request with `number`, unlocking the app with `pin`.
async fn approve(vault: &Path, number: &str, pin: &str) -> std::process::Output {
    let list = pending(vault).await;
    let req = list[0]["request"].as_str().unwrap().to_string();
    with_pin(
        vault,
        pin,
        &["respond", &req, "--number", number, "--approve"],
    )
    .await
}

/// Password, then the notification approved in the app: a signed-in browser.
async fn password_and_notification(srv: &TestServer, vault: &Path) -> Browser {
    let mut b = srv.browser();
    let p = b.password_step("alice", "correct horse").await;
    assert_eq!(p.location(), Some("/login/verify"), "{}", p.body);
    let number = element_text(&b.follow(p).await.body, "push-number");
    ok(&approve(vault, &number, PIN).await);
    let done = b.post("/login/push/complete", &[]).await;
    assert_eq!(done.location(), Some("/account"), "{}", done.body);
    b
}

/// Turns phone sign-in on as a person does: PIN, the app asks, Alice confirms on My security
/// info after signing in with her password and the app.
async fn enable_phone_sign_in(srv: &TestServer, vault: &Path) {
    ok(&with_pin(vault, PIN, &["pin", "set"]).await);
    ok(&with_pin(
        vault,
        PIN,
        &["phone-sign-in", "enable", "alice", "--no-wait"],
    )
    .await);
    let mut b = password_and_notification(srv, vault).await;
    let d = srv.store.list_devices(alice(srv).await.id).await.unwrap()[0].clone();
    let p = b
        .post(
            &format!("/security-info/devices/{}/confirm-phone-sign-in", d.id),
            &[],
        )
        .await;
    assert_eq!(p.location(), Some("/security-info?done=phone_sign_in_on"));
}

/// Username only: the browser on the phone sign-in waiting page, and the number it shows.
async fn phone_sign_in_page(srv: &TestServer) -> (Browser, String) {
    let mut b = srv.browser();
    b.get("/login").await;
    let p = b.post("/login", &[("username", "alice")]).await;
    assert_eq!(p.location(), Some("/login/app"), "{}", p.body);
    let page = b.follow(p).await;
    (b, element_text(&page.body, "push-number"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_notification_is_the_last_use_of_the_push_method() {
    let (srv, _dir, vault) = setup().await;
    assert_eq!(push_last_used(&srv).await, None);

    let mut b = password_and_notification(&srv, &vault).await;
    // Stored (what `sesame user show` and the console print) ...
    let first = now(&srv);
    assert_eq!(push_last_used(&srv).await, Some(first));
    // ... and shown on My security info.
    let row = push_row(&b.get("/security-info").await.body);
    assert!(
        row.contains(&format!(
            "data-label=\"Last used\">{}",
            sesame_server::web::fmt_time(first)
        )),
        "{row}"
    );
    assert!(!row.contains("Not used yet"), "{row}");

    // The console shows the same.
    srv.create_admin("root", Some("correct horse")).await;
    let mut admin = srv.browser();
    assert_eq!(
        admin
            .password_step("root", "correct horse")
            .await
            .location(),
        Some("/account")
    );
    let page = admin.get("/admin/users/alice").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let row = push_row(&page.body);
    assert!(row.contains("data-label=\"Last used\">2"), "{row}");
    assert!(!row.contains("Not used yet"), "{row}");

    // A phone sign-in is approved in the same app, with the same device: its notification
    // method was used again. (Later, within the app's allowed clock skew.)
    enable_phone_sign_in(&srv, &vault).await;
    srv.clock.set(real_now() + 90);
    let (mut b, number) = phone_sign_in_page(&srv).await;
    ok(&approve(&vault, &number, PIN).await);
    let done = b.post("/login/push/complete", &[]).await;
    assert_eq!(done.location(), Some("/account"), "{}", done.body);
    assert_eq!(push_last_used(&srv).await, Some(now(&srv)));
    assert!(now(&srv) > first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_waiting_page_learns_at_once_that_ten_wrong_pins_turned_phone_sign_in_off() {
    let (srv, _dir, vault) = setup().await;
    enable_phone_sign_in(&srv, &vault).await;
    let (mut b, number) = phone_sign_in_page(&srv).await;
    for _ in 1..10 {
        err(&approve(&vault, &number, WRONG_PIN).await);
    }
    // The page's poll is waiting when the tenth wrong PIN turns phone sign-in off.
    let mut poller = b.clone();
    let poll = tokio::spawn(async move {
        let started = Instant::now();
        let page = poller.get("/login/push/status").await;
        (started.elapsed(), page)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let e = err(&approve(&vault, &number, WRONG_PIN).await);
    assert!(e.contains("after 10 wrong PINs"), "{e}");
    let (waited, page) = poll.await.unwrap();
    let status: serde_json::Value = serde_json::from_str(&page.body).unwrap();
    assert_eq!(status["state"], "phone_sign_in_off", "{status}");
    assert_eq!(status["message"], TURNED_OFF);
    // Woken, not answered at the end of the long poll (25 s).
    assert!(waited < Duration::from_secs(10), "{waited:?}");

    // A new poll answers the same at once; the page (the script reloads it) says so, without
    // the number, and offers the password.
    let again: serde_json::Value =
        serde_json::from_str(&b.get("/login/push/status").await.body).unwrap();
    assert_eq!(again["state"], "phone_sign_in_off");
    let page = b.get("/login/app").await;
    assert!(page.body.contains(TURNED_OFF), "{}", page.body);
    assert!(!page.body.contains("push-number"), "{}", page.body);
    assert!(!page.body.contains("Send another request"), "{}", page.body);
    assert!(page.body.contains("Use your password instead"));
    assert_eq!(
        b.post("/login/password-instead", &[]).await.location(),
        Some("/login/password")
    );
    assert!(!b.has_session());
}
