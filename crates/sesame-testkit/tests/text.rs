//! Text from attackers through the real server (SECURITY.md: "Text an attacker controls ...
//! never reaches a terminal or a phone screen raw"; usernames are normalised so that
//! look-alikes cannot coexist with the real name).

use sesame_store::{AuditFilter, NewUser, User};
use sesame_testkit::{Browser, Page, TestServer, START};

const PASSWORD: &str = "correct horse battery";

async fn create_admin(srv: &TestServer, name: &str) -> User {
    let hash = sesame_core::password::hash(
        &sesame_core::secret::SecretString::new(PASSWORD.into()),
        &mut rand::rngs::OsRng,
    )
    .unwrap();
    let tenant = srv.store.default_tenant().await.unwrap();
    srv.store
        .create_user(
            NewUser {
                tenant,
                username: name.into(),
                display_name: name.into(),
                password_hash: Some(hash),
                is_admin: true,
            },
            START,
        )
        .await
        .unwrap()
}

/// The username step alone, as a browser posts it.
async fn username_step(b: &mut Browser, username: &str) -> Page {
    b.get("/login").await;
    b.post("/login", &[("username", username)]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_width_username_signs_in_as_the_user() {
    let srv = TestServer::spawn().await;
    let alice = srv.create_user("alice", Some(PASSWORD)).await;
    for typed in ["ａｌｉｃｅ", "ＡＬＩＣＥ", "Alice"] {
        let mut b = srv.browser();
        let p = b.password_step(typed, PASSWORD).await;
        assert_eq!(p.location(), Some("/account"), "{typed}: {}", p.body);
        let account = b.get("/account").await;
        assert!(account.body.contains("alice"), "{}", account.body);
    }
    let log = srv.store.list_audit(&AuditFilter::default()).await.unwrap();
    assert!(log
        .iter()
        .filter(|e| e.event.as_str() == "sign_in")
        .all(|e| e.user == Some(alice.id)));
}

/// A user stored before the username profile applied (a space in the name, which RFC 8265
/// refuses for new names) still signs in; a name with a space that nobody has is simply
/// unknown, answered as any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_stored_before_the_profile_still_signs_in() {
    let srv = TestServer::spawn().await;
    let john = srv.create_user("john smith", Some(PASSWORD)).await;
    for typed in ["john smith", "John Smith", " john smith "] {
        let mut b = srv.browser();
        let p = b.password_step(typed, PASSWORD).await;
        assert_eq!(p.location(), Some("/account"), "{typed}: {}", p.body);
    }
    let mut b = srv.browser();
    b.get("/login").await;
    let p = b.post("/login", &[("username", "jane smith")]).await;
    assert_eq!(p.location(), Some("/login/password"), "{}", p.body);
    let log = srv.store.list_audit(&AuditFilter::default()).await.unwrap();
    assert_eq!(
        log.iter()
            .filter(|e| e.event.as_str() == "sign_in" && e.user == Some(john.id))
            .count(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_width_and_plain_names_share_one_wrong_password_count() {
    let srv = TestServer::spawn().await;
    srv.create_user("alice", Some(PASSWORD)).await;
    // From five addresses, so that only the account's count can hold the sixth.
    for (i, typed) in ["alice", "ａｌｉｃｅ", "ALICE", "ａｌｉｃｅ", "Alice"]
        .iter()
        .enumerate()
    {
        let mut b = srv.browser_from([127, 0, 0, 10 + i as u8]);
        let p = b.password_step(typed, "wrong guess").await;
        assert_eq!(p.status, 401, "{typed}: {}", p.body);
    }
    let mut b = srv.browser_from([127, 0, 0, 20]);
    let p = b.password_step("ａｌｉｃｅ", PASSWORD).await;
    assert_eq!(
        p.status, 429,
        "the sixth wrong in a row is held: {}",
        p.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn username_with_terminal_escapes_is_refused_at_sign_in_and_never_stored() {
    let srv = TestServer::spawn().await;
    srv.create_user("alice", Some(PASSWORD)).await;
    for (typed, named) in [
        ("alice\u{1b}[2J\u{1b}]0;pwned\u{7}", "U+001B"),
        ("ali\u{8}\u{8}ce", "U+0008"),
        ("al\rice", "U+000D"),
        ("ali\u{200b}ce", "U+200B"),
        ("alice\u{202e}x", "U+202E"),
        ("ali\u{9b}31m", "U+009B"),
    ] {
        let mut b = srv.browser();
        let p = username_step(&mut b, typed).await;
        assert_eq!(p.status, 400, "{typed:?}: {}", p.body);
        assert!(
            p.body.contains("That username cannot be used")
                && p.body.contains("invisible or control character")
                && p.body.contains(named),
            "{}",
            p.body
        );
        // No sign-in transaction was started: no cookie, and the password step has nothing.
        assert!(
            !p.set_cookies().iter().any(|c| c.contains("signin")),
            "{:?}",
            p.set_cookies()
        );
        let next = b.get("/login/password").await;
        assert_ne!(next.status, 200, "{}", next.body);
    }
    // What the profile refuses for other reasons is looked up, not refused (see
    // `a_user_stored_before_the_profile_still_signs_in`).
    let p = username_step(&mut srv.browser(), "john smith").await;
    assert_eq!(p.status, 303, "{}", p.body);
    let log = srv.store.list_audit(&AuditFilter::default()).await.unwrap();
    for e in &log {
        assert!(
            !format!("{}{}{:?}", e.username, e.user_agent, e.reason)
                .chars()
                .any(sesame_proto::text::is_hidden),
            "{e:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_console_refuses_a_look_alike_of_an_existing_user() {
    let srv = TestServer::spawn().await;
    create_admin(&srv, "root").await;
    srv.create_user("alice", Some(PASSWORD)).await;
    let mut b = srv.browser();
    assert_eq!(
        b.password_step("root", PASSWORD).await.location(),
        Some("/account")
    );
    b.get("/admin/users").await;
    for (typed, says) in [
        // Cyrillic "а" in a Latin name.
        ("\u{430}lice", "mix letters of different scripts"),
        ("ａｌｉｃｅ", "already exists"),
        ("ali\u{200b}ce", "invisible or control character"),
        ("alice\u{202e}", "invisible or control character"),
    ] {
        let p = b
            .post(
                "/admin/users",
                &[("username", typed), ("password", PASSWORD)],
            )
            .await;
        assert_eq!(p.status, 400, "{typed:?}: {}", p.body);
        assert!(p.body.contains(says), "{typed:?}: {}", p.body);
    }
    // One script, same skeleton: Cyrillic "асе" beside Latin "ace".
    srv.create_user("ace", None).await;
    let p = b
        .post(
            "/admin/users",
            &[
                ("username", "\u{430}\u{441}\u{435}"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(p.status, 400, "{}", p.body);
    assert!(
        p.body.contains("looks like the existing user"),
        "{}",
        p.body
    );
    let p = b
        .post(
            "/admin/users",
            &[
                ("username", "bob"),
                ("display_name", "Bob\u{202e}evil"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(p.status, 400, "{}", p.body);
    assert!(p.body.contains("display name"), "{}", p.body);
    let p = b.post("/admin/groups", &[("name", "pilot\u{2067}")]).await;
    assert_eq!(p.status, 400, "{}", p.body);
    assert!(
        p.body.contains("invisible or control character"),
        "{}",
        p.body
    );
    // Full-width is mapped at creation: "Ｃａｒｏｌ" is stored as "Carol".
    let p = b
        .post(
            "/admin/users",
            &[("username", "Ｃａｒｏｌ"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(p.location(), Some("/admin/users/Carol?done=created"));
    let users = srv
        .store
        .list_users(srv.store.default_tenant().await.unwrap())
        .await
        .unwrap();
    let names: Vec<&str> = users.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(names, ["ace", "alice", "Carol", "root"]);
}
