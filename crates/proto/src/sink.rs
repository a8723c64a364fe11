//! The sink state machine: the side that receives records and creates files
//! (OpenSSH `sink()`, spec §3.2). Sans-IO: it never touches a file or a socket.
//!
//! # Contract
//!
//! The driver owns the byte stream and the filesystem. It calls, in a loop:
//!
//! 1. [`Sink::poll_transmit`] and writes what it got to the peer (the first call
//!    yields the ready `\0`; the sink speaks first);
//! 2. [`Sink::poll_event`] until it returns `None`, and acts on each event:
//!    - [`SinkEvent::EnterDir`]: create or enter the directory, then answer with
//!      [`Sink::dir_entered`];
//!    - [`SinkEvent::File`]: open the destination, answer with [`Sink::file_opened`];
//!      on success copy exactly `size` payload bytes from the stream to the file
//!      (payload never passes through this machine), then call
//!      [`Sink::payload_received`];
//!    - [`SinkEvent::FileStatus`]: finish the file (times, mode, rename) and answer
//!      with [`Sink::file_done`];
//!    - [`SinkEvent::LeaveDir`]: apply the directory's deferred times and mode;
//!    - [`SinkEvent::Warning`]: show the peer's message (it is already counted);
//!    - [`SinkEvent::Finished`]: the session is over;
//! 3. when [`Sink::wants_input`] is true, [`Sink::handle_input`] with the bytes it
//!    has buffered (it consumes at most one record and returns how many bytes), or
//!    [`Sink::handle_eof`] when the stream has ended.
//!
//! On a [`SinkError`] the driver still flushes [`Sink::poll_transmit`] (the error
//! reply for the peer is queued there) and then stops.
//!
//! With [`SinkConfig::reply_credit`] the sink pipelines (see there): every reply
//! is `\0`, a refused file's payload comes anyway and the driver discards it
//! ([`SinkEvent::SkipPayload`]), a refused directory's subtree is read and
//! dropped here.
//!
//! Rules kept here: one reply per record and exactly one final reply per file; a
//! `\1` from the peer is counted and the copy goes on; `D` without `-r` is an
//! error; `E` must balance a `D`; nesting is bounded; a `T` binds to the very next
//! record, which must be a `C` or `D`; top-level names must pass the
//! [`NameFilter`] when one is set (CVE-2019-6111).

use std::collections::VecDeque;
use std::fmt;

use crate::filter::NameFilter;
use crate::message::{FileHeader, Message, Times};
use crate::wire::{self, Incoming, Reply, WireError};

/// How deep directories may nest before the sink refuses (a hostile source could
/// otherwise recurse until a path no longer fits).
pub const DEFAULT_MAX_DEPTH: usize = 512;

/// Settings for one sink session.
#[derive(Clone, Debug)]
pub struct SinkConfig {
    /// `-r`: accept `D` records.
    pub recursive: bool,
    /// Names the sink accepts at the top level; `None` accepts any safe name (a
    /// remote sink, or `-T`).
    pub filter: Option<NameFilter>,
    pub max_depth: usize,
    /// Replies sent ahead, with the ready `\0`, so that the source never waits
    /// a round trip for one (0: OpenSSH's lockstep). A source reads one byte per
    /// reply and cannot tell an early `\0` from a late one; the price is that
    /// refusals can no longer reach it, so with credit they are counted and left
    /// to the driver to show. Only for a client's own downloads: a remote sink
    /// must answer as OpenSSH's does.
    pub reply_credit: usize,
}

impl SinkConfig {
    pub fn new(recursive: bool) -> SinkConfig {
        SinkConfig { recursive, filter: None, max_depth: DEFAULT_MAX_DEPTH, reply_credit: 0 }
    }
}

/// What the driver must do next. See the module documentation for the answers.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SinkEvent {
    EnterDir {
        header: FileHeader,
        times: Option<Times>,
    },
    LeaveDir,
    File {
        header: FileHeader,
        times: Option<Times>,
    },
    /// The source's status byte after the payload: `Some(text)` if it reported a
    /// read error (its data was padded, see spec §3.1).
    FileStatus {
        source_error: Option<Vec<u8>>,
    },
    Warning(Vec<u8>),
    /// With reply credit only: a file the driver refused, or one inside a
    /// refused directory, is coming anyway. Read and drop `size` payload bytes,
    /// then call [`Sink::payload_received`]; its status byte is handled here.
    SkipPayload {
        size: u64,
    },
    Finished,
}

