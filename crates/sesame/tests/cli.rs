//! The `sesame` binary as an administrator uses it.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn sesame(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    common::run(dir, args, stdin, &[])
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn err(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "unexpectedly succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr.clone()).unwrap()
}

#[test]
fn user_lifecycle_with_json_output() {
    let dir = common::data_dir();
    let d = dir.path();
    ok(&sesame(
        d,
        &[
            "user",
            "add",
            "alice",
            "--display-name",
            "Alice A.",
            "--password-stdin",
        ],
        Some("correct horse\n"),
    ));
    assert!(err(&sesame(
        d,
        &["user", "add", "ALICE", "--password-stdin"],
        Some("correct horse\n")
    ))
    .contains("already exists"));
    assert!(err(&sesame(
        d,
        &["user", "add", "bob", "--password-stdin"],
        Some("short\n")
    ))
    .contains("at least 8"));
    ok(&sesame(
        d,
        &["user", "add", "carol", "--no-password", "--admin"],
        None,
    ));
    let list: serde_json::Value =
        serde_json::from_str(&ok(&sesame(d, &["--json", "user", "list"], None))).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "carol"]);
    assert_eq!(list[1]["is_admin"], true);
    assert_eq!(list[1]["has_password"], false);
    assert!(
        list[0].get("password_hash").is_none(),
        "hashes are never printed"
    );

    ok(&sesame(d, &["user", "block", "alice"], None));
    let show: serde_json::Value =
        serde_json::from_str(&ok(&sesame(d, &["--json", "user", "show", "alice"], None))).unwrap();
    assert_eq!(show["is_blocked"], true);
    assert_eq!(show["display_name"], "Alice A.");
    ok(&sesame(d, &["user", "unblock", "alice"], None));
    ok(&sesame(
        d,
        &["user", "set-password", "alice", "--password-stdin"],
        Some("another horse\n"),
    ));
    assert!(err(&sesame(d, &["user", "remove", "carol"], None)).contains("last administrator"));
    ok(&sesame(d, &["user", "remove", "alice"], None));
    assert!(err(&sesame(d, &["user", "show", "alice"], None)).contains("no user named"));
}

#[test]
fn password_is_never_an_argument() {
    let dir = common::data_dir();
    let out = sesame(
        dir.path(),
        &["user", "add", "dave", "--password", "secret123"],
        None,
    );
    assert!(!out.status.success());
    // Without a terminal and without --password-stdin the command explains what to do.
    let e = err(&sesame(dir.path(), &["user", "add", "dave"], None));
    assert!(e.contains("--password-stdin"), "{e}");
}

#[test]
fn groups_and_membership() {
    let dir = common::data_dir();
    let d = dir.path();
    ok(&sesame(d, &["user", "add", "erin", "--no-password"], None));
    ok(&sesame(d, &["group", "add", "Pilot"], None));
    assert!(err(&sesame(d, &["group", "add", "pilot"], None)).contains("already exists"));
    assert!(ok(&sesame(d, &["group", "add-member", "pilot", "erin"], None)).contains("Added erin"));
    assert!(ok(&sesame(d, &["group", "add-member", "pilot", "erin"], None)).contains("already"));
    let groups: serde_json::Value =
        serde_json::from_str(&ok(&sesame(d, &["--json", "group", "list"], None))).unwrap();
    assert_eq!(groups[0]["member_count"], 1);
    assert!(err(&sesame(
        d,
        &["group", "add-member", "pilot", "nobody"],
        None
    ))
    .contains("no user named"));
    ok(&sesame(
        d,
        &["group", "remove-member", "Pilot", "erin"],
        None,
    ));
}

#[test]
fn config_example_and_unknown_keys() {
    let dir = common::data_dir();
    let example = ok(&sesame(dir.path(), &["config", "example"], None));
    let file = dir.path().join("sesame.toml");
    std::fs::write(&file, &example).unwrap();
    ok(&sesame(
        dir.path(),
        &["--config", file.to_str().unwrap(), "user", "list"],
        None,
    ));
    std::fs::write(&file, "listen = \"127.0.0.1:1\"\nsurprise = 1\n").unwrap();
    assert!(err(&sesame(
        dir.path(),
        &["--config", file.to_str().unwrap(), "user", "list"],
        None
    ))
    .contains("surprise"));
}

