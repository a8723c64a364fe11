//! Interop with the real OpenSSH `scp` as the remote end (`scp -t` / `scp -f` over
//! its stdin/stdout; no sshd needed). Missing `scp` skips these tests, unless
//! `RSCP_REQUIRE_PEERS=1` (as in CI) makes that a failure.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use rscp_engine::fs::process_umask;
use rscp_engine::sink::{self, SinkOptions};
use rscp_engine::source::{self, SourceOptions};
use rscp_engine::{Conn, EngineError, Summary};
use rscp_proto::filter::NameFilter;
use rscp_proto::source::SourceError;
use tokio::process::Command;

use crate::common::*;

fn find_scp() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|dir| dir.join("scp")).find(|p| p.is_file())
}

/// The `scp` binary, or `None` (after saying so) when it is missing and not required.
fn scp() -> Option<PathBuf> {
    match find_scp() {
        Some(scp) => Some(scp),
        None if std::env::var("RSCP_REQUIRE_PEERS").as_deref() == Ok("1") => {
            panic!("OpenSSH `scp` not found in PATH, and RSCP_REQUIRE_PEERS=1 requires it")
        }
        None => {
            eprintln!("skipping: OpenSSH `scp` not found in PATH (set RSCP_REQUIRE_PEERS=1 to fail instead)");
            None
        }
    }
}

/// Runs `scp ARGS` with piped stdio and `body` on a `Conn` over it; checks that scp
/// exits 0 without a word on stderr.
async fn with_scp<F, Fut>(scp: &Path, args: &[OsString], body: F) -> Summary
where
    F: FnOnce(Conn<tokio::process::ChildStdout, tokio::process::ChildStdin>) -> Fut,
    Fut: std::future::Future<Output = Summary>,
{
    let mut child = Command::new(scp)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start scp");
    let conn = Conn::new(child.stdout.take().expect("stdout"), child.stdin.take().expect("stdin"));
    let summary = within(body(conn)).await;
    let out = within(child.wait_with_output()).await.expect("scp exit");
    assert!(out.status.success(), "scp {args:?}: {} {}", out.status, String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "scp {args:?} stderr");
    summary
}

type ScpConn = Conn<tokio::process::ChildStdout, tokio::process::ChildStdin>;

/// `scp ARGS` with its stdin and stdout as a `Conn` (stderr dropped), for tests
/// that check its exit status themselves.
fn spawn_scp(scp: &Path, args: &[OsString]) -> (tokio::process::Child, ScpConn) {
    let mut child = Command::new(scp)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start scp");
    let conn = Conn::new(child.stdout.take().expect("stdout"), child.stdin.take().expect("stdin"));
    (child, conn)
}

fn args(list: &[&str], path: &Path) -> Vec<OsString> {
    let mut v: Vec<OsString> = list.iter().map(OsString::from).collect();
    v.push(path.as_os_str().to_owned());
    v
}

