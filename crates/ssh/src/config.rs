//! ssh_config resolution: for one destination, the settings OpenSSH's `ssh` would
//! use, from `-F` / `~/.ssh/config` / `/etc/ssh/ssh_config`, `-o` options and
//! scp's own flags (OpenSSH 9.2 semantics; `ssh -G` is the reference and the tests
//! compare against it).
//!
//! This module owns parsing, `Host`/`Match` evaluation, `Include`, first-value-wins
//! precedence, defaults and token expansion. It must never touch the network, read
//! keys or known_hosts, or print anything: callers get a `HostConfig` (with the
//! warnings ssh would print in `warnings` and the options rscp ignores in
//! `unsupported`) or a `ConfigError` whose `Display` is ssh's message. The only
//! side effect is `Match exec`, which runs the command like ssh does.

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What scp's command line says; applied with top precedence, the way ssh applies
/// the arguments scp hands it.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// From `user@host` or `-l`. Like ssh's `-l`, scp passes it after the `-o`
    /// options, so an `-o User=` given on the command line wins over it.
    pub user: Option<String>,
    /// `-P`: scp passes it as `-p` after the `-o` options; an `-o Port=` wins.
    pub port: Option<u16>,
    /// `-i`, in order; they come before any `IdentityFile` entry. Files that do
    /// not exist are dropped with ssh's warning (then the defaults apply).
    pub identity_files: Vec<PathBuf>,
    /// Each `-o` value, in order (`Key=Value` or `Key Value`).
    pub options: Vec<String>,
    /// `-F`; the literal path `none` means: read no config file at all.
    pub config_file: Option<PathBuf>,
    /// `-J`: taken as if it came before the `-o` options.
    pub jump: Option<String>,
    /// `-c`: unconditional, like ssh's `-c`.
    pub cipher: Option<String>,
    /// `-C`.
    pub compression: bool,
    /// `-4`.
    pub ipv4: bool,
    /// `-6` (wins over `-4` when both are given).
    pub ipv6: bool,
    /// `-A`.
    pub forward_agent: bool,
    /// `-B` (scp passes `-oBatchMode=yes`; taken before the other `-o` options).
    pub batch_mode: bool,
    /// `-v` count: LogLevel DEBUG1..DEBUG3 (wins over `-q`).
    pub verbose: u8,
    /// `-q`: LogLevel QUIET.
    pub quiet: bool,
}

/// The local facts ssh takes from the system.
#[derive(Debug, Clone)]
pub struct Environment {
    /// The home directory for `~` and `%d`. ssh takes the passwd entry's, not `$HOME`.
    pub home: PathBuf,
    /// The local user name (`%u`, `Match localuser`, default `User`).
    pub local_user: String,
    /// The local uid (`%i`).
    pub uid: u32,
    /// The system-wide config, normally `/etc/ssh/ssh_config`.
    pub system_config: PathBuf,
    /// The local host name as the kernel has it (`%l`); `%L` is its first label.
    pub local_host: String,
}

impl Environment {
    /// The process's environment: uid from /proc, name and home from /etc/passwd
    /// (like ssh's getpwuid), else `$USER`/`$LOGNAME` and `$HOME`.
    pub fn from_process() -> Environment {
        let uid = fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Uid:"))
                    .and_then(|rest| rest.split_whitespace().next().and_then(|v| v.parse::<u32>().ok()))
            })
            .unwrap_or(u32::MAX);
        let entry = passwd_entries().into_iter().find(|e| e.uid == uid);
        let env_nonempty = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let local_user = entry
            .as_ref()
            .map(|e| e.name.clone())
            .or_else(|| env_nonempty("USER"))
            .or_else(|| env_nonempty("LOGNAME"))
            .unwrap_or_else(|| if uid == 0 { "root".to_owned() } else { uid.to_string() });
        let home = entry
            .map(|e| PathBuf::from(e.home))
            .or_else(|| env_nonempty("HOME").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("/"));
        let local_host = fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_owned())
            .ok()
            .filter(|s| !s.is_empty())
            .or_else(|| env_nonempty("HOSTNAME"))
            .unwrap_or_else(|| "localhost".to_owned());
        Environment { home, local_user, uid, system_config: PathBuf::from("/etc/ssh/ssh_config"), local_host }
    }

    fn short_host(&self) -> &str {
        self.local_host.split('.').next().unwrap_or(&self.local_host)
    }
}

/// `StrictHostKeyChecking`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrictHostKeyChecking {
    Yes,
    AcceptNew,
    No,
    Ask,
}

/// `AddressFamily`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressFamily {
    Any,
    Inet,
    Inet6,
}

/// `LogLevel` (ssh's `DEBUG` is `Debug1`, its `SILENT` is `Quiet`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Quiet,
    Fatal,
    Error,
    Info,
    Verbose,
    Debug1,
    Debug2,
    Debug3,
}

/// The resolved settings for one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConfig {
    /// The name as given (ssh's "original host").
    pub host: String,
    /// `HostName` with `%h`/`%%` expanded (default: `host`), lowercased unless an
    /// IP address, as ssh does.
    pub hostname: String,
    pub port: u16,
    pub user: String,
    /// `-i` files, then `IdentityFile`s (duplicates dropped), expanded; ssh's
    /// defaults when none is configured.
    pub identity_files: Vec<PathBuf>,
    pub identities_only: bool,
    pub certificate_files: Vec<PathBuf>,
    /// `[user@]host[:port]` hops, comma-separated; `None` for `none`.
    pub proxy_jump: Option<String>,
    /// Tokens (`%h %p %r %n %%`) expanded; `None` for `none`.
    pub proxy_command: Option<String>,
    pub strict_host_key_checking: StrictHostKeyChecking,
    /// Empty for `none`.
    pub user_known_hosts_files: Vec<PathBuf>,
    /// Empty for `none`.
    pub global_known_hosts_files: Vec<PathBuf>,
    pub hash_known_hosts: bool,
    /// The raw configured algorithm lists (with any `+`/`-`/`^` prefix: the client
    /// applies them to its own defaults).
    pub ciphers: Option<String>,
    pub kex_algorithms: Option<String>,
    pub macs: Option<String>,
    pub host_key_algorithms: Option<String>,
    pub compression: bool,
    /// Seconds; `None` when unset or `none`.
    pub connect_timeout: Option<u64>,
    /// Default 0, or 300 in batch mode (as ssh).
    pub server_alive_interval: u64,
    pub server_alive_count_max: u64,
    pub tcp_keep_alive: bool,
    pub batch_mode: bool,
    pub address_family: AddressFamily,
    pub forward_agent: bool,
    /// `SSH_AUTH_SOCK`, `none`, a `$VAR`, or an expanded path.
    pub identity_agent: Option<String>,
    pub log_level: LogLevel,
    pub preferred_authentications: Option<Vec<String>>,
    pub pubkey_authentication: bool,
    pub password_authentication: bool,
    pub kbd_interactive_authentication: bool,
    pub number_of_password_prompts: u32,
    pub host_key_alias: Option<String>,
    pub check_host_ip: bool,
    /// Options that apply to this host and that rscp does not act on: the keyword
    /// as written, deduplicated, for a one-line warning. Not listed: options scp
    /// forces itself or that cannot matter for a copy (see `SILENT`), obsolete
    /// options ssh itself ignores, and values that ask for ssh's default.
    pub unsupported: Vec<String>,
    /// Warnings ssh prints while resolving (e.g. an `-i` file that does not exist).
    pub warnings: Vec<String>,
}

