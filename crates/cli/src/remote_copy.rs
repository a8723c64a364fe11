//! Copies that involve another host: uploads (local sources, remote target) and
//! downloads (remote sources, local target) over the native SSH client.
//!
//! The remote command is built by `rscp_proto::command` (paths quoted, never
//! handed raw to the remote shell); brace expressions in remote source paths
//! are expanded here, and every name the server sends is checked against what
//! was asked (CVE-2019-6111) unless `-T`.

use std::ffi::OsString;
use std::path::PathBuf;

use rscp_engine::sink::{self, SinkOptions};
use rscp_engine::source::{self, SourceOptions};
use rscp_engine::{Conn, EngineError, Summary, fs};
use rscp_proto::command::{self, Direction};
use rscp_proto::filter::{self, NameFilter};
use rscp_ssh::Client;

use crate::flags::Flags;
use crate::operand::{Operand, RemotePath};
use crate::report::ClientReport;
use crate::transport;

/// Runs a copy whose operands include a remote one; returns the exit status.
pub fn run(flags: &Flags, operands: Vec<Operand>) -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("rscp: cannot start: {e}");
            return 1;
        }
    };
    let Some((target, sources)) = operands.split_last() else { return 1 };
    let ok = runtime.block_on(async {
        match target {
            Operand::Remote(target) => {
                if sources.iter().any(|s| matches!(s, Operand::Remote(_))) {
                    eprintln!("rscp: copies between two remote hosts (-3, -R) are not supported yet");
                    return false;
                }
                let locals: Vec<PathBuf> = sources
                    .iter()
                    .filter_map(|s| match s {
                        Operand::Local(path) => Some(PathBuf::from(path)),
                        Operand::Remote(_) => None,
                    })
                    .collect();
                upload(flags, &locals, target).await
            }
            Operand::Local(target) => download_all(flags, sources, target).await,
        }
    });
    if ok { 0 } else { 1 }
}

fn debug(flags: &Flags, text: &str) {
    if flags.verbose > 0 {
        eprintln!("debug1: {text}");
    }
}

/// The flags the remote scp gets, as OpenSSH passes them.
fn remote_flags(flags: &Flags, target_dir: bool) -> command::Flags {
    command::Flags {
        verbose: flags.verbose > 0,
        recursive: flags.recursive,
        preserve: flags.preserve,
        target_dir,
    }
}

async fn open(flags: &Flags, remote: &RemotePath) -> Option<Client> {
    let route = match transport::resolve(flags, remote) {
        Ok(route) => route,
        Err(e) => {
            eprintln!("{e}");
            return None;
        }
    };
    let o = &route.options;
    debug(flags, &format!("Connecting to {} port {} as {}", o.hostname, o.port, o.user));
    match transport::connect(flags, &route).await {
        Ok(client) => Some(client),
        Err(e) => {
            eprintln!("{e}");
            None
        }
    }
}

/// Local sources to `host:path`: one connection, one `scp -t`.
async fn upload(flags: &Flags, sources: &[PathBuf], target: &RemotePath) -> bool {
    // OpenSSH 9.4+ checks local sources exist before connecting... only when all
    // fail would that matter; the engine reports each missing one in turn.
    let Some(client) = open(flags, target).await else { return false };
    let line =
        command::build("scp", Direction::Sink, &remote_flags(flags, sources.len() > 1), &[&target.path]);
    debug(flags, &format!("Sending command: {}", String::from_utf8_lossy(&line)));
    let remote = match client.exec(&line).await {
        Ok(remote) => remote,
        Err(e) => {
            eprintln!("{e}");
            return false;
        }
    };
    let (reader, writer, exit) = remote.into_parts();
    let mut conn = Conn::new(reader, writer);
    let options = SourceOptions { recursive: flags.recursive, preserve: flags.preserve };
    let mut report = ClientReport { show_remote: true };
    let result = source::send(&mut conn, sources, options, &mut report).await;
    let _ = conn.shutdown().await;
    drop(conn);
    let status = exit.wait().await;
    client.close().await;
    finished(result) && status.success()
}

/// Remote sources to a local target: one `scp -f` per source, one connection per
/// host (reused for consecutive sources on the same host).
async fn download_all(flags: &Flags, sources: &[Operand], target: &OsString) -> bool {
    let target = PathBuf::from(target);
    let several = sources.len() > 1;
    if several && !target.is_dir() {
        eprintln!("rscp: {}: Not a directory", fs::display_path(&target));
        return false;
    }
    let mut ok = true;
    // The open session and the destination it reaches (user, host, URI port).
    type Destination = (Option<String>, String, Option<u16>);
    let mut session: Option<(Client, Destination)> = None;
    for source in sources {
        let remote = match source {
            Operand::Remote(remote) => remote,
            Operand::Local(path) => {
                // A local source among remote ones: copy it like a local copy.
                ok &= crate::local::copy(flags, &[PathBuf::from(path)], &target, several).await;
                continue;
            }
        };
        let key = (remote.user.clone(), remote.host.clone(), remote.port);
        if session.as_ref().is_none_or(|(_, k)| *k != key) {
            if let Some((old, _)) = session.take() {
                old.close().await;
            }
            match open(flags, remote).await {
                Some(client) => session = Some((client, key)),
                None => {
                    ok = false;
                    continue;
                }
            }
        }
        if let Some((client, _)) = &session {
            ok &= download(flags, client, remote, &target, several).await;
        }
    }
    if let Some((client, _)) = session {
        client.close().await;
    }
    ok
}

async fn download(
    flags: &Flags,
    client: &Client,
    remote: &RemotePath,
    target: &std::path::Path,
    several: bool,
) -> bool {
    // Braces are expanded here, so the remote shell never needs to.
    let paths = match filter::expand_braces(&remote.path) {
        Ok(paths) => paths,
        Err(e) => {
            eprintln!("rscp: {e}");
            return false;
        }
    };
    let paths: Vec<&[u8]> = paths.iter().map(Vec::as_slice).collect();
    let filter = if flags.no_name_check {
        None
    } else {
        match NameFilter::from_request(&remote.path) {
            Ok(filter) => Some(filter),
            Err(e) => {
                eprintln!("rscp: {e}");
                return false;
            }
        }
    };
    let line = command::build("scp", Direction::Source, &remote_flags(flags, false), &paths);
    debug(flags, &format!("Sending command: {}", String::from_utf8_lossy(&line)));
    let remote = match client.exec(&line).await {
        Ok(remote) => remote,
        Err(e) => {
            eprintln!("{e}");
            return false;
        }
    };
    let (reader, writer, exit) = remote.into_parts();
    let mut conn = Conn::new(reader, writer);
    let options = SinkOptions {
        recursive: flags.recursive,
        preserve: flags.preserve,
        target_must_be_dir: several,
        inplace: flags.inplace,
        umask: fs::process_umask(),
        filter,
        ..SinkOptions::default()
    };
    let mut report = ClientReport { show_remote: true };
    let result = sink::receive(&mut conn, target, &options, &mut report).await;
    let _ = conn.shutdown().await;
    drop(conn);
    let status = exit.wait().await;
    finished(result) && status.success()
}

/// Prints why a session broke off (what OpenSSH prints locally), except
/// refusals, which the engine already reported.
fn report_failure(error: &EngineError) {
    if !matches!(error, EngineError::Refused(_)) {
        eprintln!("{error}");
    }
}

fn finished(result: Result<Summary, EngineError>) -> bool {
    match result {
        Ok(summary) => summary.ok(),
        Err(e) => {
            report_failure(&e);
            false
        }
    }
}
