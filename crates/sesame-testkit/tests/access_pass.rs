//! Temporary Access Passes through the real HTTP server (issue 14): a user created without a
//! password signs in with a pass an administrator gave and sets up methods; the pass is
//! one-time or multi-use, expires, can be revoked, and is guessed no faster than a password.

use sesame_core::audit::{AuditMethod, Event};
use sesame_server::service::access_pass;
use sesame_server::service::{Admin, Origin};
use sesame_store::{AuditFilter, AuditResult, User};
use sesame_testkit::{Browser, Page, TestServer};

fn admin() -> Admin {
    Admin {
        user: None,
        username: "test".into(),
        by: "cli:test".into(),
        origin: Origin {
            ip: "local".into(),
            user_agent: "test".into(),
            browsers: Vec::new(),
        },
    }
}

async fn pass_for(srv: &TestServer, user: &User, one_time: bool) -> String {
    access_pass::create(&srv.state, &admin(), user, 3600, one_time)
        .await
        .unwrap()
        .pass
}

/// Username, then the pass page, then the pass.
async fn with_pass(b: &mut Browser, username: &str, pass: &str) -> Page {
    b.get("/login").await;
    let p = b.post("/login", &[("username", username)]).await;
    assert_eq!(p.status, 303, "{}", p.body);
    b.follow(p).await;
    let options = b.get("/login/options").await;
    assert!(
        options.body.contains("Use a Temporary Access Pass"),
        "{}",
        options.body
    );
    let page = b.get("/login/access-pass").await;
    assert_eq!(page.status, 200, "{}", page.body);
    b.post("/login/access-pass", &[("pass", pass)]).await
}