/// Why the configuration could not be resolved; `Display` is ssh's message.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigError {
    /// `-F` names a file that cannot be opened.
    CantOpen { path: PathBuf, reason: String },
    /// A file had bad lines: like ssh, all of them are reported, then ssh gives up.
    BadOptions { file: String, lines: Vec<String>, count: usize },
    /// A `-o` option (or `-J`) was rejected: ssh stops at the first.
    CommandLine(String),
    /// Anything else ssh treats as fatal (file permissions, Include depth, tokens).
    Fatal(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::CantOpen { path, reason } => {
                write!(f, "Can't open user config file {}: {reason}", path.display())
            }
            ConfigError::BadOptions { file, lines, count } => {
                for l in lines {
                    writeln!(f, "{l}")?;
                }
                write!(f, "{file}: terminating, {count} bad configuration options")
            }
            ConfigError::CommandLine(m) | ConfigError::Fatal(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Resolves the configuration for `host` (as given on the command line).
pub fn resolve(host: &str, overrides: &Overrides, env: &Environment) -> Result<HostConfig, ConfigError> {
    let mut r = Resolver {
        env,
        original: host,
        final_pass: false,
        want_final: false,
        s: Settings::default(),
        warnings: Vec::new(),
    };
    r.apply_command_line(overrides)?;
    r.read_all_files(overrides)?;
    // Like ssh: `Match final` (or canonicalization) re-reads the files once the
    // host name is known; values set in the first pass stay (first one wins).
    let canonicalize = r.s.canonicalize.as_deref().is_some_and(|v| !v.eq_ignore_ascii_case("no"));
    if r.want_final || canonicalize {
        let name = r.current_hostname()?;
        r.s.hostname = Some(name);
        r.s.hostname_expanded = true;
        r.final_pass = true;
        r.read_all_files(overrides)?;
    }
    r.finish()
}

// ---------------------------------------------------------------------------
// Settings collected while reading: `None` = not set yet (the first value wins).

#[derive(Debug, Default)]
struct Settings {
    hostname: Option<String>,
    hostname_expanded: bool,
    port: Option<u16>,
    user: Option<String>,
    identity_files: Vec<String>,
    certificate_files: Vec<String>,
    identities_only: Option<bool>,
    proxy_jump: Option<String>,
    proxy_command: Option<String>,
    strict: Option<StrictHostKeyChecking>,
    user_known_hosts: Option<Vec<String>>,
    global_known_hosts: Option<Vec<String>>,
    hash_known_hosts: Option<bool>,
    ciphers: Option<String>,
    kex: Option<String>,
    macs: Option<String>,
    host_key_algorithms: Option<String>,
    compression: Option<bool>,
    connect_timeout: Option<Option<u64>>,
    server_alive_interval: Option<u64>,
    server_alive_count_max: Option<u64>,
    tcp_keep_alive: Option<bool>,
    batch_mode: Option<bool>,
    address_family: Option<AddressFamily>,
    forward_agent: Option<bool>,
    identity_agent: Option<String>,
    log_level: Option<LogLevel>,
    preferred_authentications: Option<Vec<String>>,
    pubkey: Option<bool>,
    password: Option<bool>,
    kbd_interactive: Option<bool>,
    password_prompts: Option<u32>,
    host_key_alias: Option<String>,
    check_host_ip: Option<bool>,
    ignore_unknown: Option<String>,
    canonicalize: Option<String>,
    unsupported: Vec<String>,
}

fn set<T>(slot: &mut Option<T>, value: T) {
    if slot.is_none() {
        *slot = Some(value);
    }
}

/// Keywords rscp reads. Aliases map to the same variant, as in ssh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kw {
    Host,
    Match,
    Include,
    HostName,
    Port,
    User,
    IdentityFile,
    IdentitiesOnly,
    CertificateFile,
    ProxyJump,
    ProxyCommand,
    StrictHostKeyChecking,
    UserKnownHostsFile,
    GlobalKnownHostsFile,
    HashKnownHosts,
    Ciphers,
    KexAlgorithms,
    Macs,
    HostKeyAlgorithms,
    Compression,
    ConnectTimeout,
    ServerAliveInterval,
    ServerAliveCountMax,
    TcpKeepAlive,
    BatchMode,
    AddressFamily,
    ForwardAgent,
    IdentityAgent,
    LogLevel,
    PreferredAuthentications,
    PubkeyAuthentication,
    PasswordAuthentication,
    KbdInteractiveAuthentication,
    NumberOfPasswordPrompts,
    HostKeyAlias,
    CheckHostIp,
    IgnoreUnknown,
    CanonicalizeHostname,
}

fn keyword(kw: &str) -> Option<Kw> {
    Some(match kw {
        "host" => Kw::Host,
        "match" => Kw::Match,
        "include" => Kw::Include,
        "hostname" => Kw::HostName,
        "port" => Kw::Port,
        "user" => Kw::User,
        "identityfile" | "identityfile2" => Kw::IdentityFile,
        "identitiesonly" => Kw::IdentitiesOnly,
        "certificatefile" => Kw::CertificateFile,
        "proxyjump" => Kw::ProxyJump,
        "proxycommand" => Kw::ProxyCommand,
        "stricthostkeychecking" => Kw::StrictHostKeyChecking,
        "userknownhostsfile" => Kw::UserKnownHostsFile,
        "globalknownhostsfile" => Kw::GlobalKnownHostsFile,
        "hashknownhosts" => Kw::HashKnownHosts,
        "ciphers" => Kw::Ciphers,
        "kexalgorithms" => Kw::KexAlgorithms,
        "macs" => Kw::Macs,
        "hostkeyalgorithms" => Kw::HostKeyAlgorithms,
        "compression" => Kw::Compression,
        "connecttimeout" => Kw::ConnectTimeout,
        // Debian's alias.
        "serveraliveinterval" | "protocolkeepalives" => Kw::ServerAliveInterval,
        "serveralivecountmax" => Kw::ServerAliveCountMax,
        "tcpkeepalive" => Kw::TcpKeepAlive,
        "batchmode" => Kw::BatchMode,
        "addressfamily" => Kw::AddressFamily,
        "forwardagent" => Kw::ForwardAgent,
        "identityagent" => Kw::IdentityAgent,
        "loglevel" => Kw::LogLevel,
        "preferredauthentications" => Kw::PreferredAuthentications,
        "pubkeyauthentication" | "dsaauthentication" => Kw::PubkeyAuthentication,
        "passwordauthentication" => Kw::PasswordAuthentication,
        "kbdinteractiveauthentication"
        | "challengeresponseauthentication"
        | "skeyauthentication"
        | "tisauthentication" => Kw::KbdInteractiveAuthentication,
        "numberofpasswordprompts" => Kw::NumberOfPasswordPrompts,
        "hostkeyalias" => Kw::HostKeyAlias,
        "checkhostip" => Kw::CheckHostIp,
        "ignoreunknown" => Kw::IgnoreUnknown,
        "canonicalizehostname" => Kw::CanonicalizeHostname,
        _ => return None,
    })
}

/// Ignored without a word: scp forces them itself (`-x`, `ClearAllForwardings`,
/// `PermitLocalCommand=no`, `RemoteCommand=none`, `RequestTTY=no`,
/// `ControlMaster=no`...), they only matter for interactive sessions or
/// forwardings, or are Debian defaults whose absence changes nothing for a copy
/// (`SendEnv`, `GSSAPI*`: ssh falls through to the next method without a ticket).
const SILENT: &[&str] = &[
    "forwardx11",
    "forwardx11trusted",
    "forwardx11timeout",
    "clearallforwardings",
    "permitlocalcommand",
    "localcommand",
    "remotecommand",
    "requesttty",
    "controlmaster",
    "controlpath",
    "controlpersist",
    "localforward",
    "remoteforward",
    "dynamicforward",
    "sessiontype",
    "stdinnull",
    "forkafterauthentication",
    "escapechar",
    "enableescapecommandline",
    "exitonforwardfailure",
    "gatewayports",
    "tunnel",
    "tunneldevice",
    "permitremoteopen",
    "sendenv",
    "setenv",
    "xauthlocation",
    "visualhostkey",
    "syslogfacility",
    "logverbose",
    "streamlocalbindmask",
    "streamlocalbindunlink",
    "fingerprinthash",
    "ipqos",
    "updatehostkeys",
    "kbdinteractivedevices",
    "hostbasedacceptedalgorithms",
    "hostbasedkeytypes",
    "canonicaldomains",
    "canonicalizefallbacklocal",
    "canonicalizemaxdots",
    "canonicalizepermittedcnames",
    "gssapiauthentication",
    "gssapikeyexchange",
    "gssapidelegatecredentials",
    "gssapitrustdns",
    "gssapiclientidentity",
    "gssapiserveridentity",
    "gssapirenewalforcesrekey",
    "gssapikexalgorithms",
    "setuptimeout",
];

/// Obsolete keywords ssh 9.2 still accepts and ignores.
const OBSOLETE: &[&str] = &[
    "protocol",
    "cipher",
    "fallbacktorsh",
    "globalknownhostsfile2",
    "userknownhostsfile2",
    "rhostsauthentication",
    "rhostsrsaauthentication",
    "rsaauthentication",
    "useblacklistedkeys",
    "useroaming",
    "usersh",
    "useprivilegedport",
    "afstokenpassing",
    "kerberosauthentication",
    "kerberostgtpassing",
    "compressionlevel",
];

/// Understood by ssh, not acted on by rscp: reported in `unsupported` unless the
/// value is one of the listed ones (ssh's default, or "off").
const WARN: &[(&str, &[&str])] = &[
    ("bindaddress", &[]),
    ("bindinterface", &[]),
    ("connectionattempts", &["1"]),
    ("addkeystoagent", &["no", "false"]),
    ("pkcs11provider", &["none"]),
    ("smartcarddevice", &[]),
    ("securitykeyprovider", &["internal"]),
    ("hostbasedauthentication", &["no", "false"]),
    ("enablesshkeysign", &["no", "false"]),
    ("knownhostscommand", &["none"]),
    ("revokedhostkeys", &["none"]),
    ("verifyhostkeydns", &["no", "false"]),
    ("nohostauthenticationforlocalhost", &["no", "false"]),
    ("rekeylimit", &["default"]),
    ("requiredrsasize", &["1024"]),
    ("casignaturealgorithms", &[]),
    ("pubkeyacceptedalgorithms", &[]),
    ("pubkeyacceptedkeytypes", &[]),
    ("proxyusefdpass", &["no", "false"]),
];

/// Where a line comes from, for messages and relative `Include`s.
#[derive(Debug, Clone)]
struct Source {
    name: String,
    user_conf: bool,
    command_line: bool,
    depth: usize,
}

/// The outcome of one bad line.
enum LineError {
    /// Reported, counted as one bad option; reading goes on.
    Bad(Vec<String>),
    /// Stops everything.
    Fatal(ConfigError),
}

impl From<ConfigError> for LineError {
    fn from(e: ConfigError) -> LineError {
        LineError::Fatal(e)
    }
}

/// ssh's limit on nested `Include`s.
const MAX_INCLUDE_DEPTH: usize = 16;

struct Resolver<'a> {
    env: &'a Environment,
    original: &'a str,
    final_pass: bool,
    want_final: bool,
    s: Settings,
    warnings: Vec<String>,
}

