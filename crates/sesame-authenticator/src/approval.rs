//! Answering a sign-in request: the one place where an answer is checked on the device (PIN
//! when the organisation requires it) and signed. How the person is asked — a prompt, the
//! full-screen app, a test — is a [`UserPresence`].

use crate::device::DeviceKey;
use crate::vault::SesameLink;
use sesame_proto::device::{approval_message, Challenge, ChallengeKind, Decision, RespondRequest};
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

/// Builds the signed answer. Approvals that need the PIN (phone sign-in always; second steps
/// when the organisation requires it) ask `presence` for it and sign the same message with the
/// PIN key it unseals. Nothing here can tell whether the PIN was right: the server can, and
/// counts wrong ones (see `pinkey`).
pub fn answer(
    link: &SesameLink,
    key: &DeviceKey,
    challenge: &Challenge,
    decision: Decision,
    number: &str,
    presence: &mut dyn UserPresence,
) -> Result<RespondRequest, String> {
    let number = number.trim();
    let msg = approval_message(
        &challenge.id,
        &challenge.nonce,
        decision,
        number,
        &link.device_id,
    );
    let mut pin_signature = None;
    if decision == Decision::Approve {
        if number.is_empty() {
            return Err("type the number shown on the sign-in page".into());
        }
        if challenge.pin_required {
            let Some(sealed) = &link.pin_key else {
                return Err(match challenge.kind {
                    ChallengeKind::PhoneSignIn => "phone sign-in is not set up in this app: turn it on with `sesame-authenticator phone-sign-in enable`".into(),
                    ChallengeKind::Mfa => "your organisation requires your app PIN to approve sign-ins: set one with `sesame-authenticator pin set`".into(),
                });
            };
            let pin = presence.pin(challenge)?;
            pin_signature = Some(sealed.unseal(&pin)?.sign(&msg));
        }
    }
    Ok(RespondRequest {
        challenge_id: challenge.id.clone(),
        decision,
        number: number.to_string(),
        signature: key.sign(&msg),
        pin_signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pinkey::SealedKey;

    fn challenge(kind: ChallengeKind, pin_required: bool) -> Challenge {
        Challenge {
            id: "c1".into(),
            kind,
            nonce: "n1".into(),
            username: "alice".into(),
            app_name: "Sesame".into(),
            ip: "127.0.0.1".into(),
            location: "This computer".into(),
            browser: "Firefox on Linux".into(),
            requested_at: 0,
            expires_at: 100,
            pin_required,
        }
    }

    fn pin(p: &str) -> TypedPin {
        TypedPin(Some(Zeroizing::new(p.to_string())))
    }

    fn link(key: &DeviceKey, pin_key: Option<SealedKey>) -> SesameLink {
        SesameLink {
            server: "http://127.0.0.1:1".into(),
            device_id: "d1".into(),
            username: "alice".into(),
            device_key: key.to_secret().to_string(),
            pin_key,
            phone_sign_in: false,
            removed_on_server: false,
        }
    }

    #[test]
    fn pin_signs_only_when_required_and_any_pin_signs() {
        use Decision::*;
        let key = DeviceKey::generate();
        let pin_key = DeviceKey::generate();
        let with_key = link(&key, Some(SealedKey::seal(&pin_key, "482913")));
        let without = link(&key, None);
        let mfa = challenge(ChallengeKind::Mfa, false);
        let psi = challenge(ChallengeKind::PhoneSignIn, true);
        // Not required: no PIN asked, none signed.
        let a = answer(&without, &key, &mfa, Approve, "42", &mut TypedPin(None)).unwrap();
        assert!(a.pin_signature.is_none());
        // Required, but no PIN key here: the person is told what to do.
        let e = answer(&without, &key, &psi, Approve, "42", &mut pin("482913")).unwrap_err();
        assert!(e.contains("phone-sign-in enable"), "{e}");
        let e = answer(
            &without,
            &key,
            &challenge(ChallengeKind::Mfa, true),
            Approve,
            "42",
            &mut pin("482913"),
        )
        .unwrap_err();
        assert!(e.contains("pin set"), "{e}");
        // The right PIN signs with the registered key; a wrong one signs too, with another key
        // (only the server can tell).
        let verifies = |a: &RespondRequest, k: &DeviceKey| {
            use base64::Engine;
            use p256::ecdsa::signature::Verifier;
            let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(a.pin_signature.as_ref().unwrap())
                .unwrap();
            let sig = p256::ecdsa::Signature::from_slice(&raw).unwrap();
            let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(k.public_key())
                    .unwrap(),
            )
            .unwrap();
            let msg = approval_message("c1", "n1", Approve, &a.number, "d1");
            vk.verify(&msg, &sig).is_ok()
        };
        let right = answer(&with_key, &key, &psi, Approve, " 42 ", &mut pin("482913")).unwrap();
        assert_eq!(right.number, "42");
        assert!(verifies(&right, &pin_key));
        let wrong = answer(&with_key, &key, &psi, Approve, "42", &mut pin("111222")).unwrap();
        assert!(!verifies(&wrong, &pin_key));
        // Denying never needs the PIN or a number.
        let d = answer(&with_key, &key, &psi, Deny, "", &mut TypedPin(None)).unwrap();
        assert!(d.pin_signature.is_none());
        assert!(answer(&without, &key, &mfa, Approve, " ", &mut TypedPin(None)).is_err());
    }
}
