//! Local failures on the sink side: the right `\1` reply, the stream kept in step,
//! and the destination never left half-written.
//!
//! Tests run as root here and in CI, so permission bits (a 0500 directory) do not
//! stop a write; the failures used are ones root cannot bypass: ENOTDIR (a path
//! through a regular file), ENAMETOOLONG, ENOSPC (`/dev/full`).

use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::process::Command;

use rscp_engine::EngineError;
use rscp_engine::sink::SinkOptions;

use crate::common::*;

fn server(recursive: bool) -> SinkOptions {
    SinkOptions { recursive, ..SinkOptions::default() }
}

/// `mknod`/`mkfifo` through the tools (the crate forbids unsafe code).
fn make_node(args: &[&str]) -> bool {
    Command::new(args[0]).args(&args[1..]).status().is_ok_and(|s| s.success())
}

#[tokio::test]
async fn create_failures_are_answered_and_the_next_file_arrives() {
    let sandbox = Sandbox::new();
    let long = "n".repeat(300);
    let input = format!("C0644 3 {long}\nC0644 3 b.txt\nabc\0");
    let (r, sent, obs) = sink_batch(&sandbox.target, &server(false), input.as_bytes()).await;
    let text = format!("{}/{long}: File name too long", sandbox.target.display());
    let mut want = b"\0".to_vec();
    want.extend(err_reply(&text));
    want.extend_from_slice(b"\0\0");
    assert_bytes(&sent, &want);
    assert_eq!(r.expect("the session goes on").errors, 1);
    assert_eq!(obs.local, [text]);
    assert_eq!(fs::read(sandbox.target.join("b.txt")).expect("b.txt"), b"abc");

    // A target below a regular file: ENOTDIR for every file, each answered once.
    let sandbox = Sandbox::new();
    let target = sandbox.target.join("a.txt/sub");
    let (r, sent, _) = sink_batch(&target, &server(false), b"C0644 3 x\nC0644 3 y\n").await;
    let reply = err_reply(&format!("{}: Not a directory", target.display()));
    let mut want = b"\0".to_vec();
    want.extend_from_slice(&reply);
    want.extend_from_slice(&reply);
    assert_bytes(&sent, &want);
    assert_eq!(r.expect("the session goes on").errors, 2);
    assert_eq!(fs::read(sandbox.target.join("a.txt")).expect("a.txt"), OLD);

    // A directory where a file is: refused, and the source skips that subtree.
    let sandbox = Sandbox::new();
    let (r, sent, _) = sink_batch(&sandbox.target, &server(true), b"D0755 0 a.txt\nC0644 3 b\nabc\0").await;
    let mut want = b"\0".to_vec();
    want.extend(err_reply(&format!("{}/a.txt: Not a directory", sandbox.target.display())));
    want.extend_from_slice(b"\0\0");
    assert_bytes(&sent, &want);
    assert_eq!(r.expect("the session goes on").errors, 1);
    assert_eq!(fs::read(sandbox.target.join("a.txt")).expect("a.txt"), OLD);
    assert_eq!(fs::read(sandbox.target.join("b")).expect("b"), b"abc");
}

/// Spec vector 7: `-d` with a target that is not a directory: the error replaces
/// the ready byte.
#[tokio::test]
async fn target_must_be_dir() {
    let sandbox = Sandbox::new();
    let options = SinkOptions { target_must_be_dir: true, ..SinkOptions::default() };
    let file = sandbox.target.join("a.txt");
    let (r, sent, obs) = sink_batch(&file, &options, b"C0644 3 x\nabc\0").await;
    let text = format!("{}: Not a directory", file.display());
    assert_bytes(&sent, &err_reply(&text));
    assert!(matches!(r, Err(EngineError::Refused(ref t)) if *t == text), "{r:?}");
    assert_eq!(obs.local, [text]);
    let missing = sandbox.target.join("nope");
    let (r, sent, _) = sink_batch(&missing, &options, b"").await;
    assert_bytes(&sent, &err_reply(&format!("{}: No such file or directory", missing.display())));
    assert!(r.is_err());
    assert!(!missing.exists());
    // A directory is fine.
    let (r, sent, _) = sink_batch(&sandbox.target, &options, b"C0644 3 x\nabc\0").await;
    assert_bytes(&sent, b"\0\0\0");
    assert!(r.expect("ok").ok());
}

