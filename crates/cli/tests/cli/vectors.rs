//! Spec §10 test vectors replayed byte for byte against `rscp -t` / `rscp -f`,
//! over pipes and over one socketpair end (as sshd and OpenSSH 9.2 use).

use std::fs;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::*;

const T: &[u8] = b"T1700000000 0 1800000000 0\n";

/// Vector 1's client stream (48 bytes).
fn v1_client() -> Vec<u8> {
    [T, b"C0644 6 a.txt\nhello\n\0"].concat()
}

/// Vector 3's source stream (210 bytes), in the spec's readdir order.
fn v3_stream() -> Vec<u8> {
    [
        T,
        b"D0755 0 tree\n",
        T,
        b"C0600 4 f1\none\n\0",
        T,
        b"D0755 0 sub\n",
        T,
        b"C0644 0 empty\n\0",
        T,
        b"C0644 3 f2\nxyz\0",
        b"E\nE\n",
    ]
    .concat()
}

/// Vector 4's source stream (no -p).
const V4_STREAM: &[u8] =
    b"D0755 0 tree\nC0600 4 f1\none\n\0D0755 0 sub\nC0644 0 empty\n\0C0644 3 f2\nxyz\0E\nE\n";

/// One record of a source stream, with its preceding T line and, for a
/// directory, its children sorted by name (readdir order is not defined).
#[derive(Debug, PartialEq, Eq)]
enum Rec {
    File { times: Option<Vec<u8>>, header: Vec<u8>, data: Vec<u8> },
    Dir { times: Option<Vec<u8>>, header: Vec<u8>, children: Vec<Rec> },
}

fn rec_name(rec: &Rec) -> Vec<u8> {
    let header = match rec {
        Rec::File { header, .. } | Rec::Dir { header, .. } => header,
    };
    header.splitn(3, |&b| b == b' ').nth(2).unwrap_or_default().to_vec()
}

/// Parses a whole source stream; panics on anything malformed or left over.
fn parse_stream(stream: &[u8]) -> Vec<Rec> {
    fn line<'a>(stream: &'a [u8], pos: &mut usize) -> &'a [u8] {
        let rest = &stream[*pos..];
        let end =
            rest.iter().position(|&b| b == b'\n').unwrap_or_else(|| panic!("unterminated record at {pos}"));
        *pos += end + 1;
        &rest[..end]
    }
    fn level(stream: &[u8], pos: &mut usize, top: bool) -> Vec<Rec> {
        let mut out = Vec::new();
        let mut times = None;
        while *pos < stream.len() {
            let l = line(stream, pos).to_vec();
            match l.first() {
                Some(b'T') => times = Some(l),
                Some(b'E') if !top => break,
                Some(b'C') => {
                    let size: usize = std::str::from_utf8(l.split(|&b| b == b' ').nth(1).expect("size"))
                        .expect("ascii size")
                        .parse()
                        .expect("size");
                    let data = stream[*pos..*pos + size].to_vec();
                    *pos += size;
                    assert_eq!(stream.get(*pos), Some(&0), "status byte after {}", show(&l));
                    *pos += 1;
                    out.push(Rec::File { times: times.take(), header: l, data });
                }
                Some(b'D') => {
                    let children = level(stream, pos, false);
                    out.push(Rec::Dir { times: times.take(), header: l, children });
                }
                _ => panic!("unexpected record b\"{}\"", show(&l)),
            }
        }
        assert!(times.is_none(), "dangling T record");
        out.sort_by_key(rec_name);
        out
    }
    let mut pos = 0;
    level(stream, &mut pos, true)
}

/// Exact when the readdir order matches the spec's, else the same records per
/// directory and the same total length.
#[track_caller]
fn assert_same_stream(actual: &[u8], expected: &[u8]) {
    if actual == expected {
        return;
    }
    assert_eq!(actual.len(), expected.len(), "stream b\"{}\"", show(actual));
    assert_eq!(parse_stream(actual), parse_stream(expected), "stream b\"{}\"", show(actual));
}

