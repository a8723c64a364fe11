// The checks behind every fuzz target, shared with the stable replay test.
//
// This file is the `checks` module of the `rscp-fuzz` crate (fuzz/src/lib.rs) and is
// also pulled into `crates/proto/tests/corpus.rs` with `include!`, so the seeds under
// `fuzz/seeds/<target>/` are replayed through exactly the same code by
// `cargo test` on stable. It must therefore use nothing but std and `rscp_proto`,
// contain no inner attributes or `//!` comments (include! cannot take them), and
// stay clippy-clean under the workspace lints (no `unwrap`).
//
// Each `pub fn <target>(data: &[u8])` panics when an invariant is broken.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use rscp_proto::command::{self, Direction, Flags};
use rscp_proto::filter::{self, NameFilter};
use rscp_proto::message::{FileHeader, Message, Mode, Times};
use rscp_proto::name::FileName;
use rscp_proto::operand::{self, Operand, OperandError, RemotePath};
use rscp_proto::sftp::{self, Reply as SftpReply};
use rscp_proto::sink::{Sink, SinkConfig, SinkError, SinkEvent};
use rscp_proto::source::{Settled, Source, SourceError, SourceEvent};
use rscp_proto::wire::{self, Incoming, Reply};

/// One fuzz target's check: panics when an invariant is broken.
pub type Check = fn(&[u8]);

/// The targets, by name: what the replay test iterates over.
pub const TARGETS: &[(&str, Check)] = &[
    ("wire_decode", wire_decode),
    ("sink_machine", sink_machine),
    ("source_machine", source_machine),
    ("source_pipelined", source_pipelined),
    ("command_parse", command_parse),
    ("name_filter", name_filter),
    ("quote_path", quote_path),
    ("operand_parse", operand_parse),
    ("sftp_reply", sftp_reply),
];

/// A stream of decisions taken from the input, cycling over its bits (all zero: yes).
#[derive(Debug)]
struct Bits {
    word: u32,
    next: u32,
}

impl Bits {
    fn new(word: u32) -> Bits {
        Bits { word, next: 0 }
    }

    /// True means "refuse" / "fail".
    fn take(&mut self) -> bool {
        let bit = self.word >> (self.next % 32) & 1 == 1;
        self.next = self.next.wrapping_add(1);
        bit
    }
}

// ---------------------------------------------------------------------------
// wire_decode

/// A `D` record is always encoded with size 0: compare directories that way.
fn normalized(message: &Message) -> Message {
    match message {
        Message::Dir(h) => Message::Dir(FileHeader { size: 0, ..h.clone() }),
        other => other.clone(),
    }
}

/// The reply bytes a peer would send for `reply` (there is no encoder in the crate:
/// `\0`, or the marker byte, the text and a line feed).
fn reply_bytes(reply: &Reply) -> Vec<u8> {
    let (marker, text) = match reply {
        Reply::Ok => return vec![0],
        Reply::Warning(text) => (1, text),
        Reply::Fatal(text) => (2, text),
        _ => return Vec::new(),
    };
    let mut out = vec![marker];
    out.extend_from_slice(text);
    out.push(b'\n');
    out
}

