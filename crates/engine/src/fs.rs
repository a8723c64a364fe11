//! The local filesystem side of a transfer.
//!
//! Peer-named paths reach this module only as a directory we chose joined with a
//! validated [`FileName`](rscp_proto::FileName). Received files are written to a
//! temporary name beside the destination and renamed into place only when complete
//! and acknowledged, so a failed or interrupted copy never leaves a half-written
//! file where a good one was. Destination symlinks are never followed: a symlink
//! in the way of a file is replaced, one in the way of a directory is refused.
//! This module must never open a peer-named path without `O_NOFOLLOW` or `O_EXCL`.

use std::fs::{self, File, FileTimes, Permissions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use rscp_proto::{Mode, Times};

use crate::root::{FileTypeExt, Metadata, MetadataExt, Open, Root};

/// The text of an OS error as `strerror` gives it (no "(os error N)" suffix), the
/// way OpenSSH words its messages.
pub fn errno_text(e: &io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(i) if text.ends_with(')') => text[..i].to_string(),
        _ => text,
    }
}

/// `path: reason`, the shape of every OpenSSH error message about a file, with the
/// path escaped for display.
pub fn path_error(path: &Path, e: &io::Error) -> String {
    format!("{}: {}", display_path(path), errno_text(e))
}

/// A path with control characters escaped (it may hold a peer-chosen name).
pub fn display_path(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    rscp_proto::display::escape(path.as_os_str().as_bytes())
}

/// The process umask, read without changing it (other threads may be creating
/// files). Falls back to the usual 022 where `/proc` is not available.
pub fn process_umask() -> u32 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("Umask:"))?;
            u32::from_str_radix(line["Umask:".len()..].trim(), 8).ok()
        })
        .unwrap_or(0o022)
}

fn system_time(secs: u64, usec: u32) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(u64::from(usec))
}

fn file_times(times: &Times) -> FileTimes {
    FileTimes::new()
        .set_modified(system_time(times.mtime_sec, times.mtime_usec))
        .set_accessed(system_time(times.atime_sec, times.atime_usec))
}

/// The mode a new file or directory gets from a received one: exactly the
/// received mode with `-p`; otherwise the umask applies and setuid, setgid and
/// sticky bits are never set (CVE-2026-35385, OpenSSH 10.3).
pub fn new_mode(mode: Mode, preserve: bool, umask: u32) -> u32 {
    if preserve { mode.bits() } else { mode.bits() & !umask & 0o777 }
}

/// Times of a local file as the source sends them (whole seconds, like OpenSSH).
pub fn times_of(meta: &Metadata) -> Times {
    Times::from_secs(meta.mtime(), meta.atime())
}

// ---------------------------------------------------------------- receiving

/// How a received file reaches its destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// A new temporary file, renamed over the destination when complete.
    Temporary,
    /// The destination itself (`--inplace`), truncated to size when complete.
    InPlace,
    /// A device or FIFO such as `/dev/null`: written as is, never truncated.
    Special,
}

/// A file being received. Dropping it without [`IncomingFile::commit`] removes the
/// temporary file and leaves the destination as it was.
#[derive(Debug)]
pub struct IncomingFile {
    file: File,
    root: Root,
    placement: Placement,
    destination: PathBuf,
    temporary: Option<PathBuf>,
    /// The destination's metadata when it already existed as a regular file.
    existing: Option<Metadata>,
    /// Bytes skipped as holes since the last write (sparse output).
    hole: u64,
}

/// Writing to an existing entry, never through a symlink.
const WRITE_EXISTING: Open = Open {
    read: false,
    write: true,
    create: false,
    create_new: false,
    mode: 0o600,
    no_follow: true,
    directory: false,
    non_blocking: false,
};

