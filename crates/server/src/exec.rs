//! Exec requests. The only command served is scp's remote end,
//! `scp [-v] [-r] [-p] [-d] -t|-f [--] PATH…`, run in-process by the engine under
//! the confined root; nothing is ever handed to a shell. What a shell would have
//! done with the paths is done here, inside the root: `~` is the root, and globs
//! are matched against the root's entries.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rscp_engine::sink::{self, SinkOptions};
use rscp_engine::source::{self, SourceOptions};
use rscp_engine::{Conn, Observer, Root};
use rscp_proto::command::{self, Direction, RemoteCommand, RemotePath};
use rscp_proto::{FileName, display, filter, wire};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

/// Most paths one glob may expand to (a shell would have no limit; a server needs one).
const MAX_GLOB_MATCHES: usize = 100_000;

/// Parses an exec request; the error is the message the client is shown.
pub fn parse(data: &[u8]) -> Result<RemoteCommand, String> {
    command::parse(data).map_err(|e| match e {
        command::CommandError::NotScp(_) | command::CommandError::Empty => {
            format!("rscpd: this server only copies files (scp, sftp); it runs no commands: {e}")
        }
        _ => format!("rscpd: refused: {e}"),
    })
}

/// The umask applied to files and directories received without `-p`.
const UMASK: u32 = 0o022;

/// What one scp session needs besides its streams.
#[derive(Debug, Clone)]
pub struct ScpSession {
    pub root: Root,
    pub read_only: bool,
    /// For the log: `user@peer`.
    pub who: String,
}

/// Runs `command` over the channel's streams; returns the exit status to send.
/// `stderr` carries the `-v` trace the client asked for.
pub async fn run_scp<R, W>(
    reader: R,
    writer: W,
    stderr: mpsc::UnboundedSender<Vec<u8>>,
    command: &RemoteCommand,
    session: &ScpSession,
) -> u32
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut conn = Conn::new(reader, writer);
    let mut log = SessionLog {
        who: &session.who,
        direction: command.direction,
        verbose: command.flags.verbose,
        stderr,
        current: None,
    };
    let flags = &command.flags;
    let summary = match command.direction {
        Direction::Sink => {
            let refusal = if session.read_only {
                Some("read-only server".to_string())
            } else if command.paths.len() != 1 {
                Some("ambiguous target".to_string())
            } else {
                None
            };
            let target = command.paths.first().map(|path| resolve(&session.root, path));
            match (refusal, target) {
                (None, Some(Ok(target))) => {
                    let options = SinkOptions {
                        recursive: flags.recursive,
                        preserve: flags.preserve,
                        target_must_be_dir: flags.target_dir,
                        umask: UMASK,
                        ..SinkOptions::default()
                    };
                    sink::receive_in(&mut conn, &session.root, &target[0], &options, &mut log).await
                }
                (Some(text), _) | (None, Some(Err(text))) => refuse(&mut conn, &text, &mut log).await,
                (None, None) => refuse(&mut conn, "ambiguous target", &mut log).await,
            }
        }
        Direction::Source => {
            let mut operands = Vec::new();
            let mut failed = None;
            for path in &command.paths {
                match resolve(&session.root, path) {
                    Ok(found) => operands.extend(found),
                    Err(text) => failed = Some(text),
                }
            }
            match failed {
                Some(text) => refuse(&mut conn, &text, &mut log).await,
                None => {
                    let options = SourceOptions {
                        recursive: flags.recursive,
                        preserve: flags.preserve,
                        limit_kbits: None,
                        pipelined: true,
                        ahead: false,
                    };
                    source::send_in(&mut conn, &session.root, &operands, options, &mut log).await
                }
            }
        }
    };
    // Flushed, but no EOF yet: the caller sends the exit status first, as sshd
    // does (a client whose input has ended closes the channel on EOF).
    let _ = conn.flush().await;
    match summary {
        Ok(summary) if summary.ok() => 0,
        Ok(summary) => {
            tracing::info!("{}: scp ended with {} error(s)", session.who, summary.errors);
            1
        }
        Err(e) => {
            tracing::info!("{}: scp ended: {e}", session.who);
            1
        }
    }
}

/// Tells the peer why nothing happens, the way a failing remote scp does.
async fn refuse<R, W>(
    conn: &mut Conn<R, W>,
    text: &str,
    log: &mut SessionLog<'_>,
) -> Result<rscp_engine::Summary, rscp_engine::EngineError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    log.local_error(text);
    let mut line = Vec::new();
    wire::encode_error(text, &mut line);
    conn.send_payload(&line).await?;
    Err(rscp_engine::EngineError::Refused(text.to_string()))
}

