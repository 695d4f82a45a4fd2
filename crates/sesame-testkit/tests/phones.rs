//! Texts and calls through the real HTTP server, with the embedded outbox as the gateway
//! (issue 13; SECURITY.md "Codes"): adding a number with the texted code, signing in with a
//! text or a call, # and 0#, resends, limits, countries, switching methods.

use sesame_core::audit::{AuditMethod, Event};
use sesame_core::method::{MethodKind, PhoneSlot};
use sesame_core::{ChallengeId, UserId};
use sesame_server::service::phones;
use sesame_store::{AuditFilter, AuditResult, OutboxItem};
use sesame_telephony::CallOutcome;
use sesame_testkit::{Browser, TestServer};

const PASSWORD: &str = "correct horse";
const MOBILE: &str = "+31612345678";

async fn outbox(srv: &TestServer) -> Vec<OutboxItem> {
    srv.store.outbox_list(100).await.unwrap()
}

/// The code in the newest text to `to`.
async fn last_code(srv: &TestServer, to: &str) -> String {
    let item = outbox(srv)
        .await
        .into_iter()
        .find(|i| i.kind == "sms" && i.to == to)
        .expect("a text in the outbox");
    item.body.chars().take(6).collect()
}

async fn user_with_mobile(srv: &TestServer, name: &str, default: MethodKind) -> UserId {
    let u = srv.create_user(name, Some(PASSWORD)).await;
    srv.add_mobile(u.id, MOBILE, default).await;
    u.id
}

