//! Texts and calls (issue 13): codes texted to a number (to add it, or to sign in), calls
//! answered with # or 0#, and the limits around both.
//!
//! - A texted code is 6 digits, valid 10 minutes, bound to user + number + purpose, and
//!   taken once by the store. A resend replaces the live code; wrong codes count per user
//!   and method (the same counter whatever code is live), so a resend keeps the count.
//! - Every text and call counts against the user, the number and the client address, in the
//!   store (shared by every node), before anything is sent.
//! - Numbers outside the allowed countries are refused before anything is sent (SMS pumping).
//! - A call is an out-of-band approval like a notification (`service::approvals`), on the
//!   voice channel: the gateway reports the key pressed, and # approves it, 0# reports fraud
//!   (which blocks requests to the user's phone, as "Deny and report" does in the app).

use super::{Line, Origin, Services};
use crate::error::Error;
use hmac::{Hmac, Mac};
use sesame_core::audit::{AuditMethod, Event};
use sesame_core::lockout::AttemptGate;
use sesame_core::method::{MethodKind, PhoneSlot};
use sesame_core::phone::{self, PhoneNumber};
use sesame_core::push::{ApprovalChannel, ChallengeKind, ChallengeState};
use sesame_core::secret::SecretBytes;
use sesame_core::ChallengeId;
use sesame_store::{AuditResult, MasterKey, Method, NewChallenge, SignInRecord, User};
use sesame_telephony::{Call, CallOutcome, DeliveryStatus, Reports, TextMessage};
use std::sync::Arc;
use std::time::Duration;

/// Longest a gateway may take to accept a text or a call before the person is told to use
/// another method (the gateway's own timeouts are shorter; this is the backstop).
const GATEWAY_DEADLINE: Duration = Duration::from_secs(15);

/// Why a gateway did not take a text or a call, if it did not: its refusal, or silence past
/// [`GATEWAY_DEADLINE`].
async fn failure(
    handed: impl std::future::Future<Output = Result<(), sesame_telephony::GatewayError>>,
) -> Option<String> {
    match tokio::time::timeout(GATEWAY_DEADLINE, handed).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some("the gateway did not answer in time".to_string()),
    }
}

/// Keys for hashing numbers (limits, binding codes) and texted codes.
pub struct Keys {
    tag: SecretBytes,
    code: SecretBytes,
}

impl Keys {
    pub fn new(master: &MasterKey) -> Self {
        Keys {
            tag: master.derive("phone-number-tag-v1"),
            code: master.derive("phone-code-v1"),
        }
    }

    fn mac(key: &SecretBytes, parts: &[&[u8]]) -> Vec<u8> {
        let mut m = Hmac::<sha2::Sha256>::new_from_slice(key.expose()).expect("any key length");
        for p in parts {
            m.update(&(p.len() as u64).to_be_bytes());
            m.update(p);
        }
        m.finalize().into_bytes().to_vec()
    }

    /// A keyed hash of a number: the same number gives the same tag, and the tag gives no
    /// number back (a table of every number would need the key).
    pub fn tag(&self, number: &PhoneNumber) -> Vec<u8> {
        Self::mac(&self.tag, &[number.e164().as_bytes()])
    }

    /// A keyed hash of a code for one user and purpose: a copy of the table does not give
    /// the code away by trying the million possibilities.
    fn code_hash(&self, user: &User, purpose: &str, code: &str) -> Vec<u8> {
        Self::mac(
            &self.code,
            &[
                &user.id.0.to_be_bytes(),
                purpose.as_bytes(),
                code.as_bytes(),
            ],
        )
    }
}

/// What a code is for: signing in, or proving a number being added.
pub const SIGN_IN: &str = "signin";

pub fn enrol_purpose(slot: sesame_core::method::PhoneSlot) -> String {
    format!("enrol:{}", slot.as_str())
}

/// The number a phone method reaches.
pub fn number_of(m: &Method) -> Option<PhoneNumber> {
    m.phone
        .as_deref()
        .and_then(|n| PhoneNumber::from_e164(n).ok())
}

/// The user's method of `kind` (their one number of that kind).
pub async fn method_of(
    svc: &Services,
    user: &User,
    kind: MethodKind,
) -> Result<Option<Method>, Error> {
    Ok(svc
        .store
        .list_methods(user.id)
        .await?
        .into_iter()
        .find(|m| m.kind == kind))
}

