//! Making peer-controlled bytes safe to print on a terminal (CVE-2019-6109, CVE-2019-6110).
//!
//! Every name, `\1`/`\2` message text and remote stderr line passes through here before
//! it reaches a terminal. Valid UTF-8 printable characters are kept; control characters
//! (C0, DEL, C1) and bytes that are not valid UTF-8 become `\ooo` octal escapes, as
//! OpenSSH's `snmprintf` does. This module must never return a control character,
//! except `\n` when the caller asked to keep line breaks.

use std::fmt::Write;

/// Escapes `bytes` for display on one line: every control character is escaped.
pub fn escape(bytes: &[u8]) -> String {
    escape_with(bytes, false)
}

/// Escapes `bytes` for display, keeping `\n` line breaks (for multi-line remote text).
pub fn escape_text(bytes: &[u8]) -> String {
    escape_with(bytes, true)
}

fn escape_with(bytes: &[u8], keep_newlines: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\n' && keep_newlines {
                out.push(c);
            } else if c.is_control() {
                // C0, DEL and C1 controls: escape every UTF-8 byte of the character.
                let mut utf8 = [0u8; 4];
                for b in c.encode_utf8(&mut utf8).bytes() {
                    push_octal(&mut out, b);
                }
            } else {
                out.push(c);
            }
        }
        for &b in chunk.invalid() {
            push_octal(&mut out, b);
        }
    }
    out
}

fn push_octal(out: &mut String, b: u8) {
    // Writing to a String cannot fail.
    let _ = write!(out, "\\{b:03o}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_printable_text_and_utf8() {
        assert_eq!(escape(b"plain name.txt"), "plain name.txt");
        assert_eq!(escape("caf\u{e9} \u{1f600}".as_bytes()), "caf\u{e9} \u{1f600}");
    }

    #[test]
    fn escapes_terminal_controls() {
        assert_eq!(escape(b"a\x1b[2Jb"), "a\\033[2Jb");
        assert_eq!(escape(b"x\ry\n"), "x\\015y\\012");
        assert_eq!(escape(b"\x7f"), "\\177");
        assert_eq!(escape(b"tab\there"), "tab\\011here");
        // U+009B, the one-byte CSI, as UTF-8.
        assert_eq!(escape("\u{9b}2J".as_bytes()), "\\302\\2332J");
    }

    #[test]
    fn escapes_invalid_utf8() {
        assert_eq!(escape(b"a\xffb\xc3"), "a\\377b\\303");
    }

    #[test]
    fn text_keeps_newlines_only() {
        assert_eq!(escape_text(b"one\ntwo\x1b"), "one\ntwo\\033");
    }
}