/// Deterministic pseudo-random bytes (xorshift), incompressible and hole-free.
fn random_bytes(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

const NAMES: [&str; 3] = ["with space.txt", "caf\u{e9} \u{2615}.txt", "-dash"];

/// `root/top`: empty and 1-byte files, a 20 MiB file, names with spaces, UTF-8 and
/// a leading dash, nested empty directories, assorted modes, and fixed times.
fn interop_fixture(root: &Path, big: bool) -> PathBuf {
    let top = root.join("top");
    make_dir(&top, 0o755);
    write_file(&top.join("empty"), b"", 0o644);
    write_file(&top.join("one"), b"1", 0o600);
    write_file(&top.join(NAMES[0]), b"s p a c e\n", 0o640);
    write_file(&top.join(NAMES[1]), "caf\u{e9}\n".as_bytes(), 0o755);
    write_file(&top.join(NAMES[2]), b"dash\n", 0o644);
    if big {
        write_file(&top.join("big.bin"), &random_bytes(20 << 20), 0o644);
    }
    make_dir(&top.join("nested"), 0o750);
    make_dir(&top.join("nested/a"), 0o700);
    make_dir(&top.join("nested/a/b"), 0o755);
    make_dir(&top.join("nested/a/b/c"), 0o755);
    make_dir(&top.join("full"), 0o755);
    write_file(&top.join("full/zeros"), &vec![0u8; 300 * 1024], 0o644);
    // Times last, deepest first (creating entries changes a directory's mtime).
    let mut paths: Vec<PathBuf> = snapshot(&top).into_keys().map(|rel| top.join(rel)).collect();
    paths.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in paths {
        set_times(&p, MTIME, ATIME);
    }
    top
}

#[derive(Debug, Clone, Copy)]
enum Modes {
    /// `-p`: modes and times exactly.
    Preserved,
    /// New files: the source's mode less the umask; times are not compared.
    Umask(u32),
}

/// Compares two trees entry by entry: kind, content, and modes/times as `modes` says.
fn assert_same_tree(expected: &BTreeMap<PathBuf, Node>, got: &Path, modes: Modes) {
    let got = snapshot(got);
    let names = |m: &BTreeMap<PathBuf, Node>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&got), names(expected), "the same entries");
    for (rel, want) in expected {
        let have = &got[rel];
        assert_eq!(have.kind, want.kind, "{}: kind", rel.display());
        assert!(
            have.data == want.data,
            "{}: content differs ({} vs {} bytes)",
            rel.display(),
            have.data.len(),
            want.data.len()
        );
        match modes {
            Modes::Preserved => {
                assert_eq!(
                    have.mode,
                    want.mode,
                    "{}: mode {:o} vs {:o}",
                    rel.display(),
                    have.mode,
                    want.mode
                );
                assert_eq!((have.mtime, have.atime), (MTIME, ATIME), "{}: times", rel.display());
            }
            Modes::Umask(umask) if !rel.as_os_str().is_empty() => {
                assert_eq!(have.mode, want.mode & !umask, "{}: mode {:o}", rel.display(), have.mode);
            }
            Modes::Umask(_) => {}
        }
    }
}

fn source_options(preserve: bool, pipelined: bool, ahead: bool) -> SourceOptions {
    SourceOptions { recursive: true, preserve, limit_kbits: None, pipelined, ahead }
}

/// Our `send` into OpenSSH's `scp -t [-p] -r`, in lockstep, pipelined, and with
/// small files sent ahead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_tree_into_openssh_scp_t() {
    let Some(scp) = scp() else { return };
    let src = tempfile::tempdir().expect("tempdir");
    let top = interop_fixture(src.path(), true);
    let expected = snapshot(&top);
    // Reading the fixture may have moved access times: put them back.
    for rel in expected.keys() {
        set_times(&top.join(rel), MTIME, ATIME);
    }
    let modes = [(false, false), (true, false), (true, true)];
    for (preserve, (pipelined, ahead)) in modes.into_iter().flat_map(|m| [(true, m), (false, m)]) {
        let dst = tempfile::tempdir().expect("tempdir");
        let flags: &[&str] = if preserve { &["-r", "-p", "-t"] } else { &["-r", "-t"] };
        let operands = [top.clone()];
        let summary = with_scp(&scp, &args(flags, dst.path()), |mut conn| async move {
            let mut obs = Recorder::default();
            let r = source::send(&mut conn, &operands, source_options(preserve, pipelined, ahead), &mut obs)
                .await;
            drop(conn); // EOF: scp -t ends at a record boundary and exits 0
            r.unwrap_or_else(|e| panic!("send: {e} ({obs:?})"))
        })
        .await;
        assert_eq!(summary.errors, 0);
        let modes = if preserve { Modes::Preserved } else { Modes::Umask(process_umask()) };
        assert_same_tree(&expected, &dst.path().join("top"), modes);
        for rel in expected.keys() {
            set_times(&top.join(rel), MTIME, ATIME);
        }
    }
}