/// Spec vector 9: a full disk. The sink drains the payload and answers once with
/// ENOSPC; the stream stays in step, so the next file of the session arrives.
#[tokio::test]
async fn disk_full() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (r, sent, _) =
        sink_batch(Path::new("/dev/full"), &server(false), b"C0644 6 a.txt\nhello\n\0C0644 3 b\nabc\0").await;
    let reply = err_reply("/dev/full: No space left on device");
    let mut want = b"\0\0".to_vec();
    want.extend_from_slice(&reply);
    want.extend_from_slice(b"\0");
    want.extend_from_slice(&reply);
    assert_bytes(&sent, &want);
    assert_eq!(r.expect("the session goes on").errors, 2);
    assert!(fs::symlink_metadata("/dev/full").expect("/dev/full").file_type().is_char_device());

    // A full device inside the target directory, then a good file: it arrives.
    let full = dir.path().join("full");
    if !make_node(&["mknod", full.to_str().expect("utf-8"), "c", "1", "7"]) {
        eprintln!("skipping the mknod half of disk_full: mknod is not permitted here");
        return;
    }
    let big = vec![0x5au8; 700 * 1024];
    let mut input = format!("C0644 {} full\n", big.len()).into_bytes();
    input.extend_from_slice(&big);
    input.extend_from_slice(b"\0C0644 3 b\nabc\0");
    let (r, sent, _) = sink_batch(dir.path(), &server(false), &input).await;
    let mut want = b"\0\0".to_vec();
    want.extend(err_reply(&format!("{}: No space left on device", full.display())));
    want.extend_from_slice(b"\0\0");
    assert_bytes(&sent, &want);
    assert_eq!(r.expect("the session goes on").errors, 1);
    assert_eq!(fs::read(dir.path().join("b")).expect("b"), b"abc");
    assert!(fs::symlink_metadata(&full).expect("full").file_type().is_char_device());
    assert!(temp_files(dir.path()).is_empty());
}

/// Special files are written in place, never replaced by a renamed regular file.
#[tokio::test]
async fn special_targets_are_written_in_place() {
    let (r, sent, _) = sink_batch(Path::new("/dev/null"), &server(false), b"C0644 6 a.txt\nhello\n\0").await;
    assert_bytes(&sent, b"\0\0\0");
    assert!(r.expect("ok").ok());
    assert!(fs::symlink_metadata("/dev/null").expect("/dev/null").file_type().is_char_device());

    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("fifo");
    assert!(make_node(&["mkfifo", fifo.to_str().expect("utf-8")]), "mkfifo");
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || fs::read(fifo).expect("read the FIFO"))
    };
    let (r, sent, _) =
        sink_batch(dir.path(), &server(false), b"C0644 6 fifo\nhello\n\0C0644 2 other\nok\0").await;
    assert_bytes(&sent, b"\0\0\0\0\0");
    assert!(r.expect("ok").ok());
    assert_eq!(reader.join().expect("reader thread"), b"hello\n");
    assert!(fs::symlink_metadata(&fifo).expect("fifo").file_type().is_fifo());
    assert!(temp_files(dir.path()).is_empty());
}

/// The peer vanishes in the middle of a file bigger than the engine's buffer: the
/// existing destination keeps its old content and no temporary file remains.
#[tokio::test]
async fn disconnect_mid_file_keeps_the_old_file() {
    let sandbox = Sandbox::new();
    let before = shape(sandbox.root());
    let mut input = b"C0644 1048576 a.txt\n".to_vec();
    input.extend(std::iter::repeat_n(b'z', 300 * 1024));
    for options in [server(false), SinkOptions { preserve: true, ..server(false) }] {
        let (r, sent, obs) = sink_batch(&sandbox.target, &options, &input).await;
        assert_bytes(&sent, b"\0\0");
        assert_eq!(r.expect_err("lost").to_string(), "lost connection");
        assert_eq!(obs.bytes, 300 * 1024);
        assert_eq!(shape(sandbox.root()), before);
        assert!(temp_files(sandbox.root()).is_empty());
    }
}