impl Resolver<'_> {
    fn apply_command_line(&mut self, o: &Overrides) -> Result<(), ConfigError> {
        for p in &o.identity_files {
            let expanded = tilde_expand(&p.to_string_lossy(), self.env)?;
            // Mirrors ssh: an `-i` file that is missing is dropped with a warning.
            match fs::metadata(&expanded) {
                Ok(_) => push_unique(&mut self.s.identity_files, expanded),
                Err(e) => self
                    .warnings
                    .push(format!("Warning: Identity file {expanded} not accessible: {}.", strerror(&e))),
            }
        }
        if let Some(j) = &o.jump {
            let normal =
                parse_jump(j).ok_or_else(|| ConfigError::CommandLine("Invalid -J argument".into()))?;
            self.s.proxy_jump = Some(normal);
        }
        if o.batch_mode {
            set(&mut self.s.batch_mode, true);
        }
        let src = Source { name: "command-line".into(), user_conf: false, command_line: true, depth: 0 };
        for opt in &o.options {
            let mut active = true;
            match self.process_line(opt, &src, 0, &mut active, false) {
                Ok(()) => {}
                Err(LineError::Bad(lines)) => {
                    return Err(ConfigError::CommandLine(lines.join("\n")));
                }
                Err(LineError::Fatal(e)) => return Err(e),
            }
        }
        // scp passes `-l` and `-p` after the `-o` options, and ssh keeps the first
        // value it sees for both: an `-o User=`/`-o Port=` wins over them.
        if let Some(u) = &o.user {
            set(&mut self.s.user, u.clone());
        }
        if let Some(p) = o.port {
            set(&mut self.s.port, p);
        }
        // These flags are unconditional in ssh: they beat files and `-o`.
        if let Some(c) = &o.cipher {
            self.s.ciphers = Some(c.clone());
        }
        if o.compression {
            self.s.compression = Some(true);
        }
        if o.ipv6 {
            self.s.address_family = Some(AddressFamily::Inet6);
        } else if o.ipv4 {
            self.s.address_family = Some(AddressFamily::Inet);
        }
        if o.forward_agent {
            self.s.forward_agent = Some(true);
        }
        if o.verbose > 0 {
            self.s.log_level = Some(match o.verbose {
                1 => LogLevel::Debug1,
                2 => LogLevel::Debug2,
                _ => LogLevel::Debug3,
            });
        } else if o.quiet {
            self.s.log_level = Some(LogLevel::Quiet);
        }
        Ok(())
    }

    fn read_all_files(&mut self, o: &Overrides) -> Result<(), ConfigError> {
        if let Some(f) = &o.config_file {
            if f.as_os_str() == "none" {
                return Ok(());
            }
            let text = fs::read(f)
                .map_err(|e| ConfigError::CantOpen { path: f.clone(), reason: strerror(&e) })
                .or_else(|e| if f.is_dir() { Ok(Vec::new()) } else { Err(e) })?;
            let src =
                Source { name: f.display().to_string(), user_conf: true, command_line: false, depth: 0 };
            return self.read_text(&String::from_utf8_lossy(&text), &src, true, false);
        }
        let user = self.env.home.join(".ssh").join("config");
        if let Ok(text) = fs::read(&user) {
            check_permissions(&user, self.env.uid)?;
            let src =
                Source { name: user.display().to_string(), user_conf: true, command_line: false, depth: 0 };
            self.read_text(&String::from_utf8_lossy(&text), &src, true, false)?;
        }
        let system = self.env.system_config.clone();
        if let Ok(text) = fs::read(&system) {
            let src = Source {
                name: system.display().to_string(),
                user_conf: false,
                command_line: false,
                depth: 0,
            };
            self.read_text(&String::from_utf8_lossy(&text), &src, true, false)?;
        }
        Ok(())
    }

    /// One file. `active` starts as the includer's state; `never_match` makes
    /// every Host/Match inside fail (an Include inside an inactive block).
    fn read_text(
        &mut self,
        text: &str,
        src: &Source,
        active: bool,
        never_match: bool,
    ) -> Result<(), ConfigError> {
        let mut active = active;
        let mut lines = Vec::new();
        let mut count = 0;
        for (i, line) in text.lines().enumerate() {
            match self.process_line(line, src, i + 1, &mut active, never_match) {
                Ok(()) => {}
                Err(LineError::Bad(msgs)) => {
                    lines.extend(msgs);
                    count += 1;
                }
                Err(LineError::Fatal(e)) => return Err(e),
            }
        }
        if count > 0 {
            return Err(ConfigError::BadOptions { file: src.name.clone(), lines, count });
        }
        Ok(())
    }

    fn process_line(
        &mut self,
        line: &str,
        src: &Source,
        n: usize,
        active: &mut bool,
        never_match: bool,
    ) -> Result<(), LineError> {
        let bad = |msg: String| LineError::Bad(vec![format!("{} line {n}: {msg}", src.name)]);
        let line = line.trim_end_matches([' ', '\t', '\r', '\n', '\x0c']);
        let line = line.trim_start_matches([' ', '\t']);
        if line.is_empty() || line.starts_with('#') {
            return Ok(());
        }
        // The keyword ends at whitespace or `=`; one `=` may sit between it and the value.
        let end = line.find([' ', '\t', '=']).unwrap_or(line.len());
        let written = &line[..end];
        let mut rest = line[end..].trim_start_matches([' ', '\t']);
        if let Some(r) = rest.strip_prefix('=') {
            rest = r.trim_start_matches([' ', '\t']);
        }
        let kw = written.to_ascii_lowercase();
        if rest.is_empty() {
            return Err(bad(format!("no argument after keyword \"{kw}\"")));
        }
        let Some(k) = keyword(&kw) else {
            return self.other_keyword(&kw, written, rest, src, n, *active);
        };
        let args = split_args(rest).ok_or_else(|| bad("invalid quotes".into()))?;
        let arg = |i: usize| -> Result<&str, LineError> {
            match args.get(i) {
                Some(a) if !a.is_empty() => Ok(a.as_str()),
                _ => Err(bad("Missing argument.".into())),
            }
        };
        let only = |used: usize| -> Result<(), LineError> {
            if args.len() > used {
                Err(bad(format!("keyword {kw} extra arguments at end of line")))
            } else {
                Ok(())
            }
        };
        let on = *active;
        match k {
            Kw::Host => {
                if src.command_line {
                    return Err(ConfigError::CommandLine(
                        "Host directive not supported as a command-line option".into(),
                    )
                    .into());
                }
                *active = !never_match && host_matches(self.original, &args);
            }
            Kw::Match => {
                if src.command_line {
                    // ssh 9.2 says "Host" here too.
                    return Err(ConfigError::CommandLine(
                        "Host directive not supported as a command-line option".into(),
                    )
                    .into());
                }
                let m = self.match_line(&args, src, n)?;
                *active = m && !never_match;
            }
            Kw::Include => {
                if src.command_line {
                    return Err(ConfigError::CommandLine(
                        "Include directive not supported as a command-line option".into(),
                    )
                    .into());
                }
                for a in &args {
                    self.include(a, src, on, never_match || !on)?;
                }
            }
            Kw::HostName => {
                let v = arg(0)?;
                only(1)?;
                if on {
                    set(&mut self.s.hostname, v.to_owned());
                }
            }
            Kw::Port => {
                let v = arg(0)?;
                let p = parse_port(v).ok_or_else(|| bad(format!("Bad port '{v}'.")))?;
                only(1)?;
                if on {
                    set(&mut self.s.port, p);
                }
            }
            Kw::User => {
                let v = arg(0)?;
                only(1)?;
                if on {
                    set(&mut self.s.user, v.to_owned());
                }
            }
            Kw::IdentityFile | Kw::CertificateFile => {
                let v = arg(0)?;
                only(1)?;
                if on {
                    let list = if k == Kw::IdentityFile {
                        &mut self.s.identity_files
                    } else {
                        &mut self.s.certificate_files
                    };
                    push_unique(list, v.to_owned());
                }
            }
            Kw::ProxyJump => {
                let v = arg(0)?;
                // ssh 9.2 takes the first word only and ignores the rest.
                let normal = parse_jump(v).ok_or_else(|| bad(format!("Invalid ProxyJump \"{v}\"")))?;
                // The first of ProxyJump / ProxyCommand wins (ProxyCommand none counts).
                if on && self.s.proxy_command.is_none() {
                    set(&mut self.s.proxy_jump, normal);
                }
            }
            Kw::ProxyCommand => {
                arg(0)?;
                // The command is the rest of the line, quotes and all.
                let jump_set = self.s.proxy_jump.as_deref().is_some_and(|j| j != "none");
                if on && !jump_set {
                    set(&mut self.s.proxy_command, rest.to_owned());
                }
            }
            Kw::StrictHostKeyChecking => {
                let v = arg(0)?;
                let x = match v.to_ascii_lowercase().as_str() {
                    "yes" | "true" => StrictHostKeyChecking::Yes,
                    "no" | "false" | "off" => StrictHostKeyChecking::No,
                    "ask" => StrictHostKeyChecking::Ask,
                    "accept-new" => StrictHostKeyChecking::AcceptNew,
                    _ => return Err(bad(format!("unsupported option \"{v}\"."))),
                };
                only(1)?;
                if on {
                    set(&mut self.s.strict, x);
                }
            }
            Kw::UserKnownHostsFile | Kw::GlobalKnownHostsFile => {
                arg(0)?;
                if on {
                    let slot = if k == Kw::UserKnownHostsFile {
                        &mut self.s.user_known_hosts
                    } else {
                        &mut self.s.global_known_hosts
                    };
                    set(slot, args.clone());
                }
            }
            Kw::Ciphers | Kw::KexAlgorithms | Kw::Macs | Kw::HostKeyAlgorithms => {
                let v = arg(0)?.to_owned();
                only(1)?;
                if on {
                    let slot = match k {
                        Kw::Ciphers => &mut self.s.ciphers,
                        Kw::KexAlgorithms => &mut self.s.kex,
                        Kw::Macs => &mut self.s.macs,
                        _ => &mut self.s.host_key_algorithms,
                    };
                    set(slot, v);
                }
            }
            Kw::Compression => {
                let v = arg(0)?;
                // Compression knows only yes/no (not true/false).
                let x = match v.to_ascii_lowercase().as_str() {
                    "yes" => true,
                    "no" => false,
                    _ => return Err(bad(format!("unsupported option \"{v}\"."))),
                };
                only(1)?;
                if on {
                    set(&mut self.s.compression, x);
                }
            }
            Kw::ConnectTimeout | Kw::ServerAliveInterval => {
                let v = arg(0)?;
                let t = if k == Kw::ConnectTimeout && v.eq_ignore_ascii_case("none") {
                    None
                } else {
                    Some(parse_time(v).ok_or_else(|| bad("invalid time value.".into()))?)
                };
                only(1)?;
                if on {
                    if k == Kw::ConnectTimeout {
                        set(&mut self.s.connect_timeout, t);
                    } else {
                        set(&mut self.s.server_alive_interval, t.unwrap_or(0));
                    }
                }
            }
            Kw::ServerAliveCountMax | Kw::NumberOfPasswordPrompts => {
                let v = arg(0)?;
                let x = parse_int(v).map_err(bad)?;
                only(1)?;
                if on {
                    if k == Kw::ServerAliveCountMax {
                        set(&mut self.s.server_alive_count_max, u64::from(x));
                    } else {
                        set(&mut self.s.password_prompts, x);
                    }
                }
            }
            Kw::IdentitiesOnly
            | Kw::HashKnownHosts
            | Kw::TcpKeepAlive
            | Kw::BatchMode
            | Kw::PasswordAuthentication
            | Kw::KbdInteractiveAuthentication
            | Kw::CheckHostIp => {
                let v = arg(0)?;
                let x = parse_flag(v).ok_or_else(|| bad(format!("unsupported option \"{v}\".")))?;
                only(1)?;
                if on {
                    let slot = match k {
                        Kw::IdentitiesOnly => &mut self.s.identities_only,
                        Kw::HashKnownHosts => &mut self.s.hash_known_hosts,
                        Kw::TcpKeepAlive => &mut self.s.tcp_keep_alive,
                        Kw::BatchMode => &mut self.s.batch_mode,
                        Kw::PasswordAuthentication => &mut self.s.password,
                        Kw::KbdInteractiveAuthentication => &mut self.s.kbd_interactive,
                        _ => &mut self.s.check_host_ip,
                    };
                    set(slot, x);
                }
            }
            Kw::PubkeyAuthentication => {
                let v = arg(0)?;
                let x = match v.to_ascii_lowercase().as_str() {
                    "unbound" | "host-bound" => true,
                    _ => parse_flag(v).ok_or_else(|| bad(format!("unsupported option \"{v}\".")))?,
                };
                only(1)?;
                if on {
                    set(&mut self.s.pubkey, x);
                }
            }
            Kw::AddressFamily => {
                let v = arg(0)?;
                let x = match v.to_ascii_lowercase().as_str() {
                    "any" => AddressFamily::Any,
                    "inet" => AddressFamily::Inet,
                    "inet6" => AddressFamily::Inet6,
                    _ => return Err(bad(format!("unsupported option \"{v}\"."))),
                };
                only(1)?;
                if on {
                    set(&mut self.s.address_family, x);
                }
            }
            Kw::ForwardAgent => {
                let v = arg(0)?;
                only(1)?;
                if on {
                    // A socket path or `$VAR` means "forward that agent": rscp only
                    // knows the default one.
                    let x = parse_flag(v).unwrap_or_else(|| {
                        push_unique(&mut self.s.unsupported, written.to_owned());
                        true
                    });
                    set(&mut self.s.forward_agent, x);
                }
            }
            Kw::IdentityAgent => {
                let v = arg(0)?;
                only(1)?;
                if on {
                    set(&mut self.s.identity_agent, v.to_owned());
                }
            }
            Kw::LogLevel => {
                let v = arg(0)?;
                let x = parse_log_level(v).ok_or_else(|| bad(format!("unsupported log level '{v}'")))?;
                only(1)?;
                if on {
                    set(&mut self.s.log_level, x);
                }
            }
            Kw::PreferredAuthentications => {
                let v = arg(0)?;
                only(1)?;
                if on {
                    set(&mut self.s.preferred_authentications, v.split(',').map(str::to_owned).collect());
                }
            }
            Kw::HostKeyAlias => {
                let v = arg(0)?;
                only(1)?;
                if on {
                    set(&mut self.s.host_key_alias, v.to_owned());
                }
            }
            Kw::IgnoreUnknown => {
                let v = arg(0)?;
                only(1)?;
                if on {
                    set(&mut self.s.ignore_unknown, v.to_owned());
                }
            }
            Kw::CanonicalizeHostname => {
                let v = arg(0)?;
                let lower = v.to_ascii_lowercase();
                if !matches!(lower.as_str(), "yes" | "no" | "true" | "false" | "always" | "none") {
                    return Err(bad(format!("unsupported option \"{v}\".")));
                }
                only(1)?;
                if on && self.s.canonicalize.is_none() {
                    if !matches!(lower.as_str(), "no" | "false" | "none") {
                        // No DNS canonicalization here: only the second pass.
                        push_unique(&mut self.s.unsupported, written.to_owned());
                    }
                    self.s.canonicalize = Some(lower);
                }
            }
        }
        Ok(())
    }

    /// Keywords rscp does not act on: silent, obsolete, warned, or unknown.
    fn other_keyword(
        &mut self,
        kw: &str,
        written: &str,
        rest: &str,
        src: &Source,
        n: usize,
        on: bool,
    ) -> Result<(), LineError> {
        if SILENT.contains(&kw) || OBSOLETE.contains(&kw) {
            return Ok(());
        }
        if let Some((_, harmless)) = WARN.iter().find(|(k, _)| *k == kw) {
            let first = split_args(rest)
                .ok_or_else(|| LineError::Bad(vec![format!("{} line {n}: invalid quotes", src.name)]))?
                .into_iter()
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            if on && !harmless.contains(&first.as_str()) {
                push_unique(&mut self.s.unsupported, written.to_owned());
            }
            return Ok(());
        }
        if self.s.ignore_unknown.as_deref().is_some_and(|p| match_list(kw, p, false) == Some(true)) {
            return Ok(());
        }
        Err(LineError::Bad(vec![format!("{}: line {n}: Bad configuration option: {kw}", src.name)]))
    }

    fn include(
        &mut self,
        pattern: &str,
        src: &Source,
        active: bool,
        never_match: bool,
    ) -> Result<(), LineError> {
        // Relative includes are under ~/.ssh for user files and /etc/ssh for the system one.
        let path = if pattern.starts_with('~') {
            tilde_expand(pattern, self.env)?
        } else if pattern.starts_with('/') {
            pattern.to_owned()
        } else if src.user_conf {
            format!("{}/.ssh/{pattern}", self.env.home.display())
        } else {
            format!("/etc/ssh/{pattern}")
        };
        for file in glob(&path) {
            if src.depth + 1 > MAX_INCLUDE_DEPTH {
                return Err(ConfigError::Fatal("Too many recursive configuration includes".into()).into());
            }
            // Unreadable matches are skipped, like ssh.
            let Ok(text) = fs::read(&file) else { continue };
            check_permissions(&file, self.env.uid)?;
            let inner = Source {
                name: file.display().to_string(),
                user_conf: src.user_conf,
                command_line: false,
                depth: src.depth + 1,
            };
            self.read_text(&String::from_utf8_lossy(&text), &inner, active, never_match)?;
        }
        Ok(())
    }

    /// The host `Match host` sees: HostName so far (with `%h`), else the original.
    fn current_hostname(&self) -> Result<String, ConfigError> {
        let raw = match &self.s.hostname {
            Some(h) if self.s.hostname_expanded => return Ok(h.clone()),
            Some(h) => percent_expand(h, &[('h', self.original)])?,
            None => self.original.to_owned(),
        };
        Ok(if raw.parse::<IpAddr>().is_ok() { raw } else { raw.to_ascii_lowercase() })
    }

    /// Evaluates a `Match` line (criteria ANDed). Mirrors ssh 9.2's rules for
    /// `all`, `canonical`/`final` (true only in the final pass) and `exec`.
    fn match_line(&mut self, args: &[String], src: &Source, n: usize) -> Result<bool, LineError> {
        let bad_cond = |mut pre: Vec<String>| {
            pre.push(format!("{} line {n}: Bad Match condition", src.name));
            LineError::Bad(pre)
        };
        let mut result = true;
        let mut i = 0;
        let mut seen_other = false;
        while i < args.len() {
            let raw = &args[i];
            i += 1;
            let (negate, attr) = match raw.strip_prefix('!') {
                Some(a) => (true, a),
                None => (false, raw.as_str()),
            };
            let attr_l = attr.to_ascii_lowercase();
            match attr_l.as_str() {
                "all" => {
                    if seen_other || i < args.len() {
                        return Err(bad_cond(vec![format!(
                            "{} line {n}: 'all' cannot be combined with other Match attributes",
                            src.name
                        )]));
                    }
                    if negate {
                        result = false;
                    }
                    continue;
                }
                "canonical" | "final" => {
                    if attr_l == "final" && !negate {
                        self.want_final = true;
                    }
                    if self.final_pass == negate {
                        result = false;
                    }
                    continue;
                }
                "host" | "originalhost" | "user" | "localuser" | "exec" => {}
                _ => return Err(bad_cond(vec![format!("Unsupported Match attribute {attr}")])),
            }
            seen_other = true;
            let Some(value) = args.get(i).filter(|v| !v.is_empty()) else {
                return Err(bad_cond(vec![format!("Missing Match criteria for {attr}")]));
            };
            i += 1;
            let hit = match attr_l.as_str() {
                "host" => match_list(&self.current_hostname()?, value, true) == Some(true),
                "originalhost" => match_list(self.original, value, true) == Some(true),
                "user" => {
                    let u = self.s.user.clone().unwrap_or_else(|| self.env.local_user.clone());
                    match_list(&u, value, false) == Some(true)
                }
                "localuser" => match_list(&self.env.local_user, value, false) == Some(true),
                _ => {
                    // Like ssh, exec is not run once the line can no longer match.
                    if !result {
                        continue;
                    }
                    self.run_exec(value)?
                }
            };
            if hit == negate {
                result = false;
            }
        }
        if args.is_empty() {
            return Err(bad_cond(vec!["One or more attributes required for Match".into()]));
        }
        Ok(result)
    }

    fn run_exec(&self, cmd: &str) -> Result<bool, ConfigError> {
        let host = self.current_hostname()?;
        let port = self.s.port.unwrap_or(22).to_string();
        let user = self.s.user.clone().unwrap_or_else(|| self.env.local_user.clone());
        let cmd = percent_expand(cmd, &self.tokens(&host, &port, &user))?;
        let shell = std::env::var("SHELL").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "/bin/sh".into());
        let status = Command::new(&shell)
            .arg("-c")
            .arg(&cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .map_err(|e| ConfigError::Fatal(format!("Unable to execute '{cmd}': {}", strerror(&e))))?;
        Ok(status.success())
    }

    /// The client tokens ssh expands in file names and `Match exec` (no `%C`).
    fn tokens(&self, host: &str, port: &str, user: &str) -> Vec<(char, String)> {
        let home = self.env.home.display().to_string();
        let alias = self.s.host_key_alias.clone().unwrap_or_else(|| self.original.to_owned());
        vec![
            ('d', home),
            ('h', host.to_owned()),
            ('i', self.env.uid.to_string()),
            ('k', alias),
            ('L', self.env.short_host().to_owned()),
            ('l', self.env.local_host.clone()),
            ('n', self.original.to_owned()),
            ('p', port.to_owned()),
            ('r', user.to_owned()),
            ('u', self.env.local_user.clone()),
        ]
    }

    fn finish(mut self) -> Result<HostConfig, ConfigError> {
        let hostname = self.current_hostname()?;
        let port = self.s.port.unwrap_or(22);
        let user = self.s.user.clone().unwrap_or_else(|| self.env.local_user.clone());
        let port_s = port.to_string();
        let tokens = self.tokens(&hostname, &port_s, &user);
        // Mirrors ssh's load-time expansion: `~` first, then `${VAR}` and `%` tokens.
        let expand_path = |p: &str| -> Result<PathBuf, ConfigError> {
            let t = tilde_expand(p, self.env)?;
            Ok(PathBuf::from(percent_expand(&env_expand(&t)?, &tokens)?))
        };
        let mut identity = std::mem::take(&mut self.s.identity_files);
        if identity.is_empty() {
            identity =
                ["id_rsa", "id_ecdsa", "id_ecdsa_sk", "id_ed25519", "id_ed25519_sk", "id_xmss", "id_dsa"]
                    .iter()
                    .map(|n| format!("~/.ssh/{n}"))
                    .collect();
        }
        let identity_files = identity.iter().map(|p| expand_path(p)).collect::<Result<_, _>>()?;
        let certificate_files =
            self.s.certificate_files.iter().map(|p| expand_path(p)).collect::<Result<_, _>>()?;
        let known = |list: &Option<Vec<String>>, defaults: [&str; 2]| -> Result<Vec<PathBuf>, ConfigError> {
            match list {
                Some(l) if l.len() == 1 && l[0] == "none" => Ok(Vec::new()),
                Some(l) => l.iter().map(|p| expand_path(p)).collect(),
                None => defaults.iter().map(|p| expand_path(p)).collect(),
            }
        };
        let user_known_hosts_files =
            known(&self.s.user_known_hosts, ["~/.ssh/known_hosts", "~/.ssh/known_hosts2"])?;
        let global_known_hosts_files =
            known(&self.s.global_known_hosts, ["/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"])?;
        let proxy_command = match self.s.proxy_command.as_deref() {
            None | Some("none") => None,
            Some(c) => Some(percent_expand(
                c,
                &[
                    ('h', hostname.clone()),
                    ('p', port_s.clone()),
                    ('r', user.clone()),
                    ('n', self.original.to_owned()),
                ],
            )?),
        };
        let identity_agent = match self.s.identity_agent.as_deref() {
            None => None,
            Some(a) if a == "none" || a == "SSH_AUTH_SOCK" || a.starts_with('$') => Some(a.to_owned()),
            Some(a) => Some(expand_path(a)?.display().to_string()),
        };
        let s = self.s;
        let batch_mode = s.batch_mode.unwrap_or(false);
        Ok(HostConfig {
            host: self.original.to_owned(),
            hostname,
            port,
            user,
            identity_files,
            identities_only: s.identities_only.unwrap_or(false),
            certificate_files,
            proxy_jump: s.proxy_jump.filter(|j| j != "none"),
            proxy_command,
            strict_host_key_checking: s.strict.unwrap_or(StrictHostKeyChecking::Ask),
            user_known_hosts_files,
            global_known_hosts_files,
            hash_known_hosts: s.hash_known_hosts.unwrap_or(false),
            ciphers: s.ciphers,
            kex_algorithms: s.kex,
            macs: s.macs,
            host_key_algorithms: s.host_key_algorithms,
            compression: s.compression.unwrap_or(false),
            connect_timeout: s.connect_timeout.flatten(),
            // Mirrors ssh: in batch mode a dead server is noticed after 5 minutes.
            server_alive_interval: s.server_alive_interval.unwrap_or(if batch_mode { 300 } else { 0 }),
            server_alive_count_max: s.server_alive_count_max.unwrap_or(3),
            tcp_keep_alive: s.tcp_keep_alive.unwrap_or(true),
            batch_mode,
            address_family: s.address_family.unwrap_or(AddressFamily::Any),
            forward_agent: s.forward_agent.unwrap_or(false),
            identity_agent,
            log_level: s.log_level.unwrap_or(LogLevel::Info),
            preferred_authentications: s.preferred_authentications,
            pubkey_authentication: s.pubkey.unwrap_or(true),
            password_authentication: s.password.unwrap_or(true),
            kbd_interactive_authentication: s.kbd_interactive.unwrap_or(true),
            number_of_password_prompts: s.password_prompts.unwrap_or(3),
            host_key_alias: s.host_key_alias,
            check_host_ip: s.check_host_ip.unwrap_or(false),
            unsupported: s.unsupported,
            warnings: self.warnings,
        })
    }
}

