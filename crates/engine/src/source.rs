//! `send`: the source side over a byte stream, reading local files and trees.
//! Serves uploads (the client is the source) and `rscp -f` (the remote source).
//!
//! Mirrors OpenSSH's `source()`/`rsource()` (spec §3.1): symlinks are followed,
//! directories are walked in readdir order, a file that shrinks or fails to read
//! mid-transfer is zero-padded to its announced size and reported as failed. It
//! differs where safer: a directory loop is detected and skipped rather than
//! followed to the path-length limit, and a name holding a line feed is skipped
//! with a message instead of being sent vis-encoded.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rscp_proto::source::{Settled, Source, SourceEvent};
use rscp_proto::{FileHeader, FileName, Message, Mode};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::conn::{BUFFER_SIZE, Conn};
use crate::error::{EngineError, Summary};
use crate::fs;
use crate::limit::{LIMITED_CHUNK, Limiter};
use crate::observer::Observer;
use crate::root::{Entries, Metadata, MetadataExt, Root};

/// How a source behaves: the remote command's flags.
#[derive(Debug, Clone, Copy, Default)]
pub struct SourceOptions {
    /// `-r`: send directories as `D`…`E` trees.
    pub recursive: bool,
    /// `-p`: send a `T` record with each file's and directory's times.
    pub preserve: bool,
    /// `-l`: payload rate limit in Kbit/s.
    pub limit_kbits: Option<u64>,
    /// Send the next record without waiting for answers that decide nothing (a
    /// `T`'s, an `E`'s, a file's final one): `Source::pipelined`. The bytes
    /// are OpenSSH's; only the waits go.
    pub pipelined: bool,
    /// With `pipelined`: send small files ahead, their `C` not waited for, when
    /// their content allows it (`Source::can_send_ahead`). A sink that refuses
    /// such a file ends the session, and so does the source.
    pub ahead: bool,
}

/// The largest file sent ahead: read whole before its `C` goes out.
const AHEAD_MAX: u64 = 64 * 1024;
/// Files sent ahead are queued until this much is waiting, then sent together.
const AHEAD_BATCH: usize = 128 * 1024;

/// A directory being sent: its remaining entries.
#[derive(Debug)]
struct OpenDir {
    path: PathBuf,
    entries: Entries,
    id: (u64, u64),
}

/// Sends every operand (files, and trees with `-r`) to the peer, after its ready
/// reply. Per-file problems are reported to both sides and counted; the copy goes
/// on. Returns the error count, or why the session broke off.
pub async fn send<R, W>(
    conn: &mut Conn<R, W>,
    operands: &[PathBuf],
    options: SourceOptions,
    observer: &mut dyn Observer,
) -> Result<Summary, EngineError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    send_in(conn, &Root::Host, operands, options, observer).await
}

/// [`send`] with every path resolved in `root`.
pub async fn send_in<R, W>(
    conn: &mut Conn<R, W>,
    root: &Root,
    operands: &[PathBuf],
    options: SourceOptions,
    observer: &mut dyn Observer,
) -> Result<Summary, EngineError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut sender = Sender {
        conn,
        root,
        source: if options.pipelined { Source::pipelined() } else { Source::new() },
        observer,
        options,
        buf: vec![0u8; BUFFER_SIZE].into_boxed_slice(),
        stack: Vec::new(),
        limiter: options.limit_kbits.map(Limiter::from_kbits),
        unsettled_files: VecDeque::new(),
    };
    if let SourceEvent::Refused(text) = sender.reply().await? {
        // The sink refused to start (e.g. `-d` and no such directory).
        sender.observer.remote_message(&text);
        return Ok(Summary { errors: sender.source.error_count() });
    }
    for operand in operands {
        sender.send_operand(operand).await?;
        sender.drain_dirs().await?;
    }
    sender.settle_all().await?;
    Ok(Summary { errors: sender.source.error_count() })
}

