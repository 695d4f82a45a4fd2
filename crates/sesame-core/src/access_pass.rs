//! Temporary Access Passes (issue 14): a time-limited pass an administrator gives a user who
//! has no way in (no password yet, or a lost phone), to sign in and register methods.
//!
//! A pass is 16 characters from an alphabet without look-alikes (about 79 bits), shown once
//! as `XXXX-XXXX-XXXX-XXXX`; the store keeps only a keyed hash. It lives 10 minutes to 30 days
//! and is one-time (the default) or multi-use until it expires.

use rand::Rng;

pub const MIN_LIFETIME_SECS: i64 = 600;
pub const MAX_LIFETIME_SECS: i64 = 30 * 86_400;
pub const DEFAULT_LIFETIME_SECS: i64 = 3600;

/// No 0/O, 1/I/L: read aloud or copied from a screen without mistakes.
const ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
const LEN: usize = 16;

/// A new pass, grouped for reading: `XXXX-XXXX-XXXX-XXXX`.
pub fn generate(rng: &mut impl Rng) -> String {
    let chars: Vec<char> = (0..LEN)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    chars
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-")
}

/// What a person typed, in the pass's stored form (16 characters, upper case, no dashes or
/// spaces), if it can be a pass at all.
pub fn normalize(typed: &str) -> Option<String> {
    let s: String = typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (s.len() == LEN && s.bytes().all(|b| ALPHABET.contains(&b))).then_some(s)
}

/// A lifetime as an administrator writes it: `30m`, `8h`, `7d`, or seconds; 10 minutes to 30
/// days.
pub fn parse_lifetime(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: i64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a lifetime: write 30m, 8h, 7d or seconds"))?;
    let secs = match unit {
        "s" => n,
        "m" | "min" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => {
            return Err(format!(
                "{s:?} is not a lifetime: write 30m, 8h, 7d or seconds"
            ))
        }
    };
    if !(MIN_LIFETIME_SECS..=MAX_LIFETIME_SECS).contains(&secs) {
        return Err("a Temporary Access Pass lasts 10 minutes to 30 days".into());
    }
    Ok(secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn passes_are_grouped_and_read_back_however_typed() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let a = generate(&mut rng);
        assert_eq!(a.len(), 19);
        assert_eq!(a.matches('-').count(), 3);
        let plain = a.replace('-', "");
        assert_eq!(normalize(&a).as_deref(), Some(plain.as_str()));
        assert_eq!(
            normalize(&plain.to_lowercase()).as_deref(),
            Some(plain.as_str())
        );
        assert_eq!(
            normalize(&format!(" {} ", a.replace('-', " "))).as_deref(),
            Some(plain.as_str())
        );
        assert_ne!(generate(&mut rng), a);
    }

    #[test]
    fn what_cannot_be_a_pass_is_refused() {
        for bad in [
            "",
            "ABCD",
            "ABCD-EFGH-JKMN-PQR0",
            "ABCD-EFGH-JKMN-PQRST",
            "ＡBCD-EFGH-JKMN-PQRS",
            "correct horse",
        ] {
            assert_eq!(normalize(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn lifetimes_are_ten_minutes_to_thirty_days() {
        assert_eq!(parse_lifetime("10m"), Ok(600));
        assert_eq!(parse_lifetime("8h"), Ok(28_800));
        assert_eq!(parse_lifetime("30d"), Ok(2_592_000));
        assert_eq!(parse_lifetime("3600"), Ok(3600));
        assert!(parse_lifetime("9m").is_err());
        assert!(parse_lifetime("31d").is_err());
        assert!(parse_lifetime("1w").is_err());
        assert!(parse_lifetime("-5h").is_err());
        assert!(parse_lifetime("99999999999999999d").is_err());
    }
}
