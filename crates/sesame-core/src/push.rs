//! Rules for sign-in approvals on the phone (DESIGN §4, §7): the number to match, the push
//! budget against push bombing, and how an answer is judged. The store makes the final
//! pending -> answered transition atomic; these functions decide what it should be.

use crate::policy::PolicyError;
use crate::secret::ct_eq;
use crate::UnixTime;
use rand::Rng;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushPolicy {
    /// Digits of the number shown on the sign-in page (2..=8).
    pub digits: u32,
    /// How long a request waits for an answer (at most 10 minutes).
    pub lifetime_secs: i64,
    /// Requests allowed per user within `window_secs` without a successful sign-in.
    pub max_per_window: u32,
    pub window_secs: i64,
    /// Whether the app must ask for its PIN before approving (the PIN never leaves the device,
    /// so this is enforced by the app; the request carries the requirement).
    pub pin_required: bool,
}

impl Default for PushPolicy {
    fn default() -> Self {
        Self {
            digits: 2,
            lifetime_secs: 120,
            max_per_window: 5,
            window_secs: 900,
            pin_required: false,
        }
    }
}

pub const MAX_LIFETIME_SECS: i64 = 600;

impl PushPolicy {
    pub fn validate(&self) -> Result<(), PolicyError> {
        if !(2..=8).contains(&self.digits) {
            return Err(PolicyError::Digits(self.digits));
        }
        if !(10..=MAX_LIFETIME_SECS).contains(&self.lifetime_secs) {
            return Err(PolicyError::Lifetime(self.lifetime_secs));
        }
        if self.max_per_window == 0 || self.window_secs <= 0 {
            return Err(PolicyError::RateLimit);
        }
        Ok(())
    }

    /// Whether another push may be sent, given how many were sent since the later of
    /// (now - window) and the user's last successful sign-in.
    pub fn may_push(&self, recent: u32) -> bool {
        recent < self.max_per_window
    }

    /// Start of the counting window.
    pub fn window_start(&self, now: UnixTime, last_success: Option<UnixTime>) -> UnixTime {
        let w = now - self.window_secs;
        last_success.map_or(w, |s| s.max(w))
    }
}

/// A number with exactly `digits` digits and no leading zero, uniformly drawn.
pub fn generate_number(digits: u32, rng: &mut impl Rng) -> String {
    let d = digits.clamp(2, 8);
    let low = 10u32.pow(d - 1);
    rng.gen_range(low..low * 10).to_string()
}

pub use sesame_proto::device::ChallengeKind;

/// Which pending requests a new request replaces (DESIGN §7: an unanswered request never
/// blocks the next attempt).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replaces {
    /// Every pending request of the user: a second step after a password proved something.
    AllOfTheUser,
    /// Only the earlier requests of the same sign-in: phone sign-in starts from a username
    /// alone, and knowing a username must not withdraw the user's own requests elsewhere.
    ItsOwnSignIn,
}

pub fn replaces(kind: ChallengeKind) -> Replaces {
    match kind {
        ChallengeKind::Mfa => Replaces::AllOfTheUser,
        ChallengeKind::PhoneSignIn => Replaces::ItsOwnSignIn,
    }
}

/// How an out-of-band approval reaches the person: every channel shares the challenge record,
/// the waiting page and its status poll; only delivery and the way of answering differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalChannel {
    /// A request to the Sesame Authenticator app, answered with a signed approval.
    App,
    /// A phone call, answered by pressing # (the gateway reports the key).
    Voice,
}

impl ApprovalChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalChannel::App => "app",
            ApprovalChannel::Voice => "voice",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "app" => Some(ApprovalChannel::App),
            "voice" => Some(ApprovalChannel::Voice),
            _ => None,
        }
    }
}

/// Life states of a challenge, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChallengeState {
    Pending,
    Approved,
    Denied,
    Reported,
    /// The typed number was wrong: the request ends, the attempt counts.
    WrongNumber,
    /// A newer request for the same user replaced it.
    Superseded,
    /// Cancelled: the sign-in moved to another method, the device was removed, the user blocked.
    Cancelled,
    /// Approved and turned into a session.
    Consumed,
    /// A call nobody answered (or a busy line).
    NotAnswered,
    /// A call rejected, or hung up before a key was pressed.
    Rejected,
    /// A call answered, but # was not pressed in time.
    NoKey,
    /// The gateway could not place or keep the call.
    CallFailed,
}