struct Sender<'a, R, W> {
    conn: &'a mut Conn<R, W>,
    root: &'a Root,
    source: Source,
    observer: &'a mut dyn Observer,
    options: SourceOptions,
    buf: Box<[u8]>,
    stack: Vec<OpenDir>,
    limiter: Option<Limiter>,
    /// Pipelined: the files whose final answer is still due, oldest first, and
    /// whether each was read whole.
    unsettled_files: VecDeque<bool>,
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Sender<'_, R, W> {
    async fn flush(&mut self) -> Result<(), EngineError> {
        self.source.poll_transmit(&mut self.conn.outgoing);
        if !self.options.pipelined {
            self.conn.send_outgoing().await?;
            return Ok(());
        }
        while !self.conn.send_outgoing_reading().await? {
            self.take_settled()?;
        }
        self.take_settled()
    }

    /// Pipelined: takes the answers already received that settle earlier
    /// records, without waiting for more.
    fn take_settled(&mut self) -> Result<(), EngineError> {
        while self.source.next_answer_settles() {
            let n = self.source.handle_input(self.conn.buffered())?;
            if n == 0 {
                break;
            }
            self.conn.consume(n);
            while let Some(event) = self.source.poll_event() {
                if let SourceEvent::Settled { what, refused } = event {
                    self.settled(what, refused);
                }
            }
        }
        Ok(())
    }

    /// Flushes, then waits for the peer's answer to what was sent (settling the
    /// earlier answers that come first).
    async fn reply(&mut self) -> Result<SourceEvent, EngineError> {
        self.flush().await?;
        loop {
            match self.source.poll_event() {
                Some(SourceEvent::Settled { what, refused }) => self.settled(what, refused),
                Some(event) => return Ok(event),
                None => self.read_reply().await?,
            }
        }
    }

    async fn read_reply(&mut self) -> Result<(), EngineError> {
        match self.source.handle_input(self.conn.buffered())? {
            0 if self.conn.fill().await? == 0 => self.source.handle_eof()?,
            0 => {}
            n => self.conn.consume(n),
        }
        Ok(())
    }

    /// A late answer (pipelined): a refusal is shown; a file's ends it.
    fn settled(&mut self, what: Settled, refused: Option<Vec<u8>>) {
        if let Some(text) = &refused {
            self.observer.remote_message(text);
        }
        if what == Settled::FileStatus {
            let read_whole = self.unsettled_files.pop_front().unwrap_or(false);
            self.observer.file_finished(read_whole && refused.is_none());
        }
    }

    /// Flushes and waits for every answer still due.
    async fn settle_all(&mut self) -> Result<(), EngineError> {
        self.flush().await?;
        loop {
            match self.source.poll_event() {
                Some(SourceEvent::Settled { what, refused }) => self.settled(what, refused),
                Some(_) => {}
                None if self.source.wants_input() => self.read_reply().await?,
                None => return Ok(()),
            }
        }
    }

    /// Sends a record whose answer decides nothing: pipelined, it is not waited
    /// for (a refusal is shown when it comes); else as [`Self::exchange`].
    async fn post(&mut self, message: &Message) -> Result<bool, EngineError> {
        if !self.options.pipelined {
            return self.exchange(message).await;
        }
        self.trace(message);
        self.source.send(message)?;
        Ok(true)
    }

    /// Sends `message`; true if the peer accepted it. A refusal's text is shown.
    async fn exchange(&mut self, message: &Message) -> Result<bool, EngineError> {
        self.trace(message);
        self.source.send(message)?;
        match self.reply().await? {
            SourceEvent::Refused(text) => {
                self.observer.remote_message(&text);
                Ok(false)
            }
            _ => Ok(true),
        }
    }

    /// OpenSSH's `-v` trace of what the source sends.
    fn trace(&mut self, message: &Message) {
        let what = match message {
            Message::File(_) => "Sending file modes",
            Message::Dir(_) => "Entering directory",
            Message::Times(_) => "Sending file timestamps",
            _ => return,
        };
        let mut line = Vec::new();
        rscp_proto::wire::encode(message, &mut line);
        line.pop();
        self.observer.debug(&format!("{what}: {}", rscp_proto::display::escape(&line)));
    }

    /// Reports an entry that cannot be sent, to the user and to the peer.
    async fn report(&mut self, text: String) -> Result<(), EngineError> {
        self.observer.local_error(&text);
        self.source.report_error(&text)?;
        self.flush().await
    }

    async fn send_operand(&mut self, operand: &Path) -> Result<(), EngineError> {
        let path = strip_trailing_slashes(operand);
        let name = match operand_name(self.root, &path) {
            Some(name) => name,
            None => {
                return self
                    .report(format!("{}: not a file or directory name", fs::display_path(&path)))
                    .await;
            }
        };
        self.send_entry(&path, name).await
    }

    async fn send_entry(&mut self, path: &Path, name: FileName) -> Result<(), EngineError> {
        if name.contains_newline() {
            return self
                .report(format!("{}: name contains a newline, skipped", fs::display_path(path)))
                .await;
        }
        let (file, meta) = match fs::open_source(self.root, path) {
            Ok(opened) => opened,
            Err(e) => return self.report(fs::path_error(path, &e)).await,
        };
        if meta.is_file() {
            self.send_file(path, name, file, &meta).await
        } else if meta.is_dir() && self.options.recursive {
            drop(file);
            self.send_dir(path, name, &meta).await
        } else {
            self.report(format!("{}: not a regular file", fs::display_path(path))).await
        }
    }

    async fn send_file(
        &mut self,
        path: &Path,
        name: FileName,
        mut file: File,
        meta: &Metadata,
    ) -> Result<(), EngineError> {
        if self.options.preserve && !self.post(&Message::Times(fs::times_of(meta))).await? {
            return Ok(());
        }
        let size = meta.len();
        let header = FileHeader { mode: Mode::from_st_mode(meta.mode()), size, name };
        // A small file is read first: it may go ahead; if not, what was read is sent.
        let mut read_first = None;
        if self.options.pipelined && self.options.ahead && self.limiter.is_none() && size <= AHEAD_MAX {
            let n = usize::try_from(size).unwrap_or(0).min(self.buf.len());
            let read_error = read_chunk(&mut file, &mut self.buf[..n], None);
            if read_error.is_none() && Source::can_send_ahead(&self.buf[..n]) {
                return self.send_ahead(&header, n).await;
            }
            read_first = Some(read_error);
        }
        if !self.exchange(&Message::File(header.clone())).await? {
            return Ok(());
        }
        self.observer.file_started(&header.name, size);
        if let Some(limiter) = self.limiter.as_mut() {
            limiter.restart();
        }
        let mut remaining = size;
        let mut read_error: Option<io::Error> = None;
        while remaining > 0 {
            let chunk_size = if self.limiter.is_some() { LIMITED_CHUNK } else { self.buf.len() };
            let n = usize::try_from(remaining).unwrap_or(usize::MAX).min(chunk_size);
            read_error = match read_first.take() {
                Some(error) => error,
                None => read_chunk(&mut file, &mut self.buf[..n], read_error),
            };
            self.conn.send_payload(&self.buf[..n]).await?;
            self.observer.transferred(n as u64);
            remaining -= n as u64;
            if let Some(limiter) = self.limiter.as_mut() {
                limiter.consume(n).await;
            }
        }
        let error_text = read_error.map(|e| fs::path_error(path, &e));
        if let Some(text) = &error_text {
            self.observer.local_error(text);
        }
        self.source.payload_sent(error_text.as_deref())?;
        if self.options.pipelined {
            self.unsettled_files.push_back(error_text.is_none());
            return Ok(());
        }
        let ok = match self.reply().await? {
            SourceEvent::Refused(text) => {
                self.observer.remote_message(&text);
                false
            }
            _ => error_text.is_none(),
        };
        self.observer.file_finished(ok);
        Ok(())
    }

    /// Sends a file read whole into `buf[..len]` ahead: its `C`, payload and
    /// status go out together, nothing waited for; batches are flushed as they fill.
    async fn send_ahead(&mut self, header: &FileHeader, len: usize) -> Result<(), EngineError> {
        self.trace(&Message::File(header.clone()));
        self.source.send_file_ahead(header, &self.buf[..len])?;
        self.observer.file_started(&header.name, header.size);
        self.observer.transferred(header.size);
        self.unsettled_files.push_back(true);
        self.source.poll_transmit(&mut self.conn.outgoing);
        if self.conn.outgoing.len() >= AHEAD_BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    async fn send_dir(&mut self, path: &Path, name: FileName, meta: &Metadata) -> Result<(), EngineError> {
        let id = (meta.dev(), meta.ino());
        if self.stack.iter().any(|dir| dir.id == id) {
            // A symlink back to an ancestor: OpenSSH would recurse until PATH_MAX.
            return self.report(format!("{}: directory loop, skipped", fs::display_path(path))).await;
        }
        let entries = match self.root.read_dir(path) {
            Ok(entries) => entries,
            Err(e) => return self.report(fs::path_error(path, &e)).await,
        };
        if self.options.preserve && !self.post(&Message::Times(fs::times_of(meta))).await? {
            return Ok(());
        }
        let header = FileHeader { mode: Mode::from_st_mode(meta.mode()), size: 0, name };
        if self.exchange(&Message::Dir(header)).await? {
            self.stack.push(OpenDir { path: path.to_path_buf(), entries, id });
        }
        Ok(())
    }

    /// Sends the entries of every open directory, closing each with `E`.
    async fn drain_dirs(&mut self) -> Result<(), EngineError> {
        while let Some(dir) = self.stack.last_mut() {
            match dir.entries.next() {
                Some(Ok(entry)) => {
                    let path = dir.path.join(&entry);
                    match FileName::new(entry.as_bytes()) {
                        Ok(name) => self.send_entry(&path, name).await?,
                        Err(_) => self.report(format!("{}: invalid name", fs::display_path(&path))).await?,
                    }
                }
                Some(Err(e)) => {
                    // Reading this directory failed: report it and close it.
                    let text = fs::path_error(&dir.path, &e);
                    self.stack.pop();
                    self.report(text).await?;
                    self.post(&Message::EndDir).await?;
                }
                None => {
                    self.stack.pop();
                    self.post(&Message::EndDir).await?;
                }
            }
        }
        Ok(())
    }
}

