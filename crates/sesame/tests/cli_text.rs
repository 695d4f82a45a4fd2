//! Text from attackers, as the `sesame` command line shows it: names and browser strings
//! already in a database (written before names were checked) are printed escaped, never raw
//! to the terminal; new usernames that look like another or hide characters are refused.

mod common;

use sesame_core::audit::Event;
use sesame_core::secret::SecretBytes;
use sesame_store::{AuditEvent, AuditResult, MasterKey, NewDevice, NewUser, Store};
use std::path::Path;
use std::process::Output;
use std::sync::Arc;

/// Clears the screen, sets the window title, rings, backs over text and reorders it.
const HOSTILE_NAME: &str = "eve\u{1b}[2J\u{1b}]0;pwned\u{7}\u{8}\u{8}\r\u{202e}nimda";
const HOSTILE_AGENT: &str = "Mozilla\u{1b}[8mhidden\u{1b}[0m\u{2067}";
const HOSTILE_DEVICE: &str = "phone\u{202e}gnp.exe\u{200b}";

fn sesame(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    common::run(dir, args, stdin, &[])
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr_of_failure(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "unexpectedly succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr.clone()).unwrap()
}

/// No byte of the output can drive a terminal or reorder the text.
fn assert_inert(what: &str, text: &str) {
    assert!(
        !text
            .chars()
            .any(|c| c != '\n' && sesame_proto::text::is_hidden(c)),
        "{what} printed a hidden character raw: {text:?}"
    );
}

/// A user, a device and audit lines written the way a database from before the checks may
/// hold them: straight into the store, which takes any text.
fn old_rows(dir: &Path) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let key = MasterKey::load_or_create(&dir.join("master.key")).unwrap();
        let url = sesame_store::Backend::sqlite_url(&dir.join("sesame.db"));
        let store: Arc<dyn Store> = sesame_store::open(&url, key).await.unwrap();
        let t = store.default_tenant().await.unwrap();
        let user = store
            .create_user(
                NewUser {
                    tenant: t,
                    username: HOSTILE_NAME.into(),
                    display_name: HOSTILE_NAME.into(),
                    password_hash: None,
                    is_admin: false,
                },
                1_700_000_000,
            )
            .await
            .unwrap();
        store
            .create_activation(user.id, b"code", i64::MAX)
            .await
            .unwrap();
        store.consume_activation(b"code", 1).await.unwrap();
        store
            .create_device(
                NewDevice {
                    tenant: t,
                    user: user.id,
                    name: HOSTILE_DEVICE.into(),
                    alg: "ES256".into(),
                    public_key: b"pk".to_vec(),
                },
                b"code",
                &SecretBytes::new(vec![7; 20]),
                2,
            )
            .await
            .unwrap();
        store
            .append_audit(&AuditEvent {
                id: 0,
                at: 1_700_000_100,
                tenant: t,
                user: Some(user.id),
                username: HOSTILE_NAME.into(),
                ip: "192.0.2.1".into(),
                user_agent: HOSTILE_AGENT.into(),
                event: Event::SignIn,
                method: None,
                result: AuditResult::Failure,
                reason: Some("bad\u{7}\r\u{1b}[1Areason".into()),
            })
            .await
            .unwrap();
    });
}

#[test]
fn stored_terminal_escapes_are_printed_escaped_by_log_and_user_show() {
    let dir = common::data_dir();
    let d = dir.path();
    old_rows(d);

    let log = stdout(&sesame(d, &["log"], None));
    assert_inert("sesame log", &log);
    for shown in [
        "eve\\u{1b}[2J\\u{1b}]0;pwned\\u{7}\\u{8}\\u{8}\\u{d}\\u{202e}nimda",
        "Mozilla\\u{1b}[8mhidden",
        "bad\\u{7}\\u{d}\\u{1b}[1Areason",
    ] {
        assert!(log.contains(shown), "{shown} not in:\n{log}");
    }

    let show = stdout(&sesame(d, &["user", "show", HOSTILE_NAME], None));
    assert_inert("sesame user show", &show);
    assert!(
        show.contains("phone\\u{202e}gnp.exe\\u{200b}"),
        "the device name is shown escaped:\n{show}"
    );
    assert!(show.contains("Mozilla\\u{1b}[8mhidden") || show.contains("eve\\u{1b}[2J"));

    let list = stdout(&sesame(d, &["user", "list"], None));
    assert_inert("sesame user list", &list);
    assert!(list.contains("eve\\u{1b}[2J"), "{list}");

    // JSON stays exact: a script reads back what is stored.
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&sesame(d, &["--json", "log"], None))).unwrap();
    assert_eq!(json[0]["username"], HOSTILE_NAME);
    assert_eq!(json[0]["user_agent"], HOSTILE_AGENT);

    // An error quoting the typed name is escaped too.
    let typed = format!("{HOSTILE_NAME}x");
    let e = stderr_of_failure(&sesame(d, &["user", "show", &typed], None));
    assert_inert("an error", &e);
}

#[test]
fn user_add_refuses_look_alikes_and_invisible_characters() {
    let dir = common::data_dir();
    let d = dir.path();
    stdout(&sesame(d, &["user", "add", "alice", "--no-password"], None));

    // Cyrillic "а" in an otherwise Latin name.
    let e = stderr_of_failure(&sesame(
        d,
        &["user", "add", "\u{430}lice", "--no-password"],
        None,
    ));
    assert!(e.contains("scripts"), "{e}");
    // All-Cyrillic look-alike of a Latin name: one script, but the same skeleton.
    stdout(&sesame(d, &["user", "add", "ace", "--no-password"], None));
    let e = stderr_of_failure(&sesame(
        d,
        &["user", "add", "\u{430}\u{441}\u{435}", "--no-password"],
        None,
    ));
    assert!(e.contains("looks like the existing user \"ace\""), "{e}");
    // Full-width is the same name, not a new one.
    let e = stderr_of_failure(&sesame(
        d,
        &["user", "add", "ａｌｉｃｅ", "--no-password"],
        None,
    ));
    assert!(e.contains("already exists"), "{e}");
    for hidden in [
        "ali\u{200b}ce",
        "alice\u{202e}",
        "al\u{1b}[2Jice",
        "bo\u{feff}b",
    ] {
        let e = stderr_of_failure(&sesame(d, &["user", "add", hidden, "--no-password"], None));
        assert!(e.contains("invisible or control character"), "{e}");
        assert_inert("the refusal", &e);
    }
    let e = stderr_of_failure(&sesame(
        d,
        &[
            "user",
            "add",
            "bob",
            "--no-password",
            "--display-name",
            "Bob\u{202e}",
        ],
        None,
    ));
    assert!(e.contains("display name"), "{e}");
    let e = stderr_of_failure(&sesame(d, &["group", "add", "pilot\u{2066}"], None));
    assert!(e.contains("invisible or control character"), "{e}");

    // Only alice and ace were made; full-width finds alice.
    let users: serde_json::Value =
        serde_json::from_str(&stdout(&sesame(d, &["--json", "user", "list"], None))).unwrap();
    assert_eq!(users.as_array().unwrap().len(), 2, "{users}");
    let show = stdout(&sesame(d, &["user", "show", "ＡＬＩＣＥ"], None));
    assert!(show.contains("Username:      alice"), "{show}");
}
