//! Interop with the real OpenSSH client: `scp -O -S <wrapper>` where the wrapper
//! stands in for ssh and runs the remote command locally, with a `scp` link to
//! our binary first in PATH, so `rscp -t` / `rscp -f` is the remote end.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::*;

/// A sandbox: `root/` is both the local and the "remote" file system.
struct Peer {
    scp: &'static str,
    _dir: tempfile::TempDir,
    root: PathBuf,
    wrapper: PathBuf,
    log: PathBuf,
}

impl Peer {
    fn new() -> Option<Peer> {
        let scp = openssh_scp()?;
        let dir = tempdir();
        let root = dir.path().join("root");
        let bin = dir.path().join("bin");
        fs::create_dir(&root).expect("mkdir");
        fs::create_dir(&bin).expect("mkdir");
        std::os::unix::fs::symlink(BIN, bin.join("scp")).expect("symlink");
        let log = dir.path().join("commands.log");
        let wrapper = dir.path().join("ssh-wrapper");
        // Skips ssh's options up to `--`, drops the host, runs the command with
        // sh -c (as sshd would), refusing to run if `scp` is not our link.
        let script = format!(
            r#"#!/bin/sh
while [ $# -gt 0 ]; do
  case "$1" in
    --) shift; break ;;
    -p|-l|-o|-c|-F|-i|-J|-b|-e|-m|-w|-E|-D|-L|-R|-W|-O|-Q|-S|-B|-I) shift 2 ;;
    -*) shift ;;
    *) break ;;
  esac
done
shift
PATH='{bin}':"$PATH"
export PATH
[ "$(command -v scp)" = '{bin}/scp' ] || {{ echo "wrapper: scp is not rscp" >&2; exit 99; }}
printf '%s\n' "$1" >> '{log}'
exec sh -c "$1"
"#,
            bin = bin.display(),
            log = log.display(),
        );
        write_file(&wrapper, script.as_bytes(), 0o755);
        Some(Peer { scp, _dir: dir, root, wrapper, log })
    }

    /// Runs `scp -O -S wrapper ARGS` in the root; returns its output.
    fn scp(&self, args: &[&str], timeout: Duration) -> Output {
        let mut cmd = Command::new(self.scp);
        cmd.current_dir(&self.root).arg("-O").arg("-S").arg(&self.wrapper).args(args);
        run_with(&mut cmd, b"", timeout)
    }

    #[track_caller]
    fn scp_ok(&self, args: &[&str]) -> Output {
        let out = self.scp(args, Duration::from_secs(60));
        assert_eq!(out.code, Some(0), "scp -O {args:?}: stderr {}", out.stderr_text());
        out
    }

    fn commands(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// `host:` + the absolute path of `rel`.
    fn remote(&self, rel: &str) -> String {
        format!("host:{}", self.path(rel).display())
    }
}

/// The source tree: empty and 1-byte files, 20 MiB of pseudo-random bytes, names
/// with spaces, UTF-8 and a leading dash, nested empty directories; varied modes
/// and times.
fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("nested/empty1/empty2")).expect("mkdir");
    fs::create_dir_all(root.join("dir with spaces/inner")).expect("mkdir");
    let files: [(&str, Vec<u8>, u32); 8] = [
        ("empty.bin", Vec::new(), 0o644),
        ("one.bin", b"x".to_vec(), 0o600),
        ("big.bin", pseudo_random(20 * 1024 * 1024, 42), 0o640),
        ("name with spaces.txt", b"spaces\n".to_vec(), 0o644),
        ("café ☕.txt", "coffee ☕\n".as_bytes().to_vec(), 0o644),
        ("-dash.txt", b"dash\n".to_vec(), 0o755),
        ("dir with spaces/inner/deep.txt", b"deep\n".to_vec(), 0o444),
        ("nested/x.sh", b"#!/bin/sh\n".to_vec(), 0o700),
    ];
    for (name, contents, mode) in &files {
        write_file(&root.join(name), contents, *mode);
    }
    let dirs =
        ["nested/empty1/empty2", "nested/empty1", "nested", "dir with spaces/inner", "dir with spaces"];
    for (i, name) in files.iter().map(|f| f.0).chain(dirs).enumerate() {
        let i = i as i64;
        set_times(&root.join(name), 1_500_000_000 + i * 7, 1_600_000_000 + i * 11);
    }
    fs::set_permissions(root.join("nested/empty1"), std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .expect("chmod");
    set_times(root, 1_400_000_000, 1_450_000_000);
}