// ---------------------------------------------------------------------------
// Helpers.

fn push_unique(list: &mut Vec<String>, v: String) {
    if !list.contains(&v) {
        list.push(v);
    }
}

/// The C library's wording of an I/O error, without Rust's "(os error N)".
fn strerror(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

/// Mirrors ssh: a user config (or anything it includes) must belong to the user
/// or root and not be writable by others.
fn check_permissions(path: &Path, uid: u32) -> Result<(), ConfigError> {
    let Ok(meta) = fs::metadata(path) else { return Ok(()) };
    if (meta.uid() != 0 && meta.uid() != uid) || meta.mode() & 0o022 != 0 {
        return Err(ConfigError::Fatal(format!("Bad owner or permissions on {}", path.display())));
    }
    Ok(())
}

/// Splits a value into words the way ssh 9.2 does: single or double quotes group
/// (and are removed), `\` escapes a quote, a backslash or (unquoted) a space, and
/// a word starting with `#` ends the line. `None` for an unterminated quote.
fn split_args(s: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
        match chars.peek() {
            None | Some('#') => return Some(out),
            Some(_) => {}
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.peek() {
                    Some(&n) if n == '\'' || n == '"' || n == '\\' || (quote.is_none() && n == ' ') => {
                        word.push(n);
                        chars.next();
                    }
                    _ => word.push('\\'),
                },
                ' ' | '\t' if quote.is_none() => break,
                '"' | '\'' if quote.is_none() => quote = Some(c),
                c if Some(c) == quote => quote = None,
                c => word.push(c),
            }
        }
        if quote.is_some() {
            return None;
        }
        out.push(word);
    }
}

