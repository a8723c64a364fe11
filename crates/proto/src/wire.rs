//! The byte format of SCP records and replies: encoding, and decoding with every
//! rule of OpenSSH's sink (`scp.c` `sink()`, spec §2.3).
//!
//! Decoding never allocates from a peer-supplied size, never panics on peer bytes,
//! and refuses a line longer than [`MAX_LINE`] instead of splitting it as OpenSSH
//! does. Error texts are OpenSSH's, because they travel to the peer as
//! `\1scp: protocol error: …` and users and scripts know them.

use std::fmt;
use std::io::Write;

use crate::message::{FileHeader, Message, Mode, Times};
use crate::name::FileName;

/// Longest record or reply line accepted, LF included. OpenSSH's sink stores at most
/// 2047 bytes of a line in its 2048-byte buffer.
pub const MAX_LINE: usize = 2047;

/// A protocol violation by the peer. `Display` gives the text OpenSSH sends after
/// `scp: `, e.g. `protocol error: bad mode`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// `protocol error: <what>` with one of OpenSSH's fixed descriptions.
    Protocol(&'static str),
    /// The record named an unsafe file (`error: unexpected filename: <name>`).
    UnexpectedFilename(Vec<u8>),
    /// No line feed within [`MAX_LINE`] bytes.
    LineTooLong,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Protocol(what) => write!(f, "protocol error: {what}"),
            WireError::UnexpectedFilename(name) => {
                write!(f, "error: unexpected filename: {}", crate::display::escape(name))
            }
            WireError::LineTooLong => write!(f, "protocol error: line too long"),
        }
    }
}

impl std::error::Error for WireError {}

/// What a sink can receive where a record is expected.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Incoming {
    Record(Message),
    /// A `T` record whose seconds do not fit a `time_t`: OpenSSH acknowledges it and
    /// ignores the times.
    TimesOutOfRange,
    /// `\1<text>`: a non-fatal error from the peer (text without the LF).
    Warning(Vec<u8>),
    /// `\2<text>`: a fatal error from the peer.
    Fatal(Vec<u8>),
    /// A line that starts with no known record type (a shell's message, or garbage).
    Unrecognized(Vec<u8>),
}

/// A reply to a record, or the status byte after a file's payload.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// `\0`
    Ok,
    /// `\1<text>`: the peer reports an error and the copy goes on.
    Warning(Vec<u8>),
    /// `\2<text>`, or a line starting with any other byte (OpenSSH `response()`
    /// takes that byte as part of the text and exits).
    Fatal(Vec<u8>),
}

/// Appends the wire form of `message` to `out`.
pub fn encode(message: &Message, out: &mut Vec<u8>) {
    // Writing into a Vec cannot fail.
    let _ = match message {
        Message::File(h) => encode_header(b'C', h, h.size, out),
        Message::Dir(h) => encode_header(b'D', h, 0, out),
        Message::EndDir => out.write_all(b"E\n"),
        Message::Times(t) => {
            writeln!(out, "T{} {} {} {}", t.mtime_sec, t.mtime_usec, t.atime_sec, t.atime_usec)
        }
    };
}

fn encode_header(kind: u8, h: &FileHeader, size: u64, out: &mut Vec<u8>) -> std::io::Result<()> {
    out.push(kind);
    write!(out, "{:04o} {} ", h.mode.bits(), size)?;
    out.extend_from_slice(h.name.as_bytes());
    out.push(b'\n');
    Ok(())
}

/// Appends an error reply `\1scp: <text>\n` (the only error byte OpenSSH sends).
/// Line feeds in `text` are replaced so the reply stays one line.
pub fn encode_error(text: &str, out: &mut Vec<u8>) {
    out.push(1);
    out.extend_from_slice(b"scp: ");
    let room = MAX_LINE - 1 - b"scp: ".len() - 1;
    let one_line = |b: u8| if b == b'\n' { b' ' } else { b };
    let bytes = text.as_bytes();
    if bytes.len() <= room {
        out.extend(bytes.iter().copied().map(one_line));
    } else {
        // Too long (a huge path): cut the middle, keeping the reason at the end.
        let keep = (room - 3) / 2;
        out.extend(bytes[..keep].iter().copied().map(one_line));
        out.extend_from_slice(b"...");
        out.extend(bytes[bytes.len() - keep..].iter().copied().map(one_line));
    }
    out.push(b'\n');
}

