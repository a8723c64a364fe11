//! The values carried by SCP records: `C`/`D`/`E`/`T` lines and their fields.
//!
//! Plain data with invariants checked at construction; encoding and decoding live
//! in [`crate::wire`].

use crate::name::FileName;

/// Permission bits of a file or directory as carried on the wire: at most `0o7777`.
///
/// OpenSSH's source sends `st_mode & 06777` (never the sticky bit); the sink accepts
/// any four octal digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Mode(u32);

impl Mode {
    /// The setuid, setgid and sticky bits.
    pub const SPECIAL_BITS: u32 = 0o7000;

    /// `None` if `bits` does not fit in four octal digits.
    pub fn new(bits: u32) -> Option<Mode> {
        (bits <= 0o7777).then_some(Mode(bits))
    }

    /// The mode OpenSSH's source sends for a local file: `st_mode & 06777`.
    pub fn from_st_mode(st_mode: u32) -> Mode {
        Mode(st_mode & 0o6777)
    }

    pub fn bits(self) -> u32 {
        self.0
    }
}

/// A `T` record: modification and access times, seconds and microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Times {
    pub mtime_sec: u64,
    pub mtime_usec: u32,
    pub atime_sec: u64,
    pub atime_usec: u32,
}

impl Times {
    /// Times as OpenSSH sends them: whole seconds, microseconds always 0,
    /// negative times clamped to 0.
    pub fn from_secs(mtime: i64, atime: i64) -> Times {
        Times { mtime_sec: mtime.max(0) as u64, mtime_usec: 0, atime_sec: atime.max(0) as u64, atime_usec: 0 }
    }
}

/// The header of a `C` (file) or `D` (directory) record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileHeader {
    pub mode: Mode,
    /// Payload length for a file; always 0 for a directory.
    pub size: u64,
    pub name: FileName,
}

/// One control record of the protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Message {
    /// `C<mode> <size> <name>`: a file follows, exactly `size` bytes then a status byte.
    File(FileHeader),
    /// `D<mode> 0 <name>`: enter (create) a directory.
    Dir(FileHeader),
    /// `E`: leave the current directory.
    EndDir,
    /// `T<mtime> <usec> <atime> <usec>`: times for the next `C` or `D` record.
    Times(Times),
}
