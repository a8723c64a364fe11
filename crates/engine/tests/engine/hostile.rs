//! A hostile source against `sink::receive`: the engine as a download client (with
//! the CVE-2019-6111 name filter) and as a remote `scp -t` (no filter). Every case
//! must end the session with OpenSSH's exact error reply, write nothing anywhere,
//! and leave the pre-existing `target/a.txt` as it was.

use rscp_engine::EngineError;
use rscp_engine::sink::SinkOptions;
use rscp_proto::filter::NameFilter;
use rscp_proto::sink::SinkError;

use crate::common::*;

fn client(request: &str, recursive: bool) -> SinkOptions {
    SinkOptions {
        recursive,
        filter: Some(NameFilter::from_request(request.as_bytes()).expect("pattern")),
        ..SinkOptions::default()
    }
}

fn server(recursive: bool) -> SinkOptions {
    SinkOptions { recursive, ..SinkOptions::default() }
}

/// Feeds `input`, expects the ready `\0` then exactly `reply`, an error result,
/// and not one byte changed under the sandbox root.
async fn refused(options: &SinkOptions, input: &[u8], reply: &[u8]) -> EngineError {
    let sandbox = Sandbox::new();
    let before = shape(sandbox.root());
    let (result, sent, obs) = sink_batch(&sandbox.target, options, input).await;
    let mut want = vec![0u8];
    want.extend_from_slice(reply);
    assert_eq!(show(&sent), show(&want), "input {}", show(input));
    let error = result.expect_err(&format!("input {} must fail", show(input)));
    assert!(obs.finished.iter().all(|ok| !ok), "no file may finish: {obs:?}");
    assert_eq!(shape(sandbox.root()), before, "input {} changed the filesystem", show(input));
    assert!(temp_files(sandbox.root()).is_empty());
    error
}

fn protocol(what: &str) -> Vec<u8> {
    err_reply(&format!("protocol error: {what}"))
}

fn unexpected(name: &str) -> Vec<u8> {
    err_reply(&format!("error: unexpected filename: {name}"))
}

#[tokio::test]
async fn unsafe_names_are_refused_by_client_and_server() {
    for options in [client("a.txt", false), server(false), server(true)] {
        for name in ["../x", "/etc/x", "..", ".", "", "a/b"] {
            let input = format!("C0644 3 {name}\nabc\0");
            refused(&options, input.as_bytes(), &unexpected(name)).await;
        }
    }
    // CVE-2018-20685: `D0777 0 .` would chmod the target directory itself.
    for options in [client("a.txt", true), server(true)] {
        for name in [".", "..", "../x", "/etc"] {
            let input = format!("D0777 0 {name}\nC0644 3 x\nabc\0E\n");
            refused(&options, input.as_bytes(), &unexpected(name)).await;
        }
    }
}

#[tokio::test]
async fn names_not_requested_are_refused() {
    let reply = protocol("filename does not match request");
    refused(&client("a.txt", false), b"C0644 3 evil.txt\nabc\0", &reply).await;
    refused(&client("{a,b}.txt", false), b"C0644 3 c.txt\nabc\0", &reply).await;
    // Unlike OpenSSH, the top-level name of a -r download is checked too.
    refused(&client("dir", true), b"D0755 0 notwhatyouasked\nC0644 3 x\nabc\0E\n", &reply).await;
    // A file accepted first does not open the door to a second, unrequested one.
    let sandbox = Sandbox::new();
    let (result, sent, _) =
        sink_batch(&sandbox.target, &client("b.txt", false), b"C0644 3 b.txt\nabc\0C0644 3 a.txt\nevl\0")
            .await;
    assert!(result.is_err());
    let mut want = b"\0\0\0".to_vec();
    want.extend(reply);
    assert_bytes(&sent, &want);
    assert_eq!(std::fs::read(sandbox.target.join("b.txt")).expect("b.txt"), b"abc");
    assert_eq!(std::fs::read(sandbox.target.join("a.txt")).expect("a.txt"), OLD);
}

#[tokio::test]
async fn structure_violations() {
    for options in [client("a.txt", false), server(false)] {
        refused(&options, b"D0755 0 a.txt\nE\n", &protocol("received directory without -r")).await;
    }
    for options in [client("a.txt", false), server(true)] {
        refused(&options, b"E\n", &protocol("end of directory at top level")).await;
    }
    // An E too many after a balanced directory: nothing may climb above the target.
    let sandbox = Sandbox::new();
    let (result, sent, _) =
        sink_batch(&sandbox.target, &server(true), b"D0755 0 d\nE\nE\nC0644 3 a.txt\nabc\0").await;
    let mut want = b"\0\0\0".to_vec();
    want.extend(protocol("end of directory at top level"));
    assert_bytes(&sent, &want);
    assert!(result.is_err());
    assert_eq!(std::fs::read(sandbox.target.join("a.txt")).expect("a.txt"), OLD);
    assert!(!sandbox.root().join("a.txt").exists());
    // A line where a record belongs, after the first one (the first is a shell's message).
    let mut want = b"\0".to_vec();
    want.extend(protocol("expected control record"));
    refused(&server(false), b"T1 0 1 0\nXYZ\n", &want).await;
    refused(&server(false), b"\nC0644 3 a.txt\nabc\0", &protocol("unexpected <newline>")).await;
    let error = refused(
        &client("a.txt", false),
        b"Welcome-to-host\nC0644 3 a.txt\nabc\0",
        &err_reply("Welcome-to-host"),
    )
    .await;
    assert!(matches!(error, EngineError::Sink(SinkError::ShellMessage(_))), "{error:?}");
}

