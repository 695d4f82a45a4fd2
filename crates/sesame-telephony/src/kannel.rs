//! Text messages through Kannel's `smsbox` (`/cgi-bin/sendsms`), with delivery reports.
//!
//! One HTTP GET hands a message to Kannel. Kannel's answer carries no message id, so delivery
//! reports are correlated by Sesame's own `reference`, which travels inside the `dlr-url`
//! Kannel calls back: `{dlr_url}?ref=<reference>&type=%d` (Kannel replaces `%d` with the
//! report type). The server serves `dlr_url` and feeds each request's query to [`parse_dlr`].

use crate::http::{self, clean_answer, request_error, Attempt};
use crate::{DeliveryStatus, GatewayError, SmsGateway, TextMessage};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;
use url::Url;

/// Kannel's `dlr-mask`: delivered (1), not delivered (2), queued on the SMSC (4), accepted by
/// the SMSC (8), rejected by the SMSC (16).
const DLR_MASK: &str = "31";

/// Where and how to reach Kannel's `sendsms` interface.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KannelConfig {
    /// smsbox's sendsms URL (`sendsms-port`, path `/cgi-bin/sendsms`).
    #[serde(default = "default_sendsms_url")]
    pub sendsms_url: String,
    /// A `sendsms-user` of Kannel's configuration.
    pub username: String,
    /// That user's password (sent in the query string, as Kannel requires: keep smsbox on
    /// loopback or behind TLS).
    pub password: String,
    /// Sender id shown on the phone.
    #[serde(default = "default_from")]
    pub from: String,
    /// Sesame's own public delivery-report endpoint (for example
    /// `https://login.example.com/telephony/kannel/dlr`). Without it no report is requested.
    #[serde(default)]
    pub dlr_url: Option<String>,
    /// Longest wait for Kannel's answer, retries included.
    #[serde(default = "http::default_timeout_secs")]
    pub timeout_secs: u64,
    /// Requests per message at most (1 = no retry).
    #[serde(default = "http::default_attempts")]
    pub attempts: u32,
}

fn default_sendsms_url() -> String {
    "http://127.0.0.1:13013/cgi-bin/sendsms".to_owned()
}

fn default_from() -> String {
    "Sesame".to_owned()
}

impl fmt::Debug for KannelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KannelConfig")
            .field("sendsms_url", &self.sendsms_url)
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .field("from", &self.from)
            .field("dlr_url", &self.dlr_url)
            .field("timeout_secs", &self.timeout_secs)
            .field("attempts", &self.attempts)
            .finish()
    }
}

/// A [`KannelConfig`] that cannot work; found when the gateway is built, not at the first
/// message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid [kannel] configuration: {0}")]
pub struct ConfigError(String);

/// The `kannel` SMS gateway.
pub struct KannelSms {
    sendsms_url: Url,
    config: KannelConfig,
    timeout: Duration,
    http: reqwest::Client,
}

impl fmt::Debug for KannelSms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KannelSms")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl KannelSms {
    pub fn new(config: KannelConfig) -> Result<Self, ConfigError> {
        let sendsms_url = Url::parse(&config.sendsms_url)
            .map_err(|e| ConfigError(format!("sendsms_url: {e}")))?;
        if !matches!(sendsms_url.scheme(), "http" | "https") {
            return Err(ConfigError("sendsms_url must be http or https".into()));
        }
        if let Some(dlr_url) = &config.dlr_url {
            let parsed = Url::parse(dlr_url).map_err(|e| ConfigError(format!("dlr_url: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.fragment().is_some() {
                return Err(ConfigError(
                    "dlr_url must be an http or https URL without a fragment".into(),
                ));
            }
        }
        if config.timeout_secs == 0 {
            return Err(ConfigError("timeout_secs must be at least 1".into()));
        }
        if config.attempts == 0 {
            return Err(ConfigError("attempts must be at least 1".into()));
        }
        let timeout = Duration::from_secs(config.timeout_secs);
        // No redirect is followed: it would carry the password (in the query) elsewhere.
        let http = http::client(timeout).map_err(ConfigError)?;
        Ok(KannelSms {
            sendsms_url,
            config,
            timeout,
            http,
        })
    }

    /// The full sendsms request for `message` (it holds the password and the text).
    fn request_url(&self, message: &TextMessage) -> Url {
        let mut url = self.sendsms_url.clone();
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("username", &self.config.username)
                .append_pair("password", &self.config.password)
                .append_pair("from", &self.config.from)
                .append_pair("to", &message.to)
                .append_pair("text", &message.body)
                .append_pair("charset", "UTF-8");
            if let Some(dlr_url) = &self.config.dlr_url {
                query
                    .append_pair("dlr-mask", DLR_MASK)
                    .append_pair("dlr-url", &dlr_callback_url(dlr_url, &message.reference));
            }
        }
        url
    }

    async fn send_once(&self, message: &TextMessage) -> Result<(), Attempt> {
        let response = self
            .http
            .get(self.request_url(message))
            .send()
            .await
            .map_err(request_error)?;
        let status = response.status();
        // An unreadable body is only a problem if the status is not already a success.
        let answer = response.text().await.unwrap_or_default();
        if matches!(status.as_u16(), 200 | 202) && is_accepted(&answer) {
            tracing::debug!(gateway = "kannel", reference = %message.reference, "message accepted");
            return Ok(());
        }
        let error = GatewayError::Refused(format!(
            "HTTP {}: {}",
            status.as_u16(),
            clean_answer(&answer, &[&message.body, &message.to])
        ));
        if status.is_server_error() {
            Err(Attempt::Retryable(error))
        } else {
            Err(Attempt::Final(error))
        }
    }
}

