//! The `twilio` gateways against [`FakeTwilio`]: the requests have the provider's format, errors
//! map and retry as documented, and the provider's signed webhooks, answered by a small
//! receiver built from the module's helpers the way the server uses them, drive a call to
//! each outcome while forged or tampered webhooks are refused.

use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use sesame_telephony::testing::{FakeTwilio, ProviderRequest};
use sesame_telephony::twilio::{
    call_status_outcome, confirm_fraud_twiml, gather_step, message_status, say_and_hangup_twiml,
    signature, verify_signature, voice_twiml, GatherStep, TwilioConfig, TwilioSms, TwilioVoice,
    STAGE_FIRST, STAGE_FRAUD,
};
use sesame_telephony::{
    Call, CallOutcome, DeliveryStatus, GatewayError, NoReports, SmsGateway, TextMessage,
    VoiceGateway,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WEBHOOK_BASE: &str = "https://login.example.com";
/// TwiML must be served as XML.
type Twiml = ([(header::HeaderName, &'static str); 1], String);

fn twiml(document: String) -> Twiml {
    (
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        document,
    )
}

const PROMPT: &str = "Sesame sign-in. Press pound to approve. Press zero to report fraud.";

fn message(reference: &str) -> TextMessage {
    TextMessage {
        to: "+15551234567".to_owned(),
        body: "Your Sesame sign-in code is 049599".to_owned(),
        reference: reference.to_owned(),
    }
}

/// Places a call through `voice` (its outcome reaches the webhook receiver, not `NoReports`).
async fn place(voice: &TwilioVoice, reference: &str) {
    voice
        .call(&call(reference, None), Arc::new(NoReports))
        .await
        .expect("call placed");
}

fn call(reference: &str, extension: Option<&str>) -> Call {
    Call {
        to: "+15557654321".to_owned(),
        extension: extension.map(str::to_owned),
        prompt: PROMPT.to_owned(),
        reference: reference.to_owned(),
        key_timeout: Duration::from_secs(10),
        ring_timeout: Duration::from_secs(30),
    }
}

fn fields(request: &ProviderRequest) -> HashMap<&str, &str> {
    request
        .fields
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect()
}

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

// ---------------------------------------------------------------------------------------------
// Requests to the provider

#[tokio::test]
async fn text_message_request_has_the_provider_format() {
    let fake = FakeTwilio::start().await.expect("fake provider");
    let gateway = TwilioSms::new(fake.config_for(WEBHOOK_BASE)).expect("valid config");
    assert_eq!(gateway.name(), "twilio");
    gateway.send(&message("msg-1")).await.expect("accepted");

    let messages = fake.messages();
    assert_eq!(messages.len(), 1);
    assert!(messages[0].sid.starts_with("SM"));
    assert_eq!(
        fields(&messages[0]),
        HashMap::from([
            ("To", "+15551234567"),
            ("From", "+15005550006"),
            ("Body", "Your Sesame sign-in code is 049599"),
            (
                "StatusCallback",
                "https://login.example.com/telephony/twilio/message-status/msg-1"
            ),
        ])
    );
    assert_eq!(fake.requests_received(), 1);
}

#[tokio::test]
async fn call_request_has_the_provider_format() {
    let fake = FakeTwilio::start().await.expect("fake provider");
    let gateway = TwilioVoice::new(fake.config_for(WEBHOOK_BASE)).expect("valid config");
    assert_eq!(gateway.name(), "twilio");
    gateway
        .call(&call("call-1", Some("1234")), Arc::new(NoReports))
        .await
        .expect("accepted");
    gateway
        .call(&call("call-2", None), Arc::new(NoReports))
        .await
        .expect("accepted");

    let calls = fake.calls();
    assert_eq!(calls.len(), 2);
    assert!(calls[0].sid.starts_with("CA"));
    assert_eq!(
        fields(&calls[0]),
        HashMap::from([
            ("To", "+15557654321"),
            ("From", "+15005550006"),
            (
                "Url",
                "https://login.example.com/telephony/twilio/voice/call-1"
            ),
            ("Method", "POST"),
            (
                "StatusCallback",
                "https://login.example.com/telephony/twilio/call-status/call-1"
            ),
            ("StatusCallbackMethod", "POST"),
            ("StatusCallbackEvent", "completed"),
            ("Timeout", "30"),
            ("SendDigits", "ww1234"),
        ])
    );
    assert_eq!(calls[1].field("SendDigits"), None);
    assert_eq!(
        calls[1].field("Url"),
        Some("https://login.example.com/telephony/twilio/voice/call-2")
    );
}

#[tokio::test]
async fn undialable_extension_is_refused_before_calling() {
    let fake = FakeTwilio::start().await.expect("fake provider");
    let gateway = TwilioVoice::new(fake.config_for(WEBHOOK_BASE)).expect("valid config");
    let result = gateway
        .call(&call("call-x", Some("12; DROP")), Arc::new(NoReports))
        .await;
    assert!(
        matches!(result, Err(GatewayError::Refused(_))),
        "{result:?}"
    );
    assert_eq!(fake.requests_received(), 0);
}

#[tokio::test]
async fn wrong_auth_token_is_refused_and_not_retried() {
    let fake = FakeTwilio::start().await.expect("fake provider");
    let mut config = fake.config_for(WEBHOOK_BASE);
    config.auth_token = "not-the-token".to_owned();
    let result = TwilioSms::new(config)
        .expect("valid config")
        .send(&message("msg-2"))
        .await;
    let Err(GatewayError::Refused(detail)) = result else {
        panic!("expected Refused, got {result:?}");
    };
    assert!(
        detail.contains("401") && detail.contains("20003"),
        "{detail}"
    );
    assert_eq!(fake.requests_received(), 1);
    assert!(fake.messages().is_empty());
}

#[tokio::test]
async fn invalid_number_is_refused_and_not_retried() {
    let fake = FakeTwilio::start().await.expect("fake provider");
    let gateway = TwilioSms::new(fake.config_for(WEBHOOK_BASE)).expect("valid config");
    let mut bad = message("msg-3");
    bad.to = "5551234567".to_owned();
    let result = gateway.send(&bad).await;
    let Err(GatewayError::Refused(detail)) = result else {
        panic!("expected Refused, got {result:?}");
    };
    assert!(
        detail.contains("400") && detail.contains("21211"),
        "{detail}"
    );
    assert!(!detail.contains("049599"), "{detail}");
    assert_eq!(fake.requests_received(), 1);
}

#[tokio::test]
async fn server_errors_are_retried_at_most_attempts_times() {
    let fake = FakeTwilio::start().await.expect("fake provider");
    let gateway = TwilioSms::new(fake.config_for(WEBHOOK_BASE)).expect("valid config");
    for _ in 0..3 {
        fake.fail_next(503);
    }
    let result = gateway.send(&message("msg-4")).await;
    let Err(GatewayError::Refused(detail)) = result else {
        panic!("expected Refused, got {result:?}");
    };
    assert!(detail.contains("503"), "{detail}");
    // attempts = 2: exactly two requests, then the gateway gives up.
    assert_eq!(fake.requests_received(), 2);
    assert!(fake.messages().is_empty());
}

#[tokio::test]
async fn one_server_error_or_rate_limit_is_retried_to_success() {
    for status in [500, 502, 429] {
        let fake = FakeTwilio::start().await.expect("fake provider");
        let gateway = TwilioVoice::new(fake.config_for(WEBHOOK_BASE)).expect("valid config");
        fake.fail_next(status);
        gateway
            .call(&call("call-3", None), Arc::new(NoReports))
            .await
            .unwrap_or_else(|e| panic!("HTTP {status} then success: {e:?}"));
        assert_eq!(fake.requests_received(), 2, "HTTP {status}");
        assert_eq!(fake.calls().len(), 1, "HTTP {status}");
    }
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    for status in [400, 403, 404, 409] {
        let fake = FakeTwilio::start().await.expect("fake provider");
        let gateway = TwilioSms::new(fake.config_for(WEBHOOK_BASE)).expect("valid config");
        fake.fail_next(status);
        let result = gateway.send(&message("msg-5")).await;
        assert!(
            matches!(result, Err(GatewayError::Refused(_))),
            "{status}: {result:?}"
        );
        assert_eq!(fake.requests_received(), 1, "HTTP {status}");
    }
}

#[tokio::test]
async fn unreachable_provider_is_reported_quickly() {
    let fake = FakeTwilio::start().await.expect("fake provider");
    let mut config = fake.config_for(WEBHOOK_BASE);
    config.api_base = format!("http://127.0.0.1:{}", closed_port());
    let started = Instant::now();
    let result = TwilioSms::new(config)
        .expect("valid config")
        .send(&message("msg-6"))
        .await;
    assert!(
        matches!(result, Err(GatewayError::Unreachable(_))),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn hung_provider_times_out_within_the_timeout() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let fake = FakeTwilio::start().await.expect("fake provider");
    let config = TwilioConfig {
        api_base: format!("http://{address}"),
        timeout_secs: 1,
        attempts: 3,
        ..fake.config_for(WEBHOOK_BASE)
    };
    let started = Instant::now();
    let result = TwilioVoice::new(config)
        .expect("valid config")
        .call(&call("call-4", None), Arc::new(NoReports))
        .await;
    let elapsed = started.elapsed();
    assert_eq!(result, Err(GatewayError::Timeout));
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_millis(1500),
        "{elapsed:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Webhooks: a receiver as the server would write it

#[derive(Default)]
struct Received {
    outcomes: Vec<(String, CallOutcome)>,
    deliveries: Vec<(String, DeliveryStatus)>,
    forged: usize,
}

struct Receiver {
    config: TwilioConfig,
    received: Mutex<Received>,
}

impl Receiver {
    fn received(&self) -> std::sync::MutexGuard<'_, Received> {
        self.received.lock().expect("lock")
    }

    /// A call reports one outcome: the first one wins.
    fn call_ended(&self, reference: &str, outcome: CallOutcome) {
        let mut received = self.received();
        if !received.outcomes.iter().any(|(r, _)| r == reference) {
            received.outcomes.push((reference.to_owned(), outcome));
        }
    }

    /// The form parameters, if the request is signed by the provider. The URL is the public
    /// one: `webhook_base` and the path and query as received.
    fn verified(
        &self,
        uri: &OriginalUri,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<HashMap<String, String>, StatusCode> {
        let url = format!(
            "{}{}",
            self.config.webhook_base,
            uri.path_and_query().map_or("", |pq| pq.as_str())
        );
        let params: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
        let header = headers
            .get("X-Twilio-Signature")
            .and_then(|v| v.to_str().ok());
        if !verify_signature(&url, &params, header, &self.config.auth_token) {
            self.received().forged += 1;
            return Err(StatusCode::FORBIDDEN);
        }
        Ok(params.into_iter().collect())
    }
}

type Shared = State<Arc<Receiver>>;

async fn voice(
    State(receiver): Shared,
    Path(reference): Path<String>,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Twiml, StatusCode> {
    receiver.verified(&uri, &headers, &body)?;
    let action = receiver.config.gather_url(&reference, STAGE_FIRST);
    Ok(twiml(voice_twiml(PROMPT, &action, 10)))
}

async fn gather(
    State(receiver): Shared,
    Path(reference): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Twiml, StatusCode> {
    let params = receiver.verified(&uri, &headers, &body)?;
    let stage = query.get("stage").map_or("", String::as_str);
    let digits = params.get("Digits").map_or("", String::as_str);
    let (outcome, document) = match gather_step(stage, digits) {
        GatherStep::Approve => (
            CallOutcome::Approved,
            say_and_hangup_twiml("Approved. Goodbye."),
        ),
        GatherStep::AskFraudConfirm => {
            let action = receiver.config.gather_url(&reference, STAGE_FRAUD);
            return Ok(twiml(confirm_fraud_twiml(&action, 10)));
        }
        GatherStep::Fraud => (
            CallOutcome::Fraud,
            say_and_hangup_twiml("Reported. Goodbye."),
        ),
        GatherStep::NoKey => (CallOutcome::NoKey, say_and_hangup_twiml("Goodbye.")),
    };
    receiver.call_ended(&reference, outcome);
    Ok(twiml(document))
}

async fn call_status(
    State(receiver): Shared,
    Path(reference): Path<String>,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(), StatusCode> {
    let params = receiver.verified(&uri, &headers, &body)?;
    let status = params.get("CallStatus").map_or("", String::as_str);
    match call_status_outcome(status) {
        Some(outcome) => receiver.call_ended(&reference, outcome),
        // Answered and ended without a decisive key (the gather already decided otherwise).
        None if status == "completed" => receiver.call_ended(&reference, CallOutcome::NoKey),
        None => {}
    }
    Ok(())
}

async fn message_status_hook(
    State(receiver): Shared,
    Path(reference): Path<String>,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(), StatusCode> {
    let params = receiver.verified(&uri, &headers, &body)?;
    let status = params.get("MessageStatus").map_or("", String::as_str);
    if let Some(status) = message_status(status, params.get("ErrorCode").map(String::as_str)) {
        receiver.received().deliveries.push((reference, status));
    }
    Ok(())
}

/// The fake provider, a receiver for its webhooks, and gateways configured for both.
async fn provider_and_receiver() -> (FakeTwilio, Arc<Receiver>, TwilioVoice, TwilioSms) {
    let fake = FakeTwilio::start().await.expect("fake provider");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let webhook_base = format!("http://{}", listener.local_addr().expect("address"));
    let config = fake.config_for(&webhook_base);
    let receiver = Arc::new(Receiver {
        config: config.clone(),
        received: Mutex::default(),
    });
    let router = Router::new()
        .route("/telephony/twilio/voice/{reference}", post(voice))
        .route("/telephony/twilio/gather/{reference}", post(gather))
        .route(
            "/telephony/twilio/call-status/{reference}",
            post(call_status),
        )
        .route(
            "/telephony/twilio/message-status/{reference}",
            post(message_status_hook),
        )
        .with_state(receiver.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let voice = TwilioVoice::new(config.clone()).expect("valid config");
    let sms = TwilioSms::new(config).expect("valid config");
    (fake, receiver, voice, sms)
}

#[tokio::test]
async fn pound_approves_the_call() {
    let (fake, receiver, voice, _) = provider_and_receiver().await;
    place(&voice, "approve-1").await;
    let documents = fake
        .answer_call(0, &["#"])
        .await
        .expect("signed webhooks accepted");
    assert_eq!(documents.len(), 2);
    assert!(
        documents[0].contains(&format!("<Say>{PROMPT}</Say>")),
        "{}",
        documents[0]
    );
    assert!(documents[0].contains("stage=first"), "{}", documents[0]);
    assert!(documents[1].contains("<Hangup/>"), "{}", documents[1]);
    fake.status_callback(0, "completed")
        .await
        .expect("accepted");
    let received = receiver.received();
    assert_eq!(
        received.outcomes,
        vec![("approve-1".to_owned(), CallOutcome::Approved)]
    );
    assert_eq!(received.forged, 0);
}

#[tokio::test]
async fn zero_then_pound_reports_fraud() {
    let (fake, receiver, voice, _) = provider_and_receiver().await;
    place(&voice, "fraud-1").await;
    assert!(fake.answer_call("CA-unknown", &["#"]).await.is_err());
    let sid = fake.calls()[0].sid.clone();
    let documents = fake
        .answer_call(sid.as_str(), &["0", "#"])
        .await
        .expect("signed webhooks accepted");
    assert_eq!(documents.len(), 3);
    assert!(documents[1].contains("stage=fraud"), "{}", documents[1]);
    assert_eq!(
        receiver.received().outcomes,
        vec![("fraud-1".to_owned(), CallOutcome::Fraud)]
    );
}

#[tokio::test]
async fn zero_without_confirmation_is_no_key() {
    let (fake, receiver, voice, _) = provider_and_receiver().await;
    place(&voice, "fraud-2").await;
    fake.answer_call(0, &["0", "1"]).await.expect("accepted");
    assert_eq!(
        receiver.received().outcomes,
        vec![("fraud-2".to_owned(), CallOutcome::NoKey)]
    );
}

#[tokio::test]
async fn no_key_then_hangup_is_no_key() {
    let (fake, receiver, voice, _) = provider_and_receiver().await;
    place(&voice, "silent-1").await;
    let documents = fake.answer_call(0, &[""]).await.expect("accepted");
    assert_eq!(documents.len(), 1, "no key: no request to the action");
    assert!(receiver.received().outcomes.is_empty());
    fake.status_callback(0, "completed")
        .await
        .expect("accepted");
    assert_eq!(
        receiver.received().outcomes,
        vec![("silent-1".to_owned(), CallOutcome::NoKey)]
    );
}

#[tokio::test]
async fn final_call_statuses_decide_unanswered_calls() {
    let (fake, receiver, voice, _) = provider_and_receiver().await;
    let cases = [
        ("no-answer", CallOutcome::NotAnswered),
        ("busy", CallOutcome::NotAnswered),
        ("canceled", CallOutcome::Rejected),
        (
            "failed",
            CallOutcome::Failed("the provider could not place the call".to_owned()),
        ),
    ];
    for (index, (status, _)) in cases.iter().enumerate() {
        place(&voice, &format!("status-{index}")).await;
        fake.status_callback(index, status).await.expect("accepted");
    }
    let expected: Vec<_> = cases
        .into_iter()
        .enumerate()
        .map(|(index, (_, outcome))| (format!("status-{index}"), outcome))
        .collect();
    assert_eq!(receiver.received().outcomes, expected);
}

#[tokio::test]
async fn message_status_callbacks_are_recorded() {
    let (fake, receiver, _, sms) = provider_and_receiver().await;
    sms.send(&message("msg-7")).await.expect("accepted");
    sms.send(&message("msg-8")).await.expect("accepted");
    fake.message_callback(0, "sent").await.expect("accepted");
    fake.message_callback(0, "delivered")
        .await
        .expect("accepted");
    fake.message_callback(1, "undelivered")
        .await
        .expect("accepted");
    assert_eq!(
        receiver.received().deliveries,
        vec![
            ("msg-7".to_owned(), DeliveryStatus::Sent),
            ("msg-7".to_owned(), DeliveryStatus::Delivered),
            (
                "msg-8".to_owned(),
                DeliveryStatus::Failed("undelivered (error 30003)".to_owned())
            ),
        ]
    );
}

#[tokio::test]
async fn forged_and_tampered_webhooks_are_refused() {
    let (fake, receiver, voice, _) = provider_and_receiver().await;
    place(&voice, "tamper-1").await;
    let placed = fake.calls()[0].clone();
    let gather_url = receiver.config.gather_url("tamper-1", STAGE_FIRST);
    let params = |digits: &str| -> Vec<(String, String)> {
        [
            ("AccountSid", fake.account_sid()),
            ("CallSid", placed.sid.as_str()),
            ("CallStatus", "in-progress"),
            ("Digits", digits),
            ("From", "+15005550006"),
            ("To", "+15557654321"),
        ]
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
    };
    let token = fake.auth_token();

    // Signed for "1", sent with "#".
    let signed_for_other_key = signature(&gather_url, &params("1"), token);
    let reply = fake
        .post_with_signature(&gather_url, &params("#"), Some(&signed_for_other_key))
        .await
        .expect("answered");
    assert_eq!(reply.status, 403);

    // Signed for the first stage, sent to the fraud stage.
    let signed_first = signature(&gather_url, &params("#"), token);
    let fraud_url = receiver.config.gather_url("tamper-1", STAGE_FRAUD);
    let reply = fake
        .post_with_signature(&fraud_url, &params("#"), Some(&signed_first))
        .await
        .expect("answered");
    assert_eq!(reply.status, 403);

    // Signed for another call's reference.
    let other_url = receiver.config.gather_url("tamper-2", STAGE_FIRST);
    let reply = fake
        .post_with_signature(&other_url, &params("#"), Some(&signed_first))
        .await
        .expect("answered");
    assert_eq!(reply.status, 403);

    // Signed with another token, and not signed at all.
    let wrong_token = signature(&gather_url, &params("#"), "not-the-token");
    for header in [Some(wrong_token.as_str()), None] {
        let reply = fake
            .post_with_signature(&gather_url, &params("#"), header)
            .await
            .expect("answered");
        assert_eq!(reply.status, 403);
    }

    let status_url = receiver.config.call_status_url("tamper-1");
    let reply = fake
        .post_with_signature(&status_url, &params(""), Some("AAAA"))
        .await
        .expect("answered");
    assert_eq!(reply.status, 403);

    assert!(receiver.received().outcomes.is_empty());
    assert_eq!(receiver.received().forged, 6);

    // The genuine request still goes through.
    let reply = fake
        .post_signed(&gather_url, &params("#"))
        .await
        .expect("answered");
    assert_eq!(reply.status, 200);
    assert_eq!(
        receiver.received().outcomes,
        vec![("tamper-1".to_owned(), CallOutcome::Approved)]
    );
}