/// `decode_record` and `decode_reply` over arbitrary bytes: lengths stay in bounds,
/// and whatever decodes re-encodes to bytes that decode to the same value.
pub fn wire_decode(data: &[u8]) {
    let mut rest = data;
    while let Ok(Some((incoming, used))) = wire::decode_record(rest) {
        assert!(used > 0 && used <= rest.len() && used <= wire::MAX_LINE, "record length {used}");
        assert_eq!(rest[used - 1], b'\n', "a record ends with its line feed");
        if let Incoming::Record(message) = &incoming {
            let mut encoded = Vec::new();
            wire::encode(message, &mut encoded);
            // Not always shorter: `T1 2 3 \n` (empty atime usec, 0 for OpenSSH's strtol)
            // re-encodes with the 0. It must still fit a line.
            assert!(encoded.len() <= wire::MAX_LINE, "canonical form fits a line");
            match wire::decode_record(&encoded) {
                Ok(Some((Incoming::Record(again), n))) => {
                    assert_eq!(n, encoded.len());
                    assert_eq!(again, normalized(message), "record round trip");
                    let mut twice = Vec::new();
                    wire::encode(&again, &mut twice);
                    assert_eq!(twice, encoded, "encoding is canonical");
                }
                other => panic!("re-encoded {message:?} decodes as {other:?}"),
            }
        }
        rest = &rest[used..];
    }

    let mut rest = data;
    while let Ok(Some((reply, used))) = wire::decode_reply(rest) {
        assert!(used > 0 && used <= rest.len() && used <= wire::MAX_LINE, "reply length {used}");
        let encoded = reply_bytes(&reply);
        // A line not starting with \0 \1 \2 is a Fatal holding its first byte: with the
        // \2 marker added it may no longer fit a line.
        if encoded.len() <= wire::MAX_LINE {
            assert_eq!(wire::decode_reply(&encoded), Ok(Some((reply, encoded.len()))), "reply round trip");
        }
        rest = &rest[used..];
    }

    // Our own error replies always fit one line and decode as a warning.
    let text = String::from_utf8_lossy(data);
    let mut out = Vec::new();
    wire::encode_error(&text, &mut out);
    assert!(out.len() <= wire::MAX_LINE, "error reply of {} bytes", out.len());
    match wire::decode_reply(&out) {
        Ok(Some((Reply::Warning(t), n))) => {
            assert_eq!(n, out.len());
            assert!(t.starts_with(b"scp: "));
        }
        other => panic!("encode_error gave {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// sink_machine

/// Length of the sink_machine header: config, two decision bytes, chunk size.
pub const SINK_HEADER: usize = 4;

/// Takes what the sink queued, checks it is only `\0` / `\1...\n` replies, and counts
/// them; `only_ok`: every reply must be `\0` (a sink with reply credit).
fn take_replies_of(sink: &mut Sink, only_ok: bool) -> usize {
    let mut out = Vec::new();
    sink.poll_transmit(&mut out);
    let mut rest = &out[..];
    let mut count = 0;
    while !rest.is_empty() {
        match wire::decode_reply(rest) {
            Ok(Some((Reply::Warning(_), _))) if only_ok => panic!("a refusal sent despite credit: {out:?}"),
            Ok(Some((Reply::Ok | Reply::Warning(_), used))) => {
                count += 1;
                rest = &rest[used..];
            }
            other => panic!("sink sent {other:?} in {out:?}"),
        }
    }
    count
}

/// Arbitrary peer bytes into a [`Sink`], with a driver that accepts or refuses files,
/// directories and final statuses by the header's bits and skips payload bytes.
///
/// Input: `[config, bits_lo, bits_hi, chunk, peer bytes...]`. `config`: bit 0 `-r`,
/// bit 1 a name filter `dir/{a,b}*.txt`, bits 2-3 the depth limit (0: default), bit
/// 4 reply credit (1, or 2 with bit 5: refused entries' data comes and is dropped). Bits
/// set in the 16-bit word refuse (cycling). `chunk` > 0 offers the peer bytes that
/// many at a time (growing), to exercise partial lines.
pub fn sink_machine(data: &[u8]) {
    let mut head = [0u8; SINK_HEADER];
    let n = data.len().min(SINK_HEADER);
    head[..n].copy_from_slice(&data[..n]);
    let peer = &data[n..];

    let mut config = SinkConfig::new(head[0] & 1 != 0);
    if head[0] & 2 != 0 {
        config.filter = Some(NameFilter::from_request(b"dir/{a,b}*.txt").expect("fixed pattern"));
    }
    let limit = usize::from(head[0] >> 2 & 3);
    if limit != 0 {
        config.max_depth = limit;
    }
    let credit = if head[0] & 16 != 0 { 1 + usize::from(head[0] >> 5 & 1) } else { 0 };
    config.reply_credit = credit;
    let max_depth = config.max_depth;
    let mut bits = Bits::new(u32::from(u16::from_le_bytes([head[1], head[2]])) * 0x1_0001);
    let chunk = usize::from(head[3]);

    let mut sink = Sink::new(config);
    let take_replies = |sink: &mut Sink| take_replies_of(sink, credit > 0);
    assert_eq!(take_replies(&mut sink), 1 + credit, "the sink speaks first with one \\0, and its credit");
    // With credit: directories open inside a refused one (its own level included),
    // whose records the sink answers itself; and a dropped file's status to come.
    let mut skip_depth = 0usize;
    let mut skipping_status = false;
    let mut pos = 0usize;
    let mut depth = 0usize;
    // An accepted file whose status byte is still to come / being answered.
    let mut awaiting_status = false;
    let mut files_opened = 0u32;
    let mut final_replies = 0u32;
    let mut short_payload = false;

    for _round in 0..data.len() * 2 + 16 {
        while let Some(event) = sink.poll_event() {
            match event {
                SinkEvent::EnterDir { .. } => {
                    assert!(depth < max_depth, "directory beyond the depth limit");
                    let refuse = bits.take();
                    sink.dir_entered(if refuse { Err("refused".into()) } else { Ok(()) });
                    assert_eq!(take_replies(&mut sink), 1, "one reply per D");
                    if !refuse {
                        depth += 1;
                    } else if credit > 0 {
                        skip_depth = 1;
                    }
                }
                SinkEvent::File { header, .. } => {
                    assert!(!awaiting_status, "a file inside a file");
                    let refuse = bits.take();
                    sink.file_opened(if refuse { Err("refused".into()) } else { Ok(()) });
                    assert_eq!(take_replies(&mut sink), 1, "one reply per C");
                    if refuse && credit > 0 {
                        assert!(
                            matches!(sink.poll_event(), Some(SinkEvent::SkipPayload { size }) if size == header.size),
                            "a refused file's payload is dropped"
                        );
                        skip_payload(
                            &mut sink,
                            header.size,
                            peer,
                            &mut pos,
                            &mut short_payload,
                            &mut skipping_status,
                        );
                    }
                    if !refuse {
                        files_opened += 1;
                        let left = (peer.len() - pos) as u64;
                        if header.size > left {
                            pos = peer.len();
                            short_payload = true;
                        } else {
                            pos += header.size as usize;
                            sink.payload_received();
                            awaiting_status = true;
                        }
                    }
                }
                SinkEvent::FileStatus { .. } => {
                    assert!(awaiting_status, "status without an accepted file");
                    let fail = bits.take();
                    sink.file_done(if fail { Err("write failed".into()) } else { Ok(()) });
                    assert_eq!(take_replies(&mut sink), 1, "exactly one final reply per file");
                    final_replies += 1;
                    awaiting_status = false;
                }
                SinkEvent::LeaveDir => {
                    assert!(depth > 0, "E climbed above the target");
                    depth -= 1;
                }
                SinkEvent::SkipPayload { size } => {
                    assert!(skip_depth > 0, "dropped payload outside a refused directory");
                    skip_payload(&mut sink, size, peer, &mut pos, &mut short_payload, &mut skipping_status);
                }
                SinkEvent::Warning(_) => {}
                SinkEvent::Finished => assert!(sink.is_finished()),
                _ => {}
            }
            assert_eq!(sink.depth(), depth, "sink depth follows the directories entered");
            assert_eq!(take_replies(&mut sink), 0, "no reply without a record");
        }
        assert!(final_replies <= files_opened, "more final replies than files");
        if sink.is_finished() {
            assert_eq!(depth, 0);
            return;
        }
        if short_payload {
            assert_eq!(sink.handle_eof(&[]), Err(SinkError::LostConnection), "eof inside a payload");
            assert_eq!(take_replies(&mut sink), 0);
            return;
        }
        if !sink.wants_input() {
            return;
        }
        let rest = &peer[pos..];
        let mut offer = if chunk == 0 { rest.len() } else { chunk.min(rest.len()) };
        let status = awaiting_status;
        let dropped_status = skipping_status;
        loop {
            match sink.handle_input(&rest[..offer]) {
                Ok(0) if offer < rest.len() => offer = (offer * 2 + 1).min(rest.len()),
                Ok(0) => {
                    let result = sink.handle_eof(rest);
                    let clean = depth == 0 && skip_depth == 0 && !status && !dropped_status;
                    if rest.is_empty() && clean && result.is_ok() {
                        assert_eq!(sink.poll_event(), Some(SinkEvent::Finished));
                        assert!(sink.is_finished());
                    } else if result.is_ok() {
                        panic!("eof accepted with {} bytes left at depth {depth}", rest.len());
                    }
                    assert_eq!(take_replies(&mut sink), 0, "no reply at eof");
                    return;
                }
                Ok(used) => {
                    assert!(used <= offer, "consumed {used} of {offer}");
                    let replies = take_replies(&mut sink);
                    match rest[0] {
                        _ if status => assert_eq!(replies, 0, "status byte is answered by file_done"),
                        _ if dropped_status => {
                            assert_eq!(replies, 1, "a dropped file's status is answered at once");
                            skipping_status = false;
                        }
                        b'\x01' => assert_eq!(replies, 0, "a warning is not answered"),
                        b'C' | b'D' | b'T' | b'E' if skip_depth > 0 => {
                            assert_eq!(replies, 1, "records in a refused directory are answered at once");
                            match rest[0] {
                                b'D' => skip_depth += 1,
                                b'E' => skip_depth -= 1,
                                _ => {}
                            }
                        }
                        b'T' | b'E' => assert_eq!(replies, 1, "one reply per T or E"),
                        _ => assert_eq!(replies, 0, "C/D answered by the driver, \\1 not at all"),
                    }
                    pos += used;
                    break;
                }
                Err(_) => {
                    // A fatal error is told to the source, credit or not: the session ends.
                    assert!(take_replies_of(&mut sink, false) <= 1, "at most one error reply");
                    assert!(!sink.wants_input() || sink.handle_input(rest) == Ok(0));
                    return;
                }
            }
        }
    }
    panic!("sink made no progress");
}

/// Drops a refused file's payload (reply credit), as the driver must.
fn skip_payload(
    sink: &mut Sink,
    size: u64,
    peer: &[u8],
    pos: &mut usize,
    short_payload: &mut bool,
    skipping_status: &mut bool,
) {
    let left = (peer.len() - *pos) as u64;
    if size > left {
        *pos = peer.len();
        *short_payload = true;
    } else {
        *pos += size as usize;
        sink.payload_received();
        *skipping_status = true;
    }
}

// ---------------------------------------------------------------------------
// source_machine

fn header(mode: u32, size: u64, name: &[u8]) -> FileHeader {
    FileHeader {
        mode: Mode::new(mode).expect("test mode"),
        size,
        name: FileName::new(name).expect("test name"),
    }
}

/// The tree the source sends: times, nested directories, empty and non-empty files.
fn source_script() -> Vec<Message> {
    let times = Message::Times(Times::from_secs(1_700_000_000, 1_800_000_000));
    vec![
        times.clone(),
        Message::Dir(header(0o755, 0, b"tree")),
        times.clone(),
        Message::File(header(0o600, 4, b"f1")),
        Message::Dir(header(0o755, 0, b"sub")),
        Message::File(header(0o644, 0, b"empty")),
        times,
        Message::File(header(0o4755, 3, b"f2")),
        Message::EndDir,
        Message::EndDir,
        Message::File(header(0o644, 6, b"a.txt")),
    ]
}

/// Where the script goes on after a refused directory whose contents start at
/// `i`: past its subtree, up to and including the matching `E`.
fn after_subtree(script: &[Message], mut i: usize) -> usize {
    let mut nested = 1;
    while nested > 0 {
        match script.get(i) {
            Some(Message::Dir(_)) => nested += 1,
            Some(Message::EndDir) => nested -= 1,
            Some(_) => {}
            None => break,
        }
        i += 1;
    }
    i
}

/// Feeds replies until the source has an answer; `None` when the session ended
/// (error or eof), after checking it ended the way it must.
fn await_answer(source: &mut Source, replies: &[u8], pos: &mut usize) -> Option<SourceEvent> {
    loop {
        if let Some(event) = source.poll_event() {
            return Some(event);
        }
        assert!(source.wants_input(), "no answer and no input wanted");
        let rest = &replies[*pos..];
        match source.handle_input(rest) {
            Ok(0) => {
                assert_eq!(source.handle_eof(), Err(SourceError::LostConnection));
                return None;
            }
            Ok(used) => {
                assert!(used <= rest.len());
                *pos += used;
            }
            Err(SourceError::OutOfOrder(what)) => panic!("peer bytes caused OutOfOrder: {what}"),
            Err(_) => return None,
        }
    }
}

/// Takes what the source queued and checks it decodes as exactly `expected`.
fn expect_sent(source: &mut Source, expected: &Message) {
    let mut out = Vec::new();
    source.poll_transmit(&mut out);
    match wire::decode_record(&out) {
        Ok(Some((Incoming::Record(m), n))) => {
            assert_eq!(n, out.len(), "one record at a time");
            assert_eq!(m, normalized(expected));
        }
        other => panic!("source sent {other:?} for {expected:?}"),
    }
}

/// Arbitrary replies to a [`Source`] sending [`source_script`].
///
/// Input: `[decisions, replies...]`: bit i of `decisions` (cycling) makes the i-th
/// payload a read error, and bit 7 reports an unreadable entry before each record.
pub fn source_machine(data: &[u8]) {
    let (flags, replies) = match data.split_first() {
        Some((&f, r)) => (f, r),
        None => (0, data),
    };
    let mut bits = Bits::new(u32::from(flags & 0x7f) * 0x0204_0810);
    let report = flags & 0x80 != 0;
    let mut source = Source::new();
    let mut pos = 0usize;
    let mut errors = 0u32;
    let mut depth = 0usize;
    let mut out = Vec::new();
    source.poll_transmit(&mut out);
    assert!(out.is_empty(), "nothing is sent before the sink's first reply");

    match await_answer(&mut source, replies, &mut pos) {
        Some(SourceEvent::Ready) => {}
        Some(SourceEvent::Refused(_)) | None => return,
        Some(other) => panic!("first answer {other:?}"),
    }
    let script = source_script();
    let mut i = 0;
    while let Some(message) = script.get(i) {
        i += 1;
        if report {
            source.report_error("cannot read").expect("report between records");
            errors += 1;
            let mut out = Vec::new();
            source.poll_transmit(&mut out);
            assert!(matches!(wire::decode_reply(&out), Ok(Some((Reply::Warning(_), n))) if n == out.len()));
        }
        source.send(message).expect("records sent in order");
        expect_sent(&mut source, message);
        if matches!(message, Message::EndDir) {
            depth -= 1;
        }
        let Some(answer) = await_answer(&mut source, replies, &mut pos) else {
            return;
        };
        match (message, answer) {
            (_, SourceEvent::Ready) => panic!("Ready twice"),
            (Message::Dir(_), SourceEvent::Accepted) => depth += 1,
            (Message::Dir(_), SourceEvent::Refused(_)) => {
                errors += 1;
                i = after_subtree(&script, i);
            }
            (Message::File(_), SourceEvent::Accepted) => {
                let read_error = bits.take();
                source
                    .payload_sent(read_error.then_some("read error"))
                    .expect("payload after an accepted file");
                errors += u32::from(read_error);
                let mut status = Vec::new();
                source.poll_transmit(&mut status);
                if read_error {
                    assert!(
                        matches!(wire::decode_reply(&status), Ok(Some((Reply::Warning(_), n))) if n == status.len())
                    );
                } else {
                    assert_eq!(status, [0]);
                }
                match await_answer(&mut source, replies, &mut pos) {
                    Some(SourceEvent::Accepted) => {}
                    Some(SourceEvent::Refused(_)) => errors += 1,
                    Some(other) => panic!("final reply {other:?}"),
                    None => return,
                }
            }
            (_, SourceEvent::Refused(_)) => errors += 1,
            (_, SourceEvent::Accepted) => {}
            (_, other) => panic!("answer {other:?}"),
        }
        assert_eq!(source.depth(), depth, "source depth follows accepted directories");
        assert_eq!(source.error_count(), errors, "errors counted once each");
    }
    assert_eq!(depth, 0, "the script closes every directory it opened");
    assert!(!source.wants_input());
    assert_eq!(source.handle_eof(), Ok(()));
}

// ---------------------------------------------------------------------------
// source_pipelined

/// An answer the pipelined source was not waiting for when its record left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unwaited {
    /// The `C` of a file sent ahead: accepted silently, refused fatally.
    AheadFile,
    Settles(Settled),
}

/// The replies a pipelined [`Source`] reads, delivered `chunk` bytes at a time
/// as a connection would (0: all at once).
struct Replies<'a> {
    bytes: &'a [u8],
    pos: usize,
    delivered: usize,
    chunk: usize,
}

impl Replies<'_> {
    /// One `handle_input` call over what has arrived; more arrives when it
    /// takes nothing. `false` when the session ended (peer error or end of stream).
    fn feed(&mut self, source: &mut Source) -> bool {
        loop {
            let upto = self.delivered.clamp(self.pos, self.bytes.len());
            let rest = &self.bytes[self.pos..upto];
            match source.handle_input(rest) {
                Ok(0) if upto == self.bytes.len() => {
                    assert!(source.wants_input(), "fed while nothing was due");
                    assert_eq!(source.handle_eof(), Err(SourceError::LostConnection));
                    assert!(!source.wants_input(), "a failed source wants nothing more");
                    return false;
                }
                Ok(0) => self.delivered = upto + if self.chunk == 0 { self.bytes.len() } else { self.chunk },
                Ok(used) => {
                    assert!(used <= rest.len());
                    self.pos += used;
                    return true;
                }
                Err(SourceError::OutOfOrder(what)) => panic!("peer bytes caused OutOfOrder: {what}"),
                Err(_) => {
                    assert!(!source.wants_input(), "a failed source wants nothing more");
                    assert_eq!(source.handle_input(b"\0"), Ok(0), "a failed source reads nothing more");
                    return false;
                }
            }
        }
    }

    /// Feeds until the answer that decides what is sent next (settling earlier
    /// records on the way); `None` when the session ended.
    fn await_gate(
        &mut self,
        source: &mut Source,
        unwaited: &mut std::collections::VecDeque<Unwaited>,
        errors: &mut u32,
    ) -> Option<SourceEvent> {
        loop {
            if let Some(event) = take_events(source, unwaited, errors) {
                return Some(event);
            }
            if !self.feed(source) {
                return None;
            }
        }
    }

    /// Feeds one answer that settles an earlier record; `false` when the session ended.
    fn settle_one(
        &mut self,
        source: &mut Source,
        unwaited: &mut std::collections::VecDeque<Unwaited>,
        errors: &mut u32,
    ) -> bool {
        if !self.feed(source) {
            return false;
        }
        assert_eq!(take_events(source, unwaited, errors), None, "a gate answer nobody waits for");
        true
    }
}