#[async_trait]
impl SmsGateway for KannelSms {
    fn name(&self) -> &'static str {
        "kannel"
    }

    async fn send(&self, message: &TextMessage) -> Result<(), GatewayError> {
        // One deadline for all attempts: the person is waiting for "sent" or "choose another
        // method", and a slow gateway must not hold the sign-in longer than configured.
        http::with_retries(
            "kannel",
            &message.reference,
            self.config.attempts,
            self.timeout,
            || self.send_once(message),
        )
        .await
    }
}

/// Kannel's answers for a message it took: `0: Accepted for delivery`, `3: Queued for later
/// delivery` (smsbox keeps it until bearerbox is back), or `Sent.` from older versions.
fn is_accepted(answer: &str) -> bool {
    let answer = answer.trim_start();
    answer.starts_with("0:")
        || answer.starts_with("3:")
        || answer.starts_with("Accepted")
        || answer.starts_with("Sent")
}

/// The `dlr-url` Kannel calls for each report. `%d` must reach Kannel literally (it is
/// Kannel's placeholder for the report type), so this is assembled by hand rather than with
/// [`Url`], which would escape it.
fn dlr_callback_url(dlr_url: &str, reference: &str) -> String {
    let separator = if dlr_url.contains('?') { '&' } else { '?' };
    let reference: String = form_urlencoded::byte_serialize(reference.as_bytes()).collect();
    format!("{dlr_url}{separator}ref={reference}&type=%d")
}

/// Reads the query string of a delivery report (what Kannel requested at `dlr_url`): the
/// message's reference and what happened to it. `None` for anything else, including a
/// repeated or malformed parameter, so the caller can answer 400 and record nothing.
pub fn parse_dlr(query: &str) -> Option<(String, DeliveryStatus)> {
    let mut reference = None;
    let mut kind = None;
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        let slot = match name.as_ref() {
            "ref" => &mut reference,
            "type" => &mut kind,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return None;
        }
    }
    let reference = reference?;
    if !is_reference(&reference) {
        return None;
    }
    let status = match kind?.as_ref() {
        "1" => DeliveryStatus::Delivered,
        "2" => DeliveryStatus::Failed("not delivered".to_owned()),
        "16" => DeliveryStatus::Failed("rejected by the SMS centre".to_owned()),
        // 4: queued on the SMS centre; 8: the SMS centre acknowledged it.
        "4" | "8" => DeliveryStatus::Sent,
        _ => return None,
    };
    Some((reference.into_owned(), status))
}

