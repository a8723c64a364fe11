//! Copies that involve another host: uploads (local sources, remote target) and
//! downloads (remote sources, local target) over the native SSH client.
//!
//! The remote command is built by `rscp_proto::command` (paths quoted, never
//! handed raw to the remote shell); brace expressions in remote source paths
//! are expanded here, and every name the server sends is checked against what
//! was asked (CVE-2019-6111) unless `-T`.

use std::ffi::OsString;
use std::path::PathBuf;

use rscp_engine::sftp::{self, SecondConnection, SftpOptions};
use rscp_engine::sink::{self, SinkOptions};
use rscp_engine::source::{self, SourceOptions};
use rscp_engine::{Conn, EngineError, Observer, Summary, fs};
use rscp_proto::command::{self, Direction};
use rscp_proto::filter::{self, NameFilter};
use rscp_proto::operand::{Operand, RemotePath};
use rscp_proto::sink::SinkError;
use rscp_proto::source::SourceError;
use rscp_ssh::program::{self, ProgramCall};
use rscp_ssh::remote::{ExitWaiter, RemoteReader, RemoteWriter};
use rscp_ssh::{Client, Remote};

use crate::flags::Flags;
use crate::meter::{self, Meter};
use crate::report::{ClientReport, Logged};
use crate::transport;