#[tokio::test]
async fn bad_sizes() {
    for options in [client("a.txt", false), server(false)] {
        refused(&options, b"C0644 -1 a.txt\nabc\0", &protocol("size not present")).await;
        refused(&options, b"C0644 a.txt\nabc\0", &protocol("size not present")).await;
        refused(&options, b"C0644 99999999999999999999 a.txt\n", &protocol("size out of range")).await;
        refused(&options, b"C0644 9223372036854775808 a.txt\n", &protocol("size out of range")).await;
        refused(&options, b"C0644 3x a.txt\nabc\0", &protocol("size not delimited")).await;
        refused(&options, b"C0644 +3 a.txt\nabc\0", &protocol("size not present")).await;
    }
}

#[tokio::test]
async fn bad_modes() {
    for options in [client("a.txt", false), server(false)] {
        refused(&options, b"C644 3 a.txt\nabc\0", &protocol("bad mode")).await;
        refused(&options, b"C0648 3 a.txt\nabc\0", &protocol("bad mode")).await;
        refused(&options, b"C04755 3 a.txt\nabc\0", &protocol("mode not delimited")).await;
        refused(&options, b"C-644 3 a.txt\nabc\0", &protocol("bad mode")).await;
    }
    refused(&server(true), b"D075 0 d\nE\n", &protocol("bad mode")).await;
}

/// Spec §2.3 step 7 and vector 11: each malformed T record, and its exact text.
#[tokio::test]
async fn bad_times() {
    let cases: &[(&[u8], &str)] = &[
        (b"T1 0 2\n", "atime.sec not delimited"),
        (b"T1 0 2 1000000\n", "atime.usec not delimited"),
        (b"Tx 0 1 0\n", "mtime.sec not present"),
        (b"T-1 0 1 0\n", "mtime.sec not present"),
        (b"T\n", "mtime.sec not present"),
        (b"T1x 0 1 0\n", "mtime.sec not delimited"),
        (b"T1 x 1 0\n", "mtime.usec not delimited"),
        (b"T1 1000000 1 0\n", "mtime.usec not delimited"),
        (b"T1 -1 1 0\n", "mtime.usec not delimited"),
        (b"T1 0 x 0\n", "atime.sec not present"),
        (b"T1 0 1x 0\n", "atime.sec not delimited"),
        (b"T1 0 1 0 \n", "atime.usec not delimited"),
        (b"T1 0 1 0x\n", "atime.usec not delimited"),
    ];
    for options in [client("a.txt", false), server(false)] {
        for (record, what) in cases {
            let mut input = record.to_vec();
            input.extend_from_slice(b"C0644 3 a.txt\nabc\0");
            refused(&options, &input, &protocol(what)).await;
        }
    }
}

#[tokio::test]
async fn over_long_line_is_refused_not_split() {
    // OpenSSH would split this line at 2047 bytes and take the rest as data.
    let mut input = b"C0644 3 ".to_vec();
    input.extend(std::iter::repeat_n(b'a', 100 * 1024));
    input.extend_from_slice(b"\nabc\0");
    for options in [client("a*", false), server(false)] {
        refused(&options, &input, &protocol("line too long")).await;
    }
    // The limit is OpenSSH's: 2046 bytes and the LF is the longest line accepted.
    let line = |len: usize| {
        let mut input = b"C0644 3 ".to_vec();
        input.extend(std::iter::repeat_n(b'b', len - 8));
        input.push(b'\n');
        input
    };
    refused(&server(false), &line(2047), &protocol("line too long")).await;
    let sandbox = Sandbox::new();
    let (result, sent, _) = sink_batch(&sandbox.target, &server(false), &line(2046)).await;
    assert_eq!(result.expect("the session goes on").errors, 1);
    assert!(sent.starts_with(b"\0\x01scp: ") && sent.len() > 1000, "{}", show(&sent));
    // A name the filesystem refuses is a per-file error, not a protocol one.
    let long = "n".repeat(1000);
    let (result, sent, _) =
        sink_batch(&sandbox.target, &server(false), format!("C0644 3 {long}\nC0644 1 b\nb\0").as_bytes())
            .await;
    assert_eq!(result.expect("the session goes on").errors, 1);
    let mut want = b"\0".to_vec();
    want.extend(err_reply(&format!("{}/{long}: File name too long", sandbox.target.display())));
    want.extend_from_slice(b"\0\0");
    assert_bytes(&sent, &want);
}

