//! Two Sesame nodes on one PostgreSQL database, through their real HTTP servers, for the flows
//! that span more than one request: passwordless phone sign-in started on one node and
//! approved through the other, an OpenID Connect code issued by one node and redeemed at the
//! other (once), and wrong passwords counted together whichever node they reach.
//!
//! Runs against the server `SESAME_TEST_DATABASE_URL` names (`scripts/test.sh` starts one);
//! without it each test says it is skipped (and fails under `SESAME_REQUIRE_POSTGRES`).

#[allow(dead_code)] // each test file uses some of the shared helpers
mod nodes;
use nodes::*;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::Value;
use sesame_authenticator::client;
use sesame_authenticator::device::DeviceKey;
use sesame_proto::device::{
    self as api, approval_message, Challenge, ChallengeKind, Decision, DeviceEvent, RespondRequest,
};
use sesame_server::service::oidc::clients::{self, NewClient};
use sesame_server::service::oidc::keys::Alg;
use sesame_server::service::{Admin, Origin};
use sesame_testkit::{Browser, Page, TestServer};
use std::time::{Duration, Instant};

/// The one request waiting for the phone, as `node` lists it.
async fn only_pending(node: &TestServer, phone: &Phone) -> Challenge {
    let list = phone.client(node).pending().await.unwrap().challenges;
    assert_eq!(list.len(), 1, "{list:?}");
    list.into_iter().next().unwrap()
}