/// Takes the source's events: settlements must come in the order the records
/// left, each counted once if refused. Returns the gate answer if one came.
fn take_events(
    source: &mut Source,
    unwaited: &mut std::collections::VecDeque<Unwaited>,
    errors: &mut u32,
) -> Option<SourceEvent> {
    while let Some(event) = source.poll_event() {
        match event {
            SourceEvent::Settled { what, refused } => {
                while unwaited.front() == Some(&Unwaited::AheadFile) {
                    unwaited.pop_front();
                }
                assert_eq!(unwaited.pop_front(), Some(Unwaited::Settles(what)), "settled out of order");
                *errors += u32::from(refused.is_some());
            }
            gate => {
                assert!(
                    unwaited.iter().all(|u| *u == Unwaited::AheadFile),
                    "a gate answered before earlier records settled: {unwaited:?}"
                );
                unwaited.clear();
                *errors += u32::from(matches!(gate, SourceEvent::Refused(_)));
                return Some(gate);
            }
        }
    }
    None
}

/// Arbitrary replies to a pipelined [`Source`] sending [`source_script`], as the
/// engine drives it on uploads: `T` and `E` not waited for, small files sent
/// ahead (`C`, data and status at once) when their data may go ahead, answers
/// that settle earlier records taken between sends.
///
/// Input: `[decisions, chunk, replies...]`: bit i of `decisions` (cycling)
/// makes the i-th file's data look like a record (so it may not go ahead), bit
/// i+1 sends it in lockstep anyway, bit i+2 makes a lockstep payload a read
/// error; `chunk` is how many reply bytes arrive at a time (0: all).
pub fn source_pipelined(data: &[u8]) {
    let (decisions, chunk, replies) = match data {
        [d, c, rest @ ..] => (*d, usize::from(*c), rest),
        _ => return,
    };
    let mut bits = Bits::new(u32::from(decisions) * 0x0101_0101);
    let delivered = if chunk == 0 { replies.len() } else { chunk };
    let mut replies = Replies { bytes: replies, pos: 0, delivered, chunk };
    let mut source = Source::pipelined();
    let mut unwaited = std::collections::VecDeque::new();
    let mut errors = 0u32;
    let mut depth = 0usize;

    let Some(first) = replies.await_gate(&mut source, &mut unwaited, &mut errors) else {
        return;
    };
    if first != SourceEvent::Ready {
        assert!(matches!(first, SourceEvent::Refused(_)), "first answer {first:?}");
        return;
    }
    let script = source_script();
    let mut i = 0;
    while let Some(message) = script.get(i) {
        i += 1;
        // What the engine does between sends: take answers already there.
        while source.next_answer_settles() && replies.pos < replies.delivered.min(replies.bytes.len()) {
            if !replies.settle_one(&mut source, &mut unwaited, &mut errors) {
                return;
            }
        }
        let gate = match message {
            Message::Times(_) | Message::EndDir => {
                source.send(message).expect("T and E go out without waiting");
                expect_sent(&mut source, message);
                let what = if matches!(message, Message::EndDir) {
                    depth -= 1;
                    Settled::EndDir
                } else {
                    Settled::Times
                };
                unwaited.push_back(Unwaited::Settles(what));
                continue;
            }
            Message::File(header) => {
                let looks_like_a_record = bits.take();
                let lockstep = bits.take();
                let size = usize::try_from(header.size).unwrap_or(0);
                let mut payload = vec![b'x'; size];
                if looks_like_a_record && size > 0 {
                    payload[0] = b'C';
                }
                if !lockstep && Source::can_send_ahead(&payload) {
                    source.send_file_ahead(header, &payload).expect("an idle source sends ahead");
                    let mut out = Vec::new();
                    source.poll_transmit(&mut out);
                    match wire::decode_record(&out) {
                        Ok(Some((Incoming::Record(m), n))) => {
                            assert_eq!(m, normalized(message));
                            assert_eq!(
                                &out[n..],
                                [&payload[..], b"\0"].concat(),
                                "data and status follow the C"
                            );
                        }
                        other => panic!("sent ahead {other:?}"),
                    }
                    unwaited.push_back(Unwaited::AheadFile);
                    unwaited.push_back(Unwaited::Settles(Settled::FileStatus));
                    continue;
                }
                if !lockstep {
                    assert!(looks_like_a_record && size > 0, "only record-like data waits");
                    assert!(
                        source.send_file_ahead(header, &payload).is_err(),
                        "data that may not go ahead was taken"
                    );
                    let mut out = Vec::new();
                    source.poll_transmit(&mut out);
                    assert!(out.is_empty(), "a refused send queued {out:?}");
                }
                source.send(message).expect("a C after the gates were answered");
                expect_sent(&mut source, message);
                Some(payload)
            }
            Message::Dir(_) => {
                source.send(message).expect("a D after the gates were answered");
                expect_sent(&mut source, message);
                None
            }
            other => panic!("not in the script: {other:?}"),
        };
        assert!(source.awaits_gate());
        let Some(answer) = replies.await_gate(&mut source, &mut unwaited, &mut errors) else {
            return;
        };
        match (gate, answer) {
            (Some(_), SourceEvent::Accepted) => {
                let read_error = bits.take();
                source
                    .payload_sent(read_error.then_some("read error"))
                    .expect("payload after an accepted file");
                errors += u32::from(read_error);
                let mut status = Vec::new();
                source.poll_transmit(&mut status);
                assert_eq!(status.first() == Some(&0), !read_error);
                unwaited.push_back(Unwaited::Settles(Settled::FileStatus));
            }
            (None, SourceEvent::Accepted) => depth += 1,
            (None, SourceEvent::Refused(_)) => {
                i = after_subtree(&script, i);
            }
            (Some(_), SourceEvent::Refused(_)) => {}
            (_, other) => panic!("gate answer {other:?}"),
        }
        assert_eq!(source.depth(), depth, "source depth follows accepted directories");
        assert_eq!(source.error_count(), errors, "errors counted once each");
    }
    // The end of the upload: every answer still due.
    while source.wants_input() {
        if !replies.settle_one(&mut source, &mut unwaited, &mut errors) {
            return;
        }
    }
    assert!(unwaited.is_empty(), "answers never settled: {unwaited:?}");
    assert_eq!(depth, 0, "the script closes every directory it opened");
    assert_eq!(source.error_count(), errors, "errors counted once each");
    assert_eq!(source.handle_eof(), Ok(()));
}

