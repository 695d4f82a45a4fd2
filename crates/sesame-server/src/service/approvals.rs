//! Out-of-band approvals: a request reaches the person (the authenticator app now; a phone
//! call later: the `channel`), the sign-in page shows the number and waits, the answer comes
//! back signed and is judged once. The same record serves the second step after a password
//! (`Mfa`) and passwordless phone sign-in (`PhoneSignIn`).
//!
//! Starting a request checks the push budget (DESIGN §7) and the report block; a new request
//! supersedes the user's pending one and the phone is told. Answering is one compare-and-set
//! in the store; completing turns an approval into a session exactly once.

use super::{Line, Origin, Services, UserPolicy};
use crate::error::{Error, Kind};
use sesame_core::audit::{AuditMethod, Event};
use sesame_core::lockout::AttemptGate;
use sesame_core::method::MethodKind;
use sesame_core::policy::{Allowed, AuthenticatorPolicy};
use sesame_core::push::{self, Answer, ApprovalChannel, ChallengeKind, ChallengeState, PushPolicy};
use sesame_proto::device::{self as api, Decision, RespondResponse};
use sesame_store::{
    AuditResult, ChallengeRecord, Device, NewChallenge, SignInRecord, StoreError, User,
};
use std::net::IpAddr;
use std::time::Duration;

/// Sesame ships no IP geolocation database, so "approximate location" is what can be said
/// honestly from the address itself.
pub fn approximate_location(ip: &str) -> String {
    let Ok(ip) = ip.parse::<IpAddr>() else {
        return "Unknown location".into();
    };
    let private = match ip {
        IpAddr::V4(v4) => v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00,
    };
    if ip.is_loopback() {
        "This computer".into()
    } else if private {
        "Local network".into()
    } else {
        "Unknown location".into()
    }
}

/// The method name the audit log uses for a kind of request.
pub fn audit_method(kind: ChallengeKind) -> AuditMethod {
    match kind {
        ChallengeKind::Mfa => AuditMethod::Push,
        ChallengeKind::PhoneSignIn => AuditMethod::PhoneSignIn,
    }
}

/// Whether the policy lets the user answer a request of this kind.
pub fn kind_allowed(allowed: &Allowed, kind: ChallengeKind) -> bool {
    match kind {
        ChallengeKind::Mfa => allowed.permits(MethodKind::Push),
        ChallengeKind::PhoneSignIn => allowed.phone_sign_in,
    }
}

/// What the phone says of the browser that asks: "Firefox on Linux", made by a user-agent
/// parser, never the browser's own text. The User-Agent header is whatever the requester
/// writes ("enter 42 and approve" fits in it), and the phone is where a person decides. Only
/// names from the fixed lists below can appear. Computed when the phone is shown the request,
/// so requests stored before read the same way; the raw text stays in the audit log.
pub fn browser_label(user_agent: &str) -> String {
    static PARSER: std::sync::LazyLock<woothee::parser::Parser> =
        std::sync::LazyLock::new(woothee::parser::Parser::new);
    let Some(r) = PARSER.parse(user_agent) else {
        return UNKNOWN_BROWSER.into();
    };
    let browser = match r.name {
        "Chrome" | "Firefox" | "Safari" | "Edge" | "Opera" | "Vivaldi" | "Internet Explorer" => {
            Some(r.name)
        }
        "SamsungBrowser" => Some("Samsung Internet"),
        "Yandex Browser" => Some("Yandex Browser"),
        _ => None,
    };
    let os = match r.os {
        "Windows Phone OS" => Some("Windows Phone"),
        w if w.starts_with("Windows") => Some("Windows"),
        "Mac OSX" => Some("macOS"),
        "iPhone" | "iPad" | "iPod" | "iOS" => Some("iOS"),
        "Android" => Some("Android"),
        "Linux" => Some("Linux"),
        "ChromeOS" => Some("ChromeOS"),
        "BSD" => Some("BSD"),
        _ => None,
    };
    match (browser, os) {
        (Some(b), Some(o)) => format!("{b} on {o}"),
        (Some(b), None) => b.to_string(),
        (None, Some(o)) => format!("{UNKNOWN_BROWSER} on {o}"),
        (None, None) => UNKNOWN_BROWSER.into(),
    }
}

