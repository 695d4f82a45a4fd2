//! Passwordless phone sign-in end to end: the real `sesame-authenticator` binary against a real
//! server, with the authentication methods policy in the way where it should be.

mod common;

use common::*;
use sesame_server::service::policy::PolicyEdit;
use sesame_testkit::{Browser, TestServer};
use std::path::Path;

const PIN: &str = "482913";

async fn set_policy(srv: &TestServer, edit: PolicyEdit) {
    srv.set_policy(edit).await;
}

trait Now {
    fn clock_now(&self) -> i64;
}

impl Now for TestServer {
    fn clock_now(&self) -> i64 {
        sesame_core::Clock::now(&*self.clock)
    }
}

async fn with_pin(vault: &Path, pin: &str, args: &[&str]) -> std::process::Output {
    app_env(vault, args, &[("SESAME_AUTHENTICATOR_PIN", pin)]).await
}

/// Turns phone sign-in on as a person does: the app asks, then Alice confirms it on My
/// security info after signing in with her password and the app's approval.
async fn enable(srv: &TestServer, vault: &Path) -> String {
    let out = ok(&with_pin(
        vault,
        PIN,
        &["phone-sign-in", "enable", "alice", "--no-wait"],
    )
    .await);
    assert!(out.contains("confirm it on My security info"), "{out}");
    let mut b = srv.browser();
    let p = b.password_step("alice", "correct horse").await;
    assert_eq!(p.location(), Some("/login/verify"), "{}", p.body);
    let number = element_text(&b.follow(p).await.body, "push-number");
    ok(&approve(vault, &number, PIN).await);
    assert_eq!(
        b.post("/login/push/complete", &[]).await.location(),
        Some("/account")
    );
    let page = b.get("/security-info").await;
    assert!(page.body.contains("Turn on phone sign-in"), "{}", page.body);
    let d = device(srv).await;
    let p = b
        .post(
            &format!("/security-info/devices/{}/confirm-phone-sign-in", d.id),
            &[],
        )
        .await;
    assert_eq!(p.location(), Some("/security-info?done=phone_sign_in_on"));
    assert!(device(srv).await.phone_sign_in_ready());
    out
}

async fn device(srv: &TestServer) -> sesame_store::Device {
    let alice = srv
        .store
        .find_user_by_username(srv.state.default_tenant, "alice")
        .await
        .unwrap()
        .unwrap();
    srv.store.list_devices(alice.id).await.unwrap().remove(0)
}

/// Username only: returns the browser and the page it lands on (followed).
async fn username(b: &mut Browser, name: &str) -> sesame_testkit::Page {
    b.get("/login").await;
    let p = b.post("/login", &[("username", name)]).await;
    assert_eq!(p.status, 303, "{}", p.body);
    b.follow(p).await
}

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

