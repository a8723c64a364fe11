//! Property: whatever a `Source` emits for an arbitrary tree of records (files with
//! arbitrary safe names, modes, sizes and payloads, directories, times), a `Sink`
//! accepts and reproduces as exactly the same sequence of events, with exactly one
//! reply per record and one final reply per file.
//!
//! The two machines talk over in-memory byte vectors through small drivers that
//! follow each module's documented contract; payload bytes are moved by the drivers.

use proptest::prelude::*;
use rscp_proto::message::{FileHeader, Message, Mode, Times};
use rscp_proto::name::FileName;
use rscp_proto::sink::{Sink, SinkConfig, SinkEvent};
use rscp_proto::source::{Source, SourceEvent};
use rscp_proto::wire::{self, Reply};

/// One entry of the tree the source sends.
#[derive(Clone, Debug)]
enum Entry {
    File { header: FileHeader, times: Option<Times>, payload: Vec<u8> },
    Dir { header: FileHeader, times: Option<Times>, children: Vec<Entry> },
}

/// What the sink's driver saw, to compare with the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Enter(FileHeader, Option<Times>),
    Leave,
    File(FileHeader, Option<Times>, Vec<u8>),
}

fn name() -> impl Strategy<Value = FileName> {
    // Any bytes but NUL, '/' and LF (a record cannot carry a LF), not `.` / `..`.
    proptest::collection::vec(
        any::<u8>().prop_filter("no NUL / LF", |b| !matches!(b, 0 | b'/' | b'\n')),
        1..24,
    )
    .prop_filter_map("safe name", |bytes| FileName::new(&bytes).ok())
}

fn times() -> impl Strategy<Value = Option<Times>> {
    proptest::option::of((0..=i64::MAX as u64, 0..=999_999u32, 0..=i64::MAX as u64, 0..=999_999u32).prop_map(
        |(mtime_sec, mtime_usec, atime_sec, atime_usec)| Times {
            mtime_sec,
            mtime_usec,
            atime_sec,
            atime_usec,
        },
    ))
}

fn mode() -> impl Strategy<Value = Mode> {
    (0..=0o7777u32).prop_map(|bits| Mode::new(bits).expect("in range"))
}

fn file() -> impl Strategy<Value = Entry> {
    (name(), mode(), times(), proptest::collection::vec(any::<u8>(), 0..64)).prop_map(
        |(name, mode, times, payload)| Entry::File {
            header: FileHeader { mode, size: payload.len() as u64, name },
            times,
            payload,
        },
    )
}

fn tree() -> impl Strategy<Value = Vec<Entry>> {
    let entry = file().prop_recursive(4, 24, 5, |inner| {
        (name(), mode(), times(), proptest::collection::vec(inner, 0..5)).prop_map(
            |(name, mode, times, children)| Entry::Dir {
                header: FileHeader { mode, size: 0, name },
                times,
                children,
            },
        )
    });
    proptest::collection::vec(entry, 0..6)
}

/// Flattens the tree into the records the source sends, with the expected sink events.
fn plan(entries: &[Entry], records: &mut Vec<(Message, Option<Vec<u8>>)>, expected: &mut Vec<Seen>) {
    for entry in entries {
        match entry {
            Entry::File { header, times, payload } => {
                if let Some(t) = times {
                    records.push((Message::Times(*t), None));
                }
                records.push((Message::File(header.clone()), Some(payload.clone())));
                expected.push(Seen::File(header.clone(), *times, payload.clone()));
            }
            Entry::Dir { header, times, children } => {
                if let Some(t) = times {
                    records.push((Message::Times(*t), None));
                }
                records.push((Message::Dir(header.clone()), None));
                expected.push(Seen::Enter(header.clone(), *times));
                plan(children, records, expected);
                records.push((Message::EndDir, None));
                expected.push(Seen::Leave);
            }
        }
    }
}

/// The sink side and its driver: `step` runs it until it needs bytes it does not have.
#[derive(Debug)]
struct SinkSide {
    sink: Sink,
    inbox: Vec<u8>,
    outbox: Vec<u8>,
    seen: Vec<Seen>,
    /// The payload length of the file being received, once opened.
    receiving: Option<(FileHeader, Option<Times>, u64)>,
}