/// Runs a copy whose operands include a remote one; returns the exit status.
pub fn run(progname: &str, flags: &Flags, operands: Vec<Operand>) -> i32 {
    let Some(runtime) = crate::runtime("rscp") else { return 1 };
    let Some((target, sources)) = operands.split_last() else { return 1 };
    let two_remotes =
        matches!(target, Operand::Remote(_)) && sources.iter().any(|s| matches!(s, Operand::Remote(_)));
    if let Operand::Remote(RemotePath { port: Some(_), .. }) = target
        && two_remotes
        && flags.remote_direct
    {
        // A fatal() in OpenSSH: "\r\n" and exit 255, before connecting.
        eprint!("{progname}: target port not supported with two remote hosts and the -R option\r\n");
        return 255;
    }
    if flags.sftp && two_remotes {
        eprintln!(
            "{progname}: SFTP mode (-s) does not copy between two remote hosts yet; leave -s out for this copy"
        );
        return 1;
    }
    let ok = runtime.block_on(async {
        match target {
            Operand::Remote(target) if two_remotes => remote_to_remote(flags, sources, target).await,
            Operand::Remote(target) => {
                let locals: Vec<PathBuf> = sources
                    .iter()
                    .filter_map(|s| match s {
                        Operand::Local(path) => Some(PathBuf::from(path)),
                        Operand::Remote(_) => None,
                    })
                    .collect();
                if flags.sftp {
                    upload_sftp(progname, flags, &locals, target).await
                } else {
                    upload(flags, &locals, target).await
                }
            }
            Operand::Local(target) => download_all(progname, flags, sources, target).await,
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

/// Where remote commands run: the native SSH client, or an ssh program (`-S`)
/// started once per command, as OpenSSH does.
enum Session {
    Native(Client),
    Program { program: OsString, call: ProgramCall },
}

impl Session {
    async fn exec(&self, command: &[u8]) -> Result<Remote, String> {
        match self {
            Session::Native(client) => client.exec(command).await.map_err(|e| e.to_string()),
            Session::Program { program, call } => program::spawn(program, call, command)
                .map_err(|e| format!("rscp: {}: {}", program.to_string_lossy(), fs::errno_text(&e))),
        }
    }

    /// Starts the `sftp` subsystem (an ssh program gets `-s` and `sftp`).
    async fn sftp(&self) -> Result<Remote, String> {
        match self {
            Session::Native(client) => client.subsystem("sftp").await.map_err(|e| e.to_string()),
            Session::Program { program, call } => {
                let call = ProgramCall { subsystem: true, ..call.clone() };
                program::spawn(program, &call, b"sftp")
                    .map_err(|e| format!("rscp: {}: {}", program.to_string_lossy(), fs::errno_text(&e)))
            }
        }
    }

    async fn close(self) {
        if let Session::Native(client) = self {
            client.close().await;
        }
    }
}

async fn open(flags: &Flags, remote: &RemotePath) -> Option<Session> {
    open_hop(flags, remote, false).await
}

/// [`open`]; `second_hop` is the target of a `-3` relay, whose ssh program gets
/// `-oBatchMode=yes` as with OpenSSH (two ssh processes cannot share the
/// terminal for prompts; the native client prompts one host at a time).
async fn open_hop(flags: &Flags, remote: &RemotePath, second_hop: bool) -> Option<Session> {
    if let Some(program) = &flags.program {
        let call = ProgramCall {
            ssh_args: flags.ssh_args.clone(),
            port: remote.port.or(flags.port),
            user: remote.user.clone(),
            batch_mode: second_hop,
            subsystem: false,
            host: remote.host.clone(),
        };
        return Some(Session::Program { program: program.clone(), call });
    }
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
        Ok(client) => Some(Session::Native(client)),
        Err(e) => {
            eprintln!("{e}");
            None
        }
    }
}

/// Runs `command` in the session, printing why not if it cannot start.
async fn exec(flags: &Flags, session: &Session, command: &[u8]) -> Option<Remote> {
    debug(flags, &format!("Sending command: {}", String::from_utf8_lossy(command)));
    match session.exec(command).await {
        Ok(remote) => Some(remote),
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
    let Some(session) = open(flags, target).await else {
        // What OpenSSH's scp adds when its ssh could not start the sink.
        eprintln!("lost connection");
        return false;
    };
    let line =
        command::build("scp", Direction::Sink, &remote_flags(flags, sources.len() > 1), &[&target.path]);
    let options = SourceOptions {
        recursive: flags.recursive,
        preserve: flags.preserve,
        limit_kbits: flags.limit_kbps,
        pipelined: true,
        ahead: pipelining(),
    };
    let mut report = observer(flags);
    let ok = transfer(flags, &session, &line, async |conn| {
        source::send(conn, sources, options, report.as_mut()).await
    })
    .await;
    session.close().await;
    ok
}

/// The engine's options for an SFTP copy, from the flags.
fn sftp_options(flags: &Flags) -> SftpOptions {
    SftpOptions {
        recursive: flags.recursive,
        preserve: flags.preserve,
        limit_kbits: flags.limit_kbps,
        inplace: flags.inplace,
    }
}

/// `-s`: local sources to `host:path` over the server's SFTP subsystem.
async fn upload_sftp(progname: &str, flags: &Flags, sources: &[PathBuf], target: &RemotePath) -> bool {
    let Some(session) = open(flags, target).await else {
        eprintln!("lost connection");
        return false;
    };
    debug(flags, "Sending subsystem: sftp");
    let remote = match session.sftp().await {
        Ok(remote) => remote,
        Err(e) => {
            eprintln!("{e}");
            session.close().await;
            return false;
        }
    };
    let (reader, writer, exit) = remote.into_parts();
    let mut conn = Conn::new(reader, writer);
    let mut second_client = None;
    let second = second_connection(flags, &session, target, &mut second_client);
    let options = sftp_options(flags);
    let mut report = Logged { inner: observer(flags), progname: progname.to_owned() };
    let result = sftp::upload(&mut conn, second, sources, &target.path, options, &mut report).await;
    let _ = conn.shutdown().await;
    drop(conn);
    let status = exit.wait().await;
    if let Some(client) = second_client {
        client.close().await;
    }
    session.close().await;
    finished(result) && status.success()
}

/// A second connection's SFTP stream for large files (`rscp_engine::sftp`),
/// opened when the engine first meets one: only with the native client, without
/// `-l`, unless `RSCP_PARALLEL=0`; and only if it logs in without asking
/// anything (batch mode) and without a word (quiet). Otherwise the copy runs on
/// one connection, as it would have. The client lands in `client`, to be closed
/// after the copy.
fn second_connection<'a>(
    flags: &Flags,
    session: &Session,
    target: &RemotePath,
    client: &'a mut Option<Client>,
) -> SecondConnection<'a, RemoteReader, RemoteWriter> {
    if !matches!(session, Session::Native(_))
        || flags.limit_kbps.is_some()
        || std::env::var_os("RSCP_PARALLEL").is_some_and(|v| v == "0")
    {
        return SecondConnection::none();
    }
    let quiet = Flags { batch: true, quiet: true, ..flags.clone() };
    let target = target.clone();
    SecondConnection::on_demand(async move {
        let route = transport::resolve(&quiet, &target).ok()?;
        let opened = transport::connect(&quiet, &route).await.ok()?;
        match opened.subsystem("sftp").await {
            Ok(remote) => {
                // `-q` silences the meter and messages, not `-v`'s debug lines.
                debug(&quiet, "Opened a second connection for large files");
                let (reader, writer, _exit) = remote.into_parts();
                *client = Some(opened);
                Some(Conn::new(reader, writer))
            }
            Err(_) => {
                opened.close().await;
                None
            }
        }
    })
}

/// Remote sources to a local target: one `scp -f` per source, one connection per
/// host (reused for consecutive sources on the same host).
async fn download_all(progname: &str, flags: &Flags, sources: &[Operand], target: &OsString) -> bool {
    let target = PathBuf::from(target);
    let several = sources.len() > 1;
    // OpenSSH's verifydir(): several sources need an existing directory.
    if several {
        match std::fs::metadata(&target) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                eprintln!("{}: Not a directory", fs::display_path(&target));
                return false;
            }
            Err(e) => {
                eprintln!("{}", fs::path_error(&target, &e));
                return false;
            }
        }
    }
    let mut ok = true;
    // The open session and the destination it reaches (user, host, URI port).
    type Destination = (Option<String>, String, Option<u16>);
    let mut session: Option<(Session, Destination)> = None;
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
                Some(opened) => session = Some((opened, key)),
                None => {
                    ok = false;
                    continue;
                }
            }
        }
        if let Some((opened, _)) = &session {
            ok &= if flags.sftp {
                download_sftp(progname, flags, opened, remote, &target).await
            } else {
                download(flags, opened, remote, &target, several).await
            };
        }
    }
    if let Some((opened, _)) = session {
        opened.close().await;
    }
    ok
}

