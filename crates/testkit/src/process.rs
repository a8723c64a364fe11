//! Finding programs, skipping or failing when they are missing, bounded runs.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::peers_required;

/// Directories searched after `PATH`: `sshd` lives in `/usr/sbin`, which
/// is not on every user's `PATH`.
const SBIN_DIRS: &[&str] = &["/usr/sbin", "/usr/local/sbin", "/sbin"];

/// The full path of `program`: itself if it contains a `/`, else the first
/// executable file of that name on `PATH` or in the usual `sbin` directories.
pub fn find_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let path = PathBuf::from(program);
        return is_executable(&path).then_some(path);
    }
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path_var)
        .chain(SBIN_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    path.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

/// True if `program` is installed (see [`find_program`]). If not: with
/// `RSCP_REQUIRE_PEERS=1` panic, else print a skip note and return false.
pub fn require(program: &str) -> bool {
    if find_program(program).is_some() {
        return true;
    }
    if peers_required() {
        panic!("RSCP_REQUIRE_PEERS=1 but {program} is not installed");
    }
    eprintln!("skipping: {program} is not installed (set RSCP_REQUIRE_PEERS=1 to fail instead)");
    false
}

/// [`require`] for the whole OpenSSH tool set the testkit drives:
/// `sshd`, `ssh`, `ssh-keygen`, `ssh-agent`, `ssh-add`.
pub fn require_openssh() -> bool {
    ["sshd", "ssh", "ssh-keygen", "ssh-agent", "ssh-add"].iter().all(|p| require(p))
}

/// Runs `command` to completion with stdout and stderr captured (stdin is
/// left as configured; the default for `output` is null here too). Past
/// `timeout` the child is killed and this panics with what it printed.
pub fn output_timeout(command: &mut Command, timeout: Duration) -> Output {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                let out = join(stdout);
                let err = join(stderr);
                panic!(
                    "{command:?} still running after {timeout:?}; killed.\nstdout:\n{}\nstderr:\n{}",
                    String::from_utf8_lossy(&out),
                    String::from_utf8_lossy(&err)
                );
            }
            Err(e) => panic!("waiting for {command:?}: {e}"),
        }
    };
    Output { status, stdout: join(stdout), stderr: join(stderr) }
}

type Drain = Option<std::thread::JoinHandle<Vec<u8>>>;

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> Drain {
    pipe.map(|mut pipe| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            buf
        })
    })
}

/// Joins a drain thread. A grandchild that keeps the pipe open after the
/// child exits would block this; the programs driven here do not do that.
fn join(handle: Drain) -> Vec<u8> {
    handle.map(|h| h.join().unwrap_or_default()).unwrap_or_default()
}

/// Writes an executable `SSH_ASKPASS` script `DIR/askpass-N.sh` that prints
/// `secret` and a newline, whatever the prompt, and returns its path.
pub fn askpass(dir: &Path, secret: &str) -> PathBuf {
    write_askpass(dir, secret, false)
}

/// Like [`askpass`], but only the first run prints `secret`; later runs
/// print an empty line (which makes `ssh-add` give up instead of asking again
/// and again after a wrong passphrase).
pub(crate) fn askpass_once(dir: &Path, secret: &str) -> PathBuf {
    write_askpass(dir, secret, true)
}

fn write_askpass(dir: &Path, secret: &str, once: bool) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!("askpass-{n}.sh"));
    let print = format!("printf '%s\\n' {}", shell_quote(secret));
    let script = if once {
        let marker = shell_quote(&format!("{}.used", path.display()));
        format!("#!/bin/sh\nif [ -e {marker} ]; then echo; else : > {marker}; {print}; fi\n")
    } else {
        format!("#!/bin/sh\n{print}\n")
    };
    std::fs::write(&path, script).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
    path
}

/// Makes OpenSSH tools started by `command` read passwords and passphrases
/// from the `script` (see [`askpass`]) even with a terminal at hand:
/// `SSH_ASKPASS=script`, `SSH_ASKPASS_REQUIRE=force`. For `ssh`, also pass
/// `-o BatchMode=no`.
pub fn with_askpass<'c>(command: &'c mut Command, script: &Path) -> &'c mut Command {
    command.env("SSH_ASKPASS", script).env("SSH_ASKPASS_REQUIRE", "force").env_remove("DISPLAY")
}

/// `s` as one single-quoted POSIX shell word.
pub(crate) fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("abc"), "'abc'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn finds_sh_and_not_nonsense() {
        assert!(find_program("sh").is_some());
        assert!(find_program("/bin/sh").is_some());
        assert!(find_program("rscp-no-such-program-xyz").is_none());
        assert!(find_program("/nonexistent/sh").is_none());
    }

    #[test]
    fn askpass_prints_the_secret_verbatim() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = "p a's$`x\"\\";
        let script = askpass(dir.path(), secret);
        let out = output_timeout(Command::new(&script).arg("Password:"), Duration::from_secs(10));
        assert!(out.status.success());
        assert_eq!(out.stdout, format!("{secret}\n").as_bytes());

        let once = askpass_once(dir.path(), secret);
        let out = output_timeout(&mut Command::new(&once), Duration::from_secs(10));
        assert_eq!(out.stdout, format!("{secret}\n").as_bytes());
        let out = output_timeout(&mut Command::new(&once), Duration::from_secs(10));
        assert_eq!(out.stdout, b"\n");
    }

    #[test]
    fn output_timeout_captures_and_kills() {
        let out = output_timeout(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(10),
        );
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");

        let started = Instant::now();
        let result = std::panic::catch_unwind(|| {
            output_timeout(Command::new("sleep").arg("30"), Duration::from_millis(200))
        });
        assert!(result.is_err());
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
