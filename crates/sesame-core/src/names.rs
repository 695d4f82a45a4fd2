//! Names people give and type: usernames, display names, group names, device names.
//!
//! A username is an identity, so two spellings that look alike must never be two accounts.
//! It goes through the PRECIS UsernameCaseMapped profile (RFC 8265): full-width letters are
//! mapped to their usual form, case is folded, the result is in NFC, and what the profile
//! refuses (spaces, controls, zero-width characters, symbols...) is refused. What the profile
//! does not map — a Cyrillic `а` in an otherwise Latin `аlice` — is caught by Unicode TR39: a
//! username must be of one script, and at creation its confusable "skeleton" must differ from
//! every other username's ([`looks_alike`]).
//!
//! The other names are labels people read: any letters, spaces and symbols, but nothing that
//! is invisible or reorders the text around it ([`label`]).

use precis_core::profile::PrecisFastInvocation;
use precis_core::Error as PrecisError;
use precis_profiles::{UsernameCaseMapped, UsernameCasePreserved};
use sesame_proto::text::is_hidden;
use unicode_security::MixedScript;

/// Why a name was refused; the message is meant for the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("the name is empty")]
    Empty,
    #[error("the name contains an invisible or control character ({})", codepoint(*.0))]
    Hidden(char),
    #[error("a username cannot contain {}", shown(*.0))]
    NotAllowed(char),
    #[error("a username cannot mix letters of different scripts (such as Latin and Cyrillic)")]
    MixedScripts,
    #[error("a username cannot be written like that (RFC 8265)")]
    Invalid,
    /// A character allowed by RFC 8265 but not in Sesame's usernames.
    #[error("a username can contain letters, digits and . _ - @ + ' only, not {}", shown(*.0))]
    Punctuation(char),
    #[error("a group name can contain letters, digits, spaces and . _ - ' ( ) & only, not {}", shown(*.0))]
    GroupPunctuation(char),
}

fn codepoint(c: char) -> String {
    format!("U+{:04X}", u32::from(c))
}

/// A refused character as the message names it: itself when it is visible, else its number.
fn shown(c: char) -> String {
    if c == ' ' {
        "spaces".into()
    } else if is_hidden(c) || c.is_whitespace() {
        format!("the character {}", codepoint(c))
    } else {
        format!("\"{c}\" ({})", codepoint(c))
    }
}

/// A username ready to store: `shown` keeps the case it was typed in (full-width mapped, NFC),
/// `key` is what makes two usernames the same one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username {
    pub shown: String,
    pub key: String,
}

/// The first hidden character of `s`, if any.
fn first_hidden(s: &str) -> Option<char> {
    s.chars().find(|&c| is_hidden(c))
}

fn refused(e: PrecisError, s: &str) -> NameError {
    match e {
        PrecisError::BadCodepoint(info) => char::from_u32(info.cp)
            .map(NameError::NotAllowed)
            .unwrap_or(NameError::Invalid),
        // Empty after mapping (or the bidi rule): nothing one character to name.
        _ if s.is_empty() => NameError::Empty,
        _ => NameError::Invalid,
    }
}

/// The PRECIS UsernameCaseMapped form of a typed username (surrounding spaces ignored), or
/// why the profile refuses it. This is what sign-in looks a typed name up by.
pub fn username_key(typed: &str) -> Result<String, NameError> {
    let s = typed.trim();
    if s.is_empty() {
        return Err(NameError::Empty);
    }
    // Named before the profile sees it: "contains an invisible character" says more than
    // "cannot contain U+200B".
    if let Some(c) = first_hidden(s) {
        return Err(NameError::Hidden(c));
    }
    UsernameCaseMapped::enforce(s)
        .map(|k| k.into_owned())
        .map_err(|e| refused(e, s))
}

/// Checks a username typed at sign-in. Only names that could not be shown safely (empty, or
/// with an invisible or reordering character) are refused: a name the profile refuses
/// otherwise may still belong to a user stored before the profile applied ("john smith"),
/// found by [`lookup_key`], and is otherwise simply nobody's.
pub fn sign_in_name(typed: &str) -> Result<(), NameError> {
    let s = typed.trim();
    if s.is_empty() {
        return Err(NameError::Empty);
    }
    match first_hidden(s) {
        Some(c) => Err(NameError::Hidden(c)),
        None => Ok(()),
    }
}

