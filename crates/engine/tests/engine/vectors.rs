//! Spec §10 vectors 1–4 and 14, replayed byte by byte against `receive` and `send`.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rscp_engine::Silent;
use rscp_engine::sink::{self, SinkOptions};
use rscp_engine::source::{self, SourceOptions};
use rscp_proto::filter::NameFilter;

use crate::common::*;

const T: &[u8] = b"T1700000000 0 1800000000 0\n";

/// Vector 1/2: the 48-byte source stream of `a.txt` with -p.
fn vector_1_stream() -> Vec<u8> {
    let mut v = T.to_vec();
    v.extend_from_slice(b"C0644 6 a.txt\nhello\n\0");
    v
}

/// Vector 3's 210-byte stream: the tree with -p, readdir order f1, sub / empty, f2.
fn vector_3_stream() -> Vec<u8> {
    let mut v = Vec::new();
    for part in [
        &b"D0755 0 tree\n"[..],
        b"C0600 4 f1\none\n\0",
        b"D0755 0 sub\n",
        b"C0644 0 empty\n\0",
        b"C0644 3 f2\nxyz\0",
    ] {
        v.extend_from_slice(T);
        v.extend_from_slice(part);
    }
    v.extend_from_slice(b"E\nE\n");
    v
}

/// Vector 4: the same tree without -p.
const VECTOR_4: &[u8] =
    b"D0755 0 tree\nC0600 4 f1\none\n\0D0755 0 sub\nC0644 0 empty\n\0C0644 3 f2\nxyz\0E\nE\n";

#[track_caller]
fn assert_node(path: &Path, data: Option<&[u8]>, mode: u32, times: Option<(i64, i64)>) {
    let meta = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(meta.mode() & 0o7777, mode, "{}: mode {:o}", path.display(), meta.mode() & 0o7777);
    if let Some((mtime, atime)) = times {
        assert_eq!((meta.mtime(), meta.atime()), (mtime, atime), "{}: times", path.display());
    }
    if let Some(data) = data {
        assert!(meta.is_file(), "{} is not a file", path.display());
        assert_bytes(&fs::read(path).expect("read"), data);
    } else {
        assert!(meta.is_dir(), "{} is not a directory", path.display());
    }
}

/// Plays a source: sends each chunk and expects the engine's reply to it.
async fn play_source(target: &Path, options: &SinkOptions, script: &[(&[u8], &[u8])]) -> Recorder {
    let (conn, mut peer) = pair();
    let engine = async move {
        let mut conn = conn;
        let mut obs = Recorder::default();
        let r = sink::receive(&mut conn, target, options, &mut obs).await;
        drop(conn);
        (r, obs)
    };
    let peer_side = async move {
        peer.expect(b"\0").await;
        for (send, reply) in script {
            peer.send(send).await;
            peer.expect(reply).await;
        }
        peer.close();
        assert_bytes(&peer.rest().await, b"");
    };
    let ((r, obs), ()) = within(async { tokio::join!(engine, peer_side) }).await;
    assert_eq!(r.expect("session ends cleanly").errors, 0, "{obs:?}");
    obs
}

/// Vector 1 (upload into a remote `scp -p -t dest.txt`) and vector 2 (download with
/// the client's name filter): four NULs back, and the file with mode and times.
#[tokio::test]
async fn vectors_1_2_receive_one_file_with_times() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stream = vector_1_stream();
    let (t, rest) = stream.split_at(T.len());
    let (c, data) = rest.split_at(b"C0644 6 a.txt\n".len());
    let script: &[(&[u8], &[u8])] = &[(t, b"\0"), (c, b"\0"), (data, b"\0")];

    // Vector 1: `scp -p -t dest.txt`, the target is a new file name.
    let remote = SinkOptions { preserve: true, ..SinkOptions::default() };
    play_source(&dir.path().join("dest.txt"), &remote, script).await;
    assert_node(&dir.path().join("dest.txt"), Some(b"hello\n"), 0o644, Some((MTIME, ATIME)));

    // Vector 2: a download into `dl/` with the filter for `a.txt`.
    let dl = dir.path().join("dl");
    fs::create_dir(&dl).expect("mkdir");
    let client = SinkOptions {
        preserve: true,
        filter: Some(NameFilter::from_request(b"a.txt").expect("pattern")),
        ..SinkOptions::default()
    };
    let obs = play_source(&dl, &client, script).await;
    assert_node(&dl.join("a.txt"), Some(b"hello\n"), 0o644, Some((MTIME, ATIME)));
    assert_eq!(obs.started, [("a.txt".to_string(), 6)]);
    assert_eq!(obs.finished, [true]);
    assert_eq!(obs.bytes, 6);
    assert!(temp_files(dir.path()).is_empty());
}