/// Our `receive` from OpenSSH's `scp -f [-p] -r`, as a download client with the
/// name filter for the requested path; in lockstep and with reply credit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_tree_from_openssh_scp_f() {
    let Some(scp) = scp() else { return };
    let src = tempfile::tempdir().expect("tempdir");
    let top = interop_fixture(src.path(), true);
    let expected = snapshot(&top);
    for (preserve, reply_credit) in [(true, 0), (false, 0), (true, 128), (false, 3)] {
        for rel in expected.keys() {
            set_times(&top.join(rel), MTIME, ATIME);
        }
        let dst = tempfile::tempdir().expect("tempdir");
        let flags: &[&str] = if preserve { &["-r", "-p", "-f"] } else { &["-r", "-f"] };
        let target = dst.path().to_path_buf();
        let request = top.as_os_str().as_encoded_bytes().to_vec();
        let summary = with_scp(&scp, &args(flags, &top), |mut conn| async move {
            let options = SinkOptions {
                recursive: true,
                preserve,
                umask: 0o022,
                filter: Some(NameFilter::from_request(&request).expect("pattern")),
                reply_credit,
                ..SinkOptions::default()
            };
            let mut obs = Recorder::default();
            let r = sink::receive(&mut conn, &target, &options, &mut obs).await;
            r.unwrap_or_else(|e| panic!("receive: {e} ({obs:?})"))
        })
        .await;
        assert_eq!(summary.errors, 0);
        let modes = if preserve { Modes::Preserved } else { Modes::Umask(0o022) };
        assert_same_tree(&expected, &dst.path().join("top"), modes);
        assert!(temp_files(dst.path()).is_empty());
    }
}

/// Several single files (no -r) both ways, into an existing directory: odd names,
/// an empty and a 1-byte file.
#[tokio::test]
async fn single_files_both_ways() {
    let Some(scp) = scp() else { return };
    let src = tempfile::tempdir().expect("tempdir");
    let top = interop_fixture(src.path(), false);
    let names = ["empty", "one", NAMES[0], NAMES[1], NAMES[2]];
    let operands: Vec<PathBuf> = names.iter().map(|n| top.join(n)).collect();
    let pick = |m: BTreeMap<PathBuf, Node>| -> BTreeMap<PathBuf, Node> {
        m.into_iter().filter(|(p, _)| names.iter().any(|n| p.as_os_str() == *n)).collect()
    };
    let expected = pick(snapshot(&top));
    assert_eq!(expected.len(), names.len());

    // Upload: our source, `scp -p -d -t DIR`.
    for rel in expected.keys() {
        set_times(&top.join(rel), MTIME, ATIME);
    }
    let up = tempfile::tempdir().expect("tempdir");
    let ops = operands.clone();
    let summary = with_scp(&scp, &args(&["-p", "-d", "-t"], up.path()), |mut conn| async move {
        let mut obs = Recorder::default();
        let r = source::send(
            &mut conn,
            &ops,
            SourceOptions {
                recursive: false,
                preserve: true,
                limit_kbits: None,
                pipelined: false,
                ahead: false,
            },
            &mut obs,
        )
        .await;
        drop(conn);
        r.unwrap_or_else(|e| panic!("send: {e} ({obs:?})"))
    })
    .await;
    assert_eq!(summary.errors, 0);
    let got = pick(snapshot(up.path()));
    assert_eq!(
        got.len(),
        names.len(),
        "only the files: {:?}",
        snapshot(up.path()).keys().collect::<Vec<_>>()
    );
    for (rel, want) in &expected {
        let have = &got[rel];
        assert_eq!(
            (have.kind, have.mode, have.mtime, have.atime),
            (want.kind, want.mode, MTIME, ATIME),
            "{rel:?}"
        );
        assert_eq!(have.data, want.data, "{rel:?}");
    }

    // Download: `scp -p -f A B …` into our sink, with the filter for those names.
    for rel in expected.keys() {
        set_times(&top.join(rel), MTIME, ATIME);
    }
    let down = tempfile::tempdir().expect("tempdir");
    let target = down.path().to_path_buf();
    let mut scp_args: Vec<OsString> = vec!["-p".into(), "-f".into()];
    scp_args.extend(operands.iter().map(|p| p.as_os_str().to_owned()));
    let requests: Vec<Vec<u8>> = operands.iter().map(|p| p.as_os_str().as_encoded_bytes().to_vec()).collect();
    let summary = with_scp(&scp, &scp_args, |mut conn| async move {
        let options = SinkOptions {
            preserve: true,
            target_must_be_dir: true,
            filter: Some(NameFilter::from_requests(requests.iter().map(Vec::as_slice)).expect("patterns")),
            ..SinkOptions::default()
        };
        let mut obs = Recorder::default();
        let r = sink::receive(&mut conn, &target, &options, &mut obs).await;
        r.unwrap_or_else(|e| panic!("receive: {e} ({obs:?})"))
    })
    .await;
    assert_eq!(summary.errors, 0);
    let got = snapshot(down.path());
    assert_eq!(got.len(), names.len() + 1, "only the files (and the root)");
    for (rel, want) in &expected {
        let have = &got[rel];
        assert_eq!(
            (have.kind, have.mode, have.mtime, have.atime),
            (want.kind, want.mode, MTIME, ATIME),
            "{rel:?}"
        );
        assert_eq!(have.data, want.data, "{rel:?}");
    }
}

