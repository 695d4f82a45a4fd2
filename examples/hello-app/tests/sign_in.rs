//! hello-app against a real Sesame, over real HTTP, the way a browser goes: from the app to
//! Sesame's sign-in pages and back, then out again. What the app shows is what the
//! `openidconnect` crate verified, so these also check Sesame against an independent
//! relying-party implementation (discovery, JWKS, PKCE, ID token, UserInfo, logout).

use sesame_core::secret::SecretBytes;
use sesame_server::service::oidc::clients::{self, NewClient};
use sesame_server::service::oidc::keys::Alg;
use sesame_server::service::{Admin, Origin};
use sesame_testkit::TestServer;
use std::collections::HashMap;
use url::Url;

const PASSWORD: &str = "correct horse battery";

/// Sesame's clock starts in the past in tests; the app checks the ID token's expiry with the
/// real time, as any relying party does, so Sesame is set to now.
async fn sesame() -> TestServer {
    let srv = TestServer::spawn().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    srv.clock.set(now);
    srv
}

/// Starts hello-app on a free port, registered with `srv` (a public client if `public`);
/// returns its address. The port must be known before registering, so it is bound first.
async fn hello_app(srv: &TestServer, public: bool, alg: Alg) -> Url {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let admin = Admin {
        user: None,
        username: "test".into(),
        by: "cli:test".into(),
        origin: Origin::cli("test"),
    };
    let new = NewClient {
        name: "Hello App".into(),
        redirect_uris: vec![format!("http://{addr}/callback")],
        post_logout_redirect_uris: vec![format!("http://{addr}/")],
        public,
        first_party: true,
        require_mfa: false,
        id_token_alg: alg,
        client_credentials: false,
    };
    let created = clients::add(&srv.state, &admin, srv.state.default_tenant, new)
        .await
        .unwrap();
    assert_eq!(created.secret.is_none(), public);
    let config = hello_app::Config {
        issuer: srv.base.clone(),
        client_id: created.client.client_id,
        client_secret: created.secret,
        listen: addr,
    };
    tokio::spawn(hello_app::serve(listener, config));
    Url::parse(&format!("http://{addr}/")).unwrap()
}

struct Page {
    url: Url,
    status: u16,
    location: Option<Url>,
    body: String,
}

impl Page {
    /// The value of the hidden input `name`, unescaped.
    fn hidden(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self
            .body
            .find(&marker)
            .unwrap_or_else(|| panic!("no {name} on {}: {}", self.url, self.body))
            + marker.len();
        let end = start + self.body[start..].find('"').unwrap();
        self.body[start..end]
            .replace("&#x2f;", "/")
            .replace("&#x27;", "'")
            .replace("&#39;", "'")
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
    }
}

/// A browser: one cookie jar for 127.0.0.1, since cookies do not depend on the port (RFC
/// 6265 §8.5), so the app's and Sesame's cookies travel to both as they would in a browser.
/// Redirects are followed by hand, to see each step. Sesame's cookies are `__Host-` and
/// Secure; it sets them over http at the loopback address, and they are kept here.
struct Browser {
    http: reqwest::Client,
    cookies: HashMap<String, String>,
}

impl Browser {
    fn new() -> Self {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: HashMap::new(),
        }
    }

    async fn send(&mut self, url: &Url, req: reqwest::RequestBuilder) -> Page {
        let cookie: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let resp = req
            .header("cookie", cookie.join("; "))
            .send()
            .await
            .unwrap();
        for c in resp.headers().get_all("set-cookie") {
            let c = c.to_str().unwrap();
            let (k, v) = c.split(';').next().unwrap().split_once('=').unwrap();
            if c.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.into(), v.into());
            }
        }
        let location = resp
            .headers()
            .get("location")
            .map(|l| url.join(l.to_str().unwrap()).unwrap());
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap();
        // After a form post Sesame goes back to the application through a page that
        // navigates by itself (a meta refresh), as a browser follows it.
        let location = location.or_else(|| meta_refresh(&body).map(|u| url.join(&u).unwrap()));
        Page {
            url: url.clone(),
            status,
            location,
            body,
        }
    }

    async fn get(&mut self, url: &Url) -> Page {
        let req = self.http.get(url.clone());
        self.send(url, req).await
    }

    async fn post(&mut self, url: &Url, fields: &[(&str, &str)]) -> Page {
        let mut body = form_urlencoded::Serializer::new(String::new());
        body.extend_pairs(fields);
        let req = self
            .http
            .post(url.clone())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.finish());
        self.send(url, req).await
    }

    /// Follows redirects, as a browser does, to the page they end at.
    async fn follow(&mut self, mut page: Page) -> Page {
        for _ in 0..10 {
            let Some(next) = page.location.take() else {
                return page;
            };
            assert!(matches!(page.status, 200 | 303), "{}", page.url);
            page = self.get(&next).await;
        }
        panic!("too many redirects");
    }
}

