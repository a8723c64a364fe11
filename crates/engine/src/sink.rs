//! `receive`: the sink side over a byte stream, creating files under a target.
//! Serves downloads (the client is the sink) and `rscp -t` (the remote sink).
//!
//! Mirrors OpenSSH's `sink()` where it is safe to (spec §3.2), and differs where
//! DESIGN.md's decisions say better: files are renamed into place only when
//! complete and acknowledged; a file the source reported as failed (padded data)
//! never replaces the destination; symlinks in the target tree are not followed;
//! without `-p` special mode bits are cleared.

use std::path::{Path, PathBuf};

use rscp_proto::filter::NameFilter;
use rscp_proto::sink::{DEFAULT_MAX_DEPTH, Sink, SinkConfig, SinkEvent};
use rscp_proto::{FileHeader, FileName, Mode, Times, wire};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::conn::Conn;
use crate::error::{EngineError, Summary};
use crate::fs::{self, DirEntry, IncomingFile};
use crate::limit::Limiter;
use crate::observer::Observer;
use crate::root::Root;

/// How a sink behaves; the remote command's flags, plus local policy.
#[derive(Debug, Clone)]
pub struct SinkOptions {
    /// `-r`: accept directories.
    pub recursive: bool,
    /// `-p`: apply received modes exactly (times are applied whenever sent).
    pub preserve: bool,
    /// `-d`: the target must be an existing directory.
    pub target_must_be_dir: bool,
    /// Write into existing destination files instead of renaming a new one over them.
    pub inplace: bool,
    /// Applied to received modes of new files and directories without `-p`.
    pub umask: u32,
    /// `-l`: payload rate limit in Kbit/s.
    pub limit_kbits: Option<u64>,
    /// Top-level names to accept (CVE-2019-6111); `None` for a remote sink or `-T`.
    pub filter: Option<NameFilter>,
    pub max_depth: usize,
    /// Replies sent ahead so the source never waits for one (see
    /// `SinkConfig::reply_credit`); 0 for a remote sink, which must answer
    /// exactly as OpenSSH's does.
    pub reply_credit: usize,
}

/// The reply credit a client gives a remote source on downloads: enough for
/// dozens of small files in flight, a few hundred bytes the source may never read.
pub const DOWNLOAD_REPLY_CREDIT: usize = 128;

impl Default for SinkOptions {
    fn default() -> Self {
        SinkOptions {
            recursive: false,
            preserve: false,
            target_must_be_dir: false,
            inplace: false,
            limit_kbits: None,
            umask: 0o022,
            filter: None,
            max_depth: DEFAULT_MAX_DEPTH,
            reply_credit: 0,
        }
    }
}

/// A directory entered by a `D` record, finished when its `E` arrives.
#[derive(Debug)]
struct EnteredDir {
    path: PathBuf,
    created: bool,
    mode: Mode,
    times: Option<Times>,
}

/// A file whose payload has arrived, awaiting the source's status byte.
#[derive(Debug)]
struct ReceivedFile {
    file: IncomingFile,
    header: FileHeader,
    times: Option<Times>,
    write_error: Option<std::io::Error>,
}

/// Receives records and files from the peer into `target` until the peer ends the
/// session. Returns the error count, or the reason the session broke off (the peer
/// has been told, where the protocol allows).
pub async fn receive<R, W>(
    conn: &mut Conn<R, W>,
    target: &Path,
    options: &SinkOptions,
    observer: &mut dyn Observer,
) -> Result<Summary, EngineError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    receive_in(conn, &Root::Host, target, options, observer).await
}