/// Why a text or call may not go out now, counting it if it may.
async fn reserve_send(
    svc: &Services,
    origin: &Origin,
    user: &User,
    number: &PhoneNumber,
    what: &str,
) -> Result<Result<(), String>, Error> {
    let cfg = &svc.config.telephony;
    if let Err(e) = number.country_allowed(&cfg.allowed_country_codes) {
        return Ok(Err(e.to_string()));
    }
    let tag = data_encoding::HEXLOWER.encode(&svc.phone_keys.tag(number));
    let keys = [
        format!("{what}:user:{}", user.id.0),
        format!("{what}:number:{tag}"),
        format!("{what}:address:{}", origin.ip),
    ];
    let now = svc.now();
    let since = now - cfg.send_window_secs;
    if let Some(key) = svc
        .store
        .reserve_phone_send(&keys, cfg.sends_per_window, since, now)
        .await?
    {
        tracing::info!(limit = key.split(':').nth(1), what, "send limit reached");
        let m = (cfg.send_window_secs + 59) / 60;
        let noun = if what == "sms" { "texts" } else { "calls" };
        return Ok(Err(format!(
            "Too many {noun} were sent. Wait up to {m} minutes, or use a different verification option."
        )));
    }
    Ok(Ok(()))
}

/// Texts a new code to `number` for `purpose`, replacing the live one. `Err(message)` says
/// why nothing was sent (limits, country, gateway), in words for the person.
pub async fn send_code(
    svc: &Services,
    origin: &Origin,
    user: &User,
    number: &PhoneNumber,
    purpose: &str,
) -> Result<Result<(), String>, Error> {
    let not_sent = |why: &str| {
        Line::of(user, Event::SmsNotSent)
            .method(AuditMethod::Sms)
            .failed(why)
    };
    if let Err(message) = reserve_send(svc, origin, user, number, "sms").await? {
        svc.audit(origin, not_sent("limit_or_country")).await;
        return Ok(Err(message));
    }
    let now = svc.now();
    let code = phone::generate_code(&mut rand::rngs::OsRng);
    let tag = svc.phone_keys.tag(number);
    svc.store
        .put_phone_code(
            user.id,
            purpose,
            &tag,
            &svc.phone_keys.code_hash(user, purpose, &code),
            now,
            now + phone::CODE_LIFETIME_SECS,
        )
        .await?;
    let reference = crate::token::random();
    let message = TextMessage {
        to: number.e164().to_string(),
        // Names the service and nothing more: no link, no user name, no request details.
        body: format!(
            "{code} is your {} verification code.",
            svc.config.service_name
        ),
        reference: reference.clone(),
    };
    svc.store
        .record_message(&reference, Some(user.id), "queued", now)
        .await?;
    if let Some(why) = failure(svc.telephony.sms.send(&message)).await {
        tracing::warn!(gateway = svc.telephony.sms.name(), %why, "text not sent");
        svc.metrics.gateway_failed(svc.telephony.sms.name(), "sms");
        svc.store.drop_phone_code(user.id, purpose).await?;
        svc.store
            .update_message_status(&reference, "failed", Some(&why), svc.now())
            .await?;
        svc.audit(origin, not_sent("gateway_failed")).await;
        return Ok(Err(format!(
            "We couldn't send a text to {} just now. Use a different verification option, or try again later.",
            number.short()
        )));
    }
    svc.audit(
        origin,
        Line::of(user, Event::SmsSent)
            .method(AuditMethod::Sms)
            .reason(purpose.split(':').next().unwrap_or(purpose).to_string()),
    )
    .await;
    Ok(Ok(()))
}

/// What a typed code did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeCheck {
    Accepted,
    /// Refused, with the words for the person and whether it was the lock.
    Refused {
        message: String,
        locked: bool,
    },
}

