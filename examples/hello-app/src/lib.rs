//! hello-app: the smallest web application that signs people in through Sesame, as an example
//! of an OpenID Connect relying party. The `openidconnect` crate does everything that has to
//! be exactly right: discovery, PKCE, `state` and `nonce`, the code exchange, and the ID
//! token's checks (signature with Sesame's published keys, issuer, audience, expiry, nonce).
//!
//! Pages: `/` links to `/login`, which sends the browser to Sesame; Sesame sends it back to
//! `/callback`, which shows who signed in and how; `/logout` signs out of Sesame too and
//! comes back to `/`.
//!
//! What the app remembers between requests is kept in memory, under a random cookie. The
//! workspace's reqwest is built without TLS, so Sesame must be at an `http://` address on
//! this machine; turn on reqwest's `rustls-tls` feature to use an `https://` one.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreIdToken, CoreUserInfoClaims};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IssuerUrl, LogoutRequest, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    PkceCodeVerifier, PostLogoutRedirectUrl, ProviderMetadataWithLogout, RedirectUrl, Scope,
    TokenResponse,
};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// Register the app first; `sesame client add` prints the client id and secret to use here.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    about = "An example application that signs people in through Sesame",
    after_help = "Register it first (the addresses follow --listen):\n  sesame client add 'Hello App' --redirect-uri http://127.0.0.1:3000/callback --post-logout-redirect-uri http://127.0.0.1:3000/ --first-party"
)]
pub struct Config {
    /// Sesame's address: its OpenID Connect issuer.
    #[arg(long, env = "HELLO_ISSUER", default_value = "http://127.0.0.1:8080")]
    pub issuer: String,
    /// The client id that `sesame client add` printed.
    #[arg(long, env = "HELLO_CLIENT_ID")]
    pub client_id: String,
    /// The client secret it printed; leave out for a public client (`--public`). Better in
    /// the environment: other users of the machine can read command lines.
    #[arg(long, env = "HELLO_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: Option<String>,
    /// Where to listen; the redirect URIs are built from it.
    #[arg(long, env = "HELLO_LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
}

impl Config {
    /// The app's own address, as registered with Sesame.
    pub fn base(&self) -> String {
        format!("http://{}", self.listen)
    }
}

/// The client as discovery makes it: authorization endpoint known; token and UserInfo
/// endpoints as the provider says.
type Oidc = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

const COOKIE: &str = "hello-app";

#[derive(Clone)]
struct App {
    config: Arc<Config>,
    http: reqwest::Client,
    visits: Arc<Mutex<HashMap<String, Visit>>>,
}

/// What the app remembers about one browser. A real application keeps this in its session
/// store, with an expiry; here nothing expires.
#[derive(Default)]
struct Visit {
    /// Between `/login` and `/callback`: what Sesame's answer must match.
    pending: Option<Pending>,
    /// After `/callback`: sent back to Sesame when signing out, so it knows whose session.
    id_token: Option<CoreIdToken>,
}

struct Pending {
    state: CsrfToken,
    nonce: Nonce,
    verifier: PkceCodeVerifier,
}

pub fn app(config: Config) -> Router {
    let http = reqwest::Client::builder()
        // Never follow redirects: a provider's answer that redirects elsewhere could make the
        // app fetch an address of someone else's choosing (the crate's advice).
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client without TLS always builds");
    let state = App {
        config: Arc::new(config),
        http,
        visits: Arc::default(),
    };
    Router::new()
        .route("/", get(home))
        .route("/login", get(login))
        .route("/callback", get(callback))
        .route("/logout", get(logout))
        .with_state(state)
}

pub async fn serve(listener: tokio::net::TcpListener, config: Config) -> anyhow::Result<()> {
    axum::serve(listener, app(config)).await?;
    Ok(())
}

