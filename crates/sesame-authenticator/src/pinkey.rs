//! The PIN key (DESIGN §4): a second P-256 key per Sesame account whose private scalar is
//! sealed under a key derived from the app PIN with Argon2id, by XOR and **without an integrity
//! tag**. Any PIN unseals *some* key; only the right PIN gives the key the server registered.
//! So a stolen vault offers nothing to test PIN guesses against: each guess has to be tried as
//! a signature at the server, which turns the key off after 10 invalid ones. For the same
//! reason the vault keeps no PIN verifier and not even the public half of this key.

use crate::device::DeviceKey;
use argon2::{Algorithm, Argon2, Params, Version};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

const SALT_LEN: usize = 16;
const SCALAR_LEN: usize = 32;

/// The sealed private scalar and its salt, as stored in the (encrypted) vault.
#[derive(Clone, Serialize, Deserialize)]
pub struct SealedKey {
    pub salt: String,
    pub sealed: String,
}

impl std::fmt::Debug for SealedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealedKey([sealed])")
    }
}

/// 32 bytes from the PIN: Argon2id with the password-hashing parameters the server uses
/// (19 MiB, 2 passes), so each guess costs the same everywhere.
fn pad(pin: &str, salt: &[u8]) -> Zeroizing<[u8; SCALAR_LEN]> {
    let params = Params::new(19 * 1024, 2, 1, Some(SCALAR_LEN)).expect("valid Argon2 parameters");
    let mut out = Zeroizing::new([0u8; SCALAR_LEN]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(pin.as_bytes(), salt, &mut *out)
        .expect("Argon2 with a 16-byte salt works");
    out
}

impl SealedKey {
    /// Seals `key` under `pin` with a fresh salt.
    pub fn seal(key: &DeviceKey, pin: &str) -> SealedKey {
        let mut salt = [0u8; SALT_LEN];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        let scalar = key.to_bytes();
        let pad = pad(pin, &salt);
        let sealed: Zeroizing<Vec<u8>> =
            Zeroizing::new(scalar.iter().zip(pad.iter()).map(|(a, b)| a ^ b).collect());
        SealedKey {
            salt: URL_SAFE_NO_PAD.encode(salt),
            sealed: URL_SAFE_NO_PAD.encode(&*sealed),
        }
    }

    /// The key `pin` unlocks. With a wrong PIN this is a different, valid-looking key: nothing
    /// here can tell, by design. (Were the bytes not a valid scalar, which happens with
    /// probability about 2^-32, a random key stands in, so even that reveals nothing.)
    pub fn unseal(&self, pin: &str) -> Result<DeviceKey, String> {
        let damaged = || "the phone sign-in key in this vault is damaged".to_string();
        let salt = URL_SAFE_NO_PAD.decode(&self.salt).map_err(|_| damaged())?;
        let sealed = Zeroizing::new(
            URL_SAFE_NO_PAD
                .decode(&self.sealed)
                .map_err(|_| damaged())?,
        );
        if salt.len() != SALT_LEN || sealed.len() != SCALAR_LEN {
            return Err(damaged());
        }
        let pad = pad(pin, &salt);
        let scalar: Zeroizing<Vec<u8>> =
            Zeroizing::new(sealed.iter().zip(pad.iter()).map(|(a, b)| a ^ b).collect());
        Ok(DeviceKey::from_bytes(&scalar).unwrap_or_else(DeviceKey::generate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn right_pin_unseals_the_key_and_wrong_pins_unseal_other_keys() {
        let key = DeviceKey::generate();
        let sealed = SealedKey::seal(&key, "482913");
        assert_eq!(
            sealed.unseal("482913").unwrap().public_key(),
            key.public_key()
        );
        for wrong in ["482914", "000000", ""] {
            let other = sealed.unseal(wrong).unwrap();
            assert_ne!(other.public_key(), key.public_key(), "{wrong}");
        }
        // The same key sealed twice looks unrelated (fresh salt).
        let again = SealedKey::seal(&key, "482913");
        assert_ne!(again.sealed, sealed.sealed);
        assert_ne!(again.salt, sealed.salt);
    }

    #[test]
    fn damaged_seals_are_reported() {
        let mut s = SealedKey::seal(&DeviceKey::generate(), "482913");
        s.sealed = "AAAA".into();
        assert!(s.unseal("482913").unwrap_err().contains("damaged"));
    }
}