fn parse_flag(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "yes" | "true" => Some(true),
        "no" | "false" => Some(false),
        _ => None,
    }
}

fn parse_port(v: &str) -> Option<u16> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse::<u16>().ok().filter(|p| *p != 0)
}

fn parse_int(v: &str) -> Result<u32, String> {
    if v.starts_with('-') && v.len() > 1 && v[1..].bytes().all(|b| b.is_ascii_digit()) {
        return Err("integer value too small.".into());
    }
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err("integer value invalid.".into());
    }
    v.parse::<u32>().map_err(|_| "integer value too large.".to_owned())
}

/// ssh's time format: `90`, `1m30s`, `1h`, units s m h d w (any case).
fn parse_time(v: &str) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    let mut num = String::new();
    for c in v.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let mult = match c.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            'w' => 604_800,
            _ => return None,
        };
        let n: u64 = num.parse().ok()?;
        total = total.checked_add(n.checked_mul(mult)?)?;
        num.clear();
    }
    if !num.is_empty() {
        total = total.checked_add(num.parse().ok()?)?;
    }
    i32::try_from(total).ok()?;
    Some(total)
}

fn parse_log_level(v: &str) -> Option<LogLevel> {
    Some(match v.to_ascii_uppercase().as_str() {
        "QUIET" | "SILENT" => LogLevel::Quiet,
        "FATAL" => LogLevel::Fatal,
        "ERROR" => LogLevel::Error,
        "INFO" => LogLevel::Info,
        "VERBOSE" => LogLevel::Verbose,
        "DEBUG" | "DEBUG1" => LogLevel::Debug1,
        "DEBUG2" => LogLevel::Debug2,
        "DEBUG3" => LogLevel::Debug3,
        _ => return None,
    })
}

/// Validates a ProxyJump value and returns it the way `ssh -G` prints it: the last
/// hop as `[user@]host[:port]` (an `ssh://` URI is unwrapped), earlier hops as given.
fn parse_jump(v: &str) -> Option<String> {
    if v.eq_ignore_ascii_case("none") {
        return Some("none".into());
    }
    let (extra, last) = match v.rsplit_once(',') {
        Some((e, l)) => (Some(e), l),
        None => (None, v),
    };
    if let Some(e) = extra {
        for hop in e.split(',') {
            parse_hop(hop)?;
        }
    }
    let (user, host, port) = parse_hop(last)?;
    let mut out = String::new();
    if let Some(e) = extra {
        out.push_str(e);
        out.push(',');
    }
    if let Some(u) = user {
        out.push_str(u);
        out.push('@');
    }
    out.push_str(host);
    if let Some(p) = port {
        out.push(':');
        out.push_str(&p.to_string());
    }
    Some(out)
}

/// `[user@]host[:port]`, `[user@][v6]:port` or `ssh://[user@]host[:port][/]`.
fn parse_hop(hop: &str) -> Option<(Option<&str>, &str, Option<u16>)> {
    let uri = hop.strip_prefix("ssh://");
    let hop = uri.map(|h| h.strip_suffix('/').unwrap_or(h)).unwrap_or(hop);
    let (user, hostport) = match hop.rsplit_once('@') {
        Some((u, h)) if !u.is_empty() => (Some(u), h),
        Some(_) => return None,
        None => (None, hop),
    };
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        match after {
            "" => (h, None),
            _ => (h, Some(parse_port(after.strip_prefix(':')?)?)),
        }
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(parse_port(p)?)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    Some((user, host, port))
}

/// `*` and `?` wildcards, as in ssh's patterns.
fn wildcard(text: &[u8], pat: &[u8]) -> bool {
    // Iterative matcher with a single backtrack point for the last `*`.
    let (mut t, mut p) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pat.len() && (pat[p] == b'?' || pat[p] == text[t]) {
            t += 1;
            p += 1;
        } else if p < pat.len() && pat[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pat[p..].iter().all(|c| *c == b'*')
}

/// A comma-separated pattern list: `Some(false)` when a negated pattern matches,
/// `Some(true)` when a plain one does, `None` when none does.
fn match_list(s: &str, list: &str, lower: bool) -> Option<bool> {
    let subject = if lower { s.to_ascii_lowercase() } else { s.to_owned() };
    let mut got = None;
    for pat in list.split(',') {
        let pat = if lower { pat.to_ascii_lowercase() } else { pat.to_owned() };
        let (neg, p) = match pat.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, pat.as_str()),
        };
        if wildcard(subject.as_bytes(), p.as_bytes()) {
            if neg {
                return Some(false);
            }
            got = Some(true);
        }
    }
    got
}

