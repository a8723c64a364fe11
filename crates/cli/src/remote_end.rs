//! The remote ends: `rscp -t` (sink) and `rscp -f` (source) over stdin/stdout,
//! byte-compatible with OpenSSH's `scp -t` / `scp -f`.
//!
//! Everything but the protocol stays off stdout; errors travel to the peer as
//! `\1scp: …` lines; the exit status is 0 or 1, as OpenSSH's.

use std::io::Write;
use std::path::PathBuf;

use rscp_engine::sink::{self, SinkOptions};
use rscp_engine::source::{self, SourceOptions};
use rscp_engine::{Conn, fs};

use crate::flags::{Flags, RemoteEnd};
use crate::report::RemoteReport;
use crate::stdio;

/// Runs the remote end `end` and returns the exit status.
pub fn run(flags: &Flags, end: RemoteEnd) -> i32 {
    if end == RemoteEnd::Sink && flags.operands.len() != 1 {
        // OpenSSH answers a missing or second target like this, instead of "\0".
        let mut out = std::io::stdout();
        let _ = out.write_all(b"\x01scp: ambiguous target\n").and_then(|()| out.flush());
        return 1;
    }
    let Some(runtime) = crate::runtime("scp") else { return 1 };
    let ok = runtime.block_on(async {
        let (reader, writer) = stdio::open()?;
        let mut conn = Conn::new(reader, writer);
        let mut report = RemoteReport { verbose: flags.verbose > 0 };
        let paths: Vec<PathBuf> = flags.operands.iter().map(PathBuf::from).collect();
        let summary = match end {
            RemoteEnd::Sink => {
                let options = SinkOptions {
                    recursive: flags.recursive,
                    preserve: flags.preserve,
                    target_must_be_dir: flags.target_dir,
                    inplace: flags.inplace,
                    umask: fs::process_umask(),
                    ..SinkOptions::default()
                };
                sink::receive(&mut conn, &paths[0], &options, &mut report).await
            }
            RemoteEnd::Source => {
                let options = SourceOptions {
                    recursive: flags.recursive,
                    preserve: flags.preserve,
                    limit_kbits: flags.limit_kbps,
                    pipelined: true,
                    ahead: false,
                };
                source::send(&mut conn, &paths, options, &mut report).await
            }
        };
        let _ = conn.shutdown().await;
        Ok::<bool, std::io::Error>(summary.is_ok_and(|s| s.ok()))
    });
    match ok {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("scp: {}", fs::errno_text(&e));
            1
        }
    }
}