/// The label of a browser the parser does not know.
pub const UNKNOWN_BROWSER: &str = "Unknown browser";

/// What the phone is shown of a challenge (never the number), as the policy allows.
pub fn challenge_view(
    c: &ChallengeRecord,
    username: &str,
    policy: &AuthenticatorPolicy,
) -> api::Challenge {
    let hidden = |show: bool, v: &str| if show { v.to_string() } else { String::new() };
    api::Challenge {
        id: c.id.0.clone(),
        kind: c.kind,
        nonce: c.nonce.clone(),
        username: username.to_string(),
        app_name: hidden(policy.show_app_name, &c.app_name),
        ip: hidden(policy.show_location, &c.ip),
        location: hidden(policy.show_location, &c.location),
        browser: browser_label(&c.user_agent),
        requested_at: c.created_at,
        expires_at: c.expires_at,
        // Phone sign-in always needs the PIN: it is the second factor.
        pin_required: c.kind == ChallengeKind::PhoneSignIn || policy.pin_required,
    }
}

/// What a sign-in page shows of its latest request: a pending request past its expiry is
/// "expired".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    Pending,
    Expired,
    Approved,
    Denied,
    WrongNumber,
    Reported,
    Superseded,
    Cancelled,
    /// A phone sign-in request no device can approve any more: phone sign-in was turned off
    /// (see [`shown`]). Still pending in the store, but over for the page.
    PhoneSignInOff,
    /// The same, turned off by 10 wrong PINs.
    TooManyWrongPins,
    /// Calls: nobody answered; rejected or hung up; no key in time; the gateway failed.
    NotAnswered,
    Rejected,
    NoKey,
    CallFailed,
    /// Consumed (signed in already) and anything else that is over.
    Over,
}

impl Shown {
    pub fn of(c: &ChallengeRecord, now: i64) -> Self {
        match c.state {
            ChallengeState::Pending if now >= c.expires_at => Shown::Expired,
            ChallengeState::Pending => Shown::Pending,
            ChallengeState::Approved => Shown::Approved,
            ChallengeState::Denied => Shown::Denied,
            ChallengeState::WrongNumber => Shown::WrongNumber,
            ChallengeState::Reported => Shown::Reported,
            ChallengeState::Superseded => Shown::Superseded,
            ChallengeState::Cancelled => Shown::Cancelled,
            ChallengeState::Consumed => Shown::Over,
            ChallengeState::NotAnswered => Shown::NotAnswered,
            ChallengeState::Rejected => Shown::Rejected,
            ChallengeState::NoKey => Shown::NoKey,
            ChallengeState::CallFailed => Shown::CallFailed,
        }
    }

    /// The name the page's status poll answers with.
    pub fn as_str(self) -> &'static str {
        match self {
            Shown::Pending => "pending",
            Shown::Expired => "expired",
            Shown::Approved => "approved",
            Shown::Denied => "denied",
            Shown::WrongNumber => "wrong_number",
            Shown::Reported => "reported",
            Shown::Superseded => "superseded",
            Shown::Cancelled => "cancelled",
            Shown::PhoneSignInOff | Shown::TooManyWrongPins => "phone_sign_in_off",
            Shown::NotAnswered => "not_answered",
            Shown::Rejected => "rejected",
            Shown::NoKey => "no_key",
            Shown::CallFailed => "call_failed",
            Shown::Over => "consumed",
        }
    }

    /// Why a request that is over did not sign anyone in.
    pub fn message(self) -> &'static str {
        match self {
            Shown::Expired => "The request timed out before it was approved.",
            Shown::Denied => "The request was denied on your phone.",
            Shown::WrongNumber => "The number entered on your phone didn't match. The sign-in was not approved.",
            Shown::Reported => "You reported this sign-in as not you. Requests to your phone are now blocked; your administrator has been told.",
            Shown::Superseded => "A newer request was sent to your phone.",
            Shown::Cancelled => "The request was cancelled.",
            Shown::PhoneSignInOff => "Phone sign-in was turned off. Use your password instead.",
            Shown::TooManyWrongPins => "Phone sign-in was turned off after too many wrong PINs. Use your password instead.",
            Shown::NotAnswered => "The call was not answered. Call again, or use a different verification option.",
            Shown::Rejected => "The call was rejected or ended before # was pressed. Call again, or use a different verification option.",
            Shown::NoKey => "No key was pressed in time on the call. Call again and press #, or use a different verification option.",
            Shown::CallFailed => "We couldn't call your phone just now. Use a different verification option, or try again later.",
            _ => "The request is no longer valid.",
        }
    }
}

