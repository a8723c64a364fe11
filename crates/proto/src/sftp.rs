//! SFTP version 3 (draft-ietf-secsh-filexfer-02) framing, as OpenSSH's
//! `sftp-server` speaks it: the constants, a bounded field reader, the encoding
//! helpers, file attributes, and the client's view of the server's replies.
//!
//! Shared by rscpd's SFTP server and rscp's SFTP mode (`-s`). Framing is a few
//! big-endian integers and length-prefixed strings; strings stay byte strings
//! (a Unix name need not be UTF-8) and are borrowed from the packet, never
//! copied, so payload goes straight between a packet and a file.

// Packet types.
pub const FXP_INIT: u8 = 1;
pub const FXP_VERSION: u8 = 2;
pub const FXP_OPEN: u8 = 3;
pub const FXP_CLOSE: u8 = 4;
pub const FXP_READ: u8 = 5;
pub const FXP_WRITE: u8 = 6;
pub const FXP_LSTAT: u8 = 7;
pub const FXP_FSTAT: u8 = 8;
pub const FXP_SETSTAT: u8 = 9;
pub const FXP_FSETSTAT: u8 = 10;
pub const FXP_OPENDIR: u8 = 11;
pub const FXP_READDIR: u8 = 12;
pub const FXP_REMOVE: u8 = 13;
pub const FXP_MKDIR: u8 = 14;
pub const FXP_RMDIR: u8 = 15;
pub const FXP_REALPATH: u8 = 16;
pub const FXP_STAT: u8 = 17;
pub const FXP_RENAME: u8 = 18;
pub const FXP_READLINK: u8 = 19;
pub const FXP_SYMLINK: u8 = 20;
pub const FXP_STATUS: u8 = 101;
pub const FXP_HANDLE: u8 = 102;
pub const FXP_DATA: u8 = 103;
pub const FXP_NAME: u8 = 104;
pub const FXP_ATTRS: u8 = 105;
pub const FXP_EXTENDED: u8 = 200;
pub const FXP_EXTENDED_REPLY: u8 = 201;

// Status codes.
pub const FX_OK: u32 = 0;
pub const FX_EOF: u32 = 1;
pub const FX_NO_SUCH_FILE: u32 = 2;
pub const FX_PERMISSION_DENIED: u32 = 3;
pub const FX_FAILURE: u32 = 4;
pub const FX_BAD_MESSAGE: u32 = 5;
pub const FX_NO_CONNECTION: u32 = 6;
pub const FX_CONNECTION_LOST: u32 = 7;
pub const FX_OP_UNSUPPORTED: u32 = 8;

// OPEN flags.
pub const FXF_READ: u32 = 0x01;
pub const FXF_WRITE: u32 = 0x02;
pub const FXF_APPEND: u32 = 0x04;
pub const FXF_CREAT: u32 = 0x08;
pub const FXF_TRUNC: u32 = 0x10;
pub const FXF_EXCL: u32 = 0x20;

// Attribute flags.
pub const ATTR_SIZE: u32 = 0x01;
pub const ATTR_UIDGID: u32 = 0x02;
pub const ATTR_PERMISSIONS: u32 = 0x04;
pub const ATTR_ACMODTIME: u32 = 0x08;
pub const ATTR_EXTENDED: u32 = 0x8000_0000;

/// Largest packet either side accepts (length field excluded): OpenSSH's
/// `SFTP_MAX_MSG_LENGTH`.
pub const MAX_PACKET: usize = 256 * 1024;

/// A field ran past the end of its packet, or a packet broke the framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("malformed SFTP packet")
    }
}

impl std::error::Error for Malformed {}

/// A packet's fields, read front to back; running short is [`Malformed`].
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }

    /// What is left unread.
    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if n > self.buf.len() {
            return Err(Malformed);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub fn u8(&mut self) -> Result<u8, Malformed> {
        self.take(1)?.first().copied().ok_or(Malformed)
    }

    pub fn u32(&mut self) -> Result<u32, Malformed> {
        let bytes = self.take(4)?.try_into().map_err(|_| Malformed)?;
        Ok(u32::from_be_bytes(bytes))
    }

    pub fn u64(&mut self) -> Result<u64, Malformed> {
        let bytes = self.take(8)?.try_into().map_err(|_| Malformed)?;
        Ok(u64::from_be_bytes(bytes))
    }

    /// A length-prefixed string, borrowed from the packet (never allocated).
    pub fn string(&mut self) -> Result<&'a [u8], Malformed> {
        let len = usize::try_from(self.u32()?).map_err(|_| Malformed)?;
        self.take(len)
    }
}