/// `-s`: one remote source (globbed by the engine) over the server's SFTP subsystem.
async fn download_sftp(
    progname: &str,
    flags: &Flags,
    session: &Session,
    remote: &RemotePath,
    target: &std::path::Path,
) -> bool {
    debug(flags, "Sending subsystem: sftp");
    let (reader, writer, exit) = match session.sftp().await {
        Ok(remote) => remote.into_parts(),
        Err(e) => {
            eprintln!("{e}");
            return false;
        }
    };
    let mut conn = Conn::new(reader, writer);
    let options = sftp_options(flags);
    let mut report = Logged { inner: observer(flags), progname: progname.to_owned() };
    let sources = [remote.path.clone()];
    let result = sftp::download(&mut conn, &sources, target, options, &mut report).await;
    let _ = conn.shutdown().await;
    drop(conn);
    let status = exit.wait().await;
    finished(result) && status.success()
}

async fn download(
    flags: &Flags,
    session: &Session,
    remote: &RemotePath,
    target: &std::path::Path,
    several: bool,
) -> bool {
    let Some(line) = source_command(flags, remote) else { return false };
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
    let options = SinkOptions {
        recursive: flags.recursive,
        preserve: flags.preserve,
        target_must_be_dir: several,
        inplace: flags.inplace,
        limit_kbits: flags.limit_kbps,
        umask: fs::process_umask(),
        filter,
        reply_credit: download_reply_credit(),
        ..SinkOptions::default()
    };
    let mut report = observer(flags);
    transfer(flags, session, &line, async |conn| sink::receive(conn, target, &options, report.as_mut()).await)
        .await
}

/// Downloads pipeline their replies (one round trip per file saved, twice per
/// small file); uploads send small files ahead. `RSCP_PIPELINE=0` goes back to
/// OpenSSH's lockstep for both, for a server whose source would not take
/// replies early, or a copy that must go on past a refused file.
fn pipelining() -> bool {
    !matches!(std::env::var_os("RSCP_PIPELINE"), Some(value) if value == "0")
}

fn download_reply_credit() -> usize {
    if pipelining() { sink::DOWNLOAD_REPLY_CREDIT } else { 0 }
}

