//! Texts and calls: which gateway carries them ([`TelephonyConfig`]), and the embedded
//! outbox, the default, which keeps them in the database for a person to read (and to answer
//! a call) with `sesame outbox`. The outbox is for development and demonstrations: nothing
//! leaves the machine, so the server says so when it starts; and it keeps the numbers and
//! the texts (with their codes) readable in its table, which no other part of Sesame does.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sesame_core::Clock;
use sesame_store::{OutboxItem, Store};
use sesame_telephony::baresip::{BaresipConfig, BaresipGateway};
use sesame_telephony::kannel::{KannelConfig, KannelSms};
use sesame_telephony::twilio::{TwilioConfig, TwilioSms, TwilioVoice};
use sesame_telephony::{Call, GatewayError, Reports, SmsGateway, TextMessage, VoiceGateway};
use std::sync::Arc;

/// `[server.telephony]`: gateways, limits and the countries numbers may be in.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelephonyConfig {
    /// Country calling codes numbers may have (`[31, 32, 49]`); empty: every country. Texts
    /// and calls to expensive destinations are how SMS pumping (toll fraud) makes money, so
    /// production sites should list the countries their users live in.
    pub allowed_country_codes: Vec<u16>,
    /// Texts and calls per user, per number and per client address within `send_window_secs`.
    pub sends_per_window: u32,
    pub send_window_secs: i64,
    /// How long a called person has to press a key once the prompt starts.
    pub call_key_timeout_secs: u64,
    /// How long a call may ring before it counts as not answered.
    pub call_ring_timeout_secs: u64,
    /// The development page `/admin/outbox` (administrators read texts and answer calls in
    /// the browser). Off unless turned on.
    pub outbox_page: bool,
    pub sms: SmsGatewayConfig,
    pub voice: VoiceGatewayConfig,
}

impl Default for TelephonyConfig {
    fn default() -> Self {
        TelephonyConfig {
            allowed_country_codes: Vec::new(),
            sends_per_window: 3,
            send_window_secs: 900,
            call_key_timeout_secs: 20,
            call_ring_timeout_secs: 30,
            outbox_page: false,
            sms: SmsGatewayConfig::Outbox,
            voice: VoiceGatewayConfig::Outbox,
        }
    }
}

/// Which gateway sends texts (`[server.telephony.sms]`, `gateway = "..."`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(tag = "gateway", rename_all = "snake_case")]
pub enum SmsGatewayConfig {
    /// Stored in the database, sent nowhere (development).
    #[default]
    Outbox,
    /// Kannel's smsbox `sendsms` interface, with delivery reports to
    /// `/telephony/kannel/dlr`.
    Kannel(KannelConfig),
    /// A Twilio-compatible Messages API, with status callbacks.
    Twilio(TwilioConfig),
}

/// Which gateway places calls (`[server.telephony.voice]`, `gateway = "..."`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(tag = "gateway", rename_all = "snake_case")]
pub enum VoiceGatewayConfig {
    /// Stored in the database; answered with `sesame outbox answer` (development).
    #[default]
    Outbox,
    /// SIP calls through baresip user agents driven over `ctrl_tcp`.
    Baresip(BaresipConfig),
    /// A Twilio-compatible Calls API, with a TwiML `<Gather>` webhook.
    Twilio(TwilioConfig),
}

/// The gateways this server uses.
#[derive(Clone)]
pub struct Telephony {
    pub sms: Arc<dyn SmsGateway>,
    pub voice: Arc<dyn VoiceGateway>,
    /// Whether Kannel's delivery reports are expected (`/telephony/kannel/dlr`).
    pub kannel: bool,
    /// The Twilio-compatible account whose webhooks are accepted (signed with its token).
    pub twilio: Option<TwilioConfig>,
}

impl Telephony {
    /// The gateways `config` names; a gateway whose settings cannot work is refused here, at
    /// start, with what to fix.
    pub fn new(
        config: &TelephonyConfig,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, String> {
        let outbox = Arc::new(Outbox { store, clock });
        let mut twilio = None;
        let sms: Arc<dyn SmsGateway> = match &config.sms {
            SmsGatewayConfig::Outbox => outbox.clone(),
            SmsGatewayConfig::Kannel(k) => Arc::new(
                KannelSms::new(k.clone()).map_err(|e| format!("[server.telephony.sms]: {e}"))?,
            ),
            SmsGatewayConfig::Twilio(t) => {
                twilio = Some(t.clone());
                Arc::new(
                    TwilioSms::new(t.clone())
                        .map_err(|e| format!("[server.telephony.sms]: {e}"))?,
                )
            }
        };
        let voice: Arc<dyn VoiceGateway> = match &config.voice {
            VoiceGatewayConfig::Outbox => outbox,
            VoiceGatewayConfig::Baresip(b) => Arc::new(
                BaresipGateway::new(b.clone())
                    .map_err(|e| format!("[server.telephony.voice]: {e}"))?,
            ),
            VoiceGatewayConfig::Twilio(t) => {
                if twilio
                    .as_ref()
                    .is_some_and(|s| s.account_sid != t.account_sid)
                {
                    return Err("[server.telephony]: texts and calls through Twilio-compatible providers must use one account".into());
                }
                twilio = Some(t.clone());
                Arc::new(
                    TwilioVoice::new(t.clone())
                        .map_err(|e| format!("[server.telephony.voice]: {e}"))?,
                )
            }
        };
        Ok(Telephony {
            kannel: matches!(config.sms, SmsGatewayConfig::Kannel(_)),
            sms,
            voice,
            twilio,
        })
    }

    /// Whether anything goes to the development outbox instead of a phone.
    pub fn uses_outbox(&self) -> bool {
        self.sms.name() == OUTBOX || self.voice.name() == OUTBOX
    }
}

pub const OUTBOX: &str = "outbox";

/// The embedded gateway: texts and calls are rows in the `outbox` table.
pub struct Outbox {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

impl Outbox {
    async fn add(&self, item: OutboxItem) -> Result<(), GatewayError> {
        self.store
            .outbox_add(&item)
            .await
            .map(|_| ())
            .map_err(|e| GatewayError::Refused(format!("the outbox could not store it: {e}")))
    }
}

#[async_trait]
impl SmsGateway for Outbox {
    fn name(&self) -> &'static str {
        OUTBOX
    }

    async fn send(&self, m: &TextMessage) -> Result<(), GatewayError> {
        self.add(OutboxItem {
            id: 0,
            kind: "sms".into(),
            reference: m.reference.clone(),
            to: m.to.clone(),
            extension: None,
            body: m.body.clone(),
            state: "delivered".into(),
            created_at: self.clock.now(),
            answered_at: None,
        })
        .await
    }
}

#[async_trait]
impl VoiceGateway for Outbox {
    fn name(&self) -> &'static str {
        OUTBOX
    }

    /// The call "rings" until someone answers it in the outbox; the sign-in's own expiry
    /// ends it otherwise.
    async fn call(&self, c: &Call, _reports: Arc<dyn Reports>) -> Result<(), GatewayError> {
        self.add(OutboxItem {
            id: 0,
            kind: "call".into(),
            reference: c.reference.clone(),
            to: c.to.clone(),
            extension: c.extension.clone(),
            body: c.prompt.clone(),
            state: "ringing".into(),
            created_at: self.clock.now(),
            answered_at: None,
        })
        .await
    }
}