#[track_caller]
fn assert_spec_tree(root: &Path, preserve: bool) {
    let files: [(&str, &[u8], u32); 3] =
        [("f1", b"one\n", 0o600), ("sub/empty", b"", 0o644), ("sub/f2", b"xyz", 0o644)];
    for (name, contents, mode) in files {
        let path = root.join(name);
        assert_eq!(fs::read(&path).expect("read copy"), contents, "{name}");
        let mode = if preserve { mode } else { mode & !umask() };
        assert_eq!(mode_of(&path), mode, "mode of {name}");
    }
    for dir in ["", "sub"] {
        let mode = if preserve { 0o755 } else { 0o755 & !umask() };
        assert_eq!(mode_of(&root.join(dir)), mode, "mode of dir {dir:?}");
    }
    if preserve {
        for name in ["f1", "sub/empty", "sub/f2", "sub", ""] {
            assert_eq!(times_of(&root.join(name)), (MTIME, ATIME), "times of {name:?}");
        }
    }
}

#[test]
fn vector_1_upload_one_file_with_p() {
    let dir = tempdir();
    let out = run(rscp(dir.path()).args(["-p", "-t", "dest.txt"]), &v1_client());
    assert_bytes(&out.stdout, b"\0\0\0\0", "sink replies");
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr_text());
    let dest = dir.path().join("dest.txt");
    assert_eq!(fs::read(&dest).expect("dest.txt"), b"hello\n");
    assert_eq!(mode_of(&dest), 0o644);
    assert_eq!(times_of(&dest), (MTIME, ATIME));
}

#[test]
fn vector_2_download_one_file_with_p() {
    let dir = tempdir();
    spec_fixture(dir.path());
    let out = run(rscp(dir.path()).args(["-p", "-f", "a.txt"]), b"\0\0\0\0");
    assert_bytes(&out.stdout, &v1_client(), "source stream");
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr_text());
}

#[test]
fn vector_3_download_tree_with_r_p() {
    let dir = tempdir();
    spec_fixture(dir.path());
    let out = run(rscp(dir.path()).args(["-r", "-p", "-f", "tree"]), &[0; 16]);
    assert_eq!(v3_stream().len(), 210);
    assert_same_stream(&out.stdout, &v3_stream());
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr_text());
}

#[test]
fn vector_3_upload_tree_with_r_p() {
    let dir = tempdir();
    let out = run(rscp(dir.path()).args(["-r", "-p", "-t", "."]), &v3_stream());
    assert_bytes(&out.stdout, &[0; 16], "sink replies");
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr_text());
    assert_spec_tree(&dir.path().join("tree"), true);
}

#[test]
fn vector_4_download_tree_with_r() {
    let dir = tempdir();
    spec_fixture(dir.path());
    let out = run(rscp(dir.path()).args(["-r", "-f", "tree"]), &[0; 11]);
    assert_same_stream(&out.stdout, V4_STREAM);
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr_text());
}

#[test]
fn vector_4_upload_tree_with_r_without_p() {
    let dir = tempdir();
    let out = run(rscp(dir.path()).args(["-r", "-t", "."]), V4_STREAM);
    assert_bytes(&out.stdout, &[0; 11], "sink replies");
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr_text());
    assert_spec_tree(&dir.path().join("tree"), false);
}

#[test]
fn vector_5_missing_source() {
    let dir = tempdir();
    let out = run(rscp(dir.path()).args(["-f", "nope"]), b"\0");
    assert_bytes(&out.stdout, b"\x01scp: nope: No such file or directory\n", "source reply");
    assert_eq!(out.code, Some(1));
}

#[test]
fn vector_5_missing_source_then_a_good_one() {
    let dir = tempdir();
    spec_fixture(dir.path());
    let out = run(rscp(dir.path()).args(["-f", "nope", "a.txt"]), b"\0\0\0");
    assert_bytes(
        &out.stdout,
        b"\x01scp: nope: No such file or directory\nC0644 6 a.txt\nhello\n\0",
        "source stream",
    );
    assert_eq!(out.code, Some(1));
}