/// A new username: refused unless the profile accepts it, it is written in one script, and
/// its symbols are the few that names and e-mail-like logins use (RFC 8265 alone allows `!`,
/// `#`, `$`, `%`, quotes... which only make a name hard to tell or to type).
pub fn username(typed: &str) -> Result<Username, NameError> {
    let key = username_key(typed)?;
    if let Some(c) = key
        .chars()
        .find(|&c| !(c.is_alphanumeric() || is_mark(c) || ".-_@+'".contains(c)))
    {
        return Err(NameError::Punctuation(c));
    }
    if !key.as_str().is_single_script() {
        return Err(NameError::MixedScripts);
    }
    let shown = UsernameCasePreserved::enforce(typed.trim())
        .map_err(|e| refused(e, typed.trim()))?
        .into_owned();
    Ok(Username { shown, key })
}

/// The key a name is stored and found under: the username key when the profile accepts the
/// name, else (group names with spaces, names stored before the profile was applied) the
/// name trimmed and lower-cased, as every name was keyed before. Plain ASCII names get the
/// same key either way, so databases written before keep finding them.
pub fn lookup_key(name: &str) -> String {
    username_key(name).unwrap_or_else(|_| name.trim().to_lowercase())
}

/// The TR39 confusable skeleton of a name: two names with the same skeleton look alike.
pub fn skeleton(name: &str) -> String {
    unicode_security::skeleton(&lookup_key(name)).collect()
}

/// Whether two names look alike (`alice`, `аlice` with a Cyrillic `а`, `ａｌｉｃｅ`), so
/// they must not name two different accounts.
pub fn looks_alike(a: &str, b: &str) -> bool {
    skeleton(a) == skeleton(b)
}

/// A new group name: a label of letters, digits, spaces and a few symbols (it is typed in
/// commands and read in lists).
pub fn group_name(typed: &str) -> Result<&str, NameError> {
    let s = label(typed)?;
    match s
        .chars()
        .find(|&c| !(c.is_alphanumeric() || is_mark(c) || " ._-'()&".contains(c)))
    {
        Some(c) => Err(NameError::GroupPunctuation(c)),
        None => Ok(s),
    }
}

/// Combining marks belong to letters in many scripts (Devanagari vowel signs, accents).
fn is_mark(c: char) -> bool {
    use unicode_properties::{GeneralCategoryGroup, UnicodeGeneralCategory};
    c.general_category_group() == GeneralCategoryGroup::Mark
}