/// Errors cross over intact: OpenSSH's `scp -f` on a missing file sends spec
/// vector 5's reply, which our sink counts; our source's report for a missing
/// operand is counted by `scp -t` (which then exits 1).
#[tokio::test]
async fn errors_cross_over() {
    let Some(scp) = scp() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope");
    let (mut child, mut conn) = spawn_scp(&scp, &args(&["-f"], &missing));
    let mut obs = Recorder::default();
    let filter = NameFilter::from_request(missing.as_os_str().as_encoded_bytes()).expect("pattern");
    let options = SinkOptions { filter: Some(filter), ..SinkOptions::default() };
    let r = within(sink::receive(&mut conn, dir.path(), &options, &mut obs)).await;
    drop(conn);
    assert_eq!(r.expect("a warning is not fatal").errors, 1);
    assert_eq!(obs.remote, [format!("scp: {}: No such file or directory", missing.display()).into_bytes()]);
    let status = within(child.wait()).await.expect("exit");
    assert_eq!(status.code(), Some(1));

    write_file(&dir.path().join("real"), b"real\n", 0o644);
    let target_dir = dir.path().join("in");
    std::fs::create_dir(&target_dir).expect("mkdir");
    let (mut child, mut conn) = spawn_scp(&scp, &args(&["-t"], &target_dir));
    let operands = [missing.clone(), dir.path().join("real")];
    let r =
        within(source::send(&mut conn, &operands, SourceOptions::default(), &mut Recorder::default())).await;
    drop(conn);
    assert_eq!(r.expect("goes on").errors, 1);
    let status = within(child.wait()).await.expect("exit");
    assert_eq!(status.code(), Some(1), "scp -t counts the reported error");
    assert_eq!(std::fs::read(target_dir.join("real")).expect("real arrived"), b"real\n");
}

/// Occupies, in `dst/top`, the place of the fixture's file `one` with a
/// directory and of its directory `nested` with a file, so that a sink must
/// refuse both (EISDIR, ENOTDIR) and the rest must still arrive.
fn occupy(dst: &Path) -> PathBuf {
    let top = dst.join("top");
    make_dir(&top, 0o755);
    make_dir(&top.join("one"), 0o755);
    write_file(&top.join("nested"), b"in the way\n", 0o644);
    top
}

/// The entries of the fixture that must arrive despite [`occupy`].
fn arrived_despite_occupied(expected: &BTreeMap<PathBuf, Node>, got: &Path) {
    for (rel, want) in expected {
        if rel.starts_with("one") || rel.starts_with("nested") || rel.as_os_str().is_empty() {
            continue;
        }
        let have = std::fs::read(got.join(rel)).ok();
        if want.kind == 'f' {
            assert_eq!(have.as_deref(), Some(&want.data[..]), "{} arrived", rel.display());
        }
    }
    assert!(got.join("one").is_dir() && got.join("nested").is_file(), "what was in the way stays");
    assert!(temp_files(got).is_empty());
}

/// Pipelined upload into OpenSSH's `scp -r -t`: a refused `C` (whose payload
/// must not follow, or `scp -t` would read it as records) and a refused `D`
/// (whose subtree must not follow) are skipped; the rest arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_upload_refusals_against_openssh_scp_t() {
    let Some(scp) = scp() else { return };
    let src = tempfile::tempdir().expect("tempdir");
    let top = interop_fixture(src.path(), false);
    let expected = snapshot(&top);
    let dst = tempfile::tempdir().expect("tempdir");
    let target = occupy(dst.path());
    let operands = [top.clone()];
    let (mut child, mut conn) = spawn_scp(&scp, &args(&["-r", "-t"], dst.path()));
    let mut obs = Recorder::default();
    let r = within(source::send(&mut conn, &operands, source_options(false, true, false), &mut obs)).await;
    drop(conn);
    assert_eq!(r.expect("goes on").errors, 2, "{obs:?}");
    assert_eq!(obs.remote.len(), 2, "both refusals shown: {obs:?}");
    let status = within(child.wait()).await.expect("exit");
    assert_eq!(status.code(), Some(1), "scp -t counts its refusals");
    arrived_despite_occupied(&expected, &target);
    assert!(!target.join("one/one").exists(), "nothing went into the wrong place");
}