/// What the page shows of `c`, judged also by the user's devices: a pending phone sign-in
/// request is over once no device can approve it (phone sign-in turned off, by 10 wrong PINs
/// or in the app). The lockout leaves the request pending in the store (it is not this
/// request's doing, and another device could approve it, were one ready), but the page must
/// not wait for an approval that cannot come.
pub async fn shown(svc: &Services, c: &ChallengeRecord) -> Result<Shown, StoreError> {
    let shown = Shown::of(c, svc.now());
    if shown != Shown::Pending || c.kind != ChallengeKind::PhoneSignIn {
        return Ok(shown);
    }
    let devices = svc.store.list_devices(c.user).await?;
    Ok(if devices.iter().any(|d| d.phone_sign_in_ready()) {
        Shown::Pending
    } else if devices.iter().any(|d| d.pin_key_disabled_at.is_some()) {
        Shown::TooManyWrongPins
    } else {
        Shown::PhoneSignInOff
    })
}

/// Wakes the pages waiting on the user's pending phone sign-in requests: phone sign-in was
/// just turned off on a device, which may end them (see [`shown`]).
pub async fn phone_sign_in_changed(svc: &Services, user: &User) -> Result<(), StoreError> {
    for c in svc
        .store
        .list_pending_challenges(user.id, svc.now())
        .await?
    {
        if c.kind == ChallengeKind::PhoneSignIn {
            svc.hub.challenge_changed(&c.id);
        }
    }
    Ok(())
}

/// Why no request of `kind` may be sent to the user from `origin` now, if so. The budget is
/// counted per kind and per browser the user signed in with before (DESIGN §7): a phone
/// sign-in started from a username alone uses up neither the second step's budget nor the
/// budget of the user's own browsers.
pub async fn refusal(
    svc: &Services,
    origin: &Origin,
    user: &User,
    policy: &PushPolicy,
    kind: ChallengeKind,
) -> Result<Option<&'static str>, StoreError> {
    if user.push_blocked_at.is_some() {
        return Ok(Some("Sign-in requests to your phone are blocked because one was reported as not you. Use a different verification option, or contact your administrator."));
    }
    let since = policy.window_start(svc.now(), user.last_signin_at);
    let browser = svc.browsers.recognise(origin, user.id);
    let sent = svc
        .store
        .count_challenges_since(user.id, kind, browser.as_ref().map(|b| &b.0[..]), since)
        .await?;
    if !policy.may_push(sent) {
        return Ok(Some("Too many sign-in requests were sent to your phone. Use a different verification option, or try again later."));
    }
    Ok(None)
}

/// Sends a new request to the user's phone for this sign-in, if allowed. A second step after
/// a password replaces every pending request of the user (an unanswered request never blocks
/// the next attempt); a phone sign-in, which starts from a username alone, replaces only its
/// own earlier request. When it may not be sent, that is audited and the page says why.
pub async fn start(
    svc: &Services,
    origin: &Origin,
    rec: &SignInRecord,
    user: &User,
    kind: ChallengeKind,
) -> Result<(), Error> {
    let up = svc.user_policy(user).await?;
    start_with(svc, origin, rec, user, kind, &up).await
}