impl App {
    /// Discovery on every use keeps the example short and picks up Sesame's key rotation at
    /// once; a real application caches it (Sesame says for 5 minutes) and refetches the
    /// keys when an ID token names one it does not know.
    async fn discover(&self) -> anyhow::Result<ProviderMetadataWithLogout> {
        let issuer = IssuerUrl::new(self.config.issuer.clone())?;
        Ok(ProviderMetadataWithLogout::discover_async(issuer, &self.http).await?)
    }

    async fn client(&self) -> anyhow::Result<Oidc> {
        let redirect = RedirectUrl::new(format!("{}/callback", self.config.base()))?;
        Ok(CoreClient::from_provider_metadata(
            self.discover().await?,
            ClientId::new(self.config.client_id.clone()),
            self.config.client_secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(redirect))
    }
}

async fn home() -> Html<String> {
    page(
        "Hello App",
        r#"<p>An example application that signs you in through Sesame.</p>
<p><a href="/login">Sign in with Sesame</a></p>"#,
    )
}

async fn login(State(app): State<App>, headers: HeaderMap) -> Result<Response, Oops> {
    let client = app.client().await?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .set_pkce_challenge(challenge)
        .url();
    // A new visit at each sign-in: an id the browser had before (perhaps set by someone else)
    // never comes to hold the tokens. 256 random bits, like the state.
    let id = CsrfToken::new_random().into_secret();
    let mut visits = app.visits.lock().expect("not poisoned");
    if let Some(old) = visit_id(&headers) {
        visits.remove(&old);
    }
    visits.insert(
        id.clone(),
        Visit {
            pending: Some(Pending {
                state,
                nonce,
                verifier,
            }),
            id_token: None,
        },
    );
    // Lax, not Strict: the browser must send it on the way back from Sesame, a top-level
    // navigation from another site. Not Secure only because this example runs over http.
    let cookie = format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Lax");
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to(url.as_str())).into_response())
}

