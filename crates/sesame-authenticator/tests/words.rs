//! What the app says to someone finding their way: the help of `respond` and `unregister`,
//! the links `add` takes (a Sesame activation link as well as any site's otpauth:// link)
//! wherever the app points at `add`, and counts with the right noun.

use std::path::Path;
use std::process::{Command, Output};

fn app(vault: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sesame-authenticator"))
        .arg("--vault")
        .arg(vault)
        .args(args)
        .env_remove("SESAME_AUTHENTICATOR_VAULT")
        .env_remove("SESAME_AUTHENTICATOR_PIN")
        .env_remove("SESAME_AUTHENTICATOR_NEW_PIN")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run sesame-authenticator")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
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

/// `--help` of `args`, as printed.
fn raw_help(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut args = args.to_vec();
    args.push("--help");
    ok(&app(&dir.path().join("vault"), &args, &[]))
}

/// `--help` of `args`, its lines joined, so that a test does not depend on where they break.
fn help(args: &[&str]) -> String {
    raw_help(args)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// What `--help` of `args` says of `option`: the rest of the line that starts with it.
fn option_help(args: &[&str], option: &str) -> String {
    raw_help(args)
        .lines()
        .map(str::trim_start)
        .find_map(|l| l.strip_prefix(&format!("{option} ")))
        .unwrap_or_else(|| panic!("no {option} in the help of {args:?}"))
        .trim()
        .to_string()
}

#[test]
fn respond_help_says_what_each_answer_does() {
    let approve = option_help(&["respond"], "--approve");
    assert!(approve.contains("Approve: this is me."), "{approve}");
    assert!(approve.contains("signs in"), "{approve}");
    let deny = option_help(&["respond"], "--deny");
    assert!(
        deny.contains("Deny: the sign-in fails, and nothing else happens."),
        "{deny}"
    );
    let report = option_help(&["respond"], "--report");
    for want in [
        "Deny and report: this wasn't me.",
        "requests to your phone are blocked until an administrator unblocks them",
        "your administrator is told",
    ] {
        assert!(report.contains(want), "{want:?} not in {report:?}");
    }
    let number = option_help(&["respond"], "--number <NUMBER>");
    assert!(number.contains("the sign-in page"), "{number}");
}

#[test]
fn unregister_help_says_what_it_does_and_how_it_differs_from_remove() {
    let h = help(&["unregister"]);
    for want in [
        "Unregister this device from a Sesame account, then remove the account from this app.",
        "The server forgets the device",
        "`remove`, by contrast, only forgets the account in this app and leaves the device registered on the server.",
        "<ACCOUNT> The Sesame account",
    ] {
        assert!(h.contains(want), "{want:?} not in {h:?}");
    }
    let remove = help(&["remove"]);
    for want in [
        "the server is not told",
        "To remove it there too, use `unregister`.",
    ] {
        assert!(remove.contains(want), "{want:?} not in {remove:?}");
    }
    // The list of commands says it in short.
    let all = help(&[]);
    assert!(
        all.contains("unregister Unregister this device from a Sesame account"),
        "{all}"
    );
}

#[test]
fn an_empty_app_names_both_links_add_takes() {
    let dir = tempfile::tempdir().unwrap();
    let vault = dir.path().join("vault");
    for args in [&["list"][..], &["code"][..]] {
        let said = ok(&app(&vault, args, &[]));
        assert!(said.starts_with("No accounts yet."), "{args:?}: {said}");
        for want in [
            "sesame-authenticator add 'sesame://activate?...'",
            "My security info",
            "sesame-authenticator add 'otpauth://totp/...'",
        ] {
            assert!(said.contains(want), "{args:?}: {want:?} not in {said}");
        }
    }
}

#[test]
fn a_link_of_neither_kind_names_both_kinds() {
    let dir = tempfile::tempdir().unwrap();
    let vault = dir.path().join("vault");
    for link in [
        "https://sesame.example.com/security-info",
        "JBSWY3DPEHPK3PXP",
        "",
    ] {
        let e = err(&app(&vault, &["add", link], &[]));
        for want in [
            "neither a Sesame activation link (sesame://activate?...",
            "nor an otpauth:// link",
        ] {
            assert!(e.contains(want), "{link:?}: {want:?} not in {e}");
        }
    }
    // Other faults of an otpauth:// link keep their own words.
    let e = err(&app(
        &vault,
        &["add", "otpauth://hotp/x?secret=GEZDGNBV"],
        &[],
    ));
    assert!(e.contains("time-based"), "{e}");
    assert!(!e.contains("neither"), "{e}");
    // A link pasted with spaces around it is still a link.
    let said = ok(&app(
        &vault,
        &["add", "  otpauth://totp/A:one?secret=GEZDGNBVGY3TQOJQ\n"],
        &[],
    ));
    assert!(said.starts_with("Added A: one."), "{said}");
}

#[test]
fn pin_change_counts_account_keys_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let vault = dir.path().join("vault");
    ok(&app(
        &vault,
        &["pin", "set"],
        &[("SESAME_AUTHENTICATOR_PIN", "482913")],
    ));
    let said = ok(&app(
        &vault,
        &["pin", "change"],
        &[
            ("SESAME_AUTHENTICATOR_PIN", "482913"),
            ("SESAME_AUTHENTICATOR_NEW_PIN", "715302"),
        ],
    ));
    assert_eq!(said, "App PIN changed (0 account keys updated).\n");
}