/// Vectors 1 and 2 from the source's side: the exact 48 bytes, one record per reply.
#[tokio::test]
async fn vectors_1_2_send_one_file_with_times() {
    let dir = tempfile::tempdir().expect("tempdir");
    spec_fixture(dir.path());
    let (conn, mut peer) = pair();
    let operands = [dir.path().join("a.txt")];
    let engine = async move {
        let mut conn = conn;
        let options = SourceOptions {
            recursive: false,
            preserve: true,
            limit_kbits: None,
            pipelined: false,
            ahead: false,
        };
        let r = source::send(&mut conn, &operands, options, &mut Silent).await;
        drop(conn);
        r
    };
    let peer_side = async move {
        // Nothing is sent before the sink's ready byte.
        peer.expect_quiet().await;
        peer.send(b"\0").await;
        peer.expect(T).await;
        peer.expect_quiet().await;
        peer.send(b"\0").await;
        peer.expect(b"C0644 6 a.txt\n").await;
        peer.expect_quiet().await;
        peer.send(b"\0").await;
        peer.expect(b"hello\n\0").await;
        peer.expect_quiet().await;
        peer.send(b"\0").await;
        assert_bytes(&peer.rest().await, b"");
    };
    let (r, ()) = within(async { tokio::join!(engine, peer_side) }).await;
    assert!(r.expect("clean").ok());
    // And as one stream through a plain acking sink.
    let (r, stream, _) = send_to_acking_sink(
        &[dir.path().join("a.txt")],
        SourceOptions { recursive: false, preserve: true, limit_kbits: None, pipelined: false, ahead: false },
    )
    .await;
    assert!(r.expect("clean").ok());
    assert_eq!(stream.len(), 48);
    assert_bytes(&stream, &vector_1_stream());
}

/// Splits a source stream into the chunks a sink answers: each line, except that a
/// C line's payload and status byte are one chunk.
fn chunks(stream: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < stream.len() {
        let end = pos + stream[pos..].iter().position(|&b| b == b'\n').expect("LF") + 1;
        let line = &stream[pos..end];
        out.push(line);
        pos = end;
        if line[0] == b'C' {
            let size: usize = std::str::from_utf8(line)
                .expect("ascii")
                .split(' ')
                .nth(1)
                .expect("size")
                .parse()
                .expect("n");
            out.push(&stream[pos..pos + size + 1]);
            pos += size + 1;
        }
    }
    out
}

fn check_received_tree(root: &Path, times: Option<(i64, i64)>, umask: u32) {
    let m = |mode: u32| if times.is_some() { mode } else { mode & !umask };
    assert_node(&root.join("tree"), None, m(0o755), times);
    assert_node(&root.join("tree/f1"), Some(b"one\n"), m(0o600), times);
    assert_node(&root.join("tree/sub"), None, m(0o755), times);
    assert_node(&root.join("tree/sub/empty"), Some(b""), m(0o644), times);
    assert_node(&root.join("tree/sub/f2"), Some(b"xyz"), m(0o644), times);
    assert_eq!(snapshot(&root.join("tree")).len(), 5, "nothing more");
}

