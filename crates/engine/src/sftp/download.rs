//! `download`: remote files and trees from an SFTP server (`rscp -s host:x .`), as
//! OpenSSH's scp does in its SFTP mode (`sink_sftp`, `do_download`,
//! `download_dir`), with the same safety as the SCP protocol's downloads.
//!
//! The remote path is globbed here, over READDIR, component by component (`*`,
//! `?`, `[...]` as fnmatch takes them; a leading `.` only by a pattern that starts
//! with one); without a match it is taken as it is. A file's READs are pipelined
//! (as far ahead as `ahead.rs` finds the link needs), each reply written at its offset,
//! so a short reply is simply asked for again. Files arrive as with the SCP
//! protocol: a temporary file renamed into place when complete, existing modes
//! kept without `-p`, no symlink followed, special bits only with `-p`.
//!
//! What the server names is checked: every READDIR name must be a plain file
//! name (no `/`, not `.` or `..`, not empty), and a top-level name that is not
//! (`host:..`, `host:/`) is replaced by the last component of the server's
//! REALPATH of it, or refused. Nothing is written outside the target.

use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use rscp_proto::display::escape;
use rscp_proto::filter::{fnmatch, has_glob, unescape};
use rscp_proto::sftp::{self, Attrs, request};
use rscp_proto::{FileName, Mode, Times};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Answer, MAX_FILES, Pending, SecondConnection, Session, SftpOptions, path_append, protocol};
use crate::conn::Conn;
use crate::error::{EngineError, Summary};
use crate::fs::{self, DirEntry, IncomingFile};
use crate::observer::Observer;
use crate::root::Root;

/// Matches of one glob, as OpenSSH's `remote_glob` bounds them.
const MAX_MATCHES: usize = 100_000;

const S_IFMT: u32 = 0o170000;
const S_IFLNK: u32 = 0o120000;

/// Downloads `sources` (remote paths as typed) into `target` over an SFTP session
/// on `conn`. Per-file problems are reported and counted; the copy goes on.
pub async fn download<R, W>(
    conn: &mut Conn<R, W>,
    sources: &[Vec<u8>],
    target: &Path,
    options: SftpOptions,
    observer: &mut dyn Observer,
) -> Result<Summary, EngineError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut session = Session::new(conn, SecondConnection::none(), options, observer);
    let can_expand = session.start().await?;
    let umask = fs::process_umask();
    for source in sources {
        session.download_source(source, target, can_expand, umask).await?;
    }
    session.settle_all().await?;
    Ok(Summary { errors: session.errors })
}

/// A file being received: where its data goes, and what is asked for.
#[derive(Debug)]
pub(super) struct Incoming {
    file: IncomingFile,
    remote: Vec<u8>,
    /// Its attributes from the listing or STAT: size, mode, times.
    attrs: Attrs,
    /// The remote file's handle, once its OPEN is answered.
    handle: Option<Vec<u8>>,
    /// The end of the data received so far: the file's size at the end.
    end: u64,
    /// READs in flight, and their bytes.
    reads: u32,
    asked: u64,
    /// The next offset to ask for.
    next: u64,
    /// The server said EOF, or the data reached the announced size.
    eof: bool,
    /// The first failure: the file is not kept.
    failed: Option<String>,
    /// The size the server announced (unknown: every short reply is asked again).
    size: u64,
}

