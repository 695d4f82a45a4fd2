//! The authentication methods policy of a tenant (DESIGN §1, issue 4): which users may use the
//! authenticator app and how, and who must pass a second step.
//!
//! Evaluation is pure: the store supplies the policy and the user's groups, and every page and
//! API asks [`MethodsPolicy::allowed`] at the moment of use. Nothing is copied onto users or
//! devices, so a policy change takes effect on the next request, and is undone as easily.

use crate::push::{PushPolicy, MAX_LIFETIME_SECS};
use crate::GroupId;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What a target may do with the authenticator app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthenticatorMode {
    /// Notifications, verification codes and phone sign-in.
    Any,
    /// Notifications and verification codes; no phone sign-in.
    Push,
    /// Phone sign-in only.
    Passwordless,
}

impl AuthenticatorMode {
    pub const ALL: [AuthenticatorMode; 3] = [
        AuthenticatorMode::Any,
        AuthenticatorMode::Push,
        AuthenticatorMode::Passwordless,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuthenticatorMode::Any => "any",
            AuthenticatorMode::Push => "push",
            AuthenticatorMode::Passwordless => "passwordless",
        }
    }

    fn allowed(self) -> Allowed {
        match self {
            AuthenticatorMode::Any => Allowed {
                push: true,
                codes: true,
                phone_sign_in: true,
                ..Allowed::default()
            },
            AuthenticatorMode::Push => Allowed {
                push: true,
                codes: true,
                phone_sign_in: false,
                ..Allowed::default()
            },
            AuthenticatorMode::Passwordless => Allowed {
                push: false,
                codes: false,
                phone_sign_in: true,
                ..Allowed::default()
            },
        }
    }
}

impl fmt::Display for AuthenticatorMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuthenticatorMode {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, PolicyError> {
        AuthenticatorMode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| PolicyError::UnknownMode(s.to_owned()))
    }
}

/// Why a policy (or an edit of one) is refused. The messages are shown to administrators on
/// the command line and, capitalised, in the admin console.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("unknown mode {0:?} (use any, push or passwordless)")]
    UnknownMode(String),
    #[error("number-match digits must be 2 to 8, not {0}")]
    Digits(u32),
    #[error("push lifetime must be 10 to {MAX_LIFETIME_SECS} seconds, not {0}")]
    Lifetime(i64),
    #[error("the push rate limit must allow at least one push per window")]
    RateLimit,
    #[error("a group is targeted twice; give it one mode")]
    GroupTargetedTwice,
    #[error("no group named {0:?}")]
    NoSuchGroup(String),
    #[error("name at least one group, or `all`")]
    NoTargetGroups,
    #[error("with group targets, give each group its mode: --targets GROUP=MODE")]
    ModeWithGroupTargets,
    #[error("--mfa-required takes all, nobody or group names")]
    NoMfaGroups,
}

/// A group and the mode its members get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupTarget {
    pub group: GroupId,
    pub mode: AuthenticatorMode,
}

/// Who the authenticator app is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Targets {
    All { mode: AuthenticatorMode },
    Groups { groups: Vec<GroupTarget> },
}

/// Who must pass a second step after a password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MfaRequirement {
    /// Every user; users without a method are asked to add one right after signing in.
    All,
    /// Members of these groups.
    Groups { groups: Vec<GroupId> },
    /// Nobody is forced; users who added methods still use them.
    Nobody,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthenticatorPolicy {
    pub enabled: bool,
    pub targets: Targets,
    /// Digits of the number shown on the sign-in page (2..=8).
    pub digits: u32,
    pub lifetime_secs: i64,
    /// Whether approving a second step needs the app PIN (phone sign-in always does).
    pub pin_required: bool,
    /// Whether requests show the application's name.
    pub show_app_name: bool,
    /// Whether requests show the IP address and approximate location.
    pub show_location: bool,
}

/// Text message or phone call verification: on or off, for everyone or for groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhoneMethodPolicy {
    pub enabled: bool,
    /// `None`: all users; else members of these groups.
    pub groups: Option<Vec<GroupId>>,
}

impl Default for PhoneMethodPolicy {
    /// On for all users: a number still has to be added (and proved) by its owner.
    fn default() -> Self {
        PhoneMethodPolicy {
            enabled: true,
            groups: None,
        }
    }
}

impl PhoneMethodPolicy {
    fn applies(&self, groups: &[GroupId]) -> bool {
        self.enabled
            && match &self.groups {
                None => true,
                Some(g) => g.iter().any(|x| groups.contains(x)),
            }
    }

