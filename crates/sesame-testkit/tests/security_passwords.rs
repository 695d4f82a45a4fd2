//! Password guessing against the real server (SECURITY.md, "Passwords and guessing"): wrong
//! passwords are counted per account name, per known browser and per client address, in the
//! database, and a held attempt costs no Argon2id work.

use sesame_server::service::{users, Admin, Origin};
use sesame_testkit::{Browser, Page, TestServer};

const PASSWORD: &str = "correct horse battery";

fn held(p: &Page, text: &str) -> bool {
    p.status == 429 && p.body.contains(text)
}

/// Username, then `password`; the page the password step answers with (not followed).
async fn try_password(b: &mut Browser, username: &str, password: &str) -> Page {
    b.password_step(username, password).await
}

fn hashed(srv: &TestServer) -> u64 {
    srv.state.hasher.jobs_run()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_make_the_account_wait_before_any_hashing() {
    let srv = TestServer::spawn().await;
    srv.create_user("alice", Some(PASSWORD)).await;
    let mut guesser = srv.browser();
    for i in 0..5 {
        let p = try_password(&mut guesser, "alice", &format!("guess{i}")).await;
        assert_eq!(p.status, 401, "guess {i} is checked: {}", p.body);
    }
    // The sixth waits 30 s, and is not checked: not even the right password gets through,
    // and nothing is hashed.
    let before = hashed(&srv);
    let p = try_password(&mut guesser, "alice", PASSWORD).await;
    assert!(
        held(&p, "Too many wrong passwords. Try again in 30 seconds"),
        "{}",
        p.body
    );
    assert_eq!(p.headers.get("retry-after").unwrap(), "30");
    assert!(!guesser.has_session());
    let p = try_password(&mut srv.browser(), "alice", "again").await;
    assert!(
        held(&p, "Too many wrong passwords"),
        "a new browser is held too"
    );
    assert_eq!(hashed(&srv), before, "held attempts cost no hashing");
    // After the wait, one more is checked; a wrong one doubles the wait.
    srv.clock.advance(30);
    let p = try_password(&mut guesser, "alice", "guess5").await;
    assert_eq!(p.status, 401);
    let p = try_password(&mut guesser, "alice", PASSWORD).await;
    assert!(held(&p, "Try again in 1 minute"), "{}", p.body);
    srv.clock.advance(60);
    let p = try_password(&mut guesser, "alice", PASSWORD).await;
    assert_eq!(p.location(), Some("/account"), "{}", p.body);
    // The right password starts the count over.
    let mut other = srv.browser();
    for _ in 0..5 {
        assert_eq!(try_password(&mut other, "alice", "nope").await.status, 401);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_usernames_are_counted_and_held_the_same_way() {
    let srv = TestServer::spawn().await;
    srv.create_user("alice", Some(PASSWORD)).await;
    let mut b = srv.browser();
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for _ in 0..6 {
        known.push(try_password(&mut b, "alice", "wrong").await);
        unknown.push(try_password(&mut b, "nobody", "wrong").await);
    }
    for (k, u) in known.iter().zip(&unknown) {
        assert_eq!(k.status, u.status);
        let text = |p: &Page| {
            p.body
                .split("role=\"alert\">")
                .nth(1)
                .map(|t| t[..60].to_string())
        };
        assert_eq!(text(k), text(u));
    }
    assert_eq!(known[5].status, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guesser_cannot_lock_the_user_out_of_a_browser_they_signed_in_with() {
    let srv = TestServer::spawn().await;
    srv.create_user("alice", Some(PASSWORD)).await;
    // Alice signed in with this browser before: it holds a device cookie.
    let mut mine = srv.browser();
    assert_eq!(
        try_password(&mut mine, "alice", PASSWORD).await.location(),
        Some("/account")
    );
    assert!(mine.cookies.contains_key("__Host-sesame-device"));
    mine.post("/logout", &[]).await;
    // Someone else guesses until the account name is locked for good (NIST's 100), from
    // many addresses so that no address limit gets in the way first.
    for i in 0..100u32 {
        srv.clock.advance(15 * 60);
        let mut b = srv.browser_from([127, 0, 1, (i % 200) as u8 + 1]);
        let p = try_password(&mut b, "alice", "guess").await;
        assert_eq!(p.status, 401, "guess {i}: {}", p.body);
    }
    let p = try_password(&mut srv.browser(), "alice", PASSWORD).await;
    assert!(
        held(&p, "This account is locked after too many wrong passwords"),
        "{}",
        p.body
    );
    // Alice's own browser keeps its own allowance: the right password works there.
    assert_eq!(
        try_password(&mut mine, "alice", PASSWORD).await.location(),
        Some("/account")
    );
    // And a stolen device cookie is itself limited: wrong passwords from it are counted on
    // their own.
    let mut thief = srv.browser();
    thief.cookies = mine.cookies.clone();
    thief.cookies.remove("__Host-sesame-session");
    for _ in 0..5 {
        assert_eq!(try_password(&mut thief, "alice", "guess").await.status, 401);
    }
    assert!(held(
        &try_password(&mut thief, "alice", PASSWORD).await,
        "Try again in 30 seconds"
    ));
    // An administrator's unlock lifts the account's lock and every browser's count.
    let alice = srv
        .store
        .find_user_by_username(srv.state.default_tenant, "alice")
        .await
        .unwrap()
        .unwrap();
    let standing = sesame_server::service::guesses::standing(&srv.state, &alice)
        .await
        .unwrap();
    assert_eq!((standing.failures, standing.state), (100, "locked"));
    assert_eq!(standing.browsers.len(), 1);
    let admin = Admin {
        user: None,
        username: "test".into(),
        by: "cli:test".into(),
        origin: Origin::cli("test"),
    };
    users::unlock(&srv.state, &admin, &alice).await.unwrap();
    let p = try_password(&mut srv.browser(), "alice", PASSWORD).await;
    assert_eq!(p.location(), Some("/account"), "{}", p.body);
    let standing = sesame_server::service::guesses::standing(&srv.state, &alice)
        .await
        .unwrap();
    assert_eq!((standing.failures, standing.state), (0, "open"));
    assert!(standing.browsers.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_is_limited_across_usernames_and_others_are_not() {
    let srv = TestServer::spawn().await;
    srv.create_user("alice", Some(PASSWORD)).await;
    let mut guesser = srv.browser_from([127, 0, 0, 2]);
    // Three wrong passwords per name (never enough for any name), fifty in all.
    for i in 0..50 {
        let p = try_password(&mut guesser, &format!("user{}", i / 3), "guess").await;
        assert_eq!(p.status, 401, "guess {i}: {}", p.body);
    }
    let p = try_password(&mut guesser, "someone-new", "guess").await;
    assert!(
        held(&p, "Too many wrong passwords from your network"),
        "{}",
        p.body
    );
    // Another address is not held, and neither is the right password there.
    let mut elsewhere = srv.browser_from([127, 0, 0, 3]);
    assert_eq!(
        try_password(&mut elsewhere, "alice", PASSWORD)
            .await
            .location(),
        Some("/account")
    );
    // A quiet hour, and the address starts over.
    srv.clock.advance(3600);
    let p = try_password(&mut guesser, "someone-new", "guess").await;
    assert_eq!(p.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_wrong_passwords_check_at_most_the_free_ones() {
    let srv = TestServer::spawn().await;
    srv.create_user("alice", Some(PASSWORD)).await;
    // 200 sign-ins at the password step, all answered at once.
    let mut ready = Vec::new();
    for _ in 0..200 {
        let mut b = srv.browser();
        b.get("/login").await;
        let p = b.post("/login", &[("username", "alice")]).await;
        let csrf = b.follow(p).await.csrf().expect("a form");
        ready.push((b, csrf));
    }
    let before = hashed(&srv);
    let mut tasks = tokio::task::JoinSet::new();
    for (mut b, csrf) in ready {
        let body = format!("csrf={csrf}&password=guess").into_bytes();
        tasks.spawn(async move {
            b.post_raw("/login/password", "application/x-www-form-urlencoded", body)
                .await
                .status
        });
    }
    let statuses = tasks.join_all().await;
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let held = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(checked + held, 200, "{statuses:?}");
    assert_eq!(checked, 5, "exactly the free guesses are checked");
    assert_eq!(hashed(&srv) - before, 5, "and only they are hashed");
}

/// One address spraying one guess at each of many names in parallel: the address is counted
/// after each wrong password, so what passes its allowance is at most what was in flight at
/// once, which the hashing queue's share per client bounds; then the address is held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_guesses_across_names_check_at_most_the_address_allowance() {
    let srv = TestServer::spawn().await;
    let free = srv.state.config.guessing.address.free as usize;
    let mut ready = Vec::new();
    for i in 0..(free + 100) {
        let mut b = srv.browser_from([127, 0, 0, 4]);
        b.get("/login").await;
        let p = b.post("/login", &[("username", &format!("user{i}"))]).await;
        let csrf = b.follow(p).await.csrf().expect("a form");
        ready.push((b, csrf));
    }
    let before = hashed(&srv);
    let mut tasks = tokio::task::JoinSet::new();
    for (mut b, csrf) in ready {
        let body = format!("csrf={csrf}&password=guess").into_bytes();
        tasks.spawn(async move {
            b.post_raw("/login/password", "application/x-www-form-urlencoded", body)
                .await
                .status
        });
    }
    let statuses = tasks.join_all().await;
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let bound = free + srv.state.config.hashing_per_client + srv.state.config.hashing_concurrency();
    assert!(
        (free..=bound).contains(&checked),
        "{checked} checked, allowance {free}, bound {bound}: {statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        free + 100 - checked
    );
    assert_eq!(hashed(&srv) - before, checked as u64);
    // Afterwards the address is held, before any hashing.
    let mut b = srv.browser_from([127, 0, 0, 4]);
    let p = try_password(&mut b, "someone-else", "guess").await;
    assert!(
        held(&p, "Too many wrong passwords from your network"),
        "{}",
        p.body
    );
}

/// An office behind one address: more people than the address's free allowance sign in at
/// once with their right passwords, and every one of them gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_right_passwords_at_once_from_one_address_all_sign_in() {
    let srv = TestServer::spawn().await;
    // More than the address's free allowance, within what the hashing queue lets one client
    // have waiting (past that, it is told to wait a moment: the queue's fairness).
    let n = srv.state.config.guessing.address.free as usize + 10;
    assert!(n <= srv.state.config.hashing_per_client);
    let mut ready = Vec::new();
    for i in 0..n {
        let name = format!("staff{i}");
        srv.create_user(&name, Some(PASSWORD)).await;
        let mut b = srv.browser_from([127, 0, 0, 7]);
        b.get("/login").await;
        let p = b.post("/login", &[("username", &name)]).await;
        let csrf = b.follow(p).await.csrf().expect("a form");
        ready.push((b, csrf));
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (mut b, csrf) in ready {
        let body = format!("csrf={csrf}&password={}", PASSWORD.replace(' ', "+")).into_bytes();
        tasks.spawn(async move {
            let p = b
                .post_raw("/login/password", "application/x-www-form-urlencoded", body)
                .await;
            (
                p.status,
                p.location().map(str::to_string).or_else(|| {
                    p.body
                        .find("role=\"alert\">")
                        .map(|i| p.body[i..i + 90].to_string())
                }),
            )
        });
    }
    let answers = tasks.join_all().await;
    assert!(
        answers
            .iter()
            .all(|(s, l)| *s == 303 && l.as_deref() == Some("/account")),
        "{answers:?}"
    );
}

/// Attempts the hashing queue refused (503: busy) were never checked, so they count against
/// nobody: neither the name typed nor the address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_the_hashing_queue_refused_are_not_counted() {
    let srv = TestServer::spawn_with(sesame_server::config::ServerConfig {
        hashing_concurrency: 1,
        hashing_queue: 1,
        hashing_per_client: 1,
        ..Default::default()
    })
    .await;
    let mut ready = Vec::new();
    for i in 0..30 {
        let mut b = srv.browser_from([127, 0, 0, 5]);
        b.get("/login").await;
        let p = b.post("/login", &[("username", &format!("user{i}"))]).await;
        let csrf = b.follow(p).await.csrf().expect("a form");
        ready.push((b, csrf));
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (mut b, csrf)) in ready.into_iter().enumerate() {
        let body = format!("csrf={csrf}&password=guess").into_bytes();
        tasks.spawn(async move {
            let status = b
                .post_raw("/login/password", "application/x-www-form-urlencoded", body)
                .await
                .status;
            (i, status)
        });
    }
    let answers = tasks.join_all().await;
    let busy = answers.iter().filter(|(_, s)| *s == 503).count();
    let checked = answers.iter().filter(|(_, s)| *s == 401).count();
    assert!(busy > 0, "the queue was never full: {answers:?}");
    assert_eq!(busy + checked, 30, "{answers:?}");
    for (i, status) in &answers {
        let (n, _) = srv
            .store
            .find_guesses(&format!("account:1:user{i}"))
            .await
            .unwrap();
        assert_eq!(n, u32::from(*status == 401), "user{i} answered {status}");
    }
    let (n, _) = srv.store.find_guesses("address:127.0.0.5").await.unwrap();
    assert_eq!(n as usize, checked);
}

/// A lock that lasts until an administrator lifts it outlives the pruning of old counts;
/// other old counts are forgotten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hard_lock_survives_the_pruning_of_old_counts() {
    use sesame_core::guessing::{GuessingPolicy, Throttle};
    let srv = TestServer::spawn_with(sesame_server::config::ServerConfig {
        guessing: GuessingPolicy {
            account: Throttle {
                free: 3,
                first_delay_secs: 1,
                max_delay_secs: 1,
                hard_after: 3,
                forget_after_secs: 0,
            },
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    srv.create_user("alice", Some(PASSWORD)).await;
    for i in 0..3 {
        let p = try_password(&mut srv.browser(), "alice", &format!("guess{i}")).await;
        assert_eq!(p.status, 401, "{}", p.body);
    }
    try_password(&mut srv.browser_from([127, 0, 0, 6]), "bob", "guess").await;
    assert_eq!(srv.store.find_guesses("account:1:bob").await.unwrap().0, 1);
    srv.clock.advance(31 * 24 * 3600);
    // This attempt prunes (the first in over an hour) and is still refused.
    let p = try_password(&mut srv.browser(), "alice", PASSWORD).await;
    assert!(held(&p, "This account is locked"), "{}", p.body);
    assert_eq!(
        srv.store.find_guesses("account:1:bob").await.unwrap(),
        (0, None),
        "an old count is forgotten"
    );
    assert_eq!(
        srv.store.find_guesses("account:1:alice").await.unwrap().0,
        3
    );
}

/// Somebody who passed the old password and waits at the code step cannot finish once the
/// password changed: neither after an administrator set a new one nor after the user changed
/// it themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_password_ends_half_finished_sign_ins() {
    use sesame_core::secret::{SecretBytes, SecretString};
    let srv = TestServer::spawn().await;
    let alice = srv.create_user("alice", Some(PASSWORD)).await;
    let secret = SecretBytes::new(b"0123456789abcdefghij".to_vec());
    srv.add_totp(alice.id, &secret).await;
    let at_code_step = || async {
        let mut b = srv.browser();
        let p = b.password_step("alice", PASSWORD).await;
        assert_eq!(p.location(), Some("/login/verify"), "{}", p.body);
        b.follow(p).await;
        b
    };
    let finish = |mut b: Browser, code: String| async move {
        b.post("/login/verify", &[("code", &code)]).await
    };

    // The administrator sets a new password.
    let attacker = at_code_step().await;
    let admin = Admin {
        user: None,
        username: "test".into(),
        by: "cli:test".into(),
        origin: Origin::cli("test"),
    };
    users::set_password(
        &srv.state,
        &admin,
        &alice,
        SecretString::new("second password".into()),
    )
    .await
    .unwrap();
    let p = finish(attacker, srv.code(&secret)).await;
    assert_ne!(p.location(), Some("/account"), "{}", p.body);
    assert!(!p.set_cookies().iter().any(|c| c.contains("session=")));

    // The user changes it on My security info.
    srv.clock.advance(30);
    let mut user = srv.browser();
    user.password_step("alice", "second password").await;
    let p = user
        .post("/login/verify", &[("code", &srv.code(&secret))])
        .await;
    assert_eq!(p.location(), Some("/account"), "{}", p.body);
    srv.clock.advance(30);
    let attacker = {
        let mut b = srv.browser();
        let p = b.password_step("alice", "second password").await;
        b.follow(p).await;
        b
    };
    user.get("/security-info/password").await;
    let p = user
        .post(
            "/security-info/password",
            &[
                ("current", "second password"),
                ("new", "third password"),
                ("confirm", "third password"),
            ],
        )
        .await;
    assert_eq!(
        p.location(),
        Some("/security-info?done=password_changed"),
        "{}",
        p.body
    );
    srv.clock.advance(30);
    let p = finish(attacker, srv.code(&secret)).await;
    assert_ne!(p.location(), Some("/account"), "{}", p.body);
    assert!(!p.set_cookies().iter().any(|c| c.contains("session=")));
}