/// Starts a packet in `out`; [`finish`] fills in its length. For INIT and
/// VERSION, which carry no id, the version number takes the id's place.
pub fn begin(out: &mut Vec<u8>, kind: u8, id: u32) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.push(kind);
    put_u32(out, id);
    start
}

/// Writes the length of the packet begun at `start`.
pub fn finish(out: &mut [u8], start: usize) {
    // Packets are bounded by construction (one READ, one WRITE header, a batch of names).
    let len = u32::try_from(out.len() - start - 4).unwrap_or(u32::MAX);
    if let Some(field) = out.get_mut(start..start + 4) {
        field.copy_from_slice(&len.to_be_bytes());
    }
}

pub fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    put_u32(out, u32::try_from(s.len()).unwrap_or(u32::MAX));
    out.extend_from_slice(s);
}

/// File attributes as v3 carries them: each field only if its flag is set.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Attrs {
    pub size: Option<u64>,
    /// (uid, gid)
    pub owner: Option<(u32, u32)>,
    /// `st_mode` bits, file type included when a server reports them.
    pub permissions: Option<u32>,
    /// (atime, mtime), unsigned 32-bit seconds.
    pub times: Option<(u32, u32)>,
}

/// The `S_IFMT` bits of a mode and the directory type.
const S_IFMT: u32 = 0o170000;
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;

impl Attrs {
    /// Reads attributes; extended pairs are skipped.
    pub fn read(r: &mut Reader<'_>) -> Result<Attrs, Malformed> {
        let flags = r.u32()?;
        let mut attrs = Attrs::default();
        if flags & ATTR_SIZE != 0 {
            attrs.size = Some(r.u64()?);
        }
        if flags & ATTR_UIDGID != 0 {
            attrs.owner = Some((r.u32()?, r.u32()?));
        }
        if flags & ATTR_PERMISSIONS != 0 {
            attrs.permissions = Some(r.u32()?);
        }
        if flags & ATTR_ACMODTIME != 0 {
            attrs.times = Some((r.u32()?, r.u32()?));
        }
        if flags & ATTR_EXTENDED != 0 {
            // Each pair consumes at least 8 bytes, so a huge count fails fast.
            for _ in 0..r.u32()? {
                r.string()?;
                r.string()?;
            }
        }
        Ok(attrs)
    }

    pub fn put(&self, out: &mut Vec<u8>) {
        let flag = |set: bool, bit: u32| if set { bit } else { 0 };
        put_u32(
            out,
            flag(self.size.is_some(), ATTR_SIZE)
                | flag(self.owner.is_some(), ATTR_UIDGID)
                | flag(self.permissions.is_some(), ATTR_PERMISSIONS)
                | flag(self.times.is_some(), ATTR_ACMODTIME),
        );
        if let Some(size) = self.size {
            put_u64(out, size);
        }
        if let Some((uid, gid)) = self.owner {
            put_u32(out, uid);
            put_u32(out, gid);
        }
        if let Some(mode) = self.permissions {
            put_u32(out, mode);
        }
        if let Some((atime, mtime)) = self.times {
            put_u32(out, atime);
            put_u32(out, mtime);
        }
    }

    pub fn is_dir(&self) -> bool {
        self.permissions.is_some_and(|m| m & S_IFMT == S_IFDIR)
    }

    pub fn is_regular(&self) -> bool {
        self.permissions.is_some_and(|m| m & S_IFMT == S_IFREG)
    }
}

/// One reply from a server, its strings borrowed from the packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<'a> {
    /// VERSION: the server's protocol version and its extensions (name, data).
    Version {
        version: u32,
        extensions: Vec<(&'a [u8], &'a [u8])>,
    },
    Status {
        id: u32,
        code: u32,
        message: &'a [u8],
    },
    Handle {
        id: u32,
        handle: &'a [u8],
    },
    Data {
        id: u32,
        data: &'a [u8],
    },
    /// NAME: the entries' (file name, long name, attributes).
    Name {
        id: u32,
        entries: Vec<(&'a [u8], &'a [u8], Attrs)>,
    },
    Attrs {
        id: u32,
        attrs: Attrs,
    },
    /// EXTENDED_REPLY: the rest of the packet, for the extension to read.
    Extended {
        id: u32,
        data: &'a [u8],
    },
}