/// Finds the end of the line at the start of `buf`: `Ok(Some(len))` with the LF
/// included, `Ok(None)` if more bytes are needed.
fn line_len(buf: &[u8]) -> Result<Option<usize>, WireError> {
    match buf.iter().take(MAX_LINE).position(|&b| b == b'\n') {
        Some(i) => Ok(Some(i + 1)),
        None if buf.len() >= MAX_LINE => Err(WireError::LineTooLong),
        None => Ok(None),
    }
}

/// Decodes one record (or `\1`/`\2` line) at the start of `buf`, as a sink reads it.
///
/// Returns `Ok(None)` when `buf` does not yet hold a whole line, and otherwise the
/// item with the number of bytes it took. Names are validated as [`FileName`]s.
pub fn decode_record(buf: &[u8]) -> Result<Option<(Incoming, usize)>, WireError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    if first == b'\n' {
        return Err(WireError::Protocol("unexpected <newline>"));
    }
    let Some(len) = line_len(buf)? else {
        return Ok(None);
    };
    let line = &buf[..len - 1];
    let incoming = match first {
        1 => Incoming::Warning(line[1..].to_vec()),
        2 => Incoming::Fatal(line[1..].to_vec()),
        // OpenSSH looks only at the first byte of an `E` line.
        b'E' => Incoming::Record(Message::EndDir),
        b'T' => match parse_times(&line[1..])? {
            Some(t) => Incoming::Record(Message::Times(t)),
            None => Incoming::TimesOutOfRange,
        },
        b'C' | b'D' => {
            let header = parse_header(&line[1..])?;
            Incoming::Record(if first == b'C' { Message::File(header) } else { Message::Dir(header) })
        }
        _ => Incoming::Unrecognized(line.to_vec()),
    };
    Ok(Some((incoming, len)))
}

/// Decodes one reply at the start of `buf`, as OpenSSH's `response()` reads it.
pub fn decode_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, WireError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    if first == 0 {
        return Ok(Some((Reply::Ok, 1)));
    }
    let Some(len) = line_len(buf)? else {
        return Ok(None);
    };
    let line = &buf[..len - 1];
    let reply = match first {
        1 => Reply::Warning(line[1..].to_vec()),
        2 => Reply::Fatal(line[1..].to_vec()),
        _ => Reply::Fatal(line.to_vec()),
    };
    Ok(Some((reply, len)))
}

/// `<mmmm> <size> <name>` after the `C`/`D`.
fn parse_header(rest: &[u8]) -> Result<FileHeader, WireError> {
    let mut bits = 0u32;
    for i in 0..4 {
        match rest.get(i) {
            Some(&d @ b'0'..=b'7') => bits = bits << 3 | u32::from(d - b'0'),
            _ => return Err(WireError::Protocol("bad mode")),
        }
    }
    if rest.get(4) != Some(&b' ') {
        return Err(WireError::Protocol("mode not delimited"));
    }
    let rest = &rest[5..];
    if !rest.first().is_some_and(u8::is_ascii_digit) {
        return Err(WireError::Protocol("size not present"));
    }
    let (size, used) = parse_u64_saturating(rest);
    if rest.get(used) != Some(&b' ') {
        return Err(WireError::Protocol("size not delimited"));
    }
    // The size must fit an off_t, like OpenSSH's sink checks.
    let size = match size {
        Some(s) if s <= i64::MAX as u64 => s,
        _ => return Err(WireError::Protocol("size out of range")),
    };
    let raw_name = &rest[used + 1..];
    let name = FileName::new(raw_name).map_err(|_| WireError::UnexpectedFilename(raw_name.to_vec()))?;
    let mode = Mode::new(bits).ok_or(WireError::Protocol("bad mode"))?;
    Ok(FileHeader { mode, size, name })
}