/// The session a browser holds, as the server stored it.
async fn session_amr(srv: &TestServer, b: &Browser) -> Vec<String> {
    let token = b.cookies.get("__Host-sesame-session").expect("a session");
    let s = srv
        .store
        .find_session(&sesame_server::token::hash(token), srv.clock_now())
        .await
        .unwrap()
        .unwrap();
    s.amr.iter().map(|a| a.as_str().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phone_sign_in_needs_a_pin_first_then_signs_in_with_username_and_phone_only() {
    let (srv, _dir, vault) = setup().await;
    // Refused until an app PIN is set; the app says how.
    let e = err(&app(&vault, &["phone-sign-in", "enable", "alice"]).await);
    assert!(e.contains("pin set"), "{e}");
    assert!(device(&srv).await.pin_key.is_none());
    ok(&with_pin(&vault, PIN, &["pin", "set"]).await);
    // Setting the PIN registered the account's PIN key, but phone sign-in is still off.
    let d = device(&srv).await;
    assert!(d.pin_key.is_some() && d.phone_sign_in_at.is_none());
    // The vault keeps no PIN verifier and not the PIN key's public half.
    enable(&srv, &vault).await;
    assert!(device(&srv).await.phone_sign_in_ready());

    // Username only: the page goes straight to the phone, with the number and a way out.
    let mut b = srv.browser();
    let page = username(&mut b, "alice").await;
    assert!(
        page.body.contains("Approve sign-in request"),
        "{}",
        page.body
    );
    assert!(page.body.contains("Use your password instead"));
    assert!(!page.body.contains("type=\"password\""));
    let number = element_text(&page.body, "push-number");
    let list = pending(&vault).await;
    assert_eq!(list[0]["kind"], "phone sign-in");
    let out = ok(&approve(&vault, &number, PIN).await);
    assert!(out.contains("Approved"), "{out}");
    let done = b.post("/login/push/complete", &[]).await;
    assert_eq!(done.location(), Some("/account"), "{}", done.body);
    // Two-step verification in one: no second prompt, amr says how.
    assert_eq!(session_amr(&srv, &b).await, ["swk", "pin", "mfa"]);
    let log = srv.store.list_audit(&Default::default()).await.unwrap();
    assert!(log.iter().any(|e| e.event == "sign_in"
        && e.method.as_ref().map(|m| m.as_str()) == Some("phone_sign_in")
        && e.result == sesame_store::AuditResult::Success));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_decides_who_may_enable_and_use_phone_sign_in() {
    let (srv, _dir, vault) = setup().await;
    ok(&with_pin(&vault, PIN, &["pin", "set"]).await);
    let tenant = srv.state.default_tenant;
    let now = srv.clock_now();
    let pilot = srv.store.create_group(tenant, "pilot", now).await.unwrap();
    // Phone sign-in only for the pilot group; alice is not in it.
    set_policy(
        &srv,
        PolicyEdit {
            targets: Some("pilot=any".into()),
            ..Default::default()
        },
    )
    .await;
    let e = err(&with_pin(&vault, PIN, &["phone-sign-in", "enable", "alice"]).await);
    assert!(e.contains("does not allow phone sign-in"), "{e}");
    assert!(device(&srv).await.phone_sign_in_at.is_none());
    // In the group: allowed.
    let alice = srv
        .store
        .find_user_by_username(tenant, "alice")
        .await
        .unwrap()
        .unwrap();
    srv.store
        .add_group_member(pilot.id, alice.id)
        .await
        .unwrap();
    enable(&srv, &vault).await;

    // A sign-in in flight when the policy changes to "push" (no phone sign-in) cannot be
    // approved, and the next one does not offer the phone.
    let mut b = srv.browser();
    let page = username(&mut b, "alice").await;
    let number = element_text(&page.body, "push-number");
    set_policy(
        &srv,
        PolicyEdit {
            targets: Some("pilot=push".into()),
            ..Default::default()
        },
    )
    .await;
    let e = err(&approve(&vault, &number, PIN).await);
    assert!(e.contains("does not allow phone sign-in"), "{e}");
    assert_eq!(
        b.post("/login/push/complete", &[]).await.location(),
        Some("/login/app")
    );
    assert!(!b.has_session());
    let mut b2 = srv.browser();
    let page = username(&mut b2, "alice").await;
    assert!(page.body.contains("Enter password"), "{}", page.body);
    // The credential was not deleted: allowed again, it works again at once.
    set_policy(
        &srv,
        PolicyEdit {
            targets: Some("pilot=passwordless".into()),
            ..Default::default()
        },
    )
    .await;
    let mut b3 = srv.browser();
    let page = username(&mut b3, "alice").await;
    let number = element_text(&page.body, "push-number");
    ok(&approve(&vault, &number, PIN).await);
    assert_eq!(
        b3.post("/login/push/complete", &[]).await.location(),
        Some("/account")
    );

    // Approved, then switched off before the page completes: no session.
    let mut b4 = srv.browser();
    let page = username(&mut b4, "alice").await;
    let number = element_text(&page.body, "push-number");
    ok(&approve(&vault, &number, PIN).await);
    set_policy(
        &srv,
        PolicyEdit {
            enabled: Some(false),
            ..Default::default()
        },
    )
    .await;
    let late = b4.post("/login/push/complete", &[]).await;
    assert_eq!(late.status, 403, "{}", late.body);
    assert!(!b4.has_session());
    let log = srv.store.list_audit(&Default::default()).await.unwrap();
    assert!(log.iter().filter(|e| e.event == "policy_changed").count() >= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_attempt_leaves_other_requests_and_a_resend_replaces_its_own() {
    let (srv, _dir, vault) = setup().await;
    ok(&with_pin(&vault, PIN, &["pin", "set"]).await);
    enable(&srv, &vault).await;
    let mut first = srv.browser();
    let page = username(&mut first, "alice").await;
    let first_number = element_text(&page.body, "push-number");
    let first_id = pending(&vault).await[0]["request"]
        .as_str()
        .unwrap()
        .to_string();
    // Another attempt (another tab, another device, or someone who knows the username) is
    // offered the phone too, and its request waits beside the first: a username alone never
    // withdraws anyone's request. The phone lists the newest first.
    let mut second = srv.browser();
    let page = username(&mut second, "alice").await;
    assert!(
        page.body.contains("Approve sign-in request"),
        "{}",
        page.body
    );
    let number = element_text(&page.body, "push-number");
    let list = pending(&vault).await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_ne!(list[0]["request"].as_str().unwrap(), first_id);
    assert_eq!(list[1]["request"].as_str().unwrap(), first_id);
    ok(&approve(&vault, &number, PIN).await);
    assert_eq!(
        second.post("/login/push/complete", &[]).await.location(),
        Some("/account")
    );
    // "Send another request" replaces the sign-in's own request only.
    assert!(first.get("/login/app").await.body.contains(&first_number));
    let resent = first.post("/login/push/resend", &[]).await;
    assert_eq!(resent.location(), Some("/login/app"));
    let list = pending(&vault).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_ne!(list[0]["request"].as_str().unwrap(), first_id);
    let old = err(&with_pin(
        &vault,
        PIN,
        &["respond", &first_id, "--number", &first_number, "--approve"],
    )
    .await);
    assert!(old.contains("no waiting sign-in request"), "{old}");
    let number = element_text(&first.get("/login/app").await.body, "push-number");
    ok(&approve(&vault, &number, PIN).await);
    assert_eq!(
        first.post("/login/push/complete", &[]).await.location(),
        Some("/account")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_wrong_pins_turn_phone_sign_in_off_until_allowed_again() {
    let (srv, _dir, vault) = setup().await;
    ok(&with_pin(&vault, PIN, &["pin", "set"]).await);
    enable(&srv, &vault).await;
    let mut b = srv.browser();
    let page = username(&mut b, "alice").await;
    let number = element_text(&page.body, "push-number");
    // Nine wrong PINs are counted by the server (the app cannot tell); the request stays open.
    for i in 1..10 {
        let e = err(&approve(&vault, &number, "111222").await);
        assert!(
            e.contains(&format!("{} attempt(s) left", 10 - i)),
            "{i}: {e}"
        );
    }
    assert_eq!(device(&srv).await.pin_key_failures, 9);
    let e = err(&approve(&vault, &number, "111222").await);
    assert!(e.contains("after 10 wrong PINs"), "{e}");
    // The right PIN no longer helps; no session was made.
    let e = err(&approve(&vault, &number, PIN).await);
    assert!(e.contains("after 10 wrong PINs"), "{e}");
    assert_eq!(
        b.post("/login/push/complete", &[]).await.location(),
        Some("/login/app")
    );
    assert!(!b.has_session());
    // Next time the page asks for the password; the app shows what to do; the log says why.
    let mut b2 = srv.browser();
    assert!(username(&mut b2, "alice")
        .await
        .body
        .contains("Enter password"));
    let e = err(&with_pin(&vault, PIN, &["phone-sign-in", "enable", "alice"]).await);
    assert!(e.contains("Allow phone sign-in again"), "{e}");
    let log = srv.store.list_audit(&Default::default()).await.unwrap();
    assert!(log.iter().any(|e| e.event == "phone_sign_in_disabled"
        && e.reason.as_deref() == Some("too_many_wrong_pins")));

    // The user signs in with the password (and a code), allows it again on My security info,
    // and the app sets up a new PIN key.
    let secret = {
        let alice = srv
            .store
            .find_user_by_username(srv.state.default_tenant, "alice")
            .await
            .unwrap()
            .unwrap();
        let m = srv.store.list_methods(alice.id).await.unwrap();
        m.into_iter()
            .find(|m| m.kind == sesame_core::method::MethodKind::Totp)
            .unwrap()
            .totp_secret
            .unwrap()
    };
    let mut me = srv.browser();
    let p = me.password_step("alice", "correct horse").await;
    assert_eq!(p.location(), Some("/login/verify"));
    // Push is the default method; switch to the code.
    me.post("/login/methods", &[("method", "totp")]).await;
    let code = srv.code(&secret);
    let done = me.post("/login/verify", &[("code", &code)]).await;
    assert_eq!(done.location(), Some("/account"), "{}", done.body);
    let info = me.get("/security-info").await;
    assert!(
        info.body.contains("Turned off after 10 wrong PINs"),
        "{}",
        info.body
    );
    let d = device(&srv).await;
    let allowed = me
        .post(&format!("/security-info/devices/{}/allow-again", d.id), &[])
        .await;
    assert_eq!(
        allowed.location(),
        Some("/security-info?done=allowed_again")
    );
    enable(&srv, &vault).await;
    let d = device(&srv).await;
    assert!(d.phone_sign_in_ready() && d.pin_key_failures == 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_choice_is_remembered_per_user_and_per_browser() {
    let (srv, _dir, vault) = setup().await;
    ok(&with_pin(&vault, PIN, &["pin", "set"]).await);
    enable(&srv, &vault).await;
    let mut b = srv.browser();
    let page = username(&mut b, "alice").await;
    assert!(page.body.contains("Approve sign-in request"));
    // Another sign-in of the user waits elsewhere.
    let mut elsewhere = srv.browser();
    username(&mut elsewhere, "alice").await;
    assert_eq!(pending(&vault).await.as_array().unwrap().len(), 2);
    // "Use your password instead" always works, and withdraws this sign-in's request only.
    let p = b.post("/login/password-instead", &[]).await;
    assert_eq!(p.location(), Some("/login/password"));
    assert_eq!(pending(&vault).await.as_array().unwrap().len(), 1);
    let page = b.follow(p).await;
    assert!(page.body.contains("Use an app instead"));
    // Remembered by this browser at once: next time the password comes first here...
    let page = username(&mut b, "alice").await;
    assert!(page.body.contains("Enter password"), "{}", page.body);
    // ...but for the user only once a sign-in made that way proves who it is: a sign-in that
    // has only named the user changes nothing of theirs.
    let mut fresh = srv.browser();
    assert!(username(&mut fresh, "alice")
        .await
        .body
        .contains("Approve sign-in request"));
    let p = b
        .post("/login/password", &[("password", "correct horse")])
        .await;
    assert_eq!(p.location(), Some("/login/verify"), "{}", p.body);
    let number = element_text(&b.follow(p).await.body, "push-number");
    ok(&approve(&vault, &number, PIN).await);
    assert_eq!(
        b.post("/login/push/complete", &[]).await.location(),
        Some("/account")
    );
    let mut fresh = srv.browser();
    assert!(username(&mut fresh, "alice")
        .await
        .body
        .contains("Enter password"));
    let page = username(&mut b, "alice").await;
    assert!(page.body.contains("Enter password"), "{}", page.body);
    // "Use an app instead" switches back and is remembered too.
    let app_page = b.post("/login/app", &[]).await;
    assert_eq!(app_page.location(), Some("/login/app"));
    let number = element_text(&b.follow(app_page).await.body, "push-number");
    ok(&approve(&vault, &number, PIN).await);
    assert_eq!(
        b.post("/login/push/complete", &[]).await.location(),
        Some("/account")
    );
    assert!(username(&mut b, "alice")
        .await
        .body
        .contains("Approve sign-in request"));
    // "Other ways to sign in" lists what the user has.
    let options = b.get("/login/options").await;
    assert!(options
        .body
        .contains("Approve a request on my Authenticator app"));
    assert!(options.body.contains("Use my password"));
    // Unknown users and users without phone sign-in get the same password page and the same
    // answer to "Use an app instead".
    let mut x = srv.browser();
    let page = username(&mut x, "nobody").await;
    assert!(page.body.contains("Use an app instead"));
    let answer = x.post("/login/app", &[]).await;
    assert_eq!(answer.status, 200);
    assert!(
        answer.body.contains("isn&#39;t turned on for this account"),
        "{}",
        answer.body
    );
    assert!(!x
        .get("/login/options")
        .await
        .body
        .contains("Authenticator app"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_device_stops_its_requests_and_phone_sign_in() {
    let (srv, _dir, vault) = setup().await;
    ok(&with_pin(&vault, PIN, &["pin", "set"]).await);
    enable(&srv, &vault).await;
    // Sign in with the phone (a fresh second step), then leave a request pending elsewhere.
    let mut me = srv.browser();
    let page = username(&mut me, "alice").await;
    let number = element_text(&page.body, "push-number");
    ok(&approve(&vault, &number, PIN).await);
    me.post("/login/push/complete", &[]).await;
    let info = me.get("/security-info").await;
    assert!(
        info.body
            .contains("<td data-label=\"Phone sign-in\">On</td>"),
        "{}",
        info.body
    );
    let mut thief = srv.browser();
    let page = username(&mut thief, "alice").await;
    let number = element_text(&page.body, "push-number");
    let req = pending(&vault).await[0]["request"]
        .as_str()
        .unwrap()
        .to_string();
    let d = device(&srv).await;
    let removed = me
        .post(&format!("/security-info/devices/{}/remove", d.id), &[])
        .await;
    assert_eq!(
        removed.location(),
        Some("/security-info?done=device_removed")
    );
    // The pending request ended at once and cannot be approved.
    let e = err(&with_pin(
        &vault,
        PIN,
        &["respond", &req, "--number", &number, "--approve"],
    )
    .await);
    assert!(e.contains("not registered"), "{e}");
    assert!(thief.get("/login/app").await.body.contains("cancelled"));
    // Lost phone: the password still works ("Use your password instead").
    let mut b = srv.browser();
    let p = b.password_step("alice", "correct horse").await;
    assert_eq!(p.location(), Some("/account"), "{}", p.body);
}

/// A user who registered a method never signs in with the password alone, whatever the policy
/// requires of others. With the app in passwordless mode and a second step "required for
/// nobody", "Use your password instead" plus the password used to sign such a user in with no
/// second step; now the password leads back to the phone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_with_a_method_never_signs_in_with_the_password_alone() {
    let (srv, _dir, vault) = setup().await;
    ok(&with_pin(&vault, PIN, &["pin", "set"]).await);
    enable(&srv, &vault).await;
    set_policy(
        &srv,
        PolicyEdit {
            mode: Some(sesame_core::policy::AuthenticatorMode::Passwordless),
            mfa_required: Some("nobody".into()),
            ..Default::default()
        },
    )
    .await;
    let mut b = srv.browser();
    let page = username(&mut b, "alice").await;
    assert!(
        page.body.contains("Approve sign-in request"),
        "{}",
        page.body
    );
    let p = b.post("/login/password-instead", &[]).await;
    assert_eq!(p.location(), Some("/login/password"));
    b.follow(p).await;
    let p = b
        .post("/login/password", &[("password", "correct horse")])
        .await;
    assert_eq!(p.status, 403, "{}", p.body);
    assert!(
        p.body
            .contains("requires you to sign in with the Authenticator app"),
        "{}",
        p.body
    );
    assert!(!b.has_session());
    // With the app switched off entirely, the password only opens My security info, where a
    // method the policy allows can be added.
    set_policy(
        &srv,
        PolicyEdit {
            enabled: Some(false),
            ..Default::default()
        },
    )
    .await;
    let mut c = srv.browser();
    let p = c.password_step("alice", "correct horse").await;
    assert_eq!(p.location(), Some("/security-info?setup=required"));
    assert_eq!(
        c.get("/account").await.location(),
        Some("/security-info?setup=required")
    );
}

/// The id and number of the user's pending request of `kind` ("phone sign-in" or
/// "two-step verification"), if exactly one.
async fn pending_of(vault: &Path, kind: &str) -> Vec<String> {
    pending(vault)
        .await
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == kind)
        .map(|r| r["request"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_username_alone_withdraws_nothing_changes_nothing_and_spends_only_its_own_budget() {
    let (srv, _dir, vault) = setup().await;
    ok(&with_pin(&vault, PIN, &["pin", "set"]).await);
    enable(&srv, &vault).await;
    let alice = || async {
        srv.store
            .find_user_by_username(srv.state.default_tenant, "alice")
            .await
            .unwrap()
            .unwrap()
    };
    // Alice signs in with her phone on her own browser, which becomes known.
    let mut mine = srv.browser();
    let number = element_text(&username(&mut mine, "alice").await.body, "push-number");
    ok(&approve(&vault, &number, PIN).await);
    assert_eq!(
        mine.post("/login/push/complete", &[]).await.location(),
        Some("/account")
    );
    assert!(mine.cookies.contains_key("__Host-sesame-device"));
    // Later, on another computer, she is at her second step after the password.
    let mut hers = srv.browser();
    username(&mut hers, "alice").await;
    hers.post("/login/password-instead", &[]).await;
    let p = hers
        .post("/login/password", &[("password", "correct horse")])
        .await;
    assert_eq!(p.location(), Some("/login/verify"), "{}", p.body);
    let mfa_number = element_text(&hers.follow(p).await.body, "push-number");
    let mfa = pending_of(&vault, "two-step verification").await;
    assert_eq!(mfa.len(), 1);
    let preference = alice().await.signin_preference;

    // Someone who only knows her username starts sign-ins, switches to the password and
    // back, again and again.
    let mut x = srv.browser();
    username(&mut x, "alice").await;
    for _ in 0..6 {
        assert_eq!(
            x.post("/login/password-instead", &[]).await.location(),
            Some("/login/password")
        );
        x.post("/login/app", &[]).await;
    }
    // Her second step is still waiting, her remembered choice is unchanged, and the unknown
    // browser has used up the budget of unknown browsers.
    assert_eq!(pending_of(&vault, "two-step verification").await, mfa);
    assert_eq!(alice().await.signin_preference, preference);
    let page = x.get("/login/app").await;
    assert!(
        page.body.contains("Too many sign-in requests"),
        "{}",
        page.body
    );
    let mut y = srv.browser();
    let page = username(&mut y, "alice").await;
    assert!(
        page.body.contains("Too many sign-in requests"),
        "{}",
        page.body
    );
    // Her own browser keeps its own budget: phone sign-in still reaches her phone.
    let page = username(&mut mine, "alice").await;
    assert!(
        page.body.contains("Approve sign-in request"),
        "{}",
        page.body
    );
    assert!(!element_text(&page.body, "push-number").is_empty());
    // And her second step on the other computer still completes.
    ok(&with_pin(
        &vault,
        PIN,
        &["respond", &mfa[0], "--number", &mfa_number, "--approve"],
    )
    .await);
    assert_eq!(
        hers.post("/login/push/complete", &[]).await.location(),
        Some("/account")
    );
}

/// A page with the parts that differ between any two visits taken out: the form token and the
/// username typed.
fn same_page(body: &str, username: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some(i) = rest.find("name=\"csrf\" value=\"") {
        let start = i + "name=\"csrf\" value=\"".len();
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        rest = &rest[rest.find('"').unwrap_or(0)..];
    }
    out.push_str(rest);
    out.replace(username, "USER")
}

/// Unknown usernames and users without phone sign-in get the same answers at every step that
/// names a user without proving anything: the username, the password page, "Other ways to sign
/// in", "Use an app instead" and "Use your password instead".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_users_and_users_without_phone_sign_in_look_the_same() {
    let (srv, _dir, vault) = setup().await;
    ok(&with_pin(&vault, PIN, &["pin", "set"]).await);
    enable(&srv, &vault).await;
    srv.create_user("bob", Some("correct horse")).await;
    let mut answers = Vec::new();
    for name in ["bob", "nobody"] {
        let mut b = srv.browser();
        b.get("/login").await;
        let p = b.post("/login", &[("username", name)]).await;
        let location = p.location().map(str::to_string);
        let password = b.follow(p).await;
        let options = b.get("/login/options").await;
        let app = b.post("/login/app", &[]).await;
        // "Use your password instead" sets a remembered choice for both: the same cookie, the
        // same shape of value (a keyed tag either way).
        let instead = b.post("/login/password-instead", &[]).await;
        let cookies: Vec<(String, usize)> = instead
            .set_cookies()
            .iter()
            .map(|c| {
                let (name, rest) = c.split_once('=').unwrap();
                let value = rest.split(';').next().unwrap();
                (name.to_string(), value.len())
            })
            .collect();
        answers.push((
            location,
            (password.status, same_page(&password.body, name)),
            (options.status, same_page(&options.body, name)),
            (app.status, same_page(&app.body, name)),
            (
                instead.status,
                instead.location().map(str::to_string),
                cookies,
            ),
        ));
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0].0.as_deref(), Some("/login/password"));
    assert!(
        answers[0]
            .4
             .2
            .iter()
            .any(|(n, _)| n == "__Host-sesame-choice"),
        "{:?}",
        answers[0].4
    );
    // Alice, who has phone sign-in, is sent to the phone: that much the flow reveals.
    let mut b = srv.browser();
    b.get("/login").await;
    let p = b.post("/login", &[("username", "alice")]).await;
    assert_eq!(p.location(), Some("/login/app"));
}
