//! The keys that sign OpenID Connect tokens, and the JSON Web Signatures they make.
//!
//! One signing key per algorithm is current: RS256 (the registration default, which every
//! provider must offer), ES256 and EdDSA (per client, `id_token_signed_response_alg`; ES256
//! also signs access tokens, being about twenty times faster than RS256 here). Keys are made
//! on first use, sealed with the master key in the store, and rotated by `sesame keys rotate`:
//! the new key signs from then on, the old one stays published for [`OVERLAP_SECS`] so that
//! tokens it signed still verify, then it is forgotten.
//!
//! All signing is aws-lc-rs (RSA too: the RustCrypto `rsa` crate has a timing side channel,
//! RUSTSEC-2023-0071). The compact JWS form is a few lines of base64url around the signature;
//! what verifies it here is checked against two independent relying-party libraries in the
//! tests (`openidconnect` in Rust, `openid-client` in Node).

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{
    self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use sesame_core::secret::SecretBytes;
use sesame_core::UnixTime;
use sesame_store::{SigningKey, Store, StoreError};
use std::sync::{Arc, RwLock};

/// How long a retired key stays published (ID tokens live an hour, access tokens minutes;
/// relying parties cache the key set for a while).
pub const OVERLAP_SECS: i64 = 24 * 3600;
/// How often a process looks for keys another process (a rotation, another node) made.
const RELOAD_SECS: i64 = 60;

/// A JWS algorithm Sesame signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Alg {
    #[serde(rename = "RS256")]
    Rs256,
    #[serde(rename = "ES256")]
    Es256,
    #[serde(rename = "EdDSA")]
    EdDsa,
}

impl Alg {
    pub const ALL: [Alg; 3] = [Alg::Rs256, Alg::Es256, Alg::EdDsa];

