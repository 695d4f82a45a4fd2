//! What the HTTP gateways (Kannel, Twilio-compatible) share: a client that follows no
//! redirect, bounded retries within one deadline, and errors that never carry a URL, a
//! password, a number or a message body into the log.

use crate::GatewayError;
use std::future::Future;
use std::time::Duration;

/// Pause between two tries of one request.
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// Longest provider answer kept in an error (one log line).
const MAX_ANSWER_CHARS: usize = 200;

/// A gateway's `timeout_secs` when the configuration does not say: the longest wait for the
/// provider, retries included.
pub(crate) fn default_timeout_secs() -> u64 {
    5
}

/// A gateway's `attempts` when the configuration does not say (2: one retry).
pub(crate) fn default_attempts() -> u32 {
    2
}

/// The outcome of one request: worth another try (it never arrived, or the provider had a
/// passing trouble) or not.
pub(crate) enum Attempt {
    Retryable(GatewayError),
    Final(GatewayError),
}

/// A client for one gateway: `timeout` bounds connecting and each request, and no redirect
/// is followed (it would carry the credentials, or a query holding them, somewhere else).
pub(crate) fn client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("HTTP client: {e}"))
}

/// Runs `once` up to `attempts` times while it fails with something worth another try, all
/// within `deadline`: the person waits for "sent" or "choose another method", and a slow
/// gateway must not hold the sign-in longer than configured.
pub(crate) async fn with_retries<T, F, Fut>(
    gateway: &'static str,
    reference: &str,
    attempts: u32,
    deadline: Duration,
    mut once: F,
) -> Result<T, GatewayError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Attempt>>,
{
    let tries = async {
        let mut attempt = 1;
        loop {
            match once().await {
                Ok(v) => return Ok(v),
                Err(Attempt::Retryable(error)) if attempt < attempts => {
                    tracing::warn!(gateway, reference, attempt, %error, "request failed, trying again");
                    attempt += 1;
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(Attempt::Retryable(error) | Attempt::Final(error)) => return Err(error),
            }
        }
    };
    tokio::time::timeout(deadline, tries)
        .await
        .unwrap_or(Err(GatewayError::Timeout))
}

/// What a failed request means for another try.
pub(crate) fn request_error(error: reqwest::Error) -> Attempt {
    if error.is_timeout() {
        // The deadline is spent; another try could only overrun it.
        Attempt::Final(GatewayError::Timeout)
    } else if error.is_connect() {
        Attempt::Retryable(GatewayError::Unreachable(describe(error)))
    } else {
        Attempt::Final(GatewayError::Unreachable(describe(error)))
    }
}

/// The error and its root cause, without the URL: reqwest's `Display` names the request URL,
/// and a sendsms URL carries the password and the message text (a provider's, the account).
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let root = std::iter::successors(std::error::Error::source(&error), |e| e.source()).last();
    match root {
        Some(root) => format!("{error} ({root})"),
        None => error.to_string(),
    }
}

/// A provider's answer as one short printable line for the log, with every `private` value
/// (the number, the body with its code) blanked out should the provider repeat it.
pub(crate) fn clean_answer(answer: &str, private: &[&str]) -> String {
    let mut answer = answer.to_owned();
    for value in private.iter().filter(|v| !v.is_empty()) {
        answer = answer.replace(value, "[…]");
    }
    let line: String = answer
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_ANSWER_CHARS)
        .collect();
    if line.is_empty() {
        "(empty answer)".to_owned()
    } else {
        line
    }
}
