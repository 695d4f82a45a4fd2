//! The device key (ECDSA P-256, ES256): generated on activation, kept in the vault, used to
//! sign every request and every answer to a sign-in request.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use zeroize::Zeroizing;

pub struct DeviceKey(SigningKey);

impl std::fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceKey({})", self.public_key())
    }
}

impl DeviceKey {
    pub fn generate() -> Self {
        DeviceKey(SigningKey::random(&mut rand::rngs::OsRng))
    }

    /// Restores a key from [`DeviceKey::to_secret`].
    pub fn from_secret(b64: &str) -> Option<Self> {
        let raw = Zeroizing::new(URL_SAFE_NO_PAD.decode(b64).ok()?);
        SigningKey::from_slice(&raw).ok().map(DeviceKey)
    }

    /// A key from its raw 32-byte scalar, if that is a valid P-256 scalar.
    pub fn from_bytes(raw: &[u8]) -> Option<Self> {
        SigningKey::from_slice(raw).ok().map(DeviceKey)
    }

    /// The raw private scalar (sealed by [`crate::pinkey`]).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.0.to_bytes().to_vec())
    }

    /// The private scalar, base64url; only ever stored inside the encrypted vault.
    pub fn to_secret(&self) -> Zeroizing<String> {
        Zeroizing::new(URL_SAFE_NO_PAD.encode(self.0.to_bytes()))
    }

    /// SEC1 uncompressed public point, base64url, as the activation request carries it.
    pub fn public_key(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0.verifying_key().to_encoded_point(false).as_bytes())
    }

    /// ES256 signature (raw r||s), base64url.
    pub fn sign(&self, message: &[u8]) -> String {
        let sig: Signature = self.0.sign(message);
        URL_SAFE_NO_PAD.encode(sig.to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier;
    use p256::ecdsa::VerifyingKey;

    #[test]
    fn key_survives_the_vault_and_signatures_verify() {
        let k = DeviceKey::generate();
        let again = DeviceKey::from_secret(&k.to_secret()).unwrap();
        assert_eq!(k.public_key(), again.public_key());
        let vk = VerifyingKey::from_sec1_bytes(&URL_SAFE_NO_PAD.decode(k.public_key()).unwrap())
            .unwrap();
        let sig =
            Signature::from_slice(&URL_SAFE_NO_PAD.decode(again.sign(b"hello")).unwrap()).unwrap();
        assert!(vk.verify(b"hello", &sig).is_ok());
        assert!(vk.verify(b"hellO", &sig).is_err());
        assert!(DeviceKey::from_secret("not a key").is_none());
    }
}