#[test]
fn upload_and_download_trees_with_r_p() {
    let Some(peer) = Peer::new() else { return };
    make_tree(&peer.path("src"));
    let before = settled_snapshot(&peer.path("src"));
    let top = times_of(&peer.path("src"));
    assert_eq!(top.0, 1_400_000_000);
    let started = Instant::now();

    // Upload into a new name: the tree becomes `up`.
    peer.scp_ok(&["-r", "-p", "src", "host:up"]);
    // Read the copy's times before anything lists it: under relatime the first
    // readdir of a directory moves its atime to now.
    let copied = times_of(&peer.path("up"));
    assert_same_tree(&peer.path("src"), &peer.path("up"), Some(&before));
    // The source directory's atime may move while OpenSSH reads it (relatime):
    // the copy must carry the value from before or from after that read.
    let after = times_of(&peer.path("src"));
    assert!(copied == top || copied == after, "top directory times: {copied:?}, want {top:?} or {after:?}");

    // Upload into an existing directory: the tree becomes `up/src`.
    let before = settled_snapshot(&peer.path("src"));
    peer.scp_ok(&["-rp", "src", &peer.remote("up")]);
    assert_same_tree(&peer.path("src"), &peer.path("up/src"), Some(&before));

    // Download.
    fs::create_dir(peer.path("dl")).expect("mkdir");
    let before = settled_snapshot(&peer.path("src"));
    peer.scp_ok(&["-r", "-p", &peer.remote("src"), "dl/"]);
    assert_same_tree(&peer.path("src"), &peer.path("dl/src"), Some(&before));

    let commands = peer.commands();
    assert!(commands.contains("scp -r -p -t up\n"), "commands: {commands}");
    assert!(
        commands.contains(&format!("scp -r -p -f {}\n", peer.path("src").display())),
        "commands: {commands}"
    );
    eprintln!("3 tree copies with -r -p: {:?}", started.elapsed());
}

#[test]
fn upload_and_download_trees_with_r_only() {
    let Some(peer) = Peer::new() else { return };
    make_tree(&peer.path("src"));
    peer.scp_ok(&["-r", "src", "host:up"]);
    assert_same_tree(&peer.path("src"), &peer.path("up"), None);
    fs::create_dir(peer.path("dl")).expect("mkdir");
    peer.scp_ok(&["-r", &peer.remote("src"), "dl"]);
    assert_same_tree(&peer.path("src"), &peer.path("dl/src"), None);
    // Without -p, new files get the sent mode under the umask, and no times.
    assert_eq!(mode_of(&peer.path("dl/src/nested/x.sh")), 0o700 & !umask());
    assert_eq!(mode_of(&peer.path("dl/src/-dash.txt")), 0o755 & !umask());
    assert_ne!(times_of(&peer.path("dl/src/one.bin")).0, before_mtime(&peer.path("src/one.bin")));
    assert!(peer.commands().contains("scp -r -t up\n"), "commands: {}", peer.commands());
}

fn before_mtime(path: &Path) -> i64 {
    times_of(path).0
}

