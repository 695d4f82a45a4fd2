//! Verification codes (RFC 6238): SHA-1, 6 digits, 30-second steps, +-1 step accepted.
//!
//! Single use of a step is enforced by the store (an atomic "step greater than the last used
//! step" update); this module finds which step a code belongs to.

use crate::secret::{ct_eq, SecretBytes};
use crate::UnixTime;
use totp_rs::{Algorithm, TOTP};

pub const DIGITS: usize = 6;
pub const STEP_SECONDS: i64 = 30;
/// Steps accepted on either side of the current one (clock drift between phone and server).
pub const SKEW_STEPS: i64 = 1;
/// Length of a newly generated secret: 160 bits, as RFC 4226 recommends.
pub const SECRET_LEN: usize = 20;

/// Why a typed code was refused before it was ever compared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeFormatError {
    #[error("Enter the code.")]
    Empty,
    #[error("Enter the 6-digit code, digits only.")]
    Malformed,
}

/// A syntactically valid 6-digit code.
#[derive(Clone, PartialEq, Eq)]
pub struct Code(String);

impl std::fmt::Debug for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Code([redacted])")
    }
}

impl Code {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Accepts what people type: surrounding whitespace and spaces inside ("123 456") are
/// forgiven; anything but exactly six ASCII digits is refused (full-width digits included, so
/// no Unicode digit can alias an ASCII one).
pub fn parse_code(input: &str) -> Result<Code, CodeFormatError> {
    if input.len() > 64 {
        return Err(CodeFormatError::Malformed);
    }
    let compact: String = input.chars().filter(|c| *c != ' ' && *c != '\t').collect();
    if compact.is_empty() {
        return Err(CodeFormatError::Empty);
    }
    if compact.len() != DIGITS || !compact.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CodeFormatError::Malformed);
    }
    Ok(Code(compact))
}

/// The time step a moment falls in. Steps before the epoch are clamped to 0.
pub fn step_at(now: UnixTime) -> i64 {
    now.max(0) / STEP_SECONDS
}

fn generator(secret: &SecretBytes, digits: usize) -> TOTP {
    // new_unchecked: secrets from other issuers may be shorter than 128 bits and must still work.
    TOTP::new_unchecked(
        Algorithm::SHA1,
        digits,
        0,
        STEP_SECONDS as u64,
        secret.expose().to_vec(),
    )
}

/// The code for one step.
pub fn code_for_step(secret: &SecretBytes, step: i64) -> String {
    generator(secret, DIGITS).generate((step.max(0) * STEP_SECONDS) as u64)
}

/// The code shown at a moment.
pub fn code_at(secret: &SecretBytes, now: UnixTime) -> String {
    code_for_step(secret, step_at(now))
}

/// The step within +-[`SKEW_STEPS`] of `now` whose code equals `code`, newest first, compared in
/// constant time. The caller must then claim the step atomically in the store.
pub fn matching_step(secret: &SecretBytes, code: &Code, now: UnixTime) -> Option<i64> {
    let current = step_at(now);
    let mut found = None;
    // Every candidate is compared (no early exit) so timing does not tell which step matched.
    for step in (current - SKEW_STEPS..=current + SKEW_STEPS).rev() {
        if step < 0 {
            continue;
        }
        if ct_eq(
            code_for_step(secret, step).as_bytes(),
            code.as_str().as_bytes(),
        ) && found.is_none()
        {
            found = Some(step);
        }
    }
    found
}

/// Base32 (no padding) as authenticator apps expect it.
pub fn secret_base32(secret: &SecretBytes) -> String {
    data_encoding::BASE32_NOPAD.encode(secret.expose())
}

/// Decodes a base32 secret as typed or pasted (spaces, lower case and padding tolerated).
pub fn secret_from_base32(text: &str) -> Option<SecretBytes> {
    let cleaned: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '=' && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    data_encoding::BASE32_NOPAD
        .decode(cleaned.as_bytes())
        .ok()
        .map(SecretBytes::new)
}

/// The `otpauth://` URI (Google Authenticator key-uri format) for a QR code.
pub fn otpauth_uri(issuer: &str, account: &str, secret: &SecretBytes) -> String {
    let enc = |s: &str| percent_encode(s);
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={}&period={}",
        enc(issuer),
        enc(account),
        secret_base32(secret),
        enc(issuer),
        DIGITS,
        STEP_SECONDS
    )
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rfc_secret() -> SecretBytes {
        SecretBytes::new(b"12345678901234567890".to_vec())
    }

    /// RFC 6238 appendix B, SHA-1 column (8 digits).
    #[test]
    fn rfc6238_sha1_vectors() {
        let vectors = [
            (59u64, "94287082"),
            (1111111109, "07081804"),
            (1111111111, "14050471"),
            (1234567890, "89005924"),
            (2000000000, "69279037"),
            (20000000000, "65353130"),
        ];
        for (t, want) in vectors {
            assert_eq!(generator(&rfc_secret(), 8).generate(t), want, "t={t}");
        }
    }

    #[test]
    fn six_digit_codes_are_the_low_digits_of_the_rfc_vectors() {
        assert_eq!(code_at(&rfc_secret(), 59), "287082");
        assert_eq!(code_at(&rfc_secret(), 1111111109), "081804");
    }

    #[test]
    fn code_matches_current_and_adjacent_steps_only() {
        let s = rfc_secret();
        let now = 1_700_000_000;
        let step = step_at(now);
        for (offset, accepted) in [(-2, false), (-1, true), (0, true), (1, true), (2, false)] {
            let code = parse_code(&code_for_step(&s, step + offset)).unwrap();
            let got = matching_step(&s, &code, now);
            if accepted {
                assert_eq!(got, Some(step + offset), "offset {offset}");
            } else {
                // A far-away step could collide with a near one by chance (1 in 10^6): only
                // accept the collision if the code really equals a near step's code.
                if let Some(st) = got {
                    assert!((st - step).abs() <= 1);
                    assert_eq!(code_for_step(&s, st), code.as_str());
                }
            }
        }
    }

    #[test]
    fn malformed_codes_are_refused_before_comparison() {
        for bad in [
            "12345",
            "1234567",
            "12a456",
            "１２３４５６",
            "-12345",
            "+12345",
            "1e5000",
            "123.45",
        ] {
            assert_eq!(parse_code(bad), Err(CodeFormatError::Malformed), "{bad:?}");
        }
        for empty in ["", "   ", "\t"] {
            assert_eq!(parse_code(empty), Err(CodeFormatError::Empty), "{empty:?}");
        }
        assert_eq!(
            parse_code(&"1".repeat(10_000_000)),
            Err(CodeFormatError::Malformed)
        );
        assert_eq!(parse_code(" 123 456 ").unwrap().as_str(), "123456");
    }

    #[test]
    fn otpauth_uri_carries_every_parameter() {
        let uri = otpauth_uri("Sesame", "alice@example", &rfc_secret());
        assert_eq!(
            uri,
            "otpauth://totp/Sesame:alice%40example?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Sesame&algorithm=SHA1&digits=6&period=30"
        );
    }

    #[test]
    fn base32_round_trips_and_forgives_formatting() {
        let s = rfc_secret();
        let text = secret_base32(&s);
        assert_eq!(secret_from_base32(&text).unwrap(), s);
        assert_eq!(secret_from_base32(&text.to_lowercase()).unwrap(), s);
        assert!(secret_from_base32("not base32!").is_none());
    }
}
