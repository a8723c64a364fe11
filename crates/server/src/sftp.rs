//! The SFTP subsystem: protocol version 3 (draft-ietf-secsh-filexfer-02) as OpenSSH's
//! `sftp-server` speaks it, confined to one root directory.
//!
//! Owns one session's request loop, its open handles, and the mapping from client
//! paths to the root. The root is a virtual `/`: every client path is normalised
//! lexically (`.`, `..`, repeated slashes; `..` at `/` stays at `/`, as after a chroot)
//! into a path relative to the root, and every filesystem access then goes through the
//! session's `cap_std::fs::Dir`, so the kernel (`openat2(RESOLVE_BENEATH)`) refuses
//! symlinks and `..` that would leave it. This module must never touch a client-named
//! path through `std::fs` or as a host path, never panic on anything a client sends,
//! and never allocate more than one maximum-size packet because of a peer length.
//!
//! The wire format is hand-encoded rather than taken from `russh_sftp::protocol`:
//! those types hold paths as `String` (a Unix name that is not UTF-8 could not even be
//! decoded, while OpenSSH serves any bytes), decode each WRITE into a fresh `Vec` and
//! encode each READ reply into another. SFTP v3 framing is a few big-endian integers
//! and length-prefixed strings; by hand, WRITE data goes straight from the receive
//! buffer to `pwrite` and READ data from `pread` into the send buffer, both buffers
//! reused for the whole session, and every decode error is ours to answer. The tests
//! drive the server with russh-sftp's own client, by hand, and with OpenSSH's `sftp`
//! and `scp` where they are installed.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{FileExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf as _, BytesMut};
use cap_fs_ext::{DirExt as _, SystemTimeSpec};
use cap_std::fs::{
    Dir, DirBuilder, DirBuilderExt as _, MetadataExt as _, OpenOptions, OpenOptionsExt as _, Permissions,
    PermissionsExt as _,
};
use rscp_engine::fs::errno_text;
use rscp_proto::sftp::*;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tracing::{debug, info, trace, warn};

/// How the subsystem serves its root.
#[derive(Debug, Clone, Copy, Default)]
pub struct SftpOptions {
    /// Refuse every request that would modify anything (PERMISSION_DENIED).
    pub read_only: bool,
}

/// Serves one SFTP session over `stream` until the client closes it (Ok) or sends
/// something that ends the session (Err, already logged). All paths resolve inside `root`.
///
/// File calls are synchronous: the caller runs this on a blocking-pool thread.
pub async fn serve<S>(mut stream: S, root: Arc<Dir>, options: SftpOptions) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut session = Session::new(root, options);
    let result = session.run(&mut stream).await;
    session.close_all();
    match &result {
        Ok(()) => debug!("sftp: session closed by the client"),
        Err(e) => warn!("sftp: session ended: {e}"),
    }
    result
}

// ------------------------------------------------------------------- limits

/// Longest READ answered; longer ones get fewer bytes (OpenSSH's SFTP_MAX_READ_LENGTH).
const MAX_READ: u32 = 255 * 1024;
/// Longest WRITE a client should send (advertised only; a packet limit enforces it).
const MAX_WRITE: u64 = (MAX_PACKET - 1024) as u64;
const MAX_HANDLES: usize = 256;
/// Entries per READDIR reply, as OpenSSH sends them.
const READDIR_BATCH: usize = 100;
/// Applied to the mode of every file and directory created.
const UMASK: u32 = 0o022;
/// Replies are batched (the client pipelines requests) and written once this many
/// bytes are waiting or no complete request is left to answer.
const FLUSH_AT: usize = 64 * 1024;
const READ_CHUNK: usize = 64 * 1024;

// --------------------------------------------------------------- wire values

const EXT_POSIX_RENAME: &[u8] = b"posix-rename@openssh.com";
const EXT_HARDLINK: &[u8] = b"hardlink@openssh.com";
const EXT_FSYNC: &[u8] = b"fsync@openssh.com";
const EXT_LIMITS: &[u8] = b"limits@openssh.com";
/// Advertised in VERSION: only what `extended` implements.
const EXTENSIONS: [&[u8]; 4] = [EXT_POSIX_RENAME, EXT_HARDLINK, EXT_FSYNC, EXT_LIMITS];

const READ_ONLY: &str = "read-only server";

// ------------------------------------------------------------------ decoding

/// Reads a request's path, normalised under the root.
fn read_path(r: &mut Reader<'_>) -> Result<VPath, Fail> {
    Ok(VPath::parse(r.string()?))
}

impl From<Malformed> for Fail {
    fn from(_: Malformed) -> Fail {
        Fail::Malformed
    }
}

// ------------------------------------------------------------------ encoding

fn put_status(out: &mut Vec<u8>, id: u32, code: u32, message: &str) {
    let start = begin(out, FXP_STATUS, id);
    put_u32(out, code);
    put_str(out, message.as_bytes());
    put_str(out, b""); // language tag, empty as OpenSSH sends it
    finish(out, start);
}

fn put_ok(out: &mut Vec<u8>, id: u32) {
    put_status(out, id, FX_OK, "Success");
}

/// A NAME reply with one entry and no attributes (REALPATH, READLINK), whose long
/// name is the name itself, as OpenSSH sends it.
fn put_single_name(out: &mut Vec<u8>, id: u32, name: &[u8]) {
    let start = begin(out, FXP_NAME, id);
    put_u32(out, 1);
    put_str(out, name);
    put_str(out, name);
    put_u32(out, 0);
    finish(out, start);
}

/// What an ATTRS reply or a NAME entry says about a file.
#[derive(Debug, Clone, Copy)]
struct Stat {
    mode: u32,
    nlink: u64,
    uid: u32,
    gid: u32,
    size: u64,
    atime: i64,
    mtime: i64,
}

impl Stat {
    fn of(m: &cap_std::fs::Metadata) -> Stat {
        Stat {
            mode: m.mode(),
            nlink: m.nlink(),
            uid: m.uid(),
            gid: m.gid(),
            size: m.size(),
            atime: m.atime(),
            mtime: m.mtime(),
        }
    }

    fn of_std(m: &std::fs::Metadata) -> Stat {
        Stat {
            mode: m.mode(),
            nlink: m.nlink(),
            uid: m.uid(),
            gid: m.gid(),
            size: m.size(),
            atime: m.atime(),
            mtime: m.mtime(),
        }
    }

    fn put(&self, out: &mut Vec<u8>) {
        // v3 times are unsigned 32-bit seconds.
        let secs = |t: i64| u32::try_from(t.max(0)).unwrap_or(u32::MAX);
        put_u32(out, ATTR_SIZE | ATTR_UIDGID | ATTR_PERMISSIONS | ATTR_ACMODTIME);
        put_u64(out, self.size);
        put_u32(out, self.uid);
        put_u32(out, self.gid);
        put_u32(out, self.mode);
        put_u32(out, secs(self.atime));
        put_u32(out, secs(self.mtime));
    }
}

// --------------------------------------------------------------------- paths

/// A client path normalised lexically under the virtual root: components joined by
/// `/`, no leading slash, no `.` or `..`; empty for the root itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct VPath {
    rel: Vec<u8>,
}

impl VPath {
    /// Relative paths are relative to `/` (the session's only working directory), and
    /// `..` above `/` stays at `/`, as after a chroot.
    fn parse(raw: &[u8]) -> VPath {
        let mut parts: Vec<&[u8]> = Vec::new();
        for part in raw.split(|&b| b == b'/') {
            match part {
                b"" | b"." => {}
                b".." => {
                    parts.pop();
                }
                _ => parts.push(part),
            }
        }
        VPath { rel: parts.join(&b'/') }
    }

    /// The path to hand to the root `Dir`.
    fn fs(&self) -> &Path {
        if self.rel.is_empty() { Path::new(".") } else { Path::new(OsStr::from_bytes(&self.rel)) }
    }

    /// The path as the client sees it (absolute under the virtual root).
    fn absolute(&self) -> Vec<u8> {
        let mut path = Vec::with_capacity(self.rel.len() + 1);
        path.push(b'/');
        path.extend_from_slice(&self.rel);
        path
    }

    /// For logs: absolute, control characters escaped.
    fn shown(&self) -> String {
        rscp_proto::display::escape(&self.absolute())
    }

    fn parent(&self) -> VPath {
        match self.rel.iter().rposition(|&b| b == b'/') {
            Some(i) => VPath { rel: self.rel.get(..i).unwrap_or_default().to_vec() },
            None => VPath::default(),
        }
    }

    fn depth(&self) -> usize {
        if self.rel.is_empty() { 0 } else { self.rel.iter().filter(|&&b| b == b'/').count() + 1 }
    }
}

/// Whether a symlink at `link` with contents `target` would point inside the root,
/// resolved lexically from the link's directory. Absolute targets never do: they would
/// mean one thing to this server and another to everything else on the host. (cap-std
/// still confines every later access through the link; this keeps links meaningful.)
fn target_stays_inside(link: &VPath, target: &[u8]) -> bool {
    if target.first() == Some(&b'/') {
        return false;
    }
    let mut depth = link.parent().depth();
    for part in target.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => match depth.checked_sub(1) {
                Some(up) => depth = up,
                None => return false,
            },
            _ => depth += 1,
        }
    }
    true
}

// -------------------------------------------------------------------- errors

/// Why a request failed; the dispatcher turns it into a STATUS reply.
#[derive(Debug)]
enum Fail {
    Status(u32, Cow<'static, str>),
    /// The request could not be decoded (BAD_MESSAGE; the session goes on).
    Malformed,
}

impl Fail {
    fn failure(message: &'static str) -> Fail {
        Fail::Status(FX_FAILURE, Cow::Borrowed(message))
    }

