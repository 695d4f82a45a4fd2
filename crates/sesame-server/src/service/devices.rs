//! The authenticator app's registrations (DESIGN §4): activation, signed requests, the PIN key
//! and phone sign-in, and removal. Signatures are ES256 over what `sesame_proto` builds.

use super::{Line, Origin, Services};
use crate::error::{Error, Kind};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::ecdsa::VerifyingKey;
use rand::RngCore;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use sesame_core::audit::{AuditMethod, Event};
use sesame_core::secret::SecretBytes;
use sesame_core::{totp, DeviceId, UnixTime};
use sesame_proto::device::{self as api, DeviceStatus};
use sesame_store::{Device, NewDevice, PinOutcome, StoreError, User};

/// How long an activation code works.
pub const ACTIVATION_SECS: i64 = 600;
const MAX_DEVICE_NAME: usize = 64;

/// A stored P-256 public key, checked and in the uncompressed SEC1 form that ring verifies with.
pub struct EcdsaKey(p256::EncodedPoint);

/// Parses a stored SEC1 key (uncompressed, compressed or compact, as registration accepts).
/// p256 decides which keys are valid, exactly as when the key was registered; ring, which only
/// takes uncompressed points, then verifies several times faster than p256 would.
pub fn parse_key(sec1: &[u8]) -> Option<EcdsaKey> {
    let key = VerifyingKey::from_sec1_bytes(sec1).ok()?;
    Some(EcdsaKey(key.to_encoded_point(false)))
}

pub fn verifying_key(device: &Device) -> Option<EcdsaKey> {
    (device.alg == api::ALG_ES256)
        .then(|| parse_key(&device.public_key))
        .flatten()
}

/// Checks an ES256 signature: base64url (no padding) of the fixed-size r || s, over SHA-256 of
/// `message`. Like p256, ring rejects r or s outside 1..n and accepts high-S signatures.
pub fn verify(key: &EcdsaKey, message: &[u8], signature_b64: &str) -> bool {
    let Ok(raw) = URL_SAFE_NO_PAD.decode(signature_b64) else {
        return false;
    };
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key.0.as_bytes())
        .verify(message, &raw)
        .is_ok()
}

fn unsupported_alg(alg: &str) -> Error {
    Error::new(
        Kind::BadRequest,
        "unsupported_alg",
        format!("Signature algorithm {alg:?} is not supported (use ES256)."),
    )
}

fn decode_p256(b64: &str, what: &'static str) -> Result<Vec<u8>, Error> {
    URL_SAFE_NO_PAD
        .decode(b64)
        .ok()
        .filter(|pk| VerifyingKey::from_sec1_bytes(pk).is_ok())
        .ok_or_else(|| Error::new(Kind::BadRequest, "invalid_key", what))
}

/// A request as the device API received it, before anything in it is believed.
pub struct SignedParts<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub body: &'a [u8],
    pub device_id: &'a str,
    pub timestamp: i64,
    pub nonce: &'a str,
    pub signature: &'a str,
}

