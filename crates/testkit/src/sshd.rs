//! A real OpenSSH `sshd` on 127.0.0.1 with a throwaway config.

use std::collections::HashSet;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::keys::{KeyPair, KeyType, keygen, sign_certificate};
use crate::process::find_program;

/// How long [`Sshd::start`] waits for sshd to listen, per attempt.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts with a fresh port when sshd loses the race for its port.
const BIND_ATTEMPTS: usize = 5;

/// What [`Sshd::start`] sets up. `Default` gives an ed25519 host key,
/// public-key authentication only, no `authorized_keys` lines.
#[derive(Debug, Clone)]
pub struct SshdOptions {
    /// Raw `sshd_config` lines. A line whose keyword is one of the testkit's
    /// defaults replaces that default (sshd keeps a keyword's first value);
    /// lines from the first `Match` on go at the end of the file.
    pub extra_config: Vec<String>,
    /// Lines of the server's `authorized_keys` (one file for every user).
    pub authorized_keys: Vec<String>,
    /// One host key per entry (default `[Ed25519]`).
    pub host_key_types: Vec<KeyType>,
    /// `PasswordAuthentication yes`.
    pub password_auth: bool,
    /// `KbdInteractiveAuthentication yes`.
    pub kbd_interactive: bool,
    /// `UsePAM`; `None`: yes iff `kbd_interactive` (PAM provides its prompt).
    pub use_pam: Option<bool>,
    /// `TrustedUserCAKeys`: a file of CA public keys trusted for user certs.
    pub trusted_user_ca: Option<PathBuf>,
    /// Sign each host key with a throwaway CA ([`Sshd::host_ca`]) for the
    /// principals `127.0.0.1` and `localhost`, and serve the certificates
    /// (`HostCertificate`).
    pub host_certificate: bool,
    /// `LogLevel` (default `DEBUG1`).
    pub log_level: String,
}

impl Default for SshdOptions {
    fn default() -> Self {
        SshdOptions {
            extra_config: Vec::new(),
            authorized_keys: Vec::new(),
            host_key_types: vec![KeyType::Ed25519],
            password_auth: false,
            kbd_interactive: false,
            use_pam: None,
            trusted_user_ca: None,
            host_certificate: false,
            log_level: "DEBUG1".to_owned(),
        }
    }
}

/// A running `sshd -D -e -f CONFIG` on 127.0.0.1; killed on drop.
#[derive(Debug)]
pub struct Sshd {
    /// The port it listens on (on 127.0.0.1).
    pub port: u16,
    /// Host keys, config, `authorized_keys`, `known_hosts` (mode 0755, so
    /// that sshd can read `authorized_keys` as a non-root user too).
    pub dir: TempDir,
    /// The host keys, in `host_key_types` order.
    pub host_keys: Vec<KeyPair>,
    /// The CA that signed the host keys, with `host_certificate`.
    pub host_ca: Option<KeyPair>,
    /// The host certificates (`KEY-cert.pub`), with `host_certificate`.
    pub host_certificates: Vec<PathBuf>,
    child: Child,
    log: Log,
}

