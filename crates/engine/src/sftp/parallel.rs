//! One large file written over two SFTP sessions at once: its first half
//! through the upload's own connection, the second through a second connection,
//! opened when the upload first meets such a file (on the command line or in a
//! tree).
//!
//! Why: an OpenSSH server handles each connection in one process, which
//! decrypts every byte and hands it to its `sftp-server` child; on a large file
//! that process is the limit, whatever the client does. A second connection
//! gets a second server process (and core). SFTP writes name their offset, so
//! the halves need no order between them.
//!
//! Downloads are not split: measured on the same machine, two connections
//! reading halves were no faster than one (the client's CPU is the limit there,
//! not one server process), and paid a second login.
//!
//! This module owns the byte-range writer ([`write_range`]), the second
//! connection's life ([`SecondConnection`]) and its lockstep requests (INIT,
//! OPEN, CLOSE: one at a time, since nothing else is in flight there).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fs::File;
use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt as _;
use std::pin::Pin;

use rscp_proto::sftp::{self, Attrs, Reply, request};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{fill, malformed, protocol};
use crate::conn::Conn;
use crate::error::EngineError;
use crate::observer::Observer;

/// Files at least this large are split when a helper connection is there.
pub const SPLIT_MIN: u64 = 64 * 1024 * 1024;

/// What went wrong with a range, for the caller's message.
#[derive(Debug)]
pub enum RangeFailure {
    /// The server refused a WRITE or READ (its status code).
    Refused(u32),
    /// The local file: a read failed or ended early (it shrank), or a write failed.
    Local(io::Error),
}

/// What opens the second connection: nothing if it cannot log in.
pub(super) type Opener<'a, R, W> = Pin<Box<dyn Future<Output = Option<Conn<R, W>>> + 'a>>;

/// A second connection's SFTP stream for large files, opened on first need by
/// the future the caller gives.
pub struct SecondConnection<'a, R, W> {
    pub(super) opener: Option<Opener<'a, R, W>>,
}

impl<'a, R, W> SecondConnection<'a, R, W> {
    /// Every file goes over the one connection.
    pub fn none() -> Self {
        SecondConnection { opener: None }
    }

    /// `open` runs when the first file of [`SPLIT_MIN`] or more comes, if one does.
    pub fn on_demand(open: impl Future<Output = Option<Conn<R, W>>> + 'a) -> Self {
        SecondConnection { opener: Some(Box::pin(open)) }
    }
}

impl<R, W> std::fmt::Debug for SecondConnection<'_, R, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.opener.is_some() {
            "SecondConnection(on demand)"
        } else {
            "SecondConnection(none)"
        })
    }
}