// ---------------------------------------------------------------------------
// command_parse and quote_path

/// `command::parse` on arbitrary bytes; when it succeeds, `build` of what it found
/// parses back to the same direction, flags and paths.
pub fn command_parse(data: &[u8]) {
    let Ok(parsed) = command::parse(data) else {
        if let Err(e) = command::parse(data) {
            let _ = e.to_string();
        }
        return;
    };
    assert!(!parsed.paths.is_empty());
    assert!(data.len() <= command::MAX_LINE);
    for path in &parsed.paths {
        assert!(!path.literal.contains(&0), "NUL in a parsed path");
        if let Some(user) = &path.tilde {
            assert!(path.literal.is_empty() || path.literal.starts_with(b"/"));
            assert!(!user.contains(&b'/'));
        }
    }
    let literals: Vec<&[u8]> = parsed.paths.iter().map(|p| &p.literal[..]).collect();
    let line = command::build("scp", parsed.direction, &parsed.flags, &literals);
    // Quoting can make the line longer than the one parsed (`'$$'` becomes `\$\$`),
    // and `build` adds `--` before a path starting with `-`: past either limit,
    // parse must refuse the line as too long or as too many words, nothing else.
    let dashdash = literals.iter().any(|p| matches!(p, [b'-', ..] | [b'\\', b'-', ..]));
    let options =
        [parsed.flags.verbose, parsed.flags.recursive, parsed.flags.preserve, parsed.flags.target_dir];
    let words = 2 + options.iter().filter(|&&on| on).count() + usize::from(dashdash) + literals.len();
    if line.len() > command::MAX_LINE || words > command::MAX_WORDS {
        let refused = command::parse(&line);
        assert!(
            matches!(refused, Err(command::CommandError::TooLong | command::CommandError::TooManyPaths)),
            "{} bytes, {words} words: {refused:?}",
            line.len()
        );
        return;
    }
    let again = command::parse(&line).unwrap_or_else(|e| panic!("build output {line:?} refused: {e}"));
    assert_eq!(again.direction, parsed.direction);
    assert_eq!(again.flags, parsed.flags);
    assert_eq!(again.paths.len(), parsed.paths.len());
    for (before, after) in parsed.paths.iter().zip(&again.paths) {
        let plain = before.tilde.is_none()
            && !before.literal.is_empty()
            && !before.literal.contains(&b'\\')
            && !before.literal.starts_with(b"~");
        if plain {
            assert_eq!(after.literal, before.literal, "literal survives build+parse");
            assert_eq!(after.tilde, None);
            let globbed = before.literal.iter().any(|b| matches!(b, b'*' | b'?' | b'['));
            assert_eq!(after.pattern.as_deref(), globbed.then_some(&before.literal[..]));
        }
    }
}