impl Sshd {
    /// Writes the config, starts sshd on a free port and waits (at most
    /// ~10 s) until it listens. Panics with sshd's stderr on failure.
    pub fn start(options: SshdOptions) -> Sshd {
        let program = find_program("sshd").unwrap_or_else(|| panic!("sshd is not installed"));
        ensure_privsep_dir();
        let dir = tempfile::Builder::new()
            .prefix("rscp-sshd-")
            .tempdir()
            .unwrap_or_else(|e| panic!("tempdir: {e}"));
        set_mode(dir.path(), 0o755);

        let host_keys: Vec<KeyPair> = options
            .host_key_types
            .iter()
            .enumerate()
            .map(|(i, &kind)| keygen(dir.path(), &format!("host_{i}_{}", kind.keygen_name()), kind, ""))
            .collect();
        assert!(!host_keys.is_empty(), "SshdOptions::host_key_types is empty");
        let (host_ca, host_certificates) = if options.host_certificate {
            let ca = keygen(dir.path(), "host_ca", KeyType::Ed25519, "");
            let certs = host_keys
                .iter()
                .map(|key| sign_certificate(&ca, key, &["127.0.0.1", "localhost"], true))
                .collect();
            (Some(ca), certs)
        } else {
            (None, Vec::new())
        };

        let authorized_keys = dir.path().join("authorized_keys");
        let mut text = options.authorized_keys.join("\n");
        text.push('\n');
        std::fs::write(&authorized_keys, text).unwrap_or_else(|e| panic!("writing authorized_keys: {e}"));
        set_mode(&authorized_keys, 0o644);

        let mut failures = Vec::new();
        for _ in 0..BIND_ATTEMPTS {
            let port = free_port();
            let config = render_config(&options, dir.path(), port, &host_keys, &host_certificates);
            let config_path = dir.path().join("sshd_config");
            std::fs::write(&config_path, &config).unwrap_or_else(|e| panic!("writing sshd_config: {e}"));
            let mut child = spawn_sshd(&program, &config_path);
            let log = collect_log(&mut child);
            match wait_listening(&mut child, &log, port) {
                Ok(()) => {
                    let sshd = Sshd { port, dir, host_keys, host_ca, host_certificates, child, log };
                    let lines = sshd.known_hosts_lines().join("\n") + "\n";
                    std::fs::write(sshd.known_hosts_path(), lines)
                        .unwrap_or_else(|e| panic!("writing known_hosts: {e}"));
                    return sshd;
                }
                Err(Retry::Bind) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    failures.push(format!("port {port}: {}", log_text(&log)));
                }
                Err(Retry::Fatal(why)) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "sshd failed to start: {why}\n--- sshd stderr ---\n{}\n--- sshd_config ---\n{config}",
                        log_text(&log)
                    );
                }
            }
        }
        panic!("sshd could not bind a free port in {BIND_ATTEMPTS} attempts:\n{}", failures.join("\n"));
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The `known_hosts` lines for this server, one per host key:
    /// `[127.0.0.1]:PORT ssh-ed25519 AAAA…`.
    pub fn known_hosts_lines(&self) -> Vec<String> {
        self.host_keys.iter().map(|key| format!("[127.0.0.1]:{} {}", self.port, key.public_key())).collect()
    }

    /// A file holding [`Sshd::known_hosts_lines`].
    pub fn known_hosts_path(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// `@cert-authority [127.0.0.1]:PORT <CA public key>`, with
    /// `host_certificate`.
    pub fn cert_authority_line(&self) -> Option<String> {
        self.host_ca
            .as_ref()
            .map(|ca| format!("@cert-authority [127.0.0.1]:{} {}", self.port, ca.public_key()))
    }

    /// The `sshd_config` sshd runs with.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("sshd_config")
    }

    /// The server's `authorized_keys` (for every user).
    pub fn authorized_keys_path(&self) -> PathBuf {
        self.dir.path().join("authorized_keys")
    }

    /// Appends a line to `authorized_keys`; sshd reads it at each login.
    pub fn add_authorized_key(&self, line: &str) {
        use std::io::Write;
        let path = self.authorized_keys_path();
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
        writeln!(file, "{}", line.trim_end()).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    /// sshd's stderr so far (its per-connection processes log there too).
    pub fn log(&self) -> String {
        log_text(&self.log)
    }

    /// Waits until [`Sshd::log`] contains `needle` (true) or `timeout`
    /// passes (false). sshd logs a login's outcome slightly after the client
    /// may have seen it, so assertions on the log should wait.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The OpenSSH client set up for this server; see the crate docs.
    /// `first_args` come first, so their `-o` options win over the defaults.
    pub fn ssh_command(&self, first_args: &[&str]) -> Command {
        let program = find_program("ssh").unwrap_or_else(|| panic!("ssh is not installed"));
        let mut command = Command::new(program);
        command
            .args(first_args)
            .args(["-F", "/dev/null", "-p", &self.port.to_string()])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts_path().display()))
            .args([
                "-o",
                "GlobalKnownHostsFile=/dev/null",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "IdentityAgent=none",
                "-o",
                "NumberOfPasswordPrompts=1",
                "-o",
                "ConnectTimeout=10",
                "-o",
                "LogLevel=ERROR",
            ])
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("SSH_ASKPASS")
            .env_remove("SSH_ASKPASS_REQUIRE")
            .env_remove("DISPLAY")
            .stdin(Stdio::null());
        command
    }

    /// An `ssh_config` `Host ALIAS` block for this server, logging in as
    /// `user` with `identity` (if any); known hosts as in
    /// [`Sshd::ssh_command`].
    pub fn ssh_config(&self, alias: &str, user: &str, identity: Option<&Path>) -> String {
        let mut text = format!(
            "Host {alias}\n  HostName 127.0.0.1\n  Port {}\n  User {user}\n  UserKnownHostsFile {}\n  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  BatchMode yes\n",
            self.port,
            self.known_hosts_path().display()
        );
        if let Some(identity) = identity {
            text.push_str(&format!("  IdentityFile {}\n  IdentitiesOnly yes\n", identity.display()));
        }
        text
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Log = Arc<Mutex<Vec<u8>>>;

fn log_text(log: &Log) -> String {
    String::from_utf8_lossy(&log.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
}

/// Starts a thread that appends sshd's stderr to the log until every sshd
/// process has closed it. Not joined: a lingering per-connection process may
/// hold the pipe after the listener is gone.
fn collect_log(child: &mut Child) -> Log {
    let log = Log::default();
    if let Some(mut stderr) = child.stderr.take() {
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                match stderr.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => log.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(&buf[..n]),
                }
            }
        });
    }
    log
}