/// Establishes which registered, active device of an unblocked user signed a request:
/// signature, freshness, and a nonce recorded in the database so a replay fails on every node.
pub async fn authenticate(svc: &Services, r: SignedParts<'_>) -> Result<(Device, User), Error> {
    let now = svc.now();
    if (r.timestamp - now).abs() > api::MAX_CLOCK_SKEW_SECS {
        return Err(Error::new(
            Kind::Unauthorized,
            "clock_skew",
            "This device's clock is off. Set the date and time automatically and try again.",
        ));
    }
    if !(16..=128).contains(&r.nonce.len()) {
        return Err(Error::new(
            Kind::Unauthorized,
            "unsigned",
            "The request nonce is not valid.",
        ));
    }
    let refused = || {
        Error::new(Kind::Unauthorized, "unknown_device", "This device is not registered with Sesame (it may have been removed). Add the account again.")
    };
    let device = svc
        .store
        .find_device(&r.device_id.into())
        .await?
        .ok_or_else(refused)?;
    let key = verifying_key(&device).ok_or_else(refused)?;
    let message = api::request_message(
        r.method,
        r.path,
        r.body,
        r.timestamp,
        r.nonce,
        device.id.as_str(),
    );
    if !verify(&key, &message, r.signature) {
        return Err(Error::new(
            Kind::Unauthorized,
            "bad_signature",
            "The request signature is not valid.",
        ));
    }
    // Recorded only after the signature checks out, so strangers cannot fill the table.
    let keep_until = r.timestamp + api::MAX_CLOCK_SKEW_SECS + 60;
    if !svc
        .store
        .claim_device_nonce(device.row_id, r.nonce, keep_until, now)
        .await?
    {
        return Err(Error::new(
            Kind::Unauthorized,
            "replayed",
            "This request was already received once.",
        ));
    }
    let user = svc
        .store
        .find_user(device.user)
        .await?
        .ok_or_else(refused)?;
    if user.is_blocked {
        return Err(Error::new(
            Kind::Forbidden,
            "user_blocked",
            "This account is blocked. Contact your administrator.",
        ));
    }
    // The store keeps "last used" to the minute (it writes at most once a minute); the row
    // just read says whether this minute is already recorded, so most requests skip the write.
    if device.last_used_at.is_none_or(|t| t < now - 60) {
        svc.store.touch_device(device.row_id, now).await?;
    }
    Ok((device, user))
}

/// What the app gets back from activation.
pub struct Activated {
    pub device: Device,
    pub user: User,
    pub totp_secret: SecretBytes,
    pub phone_sign_in_allowed: bool,
}

/// Binds a new device to the user an unused, unexpired activation code was made for.
pub async fn activate(
    svc: &Services,
    origin: &Origin,
    r: &api::ActivateRequest,
) -> Result<Activated, Error> {
    if r.alg != api::ALG_ES256 {
        return Err(unsupported_alg(&r.alg));
    }
    let public_key = decode_p256(
        &r.public_key,
        "The device public key is not a valid P-256 key.",
    )?;
    // A device name is shown to the user and to administrators: one that hides or reorders
    // text ("phone\u{202E}..." written backwards) is refused, not quietly cleaned.
    let name: String = match sesame_core::names::label(&r.device_name) {
        Ok(n) => n.chars().take(MAX_DEVICE_NAME).collect(),
        Err(sesame_core::names::NameError::Empty) => "Authenticator".to_string(),
        Err(e) => {
            return Err(Error::new(
                Kind::BadRequest,
                "invalid_device_name",
                format!("That device name cannot be used: {e}."),
            ))
        }
    };
    let now = svc.now();
    let hash = crate::token::hash(r.code.trim());
    let user_id = svc.store.consume_activation(&hash, now).await?.ok_or_else(|| {
        Error::new(Kind::BadRequest, "invalid_code", "This activation code is not valid: it has expired or was already used. Start again on My security info.")
    })?;
    let user = svc
        .store
        .find_user(user_id)
        .await?
        .filter(|u| !u.is_blocked)
        .ok_or_else(|| {
            Error::new(
                Kind::Forbidden,
                "user_blocked",
                "This account cannot add devices. Contact your administrator.",
            )
        })?;
    // The policy is judged at activation too: an app the policy does not allow this user must
    // not become their default method.
    if let Some(reason) = app_refused(svc, &user).await? {
        return Err(Error::new(Kind::Forbidden, "not_allowed", reason));
    }
    let mut raw = vec![0u8; totp::SECRET_LEN];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let secret = SecretBytes::new(raw);
    let new = NewDevice {
        tenant: user.tenant,
        user: user.id,
        name: name.clone(),
        alg: r.alg.clone(),
        public_key,
    };
    let device = match svc.store.create_device(new, &hash, &secret, now).await {
        Ok(d) => d,
        Err(StoreError::Conflict(_)) => {
            return Err(Error::new(
                Kind::Conflict,
                "device_exists",
                "This device is already registered in this organisation.",
            ))
        }
        Err(e) => return Err(e.into()),
    };
    svc.audit(
        origin,
        Line::of(&user, Event::DeviceAdded)
            .method(AuditMethod::Push)
            .reason(name),
    )
    .await;
    let phone_sign_in_allowed = svc.user_policy(&user).await?.allowed.phone_sign_in;
    Ok(Activated {
        device,
        user,
        totp_secret: secret,
        phone_sign_in_allowed,
    })
}