#[tokio::test]
async fn payload_shorter_than_announced_is_a_lost_connection() {
    for options in [client("a.txt", false), server(false)] {
        // Ready and the file's `\0`; then the stream ends: nobody left to tell.
        let error = refused(&options, b"C0644 100 a.txt\nabc", b"\0").await;
        assert!(matches!(&error, EngineError::Stream(e) if e.kind() == std::io::ErrorKind::UnexpectedEof));
        assert_eq!(error.to_string(), "lost connection");
        // All the data, but no status byte.
        let error = refused(&options, b"C0644 3 a.txt\nabc", b"\0").await;
        assert!(matches!(error, EngineError::Sink(SinkError::LostConnection)), "{error:?}");
    }
    // Inside a directory, or after a T, a clean EOF is still a lost connection.
    let sandbox = Sandbox::new();
    let (result, sent, _) = sink_batch(&sandbox.target, &server(true), b"D0755 0 d\nC0644 3 f\nab").await;
    assert_bytes(&sent, b"\0\0\0");
    assert!(result.is_err());
    assert!(!sandbox.target.join("d/f").exists());
    assert!(temp_files(sandbox.root()).is_empty());
    let (result, sent, _) = sink_batch(&sandbox.target, &server(true), b"D0755 0 e\n").await;
    assert_bytes(&sent, b"\0\0");
    assert_eq!(result.expect_err("EOF inside a directory").to_string(), "lost connection");
    refused(&server(false), b"T1 0 1 0\n", b"\0").await;
}

/// OpenSSH: "EOF inside a record is protocol error: lost connection". A record cut
/// short by the end of the stream must not pass for a clean end of session.
#[tokio::test]
async fn eof_inside_a_record_is_an_error() {
    for input in [&b"C0644 3 a.txt"[..], b"T1 0 1", b"D0755 0 d", b"\x01scp: half a warning"] {
        let sandbox = Sandbox::new();
        let (result, sent, _) = sink_batch(&sandbox.target, &server(true), input).await;
        assert_bytes(&sent, b"\0");
        let error = result.expect_err(&format!("{} then EOF must fail", show(input)));
        assert_eq!(error.to_string(), "lost connection");
    }
}

#[tokio::test]
async fn peer_fatal_gets_no_reply() {
    let sandbox = Sandbox::new();
    let (result, sent, _) =
        sink_batch(&sandbox.target, &client("a.txt", false), b"\x02scp: fatal thing\n").await;
    assert_bytes(&sent, b"\0");
    let error = result.expect_err("fatal");
    assert!(
        matches!(&error, EngineError::Sink(SinkError::PeerFatal(t)) if t == b"scp: fatal thing"),
        "{error:?}"
    );
}

/// Symlinks already in the target are replaced or refused, never followed.
#[tokio::test]
async fn symlinks_in_the_target_are_not_followed() {
    let sandbox = Sandbox::new();
    std::os::unix::fs::symlink(sandbox.sibling.join("keep"), sandbox.target.join("link")).expect("symlink");
    std::os::unix::fs::symlink(&sandbox.sibling, sandbox.target.join("linkdir")).expect("symlink");
    let sibling_before = snapshot(&sandbox.sibling);
    let (result, sent, _) =
        sink_batch(&sandbox.target, &server(true), b"C0644 3 link\nabc\0D0755 0 linkdir\n").await;
    let mut want = b"\0\0\0".to_vec();
    want.extend(err_reply(&format!(
        "{}: Too many levels of symbolic links",
        sandbox.target.join("linkdir").display()
    )));
    assert_bytes(&sent, &want);
    assert_eq!(result.expect("a refused directory is counted, the session goes on").errors, 1);
    assert_eq!(
        snapshot(&sandbox.sibling),
        sibling_before,
        "the sibling directory was written through a symlink"
    );
    // `link` is now a regular file with the data.
    let meta = std::fs::symlink_metadata(sandbox.target.join("link")).expect("link");
    assert!(meta.is_file());
    assert_eq!(std::fs::read(sandbox.target.join("link")).expect("link"), b"abc");
    assert!(std::fs::symlink_metadata(sandbox.target.join("linkdir")).expect("linkdir").is_symlink());
    assert!(temp_files(sandbox.root()).is_empty());
}

/// Nesting is bounded: a source cannot recurse the sink into the ground.
#[tokio::test]
async fn nesting_depth_is_bounded() {
    let options = SinkOptions { max_depth: 3, ..server(true) };
    let sandbox = Sandbox::new();
    let (result, sent, _) = sink_batch(&sandbox.target, &options, &b"D0755 0 d\n".repeat(4)).await;
    let mut want = b"\0\0\0\0".to_vec();
    want.extend(protocol("directories nested too deeply"));
    assert_bytes(&sent, &want);
    assert!(result.is_err());
    assert!(sandbox.target.join("d/d/d").is_dir());
    assert!(!sandbox.target.join("d/d/d/d").exists());
}