/// The second connection's SFTP session, driven one request at a time.
#[derive(Debug)]
pub struct Lockstep<R, W> {
    pub(crate) conn: Conn<R, W>,
    pub(crate) next_id: u32,
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Lockstep<R, W> {
    /// INIT and VERSION 3.
    pub async fn start(conn: Conn<R, W>) -> Result<Lockstep<R, W>, EngineError> {
        let mut session = Lockstep { conn, next_id: 0 };
        request::init(&mut session.conn.outgoing);
        match session.reply_owned().await? {
            Owned::Version(3) => Ok(session),
            _ => Err(protocol("the helper connection did not answer as an SFTP server")),
        }
    }

    /// OPEN for writing, without truncating (the first half's OPEN did that).
    pub async fn open(&mut self, path: &[u8]) -> Result<Result<Vec<u8>, u32>, EngineError> {
        let id = self.id();
        request::open(&mut self.conn.outgoing, id, path, sftp::FXF_WRITE, &Attrs::default());
        match self.reply_owned().await? {
            Owned::Handle(handle) => Ok(Ok(handle)),
            Owned::Status(code) => Ok(Err(code)),
            _ => Err(protocol("unexpected reply to OPEN")),
        }
    }

    pub async fn close(&mut self, handle: &[u8]) -> Result<u32, EngineError> {
        let id = self.id();
        request::handle(&mut self.conn.outgoing, sftp::FXP_CLOSE, id, handle);
        match self.reply_owned().await? {
            Owned::Status(code) => Ok(code),
            _ => Err(protocol("unexpected reply to CLOSE")),
        }
    }

    pub fn id(&mut self) -> u32 {
        self.next_id = self.next_id.wrapping_add(1);
        self.next_id
    }

    /// Sends what is queued and takes the one reply due.
    async fn reply_owned(&mut self) -> Result<Owned, EngineError> {
        self.conn.send_outgoing().await?;
        loop {
            let parsed = Reply::parse(self.conn.buffered()).map_err(|_| malformed())?;
            if let Some((reply, used)) = parsed {
                let owned = match reply {
                    Reply::Version { version, .. } => Owned::Version(version),
                    Reply::Status { id, code, .. } if id == self.next_id => Owned::Status(code),
                    Reply::Handle { id, handle } if id == self.next_id => Owned::Handle(handle.to_vec()),
                    _ => return Err(protocol("unexpected reply on the helper connection")),
                };
                self.conn.consume(used);
                return Ok(owned);
            }
            fill(&mut self.conn).await?;
        }
    }
}

enum Owned {
    Version(u32),
    Status(u32),
    Handle(Vec<u8>),
}

/// Writes `file[start..end]` to the open `handle` over `conn`: WRITEs of
/// `write_len` read straight into the packet, up to `window` bytes unanswered.
/// Progress goes to `observer`, shared with the other half. Nothing else may be
/// in flight on `conn`; `next_id` numbers the requests.
#[allow(clippy::too_many_arguments)]
pub async fn write_range<'o, 'd, R, W>(
    conn: &mut Conn<R, W>,
    next_id: &mut u32,
    handle: &[u8],
    file: &File,
    (start, end): (u64, u64),
    write_len: u32,
    window: u64,
    observer: &RefCell<&'o mut (dyn Observer + 'd)>,
) -> Result<Result<(), RangeFailure>, EngineError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut offset = start;
    // (id, length) of each WRITE not yet answered, oldest first.
    let mut unanswered: VecDeque<(u32, u64)> = VecDeque::new();
    let mut in_flight = 0u64;
    let mut failure: Option<RangeFailure> = None;
    loop {
        while failure.is_none() && offset < end && in_flight < window {
            *next_id = next_id.wrapping_add(1);
            let id = *next_id;
            let want = usize::try_from((end - offset).min(u64::from(write_len))).unwrap_or(0);
            let mut header = Vec::with_capacity(64);
            request::write_header(&mut header, id, handle, offset, u32::try_from(want).unwrap_or(0));
            let out = &mut conn.outgoing;
            let at = out.len();
            out.extend_from_slice(&header);
            out.resize(at + header.len() + want, 0);
            match read_exact_at(file, &mut out[at + header.len()..], offset) {
                Ok(()) => {}
                Err(e) => {
                    out.truncate(at);
                    failure = Some(RangeFailure::Local(e));
                    break;
                }
            }
            offset += want as u64;
            in_flight += want as u64;
            unanswered.push_back((id, want as u64));
            observer.borrow_mut().transferred(want as u64);
            if conn.outgoing.len() >= 128 * 1024 {
                break;
            }
        }
        if !conn.outgoing.is_empty() {
            // Sends while reading, so the server's answers never back up.
            while !conn.send_outgoing_reading().await? {
                take_statuses(conn, &mut unanswered, &mut in_flight, &mut failure)?;
            }
        }
        take_statuses(conn, &mut unanswered, &mut in_flight, &mut failure)?;
        let more_to_send = failure.is_none() && offset < end && in_flight < window;
        if unanswered.is_empty() && (failure.is_some() || offset >= end) {
            return Ok(failure.map_or(Ok(()), Err));
        }
        if !more_to_send {
            fill(conn).await?;
        }
    }
}

/// Takes the WRITE statuses received so far; the first refusal is kept.
fn take_statuses<R, W>(
    conn: &mut Conn<R, W>,
    unanswered: &mut VecDeque<(u32, u64)>,
    in_flight: &mut u64,
    failure: &mut Option<RangeFailure>,
) -> Result<(), EngineError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        let parsed = Reply::parse(conn.buffered()).map_err(|_| malformed())?;
        let Some((reply, used)) = parsed else { return Ok(()) };
        let Reply::Status { id, code, .. } = reply else {
            return Err(protocol("unexpected reply to a WRITE"));
        };
        // Servers answer in order; an id out of turn is a broken server.
        match unanswered.pop_front() {
            Some((expected, len)) if expected == id => *in_flight -= len,
            _ => return Err(protocol(format!("reply to an unknown request ({id})"))),
        }
        conn.consume(used);
        if code != sftp::FX_OK && failure.is_none() {
            *failure = Some(RangeFailure::Refused(code));
        }
    }
}

/// `pread` until `buf` is full; a file that ends first has shrunk.
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => return Err(io::Error::from_raw_os_error(libc::EPIPE)),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