/// `<mtime> <usec> <atime> <usec>` after the `T`; `Ok(None)` when a seconds value
/// does not fit a `time_t` (OpenSSH then ignores the times but still acknowledges).
fn parse_times(rest: &[u8]) -> Result<Option<Times>, WireError> {
    let mut pos = 0;
    let mtime = seconds_field(rest, &mut pos, "mtime.sec not present", "mtime.sec not delimited")?;
    let mtime_usec = usec_field(rest, &mut pos, Some(b' '), "mtime.usec not delimited")?;
    let atime = seconds_field(rest, &mut pos, "atime.sec not present", "atime.sec not delimited")?;
    let atime_usec = usec_field(rest, &mut pos, None, "atime.usec not delimited")?;
    Ok(match (mtime, atime) {
        (Some(mtime_sec), Some(atime_sec)) => Some(Times { mtime_sec, mtime_usec, atime_sec, atime_usec }),
        _ => None,
    })
}

/// Digits then a space; `None` inside `Ok` when the value exceeds `time_t`.
fn seconds_field(
    s: &[u8],
    pos: &mut usize,
    not_present: &'static str,
    not_delimited: &'static str,
) -> Result<Option<u64>, WireError> {
    let field = &s[*pos..];
    if !field.first().is_some_and(u8::is_ascii_digit) {
        return Err(WireError::Protocol(not_present));
    }
    let (value, used) = parse_u64_saturating(field);
    if field.get(used) != Some(&b' ') {
        return Err(WireError::Protocol(not_delimited));
    }
    *pos += used + 1;
    Ok(value.filter(|&v| v <= i64::MAX as u64))
}

/// A `strtol`-parsed microseconds value in 0..=999999, followed by `delimiter`
/// (or by the end of the line when `delimiter` is `None`).
fn usec_field(
    s: &[u8],
    pos: &mut usize,
    delimiter: Option<u8>,
    error: &'static str,
) -> Result<u32, WireError> {
    let field = &s[*pos..];
    let (value, used) = strtol(field);
    let ok_end = match delimiter {
        Some(d) => field.get(used) == Some(&d),
        None => used == field.len(),
    };
    if !ok_end || !(0..=999_999).contains(&value) {
        return Err(WireError::Protocol(error));
    }
    *pos += used + usize::from(delimiter.is_some());
    Ok(value as u32)
}

/// Leading decimal digits of `s`: (value, or `None` on u64 overflow; digits used).
fn parse_u64_saturating(s: &[u8]) -> (Option<u64>, usize) {
    let digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
    let value =
        s[..digits].iter().try_fold(0u64, |acc, &d| acc.checked_mul(10)?.checked_add(u64::from(d - b'0')));
    (value, digits)
}