/// `~user` as both `quote_path` and `parse` accept it.
fn tilde_user_ok(user: &[u8]) -> bool {
    user.is_empty()
        || (user.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            && !user.starts_with(b"-")
            && !user.iter().all(u8::is_ascii_digit))
}

/// `quote_path` then `parse` (through `build`) gives back the path: the literal with
/// the user's backslash escapes removed, `~user` split off, globs as a pattern.
pub fn quote_path(data: &[u8]) {
    if data.contains(&0) {
        // Callers must not pass NUL (documented); it cannot reach a shell.
        return;
    }
    let line = command::build("scp", Direction::Sink, &Flags::default(), &[data]);
    let parsed = command::parse(&line).unwrap_or_else(|e| panic!("quoted {data:?} as {line:?}: {e}"));
    assert_eq!(parsed.direction, Direction::Sink);
    assert_eq!(parsed.paths.len(), 1);
    let got = &parsed.paths[0];
    if data.is_empty() {
        assert_eq!(got.literal, b".");
        return;
    }
    // The model: a leading ~user, then bytes with the user's escapes applied.
    let mut rest = data;
    let mut tilde = None;
    if let Some(after) = data.strip_prefix(b"~") {
        let end = after.iter().position(|&b| b == b'/').unwrap_or(after.len());
        if tilde_user_ok(&after[..end]) {
            tilde = Some(after[..end].to_vec());
            rest = &after[end..];
        }
    }
    let mut chars = Vec::new(); // (byte, escaped by the user)
    let mut i = 0;
    while let Some(&b) = rest.get(i) {
        i += 1;
        if b == b'\\' {
            match rest.get(i) {
                Some(&next) => {
                    chars.push((next, true));
                    i += 1;
                }
                None => chars.push((b'\\', true)),
            }
        } else {
            chars.push((b, false));
        }
    }
    let literal: Vec<u8> = chars.iter().map(|c| c.0).collect();
    let globbed = chars.iter().any(|&(b, q)| !q && matches!(b, b'*' | b'?' | b'['));
    let pattern = globbed.then(|| {
        let mut p = Vec::new();
        for &(b, q) in &chars {
            if q && matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
                p.push(b'\\');
            }
            p.push(b);
        }
        p
    });
    assert_eq!(got.tilde, tilde, "tilde of {data:?} (line {line:?})");
    assert_eq!(got.literal, literal, "literal of {data:?} (line {line:?})");
    assert_eq!(got.pattern, pattern, "pattern of {data:?} (line {line:?})");
}

