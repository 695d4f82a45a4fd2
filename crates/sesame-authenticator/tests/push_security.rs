//! SECURITY.md "Push and phone sign-in" cases, through the real server and the app library.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sesame_authenticator::client::{self, ClientError, DeviceClient};
use sesame_authenticator::device::DeviceKey;
use sesame_proto::device::{self as api, approval_message, Challenge, Decision, RespondRequest};
use sesame_server::ServerConfig;

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
    let link = sesame_testkit::element_text(&page.body, "activation-link");
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
        .find_user_by_username(srv.state.default_tenant, "alice")
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
            .filter(
                |e| e.event == "sign_in" && e.method.as_ref().map(|m| m.as_str()) == Some("push")
            )
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
        .find_user_by_username(srv.state.default_tenant, "alice")
        .await
        .unwrap()
        .unwrap();
    srv.store
        .block_user(user.id, sesame_testkit::START)
        .await
        .unwrap();
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

/// A device removed while its event stream is open hears nothing more: the next request of
/// the user (with its application, address and location) reaches only the devices still
/// registered, and the removed device's stream ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_device_stops_hearing_requests_on_its_open_stream() {
    use sesame_proto::device::{DeviceEvent, ALG_ES256};
    use sesame_store::NewDevice;
    let srv = server(ServerConfig::default()).await;
    let old = user_with_phone(&srv, "alice").await;
    // A second phone, registered directly in the store.
    let user = srv
        .store
        .find_user_by_username(srv.store.default_tenant().await.unwrap(), "alice")
        .await
        .unwrap()
        .unwrap();
    let now = real_now();
    srv.store
        .create_activation(user.id, &[5; 32], now + 600)
        .await
        .unwrap();
    srv.store.consume_activation(&[5; 32], now).await.unwrap();
    let new_key = DeviceKey::generate();
    let new_device = srv
        .store
        .create_device(
            NewDevice {
                tenant: user.tenant,
                user: user.id,
                name: "new phone".into(),
                alg: ALG_ES256.into(),
                public_key: URL_SAFE_NO_PAD.decode(new_key.public_key()).unwrap(),
            },
            &[5; 32],
            &sesame_core::secret::SecretBytes::new(vec![3; 20]),
            now,
        )
        .await
        .unwrap();
    let new = Phone {
        key: new_key,
        device_id: new_device.id.0.clone(),
    };
    let old_client = old.client(&srv);
    let new_client = new.client(&srv);
    let mut old_stream = old_client.events().await.unwrap();
    let mut new_stream = new_client.events().await.unwrap();

    // The old phone is removed (here by itself; My security info and admins take the same path).
    old.client(&srv).unregister().await.unwrap();
    let (_b, _number) = sign_in(&srv, "alice").await;

    let wait = std::time::Duration::from_secs(10);
    match tokio::time::timeout(wait, new_stream.next()).await {
        Ok(Ok(Some(DeviceEvent::Challenge(_)))) => {}
        other => panic!("the registered phone gets the request, got {other:?}"),
    }
    match tokio::time::timeout(wait, old_stream.next()).await {
        Ok(Ok(None)) | Ok(Err(_)) => {}
        other => panic!("the removed phone's stream ends without the request, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activation_codes_are_single_use_expire_and_check_the_key() {
    let srv = server(ServerConfig::default()).await;
    srv.create_user("alice", Some("correct horse")).await;
    let mut b = srv.browser();
    b.password_step("alice", "correct horse").await;
    let link_of = |body: &str| sesame_testkit::element_text(body, "activation-link");
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

/// Registers a PIN key for the phone and turns phone sign-in on, through the device API.
async fn with_phone_sign_in(srv: &TestServer, phone: &Phone) -> DeviceKey {
    let pin_key = DeviceKey::generate();
    phone
        .client(srv)
        .pin_key(&api::PinKeyRequest {
            alg: api::ALG_ES256.into(),
            public_key: pin_key.public_key(),
            proof: None,
        })
        .await
        .unwrap();
    let st = phone
        .client(srv)
        .phone_sign_in(true, Some(&pin_key))
        .await
        .unwrap();
    assert!(st.phone_sign_in_awaiting_confirmation && !st.phone_sign_in_enabled);
    confirm_on_security_info(srv, phone, "alice").await;
    assert!(
        phone
            .client(srv)
            .status()
            .await
            .unwrap()
            .phone_sign_in_enabled
    );
    pin_key
}

/// Signs in with the password and the phone's approval (a fresh second step); returns the
/// browser, on My security info.
async fn fresh_session(srv: &TestServer, phone: &Phone, name: &str) -> Browser {
    let (mut b, number) = sign_in(srv, name).await;
    let c = only_pending(srv, phone).await;
    phone
        .client(srv)
        .respond(&phone.answer(&c, Decision::Approve, &number))
        .await
        .unwrap();
    assert_eq!(
        b.post("/login/push/complete", &[]).await.location(),
        Some("/account")
    );
    b.get("/security-info").await;
    b
}

/// The person confirms the app's request to turn phone sign-in on, on My security info.
async fn confirm_on_security_info(srv: &TestServer, phone: &Phone, name: &str) {
    let mut b = fresh_session(srv, phone, name).await;
    let p = b
        .post(
            &format!(
                "/security-info/devices/{}/confirm-phone-sign-in",
                phone.device_id
            ),
            &[],
        )
        .await;
    assert_eq!(p.location(), Some("/security-info?done=phone_sign_in_on"));
}

/// With a copy of the device key (and so any PIN key it registers), an attacker can only ask
/// for phone sign-in; it goes on when the person confirms it on My security info after a fresh
/// sign-in with a second step, within 10 minutes, and never from the admin console.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copied_device_key_alone_cannot_turn_on_phone_sign_in() {
    let srv = server(ServerConfig::default()).await;
    let phone = user_with_phone(&srv, "alice").await;
    let pin_key = DeviceKey::generate();
    phone
        .client(&srv)
        .pin_key(&api::PinKeyRequest {
            alg: api::ALG_ES256.into(),
            public_key: pin_key.public_key(),
            proof: None,
        })
        .await
        .unwrap();
    let st = phone
        .client(&srv)
        .phone_sign_in(true, Some(&pin_key))
        .await
        .unwrap();
    assert!(!st.phone_sign_in_enabled && st.phone_sign_in_awaiting_confirmation);
    assert!(st.message.contains("My security info"), "{}", st.message);
    // Not on: a username alone still goes to the password page.
    let mut b = srv.browser();
    b.get("/login").await;
    let p = b.post("/login", &[("username", "alice")]).await;
    assert_eq!(p.location(), Some("/login/password"));
    let confirm_path = format!(
        "/security-info/devices/{}/confirm-phone-sign-in",
        phone.device_id
    );
    // A session whose second step is no longer fresh is sent to sign in again first.
    let mut stale = fresh_session(&srv, &phone, "alice").await;
    let now = sesame_core::Clock::now(&*srv.clock);
    srv.clock.advance(601);
    let p = stale.post(&confirm_path, &[]).await;
    assert!(
        p.location().unwrap_or("").starts_with("/login?reauth=1"),
        "{:?}",
        p.location()
    );
    srv.clock.set(now);
    assert!(
        !phone
            .client(&srv)
            .status()
            .await
            .unwrap()
            .phone_sign_in_enabled
    );
    // A request that has waited more than 10 minutes: nothing to confirm.
    let d = srv
        .store
        .find_device(&phone.device_id.clone().into())
        .await
        .unwrap()
        .unwrap();
    srv.store
        .request_phone_sign_in(d.row_id, now - 601, "0000-0000")
        .await
        .unwrap();
    let mut me = fresh_session(&srv, &phone, "alice").await;
    let p = me.post(&confirm_path, &[]).await;
    assert_eq!(p.location(), Some("/security-info?done=nothing_to_confirm"));
    assert!(
        !phone
            .client(&srv)
            .status()
            .await
            .unwrap()
            .phone_sign_in_enabled
    );
    // An administrator cannot confirm for the person.
    srv.create_admin("root", Some("correct horse")).await;
    let mut a = srv.browser();
    a.password_step("root", "correct horse").await;
    a.get("/admin/users/alice").await;
    let p = a
        .post(
            &format!(
                "/admin/users/alice/devices/{}/confirm-phone-sign-in",
                phone.device_id
            ),
            &[],
        )
        .await;
    assert_eq!(p.status, 404, "{}", p.body);
    // Asked again, and confirmed in time by the person: on.
    phone
        .client(&srv)
        .phone_sign_in(true, Some(&pin_key))
        .await
        .unwrap();
    let page = me.get("/security-info").await;
    assert!(
        page.body.contains("waiting for your confirmation"),
        "{}",
        page.body
    );
    let p = me.post(&confirm_path, &[]).await;
    assert_eq!(p.location(), Some("/security-info?done=phone_sign_in_on"));
    assert!(
        phone
            .client(&srv)
            .status()
            .await
            .unwrap()
            .phone_sign_in_enabled
    );
    let log = srv.store.list_audit(&Default::default()).await.unwrap();
    assert_eq!(
        log.iter()
            .filter(|e| e.event == "phone_sign_in_requested")
            .count(),
        2
    );
    assert_eq!(
        log.iter()
            .filter(|e| e.event == "phone_sign_in_enabled"
                && e.result == sesame_store::AuditResult::Success)
            .count(),
        1
    );
}

/// Username only; returns the browser waiting for the phone and the number.
async fn phone_sign_in_page(srv: &TestServer, name: &str) -> (Browser, String) {
    let mut b = srv.browser();
    b.get("/login").await;
    let p = b.post("/login", &[("username", name)]).await;
    assert_eq!(p.location(), Some("/login/app"));
    let page = b.follow(p).await;
    let number = page
        .body
        .split("id=\"push-number\" aria-live=\"polite\">")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_string();
    (b, number)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phone_sign_in_approval_needs_the_pin_key_signature() {
    let srv = server(ServerConfig::default()).await;
    let phone = user_with_phone(&srv, "alice").await;
    let pin_key = with_phone_sign_in(&srv, &phone).await;
    let (mut b, number) = phone_sign_in_page(&srv, "alice").await;
    let c = only_pending(&srv, &phone).await;
    assert!(c.pin_required, "phone sign-in always needs the PIN");
    // Device key alone: refused, and nothing is counted against the PIN.
    let bare = phone.answer(&c, Decision::Approve, &number);
    refused(phone.client(&srv).respond(&bare).await, 401, "pin_required");
    // Signed by some other key (a wrong PIN, or a forger): refused and counted.
    let msg = approval_message(
        &c.id,
        &c.nonce,
        Decision::Approve,
        &number,
        &phone.device_id,
    );
    let forged = RespondRequest {
        pin_signature: Some(DeviceKey::generate().sign(&msg)),
        ..bare.clone()
    };
    refused(phone.client(&srv).respond(&forged).await, 401, "wrong_pin");
    // The PIN key's signature over another challenge's message does not carry over.
    let other = approval_message(
        "other",
        &c.nonce,
        Decision::Approve,
        &number,
        &phone.device_id,
    );
    let moved = RespondRequest {
        pin_signature: Some(pin_key.sign(&other)),
        ..bare.clone()
    };
    refused(phone.client(&srv).respond(&moved).await, 401, "wrong_pin");
    assert_eq!(
        b.post("/login/push/complete", &[]).await.location(),
        Some("/login/app")
    );
    let good = RespondRequest {
        pin_signature: Some(pin_key.sign(&msg)),
        ..bare
    };
    assert_eq!(
        phone.client(&srv).respond(&good).await.unwrap().outcome,
        "approved"
    );
    assert_eq!(
        b.post("/login/push/complete", &[]).await.location(),
        Some("/account")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_parallel_pin_guesses_are_judged_at_most_ten_times() {
    let srv = server(ServerConfig::default()).await;
    let phone = std::sync::Arc::new(user_with_phone(&srv, "alice").await);
    let pin_key = with_phone_sign_in(&srv, &phone).await;
    let (_b, number) = phone_sign_in_page(&srv, "alice").await;
    let c = only_pending(&srv, &phone).await;
    let msg = approval_message(
        &c.id,
        &c.nonce,
        Decision::Approve,
        &number,
        &phone.device_id,
    );
    // 49 wrong guesses and the right PIN, all at once: the right one wins only if it is among
    // the first ten judged; after ten wrong ones nothing is judged at all.
    let mut tasks = Vec::new();
    for i in 0..50 {
        let phone = phone.clone();
        let base = srv.base.clone();
        let sig = if i == 49 {
            pin_key.sign(&msg)
        } else {
            DeviceKey::generate().sign(&msg)
        };
        let req = RespondRequest {
            pin_signature: Some(sig),
            ..phone.answer(&c, Decision::Approve, &number)
        };
        tasks.push(tokio::spawn(async move {
            DeviceClient::new(&base, &phone.device_id, &phone.key)
                .respond(&req)
                .await
        }));
    }
    let (mut wrong, mut disabled, mut approved, mut closed) = (0, 0, 0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(r) if r.outcome == "approved" => approved += 1,
            Err(ClientError::Refused(e, _)) if e.error == "wrong_pin" => wrong += 1,
            Err(ClientError::Refused(e, _)) if e.error == "pin_disabled" => disabled += 1,
            // Judged after the right PIN approved: the request is no longer pending.
            Err(ClientError::Refused(e, _)) if e.error == "not_pending" => closed += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(wrong + disabled + approved + closed, 50);
    assert!(approved <= 1);
    let alice = srv
        .store
        .find_user_by_username(srv.state.default_tenant, "alice")
        .await
        .unwrap()
        .unwrap();
    let d = srv.store.list_devices(alice.id).await.unwrap().remove(0);
    // Nine answers say "wrong", the tenth turns the key off; every later one is refused unjudged.
    // (Only a right PIN among the first ten starts the count again.)
    let limit = if approved == 1 { 18 } else { 9 };
    assert!(wrong <= limit, "{wrong} wrong answers were judged");
    assert!(d.pin_key_failures <= 10, "{}", d.pin_key_failures);
    // Either the right PIN was among the first ten judged, or the key is off now.
    assert!(approved == 1 || d.pin_key_disabled_at.is_some());
    if approved == 0 {
        // No right PIN was judged: after at most nine "wrong", every other answer is refused
        // as disabled, and none can have found the request closed.
        assert_eq!(closed, 0);
        assert!(disabled >= 41, "{disabled}");
    } else if d.pin_key_disabled_at.is_some() {
        // The right PIN started the count again, and ten later wrong ones turned the key off.
        assert!(disabled >= 1, "{disabled}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_key_cannot_be_replaced_without_the_current_one_and_proofs_do_not_replay() {
    let srv = server(ServerConfig::default()).await;
    let phone = user_with_phone(&srv, "alice").await;
    let pin_key = with_phone_sign_in(&srv, &phone).await;
    let thief_key = DeviceKey::generate();
    let register = |proof: Option<String>| api::PinKeyRequest {
        alg: api::ALG_ES256.into(),
        public_key: thief_key.public_key(),
        proof,
    };
    // Someone holding the device key but not the PIN cannot swap in their own PIN key.
    refused(
        phone.client(&srv).pin_key(&register(None)).await,
        409,
        "pin_key_exists",
    );
    let bad = thief_key.sign(&api::pin_key_message(
        &phone.device_id,
        &thief_key.public_key(),
    ));
    refused(
        phone.client(&srv).pin_key(&register(Some(bad))).await,
        401,
        "wrong_pin",
    );
    // Turning phone sign-in on again needs a fresh proof bound to the request's nonce: a proof
    // made for another nonce is refused.
    phone.client(&srv).phone_sign_in(false, None).await.unwrap();
    let stale = pin_key.sign(&api::phone_sign_in_message(
        &phone.device_id,
        "old-nonce-0123456789",
    ));
    let body = serde_json::to_vec(&api::PhoneSignInRequest {
        enabled: true,
        proof: Some(stale),
    })
    .unwrap();
    let now = real_now();
    let nonce = "fresh-nonce-0123456789";
    let msg = api::request_message(
        "POST",
        api::PATH_PHONE_SIGN_IN,
        &body,
        now,
        nonce,
        &phone.device_id,
    );
    let resp = reqwest::Client::new()
        .post(format!("{}{}", srv.base, api::PATH_PHONE_SIGN_IN))
        .header(api::HEADER_DEVICE, &phone.device_id)
        .header(api::HEADER_TIMESTAMP, now.to_string())
        .header(api::HEADER_NONCE, nonce)
        .header(api::HEADER_SIGNATURE, phone.key.sign(&msg))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // The rightful owner rotates with a proof from the current key.
    let new_key = DeviceKey::generate();
    let proof = pin_key.sign(&api::pin_key_message(
        &phone.device_id,
        &new_key.public_key(),
    ));
    phone
        .client(&srv)
        .pin_key(&api::PinKeyRequest {
            alg: api::ALG_ES256.into(),
            public_key: new_key.public_key(),
            proof: Some(proof),
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_refuses_phone_sign_in_even_to_a_hand_made_request() {
    let srv = server(ServerConfig::default()).await;
    let phone = user_with_phone(&srv, "alice").await;
    let pin_key = DeviceKey::generate();
    phone
        .client(&srv)
        .pin_key(&api::PinKeyRequest {
            alg: api::ALG_ES256.into(),
            public_key: pin_key.public_key(),
            proof: None,
        })
        .await
        .unwrap();
    srv.set_policy(sesame_server::service::policy::PolicyEdit {
        mode: Some(sesame_core::policy::AuthenticatorMode::Push),
        ..Default::default()
    })
    .await;
    refused(
        phone.client(&srv).phone_sign_in(true, Some(&pin_key)).await,
        403,
        "not_allowed",
    );
    let log = srv.store.list_audit(&Default::default()).await.unwrap();
    assert!(log
        .iter()
        .any(|e| e.event == "phone_sign_in_enabled" && e.reason.as_deref() == Some("not_allowed")));
}

/// The methods policy is judged when the app is added, not only when it is used: a user
/// outside its targets gets no activation link, and a link made before the policy changed
/// activates nothing (the app never becomes their default method).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activation_is_refused_to_users_the_policy_does_not_target() {
    let srv = server(ServerConfig::default()).await;
    srv.create_user("alice", Some("correct horse")).await;
    let mut b = srv.browser();
    assert_eq!(
        b.password_step("alice", "correct horse").await.location(),
        Some("/account")
    );
    let page = b.get("/security-info/add/app").await;
    let link = sesame_testkit::element_text(&page.body, "activation-link");
    // The app is for the pilot group only, and alice is not in it.
    srv.store
        .create_group(srv.state.default_tenant, "pilot", real_now())
        .await
        .unwrap();
    srv.set_policy(sesame_server::service::policy::PolicyEdit {
        targets: Some("pilot".into()),
        ..Default::default()
    })
    .await;
    let (server, code) = api::parse_activation_link(&link).unwrap();
    let refused_activation =
        client::activate(&server, &code, "phone", &DeviceKey::generate()).await;
    refused(refused_activation, 403, "not_allowed");
    let alice = srv
        .store
        .find_user_by_username(srv.state.default_tenant, "alice")
        .await
        .unwrap()
        .unwrap();
    assert!(srv.store.list_devices(alice.id).await.unwrap().is_empty());
    assert_eq!(alice.default_method, None);
    let page = b.get("/security-info/add/app").await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(page
        .body
        .contains("does not allow the Sesame Authenticator app"));
    assert!(!page.body.contains("activation-link"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_keeps_at_most_two_event_streams() {
    let srv = server(ServerConfig::default()).await;
    let phone = user_with_phone(&srv, "alice").await;
    let client = phone.client(&srv);
    let mut first = client.events().await.unwrap();
    let mut second = client.events().await.unwrap();
    let mut third = client.events().await.unwrap();
    let wait = std::time::Duration::from_secs(10);
    // The oldest ended when the third opened; the two newest get the next request.
    match tokio::time::timeout(wait, first.next()).await {
        Ok(Ok(None)) => {}
        other => panic!("the oldest stream ends, got {other:?}"),
    }
    let (_b, _number) = sign_in(&srv, "alice").await;
    for s in [&mut second, &mut third] {
        match tokio::time::timeout(wait, s.next()).await {
            Ok(Ok(Some(api::DeviceEvent::Challenge(_)))) => {}
            other => panic!("an open stream gets the request, got {other:?}"),
        }
    }
    // Many more: the server keeps two, however many are asked for.
    let mut more = Vec::new();
    for _ in 0..20 {
        more.push(client.events().await.unwrap());
    }
    assert_eq!(srv.state.hub.streams_of(&phone.device_id), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_ends_event_streams_with_a_hint_to_reconnect() {
    let mut config = ServerConfig::default();
    config.connections.shutdown_secs = 30;
    let srv = server(config).await;
    let phone = user_with_phone(&srv, "alice").await;
    let client = phone.client(&srv);
    let mut stream = client.events().await.unwrap();
    let started = std::time::Instant::now();
    let stopping = tokio::spawn(srv.stop());
    let wait = std::time::Duration::from_secs(10);
    match tokio::time::timeout(wait, stream.next()).await {
        Ok(Ok(None)) => {}
        other => panic!("the stream ends, got {other:?}"),
    }
    assert_eq!(
        stream.retry_after(),
        Some(std::time::Duration::from_secs(2))
    );
    tokio::time::timeout(wait, stopping)
        .await
        .expect("the server stopped")
        .unwrap();
    // Well before the 30-second deadline: the stream did not hold the shutdown up.
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

/// A call's request (the voice channel) is answered only by the key pressed on the call: the
/// app never lists it, never hears of it on its stream, and cannot approve it even when it
/// signs a well-formed answer with the request's id and nonce.
#[tokio::test]
async fn a_calls_request_never_reaches_the_app_and_the_app_cannot_answer_it() {
    use sesame_core::method::{MethodKind, PhoneSlot};
    let srv = server(ServerConfig::default()).await;
    let phone = user_with_phone(&srv, "carl").await;
    let user = srv
        .store
        .find_user_by_username(srv.state.default_tenant, "carl")
        .await
        .unwrap()
        .unwrap();
    let methods = srv
        .store
        .save_phone(user.id, PhoneSlot::Mobile, "+31612345678", None, real_now())
        .await
        .unwrap();
    let voice = methods
        .iter()
        .find(|m| m.kind == MethodKind::Voice)
        .unwrap();
    srv.store
        .update_default_method(user.id, Some(voice.id))
        .await
        .unwrap();
    let mut b = srv.browser();
    let p = b.password_step("carl", "correct horse").await;
    assert_eq!(p.location(), Some("/login/verify"), "{}", p.body);
    let call = srv.store.outbox_list(1).await.unwrap().remove(0);
    assert_eq!(call.kind, "call");
    assert!(
        phone
            .client(&srv)
            .pending()
            .await
            .unwrap()
            .challenges
            .is_empty(),
        "the app must not list a call's request"
    );
    let record = srv
        .store
        .find_challenge(&sesame_core::ChallengeId(call.reference.clone()))
        .await
        .unwrap()
        .unwrap();
    let c = Challenge {
        id: record.id.0.clone(),
        kind: record.kind,
        nonce: record.nonce.clone(),
        username: "carl".into(),
        app_name: String::new(),
        ip: String::new(),
        location: String::new(),
        browser: String::new(),
        requested_at: record.created_at,
        expires_at: record.expires_at,
        pin_required: false,
    };
    refused(
        phone
            .client(&srv)
            .respond(&phone.answer(&c, Decision::Approve, ""))
            .await,
        404,
        "unknown_request",
    );
    assert_eq!(
        b.post("/login/push/complete", &[]).await.location(),
        Some("/login/verify"),
        "the app's answer approved nothing"
    );
    // The call itself still decides.
    assert!(sesame_server::service::phones::call_ended(
        &srv.state,
        &record.id,
        sesame_telephony::CallOutcome::Approved
    )
    .await
    .unwrap());
    assert_eq!(b.post("/login/push/complete", &[]).await.status, 303);
    assert!(b.has_session());
}