/// A directory opened for its times and mode, never through a symlink.
const OPEN_DIR: Open = Open { directory: true, write: false, ..WRITE_EXISTING };

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl IncomingFile {
    /// Prepares to receive a file at `destination`. `inplace` writes into the
    /// destination directly (still refusing to follow a symlink there).
    pub fn create(root: &Root, destination: &Path, inplace: bool) -> io::Result<IncomingFile> {
        use std::os::unix::ffi::OsStrExt;
        // `dir/` names a directory: never a file (nor a symlink to replace) there.
        if destination.as_os_str().as_bytes().ends_with(b"/") {
            return Err(io::Error::from_raw_os_error(libc::EISDIR));
        }
        let existing = match root.symlink_metadata(destination) {
            Ok(meta) => Some(meta),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let kind = existing.as_ref().map(Metadata::file_type);
        if kind.is_some_and(|k| k.is_dir()) {
            return Err(io::Error::from_raw_os_error(libc::EISDIR));
        }
        if kind.is_some_and(|k| k.is_char_device() || k.is_block_device() || k.is_fifo() || k.is_socket()) {
            let file = root.open(destination, WRITE_EXISTING)?;
            return Ok(IncomingFile::new(root, file, Placement::Special, destination, None, None));
        }
        let existing = existing.filter(|m| m.file_type().is_file());
        if inplace {
            let file = root.open(destination, Open { create: true, mode: 0o600, ..WRITE_EXISTING })?;
            return Ok(IncomingFile::new(root, file, Placement::InPlace, destination, None, existing));
        }
        let parent = match destination.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        loop {
            let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            let temporary = parent.join(format!(".rscp-{}-{n}.part", std::process::id()));
            match root.open(&temporary, Open { create_new: true, mode: 0o600, ..WRITE_EXISTING }) {
                Ok(file) => {
                    return Ok(IncomingFile::new(
                        root,
                        file,
                        Placement::Temporary,
                        destination,
                        Some(temporary),
                        existing,
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                // A writable file in a directory we may not write to (no room
                // for a temporary name): write it in place, as OpenSSH would.
                Err(e)
                    if existing.is_some() && matches!(e.raw_os_error(), Some(libc::EACCES | libc::EROFS)) =>
                {
                    return match root.open(destination, WRITE_EXISTING) {
                        Ok(file) => {
                            Ok(IncomingFile::new(root, file, Placement::InPlace, destination, None, existing))
                        }
                        Err(_) => Err(e),
                    };
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn new(
        root: &Root,
        file: File,
        placement: Placement,
        destination: &Path,
        temporary: Option<PathBuf>,
        existing: Option<Metadata>,
    ) -> IncomingFile {
        IncomingFile {
            file,
            root: root.clone(),
            placement,
            destination: destination.to_path_buf(),
            temporary,
            existing,
            hole: 0,
        }
    }

    pub fn destination(&self) -> &Path {
        &self.destination
    }

    /// Writes the next chunk. Runs of zeros in a new file become holes, so sparse
    /// sources stay sparse and zero-filled tails cost no disk.
    pub fn write_chunk(&mut self, data: &[u8]) -> io::Result<()> {
        if self.placement == Placement::Temporary && is_all_zero(data) {
            self.hole += data.len() as u64;
            return Ok(());
        }
        self.skip_hole()?;
        self.file.write_all(data)
    }

    /// Writes `data` at `offset` (SFTP downloads, whose replies may come short and
    /// be asked for again). Zeros in a new file are left as holes; a device or
    /// FIFO can only be written in order, so there the offset must be where the
    /// last write ended. The size is set by [`IncomingFile::commit`].
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt as _;
        match self.placement {
            Placement::Temporary if is_all_zero(data) => Ok(()),
            Placement::Special => self.file.write_all(data),
            _ => self.file.write_all_at(data, offset),
        }
    }

    fn skip_hole(&mut self) -> io::Result<()> {
        if self.hole > 0 {
            let hole = i64::try_from(self.hole).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
            self.file.seek(SeekFrom::Current(hole))?;
            self.hole = 0;
        }
        Ok(())
    }

    /// Completes the file: length, mode, times, then the rename into place.
    ///
    /// `mode` is the received mode; `preserve` is `-p`; `umask` applies to new
    /// files without `-p`. Without `-p` an existing file keeps its permissions and
    /// setuid, setgid and sticky bits are never set (CVE-2026-35385).
    pub fn commit(
        mut self,
        size: u64,
        mode: Mode,
        preserve: bool,
        umask: u32,
        times: Option<&Times>,
    ) -> io::Result<()> {
        if self.placement != Placement::Special {
            self.hole = 0;
            self.file.set_len(size)?;
            if let (Some(existing), Placement::Temporary) = (&self.existing, self.placement) {
                // Keep the owner of a file we replace where we may (as root). Before
                // the chmod: a chown clears setuid and setgid bits.
                let _ = std::os::unix::fs::fchown(&self.file, Some(existing.uid()), Some(existing.gid()));
            }
            let bits = match (&self.existing, self.placement) {
                _ if preserve => Some(mode.bits()),
                (Some(existing), Placement::Temporary) => Some(existing.mode() & 0o777),
                // An existing file written in place keeps its mode untouched.
                (Some(_), _) => None,
                (None, _) => Some(new_mode(mode, false, umask)),
            };
            if let Some(bits) = bits {
                self.file.set_permissions(Permissions::from_mode(bits))?;
            }
        }
        if let Some(times) = times {
            self.file.set_times(file_times(times))?;
        }
        if let Some(temporary) = self.temporary.take()
            && let Err(e) = self.root.rename(&temporary, &self.destination)
        {
            let _ = self.root.remove_file(&temporary);
            return Err(e);
        }
        Ok(())
    }
}

impl Drop for IncomingFile {
    fn drop(&mut self) {
        if let Some(temporary) = self.temporary.take() {
            let _ = self.root.remove_file(&temporary);
        }
    }
}

fn is_all_zero(data: &[u8]) -> bool {
    // 16 bytes at a time: this runs over every received chunk.
    let (blocks, rest) = data.as_chunks::<16>();
    blocks.iter().all(|b| u128::from_ne_bytes(*b) == 0) && rest.iter().all(|&b| b == 0)
}

/// What the sink found where a received directory goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirEntry {
    /// It existed already as a real directory.
    Existing,
    /// It was created (with owner rwx so it can be filled).
    Created,
}

/// Enters or creates the directory `path` for a `D` record. A symlink there is
/// refused rather than followed; with `preserve` an existing directory gets the
/// received mode now, as OpenSSH does.
pub fn enter_dir(root: &Root, path: &Path, mode: Mode, preserve: bool) -> io::Result<DirEntry> {
    match root.symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_dir() => {
            if preserve {
                root.open(path, OPEN_DIR)?.set_permissions(Permissions::from_mode(mode.bits()))?;
            }
            Ok(DirEntry::Existing)
        }
        Ok(meta) if meta.file_type().is_symlink() => Err(io::Error::from_raw_os_error(libc::ELOOP)),
        Ok(_) => Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            root.create_dir(path, 0o700)?;
            Ok(DirEntry::Created)
        }
        Err(e) => Err(e),
    }
}

/// Applies a received directory's deferred times and final mode once its contents
/// are written (writing into it would have changed its mtime).
pub fn finish_dir(root: &Root, path: &Path, mode: Option<u32>, times: Option<&Times>) -> io::Result<()> {
    if times.is_none() && mode.is_none() {
        return Ok(());
    }
    let dir = root.open(path, OPEN_DIR)?;
    if let Some(times) = times {
        dir.set_times(file_times(times))?;
    }
    if let Some(bits) = mode {
        dir.set_permissions(Permissions::from_mode(bits))?;
    }
    Ok(())
}

// ------------------------------------------------------------------ sending

/// Opens a local file to send, following symlinks as OpenSSH's source does.
/// `O_NONBLOCK` keeps the open from hanging on a FIFO; it is harmless for regular
/// files and directories, the only kinds that are read.
pub fn open_source(root: &Root, path: &Path) -> io::Result<(File, Metadata)> {
    let file = root.open(path, Open { read: true, non_blocking: true, ..Open::default() })?;
    let meta = Metadata::from_just_metadata(file.metadata()?);
    Ok((file, meta))
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
pub fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_text_has_no_suffix() {
        assert_eq!(errno_text(&io::Error::from_raw_os_error(libc::ENOENT)), "No such file or directory");
        assert_eq!(errno_text(&io::Error::other("plain")), "plain");
    }

    #[test]
    fn zero_detection() {
        assert!(is_all_zero(&[0u8; 1000]));
        assert!(is_all_zero(&[]));
        let mut data = [0u8; 1000];
        data[999] = 1;
        assert!(!is_all_zero(&data));
        data[999] = 0;
        data[3] = 1;
        assert!(!is_all_zero(&data));
    }

    #[test]
    fn umask_is_readable() {
        assert!(process_umask() <= 0o777);
    }
}
