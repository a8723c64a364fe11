//! `-l`: a bandwidth limit on payload bytes (records and replies are not
//! counted), as OpenSSH's scp applies it on its side of the copy.
//!
//! The limiter keeps the average rate since it started at or below the limit,
//! sleeping after a chunk when ahead of schedule. Credit earned while idle (for
//! instance while waiting for a reply) is capped at one second, so a pause is not
//! followed by a burst far over the limit.

use std::time::Duration;

use tokio::time::Instant;

/// Paces payload to at most `bytes_per_second`.
#[derive(Debug, Clone)]
pub struct Limiter {
    bytes_per_second: u64,
    /// When pacing began: at the first chunk of the current file.
    start: Option<Instant>,
    bytes: u64,
}

/// Largest chunk a limited copy sends at once, so pacing stays smooth
/// (OpenSSH works in 16 KiB steps).
pub const LIMITED_CHUNK: usize = 16 * 1024;

impl Limiter {
    /// A limit of `kbits` Kbit/s, OpenSSH's unit for `-l` (1 Kbit = 1024 bits).
    pub fn from_kbits(kbits: u64) -> Limiter {
        Limiter::new(kbits.saturating_mul(1024) / 8)
    }

    pub fn new(bytes_per_second: u64) -> Limiter {
        Limiter { bytes_per_second: bytes_per_second.max(1), start: None, bytes: 0 }
    }

    /// Starts pacing afresh for the next file; as OpenSSH, timing begins with
    /// that file's first chunk (which goes out at once).
    pub fn restart(&mut self) {
        self.start = None;
        self.bytes = 0;
    }

    /// Accounts for `n` payload bytes just moved, sleeping if they came early.
    pub async fn consume(&mut self, n: usize) {
        if let Some(wait) = self.account(n, Instant::now()) {
            tokio::time::sleep(wait).await;
        }
    }

    /// The bookkeeping of `consume`: how long to wait after `n` bytes at `now`.
    fn account(&mut self, n: usize, now: Instant) -> Option<Duration> {
        let Some(start) = self.start else {
            self.start = Some(now);
            return None;
        };
        let elapsed = now.saturating_duration_since(start);
        let allowed_so_far = self.bytes_per_second as f64 * elapsed.as_secs_f64();
        // After an idle stretch, forget credit older than a second.
        if allowed_so_far > self.bytes as f64 + self.bytes_per_second as f64 {
            self.start = Some(now.checked_sub(Duration::from_secs(1)).unwrap_or(now));
            self.bytes = 0;
            return self.account(n, now);
        }
        self.bytes += n as u64;
        let due = Duration::from_secs_f64(self.bytes as f64 / self.bytes_per_second as f64);
        due.checked_sub(elapsed).filter(|wait| !wait.is_zero())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kbits_are_openssh_units() {
        assert_eq!(Limiter::from_kbits(400).bytes_per_second, 51_200);
    }

    #[test]
    fn waits_when_ahead_of_schedule() {
        let start = Instant::now();
        let mut limiter = Limiter::new(1000);
        assert_eq!(limiter.account(300, start), None, "the first chunk starts the clock");
        assert_eq!(limiter.account(500, start), Some(Duration::from_millis(500)));
        assert_eq!(
            limiter.account(500, start + Duration::from_millis(500)),
            Some(Duration::from_millis(500))
        );
        assert_eq!(limiter.account(500, start + Duration::from_secs(2)), None, "behind schedule: no wait");
    }

    #[test]
    fn idle_credit_is_capped_at_one_second() {
        let start = Instant::now();
        let mut limiter = Limiter { bytes_per_second: 1000, start: Some(start), bytes: 0 };
        // After 10 idle seconds, only one second's worth goes out unpaced.
        let later = start + Duration::from_secs(10);
        assert_eq!(limiter.account(1000, later), None);
        assert_eq!(limiter.account(1000, later), Some(Duration::from_secs(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn consume_sleeps() {
        let mut limiter = Limiter::new(16 * 1024);
        let begin = tokio::time::Instant::now();
        for _ in 0..5 {
            limiter.consume(16 * 1024).await;
        }
        assert!(begin.elapsed() >= Duration::from_millis(3900), "{:?}", begin.elapsed());
        limiter.restart();
        let again = tokio::time::Instant::now();
        limiter.consume(16 * 1024).await;
        assert_eq!(again.elapsed(), Duration::ZERO, "a new file starts unpaced");
    }
}
