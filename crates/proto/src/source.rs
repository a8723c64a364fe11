//! The source state machine: the side that owns the files and emits records
//! (OpenSSH `source()`/`rsource()`, spec §3.1). Sans-IO: it never touches a file
//! or a socket.
//!
//! # Contract
//!
//! The driver walks the files and owns the byte stream. It:
//!
//! 1. waits for the sink's ready reply: feeds peer bytes to [`Source::handle_input`]
//!    until [`Source::poll_event`] yields [`SourceEvent::Ready`] (or `Refused`);
//! 2. for each entry calls [`Source::send`] with a `T`, `C`, `D` or `E` message,
//!    writes [`Source::poll_transmit`], and feeds replies until the event comes:
//!    `Accepted` or `Refused(text)` (a `\1` reply, counted: skip the file's data,
//!    or the directory's whole subtree);
//! 3. after an accepted `C`, writes exactly `size` payload bytes itself (they never
//!    pass through here), then calls [`Source::payload_sent`] with the read error,
//!    if any, and waits for the sink's final reply like in step 2;
//! 4. reports an entry it cannot send at all with [`Source::report_error`].
//!
//! Rules kept here: nothing is sent before the sink's first reply; one record at
//! a time, each waiting for its reply; `E` only closes a `D` that was accepted;
//! a `\2` reply (or any unknown first byte) ends the session.
//!
//! A [`Source::pipelined`] source waits only where the answer decides what comes
//! next: for the ready reply, a `C` (the payload follows only if it was accepted)
//! and a `D` (its subtree likewise). `T`, `E` and the status after a payload may
//! be followed at once by the next record; their answers come later, in order, as
//! [`SourceEvent::Settled`]. A sink reads records one at a time, so it cannot
//! tell; OpenSSH's answers `T` and `E` always with `\0` and reads the next record
//! whatever a file's final reply was. A `C` is pipelined only as a *file sent
//! ahead* ([`Source::send_file_ahead`]): after refusing a `C`, a sink reads
//! what follows as records, so the payload would be taken for records. A file
//! goes ahead only if that cannot do harm ([`Source::can_send_ahead`]): no line
//! of its payload starts with a byte a sink acts on (`C D E T \1 \2`), so a
//! sink that refused it meets an unknown record and ends the session (OpenSSH's
//! `expected control record`), and the source ends it too
//! ([`SourceError::RefusedAhead`]).

use std::collections::VecDeque;
use std::fmt;

use crate::message::{FileHeader, Message};
use crate::wire::{self, Reply, WireError};

/// What the peer answered.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SourceEvent {
    /// The sink's first reply was `\0`.
    Ready,
    /// The last record (or the status after a payload) was acknowledged.
    Accepted,
    /// The sink answered `\1<text>`; the error is counted.
    Refused(Vec<u8>),
    /// Pipelined only: the answer to a record that was not waited for.
    /// `refused` holds the text of a `\1` answer (counted).
    Settled { what: Settled, refused: Option<Vec<u8>> },
}

/// Which record a [`SourceEvent::Settled`] answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    Times,
    EndDir,
    /// The status after a file's payload: the file's final reply.
    FileStatus,
}

/// Why a source session ended early.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SourceError {
    /// The peer's reply was malformed.
    PeerMisbehaved(WireError),
    /// The peer sent `\2<text>`, or a line where a later reply belongs.
    PeerFatal(Vec<u8>),
    /// The peer's very first reply was a line of text, not `\0`/`\1`/`\2`: what
    /// a remote login shell prints before scp starts (a banner).
    ShellMessage(Vec<u8>),
    /// The stream ended while a reply was awaited.
    LostConnection,
    /// The sink refused (`\1<text>`) a file sent ahead: it will read the
    /// payload as records and stop, so the session ends here.
    RefusedAhead(Vec<u8>),
    /// The driver called a method out of order (a bug in the driver, not the peer).
    OutOfOrder(&'static str),
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceError::PeerMisbehaved(e) => e.fmt(f),
            SourceError::PeerFatal(text) | SourceError::ShellMessage(text) => {
                f.write_str(&crate::display::escape(text))
            }
            SourceError::LostConnection => f.write_str("lost connection"),
            SourceError::RefusedAhead(text) => write!(
                f,
                "{}; its data had been sent ahead, so the copy stops here (RSCP_PIPELINE=0 waits for each file)",
                crate::display::escape(text)
            ),
            SourceError::OutOfOrder(what) => write!(f, "internal error: {what}"),
        }
    }
}

