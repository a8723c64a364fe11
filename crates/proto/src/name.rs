//! `FileName`: the only way a name chosen by a peer enters the program.
//!
//! A `FileName` is one path component that is safe to join onto a directory: not
//! empty, not `.` or `..`, no `/`, no NUL (the CVE-2000-0992, CVE-2004-0175 and
//! CVE-2018-20685 rules of OpenSSH's sink). It must never be built without those
//! checks, and it is printed only through [`FileName::display`].

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;

/// One validated path component, as raw bytes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileName(Vec<u8>);

/// Why a name was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameError {
    Empty,
    Dot,
    DotDot,
    ContainsSlash,
    ContainsNul,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameError::Empty => "empty name",
            NameError::Dot => "name is \".\"",
            NameError::DotDot => "name is \"..\"",
            NameError::ContainsSlash => "name contains \"/\"",
            NameError::ContainsNul => "name contains a NUL byte",
        })
    }
}

impl std::error::Error for NameError {}

impl FileName {
    /// Validates `bytes` as a single, safe path component.
    pub fn new(bytes: &[u8]) -> Result<FileName, NameError> {
        match bytes {
            [] => Err(NameError::Empty),
            b"." => Err(NameError::Dot),
            b".." => Err(NameError::DotDot),
            _ if bytes.contains(&b'/') => Err(NameError::ContainsSlash),
            _ if bytes.contains(&0) => Err(NameError::ContainsNul),
            _ => Ok(FileName(bytes.to_vec())),
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn as_os_str(&self) -> &OsStr {
        OsStr::from_bytes(&self.0)
    }

    /// True if the name holds a line feed, which cannot be sent in a record.
    pub fn contains_newline(&self) -> bool {
        self.0.contains(&b'\n')
    }

    /// The name with control characters escaped, safe to print on a terminal.
    pub fn display(&self) -> String {
        crate::display::escape(&self.0)
    }
}

impl fmt::Debug for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileName({:?})", self.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for ok in [&b"a.txt"[..], b"my file", b"-dash", b"...", b".hidden", "caf\u{e9}".as_bytes(), b"a\nb"] {
            assert_eq!(FileName::new(ok).map(|n| n.as_bytes().to_vec()), Ok(ok.to_vec()));
        }
    }

    #[test]
    fn rejects_unsafe_names() {
        assert_eq!(FileName::new(b""), Err(NameError::Empty));
        assert_eq!(FileName::new(b"."), Err(NameError::Dot));
        assert_eq!(FileName::new(b".."), Err(NameError::DotDot));
        assert_eq!(FileName::new(b"../x"), Err(NameError::ContainsSlash));
        assert_eq!(FileName::new(b"/etc/passwd"), Err(NameError::ContainsSlash));
        assert_eq!(FileName::new(b"a/"), Err(NameError::ContainsSlash));
        assert_eq!(FileName::new(b"a\0b"), Err(NameError::ContainsNul));
    }

    #[test]
    fn display_escapes_controls() {
        let name = FileName::new(b"evil\x1b[1A").expect("valid name");
        assert_eq!(name.display(), "evil\\033[1A");
        assert!(name.as_os_str().as_bytes().starts_with(b"evil"));
    }
}
