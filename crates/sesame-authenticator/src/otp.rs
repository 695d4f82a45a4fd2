//! `otpauth://` accounts (any site's verification codes) and their codes (RFC 6238).

use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};
use std::fmt;
use totp_rs::{Algorithm, TOTP};
use zeroize::Zeroizing;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OtpAlgorithm {
    #[serde(rename = "SHA1")]
    Sha1,
    #[serde(rename = "SHA256")]
    Sha256,
    #[serde(rename = "SHA512")]
    Sha512,
}

/// One account's code parameters. The secret is base32 text, kept only inside the vault.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtpAccount {
    pub issuer: String,
    pub name: String,
    pub secret_base32: String,
    pub algorithm: OtpAlgorithm,
    pub digits: u32,
    pub period: u64,
}

impl fmt::Debug for OtpAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtpAccount")
            .field("issuer", &self.issuer)
            .field("name", &self.name)
            .field("secret_base32", &"[redacted]")
            .finish()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OtpauthError {
    #[error("not an otpauth:// link")]
    NotOtpauth,
    #[error("only time-based codes (otpauth://totp/...) are supported, not {0:?}")]
    UnsupportedType(String),
    #[error("the link has no secret")]
    MissingSecret,
    #[error("the secret is not valid base32")]
    BadSecret,
    #[error("unsupported algorithm {0:?} (SHA1, SHA256 or SHA512)")]
    BadAlgorithm(String),
    #[error("unsupported number of digits {0:?} (6 to 8)")]
    BadDigits(String),
    #[error("unsupported period {0:?} (1 to 300 seconds)")]
    BadPeriod(String),
    #[error("the link names a parameter twice: {0}")]
    Duplicate(String),
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

fn normalise_secret(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace() && *c != '=' && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

impl OtpAccount {
    /// Parses the Google Authenticator key-uri format.
    pub fn from_uri(uri: &str) -> Result<Self, OtpauthError> {
        let url = url::Url::parse(uri.trim()).map_err(|_| OtpauthError::NotOtpauth)?;
        if url.scheme() != "otpauth" {
            return Err(OtpauthError::NotOtpauth);
        }
        let kind = url.host_str().unwrap_or("").to_ascii_lowercase();
        if kind != "totp" {
            return Err(OtpauthError::UnsupportedType(kind));
        }
        let label = decode(url.path().trim_start_matches('/'));
        let (label_issuer, name) = match label.split_once(':') {
            Some((i, n)) => (Some(i.trim().to_string()), n.trim().to_string()),
            None => (None, label.trim().to_string()),
        };
        let mut seen = std::collections::HashSet::new();
        let (mut secret, mut issuer, mut algorithm, mut digits, mut period) =
            (None, None, OtpAlgorithm::Sha1, 6, 30);
        for (k, v) in url.query_pairs() {
            let key = k.to_ascii_lowercase();
            if !seen.insert(key.clone()) {
                return Err(OtpauthError::Duplicate(key));
            }
            match key.as_str() {
                "secret" => secret = Some(normalise_secret(&v)),
                "issuer" => issuer = Some(v.trim().to_string()),
                "algorithm" => {
                    algorithm = match v.to_ascii_uppercase().as_str() {
                        "SHA1" => OtpAlgorithm::Sha1,
                        "SHA256" => OtpAlgorithm::Sha256,
                        "SHA512" => OtpAlgorithm::Sha512,
                        _ => return Err(OtpauthError::BadAlgorithm(v.into_owned())),
                    }
                }
                "digits" => {
                    digits = v
                        .parse()
                        .ok()
                        .filter(|d| (6..=8).contains(d))
                        .ok_or(OtpauthError::BadDigits(v.into_owned()))?
                }
                "period" => {
                    period = v
                        .parse()
                        .ok()
                        .filter(|p| (1..=300).contains(p))
                        .ok_or(OtpauthError::BadPeriod(v.into_owned()))?
                }
                _ => {}
            }
        }
        let secret = secret
            .filter(|s| !s.is_empty())
            .ok_or(OtpauthError::MissingSecret)?;
        let bytes = data_encoding::BASE32_NOPAD
            .decode(secret.as_bytes())
            .map_err(|_| OtpauthError::BadSecret)?;
        if bytes.is_empty() {
            return Err(OtpauthError::BadSecret);
        }
        let issuer = issuer
            .filter(|i| !i.is_empty())
            .or(label_issuer)
            .unwrap_or_default();
        Ok(OtpAccount {
            issuer,
            name,
            secret_base32: secret,
            algorithm,
            digits,
            period,
        })
    }

    /// "Issuer: name", or just the name.
    pub fn label(&self) -> String {
        if self.issuer.is_empty() {
            self.name.clone()
        } else {
            format!("{}: {}", self.issuer, self.name)
        }
    }

    fn generator(&self) -> TOTP {
        let secret = Zeroizing::new(
            data_encoding::BASE32_NOPAD
                .decode(self.secret_base32.as_bytes())
                .unwrap_or_default(),
        );
        let alg = match self.algorithm {
            OtpAlgorithm::Sha1 => Algorithm::SHA1,
            OtpAlgorithm::Sha256 => Algorithm::SHA256,
            OtpAlgorithm::Sha512 => Algorithm::SHA512,
        };
        TOTP::new_unchecked(alg, self.digits as usize, 0, self.period, secret.to_vec())
    }

    /// The code at Unix time `now` and the seconds it stays valid.
    pub fn code_at(&self, now: u64) -> (String, u64) {
        (
            self.generator().generate(now),
            self.period - now % self.period,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_uri() {
        let a = OtpAccount::from_uri(
            "otpauth://totp/ACME%20Co:john.doe@email.com?secret=HXDMVJECJJWSRB3HWIZR4IFUGFTMXBOZ&issuer=ACME%20Co&algorithm=SHA1&digits=6&period=30",
        )
        .unwrap();
        assert_eq!(a.issuer, "ACME Co");
        assert_eq!(a.name, "john.doe@email.com");
        assert_eq!(a.label(), "ACME Co: john.doe@email.com");
        assert_eq!(
            (a.digits, a.period, a.algorithm),
            (6, 30, OtpAlgorithm::Sha1)
        );
    }

    #[test]
    fn rfc6238_vectors_through_an_otpauth_account() {
        // "12345678901234567890" in base32; RFC 6238 appendix B.
        let a = OtpAccount::from_uri(
            "otpauth://totp/x?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&digits=8",
        )
        .unwrap();
        assert_eq!(a.code_at(59), ("94287082".to_string(), 1));
        assert_eq!(a.code_at(1111111109).0, "07081804");
        assert_eq!(a.code_at(1234567890).0, "89005924");
    }

    #[test]
    fn refuses_bad_links() {
        let cases = [
            ("https://example.com", OtpauthError::NotOtpauth),
            (
                "otpauth://hotp/x?secret=GEZDGNBV&counter=1",
                OtpauthError::UnsupportedType("hotp".into()),
            ),
            ("otpauth://totp/x?issuer=a", OtpauthError::MissingSecret),
            ("otpauth://totp/x?secret=1111", OtpauthError::BadSecret),
            (
                "otpauth://totp/x?secret=GEZDGNBV&digits=12",
                OtpauthError::BadDigits("12".into()),
            ),
            (
                "otpauth://totp/x?secret=GEZDGNBV&algorithm=MD5",
                OtpauthError::BadAlgorithm("MD5".into()),
            ),
            (
                "otpauth://totp/x?secret=GEZDGNBV&secret=GEZDGNBV",
                OtpauthError::Duplicate("secret".into()),
            ),
        ];
        for (uri, want) in cases {
            assert_eq!(OtpAccount::from_uri(uri).unwrap_err(), want, "{uri}");
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let a = OtpAccount::from_uri("otpauth://totp/x?secret=GEZDGNBVGY3TQOJQ").unwrap();
        assert!(!format!("{a:?}").contains("GEZDGNBV"));
    }
}