    pub fn as_str(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Es256 => "ES256",
            Alg::EdDsa => "EdDSA",
        }
    }

    pub fn parse(s: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

enum Signer {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// One key, ready to sign and to verify.
pub struct Key {
    pub kid: String,
    pub alg: Alg,
    pub created_at: UnixTime,
    pub retired_at: Option<UnixTime>,
    signer: Signer,
    public: Vec<u8>,
    jwk: Value,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn bad_key(kid: &str) -> StoreError {
    StoreError::Database(format!("signing key {kid} cannot be read"))
}

impl Key {
    /// A new key of `alg`, with a random kid.
    pub fn generate(alg: Alg, now: UnixTime) -> Result<(Key, SigningKey), StoreError> {
        let failed = |_| StoreError::Database(format!("cannot make a {} key", alg.as_str()));
        let pkcs8: Vec<u8> = match alg {
            Alg::Rs256 => RsaKeyPair::generate(KeySize::Rsa2048)
                .map_err(failed)?
                .as_der()
                .map_err(failed)?
                .as_ref()
                .to_vec(),
            Alg::Es256 => EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                .map_err(failed)?
                .to_pkcs8v1()
                .map_err(failed)?
                .as_ref()
                .to_vec(),
            Alg::EdDsa => Ed25519KeyPair::generate()
                .map_err(failed)?
                .to_pkcs8v1()
                .map_err(failed)?
                .as_ref()
                .to_vec(),
        };
        let kid = {
            let mut b = [0u8; 12];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
            b64(&b)
        };
        let record = SigningKey {
            kid: kid.clone(),
            alg: alg.as_str().into(),
            private_key: SecretBytes::new(pkcs8),
            public_jwk: String::new(),
            created_at: now,
            retired_at: None,
        };
        let key = Key::load(&record)?;
        let record = SigningKey {
            public_jwk: key.jwk.to_string(),
            ..record
        };
        Ok((key, record))
    }

    /// A stored key, opened.
    pub fn load(rec: &SigningKey) -> Result<Key, StoreError> {
        let alg = Alg::parse(&rec.alg).ok_or_else(|| bad_key(&rec.kid))?;
        let der = rec.private_key.expose();
        let bad = |_| bad_key(&rec.kid);
        let (signer, public, mut jwk) = match alg {
            Alg::Rs256 => {
                let kp = RsaKeyPair::from_pkcs8(der).map_err(bad)?;
                let pk = kp.public_key();
                let jwk = json!({
                    "kty": "RSA",
                    "n": b64(pk.modulus().big_endian_without_leading_zero()),
                    "e": b64(pk.exponent().big_endian_without_leading_zero()),
                });
                let public = pk.as_ref().to_vec();
                (Signer::Rsa(kp), public, jwk)
            }
            Alg::Es256 => {
                let kp =
                    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der).map_err(bad)?;
                // An uncompressed point: 0x04, then x and y.
                let point = kp.public_key().as_ref().to_vec();
                if point.len() != 65 {
                    return Err(bad_key(&rec.kid));
                }
                let jwk = json!({
                    "kty": "EC",
                    "crv": "P-256",
                    "x": b64(&point[1..33]),
                    "y": b64(&point[33..]),
                });
                (Signer::Ec(kp), point, jwk)
            }
            Alg::EdDsa => {
                let kp = Ed25519KeyPair::from_pkcs8(der).map_err(bad)?;
                let public = kp.public_key().as_ref().to_vec();
                let jwk = json!({ "kty": "OKP", "crv": "Ed25519", "x": b64(&public) });
                (Signer::Ed(kp), public, jwk)
            }
        };
        jwk["kid"] = json!(rec.kid);
        jwk["use"] = json!("sig");
        jwk["alg"] = json!(alg.as_str());
        Ok(Key {
            kid: rec.kid.clone(),
            alg,
            created_at: rec.created_at,
            retired_at: rec.retired_at,
            signer,
            public,
            jwk,
        })
    }

    /// The public key as published.
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    fn sign_bytes(&self, msg: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.signer {
            Signer::Rsa(kp) => {
                let mut sig = vec![0; kp.public_modulus_len()];
                kp.sign(&signature::RSA_PKCS1_SHA256, &rng, msg, &mut sig)
                    .expect("RSA signing of a bounded message cannot fail");
                sig
            }
            Signer::Ec(kp) => kp
                .sign(&rng, msg)
                .expect("ECDSA signing cannot fail")
                .as_ref()
                .to_vec(),
            Signer::Ed(kp) => kp.sign(msg).as_ref().to_vec(),
        }
    }

    /// `claims` as a compact JWS of type `typ` (`JWT`, or `at+jwt` for access tokens).
    pub fn sign(&self, typ: &str, claims: &Value) -> String {
        let header = json!({ "alg": self.alg.as_str(), "kid": self.kid, "typ": typ });
        let mut out = b64(header.to_string().as_bytes());
        out.push('.');
        out.push_str(&b64(claims.to_string().as_bytes()));
        let sig = self.sign_bytes(out.as_bytes());
        out.push('.');
        out.push_str(&b64(&sig));
        out
    }

    fn verifies(&self, msg: &[u8], sig: &[u8]) -> bool {
        let alg: &dyn signature::VerificationAlgorithm = match self.alg {
            Alg::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Alg::Es256 => &signature::ECDSA_P256_SHA256_FIXED,
            Alg::EdDsa => &signature::ED25519,
        };
        UnparsedPublicKey::new(alg, &self.public)
            .verify(msg, sig)
            .is_ok()
    }
}

/// The keys as one process knows them.
pub struct Loaded {
    pub keys: Vec<Arc<Key>>,
    at: UnixTime,
}

impl Loaded {
    /// The key that signs with `alg` now: the newest not retired.
    pub fn signer(&self, alg: Alg) -> Option<&Arc<Key>> {
        self.keys
            .iter()
            .filter(|k| k.alg == alg && k.retired_at.is_none())
            .max_by(|a, b| (a.created_at, &a.kid).cmp(&(b.created_at, &b.kid)))
    }

    /// The published key set: current keys, and retired ones still in their overlap.
    pub fn jwks(&self, now: UnixTime) -> Value {
        let keys: Vec<&Value> = self
            .keys
            .iter()
            .filter(|k| k.retired_at.is_none_or(|r| now < r + OVERLAP_SECS))
            .map(|k| &k.jwk)
            .collect();
        json!({ "keys": keys })
    }

    /// The claims of `token` if one of the published keys of an algorithm in `algs` signed
    /// it and its header names type `typ`; nothing else is checked here (expiry, audience).
    pub fn verify(&self, token: &str, algs: &[Alg], typ: &str, now: UnixTime) -> Option<Value> {
        let mut parts = token.split('.');
        let (h, c, s) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).ok()?).ok()?;
        let alg = Alg::parse(header.get("alg")?.as_str()?)?;
        let kid = header.get("kid")?.as_str()?;
        if !algs.contains(&alg) || header.get("typ").and_then(Value::as_str) != Some(typ) {
            return None;
        }
        let key = self.keys.iter().find(|k| {
            k.kid == kid && k.alg == alg && k.retired_at.is_none_or(|r| now < r + OVERLAP_SECS)
        })?;
        let sig = URL_SAFE_NO_PAD.decode(s).ok()?;
        let signed_len = h.len() + 1 + c.len();
        if !key.verifies(&token.as_bytes()[..signed_len], &sig) {
            return None;
        }
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(c).ok()?).ok()
    }
}