#[test]
fn serve_refuses_invalid_push_settings() {
    let dir = common::data_dir();
    let file = dir.path().join("sesame.toml");
    std::fs::write(&file, "[server.push]\ndigits = 12\n").unwrap();
    let e = err(&sesame(
        dir.path(),
        &[
            "--config",
            file.to_str().unwrap(),
            "serve",
            "--listen",
            "127.0.0.1:0",
        ],
        None,
    ));
    assert!(e.contains("digits must be 2 to 8"), "{e}");
}

#[test]
fn master_key_generate_never_overwrites() {
    let dir = common::data_dir();
    let key = dir.path().join("shared.key");
    ok(&sesame(
        dir.path(),
        &["master-key", "generate", key.to_str().unwrap()],
        None,
    ));
    let first = std::fs::read(&key).unwrap();
    err(&sesame(
        dir.path(),
        &["master-key", "generate", key.to_str().unwrap()],
        None,
    ));
    assert_eq!(std::fs::read(&key).unwrap(), first);
}

#[test]
fn log_filters_are_validated() {
    let dir = common::data_dir();
    assert!(ok(&sesame(dir.path(), &["log"], None)).contains("no entries"));
    err(&sesame(dir.path(), &["log", "--result", "maybe"], None));
    assert!(err(&sesame(dir.path(), &["log", "--user", "ghost"], None)).contains("no user named"));
}

