//! `source::send` against hostile or failing sinks, and local read failures.

use std::fs;
use std::path::PathBuf;

use rscp_engine::source::{self, SourceOptions};
use rscp_engine::{EngineError, Summary};
use rscp_proto::source::SourceError;

use crate::common::*;

const PLAIN: SourceOptions =
    SourceOptions { recursive: false, preserve: false, limit_kbits: None, pipelined: false, ahead: false };
const RECURSIVE: SourceOptions =
    SourceOptions { recursive: true, preserve: false, limit_kbits: None, pipelined: false, ahead: false };

/// Runs `send` while `script` plays the sink; returns the result and observer.
async fn send_with<F, Fut>(
    operands: &[PathBuf],
    options: SourceOptions,
    script: F,
) -> (Result<Summary, EngineError>, Recorder)
where
    F: FnOnce(Peer) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let (conn, peer) = pair();
    let operands = operands.to_vec();
    let engine = async move {
        let mut conn = conn;
        let mut obs = Recorder::default();
        let r = source::send(&mut conn, &operands, options, &mut obs).await;
        drop(conn);
        (r, obs)
    };
    let ((r, obs), ()) = within(async { tokio::join!(engine, script(peer)) }).await;
    (r, obs)
}

fn files(dir: &std::path::Path) -> [PathBuf; 2] {
    write_file(&dir.join("one"), b"1\n", 0o644);
    write_file(&dir.join("two"), b"22\n", 0o644);
    [dir.join("one"), dir.join("two")]
}

/// A `\1` reply to a C: no data for that file, counted, and the next file is sent.
#[tokio::test]
async fn refused_file_is_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let operands = files(dir.path());
    let (r, obs) = send_with(&operands, PLAIN, |mut peer| async move {
        peer.send(b"\0").await;
        peer.expect(b"C0644 2 one\n").await;
        peer.send(b"\x01scp: one: Permission denied\n").await;
        // No payload: straight to the next record.
        peer.expect(b"C0644 3 two\n").await;
        peer.send(b"\0").await;
        peer.expect(b"22\n\0").await;
        peer.send(b"\0").await;
        assert_bytes(&peer.rest().await, b"");
    })
    .await;
    assert_eq!(r.expect("goes on").errors, 1);
    assert_eq!(obs.remote, [b"scp: one: Permission denied".to_vec()]);
    assert_eq!(obs.finished, [true]);

    // A `\1` as the final reply after the data is counted too.
    let (r, obs) = send_with(&operands, PLAIN, |mut peer| async move {
        peer.send(b"\0").await;
        peer.expect(b"C0644 2 one\n").await;
        peer.send(b"\0").await;
        peer.expect(b"1\n\0").await;
        peer.send(b"\x01scp: one: No space left on device\n").await;
        peer.expect(b"C0644 3 two\n").await;
        peer.send(b"\0").await;
        peer.expect(b"22\n\0").await;
        peer.send(b"\0").await;
        assert_bytes(&peer.rest().await, b"");
    })
    .await;
    assert_eq!(r.expect("goes on").errors, 1);
    assert_eq!(obs.finished, [false, true]);

    // A refused D: its whole subtree is skipped, no E.
    make_dir(&dir.path().join("d"), 0o755);
    write_file(&dir.path().join("d/inner"), b"x", 0o644);
    let operands = [dir.path().join("d"), dir.path().join("two")];
    let (r, _) = send_with(&operands, RECURSIVE, |mut peer| async move {
        peer.send(b"\0").await;
        peer.expect(b"D0755 0 d\n").await;
        peer.send(b"\x01scp: d: Not a directory\n").await;
        peer.expect(b"C0644 3 two\n").await;
        peer.send(b"\0").await;
        peer.expect(b"22\n\0").await;
        peer.send(b"\0").await;
        assert_bytes(&peer.rest().await, b"");
    })
    .await;
    assert_eq!(r.expect("goes on").errors, 1);
}