#[test]
fn vector_6_sink_cannot_create_the_file() {
    let dir = tempdir();
    let out = run(rscp(dir.path()).args(["-t", "nodir/x"]), b"C0644 6 a.txt\n");
    assert_bytes(&out.stdout, b"\0\x01scp: nodir/x: No such file or directory\n", "sink replies");
    assert_eq!(out.code, Some(1));
    assert!(!dir.path().join("nodir").exists());
}

#[test]
fn vector_7_d_target_is_not_a_directory() {
    let dir = tempdir();
    spec_fixture(dir.path());
    let out = run(rscp(dir.path()).args(["-d", "-t", "tree/f1"]), b"C0644 6 a.txt\nhello\n\0");
    assert_bytes(&out.stdout, b"\x01scp: tree/f1: Not a directory\n", "sink reply");
    assert_eq!(out.code, Some(1));
    assert_eq!(fs::read(dir.path().join("tree/f1")).expect("f1"), b"one\n", "target untouched");

    let out = run(rscp(dir.path()).args(["-d", "-t", "missing"]), b"");
    assert_bytes(&out.stdout, b"\x01scp: missing: No such file or directory\n", "sink reply");
    assert_eq!(out.code, Some(1));

    let out = run(rscp(dir.path()).args(["-d", "-t", "tree"]), b"C0644 6 a.txt\nhello\n\0");
    assert_bytes(&out.stdout, b"\0\0\0", "-d with a directory target");
    assert_eq!(out.code, Some(0));
    assert_eq!(fs::read(dir.path().join("tree/a.txt")).expect("a.txt"), b"hello\n");
}

#[test]
fn vector_9_sink_write_failure() {
    if !Path::new("/dev/full").exists() {
        eprintln!("skipped: no /dev/full");
        return;
    }
    let dir = tempdir();
    let out = run(rscp(dir.path()).args(["-t", "/dev/full"]), b"C0644 6 a.txt\nhello\n\0");
    assert_bytes(&out.stdout, b"\0\0\x01scp: /dev/full: No space left on device\n", "sink replies");
    assert_eq!(out.code, Some(1));
}

/// Vector 11's hostile records, into `rscp -t` (as the remote sink; the
/// requested-name check does not apply there).
const HOSTILE: &[(&[u8], &[u8])] = &[
    (b"C0644 3 ../x\nabc\0", b"\x01scp: error: unexpected filename: ../x\n"),
    (b"C0644 3 a/b\nabc\0", b"\x01scp: error: unexpected filename: a/b\n"),
    (b"C0644 3 ..\nabc\0", b"\x01scp: error: unexpected filename: ..\n"),
    (b"C0644 3 \nabc\0", b"\x01scp: error: unexpected filename: \n"),
    (b"D0755 0 a.txt\n", b"\x01scp: protocol error: received directory without -r\n"),
    (b"C644 3 a.txt\nabc\0", b"\x01scp: protocol error: bad mode\n"),
    (b"C06448 3 a.txt\nabc\0", b"\x01scp: protocol error: mode not delimited\n"),
    (b"C0648 3 a.txt\nabc\0", b"\x01scp: protocol error: bad mode\n"),
    (b"C0644 3x a.txt\nabc\0", b"\x01scp: protocol error: size not delimited\n"),
    (b"C0644 x a.txt\nabc\0", b"\x01scp: protocol error: size not present\n"),
    (b"C0644 99999999999999999999999 a.txt\n", b"\x01scp: protocol error: size out of range\n"),
    (b"T1 0 2\nC0644 3 a.txt\nabc\0", b"\x01scp: protocol error: atime.sec not delimited\n"),
    (b"T1 0 2 1000000\nC0644 3 a.txt\nabc\0", b"\x01scp: protocol error: atime.usec not delimited\n"),
    (b"Tx 0 2 0\n", b"\x01scp: protocol error: mtime.sec not present\n"),
    (b"\n", b"\x01scp: protocol error: unexpected <newline>\n"),
    (b"Welcome-to-host\nC0644 3 a.txt\nabc\0", b"\x01scp: Welcome-to-host\n"),
];

