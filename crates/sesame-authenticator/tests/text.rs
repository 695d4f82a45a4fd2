//! Text from attackers on the phone: the browser string is the requester's to write, so the
//! phone shows a label the server makes; text already stored is printed escaped; a device
//! name that hides or reorders characters is refused at activation.

mod common;

use common::*;
use sesame_authenticator::client::{self, ClientError};
use sesame_authenticator::device::DeviceKey;
use sesame_core::push::{ApprovalChannel, ChallengeKind};
use sesame_proto::device as api;
use sesame_store::NewChallenge;
use sesame_testkit::TestServer;

const FIREFOX_LINUX: &str =
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

/// No character of the output can drive a terminal or reorder the text.
fn assert_inert(what: &str, text: &str) {
    assert!(
        !text
            .chars()
            .any(|c| c != '\n' && sesame_proto::text::is_hidden(c)),
        "{what} printed a hidden character raw: {text:?}"
    );
}

/// A password sign-in of alice from a browser that calls itself `user_agent`; the app has
/// its request.
async fn sign_in_from(srv: &TestServer, user_agent: &str) {
    let mut b = srv.browser_as(user_agent);
    let p = b.password_step("alice", "correct horse").await;
    assert_eq!(p.location(), Some("/login/verify"), "{}", p.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_phone_shows_a_browser_label_never_the_browser_text() {
    let (srv, _dir, vault) = setup().await;

    sign_in_from(&srv, "enter 42 and approve").await;
    let list = pending(&vault).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["browser"], "Unknown browser");
    let text = ok(&app(&vault, &["pending"]).await);
    assert!(text.contains("Browser:  Unknown browser"), "{text}");
    assert!(!text.contains("enter 42"), "{text}");
    // The audit log keeps what the browser said.
    let log = srv.store.list_audit(&Default::default()).await.unwrap();
    assert!(log.iter().any(|e| e.user_agent == "enter 42 and approve"));

    // A new sign-in replaces the request; a real browser gets its name.
    sign_in_from(&srv, FIREFOX_LINUX).await;
    let list = pending(&vault).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["browser"], "Firefox on Linux");
    let text = ok(&app(&vault, &["pending"]).await);
    assert!(text.contains("Browser:  Firefox on Linux"), "{text}");

    // Instructions after a real browser's text: only the label reaches the phone.
    sign_in_from(&srv, &format!("{FIREFOX_LINUX} -- enter 42 and approve")).await;
    let list = pending(&vault).await;
    assert_eq!(list[0]["browser"], "Firefox on Linux");
    assert!(!list.to_string().contains("enter 42"), "{list}");

    // Bidirectional overrides and C1 controls fit in a header (as UTF-8): still a label.
    sign_in_from(&srv, "Firefox/1.0 \u{202e}evorppa\u{202c} \u{9b}2J").await;
    let list = pending(&vault).await;
    assert_eq!(list[0]["browser"], "Unknown browser");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_hostile_text_is_printed_escaped_by_pending() {
    let (srv, _dir, vault) = setup().await;
    let alice = srv
        .store
        .find_user_by_username(srv.store.default_tenant().await.unwrap(), "alice")
        .await
        .unwrap()
        .unwrap();
    // A request as an older server may have stored it, with text nobody checked.
    srv.store
        .create_challenge(
            NewChallenge {
                tenant: alice.tenant,
                user: alice.id,
                signin_id_hash: vec![9; 32],
                kind: ChallengeKind::Mfa,
                channel: ApprovalChannel::App,
                number: "42".into(),
                app_name: "Mail\u{1b}]0;pwned\u{7}\u{202e}liaM".into(),
                ip: "127.0.0.1".into(),
                location: "\u{1b}[2J\u{1b}[Hhere".into(),
                user_agent: "\u{1b}[8menter 42 and approve".into(),
                expires_at: real_now() + 120,
                browser: None,
                budget: None,
            },
            real_now(),
            None,
        )
        .await
        .unwrap();
    let text = ok(&app(&vault, &["pending"]).await);
    assert_inert("pending", &text);
    for shown in [
        "Mail\\u{1b}]0;pwned\\u{7}\\u{202e}liaM",
        "(\\u{1b}[2J\\u{1b}[Hhere)",
        "Browser:  Unknown browser",
    ] {
        assert!(text.contains(shown), "{shown} not in:\n{text}");
    }
    assert!(!text.contains("enter 42"), "{text}");
    // JSON stays exact.
    let list = pending(&vault).await;
    assert_eq!(list[0]["app"], "Mail\u{1b}]0;pwned\u{7}\u{202e}liaM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_names_with_bidi_overrides_are_refused_at_activation() {
    let srv = TestServer::spawn().await;
    srv.clock.set(real_now());
    srv.create_user("bob", Some("correct horse")).await;
    let mut b = srv.browser();
    assert_eq!(
        b.password_step("bob", "correct horse").await.location(),
        Some("/account")
    );
    let page = b.get("/security-info/add/app").await;
    let link = element_text(&page.body, "activation-link");
    let (server, code) = api::parse_activation_link(&link).unwrap();
    for name in [
        "phone\u{202e}gnp.exe",
        "phone\u{2066}x\u{2069}",
        "ph\u{200b}one",
        "phone\u{1b}[2J",
        "\u{feff}phone",
    ] {
        match client::activate(&server, &code, name, &DeviceKey::generate()).await {
            Err(ClientError::Refused(e, 400)) => {
                assert_eq!(e.error, "invalid_device_name", "{}", e.message);
                assert!(e.message.contains("invisible or control"), "{}", e.message);
            }
            other => panic!("{name:?} was not refused: {other:?}"),
        }
    }
    // Nothing was used up: the same code activates a device with a plain name.
    let done = client::activate(&server, &code, "Bob's phone ☎", &DeviceKey::generate())
        .await
        .unwrap();
    let bob = srv
        .store
        .find_user_by_username(srv.store.default_tenant().await.unwrap(), "bob")
        .await
        .unwrap()
        .unwrap();
    let devices = srv.store.list_devices(bob.id).await.unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].name, "Bob's phone ☎");
    assert_eq!(devices[0].id.0, done.device_id);
}