/// Why a sink session ended early.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SinkError {
    /// The peer broke the protocol. An error reply is queued for it.
    PeerMisbehaved(WireError),
    /// The peer's first line was plain text (a shell message or banner, the rcp
    /// convention). It is queued back to the peer as an error reply.
    ShellMessage(Vec<u8>),
    /// The peer sent a fatal error (`\2`).
    PeerFatal(Vec<u8>),
    /// The stream ended inside a file or a directory.
    LostConnection,
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SinkError::PeerMisbehaved(e) => e.fmt(f),
            SinkError::ShellMessage(text) | SinkError::PeerFatal(text) => {
                f.write_str(&crate::display::escape(text))
            }
            SinkError::LostConnection => f.write_str("lost connection"),
        }
    }
}

impl std::error::Error for SinkError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Expecting a record; `first` while nothing was read at this directory level.
    Records {
        first: bool,
    },
    AwaitDirEntered,
    AwaitFileOpened {
        size: u64,
    },
    Payload,
    Status,
    AwaitFileDone,
    Finished,
    Failed,
}

/// The sink side of one SCP session. See the module documentation for the contract.
#[derive(Debug)]
pub struct Sink {
    config: SinkConfig,
    state: State,
    depth: usize,
    /// `Some(times)` after a `T`; `Some(None)` after one whose times were out of range.
    pending_times: Option<Option<Times>>,
    transmit: Vec<u8>,
    events: VecDeque<SinkEvent>,
    errors: u32,
    /// With reply credit: directories open inside a refused one (its own level
    /// included); their records are read, answered and dropped.
    skip_depth: usize,
    /// With reply credit: the payload coming is being dropped, and so is its status.
    skipping_file: bool,
}

impl Sink {
    /// Starts a session; the ready `\0` is queued for transmission.
    pub fn new(config: SinkConfig) -> Sink {
        Sink {
            state: State::Records { first: true },
            depth: 0,
            pending_times: None,
            transmit: vec![0; 1 + config.reply_credit],
            events: VecDeque::new(),
            errors: 0,
            skip_depth: 0,
            skipping_file: false,
            config,
        }
    }

