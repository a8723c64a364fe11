//! rscpd's command line: the contract in DESIGN.md's "Binaries" table, and the
//! defaults a user gets without flags.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

pub const USAGE: &str = "\
usage: rscpd --root DIR [--listen ADDR:PORT] [--authorized-keys FILE] [--host-key FILE]
             [--password-file FILE] [--read-only] [-v]
       rscpd hash-password USER";

pub const HELP: &str = "\
rscpd: a copy-only SSH server. Serves scp (both protocols: SCP and SFTP) and sftp
out of one directory; never a shell.

Options:
  --root DIR               the directory served; clients cannot leave it (required)
  --listen ADDR:PORT       where to listen (default 127.0.0.1:2222; port 0 picks a free one)
  --authorized-keys FILE   OpenSSH authorized_keys (default ~/.ssh/authorized_keys)
  --host-key FILE          the host key, OpenSSH format (default: generated on first start
                           as ~/.local/share/rscpd/ssh_host_ed25519_key)
  --password-file FILE     USER:HASH lines made by `rscpd hash-password USER`
  --read-only              refuse every write
  --max-auth-tries N       authentication attempts per connection (default 6)
  --login-grace-time SECS  time allowed to log in (default 30)
  --max-unauthenticated N  connections not yet logged in; the oldest is dropped beyond (default 64)
  -v                       log connections, logins and files (-vv, -vvv: more)
  -h, --help, -V, --version

The first line on stdout is `rscpd listening on HOST:PORT`, then the host key's fingerprint.

  rscpd hash-password USER   reads a password (twice on a terminal) and prints the
                             USER:HASH line for --password-file (Argon2id)";

/// What rscpd was asked to do.
#[derive(Debug)]
pub enum Command {
    Serve(ServerOptions),
    HashPassword { user: String },
    Help,
    Version,
}

#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub listen: String,
    pub root: PathBuf,
    /// `None`: the default file, which may be absent when passwords are used.
    pub authorized_keys: Option<PathBuf>,
    pub host_key: Option<PathBuf>,
    pub password_file: Option<PathBuf>,
    pub read_only: bool,
    pub verbose: u8,
    pub max_auth_tries: usize,
    pub login_grace_time: Duration,
    pub max_unauthenticated: usize,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:2222";

pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let mut listen = DEFAULT_LISTEN.to_string();
    let mut root = None;
    let mut authorized_keys = None;
    let mut host_key = None;
    let mut password_file = None;
    let mut read_only = false;
    let mut verbose = 0u8;
    let mut max_auth_tries = 6;
    let mut login_grace_time = Duration::from_secs(30);
    let mut max_unauthenticated = 64;
    let mut first = true;
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        let is_first = std::mem::replace(&mut first, false);
        match arg {
            Value(word) if is_first && word == "hash-password" => {
                let user = parser.value().map_err(|_| "hash-password needs a USER".to_string())?;
                let user = user.into_string().map_err(|_| "USER must be UTF-8".to_string())?;
                if user.is_empty() || user.contains([':', '\n']) {
                    return Err(format!("invalid user name {user:?}"));
                }
                if let Some(extra) = parser.next().map_err(|e| e.to_string())? {
                    return Err(format!("unexpected {}", extra.unexpected()));
                }
                return Ok(Command::HashPassword { user });
            }
            Long("listen") => listen = string(parser.value())?,
            Long("root") => root = Some(PathBuf::from(value(parser.value())?)),
            Long("authorized-keys") => authorized_keys = Some(PathBuf::from(value(parser.value())?)),
            Long("host-key") => host_key = Some(PathBuf::from(value(parser.value())?)),
            Long("password-file") => password_file = Some(PathBuf::from(value(parser.value())?)),
            Long("read-only") => read_only = true,
            Long("max-auth-tries") => max_auth_tries = number(parser.value(), "--max-auth-tries")?,
            Long("login-grace-time") => {
                login_grace_time = Duration::from_secs(number(parser.value(), "--login-grace-time")?);
            }
            Long("max-unauthenticated") => {
                max_unauthenticated = number(parser.value(), "--max-unauthenticated")?;
            }
            Short('v') | Long("verbose") => verbose = verbose.saturating_add(1),
            Short('h') | Long("help") => return Ok(Command::Help),
            Short('V') | Long("version") => return Ok(Command::Version),
            other => return Err(other.unexpected().to_string()),
        }
    }
    let root = root.ok_or("--root DIR is required")?;
    if max_auth_tries == 0 || max_unauthenticated == 0 || login_grace_time.is_zero() {
        return Err("limits must be at least 1".to_string());
    }
    Ok(Command::Serve(ServerOptions {
        listen,
        root,
        authorized_keys,
        host_key,
        password_file,
        read_only,
        verbose,
        max_auth_tries,
        login_grace_time,
        max_unauthenticated,
    }))
}

fn value(value: Result<OsString, lexopt::Error>) -> Result<OsString, String> {
    value.map_err(|e| e.to_string())
}

fn string(value: Result<OsString, lexopt::Error>) -> Result<String, String> {
    self::value(value)?.into_string().map_err(|v| format!("invalid value {v:?}"))
}

fn number<T: std::str::FromStr>(raw: Result<OsString, lexopt::Error>, flag: &str) -> Result<T, String> {
    let text = string(raw)?;
    text.parse().map_err(|_| format!("{flag}: not a number: {text:?}"))
}

/// The user's home directory: `$HOME`, as OpenSSH's tools take it for their files.
pub fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from)
}

/// Where a generated host key lives: `$XDG_DATA_HOME/rscpd` or `~/.local/share/rscpd`.
pub fn data_dir() -> Option<PathBuf> {
    match std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        Some(dir) => Some(PathBuf::from(dir).join("rscpd")),
        None => home().map(|h| h.join(".local/share/rscpd")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_contract_flags_parse() {
        let cmd = parse(args(&[
            "--listen",
            "127.0.0.1:0",
            "--root",
            "/srv",
            "--authorized-keys",
            "/k",
            "--host-key",
            "/h",
            "--password-file",
            "/p",
            "--read-only",
            "-vv",
        ]))
        .expect("parses");
        let Command::Serve(o) = cmd else { panic!("not serve: {cmd:?}") };
        assert_eq!(o.listen, "127.0.0.1:0");
        assert_eq!(o.root, PathBuf::from("/srv"));
        assert_eq!(o.authorized_keys, Some(PathBuf::from("/k")));
        assert_eq!(o.host_key, Some(PathBuf::from("/h")));
        assert_eq!(o.password_file, Some(PathBuf::from("/p")));
        assert!(o.read_only);
        assert_eq!(o.verbose, 2);
    }

    #[test]
    fn defaults_and_errors() {
        let Ok(Command::Serve(o)) = parse(args(&["--root=/srv"])) else { panic!("parse") };
        assert_eq!(o.listen, DEFAULT_LISTEN);
        assert_eq!(o.max_auth_tries, 6);
        assert!(parse(args(&[])).expect_err("no root").contains("--root"));
        assert!(parse(args(&["--root", "/", "--bogus"])).is_err());
        assert!(parse(args(&["--root", "/", "--max-auth-tries", "x"])).is_err());
        assert!(matches!(
            parse(args(&["hash-password", "alice"])),
            Ok(Command::HashPassword { user }) if user == "alice"
        ));
        assert!(parse(args(&["hash-password", "a:b"])).is_err());
    }
}
