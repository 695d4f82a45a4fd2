//! New user and group names are checked with a message that says what is allowed.

mod common;

fn run(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = common::run(dir, args, None, &[]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn names_with_punctuation_are_refused_with_what_is_allowed() {
    let dir = common::data_dir();
    let d = dir.path();
    let (ok, err) = run(d, &["user", "add", "bad!", "--no-password"]);
    assert!(!ok);
    assert!(
        err.contains("letters, digits and . _ - @ + ' only") && err.contains("\"!\""),
        "{err}"
    );
    let (ok, err) = run(d, &["user", "add", "bad name", "--no-password"]);
    assert!(!ok);
    assert!(err.contains("cannot contain spaces"), "{err}");
    let (ok, err) = run(d, &["group", "add", "bad group!"]);
    assert!(!ok);
    assert!(err.contains("group name can contain letters"), "{err}");
    // What people do use still works.
    assert!(
        run(
            d,
            &["user", "add", "alice.smith@example.com", "--no-password"]
        )
        .0
    );
    assert!(run(d, &["group", "add", "Pilot users (EU)"]).0);
    let list = common::run(d, &["--json", "user", "list"], None, &[]);
    let users = String::from_utf8_lossy(&list.stdout);
    assert!(!users.contains("bad"), "{users}");
}