/// [`receive`] with every path resolved in `root`.
pub async fn receive_in<R, W>(
    conn: &mut Conn<R, W>,
    root: &Root,
    target: &Path,
    options: &SinkOptions,
    observer: &mut dyn Observer,
) -> Result<Summary, EngineError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let target_is_dir = match root.metadata(target) {
        Ok(meta) if meta.is_dir() => true,
        Ok(_) if options.target_must_be_dir => {
            return refuse(conn, format!("{}: Not a directory", fs::display_path(target)), observer).await;
        }
        Err(e) if options.target_must_be_dir => {
            return refuse(conn, fs::path_error(target, &e), observer).await;
        }
        _ => false,
    };
    let mut receiver = Receiver {
        sink: Sink::new(SinkConfig {
            recursive: options.recursive,
            filter: options.filter.clone(),
            max_depth: options.max_depth,
            reply_credit: options.reply_credit,
        }),
        options,
        root,
        target,
        target_is_dir,
        dirs: Vec::new(),
        received: None,
        local_errors: 0,
        limiter: options.limit_kbits.map(Limiter::from_kbits),
    };
    let result = receiver.run(conn, observer).await;
    // Whatever happened, the peer gets the replies the sink queued (an error reply).
    receiver.sink.poll_transmit(&mut conn.outgoing);
    let flushed = conn.send_outgoing().await;
    result?;
    if options.reply_credit == 0 {
        flushed?;
    }
    Ok(Summary { errors: receiver.sink.error_count() + receiver.local_errors })
}

async fn refuse<R, W>(
    conn: &mut Conn<R, W>,
    text: String,
    observer: &mut dyn Observer,
) -> Result<Summary, EngineError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    observer.local_error(&text);
    wire::encode_error(&text, &mut conn.outgoing);
    conn.send_outgoing().await?;
    Err(EngineError::Refused(text))
}

#[derive(Debug)]
struct Receiver<'a> {
    sink: Sink,
    options: &'a SinkOptions,
    root: &'a Root,
    target: &'a Path,
    target_is_dir: bool,
    dirs: Vec<EnteredDir>,
    received: Option<ReceivedFile>,
    local_errors: u32,
    limiter: Option<Limiter>,
}