impl std::error::Error for SourceError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Awaiting {
    Ready,
    Times,
    File,
    /// A `C` sent with its payload, not waited for.
    FileAhead,
    Dir,
    EndDir,
    Status,
}

impl Awaiting {
    /// Whether what is sent next depends on this answer.
    fn gates(self) -> bool {
        matches!(self, Awaiting::Ready | Awaiting::File | Awaiting::Dir)
    }

    fn settled(self) -> Option<Settled> {
        match self {
            Awaiting::Times => Some(Settled::Times),
            Awaiting::EndDir => Some(Settled::EndDir),
            Awaiting::Status => Some(Settled::FileStatus),
            Awaiting::Ready | Awaiting::File | Awaiting::FileAhead | Awaiting::Dir => None,
        }
    }
}

/// The source side of one SCP session. See the module documentation.
#[derive(Debug)]
pub struct Source {
    pipelined: bool,
    /// Answers due from the sink, oldest first.
    awaited: VecDeque<Awaiting>,
    /// An accepted `C`: the driver is sending the payload.
    payload: bool,
    failed: bool,
    depth: usize,
    transmit: Vec<u8>,
    events: VecDeque<SourceEvent>,
    errors: u32,
}

impl Default for Source {
    fn default() -> Self {
        Source::new()
    }
}

impl Source {
    /// A source in OpenSSH's lockstep: every record waits for its answer.
    pub fn new() -> Source {
        Source {
            pipelined: false,
            awaited: VecDeque::from([Awaiting::Ready]),
            payload: false,
            failed: false,
            depth: 0,
            transmit: Vec::new(),
            events: VecDeque::new(),
            errors: 0,
        }
    }

    /// A source that does not wait for answers it does not need (module docs).
    pub fn pipelined() -> Source {
        Source { pipelined: true, ..Source::new() }
    }

