//! The device key (ECDSA P-256, ES256): generated on activation, kept in the vault, used to
//! sign every request and every answer to a sign-in request.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::ecdsa::SigningKey;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use zeroize::Zeroizing;

/// One P-256 key held twice: `p256` owns the scalar we store and derives the public point;
/// `ring` signs, several times faster (this runs on every request and every answer).
pub struct DeviceKey {
    /// Zeroized on drop by `p256`.
    secret: SigningKey,
    /// ring keeps its own copy of the scalar (and a nonce key hashed from it) and does not
    /// zeroize it on drop. Accepted: it lives exactly as long as `secret`, in the same process,
    /// and ring offers no zeroizing key type.
    signer: EcdsaKeyPair,
}

impl std::fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceKey({})", self.public_key())
    }
}

impl DeviceKey {
    pub fn generate() -> Self {
        Self::new(SigningKey::random(&mut rand::rngs::OsRng))
            .expect("ring accepts a fresh P-256 key")
    }

    /// Restores a key from [`DeviceKey::to_secret`].
    pub fn from_secret(b64: &str) -> Option<Self> {
        let raw = Zeroizing::new(URL_SAFE_NO_PAD.decode(b64).ok()?);
        Self::from_bytes(&raw)
    }

    /// A key from its raw 32-byte scalar, if that is a valid P-256 scalar.
    pub fn from_bytes(raw: &[u8]) -> Option<Self> {
        Self::new(SigningKey::from_slice(raw).ok()?)
    }

    /// Builds ring's key pair once per key, not per signature. ring takes the scalar with its
    /// public point and checks that they match; it only fails for a key `p256` already rejects
    /// or when the system RNG is unavailable.
    fn new(secret: SigningKey) -> Option<Self> {
        let scalar = Zeroizing::new(secret.to_bytes());
        let public = secret.verifying_key().to_encoded_point(false);
        let signer = EcdsaKeyPair::from_private_key_and_public_key(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &scalar,
            public.as_bytes(),
            &SystemRandom::new(),
        )
        .ok()?;
        Some(DeviceKey { secret, signer })
    }