/// Why the policy does not let `user` add the Sesame Authenticator app, if it does not.
pub async fn app_refused(svc: &Services, user: &User) -> Result<Option<&'static str>, StoreError> {
    let allowed = svc.user_policy(user).await?.allowed;
    Ok((!(allowed.push || allowed.codes || allowed.phone_sign_in)).then_some(APP_NOT_ALLOWED))
}

/// Why the app cannot be added, as the page and the app show it.
pub const APP_NOT_ALLOWED: &str = "Your organisation's policy does not allow the Sesame Authenticator app for your account. Contact your administrator if you need it.";

pub fn no_pin_key() -> Error {
    Error::new(
        Kind::Forbidden,
        "no_pin_key",
        "Set an app PIN first: sesame-authenticator pin set.",
    )
}

pub fn pin_disabled() -> Error {
    Error::new(
        Kind::Forbidden,
        "pin_disabled",
        "Phone sign-in and PIN approvals are turned off for this device after 10 wrong PINs. \
         Sign in with your password, choose \"Allow phone sign-in again\" for this device on \
         My security info, then turn phone sign-in on again in the app.",
    )
}

/// Checks a PIN-key signature over `message`; 10 consecutive invalid ones turn the PIN key
/// off (DESIGN §4). The database orders racing checks, so no more than 10 in a row are judged.
/// Only the server can tell a wrong PIN: the key is sealed on the phone without integrity tag.
pub async fn check_pin(
    svc: &Services,
    origin: &Origin,
    user: &User,
    device: &Device,
    message: &[u8],
    signature: Option<&str>,
) -> Result<(), Error> {
    let Some(signature) = signature else {
        return Err(Error::new(
            Kind::Unauthorized,
            "pin_required",
            "This request needs your app PIN.",
        ));
    };
    let Some(key) = device.pin_key.as_deref() else {
        return Err(no_pin_key());
    };
    // Checked first, then recorded by one compare-and-set that also decides whether the result
    // may count at all (not after 10 wrong in a row, not against a replaced key).
    let valid = parse_key(key).is_some_and(|k| verify(&k, message, signature));
    let n = match svc
        .store
        .record_pin_check(device.row_id, key, valid, api::MAX_PIN_FAILURES, svc.now())
        .await?
    {
        PinOutcome::Accepted => return Ok(()),
        PinOutcome::Wrong {
            consecutive,
            disabled,
        } => {
            let line = |event, reason| {
                Line::of(user, event)
                    .method(AuditMethod::Pin)
                    .failed(reason)
            };
            svc.audit(origin, line(Event::PinCheck, "wrong_pin")).await;
            if disabled {
                svc.audit(
                    origin,
                    line(Event::PhoneSignInDisabled, "too_many_wrong_pins"),
                )
                .await;
                // A sign-in page waiting for this phone must say so now, not at expiry.
                super::approvals::phone_sign_in_changed(svc, user).await?;
                return Err(pin_disabled());
            }
            consecutive
        }
        PinOutcome::Disabled => return Err(pin_disabled()),
        PinOutcome::NoKey => return Err(no_pin_key()),
    };
    let left = api::MAX_PIN_FAILURES - n;
    Err(Error::new(
        Kind::Unauthorized,
        "wrong_pin",
        format!("Wrong PIN. {left} attempt(s) left before phone sign-in is turned off."),
    ))
}

