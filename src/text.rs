//! Text that came from an archive, shown to people: every value a message echoes from
//! an index, a `.deb`, an ELF file or a lock goes through [`shown`] (or [`quoted`]), and
//! the binary passes every whole message through [`for_terminal`] before printing it.
//!
//! A hostile archive controls package names, versions, `Filename`s, paths and link
//! targets. Printed raw, an ESC or BEL byte drives the terminal, a newline forges a
//! second `error:` line, a bidirectional override reorders what is read, and a 10 MiB
//! `Filename` makes a 10 MiB error line. Here control characters (C0, DEL, C1) and the
//! Unicode direction controls become visible escapes (`\u{1b}`, `\n`), and a value is
//! cut after [`SHOWN_CHARS`] characters with `…` and its full length.
//!
//! This module only formats: it never refuses anything (the lock refuses control
//! characters itself, `crate::lock`), and never decides which text is hostile — callers
//! wrap every archive value they echo.

use std::borrow::Cow;
use std::fmt::{self, Display};

/// Characters of one echoed value kept before it is cut.
pub const SHOWN_CHARS: usize = 200;
/// Characters of one line of a whole message kept before it is cut ([`for_terminal`]):
/// far more than any sentence compose writes, so it only ever cuts hostile text.
pub const LINE_CHARS: usize = 4096;

/// Whether `c` must not reach a terminal as is: a control character (C0, DEL, C1) or a
/// Unicode bidirectional control (which reorders the text around it).
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// The first character of `s` that [`is_unsafe`], if any.
pub fn first_unsafe(s: &str) -> Option<char> {
    s.chars().find(|&c| is_unsafe(c))
}

/// One character as it is shown: itself, or its escape (`\n`, `\t`, `\u{1b}`).
fn push_escaped(out: &mut impl fmt::Write, c: char) -> fmt::Result {
    if is_unsafe(c) {
        write!(out, "{}", c.escape_default())
    } else {
        out.write_char(c)
    }
}

/// Write `s` escaped, cut after `limit` characters with `… (N bytes)`.
fn write_capped(out: &mut impl fmt::Write, s: &str, limit: usize) -> fmt::Result {
    for (i, c) in s.chars().enumerate() {
        if i == limit {
            return write!(out, "… ({} bytes)", s.len());
        }
        push_escaped(out, c)?;
    }
    Ok(())
}

/// An archive value for a message: escaped and capped ([`shown`]).
#[derive(Debug, Clone, Copy)]
pub struct Shown<'a>(&'a str);

impl Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_capped(f, self.0, SHOWN_CHARS)
    }
}

/// `s` as a message may show it: control and direction characters escaped, at most
/// [`SHOWN_CHARS`] characters then `… (N bytes)`.
pub fn shown(s: &str) -> Shown<'_> {
    Shown(s)
}

/// An archive value in double quotes, as `{:?}` writes a string (`"a\0b"`, quotes and
/// backslashes escaped), capped like [`shown`].
#[derive(Debug, Clone, Copy)]
pub struct Quoted<'a>(&'a str);

impl Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(SHOWN_CHARS) {
            None => write!(f, "{:?}", self.0),
            Some((end, _)) => write!(f, "{:?}… ({} bytes)", &self.0[..end], self.0.len()),
        }
    }
}

/// `s` quoted like `{:?}` (which escapes control characters), capped like [`shown`].
pub fn quoted(s: &str) -> Quoted<'_> {
    Quoted(s)
}

/// A whole message for the terminal: every line's unsafe characters escaped (line
/// breaks kept: some messages list one change per line) and each line cut after
/// [`LINE_CHARS`] characters. What every message printed by the binary goes through,
/// whether or not its values were [`shown`] already.
pub fn for_terminal(message: &str) -> Cow<'_, str> {
    let long_line = message.split('\n').any(|l| l.len() > LINE_CHARS);
    if !long_line && !message.chars().any(|c| c != '\n' && is_unsafe(c)) {
        return Cow::Borrowed(message);
    }
    let mut out = String::with_capacity(message.len().min(1 << 20));
    for (i, line) in message.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let _ = write_capped(&mut out, line, LINE_CHARS);
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_direction_characters_are_escaped() {
        assert_eq!(shown("plain 1.0-1").to_string(), "plain 1.0-1");
        assert_eq!(
            shown("a\u{1b}[31mred\u{7}").to_string(),
            "a\\u{1b}[31mred\\u{7}"
        );
        assert_eq!(shown("x\nerror: forged").to_string(), "x\\nerror: forged");
        assert_eq!(
            shown("\u{9b}\u{202e}txt").to_string(),
            "\\u{9b}\\u{202e}txt"
        );
        // Ordinary non-ASCII text stays as it is.
        assert_eq!(shown("café ünïcode").to_string(), "café ünïcode");
        assert_eq!(quoted("a\0b\u{1b}").to_string(), "\"a\\0b\\u{1b}\"");
    }

    #[test]
    fn long_values_are_cut_with_their_length() {
        let long = "p".repeat(10 << 20);
        let s = shown(&long).to_string();
        assert_eq!(s, format!("{}… ({} bytes)", "p".repeat(200), 10 << 20));
        let q = quoted(&long).to_string();
        assert_eq!(q, format!("\"{}\"… ({} bytes)", "p".repeat(200), 10 << 20));
        let exact = "é".repeat(SHOWN_CHARS);
        assert_eq!(shown(&exact).to_string(), exact);
        assert_eq!(quoted(&exact).to_string(), format!("\"{exact}\""));
    }

    #[test]
    fn whole_messages_keep_line_breaks_and_cut_long_lines() {
        assert!(matches!(for_terminal("a\nb"), Cow::Borrowed("a\nb")));
        assert_eq!(for_terminal("a\u{1b}\nb\r"), "a\\u{1b}\nb\\r");
        let line = "x".repeat(LINE_CHARS + 1);
        let cut = for_terminal(&line);
        assert!(cut.starts_with(&"x".repeat(LINE_CHARS)));
        assert!(cut.ends_with(&format!("… ({} bytes)", LINE_CHARS + 1)));
        assert_eq!(first_unsafe("ok\u{7f}"), Some('\u{7f}'));
        assert_eq!(first_unsafe("1:2.3~rc1+dfsg-1"), None);
    }
}