#[test]
fn single_files_without_r() {
    let Some(peer) = Peer::new() else { return };
    make_tree(&peer.path("src"));
    let src = |n: &str| format!("src/{n}");

    // Several sources into a directory: the client adds -d.
    fs::create_dir(peer.path("up")).expect("mkdir");
    let names = ["empty.bin", "one.bin", "big.bin", "name with spaces.txt", "café ☕.txt", "-dash.txt"];
    let mut args: Vec<String> = vec!["-p".into()];
    args.extend(names.iter().map(|n| src(n)));
    args.push("host:up".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    peer.scp_ok(&args);
    assert!(peer.commands().contains("scp -p -d -t up\n"), "commands: {}", peer.commands());
    for name in names {
        let (a, b) = (peer.path(&src(name)), peer.path("up").join(name));
        assert_eq!(fs::read(&b).expect("copy"), fs::read(&a).expect("source"), "{name}");
        assert_eq!(mode_of(&b), mode_of(&a), "mode of {name}");
        assert_eq!(times_of(&b).0, times_of(&a).0, "mtime of {name}");
    }

    // A target with a leading dash: the client sends `scp -t -- -x.txt`.
    peer.scp_ok(&["src/one.bin", "host:-x.txt"]);
    assert!(peer.commands().contains("scp -t -- -x.txt\n"), "commands: {}", peer.commands());
    assert_eq!(fs::read(peer.path("-x.txt")).expect("-x.txt"), b"x");

    // Downloads, one connection per source; names needing remote quoting are
    // escaped for the remote shell (OpenSSH pastes them verbatim).
    fs::create_dir(peer.path("dl")).expect("mkdir");
    let base = peer.path("src").display().to_string();
    peer.scp_ok(&[
        "-p",
        &format!("host:{base}/empty.bin"),
        &format!("host:{base}/one.bin"),
        &format!("host:{base}/big.bin"),
        &format!("host:{base}/name\\ with\\ spaces.txt"),
        &format!("host:{base}/café\\ ☕.txt"),
        &format!("host:{base}/-dash.txt"),
        "dl",
    ]);
    for name in names {
        let (a, b) = (peer.path(&src(name)), peer.path("dl").join(name));
        assert_eq!(fs::read(&b).expect("copy"), fs::read(&a).expect("source"), "{name}");
        assert_eq!(mode_of(&b), mode_of(&a), "mode of {name}");
    }

    // A download with a leading-dash path: `scp -f -- -x.txt`.
    peer.scp_ok(&["host:-x.txt", "dl/dash-copy"]);
    assert!(peer.commands().contains("scp -f -- -x.txt\n"), "commands: {}", peer.commands());
    assert_eq!(fs::read(peer.path("dl/dash-copy")).expect("copy"), b"x");
}

#[test]
fn download_of_a_missing_file() {
    let Some(peer) = Peer::new() else { return };
    fs::create_dir(peer.path("dl")).expect("mkdir");
    let out = peer.scp(&["host:nope", "dl/"], Duration::from_secs(30));
    assert_eq!(out.code, Some(1));
    assert_eq!(out.stderr_text(), "scp: nope: No such file or directory\n");
    assert_eq!(fs::read_dir(peer.path("dl")).expect("read_dir").count(), 0);
}

#[test]
fn upload_into_a_missing_directory() {
    let Some(peer) = Peer::new() else { return };
    write_file(&peer.path("a.txt"), b"hello\n", 0o644);
    let out = peer.scp(&["a.txt", "host:nodir/x"], Duration::from_secs(30));
    assert_eq!(out.code, Some(1));
    assert_eq!(out.stderr_text(), "scp: nodir/x: No such file or directory\n");
    assert!(!peer.path("nodir").exists());

    // Several sources into a missing directory: the -d check refuses at once.
    let out = peer.scp(&["a.txt", "a.txt", "host:nodir"], Duration::from_secs(30));
    assert_eq!(out.code, Some(1));
    assert_eq!(out.stderr_text(), "scp: nodir: No such file or directory\n");
}

/// A sparse file of 4 GiB + 4097 bytes with non-zero bytes at 0, 4 GiB - 1 and
/// the end, uploaded by OpenSSH into `rscp -t`.
#[test]
fn upload_of_a_sparse_file_over_4_gib() {
    let Some(peer) = Peer::new() else { return };
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() { tempfile::TempDir::new_in(shm).expect("temp dir") } else { tempdir() };
    const SIZE: u64 = (4 << 30) + 4097;
    let marks: [(u64, u8); 3] = [(0, 0xa5), ((4 << 30) - 1, 0x5a), (SIZE - 1, 0x42)];
    let src = base.path().join("sparse.bin");
    {
        let file = fs::File::create(&src).expect("create");
        file.set_len(SIZE).expect("set_len");
        for (offset, byte) in marks {
            file.write_all_at(&[byte], offset).expect("pwrite");
        }
    }
    let dst = base.path().join("copy.bin");
    let started = Instant::now();
    let out =
        peer.scp(&[&src.display().to_string(), &format!("host:{}", dst.display())], Duration::from_secs(300));
    let elapsed = started.elapsed();
    eprintln!("4 GiB sparse upload took {elapsed:?}");
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr_text());
    let copy = fs::File::open(&dst).expect("open copy");
    assert_eq!(copy.metadata().expect("stat").len(), SIZE);
    for (offset, byte) in marks {
        let mut b = [0u8];
        copy.read_exact_at(&mut b, offset).expect("pread");
        assert_eq!(b[0], byte, "byte at {offset}");
    }
    // Around the 4 GiB boundary, where a 32-bit size or offset would break.
    let mut window = vec![0u8; 8192];
    copy.read_exact_at(&mut window, (4 << 30) - 4096).expect("pread");
    assert!(
        window.iter().enumerate().all(|(i, &b)| b == if i == 4095 { 0x5a } else { 0 }),
        "bytes around 4 GiB"
    );
    let started = Instant::now();
    let mut cmp = Command::new("cmp");
    cmp.arg(&src).arg(&dst);
    let cmp = run_with(&mut cmp, b"", Duration::from_secs(120));
    eprintln!("cmp took {:?}", started.elapsed());
    assert_eq!(cmp.code, Some(0), "cmp: {}", String::from_utf8_lossy(&cmp.stdout));
}
