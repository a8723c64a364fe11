//! Integration tests of the `rscp` binary: spec §10 vectors replayed byte for
//! byte, interop with the real OpenSSH `scp` client, local copies, usage text,
//! and remote copies over the native SSH transport against a real `sshd`.
//!
//! Every child process is bounded in time (a hang fails the test, it never
//! blocks CI) and runs in its own process group, killed as a whole on timeout.

#[path = "cli/faults.rs"]
mod faults;
#[path = "cli/interop.rs"]
mod interop;
#[path = "cli/local.rs"]
mod local;
#[path = "cli/plans.rs"]
mod plans;
#[path = "cli/sftp.rs"]
mod sftp;
#[path = "cli/ssh.rs"]
mod ssh;
#[path = "cli/usage.rs"]
mod usage;
#[path = "cli/vectors.rs"]
mod vectors;

pub use rscp_testkit::pseudo_random;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use filetime::FileTime;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_rscp");

/// The default bound on a child process.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// What a finished child left behind.
#[derive(Debug)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// A `Command` for the binary under test, started in `dir`.
pub fn rscp(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir);
    cmd
}

/// Runs `cmd` with `input` on its stdin (then closed), capturing stdout and
/// stderr; kills the child's whole process group and panics after `timeout`.
pub fn run_with(cmd: &mut Command, input: &[u8], timeout: Duration) -> Output {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.process_group(0);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.to_vec();
    // The child may exit before reading everything (EPIPE): that is its business.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let stdout = reader(child.stdout.take().expect("piped stdout"));
    let stderr = reader(child.stderr.take().expect("piped stderr"));
    let code = wait_bounded(&mut child, timeout, &format!("{cmd:?}"));
    let _ = writer.join();
    Output {
        code,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// `run_with` and the default timeout.
pub fn run(cmd: &mut Command, input: &[u8]) -> Output {
    run_with(cmd, input, TIMEOUT)
}

fn reader(mut stream: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stream.read_to_end(&mut buf);
        buf
    })
}

/// Waits for `child` (started with `process_group(0)`) at most `timeout`; on
/// timeout kills its process group and panics.
pub fn wait_bounded(child: &mut Child, timeout: Duration, what: &str) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.code(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                kill_group(child);
                panic!("timed out after {timeout:?}: {what}");
            }
            Err(e) => panic!("wait failed for {what}: {e}"),
        }
    }
}

fn kill_group(child: &mut Child) {
    let group = format!("-{}", child.id());
    let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
    let _ = child.kill();
    let _ = child.wait();
}

/// Shows protocol bytes readably in assertion messages.
pub fn show(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

#[track_caller]
pub fn assert_bytes(actual: &[u8], expected: &[u8], what: &str) {
    assert!(
        actual == expected,
        "{what}:\n  got      b\"{}\"\n  expected b\"{}\"",
        show(actual),
        show(expected)
    );
}

/// The OpenSSH `scp` client, if installed. Missing: panic when
/// `RSCP_REQUIRE_PEERS=1` (CI), else skip the test with a note.
pub fn openssh_scp() -> Option<&'static str> {
    const SCP: &str = "/usr/bin/scp";
    if Path::new(SCP).exists() {
        return Some(SCP);
    }
    if std::env::var("RSCP_REQUIRE_PEERS").as_deref() == Ok("1") {
        panic!("{SCP} (OpenSSH) is required (RSCP_REQUIRE_PEERS=1) but is not installed");
    }
    eprintln!("skipped: {SCP} (OpenSSH) is not installed");
    None
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::TempDir::new().expect("temp dir")
}

