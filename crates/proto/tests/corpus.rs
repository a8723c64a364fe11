//! Replays the committed fuzz seeds (`fuzz/seeds/<target>/*`) on stable, through
//! the very checks the fuzz targets run: `fuzz/src/checks.rs` is included here
//! verbatim, so a crash found by `cargo fuzz` and saved as a seed stays a
//! regression test of the normal `cargo test`. It also holds the Source -> Sink
//! property test (`source_to_sink/mod.rs`), so rscp-proto has one test binary.

#[allow(dead_code)]
mod checks {
    include!("../../../fuzz/src/checks.rs");
}

// The Source -> Sink property test lives in the same test binary (one link step).
mod source_to_sink;

use std::path::Path;

#[test]
fn fuzz_seeds_pass_the_fuzz_checks() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds");
    for (target, check) in checks::TARGETS {
        let dir = seeds.join(target);
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.expect("seed entry").path())
            .collect();
        entries.sort();
        assert!(!entries.is_empty(), "no seeds for {target}");
        for path in entries {
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "{target}: seed {} fails its check", path.display());
        }
    }
}

/// Found by `wire_decode` (a wrong assumption in the check, not a decoder bug): a
/// `T` record without atime microseconds is accepted as 0 µs, as OpenSSH's `strtol`
/// reads it, and re-encodes one byte longer.
#[test]
fn times_without_atime_usec_reencode_with_zero() {
    use rscp_proto::message::{Message, Times};
    use rscp_proto::wire::{self, Incoming};
    let times = Times { mtime_sec: 1, mtime_usec: 2, atime_sec: 3, atime_usec: 0 };
    assert_eq!(wire::decode_record(b"T1 2 3 \n"), Ok(Some((Incoming::Record(Message::Times(times)), 8))));
    let mut out = Vec::new();
    wire::encode(&Message::Times(times), &mut out);
    assert_eq!(out, b"T1 2 3 0\n");
}

/// Found by `name_filter` (a quadratic check timed out under AddressSanitizer): twelve
/// `{a,b}` groups give 4096 patterns, within the limits, and a name is checked
/// against all of them in one pass.
#[test]
fn thousands_of_brace_patterns_match_in_one_pass() {
    use rscp_proto::filter::NameFilter;
    let request = b"{a,b}".repeat(12);
    let filter = NameFilter::from_request(&request).expect("within the limits");
    assert_eq!(filter.patterns().len(), 4096);
    assert!(filter.matches(b"abababababab"));
    assert!(!filter.matches(b"abababababac"));
}

/// Found by `command_parse` (a wrong assumption in the check, not a parser bug):
/// `build` quotes every `$` as `\$`, so a line that fits `MAX_LINE` when parsed can
/// come back longer than the limit, and `parse` then refuses it as too long. Seeds:
/// `seeds/command_parse/crash-quoting_makes_the_line_too_long`, `quoting_fills_the_line`.
#[test]
fn quoting_can_make_a_line_too_long() {
    use rscp_proto::command::{self, CommandError, Direction, Flags, MAX_LINE};
    for (dollars, fits) in [(32_764, true), (32_765, false)] {
        let mut line = b"scp -t '".to_vec();
        line.extend(std::iter::repeat_n(b'$', dollars));
        line.push(b'\'');
        let parsed = command::parse(&line).expect("a line within the limit");
        let literals: Vec<&[u8]> = parsed.paths.iter().map(|p| &p.literal[..]).collect();
        let built = command::build("scp", Direction::Sink, &Flags::default(), &literals);
        assert_eq!(built.len(), 7 + 2 * dollars);
        assert_eq!(built.len() <= MAX_LINE, fits);
        match command::parse(&built) {
            Ok(again) => assert!(fits && again.paths[0].literal == parsed.paths[0].literal),
            Err(e) => assert!(!fits && e == CommandError::TooLong, "{e}"),
        }
    }
}

/// Found by `command_parse` (again the check, not the parser): `build` puts `--`
/// before the paths when one starts with `-`, one word more than a line that had
/// none, so 4096 words can come back as 4097, refused as too many. Seeds:
/// `seeds/command_parse/crash-dashdash_makes_too_many_words`, `dashdash_fills_the_words`.
#[test]
fn a_dashdash_can_make_too_many_words() {
    use rscp_proto::command::{self, CommandError, MAX_WORDS};
    for (xs, fits) in [(4092, true), (4093, false)] {
        let mut line = b"scp -t".to_vec();
        line.extend(b" x".repeat(xs));
        line.extend(b" -y");
        let parsed = command::parse(&line).expect("a line within the limit");
        assert_eq!(parsed.paths.len(), xs + 1);
        let literals: Vec<&[u8]> = parsed.paths.iter().map(|p| &p.literal[..]).collect();
        let built = command::build("scp", parsed.direction, &parsed.flags, &literals);
        assert!(built.starts_with(b"scp -t -- x "));
        assert_eq!(xs + 4 <= MAX_WORDS, fits);
        match command::parse(&built) {
            Ok(again) => assert!(fits && again.paths.len() == xs + 1),
            Err(e) => assert!(!fits && e == CommandError::TooManyPaths, "{e}"),
        }
    }
}
