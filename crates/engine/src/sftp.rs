//! `rscp -s`, the SFTP client: `upload` sends local files and trees to an SFTP
//! server as OpenSSH's scp does in its SFTP mode, with the requests pipelined;
//! `download` (in `download.rs`) fetches remote files and trees; a large upload
//! may go over two connections (`parallel.rs`). One `Session` type carries the
//! requests in flight and the replies for all three.
//!
//! The semantics and the messages are OpenSSH's (`source_sftp`, `do_upload`,
//! `upload_dir`): the remote target is taken literally (no glob, no shell), bar a
//! leading `~`; several sources make the target a directory, created if need be;
//! each file is opened with `WRITE|CREAT|TRUNC` and its mode, written, given its
//! times and mode with `-p`, and closed; each directory is made (or found) and
//! given its mode at the end, its times too with `-p`.
//!
//! Unlike OpenSSH, which waits for every file's OPEN, CLOSE and status in turn (so
//! that a tree of small files costs several round trips each), requests go out
//! without waiting, bounded by [`MAX_FILES`] open at once and [`MAX_BYTES`] of
//! writes unanswered. The only waits are those that decide what to send next: the
//! OPEN's handle before a file's writes, a directory's MKDIR (and STAT) before its
//! contents. SFTP servers answer requests in order, and must for one handle, so a
//! CLOSE may follow its writes at once.
//!
//! A missing local source is reported and skipped, where OpenSSH's scp exits:
//! the other sources still arrive.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rscp_proto::FileName;
use rscp_proto::display::escape;
use rscp_proto::sftp::{self, Attrs, Reply, request};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::conn::Conn;
use crate::error::{EngineError, Summary};
use crate::fs;
use crate::limit::{LIMITED_CHUNK, Limiter};
use crate::observer::Observer;
use crate::root::{Entries, MetadataExt as _, Root};
mod ahead;
mod download;
mod parallel;

use crate::source::{operand_name, strip_trailing_slashes};
use ahead::ReadAhead;
pub use download::download;
pub use parallel::SPLIT_MIN;
pub use parallel::SecondConnection;
use parallel::{Lockstep, Opener, RangeFailure, write_range};

/// Files open on the server at once (OpenSSH's server allows hundreds).
const MAX_FILES: usize = 64;
/// Write data sent and not yet answered: enough to keep a 40 ms link busy.
const MAX_BYTES: u64 = 8 * 1024 * 1024;
/// WRITE length when the server does not say (OpenSSH's default).
const DEFAULT_WRITE: u32 = 32 * 1024;
/// The longest WRITE sent, whatever the server allows: a whole read buffer.
const LONGEST_WRITE: u32 = 255 * 1024;
/// Queued requests are sent once this much is waiting.
const SEND_AT: usize = 128 * 1024;

const EXT_LIMITS: &[u8] = b"limits@openssh.com";
const EXT_EXPAND_PATH: &[u8] = b"expand-path@openssh.com";

/// How an SFTP copy behaves: the client's flags.
#[derive(Debug, Clone, Copy, Default)]
pub struct SftpOptions {
    /// `-r`: copy directories as trees.
    pub recursive: bool,
    /// `-p`: give files and directories their times and modes.
    pub preserve: bool,
    /// `-l`: payload rate limit in Kbit/s.
    pub limit_kbits: Option<u64>,
    /// `--inplace` (downloads): write into existing files instead of replacing them.
    pub inplace: bool,
}

/// Uploads `sources` to `target` (the remote path as typed) over an SFTP
/// session on `conn`. Per-file problems are reported and counted; the copy goes
/// on. Returns the error count, or why the session broke off.
///
/// `second`, a second connection opened on demand, writes the second half of
/// every file of [`SPLIT_MIN`] or more (see `parallel`); it is opened when the
/// first such file comes, and left alone if it fails to open or start.
pub async fn upload<R, W>(
    conn: &mut Conn<R, W>,
    second: SecondConnection<'_, R, W>,
    sources: &[PathBuf],
    target: &[u8],
    options: SftpOptions,
    observer: &mut dyn Observer,
) -> Result<Summary, EngineError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut session = Session::new(conn, second, options, observer);
    let can_expand = session.start().await?;
    let Some(prepared) = session.prepare_target(target, can_expand).await? else {
        return Ok(Summary { errors: session.errors.max(1) });
    };
    let target_display = String::from_utf8_lossy(target).into_owned();
    let mut target_is_dir = session.stat(&prepared).await?.is_some_and(|a| a.is_dir());
    for source in sources {
        session
            .upload_operand(source, &prepared, &mut target_is_dir, sources.len() > 1, &target_display)
            .await?;
        if session.stopped {
            break;
        }
    }
    session.settle_all().await?;
    session.close_helper().await;
    Ok(Summary { errors: session.errors })
}

/// What an unanswered request was for.
#[derive(Debug)]
enum Pending {
    /// OPEN of a job's file: its handle comes back.
    Open(u64),
    /// WRITE of a job's data (its length).
    Write(u64, u64),
    /// FSETSTAT before a job's CLOSE (`-p`).
    Fsetstat(u64),
    Close(u64),
    /// SETSTAT of a finished directory (its remote path).
    DirSetstat(Vec<u8>),
    /// A request awaited by [`Session::call`] or [`Session::stat`]: its reply is
    /// kept until taken.
    Awaited,
    /// OPEN of a download: its handle comes back.
    OpenRead(u64),
    /// READ of a download: (job, offset, length).
    Read(u64, u64, u64),
    /// CLOSE of a file downloaded whole: only a refusal matters.
    ReadClose,
    /// `limits@openssh.com`, asked at the start and not waited for.
    Limits,
}

