//! `sesame client` and `sesame keys`: applications registered, shown, given new secrets and
//! removed from the command line, each audited; signing keys listed and rotated.

mod common;

use serde_json::Value;
use std::path::Path;
use std::process::Output;

fn sesame(dir: &Path, args: &[&str]) -> Output {
    common::run(dir, args, None, &[("USER", "tester")])
}

fn ok_json(dir: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = sesame(dir, &all);
    assert!(
        out.status.success(),
        "sesame {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn events(dir: &Path, event: &str) -> Vec<Value> {
    ok_json(dir, &["log", "--limit", "1000"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == event)
        .cloned()
        .collect()
}

#[test]
fn clients_are_added_shown_rotated_and_removed_with_an_audit_line_each() {
    let dir = common::data_dir();
    let d = dir.path();
    let added = ok_json(
        d,
        &[
            "client",
            "add",
            "Hello App",
            "--redirect-uri",
            "http://127.0.0.1:3000/callback",
            "--post-logout-redirect-uri",
            "http://127.0.0.1:3000/",
            "--first-party",
        ],
    );
    let id = added["client"]["client_id"].as_str().unwrap().to_string();
    let secret = added["client_secret"].as_str().unwrap().to_string();
    assert!(secret.len() >= 43, "256 random bits");
    assert!(added["client"].get("secret_hash").is_none(), "{added}");
    // The text output shows the secret once, and `show` never does.
    let shown = ok_json(d, &["client", "show", &id]);
    assert_eq!(shown["name"], "Hello App");
    assert_eq!(shown["redirect_uris"][0], "http://127.0.0.1:3000/callback");
    let text = String::from_utf8(sesame(d, &["client", "show", &id]).stdout).unwrap();
    assert!(
        text.contains("confidential") && !text.contains(&secret),
        "{text}"
    );
    let list = ok_json(d, &["client", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
    let rotated = ok_json(d, &["client", "rotate-secret", &id]);
    assert_ne!(rotated["client_secret"], secret.as_str());
    // A public client has no secret to rotate.
    let public = ok_json(
        d,
        &[
            "client",
            "add",
            "SPA",
            "--public",
            "--redirect-uri",
            "https://spa.example/cb",
        ],
    );
    assert!(public["client_secret"].is_null());
    let pid = public["client"]["client_id"].as_str().unwrap();
    let out = sesame(d, &["client", "rotate-secret", pid]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("public client"));
    ok_json(d, &["client", "remove", &id]);
    let out = sesame(d, &["client", "show", &id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no application"));
    for (event, n) in [
        ("admin_client_added", 2),
        ("admin_client_secret_rotated", 1),
        ("admin_client_removed", 1),
    ] {
        let found = events(d, event);
        assert_eq!(found.len(), n, "{event}: {found:?}");
        assert!(found[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("cli:tester"));
    }
}

#[test]
fn unsafe_redirect_uris_and_unknown_algorithms_are_refused_with_a_reason() {
    let dir = common::data_dir();
    let d = dir.path();
    for (uri, says) in [
        ("http://app.example/cb", "https"),
        ("https://app.example/cb#x", "fragment"),
        ("https://evil@app.example/cb", "user"),
        ("javascript:alert(1)", "scheme"),
        ("/cb", "absolute"),
    ] {
        let out = sesame(d, &["client", "add", "App", "--redirect-uri", uri]);
        assert!(!out.status.success(), "{uri}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{uri}: {err}");
    }
    let out = sesame(
        d,
        &[
            "client",
            "add",
            "App",
            "--redirect-uri",
            "https://a.example/cb",
            "--id-token-alg",
            "HS256",
        ],
    );
    assert!(!out.status.success());
    assert!(ok_json(d, &["client", "list"])
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn keys_are_listed_and_rotated_with_the_old_one_kept_for_its_overlap() {
    let dir = common::data_dir();
    let d = dir.path();
    let keys = ok_json(d, &["keys", "list"]);
    let keys = keys.as_array().unwrap();
    let algs: Vec<&str> = keys.iter().map(|k| k["alg"].as_str().unwrap()).collect();
    assert_eq!(algs.len(), 3, "{keys:?}");
    for a in ["RS256", "ES256", "EdDSA"] {
        assert!(algs.contains(&a), "{algs:?}");
    }
    let old = keys.iter().find(|k| k["alg"] == "ES256").unwrap()["kid"].clone();
    let made = ok_json(d, &["keys", "rotate", "--alg", "ES256"]);
    let new = made[0]["kid"].clone();
    assert_ne!(new, old);
    let keys = ok_json(d, &["keys", "list"]);
    let find = |kid: &Value| {
        keys.as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == *kid)
            .cloned()
    };
    let old_now = find(&old).expect("still listed during its overlap");
    assert!(old_now["retired_at"].is_i64());
    assert!(old_now["published_until"].as_i64().unwrap() > old_now["retired_at"].as_i64().unwrap());
    assert!(find(&new).unwrap()["retired_at"].is_null());
    assert_eq!(events(d, "admin_key_rotated").len(), 1);
    let out = sesame(d, &["keys", "rotate", "--alg", "none"]);
    assert!(!out.status.success());
}
