//! Text messages and calls through a Twilio-compatible HTTP provider, and the pure pieces the
//! server needs to answer the provider's webhooks.
//!
//! Sending is one form POST (`Messages.json` or `Calls.json`). Everything afterwards arrives
//! as signed webhooks at URLs under `webhook_base` that carry Sesame's `reference`:
//!
//! | URL (POST, form-encoded, `X-Twilio-Signature`) | Server answers with |
//! |---|---|
//! | [`TwilioConfig::voice_url`] `…/telephony/twilio/voice/{reference}` | [`voice_twiml`] whose action is [`TwilioConfig::gather_url`] with stage [`STAGE_FIRST`] |
//! | [`TwilioConfig::gather_url`] `…/telephony/twilio/gather/{reference}?stage=…` | per [`gather_step`] (`Digits`): [`confirm_fraud_twiml`] (action: stage [`STAGE_FRAUD`]) or [`say_and_hangup_twiml`] |
//! | [`TwilioConfig::call_status_url`] `…/telephony/twilio/call-status/{reference}` | empty 200; [`call_status_outcome`] (`CallStatus`) |
//! | [`TwilioConfig::message_status_url`] `…/telephony/twilio/message-status/{reference}` | empty 200; [`message_status`] (`MessageStatus`, `ErrorCode`) |
//!
//! Every one of them must pass [`verify_signature`] first, computed over the public URL
//! (`webhook_base` + the request's path and query as received), never over the `Host` header.

use crate::http::{self, clean_answer, request_error, Attempt};
use crate::{
    Call, CallOutcome, DeliveryStatus, GatewayError, Reports, SmsGateway, TextMessage, VoiceGateway,
};
use async_trait::async_trait;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};
use sha1::Sha1;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;
use url::Url;

/// Stage of the first key question ("press # to approve, 0 to report fraud").
pub const STAGE_FIRST: &str = "first";
/// Stage of the fraud confirmation ("press # to confirm the report").
pub const STAGE_FRAUD: &str = "fraud";

/// Longest ring time the provider accepts (`Timeout` of a call).
const MAX_RING_SECS: u64 = 600;

/// Characters escaped in a reference used as a URL path segment (Sesame's references are
/// letters, digits, `-` and `_`; anything else is escaped rather than trusted).
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_');

/// Account and URLs of a Twilio-compatible provider.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioConfig {
    /// The provider's REST API (`https://api.twilio.com`, or a compatible provider's).
    #[serde(default = "default_api_base")]
    pub api_base: String,
    /// Account SID (`AC…`): user name of the API and part of its URLs.
    pub account_sid: String,
    /// Auth token: password of the API and key of the webhook signatures.
    pub auth_token: String,
    /// Caller id and sender (E.164, a number of the account).
    pub from: String,
    /// Sesame's public base URL as the provider reaches it (`https://login.example.com`);
    /// the webhook URLs are built on it and signatures are checked against it.
    pub webhook_base: String,
    /// Longest wait for the provider's answer, retries included.
    #[serde(default = "http::default_timeout_secs")]
    pub timeout_secs: u64,
    /// Requests per message or call at most (1 = no retry).
    #[serde(default = "http::default_attempts")]
    pub attempts: u32,
}

fn default_api_base() -> String {
    "https://api.twilio.com".to_owned()
}

impl fmt::Debug for TwilioConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioConfig")
            .field("api_base", &self.api_base)
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"[redacted]")
            .field("from", &self.from)
            .field("webhook_base", &self.webhook_base)
            .field("timeout_secs", &self.timeout_secs)
            .field("attempts", &self.attempts)
            .finish()
    }
}

impl TwilioConfig {
    /// Where the provider asks for a call's TwiML once it is answered.
    pub fn voice_url(&self, reference: &str) -> String {
        self.webhook_url("voice", reference)
    }

    /// Where the provider posts the key pressed in a `<Gather>` of stage
    /// [`STAGE_FIRST`] or [`STAGE_FRAUD`]. The stage is in the query, so the signature covers it.
    pub fn gather_url(&self, reference: &str, stage: &str) -> String {
        let stage: String = form_urlencoded::byte_serialize(stage.as_bytes()).collect();
        format!("{}?stage={stage}", self.webhook_url("gather", reference))
    }