    /// The raw private scalar (sealed by [`crate::pinkey`]).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(Zeroizing::new(self.secret.to_bytes()).to_vec())
    }

    /// The private scalar, base64url; only ever stored inside the encrypted vault.
    pub fn to_secret(&self) -> Zeroizing<String> {
        Zeroizing::new(URL_SAFE_NO_PAD.encode(Zeroizing::new(self.secret.to_bytes())))
    }

    /// SEC1 uncompressed public point, base64url, as the activation request carries it.
    pub fn public_key(&self) -> String {
        URL_SAFE_NO_PAD.encode(
            self.secret
                .verifying_key()
                .to_encoded_point(false)
                .as_bytes(),
        )
    }

    /// ES256 signature (raw r||s), base64url. Randomized, not RFC 6979 (ring also mixes the key
    /// and the message digest into each nonce, as a hedge against a faulty RNG); nothing
    /// compares signature bytes: replays are caught by request nonces.
    pub fn sign(&self, message: &[u8]) -> String {
        let sig = self
            .signer
            .sign(&SystemRandom::new(), message)
            .expect("the system RNG is available");
        URL_SAFE_NO_PAD.encode(sig.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier;
    use p256::ecdsa::{Signature, VerifyingKey};
    use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};

    /// Whether `sig` verifies over `msg` under `key`'s public key, checked by both `p256` and
    /// `ring` (the server's verifier); they must agree.
    fn verifies(key: &DeviceKey, msg: &[u8], sig: &str) -> bool {
        let public = URL_SAFE_NO_PAD.decode(key.public_key()).unwrap();
        let raw = URL_SAFE_NO_PAD.decode(sig).unwrap();
        assert_eq!(raw.len(), 64, "fixed-size r||s");
        let by_p256 = VerifyingKey::from_sec1_bytes(&public)
            .unwrap()
            .verify(msg, &Signature::from_slice(&raw).unwrap())
            .is_ok();
        let by_ring = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &public)
            .verify(msg, &raw)
            .is_ok();
        assert_eq!(by_p256, by_ring, "p256 and ring disagree");
        by_p256
    }

    #[test]
    fn signatures_verify_with_p256_and_ring_and_only_for_their_message() {
        let k = DeviceKey::generate();
        let sig = k.sign(b"hello");
        assert!(verifies(&k, b"hello", &sig));
        assert!(!verifies(&k, b"hellO", &sig));
        assert!(!verifies(&DeviceKey::generate(), b"hello", &sig));
        let mut bent = URL_SAFE_NO_PAD.decode(&sig).unwrap();
        bent[40] ^= 1;
        assert!(!verifies(&k, b"hello", &URL_SAFE_NO_PAD.encode(bent)));
        // Signatures are randomized (not RFC 6979): the same message signs differently, and
        // every one verifies.
        let again = k.sign(b"hello");
        assert_ne!(sig, again);
        assert!(verifies(&k, b"hello", &again));
    }

    #[test]
    fn stored_scalar_and_public_key_encodings_are_unchanged() {
        // RFC 6979 A.2.5's P-256 key, as an existing vault stores it.
        let scalar = data_encoding::HEXUPPER
            .decode(b"C9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721")
            .unwrap();
        let public = data_encoding::HEXUPPER
            .decode(
                b"04\
                  60FED4BA255A9D31C961EB74C6356D68C049B8923B61FA6CE669622E60F29FB6\
                  7903FE1008B8BC99A41AE9E95628BC64F2F1B20C2D7E9F5177A3C294D4462299",
            )
            .unwrap();
        let stored = URL_SAFE_NO_PAD.encode(&scalar);
        let k = DeviceKey::from_secret(&stored).unwrap();
        assert_eq!(*k.to_secret(), stored);
        assert_eq!(*k.to_bytes(), scalar);
        assert_eq!(k.public_key(), URL_SAFE_NO_PAD.encode(&public));
        assert!(verifies(&k, b"sample", &k.sign(b"sample")));
    }

    #[test]
    fn key_survives_the_vault_and_still_signs() {
        use crate::pinkey::SealedKey;
        use crate::vault::{Account, SesameLink, Vault};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault");
        let (device, pin) = (DeviceKey::generate(), DeviceKey::generate());
        let mut v = Vault::open_or_create(&path).unwrap();
        v.data.accounts.push(Account {
            id: "a".into(),
            added_at: 0,
            otp: crate::otp::OtpAccount::from_uri(
                "otpauth://totp/Sesame:alice?secret=GEZDGNBVGY3TQOJQ",
            )
            .unwrap(),
            sesame: Some(SesameLink {
                server: "https://sesame.example".into(),
                device_id: "d".into(),
                username: "alice".into(),
                device_key: device.to_secret().to_string(),
                pin_key: Some(SealedKey::seal(&pin, "482913")),
                phone_sign_in: true,
                removed_on_server: false,
            }),
        });
        v.save().unwrap();
        drop(v);
        let v = Vault::open_or_create(&path).unwrap();
        let link = v.data.accounts[0].sesame.as_ref().unwrap();
        let device_again = DeviceKey::from_secret(&link.device_key).unwrap();
        let pin_again = link.pin_key.as_ref().unwrap().unseal("482913").unwrap();
        for (before, after) in [(&device, &device_again), (&pin, &pin_again)] {
            assert_eq!(before.public_key(), after.public_key());
            assert!(verifies(before, b"answer", &after.sign(b"answer")));
            assert!(!verifies(before, b"answeR", &after.sign(b"answer")));
        }
    }

    #[test]
    fn invalid_scalars_are_refused() {
        assert!(DeviceKey::from_secret("not a key").is_none());
        assert!(DeviceKey::from_bytes(&[0; 32]).is_none());
        assert!(
            DeviceKey::from_bytes(&[0xff; 32]).is_none(),
            "above the group order"
        );
        assert!(DeviceKey::from_bytes(&[1; 16]).is_none());
    }
}
