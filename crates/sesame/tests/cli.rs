//! The `sesame` binary as an administrator uses it.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn sesame(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sesame"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("SESAME_DATA_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sesame");
    if let Some(input) = stdin {
        child
            .stdin
            .as_mut()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
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
    let dir = tempfile::tempdir().unwrap();
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
    let dir = tempfile::tempdir().unwrap();
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
    let dir = tempfile::tempdir().unwrap();
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
    let dir = tempfile::tempdir().unwrap();
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
    let dir = tempfile::tempdir().unwrap();
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
    let dir = tempfile::tempdir().unwrap();
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
    let dir = tempfile::tempdir().unwrap();
    assert!(ok(&sesame(dir.path(), &["log"], None)).contains("no entries"));
    err(&sesame(dir.path(), &["log", "--result", "maybe"], None));
    assert!(err(&sesame(dir.path(), &["log", "--user", "ghost"], None)).contains("no user named"));
}

#[test]
fn serve_prints_a_setup_link_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
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