    /// Where the provider reports how a call ended.
    pub fn call_status_url(&self, reference: &str) -> String {
        self.webhook_url("call-status", reference)
    }

    /// Where the provider reports what became of a text message.
    pub fn message_status_url(&self, reference: &str) -> String {
        self.webhook_url("message-status", reference)
    }

    fn webhook_url(&self, kind: &str, reference: &str) -> String {
        format!(
            "{}/telephony/twilio/{kind}/{}",
            self.webhook_base.trim_end_matches('/'),
            utf8_percent_encode(reference, PATH_SEGMENT)
        )
    }
}

/// A [`TwilioConfig`] that cannot work; found when the gateway is built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid [twilio] configuration: {0}")]
pub struct ConfigError(String);

/// What the SMS and voice gateways share: the account, the HTTP client and the retry rules.
struct Client {
    config: TwilioConfig,
    timeout: Duration,
    http: reqwest::Client,
}

impl Client {
    fn new(config: TwilioConfig) -> Result<Self, ConfigError> {
        for (name, value) in [
            ("api_base", &config.api_base),
            ("webhook_base", &config.webhook_base),
        ] {
            let url = Url::parse(value).map_err(|e| ConfigError(format!("{name}: {e}")))?;
            if !matches!(url.scheme(), "http" | "https")
                || url.query().is_some()
                || url.fragment().is_some()
            {
                return Err(ConfigError(format!(
                    "{name} must be an http or https URL without query or fragment"
                )));
            }
        }
        // The SID is a path segment of every API URL.
        if config.account_sid.is_empty()
            || !config
                .account_sid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric())
        {
            return Err(ConfigError("account_sid must be letters and digits".into()));
        }
        if config.auth_token.is_empty() {
            return Err(ConfigError("auth_token is empty".into()));
        }
        if config.from.trim().is_empty() {
            return Err(ConfigError("from is empty".into()));
        }
        if config.timeout_secs == 0 {
            return Err(ConfigError("timeout_secs must be at least 1".into()));
        }
        if config.attempts == 0 {
            return Err(ConfigError("attempts must be at least 1".into()));
        }
        let timeout = Duration::from_secs(config.timeout_secs);
        // No redirect is followed: it would send the account's credentials elsewhere.
        let http = http::client(timeout).map_err(ConfigError)?;
        Ok(Client {
            config,
            timeout,
            http,
        })
    }

    fn resource_url(&self, resource: &str) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}/{resource}",
            self.config.api_base.trim_end_matches('/'),
            self.config.account_sid
        )
    }

    /// Creates a resource (`Messages.json`, `Calls.json`), within one deadline for all attempts.
    /// `private` are values that must not reach the log even if the provider repeats them.
    async fn create(
        &self,
        resource: &str,
        form: &[(&str, &str)],
        reference: &str,
        private: &[&str],
    ) -> Result<(), GatewayError> {
        let url = self.resource_url(resource);
        let sid = http::with_retries(
            "twilio",
            reference,
            self.config.attempts,
            self.timeout,
            || self.create_once(&url, form, private),
        )
        .await?;
        tracing::debug!(gateway = "twilio", reference, sid, resource, "accepted");
        Ok(())
    }

    /// One POST; the provider's id of what it created.
    async fn create_once(
        &self,
        url: &str,
        form: &[(&str, &str)],
        private: &[&str],
    ) -> Result<String, Attempt> {
        let response = self
            .http
            .post(url)
            .basic_auth(&self.config.account_sid, Some(&self.config.auth_token))
            .form(form)
            .send()
            .await
            .map_err(request_error)?;
        let status = response.status();
        let answer = response.text().await.unwrap_or_default();
        let reply: ProviderReply = serde_json::from_str(&answer).unwrap_or_default();
        if status.is_success() {
            return Ok(reply.sid.unwrap_or_default());
        }
        let detail = match (reply.code, reply.message) {
            (Some(code), Some(message)) => format!("error {code}: {message}"),
            (None, Some(message)) => message,
            (code, None) => code.map_or_else(|| answer.clone(), |c| format!("error {c}")),
        };
        let error = GatewayError::Refused(format!(
            "HTTP {}: {}",
            status.as_u16(),
            clean_answer(&detail, private)
        ));
        // 429: the account's rate limit; 5xx: the provider's own trouble. Both may pass.
        if status.is_server_error() || status.as_u16() == 429 {
            Err(Attempt::Retryable(error))
        } else {
            Err(Attempt::Final(error))
        }
    }
}