/// The paths a command word names inside the root: `~` is the root itself,
/// `~user` is refused, and a glob expands to the matching entries (to itself when
/// nothing matches, as a shell leaves it).
fn resolve(root: &Root, path: &RemotePath) -> Result<Vec<PathBuf>, String> {
    let literal = match &path.tilde {
        Some(user) if !user.is_empty() => {
            return Err(format!("~{}: no such user here", display::escape(user)));
        }
        Some(_) => [b"/".as_slice(), &path.literal].concat(),
        None => path.literal.clone(),
    };
    let Some(pattern) = &path.pattern else {
        return Ok(vec![PathBuf::from(OsStr::from_bytes(&literal))]);
    };
    let pattern = match &path.tilde {
        Some(_) => [b"/".as_slice(), pattern].concat(),
        None => pattern.clone(),
    };
    let matches = expand_glob(root, &pattern);
    if matches.is_empty() {
        return Ok(vec![PathBuf::from(OsStr::from_bytes(&literal))]);
    }
    Ok(matches)
}

/// Expands an fnmatch pattern (quoted glob bytes backslash-escaped) component by
/// component under `root`, sorted like a shell's expansion.
fn expand_glob(root: &Root, pattern: &[u8]) -> Vec<PathBuf> {
    let absolute = pattern.first() == Some(&b'/');
    let mut found = vec![PathBuf::from(if absolute { "/" } else { "" })];
    for component in pattern.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
        let mut next = Vec::new();
        for base in &found {
            if !filter::has_glob(component) {
                next.push(base.join(OsStr::from_bytes(&filter::unescape(component))));
                continue;
            }
            let dir = if base.as_os_str().is_empty() { Path::new(".") } else { base.as_path() };
            let Ok(entries) = root.read_dir(dir) else { continue };
            let mut names: Vec<_> = entries
                .filter_map(Result::ok)
                .filter(|name| {
                    let bytes = name.as_bytes();
                    // A leading dot is matched only by a leading dot, as in a shell.
                    (component.first() == Some(&b'.') || bytes.first() != Some(&b'.'))
                        && filter::fnmatch(component, bytes)
                })
                .collect();
            names.sort();
            next.extend(names.into_iter().map(|name| base.join(name)));
            if next.len() > MAX_GLOB_MATCHES {
                break;
            }
        }
        found = next;
        found.truncate(MAX_GLOB_MATCHES);
    }
    found.retain(|path| !path.as_os_str().is_empty() && root.symlink_metadata(path).is_ok());
    found
}

/// The engine's observer for one session: files and errors to the server log,
/// the `-v` trace to the client's stderr.
struct SessionLog<'a> {
    who: &'a str,
    direction: Direction,
    verbose: bool,
    stderr: mpsc::UnboundedSender<Vec<u8>>,
    current: Option<(String, u64)>,
}

impl Observer for SessionLog<'_> {
    fn local_error(&mut self, text: &str) {
        tracing::warn!("{}: {}", self.who, text);
    }

    fn file_started(&mut self, name: &FileName, size: u64) {
        self.current = Some((name.display(), size));
    }

    fn file_finished(&mut self, ok: bool) {
        if let Some((name, size)) = self.current.take() {
            let verb = match self.direction {
                Direction::Sink => "received",
                Direction::Source => "sent",
            };
            if ok {
                tracing::info!("{}: {verb} {name} ({size} bytes)", self.who);
            } else {
                tracing::warn!("{}: not {verb} completely: {name} ({size} bytes)", self.who);
            }
        }
    }

    fn debug(&mut self, line: &str) {
        if self.verbose {
            let _ = self.stderr.send(format!("{line}\n").into_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote_path(word: &str) -> RemotePath {
        let line = format!("scp -f {word}");
        command::parse(line.as_bytes()).expect("parses").paths.remove(0)
    }

    #[test]
    fn other_commands_are_refused_with_a_clear_message() {
        let text = parse(b"ls -la").expect_err("ls is refused");
        assert!(text.contains("only copies files"), "{text}");
        assert!(parse(b"scp -t -S /bin/sh x").is_err());
        assert!(parse(b"scp -t x; rm -rf /").is_err());
        assert!(parse(b"scp -v -r -p -t -- /up").is_ok());
    }

    #[test]
    fn tilde_is_the_root_and_globs_match_inside() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in ["a.txt", "b.txt", ".hidden.txt", "c.bin"] {
            std::fs::write(dir.path().join(name), name).expect("write");
        }
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        std::fs::write(dir.path().join("sub/x.txt"), "x").expect("write");
        let cap = cap_std::fs::Dir::open_ambient_dir(dir.path(), cap_std::ambient_authority()).expect("open");
        let root = Root::beneath(cap);
        let names = |word: &str| -> Vec<String> {
            resolve(&root, &remote_path(word))
                .expect("resolves")
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(names("*.txt"), ["a.txt", "b.txt"]);
        assert_eq!(names("/*.txt"), ["/a.txt", "/b.txt"]);
        assert_eq!(names("~/*.txt"), ["/a.txt", "/b.txt"]);
        assert_eq!(names("'*.txt'"), ["*.txt"], "quoted: literal");
        assert_eq!(names("*/x.txt"), ["sub/x.txt"]);
        assert_eq!(names("*.none"), ["*.none"], "no match stays literal");
        assert_eq!(names(".h*"), [".hidden.txt"]);
        assert_eq!(names("~"), ["/"]);
        assert!(resolve(&root, &remote_path("~root/x")).is_err());
        // Globs never see outside the root.
        assert_eq!(names("../*"), ["../*"]);
    }
}