    fn describe(&self, name: &dyn Fn(GroupId) -> String) -> String {
        match (&self.enabled, &self.groups) {
            (false, _) => "off".into(),
            (true, None) => "all users".into(),
            (true, Some(g)) => {
                let list: Vec<String> = g.iter().map(|g| name(*g)).collect();
                format!("groups [{}]", list.join(", "))
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodsPolicy {
    pub authenticator: AuthenticatorPolicy,
    pub mfa_required: MfaRequirement,
    /// Codes by text message (absent in policies saved before it existed: on for all).
    #[serde(default)]
    pub sms: PhoneMethodPolicy,
    /// Phone calls, to mobile and office phones.
    #[serde(default)]
    pub voice: PhoneMethodPolicy,
}

/// What a user may do with the authenticator app (and phones) under the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Allowed {
    pub push: bool,
    pub codes: bool,
    pub phone_sign_in: bool,
    pub sms: bool,
    pub voice: bool,
}

impl Allowed {
    /// Whether a second step of this kind may be used.
    pub fn permits(&self, kind: crate::method::MethodKind) -> bool {
        use crate::method::MethodKind as K;
        match kind {
            K::Push => self.push,
            K::Totp => self.codes,
            K::Sms => self.sms,
            K::Voice | K::OfficeVoice => self.voice,
        }
    }

    fn union(self, o: Allowed) -> Allowed {
        Allowed {
            push: self.push || o.push,
            codes: self.codes || o.codes,
            phone_sign_in: self.phone_sign_in || o.phone_sign_in,
            sms: self.sms || o.sms,
            voice: self.voice || o.voice,
        }
    }
}

impl MethodsPolicy {
    /// The policy of a tenant nobody has configured yet: the app for everyone in every mode,
    /// a second step for those who set one up; number, lifetime and PIN from the server's
    /// `[server.push]` settings.
    pub fn initial(push: &PushPolicy) -> Self {
        MethodsPolicy {
            authenticator: AuthenticatorPolicy {
                enabled: true,
                targets: Targets::All {
                    mode: AuthenticatorMode::Any,
                },
                digits: push.digits,
                lifetime_secs: push.lifetime_secs,
                pin_required: push.pin_required,
                show_app_name: true,
                show_location: true,
            },
            mfa_required: MfaRequirement::Nobody,
            sms: PhoneMethodPolicy::default(),
            voice: PhoneMethodPolicy::default(),
        }
    }

    /// What a member of `groups` may do. A user in several targeted groups gets every feature
    /// any of their groups allows.
    pub fn allowed(&self, groups: &[GroupId]) -> Allowed {
        let phones = Allowed {
            sms: self.sms.applies(groups),
            voice: self.voice.applies(groups),
            ..Allowed::default()
        };
        let a = &self.authenticator;
        if !a.enabled {
            return phones;
        }
        let app = match &a.targets {
            Targets::All { mode } => mode.allowed(),
            Targets::Groups { groups: targets } => targets
                .iter()
                .filter(|t| groups.contains(&t.group))
                .fold(Allowed::default(), |acc, t| acc.union(t.mode.allowed())),
        };
        app.union(phones)
    }

    /// Whether a member of `groups` must pass a second step after a password.
    pub fn mfa_required(&self, groups: &[GroupId]) -> bool {
        match &self.mfa_required {
            MfaRequirement::All => true,
            MfaRequirement::Nobody => false,
            MfaRequirement::Groups { groups: g } => g.iter().any(|x| groups.contains(x)),
        }
    }

    /// Number, lifetime and PIN of push requests, with the server's rate limits.
    pub fn push(&self, server: &PushPolicy) -> PushPolicy {
        PushPolicy {
            digits: self.authenticator.digits,
            lifetime_secs: self.authenticator.lifetime_secs,
            pin_required: self.authenticator.pin_required,
            ..*server
        }
    }

    /// Every group the policy names (a group in use cannot be removed unnoticed).
    pub fn groups(&self) -> Vec<GroupId> {
        let mut out = Vec::new();
        if let Targets::Groups { groups } = &self.authenticator.targets {
            out.extend(groups.iter().map(|t| t.group));
        }
        if let MfaRequirement::Groups { groups } = &self.mfa_required {
            out.extend(groups.iter().copied());
        }
        for p in [&self.sms, &self.voice] {
            if let Some(g) = &p.groups {
                out.extend(g.iter().copied());
            }
        }
        out.sort_by_key(|g| g.0);
        out.dedup();
        out
    }

    /// "field: old -> new" for every setting that differs, for the audit log. `name` turns a
    /// group id into what an administrator recognises.
    pub fn describe_changes(
        &self,
        new: &MethodsPolicy,
        name: &dyn Fn(GroupId) -> String,
    ) -> String {
        let targets = |t: &Targets| match t {
            Targets::All { mode } => format!("all users ({mode})"),
            Targets::Groups { groups } => {
                let list: Vec<String> = groups
                    .iter()
                    .map(|g| format!("{}={}", name(g.group), g.mode))
                    .collect();
                format!("groups [{}]", list.join(", "))
            }
        };
        let mfa = |m: &MfaRequirement| match m {
            MfaRequirement::All => "all users".to_string(),
            MfaRequirement::Nobody => "nobody".to_string(),
            MfaRequirement::Groups { groups } => {
                let list: Vec<String> = groups.iter().map(|g| name(*g)).collect();
                format!("groups [{}]", list.join(", "))
            }
        };
        let (a, b) = (&self.authenticator, &new.authenticator);
        let mut out = Vec::new();
        let mut diff = |field: &str, old: String, new: String| {
            if old != new {
                out.push(format!("{field}: {old} -> {new}"));
            }
        };
        diff(
            "authenticator.enabled",
            a.enabled.to_string(),
            b.enabled.to_string(),
        );
        diff(
            "authenticator.targets",
            targets(&a.targets),
            targets(&b.targets),
        );
        diff("digits", a.digits.to_string(), b.digits.to_string());
        diff(
            "lifetime_secs",
            a.lifetime_secs.to_string(),
            b.lifetime_secs.to_string(),
        );
        diff(
            "pin_required",
            a.pin_required.to_string(),
            b.pin_required.to_string(),
        );
        diff(
            "show_app_name",
            a.show_app_name.to_string(),
            b.show_app_name.to_string(),
        );
        diff(
            "show_location",
            a.show_location.to_string(),
            b.show_location.to_string(),
        );
        diff(
            "mfa_required",
            mfa(&self.mfa_required),
            mfa(&new.mfa_required),
        );
        diff("sms", self.sms.describe(name), new.sms.describe(name));
        diff("voice", self.voice.describe(name), new.voice.describe(name));
        if out.is_empty() {
            "no change".into()
        } else {
            out.join("; ")
        }
    }

    pub fn validate(&self) -> Result<(), PolicyError> {
        let a = &self.authenticator;
        if !(2..=8).contains(&a.digits) {
            return Err(PolicyError::Digits(a.digits));
        }
        if !(10..=MAX_LIFETIME_SECS).contains(&a.lifetime_secs) {
            return Err(PolicyError::Lifetime(a.lifetime_secs));
        }
        if let Targets::Groups { groups } = &a.targets {
            for (i, t) in groups.iter().enumerate() {
                if groups[..i].iter().any(|o| o.group == t.group) {
                    return Err(PolicyError::GroupTargetedTwice);
                }
            }
        }
        for p in [&self.sms, &self.voice] {
            if p.groups.as_ref().is_some_and(|g| g.is_empty()) {
                return Err(PolicyError::NoTargetGroups);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AuthenticatorMode::*;

    const G1: GroupId = GroupId(1);
    const G2: GroupId = GroupId(2);

    fn policy(enabled: bool, targets: Targets) -> MethodsPolicy {
        let mut p = MethodsPolicy::initial(&PushPolicy::default());
        p.authenticator.enabled = enabled;
        p.authenticator.targets = targets;
        p
    }

    /// What the app allows, with texts and calls on for all (the initial policy's).
    fn allowed(push: bool, codes: bool, phone_sign_in: bool) -> Allowed {
        Allowed {
            push,
            codes,
            phone_sign_in,
            sms: true,
            voice: true,
        }
    }

    /// Every mode x target x membership, against the table written out by hand.
    #[test]
    fn evaluation_table() {
        let none = allowed(false, false, false);
        let per_mode = |m: AuthenticatorMode| match m {
            Any => allowed(true, true, true),
            Push => allowed(true, true, false),
            Passwordless => allowed(false, false, true),
        };
        let memberships: [&[GroupId]; 4] = [&[], &[G1], &[G2], &[G1, G2]];
        for mode in AuthenticatorMode::ALL {
            for groups in memberships {
                // All users: membership does not matter.
                let p = policy(true, Targets::All { mode });
                assert_eq!(p.allowed(groups), per_mode(mode), "all/{mode}/{groups:?}");
                // Switched off: nothing, whatever the target.
                let p = policy(false, Targets::All { mode });
                assert_eq!(p.allowed(groups), none, "off/{mode}/{groups:?}");
                // Group G1 targeted: only its members.
                let t = Targets::Groups {
                    groups: vec![GroupTarget { group: G1, mode }],
                };
                let want = if groups.contains(&G1) {
                    per_mode(mode)
                } else {
                    none
                };
                assert_eq!(policy(true, t.clone()).allowed(groups), want);
                assert_eq!(policy(false, t).allowed(groups), none);
            }
        }
    }

    #[test]
    fn members_of_several_groups_get_the_union() {
        let p = policy(
            true,
            Targets::Groups {
                groups: vec![
                    GroupTarget {
                        group: G1,
                        mode: Push,
                    },
                    GroupTarget {
                        group: G2,
                        mode: Passwordless,
                    },
                ],
            },
        );
        assert_eq!(p.allowed(&[G1]), allowed(true, true, false));
        assert_eq!(p.allowed(&[G2]), allowed(false, false, true));
        assert_eq!(p.allowed(&[G1, G2]), allowed(true, true, true));
        assert_eq!(p.allowed(&[]), allowed(false, false, false));
        assert_eq!(p.groups(), vec![G1, G2]);
    }

    #[test]
    fn texts_and_calls_follow_their_own_switches() {
        use crate::method::MethodKind as K;
        let mut p = policy(false, Targets::All { mode: Any });
        assert_eq!(p.allowed(&[]), allowed(false, false, false));
        p.sms = PhoneMethodPolicy {
            enabled: true,
            groups: Some(vec![G1]),
        };
        p.voice.enabled = false;
        assert!(p.allowed(&[G1]).permits(K::Sms));
        assert!(!p.allowed(&[G2]).permits(K::Sms));
        for g in [&[][..], &[G1][..]] {
            let a = p.allowed(g);
            assert!(!a.permits(K::Voice) && !a.permits(K::OfficeVoice));
        }
        assert_eq!(p.groups(), vec![G1]);
        let name = |g: GroupId| format!("group{g}");
        let old = policy(false, Targets::All { mode: Any });
        assert_eq!(
            old.describe_changes(&p, &name),
            "sms: all users -> groups [group1]; voice: all users -> off"
        );
        p.sms.groups = Some(vec![]);
        assert_eq!(p.validate(), Err(PolicyError::NoTargetGroups));
    }

    #[test]
    fn policies_saved_before_phones_existed_allow_them_for_all() {
        let mut v = serde_json::to_value(MethodsPolicy::initial(&PushPolicy::default())).unwrap();
        v.as_object_mut().unwrap().remove("sms");
        v.as_object_mut().unwrap().remove("voice");
        let p: MethodsPolicy = serde_json::from_value(v).unwrap();
        assert_eq!(p.sms, PhoneMethodPolicy::default());
        assert!(p.allowed(&[]).sms && p.allowed(&[]).voice);
    }

    #[test]
    fn mfa_requirement_table() {
        let mut p = policy(true, Targets::All { mode: Any });
        for (req, groups, want) in [
            (MfaRequirement::All, &[][..], true),
            (MfaRequirement::Nobody, &[G1][..], false),
            (
                MfaRequirement::Groups { groups: vec![G1] },
                &[G1, G2][..],
                true,
            ),
            (
                MfaRequirement::Groups { groups: vec![G1] },
                &[G2][..],
                false,
            ),
            (MfaRequirement::Groups { groups: vec![G1] }, &[][..], false),
        ] {
            p.mfa_required = req.clone();
            assert_eq!(p.mfa_required(groups), want, "{req:?} {groups:?}");
        }
    }

    #[test]
    fn validation_refuses_bad_numbers_and_double_targets() {
        let mut p = MethodsPolicy::initial(&PushPolicy::default());
        assert!(p.validate().is_ok());
        p.authenticator.digits = 9;
        assert!(p.validate().unwrap_err().to_string().contains("digits"));
        p.authenticator.digits = 6;
        p.authenticator.lifetime_secs = 601;
        assert!(p.validate().unwrap_err().to_string().contains("lifetime"));
        p.authenticator.lifetime_secs = 60;
        p.authenticator.targets = Targets::Groups {
            groups: vec![
                GroupTarget {
                    group: G1,
                    mode: Any,
                },
                GroupTarget {
                    group: G1,
                    mode: Push,
                },
            ],
        };
        assert!(p.validate().unwrap_err().to_string().contains("twice"));
    }

    #[test]
    fn changes_are_described_for_the_audit_log() {
        let old = MethodsPolicy::initial(&PushPolicy::default());
        let mut new = old.clone();
        assert_eq!(old.describe_changes(&new, &|g| g.to_string()), "no change");
        new.authenticator.targets = Targets::Groups {
            groups: vec![GroupTarget {
                group: G1,
                mode: Passwordless,
            }],
        };
        new.mfa_required = MfaRequirement::All;
        let name = |g: GroupId| format!("group{g}");
        assert_eq!(
            old.describe_changes(&new, &name),
            "authenticator.targets: all users (any) -> groups [group1=passwordless]; \
             mfa_required: nobody -> all users"
        );
    }

    #[test]
    fn policy_round_trips_as_json() {
        let p = policy(
            true,
            Targets::Groups {
                groups: vec![GroupTarget {
                    group: G2,
                    mode: Passwordless,
                }],
            },
        );
        let s = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<MethodsPolicy>(&s).unwrap(), p);
        assert!(s.contains("\"passwordless\""), "{s}");
    }
}