/// `\2`, or a line where a reply byte belongs (a shell banner), ends the session.
#[tokio::test]
async fn fatal_replies_end_the_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let operands = files(dir.path());
    let (r, _) = send_with(&operands, PLAIN, |mut peer| async move {
        peer.send(b"\0").await;
        peer.expect(b"C0644 2 one\n").await;
        peer.send(b"\x02scp: fatal thing\n").await;
        assert_bytes(&peer.rest().await, b"");
    })
    .await;
    let error = r.expect_err("fatal");
    assert!(
        matches!(&error, EngineError::Source(SourceError::PeerFatal(t)) if t == b"scp: fatal thing"),
        "{error:?}"
    );

    // Spec vector 10 (upload): a banner where the ready `\0` belongs; nothing is sent.
    let (r, _) = send_with(&operands, PLAIN, |mut peer| async move {
        peer.send(b"Welcome-to-host\n\0").await;
        assert_bytes(&peer.rest().await, b"");
    })
    .await;
    let error = r.expect_err("banner");
    assert!(
        matches!(&error, EngineError::Source(SourceError::ShellMessage(t)) if t == b"Welcome-to-host"),
        "{error:?}"
    );
    assert_eq!(error.to_string(), "Welcome-to-host");

    // EOF before the ready byte: lost connection, nothing sent.
    let (r, _) = send_with(&operands, PLAIN, |mut peer| async move {
        peer.close();
        assert_bytes(&peer.rest().await, b"");
    })
    .await;
    assert_eq!(r.expect_err("lost").to_string(), "lost connection");

    // EOF in place of the final reply.
    let (r, _) = send_with(&operands, PLAIN, |mut peer| async move {
        peer.send(b"\0").await;
        peer.expect(b"C0644 2 one\n").await;
        peer.send(b"\0").await;
        peer.expect(b"1\n\0").await;
        peer.close();
    })
    .await;
    assert_eq!(r.expect_err("lost").to_string(), "lost connection");

    // The sink refusing to start (`-d` failure): reported, counted, nothing sent.
    let (r, obs) = send_with(&operands, PLAIN, |mut peer| async move {
        peer.send(b"\x01scp: x: Not a directory\n").await;
        assert_bytes(&peer.rest().await, b"");
    })
    .await;
    assert_eq!(r.expect("refusal is counted").errors, 1);
    assert_eq!(obs.remote, [b"scp: x: Not a directory".to_vec()]);
}

/// Spec vector 8, made deterministic: the engine stats before the C record and reads
/// after the sink's answer, so the file is truncated while the peer holds its `\0`.
/// The payload keeps its announced size (real bytes, then zeros) and the status is
/// `\1scp: <path>: Broken pipe`.
#[tokio::test]
async fn file_shrinking_during_transfer_is_padded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("big.bin");
    let size = 600 * 1024; // more than one engine buffer
    let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8 + 1).collect();
    write_file(&path, &data, 0o644);
    let keep = 100_000;
    let operands = [path.clone(), dir.path().join("after")];
    write_file(&dir.path().join("after"), b"after\n", 0o600);
    let expected_status = err_reply(&format!("{}: Broken pipe", path.display()));
    let (r, obs) = send_with(&operands, PLAIN, |mut peer| {
        let path = path.clone();
        let data = data.clone();
        async move {
            peer.send(b"\0").await;
            peer.expect(format!("C0644 {size} big.bin\n").as_bytes()).await;
            fs::OpenOptions::new().write(true).open(&path).and_then(|f| f.set_len(keep)).expect("truncate");
            peer.send(b"\0").await;
            let mut want = data[..keep as usize].to_vec();
            want.resize(size, 0);
            peer.expect(&want).await;
            peer.expect(&expected_status).await;
            peer.send(b"\0").await;
            peer.expect(b"C0600 6 after\n").await;
            peer.send(b"\0").await;
            peer.expect(b"after\n\0").await;
            peer.send(b"\0").await;
            assert_bytes(&peer.rest().await, b"");
        }
    })
    .await;
    assert_eq!(r.expect("goes on").errors, 1);
    assert_eq!(obs.local, [format!("{}: Broken pipe", path.display())]);
    assert_eq!(obs.finished, [false, true]);
    assert_eq!(obs.bytes, size as u64 + 6);
}

