//! Notifications end to end: the real `sesame-authenticator` binary against a real server.

mod common;

use common::*;
use sesame_testkit::{Browser, TestServer};
use std::process::Command;

/// Password step of a new sign-in; returns the browser on the waiting page and its number.
async fn wait_for_phone(srv: &TestServer) -> (Browser, String) {
    let mut b = srv.browser();
    let p = b.password_step("alice", "correct horse").await;
    assert_eq!(p.location(), Some("/login/verify"));
    let page = b.follow(p).await;
    assert!(
        page.body.contains("Approve sign-in request"),
        "{}",
        page.body
    );
    assert!(page.body.contains("Use a different verification option"));
    let number = element_text(&page.body, "push-number");
    assert_eq!(number.len(), 2, "two digits by default: {number}");
    (b, number)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_sign_in_with_number_matching() {
    let (srv, _dir, vault) = setup().await;
    let (mut b, number) = wait_for_phone(&srv).await;
    let list = pending(&vault).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let req = list[0]["request"].as_str().unwrap().to_string();
    assert_eq!(list[0]["ip"], "127.0.0.1");
    assert_eq!(list[0]["location"], "This computer");
    // A label the server makes, never the browser's own text (the test browser names no
    // browser anyone knows).
    assert_eq!(list[0]["browser"], "Unknown browser");
    assert!(
        !list[0].to_string().contains(&format!("\"{number}\"")),
        "the number is never sent to the phone"
    );
    // Not approved yet: completing does nothing.
    let early = b.post("/login/push/complete", &[]).await;
    assert_eq!(early.location(), Some("/login/verify"));
    assert!(!b.has_session());
    let out = ok(&app(
        &vault,
        &["respond", &req[..8], "--number", &number, "--approve"],
    )
    .await);
    assert!(out.contains("Approved"), "{out}");
    let status: serde_json::Value =
        serde_json::from_str(&b.get("/login/push/status").await.body).unwrap();
    assert_eq!(status["state"], "approved");
    let done = b.post("/login/push/complete", &[]).await;
    assert_eq!(done.location(), Some("/account"), "{}", done.body);
    assert!(b.has_session());
    assert!(pending(&vault).await.as_array().unwrap().is_empty());
    let log = srv.store.list_audit(&Default::default()).await.unwrap();
    assert!(log.iter().any(|e| e.event == "sign_in"
        && e.method.as_ref().map(|m| m.as_str()) == Some("push")
        && e.result == sesame_store::AuditResult::Success));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_number_does_not_approve() {
    let (srv, _dir, vault) = setup().await;
    let (mut b, number) = wait_for_phone(&srv).await;
    let req = pending(&vault).await[0]["request"]
        .as_str()
        .unwrap()
        .to_string();
    let wrong = if number == "10" { "11" } else { "10" };
    let e = err(&app(&vault, &["respond", &req, "--number", wrong, "--approve"]).await);
    assert!(e.contains("did not match"), "{e}");
    assert_eq!(
        b.post("/login/push/complete", &[]).await.location(),
        Some("/login/verify")
    );
    assert!(!b.has_session());
    let page = b.get("/login/verify").await;
    assert!(page.body.contains("didn&#39;t match"), "{}", page.body);
    let user = srv
        .store
        .find_user_by_username(srv.state.default_tenant, "alice")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        srv.store
            .find_failures(user.id, sesame_core::method::MethodKind::Push)
            .await
            .unwrap()
            .0,
        1,
        "a wrong number counts as a failed attempt"
    );
    // The request is over: the right number no longer works.
    let late = err(&app(&vault, &["respond", &req, "--number", &number, "--approve"]).await);
    assert!(late.contains("no waiting sign-in request"), "{late}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_and_report_blocks_further_pushes() {
    let (srv, _dir, vault) = setup().await;
    let (mut b, _number) = wait_for_phone(&srv).await;
    let req = pending(&vault).await[0]["request"]
        .as_str()
        .unwrap()
        .to_string();
    let out = ok(&app(&vault, &["respond", &req, "--report"]).await);
    assert!(out.contains("blocked"), "{out}");
    assert!(b.get("/login/verify").await.body.contains("reported"));
    let user = srv
        .store
        .find_user_by_username(srv.state.default_tenant, "alice")
        .await
        .unwrap()
        .unwrap();
    assert!(user.push_blocked_at.is_some());
    let log = srv.store.list_audit(&Default::default()).await.unwrap();
    assert!(log.iter().any(|e| e.event == "fraud_reported"));
    // The next sign-in sends nothing to the phone and says why.
    let mut b2 = srv.browser();
    let p = b2.password_step("alice", "correct horse").await;
    let page = b2.follow(p).await;
    assert!(page.body.contains("blocked"), "{}", page.body);
    assert!(pending(&vault).await.as_array().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregistered_device_cannot_answer_and_a_copied_vault_is_useless() {
    let (srv, dir, vault) = setup().await;
    // A copy of the vault taken while the device was registered.
    let copy = dir.path().join("copy");
    std::fs::copy(&vault, &copy).unwrap();
    std::fs::copy(dir.path().join("vault.key"), dir.path().join("copy.key")).unwrap();
    ok(&app(&vault, &["unregister", "alice"]).await);
    let user = srv
        .store
        .find_user_by_username(srv.state.default_tenant, "alice")
        .await
        .unwrap()
        .unwrap();
    assert!(srv.store.list_devices(user.id).await.unwrap().is_empty());
    // Without a device the sign-in needs no second step any more... so give alice codes
    // elsewhere and check the copy cannot even list requests.
    let e = err(&app(&copy, &["pending"]).await);
    assert!(e.contains("not registered"), "{e}");
    // A vault file moved without its device key cannot be opened at all.
    let stolen = dir.path().join("stolen");
    std::fs::copy(&copy, &stolen).unwrap();
    assert!(err(&app(&stolen, &["list"]).await).contains("device key"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_from_the_activated_app_work_too() {
    let (srv, _dir, vault) = setup().await;
    let (mut b, _number) = wait_for_phone(&srv).await;
    let methods = b.get("/login/methods").await;
    assert!(
        methods
            .body
            .contains("Authenticator app (verification code)"),
        "{}",
        methods.body
    );
    let switched = b.post("/login/methods", &[("method", "totp")]).await;
    assert_eq!(switched.location(), Some("/login/verify"));
    assert!(
        pending(&vault).await.as_array().unwrap().is_empty(),
        "switching away cancels the phone request"
    );
    let codes: serde_json::Value =
        serde_json::from_str(&ok(&app(&vault, &["--json", "code", "alice"]).await)).unwrap();
    srv.clock.set(real_now());
    let done = b
        .post(
            "/login/verify",
            &[("code", codes[0]["code"].as_str().unwrap())],
        )
        .await;
    assert_eq!(done.location(), Some("/account"), "{}", done.body);
}

/// `watch` in a real terminal (tmux, 80x24): the request appears at once, the number is typed,
/// Approve is pressed, and the waiting browser signs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_shows_the_request_and_approves_it_in_a_terminal() {
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .args(args)
            .output()
            .expect("tmux is needed (scripts/test.sh installs it)")
    };
    let (srv, _dir, vault) = setup().await;
    let session = format!("sesame-watch-{}", std::process::id());
    let cmd = format!(
        "{} --vault {} watch",
        env!("CARGO_BIN_EXE_sesame-authenticator"),
        vault.display()
    );
    assert!(tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "80",
        "-y",
        "24",
        &cmd
    ])
    .status
    .success());
    let screen = || {
        String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", &session]).stdout).into_owned()
    };
    async fn wait_for(screen: &dyn Fn() -> String, text: &str) -> String {
        for _ in 0..100 {
            let s = screen();
            if s.contains(text) {
                return s;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("{text:?} never appeared on:\n{}", screen());
    }
    let first = wait_for(&screen, "No sign-in requests").await;
    assert!(first.contains("Sesame: alice"), "codes are shown:\n{first}");
    let (mut b, number) = wait_for_phone(&srv).await;
    let shown = wait_for(&screen, "Approve sign-in?").await;
    assert!(shown.contains("This computer"), "{shown}");
    // Seconds (code countdowns, "expires in N s") can equal the number by chance; the
    // number itself must not appear anywhere else.
    let without_seconds = shown.replace(&format!(" {number} s"), "");
    assert!(
        !without_seconds.contains(&format!(" {number} ")),
        "the number is not on the phone:\n{shown}"
    );
    tmux(&["send-keys", "-t", &session, "Enter"]);
    wait_for(&screen, "Enter number").await;
    tmux(&["send-keys", "-t", &session, &number, "Enter"]);
    wait_for(&screen, "[a] Approve").await;
    tmux(&["send-keys", "-t", &session, "a"]);
    wait_for(&screen, "Approved").await;
    let done = b.post("/login/push/complete", &[]).await;
    assert_eq!(done.location(), Some("/account"));
    tmux(&["send-keys", "-t", &session, "q"]);
    for _ in 0..50 {
        if !tmux(&["has-session", "-t", &session]).status.success() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    tmux(&["kill-session", "-t", &session]);
    panic!("watch did not quit on q");
}

/// When the organisation requires the app PIN, an approval needs it; wrong PINs are counted and
/// stop approvals at 10; trivial PINs cannot be set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_is_required_for_approvals_when_policy_says_so() {
    let mut config = sesame_server::ServerConfig::default();
    config.push.pin_required = true;
    let srv = TestServer::spawn_with(config).await;
    srv.clock.set(real_now());
    srv.create_user("alice", Some("correct horse")).await;
    let mut b = srv.browser();
    b.password_step("alice", "correct horse").await;
    let page = b.get("/security-info/add/app").await;
    let dir = tempfile::tempdir().unwrap();
    let vault = dir.path().join("vault");
    ok(&app(
        &vault,
        &["add", &element_text(&page.body, "activation-link")],
    )
    .await);
    let with_pin = |pin: &'static str, args: Vec<String>| {
        let vault = vault.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                Command::new(env!("CARGO_BIN_EXE_sesame-authenticator"))
                    .arg("--vault")
                    .arg(&vault)
                    .args(&args)
                    .env("SESAME_AUTHENTICATOR_PIN", pin)
                    .output()
                    .unwrap()
            })
            .await
            .unwrap()
        }
    };
    let (mut b, number) = wait_for_phone(&srv).await;
    let req = pending(&vault).await[0]["request"]
        .as_str()
        .unwrap()
        .to_string();
    let approve = vec![
        "respond".to_string(),
        req.clone(),
        "--number".into(),
        number.clone(),
        "--approve".into(),
    ];
    // No PIN set yet: the app refuses to approve and says how to fix it.
    assert!(err(&with_pin("482913", approve.clone()).await).contains("pin set"));
    assert!(err(&with_pin("123456", vec!["pin".into(), "set".into()]).await).contains("too easy"));
    ok(&with_pin("482913", vec!["pin".into(), "set".into()]).await);
    assert!(
        err(&with_pin("999999", vec!["pin".into(), "set".into()]).await).contains("already set")
    );
    // A wrong PIN does not approve, and is counted by the server: the app cannot tell (its
    // key is sealed without an integrity tag), the signature it makes is simply invalid.
    let e = err(&with_pin("482914", approve.clone()).await);
    assert!(e.contains("Wrong PIN. 9 attempt(s) left"), "{e}");
    assert_eq!(
        b.post("/login/push/complete", &[]).await.location(),
        Some("/login/verify")
    );
    // The right PIN approves (the request stayed pending) and resets the count.
    ok(&with_pin("482913", approve.clone()).await);
    assert_eq!(
        b.post("/login/push/complete", &[]).await.location(),
        Some("/account")
    );
    let alice = srv
        .store
        .find_user_by_username(srv.state.default_tenant, "alice")
        .await
        .unwrap()
        .unwrap()
        .id;
    let devices = srv.store.list_devices(alice).await.unwrap();
    assert_eq!(devices[0].pin_key_failures, 0);
    // Ten wrong PINs in a row turn the PIN key off, even for the right PIN afterwards.
    let (_b, n) = wait_for_phone(&srv).await;
    let r = pending(&vault).await[0]["request"]
        .as_str()
        .unwrap()
        .to_string();
    let answer = vec![
        "respond".to_string(),
        r,
        "--number".into(),
        n,
        "--approve".into(),
    ];
    for i in 0..9 {
        let e = err(&with_pin("111222", answer.clone()).await);
        assert!(e.contains("Wrong PIN"), "{i}: {e}");
    }
    let e = err(&with_pin("111222", answer.clone()).await);
    assert!(e.contains("after 10 wrong PINs"), "{e}");
    let e = err(&with_pin("482913", answer.clone()).await);
    assert!(e.contains("after 10 wrong PINs"), "{e}");
    let alice = srv
        .store
        .find_user_by_username(srv.state.default_tenant, "alice")
        .await
        .unwrap()
        .unwrap()
        .id;
    let devices = srv.store.list_devices(alice).await.unwrap();
    assert!(devices[0].pin_key_disabled_at.is_some());
}