/// A request on an open file, for its reply's wording.
#[derive(Debug, Clone, Copy)]
enum JobRequest {
    Write,
    Fsetstat,
    Close,
}

/// One file on its way: opened, written, closed.
struct Job {
    local: PathBuf,
    remote: Vec<u8>,
    file: File,
    size: u64,
    /// The next offset to send.
    offset: u64,
    handle: Option<Vec<u8>>,
    /// FSETSTAT with `-p`: mode and times.
    final_attrs: Option<Attrs>,
    /// Replies still due for this file.
    awaiting: u32,
    /// A read of the local file failed: the rest is not sent, the file fails.
    read_failed: bool,
    failed: bool,
    closing: bool,
    /// Part of a tree (OpenSSH words failures inside trees differently).
    in_tree: bool,
}

/// The answer to an awaited request.
enum Answer {
    Status(u32),
    Attrs(Attrs),
    Handle(Vec<u8>),
    /// NAME: each entry's file name and attributes.
    Names(Vec<(Vec<u8>, Attrs)>),
    Extended(Vec<u8>),
}

/// The second connection for large files, through its life.
enum Helper<'a, R, W> {
    None,
    /// Not opened yet: this opens it.
    Unopened(Opener<'a, R, W>),
    Ready(Lockstep<R, W>),
    /// Failed to open or start, or its connection broke: large files go whole.
    Broken,
}

struct Session<'a, R, W> {
    conn: &'a mut Conn<R, W>,
    helper: Helper<'a, R, W>,
    observer: &'a mut dyn Observer,
    options: SftpOptions,
    next_id: u32,
    pending: HashMap<u32, Pending>,
    /// Replies to awaited requests, until taken.
    answers: HashMap<u32, Answer>,
    jobs: HashMap<u64, Job>,
    next_job: u64,
    bytes_unanswered: u64,
    write_len: u32,
    /// READ length: the server's limit if it says, else OpenSSH's default.
    read_len: u32,
    /// The server's limits are asked for and not yet answered: no READ or
    /// WRITE is sized until they are.
    limits_asked: bool,
    /// The files being downloaded, by job.
    downloads: HashMap<u64, download::Incoming>,
    /// How much file data to keep asked for.
    ahead: ReadAhead,
    errors: u32,
    /// Something under the current top-level source failed.
    operand_failed: bool,
    /// The target directory several sources need could not be made: no source goes.
    stopped: bool,
    limiter: Option<Limiter>,
}