/// Checks a code typed for `purpose` against the live one for `number`. Attempts count per
/// user and text method before anything is compared, in the store.
pub async fn check_code(
    svc: &Services,
    origin: &Origin,
    user: &User,
    number: &PhoneNumber,
    purpose: &str,
    typed: &str,
) -> Result<CodeCheck, Error> {
    let refused = |m: &str, locked| CodeCheck::Refused {
        message: m.to_string(),
        locked,
    };
    let code = match phone::parse_code(typed) {
        Ok(c) => c,
        Err(m) => return Ok(refused(m, false)),
    };
    let fail = |reason: &str| {
        Line::of(user, Event::SignIn)
            .method(AuditMethod::Sms)
            .failed(reason)
    };
    let now = svc.now();
    match svc
        .store
        .reserve_attempt(user.id, MethodKind::Sms, &svc.config.lockout, now)
        .await?
    {
        AttemptGate::Open => {}
        AttemptGate::SoftLocked { until } => {
            svc.audit(origin, fail("locked")).await;
            let m = ((until - now).max(1) + 59) / 60;
            return Ok(refused(
                &format!(
                    "Too many wrong codes. Try again in {m} minute{}, or use a different verification option.",
                    if m == 1 { "" } else { "s" }
                ),
                true,
            ));
        }
        AttemptGate::HardLocked => {
            svc.audit(origin, fail("hard_locked")).await;
            return Ok(refused("Text message codes are locked for your account after too many wrong codes. Contact your administrator, or use a different verification option.", true));
        }
    }
    let taken = svc
        .store
        .take_phone_code(
            user.id,
            purpose,
            &svc.phone_keys.tag(number),
            &svc.phone_keys.code_hash(user, purpose, &code),
            now,
        )
        .await?;
    if !taken {
        svc.audit(origin, fail("wrong_code")).await;
        return Ok(refused("That code didn't work. Check the latest text message and try again, or send a new code.", false));
    }
    svc.store.clear_failures(user.id, MethodKind::Sms).await?;
    Ok(CodeCheck::Accepted)
}

/// The words a call says: the service asking, and what to press.
pub fn prompt(svc: &Services) -> String {
    format!(
        "This is {}. Someone is signing in to your account. If it is you, press the pound key. If it is not you, press zero, then the pound key.",
        svc.config.service_name
    )
}

/// The words of a call that proves a number being added.
pub fn enrol_prompt(svc: &Services) -> String {
    format!(
        "This is {}. To confirm this phone number for your account, press the pound key. If you did not ask for this, press zero, then the pound key.",
        svc.config.service_name
    )
}

/// The words the call of request `c` says (a webhook asks for them when the call is answered).
pub fn prompt_of(svc: &Services, c: &sesame_store::ChallengeRecord) -> String {
    if c.number.is_empty() {
        prompt(svc)
    } else {
        enrol_prompt(svc)
    }
}

/// Calls the user's phone for this sign-in, as an approval on the voice channel that
/// supersedes their pending requests. When the call may not be placed (limits, a fraud
/// report's block, the gateway), the request ends at once with the reason, which the waiting
/// page shows.
pub async fn place_call(
    svc: &Services,
    origin: &Origin,
    rec: &SignInRecord,
    user: &User,
    method: &Method,
) -> Result<Option<String>, Error> {
    let Some(number) = number_of(method) else {
        return Ok(Some(
            "This phone number can no longer be used. Use a different verification option.".into(),
        ));
    };
    let to = CallTo {
        kind: method.kind,
        number: &number,
        extension: method.extension.as_deref(),
        request: rec.id_hash.clone(),
        enrol: false,
    };
    Ok(call(svc, origin, user, to).await?.err())
}

/// A call to place: to whom, and for what.
pub struct CallTo<'a> {
    /// The method the call is for (the log names it).
    pub kind: MethodKind,
    pub number: &'a PhoneNumber,
    pub extension: Option<&'a str>,
    /// The sign-in (or set-up) the request belongs to, by its hash.
    pub request: Vec<u8>,
    /// A call that proves a number being added (not a sign-in): its request records the
    /// number's tag, and only that number can be saved with it.
    pub enrol: bool,
}