/// Registers the device's PIN key, or replaces it when the current one signs the new one.
pub async fn register_pin_key(
    svc: &Services,
    origin: &Origin,
    user: &User,
    device: &Device,
    r: &api::PinKeyRequest,
) -> Result<DeviceStatus, Error> {
    if r.alg != api::ALG_ES256 {
        return Err(unsupported_alg(&r.alg));
    }
    let new_key = decode_p256(&r.public_key, "The public key is not a valid P-256 key.")?;
    if device.pin_key_disabled_at.is_some() {
        return Err(pin_disabled());
    }
    let replacing = match (&device.pin_key, &r.proof) {
        (None, _) => None,
        (Some(_), None) => {
            return Err(Error::new(
                Kind::Conflict,
                "pin_key_exists",
                "This device already has a PIN key; change the PIN with `sesame-authenticator pin change`.",
            ))
        }
        (Some(old), Some(proof)) => {
            let msg = api::pin_key_message(device.id.as_str(), &r.public_key);
            check_pin(svc, origin, user, device, &msg, Some(proof)).await?;
            Some(old.as_slice())
        }
    };
    if !svc
        .store
        .set_pin_key(device.row_id, &new_key, replacing)
        .await?
    {
        return Err(Error::new(
            Kind::Conflict,
            "pin_key_changed",
            "The PIN key changed meanwhile. Try again.",
        ));
    }
    let event = if replacing.is_some() {
        Event::PinKeyReplaced
    } else {
        Event::PinKeyRegistered
    };
    svc.audit(
        origin,
        Line::of(user, event)
            .method(AuditMethod::Pin)
            .reason(device.name.clone()),
    )
    .await;
    status(svc, user, &device.id).await
}

/// How long the app's request to turn phone sign-in on waits for the person's confirmation.
pub const PHONE_SIGN_IN_CONFIRM_SECS: i64 = 600;

/// Whether the app asked to turn phone sign-in on for `d` and the person may confirm it now.
pub fn awaiting_confirmation(d: &Device, now: UnixTime) -> bool {
    d.phone_sign_in_at.is_none()
        && d.pin_key.is_some()
        && d.pin_key_disabled_at.is_none()
        && d.phone_sign_in_requested_at
            .is_some_and(|t| now < t.saturating_add(PHONE_SIGN_IN_CONFIRM_SECS))
}

/// The app asks to turn phone sign-in on (policy permitting, proven with the PIN over `nonce`)
/// or turns it off. Turning it on takes the person too: a copied device key could sign this
/// request, so it only waits until the person confirms it on My security info after a fresh
/// sign-in ([`confirm_phone_sign_in`]).
pub async fn set_phone_sign_in(
    svc: &Services,
    origin: &Origin,
    user: &User,
    device: &Device,
    r: &api::PhoneSignInRequest,
    nonce: &str,
) -> Result<DeviceStatus, Error> {
    let line = |event| Line::of(user, event).method(AuditMethod::PhoneSignIn);
    if !r.enabled {
        svc.store.set_phone_sign_in(device.row_id, None).await?;
        svc.audit(
            origin,
            line(Event::PhoneSignInDisabled).reason(device.name.clone()),
        )
        .await;
        super::approvals::phone_sign_in_changed(svc, user).await?;
        return status(svc, user, &device.id).await;
    }
    if !svc.user_policy(user).await?.allowed.phone_sign_in {
        svc.audit(
            origin,
            line(Event::PhoneSignInEnabled).failed("not_allowed"),
        )
        .await;
        return Err(Error::new(
            Kind::Forbidden,
            "not_allowed",
            super::policy::PHONE_SIGN_IN_NOT_ALLOWED,
        ));
    }
    let msg = api::phone_sign_in_message(device.id.as_str(), nonce);
    check_pin(svc, origin, user, device, &msg, r.proof.as_deref()).await?;
    if device.phone_sign_in_at.is_some() {
        return status(svc, user, &device.id).await;
    }
    let code = confirmation_code(&mut rand::rngs::OsRng);
    svc.store
        .request_phone_sign_in(device.row_id, svc.now(), &code)
        .await?;
    svc.audit(
        origin,
        line(Event::PhoneSignInRequested).reason(device.name.clone()),
    )
    .await;
    let mut status = status(svc, user, &device.id).await?;
    // Only the app that asked is told (My security info shows it to the signed-in owner).
    if status.phone_sign_in_awaiting_confirmation {
        status.phone_sign_in_code = Some(code);
    }
    Ok(status)
}

