//! Phone numbers and the codes sent to them (DESIGN §6-7, SECURITY "Codes").
//!
//! A number is parsed and validated with libphonenumber's metadata (the `phonenumber` crate)
//! and kept as E.164 (`+31612345678`); people see it masked (`+31 6 ••••••78`). Codes sent by
//! text are 6 digits, uniformly drawn, valid for [`CODE_LIFETIME_SECS`], used once; the store
//! keeps only a keyed hash of them.

use rand::Rng;
use std::fmt;

/// How long a code sent by text stays valid.
pub const CODE_LIFETIME_SECS: i64 = 600;
/// Digits of a code sent by text.
pub const CODE_DIGITS: usize = 6;
/// Longest office extension (digits dialled after the call is answered).
pub const MAX_EXTENSION: usize = 10;

/// A validated phone number in E.164 form.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PhoneNumber {
    e164: String,
    country_code: u16,
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Personal data: logs and panics show the masked form only.
        write!(f, "PhoneNumber({})", self.short())
    }
}

/// Why a typed number is refused; shown to the person as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("Enter a phone number.")]
    Empty,
    #[error(
        "Enter the number with its country code, starting with +, for example +31 6 12345678."
    )]
    NoCountryCode,
    #[error("That is not a valid phone number. Check the digits and the country code.")]
    Invalid,
    #[error("Numbers in that country (+{0}) cannot be used here. Ask your administrator which countries are allowed.")]
    CountryNotAllowed(u16),
    #[error("An extension is up to 10 digits, with nothing else.")]
    Extension,
}

impl PhoneNumber {
    /// Parses what a person typed: spaces, dashes, dots and brackets are fine; the country
    /// code (`+31` or `0031`) is required, because a server has no "home country" to assume.
    pub fn parse(input: &str) -> Result<Self, PhoneError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(PhoneError::Empty);
        }
        if trimmed.chars().count() > 40
            || !trimmed
                .chars()
                .all(|c| c.is_ascii_digit() || " +-.()".contains(c))
        {
            return Err(PhoneError::Invalid);
        }
        let normalised = match trimmed.strip_prefix("00") {
            Some(rest) => format!("+{rest}"),
            None => trimmed.to_string(),
        };
        if !normalised.starts_with('+') {
            return Err(PhoneError::NoCountryCode);
        }
        let n = phonenumber::parse(None, &normalised).map_err(|_| PhoneError::Invalid)?;
        if !phonenumber::is_valid(&n) {
            return Err(PhoneError::Invalid);
        }
        Ok(PhoneNumber {
            e164: n.format().mode(phonenumber::Mode::E164).to_string(),
            country_code: n.code().value(),
        })
    }

    /// A number stored before (already E.164): parsed again so that nothing unchecked passes.
    pub fn from_e164(s: &str) -> Result<Self, PhoneError> {
        if !s.starts_with('+') {
            return Err(PhoneError::Invalid);
        }
        Self::parse(s)
    }

    pub fn e164(&self) -> &str {
        &self.e164
    }

    pub fn country_code(&self) -> u16 {
        self.country_code
    }

    /// Whether the number's country is in `allowed` (empty: every country).
    pub fn country_allowed(&self, allowed: &[u16]) -> Result<(), PhoneError> {
        if allowed.is_empty() || allowed.contains(&self.country_code) {
            Ok(())
        } else {
            Err(PhoneError::CountryNotAllowed(self.country_code))
        }
    }

    /// The international form with every national digit but the first and the last two
    /// hidden: `+31 6 ••••••78`.
    pub fn masked(&self) -> String {
        let shown = phonenumber::parse(None, &self.e164)
            .map(|n| {
                n.format()
                    .mode(phonenumber::Mode::International)
                    .to_string()
            })
            .unwrap_or_else(|_| self.e164.clone());
        let cc = format!("+{}", self.country_code);
        let national = shown.strip_prefix(&cc).unwrap_or(&shown);
        let digits = national.chars().filter(char::is_ascii_digit).count();
        let mut seen = 0;
        let mut out = cc;
        for c in national.chars() {
            if c.is_ascii_digit() {
                seen += 1;
                out.push(if seen == 1 || seen + 2 > digits {
                    c
                } else {
                    '•'
                });
            } else {
                out.push(c);
            }
        }
        out
    }

    /// The last two digits, as the sign-in page names the phone: `••78`.
    pub fn short(&self) -> String {
        let tail: String = self
            .e164
            .chars()
            .rev()
            .take(2)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("••{tail}")
    }
}