impl<'a> Reply<'a> {
    /// Takes one whole reply from the front of `buf`: `Ok(None)` if more bytes
    /// are needed, else the reply and how many bytes it used. A packet longer
    /// than [`MAX_PACKET`] with its length field, of an unknown type, or with fields that overrun it
    /// is [`Malformed`].
    pub fn parse(buf: &'a [u8]) -> Result<Option<(Reply<'a>, usize)>, Malformed> {
        let Some(len) = buf.get(..4) else { return Ok(None) };
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        // The whole reply, length field included, fits a 256 KiB buffer (a READ
        // of OpenSSH's largest, 255 KiB, does with room to spare).
        if len == 0 || len > MAX_PACKET - 4 {
            return Err(Malformed);
        }
        let Some(packet) = buf.get(4..4 + len) else { return Ok(None) };
        let mut r = Reader::new(packet);
        let kind = r.u8()?;
        let id = r.u32()?;
        let reply = match kind {
            FXP_VERSION => {
                let mut extensions = Vec::new();
                while !r.rest().is_empty() {
                    extensions.push((r.string()?, r.string()?));
                }
                Reply::Version { version: id, extensions }
            }
            FXP_STATUS => {
                let code = r.u32()?;
                // OpenSSH always sends the message; a bare code is accepted too.
                let message = if r.rest().is_empty() { &[][..] } else { r.string()? };
                Reply::Status { id, code, message }
            }
            FXP_HANDLE => Reply::Handle { id, handle: r.string()? },
            FXP_DATA => Reply::Data { id, data: r.string()? },
            FXP_NAME => {
                let count = r.u32()?;
                let mut entries = Vec::new();
                for _ in 0..count {
                    // Each entry holds at least 12 bytes, so a huge count fails fast.
                    entries.push((r.string()?, r.string()?, Attrs::read(&mut r)?));
                }
                Reply::Name { id, entries }
            }
            FXP_ATTRS => Reply::Attrs { id, attrs: Attrs::read(&mut r)? },
            FXP_EXTENDED_REPLY => Reply::Extended { id, data: r.rest() },
            _ => return Err(Malformed),
        };
        Ok(Some((reply, 4 + len)))
    }
}

/// The text OpenSSH's client prints for a status code (`fx2txt`).
pub fn status_text(code: u32) -> &'static str {
    match code {
        FX_OK => "No error",
        FX_EOF => "End of file",
        FX_NO_SUCH_FILE => "No such file or directory",
        FX_PERMISSION_DENIED => "Permission denied",
        FX_FAILURE => "Failure",
        FX_BAD_MESSAGE => "Bad message",
        FX_NO_CONNECTION => "No connection",
        FX_CONNECTION_LOST => "Connection lost",
        FX_OP_UNSUPPORTED => "Operation unsupported",
        _ => "Unknown status",
    }
}

/// Requests a client sends. Each appends one whole packet to `out`.
pub mod request {
    use super::*;

    pub fn init(out: &mut Vec<u8>) {
        let start = begin(out, FXP_INIT, 3);
        finish(out, start);
    }

    /// A request whose body is one path (STAT, LSTAT, REALPATH, OPENDIR, REMOVE, RMDIR).
    pub fn path(out: &mut Vec<u8>, kind: u8, id: u32, path: &[u8]) {
        let start = begin(out, kind, id);
        put_str(out, path);
        finish(out, start);
    }

    /// A request whose body is one handle (CLOSE, READDIR, FSTAT).
    pub fn handle(out: &mut Vec<u8>, kind: u8, id: u32, handle: &[u8]) {
        let start = begin(out, kind, id);
        put_str(out, handle);
        finish(out, start);
    }

    pub fn open(out: &mut Vec<u8>, id: u32, path: &[u8], flags: u32, attrs: &Attrs) {
        let start = begin(out, FXP_OPEN, id);
        put_str(out, path);
        put_u32(out, flags);
        attrs.put(out);
        finish(out, start);
    }

    /// A path and attributes (MKDIR, SETSTAT).
    pub fn path_attrs(out: &mut Vec<u8>, kind: u8, id: u32, path: &[u8], attrs: &Attrs) {
        let start = begin(out, kind, id);
        put_str(out, path);
        attrs.put(out);
        finish(out, start);
    }

    pub fn fsetstat(out: &mut Vec<u8>, id: u32, handle: &[u8], attrs: &Attrs) {
        let start = begin(out, FXP_FSETSTAT, id);
        put_str(out, handle);
        attrs.put(out);
        finish(out, start);
    }

    pub fn read(out: &mut Vec<u8>, id: u32, handle: &[u8], offset: u64, len: u32) {
        let start = begin(out, FXP_READ, id);
        put_str(out, handle);
        put_u64(out, offset);
        put_u32(out, len);
        finish(out, start);
    }

    /// A WRITE's header: the packet is complete once `data_len` bytes of data
    /// follow it (sent separately, so file data is never copied into `out`).
    pub fn write_header(out: &mut Vec<u8>, id: u32, handle: &[u8], offset: u64, data_len: u32) {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        out.push(FXP_WRITE);
        put_u32(out, id);
        put_str(out, handle);
        put_u64(out, offset);
        put_u32(out, data_len);
        let len = u32::try_from(out.len() - start - 4).unwrap_or(u32::MAX).saturating_add(data_len);
        out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    }