/// A fresh random code for a request to turn phone sign-in on, `XXXX-XXXX` (8 digits): the
/// app that asked and My security info both show it, and the person confirms only if they
/// match, so a request made with a copy of the device key (and a PIN key of the copier's)
/// cannot pass for their own app's. It is random, not derived from any key, so seeing it
/// tells nothing about the PIN or the PIN key (a fingerprint of the PIN key would let whoever
/// holds a copy of the vault test PIN guesses offline).
pub fn confirmation_code(rng: &mut impl rand::Rng) -> String {
    let n: u32 = rng.gen_range(0..100_000_000);
    format!("{:04}-{:04}", n / 10_000, n % 10_000)
}

/// The person confirms, on My security info after a fresh sign-in, the app's request to turn
/// phone sign-in on. False: there was no request to confirm (none, too old, or the PIN key
/// is gone or off).
pub async fn confirm_phone_sign_in(
    svc: &Services,
    origin: &Origin,
    user: &User,
    device: &Device,
) -> Result<bool, Error> {
    if !svc.user_policy(user).await?.allowed.phone_sign_in {
        return Err(Error::forbidden(super::policy::PHONE_SIGN_IN_NOT_ALLOWED));
    }
    let now = svc.now();
    let confirmed = svc
        .store
        .confirm_phone_sign_in(device.row_id, now - PHONE_SIGN_IN_CONFIRM_SECS, now)
        .await?;
    if confirmed {
        svc.audit(
            origin,
            Line::of(user, Event::PhoneSignInEnabled)
                .method(AuditMethod::PhoneSignIn)
                .reason(device.name.clone()),
        )
        .await;
    }
    Ok(confirmed)
}

/// What the app is told about its registration.
pub async fn status(svc: &Services, user: &User, id: &DeviceId) -> Result<DeviceStatus, Error> {
    let d = svc.store.find_device(id).await?.ok_or_else(|| {
        Error::new(
            Kind::Unauthorized,
            "unknown_device",
            "This device is not registered with Sesame.",
        )
    })?;
    let allowed = svc.user_policy(user).await?.allowed.phone_sign_in;
    let awaiting = awaiting_confirmation(&d, svc.now());
    let message = if d.pin_key_disabled_at.is_some() {
        pin_disabled().message.to_string()
    } else if !allowed {
        super::policy::PHONE_SIGN_IN_NOT_ALLOWED.to_string()
    } else if d.phone_sign_in_ready() {
        "Phone sign-in is on: sign in with your username and this app.".to_string()
    } else if awaiting {
        "Confirm it on My security info (/security-info) within 10 minutes: sign in there and choose \"Turn on phone sign-in\" for this device.".to_string()
    } else {
        "Phone sign-in is available: turn it on with `sesame-authenticator phone-sign-in enable`."
            .to_string()
    };
    Ok(DeviceStatus {
        username: user.username.clone(),
        phone_sign_in_allowed: allowed,
        phone_sign_in_enabled: d.phone_sign_in_at.is_some(),
        pin_key_registered: d.pin_key.is_some(),
        pin_key_disabled: d.pin_key_disabled_at.is_some(),
        phone_sign_in_awaiting_confirmation: awaiting,
        // Given only in the answer to the request itself (see `set_phone_sign_in`).
        phone_sign_in_code: None,
        message,
    })
}