/// [`start`], with the user's policy as this request already read it.
pub async fn start_with(
    svc: &Services,
    origin: &Origin,
    rec: &SignInRecord,
    user: &User,
    kind: ChallengeKind,
    up: &UserPolicy,
) -> Result<(), Error> {
    let now = svc.now();
    let policy = &up.push;
    let new = NewChallenge {
        tenant: user.tenant,
        user: user.id,
        signin_id_hash: rec.id_hash.clone(),
        kind,
        channel: ApprovalChannel::App,
        number: push::generate_number(policy.digits, &mut rand::rngs::OsRng),
        // The application asking, when an application sent the person here; else Sesame.
        app_name: crate::service::oidc::application_asking(svc, rec.next_path.as_deref())
            .await
            .unwrap_or_else(|| svc.config.service_name.clone()),
        ip: origin.ip.clone(),
        location: approximate_location(&origin.ip),
        user_agent: origin.user_agent.clone(),
        expires_at: now + policy.lifetime_secs.min(push::MAX_LIFETIME_SECS),
        browser: svc.browsers.recognise(origin, user.id).map(|b| b.0),
        // Checked in the write itself (not before it: sign-ins racing on several nodes would
        // all pass a check made first, and a fraud report may land in between), with the
        // report block; a refusal is audited below.
        budget: Some(sesame_store::Budget {
            limit: policy.max_per_window,
            since: policy.window_start(now, user.last_signin_at),
        }),
    };
    let sent = svc.audit_event(
        origin,
        Line::of(user, Event::PushSent).method(audit_method(kind)),
    );
    let (challenge, superseded) = match svc.store.create_challenge(new, now, Some(&sent)).await {
        Ok(made) => made,
        Err(StoreError::Refused(r)) => {
            let why = match r {
                sesame_store::Refusal::Blocked => "reported_block",
                sesame_store::Refusal::Budget => "rate_limited",
            };
            let line = Line::of(user, Event::PushNotSent)
                .method(audit_method(kind))
                .failed(why);
            svc.audit(origin, line).await;
            tracing::info!(user = %user.username, reason = why, "push not sent");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    for id in superseded {
        svc.hub.closed(user.id, id, "superseded");
    }
    svc.hub.publish(
        user.id,
        api::DeviceEvent::Challenge(challenge_view(
            &challenge,
            &user.username,
            &up.policy.authenticator,
        )),
    );
    Ok(())
}

/// Cancels all the user's pending requests (an administrator acted, or a device was
/// removed): none of them stays answerable.
pub async fn cancel(svc: &Services, user: &User) -> Result<(), StoreError> {
    for id in svc.store.cancel_pending_challenges(user.id).await? {
        svc.hub.closed(user.id, id, "cancelled");
    }
    Ok(())
}

/// Cancels the pending requests of one sign-in (it moved to another method, or the user
/// walked away from it), and no other: a sign-in withdraws only what it sent.
pub async fn cancel_own(svc: &Services, rec: &SignInRecord, user: &User) -> Result<(), StoreError> {
    for id in svc.store.cancel_signin_challenges(&rec.id_hash).await? {
        svc.hub.closed(user.id, id, "cancelled");
    }
    Ok(())
}

/// The latest request of a sign-in, if any.
pub async fn latest(
    svc: &Services,
    rec: &SignInRecord,
) -> Result<Option<ChallengeRecord>, StoreError> {
    svc.store
        .find_latest_challenge_for_signin(&rec.id_hash)
        .await
}

/// How often a page waiting on a call looks at the store.
const CALL_POLL: Duration = Duration::from_millis(500);

/// Waits (at most `longest`, and not past the request's expiry) until the sign-in's latest
/// request is over for the page ([`shown`]), and returns what the page shows then.
pub async fn wait(
    svc: &Services,
    rec: &SignInRecord,
    current: ChallengeRecord,
    longest: Duration,
) -> Shown {
    let judge = |c: ChallengeRecord| async move {
        let c = match latest(svc, rec).await {
            Ok(Some(now)) => now,
            _ => c,
        };
        let s = match shown(svc, &c).await {
            Ok(s) => s,
            Err(_) => Shown::of(&c, svc.now()),
        };
        (c, s)
    };
    // A request the caller just read as over stays over: nothing to wait for or re-read.
    let over = Shown::of(&current, svc.now());
    if over != Shown::Pending {
        return over;
    }
    // Register the waiter first, then re-read (the devices too), then sleep: no change can
    // slip in between.
    let waiter = svc.hub.waiter(&current.id);
    let woken = waiter.notify().notified();
    tokio::pin!(woken);
    woken.as_mut().enable();
    let (c, s) = judge(current).await;
    if s != Shown::Pending {
        return s;
    }
    let until_expiry =
        Duration::from_secs((c.expires_at - svc.now()).clamp(0, longest.as_secs() as i64) as u64);
    let wait = until_expiry.min(longest);
    if c.channel == ApprovalChannel::Voice {
        // A call's outcome may be written by another process (`sesame outbox answer`, a
        // gateway webhook on another node), which cannot wake this one: look again often.
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let step = deadline.saturating_duration_since(tokio::time::Instant::now());
            if step.is_zero() {
                break;
            }
            if tokio::time::timeout(step.min(CALL_POLL), woken.as_mut())
                .await
                .is_ok()
            {
                break;
            }
            let (_, s) = judge(c.clone()).await;
            if s != Shown::Pending {
                return s;
            }
        }
        return judge(c).await.1;
    }
    let _ = tokio::time::timeout(wait, woken).await;
    judge(c).await.1
}

/// Re-judges an approved request just before it becomes a session: the policy must still
/// allow its kind, and the device that approved must still be registered (and, for phone
/// sign-in, still have it on).
pub async fn still_valid(
    svc: &Services,
    user: &User,
    c: &ChallengeRecord,
) -> Result<bool, StoreError> {
    let up = svc.user_policy(user).await?;
    if c.channel == ApprovalChannel::Voice {
        // A call approved with #: the policy must still allow calls, and the user still have
        // the phone that was called.
        return Ok(up.allowed.voice
            && svc
                .store
                .list_methods(user.id)
                .await?
                .iter()
                .any(|m| matches!(m.kind, MethodKind::Voice | MethodKind::OfficeVoice)));
    }
    if !kind_allowed(&up.allowed, c.kind) {
        return Ok(false);
    }
    let devices = svc.store.list_devices(user.id).await?;
    let Some(d) = devices.iter().find(|d| Some(d.row_id) == c.answered_by) else {
        return Ok(false);
    };
    Ok(c.kind == ChallengeKind::Mfa || d.phone_sign_in_ready())
}

/// An answer from the app, already checked to be signed by `device` of `user`.
pub struct AppAnswer<'a> {
    pub user: &'a User,
    pub device: &'a Device,
    pub challenge_id: &'a str,
    pub decision: Decision,
    pub number: &'a str,
    pub signature: &'a str,
    pub pin_signature: Option<&'a str>,
}

