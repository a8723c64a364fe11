//! How much file data to keep asked for (READs not yet answered) on one SFTP
//! connection: four times what the link holds, its delivery rate times its
//! round trip, measured as the copy goes.
//!
//! Why not simply a lot: whatever is asked for and not yet taken by rscp waits
//! in the server. OpenSSH's sshd reads its `sftp-server`'s replies as long as the
//! client's SSH window allows (rscp opens a large one, for slow links) and keeps
//! them in one buffer that it reallocates, copies and wipes as it grows and
//! empties. With 32 MiB asked ahead and rscp short of CPU, sshd spent three
//! times the CPU of the copy itself on that buffer (two downloads at once:
//! 5-12 s instead of 2.5 s for 1 GiB). On a fast link little need be asked
//! ahead; on a slow one (40 ms) tens of MiB.
//!
//! The round trip is sampled one READ at a time (a probe), and from the
//! session's own requests before any READ (STAT, OPEN: [`ReadAhead::round_trip`]);
//! the lowest sample is the link's, the rest is queueing. The rate is what
//! arrived over the last interval, timed from the first answer (the round trip
//! before it carries no data). Until the first rate is measured, the limit is
//! what the round trip holds at [`START_RATE`]: at 40 ms the ceiling from the
//! first READ, instead of four round trips of growth from the floor. A limit
//! that holds the link back doubles each round trip (the rate it allows is all
//! it measures, and more is asked), as TCP's slow start. Four
//! times, not two: on a 40 ms link twice settled near 10 MiB and 180 MB/s, where
//! 32 MiB gives 240 (the replies come in bursts, and the round trip grows with
//! what is queued); on loopback either stays at the floor.

use std::time::{Duration, Instant};

/// Never less than this: enough for loopback and a LAN at full speed.
const FLOOR: u64 = 4 * 1024 * 1024;
/// Never more: 40 ms at several hundred MB/s.
const CEILING: u64 = 32 * 1024 * 1024;
/// The rate is taken over at least this long.
const INTERVAL: Duration = Duration::from_millis(20);
/// The rate assumed before one is measured: about what one connection carries
/// here (a 40 ms link starts at the ceiling, loopback and a LAN at the floor).
const START_RATE: f64 = 400e6;

/// The read-ahead of one connection: ask while [`ReadAhead::limit`] is not
/// reached; tell it each READ sent ([`ReadAhead::sent`]) and each answered
/// ([`ReadAhead::answered`]).
#[derive(Debug)]
pub(super) struct ReadAhead {
    limit: u64,
    /// The READ being timed, and when it went out.
    probe: Option<(u32, Instant)>,
    min_rtt: Option<Duration>,
    /// Bytes received since `since`.
    received: u64,
    /// When the current rate interval began: at the first answer to a READ,
    /// then at each sample.
    since: Option<Instant>,
    /// A rate has been measured: the limit follows it, no longer [`START_RATE`].
    measured: bool,
}

impl Default for ReadAhead {
    fn default() -> Self {
        ReadAhead { limit: FLOOR, probe: None, min_rtt: None, received: 0, since: None, measured: false }
    }
}

impl ReadAhead {
    /// Bytes that may be asked for and not yet answered.
    pub(super) fn limit(&self) -> u64 {
        self.limit
    }

    /// One of the session's own requests took `rtt` to be answered.
    pub(super) fn round_trip(&mut self, rtt: Duration) -> Duration {
        let min_rtt = self.min_rtt.map_or(rtt, |m| m.min(rtt));
        self.min_rtt = Some(min_rtt);
        if !self.measured {
            self.limit = target(START_RATE, min_rtt);
        }
        min_rtt
    }

    /// READ `id` went out.
    pub(super) fn sent(&mut self, id: u32) {
        if self.probe.is_none() {
            self.probe = Some((id, Instant::now()));
        }
    }

    /// READ `id` was answered with `bytes` of data (0 for a status).
    pub(super) fn answered(&mut self, id: u32, bytes: u64) {
        let now = Instant::now();
        let since = match self.since {
            Some(since) => {
                self.received += bytes;
                since
            }
            None => {
                self.since = Some(now);
                now
            }
        };
        let Some((probe, sent_at)) = self.probe else { return };
        if probe != id {
            return;
        }
        self.probe = None;
        let min_rtt = self.round_trip(now.saturating_duration_since(sent_at));
        let elapsed = now.saturating_duration_since(since);
        if elapsed >= INTERVAL.max(min_rtt) {
            let rate = self.received as f64 / elapsed.as_secs_f64();
            self.limit = target(rate, min_rtt);
            self.measured = true;
            self.received = 0;
            self.since = Some(now);
        }
    }
}

