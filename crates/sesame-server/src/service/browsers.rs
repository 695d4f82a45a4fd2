//! Browsers a user signed in with before: OWASP's "device cookies" (Slow down online guessing
//! attacks with device cookies). After every sign-in the browser gets an entry naming a random
//! nonce and a keyed MAC of (user, nonce); shown again, it proves that this browser completed a
//! sign-in as that user. Such a browser keeps allowances of its own (the push budget, and the
//! password guesses it may make), so that someone who only knows a username, or guesses
//! passwords from elsewhere, cannot use up or lock the user's own.
//!
//! The cookie names nobody: an entry is a nonce and a MAC, and only the server can tell whose
//! it is, by trying the MAC for the user at hand. One browser keeps the entries of the last
//! [`MAX_ENTRIES`] users who signed in with it.

use super::Origin;
use hmac::{Hmac, Mac};
use sesame_core::secret::SecretBytes;
use sesame_core::UserId;
use sha2::Sha256;

/// The cookie that carries the entries.
pub const COOKIE: &str = "__Host-sesame-device";
/// How long a browser stays known after its last sign-in.
pub const MAX_AGE_SECS: i64 = 365 * 24 * 3600;
/// Entries one browser keeps (users signing in with it, newest first).
pub const MAX_ENTRIES: usize = 4;
/// The longest entry read from a cookie (a nonce and a MAC are 55 characters).
const MAX_ENTRY_CHARS: usize = 64;
const SEPARATOR: char = '~';

/// A known browser of one user: a keyed hash of its nonce, stored with what it did (never
/// the nonce itself, which would let a database reader forge the cookie).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserId(pub Vec<u8>);

pub struct KnownBrowsers {
    key: SecretBytes,
}

impl KnownBrowsers {
    pub fn new(key: SecretBytes) -> Self {
        Self { key }
    }

    fn mac(&self, parts: &[&[u8]]) -> Vec<u8> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(self.key.expose()).expect("HMAC takes any key length");
        for p in parts {
            mac.update(&(p.len() as u64).to_be_bytes());
            mac.update(p);
        }
        mac.finalize().into_bytes().to_vec()
    }

    fn entry_mac(&self, user: UserId, nonce: &str) -> Vec<u8> {
        let mut m = self.mac(&[b"entry", &user.0.to_be_bytes(), nonce.as_bytes()]);
        m.truncate(16);
        m
    }

    /// Whether `entry` was issued to `user`, and then the browser's id.
    fn check(&self, entry: &str, user: UserId) -> Option<BrowserId> {
        let (nonce, mac) = entry.split_once('.')?;
        let mac = data_encoding::HEXLOWER.decode(mac.as_bytes()).ok()?;
        let expected = self.entry_mac(user, nonce);
        // Compared in constant time: the MAC is the secret part of the cookie.
        if !sesame_core::secret::ct_eq(&mac, &expected) {
            return None;
        }
        Some(BrowserId(self.mac(&[
            b"id",
            &user.0.to_be_bytes(),
            nonce.as_bytes(),
        ])))
    }

    /// The browser `origin` is, if it signed in as `user` before.
    pub fn recognise(&self, origin: &Origin, user: UserId) -> Option<BrowserId> {
        origin.browsers.iter().find_map(|e| self.check(e, user))
    }

    /// The cookie value after `user` signed in with this browser: the user's entry first (the
    /// same one if it had one, so the browser keeps its id), then the other users' entries.
    pub fn after_sign_in(&self, origin: &Origin, user: UserId) -> String {
        let own = origin
            .browsers
            .iter()
            .find(|e| self.check(e, user).is_some())
            .cloned()
            .unwrap_or_else(|| {
                let mut nonce = [0u8; 16];
                rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut nonce);
                let nonce = data_encoding::BASE64URL_NOPAD.encode(&nonce);
                let mac = data_encoding::HEXLOWER.encode(&self.entry_mac(user, &nonce));
                format!("{nonce}.{mac}")
            });
        let mut entries = vec![own.clone()];
        entries.extend(
            origin
                .browsers
                .iter()
                .filter(|e| **e != own)
                .take(MAX_ENTRIES - 1)
                .cloned(),
        );
        entries.join(&SEPARATOR.to_string())
    }
}

/// The entries of a cookie value as a browser sent it (malformed ones dropped, at most
/// [`MAX_ENTRIES`]).
pub fn parse(value: &str) -> Vec<String> {
    value
        .split(SEPARATOR)
        .filter(|e| {
            !e.is_empty()
                && e.len() <= MAX_ENTRY_CHARS
                && e.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
        })
        .take(MAX_ENTRIES)
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn browsers() -> KnownBrowsers {
        KnownBrowsers::new(SecretBytes::new(vec![7; 32]))
    }

    fn from(cookie: &str) -> Origin {
        Origin {
            browsers: parse(cookie),
            ..Origin::cli("test")
        }
    }

    #[test]
    fn a_browser_is_known_only_to_the_user_who_signed_in_with_it() {
        let b = browsers();
        let fresh = from("");
        assert_eq!(b.recognise(&fresh, UserId(1)), None);
        let cookie = b.after_sign_in(&fresh, UserId(1));
        let back = from(&cookie);
        let id = b.recognise(&back, UserId(1)).expect("known to user 1");
        assert_eq!(b.recognise(&back, UserId(2)), None, "not to user 2");
        // Signing in again keeps the browser's id.
        let again = from(&b.after_sign_in(&back, UserId(1)));
        assert_eq!(b.recognise(&again, UserId(1)), Some(id));
    }

    #[test]
    fn a_forged_or_altered_entry_is_not_recognised() {
        let b = browsers();
        let cookie = b.after_sign_in(&from(""), UserId(1));
        let (nonce, mac) = cookie.split_once('.').unwrap();
        let mut flipped = mac.to_string().into_bytes();
        flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
        let altered = format!("{nonce}.{}", String::from_utf8(flipped).unwrap());
        assert_eq!(b.recognise(&from(&altered), UserId(1)), None);
        let other_key = KnownBrowsers::new(SecretBytes::new(vec![8; 32]));
        assert_eq!(other_key.recognise(&from(&cookie), UserId(1)), None);
        assert_eq!(b.recognise(&from("x.y~.~zz"), UserId(1)), None);
    }

    #[test]
    fn one_browser_keeps_a_few_users_newest_first() {
        let b = browsers();
        let mut origin = from("");
        for u in 1..=6 {
            origin = from(&b.after_sign_in(&origin, UserId(u)));
        }
        assert_eq!(origin.browsers.len(), MAX_ENTRIES);
        for u in 3..=6 {
            assert!(b.recognise(&origin, UserId(u)).is_some(), "user {u}");
        }
        for u in 1..=2 {
            assert!(b.recognise(&origin, UserId(u)).is_none(), "user {u}");
        }
    }

    #[test]
    fn a_cookie_cannot_carry_much() {
        let long = vec!["a.b"; 50].join("~");
        assert_eq!(parse(&long).len(), MAX_ENTRIES);
        assert!(parse(&"a".repeat(65)).is_empty());
        assert!(parse("a;b").is_empty());
    }
}
