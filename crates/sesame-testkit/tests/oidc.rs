//! OpenID Connect through the real server (SECURITY.md, "OpenID Connect"): an application
//! signs a person in with the authorization code flow and PKCE, and every rule an attacker
//! would try is held: exact redirect URIs, PKCE S256 only, single-use codes, rotating refresh
//! tokens, duplicate parameters, `max_age`, `prompt`, and applications that require two-step
//! verification. ID token signatures are checked with `ring`, not with the code that made them.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::Value;
use sesame_core::secret::SecretBytes;
use sesame_server::service::oidc::clients::{self, NewClient};
use sesame_server::service::oidc::keys::Alg;
use sesame_server::service::{Admin, Origin};
use sesame_testkit::{Browser, Page, TestServer};
use sha2::{Digest, Sha256};

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

fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

struct App {
    id: String,
    secret: Option<String>,
}

fn new_client(name: &str) -> NewClient {
    NewClient {
        name: name.into(),
        redirect_uris: vec![CB.into()],
        post_logout_redirect_uris: vec!["https://app.example/bye".into()],
        public: false,
        first_party: true,
        require_mfa: false,
        id_token_alg: Alg::Rs256,
        client_credentials: false,
    }
}

async fn register(srv: &TestServer, new: NewClient) -> App {
    let c = clients::add(&srv.state, &admin(), srv.state.default_tenant, new)
        .await
        .unwrap();
    App {
        id: c.client.client_id,
        secret: c.secret,
    }
}