/// Fills `chunk` from `file`; after a read error (`earlier`, or one now) the
/// rest is zeros, so both sides stay in step (OpenSSH). Returns the error.
fn read_chunk(file: &mut File, chunk: &mut [u8], earlier: Option<io::Error>) -> Option<io::Error> {
    if earlier.is_some() {
        chunk.fill(0);
        return earlier;
    }
    match fs::read_full(file, chunk) {
        Ok(got) if got == chunk.len() => None,
        Ok(got) => {
            chunk[got..].fill(0);
            // A file that shrank: OpenSSH's atomicio reports EPIPE.
            Some(io::Error::from_raw_os_error(libc::EPIPE))
        }
        Err(e) => {
            chunk.fill(0);
            Some(e)
        }
    }
}

/// `dir///` -> `dir`, but `/` stays `/` (OpenSSH strips trailing slashes).
pub(crate) fn strip_trailing_slashes(path: &Path) -> PathBuf {
    let bytes = path.as_os_str().as_bytes();
    let end = bytes.iter().rposition(|&b| b != b'/').map_or(1.min(bytes.len()), |i| i + 1);
    PathBuf::from(OsStr::from_bytes(&bytes[..end]))
}

/// The name an operand is sent under: its last component. For `.` and `..` (which
/// OpenSSH sends as is, and every sink refuses) the real directory's name is used.
pub(crate) fn operand_name(root: &Root, path: &Path) -> Option<FileName> {
    let last = path.as_os_str().as_bytes().rsplit(|&b| b == b'/').next().unwrap_or_default();
    match FileName::new(last) {
        Ok(name) => Some(name),
        Err(_) => FileName::new(root.real_name(path)?.as_bytes()).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_slashes() {
        assert_eq!(strip_trailing_slashes(Path::new("dir///")), Path::new("dir"));
        assert_eq!(strip_trailing_slashes(Path::new("/")), Path::new("/"));
        assert_eq!(strip_trailing_slashes(Path::new("a/b")), Path::new("a/b"));
    }

    #[test]
    fn operand_names() {
        assert_eq!(
            operand_name(&Root::Host, Path::new("a/b.txt")).map(|n| n.display()),
            Some("b.txt".into())
        );
        assert_eq!(operand_name(&Root::Host, Path::new("/")), None);
        let here = std::env::current_dir().expect("cwd");
        let expected = here.file_name().map(|n| n.to_string_lossy().into_owned());
        assert_eq!(operand_name(&Root::Host, Path::new(".")).map(|n| n.display()), expected);
    }
}
