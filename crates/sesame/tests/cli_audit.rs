//! Every administrative command is audited like its twin in the admin console, and has the
//! same effects: the command line and the console go through the same service. One test per
//! action; each reads the log with `sesame --json log`, as a script would.

mod common;

use serde_json::Value;
use sesame_core::method::MethodKind;
use sesame_core::push::{ApprovalChannel, ChallengeKind, ChallengeState};
use sesame_core::signin::SignInState;
use sesame_core::{ChallengeId, UserId};
use sesame_store::{MasterKey, NewChallenge, SessionLimits, Store};
use std::path::Path;
use std::process::Output;
use std::sync::Arc;

/// The operating-system user the audit lines name (`cli:tester`).
const OS_USER: &str = "tester";

fn sesame(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let out = common::run(dir, args, stdin, &[("USER", OS_USER)]);
    assert!(
        out.status.success(),
        "sesame {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The audit lines of `event`, newest first.
fn lines(dir: &Path, event: &str) -> Vec<Value> {
    let out = sesame(dir, &["--json", "log", "--limit", "1000"], None);
    let log: Value = serde_json::from_slice(&out.stdout).unwrap();
    log.as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == event)
        .cloned()
        .collect()
}

/// Exactly one line of `event`, about `username`, written by this command line.
fn one_line(dir: &Path, event: &str, username: &str, command: &str) -> Value {
    let found = lines(dir, event);
    assert_eq!(found.len(), 1, "{event}: {found:?}");
    let e = found[0].clone();
    assert_eq!(e["username"], username, "{e}");
    assert_eq!(e["result"], "success", "{e}");
    assert_eq!(e["ip"], "local", "{e}");
    assert_eq!(e["user_agent"], command, "{e}");
    let reason = e["reason"].as_str().unwrap_or("");
    assert!(reason.starts_with(&format!("cli:{OS_USER}")), "{e}");
    e
}

fn add_user(dir: &Path, name: &str) {
    sesame(
        dir,
        &["user", "add", name, "--password-stdin"],
        Some("correct horse battery\n"),
    );
}

/// The store of the data directory, opened beside the command (as a running server would be).
struct Data {
    rt: tokio::runtime::Runtime,
    store: Arc<dyn Store>,
}

impl Data {
    fn open(dir: &Path) -> Self {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let store = rt.block_on(async {
            let key = MasterKey::load_or_create(&dir.join("master.key")).unwrap();
            let url = sesame_store::Backend::sqlite_url(&dir.join("sesame.db"));
            sesame_store::open(&url, key).await.unwrap()
        });
        Data { rt, store }
    }

    fn user(&self, name: &str) -> sesame_store::User {
        self.rt.block_on(async {
            let t = self.store.default_tenant().await.unwrap();
            self.store
                .find_user_by_username(t, name)
                .await
                .unwrap()
                .unwrap()
        })
    }

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    /// A live session and a pending request to the phone of `user`.
    fn signed_in_with_a_pending_request(&self, user: UserId) -> ChallengeId {
        self.rt.block_on(async {
            let t = self.store.default_tenant().await.unwrap();
            let done = SignInState::Done {
                user,
                amr: vec![sesame_core::method::Amr::Pwd],
            }
            .completed()
            .unwrap();
            let limits = SessionLimits {
                idle_secs: 3600,
                absolute_secs: 86_400,
            };
            self.store
                .create_session(b"live-session", t, &done, Self::now(), limits)
                .await
                .unwrap();
            let (c, _) = self
                .store
                .create_challenge(
                    NewChallenge {
                        tenant: t,
                        user,
                        signin_id_hash: vec![1; 32],
                        kind: ChallengeKind::Mfa,
                        channel: ApprovalChannel::App,
                        number: "42".into(),
                        app_name: "Sesame".into(),
                        ip: "127.0.0.1".into(),
                        location: "This computer".into(),
                        user_agent: "test".into(),
                        expires_at: Self::now() + 120,
                        browser: None,
                        budget: None,
                    },
                    Self::now(),
                    None,
                )
                .await
                .unwrap();
            c.id
        })
    }
}

#[test]
fn user_add_is_audited() {
    let dir = common::data_dir();
    let d = dir.path();
    sesame(
        d,
        &["user", "add", "carol", "--no-password", "--admin"],
        None,
    );
    let e = one_line(d, "admin_user_created", "carol", "sesame user add");
    assert_eq!(e["reason"], "cli:tester; administrator, without a password");
    add_user(d, "dave");
    let e = &lines(d, "admin_user_created")[0];
    assert_eq!(e["reason"], "cli:tester; with a password");
}

/// A new password ends every session of the user: whoever knew the old one is signed out.
#[test]
fn user_set_password_ends_sessions_and_is_audited() {
    let dir = common::data_dir();
    let d = dir.path();
    sesame(d, &["user", "add", "carol", "--no-password"], None);
    let data = Data::open(d);
    let carol = data.user("carol");
    data.signed_in_with_a_pending_request(carol.id);
    sesame(
        d,
        &["user", "set-password", "carol", "--password-stdin"],
        Some("another good one\n"),
    );
    let e = one_line(d, "admin_password_set", "carol", "sesame user set-password");
    assert_eq!(e["reason"], "cli:tester; ended 1 session(s)");
    assert!(data.user("carol").has_password);
    data.rt.block_on(async {
        assert!(data
            .store
            .find_session(b"live-session", Data::now())
            .await
            .unwrap()
            .is_none());
    });
}

/// Like the console's Block: sessions end and requests pending on the phone are withdrawn, at
/// once, and the line says how many sessions ended.
#[test]
fn user_block_ends_sessions_cancels_requests_and_is_audited() {
    let dir = common::data_dir();
    let d = dir.path();
    add_user(d, "erin");
    let data = Data::open(d);
    let erin = data.user("erin");
    let pending = data.signed_in_with_a_pending_request(erin.id);
    let out = sesame(d, &["--json", "user", "block", "erin"], None);
    let out: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out["sessions_ended"], 1, "{out}");
    assert_eq!(out["requests_cancelled"], 1, "{out}");
    let e = one_line(d, "admin_user_blocked", "erin", "sesame user block");
    assert_eq!(e["reason"], "cli:tester; ended 1 session(s)");
    data.rt.block_on(async {
        assert!(
            data.store
                .find_user(erin.id)
                .await
                .unwrap()
                .unwrap()
                .is_blocked
        );
        assert!(data
            .store
            .find_session(b"live-session", Data::now())
            .await
            .unwrap()
            .is_none());
        let c = data.store.find_challenge(&pending).await.unwrap().unwrap();
        assert_eq!(c.state, ChallengeState::Cancelled);
    });
}

