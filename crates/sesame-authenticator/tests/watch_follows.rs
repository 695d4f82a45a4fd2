//! `watch` follows what happens elsewhere while it runs (issue 14): other commands changing
//! the vault (a new account, phone sign-in turned on), and the device being removed on the
//! server. The real binary in a real terminal (tmux) against a real server.

mod common;

use common::*;
use sesame_testkit::{Browser, TestServer};
use std::path::Path;

const PIN: &str = "482913";

fn watch_command(vault: &Path, env: &str) -> String {
    format!(
        "env {env} {} --vault {} watch",
        env!("CARGO_BIN_EXE_sesame-authenticator"),
        vault.display()
    )
}

async fn with_pin(vault: &Path, args: &[&str]) -> std::process::Output {
    app_env(vault, args, &[("SESAME_AUTHENTICATOR_PIN", PIN)]).await
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

/// Alice signs in with her password, approving the request with `respond` (another
/// terminal); returns her signed-in browser.
async fn signed_in(srv: &TestServer, vault: &Path) -> Browser {
    let mut b = srv.browser();
    let p = b.password_step("alice", "correct horse").await;
    assert_eq!(p.location(), Some("/login/verify"), "{}", p.body);
    let number = element_text(&b.follow(p).await.body, "push-number");
    let req = pending(vault).await[0]["request"]
        .as_str()
        .unwrap()
        .to_string();
    ok(&with_pin(vault, &["respond", &req, "--number", &number, "--approve"]).await);
    assert_eq!(
        b.post("/login/push/complete", &[]).await.location(),
        Some("/account")
    );
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_uses_the_vault_as_other_commands_left_it() {
    let (srv, _dir, vault) = setup().await;
    // Started before the app PIN and phone sign-in exist.
    let term = Tmux::start("watch-vault", 80, 24, &watch_command(&vault, ""));
    term.wait_for("No sign-in requests", 10).await;

    // Another terminal adds a site's codes: they appear.
    ok(&app(
        &vault,
        &[
            "add",
            "otpauth://totp/Example:bob?secret=JBSWY3DPEHPK3PXP&issuer=Example",
        ],
    )
    .await);
    term.wait_for("Example: bob", 10).await;

    // Another terminal sets the app PIN and turns phone sign-in on; Alice confirms it on My
    // security info.
    ok(&with_pin(&vault, &["pin", "set"]).await);
    ok(&with_pin(&vault, &["phone-sign-in", "enable", "alice", "--no-wait"]).await);
    let mut b = signed_in(&srv, &vault).await;
    let p = b
        .post(
            &format!(
                "/security-info/devices/{}/confirm-phone-sign-in",
                device(&srv).await.id
            ),
            &[],
        )
        .await;
    assert_eq!(p.location(), Some("/security-info?done=phone_sign_in_on"));

    // Username only: the phone sign-in is approved in the running `watch`, with the PIN key
    // the other terminal set up.
    let mut b = srv.browser();
    b.get("/login").await;
    let p = b.post("/login", &[("username", "alice")]).await;
    let page = b.follow(p).await;
    let number = element_text(&page.body, "push-number");
    term.wait_for("Sign in with your phone?", 10).await;
    term.keys(&["Enter"]);
    term.wait_for("Enter number", 10).await;
    term.keys(&[number.as_str(), "Enter"]);
    term.wait_for("[a] Approve", 10).await;
    term.keys(&["a"]);
    term.wait_for("App PIN", 10).await;
    term.keys(&[PIN, "Enter"]);
    let screen = term.wait_for("Approved", 10).await;
    assert!(!screen.contains("not set up"), "{screen}");
    assert_eq!(
        b.post("/login/push/complete", &[]).await.location(),
        Some("/account")
    );
    term.keys(&["q"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_and_list_say_when_the_device_was_removed_on_the_server() {
    let (srv, _dir, vault) = setup().await;
    // Asking the server every second rather than every 30, to keep the test short.
    let term = Tmux::start(
        "watch-removed",
        80,
        24,
        &watch_command(&vault, "SESAME_AUTHENTICATOR_SERVER_CHECK_SECS=1"),
    );
    term.wait_for("No sign-in requests", 10).await;
    // Alice removes the device on My security info; nothing is waiting for it, so nothing
    // comes down its event stream.
    let mut b = signed_in(&srv, &vault).await;
    let removed = b
        .post(
            &format!("/security-info/devices/{}/remove", device(&srv).await.id),
            &[],
        )
        .await;
    assert_eq!(
        removed.location(),
        Some("/security-info?done=device_removed")
    );
    let screen = term.wait_for("removed from the server", 10).await;
    assert!(
        screen.contains("Sesame: alice was removed from the server"),
        "{screen}"
    );
    let codes_line = screen
        .lines()
        .find(|l| l.contains("Sesame: alice") && !l.contains(" was "))
        .unwrap();
    assert!(
        codes_line.contains("removed from the server") && !codes_line.contains(" s "),
        "no code for a removed device: {screen}"
    );
    term.keys(&["q"]);
    for _ in 0..50 {
        if !term.is_running() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(!term.is_running(), "watch did not quit on q");

    // `list` does not ask the server: it shows what `watch` recorded in the vault.
    let out = ok(&app(&vault, &["list"]).await);
    assert!(
        out.contains("Sesame: alice") && out.contains("removed on the server"),
        "{out}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&app(&vault, &["--json", "list"]).await)).unwrap();
    assert_eq!(json[0]["removed_on_server"], true, "{json}");
}
