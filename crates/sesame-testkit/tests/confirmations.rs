//! Destructive actions ask first (issue 14): deleting a method, removing a device, blocking a
//! user, resetting their methods. The page works without JavaScript: a link to a page whose
//! button posts to the action, which keeps all its own checks.

use sesame_core::secret::SecretBytes;
use sesame_testkit::TestServer;

const PASSWORD: &str = "correct horse";

#[tokio::test]
async fn deleting_a_method_asks_first_and_only_about_ones_own() {
    let srv = TestServer::spawn().await;
    let alice = srv.create_user("alice", Some(PASSWORD)).await;
    let bob = srv.create_user("bob", Some(PASSWORD)).await;
    let secret = SecretBytes::new(b"0123456789abcdefghij".to_vec());
    let mine = srv.add_totp(alice.id, &secret).await;
    let theirs = srv.add_totp(bob.id, &secret).await;
    let mut b = srv.browser();
    b.password_step("alice", PASSWORD).await;
    b.get("/login/verify").await;
    let p = b
        .post("/login/verify", &[("code", &srv.code(&secret))])
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    let info = b.get("/security-info").await;
    let link = format!("href=\"/security-info/methods/{}/delete\"", mine.id.0);
    assert!(
        info.body.contains(&link),
        "a link, not a button that deletes at once: {}",
        info.body
    );
    let ask = b
        .get(&format!("/security-info/methods/{}/delete", mine.id.0))
        .await;
    assert_eq!(ask.status, 200);
    assert!(
        ask.body
            .contains("Delete Authenticator app (verification code)"),
        "{}",
        ask.body
    );
    assert!(ask.body.contains(&format!(
        "action=\"/security-info/methods/{}/delete\"",
        mine.id.0
    )));
    // Asking changed nothing.
    assert_eq!(srv.store.list_methods(alice.id).await.unwrap().len(), 1);
    // Another user's method: nothing to ask about.
    let other = b
        .get(&format!("/security-info/methods/{}/delete", theirs.id.0))
        .await;
    assert_eq!(other.status, 404);
    // The button does it.
    let p = b
        .post(&format!("/security-info/methods/{}/delete", mine.id.0), &[])
        .await;
    assert_eq!(
        p.location(),
        Some("/security-info?done=deleted"),
        "{}",
        p.body
    );
    assert!(srv.store.list_methods(alice.id).await.unwrap().is_empty());
}

#[tokio::test]
async fn blocking_and_resetting_in_the_console_ask_first() {
    let srv = TestServer::spawn().await;
    srv.create_admin("root", Some(PASSWORD)).await;
    let carol = srv.create_user("carol", Some(PASSWORD)).await;
    let mut a = srv.browser();
    a.password_step("root", PASSWORD).await;
    let page = a.get("/admin/users/carol").await;
    for action in ["block", "reset-methods"] {
        assert!(
            page.body
                .contains(&format!("<a href=\"/admin/users/carol/{action}\">")),
            "{action} is a link to a question: {}",
            page.body
        );
        let ask = a.get(&format!("/admin/users/carol/{action}")).await;
        assert_eq!(ask.status, 200, "{}", ask.body);
        assert!(ask
            .body
            .contains(&format!("action=\"/admin/users/carol/{action}\"")));
        assert!(
            ask.body.contains("href=\"/admin/users/carol\">Cancel"),
            "{}",
            ask.body
        );
    }
    assert!(ask_changed_nothing(&srv, carol.id).await);
    let p = a.post("/admin/users/carol/block", &[]).await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert!(
        srv.store
            .find_user(carol.id)
            .await
            .unwrap()
            .unwrap()
            .is_blocked
    );
    // Not for users.
    let mut c = srv.browser();
    srv.create_user("dora", Some(PASSWORD)).await;
    c.password_step("dora", PASSWORD).await;
    assert_eq!(c.get("/admin/users/carol/block").await.status, 403);
}

async fn ask_changed_nothing(srv: &TestServer, user: sesame_core::UserId) -> bool {
    !srv.store.find_user(user).await.unwrap().unwrap().is_blocked
}

#[tokio::test]
async fn removing_a_device_asks_first_in_the_console() {
    let srv = TestServer::spawn().await;
    srv.create_admin("root", Some(PASSWORD)).await;
    let erin = srv.create_user("erin", Some(PASSWORD)).await;
    // A device is created from an activation, as the app's `add` does.
    srv.store
        .create_activation(erin.id, b"no activation", i64::MAX / 2)
        .await
        .unwrap();
    let device = srv
        .store
        .create_device(
            sesame_store::NewDevice {
                tenant: erin.tenant,
                user: erin.id,
                name: "Erin's phone".into(),
                alg: "ES256".into(),
                public_key: vec![4; 65],
            },
            b"no activation",
            &SecretBytes::new(vec![7; 20]),
            0,
        )
        .await
        .unwrap();
    let mut a = srv.browser();
    a.password_step("root", PASSWORD).await;
    let page = a.get("/admin/users/erin").await;
    let path = format!("/admin/users/erin/devices/{}/remove", device.id.0);
    assert!(
        page.body.contains(&format!("href=\"{path}\"")),
        "{}",
        page.body
    );
    let ask = a.get(&path).await;
    assert_eq!(ask.status, 200, "{}", ask.body);
    assert!(
        ask.body.contains("Remove Erin&#39;s phone of erin?"),
        "{}",
        ask.body
    );
    assert!(ask.body.contains(&format!("action=\"{path}\"")));
    // Only "remove" is asked about; other words name nothing.
    let other = a
        .get(&format!(
            "/admin/users/erin/devices/{}/phone-sign-in-off",
            device.id.0
        ))
        .await;
    assert_eq!(other.status, 404);
    assert!(srv.store.find_device(&device.id).await.unwrap().is_some());
    let p = a.post(&path, &[]).await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert!(srv.store.find_device(&device.id).await.unwrap().is_none());
}