#[test]
fn user_unblock_lifts_both_blocks_and_is_audited() {
    let dir = common::data_dir();
    let d = dir.path();
    add_user(d, "erin");
    let data = Data::open(d);
    let erin = data.user("erin");
    sesame(d, &["user", "block", "erin"], None);
    data.rt.block_on(async {
        data.store
            .update_user_push_blocked(erin.id, Some(Data::now()))
            .await
            .unwrap()
    });
    sesame(d, &["user", "unblock", "erin"], None);
    one_line(d, "admin_user_unblocked", "erin", "sesame user unblock");
    let after = data.user("erin");
    assert!(
        !after.is_blocked && after.push_blocked_at.is_none(),
        "{after:?}"
    );
}

#[test]
fn user_unlock_clears_the_counters_and_is_audited() {
    let dir = common::data_dir();
    let d = dir.path();
    add_user(d, "fay");
    let data = Data::open(d);
    let fay = data.user("fay");
    data.rt.block_on(async {
        let policy = sesame_core::lockout::LockoutPolicy::default();
        for kind in [MethodKind::Totp, MethodKind::Push] {
            for _ in 0..3 {
                data.store
                    .reserve_attempt(fay.id, kind, &policy, Data::now())
                    .await
                    .unwrap();
            }
        }
    });
    // Wrong passwords: seven by name from unknown browsers, two in a known browser.
    let by_name = format!("account:{}:fay", fay.tenant.0);
    let browser = format!("browser:{}:00ff", fay.id.0);
    data.rt.block_on(async {
        data.store
            .set_guesses_if(&by_name, 0, 7, Data::now())
            .await
            .unwrap();
        data.store
            .set_guesses_if(&browser, 0, 2, Data::now())
            .await
            .unwrap();
    });
    let shown: Value =
        serde_json::from_slice(&sesame(d, &["--json", "user", "show", "fay"], None).stdout)
            .unwrap();
    assert_eq!(shown["passwords"]["failures"], 7, "{shown}");
    assert_eq!(shown["passwords"]["state"], "waiting", "{shown}");
    assert_eq!(shown["passwords"]["browsers"].as_array().unwrap().len(), 1);
    let text = String::from_utf8(sesame(d, &["user", "show", "fay"], None).stdout).unwrap();
    assert!(text.contains("Wrong passwords: 7 in a row"), "{text}");
    sesame(d, &["user", "unlock", "fay"], None);
    one_line(d, "admin_user_unlocked", "fay", "sesame user unlock");
    data.rt.block_on(async {
        for kind in [MethodKind::Totp, MethodKind::Push] {
            assert_eq!(data.store.find_failures(fay.id, kind).await.unwrap().0, 0);
        }
        assert_eq!(data.store.find_guesses(&by_name).await.unwrap().0, 0);
        assert_eq!(data.store.find_guesses(&browser).await.unwrap().0, 0);
    });
    let text = String::from_utf8(sesame(d, &["user", "show", "fay"], None).stdout).unwrap();
    assert!(!text.contains("Wrong passwords"), "{text}");
}