impl<'a, R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Session<'a, R, W> {
    fn new(
        conn: &'a mut Conn<R, W>,
        second: SecondConnection<'a, R, W>,
        options: SftpOptions,
        observer: &'a mut dyn Observer,
    ) -> Session<'a, R, W> {
        Session {
            conn,
            helper: second.opener.map_or(Helper::None, Helper::Unopened),
            observer,
            options,
            next_id: 0,
            pending: HashMap::new(),
            answers: HashMap::new(),
            jobs: HashMap::new(),
            next_job: 0,
            bytes_unanswered: 0,
            write_len: DEFAULT_WRITE,
            read_len: DEFAULT_WRITE,
            limits_asked: false,
            downloads: HashMap::new(),
            ahead: ReadAhead::default(),
            errors: 0,
            operand_failed: false,
            stopped: false,
            limiter: options.limit_kbits.map(Limiter::from_kbits),
        }
    }

    /// INIT and VERSION, and asks for the server's limits (the answer comes
    /// with the first STAT's, a round trip saved); true if it expands `~user` paths.
    async fn start(&mut self) -> Result<bool, EngineError> {
        let extensions = self.init().await?;
        if extensions.iter().any(|e| e == EXT_LIMITS) {
            let id = self.id();
            request::extended(&mut self.conn.outgoing, id, EXT_LIMITS);
            self.pending.insert(id, Pending::Limits);
            self.limits_asked = true;
        }
        Ok(extensions.iter().any(|e| e == EXT_EXPAND_PATH))
    }

    fn error(&mut self, text: String) {
        self.observer.local_error(&text);
        self.errors += 1;
        self.operand_failed = true;
    }

    fn id(&mut self) -> u32 {
        self.next_id = self.next_id.wrapping_add(1);
        self.next_id
    }

    /// INIT, and the server's VERSION: returns the names of its extensions.
    async fn init(&mut self) -> Result<Vec<Vec<u8>>, EngineError> {
        request::init(&mut self.conn.outgoing);
        self.conn.send_outgoing().await?;
        loop {
            match Reply::parse(self.conn.buffered()) {
                Ok(Some((Reply::Version { version, extensions }, used))) => {
                    let names = extensions.iter().map(|(name, _)| name.to_vec()).collect();
                    self.conn.consume(used);
                    if version != 3 {
                        return Err(protocol(format!("server speaks SFTP version {version}, not 3")));
                    }
                    return Ok(names);
                }
                Ok(Some(_)) | Err(_) => return Err(protocol("the server did not answer as an SFTP server")),
                Ok(None) => self.fill().await?,
            }
        }
    }

    /// Waits for the answer to `limits@openssh.com`, if it was asked and is
    /// not here yet (a server that answers out of order).
    async fn await_limits(&mut self) -> Result<(), EngineError> {
        loop {
            self.take_replies()?;
            if !self.limits_asked {
                return Ok(());
            }
            self.fill().await?;
        }
    }

    /// `limits@openssh.com`'s answer: the longest READ and WRITE the server
    /// takes (anything else leaves OpenSSH's defaults).
    fn take_limits(&mut self, answer: Answer) {
        self.limits_asked = false;
        if let Answer::Extended(data) = answer {
            let mut r = sftp::Reader::new(&data);
            let (_packet, read, write) = (r.u64(), r.u64(), r.u64());
            let clamp = |len: u64| u32::try_from(len).unwrap_or(LONGEST_WRITE).min(LONGEST_WRITE);
            if let Ok(write) = write
                && write > 0
            {
                self.write_len = clamp(write);
            }
            if let Ok(read) = read
                && read > 0
            {
                self.read_len = clamp(read);
            }
        }
    }

    /// The target as OpenSSH's `prepare_remote_path` makes it: empty or `~` is
    /// the login directory (`.`), `~/x` is `x`, `~user/x` needs the server's
    /// `expand-path` extension. Anything else is taken as it is.
    async fn prepare_target(
        &mut self,
        target: &[u8],
        can_expand: bool,
    ) -> Result<Option<Vec<u8>>, EngineError> {
        if target.is_empty() || target == b"~" {
            return Ok(Some(b".".to_vec()));
        }
        if let Some(rest) = target.strip_prefix(b"~/") {
            // `~//x` is `x`, not `/x`: every slash after the tilde goes.
            let start = rest.iter().position(|&b| b != b'/').unwrap_or(rest.len());
            let rest = &rest[start..];
            return Ok(Some(if rest.is_empty() { b".".to_vec() } else { rest.to_vec() }));
        }
        if !target.starts_with(b"~") {
            return Ok(Some(target.to_vec()));
        }
        if !can_expand {
            self.error("server expand-path extension is required for ~user paths in SFTP mode".into());
            return Ok(None);
        }
        let id = self.id();
        let start = sftp::begin(&mut self.conn.outgoing, sftp::FXP_EXTENDED, id);
        sftp::put_str(&mut self.conn.outgoing, EXT_EXPAND_PATH);
        sftp::put_str(&mut self.conn.outgoing, target);
        sftp::finish(&mut self.conn.outgoing, start);
        match self.await_answer(id).await? {
            Answer::Names(names) if !names.is_empty() => Ok(names.into_iter().next().map(|(path, _)| path)),
            Answer::Status(code) => {
                self.error(format!("expand path \"{}\": {}", escape(target), sftp::status_text(code)));
                Ok(None)
            }
            _ => Err(protocol("unexpected reply to expand-path")),
        }
    }

    /// STAT (following links): the attributes, or None if there is nothing there.
    async fn stat(&mut self, path: &[u8]) -> Result<Option<Attrs>, EngineError> {
        let id = self.id();
        request::path(&mut self.conn.outgoing, sftp::FXP_STAT, id, path);
        match self.await_answer(id).await? {
            Answer::Attrs(attrs) => Ok(Some(attrs)),
            Answer::Status(_) => Ok(None),
            _ => Err(protocol("unexpected reply to STAT")),
        }
    }

    /// Sends one request that answers with a status and waits for it.
    async fn call(&mut self, put: impl FnOnce(&mut Vec<u8>, u32)) -> Result<Result<(), u32>, EngineError> {
        let id = self.id();
        put(&mut self.conn.outgoing, id);
        match self.await_answer(id).await? {
            Answer::Status(sftp::FX_OK) => Ok(Ok(())),
            Answer::Status(code) => Ok(Err(code)),
            _ => Err(protocol("unexpected reply to a request answered by a status")),
        }
    }

    /// Sends what is queued and waits for the answer to request `id`, handling
    /// every other reply on the way.
    ///
    /// Every caller queues its request just before, so the wait is at least
    /// one round trip: the read-ahead takes it as a sample of the link's.
    async fn await_answer(&mut self, id: u32) -> Result<Answer, EngineError> {
        let asked = Instant::now();
        self.pending.insert(id, Pending::Awaited);
        loop {
            self.take_replies()?;
            if let Some(answer) = self.answers.remove(&id) {
                self.ahead.round_trip(asked.elapsed());
                return Ok(answer);
            }
            self.fill().await?;
        }
    }

    /// Reads more replies (sending what is queued meanwhile); end of stream is an error.
    async fn fill(&mut self) -> Result<(), EngineError> {
        fill(self.conn).await
    }

    /// Handles every whole reply received so far.
    fn take_replies(&mut self) -> Result<(), EngineError> {
        loop {
            let (id, answer, used) = match Reply::parse(self.conn.buffered()) {
                Ok(None) => return Ok(()),
                Err(_) => return Err(malformed()),
                Ok(Some((reply, used))) => {
                    let (id, answer) = match reply {
                        Reply::Status { id, code, .. } => (id, Answer::Status(code)),
                        Reply::Attrs { id, attrs } => (id, Answer::Attrs(attrs)),
                        Reply::Handle { id, handle } => (id, Answer::Handle(handle.to_vec())),
                        Reply::Name { id, entries } => {
                            let names =
                                entries.into_iter().map(|(name, _, attrs)| (name.to_vec(), attrs)).collect();
                            (id, Answer::Names(names))
                        }
                        Reply::Extended { id, data } => (id, Answer::Extended(data.to_vec())),
                        Reply::Data { id, data } => {
                            // File data goes from the receive buffer to the file.
                            let Some(Pending::Read(job, offset, len)) = self.pending.remove(&id) else {
                                return Err(protocol("unexpected DATA from the server"));
                            };
                            let got = data.len() as u64;
                            // More than asked for is refused before anything is written.
                            let written = match self.downloads.get_mut(&job) {
                                Some(incoming) if got <= len => incoming.write_at(offset, data),
                                _ => Ok(()),
                            };
                            self.conn.consume(used);
                            self.ahead.answered(id, got);
                            self.read_answered(job, (offset, len, got), written)?;
                            continue;
                        }
                        Reply::Version { .. } => {
                            return Err(protocol("unexpected reply from the server"));
                        }
                    };
                    (id, answer, used)
                }
            };
            self.conn.consume(used);
            self.handle_reply(id, answer)?;
        }
    }

    fn handle_reply(&mut self, id: u32, answer: Answer) -> Result<(), EngineError> {
        let Some(pending) = self.pending.remove(&id) else {
            return Err(protocol(format!("reply to an unknown request ({id})")));
        };
        let code = match &answer {
            Answer::Status(code) => Some(*code),
            _ => None,
        };
        match pending {
            Pending::Awaited => {
                self.answers.insert(id, answer);
            }
            Pending::Limits => self.take_limits(answer),
            Pending::ReadClose => {
                if let Some(code) = code.filter(|&c| c != sftp::FX_OK) {
                    self.error(format!("close remote: {}", sftp::status_text(code)));
                }
            }
            Pending::Read(job, offset, len) => match answer {
                Answer::Status(code) => {
                    self.ahead.answered(id, 0);
                    self.read_refused(job, (offset, len), code);
                }
                _ => return Err(protocol("unexpected reply to READ")),
            },
            Pending::OpenRead(job) => self.download_opened(job, answer)?,
            Pending::Open(job) => match answer {
                Answer::Handle(handle) => {
                    if let Some(job) = self.jobs.get_mut(&job) {
                        job.awaiting -= 1;
                        job.handle = Some(handle);
                    }
                }
                _ => {
                    let code = code.unwrap_or(sftp::FX_FAILURE);
                    if let Some(job) = self.jobs.remove(&job) {
                        self.error(format!(
                            "dest open \"{}\": {}",
                            escape(&job.remote),
                            sftp::status_text(code)
                        ));
                        self.job_failed_message(&job);
                        self.observer.file_finished(false);
                    }
                }
            },
            Pending::Write(job, len) => {
                self.bytes_unanswered -= len;
                self.job_reply(job, code, JobRequest::Write)?;
            }
            Pending::Fsetstat(job) => self.job_reply(job, code, JobRequest::Fsetstat)?,
            Pending::Close(job) => self.job_reply(job, code, JobRequest::Close)?,
            Pending::DirSetstat(path) => {
                // Said, not counted: OpenSSH's scp goes on and exits 0.
                if let Some(code) = code.filter(|&c| c != sftp::FX_OK) {
                    let text = format!("remote setstat \"{}\": {}", escape(&path), sftp::status_text(code));
                    self.observer.local_error(&text);
                }
            }
        }
        Ok(())
    }

    /// A status for one of a job's requests after its OPEN, worded as OpenSSH
    /// 9.2's scp words it. A refused FSETSTAT (`-p`) is said but fails nothing,
    /// as there.
    fn job_reply(&mut self, job_id: u64, code: Option<u32>, request: JobRequest) -> Result<(), EngineError> {
        let Some(code) = code else { return Err(protocol("unexpected reply to a file request")) };
        let Some(job) = self.jobs.get_mut(&job_id) else { return Ok(()) };
        job.awaiting -= 1;
        if code != sftp::FX_OK {
            let text = sftp::status_text(code);
            match request {
                JobRequest::Fsetstat => self.observer.local_error(&format!("remote fsetstat: {text}")),
                JobRequest::Close => {
                    job.failed = true;
                    self.error(format!("close remote: {text}"));
                }
                JobRequest::Write if !job.failed => {
                    job.failed = true;
                    let text = format!("write remote \"{}\": {text}", escape(&job.remote));
                    self.error(text);
                }
                JobRequest::Write => {}
            }
        }
        let done = self.jobs.get(&job_id).is_some_and(|job| job.closing && job.awaiting == 0);
        if done && let Some(job) = self.jobs.remove(&job_id) {
            let ok = !job.failed && !job.read_failed;
            if !ok {
                self.operand_failed = true;
                if job.failed {
                    self.job_failed_message(&job);
                }
            }
            self.observer.file_finished(ok);
        }
        Ok(())
    }

    /// OpenSSH's line after a failed file inside a tree.
    fn job_failed_message(&mut self, job: &Job) {
        self.tree_file_failed(&job.local, &job.remote, job.in_tree);
    }

    fn tree_file_failed(&mut self, local: &Path, remote: &[u8], in_tree: bool) {
        if in_tree {
            let text = format!("upload \"{}\" to \"{}\" failed", fs::display_path(local), escape(remote));
            self.observer.local_error(&text);
        }
    }

    /// Sends what the open files can send now: writes while the window allows,
    /// then (with `-p`) FSETSTAT, and CLOSE once a file is all sent.
    async fn pump(&mut self) -> Result<(), EngineError> {
        let ready: Vec<u64> = self
            .jobs
            .iter()
            .filter(|(_, job)| job.handle.is_some() && !job.closing)
            .map(|(&id, _)| id)
            .collect();
        if !ready.is_empty() && self.limits_asked {
            // The first WRITE is sized by the server's limits.
            self.await_limits().await?;
        }
        for job_id in ready {
            self.pump_job(job_id).await?;
        }
        if self.conn.outgoing.len() >= SEND_AT {
            self.send().await?;
        }
        Ok(())
    }

    async fn pump_job(&mut self, job_id: u64) -> Result<(), EngineError> {
        loop {
            let id = self.id();
            let Some(job) = self.jobs.get_mut(&job_id) else { return Ok(()) };
            let Some(handle) = job.handle.clone() else { return Ok(()) };
            if job.offset >= job.size || job.read_failed || job.failed {
                if let Some(attrs) = job.final_attrs.take() {
                    request::fsetstat(&mut self.conn.outgoing, id, &handle, &attrs);
                    self.pending.insert(id, Pending::Fsetstat(job_id));
                    if let Some(job) = self.jobs.get_mut(&job_id) {
                        job.awaiting += 1;
                    }
                }
                let id = self.id();
                request::handle(&mut self.conn.outgoing, sftp::FXP_CLOSE, id, &handle);
                self.pending.insert(id, Pending::Close(job_id));
                if let Some(job) = self.jobs.get_mut(&job_id) {
                    job.awaiting += 1;
                    job.closing = true;
                }
                return Ok(());
            }
            if self.bytes_unanswered >= MAX_BYTES {
                return Ok(());
            }
            let chunk = if self.limiter.is_some() { LIMITED_CHUNK as u32 } else { self.write_len };
            let want = usize::try_from((job.size - job.offset).min(u64::from(chunk))).unwrap_or(0);
            // The file is read straight into the packet, after room for its header
            // (whose length field waits for what the read got): no copy of the data.
            let mut header = Vec::with_capacity(64);
            request::write_header(&mut header, id, &handle, job.offset, 0);
            let out = &mut self.conn.outgoing;
            let start = out.len();
            let data_start = start + header.len();
            out.resize(data_start + want, 0);
            let got = match fs::read_full(&mut job.file, &mut out[data_start..]) {
                Ok(got) => got,
                Err(e) => {
                    out.truncate(start);
                    job.read_failed = true;
                    let text =
                        format!("read local \"{}\": {}", fs::display_path(&job.local), fs::errno_text(&e));
                    self.error(text);
                    continue;
                }
            };
            if got == 0 {
                // The file shrank: what was sent is the file (OpenSSH's SFTP mode).
                out.truncate(start);
                job.size = job.offset;
                continue;
            }
            out.truncate(data_start + got);
            header.clear();
            let len = u32::try_from(got).unwrap_or(u32::MAX);
            request::write_header(&mut header, id, &handle, job.offset, len);
            out[start..data_start].copy_from_slice(&header);
            job.offset += u64::from(len);
            job.awaiting += 1;
            self.pending.insert(id, Pending::Write(job_id, u64::from(len)));
            self.bytes_unanswered += u64::from(len);
            self.observer.transferred(u64::from(len));
            if let Some(limiter) = self.limiter.as_mut() {
                limiter.consume(len as usize).await;
            }
            if self.conn.outgoing.len() >= SEND_AT {
                self.send().await?;
            }
        }
    }

    /// Sends what is queued, handling the replies that arrive meanwhile.
    async fn send(&mut self) -> Result<(), EngineError> {
        while !self.conn.send_outgoing_reading().await? {
            self.take_replies()?;
        }
        self.take_replies()
    }

    /// Waits until fewer than `files` files are open and the write window has
    /// room, sending and handling replies meanwhile.
    async fn make_room(&mut self, files: usize) -> Result<(), EngineError> {
        loop {
            self.take_replies()?;
            self.pump().await?;
            if self.jobs.len() < files && self.bytes_unanswered < MAX_BYTES {
                return Ok(());
            }
            self.fill().await?;
        }
    }

    /// Waits for every reply still due.
    async fn settle_all(&mut self) -> Result<(), EngineError> {
        loop {
            self.take_replies()?;
            self.pump().await?;
            if self.pending.is_empty() {
                self.send().await?;
                return Ok(());
            }
            self.fill().await?;
        }
    }

    async fn upload_operand(
        &mut self,
        source: &Path,
        target: &[u8],
        target_is_dir: &mut bool,
        several: bool,
        target_display: &str,
    ) -> Result<(), EngineError> {
        self.operand_failed = false;
        let path = strip_trailing_slashes(source);
        let meta = match std::fs::metadata(&path) {
            Ok(meta) => meta,
            Err(e) => {
                self.error(format!("stat local \"{}\": {}", fs::display_path(&path), fs::errno_text(&e)));
                return Ok(());
            }
        };
        if several && !*target_is_dir {
            // Several sources need a directory: OpenSSH makes it (writable by us).
            let attrs = Attrs { permissions: Some((meta.mode() | 0o700) & 0o7777), ..Attrs::default() };
            match self.call(|out, id| request::path_attrs(out, sftp::FXP_MKDIR, id, target, &attrs)).await? {
                Ok(()) => *target_is_dir = true,
                Err(code) => {
                    // No directory for the sources: OpenSSH's scp stops here too.
                    let text = format!("remote mkdir \"{}\": {}", escape(target), sftp::status_text(code));
                    self.error(text);
                    self.stopped = true;
                    return Ok(());
                }
            }
        }
        let Some(name) = operand_name(&Root::Host, &path) else {
            self.error(format!("{}: not a file or directory name", fs::display_path(&path)));
            return Ok(());
        };
        let destination = if *target_is_dir { path_append(target, name.as_bytes()) } else { target.to_vec() };
        let is_dir = meta.is_dir();
        if is_dir && self.options.recursive {
            self.upload_tree(&path, &destination).await?;
        } else {
            self.upload_file(&path, &destination, &name, false).await?;
        }
        // The "failed to upload" line needs this operand's outcome: wait for it.
        self.settle_all().await?;
        if self.operand_failed {
            let what = if is_dir && self.options.recursive { "directory" } else { "file" };
            let text = format!("failed to upload {what} {} to {target_display}", fs::display_path(&path));
            self.observer.local_error(&escape(text.as_bytes()));
        }
        Ok(())
    }

    /// Starts one file: opens the local file and sends the OPEN; the rest follows
    /// as replies come ([`Self::pump`]).
    async fn upload_file(
        &mut self,
        local: &Path,
        remote: &[u8],
        name: &FileName,
        in_tree: bool,
    ) -> Result<(), EngineError> {
        let (file, meta) = match fs::open_source(&Root::Host, local) {
            Ok(opened) => opened,
            Err(e) => {
                self.error(format!("open local \"{}\": {}", fs::display_path(local), fs::errno_text(&e)));
                return Ok(());
            }
        };
        if !meta.is_file() {
            self.error(format!("local \"{}\" is not a regular file", fs::display_path(local)));
            return Ok(());
        }
        if meta.len() >= SPLIT_MIN && self.may_split() {
            // Nothing may be in flight while the second connection opens.
            self.settle_all().await?;
            if self.start_helper().await {
                return self.upload_split(local, remote, name, &file, &meta, in_tree).await;
            }
        }
        self.make_room(MAX_FILES).await?;
        let mode = meta.mode() & 0o777;
        let final_attrs = self.options.preserve.then(|| preserved_attrs(&meta, mode));
        let job_id = self.next_job;
        self.next_job += 1;
        let id = self.id();
        let open_attrs = Attrs { permissions: Some(mode), ..Attrs::default() };
        request::open(
            &mut self.conn.outgoing,
            id,
            remote,
            sftp::FXF_WRITE | sftp::FXF_CREAT | sftp::FXF_TRUNC,
            &open_attrs,
        );
        self.pending.insert(id, Pending::Open(job_id));
        self.observer.file_started(name, meta.len());
        if let Some(limiter) = self.limiter.as_mut() {
            limiter.restart();
        }
        self.jobs.insert(
            job_id,
            Job {
                local: local.to_path_buf(),
                remote: remote.to_vec(),
                file,
                size: meta.len(),
                offset: 0,
                handle: None,
                final_attrs,
                awaiting: 1,
                read_failed: false,
                failed: false,
                closing: false,
                in_tree,
            },
        );
        if self.conn.outgoing.len() >= SEND_AT {
            self.send().await?;
        }
        Ok(())
    }

    /// Opens the second connection and starts its SFTP session, if there is one
    /// to open; true if it is ready. Nothing else may be in flight (the main
    /// connection is not read meanwhile).
    async fn start_helper(&mut self) -> bool {
        match std::mem::replace(&mut self.helper, Helper::Broken) {
            Helper::Unopened(open) => match open.await {
                Some(conn) => match Lockstep::start(conn).await {
                    Ok(ready) => self.helper = Helper::Ready(ready),
                    Err(e) => self.observer.debug(&format!("second connection unused: {e}")),
                },
                None => self.observer.debug("second connection not opened"),
            },
            other => self.helper = other,
        }
        matches!(self.helper, Helper::Ready(_))
    }

    /// Whether a large file may go over two connections: one is there or may be
    /// opened, and no rate limit paces the copy.
    fn may_split(&self) -> bool {
        self.limiter.is_none() && matches!(self.helper, Helper::Unopened(_) | Helper::Ready(_))
    }

    /// Ends the second connection's stream, if it was opened.
    async fn close_helper(&mut self) {
        if let Helper::Ready(helper) = &mut self.helper {
            let _ = helper.conn.shutdown().await;
        }
    }

    /// A large file in two halves at once: the first through this connection,
    /// the second through the helper's. Opened here with `TRUNC` first, then
    /// there without; given its times and mode here (`-p`); closed on both.
    async fn upload_split(
        &mut self,
        local: &Path,
        remote: &[u8],
        name: &FileName,
        file: &File,
        meta: &cap_std::fs::Metadata,
        in_tree: bool,
    ) -> Result<(), EngineError> {
        // Nothing else may be in flight on either connection meanwhile.
        self.settle_all().await?;
        let errors_before = self.errors;
        let size = meta.len();
        let mode = meta.mode() & 0o777;
        self.observer.file_started(name, size);
        let id = self.id();
        let open_attrs = Attrs { permissions: Some(mode), ..Attrs::default() };
        let flags = sftp::FXF_WRITE | sftp::FXF_CREAT | sftp::FXF_TRUNC;
        request::open(&mut self.conn.outgoing, id, remote, flags, &open_attrs);
        let handle = match self.await_answer(id).await? {
            Answer::Handle(handle) => handle,
            Answer::Status(code) => {
                self.error(format!("dest open \"{}\": {}", escape(remote), sftp::status_text(code)));
                self.tree_file_failed(local, remote, in_tree);
                self.observer.file_finished(false);
                return Ok(());
            }
            _ => return Err(protocol("unexpected reply to OPEN")),
        };
        let Helper::Ready(helper) = &mut self.helper else { return Err(protocol("helper connection lost")) };
        let helper_handle = match helper.open(remote).await {
            Ok(Ok(handle)) => Some(handle),
            Ok(Err(_)) => None,
            Err(e) => {
                self.observer.debug(&format!("helper connection lost: {e}"));
                self.helper = Helper::Broken;
                None
            }
        };
        // Halves on a WRITE boundary; without a helper handle the first is all.
        let half = (size / 2) / u64::from(self.write_len) * u64::from(self.write_len);
        let mid = if helper_handle.is_some() { half.max(1) } else { size };
        let observer = RefCell::new(&mut *self.observer);
        let first = write_range(
            self.conn,
            &mut self.next_id,
            &handle,
            file,
            (0, mid),
            self.write_len,
            MAX_BYTES,
            &observer,
        );
        let (first, second) = match (&mut self.helper, &helper_handle) {
            (Helper::Ready(helper), Some(helper_handle)) => {
                let second = write_range(
                    &mut helper.conn,
                    &mut helper.next_id,
                    helper_handle,
                    file,
                    (mid, size),
                    self.write_len,
                    MAX_BYTES,
                    &observer,
                );
                tokio::join!(first, second)
            }
            _ => (first.await, Ok(Ok(()))),
        };
        let mut failure = None;
        let helper_closed = match (second, &mut self.helper, helper_handle) {
            (Ok(result), Helper::Ready(helper), Some(helper_handle)) => {
                failure = result.err();
                let closed = helper.close(&helper_handle).await.ok();
                if closed.is_none() {
                    self.helper = Helper::Broken;
                }
                closed
            }
            (Ok(result), _, _) => {
                failure = result.err();
                Some(sftp::FX_OK)
            }
            (Err(e), _, _) => {
                // The helper's connection broke: this file fails, the copy goes on alone.
                self.observer.debug(&format!("helper connection lost: {e}"));
                self.helper = Helper::Broken;
                None
            }
        };
        if let Some(first_failure) = first?.err() {
            failure = Some(first_failure);
        }
        match failure {
            Some(RangeFailure::Refused(code)) => {
                self.error(format!("write remote \"{}\": {}", escape(remote), sftp::status_text(code)));
            }
            Some(RangeFailure::Local(e)) => {
                self.error(format!("read local \"{}\": {}", fs::display_path(local), fs::errno_text(&e)));
            }
            None if helper_closed.is_none() => {
                self.error(format!(
                    "write remote \"{}\": {}",
                    escape(remote),
                    sftp::status_text(sftp::FX_CONNECTION_LOST)
                ));
            }
            None => {}
        }
        if self.options.preserve {
            let attrs = preserved_attrs(meta, mode);
            if let Err(code) = self.call(|out, id| request::fsetstat(out, id, &handle, &attrs)).await? {
                // Said, not counted, as OpenSSH's scp does.
                self.observer.local_error(&format!("remote fsetstat: {}", sftp::status_text(code)));
            }
        }
        let closed = self.call(|out, id| request::handle(out, sftp::FXP_CLOSE, id, &handle)).await?;
        for code in [closed.err(), helper_closed.filter(|&c| c != sftp::FX_OK)].into_iter().flatten() {
            self.error(format!("close remote: {}", sftp::status_text(code)));
        }
        let ok = self.errors == errors_before;
        if !ok {
            self.tree_file_failed(local, remote, in_tree);
        }
        self.observer.file_finished(ok);
        Ok(())
    }

    /// A directory and everything under it, depth first in readdir order.
    async fn upload_tree(&mut self, local: &Path, remote: &[u8]) -> Result<(), EngineError> {
        let mut stack: Vec<OpenDir> = Vec::new();
        if let Some(dir) = self.enter_dir(local, remote, &stack).await? {
            stack.push(dir);
        }
        while let Some(dir) = stack.last_mut() {
            match dir.entries.next() {
                Some(Ok(entry)) => {
                    let local = dir.local.join(&entry);
                    let remote = path_append(&dir.remote, entry.as_bytes());
                    let Ok(name) = FileName::new(entry.as_bytes()) else { continue };
                    let meta = match std::fs::metadata(&local) {
                        Ok(meta) => meta,
                        Err(e) => {
                            self.error(format!(
                                "stat local \"{}\": {}",
                                fs::display_path(&local),
                                fs::errno_text(&e)
                            ));
                            continue;
                        }
                    };
                    if meta.is_dir() {
                        if let Some(dir) = self.enter_dir(&local, &remote, &stack).await? {
                            stack.push(dir);
                        }
                    } else if meta.is_file() {
                        self.upload_file(&local, &remote, &name, true).await?;
                    } else {
                        // OpenSSH logs these and goes on, without counting an error.
                        self.observer
                            .local_error(&format!("{}: not a regular file", fs::display_path(&local)));
                    }
                }
                Some(Err(e)) => {
                    let text = format!(
                        "read local dir \"{}\": {}",
                        fs::display_path(&dir.local),
                        fs::errno_text(&e)
                    );
                    self.error(text);
                    self.leave_dir(&mut stack);
                }
                None => self.leave_dir(&mut stack),
            }
        }
        Ok(())
    }

    /// Makes (or finds) the remote directory, waiting for the answer since its
    /// contents depend on it; returns the local entries to send, its final
    /// attributes and its identity, or None if it is skipped (reported).
    async fn enter_dir(
        &mut self,
        local: &Path,
        remote: &[u8],
        ancestors: &[OpenDir],
    ) -> Result<Option<OpenDir>, EngineError> {
        let meta = match std::fs::metadata(local) {
            Ok(meta) => meta,
            Err(e) => {
                self.error(format!("stat local \"{}\": {}", fs::display_path(local), fs::errno_text(&e)));
                return Ok(None);
            }
        };
        let id = (meta.dev(), meta.ino());
        if ancestors.iter().any(|dir| dir.id == id) {
            self.error(format!("{}: directory loop, skipped", fs::display_path(local)));
            return Ok(None);
        }
        let entries = match Root::Host.read_dir(local) {
            Ok(entries) => entries,
            Err(e) => {
                self.error(format!("opendir \"{}\": {}", fs::display_path(local), fs::errno_text(&e)));
                return Ok(None);
            }
        };
        let mode = meta.mode() & 0o1777;
        let times = self.options.preserve.then(|| {
            let secs = |t: i64| u32::try_from(t.max(0)).unwrap_or(u32::MAX);
            (secs(meta.atime()), secs(meta.mtime()))
        });
        let attrs = Attrs { permissions: Some(mode), times, ..Attrs::default() };
        // Writable by us while its contents arrive; the real mode comes at the end.
        let making = Attrs { permissions: Some(mode | 0o700), ..Attrs::default() };
        let made =
            self.call(|out, id| request::path_attrs(out, sftp::FXP_MKDIR, id, remote, &making)).await?;
        if made.is_err() {
            match self.stat(remote).await? {
                Some(found) if found.is_dir() => {}
                Some(_) => {
                    self.error(format!("\"{}\" exists but is not a directory", escape(remote)));
                    return Ok(None);
                }
                None => {
                    self.error(format!(
                        "remote mkdir \"{}\": {}",
                        escape(remote),
                        sftp::status_text(sftp::FX_FAILURE)
                    ));
                    return Ok(None);
                }
            }
        }
        Ok(Some(OpenDir { local: local.to_path_buf(), remote: remote.to_vec(), entries, attrs, id }))
    }

    /// Closes the innermost open directory: its SETSTAT goes out, not awaited.
    fn leave_dir(&mut self, stack: &mut Vec<OpenDir>) {
        if let Some(dir) = stack.pop() {
            let id = self.id();
            request::path_attrs(&mut self.conn.outgoing, sftp::FXP_SETSTAT, id, &dir.remote, &dir.attrs);
            self.pending.insert(id, Pending::DirSetstat(dir.remote));
        }
    }
}