/// Waits until sshd says it listens on `port` and accepts a connection (or,
/// with a `LogLevel` too quiet for that line, accepts one and stays alive
/// for 2 s).
fn wait_listening(child: &mut Child, log: &Log, port: u16) -> Result<(), Retry> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let listening = format!("Server listening on 127.0.0.1 port {port}.");
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            // Let the log thread catch up with sshd's last words.
            std::thread::sleep(Duration::from_millis(50));
            let text = log_text(log);
            return if text.contains("Address already in use") || text.contains("Cannot bind any address") {
                Err(Retry::Bind)
            } else {
                Err(Retry::Fatal(format!("sshd exited ({status})")))
            };
        }
        let said_so = log_text(log).contains(&listening);
        let quiet_long_enough = started.elapsed() > Duration::from_secs(2);
        if (said_so || quiet_long_enough)
            && TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
            && matches!(child.try_wait(), Ok(None))
        {
            return Ok(());
        }
        if started.elapsed() > START_TIMEOUT {
            return Err(Retry::Fatal(format!("not accepting connections on {addr} after {START_TIMEOUT:?}")));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

enum Retry {
    Bind,
    Fatal(String),
}

fn spawn_sshd(program: &Path, config: &Path) -> Child {
    Command::new(program)
        .args(["-D", "-e", "-f"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()))
}

/// sshd refuses to start without its privilege separation directory.
fn ensure_privsep_dir() {
    let dir = Path::new("/run/sshd");
    if !dir.is_dir() {
        // Racing test threads: whoever loses sees AlreadyExists.
        match std::fs::create_dir_all(dir) {
            Ok(()) => set_mode(dir, 0o755),
            Err(e) => eprintln!("cannot create /run/sshd ({e}); sshd will probably refuse to start"),
        }
    }
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// A port that was free a moment ago, never the same twice in a process.
fn free_port() -> u16 {
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    loop {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("binding 127.0.0.1:0: {e}"));
        let port = listener.local_addr().unwrap_or_else(|e| panic!("local_addr: {e}")).port();
        if handed_out.insert(port) {
            return port;
        }
    }
}

/// The keyword of a config line, lowercased (`None` for blanks/comments).
fn keyword(line: &str) -> Option<String> {
    let line = line.trim_start();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    line.split(|c: char| c.is_whitespace() || c == '=').next().map(str::to_ascii_lowercase)
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn render_config(
    options: &SshdOptions,
    dir: &Path,
    port: u16,
    host_keys: &[KeyPair],
    host_certificates: &[PathBuf],
) -> String {
    let mut fixed = vec!["ListenAddress 127.0.0.1".to_owned(), format!("Port {port}")];
    fixed.extend(host_keys.iter().map(|k| format!("HostKey {}", k.private.display())));
    fixed.extend(host_certificates.iter().map(|c| format!("HostCertificate {}", c.display())));

    let use_pam = options.use_pam.unwrap_or(options.kbd_interactive);
    let mut defaults = vec![
        "PidFile none".to_owned(),
        "StrictModes no".to_owned(),
        format!("UsePAM {}", yes_no(use_pam)),
        "PermitRootLogin yes".to_owned(),
        format!("AuthorizedKeysFile {}", dir.join("authorized_keys").display()),
        "PubkeyAuthentication yes".to_owned(),
        format!("PasswordAuthentication {}", yes_no(options.password_auth)),
        format!("KbdInteractiveAuthentication {}", yes_no(options.kbd_interactive)),
        format!("LogLevel {}", options.log_level),
        "Subsystem sftp internal-sftp".to_owned(),
        "MaxStartups 100".to_owned(),
        "ClientAliveInterval 0".to_owned(),
        "PrintMotd no".to_owned(),
        "PrintLastLog no".to_owned(),
        "UseDNS no".to_owned(),
    ];
    if let Some(ca) = &options.trusted_user_ca {
        defaults.push(format!("TrustedUserCAKeys {}", ca.display()));
    }

    let match_at = options
        .extra_config
        .iter()
        .position(|l| keyword(l).as_deref() == Some("match"))
        .unwrap_or(options.extra_config.len());
    let (extra_global, extra_match) = options.extra_config.split_at(match_at);
    let overridden: HashSet<String> = extra_global.iter().filter_map(|l| keyword(l)).collect();

    let mut out = String::from("# Written by rscp-testkit.\n");
    for line in fixed
        .iter()
        .chain(extra_global)
        .chain(defaults.iter().filter(|l| !keyword(l).is_some_and(|k| overridden.contains(&k))))
        .chain(extra_match)
    {
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> KeyPair {
        KeyPair {
            private: PathBuf::from(format!("/k/{name}")),
            public: PathBuf::from(format!("/k/{name}.pub")),
            public_line: format!("ssh-ed25519 AAAA{name} c"),
            passphrase: String::new(),
            kind: KeyType::Ed25519,
        }
    }

    #[test]
    fn config_defaults_and_overrides() {
        let options = SshdOptions {
            extra_config: vec![
                "LogLevel VERBOSE".into(),
                "  maxstartups=5".into(),
                "# comment".into(),
                "HostKey /extra/key".into(),
                "Match User rscptest".into(),
                "  ForceCommand true".into(),
            ],
            kbd_interactive: true,
            trusted_user_ca: Some(PathBuf::from("/ca.pub")),
            ..SshdOptions::default()
        };
        let text = render_config(
            &options,
            Path::new("/d"),
            2222,
            &[key("a"), key("b")],
            &[PathBuf::from("/k/a-cert.pub")],
        );
        let lines: Vec<&str> = text.lines().collect();
        for want in [
            "ListenAddress 127.0.0.1",
            "Port 2222",
            "HostKey /k/a",
            "HostKey /k/b",
            "HostKey /extra/key",
            "HostCertificate /k/a-cert.pub",
            "UsePAM yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication yes",
            "AuthorizedKeysFile /d/authorized_keys",
            "TrustedUserCAKeys /ca.pub",
            "LogLevel VERBOSE",
            "  maxstartups=5",
            "PidFile none",
            "StrictModes no",
        ] {
            assert!(lines.contains(&want), "{want:?} missing from\n{text}");
        }
        assert!(!text.contains("LogLevel DEBUG1"), "{text}");
        assert!(!text.contains("MaxStartups 100"), "{text}");
        assert!(text.ends_with("Match User rscptest\n  ForceCommand true\n"), "{text}");

        let plain = render_config(&SshdOptions::default(), Path::new("/d"), 1, &[key("a")], &[]);
        assert!(plain.contains("\nUsePAM no\n"), "{plain}");
        assert!(plain.contains("\nLogLevel DEBUG1\n"), "{plain}");
        assert!(!plain.contains("TrustedUserCAKeys"), "{plain}");
        assert!(!plain.contains("HostCertificate"), "{plain}");
        let pam = SshdOptions { use_pam: Some(true), ..SshdOptions::default() };
        assert!(render_config(&pam, Path::new("/d"), 1, &[key("a")], &[]).contains("\nUsePAM yes\n"));
    }

    #[test]
    fn keywords() {
        assert_eq!(keyword("  Port 22").as_deref(), Some("port"));
        assert_eq!(keyword("LogLevel=QUIET").as_deref(), Some("loglevel"));
        assert_eq!(keyword("# x"), None);
        assert_eq!(keyword("   "), None);
    }

    #[test]
    fn ports_differ() {
        let a = free_port();
        let b = free_port();
        assert_ne!(a, b);
    }
}