// ---------------------------------------------------------------------------
// name_filter

/// `NameFilter::from_request` + `matches`, `expand_braces` and `fnmatch` on an
/// arbitrary pattern and name (input: `pattern NUL name`).
pub fn name_filter(data: &[u8]) {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let pattern = &data[..split];
    let name = data.get(split + 1..).unwrap_or_default();

    if let Ok(expanded) = filter::expand_braces(pattern) {
        assert!(expanded.len() <= filter::MAX_EXPANSIONS, "{} expansions", expanded.len());
        let bytes: usize = expanded.iter().map(Vec::len).sum();
        assert!(bytes <= filter::MAX_EXPANDED_BYTES.max(pattern.len()), "{bytes} expanded bytes");
        let plain = !pattern.iter().any(|b| b"{}[]\\".contains(b));
        if plain {
            assert_eq!(expanded, [pattern.to_vec()], "no braces: the pattern itself");
        }
    }
    let _ = filter::fnmatch(pattern, name);
    if let Ok(names) = NameFilter::from_request(pattern) {
        assert!(names.patterns().len() <= filter::MAX_EXPANSIONS);
        for (i, p) in names.patterns().iter().enumerate() {
            assert!(!p.is_empty() && !p.contains(&b'/'), "pattern {p:?}");
            // Each `matches` tries every pattern: check a few, not all (quadratic).
            if i < 16 {
                assert!(names.matches(p), "a pattern matches itself byte for byte");
            }
        }
        let _ = names.matches(name);
        let simple = !pattern.iter().any(|b| b"{}[]*?\\/".contains(b));
        if simple && !pattern.is_empty() {
            assert!(names.matches(pattern), "a plain request accepts its own name");
            assert_eq!(names.matches(name), name == pattern, "a plain request accepts only its name");
            assert_eq!(filter::fnmatch(pattern, name), name == pattern);
        }
    }
}