impl Incoming {
    pub(super) fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        if self.failed.is_some() {
            return Ok(());
        }
        self.file.write_at(offset, data)
    }

    /// All its data is here (or it failed), and no READ is out.
    fn complete(&self) -> bool {
        self.handle.is_some() && self.reads == 0 && (self.eof || self.failed.is_some())
    }
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Session<'_, R, W> {
    /// One source operand: tilde, glob, then each match into `target`.
    async fn download_source(
        &mut self,
        source: &[u8],
        target: &Path,
        can_expand: bool,
        umask: u32,
    ) -> Result<(), EngineError> {
        let Some(prepared) = self.prepare_target(source, can_expand).await? else { return Ok(()) };
        let matches = self.glob(&prepared).await?;
        if matches.is_empty() {
            self.error(format!("{}: No such file or directory", escape(source)));
            return Ok(());
        }
        let target_meta = std::fs::metadata(target);
        let mut target_is_dir = target_meta.as_ref().is_ok_and(|m| m.is_dir());
        if matches.len() > 1 && !target_is_dir {
            if target_meta.is_ok() {
                let shown = fs::display_path(target);
                self.error(format!(
                    "Multiple files match pattern, but destination \"{shown}\" is not a directory"
                ));
                return Ok(());
            }
            if let Err(e) = std::fs::create_dir(target) {
                self.error(format!("local mkdir \"{}\": {}", fs::display_path(target), fs::errno_text(&e)));
                return Ok(());
            }
            target_is_dir = true;
        }
        for (path, attrs) in matches {
            let Some(name) = self.local_name(&path).await? else { continue };
            let destination = if target_is_dir {
                target.join(std::ffi::OsStr::from_bytes(name.as_bytes()))
            } else {
                target.into()
            };
            if attrs.is_dir() && self.options.recursive {
                self.download_tree(&path, &destination, attrs, umask).await?;
            } else {
                self.download_file(&path, &destination, Some(attrs), &name, umask).await?;
            }
            self.settle_downloads(umask).await?;
        }
        Ok(())
    }

    /// The name a top-level match is saved under: its last component, or, for
    /// `.`, `..` and `/`, the last component of its REALPATH; None (reported) if
    /// there is no safe one.
    async fn local_name(&mut self, path: &[u8]) -> Result<Option<FileName>, EngineError> {
        let trimmed = trim_trailing_slashes(path);
        let last = trimmed.rsplit(|&b| b == b'/').next().unwrap_or_default();
        if let Ok(name) = FileName::new(last) {
            return Ok(Some(name));
        }
        let id = self.id();
        request::path(&mut self.conn.outgoing, sftp::FXP_REALPATH, id, path);
        if let Answer::Names(names) = self.await_answer(id).await?
            && let Some((real, _)) = names.first()
            && let Some(last) = trim_trailing_slashes(real).rsplit(|&b| b == b'/').next()
            && let Ok(name) = FileName::new(last)
        {
            return Ok(Some(name));
        }
        self.error(format!("{}: not a file or directory name", escape(path)));
        Ok(None)
    }

    /// OpenSSH's `remote_glob` without its shell: the path itself if it has no
    /// pattern (if it exists), else every match, sorted, of each component in turn.
    async fn glob(&mut self, pattern: &[u8]) -> Result<Vec<(Vec<u8>, Attrs)>, EngineError> {
        if !has_glob(pattern) {
            return Ok(self
                .stat(pattern)
                .await?
                .map(|attrs| vec![(pattern.to_vec(), attrs)])
                .unwrap_or_default());
        }
        let absolute = pattern.starts_with(b"/");
        let components: Vec<&[u8]> = pattern.split(|&b| b == b'/').filter(|c| !c.is_empty()).collect();
        // (path so far, its attributes once known)
        let mut found: Vec<(Vec<u8>, Option<Attrs>)> =
            vec![(if absolute { b"/".to_vec() } else { Vec::new() }, None)];
        for (i, component) in components.iter().enumerate() {
            let last = i + 1 == components.len();
            let mut next = Vec::new();
            for (prefix, _) in &found {
                if !has_glob(component) {
                    next.push((join(prefix, &unescape(component)), None));
                    continue;
                }
                let dir = if prefix.is_empty() { b".".to_vec() } else { prefix.clone() };
                let Some(entries) = self.read_dir(&dir).await? else { continue };
                let mut matched: Vec<(Vec<u8>, Option<Attrs>)> = entries
                    .into_iter()
                    .filter(|(name, attrs)| {
                        FileName::new(name).is_ok()
                            && (component.starts_with(b".") || !name.starts_with(b"."))
                            && fnmatch(component, name)
                            && (last || attrs.is_dir() || is_symlink(attrs))
                    })
                    .map(|(name, attrs)| (join(prefix, &name), Some(attrs)))
                    .collect();
                matched.sort_by(|a, b| a.0.cmp(&b.0));
                next.extend(matched);
                if next.len() > MAX_MATCHES {
                    self.error(format!("{}: too many glob matches", escape(pattern)));
                    return Ok(Vec::new());
                }
            }
            found = next;
        }
        let mut out = Vec::new();
        for (path, attrs) in found {
            // Symlinks and literal components: what they lead to.
            let attrs = match attrs {
                Some(attrs) if !is_symlink(&attrs) => Some(attrs),
                _ => self.stat(&path).await?,
            };
            if let Some(attrs) = attrs {
                out.push((path, attrs));
            }
        }
        Ok(out)
    }

    /// Every entry of a remote directory (OPENDIR, READDIR to the end, CLOSE);
    /// None if it cannot be listed.
    async fn read_dir(&mut self, path: &[u8]) -> Result<Option<Vec<(Vec<u8>, Attrs)>>, EngineError> {
        let id = self.id();
        request::path(&mut self.conn.outgoing, sftp::FXP_OPENDIR, id, path);
        let handle = match self.await_answer(id).await? {
            Answer::Handle(handle) => handle,
            Answer::Status(_) => return Ok(None),
            _ => return Err(protocol("unexpected reply to OPENDIR")),
        };
        let mut entries = Vec::new();
        let complete = loop {
            let id = self.id();
            request::handle(&mut self.conn.outgoing, sftp::FXP_READDIR, id, &handle);
            match self.await_answer(id).await? {
                Answer::Names(names) => entries.extend(names),
                Answer::Status(sftp::FX_EOF) => break true,
                Answer::Status(_) => break false,
                _ => return Err(protocol("unexpected reply to READDIR")),
            }
            if entries.len() > MAX_MATCHES * 10 {
                break false;
            }
        };
        let _ = self.call(|out, id| request::handle(out, sftp::FXP_CLOSE, id, &handle)).await?;
        Ok(complete.then_some(entries))
    }

    /// A remote tree into `local`, depth first, entries in the server's order.
    async fn download_tree(
        &mut self,
        remote: &[u8],
        local: &Path,
        attrs: Attrs,
        umask: u32,
    ) -> Result<(), EngineError> {
        let mut stack: Vec<RemoteDir> = Vec::new();
        if let Some(dir) = self.enter_remote_dir(remote, local, attrs).await? {
            stack.push(dir);
        }
        while let Some(dir) = stack.last_mut() {
            let Some((name, attrs)) = dir.entries.next() else {
                if let Some(done) = stack.pop() {
                    // Its files first: writing them would move its times.
                    self.settle_downloads(umask).await?;
                    self.finish_local_dir(&done.local, &done.attrs, done.made, umask);
                }
                continue;
            };
            let (remote_dir, local_dir) = (dir.remote.clone(), dir.local.clone());
            if name == b"." || name == b".." {
                continue;
            }
            let path = join(&remote_dir, &name);
            let Ok(file_name) = FileName::new(&name) else {
                self.error(format!("{}: the server sent an invalid name", escape(&path)));
                continue;
            };
            let destination = local_dir.join(std::ffi::OsStr::from_bytes(&name));
            if attrs.is_dir() {
                if let Some(dir) = self.enter_remote_dir(&path, &destination, attrs).await? {
                    stack.push(dir);
                }
            } else if attrs.is_regular() || is_symlink(&attrs) {
                // A symlink is followed: the file's own attributes come from STAT.
                let known = (!is_symlink(&attrs)).then_some(attrs);
                self.download_file(&path, &destination, known, &file_name, umask).await?;
            } else {
                // OpenSSH logs these and goes on, without counting an error.
                self.observer.local_error(&format!("download \"{}\": not a regular file", escape(&path)));
            }
        }
        Ok(())
    }

    /// Makes (or finds) the local directory and lists the remote one.
    async fn enter_remote_dir(
        &mut self,
        remote: &[u8],
        local: &Path,
        attrs: Attrs,
    ) -> Result<Option<RemoteDir>, EngineError> {
        let mode = Mode::from_st_mode(attrs.permissions.unwrap_or(0o755));
        let made = match fs::enter_dir(&Root::Host, local, mode, self.options.preserve) {
            Ok(entry) => entry == DirEntry::Created,
            Err(e) => {
                self.error(format!("mkdir {}: {}", fs::display_path(local), fs::errno_text(&e)));
                return Ok(None);
            }
        };
        let Some(entries) = self.read_dir(remote).await? else {
            self.error(format!("remote readdir \"{}\" failed", escape(remote)));
            return Ok(None);
        };
        Ok(Some(RemoteDir {
            remote: remote.to_vec(),
            local: local.to_path_buf(),
            entries: entries.into_iter(),
            attrs,
            made,
        }))
    }

    /// A directory's mode (if made here, or with `-p`) and times (`-p`), once its
    /// contents are written.
    fn finish_local_dir(&mut self, local: &Path, attrs: &Attrs, made: bool, umask: u32) {
        let mode = Mode::from_st_mode(attrs.permissions.unwrap_or(0o755));
        let bits = (made || self.options.preserve).then(|| fs::new_mode(mode, self.options.preserve, umask));
        let times = self.options.preserve.then(|| times_of(attrs)).flatten();
        if let Err(e) = fs::finish_dir(&Root::Host, local, bits, times.as_ref()) {
            self.error(format!("local set times on \"{}\": {}", fs::display_path(local), fs::errno_text(&e)));
        }
    }

    /// Starts one remote file to `local`: the temporary file is made and the OPEN
    /// sent; READs, CLOSE and the rename follow as replies come
    /// ([`Session::pump_downloads`]). Up to [`MAX_FILES`] files are in flight.
    async fn download_file(
        &mut self,
        remote: &[u8],
        local: &Path,
        attrs: Option<Attrs>,
        name: &FileName,
        umask: u32,
    ) -> Result<(), EngineError> {
        let attrs = match attrs {
            Some(attrs) => attrs,
            None => match self.stat(remote).await? {
                Some(attrs) => attrs,
                None => {
                    self.error(format!("stat remote \"{}\" failed", escape(remote)));
                    return Ok(());
                }
            },
        };
        if !attrs.is_regular() {
            // OpenSSH's words for a top-level match (its glob marks a directory
            // with `/`); inside a tree, entries like this are skipped earlier.
            let mark = if attrs.is_dir() && !remote.ends_with(b"/") { "/" } else { "" };
            self.error(format!("download {}{mark}: not a regular file", escape(remote)));
            return Ok(());
        }
        self.make_room_for_downloads(MAX_FILES, umask).await?;
        let file = match IncomingFile::create(&Root::Host, local, self.options.inplace) {
            Ok(file) => file,
            Err(e) => {
                self.error(format!("open local \"{}\": {}", fs::display_path(local), fs::errno_text(&e)));
                return Ok(());
            }
        };
        let job = self.next_job;
        self.next_job += 1;
        let id = self.id();
        request::open(&mut self.conn.outgoing, id, remote, sftp::FXF_READ, &Attrs::default());
        self.pending.insert(id, Pending::OpenRead(job));
        self.observer.file_started(name, attrs.size.unwrap_or(0));
        self.downloads.insert(
            job,
            Incoming {
                file,
                remote: remote.to_vec(),
                attrs,
                handle: None,
                end: 0,
                reads: 0,
                asked: 0,
                next: 0,
                eof: false,
                failed: None,
                size: attrs.size.unwrap_or(u64::MAX),
            },
        );
        Ok(())
    }

    /// Waits until fewer than `files` downloads are in flight (all of them, with
    /// 1), asking and finishing meanwhile.
    async fn make_room_for_downloads(&mut self, files: usize, umask: u32) -> Result<(), EngineError> {
        loop {
            self.take_replies()?;
            self.pump_downloads(umask).await?;
            if self.downloads.len() < files {
                return Ok(());
            }
            self.fill().await?;
        }
    }

    /// Every download finished, its CLOSE answered.
    async fn settle_downloads(&mut self, umask: u32) -> Result<(), EngineError> {
        self.make_room_for_downloads(1, umask).await?;
        self.settle_all().await
    }

    /// Asks for more of each open file, up to the read-ahead's limit in all,
    /// and finishes the files that are complete: CLOSE (not waited for), then
    /// the temporary file renamed into place.
    async fn pump_downloads(&mut self, umask: u32) -> Result<(), EngineError> {
        let mut asked: u64 = self.downloads.values().map(|d| d.asked).sum();
        let mut jobs: Vec<u64> = self.downloads.keys().copied().collect();
        jobs.sort_unstable();
        for job in jobs {
            while let Some(incoming) = self.downloads.get_mut(&job) {
                let Some(handle) = incoming.handle.clone() else { break };
                if incoming.complete() {
                    self.finish_download(job, &handle, umask);
                    break;
                }
                let open = !incoming.eof && incoming.failed.is_none();
                // Past the announced size, one READ at a time finds EOF (or growth).
                let room = incoming.next < incoming.size || incoming.reads == 0;
                if !open || !room || asked >= self.ahead.limit() {
                    break;
                }
                if self.limits_asked {
                    // The first READ is sized by the server's limits.
                    self.await_limits().await?;
                    continue;
                }
                let len = u64::from(self.read_len);
                let offset = incoming.next;
                incoming.next += len;
                incoming.reads += 1;
                let counted = expected(offset, len, incoming.size);
                incoming.asked += counted;
                asked += counted;
                let id = self.id();
                self.ahead.sent(id);
                request::read(&mut self.conn.outgoing, id, &handle, offset, self.read_len);
                self.pending.insert(id, Pending::Read(job, offset, len));
                if let Some(limiter) = self.limiter.as_mut() {
                    limiter.consume(len as usize).await;
                }
            }
        }
        Ok(())
    }

    /// A complete file: CLOSE goes out (only a refusal of it is said later), and
    /// the file is renamed into place with its mode and times, or dropped.
    fn finish_download(&mut self, job: u64, handle: &[u8], umask: u32) {
        let Some(incoming) = self.downloads.remove(&job) else { return };
        let id = self.id();
        request::handle(&mut self.conn.outgoing, sftp::FXP_CLOSE, id, handle);
        self.pending.insert(id, Pending::ReadClose);
        if let Some(text) = incoming.failed {
            self.error(text);
            self.observer.file_finished(false);
            return;
        }
        // Without -p a new file is writable by its owner, as OpenSSH makes it.
        let permissions = incoming.attrs.permissions.unwrap_or(0o644);
        let mode = Mode::from_st_mode(if self.options.preserve { permissions } else { permissions | 0o200 });
        let times = self.options.preserve.then(|| times_of(&incoming.attrs)).flatten();
        let local = incoming.file.destination().to_path_buf();
        if let Err(e) = incoming.file.commit(incoming.end, mode, self.options.preserve, umask, times.as_ref())
        {
            self.error(format!("write local \"{}\": {}", fs::display_path(&local), fs::errno_text(&e)));
            self.observer.file_finished(false);
            return;
        }
        self.observer.file_finished(true);
    }

    /// The OPEN of a download answered: its handle, or why not (the file is dropped).
    pub(super) fn download_opened(&mut self, job: u64, answer: Answer) -> Result<(), EngineError> {
        match answer {
            Answer::Handle(handle) => {
                if let Some(incoming) = self.downloads.get_mut(&job) {
                    incoming.handle = Some(handle);
                }
            }
            Answer::Status(code) => {
                if let Some(incoming) = self.downloads.remove(&job) {
                    let text =
                        format!("remote open \"{}\": {}", escape(&incoming.remote), sftp::status_text(code));
                    self.error(text);
                    self.observer.file_finished(false);
                }
            }
            _ => return Err(protocol("unexpected reply to OPEN")),
        }
        Ok(())
    }

    /// A DATA reply for a download's READ at `offset` of `len` bytes: `got`
    /// bytes written (or not). A short one is the end at the announced size,
    /// else the rest is asked for again.
    pub(super) fn read_answered(
        &mut self,
        job: u64,
        (offset, len, got): (u64, u64, u64),
        written: io::Result<()>,
    ) -> Result<(), EngineError> {
        let Some(incoming) = self.downloads.get_mut(&job) else { return Ok(()) };
        incoming.reads -= 1;
        incoming.asked -= expected(offset, len, incoming.size);
        if got > len {
            return Err(protocol("the server sent more than was asked for"));
        }
        if got == 0 {
            return Err(protocol("the server sent an empty DATA"));
        }
        if let Err(e) = written {
            if incoming.failed.is_none() {
                let shown = fs::display_path(incoming.file.destination());
                incoming.failed = Some(format!("write local \"{shown}\": {}", fs::errno_text(&e)));
            }
            return Ok(());
        }
        incoming.end = incoming.end.max(offset + got);
        self.observer.transferred(got);
        if got < len && offset + got >= incoming.size {
            // A short reply at the size the listing announced: the end, as with the
            // SCP protocol (which sends that size), without a round trip for EOF.
            incoming.eof = true;
        } else if got < len && !incoming.eof {
            // A short reply: the rest is asked for again (the file may go on).
            let (start, rest) = (offset + got, len - got);
            let Some(handle) = incoming.handle.clone() else { return Ok(()) };
            incoming.reads += 1;
            incoming.asked += expected(start, rest, incoming.size);
            let id = self.id();
            self.ahead.sent(id);
            request::read(
                &mut self.conn.outgoing,
                id,
                &handle,
                start,
                u32::try_from(rest).unwrap_or(u32::MAX),
            );
            self.pending.insert(id, Pending::Read(job, start, rest));
        }
        Ok(())
    }

    /// A STATUS for a download's READ: EOF ends the file; anything else fails it.
    pub(super) fn read_refused(&mut self, job: u64, (offset, len): (u64, u64), code: u32) {
        let Some(incoming) = self.downloads.get_mut(&job) else { return };
        incoming.reads -= 1;
        incoming.asked -= expected(offset, len, incoming.size);
        if code == sftp::FX_EOF {
            incoming.eof = true;
        } else if incoming.failed.is_none() {
            incoming.failed =
                Some(format!("read remote \"{}\" : {}", escape(&incoming.remote), sftp::status_text(code)));
        }
    }
}