/// Judges an answer from the phone: the request must be the user's and pending, the
/// signature the device's, the kind allowed by policy, the PIN right when required; then the
/// typed number decides, and the store makes pending -> answered one compare-and-set.
pub async fn answer(
    svc: &Services,
    origin: &Origin,
    a: AppAnswer<'_>,
) -> Result<RespondResponse, Error> {
    let user = a.user;
    let not_found = || {
        Error::new(
            Kind::NotFound,
            "unknown_request",
            "This sign-in request does not exist.",
        )
    };
    let c = svc
        .store
        .find_challenge(&a.challenge_id.into())
        .await?
        // A call's request is answered by the key pressed on the call, never by the app.
        .filter(|c| c.user == user.id && c.channel == ApprovalChannel::App)
        .ok_or_else(not_found)?;
    let key = super::devices::verifying_key(a.device).ok_or_else(not_found)?;
    let message = api::approval_message(
        c.id.as_str(),
        &c.nonce,
        a.decision,
        a.number,
        a.device.id.as_str(),
    );
    if !super::devices::verify(&key, &message, a.signature) {
        return Err(Error::new(
            Kind::Unauthorized,
            "bad_signature",
            "The answer's signature is not valid.",
        ));
    }
    let now = svc.now();
    if !push::is_answerable(c.state, c.expires_at, now) {
        let msg = match c.state {
            ChallengeState::Pending => "This sign-in request has expired.",
            ChallengeState::Superseded => "This sign-in request was replaced by a newer one.",
            ChallengeState::Cancelled => "This sign-in request was cancelled.",
            _ => "This sign-in request was already answered.",
        };
        return Err(Error::new(Kind::Conflict, "not_pending", msg));
    }
    let line = || Line::of(user, Event::PushAnswer).method(AuditMethod::Push);
    let answer = match a.decision {
        Decision::Approve => Answer::Approve,
        Decision::Deny => Answer::Deny,
        Decision::Report => Answer::Report,
    };
    if answer == Answer::Approve {
        let up = svc.user_policy(user).await?;
        if !kind_allowed(&up.allowed, c.kind) {
            svc.audit(origin, line().failed("not_allowed")).await;
            let msg = match c.kind {
                ChallengeKind::PhoneSignIn => super::policy::PHONE_SIGN_IN_NOT_ALLOWED,
                ChallengeKind::Mfa => {
                    "Your organisation's policy no longer allows approving sign-ins with this app."
                }
            };
            return Err(Error::new(Kind::Forbidden, "not_allowed", msg));
        }
        if c.kind == ChallengeKind::PhoneSignIn && a.device.pin_key_disabled_at.is_some() {
            return Err(super::devices::pin_disabled());
        }
        if c.kind == ChallengeKind::PhoneSignIn && !a.device.phone_sign_in_ready() {
            return Err(Error::new(
                Kind::Forbidden,
                "phone_sign_in_off",
                "Phone sign-in is not turned on for this device. Turn it on in the app, or use your password.",
            ));
        }
        if c.kind == ChallengeKind::PhoneSignIn || up.policy.authenticator.pin_required {
            super::devices::check_pin(svc, origin, user, a.device, &message, a.pin_signature)
                .await?;
        }
        // Counted before judging, per user and method, like verification codes.
        let gate = svc
            .store
            .reserve_attempt(user.id, MethodKind::Push, &svc.config.lockout, now)
            .await?;
        if gate != AttemptGate::Open {
            svc.audit(origin, line().failed("locked")).await;
            return Err(Error::new(
                Kind::TooManyRequests,
                "locked",
                "Too many wrong numbers. Approvals are paused for this account for a while.",
            ));
        }
    }
    let to = push::judge(answer, &c.number, a.number);
    let (outcome, message, result, event, reason) = match to {
        ChallengeState::Approved => (
            "approved",
            "Approved. Return to the sign-in page.",
            AuditResult::Success,
            Event::PushAnswer,
            "approved",
        ),
        ChallengeState::WrongNumber => (
            "wrong_number",
            "The number didn't match. The sign-in was not approved.",
            AuditResult::Failure,
            Event::PushAnswer,
            "wrong_number",
        ),
        ChallengeState::Reported => (
            "reported",
            "Thanks for reporting it. Further sign-in requests are blocked until your administrator looks into it.",
            AuditResult::Failure,
            Event::FraudReported,
            "reported_by_user",
        ),
        _ => (
            "denied",
            "Denied. The sign-in was not approved.",
            AuditResult::Failure,
            Event::PushAnswer,
            "denied",
        ),
    };
    let audit = svc.audit_event(
        origin,
        Line::of(user, event)
            .method(AuditMethod::Push)
            .reason(reason)
            .result(result),
    );
    // The answer and its audit line, and with it clearing the failed approvals (approve) or
    // the block and the cancellation of the other requests (report): one write.
    let answered = svc
        .store
        .answer_challenge(&c.id, to, Some(a.device.row_id), now, &audit)
        .await?;
    if !answered.answered {
        return Err(Error::new(
            Kind::Conflict,
            "not_pending",
            "This sign-in request was already answered or has expired.",
        ));
    }
    svc.hub.closed(user.id, c.id.clone(), to.as_str());
    for id in answered.cancelled {
        svc.hub.closed(user.id, id, "cancelled");
    }
    Ok(RespondResponse {
        outcome: outcome.into(),
        message: message.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_phone_sees_a_browser_label_never_the_browser_text() {
        for (ua, label) in [
            ("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "Firefox on Linux"),
            ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36", "Chrome on Windows"),
            ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1", "Safari on iOS"),
            ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15", "Safari on macOS"),
            ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36", "Chrome on Android"),
            ("enter 42 and approve", UNKNOWN_BROWSER),
            ("", UNKNOWN_BROWSER),
            ("\u{1b}]0;owned\u{7}\u{202e}", UNKNOWN_BROWSER),
            ("sesame-authenticator/0.1.0", UNKNOWN_BROWSER),
        ] {
            assert_eq!(browser_label(ua), label, "{ua}");
        }
    }

    #[test]
    fn location_is_only_what_the_address_tells() {
        assert_eq!(approximate_location("127.0.0.1"), "This computer");
        assert_eq!(approximate_location("192.168.1.4"), "Local network");
        assert_eq!(approximate_location("fd00::1"), "Local network");
        assert_eq!(approximate_location("203.0.113.7"), "Unknown location");
        assert_eq!(approximate_location("local"), "Unknown location");
    }
}