/// The parts of the provider's JSON answer that matter: the new resource's id, or an error.
#[derive(Default, Deserialize)]
struct ProviderReply {
    sid: Option<String>,
    code: Option<u64>,
    message: Option<String>,
}

/// The `twilio` SMS gateway. Delivery reports arrive at [`TwilioConfig::message_status_url`].
pub struct TwilioSms {
    client: Client,
}

impl TwilioSms {
    pub fn new(config: TwilioConfig) -> Result<Self, ConfigError> {
        Ok(TwilioSms {
            client: Client::new(config)?,
        })
    }
}

impl fmt::Debug for TwilioSms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioSms")
            .field("config", &self.client.config)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl SmsGateway for TwilioSms {
    fn name(&self) -> &'static str {
        "twilio"
    }

    async fn send(&self, message: &TextMessage) -> Result<(), GatewayError> {
        let config = &self.client.config;
        let status_callback = config.message_status_url(&message.reference);
        let form = [
            ("To", message.to.as_str()),
            ("From", config.from.as_str()),
            ("Body", message.body.as_str()),
            ("StatusCallback", status_callback.as_str()),
        ];
        self.client
            .create(
                "Messages.json",
                &form,
                &message.reference,
                &[&message.to, &message.body],
            )
            .await
    }
}

/// The `twilio` voice gateway.
///
/// [`VoiceGateway::call`] only places the call; its `reports` argument is not used. The
/// outcome arrives later as webhooks (the TwiML request, the key pressed, the final call
/// status) that the server verifies and turns into exactly one
/// [`Reports::call_ended`](crate::Reports::call_ended) with the helpers of this module.
pub struct TwilioVoice {
    client: Client,
}

impl TwilioVoice {
    pub fn new(config: TwilioConfig) -> Result<Self, ConfigError> {
        Ok(TwilioVoice {
            client: Client::new(config)?,
        })
    }
}

impl fmt::Debug for TwilioVoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioVoice")
            .field("config", &self.client.config)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl VoiceGateway for TwilioVoice {
    fn name(&self) -> &'static str {
        "twilio"
    }

    async fn call(&self, call: &Call, _reports: Arc<dyn Reports>) -> Result<(), GatewayError> {
        let config = &self.client.config;
        let send_digits = match &call.extension {
            Some(extension) => Some(send_digits(extension).ok_or_else(|| {
                GatewayError::Refused("the extension has characters a phone cannot dial".into())
            })?),
            None => None,
        };
        let voice_url = config.voice_url(&call.reference);
        let status_callback = config.call_status_url(&call.reference);
        let ring_secs = call
            .ring_timeout
            .as_secs()
            .clamp(1, MAX_RING_SECS)
            .to_string();
        let mut form = vec![
            ("To", call.to.as_str()),
            ("From", config.from.as_str()),
            ("Url", voice_url.as_str()),
            ("Method", "POST"),
            ("StatusCallback", status_callback.as_str()),
            ("StatusCallbackMethod", "POST"),
            // Only the final status matters: busy, no-answer, failed, canceled or completed.
            ("StatusCallbackEvent", "completed"),
            ("Timeout", ring_secs.as_str()),
        ];
        if let Some(digits) = &send_digits {
            form.push(("SendDigits", digits.as_str()));
        }
        self.client
            .create("Calls.json", &form, &call.reference, &[&call.to])
            .await
    }
}

/// `SendDigits` for an extension: a one-second pause (`ww`, half a second each) so the
/// switchboard is listening, then the digits. `None` if it holds something not dialable.
fn send_digits(extension: &str) -> Option<String> {
    let dialable = !extension.is_empty()
        && extension.len() <= 32
        && extension
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'*' | b'#' | b'w'));
    dialable.then(|| format!("ww{extension}"))
}