/// Turns phone sign-in off for a device (the user on My security info, or an administrator);
/// its pending phone sign-in requests end at once. `by` names who did it in the audit line.
pub async fn turn_off_phone_sign_in(
    svc: &Services,
    origin: &Origin,
    user: &User,
    device: &Device,
    by: &str,
) -> Result<(), StoreError> {
    svc.store.set_phone_sign_in(device.row_id, None).await?;
    super::approvals::cancel(svc, user).await?;
    svc.audit(
        origin,
        Line::of(user, Event::PhoneSignInDisabled)
            .method(AuditMethod::PhoneSignIn)
            .reason(by),
    )
    .await;
    Ok(())
}

/// Forgets a device's PIN key (after it was turned off by wrong PINs), so the app can set up a
/// new one; phone sign-in stays off until the app turns it on again.
pub async fn reset_pin_key(
    svc: &Services,
    origin: &Origin,
    user: &User,
    device: &Device,
    by: &str,
) -> Result<(), StoreError> {
    svc.store.clear_pin_key(user.id, &device.id).await?;
    super::approvals::cancel(svc, user).await?;
    svc.audit(
        origin,
        Line::of(user, Event::PinKeyReset)
            .method(AuditMethod::Pin)
            .reason(by),
    )
    .await;
    Ok(())
}

/// What a person can do to a registered device from a page (the user on My security info, an
/// administrator in the console).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceAction {
    Remove,
    TurnOffPhoneSignIn,
    /// After 10 wrong PINs: forget the PIN key so the app can set phone sign-in up again.
    AllowPhoneSignInAgain,
}

impl DeviceAction {
    /// From the last segment of the form's address.
    pub fn parse(segment: &str) -> Option<Self> {
        match segment {
            "remove" => Some(DeviceAction::Remove),
            "phone-sign-in-off" => Some(DeviceAction::TurnOffPhoneSignIn),
            "allow-again" => Some(DeviceAction::AllowPhoneSignInAgain),
            _ => None,
        }
    }

    /// Whether it adds or takes away a way to sign in, and so needs a fresh second step from
    /// a user acting on their own device.
    pub fn needs_fresh_second_step(self) -> bool {
        self != DeviceAction::TurnOffPhoneSignIn
    }

    /// Does it; `by` names who in the audit line. False: the device was gone already.
    pub async fn apply(
        self,
        svc: &Services,
        origin: &Origin,
        user: &User,
        device: &Device,
        by: &str,
    ) -> Result<bool, StoreError> {
        match self {
            DeviceAction::Remove => remove(svc, origin, user, &device.id).await,
            DeviceAction::TurnOffPhoneSignIn => {
                turn_off_phone_sign_in(svc, origin, user, device, by).await?;
                Ok(true)
            }
            DeviceAction::AllowPhoneSignInAgain => {
                reset_pin_key(svc, origin, user, device, by).await?;
                Ok(true)
            }
        }
    }
}

/// An administrator's action on a user's device: the action with the user's own audit line
/// (naming the administrator), then the administrator's line. False: the device was gone.
pub async fn act_as_admin(
    svc: &Services,
    admin: &super::Admin,
    user: &User,
    device: &Device,
    action: DeviceAction,
) -> Result<bool, StoreError> {
    if !action
        .apply(svc, &admin.origin, user, device, &admin.by)
        .await?
    {
        return Ok(false);
    }
    let event = match action {
        DeviceAction::Remove => Event::AdminDeviceRemoved,
        DeviceAction::TurnOffPhoneSignIn => Event::AdminPhoneSignInDisabled,
        DeviceAction::AllowPhoneSignInAgain => Event::AdminPinKeyReset,
    };
    let detail = format!("device {}", device.name);
    svc.audit(
        &admin.origin,
        admin.line(user.tenant, Some(user), event, Some(&detail)),
    )
    .await;
    Ok(true)
}