/// Files sent ahead into OpenSSH's `scp -t`. One it refuses (a directory in its
/// place) ends the session, as `scp -t` reads its payload as a record: the source
/// stops with the refusal, `scp -t` stops at the payload, the files queued after
/// it do not arrive, and nothing is made of the payload. A file whose payload
/// looks like records is never sent ahead: its refusal is an ordinary one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_file_sent_ahead_stops_the_copy_against_openssh_scp_t() {
    let Some(scp) = scp() else { return };
    let src = tempfile::tempdir().expect("tempdir");
    let file = |name: &str, data: &[u8]| {
        write_file(&src.path().join(name), data, 0o644);
        src.path().join(name)
    };
    let operands = [
        file("first", b"first\n"),
        file("records", b"C0644 5 evil\nhello"),
        file("plain", b"just text\n"),
        file("after", b"after\n"),
    ];
    let dst = tempfile::tempdir().expect("tempdir");
    make_dir(&dst.path().join("records"), 0o755);
    make_dir(&dst.path().join("plain"), 0o755);
    let (mut child, mut conn) = spawn_scp(&scp, &args(&["-t"], dst.path()));
    let mut obs = Recorder::default();
    let options =
        SourceOptions { recursive: false, preserve: false, limit_kbits: None, pipelined: true, ahead: true };
    let r = within(source::send(&mut conn, &operands, options, &mut obs)).await;
    drop(conn);
    let refusal = format!("scp: {}: Is a directory", dst.path().join("plain").display()).into_bytes();
    match r {
        Err(EngineError::Source(SourceError::RefusedAhead(text))) => assert_eq!(text, refusal),
        other => panic!("expected the refusal of a file sent ahead, got {other:?} ({obs:?})"),
    }
    let records_refused =
        format!("scp: {}: Is a directory", dst.path().join("records").display()).into_bytes();
    assert_eq!(obs.remote, [records_refused], "the record-like file went in lockstep, refused harmlessly");
    let status = within(child.wait()).await.expect("exit");
    // Exit 1 at the payload, or SIGPIPE if its last words met the closed pipe.
    assert!(!status.success(), "{status:?}");
    assert_eq!(std::fs::read(dst.path().join("first")).expect("first arrived"), b"first\n");
    let mut names: Vec<_> =
        std::fs::read_dir(dst.path()).expect("list").map(|e| e.expect("entry").file_name()).collect();
    names.sort();
    assert_eq!(names, ["first", "plain", "records"], "nothing else was made");
    assert!(temp_files(dst.path()).is_empty());
}

/// With reply credit our sink cannot refuse a file or a directory to OpenSSH's
/// `scp -f`, which has been told yes already: it drops the payload and the
/// subtree, counts both, and the rest arrives; `scp -f` itself sees no error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_refusals_with_reply_credit_from_openssh_scp_f() {
    let Some(scp) = scp() else { return };
    let src = tempfile::tempdir().expect("tempdir");
    let top = interop_fixture(src.path(), true);
    let expected = snapshot(&top);
    let dst = tempfile::tempdir().expect("tempdir");
    let target = occupy(dst.path());
    let into = dst.path().to_path_buf();
    let request = top.as_os_str().as_encoded_bytes().to_vec();
    let (summary, obs) = {
        let mut obs = Recorder::default();
        let summary = with_scp(&scp, &args(&["-r", "-p", "-f"], &top), |mut conn| {
            let obs = &mut obs;
            async move {
                let options = SinkOptions {
                    recursive: true,
                    preserve: true,
                    filter: Some(NameFilter::from_request(&request).expect("pattern")),
                    reply_credit: 16,
                    ..SinkOptions::default()
                };
                let r = sink::receive(&mut conn, &into, &options, obs).await;
                r.unwrap_or_else(|e| panic!("receive: {e}"))
            }
        })
        .await;
        (summary, obs)
    };
    assert_eq!(summary.errors, 2, "{obs:?}");
    assert_eq!(obs.local.len(), 2, "both shown here: {obs:?}");
    arrived_despite_occupied(&expected, &target);
}
