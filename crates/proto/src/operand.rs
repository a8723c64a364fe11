//! Operands: local paths, `[user@]host:[path]`, `[user@][v6addr]:path` and
//! `scp://[user[;params]@]host[:port][/path]`, with OpenSSH's rules (`misc.c`
//! `colon()`, `parse_user_host_path()`, `parse_uri()`).
//!
//! Only parsing: nothing here connects or touches a file. The `rscp` client uses
//! it for its operands, and the `operand_parse` fuzz target checks it.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

/// A file on another host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemotePath {
    pub user: Option<String>,
    pub host: String,
    /// A port from an `scp://` URI (beats `-P`).
    pub port: Option<u16>,
    /// The path as the user typed it; empty means the remote home directory.
    pub path: Vec<u8>,
}

/// One command-line operand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operand {
    Local(OsString),
    Remote(RemotePath),
}

/// Why an operand was refused; `Display` is OpenSSH's wording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperandError {
    InvalidUser(String),
    InvalidUri(String),
    /// A host name a shell would interpret (OpenSSH's ssh refuses it too).
    InvalidHost(String),
}

impl std::fmt::Display for OperandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OperandError::InvalidUser(user) => write!(f, "{user}: invalid user name"),
            OperandError::InvalidUri(uri) => write!(f, "{uri}: invalid uri"),
            // ssh's own wording (scp -O prints what ssh says).
            OperandError::InvalidHost(_) => write!(f, "hostname contains invalid characters"),
        }
    }
}

/// The index of the colon that separates host from path, if `arg` names a remote
/// file. A leading `:` is part of a local name, a `/` before the first colon makes
/// the operand local (`./host:file`), and `[...]` brackets hide the colons of an
/// IPv6 address.
pub fn host_colon(arg: &[u8]) -> Option<usize> {
    if arg.first() == Some(&b':') {
        return None;
    }
    let mut bracketed = arg.first() == Some(&b'[');
    for (i, &b) in arg.iter().enumerate() {
        let next = arg.get(i + 1).copied();
        if b == b'@' && next == Some(b'[') {
            bracketed = true;
        }
        if b == b']' && next == Some(b':') && bracketed {
            return Some(i + 1);
        }
        if b == b':' && !bracketed {
            return Some(i);
        }
        if b == b'/' {
            return None;
        }
    }
    None
}

/// True if `arg` names a file on another host.
pub fn is_remote(arg: &[u8]) -> bool {
    arg.starts_with(b"scp://") || host_colon(arg).is_some()
}

/// Parses one operand.
pub fn parse(arg: &OsStr) -> Result<Operand, OperandError> {
    let bytes = arg.as_bytes();
    if let Some(rest) = bytes.strip_prefix(b"scp://") {
        return parse_uri(arg, rest).map(Operand::Remote);
    }
    let Some(colon) = host_colon(bytes) else {
        return Ok(Operand::Local(arg.to_os_string()));
    };
    let (login, path) = (&bytes[..colon], &bytes[colon + 1..]);
    // The last `@` separates the user (which may itself hold an `@`).
    let (user, host) = match login.iter().rposition(|&b| b == b'@') {
        Some(at) => (Some(&login[..at]), &login[at + 1..]),
        None => (None, login),
    };
    let host = host.strip_prefix(b"[").and_then(|h| h.strip_suffix(b"]")).unwrap_or(host);
    let user = user.map(checked_user).transpose()?;
    Ok(Operand::Remote(RemotePath { user, host: checked_host(host)?, port: None, path: path.to_vec() }))
}

/// OpenSSH's `okname()` (scp) and `valid_ruser()` (ssh, the CVE-2023-51385 fix):
/// user names are pasted into command lines (`ProxyCommand ... %r`, `Match exec`),
/// so refuse the bytes that would need quoting, control characters, a leading `-`
/// and a trailing backslash.
pub fn checked_user(user: &[u8]) -> Result<String, OperandError> {
    let shell = |b: u8| b"'\"`;&<>|(){}".contains(&b);
    let bad = user.is_empty()
        || user.first() == Some(&b'-')
        || user.last() == Some(&b'\\')
        || user.iter().any(|&b| b >= 0x80 || b.is_ascii_control() || shell(b) || matches!(b, b' ' | b'#'));
    let text = String::from_utf8_lossy(user).into_owned();
    if bad { Err(OperandError::InvalidUser(text)) } else { Ok(text) }
}

