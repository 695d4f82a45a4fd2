//! Helpers shared by the end-to-end tests that drive the real `sesame-authenticator` binary.
#![allow(dead_code)]

use sesame_testkit::TestServer;
use std::path::Path;
use std::process::{Command, Output};

/// Runs the app off the async runtime: the server under test answers on that runtime.
pub async fn app(vault: &Path, args: &[&str]) -> Output {
    app_env(vault, args, &[]).await
}

/// [`app`] with environment variables (the PIN, for scripts).
pub async fn app_env(vault: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let vault = vault.to_path_buf();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_sesame-authenticator"))
            .arg("--vault")
            .arg(&vault)
            .args(&args)
            .env_remove("SESAME_AUTHENTICATOR_VAULT")
            .env_remove("SESAME_AUTHENTICATOR_PIN")
            .env_remove("SESAME_AUTHENTICATOR_NEW_PIN")
            .envs(env)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run sesame-authenticator")
    })
    .await
    .unwrap()
}

pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

pub fn err(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "unexpectedly succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr.clone()).unwrap()
}

pub fn real_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub use sesame_testkit::element_text;

/// A server on the real clock (the app signs requests with the real time), a user with a
/// password, and the app activated for that user through My security info.
pub async fn setup() -> (TestServer, tempfile::TempDir, std::path::PathBuf) {
    let (srv, dir, vault, _) = setup_with_add_output().await;
    (srv, dir, vault)
}

/// [`setup`], and what `add` printed.
pub async fn setup_with_add_output() -> (TestServer, tempfile::TempDir, std::path::PathBuf, String)
{
    let srv = TestServer::spawn().await;
    srv.clock.set(real_now());
    srv.create_user("alice", Some("correct horse")).await;
    let mut b = srv.browser();
    assert_eq!(
        b.password_step("alice", "correct horse").await.location(),
        Some("/account")
    );
    let page = b.get("/security-info/add/app").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let link = element_text(&page.body, "activation-link");
    assert!(
        link.starts_with("sesame://activate?server=http%3A%2F%2F127.0.0.1%3A"),
        "{link}"
    );
    let status_id = page
        .body
        .split("data-id=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let before: serde_json::Value = serde_json::from_str(
        &b.get(&format!("/security-info/add/app/status?id={status_id}"))
            .await
            .body,
    )
    .unwrap();
    assert_eq!(before["done"], false);
    let dir = tempfile::tempdir().unwrap();
    let vault = dir.path().join("vault");
    let out = ok(&app(&vault, &["add", &link, "--device-name", "Alice's phone"]).await);
    assert!(out.contains("Alice's phone"), "{out}");
    let after: serde_json::Value = serde_json::from_str(
        &b.get(&format!("/security-info/add/app/status?id={status_id}"))
            .await
            .body,
    )
    .unwrap();
    assert_eq!(
        after,
        serde_json::json!({"done": true, "device": "Alice's phone"})
    );
    // The same link cannot add a second device.
    let again = err(&app(&dir.path().join("other-vault"), &["add", &link]).await);
    assert!(again.contains("not valid"), "{again}");
    let info = b.get("/security-info").await;
    assert!(
        info.body.contains("Alice&#39;s phone") && info.body.contains("Remove"),
        "{}",
        info.body
    );
    (srv, dir, vault, out)
}

pub async fn pending(vault: &Path) -> serde_json::Value {
    serde_json::from_str(&ok(&app(vault, &["--json", "pending"]).await)).unwrap()
}

/// The full-screen app (or any command) in a real terminal: a detached tmux session, killed
/// when dropped, so a failing test leaves no session behind.
pub struct Tmux {
    session: String,
}

impl Tmux {
    /// Runs `command` (a shell command line) in a new `width`x`height` terminal.
    pub fn start(name: &str, width: u16, height: u16, command: &str) -> Tmux {
        let session = format!("sesame-{name}-{}", std::process::id());
        let t = Tmux { session };
        let out = t.tmux(&[
            "new-session",
            "-d",
            "-s",
            &t.session,
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            command,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        t
    }

    fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(args)
            .output()
            .expect("tmux is needed (scripts/test.sh installs it)")
    }

    pub fn screen(&self) -> String {
        String::from_utf8_lossy(
            &self
                .tmux(&["capture-pane", "-p", "-t", &self.session])
                .stdout,
        )
        .into_owned()
    }

    /// Types `keys` (tmux key names: "Enter", "Escape", or text).
    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", &self.session];
        args.extend_from_slice(keys);
        self.tmux(&args);
    }

    /// The screen once it shows `text`; fails the test after `seconds`.
    pub async fn wait_for(&self, text: &str, seconds: u64) -> String {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
        loop {
            let s = self.screen();
            if s.contains(text) {
                return s;
            }
            if std::time::Instant::now() > until {
                panic!("{text:?} never appeared on:\n{s}");
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    pub fn is_running(&self) -> bool {
        self.tmux(&["has-session", "-t", &self.session])
            .status
            .success()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-session", "-t", &self.session]);
    }
}