#[test]
fn serve_prints_a_setup_link_and_stops_on_sigterm() {
    let dir = common::data_dir();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sesame"))
        .args([
            "--data-dir",
            dir.path().to_str().unwrap(),
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .env_remove("SESAME_DATA_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let running = lines.next().unwrap().unwrap();
    assert!(
        running.starts_with("Sesame is running at http://127.0.0.1:"),
        "{running}"
    );
    assert!(lines
        .next()
        .unwrap()
        .unwrap()
        .contains("No administrator exists yet"));
    let link = lines.next().unwrap().unwrap();
    assert!(link.trim().contains("/setup?token="), "{link}");
    let key = dir.path().join("master.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "graceful shutdown exits 0, got {exit:?}");
}

/// A SIGTERM stops the server within its shutdown deadline even while a client holds a
/// request half-sent (before, such a request kept the process running for ever).
#[test]
fn sigterm_stops_within_the_deadline_while_a_request_is_half_sent() {
    use std::io::Write;
    let dir = common::data_dir();
    let config = dir.path().join("sesame.toml");
    std::fs::write(
        &config,
        "[server.connections]\nheader_read_secs = 60\nbody_read_secs = 60\nshutdown_secs = 2\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sesame"))
        .args([
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            dir.path().to_str().unwrap(),
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .env_remove("SESAME_DATA_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let running = lines.next().unwrap().unwrap();
    let addr = running
        .trim_start_matches("Sesame is running at http://")
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let mut half = std::net::TcpStream::connect(&addr).unwrap();
    half.write_all(b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\nuser")
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let sent = std::time::Instant::now();
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        if sent.elapsed() > std::time::Duration::from_secs(10) {
            let _ = child.kill();
            panic!("still running 10 s after SIGTERM");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
    assert!(
        sent.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        sent.elapsed()
    );
    drop(half);
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&ok(out)).expect("valid JSON")
}

#[test]
fn policy_show_prints_the_initial_policy() {
    let dir = common::data_dir();
    let d = dir.path();
    let text = ok(&sesame(d, &["policy", "show"], None));
    assert!(text.contains("Authenticator app:"), "{text}");
    assert!(text.contains("enabled"), "{text}");
    assert!(text.contains("all users, mode any"), "{text}");
    assert!(text.contains("nobody"), "{text}");
    assert!(text.contains("initial policy"), "{text}");
    let p = json(&sesame(d, &["--json", "policy", "show"], None));
    assert_eq!(p["version"], 0);
    assert_eq!(p["authenticator"]["enabled"], true);
    assert_eq!(p["authenticator"]["targets"]["type"], "all");
    assert_eq!(p["authenticator"]["targets"]["mode"], "any");
    // Number and lifetime come from the server's [server.push] settings until changed.
    assert_eq!(p["authenticator"]["digits"], 2);
    assert_eq!(p["authenticator"]["lifetime_secs"], 120);
    assert_eq!(p["mfa_required"]["type"], "nobody");
}

#[test]
fn policy_set_targets_a_group_in_passwordless_mode_and_requires_mfa() {
    let dir = common::data_dir();
    let d = dir.path();
    ok(&sesame(d, &["group", "add", "Pilot"], None));
    let e = err(&sesame(d, &["policy", "set"], None));
    assert!(e.contains("nothing to change"), "{e}");
    let text = ok(&sesame(
        d,
        &[
            "policy",
            "set",
            "--targets",
            "pilot=passwordless",
            "--mfa-required",
            "all",
        ],
        None,
    ));
    assert!(text.contains("Policy changed"), "{text}");
    assert!(text.contains("Pilot (passwordless)"), "{text}");
    let p = json(&sesame(d, &["--json", "policy", "show"], None));
    assert_eq!(p["version"], 1);
    let targets = &p["authenticator"]["targets"];
    assert_eq!(targets["type"], "groups");
    assert_eq!(targets["groups"][0]["mode"], "passwordless");
    let id = targets["groups"][0]["group"].to_string();
    assert_eq!(p["group_names"][&id], "Pilot");
    assert_eq!(p["mfa_required"]["type"], "all");

    // The other settings, with --json output.
    let p = json(&sesame(
        d,
        &[
            "--json",
            "policy",
            "set",
            "--digits",
            "6",
            "--lifetime",
            "60",
            "--pin-required",
            "true",
            "--show-location",
            "false",
            "--authenticator",
            "disabled",
        ],
        None,
    ));
    assert_eq!(p["version"], 2);
    let a = &p["authenticator"];
    assert_eq!(
        (&a["digits"], &a["lifetime_secs"], &a["pin_required"]),
        (&6.into(), &60.into(), &true.into())
    );
    assert_eq!(
        (&a["show_location"], &a["enabled"]),
        (&false.into(), &false.into())
    );
    assert!(
        p["changed"].as_str().unwrap().contains("digits: 2 -> 6"),
        "{p}"
    );
    // Back to everyone, in one mode.
    let p = json(&sesame(
        d,
        &[
            "--json",
            "policy",
            "set",
            "--targets",
            "all",
            "--mode",
            "push",
        ],
        None,
    ));
    assert_eq!(p["authenticator"]["targets"]["type"], "all");
    assert_eq!(p["authenticator"]["targets"]["mode"], "push");
}

#[test]
fn policy_set_refuses_unknown_groups_and_bad_values_and_changes_nothing() {
    let dir = common::data_dir();
    let d = dir.path();
    ok(&sesame(d, &["group", "add", "Pilot"], None));
    for (args, message) in [
        (&["--targets", "nosuch"][..], "no group named \"nosuch\""),
        (
            &["--mfa-required", "pilot,ghosts"][..],
            "no group named \"ghosts\"",
        ),
        (&["--targets", "pilot=sometimes"][..], "unknown mode"),
        (&["--mode", "sometimes"][..], "unknown mode"),
        (&["--digits", "12"][..], "digits must be 2 to 8"),
        (&["--lifetime", "5"][..], "lifetime must be 10 to 600"),
        (&["--pin-required", "maybe"][..], "maybe"),
    ] {
        let mut all = vec!["policy", "set"];
        all.extend_from_slice(args);
        let e = err(&sesame(d, &all, None));
        assert!(e.contains(message), "{args:?}: {e}");
    }
    let p = json(&sesame(d, &["--json", "policy", "show"], None));
    assert_eq!(p["version"], 0, "nothing was saved");
    assert_eq!(p["authenticator"]["targets"]["type"], "all");
    let log = json(&sesame(d, &["--json", "log"], None));
    let policy_lines = |log: &serde_json::Value| {
        log.as_array()
            .unwrap()
            .iter()
            .filter(|e| e["event"] == "policy_changed")
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(policy_lines(&log).len(), 0, "{log}");
}

#[test]
fn policy_changes_are_in_the_audit_log() {
    let dir = common::data_dir();
    let d = dir.path();
    ok(&sesame(d, &["group", "add", "Pilot"], None));
    let args = [
        "policy",
        "set",
        "--targets",
        "Pilot=passwordless",
        "--mfa-required",
        "all",
    ];
    ok(&sesame(d, &args, None));
    // The same change again changes nothing and adds no line.
    assert!(ok(&sesame(d, &args, None)).contains("Nothing changed"));
    let log = json(&sesame(d, &["--json", "log"], None));
    let entries: Vec<_> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "policy_changed")
        .collect();
    assert_eq!(entries.len(), 1, "{log}");
    let e = entries[0];
    assert_eq!(e["result"], "success");
    assert!(e["username"].as_str().unwrap().starts_with("cli"), "{e}");
    assert_eq!(e["ip"], "local");
    assert_eq!(e["user_agent"], "sesame policy set");
    let reason = e["reason"].as_str().unwrap();
    assert!(
        reason.contains("authenticator.targets: all users (any) -> groups [Pilot=passwordless]"),
        "{reason}"
    );
    assert!(
        reason.contains("mfa_required: nobody -> all users"),
        "{reason}"
    );
    assert!(ok(&sesame(d, &["log"], None)).contains("policy_changed"));
}

/// A lost phone: `user reset-methods` removes the methods and the registered devices (a device
/// left behind could still approve requests), withdraws pending requests, and is audited.
#[test]
fn reset_methods_removes_devices_and_pending_requests() {
    use sesame_store::{MasterKey, NewChallenge, NewDevice};
    let dir = common::data_dir();
    let d = dir.path();
    ok(&sesame(d, &["user", "add", "frank", "--no-password"], None));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let open = || async {
        let key = MasterKey::load_or_create(&d.join("master.key")).unwrap();
        sesame_store::open(
            &sesame_store::Backend::sqlite_url(&d.join("sesame.db")),
            key,
        )
        .await
        .unwrap()
    };
    let (user, challenge) = rt.block_on(async {
        let store = open().await;
        let tenant = store.default_tenant().await.unwrap();
        let user = store
            .find_user_by_username(tenant, "frank")
            .await
            .unwrap()
            .unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        store
            .create_activation(user.id, &[7; 32], now + 600)
            .await
            .unwrap();
        assert_eq!(
            store.consume_activation(&[7; 32], now).await.unwrap(),
            Some(user.id)
        );
        store
            .create_device(
                NewDevice {
                    tenant,
                    user: user.id,
                    name: "Frank's phone".into(),
                    alg: "ES256".into(),
                    public_key: vec![4; 65],
                },
                &[7; 32],
                &sesame_core::secret::SecretBytes::new(vec![9; 20]),
                now,
            )
            .await
            .unwrap();
        assert_eq!(store.list_devices(user.id).await.unwrap().len(), 1);
        let (c, _) = store
            .create_challenge(
                NewChallenge {
                    tenant,
                    user: user.id,
                    signin_id_hash: vec![1; 32],
                    kind: sesame_core::push::ChallengeKind::PhoneSignIn,
                    channel: sesame_core::push::ApprovalChannel::App,
                    number: "42".into(),
                    app_name: "Sesame".into(),
                    ip: "127.0.0.1".into(),
                    location: "This computer".into(),
                    user_agent: "test".into(),
                    expires_at: now + 120,
                    browser: None,
                    budget: None,
                },
                now,
                None,
            )
            .await
            .unwrap();
        (user, c.id)
    });

    let shown = ok(&sesame(d, &["user", "show", "frank"], None));
    assert!(shown.contains("Frank's phone"), "{shown}");
    assert!(shown.contains("phone sign-in off"), "{shown}");
    let shown = json(&sesame(d, &["--json", "user", "show", "frank"], None));
    assert_eq!(shown["devices"][0]["name"], "Frank's phone", "{shown}");
    assert!(
        shown["devices"][0].get("pin_key").is_none(),
        "keys stay out: {shown}"
    );

    let out = json(&sesame(
        d,
        &["--json", "user", "reset-methods", "frank"],
        None,
    ));
    assert_eq!(out["devices_removed"], 1, "{out}");
    assert!(out["methods_removed"].as_u64().unwrap() >= 1, "{out}");

    rt.block_on(async {
        let store = open().await;
        assert!(store.list_devices(user.id).await.unwrap().is_empty());
        assert!(store.list_methods(user.id).await.unwrap().is_empty());
        let c = store.find_challenge(&challenge).await.unwrap().unwrap();
        assert_ne!(c.state, sesame_core::push::ChallengeState::Pending, "{c:?}");
    });
    let shown = ok(&sesame(d, &["user", "show", "frank"], None));
    assert!(shown.contains("(none registered)"), "{shown}");
    let log = ok(&sesame(d, &["log", "--user", "frank"], None));
    assert!(log.contains("admin_methods_reset"), "{log}");
    assert!(log.contains("1 device(s) removed"), "{log}");
}

/// Admin commands work on an installation; run from the wrong folder they say so, and create
/// nothing there.
#[test]
fn admin_commands_never_create_a_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let nowhere = dir.path().join("sesame-data");
    for args in [
        &["user", "list"][..],
        &["group", "add", "x"],
        &["log"],
        &["policy", "show"],
    ] {
        let e = err(&sesame(&nowhere, args, None));
        assert!(e.contains("no Sesame data"), "{args:?}: {e}");
        assert!(e.contains("sesame init"), "{e}");
    }
    assert!(!nowhere.exists(), "nothing was created");
    ok(&sesame(&nowhere, &["init"], None));
    assert!(nowhere.join("sesame.db").exists() && nowhere.join("master.key").exists());
    ok(&sesame(&nowhere, &["user", "list"], None));
}

/// A database whose master key went missing is refused (by the server too), and no new key
/// is made: a new one would make every stored secret unreadable.
#[test]
fn a_database_without_its_master_key_is_refused() {
    let dir = common::data_dir();
    let d = dir.path();
    std::fs::remove_file(d.join("master.key")).unwrap();
    for args in [&["user", "list"][..], &["serve", "--listen", "127.0.0.1:0"]] {
        let e = err(&sesame(d, args, None));
        assert!(e.contains("master key"), "{args:?}: {e}");
        assert!(e.contains("master.key") && e.contains("restore"), "{e}");
    }
    assert!(!d.join("master.key").exists(), "no new key was written");
}

/// A key beside an empty or missing database is a lost installation, not a new one.
#[test]
fn an_empty_or_missing_database_beside_its_key_is_refused() {
    let dir = common::data_dir();
    let d = dir.path();
    std::fs::write(d.join("sesame.db"), b"").unwrap();
    for f in ["sesame.db-wal", "sesame.db-shm"] {
        let _ = std::fs::remove_file(d.join(f));
    }
    let e = err(&sesame(d, &["serve", "--listen", "127.0.0.1:0"], None));
    assert!(e.contains("is empty") && e.contains("sesame.db"), "{e}");
    std::fs::remove_file(d.join("sesame.db")).unwrap();
    let e = err(&sesame(d, &["user", "list"], None));
    assert!(e.contains("is missing") && e.contains("sesame.db"), "{e}");
    assert!(!d.join("sesame.db").exists(), "no new database was made");
}

/// Nodes that share a database share a key made beforehand: a named key may come first.
#[test]
fn a_named_shared_key_may_come_before_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("shared.key");
    ok(&sesame(
        dir.path(),
        &["master-key", "generate", key.to_str().unwrap()],
        None,
    ));
    let data = dir.path().join("node");
    ok(&sesame(
        &data,
        &["--master-key-file", key.to_str().unwrap(), "init"],
        None,
    ));
    assert!(data.join("sesame.db").exists());
    assert!(!data.join("master.key").exists(), "the shared key is used");
}

/// The server's log has colours only on a terminal: piped into a file or a journal it is plain.
#[test]
fn the_log_has_no_colour_codes_when_not_on_a_terminal() {
    let dir = common::data_dir();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sesame"))
        .args([
            "--data-dir",
            dir.path().to_str().unwrap(),
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .env_remove("SESAME_DATA_DIR")
        .env("SESAME_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // The first log line (the signing keys made on the first start, or the listener).
    let first = lines.next().unwrap().unwrap();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    assert!(first.contains("INFO"), "{first}");
    assert!(!first.contains('\u{1b}'), "{first:?}");
}

/// A stopped server leaves one whole database file: its write-ahead log is checkpointed at
/// shutdown, so `sesame.db` alone (copied, say) holds everything committed.
#[test]
fn a_stopped_server_leaves_one_whole_database_file() {
    let dir = common::data_dir();
    let d = dir.path();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sesame"))
        .args([
            "--data-dir",
            d.to_str().unwrap(),
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .env_remove("SESAME_DATA_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(lines
        .next()
        .unwrap()
        .unwrap()
        .starts_with("Sesame is running"));
    // Writes while it runs (the command line writes to the same database).
    for i in 0..20 {
        let out = common::run(
            d,
            &["user", "add", &format!("u{i:02}"), "--no-password"],
            None,
            &[],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    assert!(child.wait().unwrap().success());
    let wal = std::fs::metadata(d.join("sesame.db-wal")).map_or(0, |m| m.len());
    assert_eq!(wal, 0, "the log was checkpointed into the file");
    // The file alone, copied elsewhere without its log, is whole and holds every user.
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(d.join("sesame.db"), copy.path().join("alone.db")).unwrap();
    let c = rusqlite::Connection::open(copy.path().join("alone.db")).unwrap();
    let check: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let users: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM users WHERE username LIKE 'u%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(users, 20);
}