/// The keys, loaded from the store and reloaded now and then.
#[derive(Default)]
pub struct Keyring {
    loaded: RwLock<Option<Arc<Loaded>>>,
    /// One load at a time (making a key is slow; two at once would make two).
    loading: tokio::sync::Mutex<()>,
}

impl Keyring {
    /// The keys, with a current one for every algorithm (made now if missing).
    pub async fn current(
        &self,
        store: &dyn Store,
        now: UnixTime,
    ) -> Result<Arc<Loaded>, StoreError> {
        if let Some(l) = self.fresh(now) {
            return Ok(l);
        }
        let _one = self.loading.lock().await;
        if let Some(l) = self.fresh(now) {
            return Ok(l);
        }
        let loaded = Arc::new(load(store, now).await?);
        *self
            .loaded
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(loaded.clone());
        Ok(loaded)
    }

    fn fresh(&self, now: UnixTime) -> Option<Arc<Loaded>> {
        let l = self
            .loaded
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()?;
        (now >= l.at && now - l.at < RELOAD_SECS).then_some(l)
    }

    /// Forgets what was loaded (after this process rotated a key).
    pub fn invalidate(&self) {
        *self
            .loaded
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }
}

async fn load(store: &dyn Store, now: UnixTime) -> Result<Loaded, StoreError> {
    let mut keys = Vec::new();
    for rec in store.list_signing_keys().await? {
        keys.push(Arc::new(Key::load(&rec)?));
    }
    let mut lost = false;
    for alg in Alg::ALL {
        if !keys.iter().any(|k| k.alg == alg && k.retired_at.is_none()) {
            let (key, rec) = Key::generate(alg, now)?;
            if store.add_signing_key(&rec).await? {
                tracing::info!(kid = %key.kid, alg = alg.as_str(), "made an OpenID Connect signing key");
                keys.push(Arc::new(key));
            } else {
                // Another node made one at the same moment, and the database kept theirs: every
                // node must sign with, and publish, the same key.
                lost = true;
            }
        }
    }
    if lost {
        keys.clear();
        for rec in store.list_signing_keys().await? {
            keys.push(Arc::new(Key::load(&rec)?));
        }
    }
    Ok(Loaded { keys, at: now })
}