/// A remote directory being downloaded: its entries left, and what its local
/// twin gets at the end.
struct RemoteDir {
    remote: Vec<u8>,
    local: PathBuf,
    entries: std::vec::IntoIter<(Vec<u8>, Attrs)>,
    attrs: Attrs,
    /// Made by this copy (so it gets the remote mode without `-p`).
    made: bool,
}

/// `path_append`, where an empty prefix (a relative glob's start) adds nothing.
fn join(prefix: &[u8], name: &[u8]) -> Vec<u8> {
    if prefix.is_empty() { name.to_vec() } else { path_append(prefix, name) }
}

fn trim_trailing_slashes(path: &[u8]) -> &[u8] {
    let end = path.iter().rposition(|&b| b != b'/').map_or(0, |i| i + 1);
    &path[..end]
}

fn is_symlink(attrs: &Attrs) -> bool {
    attrs.permissions.is_some_and(|m| m & S_IFMT == S_IFLNK)
}

fn times_of(attrs: &Attrs) -> Option<Times> {
    attrs.times.map(|(atime, mtime)| Times::from_secs(i64::from(mtime), i64::from(atime)))
}

/// What a READ is counted as against the read-ahead: the data it can bring
/// before the listed size (a small file's READ asks for more than it holds).
fn expected(offset: u64, len: u64, size: u64) -> u64 {
    len.min(size.saturating_sub(offset))
}
