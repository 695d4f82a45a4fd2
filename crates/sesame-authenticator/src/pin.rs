//! The app PIN: at least 6 digits, trivial PINs refused. It is stored nowhere, not even as a
//! verifier: it unseals each Sesame account's PIN key (see `pinkey`), and the server counts
//! the invalid signatures a wrong PIN produces. It never leaves the device.

pub const MIN_DIGITS: usize = 6;
pub const MAX_DIGITS: usize = 16;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    #[error("the PIN must be {MIN_DIGITS} to {MAX_DIGITS} digits")]
    Length,
    #[error("the PIN must contain digits only")]
    NotDigits,
    #[error("that PIN is too easy to guess (repeated digits, a sequence or a repeated pattern); choose another")]
    Trivial,
}

/// Checks a new PIN against the rules.
pub fn validate(pin: &str) -> Result<(), PinError> {
    if !pin.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PinError::NotDigits);
    }
    if !(MIN_DIGITS..=MAX_DIGITS).contains(&pin.len()) {
        return Err(PinError::Length);
    }
    let d: Vec<i8> = pin.bytes().map(|b| (b - b'0') as i8).collect();
    let steps: Vec<i8> = d.windows(2).map(|w| (w[1] - w[0]).rem_euclid(10)).collect();
    // Same digit, or a run up or down (wrapping, e.g. 890123).
    if steps.iter().all(|&s| s == steps[0]) && matches!(steps[0], 0 | 1 | 9) {
        return Err(PinError::Trivial);
    }
    // A short pattern repeated: 121212, 123123, 12341234.
    for period in 1..=d.len() / 2 {
        if d.len() % period == 0 && d.chunks(period).all(|c| c == &d[..period]) {
            return Err(PinError::Trivial);
        }
    }
    // Mirrors such as 123321 and a few well-known choices.
    let reversed: Vec<i8> = d.iter().rev().copied().collect();
    if d == reversed || ["112233", "159753", "147258", "258369", "696969", "131313"].contains(&pin)
    {
        return Err(PinError::Trivial);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_rules() {
        for ok in ["482913", "730164", "9083127455", "280471"] {
            assert_eq!(validate(ok), Ok(()), "{ok}");
        }
        assert_eq!(validate("12345"), Err(PinError::Length));
        assert_eq!(validate(&"3".repeat(17)), Err(PinError::Length));
        assert_eq!(validate("12a456"), Err(PinError::NotDigits));
        assert_eq!(validate("１２３４５６"), Err(PinError::NotDigits));
        for trivial in [
            "000000", "111111", "123456", "654321", "890123", "121212", "123123", "12341234",
            "123321", "112233", "147258",
        ] {
            assert_eq!(validate(trivial), Err(PinError::Trivial), "{trivial}");
        }
    }
}