/// A name holding a line feed cannot be sent as a record: reported and counted,
/// and the rest still goes.
#[tokio::test]
async fn newline_in_name_is_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let odd = dir.path().join("new\nline");
    write_file(&odd, b"x", 0o644);
    let [_, two] = files(dir.path());
    let (r, stream, obs) = send_to_acking_sink(&[odd.clone(), two], PLAIN).await;
    let text = format!("{}: name contains a newline, skipped", dir.path().join("new\\012line").display());
    let mut want = err_reply(&text);
    want.extend_from_slice(b"C0644 3 two\n22\n\0");
    assert_bytes(&stream, &want);
    assert_eq!(r.expect("goes on").errors, 1);
    assert_eq!(obs.local, [text]);

    // Inside a tree too.
    let tree = dir.path().join("tree");
    make_dir(&tree, 0o755);
    write_file(&tree.join("bad\nname"), b"x", 0o644);
    let (r, stream, _) = send_to_acking_sink(std::slice::from_ref(&tree), RECURSIVE).await;
    let mut want = b"D0755 0 tree\n".to_vec();
    want.extend(err_reply(&format!(
        "{}: name contains a newline, skipped",
        tree.join("bad\\012name").display()
    )));
    want.extend_from_slice(b"E\n");
    assert_bytes(&stream, &want);
    assert_eq!(r.expect("goes on").errors, 1);
}

/// A symlink back to an ancestor is reported once, and the rest of the tree is sent.
#[tokio::test]
async fn symlink_loop_is_reported_and_the_rest_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tree = dir.path().join("tree");
    make_dir(&tree, 0o755);
    make_dir(&tree.join("sub"), 0o755);
    write_file(&tree.join("sub/f"), b"f\n", 0o644);
    std::os::unix::fs::symlink("..", tree.join("sub/up")).expect("symlink");
    std::os::unix::fs::symlink("self", tree.join("self")).expect("symlink");
    let (r, stream, obs) = send_to_acking_sink(std::slice::from_ref(&tree), RECURSIVE).await;
    let mut want = b"D0755 0 tree\n".to_vec();
    want.extend(err_reply(&format!("{}: Too many levels of symbolic links", tree.join("self").display())));
    want.extend_from_slice(b"D0755 0 sub\nC0644 2 f\nf\n\0");
    want.extend(err_reply(&format!("{}: directory loop, skipped", tree.join("sub/up").display())));
    want.extend_from_slice(b"E\nE\n");
    assert_bytes(&canonical(&stream), &canonical(&want));
    assert_eq!(r.expect("goes on").errors, 2, "{obs:?}");
    assert_eq!(obs.local.len(), 2);
}

/// A missing operand: `\1scp: <path>: No such file or directory`, then the next.
/// Things that are not regular files are refused as OpenSSH does.
#[tokio::test]
async fn unreadable_operands_are_reported_and_the_next_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let [one, _] = files(dir.path());
    let missing = dir.path().join("missing");
    make_dir(&dir.path().join("adir"), 0o755);
    let operands = [missing.clone(), dir.path().join("adir"), PathBuf::from("/dev/null"), one];
    let (r, stream, obs) = send_to_acking_sink(&operands, PLAIN).await;
    let mut want = err_reply(&format!("{}: No such file or directory", missing.display()));
    want.extend(err_reply(&format!("{}: not a regular file", dir.path().join("adir").display())));
    want.extend(err_reply("/dev/null: not a regular file"));
    want.extend_from_slice(b"C0644 2 one\n1\n\0");
    assert_bytes(&stream, &want);
    assert_eq!(r.expect("goes on").errors, 3);
    assert_eq!(obs.local.len(), 3);
}

/// A file that grows after the stat: exactly the announced size goes out, and the
/// status is a clean `\0` (the stream stays in step).
#[tokio::test]
async fn file_growing_during_transfer_sends_the_announced_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("grow");
    write_file(&path, b"0123456789", 0o644);
    let (r, _) = send_with(std::slice::from_ref(&path), PLAIN, |mut peer| {
        let path = path.clone();
        async move {
            peer.send(b"\0").await;
            peer.expect(b"C0644 10 grow\n").await;
            fs::write(&path, b"0123456789 and a lot more").expect("grow");
            peer.send(b"\0").await;
            peer.expect(b"0123456789\0").await;
            peer.send(b"\0").await;
            assert_bytes(&peer.rest().await, b"");
        }
    })
    .await;
    assert!(r.expect("clean").ok());
}
