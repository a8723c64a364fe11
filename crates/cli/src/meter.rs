//! OpenSSH's progress meter (`progressmeter.c`), line for line: one line per
//! file on stdout, `\r`-redrawn every second and at start and end, only when
//! stdout is a terminal and we are in its foreground process group.
//!
//! Layout: `<name padded/cut to cols-36> <pct>% <size> <rate>/s <eta>`, the name
//! escaped (CVE-2019-6109), `- stalled -` after 5 s without progress, the true
//! average rate and the elapsed time once done.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rscp_engine::Observer;
use rscp_proto::FileName;

use crate::report::ClientReport;

const STALL_TIME: f64 = 5.0;
const AGE_FACTOR: f64 = 0.9;

/// The state of the file being shown.
#[derive(Debug)]
struct Progress {
    name: String,
    size: u64,
    position: u64,
    last_position: u64,
    start: Instant,
    last_update: Instant,
    bytes_per_second: f64,
    stalled: f64,
}

impl Progress {
    fn new(name: String, size: u64, now: Instant) -> Progress {
        Progress {
            name,
            size,
            position: 0,
            last_position: 0,
            start: now,
            last_update: now,
            bytes_per_second: 0.0,
            stalled: 0.0,
        }
    }

    /// Updates the rate and renders the line for a terminal `columns` wide.
    fn render(&mut self, now: Instant, columns: usize) -> String {
        let left = self.size.saturating_sub(self.position);
        let mut transferred = self.position - self.last_position;
        let elapsed = if left > 0 {
            now.saturating_duration_since(self.last_update).as_secs_f64()
        } else {
            // Done: the true average over the whole file.
            transferred = self.position;
            self.bytes_per_second = 0.0;
            now.saturating_duration_since(self.start).as_secs_f64()
        };
        let speed = if elapsed > 0.0 { transferred as f64 / elapsed } else { transferred as f64 };
        self.bytes_per_second = if self.bytes_per_second != 0.0 {
            self.bytes_per_second * AGE_FACTOR + speed * (1.0 - AGE_FACTOR)
        } else {
            speed
        };
        if transferred == 0 {
            self.stalled += elapsed;
        } else {
            self.stalled = 0.0;
        }
        self.last_update = now;
        self.last_position = self.position;
        format_line(
            &self.name,
            self.size,
            self.position,
            self.bytes_per_second,
            self.stalled,
            elapsed,
            columns,
        )
    }
}

/// The meter line: `\r` and at most `columns - 1` visible characters.
fn format_line(
    name: &str,
    size: u64,
    position: u64,
    bytes_per_second: f64,
    stalled: f64,
    elapsed: f64,
    columns: usize,
) -> String {
    let mut line = String::new();
    // OpenSSH counts a trailing NUL in its width: win_size = columns + 1.
    let win_size = columns + 1;
    let name_width = win_size.saturating_sub(36);
    if name_width > 0 {
        line.push('\r');
        let shown: String = name.chars().take(name_width).collect();
        line.push_str(&format!("{shown:<name_width$}"));
    }
    let percent =
        if size == 0 || position == size { 100 } else { (position as f64 / size as f64 * 100.0) as u64 };
    line.push_str(&format!(" {percent:3}% "));
    line.push_str(&format_size(position));
    line.push(' ');
    line.push_str(&format_rate(bytes_per_second as u64));
    line.push_str("/s ");
    let left = size.saturating_sub(position);
    if stalled >= STALL_TIME {
        line.push_str("- stalled -");
    } else if bytes_per_second == 0.0 && left > 0 {
        line.push_str("  --:-- ETA");
    } else {
        let seconds = if left > 0 { (left as f64 / bytes_per_second) as u64 } else { elapsed as u64 };
        let (hours, minutes, secs) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
        if hours != 0 {
            line.push_str(&format!("{hours}:{minutes:02}:{secs:02}"));
        } else {
            line.push_str(&format!("  {minutes:02}:{secs:02}"));
        }
        line.push_str(if left > 0 { " ETA" } else { "    " });
    }
    // It writes win_size - 1 bytes: the `\r` and columns - 1 visible ones.
    line.chars().take(win_size - 1).collect()
}

const UNITS: &[u8] = b" KMGT";

/// `%4lld%c%s`: four digits and a unit in powers of 1024, e.g. ` 293KB`.
fn format_size(mut bytes: u64) -> String {
    let mut i = 0;
    while bytes >= 10_000 && i + 1 < UNITS.len() {
        bytes = (bytes + 512) / 1024;
        i += 1;
    }
    format!("{bytes:4}{}{}", char::from(UNITS[i]), if i > 0 { "B" } else { " " })
}

/// `%3lld.%1lld%cB`: a rate, never below KB, e.g. ` 50.8KB`.
fn format_rate(bytes: u64) -> String {
    let mut bytes = bytes.saturating_mul(100);
    let mut i = 0;
    while bytes >= 100 * 1000 && i + 1 < UNITS.len() {
        bytes = (bytes + 512) / 1024;
        i += 1;
    }
    if i == 0 {
        i = 1;
        bytes = (bytes + 512) / 1024;
    }
    format!("{:3}.{}{}B", (bytes + 5) / 100, (bytes + 5) / 10 % 10, char::from(UNITS[i]))
}