impl SinkSide {
    fn step(&mut self) {
        loop {
            while let Some(event) = self.sink.poll_event() {
                match event {
                    SinkEvent::EnterDir { header, times } => {
                        self.seen.push(Seen::Enter(header, times));
                        self.sink.dir_entered(Ok(()));
                    }
                    SinkEvent::LeaveDir => self.seen.push(Seen::Leave),
                    SinkEvent::File { header, times } => {
                        let size = header.size;
                        self.receiving = Some((header, times, size));
                        self.sink.file_opened(Ok(()));
                    }
                    SinkEvent::FileStatus { source_error } => {
                        assert_eq!(source_error, None);
                        self.sink.file_done(Ok(()));
                    }
                    other => panic!("unexpected sink event {other:?}"),
                }
            }
            self.sink.poll_transmit(&mut self.outbox);
            // Payload: copied by the driver, never through the machine.
            if let Some((header, times, size)) = self.receiving.take() {
                let size = usize::try_from(size).expect("small test sizes");
                if self.inbox.len() < size {
                    self.receiving = Some((header, times, size as u64));
                    return;
                }
                let payload: Vec<u8> = self.inbox.drain(..size).collect();
                self.seen.push(Seen::File(header, times, payload));
                self.sink.payload_received();
                continue;
            }
            if !self.sink.wants_input() {
                return;
            }
            let used = self.sink.handle_input(&self.inbox).expect("sink accepts what the source sent");
            if used == 0 {
                return;
            }
            self.inbox.drain(..used);
        }
    }
}

/// Counts the replies in `bytes`, all of which must be `\0`.
fn count_ok_replies(bytes: &[u8]) -> usize {
    let mut rest = bytes;
    let mut count = 0;
    while !rest.is_empty() {
        match wire::decode_reply(rest) {
            Ok(Some((Reply::Ok, used))) => {
                count += 1;
                rest = &rest[used..];
            }
            other => panic!("sink replied {other:?}"),
        }
    }
    count
}

fn transfer(entries: &[Entry]) {
    let mut records = Vec::new();
    let mut expected = Vec::new();
    plan(entries, &mut records, &mut expected);
    let files = records.iter().filter(|(m, _)| matches!(m, Message::File(_))).count();

    let mut source = Source::new();
    let mut sink = SinkSide {
        sink: Sink::new(SinkConfig::new(true)),
        inbox: Vec::new(),
        outbox: Vec::new(),
        seen: Vec::new(),
        receiving: None,
    };
    let mut replies_total = 0usize;

    // Delivers sink -> source bytes until the source has its answer; returns it
    // and checks the sink sent exactly one reply for it.
    let mut answer = |source: &mut Source, sink: &mut SinkSide| -> SourceEvent {
        sink.step();
        let replies = std::mem::take(&mut sink.outbox);
        assert_eq!(count_ok_replies(&replies), 1, "exactly one reply");
        replies_total += 1;
        let used = source.handle_input(&replies).expect("source accepts the reply");
        assert_eq!(used, replies.len());
        source.poll_event().expect("the reply gives an answer")
    };

    assert_eq!(answer(&mut source, &mut sink), SourceEvent::Ready);
    for (message, payload) in &records {
        source.send(message).expect("in order");
        source.poll_transmit(&mut sink.inbox);
        assert_eq!(answer(&mut source, &mut sink), SourceEvent::Accepted, "record {message:?}");
        if let Some(payload) = payload {
            sink.inbox.extend_from_slice(payload);
            source.payload_sent(None).expect("payload after acceptance");
            source.poll_transmit(&mut sink.inbox);
            assert_eq!(answer(&mut source, &mut sink), SourceEvent::Accepted, "final reply");
        }
    }
    sink.step();
    assert!(sink.inbox.is_empty() && sink.outbox.is_empty(), "nothing left over");
    sink.sink.handle_eof(&[]).expect("a clean end");
    assert_eq!(sink.sink.poll_event(), Some(SinkEvent::Finished));
    assert_eq!(source.handle_eof(), Ok(()));

    assert_eq!(sink.seen, expected, "the sink reproduces the source's tree");
    // One ready reply, one per record, one final reply per file.
    assert_eq!(replies_total, 1 + records.len() + files);
    assert_eq!(source.error_count(), 0);
    assert_eq!(sink.sink.error_count(), 0);
    assert_eq!(source.depth(), 0);
    assert_eq!(sink.sink.depth(), 0);
}

