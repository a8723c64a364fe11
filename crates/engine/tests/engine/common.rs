//! Shared helpers: a peer played byte by byte over in-memory pipes, an observer that
//! records everything, tree snapshots, and the spec §10 fixture.

use std::collections::BTreeMap;
use std::fs::{self, File, FileTimes, Permissions};
use std::future::Future;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rscp_engine::sink::{self, SinkOptions};
use rscp_engine::source::{self, SourceOptions};
use rscp_engine::{Conn, EngineError, Observer, Summary};
use rscp_proto::FileName;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

/// Every await in these tests is bounded: a hung engine fails the test, never CI.
pub const LIMIT: Duration = Duration::from_secs(20);

/// Fixture times of spec §10.
pub const MTIME: i64 = 1_700_000_000;
pub const ATIME: i64 = 1_800_000_000;

pub async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f).await.expect("timed out: the engine or the peer hung")
}

/// Bytes shown with escapes, so assertion failures are readable.
pub fn show(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

#[track_caller]
pub fn assert_bytes(got: &[u8], want: &[u8]) {
    assert_eq!(show(got), show(want));
}

/// The spec's `\1scp: <text>\n` error reply.
pub fn err_reply(text: &str) -> Vec<u8> {
    let mut v = b"\x01scp: ".to_vec();
    v.extend_from_slice(text.as_bytes());
    v.push(b'\n');
    v
}

// ------------------------------------------------------------------ observer

#[derive(Debug, Default)]
pub struct Recorder {
    pub local: Vec<String>,
    pub remote: Vec<Vec<u8>>,
    pub started: Vec<(String, u64)>,
    pub finished: Vec<bool>,
    pub bytes: u64,
}

impl Observer for Recorder {
    fn local_error(&mut self, text: &str) {
        self.local.push(text.to_string());
    }
    fn remote_message(&mut self, text: &[u8]) {
        self.remote.push(text.to_vec());
    }
    fn file_started(&mut self, name: &FileName, size: u64) {
        self.started.push((name.display(), size));
    }
    fn transferred(&mut self, bytes: u64) {
        self.bytes += bytes;
    }
    fn file_finished(&mut self, ok: bool) {
        self.finished.push(ok);
    }
}

// ---------------------------------------------------------------------- peer

pub type EngineConn = Conn<DuplexStream, DuplexStream>;

/// The test's end of the conversation.
#[derive(Debug)]
pub struct Peer {
    pub tx: Option<DuplexStream>,
    pub rx: DuplexStream,
}

/// Two one-way pipes: closing the peer's writer is an EOF for the engine, and
/// dropping the engine's `Conn` is an EOF for the peer.
pub fn pair() -> (EngineConn, Peer) {
    let (peer_tx, engine_rx) = duplex(1 << 20);
    let (engine_tx, peer_rx) = duplex(1 << 20);
    (Conn::new(engine_rx, engine_tx), Peer { tx: Some(peer_tx), rx: peer_rx })
}

impl Peer {
    pub async fn send(&mut self, bytes: &[u8]) {
        let tx = self.tx.as_mut().expect("peer writer already closed");
        within(tx.write_all(bytes)).await.expect("peer write");
    }

    /// Reads exactly `want.len()` bytes and compares them.
    #[track_caller]
    pub fn expect<'a>(&'a mut self, want: &'a [u8]) -> impl Future<Output = ()> + 'a {
        let caller = std::panic::Location::caller();
        async move {
            let mut got = vec![0u8; want.len()];
            let mut filled = 0;
            while filled < got.len() {
                let n = within(self.rx.read(&mut got[filled..])).await.expect("peer read");
                if n == 0 {
                    break;
                }
                filled += n;
            }
            got.truncate(filled);
            assert_eq!(show(&got), show(want), "engine's bytes at {caller}");
        }
    }

    /// Asserts the engine sends nothing more for a moment (it waits for a reply).
    pub async fn expect_quiet(&mut self) {
        let mut byte = [0u8; 1];
        let r = tokio::time::timeout(Duration::from_millis(30), self.rx.read(&mut byte)).await;
        assert!(r.is_err(), "engine sent {:?} before its reply", r.map(|n| show(&byte[..n.unwrap_or(0)])));
    }

    pub fn close(&mut self) {
        self.tx = None;
    }

    /// Everything else the engine sends until it drops its end.
    pub async fn rest(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        within(self.rx.read_to_end(&mut out)).await.expect("peer read");
        out
    }
}

/// Runs `receive` against a peer that sends `input` at once and then closes.
/// Returns the result, every byte the engine sent, and what the observer saw.
pub async fn sink_batch(
    target: &Path,
    options: &SinkOptions,
    input: &[u8],
) -> (Result<Summary, EngineError>, Vec<u8>, Recorder) {
    let (conn, mut peer) = pair();
    let mut tx = peer.tx.take().expect("writer");
    let input = input.to_vec();
    let writer = async move {
        // The engine may stop reading early (that is the point of most tests).
        let _ = tx.write_all(&input).await;
        let _ = tx.shutdown().await;
    };
    let engine = async move {
        let mut conn = conn;
        let mut obs = Recorder::default();
        let r = sink::receive(&mut conn, target, options, &mut obs).await;
        drop(conn);
        (r, obs)
    };
    let reader = async move { peer.rest().await };
    let ((r, obs), (), out) = within(async { tokio::join!(engine, writer, reader) }).await;
    (r, out, obs)
}

/// Runs `send` against a peer that acts as a well-behaved sink: it answers `\0`
/// to everything. Returns the result, the full byte stream the engine sent, and
/// the observer.
pub async fn send_to_acking_sink(
    operands: &[PathBuf],
    options: SourceOptions,
) -> (Result<Summary, EngineError>, Vec<u8>, Recorder) {
    let (conn, peer) = pair();
    let operands = operands.to_vec();
    let engine = async move {
        let mut conn = conn;
        let mut obs = Recorder::default();
        let r = source::send(&mut conn, &operands, options, &mut obs).await;
        drop(conn);
        (r, obs)
    };
    let ((r, obs), stream) = within(async { tokio::join!(engine, acking_sink(peer)) }).await;
    (r, stream, obs)
}

/// A minimal sink: `\0` to the start, every record and every status.
pub async fn acking_sink(mut peer: Peer) -> Vec<u8> {
    let mut stream = Vec::new();
    peer.send(b"\0").await;
    loop {
        let first = match within(peer.rx.read_u8()).await {
            Ok(b) => b,
            Err(_) => return stream,
        };
        let mut line = vec![first];
        while *line.last().expect("non-empty") != b'\n' {
            line.push(within(peer.rx.read_u8()).await.expect("rest of a line"));
        }
        stream.extend_from_slice(&line);
        match first {
            b'C' => {
                peer.send(b"\0").await;
                let size: usize = std::str::from_utf8(&line)
                    .expect("ascii")
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .expect("size");
                let mut data = vec![0u8; size];
                within(peer.rx.read_exact(&mut data)).await.expect("payload");
                stream.extend_from_slice(&data);
                let status = within(peer.rx.read_u8()).await.expect("status");
                stream.push(status);
                if status != 0 {
                    loop {
                        let b = within(peer.rx.read_u8()).await.expect("status text");
                        stream.push(b);
                        if b == b'\n' {
                            break;
                        }
                    }
                }
                peer.send(b"\0").await;
            }
            b'T' | b'D' | b'E' => peer.send(b"\0").await,
            // A `\1` report from the source needs no answer.
            _ => {}
        }
    }
}

// ---------------------------------------------------------- source streams

/// One entry of a source's stream: its lines (T + C/D, or a report) and, for a
/// file, its payload and status; for a directory, its entries and the `E`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub head: Vec<u8>,
    pub body: Vec<u8>,
    pub children: Vec<Entry>,
    pub tail: Vec<u8>,
}

