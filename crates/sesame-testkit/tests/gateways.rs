//! Texts and calls through real gateways, end to end through the real server: a code that
//! travels through Kannel (bearerbox, smsbox, fakesmsc on loopback) is typed back into the
//! sign-in page, and a call through a Twilio-compatible provider (a local stand-in speaking
//! its protocol, signing its webhooks) is answered with # and 0#.

use sesame_core::method::MethodKind;
use sesame_core::UserId;
use sesame_server::delivery::telephony::{SmsGatewayConfig, VoiceGatewayConfig};
use sesame_server::ServerConfig;
use sesame_telephony::testing::{FakeTwilio, Kannel, Pick};
use sesame_testkit::TestServer;
use std::time::{Duration, Instant};

const PASSWORD: &str = "correct horse";
const MOBILE: &str = "+31612345678";

async fn user_with_mobile(srv: &TestServer, name: &str, default: MethodKind) -> UserId {
    let u = srv.create_user(name, Some(PASSWORD)).await;
    srv.add_mobile(u.id, MOBILE, default).await;
    u.id
}

async fn wait_for<T>(limit: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_code_sent_through_kannel_is_typed_back_into_the_sign_in_page() {
    let kannel = Kannel::start();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut config = ServerConfig::default();
    config.telephony.sms =
        SmsGatewayConfig::Kannel(kannel.config(Some(format!("{base}/telephony/kannel/dlr"))));
    let srv = TestServer::spawn_on(listener, config).await;
    user_with_mobile(&srv, "lena", MethodKind::Sms).await;
    let mut b = srv.browser();
    let p = b.password_step("lena", PASSWORD).await;
    assert_eq!(p.location(), Some("/login/verify"), "{}", p.body);
    // The phone (fakesmsc) received the text: read the code from it.

    let code = wait_for(Duration::from_secs(10), async || {
        let log = kannel.phone_log();
        log.lines()
            .rfind(|l| l.contains(MOBILE) && l.contains("verification code"))
            .and_then(|l| {
                let digits: String = l
                    .split_whitespace()
                    .find(|w| w.len() == 6 && w.chars().all(|c| c.is_ascii_digit()))?
                    .to_string();
                Some(digits)
            })
    })
    .await
    .expect("the text reaches fakesmsc");
    // Nothing went to the outbox.
    assert!(srv.store.outbox_list(10).await.unwrap().is_empty());
    let done = b.post("/login/verify", &[("code", &code)]).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert!(b.has_session());
    let dlr = reqwest::get(format!(
        "{}/telephony/kannel/dlr?ref=nothing-sent&type=1",
        srv.base
    ))
    .await
    .unwrap();
    assert_eq!(
        dlr.status(),
        200,
        "a report for an unknown text is acknowledged, and ignored"
    );
    let bad = reqwest::get(format!("{}/telephony/kannel/dlr?type=1", srv.base))
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

async fn twilio_server(fake: &FakeTwilio) -> TestServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut config = ServerConfig::default();
    let cfg = fake.config_for(&base);
    config.telephony.sms = SmsGatewayConfig::Twilio(cfg.clone());
    config.telephony.voice = VoiceGatewayConfig::Twilio(cfg);
    TestServer::spawn_on(listener, config).await
}

#[tokio::test]
async fn a_call_through_a_twilio_compatible_provider_is_answered_with_pound() {
    let fake = FakeTwilio::start().await.unwrap();
    let srv = twilio_server(&fake).await;
    let u = user_with_mobile(&srv, "mona", MethodKind::Voice).await;
    let mut b = srv.browser();
    let p = b.password_step("mona", PASSWORD).await;
    assert_eq!(p.location(), Some("/login/verify"), "{}", p.body);
    let calls = fake.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].field("To"), Some(MOBILE));
    let twiml = fake.answer_call(Pick::Index(0), &["#"]).await.unwrap();
    assert!(twiml[0].contains("<Gather"), "{twiml:?}");
    let p = b.post("/login/push/complete", &[]).await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert!(b.has_session());
    assert!(srv
        .store
        .find_user(u)
        .await
        .unwrap()
        .unwrap()
        .push_blocked_at
        .is_none());
}

