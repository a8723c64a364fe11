//! Local-to-local copies (`rscp [-r] [-p] SRC... DEST`), run through the engine:
//! a source and a sink in one process, joined by an in-memory stream, so local
//! copies get the same checks, atomic replacement and messages as remote ones.
//! (OpenSSH runs `cp` instead.)

use std::path::{Path, PathBuf};

use rscp_engine::sink::{self, SinkOptions};
use rscp_engine::source::{self, SourceOptions};
use rscp_engine::{Conn, EngineError, Summary, fs};

use crate::flags::Flags;
use crate::report::ClientReport;

/// Bytes in flight between the two halves.
const PIPE_SIZE: usize = 1024 * 1024;

/// Copies `flags.operands[..n-1]` to the last operand; returns the exit status.
pub fn run(flags: &Flags) -> i32 {
    let Some((target, sources)) = flags.operands.split_last() else {
        return 1;
    };
    let sources: Vec<PathBuf> = sources.iter().map(PathBuf::from).collect();
    let Some(runtime) = crate::runtime("rscp") else { return 1 };
    let target_must_be_dir = sources.len() > 1;
    if runtime.block_on(copy(flags, &sources, Path::new(target), target_must_be_dir)) { 0 } else { 1 }
}

/// Copies local `sources` to the local `target`; true if all went well.
pub async fn copy(flags: &Flags, sources: &[PathBuf], target: &Path, target_must_be_dir: bool) -> bool {
    let (source_end, sink_end) = tokio::io::duplex(PIPE_SIZE);
    let source_options = SourceOptions {
        recursive: flags.recursive,
        preserve: flags.preserve,
        limit_kbits: flags.limit_kbps,
        pipelined: true,
        ahead: false,
    };
    let sink_options = SinkOptions {
        recursive: flags.recursive,
        preserve: flags.preserve,
        target_must_be_dir,
        inplace: flags.inplace,
        umask: fs::process_umask(),
        ..SinkOptions::default()
    };
    let sending = async {
        let (r, w) = tokio::io::split(source_end);
        let mut conn = Conn::new(r, w);
        let result = source::send(&mut conn, sources, source_options, &mut ClientReport::default()).await;
        let _ = conn.shutdown().await;
        result
    };
    let receiving = async {
        let (r, w) = tokio::io::split(sink_end);
        let mut conn = Conn::new(r, w);
        let result = sink::receive(&mut conn, target, &sink_options, &mut ClientReport::default()).await;
        let _ = conn.shutdown().await;
        result
    };
    let (sent, received) = tokio::join!(sending, receiving);
    // Errors on one side show up on the other as a refusal or a cut stream; each
    // was printed where it happened.
    let ok = |result: &Result<Summary, EngineError>, report_error: bool| match result {
        Ok(summary) => summary.ok(),
        Err(EngineError::Refused(_)) => false,
        Err(e) => {
            if report_error {
                eprintln!("{e}");
            }
            false
        }
    };
    let sink_ok = ok(&received, true);
    let source_ok = ok(&sent, sink_ok);
    sink_ok && source_ok
}