fn take_line(s: &[u8], pos: &mut usize) -> Vec<u8> {
    let end = s[*pos..].iter().position(|&b| b == b'\n').map_or(s.len(), |i| *pos + i + 1);
    let line = s[*pos..end].to_vec();
    *pos = end;
    line
}

fn parse_level(s: &[u8], pos: &mut usize) -> (Vec<Entry>, Vec<u8>) {
    let mut entries = Vec::new();
    while *pos < s.len() {
        let mut head = take_line(s, pos);
        if head.starts_with(b"E") {
            return (entries, head);
        }
        if head.starts_with(b"T") {
            head.extend(take_line(s, pos));
        }
        let record = head.rsplit(|&b| b == b'\n').nth(1).expect("a record line").to_vec();
        let mut entry = Entry { head, body: Vec::new(), children: Vec::new(), tail: Vec::new() };
        if record.starts_with(b"C") {
            let size: usize = std::str::from_utf8(&record)
                .ok()
                .and_then(|r| r.split(' ').nth(1)?.parse().ok())
                .expect("size");
            entry.body = s[*pos..*pos + size + 1].to_vec();
            *pos += size + 1;
            if entry.body.last() != Some(&0) {
                entry.body.extend(take_line(s, pos));
            }
        } else if record.starts_with(b"D") {
            let (children, tail) = parse_level(s, pos);
            entry.children = children;
            entry.tail = tail;
        }
        entries.push(entry);
    }
    (entries, Vec::new())
}

fn sort_key(e: &Entry) -> Vec<u8> {
    // The name: what follows the second space of the last line of the head.
    let record = e.head.rsplit(|&b| b == b'\n').nth(1).unwrap_or(&[]);
    record.splitn(3, |&b| b == b' ').nth(2).unwrap_or(record).to_vec()
}

fn serialize(entries: &mut [Entry], out: &mut Vec<u8>) {
    entries.sort_by_key(sort_key);
    for e in entries {
        out.extend_from_slice(&e.head);
        out.extend_from_slice(&e.body);
        serialize(&mut e.children, out);
        out.extend_from_slice(&e.tail);
    }
}