/// The terminal's width: columns of stdout's tty, 80 if unknown, at most 512.
fn columns() -> usize {
    match rustix::termios::tcgetwinsize(std::io::stdout()) {
        Ok(size) if size.ws_col > 0 => usize::from(size.ws_col).min(512),
        _ => 80,
    }
}

/// OpenSSH's `can_output()`: only the foreground process group draws.
fn in_foreground() -> bool {
    rustix::termios::tcgetpgrp(std::io::stdout()).is_ok_and(|group| group == rustix::process::getpgrp())
}

/// Whether a meter should be shown at all: not `-q`, stdout a terminal.
pub fn wanted(quiet: bool) -> bool {
    !quiet && rustix::termios::isatty(std::io::stdout())
}

/// The client's observer when a meter is shown: messages as `ClientReport`,
/// plus the meter, redrawn by a ticker thread once a second.
#[derive(Debug)]
pub struct Meter {
    report: ClientReport,
    current: Arc<Mutex<Option<Progress>>>,
}

impl Meter {
    pub fn new(report: ClientReport) -> Meter {
        let current: Arc<Mutex<Option<Progress>>> = Arc::new(Mutex::new(None));
        let ticker = Arc::downgrade(&current);
        std::thread::spawn(move || {
            while let Some(current) = ticker.upgrade() {
                if let Ok(mut guard) = current.lock()
                    && let Some(progress) = guard.as_mut()
                {
                    draw(progress);
                }
                drop(current);
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        Meter { report, current }
    }
}

fn draw(progress: &mut Progress) {
    if !in_foreground() {
        return;
    }
    let line = progress.render(Instant::now(), columns());
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(line.as_bytes());
    let _ = out.flush();
}

impl Observer for Meter {
    fn local_error(&mut self, text: &str) {
        self.report.local_error(text);
    }

    fn remote_message(&mut self, text: &[u8]) {
        self.report.remote_message(text);
    }

    fn file_started(&mut self, name: &FileName, size: u64) {
        if let Ok(mut guard) = self.current.lock() {
            let progress = guard.insert(Progress::new(name.display(), size, Instant::now()));
            draw(progress);
        }
    }

    fn transferred(&mut self, bytes: u64) {
        if let Ok(mut guard) = self.current.lock()
            && let Some(progress) = guard.as_mut()
        {
            progress.position += bytes;
        }
    }

    fn file_finished(&mut self, _ok: bool) {
        if let Ok(mut guard) = self.current.lock()
            && let Some(mut progress) = guard.take()
        {
            draw(&mut progress);
            if in_foreground() {
                let _ = std::io::stdout().lock().write_all(b"\n");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_rates_as_openssh() {
        assert_eq!(format_size(0), "   0  ");
        assert_eq!(format_size(9999), "9999  ");
        assert_eq!(format_size(300_000), " 293KB");
        assert_eq!(format_size(5 * 1024 * 1024 * 1024), "5120MB");
        assert_eq!(format_rate(0), "  0.0KB");
        assert_eq!(format_rate(52_019), " 50.8KB");
        assert_eq!(format_rate(38_377_000), " 36.6MB");
    }

    /// The line captured from OpenSSH 9.2 on an 80-column terminal (spec §7).
    #[test]
    fn finished_line_matches_openssh() {
        let line = format_line("p.bin", 300_000, 300_000, 52_019.0, 0.0, 5.9, 80);
        assert_eq!(line, "\rp.bin                                         100%  293KB  50.8KB/s   00:05    ");
        assert_eq!(line.chars().count(), 80, "\\r and 79 visible");
    }

    #[test]
    fn eta_unknown_stalled_and_hours() {
        let start = format_line("f", 1000, 0, 0.0, 0.0, 0.0, 80);
        assert!(start.ends_with("   0%    0     0.0KB/s   --:-- ETA"), "{start:?}");
        let stalled = format_line("f", 1000, 10, 100.0, 5.0, 1.0, 80);
        assert!(stalled.ends_with("- stalled -"), "{stalled:?}");
        let long = format_line("f", 200_001, 1, 10.0, 0.0, 1.0, 80);
        assert!(long.ends_with("0%    1     0.0KB/s 5:33:20 ETA"), "{long:?}");
    }

    #[test]
    fn names_are_cut_to_the_width() {
        let line = format_line(&"n".repeat(100), 1, 1, 1.0, 0.0, 1.0, 50);
        assert!(line.starts_with(&format!("\r{} ", "n".repeat(15))), "{line:?}");
        assert_eq!(line.chars().count(), 50);
    }

    #[test]
    fn rate_is_an_average_that_ages() {
        let t0 = Instant::now();
        let mut p = Progress::new("f".into(), 10_000_000, t0);
        p.position = 1_000_000;
        let first = p.render(t0 + Duration::from_secs(1), 80);
        assert!(first.contains("976.6KB/s"), "{first:?}");
        let idle = p.render(t0 + Duration::from_secs(2), 80);
        assert!(idle.contains("878.9KB/s"), "{idle:?}");
        for s in 3..8 {
            p.render(t0 + Duration::from_secs(s), 80);
        }
        assert!(p.render(t0 + Duration::from_secs(8), 80).ends_with("- stalled -"));
        p.position = 10_000_000;
        let done = p.render(t0 + Duration::from_secs(10), 80);
        assert!(done.ends_with(" 100% 9766KB 976.6KB/s   00:10    "), "{done:?}");
    }
}