#[test]
fn vector_11_hostile_records_into_the_sink() {
    for (input, reply) in HOSTILE {
        let dir = tempdir();
        let inner = dir.path().join("inner");
        fs::create_dir(&inner).expect("mkdir");
        let out = run(rscp(&inner).args(["-t", "."]), input);
        let expected = [b"\0", *reply].concat();
        assert_bytes(&out.stdout, &expected, &format!("reply to b\"{}\"", show(input)));
        assert_eq!(out.code, Some(1), "exit status for b\"{}\"", show(input));
        assert!(!dir.path().join("x").exists(), "../x escaped");
        assert_eq!(
            fs::read_dir(&inner).expect("read_dir").count(),
            0,
            "nothing created for b\"{}\"",
            show(input)
        );
    }
}

#[test]
fn vector_11_directory_dot_with_r() {
    let dir = tempdir();
    let out = run(rscp(dir.path()).args(["-r", "-t", "."]), b"D0755 0 .\nE\n");
    assert_bytes(&out.stdout, b"\0\x01scp: error: unexpected filename: .\n", "sink replies");
    assert_eq!(out.code, Some(1));
}

/// The same hostile inputs, fed to OpenSSH's own `scp -t`: our replies must
/// be the ones OpenSSH gives, byte for byte.
#[test]
fn vector_11_hostile_records_match_openssh() {
    let Some(scp) = openssh_scp() else { return };
    for (input, _) in HOSTILE {
        let ours = tempdir();
        let theirs = tempdir();
        let a = run(rscp(ours.path()).args(["-t", "."]), input);
        let b = run(std::process::Command::new(scp).current_dir(theirs.path()).args(["-t", "."]), input);
        assert_bytes(&a.stdout, &b.stdout, &format!("rscp vs OpenSSH reply to b\"{}\"", show(input)));
        assert_eq!(a.code, b.code, "exit status for b\"{}\"", show(input));
    }
}

#[test]
fn vector_14_direct_sink() {
    let dir = tempdir();
    let input: &[u8] = b"T1600000000 0 1600000000 0\nC0644 6 a\nhello\n\0";
    let out = run(rscp(dir.path()).args(["-p", "-t", "."]), input);
    assert_bytes(&out.stdout, b"\0\0\0\0", "sink replies");
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr_text());
    assert_eq!(times_of(&dir.path().join("a")), (1_600_000_000, 1_600_000_000));
    assert_eq!(fs::read(dir.path().join("a")).expect("a"), b"hello\n");
}

#[test]
fn vector_14_stream_cut_before_the_status_byte() {
    let dir = tempdir();
    let input: &[u8] = b"T1600000000 0 1600000000 0\nC0644 6 a\nhello\n";
    let out = run(rscp(dir.path()).args(["-p", "-t", "."]), input);
    assert_bytes(&out.stdout, b"\0\0\0", "sink replies");
    assert_eq!(out.code, Some(1));
    let a = dir.path().join("a");
    if a.exists() {
        assert_ne!(times_of(&a).0, 1_600_000_000, "times applied to a cut file");
    }
}

#[test]
fn vector_14_setuid_kept_with_p_cleared_without() {
    let dir = tempdir();
    let input: &[u8] = b"C4755 6 a\nhello\n\0";
    let out = run(rscp(dir.path()).args(["-p", "-t", "."]), input);
    assert_bytes(&out.stdout, b"\0\0\0", "sink replies with -p");
    assert_eq!(out.code, Some(0));
    assert_eq!(mode_of(&dir.path().join("a")), 0o4755);

    let dir = tempdir();
    let out = run(rscp(dir.path()).args(["-t", "."]), input);
    assert_bytes(&out.stdout, b"\0\0\0", "sink replies without -p");
    assert_eq!(out.code, Some(0));
    assert_eq!(mode_of(&dir.path().join("a")), 0o755 & !umask(), "setuid cleared without -p");
}