/// A directory being uploaded: its remaining local entries and what its remote
/// twin gets at the end.
struct OpenDir {
    local: PathBuf,
    remote: Vec<u8>,
    entries: Entries,
    attrs: Attrs,
    /// (device, inode): a symlink back to an ancestor is a loop.
    id: (u64, u64),
}

/// OpenSSH's `path_append`: one slash between, none doubled.
fn path_append(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut path = dir.to_vec();
    if !path.ends_with(b"/") {
        path.push(b'/');
    }
    path.extend_from_slice(name);
    path
}

/// A file's FSETSTAT with `-p`: its mode and times (v3 times are 32-bit seconds).
fn preserved_attrs(meta: &cap_std::fs::Metadata, mode: u32) -> Attrs {
    let times = fs::times_of(meta);
    let secs = |t: u64| u32::try_from(t).unwrap_or(u32::MAX);
    Attrs {
        permissions: Some(mode),
        times: Some((secs(times.atime_sec), secs(times.mtime_sec))),
        ..Attrs::default()
    }
}

/// Reads more from `conn` (sending what is queued meanwhile); end of stream is an error.
async fn fill<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(conn: &mut Conn<R, W>) -> Result<(), EngineError> {
    if conn.fill().await? == 0 {
        return Err(EngineError::Stream(io::Error::new(io::ErrorKind::UnexpectedEof, "lost connection")));
    }
    Ok(())
}

fn malformed() -> EngineError {
    protocol("malformed reply from the server")
}

fn protocol(text: impl Into<String>) -> EngineError {
    EngineError::Sftp(text.into())
}
