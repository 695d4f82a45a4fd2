//! What the audit log can say: the events and the methods it names. Each is stored by its
//! stable name (`as_str`), which `sesame log --json`, the admin console's filters and scripts
//! rely on; a name never changes once it has been written.

use serde::Serialize;
use std::fmt;

macro_rules! named_enum {
    ($(#[$m:meta])* $name:ident, $unknown:ident { $($(#[$vm:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vm])* $variant,)+
            /// A name this version does not know: written by a newer version. The log still
            /// reads, and shows it as it was written.
            Other(String),
        }

        impl $name {
            /// Every name this version knows.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The stored name.
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $text,)+
                    $name::Other(s) => s,
                }
            }

            /// A name this version knows (filters take only those).
            pub fn parse(s: &str) -> Result<Self, $unknown> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err($unknown(s.to_owned())),
                }
            }

            /// What a stored name means, unknown names included.
            pub fn from_stored(s: &str) -> Self {
                Self::parse(s).unwrap_or_else(|_| $name::Other(s.to_owned()))
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        /// Compares with a stored name, as scripts and tests read the log.
        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
        #[error("unknown {} {:?}", stringify!($name), .0)]
        pub struct $unknown(pub String);
    };
}

named_enum!(
    /// One kind of line in the audit log.
    Event, UnknownEvent {
        /// A sign-in attempt, successful or not (the method says which step).
        SignIn = "sign_in",
        SignOut = "sign_out",
        /// A request went to the user's phone.
        PushSent = "push_sent",
        /// A request was not sent: rate limit or a fraud report's block.
        PushNotSent = "push_not_sent",
        /// The phone approved or denied a request (or typed the wrong number).
        PushAnswer = "push_answer",
        /// "Deny and report": the user said a request was not theirs.
        FraudReported = "fraud_reported",
        /// A wrong app PIN (an invalid PIN-key signature).
        PinCheck = "pin_check",
        PinKeyRegistered = "pin_key_registered",
        PinKeyReplaced = "pin_key_replaced",
        PinKeyReset = "pin_key_reset",
        PhoneSignInEnabled = "phone_sign_in_enabled",
        PhoneSignInRequested = "phone_sign_in_requested",
        PasswordChanged = "password_changed",
        PhoneSignInDisabled = "phone_sign_in_disabled",
        DeviceAdded = "device_added",
        DeviceRemoved = "device_removed",
        MethodAdded = "method_added",
        MethodRemoved = "method_removed",
        DefaultMethodChanged = "default_method_changed",
        /// The first administrator, created through the one-time set-up link.
        AdminCreated = "admin_created",
        PolicyChanged = "policy_changed",
        // Administrators' actions on others, from the console or the `sesame` command line.
        AdminUserCreated = "admin_user_created",
        AdminPasswordSet = "admin_password_set",
        AdminUserBlocked = "admin_user_blocked",
        AdminUserUnblocked = "admin_user_unblocked",
        AdminUserUnlocked = "admin_user_unlocked",
        AdminUserRemoved = "admin_user_removed",
        AdminMethodsReset = "admin_methods_reset",
        AdminDeviceRemoved = "admin_device_removed",
        AdminPhoneSignInDisabled = "admin_phone_sign_in_disabled",
        AdminPinKeyReset = "admin_pin_key_reset",
        AdminGroupCreated = "admin_group_created",
        AdminGroupRemoved = "admin_group_removed",
        AdminGroupMemberAdded = "admin_group_member_added",
        AdminGroupMemberRemoved = "admin_group_member_removed",
        // Applications (OpenID Connect).
        /// A signed-in user was sent back to an application with an authorization code.
        AppSignIn = "app_sign_in",
        /// The user let an application (not first-party) have what it asked for.
        AppConsent = "app_consent",
        /// An authorization code or a refresh token was used twice: what it issued is revoked.
        TokenReplay = "token_replay",
        AdminClientAdded = "admin_client_added",
        AdminClientChanged = "admin_client_changed",
        AdminClientRemoved = "admin_client_removed",
        AdminClientSecretRotated = "admin_client_secret_rotated",
        AdminKeyRotated = "admin_key_rotated",
        // Text messages and calls.
        /// A code was sent by text message (to add a number, or to sign in).
        SmsSent = "sms_sent",
        /// A text was not sent: rate limit, country not allowed, or the gateway failed.
        SmsNotSent = "sms_not_sent",
        /// A call was placed to the user's phone.
        CallPlaced = "call_placed",
        /// A call was not placed: rate limit, a fraud report's block, or the gateway failed.
        CallNotPlaced = "call_not_placed",
        /// How a call ended: approved with #, or not (no answer, rejected, no key, failed).
        CallAnswer = "call_answer",
        PhoneAdded = "phone_added",
        PhoneChanged = "phone_changed",
        PhoneRemoved = "phone_removed",
        AdminAccessPassCreated = "admin_access_pass_created",
        AdminAccessPassRevoked = "admin_access_pass_revoked",
    }
);

named_enum!(
    /// The way of signing in an audit line is about.
    AuditMethod, UnknownAuditMethod {
        Password = "password",
        /// Verification codes (TOTP).
        Totp = "totp",
        /// Notifications to the authenticator app.
        Push = "push",
        PhoneSignIn = "phone_sign_in",
        /// The app PIN (PIN-key signatures).
        Pin = "pin",
        /// Codes by text message.
        Sms = "sms",
        /// Calls to the mobile phone.
        Voice = "voice",
        /// Calls to the office phone.
        OfficeVoice = "office_voice",
        /// A Temporary Access Pass.
        AccessPass = "access_pass",
    }
);