// ---------------------------------------------------------------------------
// operand_parse

/// OpenSSH's scp `okname()` and ssh `valid_ruser()`, as the parser must have
/// applied them to every user it returns.
fn user_ok(user: &str) -> bool {
    !user.is_empty()
        && !user.starts_with('-')
        && !user.ends_with('\\')
        && user.bytes().all(|b| b.is_ascii_graphic() && !b"'\"`#;&<>|(){}".contains(&b))
}

/// OpenSSH's ssh `valid_hostname()`, as the parser must have applied it to every
/// host it returns (CVE-2023-51385: hosts reach `ProxyCommand` through a shell).
fn host_ok(host: &str) -> bool {
    !host.starts_with('-')
        && !host.bytes().any(|b| b.is_ascii_control() || b == b' ' || b"'\"`$\\;&<>|(){}".contains(&b))
}

/// True if every `%` in `text` starts a `%XX` escape with two hex digits (OpenSSH's
/// `urldecode()` refuses anything else).
fn escapes_well_formed(text: &[u8]) -> bool {
    text.iter().enumerate().all(|(i, &b)| {
        b != b'%' || text.get(i + 1..i + 3).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    })
}

/// `%XX` for the bytes of `text` in `special` (and `%` itself).
fn url_encode(text: &[u8], special: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for &b in text {
        if b == b'%' || special.contains(&b) {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        } else {
            out.push(b);
        }
    }
    out
}

/// `[user@][host]:path`: always in brackets, which hide whatever the host holds.
fn host_path_form(remote: &RemotePath) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(user) = &remote.user {
        out.extend_from_slice(user.as_bytes());
        out.push(b'@');
    }
    out.extend_from_slice(format!("[{}]:", remote.host).as_bytes());
    out.extend_from_slice(&remote.path);
    out
}

/// `scp://[user@]host[:port]/path`, user and path `%`-escaped where needed.
fn uri_form(remote: &RemotePath) -> Vec<u8> {
    let mut out = b"scp://".to_vec();
    if let Some(user) = &remote.user {
        out.extend_from_slice(&url_encode(user.as_bytes(), b";/@"));
        out.push(b'@');
    }
    if remote.host.contains(':') || remote.host.starts_with('[') {
        out.extend_from_slice(format!("[{}]", remote.host).as_bytes());
    } else {
        out.extend_from_slice(remote.host.as_bytes());
    }
    if let Some(port) = remote.port {
        out.extend_from_slice(format!(":{port}").as_bytes());
    }
    out.push(b'/');
    out.extend_from_slice(&url_encode(&remote.path, b""));
    out
}

/// Parses `bytes`, which the caller knows to be a remote operand.
fn parse_remote(bytes: &[u8]) -> Result<RemotePath, OperandError> {
    match operand::parse(OsStr::from_bytes(bytes)) {
        Ok(Operand::Remote(remote)) => Ok(remote),
        Ok(Operand::Local(local)) => panic!("{bytes:?} parsed as the local {local:?}"),
        Err(e) => Err(e),
    }
}