/// Makes a new key for `alg` and retires the ones it replaces (they stay published for
/// [`OVERLAP_SECS`]); forgets keys whose overlap ended. Returns the new key's kid.
pub async fn rotate(store: &dyn Store, alg: Alg, now: UnixTime) -> Result<String, StoreError> {
    let (key, rec) = Key::generate(alg, now)?;
    store.replace_signing_key(&rec, now).await?;
    store
        .remove_signing_keys_retired_before(now - OVERLAP_SECS)
        .await?;
    Ok(key.kid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_algorithm_signs_what_it_alone_verifies() {
        let claims = json!({ "sub": "1", "aud": "app" });
        let mut loaded = Loaded {
            keys: vec![],
            at: 0,
        };
        for alg in Alg::ALL {
            let (key, rec) = Key::generate(alg, 0).unwrap();
            // What is stored loads back to the same key.
            let again = Key::load(&rec).unwrap();
            assert_eq!(again.jwk(), key.jwk());
            assert_eq!(key.jwk()["alg"], alg.as_str());
            assert_eq!(key.jwk()["use"], "sig");
            loaded.keys.push(Arc::new(again));
            let token = key.sign("JWT", &claims);
            assert_eq!(
                loaded.verify(&token, &[alg], "JWT", 0),
                Some(claims.clone())
            );
            // Another type, another algorithm, a changed payload or signature: refused.
            assert_eq!(loaded.verify(&token, &[alg], "at+jwt", 0), None);
            let others: Vec<Alg> = Alg::ALL.into_iter().filter(|a| *a != alg).collect();
            assert_eq!(loaded.verify(&token, &others, "JWT", 0), None);
            let parts: Vec<&str> = token.split('.').collect();
            let forged = format!(
                "{}.{}.{}",
                parts[0],
                b64(json!({ "sub": "2", "aud": "app" }).to_string().as_bytes()),
                parts[2]
            );
            assert_eq!(loaded.verify(&forged, &[alg], "JWT", 0), None);
            let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
            sig[0] ^= 1;
            let bent = format!("{}.{}.{}", parts[0], parts[1], b64(&sig));
            assert_eq!(loaded.verify(&bent, &[alg], "JWT", 0), None);
        }
    }

    #[test]
    fn alg_none_and_unknown_kids_are_refused() {
        let (key, _) = Key::generate(Alg::Es256, 0).unwrap();
        let loaded = Loaded {
            keys: vec![Arc::new(key)],
            at: 0,
        };
        let none = format!(
            "{}.{}.",
            b64(br#"{"alg":"none","typ":"JWT"}"#),
            b64(br#"{"sub":"1"}"#)
        );
        assert_eq!(loaded.verify(&none, &Alg::ALL, "JWT", 0), None);
        let (stranger, _) = Key::generate(Alg::Es256, 0).unwrap();
        let token = stranger.sign("JWT", &json!({ "sub": "1" }));
        assert_eq!(loaded.verify(&token, &Alg::ALL, "JWT", 0), None);
    }

    #[test]
    fn a_retired_key_is_published_and_verifies_only_during_its_overlap() {
        let (mut old, _) = Key::generate(Alg::Es256, 0).unwrap();
        old.retired_at = Some(100);
        let token = old.sign("JWT", &json!({ "sub": "1" }));
        let (new, _) = Key::generate(Alg::Es256, 100).unwrap();
        let loaded = Loaded {
            keys: vec![Arc::new(old), Arc::new(new)],
            at: 100,
        };
        assert_eq!(
            loaded.signer(Alg::Es256).unwrap().created_at,
            100,
            "the new key signs"
        );
        assert_eq!(loaded.jwks(101)["keys"].as_array().unwrap().len(), 2);
        assert!(loaded.verify(&token, &[Alg::Es256], "JWT", 101).is_some());
        let later = 100 + OVERLAP_SECS;
        assert_eq!(loaded.jwks(later)["keys"].as_array().unwrap().len(), 1);
        assert!(loaded.verify(&token, &[Alg::Es256], "JWT", later).is_none());
    }
}