impl Receiver<'_> {
    async fn run<R, W>(
        &mut self,
        conn: &mut Conn<R, W>,
        observer: &mut dyn Observer,
    ) -> Result<(), EngineError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        loop {
            while let Some(event) = self.sink.poll_event() {
                self.handle_event(event, conn, observer).await?;
            }
            // Answers to the events, or to the last record, go out before we read on.
            self.sink.poll_transmit(&mut conn.outgoing);
            self.send_replies(conn).await?;
            if self.sink.is_finished() {
                return Ok(());
            }
            if self.sink.wants_input() {
                match self.sink.handle_input(conn.buffered())? {
                    0 if conn.fill().await? == 0 => self.sink.handle_eof(conn.buffered())?,
                    0 => {}
                    n => {
                        trace_record(&conn.buffered()[..n], observer);
                        conn.consume(n);
                    }
                }
            }
        }
    }

    /// Sends the queued replies. With reply credit they are only queued: the
    /// next read sends them while it reads (`Conn::fill`), since waiting for
    /// a write while the source streams could wait for ever. A source that has
    /// had all it needs ends without reading the rest, so with credit a write
    /// to a closed stream is no error: what the stream holds, read on, says
    /// whether all arrived.
    async fn send_replies<R, W>(&mut self, conn: &mut Conn<R, W>) -> Result<(), EngineError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        if self.options.reply_credit > 0 {
            return Ok(());
        }
        Ok(conn.send_outgoing().await?)
    }

    /// Where a received name goes: inside the current directory, or the target
    /// itself when the target is not a directory (OpenSSH's rule).
    fn destination(&self, name: &FileName) -> PathBuf {
        match self.dirs.last() {
            Some(dir) => dir.path.join(name.as_os_str()),
            None if self.target_is_dir => self.target.join(name.as_os_str()),
            None => self.target.to_path_buf(),
        }
    }

    async fn handle_event<R, W>(
        &mut self,
        event: SinkEvent,
        conn: &mut Conn<R, W>,
        observer: &mut dyn Observer,
    ) -> Result<(), EngineError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        match event {
            SinkEvent::EnterDir { header, times } => {
                let path = self.destination(&header.name);
                match fs::enter_dir(self.root, &path, header.mode, self.options.preserve) {
                    Ok(entry) => {
                        self.dirs.push(EnteredDir {
                            path,
                            created: entry == DirEntry::Created,
                            mode: header.mode,
                            times,
                        });
                        self.sink.dir_entered(Ok(()));
                    }
                    Err(e) => {
                        let text = fs::path_error(&path, &e);
                        observer.local_error(&text);
                        self.sink.dir_entered(Err(text));
                    }
                }
            }
            SinkEvent::LeaveDir => {
                if let Some(dir) = self.dirs.pop() {
                    let mode = (dir.created || self.options.preserve)
                        .then(|| fs::new_mode(dir.mode, self.options.preserve, self.options.umask));
                    if let Err(e) = fs::finish_dir(self.root, &dir.path, mode, dir.times.as_ref()) {
                        // The `E` is already acknowledged: report here, count it.
                        self.local_errors += 1;
                        observer.local_error(&fs::path_error(&dir.path, &e));
                    }
                }
            }
            SinkEvent::File { header, times } => {
                let path = self.destination(&header.name);
                let mut file = match IncomingFile::create(self.root, &path, self.options.inplace) {
                    Ok(file) => file,
                    Err(e) => {
                        let text = fs::path_error(&path, &e);
                        observer.local_error(&text);
                        self.sink.file_opened(Err(text));
                        return Ok(());
                    }
                };
                self.sink.file_opened(Ok(()));
                self.sink.poll_transmit(&mut conn.outgoing);
                self.send_replies(conn).await?;
                observer.file_started(&header.name, header.size);
                if let Some(limiter) = self.limiter.as_mut() {
                    limiter.restart();
                }
                // On the first write error keep draining, to stay in step (OpenSSH).
                let mut write_error = None;
                conn.receive_payload(header.size, self.limiter.as_mut(), |chunk| {
                    if write_error.is_none() {
                        write_error = file.write_chunk(chunk).err();
                    }
                    observer.transferred(chunk.len() as u64);
                })
                .await?;
                self.sink.payload_received();
                self.received = Some(ReceivedFile { file, header, times, write_error });
            }
            SinkEvent::FileStatus { source_error } => {
                let Some(received) = self.received.take() else {
                    return Ok(());
                };
                if let Some(text) = &source_error {
                    observer.remote_message(text);
                }
                let path = received.file.destination().to_path_buf();
                let result = match (received.write_error, &source_error) {
                    (Some(e), _) => Err(fs::path_error(&path, &e)),
                    // The source padded what it could not read: keep the old file.
                    (None, Some(_)) => Ok(()),
                    (None, None) => received
                        .file
                        .commit(
                            received.header.size,
                            received.header.mode,
                            self.options.preserve,
                            self.options.umask,
                            received.times.as_ref(),
                        )
                        .map_err(|e| fs::path_error(&path, &e)),
                };
                if let Err(text) = &result {
                    observer.local_error(text);
                }
                observer.file_finished(result.is_ok() && source_error.is_none());
                self.sink.file_done(result);
            }
            SinkEvent::SkipPayload { size } => {
                conn.receive_payload(size, None, |_| {}).await?;
                self.sink.payload_received();
            }
            SinkEvent::Warning(text) => observer.remote_message(&text),
            SinkEvent::Finished => {}
            _ => {}
        }
        Ok(())
    }
}

/// OpenSSH's remote `-v` trace of each record the sink reads: `Sink: C0644 6 a.txt`.
fn trace_record(line: &[u8], observer: &mut dyn Observer) {
    if let [b'C' | b'D' | b'E' | b'T', ..] = line {
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        observer.debug(&format!("Sink: {}", rscp_proto::display::escape(text)));
    }
}