fn query(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

fn authorize_path(app: &App, extra: &[(&str, &str)]) -> String {
    let ch = challenge(VERIFIER);
    let mut pairs = vec![
        ("response_type", "code"),
        ("client_id", app.id.as_str()),
        ("redirect_uri", CB),
        ("scope", "openid profile"),
        ("state", "st4te"),
        ("nonce", "n0nce"),
        ("code_challenge", ch.as_str()),
        ("code_challenge_method", "S256"),
    ];
    for (k, v) in extra {
        pairs.retain(|(pk, _)| pk != k);
        if !v.is_empty() {
            pairs.push((k, v));
        }
    }
    format!("/oauth/authorize?{}", query(&pairs))
}

/// Where a page sends the browser on to: its redirect, or the target of the page that
/// navigates by itself after a form post (a meta refresh: `form-action 'self'` keeps a form
/// post's redirects on Sesame).
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
    let loc = loc.as_str();
    assert!(loc.starts_with(CB), "{loc}");
    url::Url::parse(loc)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Follows the sign-in pages from an authorization request to the application, signing in as
/// `username` with the password; returns the final redirect (to the application).
async fn sign_in_for(b: &mut Browser, path: &str, username: &str, code: Option<String>) -> Page {
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
    let mut p = b.post("/login/password", &[("password", PASSWORD)]).await;
    if let Some(code) = code {
        assert_eq!(p.location(), Some("/login/verify"), "{}", p.body);
        b.follow(p).await;
        p = b.post("/login/verify", &[("code", &code)]).await;
    }
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
    headers: reqwest::header::HeaderMap,
}

async fn token_request(srv: &TestServer, app: &App, form: &[(&str, &str)]) -> Tokens {
    let mut req = reqwest::Client::new()
        .post(format!("{}/oauth/token", srv.base))
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
    let headers = resp.headers().clone();
    let json = resp.json().await.unwrap_or(Value::Null);
    Tokens {
        status,
        json,
        headers,
    }
}

async fn exchange(srv: &TestServer, app: &App, code: &str) -> Tokens {
    token_request(
        srv,
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

/// The claims of a JWS, after checking its signature with the published key (with `ring`).
async fn verified_claims(srv: &TestServer, jwt: &str) -> Value {
    let jwks: Value = reqwest::get(format!("{}/oauth/jwks", srv.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .expect("the key is published");
    assert_eq!(key["alg"], header["alg"]);
    assert_eq!(key["use"], "sig");
    let msg = format!("{}.{}", parts[0], parts[1]);
    let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    let b = |f: &str| URL_SAFE_NO_PAD.decode(key[f].as_str().unwrap()).unwrap();
    let ok = match header["alg"].as_str().unwrap() {
        "RS256" => ring::signature::RsaPublicKeyComponents {
            n: b("n"),
            e: b("e"),
        }
        .verify(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            msg.as_bytes(),
            &sig,
        )
        .is_ok(),
        "ES256" => {
            let mut point = vec![4u8];
            point.extend(b("x"));
            point.extend(b("y"));
            ring::signature::UnparsedPublicKey::new(
                &ring::signature::ECDSA_P256_SHA256_FIXED,
                point,
            )
            .verify(msg.as_bytes(), &sig)
            .is_ok()
        }
        "EdDSA" => ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, b("x"))
            .verify(msg.as_bytes(), &sig)
            .is_ok(),
        a => panic!("unexpected alg {a}"),
    };
    assert!(ok, "the signature checks out with the published key");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap()
}

async fn userinfo(srv: &TestServer, access: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .get(format!("{}/oauth/userinfo", srv.base))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_names_the_issuer_exactly_and_publishes_keys() {
    let srv = TestServer::spawn().await;
    let doc: Value = reqwest::get(format!("{}/.well-known/openid-configuration", srv.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["issuer"], srv.base);
    assert_eq!(doc["jwks_uri"], format!("{}/oauth/jwks", srv.base));
    assert_eq!(
        doc["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    let algs = doc["id_token_signing_alg_values_supported"]
        .as_array()
        .unwrap();
    assert!(algs.contains(&Value::from("RS256")));
    let jwks: Value = reqwest::get(format!("{}/oauth/jwks", srv.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 3, "one current key per algorithm");
    for k in keys {
        assert!(
            k["kid"].is_string() && k["use"] == "sig" && k["alg"].is_string(),
            "{k}"
        );
        assert!(k.get("d").is_none(), "no private part is published: {k}");
    }
}

/// Password only, then password and code: the ID token's `amr` and `acr` say what happened;
/// UserInfo answers; refresh tokens rotate and a reused one ends the family.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_through_an_application_gets_tokens_that_tell_the_truth() {
    let srv = TestServer::spawn().await;
    let app = register(&srv, new_client("Hello App")).await;
    let alice = srv.create_user("alice", Some(PASSWORD)).await;
    let mut b = srv.browser();
    let back = sign_in_for(&mut b, &authorize_path(&app, &[]), "alice", None).await;
    let q = returned(&back);
    assert_eq!(q["state"], "st4te");
    assert_eq!(q["iss"], srv.base);
    assert!(back.headers["cache-control"]
        .to_str()
        .unwrap()
        .contains("no-store"));
    let t = exchange(&srv, &app, &q["code"]).await;
    assert_eq!(t.status, 200, "{}", t.json);
    assert_eq!(t.headers["cache-control"], "no-store");
    assert_eq!(t.json["token_type"], "Bearer");
    let id = verified_claims(&srv, t.json["id_token"].as_str().unwrap()).await;
    assert_eq!(id["iss"], srv.base);
    assert_eq!(id["aud"], app.id);
    assert_eq!(id["sub"], alice.id.0.to_string());
    assert_eq!(id["nonce"], "n0nce");
    assert_eq!(id["amr"], serde_json::json!(["pwd"]));
    assert_eq!(id["acr"], "pwd");
    assert_eq!(id["preferred_username"], "alice");
    assert!(id["auth_time"].as_i64().unwrap() <= id["iat"].as_i64().unwrap());
    let (status, info) = userinfo(&srv, t.json["access_token"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["sub"], alice.id.0.to_string());
    assert_eq!(info["name"], "alice");

    // Refresh: a new pair; the old refresh token used again ends the family, new one too.
    let old = t.json["refresh_token"].as_str().unwrap().to_string();
    let r = token_request(
        &srv,
        &app,
        &[("grant_type", "refresh_token"), ("refresh_token", &old)],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.json);
    let newer = r.json["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(newer, old);
    let again = token_request(
        &srv,
        &app,
        &[("grant_type", "refresh_token"), ("refresh_token", &old)],
    )
    .await;
    assert_eq!(
        (again.status, again.json["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let after = token_request(
        &srv,
        &app,
        &[("grant_type", "refresh_token"), ("refresh_token", &newer)],
    )
    .await;
    assert_eq!(after.json["error"], "invalid_grant", "the family ended");
    let (status, _) = userinfo(&srv, r.json["access_token"].as_str().unwrap()).await;
    assert_eq!(status, 401, "its access tokens too");

    // With a verification code: pwd, otp and mfa.
    let bob = srv.create_user("bob", Some(PASSWORD)).await;
    let secret = SecretBytes::new(b"0123456789abcdefghij".to_vec());
    srv.add_totp(bob.id, &secret).await;
    let mut b = srv.browser();
    let back = sign_in_for(
        &mut b,
        &authorize_path(&app, &[]),
        "bob",
        Some(srv.code(&secret)),
    )
    .await;
    let t = exchange(&srv, &app, &returned(&back)["code"]).await;
    let id = verified_claims(&srv, t.json["id_token"].as_str().unwrap()).await;
    assert_eq!(id["amr"], serde_json::json!(["pwd", "otp", "mfa"]));
    assert_eq!(id["acr"], "mfa");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_code_fails_and_revokes_what_it_issued() {
    let srv = TestServer::spawn().await;
    let app = register(&srv, new_client("App")).await;
    srv.create_user("alice", Some(PASSWORD)).await;
    let mut b = srv.browser();
    let code = returned(&sign_in_for(&mut b, &authorize_path(&app, &[]), "alice", None).await)
        ["code"]
        .clone();
    let first = exchange(&srv, &app, &code).await;
    assert_eq!(first.status, 200);
    let second = exchange(&srv, &app, &code).await;
    assert_eq!(
        (second.status, second.json["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, _) = userinfo(&srv, first.json["access_token"].as_str().unwrap()).await;
    assert_eq!(status, 401, "the first exchange's access token is revoked");
    let r = token_request(
        &srv,
        &app,
        &[
            ("grant_type", "refresh_token"),
            (
                "refresh_token",
                first.json["refresh_token"].as_str().unwrap(),
            ),
        ],
    )
    .await;
    assert_eq!(r.json["error"], "invalid_grant", "and its refresh token");
    // A code expires after a minute.
    let mut b = srv.browser();
    let code = returned(&sign_in_for(&mut b, &authorize_path(&app, &[]), "alice", None).await)
        ["code"]
        .clone();
    srv.clock.advance(61);
    assert_eq!(
        exchange(&srv, &app, &code).await.json["error"],
        "invalid_grant"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pkce_is_required_as_s256_and_a_wrong_verifier_spends_the_code() {
    let srv = TestServer::spawn().await;
    let app = register(&srv, new_client("App")).await;
    srv.create_user("alice", Some(PASSWORD)).await;
    let mut b = srv.browser();
    b.password_step("alice", PASSWORD).await;
    for (extra, why) in [
        (
            vec![("code_challenge", ""), ("code_challenge_method", "")],
            "missing",
        ),
        (vec![("code_challenge_method", "plain")], "plain"),
        (
            vec![("code_challenge_method", "")],
            "no method (plain by default)",
        ),
        (vec![("code_challenge", "short")], "not a S256 challenge"),
    ] {
        let p = b.get(&authorize_path(&app, &extra)).await;
        let q = returned(&p);
        assert_eq!(q["error"], "invalid_request", "{why}");
        assert_eq!(q["state"], "st4te");
        assert!(!q.contains_key("code"));
    }
    let code = returned(&b.get(&authorize_path(&app, &[])).await)["code"].clone();
    let wrong = token_request(
        &srv,
        &app,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CB),
            ("code_verifier", &"x".repeat(43)),
        ],
    )
    .await;
    assert_eq!(wrong.json["error"], "invalid_grant");
    let missing = exchange(&srv, &app, &code).await;
    assert_eq!(
        missing.json["error"], "invalid_grant",
        "the code was spent by the wrong try"
    );
    let code = returned(&b.get(&authorize_path(&app, &[])).await)["code"].clone();
    let none = token_request(
        &srv,
        &app,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CB),
        ],
    )
    .await;
    assert_eq!(none.json["error"], "invalid_grant", "no verifier");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_uris_are_matched_exactly_and_never_followed_otherwise() {
    let srv = TestServer::spawn().await;
    let app = register(&srv, new_client("App")).await;
    srv.create_user("alice", Some(PASSWORD)).await;
    let mut b = srv.browser();
    b.password_step("alice", PASSWORD).await;
    for bad in [
        "https://app.example/cb/",
        "https://APP.example/cb",
        "https://app.example/CB",
        "https://app.example/cb?x=1",
        "https://app.example/cb#x",
        "https://app.example:443/cb",
        "https://evil@app.example/cb",
        "https://app.example.evil.test/cb",
        "http://app.example/cb",
        "javascript:alert(1)",
        "",
    ] {
        let p = b.get(&authorize_path(&app, &[("redirect_uri", bad)])).await;
        assert_eq!(p.status, 400, "{bad}: {}", p.body);
        assert!(p.location().is_none(), "{bad}: no redirect anywhere");
    }
    // The token endpoint wants the same URI the code was issued for.
    let code = returned(&b.get(&authorize_path(&app, &[])).await)["code"].clone();
    let t = token_request(
        &srv,
        &app,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "https://app.example/cb/"),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(t.json["error"], "invalid_grant");
    // An unknown client: a page, no redirect.
    let p = b
        .get(&authorize_path(
            &App {
                id: "nobody".into(),
                secret: None,
            },
            &[],
        ))
        .await;
    assert_eq!(p.status, 400);
    assert!(p.location().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_parameters_are_refused() {
    let srv = TestServer::spawn().await;
    let app = register(&srv, new_client("App")).await;
    srv.create_user("alice", Some(PASSWORD)).await;
    let mut b = srv.browser();
    b.password_step("alice", PASSWORD).await;
    let path = format!(
        "{}&redirect_uri={}",
        authorize_path(&app, &[]),
        "https%3A%2F%2Fevil.test%2Fcb"
    );
    let p = b.get(&path).await;
    assert_eq!(p.status, 400);
    assert!(p.location().is_none());
    let path = format!("{}&scope=openid", authorize_path(&app, &[]));
    assert_eq!(b.get(&path).await.status, 400);
    let code = returned(&b.get(&authorize_path(&app, &[])).await)["code"].clone();
    let t = token_request(
        &srv,
        &app,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code", "other"),
            ("redirect_uri", CB),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(
        (t.status, t.json["error"].as_str()),
        (400, Some("invalid_request"))
    );
    assert_eq!(t.headers["cache-control"], "no-store");
}

/// Signs alice in again through an authorization request with `extra`; the new ID token's
/// `auth_time`.
async fn auth_time_of_sign_in(
    srv: &TestServer,
    b: &mut Browser,
    app: &App,
    extra: (&str, &str),
) -> Value {
    let back = sign_in_for(b, &authorize_path(app, &[extra]), "alice", None).await;
    let t = exchange(srv, app, &returned(&back)["code"]).await;
    verified_claims(srv, t.json["id_token"].as_str().unwrap()).await["auth_time"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_none_max_age_and_prompt_login() {
    let srv = TestServer::spawn().await;
    let app = register(&srv, new_client("App")).await;
    srv.create_user("alice", Some(PASSWORD)).await;
    let mut b = srv.browser();
    // Nobody signed in: prompt=none comes back with login_required, at once.
    let q = returned(&b.get(&authorize_path(&app, &[("prompt", "none")])).await);
    assert_eq!(q["error"], "login_required");
    let back = sign_in_for(&mut b, &authorize_path(&app, &[]), "alice", None).await;
    let first = exchange(&srv, &app, &returned(&back)["code"]).await;
    let first_time =
        verified_claims(&srv, first.json["id_token"].as_str().unwrap()).await["auth_time"].clone();
    // Signed in: prompt=none gets a code without any page.
    let q = returned(&b.get(&authorize_path(&app, &[("prompt", "none")])).await);
    assert!(q.contains_key("code"), "{q:?}");
    // Two minutes later, max_age=60 sends the person to sign in again (prompt=none says so).
    srv.clock.advance(120);
    let q = returned(
        &b.get(&authorize_path(
            &app,
            &[("prompt", "none"), ("max_age", "60")],
        ))
        .await,
    );
    assert_eq!(q["error"], "login_required");
    let again = auth_time_of_sign_in(&srv, &mut b, &app, ("max_age", "60")).await;
    assert_eq!(again.as_i64().unwrap(), first_time.as_i64().unwrap() + 120);
    // prompt=login: a new sign-in even with a fresh session.
    srv.clock.advance(5);
    let latest = auth_time_of_sign_in(&srv, &mut b, &app, ("prompt", "login")).await;
    assert_eq!(latest.as_i64().unwrap(), again.as_i64().unwrap() + 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_that_requires_two_step_verification_gets_it() {
    let srv = TestServer::spawn().await;
    let strict = register(
        &srv,
        NewClient {
            require_mfa: true,
            ..new_client("Payroll")
        },
    )
    .await;
    let relaxed = register(&srv, new_client("Wiki")).await;
    srv.create_user("alice", Some(PASSWORD)).await;
    let bob = srv.create_user("bob", Some(PASSWORD)).await;
    let secret = SecretBytes::new(b"0123456789abcdefghij".to_vec());
    srv.add_totp(bob.id, &secret).await;
    // Alice has only a password: told to add a method, never sent back with a code.
    let mut b = srv.browser();
    b.password_step("alice", PASSWORD).await;
    let p = b.get(&authorize_path(&strict, &[])).await;
    assert_eq!(p.status, 403, "{}", p.body);
    assert!(
        p.body.contains("Payroll requires two-step verification"),
        "{}",
        p.body
    );
    assert!(p.location().is_none());
    // The relaxed application lets her in; acr_values=mfa asks the same as the strict one.
    assert!(returned(&b.get(&authorize_path(&relaxed, &[])).await).contains_key("code"));
    assert_eq!(
        b.get(&authorize_path(&relaxed, &[("acr_values", "mfa")]))
            .await
            .status,
        403
    );
    // Bob completes a second step, and the token says so.
    let mut b = srv.browser();
    let back = sign_in_for(
        &mut b,
        &authorize_path(&strict, &[]),
        "bob",
        Some(srv.code(&secret)),
    )
    .await;
    let t = exchange(&srv, &strict, &returned(&back)["code"]).await;
    let id = verified_claims(&srv, t.json["id_token"].as_str().unwrap()).await;
    assert_eq!(id["acr"], "mfa");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_is_asked_once_remembered_and_can_be_refused() {
    let srv = TestServer::spawn().await;
    let app = register(
        &srv,
        NewClient {
            first_party: false,
            ..new_client("Third <Party>")
        },
    )
    .await;
    srv.create_user("alice", Some(PASSWORD)).await;
    let mut b = srv.browser();
    b.password_step("alice", PASSWORD).await;
    let q = returned(&b.get(&authorize_path(&app, &[("prompt", "none")])).await);
    assert_eq!(q["error"], "consent_required");
    let page = b.get(&authorize_path(&app, &[])).await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("Let Third &lt;Party&gt; sign you in?"),
        "{}",
        page.body
    );
    let r = page.hidden("r").expect("the request travels in the form");
    let q = returned(
        &b.post("/oauth/consent", &[("r", &r), ("answer", "deny")])
            .await,
    );
    assert_eq!(q["error"], "access_denied");
    let page = b.get(&authorize_path(&app, &[])).await;
    let r = page.hidden("r").unwrap();
    // A consent form posted without the page's token is refused.
    let mut other = srv.browser();
    assert_eq!(
        other
            .post(
                "/oauth/consent",
                &[("r", &r), ("answer", "allow"), ("csrf", "x")]
            )
            .await
            .status,
        403
    );
    let q = returned(
        &b.post("/oauth/consent", &[("r", &r), ("answer", "allow")])
            .await,
    );
    assert!(q.contains_key("code"));
    // Remembered: no page next time, unless prompt=consent.
    assert!(returned(&b.get(&authorize_path(&app, &[])).await).contains_key("code"));
    assert_eq!(
        b.get(&authorize_path(&app, &[("prompt", "consent")]))
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_authentication_client_credentials_introspection_and_revocation() {
    let srv = TestServer::spawn().await;
    let service = register(
        &srv,
        NewClient {
            client_credentials: true,
            ..new_client("Reports job")
        },
    )
    .await;
    let wrong = App {
        id: service.id.clone(),
        secret: Some("wrong".into()),
    };
    let t = token_request(&srv, &wrong, &[("grant_type", "client_credentials")]).await;
    assert_eq!(
        (t.status, t.json["error"].as_str()),
        (401, Some("invalid_client"))
    );
    assert!(t.headers.contains_key("www-authenticate"));
    let t = token_request(&srv, &service, &[("grant_type", "client_credentials")]).await;
    assert_eq!(t.status, 200, "{}", t.json);
    assert!(t.json.get("id_token").is_none() && t.json.get("refresh_token").is_none());
    let access = t.json["access_token"].as_str().unwrap().to_string();
    let claims = verified_claims(&srv, &access).await;
    assert_eq!(claims["sub"], service.id);
    // The secret in the body works too (client_secret_post), both at once does not.
    let post = reqwest::Client::new()
        .post(format!("{}/oauth/token", srv.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(query(&[
            ("grant_type", "client_credentials"),
            ("client_id", &service.id),
            ("client_secret", service.secret.as_deref().unwrap()),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 200);
    // A client not allowed client credentials is refused.
    let other = register(&srv, new_client("Other")).await;
    let t = token_request(&srv, &other, &[("grant_type", "client_credentials")]).await;
    assert_eq!(t.json["error"], "unauthorized_client");

    let call = |path: &'static str, token: String, app: &App| {
        let (id, secret) = (app.id.clone(), app.secret.clone().unwrap());
        let base = srv.base.clone();
        async move {
            let resp = reqwest::Client::new()
                .post(format!("{base}{path}"))
                .basic_auth(id, Some(secret))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(query(&[("token", &token)]))
                .send()
                .await
                .unwrap();
            (
                resp.status().as_u16(),
                resp.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, info) = call("/oauth/introspect", access.clone(), &service).await;
    assert_eq!(status, 200);
    assert_eq!(info["active"], true);
    assert_eq!(info["client_id"], service.id);
    let (status, _) = call("/oauth/revoke", access.clone(), &service).await;
    assert_eq!(status, 200);
    let (_, info) = call("/oauth/introspect", access.clone(), &service).await;
    assert_eq!(info["active"], false);
    let (_, info) = call("/oauth/introspect", "garbage".into(), &service).await;
    assert_eq!(info, serde_json::json!({"active": false}));
    // Unknown tokens revoke quietly (RFC 7009 §2.2).
    assert_eq!(
        call("/oauth/revoke", "garbage".into(), &service).await.0,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_returns_only_to_a_registered_address() {
    let srv = TestServer::spawn().await;
    let app = register(&srv, new_client("App")).await;
    srv.create_user("alice", Some(PASSWORD)).await;
    let mut b = srv.browser();
    let back = sign_in_for(&mut b, &authorize_path(&app, &[]), "alice", None).await;
    let t = exchange(&srv, &app, &returned(&back)["code"]).await;
    let id_token = t.json["id_token"].as_str().unwrap().to_string();
    // An unregistered return address: refused, still signed in.
    let p = b
        .get(&format!(
            "/oauth/logout?{}",
            query(&[
                ("id_token_hint", &id_token),
                ("post_logout_redirect_uri", "https://evil.test/")
            ])
        ))
        .await;
    assert_eq!(p.status, 400);
    assert!(p.location().is_none());
    assert_eq!(b.get("/account").await.status, 200);
    // Without a hint: a page asks first (a link elsewhere cannot sign anyone out).
    let p = b.get(&format!("/oauth/logout?client_id={}", app.id)).await;
    assert_eq!(p.status, 200);
    assert!(p.body.contains("Sign out of Sesame?"));
    assert_eq!(b.get("/account").await.status, 200);
    // Someone else's ID token (bob's) asks first too: it is not about who is signed in here.
    srv.create_user("bob", Some(PASSWORD)).await;
    let mut other = srv.browser();
    let back = sign_in_for(&mut other, &authorize_path(&app, &[]), "bob", None).await;
    let bobs = exchange(&srv, &app, &returned(&back)["code"]).await.json["id_token"]
        .as_str()
        .unwrap()
        .to_string();
    let p = b
        .get(&format!(
            "/oauth/logout?{}",
            query(&[("id_token_hint", &bobs)])
        ))
        .await;
    assert_eq!(p.status, 200);
    assert!(p.body.contains("Sign out of Sesame?"), "{}", p.body);
    assert_eq!(b.get("/account").await.status, 200);
    // With the ID token: signed out and sent back with the state.
    let p = b
        .get(&format!(
            "/oauth/logout?{}",
            query(&[
                ("id_token_hint", &id_token),
                ("post_logout_redirect_uri", "https://app.example/bye"),
                ("state", "s1"),
            ])
        ))
        .await;
    assert_eq!(p.location(), Some("https://app.example/bye?state=s1"));
    assert_ne!(b.get("/account").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sign_in_page_and_the_phone_name_the_application_asking() {
    let srv = TestServer::spawn().await;
    let app = register(&srv, new_client("Hello <App>")).await;
    let mut b = srv.browser();
    let p = b
        .get(&authorize_path(&app, &[("login_hint", "alice")]))
        .await;
    let page = b.get(p.location().unwrap()).await;
    assert!(
        page.body.contains("to continue to Hello &lt;App&gt;"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("value=\"alice\""),
        "login_hint fills the name"
    );
}

/// A rotated key signs from the next reload on; the key it replaced stays published for a
/// day, so tokens it signed still verify, then it is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_signs_next_and_the_old_one_stays_published_for_its_overlap() {
    use sesame_server::service::oidc::keys::{self, OVERLAP_SECS};
    let srv = TestServer::spawn().await;
    let app = register(&srv, new_client("App")).await;
    srv.create_user("alice", Some(PASSWORD)).await;
    let mut b = srv.browser();
    b.password_step("alice", PASSWORD).await;
    let kid_of = |jwt: &str| -> String {
        let h = jwt.split('.').next().unwrap();
        let v: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap();
        v["kid"].as_str().unwrap().to_string()
    };
    let published = |srv: &TestServer| {
        let url = format!("{}/oauth/jwks", srv.base);
        async move {
            let v: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
            v["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["kid"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    let code = returned(&b.get(&authorize_path(&app, &[])).await)["code"].clone();
    let old_token = exchange(&srv, &app, &code).await.json["id_token"]
        .as_str()
        .unwrap()
        .to_string();
    let old_kid = kid_of(&old_token);
    let new_kid = keys::rotate(&*srv.store, Alg::Rs256, srv.state.now())
        .await
        .unwrap();
    // Picked up at the next reload (a minute at most), as `sesame keys rotate` is.
    srv.clock.advance(61);
    let code = returned(&b.get(&authorize_path(&app, &[])).await)["code"].clone();
    let new_token = exchange(&srv, &app, &code).await.json["id_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(kid_of(&new_token), new_kid);
    let kids = published(&srv).await;
    assert!(
        kids.contains(&old_kid) && kids.contains(&new_kid),
        "{kids:?}"
    );
    verified_claims(&srv, &old_token).await;
    // After the overlap the old key is no longer published.
    srv.clock.advance(OVERLAP_SECS);
    let kids = published(&srv).await;
    assert!(
        !kids.contains(&old_kid) && kids.contains(&new_kid),
        "{kids:?}"
    );
}

/// Signs `username` in to `app` and exchanges the code: (access token, refresh token).
async fn app_tokens(srv: &TestServer, app: &App, username: &str) -> (String, String) {
    let mut b = srv.browser();
    let back = sign_in_for(&mut b, &authorize_path(app, &[]), username, None).await;
    let t = exchange(srv, app, &returned(&back)["code"]).await;
    (
        t.json["access_token"].as_str().unwrap().to_string(),
        t.json["refresh_token"].as_str().unwrap().to_string(),
    )
}

async fn active(srv: &TestServer, app: &App, token: &str) -> bool {
    let v: Value = reqwest::Client::new()
        .post(format!("{}/oauth/introspect", srv.base))
        .basic_auth(&app.id, app.secret.clone())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(query(&[("token", token)]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["active"].as_bool().unwrap()
}

async fn refresh_ended(srv: &TestServer, app: &App, refresh: &str) -> bool {
    token_request(
        srv,
        app,
        &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
    )
    .await
    .json["error"]
        == "invalid_grant"
}

/// What an application holds ends with the user's standing: a new password, a block, a removal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_password_a_block_or_a_removal_ends_what_applications_hold() {
    use sesame_core::secret::SecretString;
    use sesame_server::service::users;
    let srv = TestServer::spawn().await;
    let app = register(&srv, new_client("App")).await;
    let alice = srv.create_user("alice", Some(PASSWORD)).await;
    let bob = srv.create_user("bob", Some(PASSWORD)).await;
    let carol = srv.create_user("carol", Some(PASSWORD)).await;

    let (access, refresh) = app_tokens(&srv, &app, "alice").await;
    assert!(active(&srv, &app, &access).await);
    let new = SecretString::new("second password 1".into());
    users::set_password(&srv.state, &admin(), &alice, new)
        .await
        .unwrap();
    assert!(
        refresh_ended(&srv, &app, &refresh).await,
        "after a new password"
    );
    assert!(!active(&srv, &app, &access).await);
    assert_eq!(userinfo(&srv, &access).await.0, 401);

    let (access, refresh) = app_tokens(&srv, &app, "bob").await;
    users::block(&srv.state, &admin(), &bob).await.unwrap();
    assert!(!active(&srv, &app, &access).await, "after a block");
    assert_eq!(userinfo(&srv, &access).await.0, 401);
    assert!(refresh_ended(&srv, &app, &refresh).await);

    let (access, refresh) = app_tokens(&srv, &app, "carol").await;
    users::remove(&srv.state, &admin(), &carol).await.unwrap();
    assert!(!active(&srv, &app, &access).await, "after a removal");
    assert!(refresh_ended(&srv, &app, &refresh).await);
}

/// Up to the second step of a sign-in an application started; returns the browser there.
async fn to_second_step_for(b: &mut Browser, path: &str, username: &str) {
    let p = b.get(path).await;
    let login = p.location().expect("to the sign-in page").to_string();
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
    assert_eq!(p.location(), Some("/login/verify"), "{}", p.body);
    b.follow(p).await;
}

/// A text code gives `sms`, a call answered with # gives `tel` (RFC 8176), with `mfa`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn texts_and_calls_say_sms_and_tel_in_the_id_token() {
    use sesame_core::method::MethodKind;
    let srv = TestServer::spawn().await;
    let app = register(&srv, new_client("Hello App")).await;
    let carol = srv.create_user("carol", Some(PASSWORD)).await;
    srv.add_mobile(carol.id, "+31612345678", MethodKind::Sms)
        .await;
    let mut b = srv.browser();
    to_second_step_for(&mut b, &authorize_path(&app, &[]), "carol").await;
    let text = srv.store.outbox_list(1).await.unwrap().remove(0);
    let code: String = text.body.chars().take(6).collect();
    let p = b.post("/login/verify", &[("code", &code)]).await;
    let back = b.follow(p).await;
    let t = exchange(&srv, &app, &returned(&back)["code"]).await;
    let id = verified_claims(&srv, t.json["id_token"].as_str().unwrap()).await;
    assert_eq!(id["amr"], serde_json::json!(["pwd", "sms", "mfa"]));
    assert_eq!(id["acr"], "mfa");

    let dave = srv.create_user("dave", Some(PASSWORD)).await;
    srv.add_mobile(dave.id, "+31612345679", MethodKind::Voice)
        .await;
    let mut b = srv.browser();
    to_second_step_for(&mut b, &authorize_path(&app, &[]), "dave").await;
    let call = srv.store.outbox_list(1).await.unwrap().remove(0);
    assert_eq!(call.kind, "call");
    assert!(sesame_server::service::phones::call_ended(
        &srv.state,
        &sesame_core::ChallengeId(call.reference),
        sesame_telephony::CallOutcome::Approved
    )
    .await
    .unwrap());
    let p = b.post("/login/push/complete", &[]).await;
    let back = b.follow(p).await;
    let t = exchange(&srv, &app, &returned(&back)["code"]).await;
    let id = verified_claims(&srv, t.json["id_token"].as_str().unwrap()).await;
    assert_eq!(id["amr"], serde_json::json!(["pwd", "tel", "mfa"]));
}