#[test]
fn user_remove_is_audited() {
    let dir = common::data_dir();
    let d = dir.path();
    add_user(d, "gus");
    sesame(d, &["user", "remove", "gus"], None);
    one_line(d, "admin_user_removed", "gus", "sesame user remove");
    let data = Data::open(d);
    data.rt.block_on(async {
        let t = data.store.default_tenant().await.unwrap();
        assert!(data
            .store
            .find_user_by_username(t, "gus")
            .await
            .unwrap()
            .is_none());
    });
}

/// User ids are never handed out again: a user created after another was removed never shows
/// the removed user's lines in `sesame log --user`.
#[test]
fn a_new_user_never_inherits_a_removed_users_log_lines() {
    let dir = common::data_dir();
    let d = dir.path();
    add_user(d, "helper");
    add_user(d, "gone");
    sesame(d, &["user", "block", "gone"], None);
    sesame(d, &["user", "remove", "gone"], None);
    add_user(d, "newcomer");
    let out = sesame(d, &["--json", "log", "--user", "newcomer"], None);
    let log: Value = serde_json::from_slice(&out.stdout).unwrap();
    let lines = log.as_array().unwrap();
    assert!(!lines.is_empty());
    assert!(
        lines.iter().all(|e| e["username"] == "newcomer"),
        "{lines:?}"
    );
    let data = Data::open(d);
    assert!(data.user("newcomer").id.0 > data.user("helper").id.0 + 1);
}

#[test]
fn group_add_is_audited() {
    let dir = common::data_dir();
    let d = dir.path();
    sesame(d, &["group", "add", "Pilot"], None);
    let e = one_line(d, "admin_group_created", "cli:tester", "sesame group add");
    assert_eq!(e["reason"], "cli:tester; group Pilot");
}

#[test]
fn user_list_names_open_fraud_reports() {
    let dir = common::data_dir();
    let d = dir.path();
    add_user(d, "hal");
    add_user(d, "ivy");
    let listed = String::from_utf8(sesame(d, &["user", "list"], None).stdout).unwrap();
    assert!(!listed.contains("Fraud report"), "{listed}");
    let data = Data::open(d);
    let hal = data.user("hal");
    data.rt
        .block_on(
            data.store
                .update_user_push_blocked(hal.id, Some(1_750_000_000)),
        )
        .unwrap();
    let listed = String::from_utf8(sesame(d, &["user", "list"], None).stdout).unwrap();
    assert!(
        listed.contains("Fraud report: hal said a sign-in request was not theirs")
            && listed.contains("sesame user unblock hal")
            && !listed.contains("Fraud report: ivy"),
        "{listed}"
    );
}

#[test]
fn group_remove_is_audited_keeps_members_and_waits_for_the_policy() {
    let dir = common::data_dir();
    let d = dir.path();
    add_user(d, "hal");
    sesame(d, &["group", "add", "Pilot"], None);
    sesame(d, &["group", "add-member", "Pilot", "hal"], None);
    sesame(d, &["policy", "set", "--targets", "Pilot"], None);
    let out = common::run(d, &["group", "remove", "Pilot"], None, &[("USER", OS_USER)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("change the policy first"), "{err}");
    sesame(d, &["policy", "set", "--targets", "all"], None);
    sesame(d, &["group", "remove", "Pilot"], None);
    let e = one_line(
        d,
        "admin_group_removed",
        "cli:tester",
        "sesame group remove",
    );
    assert_eq!(e["reason"], "cli:tester; group Pilot");
    let groups = sesame(d, &["--json", "group", "list"], None);
    assert_eq!(String::from_utf8_lossy(&groups.stdout).trim(), "[]");
    let users = sesame(d, &["--json", "user", "list"], None);
    assert!(String::from_utf8_lossy(&users.stdout).contains("hal"));
}

#[test]
fn group_membership_changes_are_audited_once_each() {
    let dir = common::data_dir();
    let d = dir.path();
    add_user(d, "hal");
    sesame(d, &["group", "add", "Pilot"], None);
    sesame(d, &["group", "add-member", "Pilot", "hal"], None);
    // Adding a member twice changes nothing and writes no second line.
    sesame(d, &["group", "add-member", "Pilot", "hal"], None);
    let e = one_line(
        d,
        "admin_group_member_added",
        "hal",
        "sesame group add-member",
    );
    assert_eq!(e["reason"], "cli:tester; group Pilot");
    sesame(d, &["group", "remove-member", "Pilot", "hal"], None);
    sesame(d, &["group", "remove-member", "Pilot", "hal"], None);
    let e = one_line(
        d,
        "admin_group_member_removed",
        "hal",
        "sesame group remove-member",
    );
    assert_eq!(e["reason"], "cli:tester; group Pilot");
}

#[test]
fn policy_set_is_audited() {
    let dir = common::data_dir();
    let d = dir.path();
    sesame(d, &["policy", "set", "--digits", "6"], None);
    let e = &lines(d, "policy_changed")[0];
    assert_eq!(e["username"], "cli:tester", "{e}");
    assert_eq!(e["user_agent"], "sesame policy set", "{e}");
    assert_eq!(e["reason"], "digits: 2 -> 6", "{e}");
}