/// Vector 3 into `scp -r -p -t .`: 16 NULs, one per record and status, and the
/// tree with its modes and times (directories' times applied after their content).
#[tokio::test]
async fn vector_3_receive_tree_with_times() {
    let stream = vector_3_stream();
    assert_eq!(stream.len(), 210);
    let parts = chunks(&stream);
    let script: Vec<(&[u8], &[u8])> = parts.iter().map(|c| (*c, &b"\0"[..])).collect();
    assert_eq!(script.len() + 1, 16);
    for options in [
        SinkOptions { recursive: true, preserve: true, ..SinkOptions::default() },
        SinkOptions {
            recursive: true,
            preserve: true,
            filter: Some(NameFilter::from_request(b"some/where/tree").expect("pattern")),
            ..SinkOptions::default()
        },
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        play_source(dir.path(), &options, &script).await;
        check_received_tree(dir.path(), Some((MTIME, ATIME)), 0);
        assert!(temp_files(dir.path()).is_empty());
    }
}

/// Vector 4 (no -p): 11 NULs; modes are the received ones less the umask, times are
/// not touched.
#[tokio::test]
async fn vector_4_receive_tree_without_times() {
    let parts = chunks(VECTOR_4);
    let script: Vec<(&[u8], &[u8])> = parts.iter().map(|c| (*c, &b"\0"[..])).collect();
    assert_eq!(script.len() + 1, 11);
    for umask in [0o022, 0o077] {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = SinkOptions { recursive: true, umask, ..SinkOptions::default() };
        play_source(dir.path(), &options, &script).await;
        check_received_tree(dir.path(), None, umask);
        let mtime = fs::metadata(dir.path().join("tree/f1")).expect("f1").mtime();
        assert_ne!(mtime, MTIME, "times applied without -p");
    }
}

/// Vector 3 and 4 from the source's side. readdir order is the filesystem's, so the
/// stream is compared with every directory's entries sorted by name (the spec's
/// order is sorted); everything else must match byte for byte.
#[tokio::test]
async fn vectors_3_4_send_tree() {
    let dir = tempfile::tempdir().expect("tempdir");
    spec_fixture(dir.path());
    let tree = [dir.path().join("tree")];
    let (r, stream, obs) = send_to_acking_sink(
        &tree,
        SourceOptions { recursive: true, preserve: true, limit_kbits: None, pipelined: false, ahead: false },
    )
    .await;
    assert!(r.expect("clean").ok(), "{obs:?}");
    assert_eq!(stream.len(), 210);
    assert_bytes(&canonical(&stream), &vector_3_stream());
    assert_eq!(obs.finished, [true, true, true]);

    let (r, stream, _) = send_to_acking_sink(
        &tree,
        SourceOptions { recursive: true, preserve: false, limit_kbits: None, pipelined: false, ahead: false },
    )
    .await;
    assert!(r.expect("clean").ok());
    assert_bytes(&canonical(&stream), VECTOR_4);

    // A trailing slash on the operand changes nothing (OpenSSH strips it).
    let slashed = [dir.path().join("tree/")];
    let (r, stream, _) = send_to_acking_sink(
        &slashed,
        SourceOptions { recursive: true, preserve: false, limit_kbits: None, pipelined: false, ahead: false },
    )
    .await;
    assert!(r.expect("clean").ok());
    assert_bytes(&canonical(&stream), VECTOR_4);
}

/// One entry per level, so readdir order is fixed: the exact bytes, and the engine
/// never sends a record before the reply to the previous one.
#[tokio::test]
async fn send_chain_exact_and_one_record_at_a_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    make_dir(&dir.path().join("top"), 0o750);
    make_dir(&dir.path().join("top/mid"), 0o700);
    write_file(&dir.path().join("top/mid/leaf"), b"leaf data", 0o640);
    for p in ["top/mid/leaf", "top/mid", "top"] {
        set_times(&dir.path().join(p), MTIME, ATIME);
    }
    let (conn, mut peer) = pair();
    let operands = [dir.path().join("top")];
    let engine = async move {
        let mut conn = conn;
        let r = source::send(
            &mut conn,
            &operands,
            SourceOptions {
                recursive: true,
                preserve: true,
                limit_kbits: None,
                pipelined: false,
                ahead: false,
            },
            &mut Silent,
        )
        .await;
        drop(conn);
        r
    };
    let peer_side = async move {
        peer.send(b"\0").await;
        for record in
            [T, b"D0750 0 top\n", T, b"D0700 0 mid\n", T, b"C0640 9 leaf\n", b"leaf data\0", b"E\n", b"E\n"]
        {
            peer.expect(record).await;
            peer.expect_quiet().await;
            peer.send(b"\0").await;
        }
        assert_bytes(&peer.rest().await, b"");
    };
    let (r, ()) = within(async { tokio::join!(engine, peer_side) }).await;
    assert!(r.expect("clean").ok());
}

