//! The delivery port for text messages and phone calls (DESIGN §6), and the gateways behind it.
//!
//! Sesame's methods never talk to a provider: they hand a [`TextMessage`] to a [`SmsGateway`]
//! or a [`Call`] to a [`VoiceGateway`]. A gateway says at once whether it took the job (an
//! error means "choose another method": nothing is retried without bound and nothing waits
//! longer than the gateway's own timeout). What happens afterwards (a delivery report, the
//! keys pressed on a call) comes back through [`Reports`], matched by the `reference` Sesame
//! chose, never by a provider's id.
//!
//! Gateways here: Kannel (SMS, `kannel`), a baresip user agent (SIP calls, `baresip`) and a
//! Twilio-compatible HTTP provider (`twilio`). The embedded outbox, which stores messages and
//! calls in Sesame's own database, lives with the server because it needs the store.

use async_trait::async_trait;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub mod baresip;
mod http;
pub mod kannel;
#[cfg(feature = "testing")]
pub mod testing;
pub mod twilio;

/// A text message to one number.
#[derive(Clone, PartialEq, Eq)]
pub struct TextMessage {
    /// E.164, with the leading `+` (`+31612345678`), already validated.
    pub to: String,
    /// What the phone shows. It carries a code: never logged.
    pub body: String,
    /// Sesame's own token for this message: delivery reports are matched by it.
    pub reference: String,
}

impl fmt::Debug for TextMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The body holds a one-time code and the number is personal data.
        f.debug_struct("TextMessage")
            .field("reference", &self.reference)
            .finish_non_exhaustive()
    }
}

/// A phone call that asks the person to press # (approve) or 0# (report fraud).
#[derive(Clone, PartialEq, Eq)]
pub struct Call {
    /// E.164, with the leading `+`.
    pub to: String,
    /// Digits dialled after the call is answered (an office extension), if any.
    pub extension: Option<String>,
    /// The words the voice says (names the service; says what to press).
    pub prompt: String,
    /// Sesame's own token for this call: the outcome is reported with it.
    pub reference: String,
    /// How long the person has to press a key once the call is answered.
    pub key_timeout: Duration,
    /// How long the phone may ring before the call counts as not answered.
    pub ring_timeout: Duration,
}

impl fmt::Debug for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call")
            .field("reference", &self.reference)
            .field("key_timeout", &self.key_timeout)
            .finish_non_exhaustive()
    }
}

/// How a call ended, as far as Sesame cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    /// The person pressed #.
    Approved,
    /// The person pressed 0 then #: "this wasn't me".
    Fraud,
    /// Nobody answered before the ring timeout (or the line was busy).
    NotAnswered,
    /// The call was rejected or hung up before a key was pressed.
    Rejected,
    /// Answered, but no key (or a wrong one) before the key timeout.
    NoKey,
    /// The gateway could not place or keep the call.
    Failed(String),
}

impl CallOutcome {
    /// Stable name for the store and the audit log.
    pub fn as_str(&self) -> &'static str {
        match self {
            CallOutcome::Approved => "approved",
            CallOutcome::Fraud => "fraud",
            CallOutcome::NotAnswered => "not_answered",
            CallOutcome::Rejected => "rejected",
            CallOutcome::NoKey => "no_key",
            CallOutcome::Failed(_) => "failed",
        }
    }
}

/// What a delivery report said of a text message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Accepted by the provider or the SMS centre; not yet on the phone.
    Sent,
    /// On the phone.
    Delivered,
    /// Will not arrive (the reason is the provider's).
    Failed(String),
}

impl DeliveryStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed(_) => "failed",
        }
    }
}

/// Why a gateway did not take a message or a call. Shown to the person as "choose another
/// method"; the detail goes to the server log (it never holds the body).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// The provider did not answer in time.
    #[error("the gateway did not answer in time")]
    Timeout,
    /// The provider could not be reached (connection refused, DNS, TLS).
    #[error("the gateway could not be reached: {0}")]
    Unreachable(String),
    /// The provider answered with a refusal or an error status.
    #[error("the gateway refused: {0}")]
    Refused(String),
    /// Every line is busy (a pool of call agents is in use).
    #[error("every line is busy")]
    Busy,
}

/// Where gateways report what happened after they took a job. Implemented by the server:
/// a call outcome answers the sign-in waiting for it; a delivery report is recorded.
#[async_trait]
pub trait Reports: Send + Sync {
    async fn call_ended(&self, reference: &str, outcome: CallOutcome);
    async fn message_status(&self, reference: &str, status: DeliveryStatus);
}

/// Reports that go nowhere (tests that look only at what was sent).
pub struct NoReports;

#[async_trait]
impl Reports for NoReports {
    async fn call_ended(&self, _: &str, _: CallOutcome) {}
    async fn message_status(&self, _: &str, _: DeliveryStatus) {}
}

/// Sends text messages.
#[async_trait]
pub trait SmsGateway: Send + Sync {
    /// Short name for logs and the admin page (`outbox`, `kannel`, `twilio`).
    fn name(&self) -> &'static str;

    /// Hands the message over. Returns once the provider accepted it (or refused, or did not
    /// answer within the gateway's timeout); delivery is reported later through [`Reports`].
    async fn send(&self, message: &TextMessage) -> Result<(), GatewayError>;
}

/// Places phone calls.
#[async_trait]
pub trait VoiceGateway: Send + Sync {
    /// Short name for logs and the admin page (`outbox`, `baresip`, `twilio`).
    fn name(&self) -> &'static str;

    /// Starts the call. Returns once the call is under way (or could not be started); the
    /// outcome is reported exactly once through `reports`, also when the call fails later.
    async fn call(&self, call: &Call, reports: Arc<dyn Reports>) -> Result<(), GatewayError>;
}