/// `X-Twilio-Signature` of a form-encoded webhook: base64 of HMAC-SHA1, keyed with the auth
/// token, over the full URL followed by every parameter (sorted by name, then value) as
/// name + value with no separator.
pub fn signature(url: &str, params: &[(String, String)], auth_token: &str) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(auth_token.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Whether `header_value` (the request's `X-Twilio-Signature`) signs this request. `url` is
/// the public URL the provider requested; the provider's own libraries also accept it with the
/// scheme's default port written out or left off, and so does this.
pub fn verify_signature(
    url: &str,
    params: &[(String, String)],
    header_value: Option<&str>,
    auth_token: &str,
) -> bool {
    let Some(header_value) = header_value else {
        return false;
    };
    if auth_token.is_empty() {
        return false;
    }
    let mut valid = false;
    for candidate in std::iter::once(url.to_owned()).chain(default_port_variant(url)) {
        let expected = signature(&candidate, params, auth_token);
        // Not short-circuited: every candidate costs the same whatever the header.
        valid |= bool::from(expected.as_bytes().ct_eq(header_value.as_bytes()));
    }
    valid
}

/// `url` with the default port of its scheme removed if written out (`https://h:443/p` →
/// `https://h/p`), or added if absent (`https://h/p` → `https://h:443/p`). `None` for another
/// port or scheme.
fn default_port_variant(url: &str) -> Option<String> {
    let lower = url.get(..8)?.to_ascii_lowercase();
    let (prefix_len, default_port) = if lower.starts_with("https://") {
        (8, "443")
    } else if lower.starts_with("http://") {
        (7, "80")
    } else {
        return None;
    };
    let rest = &url[prefix_len..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    let host_start = authority.rfind('@').map_or(0, |at| at + 1);
    let host_port = &authority[host_start..];
    // The port follows the last ':' unless that ':' is inside an IPv6 literal.
    let port_colon = host_port
        .rfind(':')
        .filter(|&colon| !host_port[colon..].contains(']'));
    let authority_end = prefix_len + authority_len;
    match port_colon {
        Some(colon) if &host_port[colon + 1..] == default_port => {
            let colon_at = prefix_len + host_start + colon;
            Some(format!("{}{}", &url[..colon_at], &url[authority_end..]))
        }
        Some(_) => None,
        None => Some(format!(
            "{}:{default_port}{}",
            &url[..authority_end],
            &url[authority_end..]
        )),
    }
}

/// TwiML for an answered call: say the prompt and wait `key_timeout_secs` for one key, which
/// is posted to `action_url` as `Digits`. `finishOnKey=""` makes `#` an ordinary key, so "#"
/// (approve) and "0" (report fraud) both reach the action; no key falls through to goodbye.
pub fn voice_twiml(prompt: &str, action_url: &str, key_timeout_secs: u64) -> String {
    gather_twiml(prompt, action_url, key_timeout_secs)
}

/// TwiML after "0": ask for `#` to confirm the fraud report (posted to `action_url`, which
/// should carry stage [`STAGE_FRAUD`]).
pub fn confirm_fraud_twiml(action_url: &str, key_timeout_secs: u64) -> String {
    gather_twiml(
        "You pressed zero to report this sign-in as fraud. Press pound to confirm.",
        action_url,
        key_timeout_secs,
    )
}

/// TwiML that says `text` and ends the call (after the last key, whatever it was).
pub fn say_and_hangup_twiml(text: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><Response><Say>{}</Say><Hangup/></Response>"#,
        xml_escape(text)
    )
}

fn gather_twiml(prompt: &str, action_url: &str, key_timeout_secs: u64) -> String {
    format!(
        concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?><Response>"#,
            r#"<Gather input="dtmf" finishOnKey="" numDigits="1" timeout="{timeout}" method="POST" action="{action}">"#,
            r#"<Say>{prompt}</Say></Gather>"#,
            r#"<Say>No key was pressed. Goodbye.</Say><Hangup/></Response>"#
        ),
        timeout = key_timeout_secs.max(1),
        action = xml_escape(action_url),
        prompt = xml_escape(prompt),
    )
}

/// Text for an XML element or attribute. Characters XML 1.0 cannot carry at all (most
/// control characters) become spaces: the prompt comes from configuration, and one stray
/// character must not make the provider reject the whole document.
fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c.is_control() || matches!(c, '\u{FFFE}' | '\u{FFFF}') => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// What a key pressed in a `<Gather>` means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatherStep {
    /// `#` at the first question: report [`CallOutcome::Approved`], say goodbye.
    Approve,
    /// `0` at the first question: answer with [`confirm_fraud_twiml`].
    AskFraudConfirm,
    /// `#` at the fraud confirmation: report [`CallOutcome::Fraud`].
    Fraud,
    /// Anything else (no key, another key, an unknown stage): report [`CallOutcome::NoKey`].
    NoKey,
}