async fn callback(
    State(app): State<App>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, Oops> {
    let id =
        visit_id(&headers).ok_or_else(|| oops("This browser did not start a sign-in here."))?;
    // Taken out, so that an answer is accepted once.
    let pending = app
        .visits
        .lock()
        .expect("not poisoned")
        .get_mut(&id)
        .and_then(|v| v.pending.take())
        .ok_or_else(|| oops("No sign-in is waiting for an answer."))?;
    // The answer must be to the request this browser sent (an attacker's code would not be).
    if q.get("state") != Some(pending.state.secret()) {
        return Err(oops(
            "The answer is not for the sign-in this browser started (state differs).",
        ));
    }
    // Sesame names itself in the answer (RFC 9207): an application that uses more than one
    // provider must check it, or one provider could pass off another's code.
    if q.get("iss").is_some_and(|i| *i != app.config.issuer) {
        return Err(oops("The answer came from another provider (iss differs)."));
    }
    if let Some(e) = q.get("error") {
        let why = q.get("error_description").map_or("", String::as_str);
        return Err(oops(format!("Sesame did not sign you in: {e}: {why}")));
    }
    let code = q.get("code").ok_or_else(|| oops("Sesame sent no code."))?;
    let client = app.client().await?;
    let tokens = client
        .exchange_code(AuthorizationCode::new(code.clone()))?
        .set_pkce_verifier(pending.verifier)
        .request_async(&app.http)
        .await?;
    let id_token = tokens
        .id_token()
        .ok_or_else(|| oops("Sesame sent no ID token."))?;
    // Signature against the published keys, iss, aud, exp, and this sign-in's nonce.
    let claims = id_token.claims(&client.id_token_verifier(), &pending.nonce)?;
    // UserInfo with the access token; the crate checks that it is about the same subject.
    let info: CoreUserInfoClaims = client
        .user_info(
            tokens.access_token().clone(),
            Some(claims.subject().clone()),
        )?
        .request_async(&app.http)
        .await?;

    let who = rows(&[
        ("sub", Some(claims.subject().to_string())),
        (
            "preferred_username",
            claims.preferred_username().map(|u| u.to_string()),
        ),
        (
            "name",
            claims
                .name()
                .and_then(|n| n.get(None))
                .map(|n| n.to_string()),
        ),
    ]);
    let how = rows(&[
        (
            "amr",
            claims
                .auth_method_refs()
                .map(|a| a.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ")),
        ),
        ("acr", claims.auth_context_ref().map(|a| a.to_string())),
        ("auth_time", claims.auth_time().map(|t| t.to_rfc3339())),
    ]);
    let userinfo = rows(&[
        ("sub", Some(info.subject().to_string())),
        (
            "preferred_username",
            info.preferred_username().map(|u| u.to_string()),
        ),
        (
            "name",
            info.name().and_then(|n| n.get(None)).map(|n| n.to_string()),
        ),
    ]);
    if let Some(v) = app.visits.lock().expect("not poisoned").get_mut(&id) {
        v.id_token = Some(id_token.clone());
    }
    Ok(page(
        "Signed in",
        &format!(
            "<h2>Who (ID token)</h2>{who}<h2>How they signed in</h2>{how}\
             <h2>UserInfo</h2>{userinfo}<p><a href=\"/logout\">Sign out</a></p>"
        ),
    )
    .into_response())
}

async fn logout(State(app): State<App>, headers: HeaderMap) -> Result<Response, Oops> {
    let id_token = visit_id(&headers)
        .and_then(|id| app.visits.lock().expect("not poisoned").remove(&id))
        .and_then(|v| v.id_token);
    let meta = app.discover().await?;
    let forget = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0");
    let Some(end) = meta.additional_metadata().end_session_endpoint.clone() else {
        return Ok(([(header::SET_COOKIE, forget)], Redirect::to("/")).into_response());
    };
    let mut request = LogoutRequest::from(end)
        .set_client_id(ClientId::new(app.config.client_id.clone()))
        .set_post_logout_redirect_uri(PostLogoutRedirectUrl::new(format!(
            "{}/",
            app.config.base()
        ))?);
    // With the ID token Sesame signs the person out at once; without it (the app restarted,
    // say), Sesame asks them to confirm.
    if let Some(t) = &id_token {
        request = request.set_id_token_hint(t);
    }
    let to = request.http_get_url();
    Ok(([(header::SET_COOKIE, forget)], Redirect::to(to.as_str())).into_response())
}

fn visit_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .map(str::to_string)
}

/// Everything shown comes from elsewhere (even a username may hold `<`): escaped, always.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A definition list of claims; a missing one shows as "(none)".
fn rows(claims: &[(&str, Option<String>)]) -> String {
    let mut out = String::from("<dl>");
    for (name, value) in claims {
        let value = value.as_deref().map_or("(none)".into(), esc);
        out.push_str(&format!("<dt>{}</dt><dd>{value}</dd>", esc(name)));
    }
    out + "</dl>"
}

/// `body` is HTML, already escaped.
fn page(title: &str, body: &str) -> Html<String> {
    let title = esc(title);
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         </head><body><h1>{title}</h1>{body}</body></html>"
    ))
}

/// Any failure, shown as a page: the message, escaped, and a way back.
struct Oops(StatusCode, anyhow::Error);

/// The browser's request does not fit (no sign-in started, another `state`, an error).
fn oops(message: impl Into<String>) -> Oops {
    Oops(StatusCode::BAD_REQUEST, anyhow::Error::msg(message.into()))
}

/// Talking to Sesame failed, or what it sent did not verify.
impl<E: Into<anyhow::Error>> From<E> for Oops {
    fn from(e: E) -> Self {
        Oops(StatusCode::BAD_GATEWAY, e.into())
    }
}

impl IntoResponse for Oops {
    fn into_response(self) -> Response {
        let body = format!(
            "<p>{}</p><p><a href=\"/\">Start again</a></p>",
            esc(&format!("{:#}", self.1))
        );
        (self.0, page("Sign-in did not work", &body)).into_response()
    }
}