/// Places a call as a request on the voice channel (it supersedes the user's pending
/// requests). `Err(message)`: it may not be placed (a fraud report's block, limits,
/// countries); a gateway that fails ends the request at once, with the reason the page shows.
pub async fn call(
    svc: &Services,
    origin: &Origin,
    user: &User,
    to: CallTo<'_>,
) -> Result<Result<ChallengeId, String>, Error> {
    let not_placed = |why: &str| {
        Line::of(user, Event::CallNotPlaced)
            .method(to.kind)
            .failed(why)
    };
    if user.push_blocked_at.is_some() {
        svc.audit(origin, not_placed("reported_block")).await;
        return Ok(Err("Calls to your phone are blocked because a sign-in was reported as not you. Use a different verification option, or contact your administrator.".into()));
    }
    if let Err(message) = reserve_send(svc, origin, user, to.number, "call").await? {
        svc.audit(origin, not_placed("limit_or_country")).await;
        return Ok(Err(message));
    }
    let cfg = &svc.config.telephony;
    let now = svc.now();
    let lifetime = (cfg.call_ring_timeout_secs + cfg.call_key_timeout_secs + 30) as i64;
    let new = NewChallenge {
        tenant: user.tenant,
        user: user.id,
        signin_id_hash: to.request,
        kind: ChallengeKind::Mfa,
        channel: ApprovalChannel::Voice,
        // A call has no number to match on the page; a set-up call records which number it
        // proves (its keyed tag), so that no other can be saved with it.
        number: if to.enrol {
            data_encoding::HEXLOWER.encode(&svc.phone_keys.tag(to.number))
        } else {
            String::new()
        },
        app_name: svc.config.service_name.clone(),
        ip: origin.ip.clone(),
        location: super::approvals::approximate_location(&origin.ip),
        user_agent: origin.user_agent.clone(),
        expires_at: now + lifetime,
        browser: None,
        budget: None,
    };
    let placed = svc.audit_event(origin, Line::of(user, Event::CallPlaced).method(to.kind));
    let (challenge, superseded) = svc.store.create_challenge(new, now, Some(&placed)).await?;
    for id in superseded {
        svc.hub.closed(user.id, id, "superseded");
    }
    let call = Call {
        to: to.number.e164().to_string(),
        extension: to.extension.map(str::to_owned),
        prompt: prompt_of(svc, &challenge),
        reference: challenge.id.0.clone(),
        key_timeout: Duration::from_secs(cfg.call_key_timeout_secs),
        ring_timeout: Duration::from_secs(cfg.call_ring_timeout_secs),
    };
    let reports: Arc<dyn Reports> = Arc::new(CallReports(svc.clone()));
    if let Some(why) = failure(svc.telephony.voice.call(&call, reports)).await {
        tracing::warn!(gateway = svc.telephony.voice.name(), %why, "call not placed");
        svc.metrics
            .gateway_failed(svc.telephony.voice.name(), "call");
        call_ended(svc, &challenge.id, CallOutcome::Failed(why)).await?;
    }
    Ok(Ok(challenge.id))
}

/// Whether the set-up call of `request` proved `number` for `user`: # was pressed on a call
/// to that number. Taken once (approved -> consumed).
pub async fn take_enrol_call(
    svc: &Services,
    user: &User,
    request: &[u8],
    number: &PhoneNumber,
) -> Result<EnrolCall, Error> {
    let Some(c) = svc.store.find_latest_challenge_for_signin(request).await? else {
        return Ok(EnrolCall::NoCall);
    };
    let tag = data_encoding::HEXLOWER.encode(&svc.phone_keys.tag(number));
    if c.user != user.id
        || c.channel != ApprovalChannel::Voice
        || c.number.is_empty()
        || c.state == ChallengeState::Consumed
    {
        return Ok(EnrolCall::NoCall);
    }
    if !sesame_core::secret::ct_eq(c.number.as_bytes(), tag.as_bytes()) {
        return Ok(EnrolCall::NoCall);
    }
    match super::approvals::Shown::of(&c, svc.now()) {
        super::approvals::Shown::Pending => Ok(EnrolCall::Waiting),
        super::approvals::Shown::Approved => Ok(if svc.store.consume_challenge(&c.id).await? {
            EnrolCall::Confirmed
        } else {
            EnrolCall::NoCall
        }),
        shown => Ok(EnrolCall::Over(shown.message())),
    }
}

/// Where a set-up call stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrolCall {
    /// No call for this number (or it was used already).
    NoCall,
    /// Ringing, or waiting for a key.
    Waiting,
    /// # was pressed: the number is proved (once).
    Confirmed,
    /// Over without # (not answered, rejected, no key, 0#, failed, expired), and why.
    Over(&'static str),
}