    /// An EXTENDED request with no arguments beyond its name (`limits@openssh.com`).
    pub fn extended(out: &mut Vec<u8>, id: u32, name: &[u8]) {
        let start = begin(out, FXP_EXTENDED, id);
        put_str(out, name);
        finish(out, start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_reply_parses_and_reports_its_length() {
        let mut out = Vec::new();
        let start = begin(&mut out, FXP_STATUS, 7);
        put_u32(&mut out, FX_PERMISSION_DENIED);
        put_str(&mut out, b"Permission denied");
        put_str(&mut out, b"");
        finish(&mut out, start);
        out.extend_from_slice(b"next");
        let (reply, used) = Reply::parse(&out).expect("well formed").expect("whole");
        assert_eq!(reply, Reply::Status { id: 7, code: FX_PERMISSION_DENIED, message: b"Permission denied" });
        assert_eq!(&out[used..], b"next");
    }

    #[test]
    fn a_partial_reply_asks_for_more_at_every_cut() {
        let mut out = Vec::new();
        let start = begin(&mut out, FXP_HANDLE, 1);
        put_str(&mut out, b"h0");
        finish(&mut out, start);
        for cut in 0..out.len() {
            assert_eq!(Reply::parse(&out[..cut]), Ok(None), "cut at {cut}");
        }
        assert!(matches!(Reply::parse(&out), Ok(Some((Reply::Handle { id: 1, handle: b"h0" }, _)))));
    }

    #[test]
    fn hostile_lengths_and_types_are_malformed() {
        // Longer than any server may send, its length field included.
        assert_eq!(Reply::parse(&[0, 0x04, 0, 1, FXP_STATUS]), Err(Malformed));
        assert_eq!(Reply::parse(&[0, 0x03, 0xff, 0xfd, FXP_STATUS]), Err(Malformed));
        assert_eq!(Reply::parse(&[0, 0, 0, 0]), Err(Malformed));
        // A request type where a reply belongs.
        assert_eq!(Reply::parse(&[0, 0, 0, 5, FXP_OPEN, 0, 0, 0, 1]), Err(Malformed));
        // A string that claims more than the packet holds.
        assert_eq!(Reply::parse(&[0, 0, 0, 9, FXP_HANDLE, 0, 0, 0, 1, 0, 0, 0, 9]), Err(Malformed));
        // A NAME that claims four billion entries.
        assert_eq!(Reply::parse(&[0, 0, 0, 9, FXP_NAME, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]), Err(Malformed));
    }

    #[test]
    fn attributes_round_trip_and_name_the_file_type() {
        let attrs =
            Attrs { size: Some(5), owner: Some((1, 2)), permissions: Some(0o040755), times: Some((3, 4)) };
        let mut out = Vec::new();
        attrs.put(&mut out);
        assert_eq!(Attrs::read(&mut Reader::new(&out)), Ok(attrs));
        assert!(attrs.is_dir() && !attrs.is_regular());
        let only_mode = Attrs { permissions: Some(0o100644), ..Attrs::default() };
        out.clear();
        only_mode.put(&mut out);
        assert_eq!(out, [0, 0, 0, 4, 0, 0, 0x81, 0xa4]);
        assert!(only_mode.is_regular());
    }

    #[test]
    fn a_write_header_counts_the_data_that_follows() {
        let mut out = Vec::new();
        request::write_header(&mut out, 9, b"h", 1 << 32, 3);
        out.extend_from_slice(b"abc");
        let len = u32::from_be_bytes([out[0], out[1], out[2], out[3]]) as usize;
        assert_eq!(len + 4, out.len());
        assert_eq!(out[4], FXP_WRITE);
    }

    proptest::proptest! {
        /// Whatever a server sends: a reply, `None` (more needed) or `Malformed`,
        /// and a reply never claims more bytes than it was given.
        #[test]
        fn any_bytes_parse_without_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
                                         kind in proptest::sample::select(vec![FXP_VERSION, FXP_STATUS, FXP_HANDLE,
                                             FXP_DATA, FXP_NAME, FXP_ATTRS, FXP_EXTENDED_REPLY, 0, 255])) {
            // Half the cases framed: a plausible length and type, then noise.
            let mut framed = u32::try_from(bytes.len() + 1).unwrap_or(0).to_be_bytes().to_vec();
            framed.push(kind);
            framed.extend_from_slice(&bytes);
            for input in [&bytes, &framed] {
                if let Ok(Some((_, used))) = Reply::parse(input) {
                    proptest::prop_assert!(used <= input.len());
                }
            }
        }
    }
}