    /// Output: moves the bytes to send to the peer into `out`.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.transmit);
    }

    /// Output: the next thing the driver must do.
    pub fn poll_event(&mut self) -> Option<SinkEvent> {
        self.events.pop_front()
    }

    /// True when the machine needs bytes from the peer to go on.
    pub fn wants_input(&self) -> bool {
        self.events.is_empty() && matches!(self.state, State::Records { .. } | State::Status)
    }

    pub fn is_finished(&self) -> bool {
        self.state == State::Finished
    }

    /// Errors counted so far: `\1` messages received and error replies sent.
    pub fn error_count(&self) -> u32 {
        self.errors
    }

    /// Current directory nesting below the target.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Input: bytes from the peer. Consumes at most one record or status reply and
    /// returns how many bytes it took (0 if `data` does not hold a whole one yet).
    pub fn handle_input(&mut self, data: &[u8]) -> Result<usize, SinkError> {
        match self.state {
            State::Records { first } => self.handle_record(data, first),
            State::Status => self.handle_status(data),
            _ => Ok(0),
        }
    }

    /// Input: the peer closed the stream. `unconsumed` is what the driver still
    /// holds of it: bytes left over mean a record was cut off, not a clean end.
    pub fn handle_eof(&mut self, unconsumed: &[u8]) -> Result<(), SinkError> {
        match self.state {
            State::Records { .. }
                if self.depth == 0
                    && self.skip_depth == 0
                    && self.pending_times.is_none()
                    && unconsumed.is_empty() =>
            {
                self.state = State::Finished;
                self.events.push_back(SinkEvent::Finished);
                Ok(())
            }
            State::Finished | State::Failed => Ok(()),
            _ => self.fail(SinkError::LostConnection),
        }
    }

    /// Answer to [`SinkEvent::EnterDir`]: `Err(text)` refuses the directory with
    /// `\1scp: <text>` and the source skips it.
    pub fn dir_entered(&mut self, result: Result<(), String>) {
        if self.state != State::AwaitDirEntered {
            return;
        }
        match result {
            Ok(()) => {
                self.depth += 1;
                self.transmit.push(0);
                self.state = State::Records { first: true };
            }
            Err(text) => {
                self.refuse(&text);
                self.state = State::Records { first: false };
                if self.config.reply_credit > 0 {
                    // The source was told yes: its subtree comes, and is dropped.
                    self.skip_depth = 1;
                }
            }
        }
    }

    /// Answer to [`SinkEvent::File`]: on `Ok` the payload follows; `Err(text)`
    /// refuses the file and the source sends no data (with reply credit, it does:
    /// [`SinkEvent::SkipPayload`] follows).
    pub fn file_opened(&mut self, result: Result<(), String>) {
        let State::AwaitFileOpened { size } = self.state else {
            return;
        };
        match result {
            Ok(()) => {
                self.transmit.push(0);
                self.state = State::Payload;
            }
            Err(text) => {
                self.refuse(&text);
                if self.config.reply_credit > 0 {
                    self.skip_payload(size);
                } else {
                    self.state = State::Records { first: false };
                }
            }
        }
    }

    /// Has the driver drop a payload the source sends although it is not wanted.
    fn skip_payload(&mut self, size: u64) {
        self.skipping_file = true;
        self.state = State::Payload;
        self.events.push_back(SinkEvent::SkipPayload { size });
    }

    /// The driver has copied the whole payload; the source's status byte is next.
    pub fn payload_received(&mut self) {
        if self.state == State::Payload {
            self.state = State::Status;
        }
    }

    /// Answer to [`SinkEvent::FileStatus`]: the file's one final reply.
    pub fn file_done(&mut self, result: Result<(), String>) {
        if self.state != State::AwaitFileDone {
            return;
        }
        match result {
            Ok(()) => self.transmit.push(0),
            Err(text) => self.refuse(&text),
        }
        self.state = State::Records { first: false };
    }

    fn handle_record(&mut self, data: &[u8], first: bool) -> Result<usize, SinkError> {
        let (incoming, used) = match wire::decode_record(data) {
            Ok(Some(item)) => item,
            Ok(None) => return Ok(0),
            Err(e) => return self.misbehaved(e),
        };
        self.state = State::Records { first: false };
        match incoming {
            Incoming::Warning(text) => {
                self.errors += 1;
                self.events.push_back(SinkEvent::Warning(text));
            }
            Incoming::Fatal(text) => return self.fail(SinkError::PeerFatal(text)),
            Incoming::Unrecognized(line) if first && self.pending_times.is_none() => {
                // The rcp convention: a first line that is no record is a message
                // from the remote shell (e.g. csh's "No match.").
                wire::encode_error(&crate::display::escape(&line), &mut self.transmit);
                return self.fail(SinkError::ShellMessage(line));
            }
            Incoming::Unrecognized(_) => {
                return self.misbehaved(WireError::Protocol("expected control record"));
            }
            Incoming::Record(record) if self.skip_depth > 0 => self.skip_record(record)?,
            Incoming::TimesOutOfRange if self.skip_depth > 0 => self.transmit.push(0),
            Incoming::Record(Message::Times(times)) => self.times(Some(times))?,
            Incoming::TimesOutOfRange => self.times(None)?,
            Incoming::Record(Message::EndDir) => self.end_dir()?,
            Incoming::Record(Message::File(header)) => {
                self.check_name(&header)?;
                let times = self.pending_times.take().flatten();
                self.state = State::AwaitFileOpened { size: header.size };
                self.events.push_back(SinkEvent::File { header, times });
            }
            Incoming::Record(Message::Dir(header)) => {
                self.check_name(&header)?;
                if !self.config.recursive {
                    return self.misbehaved(WireError::Protocol("received directory without -r"));
                }
                if self.depth >= self.config.max_depth {
                    return self.misbehaved(WireError::Protocol("directories nested too deeply"));
                }
                let times = self.pending_times.take().flatten();
                self.state = State::AwaitDirEntered;
                self.events.push_back(SinkEvent::EnterDir { header, times });
            }
        }
        Ok(used)
    }

    /// A record inside a refused directory (reply credit only): answered, and
    /// nothing created. Nesting stays bounded as everywhere else.
    fn skip_record(&mut self, record: Message) -> Result<(), SinkError> {
        match record {
            Message::Times(_) => self.transmit.push(0),
            Message::File(header) => {
                self.transmit.push(0);
                self.skip_payload(header.size);
            }
            Message::Dir(_) => {
                if self.depth + self.skip_depth >= self.config.max_depth {
                    return self.misbehaved(WireError::Protocol("directories nested too deeply"));
                }
                self.skip_depth += 1;
                self.transmit.push(0);
            }
            Message::EndDir => {
                self.skip_depth -= 1;
                self.transmit.push(0);
            }
        }
        Ok(())
    }

    fn times(&mut self, times: Option<Times>) -> Result<(), SinkError> {
        if self.pending_times.is_some() {
            return self.misbehaved(WireError::Protocol("times not followed by a file or directory"));
        }
        self.pending_times = Some(times);
        self.transmit.push(0);
        Ok(())
    }

    fn end_dir(&mut self) -> Result<(), SinkError> {
        if self.pending_times.is_some() {
            return self.misbehaved(WireError::Protocol("times not followed by a file or directory"));
        }
        if self.depth == 0 {
            return self.misbehaved(WireError::Protocol("end of directory at top level"));
        }
        self.depth -= 1;
        self.transmit.push(0);
        self.events.push_back(SinkEvent::LeaveDir);
        Ok(())
    }

    /// The CVE-2019-6111 check: top-level names must be ones the client asked for.
    fn check_name(&mut self, header: &FileHeader) -> Result<(), SinkError> {
        let refused = self.depth == 0
            && self.config.filter.as_ref().is_some_and(|f| !f.matches(header.name.as_bytes()));
        if refused {
            return self.misbehaved(WireError::Protocol("filename does not match request"));
        }
        Ok(())
    }

    fn handle_status(&mut self, data: &[u8]) -> Result<usize, SinkError> {
        let (reply, used) = match wire::decode_reply(data) {
            Ok(Some(item)) => item,
            Ok(None) => return Ok(0),
            Err(e) => return self.misbehaved(e),
        };
        let source_error = match reply {
            Reply::Ok => None,
            Reply::Warning(text) => {
                self.errors += 1;
                Some(text)
            }
            Reply::Fatal(text) => return self.fail(SinkError::PeerFatal(text)),
        };
        if self.skipping_file {
            // A dropped file: nothing to finish, the source's message aside.
            self.skipping_file = false;
            self.transmit.push(0);
            self.state = State::Records { first: false };
            if let Some(text) = source_error {
                self.events.push_back(SinkEvent::Warning(text));
            }
            return Ok(used);
        }
        self.state = State::AwaitFileDone;
        self.events.push_back(SinkEvent::FileStatus { source_error });
        Ok(used)
    }

    /// Counts a refusal and answers it: `\1text`, or with credit the `\0` the
    /// source has already taken for granted.
    fn refuse(&mut self, text: &str) {
        self.errors += 1;
        if self.config.reply_credit > 0 {
            self.transmit.push(0);
        } else {
            wire::encode_error(text, &mut self.transmit);
        }
    }

    fn misbehaved<T>(&mut self, error: WireError) -> Result<T, SinkError> {
        wire::encode_error(&error.to_string(), &mut self.transmit);
        self.fail(SinkError::PeerMisbehaved(error))
    }

    fn fail<T>(&mut self, error: SinkError) -> Result<T, SinkError> {
        self.errors += 1;
        self.state = State::Failed;
        self.events.clear();
        Err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Mode;

    /// Drives a sink over `input` the way the engine does, accepting every file and
    /// directory, and returns (bytes sent, events seen, final result).
    fn run(config: SinkConfig, input: &[u8]) -> (Vec<u8>, Vec<SinkEvent>, Result<(), SinkError>) {
        run_refusing(config, &[], input)
    }

    /// [`run`], refusing the files and directories named in `refuse` (with
    /// reply credit, their payloads are skipped as `SkipPayload` asks).
    fn run_refusing(
        config: SinkConfig,
        refuse: &[&str],
        input: &[u8],
    ) -> (Vec<u8>, Vec<SinkEvent>, Result<(), SinkError>) {
        let mut sink = Sink::new(config);
        let mut sent = Vec::new();
        let mut events = Vec::new();
        let mut pos = 0;
        let refused = |header: &FileHeader| refuse.contains(&header.name.display().as_str());
        let result = loop {
            sink.poll_transmit(&mut sent);
            while let Some(event) = sink.poll_event() {
                match &event {
                    SinkEvent::EnterDir { header, .. } => {
                        sink.dir_entered(if refused(header) { Err("no".into()) } else { Ok(()) });
                    }
                    SinkEvent::File { header, .. } if refused(header) => sink.file_opened(Err("no".into())),
                    SinkEvent::File { header: FileHeader { size, .. }, .. }
                    | SinkEvent::SkipPayload { size } => {
                        if matches!(event, SinkEvent::File { .. }) {
                            sink.file_opened(Ok(()));
                        }
                        pos += *size as usize;
                        sink.payload_received();
                    }
                    SinkEvent::FileStatus { .. } => sink.file_done(Ok(())),
                    _ => {}
                }
                events.push(event);
            }
            sink.poll_transmit(&mut sent);
            if sink.is_finished() {
                break Ok(());
            }
            if pos >= input.len() {
                if let Err(e) = sink.handle_eof(&[]) {
                    break Err(e);
                }
                continue;
            }
            match sink.handle_input(&input[pos..]) {
                Ok(0) => {
                    if let Err(e) = sink.handle_eof(&input[pos..]) {
                        break Err(e);
                    }
                }
                Ok(n) => pos += n,
                Err(e) => break Err(e),
            }
        };
        sink.poll_transmit(&mut sent);
        (sent, events, result)
    }

    fn header(mode: u32, size: u64, name: &str) -> FileHeader {
        FileHeader {
            mode: Mode::new(mode).expect("mode"),
            size,
            name: crate::FileName::new(name.as_bytes()).expect("name"),
        }
    }

    const T: &[u8] = b"T1700000000 0 1800000000 0\n";

    fn times() -> Option<Times> {
        Some(Times::from_secs(1_700_000_000, 1_800_000_000))
    }

    fn filter(request: &str) -> SinkConfig {
        SinkConfig {
            filter: Some(NameFilter::from_request(request.as_bytes()).expect("pattern")),
            ..SinkConfig::new(false)
        }
    }

    /// Spec §10 vector 1: upload of one file with -p, replayed into the sink.
    #[test]
    fn vector_1_one_file_with_times() {
        let mut input = T.to_vec();
        input.extend_from_slice(b"C0644 6 a.txt\nhello\n\0");
        let (sent, events, result) = run(SinkConfig::new(false), &input);
        assert_eq!(result, Ok(()));
        assert_eq!(sent, [0, 0, 0, 0]);
        assert_eq!(
            events,
            [
                SinkEvent::File { header: header(0o644, 6, "a.txt"), times: times() },
                SinkEvent::FileStatus { source_error: None },
                SinkEvent::Finished,
            ]
        );
    }

    /// Spec §10 vector 3: the 210-byte tree stream gets exactly 16 NULs back.
    #[test]
    fn vector_3_tree_with_times() {
        let mut input = Vec::new();
        for part in [
            &b"D0755 0 tree\n"[..],
            b"C0600 4 f1\none\n\0",
            b"D0755 0 sub\n",
            b"C0644 0 empty\n\0",
            b"C0644 3 f2\nxyz\0",
        ] {
            input.extend_from_slice(T);
            input.extend_from_slice(part);
        }
        input.extend_from_slice(b"E\nE\n");
        assert_eq!(input.len(), 210);
        let (sent, events, result) = run(SinkConfig::new(true), &input);
        assert_eq!(result, Ok(()));
        assert_eq!(sent, [0u8; 16]);
        assert_eq!(events.iter().filter(|e| **e == SinkEvent::LeaveDir).count(), 2);
        assert_eq!(events[0], SinkEvent::EnterDir { header: header(0o755, 0, "tree"), times: times() });
    }

    /// Spec §10 vector 4: without -p there are no T records.
    #[test]
    fn vector_4_tree_without_times() {
        let input = b"D0755 0 tree\nC0600 4 f1\none\n\0D0755 0 sub\nC0644 0 empty\n\0C0644 3 f2\nxyz\0E\nE\n";
        let (sent, events, result) = run(SinkConfig::new(true), input);
        assert_eq!(result, Ok(()));
        assert_eq!(sent, [0u8; 11]);
        assert!(events.iter().all(|e| !matches!(e, SinkEvent::File { times: Some(_), .. })));
    }

    fn refused(config: SinkConfig, input: &[u8], reply: &[u8], error: SinkError) {
        let (sent, _, result) = run(config, input);
        assert_eq!(result, Err(error), "input {input:?}");
        let mut expected = vec![0u8];
        expected.extend_from_slice(reply);
        assert!(sent.ends_with(reply), "sent {sent:?}, want ..{reply:?}");
        assert_eq!(sent[0], 0);
    }

    fn protocol(what: &'static str) -> SinkError {
        SinkError::PeerMisbehaved(WireError::Protocol(what))
    }

    /// Spec §10 vector 11: hostile records from a server.
    #[test]
    fn vector_11_hostile_records() {
        refused(
            filter("a.txt"),
            b"C0644 3 evil.txt\nabc\0",
            b"\x01scp: protocol error: filename does not match request\n",
            protocol("filename does not match request"),
        );
        refused(
            filter("a.txt"),
            b"C0644 3 ../x\nabc\0",
            b"\x01scp: error: unexpected filename: ../x\n",
            SinkError::PeerMisbehaved(WireError::UnexpectedFilename(b"../x".to_vec())),
        );
        refused(
            SinkConfig::new(true),
            b"D0755 0 .\n",
            b"\x01scp: error: unexpected filename: .\n",
            SinkError::PeerMisbehaved(WireError::UnexpectedFilename(b".".to_vec())),
        );
        refused(
            filter("a.txt"),
            b"D0755 0 a.txt\n",
            b"\x01scp: protocol error: received directory without -r\n",
            protocol("received directory without -r"),
        );
        refused(
            filter("a.txt"),
            b"C644 3 a.txt\n",
            b"\x01scp: protocol error: bad mode\n",
            protocol("bad mode"),
        );
        refused(
            filter("a.txt"),
            b"C0644 3x a.txt\n",
            b"\x01scp: protocol error: size not delimited\n",
            protocol("size not delimited"),
        );
        refused(
            filter("a.txt"),
            b"T1 0 2\n",
            b"\x01scp: protocol error: atime.sec not delimited\n",
            protocol("atime.sec not delimited"),
        );
        refused(
            filter("a.txt"),
            b"T1 0 2 1000000\n",
            b"\x01scp: protocol error: atime.usec not delimited\n",
            protocol("atime.usec not delimited"),
        );
    }

    #[test]
    fn vector_11_fatal_and_warning() {
        let (sent, _, result) = run(filter("a.txt"), b"\x02scp: fatal thing\n");
        assert_eq!(result, Err(SinkError::PeerFatal(b"scp: fatal thing".to_vec())));
        assert_eq!(sent, [0], "no reply to \\2");

        let (sent, events, result) = run(filter("a.txt"), b"\x01scp: warn thing\nC0644 3 a.txt\nabc\0");
        assert_eq!(result, Ok(()));
        assert_eq!(sent, [0, 0, 0]);
        assert_eq!(events[0], SinkEvent::Warning(b"scp: warn thing".to_vec()));
    }

    #[test]
    fn vector_11_brace_patterns() {
        let (_, _, result) = run(filter("{a,b}.txt"), b"C0644 3 b.txt\nabc\0");
        assert_eq!(result, Ok(()));
        let (_, _, result) = run(filter("{a,b}.txt"), b"C0644 3 c.txt\nabc\0");
        assert_eq!(result, Err(protocol("filename does not match request")));
    }

    /// Unlike OpenSSH, the top-level name of a -r download is checked too.
    #[test]
    fn recursive_top_level_name_is_checked() {
        let config = SinkConfig { recursive: true, ..filter("dir") };
        let (_, _, result) = run(config.clone(), b"D0755 0 notwhatyouasked\nC0644 3 x\nabc\0E\n");
        assert_eq!(result, Err(protocol("filename does not match request")));
        // Names inside the requested directory are the server's to choose.
        let (_, _, result) = run(config, b"D0755 0 dir\nC0644 3 x\nabc\0E\n");
        assert_eq!(result, Ok(()));
    }

    /// Spec §10 vector 10: a banner where the first record belongs.
    #[test]
    fn vector_10_shell_banner() {
        let (sent, _, result) = run(filter("a.txt"), b"Welcome-to-host\nC0644 6 a.txt\n");
        assert_eq!(result, Err(SinkError::ShellMessage(b"Welcome-to-host".to_vec())));
        assert_eq!(sent, b"\0\x01scp: Welcome-to-host\n");
        let (sent, _, result) = run(filter("a.txt"), b"\nC0644 6 a.txt\n");
        assert_eq!(result, Err(protocol("unexpected <newline>")));
        assert_eq!(sent, b"\0\x01scp: protocol error: unexpected <newline>\n");
    }

    #[test]
    fn garbage_after_the_first_record_is_a_protocol_error() {
        let (_, _, result) = run(SinkConfig::new(false), b"C0644 1 a\nx\0Xgarbage\n");
        assert_eq!(result, Err(protocol("expected control record")));
    }

    #[test]
    fn end_dir_must_balance() {
        let (sent, _, result) = run(SinkConfig::new(true), b"E\n");
        assert_eq!(result, Err(protocol("end of directory at top level")));
        assert_eq!(sent, b"\0\x01scp: protocol error: end of directory at top level\n");
        let (_, _, result) = run(SinkConfig::new(true), b"D0755 0 d\nE\nE\n");
        assert_eq!(result, Err(protocol("end of directory at top level")));
    }

    #[test]
    fn times_bind_to_the_next_record_only() {
        let (_, events, result) = run(SinkConfig::new(false), b"T5 0 6 0\nC0644 1 a\nx\0C0644 1 b\ny\0");
        assert_eq!(result, Ok(()));
        let file_times: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                SinkEvent::File { times, .. } => Some(*times),
                _ => None,
            })
            .collect();
        assert_eq!(file_times, [Some(Times::from_secs(5, 6)), None]);
        let (_, _, result) = run(SinkConfig::new(true), b"D0755 0 d\nT5 0 6 0\nE\n");
        assert_eq!(result, Err(protocol("times not followed by a file or directory")));
        let (_, _, result) = run(SinkConfig::new(true), b"T5 0 6 0\nT5 0 6 0\n");
        assert_eq!(result, Err(protocol("times not followed by a file or directory")));
        let (_, _, result) = run(SinkConfig::new(false), b"T5 0 6 0\n");
        assert_eq!(result, Err(SinkError::LostConnection));
    }

    #[test]
    fn out_of_range_times_are_acknowledged_and_ignored() {
        let (sent, events, result) =
            run(SinkConfig::new(false), b"T99999999999999999999 0 1 0\nC0644 1 a\nx\0");
        assert_eq!(result, Ok(()));
        assert_eq!(sent, [0, 0, 0, 0]);
        assert!(matches!(events[0], SinkEvent::File { times: None, .. }));
    }

    #[test]
    fn nesting_is_bounded() {
        let config = SinkConfig { max_depth: 3, ..SinkConfig::new(true) };
        let (_, _, result) = run(config, &b"D0755 0 d\n".repeat(4));
        assert_eq!(result, Err(protocol("directories nested too deeply")));
    }

    #[test]
    fn eof_inside_a_file_or_directory_is_lost_connection() {
        let (_, _, result) = run(SinkConfig::new(true), b"D0755 0 d\nC0644 1 a\n");
        assert_eq!(result, Err(SinkError::LostConnection));
        let (_, _, result) = run(SinkConfig::new(true), b"D0755 0 d\n");
        assert_eq!(result, Err(SinkError::LostConnection));
    }

    #[test]
    fn eof_inside_a_record_is_lost_connection() {
        let (_, _, result) = run(SinkConfig::new(false), b"C0644 3 a.txt");
        assert_eq!(result, Err(SinkError::LostConnection));
        let (_, events, result) = run(SinkConfig::new(false), b"");
        assert_eq!((events, result), (vec![SinkEvent::Finished], Ok(())));
    }

    #[test]
    fn source_read_error_is_counted_and_answered_once() {
        let (sent, events, result) =
            run(SinkConfig::new(false), b"C0644 3 a\n\0\0\0\x01scp: a: Broken pipe\n");
        assert_eq!(result, Ok(()));
        assert_eq!(sent, [0, 0, 0]);
        assert_eq!(events[1], SinkEvent::FileStatus { source_error: Some(b"scp: a: Broken pipe".to_vec()) });
    }

    #[test]
    fn refusals_produce_one_error_reply_and_go_on() {
        let mut sink = Sink::new(SinkConfig::new(true));
        let mut sent = Vec::new();
        assert_eq!(sink.handle_input(b"D0755 0 d\n"), Ok(10));
        assert!(matches!(sink.poll_event(), Some(SinkEvent::EnterDir { .. })));
        sink.dir_entered(Err("d: Not a directory".into()));
        assert_eq!(sink.handle_input(b"C0644 3 a\n"), Ok(10));
        assert!(matches!(sink.poll_event(), Some(SinkEvent::File { .. })));
        sink.file_opened(Err("a: Permission denied".into()));
        assert!(sink.wants_input());
        sink.poll_transmit(&mut sent);
        assert_eq!(sent, b"\0\x01scp: d: Not a directory\n\x01scp: a: Permission denied\n");
        assert_eq!(sink.error_count(), 2);
        assert_eq!(sink.handle_eof(b""), Ok(()));
    }

    /// [`run_refusing`] with reply credit, on input that must end cleanly.
    fn run_with_credit(credit: usize, refuse: &[&str], input: &[u8]) -> (Vec<u8>, Vec<SinkEvent>) {
        let config = SinkConfig { reply_credit: credit, ..SinkConfig::new(true) };
        let (sent, events, result) = run_refusing(config, refuse, input);
        assert_eq!(result, Ok(()), "a clean end");
        (sent, events)
    }

    #[test]
    fn credit_is_sent_with_the_ready_reply() {
        let (sent, _) = run_with_credit(3, &[], b"");
        assert_eq!(sent, b"\0\0\0\0");
    }

    #[test]
    fn with_credit_every_refusal_is_answered_with_a_plain_ok() {
        // One reply per record and per file end, as in lockstep: only their bytes change.
        let input = b"T1 0 1 0\nC0644 3 bad\nabc\0C0644 2 ok\nhi\0";
        let (sent, events) = run_with_credit(2, &["bad"], input);
        assert_eq!(sent, [0u8; 3 + 5]);
        assert!(events.contains(&SinkEvent::SkipPayload { size: 3 }));
        assert_eq!(events.iter().filter(|e| matches!(e, SinkEvent::FileStatus { .. })).count(), 1);
    }

    #[test]
    fn with_credit_a_refused_directory_is_read_and_dropped() {
        let input = b"D0755 0 bad\nC0644 3 x\nabc\x01scp: x: short read\nD0755 0 deeper\nT1 0 1 0\nC0644 0 y\n\0E\nE\nC0644 2 ok\nhi\0";
        let (sent, events) = run_with_credit(1, &["bad"], input);
        // D, C, status, D, T, C, status, E, E: 9 replies; then the good file's 2.
        assert_eq!(sent, [0u8; 2 + 9 + 2]);
        let files: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                SinkEvent::File { header, .. } => Some(header.name.display()),
                _ => None,
            })
            .collect();
        assert_eq!(files, ["ok"]);
        assert!(events.contains(&SinkEvent::Warning(b"scp: x: short read".to_vec())));
        assert!(!events.contains(&SinkEvent::LeaveDir));
    }

    #[test]
    fn with_credit_a_refused_directory_still_bounds_nesting() {
        let mut sink = Sink::new(SinkConfig { reply_credit: 1, max_depth: 3, ..SinkConfig::new(true) });
        assert_eq!(sink.handle_input(b"D0755 0 a\n"), Ok(10));
        sink.poll_event();
        sink.dir_entered(Err("no".into()));
        assert_eq!(sink.handle_input(b"D0755 0 b\n"), Ok(10));
        assert_eq!(sink.handle_input(b"D0755 0 c\n"), Ok(10));
        assert_eq!(sink.handle_input(b"D0755 0 d\n"), Err(protocol("directories nested too deeply")));
    }

    #[test]
    fn with_credit_eof_inside_a_refused_directory_is_lost_connection() {
        let mut sink = Sink::new(SinkConfig { reply_credit: 1, ..SinkConfig::new(true) });
        assert_eq!(sink.handle_input(b"D0755 0 a\n"), Ok(10));
        sink.poll_event();
        sink.dir_entered(Err("no".into()));
        assert_eq!(sink.handle_eof(b""), Err(SinkError::LostConnection));
    }
}