    fn read_only() -> Fail {
        Fail::Status(FX_PERMISSION_DENIED, Cow::Borrowed(READ_ONLY))
    }
}

/// Errors on an open handle (no path to blame).
impl From<io::Error> for Fail {
    fn from(e: io::Error) -> Fail {
        Fail::Status(status_code(&e), errno_text(&e).into())
    }
}

/// cap-std's refusal of a path leading out of the root: PermissionDenied without an
/// errno (with openat2 it is the kernel's EXDEV, translated).
fn is_escape(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::PermissionDenied && e.raw_os_error().is_none()
}

/// Mirrors OpenSSH's errno_to_portable, for the codes a client acts on.
fn status_code(e: &io::Error) -> u32 {
    match e.raw_os_error() {
        Some(libc::ENOENT | libc::ENOTDIR) => FX_NO_SUCH_FILE,
        Some(libc::EPERM | libc::EACCES) => FX_PERMISSION_DENIED,
        Some(libc::ENOSYS | libc::EOPNOTSUPP) => FX_OP_UNSUPPORTED,
        _ => match e.kind() {
            io::ErrorKind::NotFound => FX_NO_SUCH_FILE,
            io::ErrorKind::PermissionDenied => FX_PERMISSION_DENIED,
            _ => FX_FAILURE,
        },
    }
}

/// A filesystem error about `path`, logged (a refused escape as a warning).
fn fs_fail(op: &str, path: &VPath, e: io::Error) -> Fail {
    if is_escape(&e) {
        warn!("sftp: {op} {}: refused, the path leads outside the root", path.shown());
        return Fail::Status(FX_PERMISSION_DENIED, "Permission denied: path leads outside the root".into());
    }
    debug!("sftp: {op} {}: {}", path.shown(), errno_text(&e));
    Fail::from(e)
}

fn errno_fail(errno: i32) -> Fail {
    Fail::from(io::Error::from_raw_os_error(errno))
}

// ------------------------------------------------------------------- session

/// One open handle. Handles are decimal strings of a per-session counter that never
/// repeats, so a stale handle can never name a newer file.
#[derive(Debug)]
enum Handle {
    File(OpenFile),
    Dir(OpenDir),
}

#[derive(Debug)]
struct OpenFile {
    file: std::fs::File,
    path: VPath,
    readable: bool,
    writable: bool,
    sent: u64,
    received: u64,
}

#[derive(Debug)]
struct OpenDir {
    path: VPath,
    entries: cap_std::fs::ReadDir,
    /// `.` and `..` go first (cap-std leaves them out; OpenSSH sends them).
    dots_sent: bool,
    done: bool,
}

#[derive(Debug)]
struct Session {
    root: Arc<Dir>,
    read_only: bool,
    initialized: bool,
    handles: HashMap<u64, Handle>,
    next_handle: u64,
    /// User and group names for long names, read on the first READDIR.
    names: Option<Names>,
}

impl Session {
    fn new(root: Arc<Dir>, options: SftpOptions) -> Session {
        Session {
            root,
            read_only: options.read_only,
            initialized: false,
            handles: HashMap::new(),
            next_handle: 0,
            names: None,
        }
    }

