//! `rscp`: secure copy, a drop-in replacement for OpenSSH's `scp`.
//!
//! Thin: parse flags, pick the mode (remote end, local copy, remote copy), run
//! it, exit with OpenSSH's status codes (0 ok, 1 any error, 255 fatal usage).

mod flags;
mod local;
mod meter;
mod prompt;
mod remote_copy;
mod remote_end;
mod report;
mod stdio;
mod transport;

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use flags::FlagError;
use rscp_proto::operand;

fn main() {
    rscp_engine::heap::keep_freed_memory();
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_else(|| OsString::from("rscp"));
    let progname = Path::new(&argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "rscp".into());
    let args: Vec<OsString> = args.collect();
    std::process::exit(run(&progname, &args));
}

fn run(progname: &str, args: &[OsString]) -> i32 {
    let flags = match flags::parse(args) {
        Ok(flags) => flags,
        Err(FlagError::Usage(message)) => {
            if let Some(message) = message {
                // OpenSSH logs these through its log module: "\r\n" line end.
                eprint!("{progname}: {message}\r\n");
            }
            eprint!("{}", flags::USAGE);
            return 1;
        }
        Err(FlagError::Help) => {
            print!("{}{}", flags::USAGE, flags::HELP);
            return 0;
        }
        Err(FlagError::Version) => {
            println!("rscp {}", env!("CARGO_PKG_VERSION"));
            return 0;
        }
        Err(FlagError::Fatal(message)) => {
            // OpenSSH's fatal() logs to stderr with "\r\n" line ends.
            eprint!("{progname}: {message}\r\n");
            return 255;
        }
    };
    if let Some(end) = flags.remote_end {
        return remote_end::run(&flags, end);
    }
    if flags.operands.len() < 2 {
        eprint!("{}", flags::USAGE);
        return 1;
    }
    if flags.sftp_server.is_some() || !flags.sftp_options.is_empty() {
        eprintln!("{progname}: SFTP mode options -D and -X are not supported yet");
        return 1;
    }
    if flags.operands.iter().any(|o| operand::is_remote(o.as_bytes())) {
        // As OpenSSH's okname(): a bad user name skips that operand (the target's
        // ends the run); the message has no program name.
        let mut operands = Vec::with_capacity(flags.operands.len());
        let mut skipped = false;
        let last = flags.operands.len() - 1;
        for (i, arg) in flags.operands.iter().enumerate() {
            match operand::parse(arg) {
                Ok(parsed) => operands.push(parsed),
                Err(e) => {
                    eprintln!("{e}");
                    if i == last {
                        return 1;
                    }
                    skipped = true;
                }
            }
        }
        if operands.len() < 2 {
            return 1;
        }
        let status = remote_copy::run(progname, &flags, operands);
        return if skipped && status == 0 { 1 } else { status };
    }
    local::run(&flags)
}

/// The single-threaded runtime every mode runs on (one copy per process); on
/// failure says why, prefixed with `progname`.
fn runtime(progname: &str) -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => Some(runtime),
        Err(e) => {
            eprintln!("{progname}: cannot start: {e}");
            None
        }
    }
}
