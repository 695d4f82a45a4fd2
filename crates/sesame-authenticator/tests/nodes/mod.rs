//! What the two-node tests share: two nodes on a PostgreSQL database of the test's own, a phone
//! activated through My security info, the password step, and a browser moved to another node.
//! (A module of its own, so that the test files that use it do not each carry a copy.)

use sesame_authenticator::client::{self, DeviceClient};
use sesame_authenticator::device::DeviceKey;
use sesame_core::ManualClock;
use sesame_proto::device::{self as api, approval_message, Challenge, Decision, RespondRequest};
use sesame_server::ServerConfig;
use sesame_store::MasterKey;
use sesame_testkit::{Browser, TestServer};
use std::sync::Arc;

pub fn real_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Two nodes on a fresh database of this test's own, sharing the master key and the clock.
pub async fn two_nodes(name: &str) -> Option<(TestServer, TestServer)> {
    let url = sesame_testkit::postgres_database(name).await?;
    let key = MasterKey::generate();
    let clock = Arc::new(ManualClock::new(real_now()));
    let a = TestServer::spawn_node(&url, &key, clock.clone(), ServerConfig::default()).await;
    let b = TestServer::spawn_node(&url, &key, clock, ServerConfig::default()).await;
    Some((a, b))
}

/// The same browser (its cookies) talking to another node, as a load balancer may send it.
pub fn on(b: &Browser, node: &TestServer) -> Browser {
    let mut moved = b.clone();
    moved.base = node.base.clone();
    moved
}

pub struct Phone {
    pub key: DeviceKey,
    pub device_id: String,
}

impl Phone {
    pub fn client<'a>(&'a self, node: &TestServer) -> DeviceClient<'a> {
        DeviceClient::new(&node.base, &self.device_id, &self.key)
    }

    pub fn answer(&self, c: &Challenge, decision: Decision, number: &str) -> RespondRequest {
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

/// Creates `name` with a password on `node` and activates a phone through My security info.
pub async fn user_with_phone(node: &TestServer, name: &str) -> Phone {
    node.create_user(name, Some("correct horse")).await;
    let mut b = node.browser();
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

/// The number a waiting page shows.
pub fn push_number(body: &str) -> Option<String> {
    body.split("id=\"push-number\" aria-live=\"polite\">")
        .nth(1)
        .map(|s| s.split('<').next().unwrap().to_string())
}

/// Password step on `node`; returns the browser waiting for the phone and the number shown.
pub async fn sign_in(node: &TestServer, name: &str) -> (Browser, String) {
    let mut b = node.browser();
    let p = b.password_step(name, "correct horse").await;
    assert_eq!(p.location(), Some("/login/verify"));
    let page = b.follow(p).await;
    let number = push_number(&page.body).expect("a number on the waiting page");
    (b, number)
}