/// A source stream with every directory's entries sorted by name: readdir order
/// is not defined by the protocol, everything else must match byte for byte.
pub fn canonical(stream: &[u8]) -> Vec<u8> {
    let mut pos = 0;
    let (mut entries, tail) = parse_level(stream, &mut pos);
    assert!(tail.is_empty(), "unbalanced E in {}", show(stream));
    let mut out = Vec::new();
    serialize(&mut entries, &mut out);
    out
}

// ------------------------------------------------------------------ fixture

pub fn set_times(path: &Path, mtime: i64, atime: i64) {
    let at = |s: i64| SystemTime::UNIX_EPOCH + Duration::from_secs(s as u64);
    let times = FileTimes::new().set_modified(at(mtime)).set_accessed(at(atime));
    File::open(path).and_then(|f| f.set_times(times)).expect("set times");
}

pub fn write_file(path: &Path, data: &[u8], mode: u32) {
    fs::write(path, data).expect("write fixture file");
    fs::set_permissions(path, Permissions::from_mode(mode)).expect("chmod");
}

pub fn make_dir(path: &Path, mode: u32) {
    fs::create_dir(path).expect("mkdir");
    fs::set_permissions(path, Permissions::from_mode(mode)).expect("chmod");
}

/// Spec §10's fixture under `root`: `a.txt` and `tree/{f1, sub/{empty, f2}}`, all
/// with the spec's times (set last, deepest first).
pub fn spec_fixture(root: &Path) {
    write_file(&root.join("a.txt"), b"hello\n", 0o644);
    make_dir(&root.join("tree"), 0o755);
    write_file(&root.join("tree/f1"), b"one\n", 0o600);
    make_dir(&root.join("tree/sub"), 0o755);
    write_file(&root.join("tree/sub/empty"), b"", 0o644);
    write_file(&root.join("tree/sub/f2"), b"xyz", 0o644);
    for p in ["a.txt", "tree/f1", "tree/sub/empty", "tree/sub/f2", "tree/sub", "tree"] {
        set_times(&root.join(p), MTIME, ATIME);
    }
}

// ---------------------------------------------------------------- snapshots

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// `f` file, `d` directory, `l` symlink, `c` char device, `p` FIFO, `?` other.
    pub kind: char,
    pub mode: u32,
    pub mtime: i64,
    pub atime: i64,
    /// File content, or a symlink's target.
    pub data: Vec<u8>,
}

/// Every entry under `root` (relative paths; the root itself is ""), without
/// following symlinks. All metadata is taken before any content is read, so the
/// reads cannot disturb the recorded access times.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Node> {
    use std::os::unix::fs::FileTypeExt;
    let mut nodes = BTreeMap::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        let path = root.join(&rel);
        let meta = fs::symlink_metadata(&path).expect("stat");
        let t = meta.file_type();
        let kind = if t.is_file() {
            'f'
        } else if t.is_dir() {
            'd'
        } else if t.is_symlink() {
            'l'
        } else if t.is_char_device() {
            'c'
        } else if t.is_fifo() {
            'p'
        } else {
            '?'
        };
        if kind == 'd' {
            for entry in fs::read_dir(&path).expect("read_dir") {
                pending.push(rel.join(entry.expect("dir entry").file_name()));
            }
        }
        let node = Node {
            kind,
            mode: meta.mode() & 0o7777,
            mtime: meta.mtime(),
            atime: meta.atime(),
            data: Vec::new(),
        };
        nodes.insert(rel, node);
    }
    for (rel, node) in &mut nodes {
        let path = root.join(rel);
        match node.kind {
            'f' => node.data = fs::read(&path).expect("read"),
            'l' => {
                use std::os::unix::ffi::OsStrExt;
                node.data = fs::read_link(&path).expect("readlink").as_os_str().as_bytes().to_vec();
            }
            _ => {}
        }
    }
    nodes
}

/// A snapshot without times (which creating and removing temporary files changes).
pub fn shape(root: &Path) -> BTreeMap<PathBuf, (char, u32, Vec<u8>)> {
    snapshot(root).into_iter().map(|(p, n)| (p, (n.kind, n.mode, n.data))).collect()
}

/// Names of leftover temporary files anywhere under `root`.
pub fn temp_files(root: &Path) -> Vec<PathBuf> {
    snapshot(root)
        .into_keys()
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(".rscp-")))
        .collect()
}

/// A sandbox: `root/target` (the sink's target, holding `a.txt` = "old content\n"
/// mode 0640) beside `root/sibling` (which no test may touch).
#[derive(Debug)]
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    pub target: PathBuf,
    pub sibling: PathBuf,
}

pub const OLD: &[u8] = b"old content\n";

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("target");
        let sibling = dir.path().join("sibling");
        make_dir(&target, 0o755);
        make_dir(&sibling, 0o755);
        write_file(&target.join("a.txt"), OLD, 0o640);
        write_file(&sibling.join("keep"), b"keep\n", 0o644);
        Sandbox { dir, target, sibling }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }
}
