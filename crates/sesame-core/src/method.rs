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
}

impl MethodKind {
    pub const ALL: [MethodKind; 2] = [MethodKind::Totp, MethodKind::Push];

    /// Stable name used in the database, the audit log and URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            MethodKind::Totp => "totp",
            MethodKind::Push => "push",
        }
    }

    /// What a person sees.
    pub fn display_name(self) -> &'static str {
        match self {
            MethodKind::Totp => "Authenticator app (verification code)",
            MethodKind::Push => "Authenticator app (notification)",
        }
    }

    /// The `amr` value a successful use of this method adds.
    pub fn amr(self) -> Amr {
        match self {
            MethodKind::Totp => Amr::Otp,
            // Approval signed by a key held on the device: software-secured key (RFC 8176).
            MethodKind::Push => Amr::Swk,
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
    Mfa,
}

impl Amr {
    pub fn as_str(self) -> &'static str {
        match self {
            Amr::Pwd => "pwd",
            Amr::Otp => "otp",
            Amr::Swk => "swk",
            Amr::Pin => "pin",
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
