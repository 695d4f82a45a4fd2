//! `sesame user access-pass`: create (shown once), show (never the pass), revoke, audited.

mod common;
use common::{data_dir, run};

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_pass_is_created_shown_once_shown_about_and_revoked() {
    let dir = data_dir();
    let d = dir.path();
    ok(&run(
        d,
        &["user", "add", "carol", "--no-password"],
        None,
        &[],
    ));
    // Lifetimes outside 10 minutes to 30 days, and unknown users, are refused.
    for bad in ["5m", "31d", "soon"] {
        let out = run(
            d,
            &["user", "access-pass", "create", "carol", "--lifetime", bad],
            None,
            &[],
        );
        assert!(!out.status.success(), "{bad}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--lifetime"),
            "{bad}"
        );
    }
    let out = run(d, &["user", "access-pass", "create", "nobody"], None, &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user named"));
    let made: serde_json::Value = serde_json::from_str(&ok(&run(
        d,
        &[
            "--json",
            "user",
            "access-pass",
            "create",
            "carol",
            "--lifetime",
            "8h",
            "--multi-use",
        ],
        None,
        &[],
    )))
    .unwrap();
    let pass = made["pass"].as_str().unwrap().to_string();
    assert_eq!(pass.len(), 19);
    assert_eq!(made["one_time"], false);
    let shown = ok(&run(
        d,
        &["user", "access-pass", "show", "carol"],
        None,
        &[],
    ));
    assert!(shown.contains("multi-use"), "{shown}");
    assert!(!shown.contains(&pass), "the pass is shown only when made");
    let log = ok(&run(d, &["--json", "log", "--user", "carol"], None, &[]));
    assert!(log.contains("admin_access_pass_created"), "{log}");
    assert!(!log.contains(&pass), "nor is it in the log");
    // The database holds no copy of it.
    for f in ["sesame.db", "sesame.db-wal"] {
        let bytes = std::fs::read(d.join(f)).unwrap_or_default();
        let plain = pass.replace('-', "");
        assert!(
            !bytes.windows(plain.len()).any(|w| w == plain.as_bytes()),
            "{f}"
        );
    }
    let out = ok(&run(
        d,
        &["user", "access-pass", "revoke", "carol"],
        None,
        &[],
    ));
    assert!(out.contains("Revoked"), "{out}");
    let out = ok(&run(
        d,
        &["user", "access-pass", "show", "carol"],
        None,
        &[],
    ));
    assert!(out.contains("has no Temporary Access Pass"), "{out}");
    let out = ok(&run(
        d,
        &["user", "access-pass", "revoke", "carol"],
        None,
        &[],
    ));
    assert!(out.contains("had no"), "{out}");
}