pub fn write_file(path: &Path, contents: &[u8], mode: u32) {
    fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

pub fn set_times(path: &Path, mtime: i64, atime: i64) {
    filetime::set_file_times(path, FileTime::from_unix_time(atime, 0), FileTime::from_unix_time(mtime, 0))
        .unwrap_or_else(|e| panic!("utimes {}: {e}", path.display()));
}

pub const MTIME: i64 = 1_700_000_000;
pub const ATIME: i64 = 1_800_000_000;

/// The fixture of spec §10 vectors 1–4, in `dir`.
pub fn spec_fixture(dir: &Path) {
    write_file(&dir.join("a.txt"), b"hello\n", 0o644);
    fs::create_dir_all(dir.join("tree/sub")).expect("mkdir");
    write_file(&dir.join("tree/f1"), b"one\n", 0o600);
    write_file(&dir.join("tree/sub/empty"), b"", 0o644);
    write_file(&dir.join("tree/sub/f2"), b"xyz", 0o644);
    for d in ["tree", "tree/sub"] {
        fs::set_permissions(dir.join(d), fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    // Files first, directories deepest first: creating entries changes a directory's mtime.
    for p in ["a.txt", "tree/f1", "tree/sub/empty", "tree/sub/f2", "tree/sub", "tree"] {
        set_times(&dir.join(p), MTIME, ATIME);
    }
}

/// What a tree comparison looks at for one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub kind: char,
    pub mode: u32,
    pub mtime: i64,
    pub atime: i64,
    pub size: u64,
}

/// Metadata of every entry under `root` (relative paths), taken with lstat and
/// without reading any file, so atimes are not disturbed.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Meta> {
    fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, Meta>) {
        let dir = root.join(rel);
        let mut names: Vec<_> =
            fs::read_dir(&dir).expect("read_dir").map(|e| e.expect("dir entry").file_name()).collect();
        names.sort();
        for name in names {
            let rel = rel.join(&name);
            let meta = fs::symlink_metadata(root.join(&rel)).expect("lstat");
            let kind = if meta.is_dir() {
                'd'
            } else if meta.is_file() {
                'f'
            } else {
                '?'
            };
            out.insert(
                rel.clone(),
                Meta {
                    kind,
                    mode: meta.mode() & 0o7777,
                    mtime: meta.mtime(),
                    atime: meta.atime(),
                    size: if kind == 'f' { meta.len() } else { 0 },
                },
            );
            if kind == 'd' {
                walk(root, &rel, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, Path::new(""), &mut out);
    out
}

/// `snapshot` once reading directories no longer moves their atimes: under
/// `relatime` the first readdir of a directory whose atime is older than its
/// ctime sets the atime to now, and a copy with `-p` carries that over.
pub fn settled_snapshot(root: &Path) -> BTreeMap<PathBuf, Meta> {
    snapshot(root);
    snapshot(root)
}

/// Asserts that `dst` holds the same entries as `src` with the same contents; with
/// `expected` (a snapshot of the source taken before the copy), also the same
/// modes, mtimes and atimes. Metadata is compared before any content is read.
#[track_caller]
pub fn assert_same_tree(src: &Path, dst: &Path, expected: Option<&BTreeMap<PathBuf, Meta>>) {
    let got = snapshot(dst);
    let want = snapshot(src);
    let names = |m: &BTreeMap<PathBuf, Meta>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&got), names(&want), "entries of {} vs {}", dst.display(), src.display());
    if let Some(expected) = expected {
        for (path, meta) in expected {
            let Some(copy) = got.get(path) else { panic!("{} is missing", path.display()) };
            // A source directory's atime may move while the copy reads it
            // (relatime): the copy must carry the value from before or after.
            let atime_ok = copy.atime == meta.atime || (meta.kind == 'd' && copy.atime == want[path].atime);
            let same_but_atime = Meta { atime: meta.atime, ..copy.clone() } == *meta;
            assert!(same_but_atime && atime_ok, "metadata of {}: {copy:?}, want {meta:?}", path.display());
        }
    }
    for (path, meta) in &want {
        assert_eq!(got[path].kind, meta.kind, "type of {}", path.display());
        if meta.kind == 'f' {
            let a = fs::read(src.join(path)).expect("read source");
            let b = fs::read(dst.join(path)).expect("read copy");
            assert!(a == b, "contents of {} differ ({} vs {} bytes)", path.display(), a.len(), b.len());
        }
    }
}

/// This process's umask (the children inherit it), from /proc; 022 if unknown.
pub fn umask() -> u32 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("Umask:"))?;
            u32::from_str_radix(line["Umask:".len()..].trim(), 8).ok()
        })
        .unwrap_or(0o022)
}

pub fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display())).mode() & 0o7777
}

pub fn times_of(path: &Path) -> (i64, i64) {
    let meta = fs::metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    (meta.mtime(), meta.atime())
}
