//! "Two-step verification required for": all users, selected groups, or nobody.

use sesame_core::secret::SecretBytes;
use sesame_server::service::policy::PolicyEdit;
use sesame_testkit::TestServer;

async fn require(srv: &TestServer, who: &str) {
    srv.set_policy(PolicyEdit {
        mfa_required: Some(who.into()),
        ..Default::default()
    })
    .await;
}

#[tokio::test]
async fn nobody_required_lets_users_without_methods_in_with_the_password() {
    let srv = TestServer::spawn().await;
    srv.create_user("alice", Some("pw-alice-123")).await;
    let mut b = srv.browser();
    let p = b.password_step("alice", "pw-alice-123").await;
    assert_eq!(p.location(), Some("/account"));
    assert_eq!(b.get("/account").await.status, 200);
}

#[tokio::test]
async fn required_for_all_sends_users_without_a_method_to_add_one_first() {
    let srv = TestServer::spawn().await;
    let alice = srv.create_user("alice", Some("pw-alice-123")).await;
    require(&srv, "all").await;
    let mut b = srv.browser();
    let p = b.password_step("alice", "pw-alice-123").await;
    assert_eq!(p.location(), Some("/security-info?setup=required"));
    let info = b.follow(p).await;
    assert!(
        info.body.contains("requires two-step verification"),
        "{}",
        info.body
    );
    // Every other page stays closed until a method exists.
    assert_eq!(
        b.get("/account").await.location(),
        Some("/security-info?setup=required")
    );
    assert!(b.get("/security-info/add").await.status == 200);
    // With a method, the next sign-in asks for it, and this session may go on.
    srv.add_totp(alice.id, &SecretBytes::new(vec![3; 20])).await;
    assert_eq!(b.get("/account").await.status, 200);
    let mut again = srv.browser();
    let p = again.password_step("alice", "pw-alice-123").await;
    assert_eq!(p.location(), Some("/login/verify"));
}

#[tokio::test]
async fn required_for_a_group_applies_to_its_members_only() {
    let srv = TestServer::spawn().await;
    let alice = srv.create_user("alice", Some("pw-alice-123")).await;
    srv.create_user("bob", Some("pw-bob-12345")).await;
    let g = srv
        .store
        .create_group(srv.state.default_tenant, "finance", sesame_testkit::START)
        .await
        .unwrap();
    srv.store.add_group_member(g.id, alice.id).await.unwrap();
    require(&srv, "finance").await;
    let mut a = srv.browser();
    assert_eq!(
        a.password_step("alice", "pw-alice-123").await.location(),
        Some("/security-info?setup=required")
    );
    let mut b = srv.browser();
    assert_eq!(
        b.password_step("bob", "pw-bob-12345").await.location(),
        Some("/account")
    );
}

#[tokio::test]
async fn methods_the_policy_turns_off_are_not_offered_after_the_password() {
    let srv = TestServer::spawn().await;
    let alice = srv.create_user("alice", Some("pw-alice-123")).await;
    srv.add_totp(alice.id, &SecretBytes::new(vec![3; 20])).await;
    let mut b = srv.browser();
    assert_eq!(
        b.password_step("alice", "pw-alice-123").await.location(),
        Some("/login/verify")
    );
    // The authenticator app switched off: codes are no second step any more. Nobody is
    // required, but alice registered a method, so the password alone is never enough: she is
    // signed in only to set up a method the policy allows...
    srv.set_policy(PolicyEdit {
        enabled: Some(false),
        ..Default::default()
    })
    .await;
    let mut b = srv.browser();
    assert_eq!(
        b.password_step("alice", "pw-alice-123").await.location(),
        Some("/security-info?setup=required")
    );
    // ...as when a second step is required.
    require(&srv, "all").await;
    let mut c = srv.browser();
    assert_eq!(
        c.password_step("alice", "pw-alice-123").await.location(),
        Some("/security-info?setup=required")
    );
}

/// "Use an app instead" when the policy of everyone rules phone sign-in out says so (push mode,
/// or the app turned off), the same for known and unknown usernames; otherwise it says phone
/// sign-in is not turned on.
#[tokio::test]
async fn use_an_app_instead_gives_the_policys_reason() {
    use sesame_core::policy::AuthenticatorMode;
    let srv = TestServer::spawn().await;
    srv.create_user("alice", Some("pw-alice-123")).await;
    let answer = |name: &'static str| {
        let mut b = srv.browser();
        async move {
            b.get("/login").await;
            let p = b.post("/login", &[("username", name)]).await;
            b.follow(p).await;
            b.post("/login/app", &[]).await.body
        }
    };
    for name in ["alice", "nobody"] {
        let body = answer(name).await;
        assert!(
            body.contains("isn&#39;t turned on for this account"),
            "{body}"
        );
    }
    srv.set_policy(PolicyEdit {
        mode: Some(AuthenticatorMode::Push),
        ..Default::default()
    })
    .await;
    for name in ["alice", "nobody"] {
        let body = answer(name).await;
        assert!(body.contains("not for signing in without one"), "{body}");
        assert!(!body.contains("turn on phone sign-in"), "{body}");
    }
    srv.set_policy(PolicyEdit {
        enabled: Some(false),
        ..Default::default()
    })
    .await;
    for name in ["alice", "nobody"] {
        let body = answer(name).await;
        assert!(
            body.contains("does not allow the Sesame Authenticator app"),
            "{body}"
        );
    }
}