/// From the app's "Sign in with Sesame" to the page the app shows after the callback:
/// username, password and, if `code` is given, a verification code on Sesame's pages.
async fn sign_in(
    b: &mut Browser,
    srv: &TestServer,
    app: &Url,
    username: &str,
    code: Option<&str>,
) -> Page {
    let home = b.get(app).await;
    assert!(home
        .body
        .contains("<a href=\"/login\">Sign in with Sesame</a>"));
    // The app → Sesame's /oauth/authorize → Sesame's sign-in page.
    let p = b.get(&app.join("/login").unwrap()).await;
    let p = b.follow(p).await;
    assert_eq!(p.url.port(), Some(srv.addr.port()), "at Sesame");
    assert_eq!(p.url.path(), "/login");
    assert!(p.body.contains("Hello App"), "the app asking is named");
    let p = b
        .post(
            &p.url.join("/login").unwrap(),
            &[
                ("username", username),
                ("next", &p.hidden("next")),
                ("csrf", &p.hidden("csrf")),
            ],
        )
        .await;
    let p = b.follow(p).await;
    assert_eq!(p.url.path(), "/login/password");
    let mut p = b
        .post(
            &p.url,
            &[("password", PASSWORD), ("csrf", &p.hidden("csrf"))],
        )
        .await;
    if let Some(code) = code {
        let verify = b.follow(p).await;
        assert_eq!(verify.url.path(), "/login/verify");
        p = b
            .post(
                &verify.url,
                &[("code", code), ("csrf", &verify.hidden("csrf"))],
            )
            .await;
    }
    // Sesame's /oauth/authorize/continue → the app's /callback, with a code.
    let continued = p.location.clone().expect("signed in");
    assert_eq!(continued.path(), "/oauth/authorize/continue");
    let p = b.follow(p).await;
    assert_eq!(p.url.port(), app.port(), "back at the app");
    assert_eq!(p.url.path(), "/callback");
    assert_eq!(p.status, 200, "{}", p.body);
    p
}

fn shows(page: &Page, claim: &str, value: &str) -> bool {
    page.body
        .contains(&format!("<dt>{claim}</dt><dd>{value}</dd>"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signs_in_with_a_password() {
    let srv = sesame().await;
    let alice = srv.create_user("alice", Some(PASSWORD)).await;
    let app = hello_app(&srv, false, Alg::Rs256).await;
    let mut b = Browser::new();
    let p = sign_in(&mut b, &srv, &app, "alice", None).await;
    assert!(shows(&p, "sub", &alice.id.0.to_string()), "{}", p.body);
    assert!(shows(&p, "preferred_username", "alice"), "{}", p.body);
    assert!(shows(&p, "name", "alice"), "{}", p.body);
    assert!(shows(&p, "amr", "pwd"), "{}", p.body);
    assert!(shows(&p, "acr", "pwd"), "{}", p.body);
    assert!(p.body.contains("<dt>auth_time</dt><dd>20"), "{}", p.body);
    // UserInfo answered too: the username appears in both lists.
    let (_, info) = p.body.split_once("<h2>UserInfo</h2>").unwrap();
    assert!(info.contains("<dt>preferred_username</dt><dd>alice</dd>"));

    // The answer is used once: the same callback again is refused.
    let again = b.get(&p.url).await;
    assert_eq!(again.status, 400);
    assert!(
        again.body.contains("No sign-in is waiting"),
        "{}",
        again.body
    );

    // An answer to another request (someone else's code, say) is refused by its state.
    let to_sesame = b.get(&app.join("/login").unwrap()).await;
    assert!(to_sesame.location.is_some());
    let forged = app.join("/callback?code=theirs&state=theirs").unwrap();
    let p = b.get(&forged).await;
    assert_eq!(p.status, 400);
    assert!(p.body.contains("state differs"), "{}", p.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verification_code_shows_as_two_factors() {
    let srv = sesame().await;
    let bob = srv.create_user("bob", Some(PASSWORD)).await;
    let secret = SecretBytes::new(b"0123456789abcdefghij".to_vec());
    srv.add_totp(bob.id, &secret).await;
    // A public client, and ES256: the app has no secret, and checks another kind of key.
    let app = hello_app(&srv, true, Alg::Es256).await;
    let mut b = Browser::new();
    let code = srv.code(&secret);
    let p = sign_in(&mut b, &srv, &app, "bob", Some(&code)).await;
    assert!(shows(&p, "preferred_username", "bob"), "{}", p.body);
    assert!(shows(&p, "amr", "pwd, otp, mfa"), "{}", p.body);
    assert!(shows(&p, "acr", "mfa"), "{}", p.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_out_ends_the_sesame_session_and_returns_to_the_app() {
    let srv = sesame().await;
    srv.create_user("alice", Some(PASSWORD)).await;
    let app = hello_app(&srv, false, Alg::EdDsa).await;
    let mut b = Browser::new();
    sign_in(&mut b, &srv, &app, "alice", None).await;
    assert!(b.cookies.contains_key("__Host-sesame-session"));

    let out = b.get(&app.join("/logout").unwrap()).await;
    let to = out.location.clone().expect("to Sesame");
    assert_eq!(to.port(), Some(srv.addr.port()));
    assert_eq!(to.path(), "/oauth/logout");
    assert!(to.query_pairs().any(|(k, _)| k == "id_token_hint"));
    let p = b.follow(out).await;
    assert_eq!(p.url, app, "back at the app's home page");
    assert!(p.body.contains("Sign in with Sesame"));
    assert!(!b.cookies.contains_key("__Host-sesame-session"));
    assert!(!b.cookies.contains_key("hello-app"));

    // Signing in again asks for the password again: Sesame's session really ended.
    let p = b.get(&app.join("/login").unwrap()).await;
    let p = b.follow(p).await;
    assert_eq!(p.url.port(), Some(srv.addr.port()));
    assert_eq!(p.url.path(), "/login");
}

/// The target of a `<meta http-equiv="refresh" content="0;url=...">`, unescaped.
fn meta_refresh(body: &str) -> Option<String> {
    let marker = "http-equiv=\"refresh\" content=\"0;url=";
    let start = body.find(marker)? + marker.len();
    let rest = &body[start..];
    let url = &rest[..rest.find('"')?];
    Some(
        url.replace("&amp;", "&")
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">"),
    )
}