#[tokio::test]
async fn a_user_without_a_password_signs_in_with_a_pass_and_sets_up_methods() {
    let srv = TestServer::spawn().await;
    let carol = srv.create_user("carol", None).await;
    let pass = pass_for(&srv, &carol, true).await;
    assert_eq!(pass.len(), 19);
    let mut b = srv.browser();
    // Typed as people type it: lower case, spaces instead of dashes.
    let typed = pass.to_lowercase().replace('-', " ");
    let p = with_pass(&mut b, "carol", &typed).await;
    assert_eq!(p.location(), Some("/security-info"), "{}", p.body);
    assert!(b.has_session());
    // Strong enough to add methods at once (no "sign in again").
    assert_eq!(b.get("/security-info/add/app").await.status, 200);
    assert_eq!(b.get("/security-info/add/phone").await.status, 200);
    let log = srv
        .store
        .list_audit(&AuditFilter {
            user: Some(carol.id),
            limit: 20,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(log.iter().any(|l| l.event == Event::SignIn
        && l.method == Some(AuditMethod::AccessPass)
        && l.result == AuditResult::Success));
    assert!(log.iter().any(|l| l.event == Event::AdminAccessPassCreated));
    // One-time: used up.
    let mut again = srv.browser();
    let p = with_pass(&mut again, "carol", &pass).await;
    assert_eq!(p.status, 401, "{}", p.body);
    assert!(!again.has_session());
}

#[tokio::test]
async fn wrong_expired_and_revoked_passes_sign_nobody_in_and_look_the_same() {
    let srv = TestServer::spawn().await;
    let dave = srv.create_user("dave", Some("correct horse")).await;
    let pass = pass_for(&srv, &dave, false).await;
    // Multi-use: twice.
    for _ in 0..2 {
        let mut b = srv.browser();
        assert_eq!(with_pass(&mut b, "dave", &pass).await.status, 303);
        assert!(b.has_session());
    }
    // The password is not a pass, another user's pass is not this user's, an unknown name
    // gets the same answer.
    let erin = srv.create_user("erin", None).await;
    let erins = pass_for(&srv, &erin, true).await;
    let mut answers = Vec::new();
    for (name, typed) in [
        ("dave", "correct horse"),
        ("dave", erins.as_str()),
        ("nobody", pass.as_str()),
    ] {
        let mut b = srv.browser();
        let p = with_pass(&mut b, name, typed).await;
        assert_eq!(p.status, 401, "{name}: {}", p.body);
        assert!(!b.has_session());
        answers.push(p.body.replace(name, "NAME"));
    }
    let strip = |s: &str| {
        s.split("name=\"csrf\" value=\"")
            .map(|part| part.split_once('"').map_or(part, |(_, rest)| rest))
            .collect::<String>()
    };
    assert_eq!(
        strip(&answers[0]),
        strip(&answers[2]),
        "unknown names look the same"
    );
    // Revoked: over at once.
    assert!(access_pass::revoke(&srv.state, &admin(), &dave)
        .await
        .unwrap());
    let mut b = srv.browser();
    assert_eq!(with_pass(&mut b, "dave", &pass).await.status, 401);
    // Expired: over at its time.
    let pass = pass_for(&srv, &dave, false).await;
    srv.clock.advance(3600);
    let mut b = srv.browser();
    assert_eq!(with_pass(&mut b, "dave", &pass).await.status, 401);
}

#[tokio::test]
async fn passes_are_guessed_no_faster_than_passwords() {
    let srv = TestServer::spawn().await;
    let frank = srv.create_user("frank", None).await;
    let pass = pass_for(&srv, &frank, true).await;
    let mut b = srv.browser();
    let mut held = false;
    for i in 0..8 {
        let p = with_pass(&mut b, "frank", &format!("AAAA-BBBB-CCCC-DDD{}", i + 2)).await;
        if p.status == 429 {
            held = true;
            break;
        }
        assert_eq!(p.status, 401, "{}", p.body);
    }
    assert!(held, "wrong passes are held like wrong passwords");
    // While held, even the right pass is not checked (and not used up).
    let p = with_pass(&mut b, "frank", &pass).await;
    assert_eq!(p.status, 429);
    assert!(srv
        .store
        .find_access_pass(frank.id, sesame_core::Clock::now(&*srv.clock))
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn an_administrator_creates_and_revokes_a_pass_in_the_console() {
    let srv = TestServer::spawn().await;
    srv.create_admin("root", Some("correct horse")).await;
    srv.create_user("gwen", None).await;
    let mut a = srv.browser();
    a.password_step("root", "correct horse").await;
    let page = a.get("/admin/users/gwen").await;
    assert!(page.body.contains("Create a pass"), "{}", page.body);
    // Lifetimes outside 10 minutes to 30 days are refused.
    let p = a
        .post("/admin/users/gwen/access-pass", &[("lifetime", "31d")])
        .await;
    assert_eq!(p.status, 400, "{}", p.body);
    let shown = a
        .post("/admin/users/gwen/access-pass", &[("lifetime", "8h")])
        .await;
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert_eq!(shown.headers["cache-control"], "no-store");
    let pass = shown
        .body
        .split("id=\"access-pass\">")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(pass.len(), 19, "{pass}");
    assert!(shown.body.contains("shown only now"));
    // The user page says there is one, never what it is.
    let page = a.get("/admin/users/gwen").await;
    assert!(page.body.contains("One-time, valid until"), "{}", page.body);
    assert!(!page.body.contains(&pass));
    // It signs gwen in.
    let mut g = srv.browser();
    assert_eq!(with_pass(&mut g, "gwen", &pass).await.status, 303);
    // A new one, revoked from the console, signs nobody in.
    let shown = a
        .post(
            "/admin/users/gwen/access-pass",
            &[("lifetime", "1h"), ("multi_use", "yes")],
        )
        .await;
    let pass = shown
        .body
        .split("id=\"access-pass\">")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_string();
    let p = a.post("/admin/users/gwen/access-pass/revoke", &[]).await;
    assert_eq!(
        p.location(),
        Some("/admin/users/gwen?done=access_pass_revoked")
    );
    let mut g = srv.browser();
    assert_eq!(with_pass(&mut g, "gwen", &pass).await.status, 401);
    // Users cannot make passes.
    let mut u = srv.browser();
    srv.create_user("hal", Some("correct horse")).await;
    u.password_step("hal", "correct horse").await;
    let csrf = u.get("/account").await.csrf().unwrap_or_default();
    let p = u
        .post(
            "/admin/users/gwen/access-pass",
            &[("lifetime", "1h"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(p.status, 403);
}