/// `Host` patterns (one per word, case-sensitive like ssh 9.2): a matching
/// negated pattern excludes the block whatever else matches.
fn host_matches(host: &str, patterns: &[String]) -> bool {
    let mut hit = false;
    for p in patterns {
        match p.strip_prefix('!') {
            Some(neg) if wildcard(host.as_bytes(), neg.as_bytes()) => return false,
            Some(_) => {}
            None => hit |= wildcard(host.as_bytes(), p.as_bytes()),
        }
    }
    hit
}

/// `%x` tokens; an unknown one is fatal, with ssh's words.
fn percent_expand<V: AsRef<str>>(s: &str, tokens: &[(char, V)]) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some(k) => match tokens.iter().find(|(t, _)| *t == k) {
                Some((_, v)) => out.push_str(v.as_ref()),
                None => {
                    return Err(ConfigError::Fatal(format!(
                        "vdollar_percent_expand: unknown key %{k}\npercent_expand: failed"
                    )));
                }
            },
            None => {
                return Err(ConfigError::Fatal(
                    "vdollar_percent_expand: invalid format\npercent_expand: failed".into(),
                ));
            }
        }
    }
    Ok(out)
}

/// `${VAR}` from the environment; an unset one is fatal, as in ssh.
fn env_expand(s: &str) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else {
            return Err(ConfigError::Fatal(format!("invalid environment variable in \"{s}\"")));
        };
        let name = &after[..end];
        match std::env::var(name) {
            Ok(v) => out.push_str(&v),
            Err(_) => return Err(ConfigError::Fatal(format!("env var ${{{name}}} has no value"))),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `~` and `~user` at the start of a path.
fn tilde_expand(p: &str, env: &Environment) -> Result<String, ConfigError> {
    let Some(rest) = p.strip_prefix('~') else { return Ok(p.to_owned()) };
    let (name, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let home = if name.is_empty() {
        env.home.display().to_string()
    } else {
        passwd_entries()
            .into_iter()
            .find(|e| e.name == name)
            .map(|e| e.home)
            .ok_or_else(|| ConfigError::Fatal(format!("tilde_expand_filename: No such user {name}")))?
    };
    let home = home.strip_suffix('/').unwrap_or(&home);
    Ok(format!("{home}{tail}"))
}

#[derive(Debug)]
struct PasswdEntry {
    name: String,
    uid: u32,
    home: String,
}

fn passwd_entries() -> Vec<PasswdEntry> {
    let Ok(text) = fs::read_to_string("/etc/passwd") else { return Vec::new() };
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 7 {
                return None;
            }
            Some(PasswdEntry { name: f[0].to_owned(), uid: f[2].parse().ok()?, home: f[5].to_owned() })
        })
        .collect()
}