/// [`transfer`] with both machines pipelining: the source sends on without the
/// answers that decide nothing, the sink gives `credit` replies ahead. The sink
/// must see the same tree, and send one reply per record and per file end plus
/// its credit; the source must get each in order. With `ahead`, files whose
/// payload allows it go ahead (`C`, payload and status at once), and the
/// answers to their `C`s settle without an event.
fn pipelined_transfer(entries: &[Entry], credit: usize, ahead: bool) {
    let mut records = Vec::new();
    let mut expected = Vec::new();
    plan(entries, &mut records, &mut expected);
    let files = records.iter().filter(|(m, _)| matches!(m, Message::File(_))).count();

    let mut source = Source::pipelined();
    let mut sink = SinkSide {
        sink: Sink::new(SinkConfig { reply_credit: credit, ..SinkConfig::new(true) }),
        inbox: Vec::new(),
        outbox: Vec::new(),
        seen: Vec::new(),
        receiving: None,
    };
    let mut replies = Vec::new();
    let mut replies_total = 0usize;
    let mut answers = Vec::new();
    // Moves every reply the sink has to the source, and every answer out of it.
    let mut deliver = |source: &mut Source, sink: &mut SinkSide, replies: &mut Vec<u8>| {
        sink.step();
        replies_total += count_ok_replies(&sink.outbox);
        replies.append(&mut sink.outbox);
        loop {
            while let Some(event) = source.poll_event() {
                answers.push(event);
            }
            match source.handle_input(replies).expect("source accepts the replies") {
                0 => break,
                n => {
                    replies.drain(..n);
                }
            }
        }
    };
    let mut pending = records.iter();
    let mut payload_due: Option<&Vec<u8>> = None;
    let mut sent_ahead = 0;
    loop {
        if let Some(payload) = payload_due.take() {
            if source.awaits_gate() {
                payload_due = Some(payload);
            } else {
                sink.inbox.extend_from_slice(payload);
                source.payload_sent(None).expect("payload after acceptance");
                source.poll_transmit(&mut sink.inbox);
                continue;
            }
        } else if !source.awaits_gate() {
            let Some((message, payload)) = pending.next() else { break };
            if let (true, Message::File(header), Some(payload)) = (ahead, message, payload)
                && Source::can_send_ahead(payload)
            {
                source.send_file_ahead(header, payload).expect("in order");
                source.poll_transmit(&mut sink.inbox);
                sent_ahead += 1;
                continue;
            }
            source.send(message).expect("in order");
            source.poll_transmit(&mut sink.inbox);
            payload_due = payload.as_ref();
            // A `T` and the record after it travel together, unanswered.
            if !matches!(message, Message::File(_) | Message::Dir(_)) {
                continue;
            }
        }
        deliver(&mut source, &mut sink, &mut replies);
    }
    deliver(&mut source, &mut sink, &mut replies);
    assert!(!source.wants_input(), "every answer arrived");
    assert_eq!(replies.len(), credit, "what is left is the credit");
    sink.sink.handle_eof(&[]).expect("a clean end");
    assert_eq!(source.handle_eof(), Ok(()));
    assert_eq!(sink.seen, expected, "the sink reproduces the source's tree");
    assert_eq!(replies_total, 1 + credit + records.len() + files);
    assert_eq!(answers.len(), 1 + records.len() + files - sent_ahead, "one answer for each");
    assert!(
        answers
            .iter()
            .all(|a| !matches!(a, SourceEvent::Refused(_) | SourceEvent::Settled { refused: Some(_), .. }))
    );
    assert_eq!((source.error_count(), sink.sink.error_count()), (0, 0));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn sink_reproduces_what_the_source_sends(entries in tree()) {
        transfer(&entries);
    }

    #[test]
    fn pipelined_sink_reproduces_what_the_pipelined_source_sends(
        entries in tree(),
        credit in 0..4usize,
        ahead in any::<bool>(),
    ) {
        pipelined_transfer(&entries, credit, ahead);
    }
}
