//! SECURITY.md "Push and phone sign-in" cases, through the real server and the app library.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sesame_authenticator::client::{self, ClientError, DeviceClient};
use sesame_authenticator::device::DeviceKey;
use sesame_proto::device::{self as api, approval_message, Challenge, Decision, RespondRequest};
use sesame_server::ServerConfig;
use sesame_store::Store;
use sesame_testkit::{Browser, TestServer};

fn real_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

struct Phone {
    key: DeviceKey,
    device_id: String,
}

impl Phone {
    fn client(&self, srv: &TestServer) -> DeviceClient<'_> {
        DeviceClient::new(&srv.base, &self.device_id, &self.key)
    }

    fn answer(&self, c: &Challenge, decision: Decision, number: &str) -> RespondRequest {
        let msg = approval_message(&c.id, &c.nonce, decision, number, &self.device_id);
        RespondRequest {
            challenge_id: c.id.clone(),
            decision,
            number: number.into(),
            signature: self.key.sign(&msg),
            pin_signature: None,
        }
    }
}

async fn server(config: ServerConfig) -> TestServer {
    let srv = TestServer::spawn_with(config).await;
    srv.clock.set(real_now());
    srv
}

/// Creates `name` with a password and activates a phone for them through My security info.
async fn user_with_phone(srv: &TestServer, name: &str) -> Phone {
    srv.create_user(name, Some("correct horse")).await;
    let mut b = srv.browser();
    assert_eq!(
        b.password_step(name, "correct horse").await.location(),
        Some("/account")
    );
    let page = b.get("/security-info/add/app").await;
    let link = page
        .body
        .split("id=\"activation-link\">")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    let (server, code) = api::parse_activation_link(&link).unwrap();
    let key = DeviceKey::generate();
    let resp = client::activate(&server, &code, "phone", &key)
        .await
        .unwrap();
    Phone {
        key,
        device_id: resp.device_id,
    }
}

/// Signs in with the password; returns the browser waiting for the phone and the number shown.
async fn sign_in(srv: &TestServer, name: &str) -> (Browser, String) {
    let mut b = srv.browser();
    let p = b.password_step(name, "correct horse").await;
    assert_eq!(p.location(), Some("/login/verify"));
    let page = b.follow(p).await;
    let number = page
        .body
        .split("id=\"push-number\" aria-live=\"polite\">")
        .nth(1)
        .map(|s| s.split('<').next().unwrap().to_string());
    (b, number.unwrap_or_default())
}

async fn only_pending(srv: &TestServer, phone: &Phone) -> Challenge {
    let list = phone.client(srv).pending().await.unwrap().challenges;
    assert_eq!(list.len(), 1, "{list:?}");
    list.into_iter().next().unwrap()
}

fn refused(r: Result<impl std::fmt::Debug, ClientError>, status: u16, code: &str) {
    match r {
        Err(ClientError::Refused(e, s)) => {
            assert_eq!((s, e.error.as_str()), (status, code), "{}", e.message)
        }
        other => panic!("expected {status} {code}, got {other:?}"),
    }
}

