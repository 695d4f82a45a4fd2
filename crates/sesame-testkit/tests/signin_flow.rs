//! The password + verification-code sign-in through the real HTTP server.

use sesame_core::secret::SecretBytes;
use sesame_testkit::TestServer;

fn secret() -> SecretBytes {
    SecretBytes::new(b"0123456789abcdefghij".to_vec())
}

#[tokio::test]
async fn password_only_user_signs_in_and_out() {
    let srv = TestServer::spawn().await;
    srv.create_user("alice", Some("correct horse")).await;
    let mut b = srv.browser();
    let p = b.password_step("alice", "correct horse").await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(p.location(), Some("/account"));
    assert!(b.has_session());
    let acct = b.get("/account").await;
    assert!(acct.body.contains("My account"), "{}", acct.body);
    let out = b.get("/logout").await;
    assert_eq!(out.status, 200);
    assert!(!b.has_session());
    assert_eq!(b.get("/account").await.status, 303, "signed out");
}

#[tokio::test]
async fn password_and_code_sign_in() {
    let srv = TestServer::spawn().await;
    let u = srv.create_user("bob", Some("correct horse")).await;
    srv.add_totp(u.id, &secret()).await;
    let mut b = srv.browser();
    let p = b.password_step("bob", "correct horse").await;
    assert_eq!(p.location(), Some("/login/verify"));
    assert!(!b.has_session(), "a half-finished sign-in is not a session");
    let verify = b.follow(p).await;
    assert!(verify.body.contains("Use a different verification option"));
    let done = b
        .post("/login/verify", &[("code", &srv.code(&secret()))])
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.location(), Some("/account"));
    assert!(b.has_session());
}