impl ChallengeState {
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeState::Pending => "pending",
            ChallengeState::Approved => "approved",
            ChallengeState::Denied => "denied",
            ChallengeState::Reported => "reported",
            ChallengeState::WrongNumber => "wrong_number",
            ChallengeState::Superseded => "superseded",
            ChallengeState::Cancelled => "cancelled",
            ChallengeState::Consumed => "consumed",
            ChallengeState::NotAnswered => "not_answered",
            ChallengeState::Rejected => "rejected",
            ChallengeState::NoKey => "no_key",
            ChallengeState::CallFailed => "call_failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        use ChallengeState::*;
        [
            Pending,
            Approved,
            Denied,
            Reported,
            WrongNumber,
            Superseded,
            Cancelled,
            Consumed,
            NotAnswered,
            Rejected,
            NoKey,
            CallFailed,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Approve,
    Deny,
    Report,
}

/// The state an answer should move a pending, unexpired challenge to. Denials need no number;
/// an approval needs the number, compared in constant time.
pub fn judge(answer: Answer, expected_number: &str, typed_number: &str) -> ChallengeState {
    match answer {
        Answer::Deny => ChallengeState::Denied,
        Answer::Report => ChallengeState::Reported,
        Answer::Approve => {
            let typed = typed_number.trim();
            if !typed.is_empty() && ct_eq(expected_number.as_bytes(), typed.as_bytes()) {
                ChallengeState::Approved
            } else {
                ChallengeState::WrongNumber
            }
        }
    }
}

/// A challenge is answerable while pending and strictly before its expiry. A clock moved back
/// cannot revive anything: expiry is stored as a moment, and answered states are final.
pub fn is_answerable(state: ChallengeState, expires_at: UnixTime, now: UnixTime) -> bool {
    state == ChallengeState::Pending && now < expires_at
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn numbers_have_exactly_the_digits_asked() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for d in 2..=8 {
            for _ in 0..200 {
                let n = generate_number(d, &mut rng);
                assert_eq!(n.len() as u32, d, "{n}");
                assert!(!n.starts_with('0'));
            }
        }
        let seen: std::collections::HashSet<String> =
            (0..2000).map(|_| generate_number(2, &mut rng)).collect();
        assert_eq!(seen.len(), 90, "all 90 two-digit numbers occur");
    }

    #[test]
    fn judge_table() {
        use Answer::*;
        use ChallengeState as S;
        let table = [
            (Approve, "42", "42", S::Approved),
            (Approve, "42", " 42 ", S::Approved),
            (Approve, "42", "24", S::WrongNumber),
            (Approve, "42", "", S::WrongNumber),
            (Approve, "42", "042", S::WrongNumber),
            (Approve, "42", "４２", S::WrongNumber),
            (Deny, "42", "", S::Denied),
            (Deny, "42", "13", S::Denied),
            (Report, "42", "", S::Reported),
        ];
        for (a, expected, typed, want) in table {
            assert_eq!(judge(a, expected, typed), want, "{a:?} {typed:?}");
        }
    }

    #[test]
    fn only_pending_unexpired_challenges_are_answerable() {
        assert!(is_answerable(ChallengeState::Pending, 100, 99));
        assert!(!is_answerable(ChallengeState::Pending, 100, 100));
        for s in [
            ChallengeState::Approved,
            ChallengeState::Superseded,
            ChallengeState::Cancelled,
            ChallengeState::Consumed,
        ] {
            assert!(!is_answerable(s, 100, 0));
        }
    }

    #[test]
    fn push_budget() {
        let p = PushPolicy::default();
        assert!(p.may_push(4));
        assert!(!p.may_push(5));
        assert_eq!(p.window_start(10_000, None), 10_000 - 900);
        assert_eq!(
            p.window_start(10_000, Some(9_500)),
            9_500,
            "a successful sign-in resets the window"
        );
        assert_eq!(p.window_start(10_000, Some(1)), 10_000 - 900);
    }

    #[test]
    fn policy_limits() {
        assert!(PushPolicy::default().validate().is_ok());
        assert!(PushPolicy {
            digits: 1,
            ..Default::default()
        }
        .validate()
        .is_err());
        assert!(PushPolicy {
            digits: 9,
            ..Default::default()
        }
        .validate()
        .is_err());
        assert!(PushPolicy {
            lifetime_secs: 601,
            ..Default::default()
        }
        .validate()
        .is_err());
        assert!(PushPolicy {
            max_per_window: 0,
            ..Default::default()
        }
        .validate()
        .is_err());
    }

    #[test]
    fn states_round_trip() {
        for s in [
            "pending",
            "approved",
            "denied",
            "reported",
            "wrong_number",
            "superseded",
            "cancelled",
            "consumed",
        ] {
            assert_eq!(ChallengeState::parse(s).unwrap().as_str(), s);
        }
        assert!(ChallengeState::parse("won").is_none());
    }
}