/// `operand::parse` (and `host_colon`, `is_remote`) on an arbitrary command-line
/// argument (up to a NUL): local exactly when `is_remote` says so, and then unchanged;
/// no `/` before the host colon; every accepted user and host passes OpenSSH's
/// checks; `%` escapes are two hex digits; a
/// `host:path` operand is a pure split of its bytes; and every remote operand,
/// written back as `[user@]host:path` or as an `scp://` URI, parses to itself.
pub fn operand_parse(data: &[u8]) {
    // A command-line argument is a C string: it ends at the first NUL.
    let arg = &data[..data.iter().position(|&b| b == 0).unwrap_or(data.len())];
    let colon = operand::host_colon(arg);
    if let Some(i) = colon {
        assert!(i > 0 && arg[i] == b':', "colon {i} in {arg:?}");
        assert!(!arg[..i].contains(&b'/'), "a / before the host colon of {arg:?}");
    }
    let uri = arg.starts_with(b"scp://");
    assert_eq!(operand::is_remote(arg), uri || colon.is_some());
    let parsed = match operand::parse(OsStr::from_bytes(arg)) {
        Ok(Operand::Local(local)) => {
            assert!(!operand::is_remote(arg), "{arg:?} is remote but parsed as local");
            assert_eq!(local.as_bytes(), arg, "a local operand is kept as it is");
            return;
        }
        Ok(Operand::Remote(remote)) => remote,
        Err(e) => {
            assert!(operand::is_remote(arg), "{arg:?} is local but refused: {e}");
            let text = e.to_string();
            match e {
                OperandError::InvalidUser(_) => assert!(text.ends_with(": invalid user name")),
                OperandError::InvalidHost(_) => {
                    assert_eq!(text, "hostname contains invalid characters")
                }
                OperandError::InvalidUri(_) => {
                    assert!(uri, "{arg:?}: invalid uri without scp://");
                    assert!(text.ends_with(": invalid uri"));
                }
            }
            return;
        }
    };
    if let Some(user) = &parsed.user {
        assert!(user_ok(user), "user {user:?} from {arg:?} passes okname and valid_ruser");
    }
    assert!(host_ok(&parsed.host), "host {:?} from {arg:?} passes valid_hostname", parsed.host);
    assert_ne!(parsed.port, Some(0), "port 0 from {arg:?}");
    let utf8 = std::str::from_utf8(arg).is_ok();
    if uri {
        assert!(!parsed.host.is_empty(), "empty host from {arg:?}");
        let rest = &arg[b"scp://".len()..];
        let authority_end = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
        let raw_path = rest.get(authority_end + 1..).unwrap_or_default();
        assert!(escapes_well_formed(raw_path), "bad %-escape accepted in the path of {arg:?}");
        if let Some(at) = rest[..authority_end].iter().rposition(|&b| b == b'@') {
            let raw_user = rest[..at].split(|&b| b == b';').next().unwrap_or_default();
            assert!(escapes_well_formed(raw_user), "bad %-escape accepted in the user of {arg:?}");
        }
        if !raw_path.contains(&b'%') {
            assert_eq!(parsed.path, raw_path, "path of {arg:?}");
        }
    } else {
        let i = colon.expect("a remote operand without scp:// has a host colon");
        assert_eq!(parsed.port, None);
        assert_eq!(parsed.path, &arg[i + 1..], "path of {arg:?}");
        if utf8 {
            // The login part is the user, `@`, and the host (perhaps in brackets).
            let mut login = Vec::new();
            if let Some(user) = &parsed.user {
                login.extend_from_slice(user.as_bytes());
                login.push(b'@');
            }
            let bare = [&login[..], parsed.host.as_bytes()].concat();
            let bracketed = [&login[..], b"[", parsed.host.as_bytes(), b"]"].concat();
            assert!(arg[..i] == bare || arg[..i] == bracketed, "login of {arg:?}: {parsed:?}");
        }
    }
    if !utf8 {
        // The host went through a lossy conversion: no round trip.
        return;
    }
    let again = host_path_form(&parsed);
    if !uri {
        let reparsed =
            parse_remote(&again).unwrap_or_else(|e| panic!("{again:?} (from {arg:?}) refused: {e}"));
        assert_eq!(reparsed, parsed, "{again:?} from {arg:?}");
    }
    // Hosts a URI can hold: not empty, no `/` or `@`, and no `]` when in brackets.
    let host = &parsed.host;
    let bracketed = host.contains(':') || host.starts_with('[');
    let uri_host = !host.is_empty() && !host.contains(['/', '@']) && (!bracketed || !host.contains(']'));
    if uri_host {
        let again = uri_form(&parsed);
        let reparsed =
            parse_remote(&again).unwrap_or_else(|e| panic!("{again:?} (from {arg:?}) refused: {e}"));
        assert_eq!(reparsed, parsed, "{again:?} from {arg:?}");
    }
}

// ---------------------------------------------------------------------------
// sftp_reply

/// Encodes a parsed reply again, with the framing `rscp -s` reads.
fn encode_sftp_reply(reply: &SftpReply) -> Vec<u8> {
    let mut out = Vec::new();
    let start = match reply {
        SftpReply::Version { version, extensions } => {
            let start = sftp::begin(&mut out, sftp::FXP_VERSION, *version);
            for (name, data) in extensions {
                sftp::put_str(&mut out, name);
                sftp::put_str(&mut out, data);
            }
            start
        }
        SftpReply::Status { id, code, message } => {
            let start = sftp::begin(&mut out, sftp::FXP_STATUS, *id);
            sftp::put_u32(&mut out, *code);
            sftp::put_str(&mut out, message);
            start
        }
        SftpReply::Handle { id, handle } => {
            let start = sftp::begin(&mut out, sftp::FXP_HANDLE, *id);
            sftp::put_str(&mut out, handle);
            start
        }
        SftpReply::Data { id, data } => {
            let start = sftp::begin(&mut out, sftp::FXP_DATA, *id);
            sftp::put_str(&mut out, data);
            start
        }
        SftpReply::Name { id, entries } => {
            let start = sftp::begin(&mut out, sftp::FXP_NAME, *id);
            sftp::put_u32(&mut out, u32::try_from(entries.len()).unwrap_or(u32::MAX));
            for (name, long, attrs) in entries {
                sftp::put_str(&mut out, name);
                sftp::put_str(&mut out, long);
                attrs.put(&mut out);
            }
            start
        }
        SftpReply::Attrs { id, attrs } => {
            let start = sftp::begin(&mut out, sftp::FXP_ATTRS, *id);
            attrs.put(&mut out);
            start
        }
        SftpReply::Extended { id, data } => {
            let start = sftp::begin(&mut out, sftp::FXP_EXTENDED_REPLY, *id);
            out.extend_from_slice(data);
            start
        }
    };
    sftp::finish(&mut out, start);
    out
}

/// Whatever an SFTP server sends, `Reply::parse` answers "more", "malformed" or
/// one reply that used exactly its framed length; a reply survives being encoded
/// and parsed again; and cutting a parsed reply short only ever asks for more.
pub fn sftp_reply(data: &[u8]) {
    let mut rest = data;
    // A stream of replies, as `rscp -s` takes them from its buffer.
    while let Ok(Some((reply, used))) = SftpReply::parse(rest) {
        let declared = rest.get(..4).map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize);
        assert_eq!(used, declared + 4, "a reply uses its framed length");
        assert!(used <= rest.len());
        let again = encode_sftp_reply(&reply);
        if !matches!(reply, SftpReply::Status { .. }) || again.len() <= sftp::MAX_PACKET {
            // A STATUS without a message is re-encoded with an empty one: same reply.
            match SftpReply::parse(&again) {
                Ok(Some((reparsed, n))) => {
                    assert_eq!(n, again.len(), "the re-encoded reply is used whole");
                    assert_eq!(reparsed, reply, "a reply survives encoding");
                }
                other => {
                    // Only a reply grown past the limit by re-encoding may fail.
                    assert!(again.len() > sftp::MAX_PACKET, "re-encoded reply refused: {other:?}");
                }
            }
        }
        for cut in [0, 1, 3, 4, used / 2, used.saturating_sub(1)] {
            if cut < used {
                assert_eq!(SftpReply::parse(&rest[..cut]), Ok(None), "a cut reply asks for more");
            }
        }
        rest = &rest[used..];
    }
}