/// Runs `line` in the session and `copy` over its stream, then waits for the
/// remote command; true if both went well. If the remote shell printed a banner
/// where the protocol's first byte belongs, runs it once more skipping it.
async fn transfer(
    flags: &Flags,
    session: &Session,
    line: &[u8],
    mut copy: impl AsyncFnMut(&mut Conn<RemoteReader, RemoteWriter>) -> Result<Summary, EngineError>,
) -> bool {
    let mut skip_banner = false;
    loop {
        let Some((mut conn, exit)) = start(flags, session, line, skip_banner).await else { return false };
        let result = copy(&mut conn).await;
        let _ = conn.shutdown().await;
        drop(conn);
        let status = exit.wait().await;
        if !skip_banner && banner(&result) {
            skip_banner = true;
            continue;
        }
        return finished(result) && status.success();
    }
}

/// What the user sees: errors on stderr, and OpenSSH's progress meter on stdout
/// when it is a terminal and `-q` was not given.
fn observer(flags: &Flags) -> Box<dyn Observer> {
    let report = ClientReport { show_remote: true };
    if meter::wanted(flags.quiet) { Box::new(Meter::new(report)) } else { Box::new(report) }
}

/// True if the remote shell printed text where the protocol's first byte
/// belongs: a login banner (spec §6), which OpenSSH reports as an error.
fn banner(result: &Result<Summary, EngineError>) -> bool {
    matches!(
        result,
        Err(EngineError::Sink(SinkError::ShellMessage(_)) | EngineError::Source(SourceError::ShellMessage(_)))
    )
}

/// The longest banner skipped before giving up.
const MAX_BANNER: usize = 64 * 1024;

/// Runs `line` and returns the protocol stream. With `skip_banner`, the command
/// first prints a unique marker line, and everything before it (what the login
/// shell printed) is read, shown in one escaped warning line, and dropped.
async fn start(
    flags: &Flags,
    session: &Session,
    line: &[u8],
    skip_banner: bool,
) -> Option<(Conn<RemoteReader, RemoteWriter>, ExitWaiter)> {
    if !skip_banner {
        let (reader, writer, exit) = exec(flags, session, line).await?.into_parts();
        return Some((Conn::new(reader, writer), exit));
    }
    let nonce =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let marker = format!("rscp-start-{}-{nonce:x}", std::process::id());
    let mut wrapped = format!("printf '%s\\n' {marker}; exec ").into_bytes();
    wrapped.extend_from_slice(line);
    let (mut reader, writer, exit) = exec(flags, session, &wrapped).await?.into_parts();
    let mut seen = Vec::new();
    let needle = format!("{marker}\n").into_bytes();
    let found = loop {
        if let Some(at) = seen.windows(needle.len()).position(|w| w == needle.as_slice()) {
            break Some(at);
        }
        if seen.len() > MAX_BANNER {
            break None;
        }
        let mut chunk = [0u8; 4096];
        match tokio::io::AsyncReadExt::read(&mut reader, &mut chunk).await {
            Ok(0) | Err(_) => break None,
            Ok(n) => seen.extend_from_slice(&chunk[..n]),
        }
    };
    let Some(at) = found else {
        eprintln!("rscp: the remote shell printed text before scp and no start marker followed");
        return None;
    };
    let text = String::from_utf8_lossy(&seen[..at]);
    if !flags.quiet {
        eprintln!(
            "rscp: warning: skipped what the remote shell printed before scp started: {}",
            rscp_proto::display::escape(text.trim_end().as_bytes())
        );
    }
    Some((Conn::with_buffered(reader, writer, &seen[at + needle.len()..]), exit))
}

/// Remote sources to a remote target: through this host (`-3`, the default, as
/// OpenSSH 8.7+), or directly (`-R`: the source host runs scp itself).
async fn remote_to_remote(flags: &Flags, sources: &[Operand], target: &RemotePath) -> bool {
    let several = sources.len() > 1;
    let mut ok = true;
    for source in sources {
        ok &= match source {
            Operand::Local(path) => upload(flags, &[PathBuf::from(path)], target).await,
            Operand::Remote(source) if flags.remote_direct => direct(flags, source, target, several).await,
            Operand::Remote(source) => relay(flags, source, target, several).await,
        };
    }
    ok
}

/// The `scp -f` command for a remote source. Braces are expanded here, so the
/// remote shell never needs to; an unbalanced brace is reported (`None`).
fn source_command(flags: &Flags, remote: &RemotePath) -> Option<Vec<u8>> {
    let paths = match filter::expand_braces(&remote.path) {
        Ok(paths) => paths,
        Err(e) => {
            eprintln!("rscp: {e}");
            return None;
        }
    };
    let paths: Vec<&[u8]> = paths.iter().map(Vec::as_slice).collect();
    Some(command::build("scp", Direction::Source, &remote_flags(flags, false), &paths))
}

