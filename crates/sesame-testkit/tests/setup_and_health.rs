//! First-run set-up link, health checks and response hygiene, through the real server.

use sesame_testkit::TestServer;

#[tokio::test]
async fn setup_link_creates_the_first_admin_once() {
    let srv = TestServer::spawn().await;
    let path =
        sesame_server::service::setup::ensure_setup_link(&srv.state, srv.state.default_tenant)
            .await
            .unwrap()
            .expect("no admin yet");
    let mut b = srv.browser();
    let form = b.get(&path).await;
    assert_eq!(form.status, 200);
    assert!(form.body.contains("Create the first administrator"));
    let token = form.hidden("token").unwrap();
    let mismatch = b
        .post(
            "/setup",
            &[
                ("token", &token),
                ("username", "root"),
                ("display_name", "Root Admin"),
                ("password", "long password"),
                ("confirm", "other password"),
            ],
        )
        .await;
    assert_eq!(mismatch.status, 400);
    assert!(mismatch.body.contains("do not match"));
    // What was typed stays (never the passwords).
    assert!(
        mismatch.body.contains("value=\"root\""),
        "{}",
        mismatch.body
    );
    assert!(
        mismatch.body.contains("value=\"Root Admin\""),
        "{}",
        mismatch.body
    );
    assert!(!mismatch.body.contains("long password"));
    let fields = [
        ("token", token.as_str()),
        ("username", "root"),
        ("password", "long password"),
        ("confirm", "long password"),
    ];
    let done = b.post("/setup", &fields).await;
    assert_eq!(done.status, 303, "{}", done.body);
    // Said so, and signed in: straight to the console's welcome.
    assert_eq!(done.location(), Some("/admin?done=welcome"));
    assert!(b.has_session());
    let welcome = b.get("/admin?done=welcome").await;
    assert_eq!(welcome.status, 200, "{}", welcome.body);
    assert!(
        welcome.body.contains("You are the first administrator"),
        "{}",
        welcome.body
    );
    assert!(
        welcome.body.contains("Development only"),
        "the outbox is marked on the admin page"
    );
    let admin = srv
        .store
        .find_user_by_username(srv.state.default_tenant, "root")
        .await
        .unwrap()
        .unwrap();
    assert!(admin.is_admin && admin.has_password);
    // The link is single use, and no new link is made once an admin exists.
    let again = b.post("/setup", &fields).await;
    assert_eq!(again.status, 403);
    // A used link gets a clear page: what happened and what to do, no literal backticks.
    assert!(again.body.contains("no longer works"), "{}", again.body);
    assert!(!again.body.contains('`'), "{}", again.body);
    assert_eq!(b.get(&path).await.status, 403);
    assert!(
        sesame_server::service::setup::ensure_setup_link(&srv.state, srv.state.default_tenant)
            .await
            .unwrap()
            .is_none()
    );
    // The new administrator signs in with the chosen password.
    let mut b2 = srv.browser();
    assert_eq!(
        b2.password_step("root", "long password").await.location(),
        Some("/account")
    );
}

#[tokio::test]
async fn setup_link_expires_and_guessed_tokens_fail() {
    let srv = TestServer::spawn().await;
    let path =
        sesame_server::service::setup::ensure_setup_link(&srv.state, srv.state.default_tenant)
            .await
            .unwrap()
            .unwrap();
    let mut b = srv.browser();
    assert_eq!(b.get("/setup?token=guess").await.status, 403);
    assert_eq!(b.get("/setup").await.status, 403);
    srv.clock
        .advance(sesame_server::service::setup::SETUP_LINK_SECS);
    assert_eq!(b.get(&path).await.status, 403);
}

#[tokio::test]
async fn health_endpoints_answer_json() {
    let srv = TestServer::spawn().await;
    let mut b = srv.browser();
    for path in ["/healthz", "/readyz"] {
        let p = b.get(path).await;
        assert_eq!(p.status, 200);
        let h: sesame_proto::Health = serde_json::from_str(&p.body).unwrap();
        assert_eq!(h.status, "ok");
    }
}

