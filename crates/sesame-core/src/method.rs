//! Kinds of authentication methods and the `amr` values they produce.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A second-step method kind. Later kinds (push, SMS, voice) join this list; every page and rule
/// that offers "a different verification option" works on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MethodKind {
    /// 6-digit verification codes from an authenticator app (RFC 6238).
    Totp,
    /// A notification to the Sesame Authenticator app, approved with number matching.
    Push,
    /// A 6-digit code in a text message to the user's mobile phone.
    Sms,
    /// A call to the user's mobile phone, answered with #.
    Voice,
    /// A call to the user's office phone (with an extension), answered with #.
    OfficeVoice,
}

impl MethodKind {
    pub const ALL: [MethodKind; 5] = [
        MethodKind::Totp,
        MethodKind::Push,
        MethodKind::Sms,
        MethodKind::Voice,
        MethodKind::OfficeVoice,
    ];

    /// The phone a method reaches, for the methods that are a phone number.
    pub fn phone_slot(self) -> Option<PhoneSlot> {
        match self {
            MethodKind::Sms | MethodKind::Voice => Some(PhoneSlot::Mobile),
            MethodKind::OfficeVoice => Some(PhoneSlot::Office),
            MethodKind::Totp | MethodKind::Push => None,
        }
    }

    /// Stable name used in the database, the audit log and URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            MethodKind::Totp => "totp",
            MethodKind::Push => "push",
            MethodKind::Sms => "sms",
            MethodKind::Voice => "voice",
            MethodKind::OfficeVoice => "office_voice",
        }
    }

    /// What a person sees.
    pub fn display_name(self) -> &'static str {
        match self {
            MethodKind::Totp => "Authenticator app (verification code)",
            MethodKind::Push => "Authenticator app (notification)",
            MethodKind::Sms => "Phone (text message)",
            MethodKind::Voice => "Phone (call)",
            MethodKind::OfficeVoice => "Office phone (call)",
        }
    }

    /// The `amr` value a successful use of this method adds.
    pub fn amr(self) -> Amr {
        match self {
            MethodKind::Totp => Amr::Otp,
            // Approval signed by a key held on the device: software-secured key (RFC 8176).
            MethodKind::Push => Amr::Swk,
            MethodKind::Sms => Amr::Sms,
            MethodKind::Voice | MethodKind::OfficeVoice => Amr::Tel,
        }
    }
}

/// Which of a user's phones a number is: a mobile takes texts and calls, an office phone
/// calls (with an extension dialled after answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhoneSlot {
    Mobile,
    Office,
}

impl PhoneSlot {
    pub fn as_str(self) -> &'static str {
        match self {
            PhoneSlot::Mobile => "mobile",
            PhoneSlot::Office => "office",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "mobile" => Some(PhoneSlot::Mobile),
            "office" => Some(PhoneSlot::Office),
            _ => None,
        }
    }

    /// The methods a number in this slot gives.
    pub fn methods(self) -> &'static [MethodKind] {
        match self {
            PhoneSlot::Mobile => &[MethodKind::Sms, MethodKind::Voice],
            PhoneSlot::Office => &[MethodKind::OfficeVoice],
        }
    }
}

impl fmt::Display for MethodKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A method name this version does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown method kind {0:?}")]
pub struct UnknownMethodKind(pub String);

impl FromStr for MethodKind {
    type Err = UnknownMethodKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MethodKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownMethodKind(s.to_owned()))
    }
}

/// Authentication method references (RFC 8176) recorded on a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Amr {
    Pwd,
    Otp,
    Swk,
    /// A PIN unlocked the key that signed (phone sign-in).
    Pin,
    /// A code sent in a text message (RFC 8176 `sms`).
    Sms,
    /// A phone call answered (RFC 8176 `tel`).
    Tel,
    /// A Temporary Access Pass an administrator gave (not in RFC 8176; Sesame's own).
    Tap,
    Mfa,
}

impl Amr {
    pub fn as_str(self) -> &'static str {
        match self {
            Amr::Pwd => "pwd",
            Amr::Otp => "otp",
            Amr::Swk => "swk",
            Amr::Pin => "pin",
            Amr::Sms => "sms",
            Amr::Tel => "tel",
            Amr::Tap => "tap",
            Amr::Mfa => "mfa",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_names() {
        for k in MethodKind::ALL {
            assert_eq!(k.as_str().parse::<MethodKind>().unwrap(), k);
        }
        assert!("sms2".parse::<MethodKind>().is_err());
    }
}