/// Checks an office extension: up to [`MAX_EXTENSION`] digits (empty: none).
pub fn parse_extension(input: &str) -> Result<Option<String>, PhoneError> {
    let t: String = input.chars().filter(|c| !c.is_whitespace()).collect();
    if t.is_empty() {
        return Ok(None);
    }
    if t.len() > MAX_EXTENSION || !t.chars().all(|c| c.is_ascii_digit()) {
        return Err(PhoneError::Extension);
    }
    Ok(Some(t))
}

/// A new code for a text message: 6 digits, leading zeros allowed, uniformly drawn.
pub fn generate_code(rng: &mut impl Rng) -> String {
    format!("{:06}", rng.gen_range(0..1_000_000u32))
}

/// What a person typed as a code from a text message: 6 digits (spaces ignored).
pub fn parse_code(input: &str) -> Result<String, &'static str> {
    let code: String = input.chars().filter(|c| !c.is_whitespace()).collect();
    if code.is_empty() {
        return Err("Enter the code from the text message.");
    }
    if code.len() != CODE_DIGITS || !code.chars().all(|c| c.is_ascii_digit()) {
        return Err("The code is the 6 digits in the text message.");
    }
    Ok(code)
}

/// Whether a code sent at `sent_at` may still be used at `now`.
pub fn code_valid(sent_at: i64, now: i64) -> bool {
    now >= sent_at && now < sent_at + CODE_LIFETIME_SECS
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn numbers_are_parsed_to_e164_with_their_country() {
        for (typed, e164, cc) in [
            ("+31 6 12345678", "+31612345678", 31),
            ("0031 (6) 1234-5678", "+31612345678", 31),
            ("+1 650.253.0000", "+16502530000", 1),
            ("+44 20 7946 0958", "+442079460958", 44),
        ] {
            let n = PhoneNumber::parse(typed).unwrap();
            assert_eq!(n.e164(), e164, "{typed}");
            assert_eq!(n.country_code(), cc);
            assert_eq!(PhoneNumber::from_e164(e164).unwrap(), n);
        }
    }

    #[test]
    fn bad_numbers_are_refused_with_a_reason() {
        assert_eq!(PhoneNumber::parse("  "), Err(PhoneError::Empty));
        assert_eq!(
            PhoneNumber::parse("06 12345678"),
            Err(PhoneError::NoCountryCode)
        );
        for bad in [
            "+999 123",
            "+31 6 1234",
            "+31612345678; DROP",
            "+３１６１２３４５６７８",
            "+31 6 12345678\u{202e}",
            &"+3".repeat(30),
        ] {
            assert_eq!(PhoneNumber::parse(bad), Err(PhoneError::Invalid), "{bad:?}");
        }
        assert!(PhoneNumber::from_e164("31612345678").is_err());
    }

    #[test]
    fn numbers_are_shown_masked() {
        let n = PhoneNumber::parse("+31612345678").unwrap();
        assert_eq!(n.masked(), "+31 6 ••••••78");
        assert_eq!(n.short(), "••78");
        assert!(!format!("{n:?}").contains("345"));
        let us = PhoneNumber::parse("+16502530000").unwrap();
        assert_eq!(us.masked(), "+1 6••-•••-••00");
    }

    #[test]
    fn only_allowed_countries_pass() {
        let n = PhoneNumber::parse("+31612345678").unwrap();
        assert!(n.country_allowed(&[]).is_ok());
        assert!(n.country_allowed(&[31, 32]).is_ok());
        assert_eq!(
            n.country_allowed(&[1]),
            Err(PhoneError::CountryNotAllowed(31))
        );
    }

    #[test]
    fn extensions_are_digits_only() {
        assert_eq!(parse_extension(""), Ok(None));
        assert_eq!(parse_extension(" 12 3 "), Ok(Some("123".into())));
        assert!(parse_extension("12a").is_err());
        assert!(parse_extension("12345678901").is_err());
        assert!(parse_extension("1#").is_err());
    }

    #[test]
    fn codes_are_six_digits_and_expire_after_ten_minutes() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..1000 {
            let c = generate_code(&mut rng);
            assert_eq!(c.len(), 6);
            assert_eq!(parse_code(&c), Ok(c.clone()));
        }
        assert_eq!(parse_code("123 456"), Ok("123456".into()));
        assert!(parse_code("").is_err());
        assert!(parse_code("12345").is_err());
        assert!(parse_code("1234567").is_err());
        assert!(parse_code("12345a").is_err());
        assert!(parse_code("١٢٣٤٥٦").is_err());
        assert!(code_valid(1000, 1000));
        assert!(code_valid(1000, 1599));
        assert!(!code_valid(1000, 1600));
        assert!(!code_valid(1000, 999));
    }
}