/// Four times the bytes a link of `rate` (bytes/s) and round trip `rtt` holds, within bounds.
fn target(rate: f64, rtt: Duration) -> u64 {
    let held = rate * rtt.as_secs_f64();
    // A float to integer `as` saturates; NaN gives 0, which the floor lifts.
    ((4.0 * held) as u64).clamp(FLOOR, CEILING)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn a_fast_link_keeps_the_floor() {
        // Loopback: 500 MB/s, 1 ms.
        assert_eq!(target(500e6, Duration::from_millis(1)), FLOOR);
    }

    #[test]
    fn a_slow_link_gets_four_times_what_it_holds_up_to_the_ceiling() {
        // 50 MB/s at 40 ms holds 2 MB: 8 MB asked.
        assert_eq!(target(50e6, Duration::from_millis(40)), 8_000_000);
        assert_eq!(target(1e9, Duration::from_millis(40)), CEILING);
        assert_eq!(target(f64::NAN, Duration::from_millis(40)), FLOOR);
    }

    #[test]
    fn a_limit_that_holds_the_link_back_grows_each_round_trip() {
        let mut ahead = ReadAhead::default();
        let start = Instant::now() - Duration::from_millis(45);
        // The floor's worth arrived over one 40 ms round trip: the link took
        // all it was given, so more is asked next.
        ahead.since = Some(start);
        ahead.probe = Some((7, start + Duration::from_millis(5)));
        ahead.answered(7, FLOOR);
        assert!(ahead.limit() > FLOOR + FLOOR / 2, "limit {}", ahead.limit() / MIB);
        // Other replies do not sample.
        let before = ahead.limit();
        ahead.answered(8, MIB);
        assert_eq!(ahead.limit(), before);
    }

    #[test]
    fn the_rate_is_timed_from_the_first_answer() {
        // The session's setup and the first round trip carry no data: neither
        // is counted against the rate, nor are the first answer's bytes.
        let mut ahead = ReadAhead::default();
        ahead.sent(1);
        assert_eq!(ahead.since, None, "a READ alone starts nothing");
        std::thread::sleep(Duration::from_millis(30));
        ahead.answered(1, MIB);
        let since = ahead.since.expect("set by the first answer");
        assert_eq!(ahead.received, 0);
        ahead.sent(2);
        ahead.answered(2, MIB);
        assert_eq!(ahead.since, Some(since), "only the first answer starts it");
        assert_eq!(ahead.received, MIB);
    }

    #[test]
    fn the_first_round_trips_set_the_start_until_a_rate_is_measured() {
        let mut ahead = ReadAhead::default();
        // A STAT answered in 40 ms: the ceiling from the first READ.
        ahead.round_trip(Duration::from_millis(40));
        assert_eq!(ahead.limit(), CEILING);
        // A faster answer is the link's round trip; loopback keeps the floor.
        ahead.round_trip(Duration::from_micros(300));
        assert_eq!(ahead.limit(), FLOOR);
        let mut slow = ReadAhead::default();
        slow.round_trip(Duration::from_millis(40));
        // Once a rate is measured (here 50 MB/s: 2 MB per round trip), it rules.
        let start = Instant::now() - Duration::from_millis(45);
        slow.since = Some(start);
        slow.received = 2_000_000;
        slow.probe = Some((9, start + Duration::from_millis(5)));
        slow.answered(9, 0);
        assert!(slow.limit() < CEILING, "limit {}", slow.limit() / MIB);
        slow.round_trip(Duration::from_millis(40));
        assert!(slow.limit() < CEILING, "a later request does not undo it");
    }

    #[test]
    fn a_status_reply_ends_the_probe() {
        let mut ahead = ReadAhead::default();
        ahead.sent(3);
        ahead.sent(4);
        assert_eq!(ahead.probe.map(|(id, _)| id), Some(3));
        ahead.answered(3, 0);
        assert!(ahead.probe.is_none());
        ahead.sent(5);
        assert_eq!(ahead.probe.map(|(id, _)| id), Some(5));
    }
}
