//! Two Sesame nodes on one PostgreSQL database, through their real HTTP servers: whatever node
//! a request lands on, the outcome is the same, and single use holds across them.
//!
//! Runs against the server `SESAME_TEST_DATABASE_URL` names (`scripts/test.sh` starts one);
//! without it each test says it is skipped (and fails under `SESAME_REQUIRE_POSTGRES`).

#[allow(dead_code)] // each test file uses some of the shared helpers
mod nodes;
use nodes::*;

use sesame_authenticator::client::ClientError;
use sesame_core::ManualClock;
use sesame_proto::device::{Decision, DeviceEvent};
use sesame_server::ServerConfig;
use sesame_store::MasterKey;
use sesame_testkit::TestServer;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_on_one_node_is_approved_by_a_phone_connected_to_the_other() {
    let Some((a, b)) = two_nodes("approve").await else {
        return;
    };
    let phone = user_with_phone(&a, "alice").await;
    // The phone's event stream is held by node B.
    let on_b = phone.client(&b);
    let mut stream = on_b.events().await.unwrap();
    let started = Instant::now();
    let (mut browser, number) = sign_in(&a, "alice").await;
    let challenge = match tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
        Ok(Ok(Some(DeviceEvent::Challenge(c)))) => c,
        other => panic!("the request made on A reaches the stream on B, got {other:?}"),
    };
    eprintln!(
        "request on A heard on B's stream after {:?}",
        started.elapsed()
    );
    // A page waiting on node B (the browser's next poll landed there) hears the answer given
    // to node A at once, not at the end of its 25 s long poll.
    let mut waiting_on_b = on(&browser, &b);
    let poll = tokio::spawn(async move {
        let t = Instant::now();
        let body = waiting_on_b.get("/login/push/status").await.body;
        (t.elapsed(), body)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let answered = phone
        .client(&a)
        .respond(&phone.answer(&challenge, Decision::Approve, &number))
        .await
        .unwrap();
    assert_eq!(answered.outcome, "approved");
    let (took, body) = poll.await.unwrap();
    assert!(body.contains("approved"), "{body}");
    assert!(
        took < Duration::from_secs(5),
        "the page on B waited {took:?}"
    );
    // The session made on A works on B too.
    let done = browser.post("/login/push/complete", &[]).await;
    assert_eq!(done.location(), Some("/account"), "{}", done.body);
    let account_on_b = on(&browser, &b).get("/account").await;
    assert_eq!(account_on_b.status, 200, "{}", account_on_b.body);
    assert!(account_on_b.body.contains("alice"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_answers_on_both_nodes_give_one_outcome_and_one_session() {
    let Some((a, b)) = two_nodes("race").await else {
        return;
    };
    let phone = user_with_phone(&a, "alice").await;
    let (browser, number) = sign_in(&b, "alice").await;
    let c = phone
        .client(&a)
        .pending()
        .await
        .unwrap()
        .challenges
        .remove(0);
    // Approve on A and deny on B at the same moment: one wins.
    let approve = phone.answer(&c, Decision::Approve, &number);
    let deny = phone.answer(&c, Decision::Deny, &number);
    let (on_a, on_b) = (phone.client(&a), phone.client(&b));
    let (x, y) = tokio::join!(on_a.respond(&approve), on_b.respond(&deny));
    let outcomes: Vec<String> = [x, y]
        .into_iter()
        .map(|r| match r {
            Ok(r) => r.outcome,
            Err(ClientError::Refused(e, _)) => e.error,
            Err(e) => panic!("{e:?}"),
        })
        .collect();
    let winners = outcomes
        .iter()
        .filter(|o| *o == "approved" || *o == "denied")
        .count();
    assert_eq!(winners, 1, "{outcomes:?}");
    assert!(
        outcomes.contains(&"not_pending".to_string()),
        "{outcomes:?}"
    );
    // Two tabs completing on both nodes at once: at most one session (exactly one if approved).
    let (mut t1, mut t2) = (on(&browser, &a), on(&browser, &b));
    let (p1, p2) = tokio::join!(
        t1.post("/login/push/complete", &[]),
        t2.post("/login/push/complete", &[])
    );
    let sessions = [p1, p2]
        .iter()
        .filter(|p| p.location() == Some("/account"))
        .count();
    let approved = outcomes.contains(&"approved".to_string());
    assert_eq!(sessions, usize::from(approved), "{outcomes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_removed_on_one_node_cannot_answer_on_the_other() {
    let Some((a, b)) = two_nodes("removed").await else {
        return;
    };
    let phone = user_with_phone(&a, "alice").await;
    let (_browser, number) = sign_in(&a, "alice").await;
    let c = phone
        .client(&b)
        .pending()
        .await
        .unwrap()
        .challenges
        .remove(0);
    phone.client(&a).unregister().await.unwrap();
    match phone
        .client(&b)
        .respond(&phone.answer(&c, Decision::Approve, &number))
        .await
    {
        Err(e @ ClientError::Refused(..)) => assert!(e.is_unknown_device(), "{e:?}"),
        other => panic!("a removed device is refused on the other node, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_code_sent_to_both_nodes_at_once_signs_in_once() {
    let Some((a, b)) = two_nodes("totp").await else {
        return;
    };
    let user = a.create_user("bob", Some("correct horse")).await;
    let secret = sesame_core::secret::SecretBytes::new(vec![9; 20]);
    a.add_totp(user.id, &secret).await;
    let code = a.code(&secret);
    // Two browsers past the password, one on each node, sending the same code together.
    let mut x = a.browser();
    let mut y = b.browser();
    for br in [&mut x, &mut y] {
        let p = br.password_step("bob", "correct horse").await;
        assert_eq!(p.location(), Some("/login/verify"));
        br.follow(p).await;
    }
    let form = [("code", code.as_str())];
    let (px, py) = tokio::join!(
        x.post("/login/verify", &form),
        y.post("/login/verify", &form)
    );
    let signed_in = [&px, &py]
        .iter()
        .filter(|p| p.location() == Some("/account"))
        .count();
    assert_eq!(signed_in, 1, "{} / {}", px.body, py.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_codes_count_together_whichever_node_they_reach() {
    let Some((a, b)) = two_nodes("counters").await else {
        return;
    };
    let user = a.create_user("carol", Some("correct horse")).await;
    let secret = sesame_core::secret::SecretBytes::new(vec![4; 20]);
    a.add_totp(user.id, &secret).await;
    let right = a.code(&secret);
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    let mut br = a.browser();
    let p = br.password_step("carol", "correct horse").await;
    br.follow(p).await;
    // Wrong codes alternately on A and B, as a balancer would spread them.
    let limit = sesame_core::lockout::LockoutPolicy::default().soft_after;
    for i in 0..limit {
        let mut here = on(&br, if i % 2 == 0 { &a } else { &b });
        let page = here.post("/login/verify", &[("code", wrong)]).await;
        assert_ne!(page.location(), Some("/account"));
    }
    let stored = a
        .store
        .find_failures(user.id, sesame_core::method::MethodKind::Totp)
        .await
        .unwrap()
        .0;
    assert_eq!(
        stored, limit,
        "every wrong code counted once, on either node"
    );
    // Now even the right code is refused, on both nodes.
    for node in [&a, &b] {
        let page = on(&br, node)
            .post("/login/verify", &[("code", &right)])
            .await;
        assert_ne!(page.location(), Some("/account"), "{}", page.body);
    }
}

/// A PostgreSQL server of this test's own (it is stopped and started again, which the other
/// tests' shared server must not be), on a port below the ephemeral range.
struct OwnPostgres {
    dir: tempfile::TempDir,
    script: std::path::PathBuf,
    port: u16,
    url: String,
}

impl OwnPostgres {
    fn start() -> OwnPostgres {
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/postgres.sh");
        let dir = tempfile::tempdir().unwrap();
        // A few tries on random ports: another test run may hold one.
        for _ in 0..5 {
            let port = 20_000 + (rand_u16() % 5_000);
            let out = std::process::Command::new(&script)
                .arg("start")
                .arg(dir.path())
                .arg(port.to_string())
                .output()
                .unwrap();
            if out.status.success() {
                let url = String::from_utf8(out.stdout).unwrap().trim().to_string();
                return OwnPostgres {
                    dir,
                    script,
                    port,
                    url,
                };
            }
        }
        panic!("could not start a PostgreSQL server of the test's own");
    }

    fn run(&self, what: &str) {
        let out = std::process::Command::new(&self.script)
            .arg(what)
            .arg(self.dir.path())
            .arg(self.port.to_string())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "postgres {what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = std::process::Command::new(&self.script)
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}

fn rand_u16() -> u16 {
    (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        % 65_536) as u16
}

/// Polls `path` on `node` until it answers 200, for at most `limit`.
async fn until_ok(node: &TestServer, path: &str, limit: Duration) {
    let until = Instant::now() + limit;
    loop {
        if let Ok(r) = reqwest::get(format!("{}{path}", node.base)).await {
            if r.status() == 200 {
                return;
            }
        }
        assert!(
            Instant::now() < until,
            "{path} on {} did not recover",
            node.base
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_mid_sign_in_gives_temporary_errors_then_everything_resumes() {
    if sesame_testkit::postgres_database("probe").await.is_none() {
        return;
    }
    let pg = OwnPostgres::start();
    let key = MasterKey::generate();
    let clock = Arc::new(ManualClock::new(real_now()));
    let a = TestServer::spawn_node(&pg.url, &key, clock.clone(), ServerConfig::default()).await;
    let b = TestServer::spawn_node(&pg.url, &key, clock, ServerConfig::default()).await;
    let user = a.create_user("dave", Some("correct horse")).await;
    let secret = sesame_core::secret::SecretBytes::new(vec![6; 20]);
    a.add_totp(user.id, &secret).await;
    let phone = user_with_phone(&a, "erin").await;
    let right = a.code(&secret);
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    let mut br = a.browser();
    let p = br.password_step("dave", "correct horse").await;
    br.follow(p).await;
    let first = br.post("/login/verify", &[("code", wrong)]).await;
    assert_ne!(first.location(), Some("/account"));

    pg.run("stop");
    // Mid-sign-in, with the database away: a clear temporary error on either node, nothing
    // signed in, and readiness says so.
    let during = on(&br, &b).post("/login/verify", &[("code", &right)]).await;
    assert_eq!(during.status, 503, "{}", during.body);
    assert!(
        during.body.contains("cannot reach its database"),
        "{}",
        during.body
    );
    let ready = reqwest::get(format!("{}/readyz", a.base)).await.unwrap();
    assert_eq!(ready.status(), 503);

    pg.run("start");
    until_ok(&a, "/readyz", Duration::from_secs(30)).await;
    until_ok(&b, "/readyz", Duration::from_secs(30)).await;
    // The count from before the restart is still there, and the sign-in goes on.
    let again = on(&br, &b).post("/login/verify", &[("code", wrong)]).await;
    assert_ne!(again.location(), Some("/account"));
    assert_eq!(
        a.store
            .find_failures(user.id, sesame_core::method::MethodKind::Totp)
            .await
            .unwrap()
            .0,
        2,
        "one wrong code before the restart, one after; none lost, none added by the failure"
    );
    let done = on(&br, &a).post("/login/verify", &[("code", &right)]).await;
    assert_eq!(done.location(), Some("/account"), "{}", done.body);

    // Events between the nodes flow again once their listeners are back: a request made on A
    // reaches a stream held by B (the app reconnects, as it does after any dropped stream).
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let on_b = phone.client(&b);
        let mut stream = on_b.events().await.unwrap();
        let (_browser, _number) = sign_in(&a, "erin").await;
        match tokio::time::timeout(Duration::from_secs(3), stream.next()).await {
            Ok(Ok(Some(DeviceEvent::Challenge(_)))) => break,
            other => {
                assert!(
                    Instant::now() < until,
                    "no event across nodes after the restart: {other:?}"
                );
                // Whatever the stream missed is pending in the tables.
                assert!(!phone
                    .client(&b)
                    .pending()
                    .await
                    .unwrap()
                    .challenges
                    .is_empty());
            }
        }
    }
}
