//! The `sesame-authenticator` binary as a person uses it.

use std::path::Path;
use std::process::{Command, Output};

fn app(vault: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sesame-authenticator"))
        .arg("--vault")
        .arg(vault)
        .args(args)
        .env_remove("SESAME_AUTHENTICATOR_VAULT")
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

fn oathtool(secret: &str) -> String {
    let out = Command::new("oathtool")
        .args(["--totp", "-b", secret])
        .output()
        .expect("oathtool is needed for this test (apt-get install oathtool; scripts/test.sh installs it)");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

const SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

#[test]
fn codes_match_an_independent_totp_implementation() {
    let dir = tempfile::tempdir().unwrap();
    let vault = dir.path().join("vault");
    ok(&app(
        &vault,
        &[
            "add",
            &format!("otpauth://totp/Example:me@example.com?secret={SECRET}&issuer=Example"),
        ],
    ));
    // Compare inside one 30-s step: oathtool before and after must agree, else try again.
    for _ in 0..3 {
        let before = oathtool(SECRET);
        let out: serde_json::Value =
            serde_json::from_str(&ok(&app(&vault, &["--json", "code", "example"]))).unwrap();
        let after = oathtool(SECRET);
        if before == after {
            assert_eq!(out[0]["code"], before.as_str());
            assert_eq!(out[0]["account"], "Example: me@example.com");
            let left = out[0]["seconds_left"].as_u64().unwrap();
            assert!((1..=30).contains(&left));
            return;
        }
    }
    panic!("could not sample one time step three times in a row");
}

#[test]
fn accounts_are_listed_removed_and_not_added_twice() {
    let dir = tempfile::tempdir().unwrap();
    let vault = dir.path().join("vault");
    let uri = format!("otpauth://totp/A:one?secret={SECRET}");
    ok(&app(&vault, &["add", &uri]));
    assert!(err(&app(&vault, &["add", &uri])).contains("already"));
    ok(&app(
        &vault,
        &[
            "add",
            "otpauth://totp/B:two?secret=GEZDGNBVGY3TQOJQ&digits=8",
        ],
    ));
    let list: serde_json::Value =
        serde_json::from_str(&ok(&app(&vault, &["--json", "list"]))).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[1]["code"].as_str().unwrap().len(), 8);
    assert!(ok(&app(&vault, &["list"])).contains("A: one"));
    ok(&app(&vault, &["remove", "A: one"]));
    assert!(err(&app(&vault, &["code", "A: one"])).contains("no account"));
    assert!(err(&app(&vault, &["add", "otpauth://hotp/x?secret=GEZDGNBV"])).contains("time-based"));
    assert!(err(&app(&vault, &["add", "sesame://activate?code=x"]))
        .contains("not a valid Sesame activation link"));
}

#[test]
fn damaged_vault_is_reported_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let vault = dir.path().join("vault");
    ok(&app(
        &vault,
        &["add", &format!("otpauth://totp/A:one?secret={SECRET}")],
    ));
    let mut raw = std::fs::read(&vault).unwrap();
    raw[20] ^= 0xff;
    std::fs::write(&vault, &raw).unwrap();
    let e = err(&app(
        &vault,
        &["add", "otpauth://totp/B:two?secret=GEZDGNBV"],
    ));
    assert!(e.contains("damaged"), "{e}");
    assert_eq!(std::fs::read(&vault).unwrap(), raw, "never overwritten");
    let foreign = dir.path().join("notes");
    std::fs::write(&foreign, "hello").unwrap();
    std::fs::copy(dir.path().join("vault.key"), dir.path().join("notes.key")).unwrap();
    assert!(err(&app(&foreign, &["list"])).contains("not a Sesame Authenticator vault"));
    assert_eq!(std::fs::read_to_string(&foreign).unwrap(), "hello");
}

