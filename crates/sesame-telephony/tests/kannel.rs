//! The `kannel` gateway against a real Kannel (bearerbox + smsbox) with `fakesmsc` as the
//! phone, started by `scripts/telephony/kannel.sh` (which installs Kannel when it is missing).

use axum::extract::{RawQuery, State};
use axum::routing::get;
use axum::Router;
use rand::Rng as _;
use sesame_telephony::kannel::{parse_dlr, KannelConfig, KannelSms};
use sesame_telephony::testing::Kannel;
use sesame_telephony::{DeliveryStatus, GatewayError, SmsGateway, TextMessage};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Sesame's delivery-report endpoint: records the query of every request.
async fn dlr_endpoint() -> (String, Arc<Mutex<Vec<String>>>) {
    let queries = Arc::new(Mutex::new(Vec::new()));
    let router = Router::new()
        .route(
            "/telephony/kannel/dlr",
            get(
                |State(queries): State<Arc<Mutex<Vec<String>>>>, RawQuery(query): RawQuery| async move {
                    queries.lock().expect("lock").push(query.unwrap_or_default());
                    "ok"
                },
            ),
        )
        .with_state(queries.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/telephony/kannel/dlr",
        listener.local_addr().expect("address")
    );
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, queries)
}

/// Polls `check` every 50 ms for at most `limit`.
async fn wait_for<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = check() {
            return Some(found);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn code_reaches_the_phone_and_delivery_is_reported() {
    let kannel = Kannel::start();
    let (dlr_url, queries) = dlr_endpoint().await;
    let gateway = KannelSms::new(kannel.config(Some(dlr_url))).expect("valid config");
    assert_eq!(gateway.name(), "kannel");

    let mut rng = rand::thread_rng();
    let code = format!("{:06}", rng.gen_range(0..1_000_000));
    let to = format!("+1555{:07}", rng.gen_range(0..10_000_000));
    let reference = format!("ref-{:016x}", rng.gen::<u64>());
    let message = TextMessage {
        to: to.clone(),
        body: format!("Your Sesame sign-in code is {code}"),
        reference: reference.clone(),
    };
    gateway
        .send(&message)
        .await
        .expect("Kannel accepts the message");

    // fakesmsc prints each message as "<from to text body>".
    let line = wait_for(Duration::from_secs(5), || {
        kannel
            .phone_log()
            .lines()
            .find(|line| line.contains(&code))
            .map(str::to_owned)
    })
    .await
    .unwrap_or_else(|| panic!("the code never reached the phone:\n{}", kannel.phone_log()));
    assert!(
        line.ends_with(&format!(
            "<Sesame {to} text Your Sesame sign-in code is {code}>"
        )),
        "wrong number or text: {line}"
    );

    let reports = wait_for(Duration::from_secs(5), || {
        let reports: Vec<_> = queries
            .lock()
            .expect("lock")
            .iter()
            .filter_map(|query| parse_dlr(query))
            .collect();
        (reports.len() >= 2).then_some(reports)
    })
    .await
    .unwrap_or_else(|| panic!("no delivery reports: {:?}", queries.lock().expect("lock")));
    assert_eq!(
        reports,
        vec![
            (reference.clone(), DeliveryStatus::Sent),
            (reference, DeliveryStatus::Delivered)
        ]
    );
}

#[tokio::test]
async fn wrong_password_is_refused_without_retry() {
    let kannel = Kannel::start();
    let mut config = kannel.config(None);
    config.password = "not-the-password".to_owned();
    let gateway = KannelSms::new(config).expect("valid config");
    let message = TextMessage {
        to: "+15551234567".to_owned(),
        body: "Your Sesame sign-in code is 123456".to_owned(),
        reference: "wrong-password".to_owned(),
    };
    match gateway.send(&message).await {
        Err(GatewayError::Refused(detail)) => {
            assert!(detail.contains("403"), "{detail}");
            assert!(!detail.contains("123456") && !detail.contains("not-the-password"));
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    assert!(!kannel.phone_log().contains("123456"));
}

#[tokio::test]
async fn stopped_kannel_is_unreachable_at_once() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let gateway = KannelSms::new(KannelConfig {
        sendsms_url: format!("http://127.0.0.1:{port}/cgi-bin/sendsms"),
        username: "sesame".to_owned(),
        password: "sesamepw".to_owned(),
        from: "Sesame".to_owned(),
        dlr_url: None,
        timeout_secs: 5,
        attempts: 2,
    })
    .expect("valid config");
    let message = TextMessage {
        to: "+15551234567".to_owned(),
        body: "Your Sesame sign-in code is 123456".to_owned(),
        reference: "stopped".to_owned(),
    };
    let started = Instant::now();
    let result = gateway.send(&message).await;
    let Err(GatewayError::Unreachable(detail)) = result else {
        panic!("expected Unreachable, got {result:?}");
    };
    // Two attempts and one short pause, far below the 5 s timeout.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(
        !detail.contains("sesamepw") && !detail.contains("123456"),
        "{detail}"
    );
}
