//! Answering a sign-in request: the one place where an answer is checked on the device (PIN
//! when the organisation requires it) and signed. How the person is asked — a prompt, the
//! full-screen app, a test — is a [`UserPresence`].

use crate::device::DeviceKey;
use crate::vault::Vault;
use sesame_proto::device::{approval_message, Challenge, Decision, RespondRequest};
use zeroize::Zeroizing;

/// Asks the person at the device for what an answer needs beyond the number.
pub trait UserPresence {
    /// The app PIN, for a request whose organisation requires it.
    fn pin(&mut self, challenge: &Challenge) -> Result<Zeroizing<String>, String>;
}

/// A PIN already typed (the full-screen app asks before answering).
pub struct TypedPin(pub Option<Zeroizing<String>>);

impl UserPresence for TypedPin {
    fn pin(&mut self, _: &Challenge) -> Result<Zeroizing<String>, String> {
        self.0
            .take()
            .ok_or_else(|| "this request needs your app PIN".to_string())
    }
}

/// Builds the signed answer. Approvals of requests that require the PIN ask `presence` for it
/// and check it against the vault first (wrong PINs are counted there); nothing is signed
/// otherwise.
pub fn answer(
    vault: &mut Vault,
    device_id: &str,
    key: &DeviceKey,
    challenge: &Challenge,
    decision: Decision,
    number: &str,
    presence: &mut dyn UserPresence,
) -> Result<RespondRequest, String> {
    let number = number.trim();
    if decision == Decision::Approve {
        if number.is_empty() {
            return Err("type the number shown on the sign-in page".into());
        }
        if challenge.pin_required {
            let pin = presence.pin(challenge)?;
            vault.check_pin(&pin)?;
        }
    }
    let msg = approval_message(&challenge.id, &challenge.nonce, decision, number, device_id);
    Ok(RespondRequest {
        challenge_id: challenge.id.clone(),
        decision,
        number: number.to_string(),
        signature: key.sign(&msg),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sesame_proto::device::ChallengeKind;

    fn challenge(pin_required: bool) -> Challenge {
        Challenge {
            id: "c1".into(),
            kind: ChallengeKind::Mfa,
            nonce: "n1".into(),
            username: "alice".into(),
            app_name: "Sesame".into(),
            ip: "127.0.0.1".into(),
            location: "This computer".into(),
            user_agent: "ua".into(),
            requested_at: 0,
            expires_at: 100,
            pin_required,
        }
    }

    fn pin(p: &str) -> TypedPin {
        TypedPin(Some(Zeroizing::new(p.to_string())))
    }

    #[test]
    fn pin_is_asked_and_checked_only_when_required() {
        let dir = tempfile::tempdir().unwrap();
        let mut vault = Vault::open_or_create(&dir.path().join("v")).unwrap();
        let key = DeviceKey::generate();
        // Not required: no PIN asked, even none set.
        assert!(answer(
            &mut vault,
            "d1",
            &key,
            &challenge(false),
            Decision::Approve,
            "42",
            &mut TypedPin(None)
        )
        .is_ok());
        // Required but no PIN set in the app.
        let e = answer(
            &mut vault,
            "d1",
            &key,
            &challenge(true),
            Decision::Approve,
            "42",
            &mut pin("482913"),
        )
        .unwrap_err();
        assert!(e.contains("pin set"), "{e}");
        vault.data.pin = Some(crate::pin::hash("482913"));
        assert!(answer(
            &mut vault,
            "d1",
            &key,
            &challenge(true),
            Decision::Approve,
            "42",
            &mut pin("111222")
        )
        .is_err());
        assert_eq!(vault.data.pin_failures, 1);
        let ok = answer(
            &mut vault,
            "d1",
            &key,
            &challenge(true),
            Decision::Approve,
            " 42 ",
            &mut pin("482913"),
        )
        .unwrap();
        assert_eq!((ok.number.as_str(), vault.data.pin_failures), ("42", 0));
        // Denying never needs the PIN or a number.
        assert!(answer(
            &mut vault,
            "d1",
            &key,
            &challenge(true),
            Decision::Deny,
            "",
            &mut TypedPin(None)
        )
        .is_ok());
        assert!(answer(
            &mut vault,
            "d1",
            &key,
            &challenge(false),
            Decision::Approve,
            " ",
            &mut TypedPin(None)
        )
        .is_err());
    }
}