/// Writes how a call ended onto its request, once: # approves, 0# reports fraud (and blocks
/// requests to the user's phone in the same write), anything else ends it with the reason.
/// A call whose request is no longer pending (superseded, expired, answered) changes nothing.
pub async fn call_ended(
    svc: &Services,
    id: &ChallengeId,
    outcome: CallOutcome,
) -> Result<bool, Error> {
    let Some(c) = svc.store.find_challenge(id).await? else {
        return Ok(false);
    };
    if c.channel != ApprovalChannel::Voice {
        return Ok(false);
    }
    let Some(user) = svc.store.find_user(c.user).await? else {
        return Ok(false);
    };
    let (to, event, result) = match &outcome {
        CallOutcome::Approved => (
            ChallengeState::Approved,
            Event::CallAnswer,
            AuditResult::Success,
        ),
        CallOutcome::Fraud => (
            ChallengeState::Reported,
            Event::FraudReported,
            AuditResult::Failure,
        ),
        CallOutcome::NotAnswered => (
            ChallengeState::NotAnswered,
            Event::CallAnswer,
            AuditResult::Failure,
        ),
        CallOutcome::Rejected => (
            ChallengeState::Rejected,
            Event::CallAnswer,
            AuditResult::Failure,
        ),
        CallOutcome::NoKey => (
            ChallengeState::NoKey,
            Event::CallAnswer,
            AuditResult::Failure,
        ),
        CallOutcome::Failed(_) => (
            ChallengeState::CallFailed,
            Event::CallAnswer,
            AuditResult::Failure,
        ),
    };
    let line = Line::of(&user, event)
        .method(AuditMethod::Voice)
        .reason(outcome.as_str())
        .result(result);
    let origin = Origin {
        ip: c.ip.clone(),
        user_agent: c.user_agent.clone(),
        browsers: Vec::new(),
    };
    let audit = svc.audit_event(&origin, line);
    let answered = svc
        .store
        .answer_challenge(&c.id, to, None, svc.now(), &audit)
        .await?;
    for other in &answered.cancelled {
        svc.hub.closed(user.id, other.clone(), "cancelled");
    }
    svc.hub.challenge_changed(&c.id);
    Ok(answered.answered)
}

/// Where gateways report call outcomes and delivery reports.
pub struct CallReports(pub Services);

#[async_trait::async_trait]
impl Reports for CallReports {
    async fn call_ended(&self, reference: &str, outcome: CallOutcome) {
        if let Err(e) = call_ended(&self.0, &ChallengeId(reference.to_string()), outcome).await {
            tracing::error!(error = %e, "could not record how a call ended");
        }
    }

    async fn message_status(&self, reference: &str, status: DeliveryStatus) {
        let detail = match &status {
            DeliveryStatus::Failed(d) => Some(d.as_str()),
            _ => None,
        };
        match self
            .0
            .store
            .update_message_status(reference, status.as_str(), detail, self.0.now())
            .await
        {
            Ok(true) => {
                if let DeliveryStatus::Failed(d) = &status {
                    tracing::warn!(detail = %d, "a text was not delivered");
                }
            }
            Ok(false) => tracing::info!("a delivery report for a text Sesame did not send"),
            Err(e) => tracing::error!(error = %e, "could not record a delivery report"),
        }
    }
}

/// Saves a proved number in `slot` (replacing the one there), makes its first method the
/// default if the user had none, and records it. The old mobile number is told of a change
/// by text, so that a change made by someone else does not go unnoticed.
pub async fn save(
    svc: &Services,
    origin: &Origin,
    user: &User,
    slot: PhoneSlot,
    number: &PhoneNumber,
    extension: Option<&str>,
) -> Result<(), Error> {
    let old = svc
        .store
        .list_methods(user.id)
        .await?
        .iter()
        .find(|m| m.kind.phone_slot() == Some(slot))
        .and_then(number_of);
    let methods = svc
        .store
        .save_phone(user.id, slot, number.e164(), extension, svc.now())
        .await?;
    if user.default_method.is_none() {
        if let Some(m) = methods.first() {
            svc.store.update_default_method(user.id, Some(m.id)).await?;
        }
    }
    let event = if old.is_some() {
        Event::PhoneChanged
    } else {
        Event::PhoneAdded
    };
    svc.audit(origin, Line::of(user, event).method(slot.methods()[0]))
        .await;
    if let (PhoneSlot::Mobile, Some(old)) = (slot, old.filter(|o| o != number)) {
        let note = TextMessage {
            to: old.e164().to_string(),
            body: format!(
                "The mobile phone number for your {} account was changed. If you didn't do this, contact your administrator.",
                svc.config.service_name
            ),
            reference: crate::token::random(),
        };
        if let Some(why) = failure(svc.telephony.sms.send(&note)).await {
            tracing::warn!(%why, "could not tell the old number of the change");
        }
    }
    Ok(())
}