#[test]
fn sink_with_two_targets_or_none_is_ambiguous() {
    let dir = tempdir();
    for args in [&["-t", "a", "b"][..], &["-t"][..]] {
        let out = run(rscp(dir.path()).args(args), b"C0644 6 a\nhello\n\0");
        assert_bytes(&out.stdout, b"\x01scp: ambiguous target\n", &format!("{args:?}"));
        assert_eq!(out.code, Some(1));
    }
    assert_eq!(fs::read_dir(dir.path()).expect("read_dir").count(), 0);
}

// ------------------------------------------------ over one socketpair end

/// Starts `rscp args` in `dir` with one end of a socketpair as both its stdin and
/// stdout; returns the child and our end.
fn spawn_on_socket(dir: &Path, args: &[&str]) -> (std::process::Child, UnixStream) {
    let (ours, theirs) = UnixStream::pair().expect("socketpair");
    let theirs = OwnedFd::from(theirs);
    let dup = theirs.try_clone().expect("dup");
    let mut cmd = rscp(dir);
    cmd.args(args).stdin(Stdio::from(theirs)).stdout(Stdio::from(dup)).stderr(Stdio::inherit());
    cmd.process_group(0);
    let child = cmd.spawn().expect("spawn rscp");
    drop(cmd); // our copies of the child's end: EOF must come when the child exits
    ours.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    (child, ours)
}

#[track_caller]
fn expect_read(stream: &mut UnixStream, expected: &[u8], what: &str) {
    let mut got = vec![0; expected.len()];
    stream.read_exact(&mut got).unwrap_or_else(|e| panic!("{what}: reading {} bytes: {e}", expected.len()));
    assert_bytes(&got, expected, what);
}

#[test]
fn vector_1_over_a_socketpair_step_by_step() {
    let dir = tempdir();
    let (mut child, mut s) = spawn_on_socket(dir.path(), &["-p", "-t", "dest.txt"]);
    expect_read(&mut s, b"\0", "ready");
    s.write_all(T).expect("write");
    expect_read(&mut s, b"\0", "T ack");
    s.write_all(b"C0644 6 a.txt\n").expect("write");
    expect_read(&mut s, b"\0", "C ack");
    s.write_all(b"hello\n\0").expect("write");
    expect_read(&mut s, b"\0", "final ack");
    s.shutdown(std::net::Shutdown::Write).expect("shutdown");
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).expect("read to EOF");
    assert_bytes(&rest, b"", "after the last reply");
    assert_eq!(wait_bounded(&mut child, TIMEOUT, "rscp -p -t over a socket"), Some(0));
    let dest = dir.path().join("dest.txt");
    assert_eq!(fs::read(&dest).expect("dest.txt"), b"hello\n");
    assert_eq!(times_of(&dest), (MTIME, ATIME));
}

#[test]
fn vector_3_download_over_a_socketpair() {
    let dir = tempdir();
    spec_fixture(dir.path());
    let (mut child, mut s) = spawn_on_socket(dir.path(), &["-r", "-p", "-f", "tree"]);
    s.write_all(&[0; 16]).expect("write");
    let mut stream = Vec::new();
    s.read_to_end(&mut stream).expect("read to EOF");
    assert_same_stream(&stream, &v3_stream());
    assert_eq!(wait_bounded(&mut child, TIMEOUT, "rscp -r -p -f over a socket"), Some(0));
}

