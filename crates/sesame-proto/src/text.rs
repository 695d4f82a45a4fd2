//! Text that others typed, shown on a terminal: usernames typed at sign-in, browser strings,
//! device names and account labels all come from people Sesame does not trust. A terminal
//! obeys control characters (ESC sequences clear the screen or set the window title, CR and
//! backspace overwrite what was printed) and bidirectional overrides reorder what is shown,
//! so such text is printed through [`printable`], which makes every hidden character visible.
//! New names are refused when they carry one (see `sesame_core::names`); this guards what an
//! older database already holds.

use std::borrow::Cow;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// Whether `c` is invisible or changes how text around it is shown: control characters (C0,
/// DEL, C1), format characters (bidirectional embeddings, overrides and isolates, zero-width
/// spaces and joiners, the byte order mark, tags...), line and paragraph separators, and the
/// fillers that render as blank.
pub fn is_hidden(c: char) -> bool {
    matches!(
        c.general_category(),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    ) || matches!(
        c,
        // Blank letters (Hangul fillers, Khmer inherent vowels) and the combining grapheme
        // joiner: default-ignorable, drawn as nothing.
        '\u{034F}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}' | '\u{3164}' | '\u{FFA0}'
    )
}

/// `s` with each hidden character written as a Rust-style escape (`\u{1b}`), so that the
/// text can neither drive the terminal nor hide or reorder itself. Text without any comes
/// back borrowed.
pub fn printable(s: &str) -> Cow<'_, str> {
    escape(s, |_| false)
}

/// Like [`printable`], but line breaks stay line breaks: for a block of output lines put
/// together from fixed text and stored text (a stored `\n` is then a new line, which cannot
/// drive the terminal; everything else hidden is escaped).
pub fn printable_lines(s: &str) -> Cow<'_, str> {
    escape(s, |c| c == '\n')
}

fn escape(s: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !s.chars().any(|c| is_hidden(c) && !keep(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_hidden(c) && !keep(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_escapes_are_shown_not_obeyed() {
        let hostile = "bob\u{1b}[2J\u{1b}]0;owned\u{7}\u{8}\u{8}\r\tx\u{9b}31m";
        let shown = printable(hostile);
        assert_eq!(
            shown,
            "bob\\u{1b}[2J\\u{1b}]0;owned\\u{7}\\u{8}\\u{8}\\u{d}\\u{9}x\\u{9b}31m"
        );
        assert!(!shown.chars().any(is_hidden));
    }

    #[test]
    fn bidi_and_invisible_characters_are_shown() {
        for c in [
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{200E}',
            '\u{200F}',
            '\u{202A}',
            '\u{202E}',
            '\u{2066}',
            '\u{2069}',
            '\u{FEFF}',
            '\u{00AD}',
            '\u{061C}',
            '\u{2028}',
            '\u{2029}',
            '\u{E0041}',
            '\u{3164}',
        ] {
            assert!(is_hidden(c), "{:?}", c);
            let s = format!("a{c}b");
            assert_eq!(printable(&s), format!("a{}b", c.escape_unicode()));
        }
    }

    #[test]
    fn ordinary_text_is_untouched() {
        for s in [
            "alice",
            "Zoë Ω Ælfgifu 李",
            "Firefox on Linux",
            "ａｌｉｃｅ",
            "а",
        ] {
            assert!(matches!(printable(s), Cow::Borrowed(_)), "{s}");
        }
    }

    #[test]
    fn line_breaks_can_stay_in_blocks_of_output() {
        assert_eq!(printable_lines("a\nb\u{1b}c"), "a\nb\\u{1b}c");
        assert_eq!(printable("a\nb"), "a\\u{a}b");
    }
}