/// Vector 14: setuid and setgid bits survive only with -p; without it the umask
/// applies and 07000 is cleared (CVE-2026-35385), for files and directories.
#[tokio::test]
async fn vector_14_special_bits() {
    let input = b"C4755 6 a\nhello\n\0";
    let cases = [(true, 0o022, 0o4755), (false, 0o022, 0o755), (false, 0o077, 0o700), (false, 0, 0o755)];
    for (preserve, umask, want) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = SinkOptions { preserve, umask, ..SinkOptions::default() };
        let (r, sent, _) = sink_batch(dir.path(), &options, input).await;
        assert_eq!(r.expect("clean").errors, 0);
        assert_bytes(&sent, b"\0\0\0");
        assert_node(&dir.path().join("a"), Some(b"hello\n"), want, None);
    }
    for (preserve, umask, want) in [(true, 0o022, 0o6755), (false, 0o022, 0o755), (false, 0o027, 0o750)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = SinkOptions { preserve, umask, recursive: true, ..SinkOptions::default() };
        let (r, sent, _) = sink_batch(dir.path(), &options, b"D6755 0 d\nC6755 1 f\nx\0E\n").await;
        assert_eq!(r.expect("clean").errors, 0);
        assert_bytes(&sent, b"\0\0\0\0\0");
        assert_node(&dir.path().join("d"), None, want, None);
        let file_mode = if preserve { 0o6755 } else { 0o755 & !umask };
        assert_node(&dir.path().join("d/f"), Some(b"x"), file_mode, None);
    }
}

/// Vector 14, times: applied with the final `\0`; without it the session is lost
/// and (unlike OpenSSH, which keeps the file) nothing is left behind.
#[tokio::test]
async fn vector_14_times_need_the_status_byte() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = SinkOptions { preserve: true, ..SinkOptions::default() };
    let (r, sent, _) =
        sink_batch(dir.path(), &options, b"T1600000000 0 1600000000 0\nC0644 6 a\nhello\n\0").await;
    assert_eq!(r.expect("clean").errors, 0);
    assert_bytes(&sent, b"\0\0\0\0");
    assert_node(&dir.path().join("a"), Some(b"hello\n"), 0o644, Some((1_600_000_000, 1_600_000_000)));

    let dir = tempfile::tempdir().expect("tempdir");
    let (r, sent, _) =
        sink_batch(dir.path(), &options, b"T1600000000 0 1600000000 0\nC0644 6 a\nhello\n").await;
    assert!(r.is_err());
    assert_bytes(&sent, b"\0\0\0");
    assert!(!dir.path().join("a").exists());
    assert!(temp_files(dir.path()).is_empty());
}

/// Without -p an existing file keeps its permissions (OpenSSH); with -p it gets the
/// received mode.
#[tokio::test]
async fn existing_file_modes() {
    for (preserve, want) in [(false, 0o640), (true, 0o755)] {
        let sandbox = Sandbox::new();
        let options = SinkOptions { preserve, ..SinkOptions::default() };
        let (r, sent, _) = sink_batch(&sandbox.target, &options, b"C0755 3 a.txt\nnew\0").await;
        assert_eq!(r.expect("clean").errors, 0);
        assert_bytes(&sent, b"\0\0\0");
        assert_node(&sandbox.target.join("a.txt"), Some(b"new"), want, None);
    }
}
