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

use std::fmt;

use crate::message::Message;
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
    Dir,
    EndDir,
    Status,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Reply(Awaiting),
    Idle,
    /// An accepted `C`: the driver is sending the payload.
    Payload,
    Failed,
}

/// The source side of one SCP session. See the module documentation.
#[derive(Debug)]
pub struct Source {
    state: State,
    depth: usize,
    transmit: Vec<u8>,
    event: Option<SourceEvent>,
    errors: u32,
}

impl Default for Source {
    fn default() -> Self {
        Source::new()
    }
}

impl Source {
    pub fn new() -> Source {
        Source {
            state: State::Reply(Awaiting::Ready),
            depth: 0,
            transmit: Vec::new(),
            event: None,
            errors: 0,
        }
    }

    /// Output: moves the bytes to send to the peer into `out`.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.transmit);
    }

    /// Output: the peer's answer to the last record, once it has arrived.
    pub fn poll_event(&mut self) -> Option<SourceEvent> {
        self.event.take()
    }

    /// True while a reply is awaited and not yet received.
    pub fn wants_input(&self) -> bool {
        self.event.is_none() && matches!(self.state, State::Reply(_))
    }

    /// Errors counted so far: `\1` replies received and errors reported.
    pub fn error_count(&self) -> u32 {
        self.errors
    }

    /// Directories entered and not yet closed with `E`.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Input: bytes from the peer; consumes at most one reply.
    pub fn handle_input(&mut self, data: &[u8]) -> Result<usize, SourceError> {
        let State::Reply(awaiting) = self.state else {
            return Ok(0);
        };
        if self.event.is_some() {
            return Ok(0);
        }
        let (reply, used) = match wire::decode_reply(data) {
            Ok(Some(item)) => item,
            Ok(None) => return Ok(0),
            Err(e) => return self.fail(SourceError::PeerMisbehaved(e)),
        };
        match reply {
            Reply::Ok => {
                self.state = match awaiting {
                    Awaiting::File => State::Payload,
                    Awaiting::Dir => {
                        self.depth += 1;
                        State::Idle
                    }
                    _ => State::Idle,
                };
                self.event = Some(if awaiting == Awaiting::Ready {
                    SourceEvent::Ready
                } else {
                    SourceEvent::Accepted
                });
            }
            Reply::Warning(text) => {
                self.errors += 1;
                self.state = State::Idle;
                self.event = Some(SourceEvent::Refused(text));
            }
            Reply::Fatal(text) if awaiting == Awaiting::Ready && !matches!(data.first(), Some(2)) => {
                return self.fail(SourceError::ShellMessage(text));
            }
            Reply::Fatal(text) => return self.fail(SourceError::PeerFatal(text)),
        }
        Ok(used)
    }

    /// Input: the peer closed the stream.
    pub fn handle_eof(&mut self) -> Result<(), SourceError> {
        match self.state {
            State::Reply(_) if self.event.is_none() => self.fail(SourceError::LostConnection),
            _ => Ok(()),
        }
    }

    /// Queues one record; its reply must arrive before the next call.
    pub fn send(&mut self, message: &Message) -> Result<(), SourceError> {
        if self.state != State::Idle || self.event.is_some() {
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
        self.state = State::Reply(awaiting);
        Ok(())
    }

    /// The payload of the accepted file has been written. `read_error` is the text
    /// of a read failure (the payload was zero-padded to its announced size), sent as
    /// `\1scp: <text>` in place of the `\0` status.
    pub fn payload_sent(&mut self, read_error: Option<&str>) -> Result<(), SourceError> {
        if self.state != State::Payload {
            return Err(SourceError::OutOfOrder("payload sent without an accepted file"));
        }
        match read_error {
            None => self.transmit.push(0),
            Some(text) => {
                self.errors += 1;
                wire::encode_error(text, &mut self.transmit);
            }
        }
        self.state = State::Reply(Awaiting::Status);
        Ok(())
    }

    /// Reports an entry that cannot be sent (`\1scp: <text>`); no reply is expected.
    pub fn report_error(&mut self, text: &str) -> Result<(), SourceError> {
        if self.state != State::Idle || self.event.is_some() {
            return Err(SourceError::OutOfOrder("error reported while a reply is awaited"));
        }
        self.errors += 1;
        wire::encode_error(text, &mut self.transmit);
        Ok(())
    }

    fn fail<T>(&mut self, error: SourceError) -> Result<T, SourceError> {
        self.errors += 1;
        self.state = State::Failed;
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
}
