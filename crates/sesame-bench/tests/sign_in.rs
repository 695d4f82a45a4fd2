//! The shared client against an in-process server: the three sign-ins the benchmarks drive,
//! with users and devices made by `setup`, and the failures they report.

use sesame_bench::http::{self, Browser};
use sesame_bench::phone::{self, StreamStats};
use sesame_bench::setup::{Db, PhoneSetup};
use sesame_bench::{argon, unix_now};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

const PASSWORD: &str = "client-test-password";

fn client() -> reqwest::Client {
    http::client("sesame-bench tests", Duration::from_secs(30)).unwrap()
}

/// A new database in a temporary directory (kept as long as the server runs).
async fn db() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::in_memory_key(dir.path()).await.unwrap();
    (dir, db)
}

/// A browser that has entered `username` and, when the server asks for it, the password.
async fn up_to_password<'a>(
    http: &'a reqwest::Client,
    base: &'a str,
    username: &str,
    password: &str,
) -> Result<Browser<'a>, http::Failure> {
    let mut b = Browser::open(http, base).await?;
    b.username(username, "/login/password").await?;
    b.password(password).await?;
    Ok(b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_and_code_sign_in() {
    let (_dir, db) = db().await;
    let users = db
        .add_code_users("bench", 3, &argon::phc(PASSWORD).unwrap())
        .await
        .unwrap();
    let names: Vec<&str> = users.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(names, ["bench000000", "bench000001", "bench000002"]);
    let server = db.serve().await.unwrap();
    let http = client();
    let u = &users[1];

    let mut b = up_to_password(&http, &server.base, &u.username, PASSWORD)
        .await
        .unwrap();
    let code = sesame_core::totp::code_at(&u.secret, unix_now());
    b.code(&code).await.unwrap();
    assert!(b.jar.has(http::SESSION_COOKIE));

    // A wrong password is a failure of that step, with the page's answer.
    let f = up_to_password(&http, &server.base, &users[2].username, "wrong")
        .await
        .err()
        .unwrap();
    assert_eq!(f.stage, "POST /login/password");
    assert!(f.status.is_some() && !f.busy(), "{f}");
    assert!(server.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_sign_in_with_the_number_from_the_page() {
    let (_dir, db) = db().await;
    let setup = PhoneSetup {
        password_hash: Some(argon::phc(PASSWORD).unwrap()),
        phone_sign_in: false,
    };
    let phones = db.add_phones("push", 2, &setup).await.unwrap();
    assert_eq!(phones[1].username, "push00001");
    assert!(phones[1].pin_key.is_none());
    let server = db.serve().await.unwrap();
    let http = client();
    let p = &phones[0];

    let mut b = up_to_password(&http, &server.base, &p.username, PASSWORD)
        .await
        .unwrap();
    let number = b.number("/login/verify").await.unwrap();
    let device = p.client(&server.base);
    let pending = device.pending().await.unwrap().challenges;
    assert_eq!(pending.len(), 1);
    p.approve(&device, &pending[0], &number).await.unwrap();
    b.complete().await.unwrap();
    assert!(b.jar.has(http::SESSION_COOKIE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phone_sign_in_over_the_event_stream() {
    let (_dir, db) = db().await;
    let setup = PhoneSetup {
        password_hash: None,
        phone_sign_in: true,
    };
    let phones = Arc::new(db.add_phones("phone", 2, &setup).await.unwrap());
    let server = db.serve().await.unwrap();
    let http = client();

    // Both phones keep their stream open; requests arrive tagged with the phone's index.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let stats = Arc::new(StreamStats::default());
    let (opened, error) = phone::open_streams(phones.len(), |i, ready| {
        let (phones, base, tx, stats) = (
            phones.clone(),
            server.base.clone(),
            tx.clone(),
            stats.clone(),
        );
        tokio::spawn(async move {
            let device = phones[i].client(&base);
            phone::listen(&device, tx, move |c| (i, c), ready, true, &stats).await
        });
    })
    .await;
    assert_eq!((opened, error), (2, None));

    let p = &phones[1];
    let mut b = Browser::open(&http, &server.base).await.unwrap();
    b.username(&p.username, "/login/app").await.unwrap();
    let number = b.number("/login/app").await.unwrap();
    let (i, c) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((i, c.username.as_str()), (1, p.username.as_str()));
    assert!(c.pin_required);
    p.approve(&p.client(&server.base), &c, &number)
        .await
        .unwrap();
    b.approved(5).await.unwrap();
    b.complete().await.unwrap();
    assert!(b.jar.has(http::SESSION_COOKIE));
    assert_eq!(stats.events.load(std::sync::atomic::Ordering::Relaxed), 1);

    // A request the server refuses: the browser's completion before any approval.
    let mut b = Browser::open(&http, &server.base).await.unwrap();
    b.username(&phones[0].username, "/login/app").await.unwrap();
    let f = b.complete().await.unwrap_err();
    assert_eq!(f.stage, "POST /login/push/complete");
}