/// Signs in with the password and the phone's approval on `node` (a fresh second step);
/// returns the browser, on My security info.
async fn fresh_session(node: &TestServer, phone: &Phone, name: &str) -> Browser {
    let (mut b, number) = sign_in(node, name).await;
    let c = only_pending(node, phone).await;
    phone
        .client(node)
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

/// Registers a PIN key for the phone and turns phone sign-in on through `node`: the app asks,
/// and the person confirms it on My security info after a fresh sign-in.
async fn with_phone_sign_in(node: &TestServer, phone: &Phone, name: &str) -> DeviceKey {
    let pin_key = DeviceKey::generate();
    phone
        .client(node)
        .pin_key(&api::PinKeyRequest {
            alg: api::ALG_ES256.into(),
            public_key: pin_key.public_key(),
            proof: None,
        })
        .await
        .unwrap();
    let st = phone
        .client(node)
        .phone_sign_in(true, Some(&pin_key))
        .await
        .unwrap();
    assert!(st.phone_sign_in_awaiting_confirmation && !st.phone_sign_in_enabled);
    let mut b = fresh_session(node, phone, name).await;
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
    pin_key
}

/// Username only, on `node`; returns the browser waiting for the phone and the number.
async fn phone_sign_in_page(node: &TestServer, name: &str) -> (Browser, String) {
    let mut b = node.browser();
    b.get("/login").await;
    let p = b.post("/login", &[("username", name)]).await;
    assert_eq!(p.location(), Some("/login/app"), "{}", p.body);
    let page = b.follow(p).await;
    let number = push_number(&page.body).expect("a number on the phone sign-in page");
    (b, number)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phone_sign_in_across_nodes() {
    let Some((a, b)) = two_nodes("phonesignin").await else {
        return;
    };
    let phone = user_with_phone(&a, "alice").await;
    let pin_key = with_phone_sign_in(&a, &phone, "alice").await;
    // Turned on through A, known to B.
    let st = phone.client(&b).status().await.unwrap();
    assert!(st.phone_sign_in_enabled && st.pin_key_registered, "{st:?}");

    // The phone's event stream is held by node A, with nothing waiting yet: whatever comes on
    // it next was created elsewhere and sent across.
    assert!(phone
        .client(&a)
        .pending()
        .await
        .unwrap()
        .challenges
        .is_empty());
    let on_a = phone.client(&a);
    let mut stream = on_a.events().await.unwrap();
    let started = Instant::now();
    let (browser, number) = phone_sign_in_page(&b, "alice").await;
    let c = match tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
        Ok(Ok(Some(DeviceEvent::Challenge(c)))) => c,
        other => panic!("the phone sign-in started on B reaches the stream on A, got {other:?}"),
    };
    eprintln!(
        "phone sign-in on B heard on A's stream after {:?}",
        started.elapsed()
    );
    assert_eq!(c.kind, ChallengeKind::PhoneSignIn);
    assert!(c.pin_required, "phone sign-in always needs the PIN");
    assert_eq!(c.username, "alice");
    assert_eq!(only_pending(&b, &phone).await.id, c.id, "the same request");

    // The page waiting on B hears the answer given to A at once.
    let mut waiting_on_b = browser.clone();
    let poll = tokio::spawn(async move {
        let t = Instant::now();
        let body = waiting_on_b.get("/login/push/status").await.body;
        (t.elapsed(), body)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let msg = approval_message(
        &c.id,
        &c.nonce,
        Decision::Approve,
        &number,
        &phone.device_id,
    );
    let answer = RespondRequest {
        pin_signature: Some(pin_key.sign(&msg)),
        ..phone.answer(&c, Decision::Approve, &number)
    };
    let answered = phone.client(&a).respond(&answer).await.unwrap();
    assert_eq!(answered.outcome, "approved");
    let (took, body) = poll.await.unwrap();
    let status: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    assert_eq!(status["state"], "approved", "{body}");
    assert!(
        took < Duration::from_secs(5),
        "the page on B waited {took:?}"
    );

    // The browser finishes on B and is signed in, two steps in one; the session works on A.
    let mut browser = browser;
    let done = browser.post("/login/push/complete", &[]).await;
    assert_eq!(done.location(), Some("/account"), "{}", done.body);
    let account_on_b = browser.get("/account").await;
    assert_eq!(account_on_b.status, 200, "{}", account_on_b.body);
    assert!(account_on_b.body.contains("alice"));
    let account_on_a = on(&browser, &a).get("/account").await;
    assert_eq!(account_on_a.status, 200, "{}", account_on_a.body);
    assert!(account_on_a.body.contains("alice"));
    let token = browser
        .cookies
        .get("__Host-sesame-session")
        .expect("a session");
    let session = a
        .store
        .find_session(
            &sesame_server::token::hash(token),
            sesame_core::Clock::now(&*a.clock),
        )
        .await
        .unwrap()
        .expect("the session B made, seen by A's store");
    let amr: Vec<&str> = session.amr.iter().map(|m| m.as_str()).collect();
    assert_eq!(amr, ["swk", "pin", "mfa"]);
    // The answer was single use: replayed on B it changes nothing.
    match phone.client(&b).respond(&answer).await {
        Err(client::ClientError::Refused(e, s)) => {
            assert_eq!((s, e.error.as_str()), (409, "not_pending"), "{}", e.message)
        }
        other => panic!("a replayed answer is refused on the other node, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// OpenID Connect

const PASSWORD: &str = "correct horse battery";
const CB: &str = "https://app.example/cb";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

fn admin() -> Admin {
    Admin {
        user: None,
        username: "test".into(),
        by: "cli:test".into(),
        origin: Origin::cli("test"),
    }
}

fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ))
}

struct App {
    id: String,
    secret: Option<String>,
}

async fn register(node: &TestServer, name: &str) -> App {
    let new = NewClient {
        name: name.into(),
        redirect_uris: vec![CB.into()],
        post_logout_redirect_uris: vec!["https://app.example/bye".into()],
        public: false,
        first_party: true,
        require_mfa: false,
        id_token_alg: Alg::Rs256,
        client_credentials: false,
    };
    let c = clients::add(&node.state, &admin(), node.state.default_tenant, new)
        .await
        .unwrap();
    App {
        id: c.client.client_id,
        secret: c.secret,
    }
}

fn query(pairs: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

fn authorize_path(app: &App) -> String {
    let ch = pkce_challenge(VERIFIER);
    let pairs = [
        ("response_type", "code"),
        ("client_id", app.id.as_str()),
        ("redirect_uri", CB),
        ("scope", "openid profile"),
        ("state", "st4te"),
        ("nonce", "n0nce"),
        ("code_challenge", ch.as_str()),
        ("code_challenge_method", "S256"),
    ];
    format!("/oauth/authorize?{}", query(&pairs))
}

/// Where a page sends the browser on to: its redirect, or the target of a meta refresh.
fn onward(p: &Page) -> Option<String> {
    if let Some(l) = p.location() {
        return Some(l.to_string());
    }
    let marker = "http-equiv=\"refresh\" content=\"0;url=";
    let start = p.body.find(marker)? + marker.len();
    let rest = &p.body[start..];
    Some(
        rest[..rest.find('"')?]
            .replace("&amp;", "&")
            .replace("&quot;", "\"")
            .replace("&#39;", "'"),
    )
}

/// The query of a redirect to the application, as a map.
fn returned(p: &Page) -> std::collections::HashMap<String, String> {
    let loc = onward(p).unwrap_or_else(|| panic!("no redirect: {} {}", p.status, p.body));
    assert!(loc.starts_with(CB), "{loc}");
    url::Url::parse(&loc)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Follows the sign-in pages from an authorization request to the application, signing in as
/// `username` with the password; returns the final redirect (to the application).
async fn sign_in_for(b: &mut Browser, path: &str, username: &str) -> Page {
    let p = b.get(path).await;
    let login = p.location().expect("to the sign-in page").to_string();
    assert!(login.starts_with("/login?next="), "{login}");
    let next: String = url::Url::parse(&format!("http://x{login}"))
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "next")
        .unwrap()
        .1
        .into_owned();
    b.get(&login).await;
    let p = b
        .post("/login", &[("username", username), ("next", &next)])
        .await;
    b.follow(p).await;
    let p = b.post("/login/password", &[("password", PASSWORD)]).await;
    assert!(
        p.location()
            .is_some_and(|l| l.starts_with("/oauth/authorize/continue")),
        "{} {:?} {}",
        p.status,
        p.location(),
        p.body
    );
    b.follow(p).await
}

struct Tokens {
    status: u16,
    json: Value,
}

/// A request to `path` on `node`, under the public name `host`: behind a load balancer every
/// node is reached by the one name the application knows (the issuer is made from it when no
/// public URL is configured).
fn to_node(node: &TestServer, host: &str, path: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(format!("{}{path}", node.base))
        .header("host", host)
}

async fn token_request(node: &TestServer, host: &str, app: &App, form: &[(&str, &str)]) -> Tokens {
    let mut req = to_node(node, host, "/oauth/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(query(form));
    if let Some(s) = &app.secret {
        req = req.header(
            "authorization",
            format!("Basic {}", STANDARD.encode(format!("{}:{s}", app.id))),
        );
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let json = resp.json().await.unwrap_or(Value::Null);
    Tokens { status, json }
}

async fn exchange(node: &TestServer, host: &str, app: &App, code: &str) -> Tokens {
    token_request(
        node,
        host,
        app,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", CB),
            ("code_verifier", VERIFIER),
        ],
    )
    .await
}

async fn userinfo(node: &TestServer, host: &str, access: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{}/oauth/userinfo", node.base))
        .header("host", host)
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn refresh(node: &TestServer, host: &str, app: &App, token: &str) -> Tokens {
    token_request(
        node,
        host,
        app,
        &[("grant_type", "refresh_token"), ("refresh_token", token)],
    )
    .await
}

/// The claims of an RS256 JWS, after checking its signature with the key `node` publishes
/// (with `ring`, not with the code that made it).
async fn verified_claims(node: &TestServer, jwt: &str) -> Value {
    let jwks: Value = reqwest::get(format!("{}/oauth/jwks", node.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "RS256");
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .unwrap_or_else(|| panic!("{} publishes the key {}: {jwks}", node.base, header["kid"]));
    let b = |f: &str| URL_SAFE_NO_PAD.decode(key[f].as_str().unwrap()).unwrap();
    let msg = format!("{}.{}", parts[0], parts[1]);
    let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    ring::signature::RsaPublicKeyComponents {
        n: b("n"),
        e: b("e"),
    }
    .verify(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        msg.as_bytes(),
        &sig,
    )
    .expect("the signature checks out with the published key");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oidc_code_from_one_node_is_redeemed_once_on_the_other() {
    let Some((a, b)) = two_nodes("oidccode").await else {
        return;
    };
    // The application knows Sesame by one name; here, node A's address.
    let host = a.addr.to_string();
    let issuer = a.base.clone();
    let app = register(&a, "App").await;
    let alice = a.create_user("alice", Some(PASSWORD)).await;

    // Signed in and sent back with a code by A; the code is redeemed at B.
    let mut br = a.browser();
    let back = sign_in_for(&mut br, &authorize_path(&app), "alice").await;
    let q = returned(&back);
    assert_eq!(q["state"], "st4te");
    assert_eq!(q["iss"], issuer);
    let code = q["code"].clone();
    let first = exchange(&b, &host, &app, &code).await;
    assert_eq!(first.status, 200, "{}", first.json);
    assert_eq!(first.json["token_type"], "Bearer");
    let access = first.json["access_token"].as_str().unwrap().to_string();
    let refresh_token = first.json["refresh_token"].as_str().unwrap().to_string();
    // Tokens B signed verify on A, with the key A publishes.
    let id = verified_claims(&a, first.json["id_token"].as_str().unwrap()).await;
    assert_eq!(id["iss"], issuer);
    assert_eq!(id["aud"], app.id);
    assert_eq!(id["sub"], alice.id.0.to_string());
    assert_eq!(id["nonce"], "n0nce");
    assert_eq!(
        userinfo(&a, &host, &access).await,
        200,
        "B's access token on A"
    );
    assert_eq!(userinfo(&b, &host, &access).await, 200);

    // The same code again, at A: refused, and what the first redemption issued is revoked,
    // whichever node is asked.
    let second = exchange(&a, &host, &app, &code).await;
    assert_eq!(
        (second.status, second.json["error"].as_str()),
        (400, Some("invalid_grant")),
        "{}",
        second.json
    );
    assert!(second.json.get("access_token").is_none());
    for node in [&a, &b] {
        assert_eq!(
            userinfo(node, &host, &access).await,
            401,
            "the first exchange's access token is revoked (asked at {})",
            node.base
        );
    }
    let r = refresh(&a, &host, &app, &refresh_token).await;
    assert_eq!(r.json["error"], "invalid_grant", "and its refresh token");

    // Fresh codes redeemed at A and B at the same moment: exactly one redemption succeeds.
    // The signed-in browser gets each code at once (from B as well: A's session works there).
    for round in 0..5 {
        let node = if round % 2 == 0 { &a } else { &b };
        let mut here = on(&br, node);
        let code = returned(&here.get(&authorize_path(&app)).await)["code"].clone();
        let (x, y) = tokio::join!(
            exchange(&a, &host, &app, &code),
            exchange(&b, &host, &app, &code)
        );
        let answers = [&x, &y];
        let won: Vec<&&Tokens> = answers.iter().filter(|t| t.status == 200).collect();
        assert_eq!(
            won.len(),
            1,
            "round {round}: {} {} / {} {}",
            x.status,
            x.json,
            y.status,
            y.json
        );
        let lost = answers.iter().find(|t| t.status != 200).unwrap();
        assert_eq!(
            (lost.status, lost.json["error"].as_str()),
            (400, Some("invalid_grant")),
            "round {round}: {}",
            lost.json
        );
        // The loser was a second use of the code: the winner's tokens are revoked, as after
        // any replay.
        let access = won[0].json["access_token"].as_str().unwrap();
        assert_eq!(userinfo(&a, &host, access).await, 401, "round {round}");
        assert_eq!(userinfo(&b, &host, access).await, 401, "round {round}");
    }
}

// ---------------------------------------------------------------------------------------------
// Password guessing

fn held(p: &Page, text: &str) -> bool {
    p.status == 429 && p.body.contains(text)
}

/// Username, then `password`, with `b` on `node`; the page the password step answers with.
async fn try_password(b: &mut Browser, node: &TestServer, username: &str, password: &str) -> Page {
    b.base = node.base.clone();
    b.password_step(username, password).await
}

/// Argon2id jobs both nodes have run.
fn hashed(a: &TestServer, b: &TestServer) -> u64 {
    a.state.hasher.jobs_run() + b.state.hasher.jobs_run()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_guesses_count_together_across_nodes() {
    let Some((a, b)) = two_nodes("guesses").await else {
        return;
    };
    a.create_user("alice", Some(PASSWORD)).await;
    let account = sesame_core::guessing::Scope::Account {
        tenant: a.state.default_tenant,
        name_key: sesame_store::name_key("alice"),
    }
    .key();
    let address = sesame_core::guessing::Scope::address("127.0.0.1").key();
    let count = |key: String| {
        let store = b.store.clone();
        async move { store.find_guesses(&key).await.unwrap().0 }
    };
    let nodes = [&a, &b];
    // Five wrong passwords, alternately on A and B: each is checked.
    let mut guesser = a.browser();
    for i in 0..5 {
        let node = nodes[i % 2];
        let p = try_password(&mut guesser, node, "alice", &format!("guess{i}")).await;
        assert_eq!(
            p.status, 401,
            "guess {i} on {} is checked: {}",
            node.base, p.body
        );
    }
    assert_eq!(
        count(account.clone()).await,
        5,
        "every wrong password counted once"
    );
    assert_eq!(count(address.clone()).await, 5, "and once for the address");
    // The sixth (on B) waits 30 s, and is not checked: not even the right password gets
    // through, and nothing is hashed on either node.
    let before = hashed(&a, &b);
    let p = try_password(&mut guesser, &b, "alice", PASSWORD).await;
    assert!(
        held(&p, "Too many wrong passwords. Try again in 30 seconds"),
        "{} {}",
        p.status,
        p.body
    );
    assert_eq!(p.headers.get("retry-after").unwrap(), "30");
    assert!(!guesser.has_session());
    // A new browser on A is held too.
    let p = try_password(&mut a.browser(), &a, "alice", "again").await;
    assert!(
        held(&p, "Too many wrong passwords"),
        "a new browser on the other node is held too: {} {}",
        p.status,
        p.body
    );
    assert_eq!(hashed(&a, &b), before, "held attempts cost no hashing");
    assert_eq!(
        count(account.clone()).await,
        5,
        "held attempts are not counted"
    );
    // After the wait, one more is checked (on A); a wrong one doubles the wait, on B too.
    a.clock.advance(30);
    let p = try_password(&mut guesser, &a, "alice", "guess5").await;
    assert_eq!(p.status, 401, "{}", p.body);
    assert_eq!(count(account.clone()).await, 6);
    let p = try_password(&mut guesser, &b, "alice", PASSWORD).await;
    assert!(held(&p, "Try again in 1 minute"), "{} {}", p.status, p.body);
    a.clock.advance(60);
    let p = try_password(&mut guesser, &b, "alice", PASSWORD).await;
    assert_eq!(p.location(), Some("/account"), "{}", p.body);
    // The right password started the count over, for both nodes.
    assert_eq!(count(account.clone()).await, 0);
    let mut other = a.browser();
    for i in 0..5 {
        let node = nodes[i % 2];
        let p = try_password(&mut other, node, "alice", "nope").await;
        assert_eq!(
            p.status, 401,
            "after the count started over, guess {i}: {}",
            p.body
        );
    }
    assert_eq!(count(account).await, 5);
}

/// The key ids `node` publishes, as `alg:kid`, sorted.
async fn published(node: &TestServer) -> Vec<String> {
    let v: Value = reqwest::get(format!("{}/oauth/jwks", node.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut kids: Vec<String> = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            format!(
                "{}:{}",
                k["alg"].as_str().unwrap(),
                k["kid"].as_str().unwrap()
            )
        })
        .collect();
    kids.sort();
    kids
}

/// Both nodes of a new deployment using their signing keys for the first time at once (the
/// first requests after `sesame migrate`): they must end up with one key set, so that what one
/// signs the other accepts and both publish the same keys. (Each node finding no key used to
/// make its own, and for up to a minute each published a different set.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_keys_first_used_on_both_nodes_at_once_are_one_set() {
    // The race is the nodes' own; a few fresh deployments make it all but certain to be run.
    for round in 0..3 {
        let Some((a, b)) = two_nodes("keys").await else {
            return;
        };
        let (on_a, on_b) = tokio::join!(published(&a), published(&b));
        assert_eq!(on_a, on_b, "round {round}: A and B publish different keys");
        let host = a.addr.to_string();
        let app = register(&a, "App").await;
        a.create_user("alice", Some(PASSWORD)).await;
        let mut br = a.browser();
        let back = sign_in_for(&mut br, &authorize_path(&app), "alice").await;
        let t = exchange(&b, &host, &app, &returned(&back)["code"]).await;
        assert_eq!(t.status, 200, "{}", t.json);
        let access = t.json["access_token"].as_str().unwrap();
        assert_eq!(
            userinfo(&a, &host, access).await,
            200,
            "round {round}: A accepts the access token B made"
        );
    }
}