/// A display, group or device name: trimmed, not empty, and with no character that is
/// invisible or reorders the text (controls, bidirectional overrides and isolates,
/// zero-width characters, the byte order mark).
pub fn label(typed: &str) -> Result<&str, NameError> {
    let s = typed.trim();
    if s.is_empty() {
        return Err(NameError::Empty);
    }
    match first_hidden(s) {
        Some(c) => Err(NameError::Hidden(c)),
        None => Ok(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_names_refuse_punctuation_with_a_clear_message() {
        assert!(username("alice.smith@example.com").is_ok());
        assert!(username("o'brien").is_ok());
        assert!(username("नमस्ते").is_ok(), "marks belong to letters");
        let e = username("bad!").unwrap_err();
        assert_eq!(e, NameError::Punctuation('!'));
        assert!(e.to_string().contains("not \"!\""), "{e}");
        assert!(username("bad name")
            .unwrap_err()
            .to_string()
            .contains("cannot contain spaces"));
        assert_eq!(
            group_name("Pilot users (EU) & co"),
            Ok("Pilot users (EU) & co")
        );
        assert_eq!(
            group_name("bad group!"),
            Err(NameError::GroupPunctuation('!'))
        );
    }

    #[test]
    fn sign_in_refuses_only_what_cannot_be_shown() {
        assert!(sign_in_name("john smith").is_ok());
        assert!(sign_in_name("ａｌｉｃｅ").is_ok());
        assert_eq!(sign_in_name("  "), Err(NameError::Empty));
        assert_eq!(
            sign_in_name("al\u{1b}[2Jice"),
            Err(NameError::Hidden('\u{1b}'))
        );
        assert_eq!(
            sign_in_name("al\u{202e}ice"),
            Err(NameError::Hidden('\u{202e}'))
        );
    }

    #[test]
    fn full_width_and_case_are_the_same_username() {
        assert_eq!(username_key("ａｌｉｃｅ").unwrap(), "alice");
        assert_eq!(username_key("ＡＬＩＣＥ").unwrap(), "alice");
        assert_eq!(username_key("  Alice ").unwrap(), "alice");
        let u = username("Ａlice").unwrap();
        assert_eq!(u.shown, "Alice");
        assert_eq!(u.key, "alice");
        // Composed and decomposed accents are one name (NFC).
        assert_eq!(
            username_key("Jose\u{301}").unwrap(),
            username_key("José").unwrap()
        );
    }

    #[test]
    fn cyrillic_look_alike_is_refused_or_collides() {
        // Cyrillic "а" (U+0430) with Latin "lice": mixed scripts.
        assert_eq!(username("\u{430}lice"), Err(NameError::MixedScripts));
        // The profile itself accepts it: the skeleton check is what catches it everywhere.
        assert!(looks_alike("\u{430}lice", "alice"));
        // A name wholly in Cyrillic that looks like a Latin one: one script, same skeleton.
        let cyrillic_ace = "\u{430}\u{441}\u{435}";
        assert!(username(cyrillic_ace).is_ok());
        assert!(looks_alike(cyrillic_ace, "ace"));
        assert!(!looks_alike("alice", "bob"));
    }

    #[test]
    fn zero_width_and_bidi_characters_are_refused_in_usernames() {
        for c in [
            '\u{200B}', '\u{200C}', '\u{200D}', '\u{200E}', '\u{200F}', '\u{202A}', '\u{202E}',
            '\u{2066}', '\u{2069}', '\u{FEFF}', '\u{1b}', '\u{7}', '\u{8}', '\r', '\n',
        ] {
            let name = format!("ali{c}ce");
            assert_eq!(username(&name), Err(NameError::Hidden(c)), "{c:?}");
            assert_eq!(username_key(&name), Err(NameError::Hidden(c)), "{c:?}");
        }
        let msg = username("alice\u{200B}").unwrap_err().to_string();
        assert!(msg.contains("invisible") && msg.contains("U+200B"), "{msg}");
    }

    #[test]
    fn what_the_profile_refuses_is_named() {
        assert_eq!(username("john smith"), Err(NameError::NotAllowed(' ')));
        assert!(username("john smith")
            .unwrap_err()
            .to_string()
            .contains("cannot contain spaces"));
        assert_eq!(username(""), Err(NameError::Empty));
        assert_eq!(username("   "), Err(NameError::Empty));
        assert!(username("alice@example.com").is_ok());
        assert!(username("李小龍").is_ok());
        assert!(
            username("山田たろう").is_ok(),
            "Han with Hiragana is one writing system"
        );
    }

    #[test]
    fn ascii_names_keep_the_key_they_always_had() {
        for name in [
            "alice",
            "Bob",
            "carol.d@example.com",
            "x_y-z",
            "Pilot users",
            "a\tb",
        ] {
            assert_eq!(lookup_key(name), name.trim().to_lowercase(), "{name}");
        }
    }

    #[test]
    fn labels_refuse_invisible_and_reordering_characters() {
        assert_eq!(label("  Alice Liddell "), Ok("Alice Liddell"));
        assert_eq!(label("Zoë's phone 📱"), Ok("Zoë's phone 📱"));
        assert_eq!(
            label("phone\u{202E}gnp.exe"),
            Err(NameError::Hidden('\u{202E}'))
        );
        assert_eq!(label("a\u{1b}[2Jb"), Err(NameError::Hidden('\u{1b}')));
        assert_eq!(label("a\u{2067}b"), Err(NameError::Hidden('\u{2067}')));
        assert_eq!(label(" "), Err(NameError::Empty));
    }
}