/// glob(3) for `Include`: `*`/`?` in any component, hidden names only when the
/// pattern starts with `.`, results sorted. No match is not an error.
fn glob(pattern: &str) -> Vec<PathBuf> {
    let mut current = vec![if pattern.starts_with('/') { PathBuf::from("/") } else { PathBuf::new() }];
    for comp in pattern.split('/').filter(|c| !c.is_empty()) {
        let mut next = Vec::new();
        for base in &current {
            if !comp.contains(['*', '?']) {
                let p = base.join(comp);
                if fs::symlink_metadata(&p).is_ok() {
                    next.push(p);
                }
                continue;
            }
            let dir = if base.as_os_str().is_empty() { Path::new(".") } else { base.as_path() };
            let Ok(entries) = fs::read_dir(dir) else { continue };
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .filter(|n| !n.starts_with('.') || comp.starts_with('.'))
                .filter(|n| wildcard(n.as_bytes(), comp.as_bytes()))
                .collect();
            names.sort();
            next.extend(names.into_iter().map(|n| base.join(n)));
        }
        current = next;
    }
    let mut seen = HashSet::new();
    current.retain(|p| seen.insert(p.clone()));
    current.sort();
    current
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// `ssh` (OpenSSH) if installed; missing: panic under `RSCP_REQUIRE_PEERS=1`, else skip.
    fn openssh() -> Option<&'static str> {
        const SSH: &str = "/usr/bin/ssh";
        if Path::new(SSH).exists() {
            return Some(SSH);
        }
        if std::env::var("RSCP_REQUIRE_PEERS").as_deref() == Ok("1") {
            panic!("{SSH} (OpenSSH) is required (RSCP_REQUIRE_PEERS=1) but is not installed");
        }
        eprintln!("skipped: {SSH} (OpenSSH) is not installed");
        None
    }

    /// ssh reads `~` from the passwd entry, not `$HOME`: the same Environment as the
    /// real process, so that both sides agree. Tests always pass `-F`, so no real
    /// config file is read.
    fn env() -> Environment {
        Environment::from_process()
    }

    /// The argument vector ssh gets for these overrides, in the order whose
    /// precedence `resolve` implements.
    fn ssh_args(o: &Overrides) -> Vec<String> {
        let mut a = Vec::new();
        if let Some(f) = &o.config_file {
            a.extend(["-F".to_owned(), f.display().to_string()]);
        }
        for i in &o.identity_files {
            a.extend(["-i".to_owned(), i.display().to_string()]);
        }
        if let Some(j) = &o.jump {
            a.extend(["-J".to_owned(), j.clone()]);
        }
        if o.batch_mode {
            a.push("-oBatchMode=yes".into());
        }
        for opt in &o.options {
            a.extend(["-o".to_owned(), opt.clone()]);
        }
        if let Some(u) = &o.user {
            a.extend(["-l".to_owned(), u.clone()]);
        }
        if let Some(p) = o.port {
            a.extend(["-p".to_owned(), p.to_string()]);
        }
        if let Some(c) = &o.cipher {
            a.extend(["-c".to_owned(), c.clone()]);
        }
        for (on, flag) in [(o.compression, "-C"), (o.ipv4, "-4"), (o.ipv6, "-6"), (o.forward_agent, "-A")] {
            if on {
                a.push(flag.into());
            }
        }
        if o.quiet {
            a.push("-q".into());
        }
        for _ in 0..o.verbose {
            a.push("-v".into());
        }
        a
    }

    /// Runs `ssh -G`; Ok(key -> values) or Err(stderr).
    fn ssh_g(
        ssh: &str,
        home: &Path,
        o: &Overrides,
        host: &str,
    ) -> Result<HashMap<String, Vec<String>>, String> {
        let out = Command::new(ssh)
            .arg("-G")
            .args(ssh_args(o))
            .arg(host)
            .env("HOME", home)
            .stdin(Stdio::null())
            .output()
            .expect("run ssh -G");
        let stderr: Vec<&str> = std::str::from_utf8(&out.stderr)
            .expect("utf-8")
            .lines()
            .filter(|l| !l.starts_with("debug") && !l.starts_with("Pseudo-terminal"))
            .collect();
        if !out.status.success() {
            return Err(stderr.join("\n"));
        }
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        for line in std::str::from_utf8(&out.stdout).expect("utf-8").lines() {
            let (k, v) = line.split_once(' ').unwrap_or((line, ""));
            map.entry(k.to_owned()).or_default().push(v.to_owned());
        }
        Ok(map)
    }

    fn one<'m>(g: &'m HashMap<String, Vec<String>>, k: &str) -> Option<&'m str> {
        g.get(k).and_then(|v| v.first()).map(String::as_str)
    }

    fn yes(b: bool) -> &'static str {
        if b { "yes" } else { "no" }
    }

    /// Field-by-field comparison with `ssh -G`. Identity and certificate files and
    /// ProxyCommand are printed unexpanded by ssh: they are expanded here the way
    /// ssh does when it loads them.
    #[track_caller]
    fn compare(c: &HostConfig, g: &HashMap<String, Vec<String>>, env: &Environment) {
        let get = |k: &str| one(g, k).unwrap_or_else(|| panic!("ssh -G printed no {k}"));
        assert_eq!(c.host, get("host"), "host");
        assert_eq!(c.hostname, get("hostname"), "hostname");
        assert_eq!(c.port.to_string(), get("port"), "port");
        assert_eq!(c.user, get("user"), "user");
        let port = c.port.to_string();
        let r = Resolver {
            env,
            original: &c.host,
            final_pass: true,
            want_final: false,
            s: Settings { host_key_alias: c.host_key_alias.clone(), ..Settings::default() },
            warnings: Vec::new(),
        };
        let tokens = r.tokens(&c.hostname, &port, &c.user);
        let expand = |p: &str| {
            let t = tilde_expand(p, env).expect("tilde");
            PathBuf::from(percent_expand(&env_expand(&t).expect("env"), &tokens).expect("tokens"))
        };
        let files = |k: &str| -> Vec<PathBuf> { g.get(k).into_iter().flatten().map(|p| expand(p)).collect() };
        assert_eq!(c.identity_files, files("identityfile"), "identityfile");
        assert_eq!(c.certificate_files, files("certificatefile"), "certificatefile");
        let known = |k: &str| -> Vec<PathBuf> {
            match get(k) {
                "none" => Vec::new(),
                v => v.split(' ').map(PathBuf::from).collect(),
            }
        };
        assert_eq!(c.user_known_hosts_files, known("userknownhostsfile"), "userknownhostsfile");
        assert_eq!(c.global_known_hosts_files, known("globalknownhostsfile"), "globalknownhostsfile");
        assert_eq!(c.proxy_jump.as_deref(), one(g, "proxyjump"), "proxyjump");
        let pc = one(g, "proxycommand").map(|p| {
            percent_expand(p, &[('h', c.hostname.as_str()), ('p', &port), ('r', &c.user), ('n', &c.host)])
                .expect("proxycommand tokens")
        });
        assert_eq!(c.proxy_command, pc, "proxycommand");
        let shk = match c.strict_host_key_checking {
            StrictHostKeyChecking::Yes => "true",
            StrictHostKeyChecking::No => "false",
            StrictHostKeyChecking::Ask => "ask",
            StrictHostKeyChecking::AcceptNew => "accept-new",
        };
        assert_eq!(shk, get("stricthostkeychecking"), "stricthostkeychecking");
        assert_eq!(yes(c.hash_known_hosts), get("hashknownhosts"), "hashknownhosts");
        for (mine, k) in [
            (&c.ciphers, "ciphers"),
            (&c.kex_algorithms, "kexalgorithms"),
            (&c.macs, "macs"),
            (&c.host_key_algorithms, "hostkeyalgorithms"),
        ] {
            // ssh prints the list after applying +/-/^ to its defaults: compare plain lists only.
            if let Some(v) = mine.as_deref().filter(|v| !v.starts_with(['+', '-', '^'])) {
                assert_eq!(v, get(k), "{k}");
            }
        }
        assert_eq!(yes(c.compression), get("compression"), "compression");
        assert_eq!(c.connect_timeout.map_or("none".to_owned(), |t| t.to_string()), get("connecttimeout"));
        assert_eq!(c.server_alive_interval.to_string(), get("serveraliveinterval"), "serveraliveinterval");
        assert_eq!(c.server_alive_count_max.to_string(), get("serveralivecountmax"), "serveralivecountmax");
        assert_eq!(yes(c.tcp_keep_alive), get("tcpkeepalive"), "tcpkeepalive");
        assert_eq!(yes(c.batch_mode), get("batchmode"), "batchmode");
        let af = match c.address_family {
            AddressFamily::Any => "any",
            AddressFamily::Inet => "inet",
            AddressFamily::Inet6 => "inet6",
        };
        assert_eq!(af, get("addressfamily"), "addressfamily");
        assert_eq!(c.forward_agent, get("forwardagent") != "no", "forwardagent");
        assert_eq!(c.identity_agent.as_deref(), one(g, "identityagent"), "identityagent");
        let ll = match get("loglevel") {
            "SILENT" | "QUIET" => LogLevel::Quiet,
            v => parse_log_level(v).expect("ssh's log level"),
        };
        assert_eq!(c.log_level, ll, "loglevel");
        assert_eq!(
            c.preferred_authentications.as_ref().map(|v| v.join(",")).as_deref(),
            one(g, "preferredauthentications"),
            "preferredauthentications"
        );
        assert_eq!(c.pubkey_authentication, get("pubkeyauthentication") != "false", "pubkeyauthentication");
        assert_eq!(yes(c.password_authentication), get("passwordauthentication"), "passwordauthentication");
        assert_eq!(
            yes(c.kbd_interactive_authentication),
            get("kbdinteractiveauthentication"),
            "kbdinteractiveauthentication"
        );
        assert_eq!(c.number_of_password_prompts.to_string(), get("numberofpasswordprompts"));
        assert_eq!(c.host_key_alias.as_deref(), one(g, "hostkeyalias"), "hostkeyalias");
        assert_eq!(yes(c.check_host_ip), get("checkhostip"), "checkhostip");
        assert_eq!(yes(c.identities_only), get("identitiesonly"), "identitiesonly");
    }

    struct Case {
        name: &'static str,
        config: &'static str,
        host: &'static str,
        overrides: Overrides,
    }

    fn case(name: &'static str, config: &'static str, host: &'static str) -> Case {
        Case { name, config, host, overrides: Overrides::default() }
    }

    fn opts(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn cases() -> Vec<Case> {
        vec![
            case("empty config: defaults", "", "example.org"),
            case("host name is lowercased", "", "MiXeD.Example"),
            case("basic host block", "Host foo\n  HostName real.%h\n  Port 2222\n  User alice\n", "foo"),
            case(
                "first value wins",
                "Port 1\nPort 2\nHost *\n  Port 3\n  User u1\nHost foo\n  User u2\n",
                "foo",
            ),
            case("wildcards", "Host f?o\n  Port 10\nHost *.lan\n  User lan\nHost *\n  Port 11\n", "foo"),
            case("negation excludes", "Host * !foo\n  Port 5\nHost f*\n  Port 6\n", "foo"),
            case("negation alone matches nothing", "Host !foo\n  Port 5\n", "bar"),
            case("several patterns", "Host a b foo c\n  User multi\n", "foo"),
            case("Host is case-sensitive", "Host foo\n  Port 7\n", "FOO"),
            case(
                "key=value, quoting, comments",
                "# comment\n\n  port   = 2022  \nUser=\"a b\"\nCompression yes # trailing\n\tIdentityFile \"/tmp/with space/k\"\n",
                "foo",
            ),
            case("single quotes and escapes", "User 'x y'\nHostKeyAlias a\\\"b\n", "foo"),
            case(
                "identity files accumulate, duplicates dropped",
                "IdentityFile ~/one\nHost foo\n  IdentityFile %d/two-%u-%l-%h-%r-%p\n  IdentityFile ~/one\nIdentityFile rel\nCertificateFile ~/c1\nCertificateFile %h.cert\n",
                "foo",
            ),
            case(
                "known hosts tokens",
                "HostName Target\nPort 99\nUser bob\nUserKnownHostsFile ~/k %d/k2 k3 %h-%p-%r-%u-%L-%n\nGlobalKnownHostsFile none\n",
                "foo",
            ),
            case("known hosts none", "UserKnownHostsFile none\n", "foo"),
            case(
                "ProxyCommand tokens",
                "HostName Real\nPort 3\nProxyCommand nc -X 5 %h %p %r %n %%\n",
                "Orig",
            ),
            case("ProxyCommand first beats ProxyJump", "ProxyCommand nc %h %p\nProxyJump j1\n", "foo"),
            case(
                "ProxyJump first beats ProxyCommand",
                "ProxyJump u@j1:2200,j0\nProxyCommand nc %h %p\n",
                "foo",
            ),
            case("ProxyJump none then ProxyCommand", "ProxyJump none\nProxyCommand nc %h\n", "foo"),
            case("ProxyCommand none blocks ProxyJump", "ProxyCommand none\nProxyJump j\n", "foo"),
            case("ssh:// jump", "ProxyJump ssh://u@h:2\n", "foo"),
            case(
                "Match host sees HostName",
                "Host foo\n  HostName Bar.%h\nMatch host bar.foo\n  Port 5\nMatch originalhost FOO\n  User orig\n",
                "foo",
            ),
            case(
                "Match user (default local user)",
                "Match user root,!nobody\n  Port 5\nMatch localuser *\n  Compression yes\n",
                "foo",
            ),
            case(
                "Match user set by User",
                "User bob\nMatch user bob\n  Port 6\nMatch !user bob\n  Port 7\n",
                "foo",
            ),
            case("Match all and negation", "Match !host foo\n  Port 1\nMatch all\n  Port 2\n", "foo"),
            case(
                "Match several criteria",
                "Match host foo originalhost f* !localuser nobody\n  User and\n",
                "foo",
            ),
            case("Match canonical (first pass only)", "Match canonical\n  Port 9\n", "foo"),
            case(
                "Match final: second pass",
                "Match final\n  Port 5\nMatch final host bar\n  User x\nHost foo\n  HostName bar\n",
                "foo",
            ),
            case(
                "Match exec",
                "Match exec \"test %h = foo\"\n  Port 5\nMatch exec false\n  User no\n",
                "foo",
            ),
            case(
                "flags and values",
                "StrictHostKeyChecking accept-new\nHashKnownHosts yes\nConnectTimeout 1m30s\nServerAliveInterval 15\nServerAliveCountMax 2\nTCPKeepAlive no\nBatchMode true\nAddressFamily inet6\nForwardAgent yes\nIdentityAgent ~/agent.sock\nLogLevel debug2\nPreferredAuthentications publickey,password\nPubkeyAuthentication host-bound\nPasswordAuthentication no\nChallengeResponseAuthentication no\nNumberOfPasswordPrompts 1\nHostKeyAlias alias\nCheckHostIP yes\nIdentitiesOnly yes\nCiphers aes128-ctr,aes256-ctr\nMACs hmac-sha2-256\nKexAlgorithms curve25519-sha256\nHostKeyAlgorithms ssh-ed25519\n",
                "foo",
            ),
            case("StrictHostKeyChecking off", "StrictHostKeyChecking off\nConnectTimeout none\n", "foo"),
            case(
                "IgnoreUnknown",
                "IgnoreUnknown frob*,Zap\nfrobnicate 1\nSendEnv LANG\nGSSAPIAuthentication yes\n",
                "foo",
            ),
            Case {
                name: "-o beats files, -l after -o, -p unconditional",
                config: "Port 7\nUser cfg\nCompression no\n",
                host: "foo",
                overrides: Overrides {
                    options: opts(&["User=fromo", "Port 8", "StrictHostKeyChecking=no"]),
                    user: Some("froml".into()),
                    port: Some(99),
                    ..Overrides::default()
                },
            },
            Case {
                name: "scp flags",
                config: "Ciphers aes128-ctr\nAddressFamily inet\nLogLevel ERROR\n",
                host: "foo",
                overrides: Overrides {
                    cipher: Some("aes256-ctr".into()),
                    compression: true,
                    ipv6: true,
                    forward_agent: true,
                    batch_mode: true,
                    verbose: 2,
                    ..Overrides::default()
                },
            },
            Case {
                name: "scp flags beat -o",
                config: "",
                host: "foo",
                overrides: Overrides {
                    options: opts(&[
                        "AddressFamily=inet",
                        "ForwardAgent=no",
                        "Compression=no",
                        "LogLevel=ERROR",
                        "Ciphers=aes128-ctr",
                        "BatchMode=no",
                    ]),
                    cipher: Some("aes256-ctr".into()),
                    compression: true,
                    ipv6: true,
                    forward_agent: true,
                    verbose: 1,
                    ..Overrides::default()
                },
            },
            Case {
                name: "-q",
                config: "LogLevel VERBOSE\n",
                host: "foo",
                overrides: Overrides { quiet: true, ..Overrides::default() },
            },
            Case {
                name: "-J beats ProxyCommand",
                config: "ProxyCommand nc %h %p\n",
                host: "foo",
                overrides: Overrides { jump: Some("jumper:2222".into()), ..Overrides::default() },
            },
            Case {
                name: "-o IdentityFile before config",
                config: "IdentityFile ~/cfg\n",
                host: "foo",
                overrides: Overrides { options: opts(&["IdentityFile=~/opt"]), ..Overrides::default() },
            },
        ]
    }

    #[test]
    fn config_matches_ssh_g() {
        let Some(ssh) = openssh() else { return };
        let dir = tempfile::TempDir::new().expect("temp dir");
        let env = env();
        let mut all = cases();
        // Cases that need files of their own.
        let id = dir.path().join("id_cli");
        fs::write(&id, "").expect("write");
        all.push(Case {
            name: "-i first, then config",
            config: "IdentityFile ~/cfg\n",
            host: "foo",
            overrides: Overrides { identity_files: vec![id.clone()], ..Overrides::default() },
        });
        for (i, c) in all.into_iter().enumerate() {
            let cfg = dir.path().join(format!("case{i}.cfg"));
            fs::write(&cfg, c.config).expect("write config");
            let mut o = c.overrides;
            o.config_file = Some(cfg);
            let g = ssh_g(ssh, dir.path(), &o, c.host)
                .unwrap_or_else(|e| panic!("{}: ssh -G failed: {e}", c.name));
            let mine = resolve(c.host, &o, &env).unwrap_or_else(|e| panic!("{}: {e}", c.name));
            eprintln!("case: {}", c.name);
            compare(&mine, &g, &env);
        }
    }

    #[test]
    fn config_include_matches_ssh_g() {
        let Some(ssh) = openssh() else { return };
        let dir = tempfile::TempDir::new().expect("temp dir");
        let d = dir.path().display().to_string();
        let env = env();
        fs::create_dir(dir.path().join("inc")).expect("mkdir");
        fs::write(dir.path().join("inc/a.conf"), "Port 11\nHost bar\n  User incuser\n").expect("write");
        fs::write(dir.path().join("inc/b.conf"), "User b_user\nIdentityFile %d/from_b\n").expect("write");
        fs::write(dir.path().join("inc/.hidden.conf"), "Port 12\n").expect("write");
        let configs = [
            (format!("Host foo\n  Include {d}/inc/*.conf\n  Compression yes\n"), "foo"),
            (format!("Host foo\n  Include {d}/inc/*.conf\n"), "bar"),
            (format!("Host zzz\n  Include {d}/inc/*.conf\nHost *\n  Port 3\n  User x\n"), "bar"),
            (format!("Include {d}/inc/b.conf {d}/inc/a.conf\nPort 4\n"), "bar"),
            (format!("Include {d}/nothing*\nPort 4\n"), "bar"),
            (format!("Match host foo\n  Include {d}/inc/a.conf\n"), "foo"),
        ];
        for (i, (text, host)) in configs.iter().enumerate() {
            let cfg = dir.path().join(format!("top{i}.cfg"));
            fs::write(&cfg, text).expect("write");
            let o = Overrides { config_file: Some(cfg), ..Overrides::default() };
            let g = ssh_g(ssh, dir.path(), &o, host).unwrap_or_else(|e| panic!("{text}: {e}"));
            let mine = resolve(host, &o, &env).unwrap_or_else(|e| panic!("{text}: {e}"));
            compare(&mine, &g, &env);
        }
    }

    /// Error cases: our message must be ssh's stderr, line for line.
    #[test]
    fn config_errors_match_ssh() {
        let Some(ssh) = openssh() else { return };
        let dir = tempfile::TempDir::new().expect("temp dir");
        let env = env();
        let d = dir.path().display().to_string();
        fs::write(dir.path().join("loop.cfg"), format!("Include {d}/loop.cfg\n")).expect("write");
        let loose = dir.path().join("loose.conf");
        fs::write(&loose, "Port 1\n").expect("write");
        fs::set_permissions(&loose, std::os::unix::fs::PermissionsExt::from_mode(0o666)).expect("chmod");
        let files: Vec<(String, Vec<&str>)> = vec![
            ("frobnicate yes\n".into(), vec![]),
            ("\n\nPort\n".into(), vec![]),
            ("Port abc\n".into(), vec![]),
            ("Port 70000\n".into(), vec![]),
            ("Port \"\"\n".into(), vec![]),
            ("Port 2 3\n".into(), vec![]),
            ("User \"a b\n".into(), vec![]),
            ("StrictHostKeyChecking maybe\n".into(), vec![]),
            (
                "Host other\nfrobnicate yes\nPort abc\nUser\nCompression true\nConnectTimeout x\n".into(),
                vec![],
            ),
            ("ServerAliveCountMax -1\nNumberOfPasswordPrompts x\nLogLevel loud\n".into(), vec![]),
            ("Match frob x\nMatch host\nMatch all host x\nMatch host x user\n".into(), vec![]),
            ("ProxyJump u@h:abc\n".into(), vec![]),
            ("HostName %h.%p\n".into(), vec![]),
            (format!("Include {d}/loop.cfg\n"), vec![]),
            (format!("Include {}\n", loose.display()), vec![]),
            (String::new(), vec!["frob=1"]),
            (String::new(), vec!["Port=abc"]),
            (String::new(), vec!["Port"]),
            (String::new(), vec!["Host=x"]),
            (String::new(), vec!["Include=x"]),
            (String::new(), vec!["IdentityFile=x y"]),
        ];
        for (i, (text, options)) in files.into_iter().enumerate() {
            let cfg = dir.path().join(format!("bad{i}.cfg"));
            fs::write(&cfg, &text).expect("write");
            let o = Overrides { config_file: Some(cfg), options: opts(&options), ..Overrides::default() };
            let want =
                ssh_g(ssh, dir.path(), &o, "foo").err().unwrap_or_else(|| panic!("ssh accepted {text:?}"));
            let got =
                resolve("foo", &o, &env).err().unwrap_or_else(|| panic!("we accepted {text:?} {options:?}"));
            assert_eq!(got.to_string(), want, "config {text:?}, -o {options:?}");
        }
        // A missing -F file.
        let o = Overrides { config_file: Some(dir.path().join("missing")), ..Overrides::default() };
        let want = ssh_g(ssh, dir.path(), &o, "foo").expect_err("ssh fails");
        assert_eq!(resolve("foo", &o, &env).expect_err("we fail").to_string(), want);
    }

    #[test]
    fn config_error_wording() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let env = env();
        let cfg = dir.path().join("c");
        let run = |text: &str| {
            fs::write(&cfg, text).expect("write");
            let o = Overrides { config_file: Some(cfg.clone()), ..Overrides::default() };
            resolve("h", &o, &env).expect_err("error").to_string()
        };
        let p = cfg.display();
        assert_eq!(
            run("x 1\n"),
            format!(
                "{p}: line 1: Bad configuration option: x\n{p}: terminating, 1 bad configuration options"
            )
        );
        assert_eq!(
            run("\nUser\n"),
            format!(
                "{p} line 2: no argument after keyword \"user\"\n{p}: terminating, 1 bad configuration options"
            )
        );
        assert_eq!(
            run("Port abc\n"),
            format!("{p} line 1: Bad port 'abc'.\n{p}: terminating, 1 bad configuration options")
        );
        let missing = dir.path().join("nope");
        let o = Overrides { config_file: Some(missing.clone()), ..Overrides::default() };
        assert_eq!(
            resolve("h", &o, &env).expect_err("error").to_string(),
            format!("Can't open user config file {}: No such file or directory", missing.display())
        );
        let o = Overrides {
            config_file: Some("none".into()),
            options: opts(&["Port=0"]),
            ..Overrides::default()
        };
        assert_eq!(
            resolve("h", &o, &env).expect_err("error").to_string(),
            "command-line line 0: Bad port '0'."
        );
    }

    #[test]
    fn config_none_reads_nothing_and_defaults() {
        let env = Environment {
            home: PathBuf::from("/home/u"),
            local_user: "u".into(),
            uid: 1000,
            system_config: PathBuf::from("/nonexistent/ssh_config"),
            local_host: "box.example".into(),
        };
        let o = Overrides { config_file: Some("none".into()), ..Overrides::default() };
        let c = resolve("Host.Example", &o, &env).expect("resolve");
        assert_eq!(c.hostname, "host.example");
        assert_eq!((c.port, c.user.as_str()), (22, "u"));
        assert_eq!(c.identity_files[0], PathBuf::from("/home/u/.ssh/id_rsa"));
        assert_eq!(c.identity_files.len(), 7);
        assert_eq!(
            c.user_known_hosts_files,
            vec![PathBuf::from("/home/u/.ssh/known_hosts"), PathBuf::from("/home/u/.ssh/known_hosts2")]
        );
        assert_eq!(c.strict_host_key_checking, StrictHostKeyChecking::Ask);
        assert!(c.unsupported.is_empty() && c.warnings.is_empty());
    }

    #[test]
    fn config_tokens_and_relative_include() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let home = dir.path().to_path_buf();
        fs::create_dir(home.join(".ssh")).expect("mkdir");
        fs::write(home.join(".ssh/extra.conf"), "Host foo\n  Port 2200\n").expect("write");
        fs::write(
            home.join(".ssh/config"),
            "Include extra.conf\nHost foo\n  IdentityFile %d/%u-%l-%L-%h-%r-%p-%n-%%\n  ProxyCommand nc %h %p\n  BindAddress 1.2.3.4\n  ForwardX11 yes\n",
        )
        .expect("write");
        let env = Environment {
            home: home.clone(),
            local_user: "me".into(),
            uid: 1000,
            system_config: home.join("no-system-config"),
            local_host: "box.example".into(),
        };
        let o = Overrides { user: Some("you".into()), ..Overrides::default() };
        let c = resolve("foo", &o, &env).expect("resolve");
        assert_eq!(c.port, 2200);
        assert_eq!(
            c.identity_files,
            vec![PathBuf::from(format!("{}/me-box.example-box-foo-you-2200-foo-%", home.display()))]
        );
        assert_eq!(c.proxy_command.as_deref(), Some("nc foo 2200"));
        assert_eq!(c.unsupported, vec!["BindAddress".to_owned()]);
    }

    #[test]
    fn config_split_args() {
        assert_eq!(split_args("a \"b c\" 'd e' f\\ g # x"), Some(opts(&["a", "b c", "d e", "f g"])));
        assert_eq!(split_args("a\"b\"c"), Some(opts(&["abc"])));
        assert_eq!(split_args("\"open"), None);
        assert_eq!(split_args("5#x"), Some(opts(&["5#x"])));
        assert!(wildcard(b"foo.lan", b"*.lan") && wildcard(b"foo", b"f?o") && !wildcard(b"foo", b"f?"));
        assert_eq!(parse_time("1h2m"), Some(3720));
        assert_eq!(parse_time("-1"), None);
    }
}