/// The app enrolled against a real Sesame server through its QR link, then used to sign in.
#[tokio::test]
async fn app_codes_enrol_and_sign_in_to_sesame() {
    use sesame_core::Clock;
    let srv = sesame_testkit::TestServer::spawn().await;
    // The binary reads the real clock; put the server on it too.
    srv.clock.set(sesame_server_now());
    srv.create_user("alice", Some("correct horse")).await;
    let mut b = srv.browser();
    assert_eq!(
        b.password_step("alice", "correct horse").await.location(),
        Some("/account")
    );
    let setup = b.get("/security-info/add/totp").await;
    let start = setup.body.find("id=\"totp-uri\">").unwrap() + "id=\"totp-uri\">".len();
    let uri =
        setup.body[start..start + setup.body[start..].find('<').unwrap()].replace("&amp;", "&");
    let enrollment = setup.hidden("enrollment").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let vault = dir.path().join("vault");
    ok(&app(&vault, &["add", &uri]));
    let code = |vault: &Path| -> String {
        let v: serde_json::Value =
            serde_json::from_str(&ok(&app(vault, &["--json", "code", "alice"]))).unwrap();
        v[0]["code"].as_str().unwrap().to_string()
    };
    // Enrol with the code of the previous time step (server clock 30 s back), so that the app's
    // current code is fresh for the sign-in that follows, with no waiting.
    let t = sesame_server_now();
    srv.clock.set(t - 30);
    let enrol_code = sesame_authenticator::OtpAccount::from_uri(&uri)
        .unwrap()
        .code_at((t - 30) as u64)
        .0;
    let added = b
        .post(
            "/security-info/add/totp",
            &[("enrollment", &enrollment), ("code", &enrol_code)],
        )
        .await;
    assert_eq!(
        added.location(),
        Some("/security-info?done=added"),
        "{}",
        added.body
    );
    let mut b2 = srv.browser();
    assert_eq!(
        b2.password_step("alice", "correct horse").await.location(),
        Some("/login/verify")
    );
    srv.clock.set(sesame_server_now());
    let resp = b2.post("/login/verify", &[("code", &code(&vault))]).await;
    assert_eq!(resp.location(), Some("/account"), "{}", resp.body);
    assert!(b2.has_session());
    assert!(srv.clock.now() >= t);
}

fn sesame_server_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// `add --qr` reads the set-up QR code from an image, as a phone's camera would.
#[test]
fn add_reads_the_link_from_a_qr_code_image() {
    let dir = tempfile::tempdir().unwrap();
    let vault = dir.path().join("vault");
    let uri = format!("otpauth://totp/Example:qr@example.com?secret={SECRET}&issuer=Example");
    let code = qrcode::QrCode::new(uri.as_bytes()).unwrap();
    let w = code.width();
    let colors = code.to_colors();
    let (scale, quiet) = (5u32, 4u32);
    let side = (w as u32 + 2 * quiet) * scale;
    let img = image::GrayImage::from_fn(side, side, |x, y| {
        let (cx, cy) = (x / scale, y / scale);
        let inside = cx >= quiet && cy >= quiet && cx < quiet + w as u32 && cy < quiet + w as u32;
        let dark = inside
            && colors[((cy - quiet) as usize) * w + (cx - quiet) as usize] == qrcode::Color::Dark;
        image::Luma([if dark { 0 } else { 255 }])
    });
    let png = dir.path().join("setup.png");
    img.save(&png).unwrap();
    let out = ok(&app(
        &vault,
        &["--json", "add", "--qr", png.to_str().unwrap()],
    ));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["account"], "Example: qr@example.com");
    let blank = dir.path().join("blank.png");
    image::GrayImage::from_pixel(64, 64, image::Luma([255]))
        .save(&blank)
        .unwrap();
    assert!(
        err(&app(&vault, &["add", "--qr", blank.to_str().unwrap()])).contains("no QR code found")
    );
    assert!(err(&app(&vault, &["add"])).contains("<LINK>"));
}
