//! The random code of a phone sign-in request, which `phone-sign-in enable` prints and My
//! security info shows beside "Turn on phone sign-in" (SECURITY.md, phone sign-in
//! confirmation): the real `sesame-authenticator` binary against a real server.

mod common;

use common::*;
use sesame_testkit::{Browser, TestServer};
use std::io::BufRead;
use std::path::Path;

const PIN: &str = "482913";
const NEW_PIN: &str = "739164";

async fn with_pin(vault: &Path, pin: &str, args: &[&str]) -> std::process::Output {
    app_env(vault, args, &[("SESAME_AUTHENTICATOR_PIN", pin)]).await
}

/// Whether `code` looks like a request's code: `XXXX-XXXX`, 8 digits.
fn is_code(code: &str) -> bool {
    code.len() == 9
        && code.as_bytes()[4] == b'-'
        && code
            .chars()
            .filter(|c| *c != '-')
            .all(|c| c.is_ascii_digit())
}

/// The code in the app's "Confirm on My security info only if it shows code XXXX-XXXX".
fn printed_code(out: &str) -> String {
    let marker = "Confirm on My security info only if it shows code ";
    let at = out
        .find(marker)
        .unwrap_or_else(|| panic!("no code in {out}"));
    let code = &out[at + marker.len()..][..9];
    assert!(is_code(code), "{code}");
    code.to_string()
}

/// The code My security info shows in the row of Alice's phone, if any.
fn shown_code(body: &str) -> Option<String> {
    let row = body
        .split("<tr>")
        .find(|row| row.contains("<td>Alice&#39;s phone</td>"))
        .unwrap_or_else(|| panic!("no row for the phone in {body}"));
    let marker = "Confirm only if your app shows code ";
    row.find(marker)
        .map(|at| row[at + marker.len()..][..9].to_string())
}

/// The code the server stored with Alice's phone's current request, if any.
async fn stored_code(srv: &TestServer) -> Option<String> {
    let alice = srv
        .store
        .find_user_by_username(srv.state.default_tenant, "alice")
        .await
        .unwrap()
        .unwrap();
    let d = srv.store.list_devices(alice.id).await.unwrap().remove(0);
    d.phone_sign_in_code
}

/// Alice signs in with her password and the app's approval (a fresh second step).
async fn fresh_session(srv: &TestServer, vault: &Path, pin: &str) -> Browser {
    let mut b = srv.browser();
    let p = b.password_step("alice", "correct horse").await;
    assert_eq!(p.location(), Some("/login/verify"), "{}", p.body);
    let number = element_text(&b.follow(p).await.body, "push-number");
    let list = pending(vault).await;
    let req = list[0]["request"].as_str().unwrap().to_string();
    ok(&with_pin(
        vault,
        pin,
        &["respond", &req, "--number", &number, "--approve"],
    )
    .await);
    assert_eq!(
        b.post("/login/push/complete", &[]).await.location(),
        Some("/account")
    );
    b
}

/// What the app prints and what the page shows are the same code, the one the server stored
/// with the request; each request gets a new one (on both sides, and in `--json`), whether or
/// not the PIN key changed; the app says it while it waits for the confirmation as well as
/// with `--no-wait`; and once confirmed the code is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_prints_the_code_my_security_info_shows() {
    let (srv, _dir, vault) = setup().await;
    ok(&with_pin(&vault, PIN, &["pin", "set"]).await);
    let out = ok(&with_pin(
        &vault,
        PIN,
        &["phone-sign-in", "enable", "alice", "--no-wait"],
    )
    .await);
    let first = printed_code(&out);
    assert_eq!(stored_code(&srv).await.as_deref(), Some(first.as_str()));
    let mut b = fresh_session(&srv, &vault, PIN).await;
    let page = b.get("/security-info").await;
    assert_eq!(shown_code(&page.body).as_deref(), Some(first.as_str()));

    // Asked again with the same PIN key (here for a script, in JSON): a new code, which
    // replaces the first on the page.
    let out = ok(&with_pin(
        &vault,
        PIN,
        &["--json", "phone-sign-in", "enable", "alice", "--no-wait"],
    )
    .await);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["phone_sign_in_awaiting_confirmation"], true, "{out}");
    let second = json["phone_sign_in_code"].as_str().unwrap().to_string();
    assert!(is_code(&second), "{second}");
    assert_ne!(second, first, "each request has its own code");
    assert_eq!(stored_code(&srv).await.as_deref(), Some(second.as_str()));
    let page = b.get("/security-info").await;
    assert_eq!(shown_code(&page.body).as_deref(), Some(second.as_str()));
    assert!(!page.body.contains(&first), "{}", page.body);

    // A PIN change registers a new PIN key; the code does not follow keys, only requests.
    let changed = ok(&app_env(
        &vault,
        &["pin", "change"],
        &[
            ("SESAME_AUTHENTICATOR_PIN", PIN),
            ("SESAME_AUTHENTICATOR_NEW_PIN", NEW_PIN),
        ],
    )
    .await);
    assert_eq!(changed, "App PIN changed (1 account key updated).\n");

    // Waiting for the confirmation: the app says the new request's code while it waits;
    // Alice compares it with the page and confirms.
    let (child, mut lines, said) = tokio::task::spawn_blocking({
        let vault = vault.clone();
        move || {
            let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sesame-authenticator"))
                .arg("--vault")
                .arg(&vault)
                .args(["phone-sign-in", "enable", "alice"])
                .env_remove("SESAME_AUTHENTICATOR_VAULT")
                .env_remove("SESAME_AUTHENTICATOR_NEW_PIN")
                .env("SESAME_AUTHENTICATOR_PIN", NEW_PIN)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("run sesame-authenticator");
            let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
            let mut said = String::new();
            while !said.contains("only if it shows code") {
                let line = lines
                    .next()
                    .unwrap_or_else(|| panic!("the app stopped before saying the code:\n{said}"))
                    .unwrap();
                said.push_str(&line);
                said.push('\n');
            }
            (child, lines, said)
        }
    })
    .await
    .unwrap();
    let third = printed_code(&said);
    assert_ne!(third, second, "{said}");
    assert_eq!(stored_code(&srv).await.as_deref(), Some(third.as_str()));
    let page = b.get("/security-info").await;
    assert_eq!(shown_code(&page.body).as_deref(), Some(third.as_str()));
    let device = page
        .body
        .split("/security-info/devices/")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let p = b
        .post(
            &format!("/security-info/devices/{device}/confirm-phone-sign-in"),
            &[],
        )
        .await;
    assert_eq!(p.location(), Some("/security-info?done=phone_sign_in_on"));
    let (status, rest) = tokio::task::spawn_blocking(move || {
        let mut child = child;
        let rest: Vec<String> = lines.by_ref().map(Result::unwrap).collect();
        (child.wait().unwrap(), rest.join("\n"))
    })
    .await
    .unwrap();
    assert!(status.success(), "{said}{rest}");
    assert!(rest.contains("Phone sign-in is on"), "{rest}");
    // On: nothing left to confirm, so no code on the page, nor kept by the server.
    let page = b.get("/security-info").await;
    assert_eq!(shown_code(&page.body), None, "{}", page.body);
    assert_eq!(stored_code(&srv).await, None);
}