/// The meaning of `digits` (the `Digits` parameter) at `stage` (the `stage` query parameter
/// of the action URL: [`STAGE_FIRST`] or [`STAGE_FRAUD`]).
pub fn gather_step(stage: &str, digits: &str) -> GatherStep {
    match (stage, digits) {
        (STAGE_FIRST, "#") => GatherStep::Approve,
        (STAGE_FIRST, "0") => GatherStep::AskFraudConfirm,
        (STAGE_FRAUD, "#") => GatherStep::Fraud,
        _ => GatherStep::NoKey,
    }
}

/// The outcome a final call status (`CallStatus` of the status callback) decides, if any.
/// `completed` decides nothing: the call was answered and the key (or its absence, which the
/// server treats as [`CallOutcome::NoKey`]) decides.
pub fn call_status_outcome(call_status: &str) -> Option<CallOutcome> {
    match call_status {
        "no-answer" | "busy" => Some(CallOutcome::NotAnswered),
        "canceled" => Some(CallOutcome::Rejected),
        "failed" => Some(CallOutcome::Failed(
            "the provider could not place the call".to_owned(),
        )),
        _ => None,
    }
}

/// The delivery status a message status callback reports (`MessageStatus`, `ErrorCode`), if
/// it is one Sesame records.
pub fn message_status(status: &str, error_code: Option<&str>) -> Option<DeliveryStatus> {
    match status {
        "queued" | "accepted" | "scheduled" | "sending" | "sent" => Some(DeliveryStatus::Sent),
        "delivered" | "read" => Some(DeliveryStatus::Delivered),
        "undelivered" | "failed" | "canceled" => {
            // The code goes to the store and the admin page: keep only what a code looks like.
            let reason = match error_code.filter(|c| is_error_code(c)) {
                Some(code) => format!("{status} (error {code})"),
                None => status.to_owned(),
            };
            Some(DeliveryStatus::Failed(reason))
        }
        _ => None,
    }
}