#[test]
fn vector_3_upload_over_a_socketpair() {
    let dir = tempdir();
    let (mut child, mut s) = spawn_on_socket(dir.path(), &["-r", "-p", "-t", "."]);
    s.write_all(&v3_stream()).expect("write");
    s.shutdown(std::net::Shutdown::Write).expect("shutdown");
    let mut replies = Vec::new();
    s.read_to_end(&mut replies).expect("read to EOF");
    assert_bytes(&replies, &[0; 16], "sink replies");
    assert_eq!(wait_bounded(&mut child, TIMEOUT, "rscp -r -p -t over a socket"), Some(0));
    assert_spec_tree(&dir.path().join("tree"), true);
}

#[test]
fn source_directory_without_r_and_sink_at_once_eof() {
    let dir = tempdir();
    spec_fixture(dir.path());
    let out = run(rscp(dir.path()).args(["-f", "tree", "a.txt"]), b"\0\0\0");
    assert_bytes(
        &out.stdout,
        b"\x01scp: tree: not a regular file\nC0644 6 a.txt\nhello\n\0",
        "source stream",
    );
    assert_eq!(out.code, Some(1));

    let out = run(rscp(dir.path()).args(["-t", "."]), b"");
    assert_bytes(&out.stdout, b"\0", "sink ready, then EOF at a record boundary");
    assert_eq!(out.code, Some(0));
}

/// `rscp -f` and OpenSSH's `scp -f` on the same fixture, with the same replies,
/// write the same bytes and exit alike (same file system, so same readdir order).
#[test]
fn source_matches_openssh() {
    let Some(scp) = openssh_scp() else { return };
    let dir = tempdir();
    spec_fixture(dir.path());
    let cases: &[&[&str]] = &[
        &["-f", "a.txt"],
        &["-p", "-f", "a.txt"],
        &["-f", "tree"],
        &["-r", "-f", "tree"],
        &["-r", "-p", "-f", "tree/"],
        &["-f", "nope", "a.txt"],
        &["-f", "tree/f1", "tree/sub/f2", "tree/sub/empty"],
        &["-p", "-f", "--", "a.txt"],
    ];
    for args in cases {
        let input = [0u8; 32];
        let ours = run(rscp(dir.path()).args(*args), &input);
        let theirs = run(std::process::Command::new(scp).current_dir(dir.path()).args(*args), &input);
        assert_bytes(&ours.stdout, &theirs.stdout, &format!("rscp vs OpenSSH {args:?}"));
        assert_eq!(ours.code, theirs.code, "exit status of {args:?}");
    }
}

/// The same client streams into `rscp -t` and OpenSSH's `scp -t`: same replies,
/// same exit status.
#[test]
fn sink_matches_openssh() {
    let Some(scp) = openssh_scp() else { return };
    let v3 = v3_stream();
    let cases: &[(&[&str], &[u8])] = &[
        (&["-p", "-t", "dest.txt"], &v1_client()),
        (&["-r", "-p", "-t", "."], &v3),
        (&["-r", "-t", "."], V4_STREAM),
        (&["-t", "."], V4_STREAM),
        (&["-t", "nodir/x"], b"C0644 6 a.txt\n"),
        (&["-p", "-t", "."], b"T1600000000 0 1600000000 0\nC0644 6 a\nhello\n"),
        (&["-t", "."], b"\x01scp: warn thing\nC0644 3 a.txt\nabc\0"),
        (&["-t", "."], b"C0644 3 a\nabc\x01scp: read error\n"),
        (&["-t", "."], b"\x02scp: fatal thing\n"),
    ];
    for (args, input) in cases {
        let ours = tempdir();
        let theirs = tempdir();
        let a = run(rscp(ours.path()).args(*args), input);
        let b = run(std::process::Command::new(scp).current_dir(theirs.path()).args(*args), input);
        assert_bytes(&a.stdout, &b.stdout, &format!("rscp vs OpenSSH {args:?} b\"{}\"", show(input)));
        assert_eq!(a.code, b.code, "exit status of {args:?} b\"{}\"", show(input));
    }
}
