//! Test helpers: a real Sesame server on `127.0.0.1:0` backed by a SQLite file in a temporary
//! directory, with a [`ManualClock`], and [`Browser`], a small client that keeps cookies and
//! fills in CSRF tokens the way a browser submits forms.

use sesame_core::secret::{SecretBytes, SecretString};
use sesame_core::{password, ManualClock, UserId};
use sesame_server::{AppState, ServerConfig};
use sesame_store::{MasterKey, Method, NewUser, Store, User};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// The moment every test server starts at (2025-06-15), so tests are repeatable.
pub const START: i64 = 1_750_000_000;

pub struct TestServer {
    pub base: String,
    pub addr: SocketAddr,
    /// The server's store, whichever backend it is.
    pub store: Arc<dyn Store>,
    pub clock: Arc<ManualClock>,
    pub state: AppState,
    pub dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    pub async fn spawn() -> Self {
        Self::spawn_with(ServerConfig::default()).await
    }

    pub async fn spawn_with(config: ServerConfig) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        Self::spawn_on(listener, config).await
    }

    /// A server on a listener bound already: for settings that must name the server's own
    /// address (a gateway's callback URL).
    pub async fn spawn_on(listener: tokio::net::TcpListener, config: ServerConfig) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        // The whole HTTP suite runs on PostgreSQL too (`SESAME_TEST_BACKEND=postgres`, as
        // `scripts/test.sh` does in a second pass): every page and rule, on the other backend.
        let url = if std::env::var("SESAME_TEST_BACKEND").as_deref() == Ok("postgres") {
            postgres_database("srv")
                .await
                .expect("SESAME_TEST_BACKEND=postgres needs SESAME_TEST_DATABASE_URL")
        } else {
            sesame_store::Backend::sqlite_url(&dir.path().join("sesame.db"))
        };
        let clock = Arc::new(ManualClock::new(START));
        Self::start(listener, dir, &url, &MasterKey::generate(), clock, config).await
    }

    /// One node of several on the shared database `url` (PostgreSQL): the nodes of a test
    /// share the master key and the clock, as real nodes share the key file and the time.
    pub async fn spawn_node(
        url: &str,
        key: &MasterKey,
        clock: Arc<ManualClock>,
        config: ServerConfig,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start(listener, dir, url, key, clock, config).await
    }

    async fn start(
        listener: tokio::net::TcpListener,
        dir: tempfile::TempDir,
        url: &str,
        key: &MasterKey,
        clock: Arc<ManualClock>,
        config: ServerConfig,
    ) -> Self {
        let store = sesame_store::open(url, key.clone())
            .await
            .expect("open store");
        let state = AppState::new(store.clone(), clock.clone(), key, config)
            .await
            .expect("state");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let st = state.clone();
        let handle = tokio::spawn(async move {
            sesame_server::serve(listener, st, async {
                let _ = rx.await;
            })
            .await
            .expect("server runs");
        });
        TestServer {
            base: format!("http://{addr}"),
            addr,
            store,
            clock,
            state,
            dir,
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    /// Stops the server and waits until it has finished.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
    }

    pub fn browser(&self) -> Browser {
        Browser::new(&self.base)
    }

    /// A browser connecting from another loopback address (`127.x.y.z`): another client, as
    /// the server sees it.
    pub fn browser_from(&self, ip: [u8; 4]) -> Browser {
        Browser::from_address(&self.base, std::net::IpAddr::from(ip))
    }

    /// A browser that says it is `user_agent` (the header is the requester's to write).
    pub fn browser_as(&self, user_agent: &str) -> Browser {
        Browser::with_agent(
            &self.base,
            std::net::IpAddr::from([127, 0, 0, 1]),
            user_agent,
        )
    }

    /// Creates a user directly in the store (as `sesame user add` would).
    pub async fn create_user(&self, username: &str, password: Option<&str>) -> User {
        self.create_account(username, password, false).await
    }

    /// Creates an administrator directly in the store (`sesame user add --admin`).
    pub async fn create_admin(&self, username: &str, password: Option<&str>) -> User {
        self.create_account(username, password, true).await
    }

    async fn create_account(&self, username: &str, password: Option<&str>, admin: bool) -> User {
        let hash = password
            .map(|p| password::hash(&SecretString::new(p.into()), &mut rand::rngs::OsRng).unwrap());
        let tenant = self.store.default_tenant().await.unwrap();
        let new = NewUser {
            tenant,
            username: username.into(),
            display_name: username.into(),
            password_hash: hash,
            is_admin: admin,
        };
        self.store.create_user(new, START).await.unwrap()
    }

    /// Registers a TOTP method directly, as if enrolled at `START - 3600`.
    pub async fn add_totp(&self, user: UserId, secret: &SecretBytes) -> Method {
        let m = self
            .store
            .create_totp_method(user, "Authenticator app", secret, 0, START - 3600)
            .await
            .unwrap();
        self.store
            .update_default_method(user, Some(m.id))
            .await
            .unwrap();
        m
    }

    /// Gives `user` the mobile `number` directly (its text and call methods, as if proved),
    /// and makes its method of kind `default` the default.
    pub async fn add_mobile(
        &self,
        user: UserId,
        number: &str,
        default: sesame_core::method::MethodKind,
    ) -> Vec<Method> {
        let methods = self
            .store
            .save_phone(
                user,
                sesame_core::method::PhoneSlot::Mobile,
                number,
                None,
                0,
            )
            .await
            .unwrap();
        let d = methods
            .iter()
            .find(|m| m.kind == default)
            .expect("a mobile number gives text and call methods");
        self.store
            .update_default_method(user, Some(d.id))
            .await
            .unwrap();
        methods
    }

    /// Changes the authentication methods policy as an administrator would (audited).
    pub async fn set_policy(&self, edit: sesame_server::service::policy::PolicyEdit) {
        let admin = sesame_server::service::Admin {
            user: None,
            username: "test".into(),
            by: "test".into(),
            origin: sesame_server::service::Origin {
                ip: "127.0.0.1".into(),
                user_agent: "test".into(),
                browsers: Vec::new(),
            },
        };
        let tenant = self.state.default_tenant;
        self.state
            .change_policy(&admin, tenant, &edit, None)
            .await
            .expect("policy change");
    }

    /// The code an authenticator app shows now for `secret`, by the server's clock.
    pub fn code(&self, secret: &SecretBytes) -> String {
        sesame_core::totp::code_at(secret, sesame_core::Clock::now(&*self.clock))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// One HTTP response, read in full.
#[derive(Debug, Clone)]
pub struct Page {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> Option<&str> {
        self.headers.get("location").and_then(|v| v.to_str().ok())
    }

    /// The CSRF token of the first form on the page.
    pub fn csrf(&self) -> Option<String> {
        hidden_value(&self.body, "csrf")
    }

    pub fn hidden(&self, name: &str) -> Option<String> {
        hidden_value(&self.body, name)
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect()
    }
}

fn hidden_value(body: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = body.find(&marker)? + marker.len();
    let end = body[start..].find('"')? + start;
    Some(body[start..end].replace("&amp;", "&"))
}

/// A cookie-keeping HTTP client that does not follow redirects by itself.
#[derive(Clone)]
pub struct Browser {
    pub base: String,
    client: reqwest::Client,
    pub cookies: HashMap<String, String>,
    last_csrf: Option<String>,
}

impl Browser {
    pub fn new(base: &str) -> Self {
        Self::from_address(base, std::net::IpAddr::from([127, 0, 0, 1]))
    }

    /// A browser whose connections come from `local` (a loopback address).
    pub fn from_address(base: &str, local: std::net::IpAddr) -> Self {
        Self::with_agent(base, local, "sesame-testkit")
    }

    /// A browser from `local` whose User-Agent header is `user_agent`.
    pub fn with_agent(base: &str, local: std::net::IpAddr, user_agent: &str) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(user_agent)
            .local_address(local)
            .build()
            .expect("client");
        Browser {
            base: base.to_string(),
            client,
            cookies: HashMap::new(),
            last_csrf: None,
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn absorb(&mut self, page: &Page) {
        for c in page.set_cookies() {
            let first = c.split(';').next().unwrap_or("");
            if let Some((k, v)) = first.split_once('=') {
                if c.contains("Max-Age=0") {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_string(), v.to_string());
                }
            }
        }
        if let Some(t) = page.csrf() {
            self.last_csrf = Some(t);
        }
    }

    async fn read(resp: reqwest::Response) -> Page {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.text().await.unwrap_or_default();
        Page {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .expect("GET");
        let page = Self::read(resp).await;
        self.absorb(&page);
        page
    }

    /// Posts a form; the CSRF token of the last page seen is added unless `fields` has one.
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let mut body = form_urlencoded::Serializer::new(String::new());
        if !fields.iter().any(|(k, _)| *k == "csrf") {
            if let Some(t) = &self.last_csrf {
                body.append_pair("csrf", t);
            }
        }
        for (k, v) in fields {
            body.append_pair(k, v);
        }
        self.post_raw(
            path,
            "application/x-www-form-urlencoded",
            body.finish().into_bytes(),
        )
        .await
    }

    pub async fn post_raw(&mut self, path: &str, content_type: &str, body: Vec<u8>) -> Page {
        let resp = self
            .client
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("POST");
        let page = Self::read(resp).await;
        self.absorb(&page);
        page
    }

    /// Follows a 303 if there is one.
    pub async fn follow(&mut self, page: Page) -> Page {
        match (page.status, page.location().map(str::to_string)) {
            (301..=303, Some(loc)) => self.get(&loc).await,
            _ => page,
        }
    }

    /// Username and password; returns the page the password step leads to (unfollowed).
    pub async fn password_step(&mut self, username: &str, password: &str) -> Page {
        self.get("/login").await;
        let p = self.post("/login", &[("username", username)]).await;
        assert_eq!(p.status, 303, "username step: {}", p.body);
        self.follow(p).await;
        self.post("/login/password", &[("password", password)])
            .await
    }

    pub fn has_session(&self) -> bool {
        self.cookies.contains_key("__Host-sesame-session")
    }
}

/// A PostgreSQL database of a test's own, on the server `SESAME_TEST_DATABASE_URL` names: a
/// fresh schema, and the URL that selects it. None (the test says it is skipped) without the
/// variable, unless `SESAME_REQUIRE_POSTGRES` is set (`scripts/test.sh`): then a missing
/// server fails the test rather than skipping it quietly.
pub async fn postgres_database(name: &str) -> Option<String> {
    let base = match std::env::var("SESAME_TEST_DATABASE_URL") {
        Ok(u) if !u.is_empty() => u,
        _ => {
            assert!(
                std::env::var_os("SESAME_REQUIRE_POSTGRES").is_none(),
                "SESAME_REQUIRE_POSTGRES is set but SESAME_TEST_DATABASE_URL is not"
            );
            eprintln!("skipped: SESAME_TEST_DATABASE_URL is not set (no PostgreSQL to test)");
            return None;
        }
    };
    let tag: String = {
        use rand::Rng;
        let mut r = rand::thread_rng();
        (0..10)
            .map(|_| char::from(b'a' + r.gen_range(0..26)))
            .collect()
    };
    let schema = format!("k_{name}_{tag}");
    let (client, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
        .await
        .expect("connect to SESAME_TEST_DATABASE_URL");
    let task = tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .expect("create the test schema");
    drop(client);
    let _ = task.await;
    let sep = if base.contains('?') { '&' } else { '?' };
    Some(format!("{base}{sep}options=-csearch_path%3D{schema}"))
}

/// The text of the element with this id on a page (its first text, up to the next tag), with
/// `&amp;` read back: for links and codes the tests copy off a page, as a person would.
pub fn element_text(body: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\"");
    let at = body
        .find(&marker)
        .unwrap_or_else(|| panic!("no #{id} in {body}"));
    let start = at + body[at..].find('>').unwrap() + 1;
    let end = start + body[start..].find('<').unwrap();
    body[start..end].replace("&amp;", "&")
}
