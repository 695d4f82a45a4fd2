//! The app's side of the PIN key and phone sign-in (DESIGN §4): set up the PIN key of a Sesame
//! account, rotate it when the PIN changes, turn phone sign-in on and off. The CLI and the
//! full-screen app both go through here.

use crate::client::{ClientError, DeviceClient};
use crate::device::DeviceKey;
use crate::pinkey::SealedKey;
use crate::vault::SesameLink;
use sesame_proto::device::{self as api, DeviceStatus, PinKeyRequest};

#[derive(Debug, thiserror::Error)]
pub enum PhoneError {
    /// Transparent: the server's reason is the whole message. `#[error("{0}")]` with `#[from]`
    /// also made the client error this one's source, so `{:#}` printed the reason twice
    /// ("...if you need it.: Your organisation's policy ...").
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{0}")]
    Local(String),
}

fn device_key(link: &SesameLink) -> Result<DeviceKey, PhoneError> {
    DeviceKey::from_secret(&link.device_key)
        .ok_or_else(|| PhoneError::Local("the device key in this vault is damaged".into()))
}

/// Generates this account's PIN key, seals it under `pin` and registers its public half (the
/// request is signed by the device key). The server accepts a first key only; a later one must
/// be signed by the current key ([`rotate_pin_key`]).
pub async fn register_pin_key(
    link: &mut SesameLink,
    pin: &str,
) -> Result<DeviceStatus, PhoneError> {
    let dkey = device_key(link)?;
    let pin_key = DeviceKey::generate();
    let client = DeviceClient::new(&link.server, &link.device_id, &dkey);
    let status = client
        .pin_key(&PinKeyRequest {
            alg: api::ALG_ES256.into(),
            public_key: pin_key.public_key(),
            proof: None,
        })
        .await?;
    link.pin_key = Some(SealedKey::seal(&pin_key, pin));
    Ok(status)
}

/// Replaces the PIN key after a PIN change: the key the old PIN unseals signs the new one. A
/// wrong old PIN is an invalid signature, counted by the server like any other.
pub async fn rotate_pin_key(
    link: &mut SesameLink,
    old_pin: &str,
    new_pin: &str,
) -> Result<DeviceStatus, PhoneError> {
    let sealed = link
        .pin_key
        .clone()
        .ok_or_else(|| PhoneError::Local("this account has no PIN key yet".into()))?;
    let old = sealed.unseal(old_pin).map_err(PhoneError::Local)?;
    let dkey = device_key(link)?;
    let new_key = DeviceKey::generate();
    let public_key = new_key.public_key();
    let proof = old.sign(&api::pin_key_message(&link.device_id, &public_key));
    let client = DeviceClient::new(&link.server, &link.device_id, &dkey);
    let status = client
        .pin_key(&PinKeyRequest {
            alg: api::ALG_ES256.into(),
            public_key,
            proof: Some(proof),
        })
        .await?;
    link.pin_key = Some(SealedKey::seal(&new_key, new_pin));
    Ok(status)
}

/// Turns phone sign-in on: sets up the PIN key if the account has none, then proves the PIN by
/// signing this request with the key it unseals.
pub async fn enable(link: &mut SesameLink, pin: &str) -> Result<DeviceStatus, PhoneError> {
    let dkey = device_key(link)?;
    let status = DeviceClient::new(&link.server, &link.device_id, &dkey)
        .status()
        .await?;
    // The server decides (policy, a disabled key); the app only drops a key it forgot.
    forget_stale_key(link, &status);
    if link.pin_key.is_none() {
        register_pin_key(link, pin).await?;
    }
    let sealed = link.pin_key.clone().expect("set just above");
    let pin_key = sealed.unseal(pin).map_err(PhoneError::Local)?;
    let client = DeviceClient::new(&link.server, &link.device_id, &dkey);
    let status = client.phone_sign_in(true, Some(&pin_key)).await?;
    link.phone_sign_in = status.phone_sign_in_enabled;
    Ok(status)
}

/// Waits (polling every two seconds, at most `longest`) until the person confirmed the request
/// to turn phone sign-in on, or it can no longer be confirmed; returns the last status.
pub async fn wait_for_confirmation(
    link: &mut SesameLink,
    longest: std::time::Duration,
) -> Result<DeviceStatus, PhoneError> {
    let dkey = device_key(link)?;
    let client = DeviceClient::new(&link.server, &link.device_id, &dkey);
    let until = std::time::Instant::now() + longest;
    loop {
        let status = client.status().await?;
        if status.phone_sign_in_enabled
            || !status.phone_sign_in_awaiting_confirmation
            || std::time::Instant::now() >= until
        {
            link.phone_sign_in = status.phone_sign_in_enabled;
            return Ok(status);
        }
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
}

pub async fn disable(link: &mut SesameLink) -> Result<DeviceStatus, PhoneError> {
    let dkey = device_key(link)?;
    let client = DeviceClient::new(&link.server, &link.device_id, &dkey);
    let status = client.phone_sign_in(false, None).await?;
    link.phone_sign_in = false;
    Ok(status)
}

/// After the server forgot a disabled key ("Allow phone sign-in again"), the sealed copy here is
/// useless: drop it so the next enable sets up a new one.
pub fn forget_stale_key(link: &mut SesameLink, status: &DeviceStatus) {
    if !status.pin_key_registered {
        link.pin_key = None;
        link.phone_sign_in = false;
    }
}