#[tokio::test]
async fn zero_pound_through_the_provider_blocks_and_unsigned_webhooks_are_refused() {
    let fake = FakeTwilio::start().await.unwrap();
    let srv = twilio_server(&fake).await;
    let u = user_with_mobile(&srv, "nina", MethodKind::Voice).await;
    let mut b = srv.browser();
    b.password_step("nina", PASSWORD).await;
    let reference = fake.calls()[0]
        .field("Url")
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    // Unsigned, or signed with another token: refused, and nothing is approved.
    let http = reqwest::Client::new();
    let gather = format!(
        "{}/telephony/twilio/gather/{reference}?stage=first",
        srv.base
    );
    let r = http
        .post(&gather)
        .form(&[("Digits", "#")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let forged = sesame_telephony::twilio::signature(
        &gather,
        &[("Digits".to_string(), "#".to_string())],
        "not-the-token",
    );
    let r = http
        .post(&gather)
        .header("X-Twilio-Signature", forged)
        .form(&[("Digits", "#")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let p = b.post("/login/push/complete", &[]).await;
    assert!(!b.has_session(), "{}", p.body);
    // The person presses 0 then #.
    fake.answer_call(Pick::Index(0), &["0", "#"]).await.unwrap();
    assert!(srv
        .store
        .find_user(u)
        .await
        .unwrap()
        .unwrap()
        .push_blocked_at
        .is_some());
    let page = b.get("/login/verify").await;
    assert!(
        page.body.contains("reported this sign-in as not you"),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn a_text_through_a_twilio_compatible_provider_signs_in() {
    let fake = FakeTwilio::start().await.unwrap();
    let srv = twilio_server(&fake).await;
    user_with_mobile(&srv, "olga", MethodKind::Sms).await;
    let mut b = srv.browser();
    b.password_step("olga", PASSWORD).await;
    let messages = fake.messages();
    assert_eq!(messages.len(), 1);
    let body = messages[0].field("Body").unwrap().to_string();
    let code: String = body.chars().take(6).collect();
    fake.message_callback(Pick::Index(0), "delivered")
        .await
        .unwrap();
    let done = b.post("/login/verify", &[("code", &code)]).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert!(b.has_session());
}

#[tokio::test]
async fn a_provider_that_fails_tells_the_person_to_choose_another_method() {
    let fake = FakeTwilio::start().await.unwrap();
    let srv = twilio_server(&fake).await;
    user_with_mobile(&srv, "pia", MethodKind::Sms).await;
    fake.fail_next(500);
    fake.fail_next(500);
    let mut b = srv.browser();
    let p = b.password_step("pia", PASSWORD).await;
    assert_eq!(p.status, 503, "{}", p.body);
    assert!(p.body.contains("couldn&#39;t send a text"), "{}", p.body);
    assert!(p.body.contains("Use a different verification option"));
}

#[tokio::test]
async fn a_text_the_provider_could_not_deliver_is_said_on_the_code_page() {
    let fake = FakeTwilio::start().await.unwrap();
    let srv = twilio_server(&fake).await;
    user_with_mobile(&srv, "quin", MethodKind::Sms).await;
    let mut b = srv.browser();
    b.password_step("quin", PASSWORD).await;
    let page = b.get("/login/verify").await;
    assert!(
        !page.body.contains("could not be delivered"),
        "{}",
        page.body
    );
    // The provider's signed status callback for this text:
    fake.message_callback(Pick::Index(0), "undelivered")
        .await
        .unwrap();
    let page = b.get("/login/verify").await;
    assert!(
        page.body.contains("could not be delivered"),
        "{}",
        page.body
    );
    // A new code that goes out clears it.
    let p = b.post("/login/verify/resend", &[]).await;
    assert_eq!(p.status, 303, "{}", p.body);
    let page = b.get("/login/verify").await;
    assert!(
        !page.body.contains("could not be delivered"),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn a_number_is_stored_only_encrypted() {
    // Through a provider, not the development outbox (which keeps what it "sent" readable).
    let fake = FakeTwilio::start().await.unwrap();
    let srv = twilio_server(&fake).await;
    srv.create_user("rita", Some(PASSWORD)).await;
    let mut b = srv.browser();
    b.password_step("rita", PASSWORD).await;
    let p = b
        .post("/security-info/add/phone", &[("number", MOBILE)])
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    let code: String = fake.messages()[0]
        .field("Body")
        .unwrap()
        .chars()
        .take(6)
        .collect();
    let p = b
        .post(
            "/security-info/add/phone/verify",
            &[("number", MOBILE), ("code", &code)],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(
        srv.store
            .list_methods(
                srv.store
                    .find_user_by_username(srv.state.default_tenant, "rita")
                    .await
                    .unwrap()
                    .unwrap()
                    .id
            )
            .await
            .unwrap()
            .len(),
        2
    );
    // In no file of the database (nor its write-ahead log): not the number, not its digits,
    // not the code.
    for file in ["sesame.db", "sesame.db-wal"] {
        let bytes = std::fs::read(srv.dir.path().join(file)).unwrap_or_default();
        for needle in [MOBILE.as_bytes(), b"612345678", code.as_bytes()] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{file} holds {} in clear",
                String::from_utf8_lossy(needle)
            );
        }
    }
}