/// The source could not read its file (it padded the data and says so in place of
/// the status `\0`): the sink counts it, answers `\0`, and — rscp's deliberate
/// difference from OpenSSH, which keeps the zero-padded file — the destination
/// keeps its old content; a new file is not created.
#[tokio::test]
async fn source_read_error_keeps_the_old_file() {
    let sandbox = Sandbox::new();
    let before = shape(sandbox.root());
    let input = b"C0644 6 a.txt\nhel\0\0\0\x01scp: a.txt: Broken pipe\nC0644 6 new\nhel\0\0\0\x01scp: new: Input/output error\n";
    let (r, sent, obs) = sink_batch(&sandbox.target, &server(false), input).await;
    assert_bytes(&sent, b"\0\0\0\0\0");
    assert_eq!(r.expect("the session goes on").errors, 2);
    assert_eq!(obs.remote, [b"scp: a.txt: Broken pipe".to_vec(), b"scp: new: Input/output error".to_vec()]);
    assert_eq!(obs.finished, [false, false]);
    assert_eq!(shape(sandbox.root()), before);
    assert!(temp_files(sandbox.root()).is_empty());
}

/// With --inplace a complete file is written over the existing one (a shorter file
/// is truncated); its mode is kept.
#[tokio::test]
async fn inplace_overwrites_and_truncates() {
    let sandbox = Sandbox::new();
    let options = SinkOptions { inplace: true, ..server(false) };
    let (r, sent, _) = sink_batch(&sandbox.target, &options, b"C0755 3 a.txt\nnew\0").await;
    assert_bytes(&sent, b"\0\0\0");
    assert!(r.expect("ok").ok());
    assert_eq!(fs::read(sandbox.target.join("a.txt")).expect("a.txt"), b"new");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &fs::metadata(sandbox.target.join("a.txt")).expect("meta").permissions(),
    );
    assert_eq!(mode & 0o7777, 0o640);
}

/// A sink with reply credit whose peer streams every record before reading any
/// reply (as a pipelined `scp -f` does, and as russh's session loop behaves
/// when its queues are full: it takes no write until we read). The replies
/// cannot all be written until the peer reads; the sink must keep reading
/// meanwhile, or both ends wait for ever (rscp -> rscpd hung that way once in
/// ten thousand files).
#[tokio::test]
async fn a_sink_with_credit_reads_on_while_its_replies_wait() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sandbox = Sandbox::new();
    const FILES: usize = 3000;
    // 64-byte pipes: the replies fill theirs after 64, long before the end.
    let (ours, theirs) = tokio::io::duplex(64);
    let (our_read, our_write) = tokio::io::split(ours);
    let (mut their_read, mut their_write) = tokio::io::split(theirs);
    let peer = async move {
        for i in 0..FILES {
            let record = format!("C0644 2 f{i:04}\nx\n\0");
            their_write.write_all(record.as_bytes()).await.expect("the sink reads on");
        }
        their_write.shutdown().await.expect("shutdown");
        let mut replies = Vec::new();
        their_read.read_to_end(&mut replies).await.expect("replies");
        replies
    };
    let options = SinkOptions { reply_credit: 8, ..SinkOptions::default() };
    let target = sandbox.target.clone();
    let engine = async move {
        let mut conn = rscp_engine::Conn::new(our_read, our_write);
        let mut obs = Recorder::default();
        let r = rscp_engine::sink::receive(&mut conn, &target, &options, &mut obs).await;
        drop(conn);
        r
    };
    let (r, replies) = within(async { tokio::join!(engine, peer) }).await;
    assert_eq!(r.expect("all arrived").errors, 0);
    assert_eq!(replies, vec![0u8; 1 + 8 + 2 * FILES], "every reply, all \\0");
    for i in [0, FILES / 2, FILES - 1] {
        assert_eq!(fs::read(sandbox.target.join(format!("f{i:04}"))).expect("arrived"), b"x\n");
    }
}