/// C's `strtol(s, &end, 10)`: leading white space and a sign are accepted; when no
/// digits follow, nothing is consumed. OpenSSH parses microseconds this leniently.
fn strtol(s: &[u8]) -> (i64, usize) {
    let mut i = s.iter().take_while(|b| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')).count();
    let negative = match s.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let digits = s[i..].iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return (0, 0);
    }
    let magnitude = s[i..i + digits]
        .iter()
        .fold(0i64, |acc, &d| acc.saturating_mul(10).saturating_add(i64::from(d - b'0')));
    (if negative { -magnitude } else { magnitude }, i + digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> FileName {
        FileName::new(s.as_bytes()).expect("valid test name")
    }

    fn file(mode: u32, size: u64, n: &str) -> Message {
        Message::File(FileHeader { mode: Mode::new(mode).expect("mode"), size, name: name(n) })
    }

    fn record(line: &[u8]) -> Result<Option<(Incoming, usize)>, WireError> {
        decode_record(line)
    }

    fn protocol(what: &'static str) -> Result<Option<(Incoming, usize)>, WireError> {
        Err(WireError::Protocol(what))
    }

    #[test]
    fn encodes_records_as_openssh() {
        let mut out = Vec::new();
        encode(&Message::Times(Times::from_secs(1_700_000_000, 1_800_000_000)), &mut out);
        encode(&file(0o644, 6, "a.txt"), &mut out);
        encode(
            &Message::Dir(FileHeader { mode: Mode::new(0o755).expect("mode"), size: 99, name: name("tree") }),
            &mut out,
        );
        encode(&Message::EndDir, &mut out);
        assert_eq!(out, b"T1700000000 0 1800000000 0\nC0644 6 a.txt\nD0755 0 tree\nE\n");
        let mut out = Vec::new();
        encode(&file(0o4755, 1 << 40, "big"), &mut out);
        encode(&file(0, 0, "z"), &mut out);
        assert_eq!(out, b"C4755 1099511627776 big\nC0000 0 z\n");
    }

    #[test]
    fn encodes_error_replies_on_one_line() {
        let mut out = Vec::new();
        encode_error("nope: No such file or directory", &mut out);
        assert_eq!(out, b"\x01scp: nope: No such file or directory\n");
        let mut out = Vec::new();
        encode_error("a\nb", &mut out);
        assert_eq!(out, b"\x01scp: a b\n");
        let mut out = Vec::new();
        let long = format!("/{}: File name too long", "x".repeat(5000));
        encode_error(&long, &mut out);
        assert!(out.len() <= MAX_LINE);
        assert!(out.starts_with(b"\x01scp: /xxx"));
        assert!(out.ends_with(b"xxx: File name too long\n"));
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
    }

    #[test]
    fn decodes_records() {
        assert_eq!(
            record(b"C0644 6 a.txt\nhello"),
            Ok(Some((Incoming::Record(file(0o644, 6, "a.txt")), 14)))
        );
        assert_eq!(record(b"C0644 6 my file.txt\n").map(|r| r.map(|(_, n)| n)), Ok(Some(20)));
        assert_eq!(record(b"E\n"), Ok(Some((Incoming::Record(Message::EndDir), 2))));
        assert_eq!(record(b"Eanything\n"), Ok(Some((Incoming::Record(Message::EndDir), 10))));
        assert_eq!(
            record(b"T1700000000 0 1800000000 0\n"),
            Ok(Some((Incoming::Record(Message::Times(Times::from_secs(1_700_000_000, 1_800_000_000))), 27)))
        );
        assert_eq!(record(b"\x01scp: warn\n"), Ok(Some((Incoming::Warning(b"scp: warn".to_vec()), 11))));
        assert_eq!(record(b"\x02scp: fatal\n"), Ok(Some((Incoming::Fatal(b"scp: fatal".to_vec()), 12))));
        assert_eq!(record(b"Welcome\n"), Ok(Some((Incoming::Unrecognized(b"Welcome".to_vec()), 8))));
    }

    #[test]
    fn waits_for_a_whole_line() {
        for partial in [&b""[..], b"C", b"C0644 6 a.tx", b"T1 0 2 0", b"\x01scp"] {
            assert_eq!(record(partial), Ok(None), "{partial:?}");
        }
        assert_eq!(decode_reply(b""), Ok(None));
        assert_eq!(decode_reply(b"\x01scp: partial"), Ok(None));
    }

    #[test]
    fn refuses_long_lines_instead_of_splitting() {
        let mut long = b"C0644 1 ".to_vec();
        long.resize(100 * 1024, b'a');
        assert_eq!(record(&long), Err(WireError::LineTooLong));
        let mut fits = b"C0644 1 ".to_vec();
        fits.resize(MAX_LINE - 1, b'a');
        fits.push(b'\n');
        assert!(matches!(record(&fits), Ok(Some((_, n))) if n == MAX_LINE));
        assert_eq!(decode_reply(&[1u8; 3000]), Err(WireError::LineTooLong));
    }

    #[test]
    fn mode_rules_match_openssh() {
        assert_eq!(record(b"C644 3 a.txt\n"), protocol("bad mode"));
        assert_eq!(record(b"C0648 3 a\n"), protocol("bad mode"));
        assert_eq!(record(b"C04755 3 a\n"), protocol("mode not delimited"));
        assert_eq!(record(b"C\n"), protocol("bad mode"));
        assert_eq!(record(b"C7777 0 a\n"), Ok(Some((Incoming::Record(file(0o7777, 0, "a")), 10))));
    }

    #[test]
    fn size_rules_match_openssh() {
        assert_eq!(record(b"C0644 3x a.txt\n"), protocol("size not delimited"));
        assert_eq!(record(b"C0644 -1 a\n"), protocol("size not present"));
        assert_eq!(record(b"C0644  1 a\n"), protocol("size not present"));
        assert_eq!(record(b"C0644 18446744073709551616 a\n"), protocol("size out of range"));
        assert_eq!(record(b"C0644 9223372036854775808 a\n"), protocol("size out of range"));
        assert_eq!(record(b"C0644 5\n"), protocol("size not delimited"));
        let max = record(b"C0644 9223372036854775807 a\n");
        assert_eq!(max, Ok(Some((Incoming::Record(file(0o644, i64::MAX as u64, "a")), 28))));
        let big = record(b"C0644 5000000000 big\n");
        assert_eq!(big, Ok(Some((Incoming::Record(file(0o644, 5_000_000_000, "big")), 21))));
    }

    #[test]
    fn unsafe_names_are_refused() {
        for (line, bad) in [
            (&b"C0644 3 ../x\n"[..], &b"../x"[..]),
            (b"C0644 3 /etc/x\n", b"/etc/x"),
            (b"D0755 0 .\n", b"."),
            (b"D0755 0 ..\n", b".."),
            (b"C0644 3 \n", b""),
            (b"C0644 3 a\0b\n", b"a\0b"),
        ] {
            assert_eq!(record(line), Err(WireError::UnexpectedFilename(bad.to_vec())));
        }
        assert_eq!(
            WireError::UnexpectedFilename(b"../x\x1b".to_vec()).to_string(),
            "error: unexpected filename: ../x\\033"
        );
    }

    #[test]
    fn times_rules_match_openssh() {
        assert_eq!(record(b"T1 0 2\n"), protocol("atime.sec not delimited"));
        assert_eq!(record(b"T1 0 2 1000000\n"), protocol("atime.usec not delimited"));
        assert_eq!(record(b"Tx 0 2 0\n"), protocol("mtime.sec not present"));
        assert_eq!(record(b"T1x 0 2 0\n"), protocol("mtime.sec not delimited"));
        assert_eq!(record(b"T1 -1 2 0\n"), protocol("mtime.usec not delimited"));
        assert_eq!(record(b"T1 0 x 0\n"), protocol("atime.sec not present"));
        assert_eq!(record(b"T1 0 2 0 \n"), protocol("atime.usec not delimited"));
        // OpenSSH's strtol takes an empty last field as 0.
        assert_eq!(
            record(b"T1 0 2 \n"),
            Ok(Some((Incoming::Record(Message::Times(Times::from_secs(1, 2))), 8)))
        );
        // strtol leniency on microseconds, as OpenSSH: blanks and a sign are fine.
        let lenient = Times { mtime_sec: 1, mtime_usec: 5, atime_sec: 2, atime_usec: 999_999 };
        assert_eq!(record(b"T1 +5 2 999999\n"), Ok(Some((Incoming::Record(Message::Times(lenient)), 15))));
        // Seconds beyond time_t: acknowledged but ignored.
        assert_eq!(record(b"T99999999999999999999 0 2 0\n"), Ok(Some((Incoming::TimesOutOfRange, 28))));
        assert_eq!(record(b"T1 0 9223372036854775808 0\n"), Ok(Some((Incoming::TimesOutOfRange, 27))));
    }

    #[test]
    fn empty_first_line_is_refused() {
        assert_eq!(record(b"\nC0644 1 a\n"), protocol("unexpected <newline>"));
    }

    #[test]
    fn replies() {
        assert_eq!(decode_reply(b"\0rest"), Ok(Some((Reply::Ok, 1))));
        assert_eq!(
            decode_reply(b"\x01scp: x: denied\n"),
            Ok(Some((Reply::Warning(b"scp: x: denied".to_vec()), 16)))
        );
        assert_eq!(decode_reply(b"\x02scp: bad\n"), Ok(Some((Reply::Fatal(b"scp: bad".to_vec()), 10))));
        // A shell banner where a reply belongs: fatal, with the whole line as the text.
        assert_eq!(
            decode_reply(b"Welcome-to-host\n"),
            Ok(Some((Reply::Fatal(b"Welcome-to-host".to_vec()), 16)))
        );
    }
}