    /// The request loop: answers every complete packet buffered, writes the replies
    /// out before waiting for more input (so a pipelining client never waits on a
    /// reply we hold back), and stops at the client's EOF.
    async fn run<S>(&mut self, stream: &mut S) -> io::Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut input = BytesMut::with_capacity(READ_CHUNK);
        let mut out: Vec<u8> = Vec::with_capacity(FLUSH_AT + MAX_READ as usize + 64);
        loop {
            while let Some(header) = input.get(..4) {
                let mut len = [0; 4];
                len.copy_from_slice(header);
                let len = u32::from_be_bytes(len) as usize;
                if len > MAX_PACKET {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("client sent a {len}-byte packet (the limit is {MAX_PACKET})"),
                    ));
                }
                let Some(packet) = input.get(4..4 + len) else {
                    // Room for the rest of this packet; bounded by MAX_PACKET.
                    input.reserve(4 + len - input.len());
                    break;
                };
                self.packet(packet, &mut out)?;
                input.advance(4 + len);
                if out.len() >= FLUSH_AT {
                    stream.write_all(&out).await?;
                    out.clear();
                }
            }
            if !out.is_empty() {
                stream.write_all(&out).await?;
                stream.flush().await?;
                out.clear();
            }
            if input.capacity() - input.len() < READ_CHUNK / 4 {
                input.reserve(READ_CHUNK);
            }
            if stream.read_buf(&mut input).await? == 0 {
                if !input.is_empty() {
                    debug!("sftp: client closed the session inside a packet");
                }
                return Ok(());
            }
        }
    }

    /// Answers one packet into `out`. Only a broken handshake ends the session here.
    fn packet(&mut self, packet: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        let mut r = Reader::new(packet);
        let Ok(kind) = r.u8() else {
            debug!("sftp: empty packet");
            put_status(out, 0, FX_BAD_MESSAGE, "empty packet");
            return Ok(());
        };
        // Like OpenSSH, the first packet must be INIT and only the first.
        if kind == FXP_INIT {
            return self.init(&mut r, out);
        }
        if !self.initialized {
            return Err(protocol_error(format!("request type {kind} before init")));
        }
        let Ok(id) = r.u32() else {
            debug!("sftp: request type {kind} without an id");
            put_status(out, 0, FX_BAD_MESSAGE, "malformed request");
            return Ok(());
        };
        let result = match kind {
            FXP_OPEN => self.open(id, &mut r, out),
            FXP_CLOSE => self.close(id, &mut r, out),
            FXP_READ => self.read(id, &mut r, out),
            FXP_WRITE => self.write(id, &mut r, out),
            FXP_LSTAT => self.stat(id, &mut r, out, false),
            FXP_STAT => self.stat(id, &mut r, out, true),
            FXP_FSTAT => self.fstat(id, &mut r, out),
            FXP_SETSTAT => self.setstat(id, &mut r, out),
            FXP_FSETSTAT => self.fsetstat(id, &mut r, out),
            FXP_OPENDIR => self.opendir(id, &mut r, out),
            FXP_READDIR => self.readdir(id, &mut r, out),
            FXP_REMOVE => self.remove(id, &mut r, out),
            FXP_MKDIR => self.mkdir(id, &mut r, out),
            FXP_RMDIR => self.rmdir(id, &mut r, out),
            FXP_REALPATH => self.realpath(id, &mut r, out),
            FXP_RENAME => self.rename(id, &mut r, out),
            FXP_READLINK => self.readlink(id, &mut r, out),
            FXP_SYMLINK => self.symlink(id, &mut r, out),
            FXP_EXTENDED => self.extended(id, &mut r, out),
            _ => {
                debug!("sftp: unsupported request type {kind}");
                Err(Fail::Status(FX_OP_UNSUPPORTED, "Operation unsupported".into()))
            }
        };
        match result {
            Ok(()) => {}
            Err(Fail::Status(code, message)) => put_status(out, id, code, &message),
            Err(Fail::Malformed) => {
                debug!("sftp: malformed request type {kind} (id {id})");
                put_status(out, id, FX_BAD_MESSAGE, "malformed request");
            }
        }
        Ok(())
    }

    /// Closes every handle (the client went away), logging the transfers.
    fn close_all(&mut self) {
        for (_, handle) in self.handles.drain() {
            log_closed(handle);
        }
    }

    fn init(&mut self, r: &mut Reader<'_>, out: &mut Vec<u8>) -> io::Result<()> {
        if self.initialized {
            return Err(protocol_error("second init".into()));
        }
        let version = r.u32().map_err(|_| protocol_error("malformed init".into()))?;
        // Like OpenSSH: answer version 3 whatever the client asks for.
        debug!("sftp: client version {version}");
        self.initialized = true;
        let start = begin(out, FXP_VERSION, 3);
        for name in EXTENSIONS {
            put_str(out, name);
            put_str(out, b"1");
        }
        finish(out, start);
        Ok(())
    }

    fn writable(&self) -> Result<(), Fail> {
        if self.read_only {
            debug!("sftp: refused, {READ_ONLY}");
            return Err(Fail::read_only());
        }
        Ok(())
    }

    // ------------------------------------------------------------ handles

    fn add_handle(&mut self, handle: Handle, id: u32, out: &mut Vec<u8>) {
        let n = self.next_handle;
        self.next_handle = n.wrapping_add(1);
        self.handles.insert(n, handle);
        let start = begin(out, FXP_HANDLE, id);
        put_str(out, n.to_string().as_bytes());
        finish(out, start);
    }

    fn room_for_handle(&self) -> Result<(), Fail> {
        if self.handles.len() >= MAX_HANDLES {
            debug!("sftp: too many open handles");
            return Err(Fail::failure("too many open handles"));
        }
        Ok(())
    }

    fn handle(&mut self, raw: &[u8]) -> Result<&mut Handle, Fail> {
        handle_number(raw).and_then(|n| self.handles.get_mut(&n)).ok_or(Fail::failure("invalid handle"))
    }

    fn file(&mut self, raw: &[u8]) -> Result<&mut OpenFile, Fail> {
        match self.handle(raw)? {
            Handle::File(file) => Ok(file),
            Handle::Dir(_) => Err(Fail::failure("not a file handle")),
        }
    }

    // ------------------------------------------------------------ files

    fn open(&mut self, id: u32, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<(), Fail> {
        let path = read_path(r)?;
        let pflags = r.u32()?;
        let attrs = Attrs::read(r)?;
        debug!("sftp: open {} flags {pflags:#x}", path.shown());
        let write = pflags & FXF_WRITE != 0;
        let append = pflags & FXF_APPEND != 0;
        // OpenSSH's test: anything but O_RDONLY without O_CREAT/O_TRUNC modifies.
        if write || append || pflags & (FXF_CREAT | FXF_TRUNC) != 0 {
            self.writable()?;
        }
        self.room_for_handle()?;
        let readable = pflags & FXF_READ != 0 || !(write || append);
        let mut options = OpenOptions::new();
        options
            .read(readable)
            .write(write)
            .append(append)
            .truncate(pflags & FXF_TRUNC != 0)
            .mode(attrs.permissions.unwrap_or(0o666) & 0o777 & !UMASK)
            // A FIFO must not hang the session in open(); non-regular files are
            // refused below. (No effect on regular files.)
            .custom_flags(libc::O_NONBLOCK);
        if pflags & FXF_CREAT != 0 {
            if pflags & FXF_EXCL != 0 {
                options.create_new(true);
            } else {
                options.create(true);
            }
        }
        let file = self.root.open_with(path.fs(), &options).map_err(|e| fs_fail("open", &path, e))?;
        let file = file.into_std();
        let meta = file.metadata().map_err(|e| fs_fail("open", &path, e))?;
        if meta.is_dir() {
            return Err(errno_fail(libc::EISDIR));
        }
        if !meta.is_file() {
            debug!("sftp: open {}: not a regular file", path.shown());
            return Err(Fail::failure("not a regular file"));
        }
        let writable = write || append;
        let file = OpenFile { file, path, readable, writable, sent: 0, received: 0 };
        self.add_handle(Handle::File(file), id, out);
        Ok(())
    }

    fn close(&mut self, id: u32, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<(), Fail> {
        let raw = r.string()?;
        let handle = handle_number(raw).and_then(|n| self.handles.remove(&n));
        let handle = handle.ok_or(Fail::failure("invalid handle"))?;
        log_closed(handle);
        put_ok(out, id);
        Ok(())
    }

    /// Answers with at most MAX_READ bytes, read straight into the reply.
    fn read(&mut self, id: u32, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<(), Fail> {
        let handle = r.string()?;
        let offset = r.u64()?;
        let len = r.u32()?.min(MAX_READ) as usize;
        let file = self.file(handle)?;
        trace!("sftp: read {} at {offset} ({len} bytes)", file.path.shown());
        let start = begin(out, FXP_DATA, id);
        put_u32(out, 0);
        let data = out.len();
        out.resize(data + len, 0);
        let n = loop {
            let Some(buf) = out.get_mut(data..) else { break Ok(0) };
            match file.file.read_at(buf, offset) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                result => break result,
            }
        };
        let n = match n {
            Ok(n) => n,
            Err(e) => {
                out.truncate(start);
                return Err(e.into());
            }
        };
        // Like OpenSSH: a zero-length READ gets empty DATA, end of file gets EOF.
        if n == 0 && len > 0 {
            out.truncate(start);
            return Err(Fail::Status(FX_EOF, "End of file".into()));
        }
        out.truncate(data + n);
        if let Some(field) = out.get_mut(data - 4..data) {
            field.copy_from_slice(&(n as u32).to_be_bytes());
        }
        finish(out, start);
        file.sent += n as u64;
        Ok(())
    }

    fn write(&mut self, id: u32, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<(), Fail> {
        let handle = r.string()?;
        let offset = r.u64()?;
        let data = r.string()?;
        let file = self.file(handle)?;
        trace!("sftp: write {} at {offset} ({} bytes)", file.path.shown(), data.len());
        if !file.writable {
            return Err(errno_fail(libc::EBADF));
        }
        // pwrite; with APPEND, Linux appends whatever the offset (OpenSSH seeks, same result).
        file.file.write_all_at(data, offset)?;
        file.received += data.len() as u64;
        put_ok(out, id);
        Ok(())
    }

    fn stat(&mut self, id: u32, r: &mut Reader<'_>, out: &mut Vec<u8>, follow: bool) -> Result<(), Fail> {
        let path = read_path(r)?;
        let (op, meta) = if follow {
            ("stat", self.root.metadata(path.fs()))
        } else {
            ("lstat", self.root.symlink_metadata(path.fs()))
        };
        debug!("sftp: {op} {}", path.shown());
        let meta = meta.map_err(|e| fs_fail(op, &path, e))?;
        put_attrs(out, id, &Stat::of(&meta));
        Ok(())
    }

    fn fstat(&mut self, id: u32, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<(), Fail> {
        let file = self.file(r.string()?)?;
        debug!("sftp: fstat {}", file.path.shown());
        let meta = file.file.metadata()?;
        put_attrs(out, id, &Stat::of_std(&meta));
        Ok(())
    }

    /// In OpenSSH's order: size, permissions, times. Owners are never changed, and
    /// setuid/setgid bits never set (the sticky bit may be).
    fn setstat(&mut self, id: u32, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<(), Fail> {
        let path = read_path(r)?;
        let attrs = Attrs::read(r)?;
        debug!("sftp: setstat {}", path.shown());
        self.writable()?;
        let fail = |e: io::Error| fs_fail("setstat", &path, e);
        if let Some(size) = attrs.size {
            let mut options = OpenOptions::new();
            options.write(true).custom_flags(libc::O_NONBLOCK);
            let file = self.root.open_with(path.fs(), &options).map_err(fail)?;
            file.set_len(size).map_err(fail)?;
        }
        if let Some(mode) = attrs.permissions {
            let permissions = Permissions::from_mode(settable_mode(mode));
            self.root.set_permissions(path.fs(), permissions).map_err(fail)?;
        }
        if let Some((atime, mtime)) = attrs.times {
            let spec = |t| SystemTimeSpec::Absolute(cap_std::time::SystemTime::from_std(system_time(t)));
            self.root.set_times(path.fs(), Some(spec(atime)), Some(spec(mtime))).map_err(fail)?;
        }
        put_ok(out, id);
        Ok(())
    }

    fn fsetstat(&mut self, id: u32, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<(), Fail> {
        let handle = r.string()?;
        let attrs = Attrs::read(r)?;
        self.writable()?;
        let file = self.file(handle)?;
        debug!("sftp: fsetstat {}", file.path.shown());
        if let Some(size) = attrs.size {
            file.file.set_len(size)?;
        }
        if let Some(mode) = attrs.permissions {
            file.file.set_permissions(std::fs::Permissions::from_mode(settable_mode(mode)))?;
        }
        if let Some((atime, mtime)) = attrs.times {
            let times =
                std::fs::FileTimes::new().set_accessed(system_time(atime)).set_modified(system_time(mtime));
            file.file.set_times(times)?;
        }
        put_ok(out, id);
        Ok(())
    }

    // ------------------------------------------------------------ directories

    fn opendir(&mut self, id: u32, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<(), Fail> {
        let path = read_path(r)?;
        debug!("sftp: opendir {}", path.shown());
        self.room_for_handle()?;
        let entries = self.root.read_dir(path.fs()).map_err(|e| fs_fail("opendir", &path, e))?;
        let dir = OpenDir { path, entries, dots_sent: false, done: false };
        self.add_handle(Handle::Dir(dir), id, out);
        Ok(())
    }

    /// Up to READDIR_BATCH entries with `ls -l`-style long names, then EOF.
    fn readdir(&mut self, id: u32, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<(), Fail> {
        let raw = r.string()?;
        let root = Arc::clone(&self.root);
        let Handle::Dir(dir) = self.handle(raw)? else {
            return Err(Fail::failure("not a directory handle"));
        };
        debug!("sftp: readdir {}", dir.path.shown());
        let mut batch: Vec<(Vec<u8>, Stat)> = Vec::new();
        if !dir.dots_sent {
            dir.dots_sent = true;
            for (name, path) in [(&b"."[..], dir.path.clone()), (&b".."[..], dir.path.parent())] {
                if let Ok(meta) = root.metadata(path.fs()) {
                    batch.push((name.to_vec(), Stat::of(&meta)));
                }
            }
        }
        while !dir.done && batch.len() < READDIR_BATCH {
            match dir.entries.next() {
                None => dir.done = true,
                Some(Ok(entry)) => {
                    // An entry removed meanwhile is skipped, as OpenSSH does.
                    if let Ok(meta) = entry.metadata() {
                        batch.push((entry.file_name().as_bytes().to_vec(), Stat::of(&meta)));
                    }
                }
                Some(Err(e)) if batch.is_empty() => return Err(e.into()),
                Some(Err(_)) => break,
            }
        }
        if batch.is_empty() {
            return Err(Fail::Status(FX_EOF, "End of file".into()));
        }
        let names = self.names.get_or_insert_with(Names::load);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let start = begin(out, FXP_NAME, id);
        put_u32(out, batch.len() as u32);
        for (name, stat) in &batch {
            put_str(out, name);
            put_str(out, &longname(name, stat, now, names));
            stat.put(out);
        }
        finish(out, start);
        Ok(())
    }

    fn mkdir(&mut self, id: u32, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<(), Fail> {
        let path = read_path(r)?;
        let attrs = Attrs::read(r)?;
        self.writable()?;
        let mut builder = DirBuilder::new();
        builder.mode(attrs.permissions.unwrap_or(0o777) & 0o777 & !UMASK);
        self.root.create_dir_with(path.fs(), &builder).map_err(|e| fs_fail("mkdir", &path, e))?;
        info!("made directory {}", path.shown());
        put_ok(out, id);
        Ok(())
    }

    fn rmdir(&mut self, id: u32, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<(), Fail> {
        let path = read_path(r)?;
        self.writable()?;
        self.root.remove_dir(path.fs()).map_err(|e| fs_fail("rmdir", &path, e))?;
        info!("removed directory {}", path.shown());
        put_ok(out, id);
        Ok(())
    }

    fn remove(&mut self, id: u32, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<(), Fail> {
        let path = read_path(r)?;
        self.writable()?;
        self.root.remove_file(path.fs()).map_err(|e| fs_fail("remove", &path, e))?;
        info!("removed {}", path.shown());
        put_ok(out, id);
        Ok(())
    }

    // ------------------------------------------------------------ names

    /// Lexical: the virtual root has no symlinks to resolve that a client could use.
    fn realpath(&mut self, id: u32, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<(), Fail> {
        let path = read_path(r)?;
        debug!("sftp: realpath {}", path.shown());
        put_single_name(out, id, &path.absolute());
        Ok(())
    }

    fn readlink(&mut self, id: u32, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<(), Fail> {
        let path = read_path(r)?;
        debug!("sftp: readlink {}", path.shown());
        // The link's text as it is (following it is what cap-std guards).
        let target = self.root.read_link_contents(path.fs()).map_err(|e| fs_fail("readlink", &path, e))?;
        put_single_name(out, id, target.as_os_str().as_bytes());
        Ok(())
    }

    /// OpenSSH's client sends the target first, then the link path (the draft has them
    /// the other way round; OpenSSH's sftp-server reads them as its client sends them,
    /// and so do we).
    fn symlink(&mut self, id: u32, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<(), Fail> {
        let target = r.string()?;
        let link = read_path(r)?;
        self.writable()?;
        let shown_target = rscp_proto::display::escape(target);
        if !target_stays_inside(&link, target) {
            warn!(
                "sftp: symlink {} -> {shown_target}: refused, the target leads outside the root",
                link.shown()
            );
            return Err(Fail::Status(FX_PERMISSION_DENIED, "symlink target leads outside the root".into()));
        }
        let target = Path::new(OsStr::from_bytes(target));
        self.root.symlink(target, link.fs()).map_err(|e| fs_fail("symlink", &link, e))?;
        info!("made symlink {} -> {shown_target}", link.shown());
        put_ok(out, id);
        Ok(())
    }

    /// SSH2_FXP_RENAME refuses an existing target. Mirrors OpenSSH's sftp-server: a
    /// regular file moves by link()+unlink(), which refuses atomically; anything else
    /// (or a filesystem without hard links) is renamed only if nothing is there.
    fn rename(&mut self, id: u32, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<(), Fail> {
        let from = read_path(r)?;
        let to = read_path(r)?;
        self.writable()?;
        let meta = self.root.symlink_metadata(from.fs()).map_err(|e| fs_fail("rename", &from, e))?;
        let linked = if meta.is_file() {
            match self.root.hard_link(from.fs(), &self.root, to.fs()) {
                Ok(()) => true,
                Err(e) if link_unsupported(&e) => false,
                Err(e) => return Err(fs_fail("rename", &to, e)),
            }
        } else {
            false
        };
        if linked {
            if let Err(e) = self.root.remove_file(from.fs()) {
                // Leave things as they were.
                let _ = self.root.remove_file(to.fs());
                return Err(fs_fail("rename", &from, e));
            }
        } else {
            match self.root.symlink_metadata(to.fs()) {
                Ok(_) => return Err(errno_fail(libc::EEXIST)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(fs_fail("rename", &to, e)),
            }
            self.root.rename(from.fs(), &self.root, to.fs()).map_err(|e| fs_fail("rename", &from, e))?;
        }
        info!("renamed {} to {}", from.shown(), to.shown());
        put_ok(out, id);
        Ok(())
    }

    // ------------------------------------------------------------ extensions

    fn extended(&mut self, id: u32, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<(), Fail> {
        let request = r.string()?;
        match request {
            EXT_POSIX_RENAME => {
                let from = read_path(r)?;
                let to = read_path(r)?;
                self.writable()?;
                self.root.rename(from.fs(), &self.root, to.fs()).map_err(|e| fs_fail("rename", &from, e))?;
                info!("renamed {} to {} (replacing)", from.shown(), to.shown());
                put_ok(out, id);
            }
            EXT_HARDLINK => {
                let from = read_path(r)?;
                let to = read_path(r)?;
                self.writable()?;
                self.root.hard_link(from.fs(), &self.root, to.fs()).map_err(|e| fs_fail("link", &to, e))?;
                info!("made hard link {} to {}", to.shown(), from.shown());
                put_ok(out, id);
            }
            EXT_FSYNC => {
                let file = self.file(r.string()?)?;
                debug!("sftp: fsync {}", file.path.shown());
                file.file.sync_all()?;
                put_ok(out, id);
            }
            EXT_LIMITS => {
                debug!("sftp: limits");
                let start = begin(out, FXP_EXTENDED_REPLY, id);
                put_u64(out, MAX_PACKET as u64);
                put_u64(out, u64::from(MAX_READ));
                put_u64(out, MAX_WRITE);
                put_u64(out, MAX_HANDLES as u64);
                finish(out, start);
            }
            _ => {
                debug!("sftp: unsupported extension {}", rscp_proto::display::escape(request));
                return Err(Fail::Status(FX_OP_UNSUPPORTED, "Operation unsupported".into()));
            }
        }
        Ok(())
    }
}

fn handle_number(raw: &[u8]) -> Option<u64> {
    std::str::from_utf8(raw).ok()?.parse().ok()
}

fn protocol_error(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

fn put_attrs(out: &mut Vec<u8>, id: u32, stat: &Stat) {
    let start = begin(out, FXP_ATTRS, id);
    stat.put(out);
    finish(out, start);
}

/// link() errors after which OpenSSH falls back to rename() (EPERM: Linux's
/// protected_hardlinks). Not cap-std's escape refusal, which has no errno.
fn link_unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::ENOSYS | libc::EXDEV | libc::EPERM))
}

/// Permission bits a client may set: never setuid or setgid.
fn settable_mode(mode: u32) -> u32 {
    mode & 0o7777 & !(0o4000 | 0o2000)
}

fn system_time(secs: u32) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::from(secs))
}

/// The transfer log line for a closed handle.
fn log_closed(handle: Handle) {
    match handle {
        Handle::File(f) => {
            if f.writable {
                info!("received {} ({} bytes)", f.path.shown(), f.received);
            }
            if f.readable && (!f.writable || f.sent > 0) {
                info!("sent {} ({} bytes)", f.path.shown(), f.sent);
            }
        }
        Handle::Dir(d) => debug!("sftp: closed directory {}", d.path.shown()),
    }
}

// ---------------------------------------------------------------- long names

/// User and group names by id, from /etc/passwd and /etc/group (fixed host files,
/// never a client path). NSS would need unsafe FFI, which this workspace denies;
/// ids without a local name print as numbers, as OpenSSH's do.
#[derive(Debug, Default)]
struct Names {
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
}

impl Names {
    fn load() -> Names {
        let read = |file| std::fs::read_to_string(file).map(|text| id_names(&text)).unwrap_or_default();
        Names { users: read("/etc/passwd"), groups: read("/etc/group") }
    }
}

/// `name:password:id:...` lines; the first name for an id wins.
fn id_names(text: &str) -> HashMap<u32, String> {
    let mut names = HashMap::new();
    for line in text.lines() {
        let mut fields = line.split(':');
        if let (Some(name), Some(_), Some(Ok(id))) =
            (fields.next(), fields.next(), fields.next().map(str::parse))
        {
            names.entry(id).or_insert_with(|| name.to_string());
        }
    }
    names
}

/// OpenSSH's ls_file(): `mode nlink user group size date name`, e.g.
/// `-rw-r--r--    1 alice    staff        1234 Jan  2 15:04 notes.txt`. Dates are UTC
/// (local time would need the C library's time zone code).
fn longname(name: &[u8], st: &Stat, now: i64, names: &Names) -> Vec<u8> {
    let user = names.users.get(&st.uid).cloned().unwrap_or_else(|| st.uid.to_string());
    let group = names.groups.get(&st.gid).cloned().unwrap_or_else(|| st.gid.to_string());
    // BSD strmode() leaves a space after the ten mode characters, hence two here.
    let line = format!(
        "{}  {:>3} {user:<8} {group:<8} {:>8} {} ",
        mode_string(st.mode),
        st.nlink,
        st.size,
        ls_time(st.mtime, now),
    );
    let mut line = line.into_bytes();
    line.extend_from_slice(name);
    line
}

/// `ls -l`'s ten mode characters.
fn mode_string(mode: u32) -> String {
    let kind = match mode & libc::S_IFMT {
        libc::S_IFDIR => 'd',
        libc::S_IFLNK => 'l',
        libc::S_IFCHR => 'c',
        libc::S_IFBLK => 'b',
        libc::S_IFIFO => 'p',
        libc::S_IFSOCK => 's',
        libc::S_IFREG => '-',
        _ => '?',
    };
    let bit = |mask: u32, c: char| if mode & mask != 0 { c } else { '-' };
    // The execute position shows setuid/setgid/sticky: lower case if also executable.
    let exec = |x: u32, special: u32, set: char| match (mode & x != 0, mode & special != 0) {
        (true, true) => set,
        (false, true) => set.to_ascii_uppercase(),
        (true, false) => 'x',
        (false, false) => '-',
    };
    [
        kind,
        bit(0o400, 'r'),
        bit(0o200, 'w'),
        exec(0o100, 0o4000, 's'),
        bit(0o040, 'r'),
        bit(0o020, 'w'),
        exec(0o010, 0o2000, 's'),
        bit(0o004, 'r'),
        bit(0o002, 'w'),
        exec(0o001, 0o1000, 't'),
    ]
    .iter()
    .collect()
}

/// `%b %e %H:%M` within the last six months, `%b %e  %Y` otherwise (OpenSSH's rule).
fn ls_time(mtime: i64, now: i64) -> String {
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let (year, month, day, hour, minute) = civil(mtime);
    let month = MONTHS.get(month.wrapping_sub(1) as usize).copied().unwrap_or("???");
    if now.saturating_sub(365 * 24 * 60 * 60 / 2) < mtime && now >= mtime {
        format!("{month} {day:>2} {hour:02}:{minute:02}")
    } else {
        format!("{month} {day:>2}  {year}")
    }
}

/// Seconds since the epoch as (year, month 1-12, day, hour, minute), UTC; Howard
/// Hinnant's civil_from_days.
fn civil(t: i64) -> (i64, i64, i64, i64, i64) {
    let secs = t.rem_euclid(86_400);
    let z = t.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, secs / 3600, secs % 3600 / 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::PathBuf;

    use russh_sftp::client::SftpSession;
    use russh_sftp::client::error::Error as SftpError;
    use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};
    use tokio::io::DuplexStream;
    use tokio::task::JoinHandle;

    const TIMEOUT: Duration = Duration::from_secs(20);

    /// A root directory inside an outer one, so a test can check that nothing ever
    /// appears beside the root.
    struct Fixture {
        outer: tempfile::TempDir,
        root: Arc<Dir>,
    }

    impl Fixture {
        fn new() -> Fixture {
            let outer = tempfile::tempdir().expect("tempdir");
            std::fs::create_dir(outer.path().join("root")).expect("mkdir root");
            std::fs::write(outer.path().join("secret"), "secret").expect("write secret");
            let root = Dir::open_ambient_dir(outer.path().join("root"), cap_std::ambient_authority())
                .expect("open root");
            Fixture { outer, root: Arc::new(root) }
        }

        /// A path inside the root, on the host.
        fn path(&self, rel: &str) -> PathBuf {
            self.outer.path().join("root").join(rel)
        }

        /// Panics unless the outer directory still holds only `root` and the untouched `secret`.
        fn assert_outside_untouched(&self) {
            let names: BTreeSet<String> = std::fs::read_dir(self.outer.path())
                .expect("list outer")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            assert_eq!(names, BTreeSet::from(["root".to_string(), "secret".to_string()]));
            let secret = self.outer.path().join("secret");
            assert_eq!(std::fs::read(&secret).expect("read secret"), b"secret");
        }
    }

    async fn connect(fx: &Fixture, options: SftpOptions) -> (SftpSession, JoinHandle<io::Result<()>>) {
        let (client, server) = tokio::io::duplex(1 << 20);
        let task = tokio::spawn(serve(server, Arc::clone(&fx.root), options));
        let sftp = tokio::time::timeout(TIMEOUT, SftpSession::new(client))
            .await
            .expect("init in time")
            .expect("init");
        (sftp, task)
    }

    /// The client goes away: the server must notice and end cleanly.
    async fn hang_up(sftp: SftpSession, server: JoinHandle<io::Result<()>>) {
        sftp.close().await.expect("close session");
        drop(sftp);
        let result = tokio::time::timeout(TIMEOUT, server).await.expect("server ends").expect("join");
        result.expect("server ends cleanly");
    }

    fn code<T>(result: Result<T, SftpError>) -> StatusCode {
        match result {
            Err(SftpError::Status(status)) => status.status_code,
            Err(other) => panic!("expected an error status, got {other:?}"),
            Ok(_) => panic!("expected an error status, got success"),
        }
    }

    fn read_only_refusal<T>(result: Result<T, SftpError>) {
        match result {
            Err(SftpError::Status(status)) => {
                assert_eq!(status.status_code, StatusCode::PermissionDenied);
                assert_eq!(status.error_message, READ_ONLY);
            }
            Err(other) => panic!("expected a read-only refusal, got {other:?}"),
            Ok(_) => panic!("expected a read-only refusal, got success"),
        }
    }

    /// Creates (or truncates) `path` with `data`; russh-sftp's `write` never creates.
    async fn put(sftp: &SftpSession, path: &str, data: &[u8]) -> Result<(), SftpError> {
        let mut file = sftp.create(path).await?;
        file.write_all(data).await?;
        file.shutdown().await?;
        Ok(())
    }

    fn umask() -> u32 {
        rscp_engine::fs::process_umask()
    }

    fn mode_of(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).expect("stat").mode() & 0o7777
    }

    /// Every path under `dir` with its mode and, for files, contents.
    fn snapshot(dir: &Path) -> Vec<(PathBuf, u32, Vec<u8>)> {
        let mut all = Vec::new();
        let mut entries: Vec<_> =
            std::fs::read_dir(dir).expect("list").map(|e| e.expect("entry").path()).collect();
        entries.sort();
        for path in entries {
            let meta = std::fs::symlink_metadata(&path).expect("stat");
            let content = if meta.is_file() { std::fs::read(&path).expect("read") } else { Vec::new() };
            all.push((path.clone(), meta.mode(), content));
            if meta.is_dir() {
                all.extend(snapshot(&path));
            }
        }
        all
    }

    // ------------------------------------------------ a hand-driven client

    /// Speaks SFTP byte by byte, for what russh-sftp's client cannot send.
    struct Raw {
        io: DuplexStream,
        server: JoinHandle<io::Result<()>>,
        next_id: u32,
    }

    impl Raw {
        async fn start(fx: &Fixture, options: SftpOptions) -> Raw {
            let mut raw = Raw::connect(fx, options);
            raw.send(&[FXP_INIT, 0, 0, 0, 3]).await;
            let (kind, body) = raw.recv().await;
            assert_eq!(kind, FXP_VERSION);
            assert_eq!(body.get(..4), Some(&3u32.to_be_bytes()[..]));
            raw
        }

        /// Connected, but no INIT sent yet.
        fn connect(fx: &Fixture, options: SftpOptions) -> Raw {
            let (client, server) = tokio::io::duplex(1 << 20);
            let server = tokio::spawn(serve(server, Arc::clone(&fx.root), options));
            Raw { io: client, server, next_id: 1 }
        }

        async fn send(&mut self, payload: &[u8]) {
            let mut packet = (payload.len() as u32).to_be_bytes().to_vec();
            packet.extend_from_slice(payload);
            self.io.write_all(&packet).await.expect("send");
        }

        /// The next reply: its type and what follows the type.
        async fn recv(&mut self) -> (u8, Vec<u8>) {
            tokio::time::timeout(TIMEOUT, async {
                let len = self.io.read_u32().await.expect("reply length") as usize;
                let mut body = vec![0; len];
                self.io.read_exact(&mut body).await.expect("reply body");
                let kind = *body.first().expect("reply type");
                (kind, body.split_off(1))
            })
            .await
            .expect("reply in time")
        }

        /// Sends request `kind` with `fields` (encoded) and returns the reply's type and
        /// what follows its id (checked).
        async fn call(&mut self, kind: u8, fields: &[u8]) -> (u8, Vec<u8>) {
            let id = self.next_id;
            self.next_id += 1;
            let mut payload = vec![kind];
            payload.extend_from_slice(&id.to_be_bytes());
            payload.extend_from_slice(fields);
            self.send(&payload).await;
            let (kind, mut body) = self.recv().await;
            assert_eq!(body.get(..4), Some(&id.to_be_bytes()[..]), "reply id");
            (kind, body.split_off(4))
        }

        /// The status code a request gets (it must get a status).
        async fn status(&mut self, kind: u8, fields: &[u8]) -> u32 {
            let (reply, body) = self.call(kind, fields).await;
            assert_eq!(reply, FXP_STATUS, "expected a status");
            Reader::new(&body).u32().expect("status code")
        }

        async fn handle(&mut self, kind: u8, fields: &[u8]) -> Vec<u8> {
            let (reply, body) = self.call(kind, fields).await;
            assert_eq!(reply, FXP_HANDLE, "expected a handle");
            Reader::new(&body).string().expect("handle").to_vec()
        }

        /// Closes the client side and returns how the server ended.
        async fn hang_up(self) -> io::Result<()> {
            drop(self.io);
            tokio::time::timeout(TIMEOUT, self.server).await.expect("server ends").expect("join")
        }
    }

    fn string(s: &[u8]) -> Vec<u8> {
        let mut v = (s.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(s);
        v
    }

    fn fields(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    const NO_ATTRS: &[u8] = &[0, 0, 0, 0];

    /// Names of a NAME reply's entries, with their long names.
    fn names(body: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut r = Reader::new(body);
        let count = r.u32().expect("count");
        (0..count)
            .map(|_| {
                let name = r.string().expect("name").to_vec();
                let long = r.string().expect("longname").to_vec();
                let flags = r.u32().expect("flags");
                if flags != 0 {
                    r.take(8 + 4 + 4 + 4 + 4 + 4).expect("attrs");
                }
                (name, long)
            })
            .collect()
    }

    // ------------------------------------------------ transfers and operations

    #[tokio::test]
    async fn uploads_and_downloads_a_mebibyte() {
        let fx = Fixture::new();
        let (sftp, server) = connect(&fx, SftpOptions::default()).await;
        let data: Vec<u8> = (0u32..1 << 20).map(|i| (i.wrapping_mul(7) ^ (i >> 9)) as u8).collect();

        let mut file = sftp.create("/nowhere/../big.bin").await.expect("create");
        file.write_all(&data).await.expect("upload");
        file.shutdown().await.expect("close");
        assert_eq!(std::fs::read(fx.path("big.bin")).expect("read back"), data);
        assert_eq!(mode_of(&fx.path("big.bin")), 0o644 & !umask());

        let mut file = sftp.open("big.bin").await.expect("open");
        let mut back = Vec::new();
        file.read_to_end(&mut back).await.expect("download");
        assert!(back == data, "downloaded bytes differ");
        assert_eq!(file.metadata().await.expect("fstat").size, Some(1 << 20));
        file.shutdown().await.expect("close");
        assert_eq!(sftp.metadata("//big.bin").await.expect("stat").size, Some(1 << 20));
        fx.assert_outside_untouched();
        hang_up(sftp, server).await;
    }

    #[tokio::test]
    async fn directories_renames_removals_and_setstat() {
        let fx = Fixture::new();
        let (sftp, server) = connect(&fx, SftpOptions::default()).await;

        sftp.create_dir("d").await.expect("mkdir");
        assert!(fx.path("d").is_dir());
        assert_eq!(mode_of(&fx.path("d")), 0o755 & !umask());
        put(&sftp, "d/a", b"aaa").await.expect("write a");
        put(&sftp, "/d/b", b"bbb").await.expect("write b");
        let listed: BTreeSet<String> =
            sftp.read_dir("/d").await.expect("readdir").map(|e| e.file_name()).collect();
        assert_eq!(listed, BTreeSet::from(["a".to_string(), "b".to_string()]));

        sftp.rename("d/a", "d/c").await.expect("rename");
        assert!(!fx.path("d/a").exists());
        assert_eq!(std::fs::read(fx.path("d/c")).expect("read c"), b"aaa");
        // SSH2_FXP_RENAME never replaces.
        assert_eq!(code(sftp.rename("d/b", "d/c").await), StatusCode::Failure);
        assert_eq!(std::fs::read(fx.path("d/b")).expect("read b"), b"bbb");
        assert_eq!(std::fs::read(fx.path("d/c")).expect("read c"), b"aaa");
        sftp.rename("/d", "/e").await.expect("rename a directory");
        assert!(fx.path("e/c").is_file());
        std::fs::create_dir(fx.path("full")).expect("mkdir");
        assert_eq!(code(sftp.rename("e", "full").await), StatusCode::Failure);

        let attrs = FileAttributes {
            permissions: Some(0o6751),
            atime: Some(1_000_000_000),
            mtime: Some(1_234_567_890),
            ..FileAttributes::empty()
        };
        sftp.set_metadata("e/c", attrs).await.expect("setstat");
        assert_eq!(mode_of(&fx.path("e/c")), 0o751, "setuid and setgid are never set");
        let meta = std::fs::metadata(fx.path("e/c")).expect("stat");
        assert_eq!((meta.mtime(), meta.atime()), (1_234_567_890, 1_000_000_000));
        let attrs = FileAttributes { size: Some(1), ..FileAttributes::empty() };
        sftp.set_metadata("e/c", attrs).await.expect("truncate");
        assert_eq!(std::fs::read(fx.path("e/c")).expect("read c"), b"a");
        let stat = sftp.metadata("e/c").await.expect("stat");
        assert_eq!(
            (stat.size, stat.mtime),
            (Some(1), std::fs::metadata(fx.path("e/c")).ok().map(|m| m.mtime() as u32))
        );

        assert_eq!(code(sftp.remove_dir("e").await), StatusCode::Failure);
        assert_eq!(code(sftp.remove_file("e").await), StatusCode::Failure, "Is a directory");
        sftp.remove_file("e/c").await.expect("remove c");
        sftp.remove_file("e/b").await.expect("remove b");
        sftp.remove_dir("e").await.expect("rmdir");
        assert!(!fx.path("e").exists());
        assert_eq!(code(sftp.remove_file("e/b").await), StatusCode::NoSuchFile);
        assert_eq!(code(sftp.metadata("missing").await), StatusCode::NoSuchFile);
        assert_eq!(code(sftp.open("missing").await), StatusCode::NoSuchFile);
        match sftp.open("full").await {
            Err(SftpError::Status(status)) => assert_eq!(status.error_message, "Is a directory"),
            Err(other) => panic!("opening a directory: {other:?}"),
            Ok(_) => panic!("opened a directory"),
        }
        assert_eq!(sftp.canonicalize(".").await.expect("realpath"), "/");
        assert_eq!(sftp.canonicalize("").await.expect("realpath"), "/");
        assert_eq!(sftp.canonicalize("a/./b/../../../c//d/").await.expect("realpath"), "/c/d");
        fx.assert_outside_untouched();
        hang_up(sftp, server).await;
    }

    #[tokio::test]
    async fn read_only_refuses_every_change() {
        let fx = Fixture::new();
        std::fs::write(fx.path("keep"), "keep").expect("write");
        std::fs::create_dir(fx.path("dir")).expect("mkdir");
        std::fs::create_dir(fx.path("empty")).expect("mkdir");
        let before = snapshot(&fx.path(""));
        let options = SftpOptions { read_only: true };
        let (sftp, server) = connect(&fx, options).await;

        read_only_refusal(sftp.create("new").await);
        for flags in [
            OpenFlags::WRITE,
            OpenFlags::READ | OpenFlags::APPEND,
            OpenFlags::READ | OpenFlags::TRUNCATE,
            OpenFlags::READ | OpenFlags::CREATE,
        ] {
            read_only_refusal(sftp.open_with_flags("keep", flags).await);
        }
        let perms = || FileAttributes { permissions: Some(0o600), ..FileAttributes::empty() };
        read_only_refusal(sftp.set_metadata("keep", perms()).await);
        let file = sftp.open("keep").await.expect("reading is fine");
        read_only_refusal(file.set_metadata(perms()).await);
        file.sync_all().await.expect("fsync is fine");
        read_only_refusal(sftp.remove_file("keep").await);
        read_only_refusal(sftp.create_dir("new").await);
        read_only_refusal(sftp.remove_dir("empty").await);
        read_only_refusal(sftp.rename("keep", "moved").await);
        read_only_refusal(sftp.symlink("keep", "link").await);
        read_only_refusal(sftp.hardlink("keep", "hard").await);
        assert_eq!(sftp.read("keep").await.expect("read"), b"keep");
        assert_eq!(sftp.read_dir("/").await.expect("readdir").count(), 3);
        hang_up(sftp, server).await;

        let mut raw = Raw::start(&fx, options).await;
        let rename = fields(&[&string(EXT_POSIX_RENAME), &string(b"keep"), &string(b"dir/keep")]);
        assert_eq!(raw.status(FXP_EXTENDED, &rename).await, FX_PERMISSION_DENIED);
        let symlink = fields(&[&string(b"keep"), &string(b"link")]);
        assert_eq!(raw.status(FXP_SYMLINK, &symlink).await, FX_PERMISSION_DENIED);
        raw.hang_up().await.expect("clean end");

        assert_eq!(snapshot(&fx.path("")), before, "nothing changed on disk");
        fx.assert_outside_untouched();
    }

    // ------------------------------------------------ confinement

    #[tokio::test]
    async fn paths_stay_inside_the_root() {
        let fx = Fixture::new();
        let (sftp, server) = connect(&fx, SftpOptions::default()).await;

        put(&sftp, "../outside", b"1").await.expect("write ../outside");
        put(&sftp, "/../../outside2", b"2").await.expect("write /../../outside2");
        assert_eq!(std::fs::read(fx.path("outside")).expect("inside"), b"1");
        assert_eq!(std::fs::read(fx.path("outside2")).expect("inside"), b"2");
        fx.assert_outside_untouched();

        // "/etc/passwd" is the root's etc/passwd.
        assert_eq!(code(sftp.read("/etc/passwd").await), StatusCode::NoSuchFile);
        std::fs::create_dir(fx.path("etc")).expect("mkdir");
        std::fs::write(fx.path("etc/passwd"), "fake").expect("write");
        assert_eq!(sftp.read("/etc/passwd").await.expect("read"), b"fake");
        assert_eq!(sftp.read("/../etc/passwd").await.expect("read"), b"fake");

        sftp.rename("outside", "../../x").await.expect("rename");
        assert_eq!(std::fs::read(fx.path("x")).expect("renamed inside"), b"1");
        let listed: BTreeSet<String> =
            sftp.read_dir("/..").await.expect("readdir").map(|e| e.file_name()).collect();
        assert!(!listed.contains("secret") && listed.contains("x"), "{listed:?}");
        assert_eq!(sftp.canonicalize("../..").await.expect("realpath"), "/");
        fx.assert_outside_untouched();
        hang_up(sftp, server).await;
    }

    #[tokio::test]
    async fn symlinks_cannot_lead_out() {
        let fx = Fixture::new();
        let outer = fx.outer.path().to_path_buf();
        std::os::unix::fs::symlink("/etc", fx.path("etc")).expect("symlink");
        std::os::unix::fs::symlink("../secret", fx.path("up")).expect("symlink");
        std::os::unix::fs::symlink(&outer, fx.path("outdir")).expect("symlink");
        std::os::unix::fs::symlink("../created", fx.path("dangle")).expect("symlink");
        std::os::unix::fs::symlink(outer.join("created2"), fx.path("dangle2")).expect("symlink");
        let (sftp, server) = connect(&fx, SftpOptions::default()).await;

        assert_eq!(code(sftp.read("/etc/passwd").await), StatusCode::PermissionDenied);
        assert_eq!(code(sftp.metadata("/etc/passwd").await), StatusCode::PermissionDenied);
        assert_eq!(code(sftp.metadata("/etc").await), StatusCode::PermissionDenied);
        assert!(sftp.read_dir("/etc").await.is_err(), "listed the host's /etc");
        assert!(sftp.symlink_metadata("/etc").await.expect("lstat the link").is_symlink());
        assert_eq!(code(sftp.read("up").await), StatusCode::PermissionDenied);
        assert_eq!(code(sftp.create("up").await), StatusCode::PermissionDenied);
        let perms = FileAttributes { permissions: Some(0o777), ..FileAttributes::empty() };
        assert!(sftp.set_metadata("up", perms).await.is_err());
        let truncate = FileAttributes { size: Some(0), ..FileAttributes::empty() };
        assert!(sftp.set_metadata("up", truncate).await.is_err());
        assert!(sftp.create("outdir/new").await.is_err(), "created through a symlink");
        assert!(sftp.create_dir("outdir/newdir").await.is_err(), "made a directory through a symlink");
        assert!(sftp.create("dangle").await.is_err(), "created through a dangling symlink");
        assert!(sftp.create("dangle2").await.is_err(), "created through a dangling symlink");
        std::fs::write(fx.path("x"), "x").expect("write");
        assert_eq!(code(sftp.rename("x", "outdir/x").await), StatusCode::PermissionDenied);
        assert!(fx.path("x").exists());
        hang_up(sftp, server).await;

        // Symlinks the client asks for (OpenSSH's order: target, then link path).
        std::fs::create_dir(fx.path("sub")).expect("mkdir");
        std::fs::write(fx.path("file"), "file").expect("write");
        let mut raw = Raw::start(&fx, SftpOptions::default()).await;
        for (target, link) in [
            (&b"/etc"[..], &b"l1"[..]),
            (b"../../x", b"l2"),
            (b"../x", b"l3"),
            (b"sub/../../x", b"l4"),
            (b"../../x", b"sub/l5"),
            (b"/", b"sub/l6"),
        ] {
            let request = fields(&[&string(target), &string(link)]);
            assert_eq!(raw.status(FXP_SYMLINK, &request).await, FX_PERMISSION_DENIED);
        }
        let request = fields(&[&string(b"../file"), &string(b"sub/ok")]);
        assert_eq!(raw.status(FXP_SYMLINK, &request).await, FX_OK);
        assert_eq!(std::fs::read_link(fx.path("sub/ok")).expect("readlink"), Path::new("../file"));
        assert_eq!(std::fs::read(fx.path("sub/ok")).expect("through the link"), b"file");
        raw.hang_up().await.expect("clean end");

        for name in ["l1", "l2", "l3", "l4", "sub/l5", "sub/l6"] {
            assert!(std::fs::symlink_metadata(fx.path(name)).is_err(), "{name} was created");
        }
        fx.assert_outside_untouched();
        assert!(!outer.join("created").exists() && !outer.join("created2").exists());
    }

    // ------------------------------------------------ the wire, by hand

    #[tokio::test]
    async fn symlink_and_readlink_in_openssh_order() {
        let fx = Fixture::new();
        std::fs::write(fx.path("f"), "f").expect("write");
        let mut raw = Raw::start(&fx, SftpOptions::default()).await;
        let request = fields(&[&string(b"f"), &string(b"/lnk")]);
        assert_eq!(raw.status(FXP_SYMLINK, &request).await, FX_OK);
        assert_eq!(std::fs::read_link(fx.path("lnk")).expect("readlink"), Path::new("f"));
        let (kind, body) = raw.call(FXP_READLINK, &string(b"lnk")).await;
        assert_eq!(kind, FXP_NAME);
        assert_eq!(names(&body), vec![(b"f".to_vec(), b"f".to_vec())]);
        // A symlink over an existing name fails and changes nothing.
        let request = fields(&[&string(b"x"), &string(b"f")]);
        assert_eq!(raw.status(FXP_SYMLINK, &request).await, FX_FAILURE);
        assert_eq!(std::fs::read(fx.path("f")).expect("read"), b"f");
        raw.hang_up().await.expect("clean end");
    }

    #[tokio::test]
    async fn posix_rename_replaces_and_limits_are_advertised() {
        let fx = Fixture::new();
        std::fs::write(fx.path("a"), "a").expect("write");
        std::fs::write(fx.path("b"), "b").expect("write");
        let mut raw = Raw::start(&fx, SftpOptions::default()).await;
        let request = fields(&[&string(b"a"), &string(b"b")]);
        assert_eq!(raw.status(FXP_RENAME, &request).await, FX_FAILURE);
        let request = fields(&[&string(EXT_POSIX_RENAME), &string(b"a"), &string(b"b")]);
        assert_eq!(raw.status(FXP_EXTENDED, &request).await, FX_OK);
        assert!(!fx.path("a").exists());
        assert_eq!(std::fs::read(fx.path("b")).expect("read"), b"a");

        let (kind, body) = raw.call(FXP_EXTENDED, &string(EXT_LIMITS)).await;
        assert_eq!(kind, FXP_EXTENDED_REPLY);
        let mut r = Reader::new(&body);
        let limits: Vec<u64> = (0..4).map(|_| r.u64().expect("limit")).collect();
        assert_eq!(limits, [262_144, 261_120, 261_120, 256]);
        let request = fields(&[&string(b"statvfs@openssh.com"), &string(b"/")]);
        assert_eq!(raw.status(FXP_EXTENDED, &request).await, FX_OP_UNSUPPORTED);
        raw.hang_up().await.expect("clean end");
    }

    #[tokio::test]
    async fn reads_are_capped_and_end_with_eof() {
        let fx = Fixture::new();
        let data: Vec<u8> = (0..600 * 1024).map(|i: u32| (i % 253) as u8).collect();
        std::fs::write(fx.path("f"), &data).expect("write");
        let mut raw = Raw::start(&fx, SftpOptions::default()).await;
        let handle = raw.handle(FXP_OPEN, &fields(&[&string(b"f"), &FXF_READ.to_be_bytes(), NO_ATTRS])).await;

        let read =
            |offset: u64, len: u32| fields(&[&string(&handle), &offset.to_be_bytes(), &len.to_be_bytes()]);
        let (kind, body) = raw.call(FXP_READ, &read(1000, 1 << 20)).await;
        assert_eq!(kind, FXP_DATA);
        let got = Reader::new(&body).string().expect("data").to_vec();
        assert_eq!(got.len(), 255 * 1024);
        assert!(got[..] == data[1000..1000 + 255 * 1024], "wrong bytes");
        let (kind, body) = raw.call(FXP_READ, &read(600 * 1024 - 10, 100)).await;
        assert_eq!(kind, FXP_DATA);
        assert_eq!(Reader::new(&body).string().expect("data"), &data[600 * 1024 - 10..]);
        assert_eq!(raw.status(FXP_READ, &read(600 * 1024, 100)).await, FX_EOF);
        assert_eq!(raw.status(FXP_READ, &read(1 << 40, 100)).await, FX_EOF);
        // Writing through a read-only handle fails.
        let write = fields(&[&string(&handle), &0u64.to_be_bytes(), &string(b"x")]);
        assert_eq!(raw.status(FXP_WRITE, &write).await, FX_FAILURE);
        assert_eq!(raw.status(FXP_CLOSE, &string(&handle)).await, FX_OK);
        assert_eq!(raw.status(FXP_CLOSE, &string(&handle)).await, FX_FAILURE, "closed twice");
        assert_eq!(raw.status(FXP_READ, &read(0, 100)).await, FX_FAILURE, "read after close");

        // The largest WRITE OpenSSH's client would send after limits@openssh.com fits.
        let flags = (FXF_WRITE | FXF_CREAT | FXF_EXCL).to_be_bytes();
        let handle = raw.handle(FXP_OPEN, &fields(&[&string(b"big"), &flags, NO_ATTRS])).await;
        let chunk = vec![7u8; MAX_WRITE as usize];
        let write = fields(&[&string(&handle), &5u64.to_be_bytes(), &string(&chunk)]);
        assert_eq!(raw.status(FXP_WRITE, &write).await, FX_OK);
        assert_eq!(raw.status(FXP_CLOSE, &string(&handle)).await, FX_OK);
        assert_eq!(std::fs::metadata(fx.path("big")).expect("stat").len(), 5 + MAX_WRITE);
        assert_eq!(raw.status(FXP_OPEN, &fields(&[&string(b"big"), &flags, NO_ATTRS])).await, FX_FAILURE);
        raw.hang_up().await.expect("clean end");
    }

    #[tokio::test]
    async fn handles_are_limited() {
        let fx = Fixture::new();
        std::fs::write(fx.path("f"), "f").expect("write");
        let mut raw = Raw::start(&fx, SftpOptions::default()).await;
        let open = fields(&[&string(b"f"), &FXF_READ.to_be_bytes(), NO_ATTRS]);
        let mut handles = BTreeSet::new();
        for _ in 0..MAX_HANDLES {
            assert!(handles.insert(raw.handle(FXP_OPEN, &open).await), "handles are unique");
        }
        let (kind, body) = raw.call(FXP_OPEN, &open).await;
        assert_eq!(kind, FXP_STATUS);
        let mut r = Reader::new(&body);
        assert_eq!(r.u32().expect("code"), FX_FAILURE);
        assert_eq!(r.string().expect("message"), b"too many open handles");
        assert_eq!(raw.status(FXP_OPENDIR, &string(b"/")).await, FX_FAILURE);
        let first = handles.pop_first().expect("a handle");
        assert_eq!(raw.status(FXP_CLOSE, &string(&first)).await, FX_OK);
        let again = raw.handle(FXP_OPEN, &open).await;
        assert_ne!(again, first, "handles are never reused");
        // EOF with everything open: handles close and the session ends cleanly.
        raw.hang_up().await.expect("clean end");
    }

    #[tokio::test]
    async fn readdir_sends_batches_with_long_names() {
        let fx = Fixture::new();
        std::fs::create_dir(fx.path("d")).expect("mkdir");
        for i in 0..250 {
            std::fs::write(fx.path(&format!("d/f{i:03}")), "12345").expect("write");
        }
        std::fs::set_permissions(fx.path("d/f007"), std::fs::Permissions::from_mode(0o4754)).expect("chmod");
        let mut raw = Raw::start(&fx, SftpOptions::default()).await;
        let handle = raw.handle(FXP_OPENDIR, &string(b"/d/")).await;
        let mut all = Vec::new();
        loop {
            let (kind, body) = raw.call(FXP_READDIR, &string(&handle)).await;
            if kind == FXP_STATUS {
                assert_eq!(Reader::new(&body).u32().expect("code"), FX_EOF);
                break;
            }
            assert_eq!(kind, FXP_NAME);
            let batch = names(&body);
            assert!(!batch.is_empty() && batch.len() <= READDIR_BATCH);
            all.extend(batch);
        }
        assert_eq!(all.len(), 252);
        let set: BTreeSet<Vec<u8>> = all.iter().map(|(name, _)| name.clone()).collect();
        assert_eq!(set.len(), 252);
        assert!(set.contains(&b"."[..]) && set.contains(&b".."[..]) && set.contains(&b"f249"[..]));
        let (_, long) = all.iter().find(|(name, _)| name == b"f007").expect("f007");
        let long = String::from_utf8(long.clone()).expect("utf-8");
        assert!(long.starts_with("-rwsr-xr--    1 "), "{long}");
        assert!(long.ends_with(" f007"), "{long}");
        assert!(long.contains("        5 "), "size column: {long}");
        let (_, dot) = all.iter().find(|(name, _)| name == b".").expect(".");
        assert!(dot.starts_with(b"drwx"), "{}", String::from_utf8_lossy(dot));
        assert_eq!(raw.status(FXP_CLOSE, &string(&handle)).await, FX_OK);
        assert_eq!(raw.status(FXP_OPENDIR, &string(b"/d/f001")).await, FX_NO_SUCH_FILE);
        raw.hang_up().await.expect("clean end");
    }

    #[tokio::test]
    async fn malformed_requests_get_bad_message_and_the_session_goes_on() {
        let fx = Fixture::new();
        let mut raw = Raw::start(&fx, SftpOptions::default()).await;
        // OPEN whose file name claims 1000 bytes but has 3.
        let mut payload = vec![FXP_OPEN];
        payload.extend_from_slice(&7u32.to_be_bytes());
        payload.extend_from_slice(&1000u32.to_be_bytes());
        payload.extend_from_slice(b"abc");
        raw.send(&payload).await;
        let (kind, body) = raw.recv().await;
        assert_eq!(kind, FXP_STATUS);
        let mut r = Reader::new(&body);
        assert_eq!((r.u32().expect("id"), r.u32().expect("code")), (7, FX_BAD_MESSAGE));
        // An empty packet, and one too short for an id.
        raw.send(&[]).await;
        let (kind, body) = raw.recv().await;
        assert_eq!((kind, body.get(4..8)), (FXP_STATUS, Some(&FX_BAD_MESSAGE.to_be_bytes()[..])));
        raw.send(&[FXP_STAT, 0, 0]).await;
        let (kind, body) = raw.recv().await;
        assert_eq!((kind, body.get(4..8)), (FXP_STATUS, Some(&FX_BAD_MESSAGE.to_be_bytes()[..])));
        // Attributes with a huge count of extended pairs.
        let attrs = fields(&[&ATTR_EXTENDED.to_be_bytes(), &u32::MAX.to_be_bytes(), &string(b"k")]);
        let request = fields(&[&string(b"x"), &attrs]);
        assert_eq!(raw.status(FXP_SETSTAT, &request).await, FX_BAD_MESSAGE);
        assert_eq!(raw.status(FXP_MKDIR, &fields(&[&string(b"d"), &[0, 0]])).await, FX_BAD_MESSAGE);
        assert!(!fx.path("d").exists() && !fx.path("x").exists());
        assert_eq!(raw.status(99, b"whatever").await, FX_OP_UNSUPPORTED);
        assert_eq!(raw.status(FXP_READ, &fields(&[&string(b"nonsense"), &[0; 12]])).await, FX_FAILURE);
        // Still answering.
        let (kind, body) = raw.call(FXP_REALPATH, &string(b"a/../b")).await;
        assert_eq!(kind, FXP_NAME);
        assert_eq!(names(&body), vec![(b"/b".to_vec(), b"/b".to_vec())]);
        raw.hang_up().await.expect("clean end");
    }

    #[tokio::test]
    async fn an_oversized_packet_ends_the_session() {
        let fx = Fixture::new();
        let mut raw = Raw::start(&fx, SftpOptions::default()).await;
        let len = (MAX_PACKET as u32 + 1).to_be_bytes();
        raw.io.write_all(&len).await.expect("send length");
        raw.io.write_all(&[FXP_WRITE]).await.expect("send type");
        let result = tokio::time::timeout(TIMEOUT, raw.server).await.expect("server ends").expect("join");
        let error = result.expect_err("an oversized packet must end the session");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn the_first_packet_must_be_init() {
        let fx = Fixture::new();
        let mut raw = Raw::connect(&fx, SftpOptions::default());
        raw.send(&fields(&[&[FXP_REALPATH], &1u32.to_be_bytes(), &string(b".")])).await;
        assert!(raw.hang_up().await.is_err());
        let mut raw = Raw::start(&fx, SftpOptions::default()).await;
        raw.send(&[FXP_INIT, 0, 0, 0, 3]).await;
        assert!(raw.hang_up().await.is_err(), "a second init ends the session");
    }

    // ------------------------------------------------ the real OpenSSH clients

    const ROOT_VAR: &str = "RSCPD_SFTP_TEST_ROOT";
    const READ_ONLY_VAR: &str = "RSCPD_SFTP_TEST_READ_ONLY";

    /// The server end of the OpenSSH client tests (`sftp -D`, or `scp -S` with a fake
    /// ssh), which start this test binary with the root in the environment.
    #[test]
    #[ignore = "started by the OpenSSH client tests as their server"]
    fn stdio_server() {
        use std::os::fd::AsFd as _;
        let Some(root) = std::env::var_os(ROOT_VAR) else { return };
        let options = SftpOptions { read_only: std::env::var_os(READ_ONLY_VAR).is_some() };
        let root = Dir::open_ambient_dir(root, cap_std::ambient_authority()).expect("open root");
        // OpenSSH's clients give their server one socket as stdin and stdout; the
        // command line sends stdout to stderr, away from the test harness's output.
        let socket = std::io::stdin().as_fd().try_clone_to_owned().expect("dup stdin");
        let socket = std::os::unix::net::UnixStream::from(socket);
        socket.set_nonblocking(true).expect("non-blocking");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime
            .block_on(async {
                let stream = tokio::net::UnixStream::from_std(socket)?;
                serve(stream, Arc::new(root), options).await
            })
            .expect("serve");
    }

    /// `program` from PATH, or None (the test is then skipped: not every machine
    /// that builds rscpd has OpenSSH's clients).
    fn find_program(program: &str) -> Option<PathBuf> {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path).map(|dir| dir.join(program)).find(|p| p.is_file())
    }

    /// Runs `stdio_server`, with its stdout (the harness's) on stderr.
    fn server_command() -> String {
        let exe = std::env::current_exe().expect("test binary");
        format!("exec '{}' --exact sftp::tests::stdio_server --ignored --quiet >&2", exe.display())
    }

    /// Runs an OpenSSH client against `stdio_server`, bounded in time.
    fn run_client(fx: &Fixture, program: &Path, args: &[&OsStr]) -> std::process::Output {
        let mut command = match find_program("timeout") {
            Some(timeout) => {
                let mut c = std::process::Command::new(timeout);
                c.arg("120").arg(program);
                c
            }
            None => std::process::Command::new(program),
        };
        let output = command
            .args(args)
            .env(ROOT_VAR, fx.path(""))
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run the client");
        eprintln!(
            "{} {args:?}: {}\n--- stdout\n{}--- stderr\n{}",
            program.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    fn test_data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8 ^ (i >> 12) as u8).collect()
    }

    #[test]
    fn openssh_sftp_client() {
        let Some(sftp) = find_program("sftp") else {
            eprintln!("skipped: OpenSSH's sftp is not installed");
            return;
        };
        let fx = Fixture::new();
        let local = tempfile::tempdir().expect("tempdir");
        let l = local.path().display();
        let data = test_data(700 * 1024 + 123);
        std::fs::write(local.path().join("src.bin"), &data).expect("write");
        std::os::unix::fs::symlink("/etc", fx.path("etc")).expect("symlink");
        let batch = format!(
            "put {l}/src.bin up.bin\n\
             get up.bin {l}/down.bin\n\
             mkdir d\n\
             rename up.bin d/moved.bin\n\
             ln -s moved.bin d/link\n\
             -ln -s /etc/passwd d/evil\n\
             -ln -s ../../secret d/evil2\n\
             chmod 4640 d/moved.bin\n\
             ls -l d\n\
             get d/link {l}/via-link.bin\n\
             -get /etc/passwd {l}/passwd\n\
             -ls /etc\n\
             -put {l}/src.bin ../../escaped.bin\n\
             cd d\n\
             pwd\n\
             cd ..\n\
             -rmdir d\n\
             rm d/link\n\
             -df\n"
        );
        let batch_file = local.path().join("batch");
        std::fs::write(&batch_file, batch).expect("write batch");
        let server = format!("/bin/sh -c \"{}\"", server_command());
        let args = [OsStr::new("-b"), batch_file.as_os_str(), OsStr::new("-D"), OsStr::new(&server)];
        let output = run_client(&fx, &sftp, &args);
        assert!(output.status.success(), "sftp failed");

        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = |end: &str| stdout.lines().find(|l| l.ends_with(end)).map(str::to_string);
        let moved = line(" moved.bin").expect("moved.bin listed");
        assert!(moved.starts_with("-rw-r-----    1 "), "{moved}");
        assert!(moved.contains(&format!(" {} ", data.len())), "{moved}");
        let link = line(" link").expect("link listed");
        assert!(link.starts_with("lrwxrwxrwx    1 "), "{link}");
        assert!(stdout.contains("Remote working directory: /d"), "pwd");

        assert!(std::fs::read(fx.path("d/moved.bin")).expect("uploaded") == data, "upload differs");
        assert_eq!(mode_of(&fx.path("d/moved.bin")), 0o640);
        assert!(
            std::fs::read(local.path().join("down.bin")).expect("downloaded") == data,
            "download differs"
        );
        assert!(std::fs::read(local.path().join("via-link.bin")).expect("via link") == data);
        assert!(!local.path().join("passwd").exists(), "read the host's /etc/passwd");
        assert!(std::fs::read(fx.path("escaped.bin")).expect("../../ lands in the root") == data);
        for gone in ["d/link", "d/evil", "d/evil2", "up.bin"] {
            assert!(std::fs::symlink_metadata(fx.path(gone)).is_err(), "{gone} exists");
        }
        fx.assert_outside_untouched();
    }

    #[test]
    fn openssh_scp_client_over_sftp() {
        let Some(scp) = find_program("scp") else {
            eprintln!("skipped: OpenSSH's scp is not installed");
            return;
        };
        let fx = Fixture::new();
        let local = tempfile::tempdir().expect("tempdir");
        // scp runs "ssh ... host sftp"; this one runs the server instead.
        let fake_ssh = local.path().join("ssh");
        std::fs::write(&fake_ssh, format!("#!/bin/sh\n{}\n", server_command())).expect("write");
        std::fs::set_permissions(&fake_ssh, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let tree = local.path().join("tree");
        std::fs::create_dir_all(tree.join("sub/deeper")).expect("mkdir");
        let data = test_data(300 * 1024);
        std::fs::write(tree.join("a.bin"), &data).expect("write");
        std::fs::write(tree.join("sub/deeper/b.txt"), "b").expect("write");
        filetime::set_file_mtime(tree.join("a.bin"), filetime::FileTime::from_unix_time(1_500_000_000, 0))
            .expect("mtime");
        let scp_to = |args: &[&OsStr]| {
            let mut all = vec![OsStr::new("-S"), fake_ssh.as_os_str(), OsStr::new("-q")];
            all.extend_from_slice(args);
            run_client(&fx, &scp, &all)
        };

        assert!(scp_to(&[OsStr::new("-rp"), tree.as_os_str(), OsStr::new("host:copy")]).status.success());
        assert!(std::fs::read(fx.path("copy/a.bin")).expect("uploaded") == data);
        assert_eq!(std::fs::read(fx.path("copy/sub/deeper/b.txt")).expect("uploaded"), b"b");
        let mtime = std::fs::metadata(fx.path("copy/a.bin")).expect("stat").mtime();
        assert_eq!(mtime, 1_500_000_000, "-p keeps times");

        let back = local.path().join("back");
        assert!(scp_to(&[OsStr::new("-r"), OsStr::new("host:/copy"), back.as_os_str()]).status.success());
        assert!(std::fs::read(back.join("a.bin")).expect("downloaded") == data);
        assert_eq!(std::fs::read(back.join("sub/deeper/b.txt")).expect("downloaded"), b"b");

        let passwd = local.path().join("passwd");
        assert!(!scp_to(&[OsStr::new("host:/etc/passwd"), passwd.as_os_str()]).status.success());
        assert!(!passwd.exists());
        fx.assert_outside_untouched();
    }

    // ------------------------------------------------ pure functions

    #[test]
    fn paths_normalise_under_the_root() {
        let rel = |raw: &str| String::from_utf8(VPath::parse(raw.as_bytes()).rel).expect("utf-8");
        for (raw, want) in [
            ("", ""),
            (".", ""),
            ("/", ""),
            ("..", ""),
            ("/../..", ""),
            ("a", "a"),
            ("/a//b/", "a/b"),
            ("a/./b/../c", "a/c"),
            ("../../etc/passwd", "etc/passwd"),
            ("a/../../b", "b"),
            ("...", "..."),
            ("a/..b", "a/..b"),
        ] {
            assert_eq!(rel(raw), want, "{raw:?}");
        }
        assert_eq!(VPath::parse(b"").fs(), Path::new("."));
        assert_eq!(VPath::parse(b"/a/b").absolute(), b"/a/b");
        assert_eq!(VPath::parse(b"a/b").parent(), VPath::parse(b"a"));
        assert_eq!(VPath::parse(b"a").parent(), VPath::default());
        assert_eq!(VPath::parse(b"\x1b[2J").shown(), "/\\033[2J");
    }

    #[test]
    fn symlink_targets_must_stay_inside() {
        let inside =
            |link: &str, target: &str| target_stays_inside(&VPath::parse(link.as_bytes()), target.as_bytes());
        assert!(inside("l", "f"));
        assert!(inside("l", "./a/../b"));
        assert!(inside("d/l", "../f"));
        assert!(inside("d/e/l", "../../f"));
        assert!(inside("d/l", "x/../../f"));
        assert!(!inside("l", "/etc"));
        assert!(!inside("l", "../x"));
        assert!(!inside("d/l", "../../x"));
        assert!(!inside("d/l", "a/../../../x"));
        assert!(!inside("d/e/l", "../../.."));
    }

    #[test]
    fn long_names_look_like_openssh_ones() {
        assert_eq!(mode_string(0o100644), "-rw-r--r--");
        assert_eq!(mode_string(0o040755), "drwxr-xr-x");
        assert_eq!(mode_string(0o120777), "lrwxrwxrwx");
        assert_eq!(mode_string(0o106645), "-rwSr-Sr-x");
        assert_eq!(mode_string(0o106655), "-rwSr-sr-x");
        assert_eq!(mode_string(0o041777), "drwxrwxrwt");
        assert_eq!(mode_string(0o041776), "drwxrwxrwT");
        assert_eq!(civil(0), (1970, 1, 1, 0, 0));
        assert_eq!(civil(951_782_400), (2000, 2, 29, 0, 0));
        assert_eq!(civil(1_234_567_890), (2009, 2, 13, 23, 31));
        assert_eq!(civil(-1), (1969, 12, 31, 23, 59));
        let now = 1_234_567_890 + 86_400;
        assert_eq!(ls_time(1_234_567_890, now), "Feb 13 23:31");
        assert_eq!(ls_time(1_234_567_890 - 200 * 86_400, now), "Jul 28  2008");
        assert_eq!(ls_time(now + 86_400, now), "Feb 15  2009", "future dates show the year");
        let names = Names {
            users: id_names("root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n"),
            groups: id_names("staff:x:50:\n"),
        };
        let st =
            Stat { mode: 0o100644, nlink: 1, uid: 1000, gid: 50, size: 1234, atime: 0, mtime: 1_234_567_890 };
        assert_eq!(
            String::from_utf8(longname(b"notes.txt", &st, now, &names)).expect("utf-8"),
            "-rw-r--r--    1 alice    staff        1234 Feb 13 23:31 notes.txt"
        );
        let st = Stat { uid: 4242, gid: 4243, ..st };
        assert_eq!(
            String::from_utf8(longname(b"x", &st, now, &names)).expect("utf-8"),
            "-rw-r--r--    1 4242     4243         1234 Feb 13 23:31 x"
        );
    }
}