/// A hand-made signed GET, to replay it byte for byte.
async fn raw_signed_get(
    srv: &TestServer,
    phone: &Phone,
    path: &str,
    ts: i64,
    nonce: &str,
) -> reqwest::StatusCode {
    let msg = api::request_message("GET", path, b"", ts, nonce, &phone.device_id);
    reqwest::Client::new()
        .get(format!("{}{path}", srv.base))
        .header(api::HEADER_DEVICE, &phone.device_id)
        .header(api::HEADER_TIMESTAMP, ts.to_string())
        .header(api::HEADER_NONCE, nonce)
        .header(api::HEADER_SIGNATURE, phone.key.sign(&msg))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_or_stale_device_request_is_refused() {
    let srv = server(ServerConfig::default()).await;
    let phone = user_with_phone(&srv, "alice").await;
    let now = real_now();
    assert_eq!(
        raw_signed_get(&srv, &phone, api::PATH_PENDING, now, "nonce-0123456789ab").await,
        200
    );
    assert_eq!(
        raw_signed_get(&srv, &phone, api::PATH_PENDING, now, "nonce-0123456789ab").await,
        401,
        "replay"
    );
    assert_eq!(
        raw_signed_get(
            &srv,
            &phone,
            api::PATH_PENDING,
            now - 200,
            "nonce-fresh-000001"
        )
        .await,
        401,
        "stale"
    );
    assert_eq!(
        raw_signed_get(
            &srv,
            &phone,
            api::PATH_PENDING,
            now + 200,
            "nonce-fresh-000002"
        )
        .await,
        401,
        "future"
    );
    // A signature for one path does not open another.
    let msg = api::request_message(
        "GET",
        api::PATH_PENDING,
        b"",
        now,
        "nonce-path-0000001",
        &phone.device_id,
    );
    let status = reqwest::Client::new()
        .get(format!("{}{}", srv.base, api::PATH_EVENTS))
        .header(api::HEADER_DEVICE, &phone.device_id)
        .header(api::HEADER_TIMESTAMP, now.to_string())
        .header(api::HEADER_NONCE, "nonce-path-0000001")
        .header(api::HEADER_SIGNATURE, phone.key.sign(&msg))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 401);
    // Unsigned requests are refused.
    let unsigned = reqwest::get(format!("{}{}", srv.base, api::PATH_PENDING))
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_signed_by_another_users_device_is_refused() {
    let srv = server(ServerConfig::default()).await;
    let alice = user_with_phone(&srv, "alice").await;
    let bob = user_with_phone(&srv, "bob").await;
    let (mut b, number) = sign_in(&srv, "alice").await;
    let c = only_pending(&srv, &alice).await;
    assert!(
        bob.client(&srv)
            .pending()
            .await
            .unwrap()
            .challenges
            .is_empty(),
        "bob never sees alice's request"
    );
    refused(
        bob.client(&srv)
            .respond(&bob.answer(&c, Decision::Approve, &number))
            .await,
        404,
        "unknown_request",
    );
    // Bob's key signing an answer sent under alice's device id fails the request signature.
    let forged = Phone {
        key: DeviceKey::from_secret(&bob.key.to_secret()).unwrap(),
        device_id: alice.device_id.clone(),
    };
    refused(
        forged
            .client(&srv)
            .respond(&forged.answer(&c, Decision::Approve, &number))
            .await,
        401,
        "bad_signature",
    );
    assert_eq!(
        b.post("/login/push/complete", &[]).await.location(),
        Some("/login/verify")
    );
    assert!(!b.has_session());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_moved_to_another_challenge_is_refused() {
    let srv = server(ServerConfig::default()).await;
    let phone = user_with_phone(&srv, "alice").await;
    let (_b1, n1) = sign_in(&srv, "alice").await;
    let first = only_pending(&srv, &phone).await;
    let old_answer = phone.answer(&first, Decision::Approve, &n1);
    let (mut b2, n2) = sign_in(&srv, "alice").await;
    let second = only_pending(&srv, &phone).await;
    assert_ne!(
        first.id, second.id,
        "the new request superseded the old one"
    );
    // The old signature under the new challenge id does not verify.
    let moved = RespondRequest {
        challenge_id: second.id.clone(),
        ..old_answer.clone()
    };
    refused(
        phone.client(&srv).respond(&moved).await,
        401,
        "bad_signature",
    );
    // The superseded challenge itself cannot be approved any more.
    refused(
        phone.client(&srv).respond(&old_answer).await,
        409,
        "not_pending",
    );
    // A signed answer is single use: replaying an approval changes nothing.
    let ok = phone.answer(&second, Decision::Approve, &n2);
    assert_eq!(
        phone.client(&srv).respond(&ok).await.unwrap().outcome,
        "approved"
    );
    refused(phone.client(&srv).respond(&ok).await, 409, "not_pending");
    assert_eq!(
        b2.post("/login/push/complete", &[]).await.location(),
        Some("/account")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_after_expiry_is_refused_and_the_page_says_so() {
    let mut config = ServerConfig::default();
    config.push.lifetime_secs = 30;
    let srv = server(config).await;
    let phone = user_with_phone(&srv, "alice").await;
    let (mut b, number) = sign_in(&srv, "alice").await;
    let c = only_pending(&srv, &phone).await;
    srv.clock.advance(31);
    refused(
        phone
            .client(&srv)
            .respond(&phone.answer(&c, Decision::Approve, &number))
            .await,
        409,
        "not_pending",
    );
    let status: serde_json::Value =
        serde_json::from_str(&b.get("/login/push/status").await.body).unwrap();
    assert_eq!(status["state"], "expired");
    assert!(b.get("/login/verify").await.body.contains("timed out"));
    assert_eq!(
        b.post("/login/push/complete", &[]).await.location(),
        Some("/login/verify")
    );
    // The phone no longer lists it either.
    assert!(phone
        .client(&srv)
        .pending()
        .await
        .unwrap()
        .challenges
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_and_deny_racing_give_exactly_one_outcome() {
    let srv = server(ServerConfig::default()).await;
    let phone = std::sync::Arc::new(user_with_phone(&srv, "alice").await);
    let (mut b, number) = sign_in(&srv, "alice").await;
    let c = only_pending(&srv, &phone).await;
    let base = srv.base.clone();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let decision = if i % 2 == 0 {
            Decision::Approve
        } else {
            Decision::Deny
        };
        let req = phone.answer(&c, decision, &number);
        let phone = phone.clone();
        let base = base.clone();
        tasks.push(tokio::spawn(async move {
            DeviceClient::new(&base, &phone.device_id, &phone.key)
                .respond(&req)
                .await
                .map(|r| r.outcome)
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        if let Ok(o) = t.await.unwrap() {
            outcomes.push(o);
        }
    }
    assert_eq!(outcomes.len(), 1, "exactly one answer wins: {outcomes:?}");
    let done = b.post("/login/push/complete", &[]).await;
    assert_eq!(
        done.location() == Some("/account"),
        outcomes[0] == "approved"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tabs_waiting_on_one_approval_get_one_session() {
    let srv = server(ServerConfig::default()).await;
    let phone = user_with_phone(&srv, "alice").await;
    let (b, number) = sign_in(&srv, "alice").await;
    let c = only_pending(&srv, &phone).await;
    phone
        .client(&srv)
        .respond(&phone.answer(&c, Decision::Approve, &number))
        .await
        .unwrap();
    let mut tabs: Vec<Browser> = (0..5).map(|_| b.clone()).collect();
    let results = futures_join(tabs.iter_mut().map(|t| t.post("/login/push/complete", &[]))).await;
    let sessions = results
        .iter()
        .filter(|p| p.location() == Some("/account"))
        .count();
    assert_eq!(
        sessions,
        1,
        "{:?}",
        results.iter().map(|p| p.location()).collect::<Vec<_>>()
    );
    let user = srv
        .store
        .find_user_by_username(srv.state.tenant, "alice")
        .await
        .unwrap()
        .unwrap();
    let ok = srv
        .store
        .list_audit(&sesame_store::AuditFilter {
            user: Some(user.id),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        ok.iter()
            .filter(|e| e.event == "sign_in" && e.method.as_deref() == Some("push"))
            .count(),
        1
    );
}

async fn futures_join<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut out = Vec::new();
    let pinned: Vec<_> = futs.map(Box::pin).collect();
    for f in pinned {
        out.push(f.await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_bombing_is_limited_and_one_request_is_pending_at_a_time() {
    let srv = server(ServerConfig::default()).await;
    let phone = user_with_phone(&srv, "alice").await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let (_b, number) = sign_in(&srv, "alice").await;
        assert_eq!(number.len(), 2);
        ids.push(only_pending(&srv, &phone).await.id);
    }
    ids.dedup();
    assert_eq!(
        ids.len(),
        5,
        "each sign-in made a new request, superseding the previous"
    );
    let (b, number) = sign_in(&srv, "alice").await;
    assert!(
        number.is_empty(),
        "the sixth request in 15 minutes is not sent"
    );
    let mut b = b;
    assert!(b
        .get("/login/verify")
        .await
        .body
        .contains("Too many sign-in requests"));
    assert!(phone.client(&srv).pending().await.unwrap().challenges.len() <= 1);
    // 15 minutes later, requests flow again.
    srv.clock.advance(901);
    let (_b, number) = sign_in(&srv, "alice").await;
    assert_eq!(number.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn challenge_created_before_the_user_was_blocked_cannot_be_approved() {
    let srv = server(ServerConfig::default()).await;
    let phone = user_with_phone(&srv, "alice").await;
    let (mut b, number) = sign_in(&srv, "alice").await;
    let c = only_pending(&srv, &phone).await;
    let user = srv
        .store
        .find_user_by_username(srv.state.tenant, "alice")
        .await
        .unwrap()
        .unwrap();
    srv.store.update_user_blocked(user.id, true).await.unwrap();
    refused(
        phone
            .client(&srv)
            .respond(&phone.answer(&c, Decision::Approve, &number))
            .await,
        403,
        "user_blocked",
    );
    let done = b.post("/login/push/complete", &[]).await;
    assert_ne!(done.location(), Some("/account"));
    assert!(!b.has_session());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_device_stops_its_pending_requests() {
    let srv = server(ServerConfig::default()).await;
    let phone = user_with_phone(&srv, "alice").await;
    let (mut b, number) = sign_in(&srv, "alice").await;
    let c = only_pending(&srv, &phone).await;
    phone.client(&srv).unregister().await.unwrap();
    refused(
        phone
            .client(&srv)
            .respond(&phone.answer(&c, Decision::Approve, &number))
            .await,
        401,
        "unknown_device",
    );
    let status: serde_json::Value =
        serde_json::from_str(&b.get("/login/push/status").await.body).unwrap();
    assert_eq!(status["state"], "cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activation_codes_are_single_use_expire_and_check_the_key() {
    let srv = server(ServerConfig::default()).await;
    srv.create_user("alice", Some("correct horse")).await;
    let mut b = srv.browser();
    b.password_step("alice", "correct horse").await;
    let link_of = |body: &str| {
        body.split("id=\"activation-link\">")
            .nth(1)
            .unwrap()
            .split('<')
            .next()
            .unwrap()
            .replace("&amp;", "&")
    };
    let (server_url, code) =
        api::parse_activation_link(&link_of(&b.get("/security-info/add/app").await.body)).unwrap();
    assert!(
        URL_SAFE_NO_PAD.decode(&code).unwrap().len() * 8 >= 112,
        "at least 112 bits"
    );
    // Unknown algorithm and broken keys are refused before the code is spent.
    let http = reqwest::Client::new();
    let url = format!("{server_url}{}", api::PATH_ACTIVATE);
    let bad = |alg: &str, pk: &str| serde_json::json!({"code": code, "device_name": "x", "alg": alg, "public_key": pk});
    let key = DeviceKey::generate();
    assert_eq!(
        http.post(&url)
            .json(&bad("RS256", &key.public_key()))
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        http.post(&url)
            .json(&bad("ES256", "AAAA"))
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        http.post(&url)
            .body("{\"code\":")
            .header("content-type", "application/json")
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    client::activate(&server_url, &code, "phone", &key)
        .await
        .unwrap();
    refused(
        client::activate(&server_url, &code, "phone", &DeviceKey::generate()).await,
        400,
        "invalid_code",
    );
    // A fresh code expires after 10 minutes.
    let (_, code2) =
        api::parse_activation_link(&link_of(&b.get("/security-info/add/app").await.body)).unwrap();
    srv.clock.advance(601);
    refused(
        client::activate(&server_url, &code2, "phone", &DeviceKey::generate()).await,
        400,
        "invalid_code",
    );
}