impl Event {
    /// What people read in the console's log ("Notification sent", not `push_sent`). A name a
    /// newer version wrote is shown as stored.
    pub fn describe(&self) -> &str {
        match self {
            Event::SignIn => "Sign-in",
            Event::SignOut => "Sign-out",
            Event::PushSent => "Notification sent",
            Event::PushNotSent => "Notification not sent",
            Event::PushAnswer => "Notification answered",
            Event::FraudReported => "Reported as fraud",
            Event::PinCheck => "App PIN checked",
            Event::PinKeyRegistered => "App PIN set",
            Event::PinKeyReplaced => "App PIN changed",
            Event::PinKeyReset => "App PIN reset",
            Event::PhoneSignInEnabled => "Phone sign-in turned on",
            Event::PhoneSignInRequested => "Phone sign-in requested",
            Event::PasswordChanged => "Password changed",
            Event::PhoneSignInDisabled => "Phone sign-in turned off",
            Event::DeviceAdded => "Device added",
            Event::DeviceRemoved => "Device removed",
            Event::MethodAdded => "Method added",
            Event::MethodRemoved => "Method removed",
            Event::DefaultMethodChanged => "Default method changed",
            Event::AdminCreated => "First administrator created",
            Event::PolicyChanged => "Policy changed",
            Event::AdminUserCreated => "User created",
            Event::AdminPasswordSet => "Password set by an administrator",
            Event::AdminUserBlocked => "User blocked",
            Event::AdminUserUnblocked => "User unblocked",
            Event::AdminUserUnlocked => "User unlocked",
            Event::AdminUserRemoved => "User removed",
            Event::AdminMethodsReset => "Methods reset",
            Event::AdminDeviceRemoved => "Device removed by an administrator",
            Event::AdminPhoneSignInDisabled => "Phone sign-in turned off by an administrator",
            Event::AdminPinKeyReset => "App PIN reset by an administrator",
            Event::AdminGroupCreated => "Group created",
            Event::AdminGroupRemoved => "Group deleted",
            Event::AdminGroupMemberAdded => "Added to a group",
            Event::AdminGroupMemberRemoved => "Removed from a group",
            Event::AppSignIn => "Signed in to an application",
            Event::AppConsent => "Application allowed",
            Event::TokenReplay => "Token used twice",
            Event::AdminClientAdded => "Application registered",
            Event::AdminClientChanged => "Application changed",
            Event::AdminClientRemoved => "Application removed",
            Event::AdminClientSecretRotated => "Application secret replaced",
            Event::AdminKeyRotated => "Signing key rotated",
            Event::SmsSent => "Text message sent",
            Event::SmsNotSent => "Text message not sent",
            Event::CallPlaced => "Call placed",
            Event::CallNotPlaced => "Call not placed",
            Event::CallAnswer => "Call answered",
            Event::PhoneAdded => "Phone number added",
            Event::PhoneChanged => "Phone number changed",
            Event::PhoneRemoved => "Phone number removed",
            Event::AdminAccessPassCreated => "Temporary Access Pass created",
            Event::AdminAccessPassRevoked => "Temporary Access Pass revoked",
            Event::Other(s) => s,
        }
    }
}

impl AuditMethod {
    /// What people call it (the admin console's log filter).
    pub fn display_name(&self) -> &str {
        match self {
            AuditMethod::Password => "Password",
            AuditMethod::Totp => "Verification code",
            AuditMethod::Push => "Authenticator notification",
            AuditMethod::PhoneSignIn => "Phone sign-in",
            AuditMethod::Pin => "App PIN",
            AuditMethod::Sms => "Text message",
            AuditMethod::Voice => "Phone call",
            AuditMethod::OfficeVoice => "Office phone call",
            AuditMethod::AccessPass => "Temporary Access Pass",
            AuditMethod::Other(name) => name,
        }
    }
}

impl From<crate::method::MethodKind> for AuditMethod {
    fn from(k: crate::method::MethodKind) -> Self {
        match k {
            crate::method::MethodKind::Totp => AuditMethod::Totp,
            crate::method::MethodKind::Push => AuditMethod::Push,
            crate::method::MethodKind::Sms => AuditMethod::Sms,
            crate::method::MethodKind::Voice => AuditMethod::Voice,
            crate::method::MethodKind::OfficeVoice => AuditMethod::OfficeVoice,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_has_words_for_people() {
        for e in Event::ALL {
            let words = e.describe();
            assert_ne!(words, e.as_str(), "{e}");
            assert!(
                words.chars().next().is_some_and(char::is_uppercase),
                "{e}: {words}"
            );
        }
        assert_eq!(Event::PushSent.describe(), "Notification sent");
        assert_eq!(
            Event::from_stored("made_by_a_newer_version").describe(),
            "made_by_a_newer_version"
        );
    }

    #[test]
    fn names_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for e in Event::ALL {
            assert_eq!(Event::parse(e.as_str()), Ok(e.clone()));
            assert_eq!(Event::from_stored(e.as_str()), *e);
            assert!(seen.insert(e.as_str()), "{e} twice");
            assert_eq!(serde_json::to_string(e).unwrap(), format!("\"{e}\""));
        }
        for m in AuditMethod::ALL {
            assert_eq!(AuditMethod::parse(m.as_str()), Ok(m.clone()));
        }
        assert!(Event::parse("sign_inn").is_err());
        let newer = Event::from_stored("sign_in_by_carrier_pigeon");
        assert_eq!(newer.as_str(), "sign_in_by_carrier_pigeon");
        assert_eq!(
            serde_json::to_string(&newer).unwrap(),
            "\"sign_in_by_carrier_pigeon\""
        );
        assert!(AuditMethod::parse("").is_err());
    }
}