/// `-3`: `scp -f` on the source host and `scp -t` on the target host, with every
/// byte relayed through here, as OpenSSH's legacy relay does. The target's sink
/// applies its own name rules; no pattern check is possible without parsing.
async fn relay(flags: &Flags, source: &RemotePath, target: &RemotePath, several: bool) -> bool {
    let Some(source_line) = source_command(flags, source) else { return false };
    let Some(to) = open_hop(flags, target, true).await else { return false };
    let Some(from) = open(flags, source).await else {
        to.close().await;
        return false;
    };
    let sink_line = command::build("scp", Direction::Sink, &remote_flags(flags, several), &[&target.path]);
    let ok = match (exec(flags, &to, &sink_line).await, exec(flags, &from, &source_line).await) {
        (Some(sink), Some(source_end)) => pump(sink, source_end).await,
        _ => false,
    };
    to.close().await;
    from.close().await;
    ok
}

/// Relays bytes both ways between a remote sink and a remote source until both
/// are done; true if both exited 0.
async fn pump(sink: Remote, source: Remote) -> bool {
    use tokio::io::AsyncWriteExt;
    let (mut sink_reader, mut sink_writer, sink_exit) = sink.into_parts();
    let (mut source_reader, mut source_writer, source_exit) = source.into_parts();
    let forward = async {
        let copied = tokio::io::copy(&mut source_reader, &mut sink_writer).await;
        let _ = sink_writer.shutdown().await;
        copied
    };
    let backward = async {
        let copied = tokio::io::copy(&mut sink_reader, &mut source_writer).await;
        let _ = source_writer.shutdown().await;
        copied
    };
    let (forward, backward) = tokio::join!(forward, backward);
    drop((sink_reader, sink_writer, source_reader, source_writer));
    let (sink_status, source_status) = tokio::join!(sink_exit.wait(), source_exit.wait());
    forward.is_ok() && backward.is_ok() && sink_status.success() && source_status.success()
}

/// `-R`: the source host copies to the target itself: `scp [flags] SRC
/// [user@]host:TARGET` runs there, every word quoted (OpenSSH pastes them raw).
async fn direct(flags: &Flags, source: &RemotePath, target: &RemotePath, several: bool) -> bool {
    // OpenSSH applies only a URI port to the source host here, never -P.
    let first_hop = Flags { port: None, ..flags.clone() };
    let Some(session) = open(&first_hop, source).await else { return false };
    let line = direct_command(flags, source, target, several);
    let Some(remote) = exec(flags, &session, &line).await else {
        session.close().await;
        return false;
    };
    let (mut reader, writer, exit) = remote.into_parts();
    drop(writer);
    // The remote scp's own output (its progress meter, if any) is passed on.
    let _ = tokio::io::copy(&mut reader, &mut tokio::io::stdout()).await;
    let status = exit.wait().await;
    session.close().await;
    status.success()
}

/// `scp[ -v][ -r][ -p][ -d] SRC [user@]host:TARGET`, as OpenSSH builds it for
/// `-R`, with both operands quoted for the remote shell.
fn direct_command(flags: &Flags, source: &RemotePath, target: &RemotePath, several: bool) -> Vec<u8> {
    let mut line = b"scp".to_vec();
    for (set, flag) in
        [(flags.verbose > 0, " -v"), (flags.recursive, " -r"), (flags.preserve, " -p"), (several, " -d")]
    {
        if set {
            line.extend_from_slice(flag.as_bytes());
        }
    }
    let source_path: &[u8] = if source.path.is_empty() { b"." } else { &source.path };
    let mut destination = Vec::new();
    if let Some(user) = &target.user {
        destination.extend_from_slice(user.as_bytes());
        destination.push(b'@');
    }
    if target.host.contains(':') {
        destination.extend_from_slice(format!("[{}]", target.host).as_bytes());
    } else {
        destination.extend_from_slice(target.host.as_bytes());
    }
    destination.push(b':');
    destination.extend_from_slice(&target.path);
    line.extend_from_slice(b" --");
    for word in [source_path, &destination] {
        line.push(b' ');
        line.extend_from_slice(&command::quote_path(word));
    }
    line
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
