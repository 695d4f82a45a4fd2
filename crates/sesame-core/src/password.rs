//! Password hashing with Argon2id, m=19 MiB, t=2, p=1 (OWASP's recommendation).
//!
//! These calls are CPU-heavy (about 17 ms each); servers run them off the async runtime with
//! bounded concurrency.

use crate::secret::SecretString;
use argon2::password_hash::{rand_core::CryptoRngCore, PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use std::sync::OnceLock;

pub const MEMORY_KIB: u32 = 19 * 1024;
pub const ITERATIONS: u32 = 2;
pub const PARALLELISM: u32 = 1;

/// Shortest password accepted when one is set (NIST SP 800-63B: at least 8).
pub const MIN_LENGTH: usize = 8;
/// Longest password accepted, so a huge body cannot make hashing expensive.
pub const MAX_LENGTH: usize = 256;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    #[error("The password must be at least {MIN_LENGTH} characters long.")]
    TooShort,
    #[error("The password must be at most {MAX_LENGTH} characters long.")]
    TooLong,
    #[error("internal password hashing error: {0}")]
    Hashing(String),
}

pub fn argon2() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)
        .expect("static Argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Checks the length rules for a new password.
pub fn validate_new(password: &SecretString) -> Result<(), PasswordError> {
    let n = password.expose().chars().count();
    if n < MIN_LENGTH {
        Err(PasswordError::TooShort)
    } else if n > MAX_LENGTH {
        Err(PasswordError::TooLong)
    } else {
        Ok(())
    }
}

/// Hashes a new password into a PHC string.
pub fn hash(
    password: &SecretString,
    rng: &mut impl CryptoRngCore,
) -> Result<String, PasswordError> {
    validate_new(password)?;
    let salt = SaltString::generate(rng);
    argon2()
        .hash_password(password.expose().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hashing(e.to_string()))
}

/// A fixed hash used when there is no real one (unknown user, user without password), so
/// that every password check costs one full Argon2id evaluation: no timing tells them apart.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::encode_b64(b"sesame-dummy-salt").expect("static salt is valid");
        argon2()
            .hash_password(b"no password can match this dummy", &salt)
            .expect("hashing a static value works")
            .to_string()
    })
}

/// Verifies a password against a stored hash; with `None`, burns the same time and fails.
pub fn verify(stored: Option<&str>, password: &SecretString) -> bool {
    let candidate = password.expose().as_bytes();
    if candidate.len() > MAX_LENGTH * 4 {
        // Still spend the time, so length does not become an oracle.
        let _ = verify_phc(dummy_hash(), b"x");
        return false;
    }
    match stored {
        Some(phc) => verify_phc(phc, candidate),
        None => {
            let _ = verify_phc(dummy_hash(), candidate);
            false
        }
    }
}

thread_local! {
    /// Argon2 working memory, reused by every verification on this thread: allocating and
    /// zero-filling 19 MiB per check cost ~20% of sign-in throughput (measured with
    /// sesame-bench). The next hash overwrites every block before reading it; the buffer holds
    /// values derived from a password, never the password itself.
    static BLOCKS: std::cell::RefCell<Vec<argon2::Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn verify_phc(phc: &str, candidate: &[u8]) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let Ok(alg) = Algorithm::try_from(parsed.algorithm) else {
        return false;
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::V0x13,
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let n = params.block_count();
    let ctx = Argon2::new(alg, version, params);
    let mut out = [0u8; 64];
    let Some(out) = out.get_mut(..expected.len()) else {
        return false;
    };
    let ok = if n <= (MEMORY_KIB as usize) {
        BLOCKS.with(|b| {
            let mut b = b.borrow_mut();
            if b.len() < n {
                b.resize(n, argon2::Block::default());
            }
            ctx.hash_password_into_with_memory(candidate, salt, &mut *out, &mut b[..n])
                .is_ok()
        })
    } else {
        ctx.hash_password_into(candidate, salt, &mut *out).is_ok()
    };
    ok && crate::secret::ct_eq(out, expected.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::rand_core::OsRng;

    #[test]
    fn hash_then_verify() {
        let pw = SecretString::new("correct horse battery".into());
        let h = hash(&pw, &mut OsRng).unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify(Some(&h), &pw));
        assert!(!verify(
            Some(&h),
            &SecretString::new("correct horse battery!".into())
        ));
    }

    #[test]
    fn missing_hash_never_verifies() {
        assert!(!verify(
            None,
            &SecretString::new("no password can match this dummy".into())
        ));
        assert!(!verify(
            Some("not a phc string"),
            &SecretString::new("whatever1".into())
        ));
    }

    #[test]
    fn new_password_length_rules() {
        assert_eq!(
            validate_new(&SecretString::new("short".into())),
            Err(PasswordError::TooShort)
        );
        assert_eq!(
            validate_new(&SecretString::new("x".repeat(257))),
            Err(PasswordError::TooLong)
        );
        assert!(validate_new(&SecretString::new("long enough".into())).is_ok());
    }
}