/// OpenSSH's `valid_hostname()` (ssh, the CVE-2023-51385 fix): the host name from
/// the command line is expanded into `ProxyCommand ... %h` and `Match exec`, which
/// a shell runs, so refuse shell syntax, blanks, control characters and a leading
/// `-` (`-oProxyCommand=...`).
fn checked_host(host: &[u8]) -> Result<String, OperandError> {
    let shell = |b: u8| b"'\"`$\\;&<>|(){}".contains(&b);
    let bad = host.first() == Some(&b'-')
        || host.iter().any(|&b| b.is_ascii_whitespace() || b.is_ascii_control() || shell(b));
    let text = String::from_utf8_lossy(host).into_owned();
    if bad { Err(OperandError::InvalidHost(text)) } else { Ok(text) }
}

/// `scp://[user[;params]@]host[:port][/path]`: user and path are URL-decoded, a
/// missing path is the home directory, and `scp://h//abs` names `/abs`.
fn parse_uri(whole: &OsStr, rest: &[u8]) -> Result<RemotePath, OperandError> {
    let invalid = || OperandError::InvalidUri(String::from_utf8_lossy(whole.as_bytes()).into_owned());
    let (authority, path) = match rest.iter().position(|&b| b == b'/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &b""[..]),
    };
    let (user, hostport) = match authority.iter().rposition(|&b| b == b'@') {
        Some(at) => {
            let userinfo = &authority[..at];
            // `;params` after the user are ignored, as OpenSSH does.
            let user = userinfo.split(|&b| b == b';').next().unwrap_or_default();
            (Some(url_decode(user).ok_or_else(invalid)?), &authority[at + 1..])
        }
        None => (None, authority),
    };
    let (host, port) = if let Some(inner) = hostport.strip_prefix(b"[") {
        let end = inner.iter().position(|&b| b == b']').ok_or_else(invalid)?;
        let after = &inner[end + 1..];
        let port = match after {
            [] => None,
            [b':', digits @ ..] => Some(digits),
            _ => return Err(invalid()),
        };
        (&inner[..end], port)
    } else {
        match hostport.iter().position(|&b| b == b':') {
            Some(i) => (&hostport[..i], Some(&hostport[i + 1..])),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(invalid());
    }
    let port = match port {
        None => None,
        Some(digits) => {
            let text = std::str::from_utf8(digits).map_err(|_| invalid())?;
            Some(text.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(invalid)?)
        }
    };
    let path = url_decode(path).ok_or_else(invalid)?;
    let user = user.map(|u| checked_user(&u)).transpose()?;
    Ok(RemotePath { user, host: checked_host(host)?, port, path })
}

/// `%XX` decoding; `None` on a malformed escape or a decoded NUL. `XX` must be two
/// hex digits, as OpenSSH's `urldecode()` requires (`from_str_radix` alone would
/// also take `%+1`).
fn url_decode(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i] == b'%' {
            let hex = text.get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit))?;
            let byte = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            if byte == 0 {
                return None;
            }
            out.push(byte);
            i += 3;
        } else {
            out.push(text[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(arg: &str) -> RemotePath {
        match parse(OsStr::new(arg)) {
            Ok(Operand::Remote(r)) => r,
            other => panic!("{arg}: {other:?}"),
        }
    }

    fn spec(user: Option<&str>, host: &str, port: Option<u16>, path: &str) -> RemotePath {
        RemotePath { user: user.map(String::from), host: host.into(), port, path: path.as_bytes().to_vec() }
    }

    #[test]
    fn colon_rules() {
        assert_eq!(host_colon(b"host:path"), Some(4));
        assert_eq!(host_colon(b"user@host:"), Some(9));
        assert_eq!(host_colon(b"local.txt"), None);
        assert_eq!(host_colon(b":local"), None);
        assert_eq!(host_colon(b"./host:file"), None);
        assert_eq!(host_colon(b"dir/a:b"), None);
        assert_eq!(host_colon(b"[::1]:path"), Some(5));
        assert_eq!(host_colon(b"bob@[fe80::1]:x"), Some(13));
        assert!(is_remote(b"scp://host/path"));
        assert!(!is_remote(b"plain"));
    }

    #[test]
    fn host_and_path_forms() {
        assert_eq!(remote("host:path/x"), spec(None, "host", None, "path/x"));
        assert_eq!(remote("bob@host:"), spec(Some("bob"), "host", None, ""));
        assert_eq!(remote("[::1]:/tmp/x"), spec(None, "::1", None, "/tmp/x"));
        assert_eq!(remote("bob@[fe80::1]:x"), spec(Some("bob"), "fe80::1", None, "x"));
        assert_eq!(remote("a@b@host:x"), spec(Some("a@b"), "host", None, "x"));
        assert_eq!(remote("host:a:b"), spec(None, "host", None, "a:b"));
        assert_eq!(parse(OsStr::new("./host:x")), Ok(Operand::Local("./host:x".into())));
        assert_eq!(parse(OsStr::new(":x")), Ok(Operand::Local(":x".into())));
    }

    #[test]
    fn uris() {
        assert_eq!(remote("scp://host"), spec(None, "host", None, ""));
        assert_eq!(remote("scp://bob@host:2222/dir/x"), spec(Some("bob"), "host", Some(2222), "dir/x"));
        assert_eq!(remote("scp://host//abs/x.txt"), spec(None, "host", None, "/abs/x.txt"));
        assert_eq!(remote("scp://b%40b;fp=x@host/a%20b"), spec(Some("b@b"), "host", None, "a b"));
        assert_eq!(remote("scp://[::1]:22/x"), spec(None, "::1", Some(22), "x"));
        for bad in ["scp://host:0/x", "scp://host:abc/x", "scp:///x", "scp://host/%zz", "scp://[::1/x"] {
            assert!(matches!(parse(OsStr::new(bad)), Err(OperandError::InvalidUri(_))), "{bad}");
        }
        // Found by the operand_parse fuzz check: an escape is two hex digits, no sign.
        for bad in ["scp://host/%+1", "scp://host/%2", "scp://%+41@host/x", "scp://host/%00"] {
            assert!(matches!(parse(OsStr::new(bad)), Err(OperandError::InvalidUri(_))), "{bad}");
        }
    }

    #[test]
    fn user_names_are_checked() {
        for bad in ["bo b@host:x", "bo'b@host:x", "b#@host:x", "b`@host:x", "@host:x"] {
            assert!(matches!(parse(OsStr::new(bad)), Err(OperandError::InvalidUser(_))), "{bad}");
        }
        assert_eq!(
            parse(OsStr::new("bo b@host:x")).map_err(|e| e.to_string()),
            Err("bo b: invalid user name".into())
        );
    }

    /// CVE-2023-51385: `ProxyCommand nc %h %p` (or `%r`, or `Match exec`) runs the
    /// command-line host and user through a shell; rscp ran `a`touch x`b:f` with
    /// such a config. Refused like OpenSSH's ssh (9.6) refuses them.
    #[test]
    fn hosts_and_users_a_shell_would_interpret_are_refused() {
        for bad in [
            "a`touch x`b:f",
            "a$(id)b:f",
            "h;id:f",
            "h|id:f",
            "h&id:f",
            "h>x:f",
            "h\\x:f",
            "h'x:f",
            "h\"x:f",
            "h{a,b}:f",
            "h\tx:f",
            "h\nx:f",
            "-oProxyCommand=sh:f",
            "u@-oProxyCommand=sh:f",
            "[a$(id)]:f",
            "scp://a$(id)b/f",
            "scp://u@-h/f",
        ] {
            assert!(matches!(parse(OsStr::new(bad)), Err(OperandError::InvalidHost(_))), "{bad}");
        }
        for bad in
            ["u$(id)@h:f", "u;id@h:f", "u|x@h:f", "u&x@h:f", "u{a}@h:f", "-u@h:f", "u\\@h:f", "u\n@h:f"]
        {
            assert!(matches!(parse(OsStr::new(bad)), Err(OperandError::InvalidUser(_))), "{bad}");
        }
        assert!(matches!(parse(OsStr::new("scp://u%3bid@h/f")), Err(OperandError::InvalidUser(_))));
        assert_eq!(
            parse(OsStr::new("a`id`:f")).map_err(|e| e.to_string()),
            Err("hostname contains invalid characters".into())
        );
        // What OpenSSH still accepts stays accepted.
        assert_eq!(remote("u$x@h-1.example_2:f"), spec(Some("u$x"), "h-1.example_2", None, "f"));
        assert_eq!(remote("[fe80::1%eth0]:f"), spec(None, "fe80::1%eth0", None, "f"));
        assert_eq!(remote("u@h:$(id) ; `x`"), spec(Some("u"), "h", None, "$(id) ; `x`"));
    }
}
