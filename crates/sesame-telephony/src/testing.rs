//! A local stand-in for a Twilio-compatible provider, for tests (feature `testing`).
//!
//! [`FakeTwilio`] serves the provider's side of the REST API on `127.0.0.1:0` (creating
//! messages and calls, with Twilio's checks and error format) and plays the provider's side
//! of the webhooks: it answers a recorded call by requesting its TwiML, presses keys in each
//! `<Gather>`, and posts status callbacks, every request signed with `X-Twilio-Signature`
//! exactly as the provider signs it.
//!
//! [`Kannel`] runs a real Kannel (bearerbox, smsbox, and fakesmsc as the phone) on loopback
//! with `scripts/telephony/kannel.sh`, which installs it when it is missing.

use crate::twilio::{signature, TwilioConfig};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine as _;
use rand::Rng as _;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use url::Url;

/// The provider's API version, in every URL and webhook.
const API_VERSION: &str = "2010-04-01";

/// One message or call the fake accepted: its id and the form fields as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderRequest {
    /// `SM…` for a message, `CA…` for a call.
    pub sid: String,
    /// The form fields, in the order they were sent.
    pub fields: Vec<(String, String)>,
}

impl ProviderRequest {
    /// The first value of field `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn required(&self, name: &str) -> Result<&str, FakeError> {
        self.field(name)
            .ok_or_else(|| FakeError(format!("{} has no {name}", self.sid)))
    }
}

/// Which recorded message or call: by position (0 = first) or by its sid.
#[derive(Debug, Clone, Copy)]
pub enum Pick<'a> {
    Index(usize),
    Sid(&'a str),
}

impl From<usize> for Pick<'_> {
    fn from(index: usize) -> Self {
        Pick::Index(index)
    }
}

impl<'a> From<&'a str> for Pick<'a> {
    fn from(sid: &'a str) -> Self {
        Pick::Sid(sid)
    }
}

/// A webhook request the fake could not make, or that Sesame did not answer with 2xx.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fake provider: {0}")]
pub struct FakeError(String);

/// Sesame's answer to one webhook request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookReply {
    pub status: u16,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    pub body: String,
}

#[derive(Default)]
struct Recorded {
    messages: Vec<ProviderRequest>,
    calls: Vec<ProviderRequest>,
    failures: VecDeque<u16>,
    requests: usize,
}

struct Account {
    sid: String,
    token: String,
    recorded: Mutex<Recorded>,
}