    /// Output: moves the bytes to send to the peer into `out`.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.transmit);
    }

    /// Output: the peer's answers, in order, once they have arrived.
    pub fn poll_event(&mut self) -> Option<SourceEvent> {
        self.events.pop_front()
    }

    /// True while an answer is due and not yet received.
    pub fn wants_input(&self) -> bool {
        self.events.is_empty() && !self.failed && !self.awaited.is_empty()
    }

    /// True while the answer that decides what to send next is due.
    pub fn awaits_gate(&self) -> bool {
        self.awaited.iter().any(|a| a.gates())
    }

    /// True if the next answer due settles an earlier record rather than
    /// deciding what to send next (pipelined).
    pub fn next_answer_settles(&self) -> bool {
        self.events.is_empty() && !self.failed && self.awaited.front().is_some_and(|a| !a.gates())
    }

    /// Errors counted so far: `\1` replies received and errors reported.
    pub fn error_count(&self) -> u32 {
        self.errors
    }

    /// Directories entered and not yet closed with `E`.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Input: bytes from the peer; consumes at most one reply, and none while an
    /// event waits to be taken.
    pub fn handle_input(&mut self, data: &[u8]) -> Result<usize, SourceError> {
        if !self.wants_input() {
            return Ok(0);
        }
        let Some(&awaiting) = self.awaited.front() else {
            return Ok(0);
        };
        let (reply, used) = match wire::decode_reply(data) {
            Ok(Some(item)) => item,
            Ok(None) => return Ok(0),
            Err(e) => return self.fail(SourceError::PeerMisbehaved(e)),
        };
        let refused = match reply {
            Reply::Ok => None,
            Reply::Warning(text) => {
                self.errors += 1;
                Some(text)
            }
            Reply::Fatal(text) if awaiting == Awaiting::Ready && !matches!(data.first(), Some(2)) => {
                return self.fail(SourceError::ShellMessage(text));
            }
            Reply::Fatal(text) => return self.fail(SourceError::PeerFatal(text)),
        };
        if awaiting == Awaiting::FileAhead {
            if let Some(text) = refused {
                // Counted once, as the refusal above.
                self.failed = true;
                self.awaited.clear();
                return Err(SourceError::RefusedAhead(text));
            }
            // Accepted: its status answer (queued behind it) settles the file.
            self.awaited.pop_front();
            return Ok(used);
        }
        self.awaited.pop_front();
        let event = match (refused, awaiting.settled()) {
            (refused, Some(what)) if self.pipelined => SourceEvent::Settled { what, refused },
            (Some(text), _) => SourceEvent::Refused(text),
            (None, _) => {
                match awaiting {
                    Awaiting::File => self.payload = true,
                    Awaiting::Dir => self.depth += 1,
                    _ => {}
                }
                if awaiting == Awaiting::Ready { SourceEvent::Ready } else { SourceEvent::Accepted }
            }
        };
        self.events.push_back(event);
        Ok(used)
    }

    /// Input: the peer closed the stream.
    pub fn handle_eof(&mut self) -> Result<(), SourceError> {
        if self.failed || self.awaited.is_empty() {
            return Ok(());
        }
        self.fail(SourceError::LostConnection)
    }

    /// Queues one record. Lockstep: its reply must arrive before the next call.
    /// Pipelined: only a `C`'s or `D`'s must.
    pub fn send(&mut self, message: &Message) -> Result<(), SourceError> {
        let in_order = if self.pipelined {
            !self.awaits_gate()
        } else {
            self.awaited.is_empty() && self.events.is_empty()
        };
        if self.failed || self.payload || !in_order {
            return Err(SourceError::OutOfOrder("record sent before the previous reply"));
        }
        let awaiting = match message {
            Message::Times(_) => Awaiting::Times,
            Message::File(_) => Awaiting::File,
            Message::Dir(_) => Awaiting::Dir,
            Message::EndDir => {
                if self.depth == 0 {
                    return Err(SourceError::OutOfOrder("end of directory at top level"));
                }
                self.depth -= 1;
                Awaiting::EndDir
            }
        };
        wire::encode(message, &mut self.transmit);
        self.awaited.push_back(awaiting);
        Ok(())
    }

    /// Whether `payload` may follow its `C` before the answer (module docs): no
    /// line of it starts with a byte a sink acts on. The byte after it, the
    /// `\0` status, starts no record either.
    pub fn can_send_ahead(payload: &[u8]) -> bool {
        let acts_on = |b: Option<&u8>| matches!(b, Some(b'C' | b'D' | b'E' | b'T' | 1 | 2));
        if acts_on(payload.first()) {
            return false;
        }
        // Eight bytes at a time: only words holding a line feed are looked into
        // (this runs over every small file an upload sends).
        const ONES: u64 = u64::from_ne_bytes([1; 8]);
        const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
        const FEEDS: u64 = u64::from_ne_bytes([b'\n'; 8]);
        let mut words = payload.chunks_exact(8);
        let mut at = 0;
        for word in &mut words {
            let x = u64::from_ne_bytes(word.try_into().unwrap_or([0; 8])) ^ FEEDS;
            if x.wrapping_sub(ONES) & !x & HIGHS != 0 {
                for i in at..at + 8 {
                    if payload[i] == b'\n' && acts_on(payload.get(i + 1)) {
                        return false;
                    }
                }
            }
            at += 8;
        }
        (at..payload.len()).all(|i| payload[i] != b'\n' || !acts_on(payload.get(i + 1)))
    }

    /// Pipelined only: queues a `C`, its whole payload and the `\0` status at
    /// once. The `C`'s answer settles silently; a refusal ends the session with
    /// [`SourceError::RefusedAhead`]; the status answer comes as
    /// [`Settled::FileStatus`].
    pub fn send_file_ahead(&mut self, header: &FileHeader, payload: &[u8]) -> Result<(), SourceError> {
        if !self.pipelined || self.failed || self.payload || self.awaits_gate() {
            return Err(SourceError::OutOfOrder("file sent ahead out of turn"));
        }
        if u64::try_from(payload.len()).ok() != Some(header.size) || !Source::can_send_ahead(payload) {
            return Err(SourceError::OutOfOrder("file sent ahead that may not go ahead"));
        }
        wire::encode(&Message::File(header.clone()), &mut self.transmit);
        self.transmit.extend_from_slice(payload);
        self.transmit.push(0);
        self.awaited.push_back(Awaiting::FileAhead);
        self.awaited.push_back(Awaiting::Status);
        Ok(())
    }

    /// The payload of the accepted file has been written. `read_error` is the text
    /// of a read failure (the payload was zero-padded to its announced size), sent as
    /// `\1scp: <text>` in place of the `\0` status.
    pub fn payload_sent(&mut self, read_error: Option<&str>) -> Result<(), SourceError> {
        if !self.payload {
            return Err(SourceError::OutOfOrder("payload sent without an accepted file"));
        }
        match read_error {
            None => self.transmit.push(0),
            Some(text) => {
                self.errors += 1;
                wire::encode_error(text, &mut self.transmit);
            }
        }
        self.payload = false;
        self.awaited.push_back(Awaiting::Status);
        Ok(())
    }

    /// Reports an entry that cannot be sent (`\1scp: <text>`); no reply is expected.
    pub fn report_error(&mut self, text: &str) -> Result<(), SourceError> {
        let in_order = if self.pipelined {
            !self.awaits_gate()
        } else {
            self.awaited.is_empty() && self.events.is_empty()
        };
        if self.failed || self.payload || !in_order {
            return Err(SourceError::OutOfOrder("error reported while a reply is awaited"));
        }
        self.errors += 1;
        wire::encode_error(text, &mut self.transmit);
        Ok(())
    }

    fn fail<T>(&mut self, error: SourceError) -> Result<T, SourceError> {
        self.errors += 1;
        self.failed = true;
        self.awaited.clear();
        Err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{FileHeader, Mode, Times};
    use crate::name::FileName;

    fn header(mode: u32, size: u64, name: &str) -> FileHeader {
        FileHeader {
            mode: Mode::new(mode).expect("mode"),
            size,
            name: FileName::new(name.as_bytes()).expect("name"),
        }
    }

    fn times() -> Message {
        Message::Times(Times::from_secs(1_700_000_000, 1_800_000_000))
    }

    /// Sends `message` and feeds a `\0` reply, asserting it was accepted.
    fn exchange(source: &mut Source, wire: &mut Vec<u8>, message: &Message) {
        source.send(message).expect("in order");
        source.poll_transmit(wire);
        assert_eq!(source.handle_input(b"\0"), Ok(1));
        assert_eq!(source.poll_event(), Some(SourceEvent::Accepted));
    }

    fn file(source: &mut Source, wire: &mut Vec<u8>, h: FileHeader, payload: &[u8]) {
        exchange(source, wire, &Message::File(h));
        wire.extend_from_slice(payload);
        source.payload_sent(None).expect("in order");
        source.poll_transmit(wire);
        assert_eq!(source.handle_input(b"\0"), Ok(1));
        assert_eq!(source.poll_event(), Some(SourceEvent::Accepted));
    }

    fn ready() -> Source {
        let mut source = Source::new();
        assert!(source.send(&Message::EndDir).is_err(), "nothing before the sink's first reply");
        assert_eq!(source.handle_input(b"\0"), Ok(1));
        assert_eq!(source.poll_event(), Some(SourceEvent::Ready));
        source
    }

    /// Spec §10 vector 1: the exact 48 bytes of an upload with -p.
    #[test]
    fn vector_1_bytes() {
        let mut source = ready();
        let mut wire = Vec::new();
        exchange(&mut source, &mut wire, &times());
        file(&mut source, &mut wire, header(0o644, 6, "a.txt"), b"hello\n");
        assert_eq!(wire, b"T1700000000 0 1800000000 0\nC0644 6 a.txt\nhello\n\0");
        assert_eq!(wire.len(), 48);
        assert_eq!(source.error_count(), 0);
    }

    /// Spec §10 vector 3: the exact 210 bytes of a tree with -r -p.
    #[test]
    fn vector_3_bytes() {
        let mut source = ready();
        let mut wire = Vec::new();
        let w = &mut wire;
        exchange(&mut source, w, &times());
        exchange(&mut source, w, &Message::Dir(header(0o755, 0, "tree")));
        exchange(&mut source, w, &times());
        file(&mut source, w, header(0o600, 4, "f1"), b"one\n");
        exchange(&mut source, w, &times());
        exchange(&mut source, w, &Message::Dir(header(0o755, 0, "sub")));
        exchange(&mut source, w, &times());
        file(&mut source, w, header(0o644, 0, "empty"), b"");
        exchange(&mut source, w, &times());
        file(&mut source, w, header(0o644, 3, "f2"), b"xyz");
        exchange(&mut source, w, &Message::EndDir);
        exchange(&mut source, w, &Message::EndDir);
        assert_eq!(wire.len(), 210);
        assert!(wire.starts_with(b"T1700000000 0 1800000000 0\nD0755 0 tree\n"));
        assert!(wire.ends_with(b"C0644 3 f2\nxyz\0E\nE\n"));
        assert_eq!(source.depth(), 0);
    }

    /// Spec §10 vector 8: a short read is reported in place of the status byte.
    #[test]
    fn vector_8_read_error_status() {
        let mut source = ready();
        let mut wire = Vec::new();
        exchange(&mut source, &mut wire, &Message::File(header(0o644, 3, "big.bin")));
        source.payload_sent(Some("local/big.bin: Broken pipe")).expect("in order");
        source.poll_transmit(&mut wire);
        assert!(wire.ends_with(b"\x01scp: local/big.bin: Broken pipe\n"));
        assert_eq!(source.handle_input(b"\0"), Ok(1));
        assert_eq!(source.poll_event(), Some(SourceEvent::Accepted));
        assert_eq!(source.error_count(), 1);
    }

    /// Spec §10 vector 6: the sink refuses a file; no data is sent.
    #[test]
    fn vector_6_refused_file() {
        let mut source = ready();
        source.send(&Message::File(header(0o644, 6, "a.txt"))).expect("in order");
        let reply = b"\x01scp: nodir/x: No such file or directory\n";
        assert_eq!(source.handle_input(reply), Ok(reply.len()));
        assert_eq!(source.poll_event(), Some(SourceEvent::Refused(reply[1..reply.len() - 1].to_vec())));
        assert!(source.payload_sent(None).is_err(), "no payload after a refusal");
        assert_eq!(source.error_count(), 1);
    }

    /// A refused directory is not entered: no `E` may close it.
    #[test]
    fn refused_directory_is_not_entered() {
        let mut source = ready();
        source.send(&Message::Dir(header(0o755, 0, "d"))).expect("in order");
        assert!(source.handle_input(b"\x01scp: d: Not a directory\n").is_ok());
        assert!(matches!(source.poll_event(), Some(SourceEvent::Refused(_))));
        assert_eq!(
            source.send(&Message::EndDir),
            Err(SourceError::OutOfOrder("end of directory at top level"))
        );
    }

    /// Spec §10 vectors 7 and 10: `-d` refusal, a fatal reply, a banner, EOF.
    #[test]
    fn bad_first_replies() {
        let mut source = Source::new();
        assert!(source.handle_input(b"\x01scp: tree/f1: Not a directory\n").is_ok());
        assert_eq!(
            source.poll_event(),
            Some(SourceEvent::Refused(b"scp: tree/f1: Not a directory".to_vec()))
        );

        let mut source = Source::new();
        assert_eq!(
            source.handle_input(b"Welcome-to-host\n"),
            Err(SourceError::ShellMessage(b"Welcome-to-host".to_vec()))
        );
        let mut source = Source::new();
        assert_eq!(source.handle_input(b"\x02scp: no\n"), Err(SourceError::PeerFatal(b"scp: no".to_vec())));
        let mut source = Source::new();
        assert_eq!(source.handle_input(b"\x01scp: partial"), Ok(0));
        assert_eq!(source.handle_eof(), Err(SourceError::LostConnection));
    }

    #[test]
    fn one_record_at_a_time() {
        let mut source = ready();
        source.send(&times()).expect("in order");
        assert!(source.send(&times()).is_err());
        assert!(source.report_error("x").is_err());
        assert_eq!(source.handle_input(b"\0\0"), Ok(1), "one reply consumed per call");
        assert_eq!(source.handle_input(b"\0"), Ok(0), "no reply expected until the event is taken");
    }

    #[test]
    fn report_error_needs_no_reply() {
        let mut source = ready();
        source.report_error("nope: No such file or directory").expect("idle");
        let mut wire = Vec::new();
        source.poll_transmit(&mut wire);
        assert_eq!(wire, b"\x01scp: nope: No such file or directory\n");
        assert!(!source.wants_input());
        assert_eq!(source.error_count(), 1);
    }

    fn pipelined_ready() -> Source {
        let mut source = Source::pipelined();
        assert_eq!(source.handle_input(b"\0"), Ok(1));
        assert_eq!(source.poll_event(), Some(SourceEvent::Ready));
        source
    }

    /// Spec §10 vector 3 again, pipelined: the same 210 bytes, with the sink's 13
    /// answers all arriving at the end but those to the `C`s and `D`s.
    #[test]
    fn pipelined_vector_3_bytes_and_waits() {
        let mut source = pipelined_ready();
        let mut wire = Vec::new();
        let send = |source: &mut Source, wire: &mut Vec<u8>, m: &Message| {
            source.send(m).expect("in order");
            source.poll_transmit(wire);
        };
        let gate = |source: &mut Source, late: &mut usize| {
            // Earlier answers first, each settled; then the gate's own.
            while *late > 0 {
                assert_eq!(source.handle_input(b"\0"), Ok(1));
                assert!(matches!(source.poll_event(), Some(SourceEvent::Settled { refused: None, .. })));
                *late -= 1;
            }
            assert_eq!(source.handle_input(b"\0"), Ok(1));
            assert_eq!(source.poll_event(), Some(SourceEvent::Accepted));
        };
        let mut late = 0;
        let w = &mut wire;
        for (name, body, dir) in [("tree", &b""[..], true), ("f1", b"one\n", false), ("sub", b"", true)] {
            send(&mut source, w, &times());
            late += 1;
            let mode = if dir { 0o755 } else { 0o600 };
            let h = header(mode, body.len() as u64, name);
            send(&mut source, w, &if dir { Message::Dir(h) } else { Message::File(h) });
            assert!(source.send(&times()).is_err(), "a C or D is waited for");
            gate(&mut source, &mut late);
            if !dir {
                w.extend_from_slice(body);
                source.payload_sent(None).expect("in order");
                source.poll_transmit(w);
                late += 1;
            }
        }
        for (name, body) in [("empty", &b""[..]), ("f2", b"xyz")] {
            send(&mut source, w, &times());
            late += 1;
            send(&mut source, w, &Message::File(header(0o644, body.len() as u64, name)));
            gate(&mut source, &mut late);
            w.extend_from_slice(body);
            source.payload_sent(None).expect("in order");
            source.poll_transmit(w);
            late += 1;
        }
        send(&mut source, w, &Message::EndDir);
        send(&mut source, w, &Message::EndDir);
        assert_eq!(wire.len(), 210);
        assert!(wire.ends_with(b"C0644 3 f2\nxyz\0E\nE\n"));
        assert_eq!(late, 1, "the last file's status is still due, and both E's answers");
        assert!(source.wants_input());
        assert_eq!(source.handle_input(b"\0\0\0\0"), Ok(1));
        assert!(source.handle_input(b"\0\0\0").is_ok_and(|n| n == 0), "one event at a time");
        assert!(source.poll_event().is_some());
        assert_eq!(source.handle_input(b"\0\0\0"), Ok(1));
        assert!(source.poll_event().is_some());
        assert_eq!(source.handle_input(b"\0\0"), Ok(1));
        assert!(source.poll_event().is_some());
        assert!(!source.wants_input());
        assert_eq!(source.handle_eof(), Ok(()));
    }

    #[test]
    fn pipelined_late_refusals_are_settled_and_counted() {
        let mut source = pipelined_ready();
        source.send(&Message::File(header(0o644, 0, "a"))).expect("in order");
        assert_eq!(source.handle_input(b"\0"), Ok(1));
        assert_eq!(source.poll_event(), Some(SourceEvent::Accepted));
        source.payload_sent(None).expect("in order");
        source.send(&times()).expect("a file's status is not waited for");
        source.send(&Message::File(header(0o644, 0, "b"))).expect("nor a T's answer");
        let replies = b"\x01scp: a: No space left on device\n\0\x01scp: b: Permission denied\n";
        let n = source.handle_input(replies).expect("a reply");
        assert_eq!(
            source.poll_event(),
            Some(SourceEvent::Settled {
                what: Settled::FileStatus,
                refused: Some(b"scp: a: No space left on device".to_vec())
            })
        );
        let m = source.handle_input(&replies[n..]).expect("a reply");
        assert_eq!(source.poll_event(), Some(SourceEvent::Settled { what: Settled::Times, refused: None }));
        source.handle_input(&replies[n + m..]).expect("a reply");
        assert_eq!(source.poll_event(), Some(SourceEvent::Refused(b"scp: b: Permission denied".to_vec())));
        assert!(source.payload_sent(None).is_err(), "no payload after a refusal");
        assert_eq!(source.error_count(), 2);
    }

    #[test]
    fn pipelined_eof_with_answers_due_is_lost_connection() {
        let mut source = pipelined_ready();
        source.send(&times()).expect("in order");
        assert_eq!(source.handle_eof(), Err(SourceError::LostConnection));
    }

    #[test]
    fn what_may_go_ahead() {
        for inert in [&b""[..], b"hello\n", b"x Cx\n", b"\0C0644 1 a\n", b"\nxyz\n\n", b"c lower\ne\nt\n"] {
            assert!(Source::can_send_ahead(inert), "{inert:?}");
        }
        for acted_on in [
            &b"C0644 5 evil\n"[..],
            b"Dx",
            b"E\n",
            b"T1 0 1 0\n",
            b"\x01x\n",
            b"\x02",
            b"ok\nC0644 1 a\n",
            b"ok\n\x01\n",
            b"x\nCx",
        ] {
            assert!(!Source::can_send_ahead(acted_on), "{acted_on:?}");
        }
    }

    proptest::proptest! {
        /// The word-at-a-time check says what the plain per-byte rule says.
        #[test]
        fn ahead_check_matches_the_plain_rule(
            payload in proptest::collection::vec(
                proptest::sample::select(vec![b'\n', b'C', b'D', b'E', b'T', 1, 2, b'x', 0]),
                0..80,
            )
        ) {
            let mut line_start = true;
            let plain = payload.iter().all(|&b| {
                let ok = !(line_start && matches!(b, b'C' | b'D' | b'E' | b'T' | 1 | 2));
                line_start = b == b'\n';
                ok
            });
            proptest::prop_assert_eq!(Source::can_send_ahead(&payload), plain);
        }
    }

    /// Files sent ahead: each `C`, payload and status go out at once, with no
    /// wait; the `C`s' answers settle silently, the statuses as usual.
    #[test]
    fn files_sent_ahead_wait_for_nothing() {
        let mut source = pipelined_ready();
        let mut wire = Vec::new();
        source.send(&times()).expect("in order");
        source.send_file_ahead(&header(0o644, 4, "a"), b"abc\n").expect("ahead");
        source.send_file_ahead(&header(0o600, 0, "b"), b"").expect("no wait for a's answers");
        source.poll_transmit(&mut wire);
        assert_eq!(wire, b"T1700000000 0 1800000000 0\nC0644 4 a\nabc\n\0C0600 0 b\n\0");
        assert_eq!(source.handle_input(b"\0"), Ok(1));
        assert_eq!(source.poll_event(), Some(SourceEvent::Settled { what: Settled::Times, refused: None }));
        assert_eq!(source.handle_input(b"\0"), Ok(1), "a's C");
        assert_eq!(source.poll_event(), None, "settled silently");
        assert_eq!(source.handle_input(b"\x01scp: a: No space left on device\n"), Ok(33));
        assert!(matches!(
            source.poll_event(),
            Some(SourceEvent::Settled { what: Settled::FileStatus, refused: Some(_) })
        ));
        assert_eq!(source.handle_input(b"\0"), Ok(1), "b's C");
        assert_eq!(source.handle_input(b"\0"), Ok(1), "b's status");
        assert_eq!(
            source.poll_event(),
            Some(SourceEvent::Settled { what: Settled::FileStatus, refused: None })
        );
        assert!(!source.wants_input());
        assert_eq!(source.error_count(), 1);
    }

    #[test]
    fn a_refused_file_sent_ahead_ends_the_session() {
        let mut source = pipelined_ready();
        source.send_file_ahead(&header(0o644, 3, "a"), b"abc").expect("ahead");
        source.send_file_ahead(&header(0o644, 3, "b"), b"xyz").expect("ahead");
        let err = source.handle_input(b"\x01scp: /t/a: Permission denied\n").expect_err("fatal");
        assert_eq!(err, SourceError::RefusedAhead(b"scp: /t/a: Permission denied".to_vec()));
        assert!(err.to_string().starts_with("scp: /t/a: Permission denied; its data had been sent ahead"));
        assert_eq!(source.error_count(), 1);
        assert!(!source.wants_input());
        assert!(source.send(&times()).is_err());
    }

    #[test]
    fn only_an_idle_pipelined_source_sends_ahead() {
        let mut lockstep = ready();
        assert!(lockstep.send_file_ahead(&header(0o644, 1, "a"), b"a").is_err(), "lockstep");
        let mut source = pipelined_ready();
        assert!(source.send_file_ahead(&header(0o644, 2, "a"), b"a").is_err(), "size mismatch");
        assert!(source.send_file_ahead(&header(0o644, 2, "a"), b"C\n").is_err(), "acted on");
        source.send(&Message::File(header(0o644, 1, "g"))).expect("in order");
        assert!(source.send_file_ahead(&header(0o644, 1, "a"), b"a").is_err(), "a gate is due");
        let mut wire = Vec::new();
        source.poll_transmit(&mut wire);
        assert_eq!(wire, b"C0644 1 g\n", "nothing of the refused calls went out");
    }
}