/// Removes a device, stops its pending requests at once and records it. False: the user has
/// no such device.
pub async fn remove(
    svc: &Services,
    origin: &Origin,
    user: &User,
    id: &DeviceId,
) -> Result<bool, StoreError> {
    let Some(cancelled) = svc.store.delete_device(user.id, id).await? else {
        return Ok(false);
    };
    for c in cancelled {
        svc.hub.closed(user.id, c, "device_removed");
    }
    svc.audit(
        origin,
        Line::of(user, Event::DeviceRemoved).method(AuditMethod::Push),
    )
    .await;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::{Signer, Verifier};
    use p256::ecdsa::{Signature, SigningKey};

    #[test]
    fn confirmation_codes_are_eight_random_digits() {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let codes: Vec<String> = (0..2000).map(|_| confirmation_code(&mut rng)).collect();
        for c in &codes {
            assert_eq!(c.len(), 9, "{c}");
            assert_eq!(&c[4..5], "-", "{c}");
            assert!(
                c.chars()
                    .filter(|ch| *ch != '-')
                    .all(|ch| ch.is_ascii_digit()),
                "{c}"
            );
        }
        let distinct: std::collections::HashSet<&String> = codes.iter().collect();
        assert_eq!(distinct.len(), codes.len(), "no repeats among 2000 of 10^8");
        // Leading zeros are kept: both halves always have 4 digits.
        assert!(codes.iter().any(|c| c.starts_with('0')));
        assert!(codes.iter().any(|c| c[5..].starts_with('0')));
    }

    /// The check as it was before ring: `None` when the key itself is refused.
    fn p256_verdict(sec1: &[u8], message: &[u8], signature_b64: &str) -> Option<bool> {
        let key = VerifyingKey::from_sec1_bytes(sec1).ok()?;
        let Ok(raw) = URL_SAFE_NO_PAD.decode(signature_b64) else {
            return Some(false);
        };
        let Ok(sig) = Signature::from_slice(&raw) else {
            return Some(false);
        };
        Some(key.verify(message, &sig).is_ok())
    }

    fn ring_verdict(sec1: &[u8], message: &[u8], signature_b64: &str) -> Option<bool> {
        parse_key(sec1).map(|k| verify(&k, message, signature_b64))
    }

    fn signing_key(seed: u8) -> SigningKey {
        SigningKey::from_slice(&[seed; 32]).unwrap()
    }

    /// Every SEC1 form p256 accepts for `key`: uncompressed, compressed, and compact (0x05 || x)
    /// when that decodes to this point rather than its negation.
    fn encodings(key: &VerifyingKey) -> Vec<Vec<u8>> {
        let mut out = vec![
            key.to_encoded_point(false).as_bytes().to_vec(),
            key.to_encoded_point(true).as_bytes().to_vec(),
        ];
        let compact = [&[5u8][..], key.to_encoded_point(true).x().unwrap()].concat();
        if VerifyingKey::from_sec1_bytes(&compact).ok().as_ref() == Some(key) {
            out.push(compact);
        }
        out
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// P-256 group order n, big-endian.
    const N: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63,
        0x25, 0x51,
    ];

    #[test]
    fn ring_verification_agrees_with_p256_on_every_input() {
        let message = b"POST\n/api/v1/device/respond\nbody-hash\n1700000000\nnonce\ndevice";
        let mut tampered_message = message.to_vec();
        tampered_message[0] ^= 1;
        let (mut compared, mut compact_keys) = (0, 0);
        for seed in 1..=8u8 {
            let sk = signing_key(seed);
            let vk = *sk.verifying_key();
            let other = *signing_key(seed + 100).verifying_key();
            let sig: Signature = sk.sign(message);
            let raw = sig.to_bytes().to_vec();
            let (r, s) = sig.split_scalars();
            let high_s = Signature::from_scalars(r, -s).unwrap();
            assert_ne!(high_s.to_bytes(), sig.to_bytes());
            let flip = |i: usize| {
                let mut b = raw.clone();
                b[i] ^= 0x01;
                b64(&b)
            };
            let with = |r: &[u8], s: &[u8]| b64(&[r, s].concat());

            // (signature, message, verdict for the signing key, for another key)
            let cases: Vec<(String, &[u8], bool, bool)> = vec![
                (b64(&raw), message, true, false),
                (b64(&high_s.to_bytes()), message, true, false),
                (b64(&raw), &tampered_message, false, false),
                (flip(0), message, false, false),
                (flip(31), message, false, false),
                (flip(32), message, false, false),
                (flip(63), message, false, false),
                // Malformed: padded or non-URL base64, wrong length, DER, r or s of 0 or >= n.
                (format!("{}==", b64(&raw)), message, false, false),
                (format!("+{}", &b64(&raw)[1..]), message, false, false),
                ("not base64!".into(), message, false, false),
                (String::new(), message, false, false),
                (b64(&raw[..63]), message, false, false),
                (b64(&[&raw[..], &[0]].concat()), message, false, false),
                (b64(sig.to_der().as_bytes()), message, false, false),
                (with(&[0; 32], &raw[32..]), message, false, false),
                (with(&raw[..32], &[0; 32]), message, false, false),
                (with(&N, &raw[32..]), message, false, false),
                (with(&raw[..32], &N), message, false, false),
                (b64(&[0xff; 64]), message, false, false),
            ];
            let forms = encodings(&vk);
            compact_keys += forms.iter().filter(|k| k[0] == 5).count();
            for key in forms {
                for (sig_b64, msg, expected, _) in &cases {
                    let old = p256_verdict(&key, msg, sig_b64);
                    assert_eq!(old, Some(*expected), "p256, key {key:?}, sig {sig_b64}");
                    assert_eq!(
                        ring_verdict(&key, msg, sig_b64),
                        old,
                        "key {key:?}, sig {sig_b64}"
                    );
                    compared += 1;
                }
            }
            for key in encodings(&other) {
                for (sig_b64, msg, _, expected) in &cases {
                    let old = p256_verdict(&key, msg, sig_b64);
                    assert_eq!(old, Some(*expected));
                    assert_eq!(ring_verdict(&key, msg, sig_b64), old, "wrong key {key:?}");
                    compared += 1;
                }
            }
        }
        assert!(
            compared >= 8 * 2 * 2 * 19,
            "compressed and uncompressed keys all compared"
        );
        assert!(compact_keys > 0, "some compact keys compared");
    }

    #[test]
    fn malformed_keys_are_refused_as_before() {
        let sk = signing_key(7);
        let sig = b64(&Signature::to_bytes(&sk.sign(b"m")));
        let vk = sk.verifying_key();
        let uncompressed = vk.to_encoded_point(false).as_bytes().to_vec();
        let compressed = vk.to_encoded_point(true).as_bytes().to_vec();
        let mut off_curve = uncompressed.clone();
        off_curve[64] ^= 1;
        let mut hybrid = uncompressed.clone();
        hybrid[0] = 6 | (uncompressed[64] & 1);
        let mut wrong_parity = compressed.clone();
        wrong_parity[0] ^= 1;
        let p = [
            0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0xff,
        ];
        let x_too_big = [&[2u8][..], &p[..]].concat();
        let keys: Vec<Vec<u8>> = vec![
            vec![],
            vec![0],
            vec![4],
            off_curve,
            hybrid,
            x_too_big,
            uncompressed[..64].to_vec(),
            compressed[..32].to_vec(),
            [&compressed[..], &[0]].concat(),
            vec![4; 65],
        ];
        for key in &keys {
            let old = p256_verdict(key, b"m", &sig);
            assert_eq!(ring_verdict(key, b"m", &sig), old, "key {key:?}");
            assert_eq!(old, None, "key {key:?}");
        }
        // A flipped compression bit is another valid point: accepted as a key, fails to verify.
        assert_eq!(p256_verdict(&wrong_parity, b"m", &sig), Some(false));
        assert_eq!(ring_verdict(&wrong_parity, b"m", &sig), Some(false));
    }
}