impl Account {
    fn recorded(&self) -> MutexGuard<'_, Recorded> {
        // A test that panicked while holding the lock has already failed; its records are
        // still the best evidence.
        self.recorded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A Twilio-compatible provider on `127.0.0.1:0`. Stops when dropped.
pub struct FakeTwilio {
    api_base: String,
    account: Arc<Account>,
    http: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeTwilio {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeTwilio {
    /// Starts the fake with a random account SID and auth token.
    pub async fn start() -> std::io::Result<Self> {
        let account = Arc::new(Account {
            sid: format!("AC{}", random_hex()),
            token: random_hex(),
            recorded: Mutex::default(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let api_base = format!("http://{}", listener.local_addr()?);
        let router = Router::new()
            .route("/2010-04-01/Accounts/{sid}/{resource}", post(create))
            .with_state(account.clone());
        let server = tokio::spawn(async move {
            // Ends only when aborted (on drop) or if the listener fails.
            let _ = axum::serve(listener, router).await;
        });
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(std::io::Error::other)?;
        Ok(FakeTwilio {
            api_base,
            account,
            http,
            server,
        })
    }

    /// The fake's API base URL (`http://127.0.0.1:PORT`).
    pub fn api_base(&self) -> &str {
        &self.api_base
    }

    pub fn account_sid(&self) -> &str {
        &self.account.sid
    }

    pub fn auth_token(&self) -> &str {
        &self.account.token
    }

    /// A configuration that sends to this fake and has webhooks go to `webhook_base`.
    pub fn config_for(&self, webhook_base: &str) -> TwilioConfig {
        TwilioConfig {
            api_base: self.api_base.clone(),
            account_sid: self.account.sid.clone(),
            auth_token: self.account.token.clone(),
            // Twilio's own "valid test number" for From.
            from: "+15005550006".to_owned(),
            webhook_base: webhook_base.to_owned(),
            timeout_secs: 5,
            attempts: 2,
        }
    }

    /// Messages accepted so far, oldest first.
    pub fn messages(&self) -> Vec<ProviderRequest> {
        self.account.recorded().messages.clone()
    }

    /// Calls accepted so far, oldest first.
    pub fn calls(&self) -> Vec<ProviderRequest> {
        self.account.recorded().calls.clone()
    }

    /// Every API request received, refused and failed ones included (to count retries).
    pub fn requests_received(&self) -> usize {
        self.account.recorded().requests
    }

    /// Answers the next API request with `status` and a provider error body, whatever it is.
    /// Calls queue up: two calls fail the next two requests.
    pub fn fail_next(&self, status: u16) {
        self.account.recorded().failures.push_back(status);
    }

    /// Plays the phone for a recorded call: answers it (requests its `Url`), then for each
    /// entry of `digits` presses those keys in the `<Gather>` of the latest TwiML (posts
    /// `Digits` to its action). An empty entry is a person who presses nothing: like the
    /// provider, the fake then makes no request (the TwiML falls through to its goodbye) and
    /// stops. Returns every TwiML document received, in order.
    pub async fn answer_call(
        &self,
        call: impl Into<Pick<'_>>,
        digits: &[&str],
    ) -> Result<Vec<String>, FakeError> {
        let call = self.find_call(call.into())?;
        let voice_url = call.required("Url")?.to_owned();
        if call.field("Method").is_some_and(|m| m != "POST") {
            return Err(FakeError("only Method=POST is supported".into()));
        }
        let mut params = call_params(&self.account.sid, &call, "in-progress")?;
        let mut documents = vec![self.post_expecting_twiml(&voice_url, &params).await?];
        let mut current_url = voice_url;
        for keys in digits {
            if keys.is_empty() {
                break;
            }
            let latest = documents.last().map_or("", String::as_str);
            let gather = gather_attributes(latest).ok_or_else(|| {
                FakeError(format!(
                    "keys {keys:?} pressed but the TwiML has no <Gather>"
                ))
            })?;
            if gather
                .iter()
                .any(|(name, value)| name == "method" && !value.eq_ignore_ascii_case("POST"))
            {
                return Err(FakeError(
                    "only <Gather method=\"POST\"> is supported".into(),
                ));
            }
            // Without an action the provider posts to the document's own URL.
            let action = match gather.iter().find(|(name, _)| name == "action") {
                Some((_, action)) => Url::parse(&current_url)
                    .and_then(|base| base.join(action))
                    .map_err(|e| FakeError(format!("bad Gather action {action:?}: {e}")))?
                    .to_string(),
                None => current_url.clone(),
            };
            params.retain(|(name, _)| name != "Digits");
            params.push(("Digits".to_owned(), (*keys).to_owned()));
            documents.push(self.post_expecting_twiml(&action, &params).await?);
            current_url = action;
        }
        Ok(documents)
    }

    /// Posts the call's status callback with `CallStatus=status` (`completed`, `no-answer`,
    /// `busy`, `failed`, `canceled`). Err unless Sesame answers 2xx.
    pub async fn status_callback(
        &self,
        call: impl Into<Pick<'_>>,
        status: &str,
    ) -> Result<WebhookReply, FakeError> {
        let call = self.find_call(call.into())?;
        let url = call.required("StatusCallback")?.to_owned();
        let mut params = call_params(&self.account.sid, &call, status)?;
        params.push(("CallDuration".to_owned(), "0".to_owned()));
        success(self.post_signed(&url, &params).await?)
    }

    /// Posts the message's status callback with `MessageStatus=status` (`sent`, `delivered`,
    /// `undelivered`, `failed`, …); `undelivered` carries `ErrorCode=30003` (handset
    /// unreachable) and `failed` `ErrorCode=30008`, as the provider would. Err unless Sesame
    /// answers 2xx.
    pub async fn message_callback(
        &self,
        message: impl Into<Pick<'_>>,
        status: &str,
    ) -> Result<WebhookReply, FakeError> {
        let message = {
            let recorded = self.account.recorded();
            pick(&recorded.messages, message.into())?
        };
        let url = message.required("StatusCallback")?.to_owned();
        let mut params = vec![
            ("AccountSid", self.account.sid.as_str()),
            ("ApiVersion", API_VERSION),
            ("From", message.required("From")?),
            ("MessageSid", message.sid.as_str()),
            ("MessageStatus", status),
            ("SmsSid", message.sid.as_str()),
            ("SmsStatus", status),
            ("To", message.required("To")?),
        ];
        match status {
            "undelivered" => params.push(("ErrorCode", "30003")),
            "failed" => params.push(("ErrorCode", "30008")),
            _ => {}
        }
        let params = owned(&params);
        success(self.post_signed(&url, &params).await?)
    }

    /// Posts `params` to `url` signed with the account's token, as the provider does.
    pub async fn post_signed(
        &self,
        url: &str,
        params: &[(String, String)],
    ) -> Result<WebhookReply, FakeError> {
        let signed = signature(url, params, &self.account.token);
        self.post_with_signature(url, params, Some(&signed)).await
    }

    /// Posts `params` to `url` with any `X-Twilio-Signature` (or none): for tests that a
    /// forged or tampered request is refused.
    pub async fn post_with_signature(
        &self,
        url: &str,
        params: &[(String, String)],
        signature: Option<&str>,
    ) -> Result<WebhookReply, FakeError> {
        let mut request = self
            .http
            .post(url)
            .header(header::USER_AGENT, "TwilioProxy/1.1")
            .form(params);
        if let Some(signature) = signature {
            request = request.header("X-Twilio-Signature", signature);
        }
        let response = request
            .send()
            .await
            .map_err(|e| FakeError(format!("POST {url}: {e}")))?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response
            .text()
            .await
            .map_err(|e| FakeError(format!("POST {url}: reading the answer: {e}")))?;
        Ok(WebhookReply {
            status,
            content_type,
            body,
        })
    }

    async fn post_expecting_twiml(
        &self,
        url: &str,
        params: &[(String, String)],
    ) -> Result<String, FakeError> {
        let reply = success(self.post_signed(url, params).await?)?;
        // The provider reads TwiML only from an XML answer.
        let is_xml = reply
            .content_type
            .as_deref()
            .is_some_and(|t| t.starts_with("text/xml") || t.starts_with("application/xml"));
        if !is_xml || !reply.body.contains("<Response") {
            return Err(FakeError(format!(
                "{url} did not answer TwiML (Content-Type {:?}): {}",
                reply.content_type, reply.body
            )));
        }
        Ok(reply.body)
    }

    fn find_call(&self, which: Pick<'_>) -> Result<ProviderRequest, FakeError> {
        pick(&self.account.recorded().calls, which)
    }
}

fn pick(records: &[ProviderRequest], which: Pick<'_>) -> Result<ProviderRequest, FakeError> {
    let found = match which {
        Pick::Index(index) => records.get(index),
        Pick::Sid(sid) => records.iter().find(|r| r.sid == sid),
    };
    found
        .cloned()
        .ok_or_else(|| FakeError(format!("no such request: {which:?}")))
}

fn success(reply: WebhookReply) -> Result<WebhookReply, FakeError> {
    if (200..300).contains(&reply.status) {
        Ok(reply)
    } else {
        Err(FakeError(format!(
            "webhook answered HTTP {}: {}",
            reply.status, reply.body
        )))
    }
}

/// The parameters the provider sends with every request about a call.
fn call_params(
    account_sid: &str,
    call: &ProviderRequest,
    call_status: &str,
) -> Result<Vec<(String, String)>, FakeError> {
    let to = call.required("To")?;
    let from = call.required("From")?;
    Ok(owned(&[
        ("AccountSid", account_sid),
        ("ApiVersion", API_VERSION),
        ("CallSid", call.sid.as_str()),
        ("CallStatus", call_status),
        ("Called", to),
        ("Caller", from),
        ("Direction", "outbound-api"),
        ("From", from),
        ("To", to),
    ]))
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

fn random_hex() -> String {
    let bytes: [u8; 16] = rand::thread_rng().gen();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The attributes of the first `<Gather …>` of a TwiML document, unescaped. A quick reader,
/// not an XML parser: enough for the documents Sesame writes.
fn gather_attributes(twiml: &str) -> Option<Vec<(String, String)>> {
    let start = twiml.find("<Gather")? + "<Gather".len();
    let tag = &twiml[start..];
    let tag = &tag[..tag.find('>')?];
    let tag = tag.trim_end_matches('/');
    let mut attributes = Vec::new();
    let mut rest = tag.trim_start();
    while !rest.is_empty() {
        let equals = rest.find('=')?;
        let name = rest[..equals].trim().to_owned();
        let after = rest[equals + 1..].trim_start();
        let quote = after.chars().next().filter(|c| matches!(c, '"' | '\''))?;
        let value_end = after[1..].find(quote)? + 1;
        attributes.push((name, xml_unescape(&after[1..value_end])));
        rest = after[value_end + 1..].trim_start();
    }
    Some(attributes)
}

fn xml_unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// `POST /2010-04-01/Accounts/{sid}/Messages.json` and `…/Calls.json`.
async fn create(
    State(account): State<Arc<Account>>,
    Path((sid, resource)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let failure = {
        let mut recorded = account.recorded();
        recorded.requests += 1;
        recorded.failures.pop_front()
    };
    if let Some(status) = failure {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let message = status.canonical_reason().unwrap_or("Error");
        return provider_error(status, 20000 + u32::from(status.as_u16()), message);
    }
    if !is_authorized(&headers, &account) {
        return provider_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    if sid != account.sid || !matches!(resource.as_str(), "Messages.json" | "Calls.json") {
        return provider_error(
            StatusCode::NOT_FOUND,
            20404,
            "The requested resource was not found",
        );
    }
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return provider_error(
            StatusCode::BAD_REQUEST,
            20001,
            "Content-Type must be application/x-www-form-urlencoded",
        );
    }
    let fields: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let request = ProviderRequest {
        sid: String::new(),
        fields,
    };
    let is_message = resource == "Messages.json";
    let present = |name: &str| request.field(name).is_some_and(|v| !v.is_empty());
    let missing = if !present("To") {
        Some((21604, "A 'To' phone number is required."))
    } else if !present("From") {
        Some((21603, "A 'From' phone number is required."))
    } else if is_message && !present("Body") {
        Some((21602, "Message body is required."))
    } else if !is_message && !present("Url") {
        Some((21205, "Url parameter is required."))
    } else {
        None
    };
    if let Some((code, message)) = missing {
        return provider_error(StatusCode::BAD_REQUEST, code, message);
    }
    if !request.field("To").is_some_and(is_e164) {
        return provider_error(StatusCode::BAD_REQUEST, 21211, "Invalid 'To' Phone Number");
    }
    let prefix = if is_message { "SM" } else { "CA" };
    let request = ProviderRequest {
        sid: format!("{prefix}{}", random_hex()),
        ..request
    };
    let reply = serde_json::json!({
        "sid": request.sid,
        "account_sid": account.sid,
        "to": request.field("To"),
        "from": request.field("From"),
        "status": "queued",
        "api_version": API_VERSION,
        "uri": format!("/{API_VERSION}/Accounts/{}/{}/{}.json",
            account.sid, resource.trim_end_matches(".json"), request.sid),
    });
    {
        let mut recorded = account.recorded();
        if is_message {
            recorded.messages.push(request);
        } else {
            recorded.calls.push(request);
        }
    }
    (StatusCode::CREATED, Json(reply)).into_response()
}

fn is_authorized(headers: &HeaderMap, account: &Account) -> bool {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", account.sid, account.token))
    );
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == expected)
}

/// `+` and 2 to 15 digits, the first not 0.
fn is_e164(number: &str) -> bool {
    number.strip_prefix('+').is_some_and(|digits| {
        (2..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0')
    })
}

fn provider_error(status: StatusCode, code: u32, message: &str) -> Response {
    let body = serde_json::json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status.as_u16(),
    });
    (status, Json(body)).into_response()
}

/// Where `scripts/telephony/kannel.sh` is, from this crate.
fn script() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/telephony/kannel.sh")
}

/// A running Kannel in its own directory; stopped when dropped, also when a test panics.
pub struct Kannel {
    workdir: tempfile::TempDir,
    ports: std::collections::HashMap<String, String>,
}

impl Kannel {
    pub fn start() -> Kannel {
        let has_kannel = std::path::Path::new("/usr/sbin/bearerbox").exists();
        let has_apt = std::process::Command::new("apt-get")
            .arg("--version")
            .output()
            .is_ok();
        assert!(
            has_kannel || has_apt,
            "these tests need Kannel (Debian packages kannel and kannel-extras): \
             bearerbox is not installed and apt-get is not available to install it"
        );
        let workdir = tempfile::Builder::new()
            .prefix("sesame-kannel-")
            .tempdir()
            .expect("a temporary directory");
        let output = std::process::Command::new("bash")
            .arg(script())
            .arg("start")
            .env("KANNEL_WORKDIR", workdir.path())
            .output()
            .expect("run scripts/telephony/kannel.sh");
        // Built before the assertion so that a failed start is still stopped.
        let mut kannel = Kannel {
            workdir,
            ports: std::collections::HashMap::new(),
        };
        assert!(
            output.status.success(),
            "kannel.sh start failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let env = std::fs::read_to_string(kannel.workdir.path().join("ports.env"))
            .expect("kannel.sh writes ports.env");
        kannel.ports = env
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        kannel
    }

    pub fn get(&self, name: &str) -> &str {
        self.ports
            .get(name)
            .unwrap_or_else(|| panic!("ports.env has no {name}"))
    }

    pub fn config(&self, dlr_url: Option<String>) -> crate::kannel::KannelConfig {
        crate::kannel::KannelConfig {
            sendsms_url: self.get("SENDSMS_URL").to_owned(),
            username: self.get("SMS_USER").to_owned(),
            password: self.get("SMS_PASS").to_owned(),
            from: "Sesame".to_owned(),
            dlr_url,
            timeout_secs: 5,
            attempts: 2,
        }
    }

    pub fn phone_log(&self) -> String {
        std::fs::read_to_string(self.get("PHONE_LOG")).unwrap_or_default()
    }
}

impl Drop for Kannel {
    fn drop(&mut self) {
        let stopped = std::process::Command::new("bash")
            .arg(script())
            .arg("stop")
            .env("KANNEL_WORKDIR", self.workdir.path())
            .output();
        if !matches!(&stopped, Ok(output) if output.status.success()) {
            eprintln!("kannel.sh stop failed: {stopped:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_gather_attributes() {
        let twiml = crate::twilio::voice_twiml("Hi", "https://x.example/g?stage=first&a=1", 7);
        let attributes = gather_attributes(&twiml).expect("a Gather");
        assert!(attributes.contains(&(
            "action".into(),
            "https://x.example/g?stage=first&a=1".into()
        )));
        assert!(attributes.contains(&("finishOnKey".into(), String::new())));
        assert!(attributes.contains(&("timeout".into(), "7".into())));
        assert_eq!(gather_attributes("<Response><Say>x</Say></Response>"), None);
        assert_eq!(
            gather_attributes("<Response><Gather action='a'/></Response>"),
            Some(vec![("action".into(), "a".into())])
        );
    }

    #[test]
    fn e164_numbers() {
        assert!(is_e164("+15551234567"));
        assert!(!is_e164("15551234567"));
        assert!(!is_e164("+0555"));
        assert!(!is_e164("+1555123456789012"));
        assert!(!is_e164("+1 555"));
    }
}
