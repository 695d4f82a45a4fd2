//! What the commands print, as a person pastes and pipes it (issue 14): a suggested command
//! works when pasted, a server's reason is said once, and output cut short by the reader
//! (`| head`) ends the program quietly.

mod common;

use common::*;
use sesame_authenticator::vault::Account;
use sesame_authenticator::{OtpAccount, Vault};
use sesame_server::service::policy::{PolicyEdit, PHONE_SIGN_IN_NOT_ALLOWED};
use sesame_testkit::TestServer;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PIN: &str = "482913";
const BIN: &str = env!("CARGO_BIN_EXE_sesame-authenticator");

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_add_suggests_works_when_pasted_into_a_shell() {
    let (srv, _dir, vault, added) = setup_with_add_output().await;
    let suggested = added
        .lines()
        .find_map(|l| l.strip_prefix("Turn it on with: "))
        .unwrap_or_else(|| panic!("no command suggested: {added}"))
        .to_string();
    ok(&with_pin(&vault, &["pin", "set"]).await);
    // Run as printed, by a shell that finds the app on its PATH, as a person's would.
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(&suggested)
        .env("PATH", path)
        .env("SESAME_AUTHENTICATOR_VAULT", &vault)
        .env("SESAME_AUTHENTICATOR_PIN", PIN)
        .env_remove("SESAME_AUTHENTICATOR_NEW_PIN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // It asks the server, then waits for Alice to confirm on My security info.
    let until = Instant::now() + Duration::from_secs(10);
    while device(&srv).await.phone_sign_in_requested_at.is_none() {
        if child.try_wait().unwrap().is_some() || Instant::now() > until {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{suggested:?} did not ask for phone sign-in: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut b = srv.browser();
    let p = b.password_step("alice", "correct horse").await;
    let number = element_text(&b.follow(p).await.body, "push-number");
    let req = pending(&vault).await[0]["request"]
        .as_str()
        .unwrap()
        .to_string();
    ok(&with_pin(&vault, &["respond", &req, "--number", &number, "--approve"]).await);
    assert_eq!(
        b.post("/login/push/complete", &[]).await.location(),
        Some("/account")
    );
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
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(
        ok(&out).contains("Phone sign-in is on for Sesame: alice"),
        "{out:?}"
    );
    assert_eq!(
        suggested,
        "sesame-authenticator phone-sign-in enable 'Sesame: alice'"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_refusal_is_said_once() {
    let (srv, _dir, vault) = setup().await;
    ok(&with_pin(&vault, &["pin", "set"]).await);
    // Phone sign-in only for a group Alice is not in.
    let now = sesame_core::Clock::now(&*srv.clock);
    srv.store
        .create_group(srv.state.default_tenant, "pilot", now)
        .await
        .unwrap();
    srv.set_policy(PolicyEdit {
        targets: Some("pilot=any".into()),
        ..Default::default()
    })
    .await;
    let e = err(&with_pin(&vault, &["phone-sign-in", "enable", "alice"]).await);
    assert_eq!(e, format!("error: {PHONE_SIGN_IN_NOT_ALLOWED}\n"));
}

/// Waits for `child` whose standard output the reader closed early; it must end without a
/// panic, successfully.
fn assert_quiet_end(mut child: Child, what: &str) {
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    assert_eq!(status.code(), Some(0), "{what}: {status:?} {stderr}");
}

fn spawn(vault: &Path, args: &[&str]) -> Child {
    Command::new(BIN)
        .arg("--vault")
        .arg(vault)
        .args(args)
        .env_remove("SESAME_AUTHENTICATOR_VAULT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// `sesame-authenticator list | head -3` with more accounts than a pipe holds (64 KiB): the
/// app is still writing when the reader leaves.
#[test]
fn long_output_to_a_reader_that_leaves_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vault");
    let mut vault = Vault::open_or_create(&path).unwrap();
    for i in 0..3000 {
        vault.data.accounts.push(Account {
            id: format!("{i:012x}"),
            added_at: 0,
            otp: OtpAccount::from_uri(&format!(
                "otpauth://totp/Example:user{i}@example.com?secret=JBSWY3DPEHPK3PXP"
            ))
            .unwrap(),
            sesame: None,
        });
    }
    vault.save().unwrap();
    for args in [&["list"][..], &["--json", "list"], &["code"]] {
        let mut child = spawn(&path, args);
        let mut head = [0u8; 64];
        child
            .stdout
            .as_mut()
            .unwrap()
            .read_exact(&mut head)
            .unwrap();
        drop(child.stdout.take());
        assert_quiet_end(child, &args.join(" "));
    }
}

/// `sesame-authenticator pending | head -3`, the reader gone before the answer came.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_to_a_reader_that_left_ends_quietly() {
    let (srv, _dir, vault) = setup().await;
    let mut b = srv.browser();
    let p = b.password_step("alice", "correct horse").await;
    assert_eq!(p.location(), Some("/login/verify"));
    tokio::task::spawn_blocking(move || {
        let mut child = spawn(&vault, &["pending"]);
        drop(child.stdout.take());
        assert_quiet_end(child, "pending");
    })
    .await
    .unwrap();
}