fn is_error_code(code: &str) -> bool {
    !code.is_empty() && code.len() <= 10 && code.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn published_params() -> Vec<(String, String)> {
        // In the order of the form body on Twilio's page, to show sorting matters.
        pairs(&[
            ("To", "+18005551212"),
            ("CallSid", "CA1234567890ABCDE"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("Caller", "+12349013030"),
        ])
    }

    const PUBLISHED_URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
    const PUBLISHED_SIGNATURE: &str = "0/KCTR6DLpKmkAf8muzZqo1nDgQ=";

    #[test]
    fn signature_matches_twilios_published_vector() {
        assert_eq!(
            signature(PUBLISHED_URL, &published_params(), "12345"),
            PUBLISHED_SIGNATURE
        );
        assert!(verify_signature(
            PUBLISHED_URL,
            &published_params(),
            Some(PUBLISHED_SIGNATURE),
            "12345"
        ));
    }

    #[test]
    fn changed_digit_token_or_url_is_refused() {
        let mut params = published_params();
        params[2].1 = "1235".into();
        assert!(!verify_signature(
            PUBLISHED_URL,
            &params,
            Some(PUBLISHED_SIGNATURE),
            "12345"
        ));
        let params = published_params();
        assert!(!verify_signature(
            PUBLISHED_URL,
            &params,
            Some(PUBLISHED_SIGNATURE),
            "12346"
        ));
        assert!(!verify_signature(PUBLISHED_URL, &params, None, "12345"));
        assert!(!verify_signature(PUBLISHED_URL, &params, Some(""), "12345"));
        assert!(!verify_signature(
            PUBLISHED_URL,
            &params,
            Some(PUBLISHED_SIGNATURE),
            ""
        ));
        assert!(!verify_signature(
            "https://mycompany.com/myapp.php?foo=1&bar=3",
            &params,
            Some(PUBLISHED_SIGNATURE),
            "12345"
        ));
        let mut extra = published_params();
        extra.push(("Extra".into(), String::new()));
        assert!(!verify_signature(
            PUBLISHED_URL,
            &extra,
            Some(PUBLISHED_SIGNATURE),
            "12345"
        ));
    }

    #[test]
    fn default_port_may_be_written_or_left_off() {
        let params = published_params();
        let with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
        let signed_with_port = signature(with_port, &params, "12345");
        // Signed without the port, checked with it written out, and the other way round.
        assert!(verify_signature(
            with_port,
            &params,
            Some(PUBLISHED_SIGNATURE),
            "12345"
        ));
        assert!(verify_signature(
            PUBLISHED_URL,
            &params,
            Some(&signed_with_port),
            "12345"
        ));
        // Another port is another URL.
        let other = signature(
            "https://mycompany.com:8443/myapp.php?foo=1&bar=2",
            &params,
            "12345",
        );
        assert!(!verify_signature(
            PUBLISHED_URL,
            &params,
            Some(&other),
            "12345"
        ));
    }

    #[test]
    fn default_port_variants() {
        let cases = [
            ("https://h.example/p?q", Some("https://h.example:443/p?q")),
            ("https://h.example:443/p", Some("https://h.example/p")),
            ("http://h.example", Some("http://h.example:80")),
            ("http://h.example:80?x=1", Some("http://h.example?x=1")),
            ("HTTPS://H.example/", Some("HTTPS://H.example:443/")),
            ("https://[::1]/p", Some("https://[::1]:443/p")),
            ("https://[::1]:443/p", Some("https://[::1]/p")),
            (
                "https://u:pw@h.example/p",
                Some("https://u:pw@h.example:443/p"),
            ),
            ("https://h.example:8443/p", None),
            ("http://h.example:443/p", None),
            ("ftp://h.example/p", None),
            ("https:/", None),
            ("", None),
        ];
        for (url, expected) in cases {
            assert_eq!(default_port_variant(url).as_deref(), expected, "{url}");
        }
    }

    #[test]
    fn twiml_asks_for_one_key_and_escapes() {
        let twiml = voice_twiml(
            "Sign-in to <Sesame> & \"Co\"\u{7}",
            "https://login.example.com/telephony/twilio/gather/r1?stage=first&x=1",
            10,
        );
        assert_eq!(
            twiml,
            concat!(
                r#"<?xml version="1.0" encoding="UTF-8"?><Response>"#,
                r#"<Gather input="dtmf" finishOnKey="" numDigits="1" timeout="10" method="POST" "#,
                r#"action="https://login.example.com/telephony/twilio/gather/r1?stage=first&amp;x=1">"#,
                r#"<Say>Sign-in to &lt;Sesame&gt; &amp; &quot;Co&quot; </Say></Gather>"#,
                r#"<Say>No key was pressed. Goodbye.</Say><Hangup/></Response>"#
            )
        );
        let confirm = confirm_fraud_twiml("https://x.example/g?stage=fraud", 0);
        assert!(confirm.contains(r#"timeout="1""#), "{confirm}");
        assert!(confirm.contains(r#"action="https://x.example/g?stage=fraud""#));
        assert!(confirm.contains("Press pound to confirm."));
        assert_eq!(
            say_and_hangup_twiml("Bye & thanks"),
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Say>Bye &amp; thanks</Say><Hangup/></Response>"#
        );
    }

    #[test]
    fn gather_steps() {
        let cases = [
            (STAGE_FIRST, "#", GatherStep::Approve),
            (STAGE_FIRST, "0", GatherStep::AskFraudConfirm),
            (STAGE_FIRST, "", GatherStep::NoKey),
            (STAGE_FIRST, "1", GatherStep::NoKey),
            (STAGE_FIRST, "0#", GatherStep::NoKey),
            (STAGE_FIRST, "##", GatherStep::NoKey),
            (STAGE_FRAUD, "#", GatherStep::Fraud),
            (STAGE_FRAUD, "0", GatherStep::NoKey),
            (STAGE_FRAUD, "", GatherStep::NoKey),
            ("", "#", GatherStep::NoKey),
            ("FIRST", "#", GatherStep::NoKey),
        ];
        for (stage, digits, expected) in cases {
            assert_eq!(gather_step(stage, digits), expected, "{stage:?} {digits:?}");
        }
    }

    #[test]
    fn call_statuses() {
        assert_eq!(
            call_status_outcome("no-answer"),
            Some(CallOutcome::NotAnswered)
        );
        assert_eq!(call_status_outcome("busy"), Some(CallOutcome::NotAnswered));
        assert_eq!(call_status_outcome("canceled"), Some(CallOutcome::Rejected));
        assert!(matches!(
            call_status_outcome("failed"),
            Some(CallOutcome::Failed(_))
        ));
        for status in [
            "completed",
            "in-progress",
            "ringing",
            "queued",
            "",
            "COMPLETED",
        ] {
            assert_eq!(call_status_outcome(status), None, "{status}");
        }
    }

    #[test]
    fn message_statuses() {
        for status in ["queued", "accepted", "sending", "sent"] {
            assert_eq!(message_status(status, None), Some(DeliveryStatus::Sent));
        }
        assert_eq!(
            message_status("delivered", None),
            Some(DeliveryStatus::Delivered)
        );
        assert_eq!(
            message_status("undelivered", Some("30003")),
            Some(DeliveryStatus::Failed("undelivered (error 30003)".into()))
        );
        assert_eq!(
            message_status("failed", Some("<script>")),
            Some(DeliveryStatus::Failed("failed".into()))
        );
        assert_eq!(message_status("receiving", None), None);
        assert_eq!(message_status("", None), None);
    }

    #[test]
    fn webhook_urls_carry_the_reference() {
        let config = TwilioConfig {
            api_base: default_api_base(),
            account_sid: "AC123".into(),
            auth_token: "secret-token".into(),
            from: "+15005550006".into(),
            webhook_base: "https://login.example.com/".into(),
            timeout_secs: 5,
            attempts: 2,
        };
        assert_eq!(
            config.voice_url("r-1_x"),
            "https://login.example.com/telephony/twilio/voice/r-1_x"
        );
        assert_eq!(
            config.gather_url("r1", STAGE_FRAUD),
            "https://login.example.com/telephony/twilio/gather/r1?stage=fraud"
        );
        assert_eq!(
            config.call_status_url("a/b"),
            "https://login.example.com/telephony/twilio/call-status/a%2Fb"
        );
        assert_eq!(
            config.message_status_url("r1"),
            "https://login.example.com/telephony/twilio/message-status/r1"
        );
        let printed = format!("{config:?}");
        assert!(!printed.contains("secret-token"), "{printed}");
    }

    #[test]
    fn extensions_to_send_digits() {
        assert_eq!(send_digits("1234").as_deref(), Some("ww1234"));
        assert_eq!(send_digits("12w3#").as_deref(), Some("ww12w3#"));
        assert_eq!(send_digits(""), None);
        assert_eq!(send_digits("12 34"), None);
        assert_eq!(send_digits(&"1".repeat(33)), None);
    }

    #[test]
    fn provider_errors_hide_number_and_body() {
        let cleaned = clean_answer(
            "The 'To' number +15551234567 is not valid; body 'code 123456'",
            &["+15551234567", "code 123456"],
        );
        assert!(
            !cleaned.contains("5551234567") && !cleaned.contains("123456"),
            "{cleaned}"
        );
    }
}