async fn log(srv: &TestServer, user: UserId) -> Vec<sesame_store::AuditEvent> {
    srv.store
        .list_audit(&AuditFilter {
            user: Some(user),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
}

/// Signs in with the password and lands on the second-step page.
async fn at_second_step(srv: &TestServer, name: &str) -> (Browser, String) {
    let mut b = srv.browser();
    let p = b.password_step(name, PASSWORD).await;
    assert_eq!(p.location(), Some("/login/verify"), "{}", p.body);
    let page = b.follow(p).await;
    assert_eq!(page.status, 200, "{}", page.body);
    (b, page.body)
}

#[tokio::test]
async fn a_mobile_number_is_proved_by_its_code_and_then_signs_in_by_text() {
    let srv = TestServer::spawn().await;
    let u = srv.create_user("carol", Some(PASSWORD)).await;
    let mut b = srv.browser();
    let p = b.password_step("carol", PASSWORD).await;
    assert!(b.has_session(), "{}", p.body);
    let form = b.get("/security-info/add/phone").await;
    assert_eq!(form.status, 200, "{}", form.body);
    // A number without its country code is refused with a reason; nothing is sent.
    let bad = b
        .post("/security-info/add/phone", &[("number", "06 12345678")])
        .await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("country code"), "{}", bad.body);
    assert!(outbox(&srv).await.is_empty());
    let sent = b
        .post("/security-info/add/phone", &[("number", "+31 6 1234 5678")])
        .await;
    assert_eq!(sent.status, 200, "{}", sent.body);
    assert!(sent.body.contains("+31 6 ••••••78"), "{}", sent.body);
    let text = outbox(&srv).await.remove(0);
    assert_eq!(text.to, MOBILE);
    // The message names the service and nothing more.
    assert_eq!(text.body[6..], *" is your Sesame verification code.");
    // A wrong code keeps the number unsaved.
    let wrong = b
        .post(
            "/security-info/add/phone/verify",
            &[("number", MOBILE), ("code", "000000")],
        )
        .await;
    assert_eq!(wrong.status, 400);
    assert!(srv.store.list_methods(u.id).await.unwrap().is_empty());
    // The code is bound to the number it went to: another number finds no code.
    let code = last_code(&srv, MOBILE).await;
    let other = b
        .post(
            "/security-info/add/phone/verify",
            &[("number", "+31612345679"), ("code", &code)],
        )
        .await;
    assert_eq!(other.status, 400, "{}", other.body);
    let ok = b
        .post(
            "/security-info/add/phone/verify",
            &[("number", MOBILE), ("code", &code)],
        )
        .await;
    assert_eq!(
        ok.location(),
        Some("/security-info?done=phone_added"),
        "{}",
        ok.body
    );
    let kinds: Vec<MethodKind> = srv
        .store
        .list_methods(u.id)
        .await
        .unwrap()
        .iter()
        .map(|m| m.kind)
        .collect();
    assert_eq!(kinds, vec![MethodKind::Sms, MethodKind::Voice]);
    let info = b.get("/security-info").await;
    assert!(
        info.body.contains("Phone (text message) — +31 6 ••••••78"),
        "{}",
        info.body
    );
    assert!(!info.body.contains(MOBILE));

    // Next sign-in: the text is the default method.
    let (mut b, page) = at_second_step(&srv, "carol").await;
    assert!(page.contains("texted"), "{page}");
    let code = last_code(&srv, MOBILE).await;
    let done = b.post("/login/verify", &[("code", &code)]).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert!(b.has_session());
    let lines = log(&srv, u.id).await;
    assert!(lines.iter().any(|l| l.event == Event::SignIn
        && l.method == Some(AuditMethod::Sms)
        && l.result == AuditResult::Success));
    assert!(lines.iter().any(|l| l.event == Event::PhoneAdded));
}

#[tokio::test]
async fn a_texted_code_works_once_and_a_resend_replaces_it_but_keeps_the_count() {
    let srv = TestServer::spawn().await;
    let u = user_with_mobile(&srv, "dave", MethodKind::Sms).await;
    let (mut b, _) = at_second_step(&srv, "dave").await;
    let first = last_code(&srv, MOBILE).await;
    let wrong = if first == "111111" {
        "222222"
    } else {
        "111111"
    };
    let p = b.post("/login/verify", &[("code", wrong)]).await;
    assert_eq!(p.status, 401);
    // Malformed input is refused before anything is counted.
    let p = b.post("/login/verify", &[("code", "12ab56")]).await;
    assert_eq!(p.status, 400);
    let (failures, _) = srv.store.find_failures(u, MethodKind::Sms).await.unwrap();
    assert_eq!(failures, 1);
    let p = b.post("/login/verify/resend", &[]).await;
    assert_eq!(p.status, 303, "{}", p.body);
    let second = last_code(&srv, MOBILE).await;
    // The count of wrong codes survives the resend.
    let (failures, _) = srv.store.find_failures(u, MethodKind::Sms).await.unwrap();
    assert_eq!(failures, 1);
    if first != second {
        let p = b.post("/login/verify", &[("code", &first)]).await;
        assert_eq!(p.status, 401, "the replaced code must not work");
    }
    let p = b.post("/login/verify", &[("code", &second)]).await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert!(b.has_session());
    // Used once: the same code cannot finish another sign-in.
    let (mut other, _) = at_second_step(&srv, "dave").await;
    let p = other.post("/login/verify", &[("code", &second)]).await;
    assert_eq!(p.status, 401);
}

#[tokio::test]
async fn texts_are_limited_per_user_number_and_address() {
    let srv = TestServer::spawn().await;
    user_with_mobile(&srv, "erin", MethodKind::Sms).await;
    // Three sends in the window (the sign-in's own text, then two resends)...
    let (mut b, _) = at_second_step(&srv, "erin").await;
    for _ in 0..2 {
        let p = b.post("/login/verify/resend", &[]).await;
        assert_eq!(p.status, 303, "{}", p.body);
    }
    assert_eq!(outbox(&srv).await.len(), 3);
    // ...and the fourth is refused, with words that say what to do.
    let p = b.post("/login/verify/resend", &[]).await;
    assert_eq!(p.status, 503);
    assert!(p.body.contains("Too many texts"), "{}", p.body);
    assert_eq!(outbox(&srv).await.len(), 3);
    // Another user on the same number is held by the number's count.
    let f = srv.create_user("frank", Some(PASSWORD)).await;
    srv.store
        .save_phone(f.id, PhoneSlot::Mobile, MOBILE, None, 0)
        .await
        .unwrap();
    let mut fb = srv.browser_from([127, 0, 0, 9]);
    let p = fb.password_step("frank", PASSWORD).await;
    assert_eq!(p.status, 503, "{}", p.body);
    assert_eq!(outbox(&srv).await.len(), 3);
}

#[tokio::test]
async fn numbers_outside_the_allowed_countries_get_nothing() {
    let mut config = sesame_server::ServerConfig::default();
    config.telephony.allowed_country_codes = vec![32];
    let srv = TestServer::spawn_with(config).await;
    srv.create_user("gina", Some(PASSWORD)).await;
    let mut b = srv.browser();
    b.password_step("gina", PASSWORD).await;
    let p = b
        .post("/security-info/add/phone", &[("number", MOBILE)])
        .await;
    assert_eq!(p.status, 400);
    assert!(p.body.contains("(+31) cannot be used"), "{}", p.body);
    assert!(outbox(&srv).await.is_empty());
}

/// The request the outbox's newest call stands for.
async fn last_call(srv: &TestServer) -> OutboxItem {
    outbox(srv)
        .await
        .into_iter()
        .find(|i| i.kind == "call")
        .expect("a call in the outbox")
}

#[tokio::test]
async fn a_call_answered_with_pound_signs_in() {
    let srv = TestServer::spawn().await;
    let u = user_with_mobile(&srv, "hank", MethodKind::Voice).await;
    let (mut b, page) = at_second_step(&srv, "hank").await;
    assert!(page.contains("calling your phone"), "{page}");
    assert!(page.contains("••78"), "{page}");
    let call = last_call(&srv).await;
    assert_eq!(call.state, "ringing");
    assert!(call.body.contains("This is Sesame"), "{}", call.body);
    // Not yet answered: completing does nothing.
    let p = b.post("/login/push/complete", &[]).await;
    assert_eq!(p.location(), Some("/login/verify"));
    assert!(!b.has_session());
    // (That the app can neither see nor answer it: sesame-authenticator tests/push_security.rs.)
    let answered = phones::call_ended(
        &srv.state,
        &ChallengeId(call.reference.clone()),
        CallOutcome::Approved,
    )
    .await
    .unwrap();
    assert!(answered);
    // Answered once: a second report changes nothing.
    assert!(!phones::call_ended(
        &srv.state,
        &ChallengeId(call.reference.clone()),
        CallOutcome::Fraud
    )
    .await
    .unwrap());
    let status = b.get("/login/push/status").await;
    assert!(status.body.contains("approved"), "{}", status.body);
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
    // The called method is "Last used" now; the text method was not used.
    let methods = srv.store.list_methods(u).await.unwrap();
    let used = |k: MethodKind| methods.iter().find(|m| m.kind == k).unwrap().last_used_at;
    assert!(used(MethodKind::Voice).is_some());
    assert!(used(MethodKind::Sms).is_none());
    let lines = log(&srv, u).await;
    assert!(
        lines.iter().any(|l| l.event == Event::SignIn
            && l.method == Some(AuditMethod::Voice)
            && l.result == AuditResult::Success),
        "{lines:?}"
    );
}

#[tokio::test]
async fn zero_pound_reports_fraud_blocks_calls_and_shows_in_the_log() {
    let srv = TestServer::spawn().await;
    let u = user_with_mobile(&srv, "ivan", MethodKind::Voice).await;
    let (mut b, _) = at_second_step(&srv, "ivan").await;
    let call = last_call(&srv).await;
    assert!(
        phones::call_ended(&srv.state, &ChallengeId(call.reference), CallOutcome::Fraud)
            .await
            .unwrap()
    );
    let p = b.post("/login/push/complete", &[]).await;
    assert!(!b.has_session(), "{}", p.body);
    let page = b.get("/login/verify").await;
    assert!(
        page.body.contains("reported this sign-in as not you"),
        "{}",
        page.body
    );
    assert!(srv
        .store
        .find_user(u)
        .await
        .unwrap()
        .unwrap()
        .push_blocked_at
        .is_some());
    assert!(log(&srv, u)
        .await
        .iter()
        .any(|l| l.event == Event::FraudReported && l.method == Some(AuditMethod::Voice)));
    // The next sign-in places no call.
    let calls = outbox(&srv).await.len();
    let mut again = srv.browser();
    let page = again.password_step("ivan", PASSWORD).await;
    assert!(
        page.body.contains("Calls to your phone are blocked"),
        "{}",
        page.body
    );
    assert!(!again.has_session());
    assert_eq!(outbox(&srv).await.len(), calls);
}

#[tokio::test]
async fn unanswered_and_failed_calls_say_so() {
    let srv = TestServer::spawn().await;
    user_with_mobile(&srv, "judy", MethodKind::Voice).await;
    for (outcome, words) in [
        (CallOutcome::NotAnswered, "was not answered"),
        (CallOutcome::Rejected, "rejected"),
        (CallOutcome::NoKey, "No key was pressed"),
        (
            CallOutcome::Failed("503".into()),
            "couldn&#39;t call your phone",
        ),
    ] {
        let (mut b, _) = at_second_step(&srv, "judy").await;
        let call = last_call(&srv).await;
        assert!(
            phones::call_ended(&srv.state, &ChallengeId(call.reference), outcome.clone())
                .await
                .unwrap()
        );
        let page = b.get("/login/verify").await;
        assert!(page.body.contains(words), "{outcome:?}: {}", page.body);
        assert!(page.body.contains("Call again"), "{}", page.body);
        srv.clock.advance(1000);
    }
}

#[tokio::test]
async fn every_method_is_offered_and_switching_withdraws_the_last_one() {
    let srv = TestServer::spawn().await;
    let u = srv.create_user("kim", Some(PASSWORD)).await.id;
    srv.add_totp(
        u,
        &sesame_core::secret::SecretBytes::new(b"0123456789abcdefghij".to_vec()),
    )
    .await;
    let methods = srv
        .store
        .save_phone(u, PhoneSlot::Mobile, MOBILE, None, 0)
        .await
        .unwrap();
    let voice = methods
        .iter()
        .find(|m| m.kind == MethodKind::Voice)
        .unwrap();
    srv.store
        .update_default_method(u, Some(voice.id))
        .await
        .unwrap();
    let (mut b, _) = at_second_step(&srv, "kim").await;
    let call = last_call(&srv).await;
    let options = b.get("/login/methods").await;
    // The default first, each named as the person knows it.
    let call_at = options.body.find("Call ••78").expect("call option");
    let text_at = options.body.find("Text ••78").expect("text option");
    assert!(options
        .body
        .contains("Authenticator app (verification code)"));
    assert!(call_at < text_at, "{}", options.body);
    let p = b.post("/login/methods", &[("method", "sms")]).await;
    assert_eq!(p.location(), Some("/login/verify"), "{}", p.body);
    // The call's request was withdrawn: a late # changes nothing.
    assert!(!phones::call_ended(
        &srv.state,
        &ChallengeId(call.reference),
        CallOutcome::Approved
    )
    .await
    .unwrap());
    let code = last_code(&srv, MOBILE).await;
    // Back to the call: the texted code no longer works.
    b.post("/login/methods", &[("method", "voice")]).await;
    b.post("/login/methods", &[("method", "sms")]).await;
    let fresh = last_code(&srv, MOBILE).await;
    if fresh != code {
        let p = b.post("/login/verify", &[("code", &code)]).await;
        assert_eq!(p.status, 401);
    }
    let p = b.post("/login/verify", &[("code", &fresh)]).await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert!(b.has_session());
}

#[tokio::test]
async fn a_code_is_bound_to_its_purpose_and_a_change_tells_the_old_number() {
    // More sends than the default three: this test sends five texts to one user.
    let mut config = sesame_server::ServerConfig::default();
    config.telephony.sends_per_window = 10;
    let srv = TestServer::spawn_with(config).await;
    user_with_mobile(&srv, "lars", MethodKind::Sms).await;
    // Signed in with a text: a fresh second step, so the number may change.
    let (mut b, page) = at_second_step(&srv, "lars").await;
    assert!(
        page.contains("Send a new code"),
        "a texted code can be sent again"
    );
    let code = last_code(&srv, MOBILE).await;
    assert_eq!(
        b.post("/login/verify", &[("code", &code)]).await.status,
        303
    );
    // A code sent to add (the same) number...
    let p = b
        .post("/security-info/add/phone", &[("number", MOBILE)])
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    let enrol = last_code(&srv, MOBILE).await;
    // ...does not finish a sign-in, although it went to the same phone.
    let (mut other, _) = at_second_step(&srv, "lars").await;
    let signin = last_code(&srv, MOBILE).await;
    if enrol != signin {
        let p = other.post("/login/verify", &[("code", &enrol)]).await;
        assert_eq!(
            p.status, 401,
            "a code for adding a number is not a sign-in code"
        );
    }
    // Changing to a new number texts the old one.
    let new = "+31612345670";
    let p = b.post("/security-info/add/phone", &[("number", new)]).await;
    assert_eq!(p.status, 200, "{}", p.body);
    let code = last_code(&srv, new).await;
    let p = b
        .post(
            "/security-info/add/phone/verify",
            &[("number", new), ("code", &code)],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    let told = outbox(&srv).await.remove(0);
    assert_eq!(told.to, MOBILE);
    assert!(told.body.contains("was changed"), "{}", told.body);
}

#[tokio::test]
async fn an_app_code_page_offers_no_resend() {
    let srv = TestServer::spawn().await;
    let u = srv.create_user("mia", Some(PASSWORD)).await;
    srv.add_totp(
        u.id,
        &sesame_core::secret::SecretBytes::new(b"0123456789abcdefghij".to_vec()),
    )
    .await;
    let (mut b, page) = at_second_step(&srv, "mia").await;
    assert!(!page.contains("Send a new code"), "{page}");
    // And a crafted resend sends nothing.
    b.post("/login/verify/resend", &[]).await;
    assert!(outbox(&srv).await.is_empty());
}

#[tokio::test]
async fn the_policy_decides_who_may_text_and_call() {
    use sesame_server::service::policy::PolicyEdit;
    let srv = TestServer::spawn().await;
    let u = user_with_mobile(&srv, "nora", MethodKind::Sms).await;
    srv.add_totp(
        u,
        &sesame_core::secret::SecretBytes::new(b"0123456789abcdefghij".to_vec()),
    )
    .await;
    srv.set_policy(PolicyEdit {
        sms: Some("off".into()),
        ..Default::default()
    })
    .await;
    // Texts off: the sign-in skips the text method (the default) and never texts; calls stay.
    let (mut b, page) = at_second_step(&srv, "nora").await;
    assert!(!page.contains("texted"), "{page}");
    assert!(outbox(&srv).await.iter().all(|i| i.kind != "sms"));
    let options = b.get("/login/methods").await;
    assert!(!options.body.contains("Text ••78"), "{}", options.body);
    assert!(options.body.contains("Call ••78"), "{}", options.body);
    // A crafted switch to the text method is refused.
    let p = b.post("/login/methods", &[("method", "sms")]).await;
    assert!(
        outbox(&srv).await.iter().all(|i| i.kind != "sms"),
        "{}",
        p.body
    );
    // Both off: nobody may add a number.
    srv.set_policy(PolicyEdit {
        voice: Some("off".into()),
        ..Default::default()
    })
    .await;
    srv.create_user("olaf", Some(PASSWORD)).await;
    let mut o = srv.browser();
    o.password_step("olaf", PASSWORD).await;
    assert_eq!(o.get("/security-info/add/phone").await.status, 403);
    let p = o
        .post("/security-info/add/phone", &[("number", "+31612345670")])
        .await;
    assert_eq!(p.status, 403);
    assert!(outbox(&srv).await.iter().all(|i| i.to != "+31612345670"));
}

const OFFICE: &str = "+31201234567";

/// A signed-in browser on the office phone's call page, for `name` (no methods yet).
async fn office_call_started(srv: &TestServer, name: &str) -> (Browser, String) {
    srv.create_user(name, Some(PASSWORD)).await;
    let mut b = srv.browser();
    b.password_step(name, PASSWORD).await;
    assert_eq!(b.get("/security-info/add/office").await.status, 200);
    let p = b
        .post(
            "/security-info/add/office",
            &[("number", "+31 20 123 4567"), ("extension", "123")],
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(
        p.body.contains("+31 2• ••• ••67</span>, extension 123"),
        "{}",
        p.body
    );
    let request = p.hidden("request").expect("the set-up's request token");
    (b, request)
}

async fn office_continue(b: &mut Browser, number: &str, request: &str) -> sesame_testkit::Page {
    b.post(
        "/security-info/add/office/confirm",
        &[
            ("number", number),
            ("extension", "123"),
            ("request", request),
        ],
    )
    .await
}

#[tokio::test]
async fn an_office_phone_is_proved_by_a_call_answered_with_pound() {
    let srv = TestServer::spawn().await;
    let (mut b, request) = office_call_started(&srv, "otto").await;
    let call = last_call(&srv).await;
    assert_eq!(
        (call.to.as_str(), call.extension.as_deref()),
        (OFFICE, Some("123"))
    );
    assert!(
        call.body.contains("To confirm this phone number"),
        "{}",
        call.body
    );
    // Not answered yet: nothing is saved.
    let p = office_continue(&mut b, OFFICE, &request).await;
    assert_eq!(p.status, 409, "{}", p.body);
    assert!(
        p.body.contains("not been answered with # yet"),
        "{}",
        p.body
    );
    assert!(phones::call_ended(
        &srv.state,
        &ChallengeId(call.reference),
        CallOutcome::Approved
    )
    .await
    .unwrap());
    // The call proved this number only: another number in the form finds no call.
    let p = office_continue(&mut b, "+31201234568", &request).await;
    assert_eq!(p.status, 400, "{}", p.body);
    let p = office_continue(&mut b, OFFICE, &request).await;
    assert_eq!(
        p.location(),
        Some("/security-info?done=office_added"),
        "{}",
        p.body
    );
    let otto = srv
        .store
        .find_user_by_username(srv.state.default_tenant, "otto")
        .await
        .unwrap()
        .unwrap();
    let methods = srv.store.list_methods(otto.id).await.unwrap();
    assert_eq!(methods.len(), 1);
    assert_eq!(methods[0].kind, MethodKind::OfficeVoice);
    assert_eq!(methods[0].extension.as_deref(), Some("123"));
    assert_eq!(otto.default_method, Some(methods[0].id));
    // Used once: the same call proves nothing again (and, now that otto has a method, a
    // change needs a fresh second step first).
    let p = office_continue(&mut b, OFFICE, &request).await;
    assert!(
        p.location().unwrap_or("").starts_with("/login?reauth=1"),
        "{}",
        p.body
    );
    let number = sesame_core::phone::PhoneNumber::parse(OFFICE).unwrap();
    let taken = phones::take_enrol_call(
        &srv.state,
        &otto,
        &sesame_server::token::hash(&request),
        &number,
    )
    .await
    .unwrap();
    assert_eq!(taken, phones::EnrolCall::NoCall);
    assert_eq!(
        srv.store.list_methods(otto.id).await.unwrap()[0].id,
        methods[0].id
    );
    // Signing in calls the office phone, with its extension.
    let (_, page) = at_second_step(&srv, "otto").await;
    assert!(page.contains("Answer the call"), "{page}");
    let call = last_call(&srv).await;
    assert_eq!(
        (call.to.as_str(), call.extension.as_deref()),
        (OFFICE, Some("123"))
    );
    assert!(call.body.contains("Someone is signing in"), "{}", call.body);
}

#[tokio::test]
async fn zero_pound_on_an_office_set_up_call_saves_nothing_and_blocks() {
    let srv = TestServer::spawn().await;
    let (mut b, request) = office_call_started(&srv, "pam").await;
    let call = last_call(&srv).await;
    assert!(
        phones::call_ended(&srv.state, &ChallengeId(call.reference), CallOutcome::Fraud)
            .await
            .unwrap()
    );
    let p = office_continue(&mut b, OFFICE, &request).await;
    assert_eq!(p.status, 409, "{}", p.body);
    assert!(p.body.contains("reported"), "{}", p.body);
    let pam = srv
        .store
        .find_user_by_username(srv.state.default_tenant, "pam")
        .await
        .unwrap()
        .unwrap();
    assert!(srv.store.list_methods(pam.id).await.unwrap().is_empty());
    assert!(pam.push_blocked_at.is_some());
    // Bad input is refused before anything is called.
    let calls = outbox(&srv).await.len();
    for (number, ext) in [
        ("+31 20 123 4567", "12a"),
        ("020 123 4567", ""),
        ("+31 20", ""),
    ] {
        let p = b
            .post(
                "/security-info/add/office",
                &[("number", number), ("extension", ext)],
            )
            .await;
        assert_eq!(p.status, 400, "{number} {ext}: {}", p.body);
    }
    assert_eq!(outbox(&srv).await.len(), calls);
}

#[tokio::test]
async fn parallel_wrong_text_codes_evaluate_at_most_the_limit() {
    let srv = TestServer::spawn().await;
    let u = user_with_mobile(&srv, "quentin", MethodKind::Sms).await;
    let (mut b, _) = at_second_step(&srv, "quentin").await;
    let csrf = b.get("/login/verify").await.csrf().expect("csrf");
    let right = last_code(&srv, MOBILE).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100u32 {
        let code = format!("{:06}", (i * 7919 + 13) % 1_000_000);
        if code == right {
            continue;
        }
        let mut b = b.clone();
        let csrf = csrf.clone();
        tasks.spawn(async move {
            let body = format!("csrf={csrf}&code={code}").into_bytes();
            b.post_raw("/login/verify", "application/x-www-form-urlencoded", body)
                .await
                .status
        });
    }
    let statuses = tasks.join_all().await;
    let evaluated = statuses.iter().filter(|s| **s == 401).count();
    let locked = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(evaluated + locked, statuses.len(), "{statuses:?}");
    assert!(evaluated <= 10, "{evaluated} codes were evaluated");
    let (failures, _) = srv.store.find_failures(u, MethodKind::Sms).await.unwrap();
    assert_eq!(failures as usize, evaluated);
    // Locked: even the right code is refused now.
    let p = b.post("/login/verify", &[("code", &right)]).await;
    assert_eq!(p.status, 429);
    assert!(!b.has_session());
}

#[tokio::test]
async fn the_outbox_page_is_off_unless_configured_and_answers_calls_for_administrators() {
    // Off by default: nothing there, for administrators too.
    let srv = TestServer::spawn().await;
    srv.create_admin("root", Some(PASSWORD)).await;
    let mut a = srv.browser();
    a.password_step("root", PASSWORD).await;
    assert_eq!(a.get("/admin/outbox").await.status, 404);
    srv.stop().await;

    let mut config = sesame_server::ServerConfig::default();
    config.telephony.outbox_page = true;
    let srv = TestServer::spawn_with(config).await;
    srv.create_admin("root", Some(PASSWORD)).await;
    user_with_mobile(&srv, "ruth", MethodKind::Voice).await;
    let (mut b, _) = at_second_step(&srv, "ruth").await;
    let call = last_call(&srv).await;
    // Not for users.
    let mut sam = srv.browser();
    srv.create_user("sam", Some(PASSWORD)).await;
    sam.password_step("sam", PASSWORD).await;
    assert_eq!(sam.get("/admin/outbox").await.status, 403);
    let mut a = srv.browser();
    a.password_step("root", PASSWORD).await;
    let page = a.get("/admin/outbox").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Development only"), "{}", page.body);
    assert!(page.body.contains("Answer, press #"), "{}", page.body);
    let p = a
        .post(
            &format!("/admin/outbox/{}/answer", call.id),
            &[("press", "#")],
        )
        .await;
    assert_eq!(
        p.location(),
        Some("/admin/outbox?done=answered"),
        "{}",
        p.body
    );
    // Answered once.
    let p = a
        .post(
            &format!("/admin/outbox/{}/answer", call.id),
            &[("press", "0#")],
        )
        .await;
    assert_eq!(p.status, 400);
    let p = b.post("/login/push/complete", &[]).await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert!(b.has_session());
}