/// A reference Sesame could have chosen: it is looked up in the store, so keep junk out.
fn is_reference(reference: &str) -> bool {
    !reference.is_empty()
        && reference.len() <= 128
        && reference
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dlr_url: Option<&str>) -> KannelConfig {
        KannelConfig {
            sendsms_url: "http://127.0.0.1:13013/cgi-bin/sendsms".into(),
            username: "sesame".into(),
            password: "p&ss w=rd".into(),
            from: "Sesame".into(),
            dlr_url: dlr_url.map(str::to_owned),
            timeout_secs: 5,
            attempts: 2,
        }
    }

    fn message() -> TextMessage {
        TextMessage {
            to: "+15551234567".into(),
            body: "Your Sesame sign-in code is 049599 & more".into(),
            reference: "fec800855d2c".into(),
        }
    }

    fn query_of(url: &Url) -> Vec<(String, String)> {
        url.query_pairs().into_owned().collect()
    }

    #[test]
    fn request_url_carries_every_field_encoded() {
        let gateway = KannelSms::new(config(Some(
            "https://login.example.com/telephony/kannel/dlr",
        )))
        .expect("valid config");
        let url = gateway.request_url(&message());
        assert_eq!(url.path(), "/cgi-bin/sendsms");
        let raw = url.query().expect("a query");
        assert!(raw.contains("to=%2B15551234567"), "{raw}");
        assert!(raw.contains("password=p%26ss+w%3Drd"), "{raw}");
        // %d must survive Kannel's URL decoding as a literal placeholder.
        assert!(raw.contains("type%3D%25d"), "{raw}");
        assert_eq!(
            query_of(&url),
            vec![
                ("username".into(), "sesame".into()),
                ("password".into(), "p&ss w=rd".into()),
                ("from".into(), "Sesame".into()),
                ("to".into(), "+15551234567".into()),
                (
                    "text".into(),
                    "Your Sesame sign-in code is 049599 & more".into()
                ),
                ("charset".into(), "UTF-8".into()),
                ("dlr-mask".into(), "31".into()),
                (
                    "dlr-url".into(),
                    "https://login.example.com/telephony/kannel/dlr?ref=fec800855d2c&type=%d"
                        .into()
                ),
            ]
        );
    }

    #[test]
    fn no_report_is_requested_without_dlr_url() {
        let gateway = KannelSms::new(config(None)).expect("valid config");
        let names: Vec<String> = query_of(&gateway.request_url(&message()))
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert!(!names.iter().any(|n| n.starts_with("dlr")), "{names:?}");
    }

    #[test]
    fn dlr_url_with_a_query_gets_more_parameters() {
        assert_eq!(
            dlr_callback_url("https://x.example/dlr?node=2", "abc"),
            "https://x.example/dlr?node=2&ref=abc&type=%d"
        );
    }

    #[test]
    fn sendsms_url_keeps_its_own_query() {
        let mut config = config(None);
        config.sendsms_url = "http://127.0.0.1:13013/cgi-bin/sendsms?smsc=primary".into();
        let url = KannelSms::new(config)
            .expect("valid")
            .request_url(&message());
        assert_eq!(query_of(&url)[0], ("smsc".into(), "primary".into()));
    }

    #[test]
    fn invalid_config_is_refused_at_start() {
        let mut bad = config(None);
        bad.sendsms_url = "not a url".into();
        assert!(KannelSms::new(bad).is_err());
        let mut bad = config(None);
        bad.attempts = 0;
        assert!(KannelSms::new(bad).is_err());
        let mut bad = config(None);
        bad.timeout_secs = 0;
        assert!(KannelSms::new(bad).is_err());
        assert!(KannelSms::new(config(Some("ftp://x.example/dlr"))).is_err());
    }

    #[test]
    fn config_debug_hides_the_password() {
        let printed = format!("{:?}", KannelSms::new(config(None)).expect("valid"));
        assert!(!printed.contains("p&ss"), "{printed}");
        assert!(printed.contains("[redacted]"), "{printed}");
    }

    #[test]
    fn config_defaults_and_unknown_keys() {
        let config: KannelConfig =
            serde_json::from_str(r#"{"username":"u","password":"p"}"#).expect("defaults");
        assert_eq!(config.sendsms_url, "http://127.0.0.1:13013/cgi-bin/sendsms");
        assert_eq!(config.from, "Sesame");
        assert_eq!(config.dlr_url, None);
        assert_eq!((config.timeout_secs, config.attempts), (5, 2));
        assert!(serde_json::from_str::<KannelConfig>(
            r#"{"username":"u","password":"p","pasword":"typo"}"#
        )
        .is_err());
    }

    #[test]
    fn dlr_types_map_to_statuses() {
        let cases = [
            ("ref=abc&type=1", Some(DeliveryStatus::Delivered)),
            (
                "ref=abc&type=2",
                Some(DeliveryStatus::Failed("not delivered".into())),
            ),
            (
                "ref=abc&type=16",
                Some(DeliveryStatus::Failed("rejected by the SMS centre".into())),
            ),
            ("ref=abc&type=4", Some(DeliveryStatus::Sent)),
            ("type=8&answer=ACK%2F&ref=abc", Some(DeliveryStatus::Sent)),
            ("ref=abc&type=3", None),
            ("ref=abc&type=", None),
            ("ref=abc&type=%d", None),
            ("ref=abc&type=01", None),
            ("ref=abc", None),
        ];
        for (query, expected) in cases {
            assert_eq!(
                parse_dlr(query),
                expected.map(|status| ("abc".to_owned(), status)),
                "{query}"
            );
        }
    }

    #[test]
    fn malformed_dlr_references_are_refused() {
        let long = format!("ref={}&type=1", "a".repeat(129));
        let longest = format!("ref={}&type=1", "a".repeat(128));
        for query in [
            "type=1",
            "ref=&type=1",
            "ref=a%20b&type=1",
            "ref=a%2Fb&type=1",
            "ref=%C3%A9&type=1",
            "ref=a.b&type=1",
            long.as_str(),
            "ref=abc&ref=abd&type=1",
            "ref=abc&type=1&type=2",
            "",
            "&&&=",
        ] {
            assert_eq!(parse_dlr(query), None, "{query}");
        }
        assert!(parse_dlr(&longest).is_some());
        assert_eq!(
            parse_dlr("ref=A-z_09&type=1"),
            Some(("A-z_09".into(), DeliveryStatus::Delivered))
        );
    }

    #[test]
    fn answers_that_mean_accepted() {
        assert!(is_accepted("0: Accepted for delivery"));
        assert!(is_accepted("3: Queued for later delivery"));
        assert!(is_accepted("Sent."));
        assert!(!is_accepted("4: Authorization failed"));
        assert!(!is_accepted(""));
    }

    #[test]
    fn error_text_never_repeats_the_message() {
        let message = message();
        let echoed = format!("bad request: {}", message.body);
        let private = [message.body.as_str(), message.to.as_str()];
        assert!(!clean_answer(&echoed, &private).contains("049599"));
        assert_eq!(
            clean_answer("Authorization failed\r\n", &private),
            "Authorization failed"
        );
    }
}