#[tokio::test]
async fn pages_carry_security_headers() {
    let srv = TestServer::spawn().await;
    let mut b = srv.browser();
    let p = b.get("/login").await;
    assert_eq!(p.headers["x-frame-options"], "DENY");
    assert_eq!(p.headers["cache-control"], "no-store");
    assert!(p.headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    // The waiting pages' scripts poll the server: fetch() to our own origin must be allowed.
    assert!(p.headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("connect-src 'self'"));
    let csrf = p
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("__Host-sesame-csrf="))
        .expect("csrf cookie");
    for attr in ["Path=/", "Secure", "HttpOnly", "SameSite=Lax"] {
        assert!(csrf.contains(attr), "{csrf} lacks {attr}");
    }
    assert_eq!(b.get("/no-such-page").await.status, 404);
    assert_eq!(b.get("/favicon.ico").await.status, 204);
}

#[tokio::test]
async fn oversized_and_malformed_bodies_are_refused_cleanly() {
    let srv = TestServer::spawn().await;
    let mut b = srv.browser();
    b.get("/login").await;
    let big = vec![b'a'; 10 * 1024 * 1024];
    let p = b
        .post_raw("/login", "application/x-www-form-urlencoded", big)
        .await;
    assert_eq!(p.status, 413);
    let p = b
        .post_raw(
            "/login",
            "application/json",
            b"{\"username\":\"x\"}".to_vec(),
        )
        .await;
    assert_eq!(p.status, 400);
    let p = b
        .post_raw(
            "/login",
            "application/x-www-form-urlencoded",
            vec![b'u', b'=', 0xff, 0xfe],
        )
        .await;
    assert_eq!(p.status, 400);
}

async fn setup_link(srv: &TestServer) -> String {
    sesame_server::service::setup::ensure_setup_link(&srv.state, srv.state.default_tenant)
        .await
        .unwrap()
        .expect("no admin yet")
}

fn first_admin<'a>(token: &'a str, name: &'a str) -> [(&'a str, &'a str); 4] {
    [
        ("token", token),
        ("username", name),
        ("password", "long password"),
        ("confirm", "long password"),
    ]
}

/// Each start prints a new link; only the newest works, on the page and on submit.
#[tokio::test]
async fn only_the_newest_setup_link_works() {
    let srv = TestServer::spawn().await;
    let stale = setup_link(&srv).await;
    let newest = setup_link(&srv).await;
    let mut b = srv.browser();
    let stale_token = stale.trim_start_matches("/setup?token=").to_string();
    assert_eq!(b.get(&stale).await.status, 403);
    b.get(&newest).await;
    let p = b
        .post("/setup", &first_admin(&stale_token, "mallory"))
        .await;
    assert_eq!(p.status, 403, "{}", p.body);
    assert!(srv
        .store
        .find_user_by_username(srv.state.default_tenant, "mallory")
        .await
        .unwrap()
        .is_none());
    let token = newest.trim_start_matches("/setup?token=");
    assert_eq!(
        b.post("/setup", &first_admin(token, "root")).await.status,
        303
    );
}

/// An administrator made another way (`sesame user add --admin`) ends every link at once,
/// even the newest: the page and the form both refuse it.
#[tokio::test]
async fn no_setup_link_works_once_an_administrator_exists() {
    let srv = TestServer::spawn().await;
    let link = setup_link(&srv).await;
    let mut b = srv.browser();
    assert_eq!(b.get(&link).await.status, 200);
    srv.create_admin("admin", Some("long password")).await;
    assert_eq!(b.get(&link).await.status, 403);
    let token = link.trim_start_matches("/setup?token=");
    let p = b.post("/setup", &first_admin(token, "mallory")).await;
    assert_eq!(p.status, 403, "{}", p.body);
    assert!(srv
        .store
        .find_user_by_username(srv.state.default_tenant, "mallory")
        .await
        .unwrap()
        .is_none());
}
