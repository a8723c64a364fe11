//! Where the engine's paths resolve: the host filesystem, or beneath one directory.
//!
//! `rscp` (client, `-t`, `-f`) works on the host filesystem like any program. rscpd
//! serves many clients from one process, each confined to its `--root`: there every
//! path goes through a capability-style directory handle (`cap-std`, which resolves
//! with `openat2(RESOLVE_BENEATH)` where the kernel has it), so `..`, absolute
//! symlinks and symlinks leading out are refused by the kernel, not by string checks.
//! Under a confined root, client paths are relative to it: a leading `/` names the
//! root itself, as it would after a chroot.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cap_fs_ext::{FollowSymlinks, OpenOptionsFollowExt, OpenOptionsMaybeDirExt};
use cap_std::fs::{Dir, DirBuilderExt as _, OpenOptionsExt as _};

/// File metadata from either kind of root.
pub type Metadata = cap_std::fs::Metadata;
pub use cap_std::fs::{FileTypeExt, MetadataExt};

/// The filesystem the engine reads and writes.
#[derive(Debug, Clone, Default)]
pub enum Root {
    /// Paths mean what they mean to this process.
    #[default]
    Host,
    /// Every path resolves inside this directory and cannot leave it.
    Beneath(Arc<Dir>),
}

/// What an open asks for; the flags the engine needs and no more.
#[derive(Debug, Clone, Copy, Default)]
pub struct Open {
    pub read: bool,
    pub write: bool,
    pub create: bool,
    pub create_new: bool,
    /// Mode of a created file (before the umask).
    pub mode: u32,
    /// Refuse a symlink as the last component.
    pub no_follow: bool,
    /// Open a directory (for its times and mode).
    pub directory: bool,
    /// `O_NONBLOCK`: opening a FIFO must not hang.
    pub non_blocking: bool,
}

impl Root {
    /// A root confined to `dir`.
    pub fn beneath(dir: Dir) -> Root {
        Root::Beneath(Arc::new(dir))
    }

    /// A client path as a path relative to a confined root: leading slashes name
    /// the root itself, and the empty path is the root.
    pub fn relative(path: &Path) -> &Path {
        use std::os::unix::ffi::OsStrExt;
        let bytes = path.as_os_str().as_bytes();
        let start = bytes.iter().position(|&b| b != b'/').unwrap_or(bytes.len());
        if start == bytes.len() {
            return Path::new(".");
        }
        Path::new(std::ffi::OsStr::from_bytes(&bytes[start..]))
    }

    /// Metadata, following symlinks.
    pub fn metadata(&self, path: &Path) -> io::Result<Metadata> {
        match self {
            Root::Host => std::fs::metadata(path).map(Metadata::from_just_metadata),
            Root::Beneath(dir) => dir.metadata(Root::relative(path)),
        }
    }

    /// Metadata of the entry itself (a symlink is not followed).
    pub fn symlink_metadata(&self, path: &Path) -> io::Result<Metadata> {
        match self {
            Root::Host => std::fs::symlink_metadata(path).map(Metadata::from_just_metadata),
            Root::Beneath(dir) => dir.symlink_metadata(Root::relative(path)),
        }
    }

    /// Opens a file (always close-on-exec).
    pub fn open(&self, path: &Path, how: Open) -> io::Result<File> {
        let mut flags = 0;
        if how.non_blocking {
            flags |= libc::O_NONBLOCK;
        }
        match self {
            Root::Host => {
                if how.no_follow {
                    flags |= libc::O_NOFOLLOW;
                }
                if how.directory {
                    flags |= libc::O_DIRECTORY;
                }
                std::fs::OpenOptions::new()
                    .read(how.read || how.directory)
                    .write(how.write)
                    .create(how.create)
                    .create_new(how.create_new)
                    .mode(how.mode)
                    .custom_flags(flags | libc::O_CLOEXEC)
                    .open(path)
            }
            Root::Beneath(dir) => {
                let mut options = cap_std::fs::OpenOptions::new();
                options
                    .read(how.read || how.directory)
                    .write(how.write)
                    .create(how.create)
                    .create_new(how.create_new)
                    .mode(how.mode)
                    .custom_flags(flags)
                    .follow(if how.no_follow { FollowSymlinks::No } else { FollowSymlinks::Yes })
                    .maybe_dir(how.directory);
                let file = dir.open_with(Root::relative(path), &options)?.into_std();
                if how.directory && !file.metadata()?.is_dir() {
                    return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
                }
                Ok(file)
            }
        }
    }

