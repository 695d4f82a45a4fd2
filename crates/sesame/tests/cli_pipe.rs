//! Output piped into a reader that stops early (`sesame --json log | head -1`) ends the command
//! quietly: no panic, no error, exit 0.

mod common;

use sesame_core::audit::Event;
use sesame_store::{AuditEvent, AuditResult, MasterKey};
use std::io::Read;
use std::process::{Command, Stdio};

#[test]
fn a_reader_that_stops_early_ends_the_command_quietly() {
    let dir = common::data_dir();
    // Enough log lines that the output is far larger than a pipe's buffer.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let key = MasterKey::load_or_create(&dir.path().join("master.key")).unwrap();
        let url = sesame_store::Backend::sqlite_url(&dir.path().join("sesame.db"));
        let store = sesame_store::open(&url, key).await.unwrap();
        let tenant = store.default_tenant().await.unwrap();
        for i in 0..1000 {
            store
                .append_audit(&AuditEvent {
                    id: 0,
                    at: 1_750_000_000 + i,
                    tenant,
                    user: None,
                    username: format!("user{i}"),
                    ip: "127.0.0.1".into(),
                    user_agent: "a browser with a long enough user agent string".into(),
                    event: Event::SignIn,
                    method: None,
                    result: AuditResult::Failure,
                    reason: Some("wrong_password".into()),
                })
                .await
                .unwrap();
        }
    });
    for args in [
        &["--json", "log", "--limit", "1000"][..],
        &["log", "--limit", "1000"][..],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sesame"))
            .arg("--data-dir")
            .arg(dir.path())
            .args(args)
            .env_remove("SESAME_DATA_DIR")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = [0u8; 16];
        child
            .stdout
            .as_mut()
            .unwrap()
            .read_exact(&mut first)
            .unwrap();
        // The reader goes away, like `head` after its lines.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
}