    pub fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        match self {
            Root::Host => std::fs::rename(from, to),
            Root::Beneath(dir) => dir.rename(Root::relative(from), dir, Root::relative(to)),
        }
    }

    pub fn remove_file(&self, path: &Path) -> io::Result<()> {
        match self {
            Root::Host => std::fs::remove_file(path),
            Root::Beneath(dir) => dir.remove_file(Root::relative(path)),
        }
    }

    /// Creates one directory with `mode` (before the umask).
    pub fn create_dir(&self, path: &Path, mode: u32) -> io::Result<()> {
        match self {
            Root::Host => {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new().mode(mode).create(path)
            }
            Root::Beneath(dir) => {
                let mut builder = cap_std::fs::DirBuilder::new();
                builder.mode(mode);
                dir.create_dir_with(Root::relative(path), &builder)
            }
        }
    }

    /// The names in a directory, in readdir order (without `.` and `..`).
    pub fn read_dir(&self, path: &Path) -> io::Result<Entries> {
        match self {
            Root::Host => std::fs::read_dir(path).map(Entries::Host),
            Root::Beneath(dir) => dir.read_dir(Root::relative(path)).map(Entries::Beneath),
        }
    }

    /// The real name of the directory `path` names (for operands such as `.`);
    /// `None` for the root of a confined root, which has no name to send.
    pub fn real_name(&self, path: &Path) -> Option<OsString> {
        let real: PathBuf = match self {
            Root::Host => std::fs::canonicalize(path).ok()?,
            Root::Beneath(dir) => dir.canonicalize(Root::relative(path)).ok()?,
        };
        real.file_name().map(|name| name.to_os_string())
    }
}

/// A directory's entries, from either kind of root.
#[derive(Debug)]
pub enum Entries {
    Host(std::fs::ReadDir),
    Beneath(cap_std::fs::ReadDir),
}

impl Iterator for Entries {
    type Item = io::Result<OsString>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Entries::Host(entries) => entries.next().map(|e| e.map(|e| e.file_name())),
            Entries::Beneath(entries) => entries.next().map(|e| e.map(|e| e.file_name())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_stay_under_the_root() {
        assert_eq!(Root::relative(Path::new("/")), Path::new("."));
        assert_eq!(Root::relative(Path::new("")), Path::new("."));
        assert_eq!(Root::relative(Path::new("//a/b")), Path::new("a/b"));
        assert_eq!(Root::relative(Path::new("a")), Path::new("a"));
    }

    #[test]
    fn a_confined_root_refuses_to_leave() {
        let outer = tempfile::tempdir().expect("tempdir");
        let inner = outer.path().join("root");
        std::fs::create_dir(&inner).expect("mkdir");
        std::fs::write(outer.path().join("secret"), "x").expect("write");
        std::os::unix::fs::symlink("/etc", inner.join("etc")).expect("symlink");
        std::os::unix::fs::symlink("../secret", inner.join("up")).expect("symlink");
        let dir = Dir::open_ambient_dir(&inner, cap_std::ambient_authority()).expect("open root");
        let root = Root::beneath(dir);
        let read = Open { read: true, ..Open::default() };
        for path in ["../secret", "/../secret", "up", "etc/passwd", "/etc/hostname"] {
            assert!(root.open(Path::new(path), read).is_err(), "{path} escaped the root");
        }
        let write = Open { write: true, create: true, mode: 0o600, ..Open::default() };
        assert!(root.open(Path::new("../new"), write).is_err());
        assert!(!outer.path().join("new").exists());
        assert!(root.create_dir(Path::new("/../made"), 0o700).is_err());
        assert!(!outer.path().join("made").exists());
        // Paths inside are fine, with or without a leading slash.
        root.open(Path::new("/inside"), write).expect("create inside");
        assert!(inner.join("inside").exists());
    }
}
