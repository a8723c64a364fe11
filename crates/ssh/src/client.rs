//! The native SSH client: TCP connect, host-key verification against known_hosts,
//! authentication, and `exec` returning a [`Remote`]. Built on russh; its types
//! must never appear in this module's public API.
//!
//! Messages follow OpenSSH's `ssh` word for word where users and scripts know
//! them (`ssh: connect to host H port P: Connection refused`,
//! `Host key verification failed.`, `user@host: Permission denied (…).`).
//! Window and packet sizes are set here and nowhere else.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use russh::client::{self, AuthResult, KeyboardInteractiveAuthResponse};
use russh::keys::{self, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{ChannelId, MethodKind, MethodSet, Preferred, cipher};

use crate::known_hosts::{self, HostKey, KnownHosts, Verdict};
use crate::remote::{self, Remote};

/// Asks the user things; the CLI implements it on the terminal, never on
/// stdin/stdout. Every method may return `None` when no answer can be had.
pub trait Prompter: Send {
    /// A secret (password, passphrase), read with echo off.
    fn secret(&mut self, prompt: &str) -> Option<String>;
    /// A line read with echo on (the host-key question).
    fn line(&mut self, prompt: &str) -> Option<String>;
    /// A message for the user (warnings; OpenSSH prints them on stderr).
    fn notice(&mut self, text: &str);
}

/// OpenSSH's `StrictHostKeyChecking`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostKeyChecking {
    Yes,
    AcceptNew,
    No,
    #[default]
    Ask,
}

/// OpenSSH's `AddressFamily`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AddressFamily {
    #[default]
    Any,
    Inet,
    Inet6,
}

/// An authentication method, in the order they are tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    PublicKey,
    KeyboardInteractive,
    Password,
}

/// Everything needed to reach one host; resolved from ssh_config and flags by the
/// caller.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The name the user typed (for messages).
    pub host: String,
    /// What to connect to (`HostName`).
    pub hostname: String,
    pub port: u16,
    pub user: String,
    /// The name looked up in known_hosts (`HostKeyAlias`, else `hostname`).
    pub host_key_name: String,
    /// `host_key_name` is a `HostKeyAlias`: like ssh, look it up and record it
    /// without the port (`alias`, never `[alias]:port`), and do not fall back
    /// to the plain host name.
    pub host_key_alias: bool,
    pub address_family: AddressFamily,
    pub connect_timeout: Option<Duration>,
    pub keepalive_interval: Option<Duration>,
    pub keepalive_max: usize,
    pub host_key_checking: HostKeyChecking,
    pub user_known_hosts: Vec<PathBuf>,
    pub global_known_hosts: Vec<PathBuf>,
    pub hash_known_hosts: bool,
    pub identity_files: Vec<PathBuf>,
    pub certificate_files: Vec<PathBuf>,
    pub identities_only: bool,
    /// The agent's socket (`SSH_AUTH_SOCK` or `IdentityAgent`); `None`: no agent.
    pub agent_socket: Option<PathBuf>,
    pub auth_methods: Vec<AuthMethod>,
    pub password_prompts: u32,
    /// `BatchMode`: never prompt.
    pub batch_mode: bool,
    /// `Ciphers`/`-c`, `KexAlgorithms`, `MACs`, `HostKeyAlgorithms`: ssh_config
    /// lists (`+`/`-`/`^` forms allowed); `None` for rscp's defaults.
    pub ciphers: Option<String>,
    pub kex_algorithms: Option<String>,
    pub macs: Option<String>,
    pub host_key_algorithms: Option<String>,
    pub compression: bool,
    /// `LogLevel` QUIET: no warnings.
    pub quiet: bool,
    /// `ForwardAgent`/`-A`: let remote commands use our agent (for `-R`).
    pub forward_agent: bool,
}

impl ConnectOptions {
    /// The port known_hosts entries are looked up and written with: none (0)
    /// for a `HostKeyAlias`, as ssh's `get_hostfile_hostname_ipaddr`.
    fn known_hosts_port(&self) -> u16 {
        if self.host_key_alias { 0 } else { self.port }
    }

    /// Defaults as OpenSSH's for `user@host:port` (no config applied).
    pub fn new(host: &str, port: u16, user: &str) -> ConnectOptions {
        ConnectOptions {
            host: host.to_string(),
            hostname: host.to_string(),
            port,
            user: user.to_string(),
            host_key_name: host.to_string(),
            host_key_alias: false,
            address_family: AddressFamily::Any,
            connect_timeout: None,
            keepalive_interval: None,
            keepalive_max: 3,
            host_key_checking: HostKeyChecking::Ask,
            user_known_hosts: Vec::new(),
            global_known_hosts: Vec::new(),
            hash_known_hosts: false,
            identity_files: Vec::new(),
            certificate_files: Vec::new(),
            identities_only: false,
            agent_socket: None,
            auth_methods: vec![AuthMethod::PublicKey, AuthMethod::KeyboardInteractive, AuthMethod::Password],
            password_prompts: 3,
            batch_mode: false,
            ciphers: None,
            kex_algorithms: None,
            macs: None,
            host_key_algorithms: None,
            compression: false,
            quiet: false,
            forward_agent: false,
        }
    }
}

/// Why a connection could not be made. `Display` is what `ssh` would print.
#[derive(Debug)]
#[non_exhaustive]
pub enum SshError {
    /// Name resolution failed.
    Resolve { host: String, reason: String },
    /// TCP connect failed or timed out.
    Connect { host: String, port: u16, reason: String },
    /// The host key was refused; the detailed text was already shown.
    HostKey,
    /// No authentication method succeeded.
    PermissionDenied { user: String, host: String, methods: String },
    /// A configuration problem (e.g. an unknown cipher).
    Config(String),
    /// The SSH session failed.
    Protocol(String),
    /// The connection closed early; the text is ssh's.
    Closed(String),
}

impl fmt::Display for SshError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SshError::Resolve { host, reason } => {
                write!(f, "ssh: Could not resolve hostname {host}: {reason}")
            }
            SshError::Connect { host, port, reason } => {
                write!(f, "ssh: connect to host {host} port {port}: {reason}")
            }
            SshError::HostKey => f.write_str(&known_hosts::verification_failed()),
            SshError::PermissionDenied { user, host, methods } => {
                write!(f, "{user}@{host}: Permission denied ({methods}).")
            }
            SshError::Config(text) => write!(f, "ssh: {text}"),
            SshError::Protocol(text) => write!(f, "ssh: {text}"),
            SshError::Closed(text) => f.write_str(text),
        }
    }
}

impl std::error::Error for SshError {}

impl From<russh::Error> for SshError {
    fn from(e: russh::Error) -> Self {
        SshError::Protocol(e.to_string())
    }
}

/// The smallest receive window per channel: OpenSSH's 2 MiB, enough for a fast
/// link. Whatever the window lets the server send and TCP cannot take yet
/// waits in the server: OpenSSH's sshd keeps it in one buffer that it grows by
/// copying and wiping, and with 64 MiB open on a fast link, whenever rscp fell
/// behind for a moment, sshd spent more CPU on that buffer than on the copy (a
/// 1 GiB download took 6-8 s instead of 2.5; docs/benchmarks.md).
const SMALLEST_WINDOW: u32 = 2 * 1024 * 1024;
/// The window a channel opens with, before the round trip is known (some 80 ms
/// after login on a 40 ms link): a slow link is not held to 2 MiB meanwhile,
/// and a fast one has no time to let much pile up.
const OPENING_WINDOW: u32 = 8 * 1024 * 1024;
/// The most the window grows to: a long round trip needs it (russh re-opens the
/// window when half is used, so half of it is what can be in flight: 16 MiB
/// held a 40 ms download near 150 MB/s; 64 MiB lifts it past 200). Memory
/// stays bounded: unread data waits in the kernel's socket buffers, not here.
const LARGEST_WINDOW: u32 = 64 * 1024 * 1024;
/// The rate the window is sized for: a link of round trip `r` gets `r` times this.
const WINDOW_RATE: f64 = 1.6e9;
/// A server that does not answer a ping this soon is taken to be far away.
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// The read buffer in front of the connection: small, so that a 32 KiB packet
/// still goes mostly straight into russh's buffer (a bigger one cost 10% on a
/// large download), while a burst of small packets is one read (4% on a tree
/// upload, whose every file brings two answers).
const STREAM_BUFFER: usize = 4 * 1024;
/// The largest packet we accept. 32 KiB is what every server sends anyway.
const MAX_PACKET: u32 = 32 * 1024;

/// A connected, authenticated SSH session.
pub struct Client {
    /// Shared with the task that measures the round trip after login.
    handle: Arc<client::Handle<Handler>>,
    forward_agent: bool,
    /// The jump host this session is tunnelled through, kept alive with it.
    _via: Option<Box<Client>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Client")
    }
}

type SharedPrompter = Arc<Mutex<Box<dyn Prompter>>>;

impl Client {
    /// Connects to `options.hostname:port`, verifies the host key and
    /// authenticates.
    pub async fn connect(options: &ConnectOptions, prompter: Box<dyn Prompter>) -> Result<Client, SshError> {
        // Bad algorithm names are reported before anything is connected, as ssh does.
        let prepared = Prepared::new(options)?;
        let stream = tcp_connect(options).await?;
        Client::start(options, prepared, stream, prompter).await
    }

    /// As [`Client::connect`], over an already open byte stream (a proxy).
    pub async fn connect_stream<S>(
        options: &ConnectOptions,
        stream: S,
        prompter: Box<dyn Prompter>,
    ) -> Result<Client, SshError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let prepared = Prepared::new(options)?;
        Client::start(options, prepared, stream, prompter).await
    }

    /// The SSH session over `stream`: handshake, host key, authentication.
    async fn start<S>(
        options: &ConnectOptions,
        prepared: Prepared,
        stream: S,
        prompter: Box<dyn Prompter>,
    ) -> Result<Client, SshError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        // russh reads each packet with two reads (length, then the rest); a
        // buffer makes a burst of small packets (a sink's answers) one read.
        let stream = tokio::io::BufReader::with_capacity(STREAM_BUFFER, stream);
        let prompter: SharedPrompter = Arc::new(Mutex::new(prompter));
        let refusal = Arc::new(Mutex::new(false));
        let window = Arc::new(AtomicU32::new(OPENING_WINDOW));
        let handler = Handler {
            options: options.clone(),
            known: prepared.known,
            prompter: prompter.clone(),
            refused: refusal.clone(),
            window: window.clone(),
        };
        let mut handle = match client::connect_stream(Arc::new(prepared.config), stream, handler).await {
            Ok(handle) => handle,
            Err(_) if refusal.lock().map(|r| *r).unwrap_or(true) => return Err(SshError::HostKey),
            // The peer hung up before the session was set up: ssh's words for it.
            Err(russh::Error::Disconnect | russh::Error::HUP) => {
                return Err(SshError::Closed(
                    "kex_exchange_identification: Connection closed by remote host".into(),
                ));
            }
            // Gone before or while we wrote our version line (a ProxyCommand that
            // exits at once): the same closed connection, whichever side saw it first.
            Err(russh::Error::IO(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::UnexpectedEof | io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                ) =>
            {
                return Err(SshError::Closed(
                    "kex_exchange_identification: Connection closed by remote host".into(),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        authenticate(&mut handle, options, &prompter).await?;
        // Measured beside the copy, not before it: the first ping can take
        // 40 ms even on loopback (see window_for_link). Until it is known,
        // windows re-open to the opening size.
        let handle = Arc::new(handle);
        let pinger = handle.clone();
        tokio::spawn(async move { window.store(window_for_link(&pinger).await, Ordering::Relaxed) });
        Ok(Client {
            handle,
            forward_agent: options.forward_agent && options.agent_socket.is_some(),
            _via: None,
        })
    }

    /// Connects through `via` (ProxyJump): a `direct-tcpip` channel from the jump
    /// host to `options.hostname:port` carries this session.
    pub async fn connect_via(
        options: &ConnectOptions,
        via: Client,
        prompter: Box<dyn Prompter>,
    ) -> Result<Client, SshError> {
        let channel = via
            .handle
            .channel_open_direct_tcpip(options.hostname.clone(), u32::from(options.port), "127.0.0.1", 0)
            .await
            .map_err(|e| SshError::Connect {
                host: options.hostname.clone(),
                port: options.port,
                reason: format!("through the jump host: {e}"),
            })?;
        let mut client = Client::connect_stream(options, channel.into_stream(), prompter).await?;
        client._via = Some(Box::new(via));
        Ok(client)
    }

    /// Connects through a `ProxyCommand`: `sh -c command`, whose stdin and stdout
    /// carry the session.
    pub async fn connect_command(
        options: &ConnectOptions,
        command: &str,
        prompter: Box<dyn Prompter>,
    ) -> Result<Client, SshError> {
        // As ssh: `$SHELL -c "exec CMD"`, so no extra shell stays in between.
        let shell = std::env::var_os("SHELL").filter(|s| !s.is_empty()).unwrap_or_else(|| "/bin/sh".into());
        let prepared = Prepared::new(options)?;
        let mut child = tokio::process::Command::new(shell)
            .arg("-c")
            .arg(format!("exec {command}"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| SshError::Config(format!("ProxyCommand: {e}")))?;
        let (Some(stdout), Some(stdin)) = (child.stdout.take(), child.stdin.take()) else {
            return Err(SshError::Config("ProxyCommand: no pipes".into()));
        };
        let stream = ProxyStream { _child: child, io: tokio::io::join(stdout, stdin) };
        Client::start(options, prepared, stream, prompter).await
    }

    /// Runs `command` on the server (an SSH `exec` request, no pty).
    pub async fn exec(&self, command: &[u8]) -> Result<Remote, SshError> {
        let channel = self.handle.channel_open_session().await?;
        if self.forward_agent {
            // Like ssh, ask without waiting for the answer: a refusal is not fatal.
            channel.agent_forward(false).await?;
        }
        channel.exec(true, command.to_vec()).await?;
        Ok(remote::from_channel(channel, "exec"))
    }

    /// Starts the server's `name` subsystem (`sftp`), as `ssh -s`.
    pub async fn subsystem(&self, name: &str) -> Result<Remote, SshError> {
        let channel = self.handle.channel_open_session().await?;
        if self.forward_agent {
            channel.agent_forward(false).await?;
        }
        channel.request_subsystem(true, name).await?;
        Ok(remote::from_channel(channel, "subsystem"))
    }

    /// Ends the session politely.
    pub async fn close(&self) {
        let _ = self.handle.disconnect(russh::Disconnect::ByApplication, "", "en").await;
    }
}

/// A `ProxyCommand` child's pipes as one stream; the child dies with it.
struct ProxyStream {
    _child: tokio::process::Child,
    io: tokio::io::Join<tokio::process::ChildStdout, tokio::process::ChildStdin>,
}

impl tokio::io::AsyncRead for ProxyStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for ProxyStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Opens the TCP connection the way ssh does: every resolved address of the
/// requested family in turn, each within `ConnectTimeout`.
async fn tcp_connect(options: &ConnectOptions) -> Result<tokio::net::TcpStream, SshError> {
    let resolve_error = |reason: String| SshError::Resolve { host: options.hostname.clone(), reason };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((options.hostname.as_str(), options.port))
        .await
        .map_err(|_| resolve_error("Name or service not known".into()))?
        .filter(|a| match options.address_family {
            AddressFamily::Any => true,
            AddressFamily::Inet => a.is_ipv4(),
            AddressFamily::Inet6 => a.is_ipv6(),
        })
        .collect();
    if addrs.is_empty() {
        return Err(resolve_error("Address family for hostname not supported".into()));
    }
    let mut last = String::new();
    for addr in addrs {
        let attempt = tokio::net::TcpStream::connect(addr);
        let result = match options.connect_timeout {
            Some(limit) => match tokio::time::timeout(limit, attempt).await {
                Ok(result) => result,
                Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "Connection timed out")),
            },
            None => attempt.await,
        };
        match result {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = rscp_engine::fs::errno_text(&e),
        }
    }
    Err(SshError::Connect { host: options.hostname.clone(), port: options.port, reason: last })
}

/// What a connection needs before it starts: known_hosts, read once, for both
/// the algorithm order and the host-key check, and russh's configuration.
struct Prepared {
    known: KnownHosts,
    config: client::Config,
}

impl Prepared {
    fn new(options: &ConnectOptions) -> Result<Prepared, SshError> {
        let known = KnownHosts::load(&options.user_known_hosts, &options.global_known_hosts);
        let config = client_config(options, &known)?;
        Ok(Prepared { known, config })
    }
}

fn client_config(options: &ConnectOptions, known: &KnownHosts) -> Result<client::Config, SshError> {
    let mut preferred = Preferred::default();
    let names = |defaults: Vec<String>, spec: &Option<String>, what: &str| match spec {
        None => Ok(defaults),
        Some(spec) => algorithm_list(defaults, spec)
            .ok_or_else(|| SshError::Config(format!("Bad SSH2 {what} '{spec}'."))),
    };
    let bad = |what: &str, name: &str| SshError::Config(format!("Bad SSH2 {what} '{name}'."));
    preferred.cipher = names(default_cipher_names(), &options.ciphers, "cipher spec")?
        .iter()
        .map(|n| cipher::Name::try_from(n.as_str()).map_err(|_| bad("cipher spec", n)))
        .collect::<Result<Vec<_>, _>>()?
        .into();
    let mut kex = names(default_kex_names(), &options.kex_algorithms, "KexAlgorithms")?
        .iter()
        .map(|n| russh::kex::Name::try_from(n.as_str()).map_err(|_| bad("KexAlgorithms", n)))
        .collect::<Result<Vec<_>, _>>()?;
    // Always: extension negotiation and strict key exchange (the Terrapin fix).
    kex.extend([russh::kex::EXTENSION_SUPPORT_AS_CLIENT, russh::kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT]);
    preferred.kex = kex.into();
    if options.macs.is_some() {
        let default_macs = preferred.mac.iter().map(|m| m.as_ref().to_string()).collect();
        preferred.mac = names(default_macs, &options.macs, "Mac spec")?
            .iter()
            .map(|n| russh::mac::Name::try_from(n.as_str()).map_err(|_| bad("Mac spec", n)))
            .collect::<Result<Vec<_>, _>>()?
            .into();
    }
    let default_keys: Vec<String> = preferred.key.iter().map(|a| a.as_str().to_string()).collect();
    let mut keys_wanted = Vec::new();
    let mut certs_wanted = Vec::new();
    for name in names(default_keys, &options.host_key_algorithms, "host key algorithms")? {
        let (plain, cert) = match name.strip_suffix("-cert-v01@openssh.com") {
            Some(plain) => (plain.replace("ssh-rsa", "rsa-sha2-512"), true),
            None => (name.clone(), false),
        };
        let algorithm = plain.parse::<keys::Algorithm>().map_err(|_| bad("host key algorithms", &name))?;
        if cert { certs_wanted.push(algorithm) } else { keys_wanted.push(algorithm) }
    }
    // Like ssh, ask first for the key types known_hosts already holds for this
    // host, so a server with several host keys shows one we can verify.
    let known_types = known.known_types(&options.host_key_name, options.known_hosts_port());
    let is_known = |a: &keys::Algorithm| {
        let family = if a.clone().is_rsa() { "ssh-rsa".to_string() } else { a.as_str().to_string() };
        known_types.contains(&family)
    };
    keys_wanted.sort_by_key(|a| !is_known(a));
    // Certificates only when a CA is trusted for the host (or asked for by name).
    if certs_wanted.is_empty() && known.has_cert_authority(&options.host_key_name, options.known_hosts_port())
    {
        certs_wanted = keys_wanted.clone();
    }
    preferred.key = keys_wanted.into();
    preferred.host_key_certificates = certs_wanted.into();
    preferred.compression = if options.compression {
        vec![russh::compression::ZLIB, russh::compression::ZLIB_LEGACY, russh::compression::NONE].into()
    } else {
        vec![russh::compression::NONE].into()
    };
    Ok(client::Config {
        window_size: OPENING_WINDOW,
        maximum_packet_size: MAX_PACKET,
        preferred,
        keepalive_interval: options.keepalive_interval,
        keepalive_max: options.keepalive_max,
        nodelay: true,
        ..client::Config::default()
    })
}

/// The window a link needs, from the round trip of a ping after login: what
/// the round trip holds at [`WINDOW_RATE`], within OpenSSH's 2 MiB and 64 MiB.
/// Two pings, the shorter counts: sshd's answer to the first can wait for our
/// delayed ACK of what it sent after login (Nagle: 40 ms on loopback); the
/// second request carries that ACK. A server that does not answer gets the largest.
async fn window_for_link(handle: &client::Handle<Handler>) -> u32 {
    let mut shortest: Option<Duration> = None;
    for _ in 0..2 {
        let started = Instant::now();
        match tokio::time::timeout(PING_TIMEOUT, handle.send_ping()).await {
            Ok(Ok(())) => {
                let took = started.elapsed();
                shortest = Some(shortest.map_or(took, |s| s.min(took)));
            }
            _ => return LARGEST_WINDOW,
        }
    }
    shortest.map_or(LARGEST_WINDOW, window_for)
}

fn window_for(round_trip: Duration) -> u32 {
    let held = round_trip.as_secs_f64() * WINDOW_RATE;
    // A float to integer `as` saturates.
    (held as u32).clamp(SMALLEST_WINDOW, LARGEST_WINDOW)
}

/// ssh_config(5) algorithm lists: a plain list replaces the defaults; `+list`
/// appends, `-list` removes (`*` and `?` patterns allowed), `^list` puts first.
/// `None` if the result is empty.
pub fn algorithm_list(defaults: Vec<String>, spec: &str) -> Option<Vec<String>> {
    let split = |list: &str| list.split(',').filter(|s| !s.is_empty()).map(String::from).collect::<Vec<_>>();
    let list: Vec<String> = match spec.as_bytes().first() {
        Some(b'+') => {
            let extra = split(&spec[1..]);
            let mut list: Vec<String> = defaults.into_iter().filter(|n| !extra.contains(n)).collect();
            list.extend(extra);
            list
        }
        Some(b'-') => {
            let removed = split(&spec[1..]);
            defaults.into_iter().filter(|n| !removed.iter().any(|p| glob_match(p, n))).collect()
        }
        Some(b'^') => {
            let first = split(&spec[1..]);
            first.iter().cloned().chain(defaults.into_iter().filter(|n| !first.contains(n))).collect()
        }
        _ => split(spec),
    };
    (!list.is_empty()).then_some(list)
}

fn glob_match(pattern: &str, name: &str) -> bool {
    rscp_proto::filter::fnmatch(pattern.as_bytes(), name.as_bytes())
}

/// Key exchange methods offered by default, best first (what OpenSSH 9 offers
/// that russh implements).
fn default_kex_names() -> Vec<String> {
    use russh::kex;
    [
        kex::MLKEM768X25519_SHA256,
        kex::CURVE25519,
        kex::CURVE25519_PRE_RFC_8731,
        kex::ECDH_SHA2_NISTP256,
        kex::ECDH_SHA2_NISTP384,
        kex::ECDH_SHA2_NISTP521,
        kex::DH_GEX_SHA256,
        kex::DH_G16_SHA512,
        kex::DH_G18_SHA512,
        kex::DH_G14_SHA256,
    ]
    .iter()
    .map(|n| n.as_ref().to_string())
    .collect()
}

/// AES-GCM first where the CPU has AES instructions (it is then the fastest
/// AEAD); otherwise ChaCha20-Poly1305. Then what OpenSSH 9 also offers.
fn default_ciphers() -> Vec<cipher::Name> {
    let mut list = if has_aes_instructions() {
        vec![cipher::AES_128_GCM, cipher::AES_256_GCM, cipher::CHACHA20_POLY1305]
    } else {
        vec![cipher::CHACHA20_POLY1305, cipher::AES_128_GCM, cipher::AES_256_GCM]
    };
    list.extend([cipher::AES_128_CTR, cipher::AES_192_CTR, cipher::AES_256_CTR]);
    list
}

/// rscp's default cipher order, by name (the base that `Ciphers=+…/-…/^…` edits).
pub fn default_cipher_names() -> Vec<String> {
    default_ciphers().iter().map(|c| c.as_ref().to_string()).collect()
}

fn has_aes_instructions() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// russh's callbacks: host-key verification.
struct Handler {
    options: ConnectOptions,
    known: KnownHosts,
    prompter: SharedPrompter,
    /// Set when we refused the host key (so the error says so).
    refused: Arc<Mutex<bool>>,
    /// What channels' receive windows grow to, once the round trip is known.
    window: Arc<AtomicU32>,
}

impl client::Handler for Handler {
    type Error = russh::Error;

    /// Each time a window is re-opened: the size for the next time (honoured
    /// by the patched russh, vendor/README.md).
    fn adjust_window(&mut self, _channel: ChannelId, _current: u32) -> u32 {
        self.window.load(Ordering::Relaxed)
    }

    async fn check_server_key(&mut self, server_key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let accepted = verify_host_key(&self.options, &self.known, server_key, &self.prompter);
        if !accepted && let Ok(mut refused) = self.refused.lock() {
            *refused = true;
        }
        Ok(accepted)
    }

    /// The server opens a channel to our agent (after `-A`): relay it to the
    /// local agent socket, or refuse when forwarding was not asked for.
    async fn server_channel_open_agent_forward(
        &mut self,
        channel: russh::Channel<client::Msg>,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        let socket = self.options.agent_socket.clone().filter(|_| self.options.forward_agent);
        let Some(socket) = socket else {
            reply.reject(russh::ChannelOpenFailure::AdministrativelyProhibited).await;
            return Ok(());
        };
        reply.accept().await;
        tokio::spawn(async move {
            if let Ok(mut agent) = tokio::net::UnixStream::connect(&socket).await {
                let mut stream = channel.into_stream();
                let _ = tokio::io::copy_bidirectional(&mut stream, &mut agent).await;
            }
        });
        Ok(())
    }

    async fn auth_banner(&mut self, banner: &str, _session: &mut client::Session) -> Result<(), Self::Error> {
        if !self.options.quiet {
            notice(&self.prompter, &rscp_proto::display::escape_text(banner.as_bytes()));
        }
        Ok(())
    }
}

fn notice(prompter: &SharedPrompter, text: &str) {
    if let Ok(mut p) = prompter.lock() {
        p.notice(text);
    }
}

fn key_of(key: &keys::PublicKey) -> Option<HostKey> {
    Some(HostKey { algorithm: key.algorithm().as_str().to_string(), blob: key.to_bytes().ok()? })
}

/// Decides whether to trust the server's key, as `ssh` does with known_hosts and
/// StrictHostKeyChecking. Prints OpenSSH's messages through the prompter.
fn verify_host_key(
    options: &ConnectOptions,
    known: &KnownHosts,
    server_key: &PublicKeyOrCertificate,
    prompter: &SharedPrompter,
) -> bool {
    let name = options.host_key_name.as_str();
    let port = options.known_hosts_port();
    let display_name = known_hosts::host_pattern(name, port);
    let key = match server_key {
        PublicKeyOrCertificate::PublicKey { key, .. } => key_of(key),
        PublicKeyOrCertificate::Certificate(cert) => {
            return verify_host_certificate(options, cert, known, prompter);
        }
    };
    let Some(key) = key else {
        notice(prompter, "Unsupported host key type.");
        return false;
    };
    match known.check(name, port, &key) {
        Verdict::Known => true,
        Verdict::Revoked { .. } => {
            notice(prompter, &known_hosts::revoked_warning_for(&display_name, &key));
            false
        }
        Verdict::Changed { path, line, expected } => {
            let add_to = known.user_file().unwrap_or(&path).to_path_buf();
            notice(
                prompter,
                &known_hosts::changed_warning_in(&add_to, &display_name, &key, &expected, &path, line),
            );
            false
        }
        Verdict::OtherTypesKnown | Verdict::Unknown => {
            // Like ssh (sshconnect.c, HOST_NEW): a host unknown as `[host]:port`
            // is also looked up as plain `host`; only a matching key counts there.
            let plain_known = !options.host_key_alias
                && port != 0
                && port != 22
                && known.check(name, 0, &key) == Verdict::Known;
            plain_known || learn(options, &key, &display_name, prompter)
        }
    }
}

/// A key that is not in known_hosts: refuse, add, or ask, per the policy.
fn learn(options: &ConnectOptions, key: &HostKey, display_name: &str, prompter: &SharedPrompter) -> bool {
    let policy = match options.host_key_checking {
        HostKeyChecking::Ask if options.batch_mode => HostKeyChecking::Yes,
        policy => policy,
    };
    let label = key.type_label();
    match policy {
        HostKeyChecking::Yes => {
            notice(
                prompter,
                &format!(
                    "No {label} host key is known for {display_name} and you have requested strict checking."
                ),
            );
            false
        }
        HostKeyChecking::Ask => {
            let question = format!(
                "The authenticity of host '{display_name} ({addr})' can't be established.\n{label} key fingerprint is {fp}.\nThis key is not known by any other names.\nAre you sure you want to continue connecting (yes/no/[fingerprint])? ",
                addr = display_name,
                fp = known_hosts::fingerprint_sha256(key),
            );
            let fingerprint = known_hosts::fingerprint_sha256(key);
            loop {
                let answer = prompter.lock().ok().and_then(|mut p| p.line(&question));
                match answer.as_deref().map(str::trim) {
                    Some("yes") => break,
                    Some(fp) if fp == fingerprint => break,
                    Some("no") | None => return false,
                    Some(_) => {
                        notice(prompter, "Please type 'yes', 'no' or the fingerprint: ");
                        continue;
                    }
                }
            }
            add_key(options, key, display_name, &label, prompter);
            true
        }
        HostKeyChecking::AcceptNew | HostKeyChecking::No => {
            add_key(options, key, display_name, &label, prompter);
            true
        }
    }
}

fn add_key(
    options: &ConnectOptions,
    key: &HostKey,
    display_name: &str,
    label: &str,
    prompter: &SharedPrompter,
) {
    let Some(file) = options.user_known_hosts.first() else { return };
    match known_hosts::append(
        file,
        &options.host_key_name,
        options.known_hosts_port(),
        key,
        options.hash_known_hosts,
    ) {
        Ok(()) if !options.quiet => notice(
            prompter,
            &format!("Warning: Permanently added '{display_name}' ({label}) to the list of known hosts."),
        ),
        Ok(()) => {}
        Err(e) => notice(
            prompter,
            &format!("Failed to add the host to the list of known hosts ({}): {e}", file.display()),
        ),
    }
}

/// A host certificate: signed by a CA that known_hosts trusts for this host,
/// valid now, for this host name.
fn verify_host_certificate(
    options: &ConnectOptions,
    cert: &keys::Certificate,
    known: &KnownHosts,
    prompter: &SharedPrompter,
) -> bool {
    let ca_key = keys::PublicKey::from(cert.signature_key().clone());
    let Some(ca) = key_of(&ca_key) else { return false };
    let fail = |text: String| {
        notice(prompter, &text);
        false
    };
    match known.check_ca(&options.host_key_name, options.known_hosts_port(), &ca) {
        Verdict::Known => {}
        Verdict::Revoked { .. } => {
            let name = known_hosts::host_pattern(&options.host_key_name, options.known_hosts_port());
            return fail(known_hosts::revoked_warning_for(&name, &ca));
        }
        _ => {
            return fail(
                "No matching host key fingerprint found in known_hosts for this certificate's CA.".into(),
            );
        }
    }
    if cert.cert_type() != keys::ssh_key::certificate::CertType::Host {
        return fail("Certificate invalid: not a host certificate".into());
    }
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let fingerprint = cert.signature_key().fingerprint(keys::HashAlg::Sha256);
    if cert.validate_at(now, [&fingerprint]).is_err() {
        return fail("Certificate invalid: expired, not yet valid, or badly signed".into());
    }
    let principals = cert.valid_principals();
    if !principals.is_empty() && !principals.iter().any(|p| p == &options.host_key_name) {
        return fail(format!(
            "Certificate invalid: name is not a listed principal ({})",
            options.host_key_name
        ));
    }
    true
}

/// Tries the configured methods in order until one succeeds.
async fn authenticate(
    handle: &mut client::Handle<Handler>,
    options: &ConnectOptions,
    prompter: &SharedPrompter,
) -> Result<(), SshError> {
    let user = options.user.clone();
    // What the server would accept, from its last refusal: unknown at first.
    // Keys are offered straight away (a refusal lists the methods, as "none"
    // would: one round trip fewer when a key is accepted); "none" is asked
    // before anything that prompts, so a server that lets in without
    // credentials never gets a prompt.
    let mut methods: Option<MethodSet> = None;
    let mut asked_none = false;
    for method in &options.auth_methods {
        let offered =
            |set: &Option<MethodSet>, kind: MethodKind| set.as_ref().is_none_or(|s| s.contains(&kind));
        if *method != AuthMethod::PublicKey && !asked_none {
            asked_none = true;
            match handle.authenticate_none(&user).await? {
                AuthResult::Success => return Ok(()),
                AuthResult::Failure { remaining_methods, .. } => methods = Some(remaining_methods),
            }
        }
        let result = match method {
            AuthMethod::PublicKey if offered(&methods, MethodKind::PublicKey) => {
                public_key(handle, options, prompter).await?
            }
            AuthMethod::KeyboardInteractive if offered(&methods, MethodKind::KeyboardInteractive) => {
                keyboard_interactive(handle, options, prompter).await?
            }
            AuthMethod::Password if offered(&methods, MethodKind::Password) => {
                password(handle, options, prompter).await?
            }
            _ => continue,
        };
        match result {
            Some(AuthResult::Success) => return Ok(()),
            Some(AuthResult::Failure { remaining_methods, .. }) => methods = Some(remaining_methods),
            None => {}
        }
    }
    if !asked_none {
        // Nothing was tried, or only keys: "none" may still let in, and its
        // refusal names the methods for the message.
        match handle.authenticate_none(&user).await? {
            AuthResult::Success => return Ok(()),
            AuthResult::Failure { remaining_methods, .. } => methods = Some(remaining_methods),
        }
    }
    let names: Vec<&str> = methods.iter().flat_map(|set| set.iter()).map(<&str>::from).collect();
    Err(SshError::PermissionDenied { user, host: options.host.clone(), methods: names.join(",") })
}

/// Agent keys first, then identity files (with their certificates), as ssh does.
/// `Ok(None)` when there was nothing to try.
async fn public_key(
    handle: &mut client::Handle<Handler>,
    options: &ConnectOptions,
    prompter: &SharedPrompter,
) -> Result<Option<AuthResult>, SshError> {
    let user = options.user.clone();
    let mut last = None;
    // Asked only for an RSA key: the answer waits for the server's ext-info,
    // a round trip an Ed25519 or ECDSA key need not pay.
    let mut rsa_hash = None;
    let wanted: Vec<keys::PublicKey> = options
        .identity_files
        .iter()
        .filter_map(|path| keys::load_public_key(path.with_extension(pub_extension(path))).ok())
        .collect();
    if let Some(socket) = &options.agent_socket
        && let Ok(mut agent) = keys::agent::client::AgentClient::connect_uds(socket).await
    {
        let identities = agent.request_identities().await.unwrap_or_default();
        for identity in identities {
            let keys::agent::AgentIdentity::PublicKey { key, .. } = identity else { continue };
            if options.identities_only && !wanted.iter().any(|w| w.key_data() == key.key_data()) {
                continue;
            }
            let hash = if key.algorithm().is_rsa() { rsa_hash_of(handle, &mut rsa_hash).await } else { None };
            match handle.authenticate_publickey_with(&user, key, hash, &mut agent).await {
                Ok(AuthResult::Success) => return Ok(Some(AuthResult::Success)),
                Ok(failure) => last = Some(failure),
                Err(_) => {}
            }
        }
    }
    for path in &options.identity_files {
        let Some(key) = load_identity(path, options, prompter) else { continue };
        let key = Arc::new(key);
        let mut certificates: Vec<PathBuf> = options.certificate_files.clone();
        certificates.push(cert_path(path));
        for cert_file in certificates {
            let Ok(cert) = keys::load_openssh_certificate(&cert_file) else { continue };
            if cert.public_key() != key.public_key().key_data() {
                continue;
            }
            // On failure the plain key is tried next, whose answer counts.
            if handle.authenticate_openssh_cert(&user, key.clone(), cert).await?.success() {
                return Ok(Some(AuthResult::Success));
            }
        }
        let hash = if key.algorithm().is_rsa() { rsa_hash_of(handle, &mut rsa_hash).await } else { None };
        match handle.authenticate_publickey(&user, PrivateKeyWithHashAlg::new(key, hash)).await? {
            AuthResult::Success => return Ok(Some(AuthResult::Success)),
            failure => last = Some(failure),
        }
    }
    Ok(last)
}

/// The signature hash for RSA keys the server takes (server-sig-algs), looked up once.
async fn rsa_hash_of(
    handle: &client::Handle<Handler>,
    known: &mut Option<Option<keys::HashAlg>>,
) -> Option<keys::HashAlg> {
    if known.is_none() {
        *known = Some(handle.best_supported_rsa_hash().await.ok().flatten().flatten());
    }
    known.flatten()
}

fn pub_extension(path: &std::path::Path) -> String {
    match path.extension() {
        Some(ext) => format!("{}.pub", ext.to_string_lossy()),
        None => "pub".into(),
    }
}

fn cert_path(path: &std::path::Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push("-cert.pub");
    PathBuf::from(name)
}

/// Loads a private key, asking for its passphrase when it is encrypted.
fn load_identity(
    path: &std::path::Path,
    options: &ConnectOptions,
    prompter: &SharedPrompter,
) -> Option<keys::PrivateKey> {
    match keys::load_secret_key(path, None) {
        Ok(key) => return Some(key),
        Err(keys::Error::KeyIsEncrypted) => {}
        Err(_) => return None,
    }
    if options.batch_mode {
        return None;
    }
    let prompt = format!("Enter passphrase for key '{}': ", path.display());
    for _ in 0..options.password_prompts.max(1) {
        let passphrase = prompter.lock().ok().and_then(|mut p| p.secret(&prompt))?;
        if passphrase.is_empty() {
            return None;
        }
        match keys::load_secret_key(path, Some(&passphrase)) {
            Ok(key) => return Some(key),
            Err(_) => continue,
        }
    }
    None
}

async fn keyboard_interactive(
    handle: &mut client::Handle<Handler>,
    options: &ConnectOptions,
    prompter: &SharedPrompter,
) -> Result<Option<AuthResult>, SshError> {
    if options.batch_mode {
        return Ok(None);
    }
    let user = options.user.clone();
    let mut last = None;
    for _ in 0..options.password_prompts.max(1) {
        let mut response = handle.authenticate_keyboard_interactive_start(&user, None::<String>).await?;
        loop {
            match response {
                KeyboardInteractiveAuthResponse::Success => return Ok(Some(AuthResult::Success)),
                KeyboardInteractiveAuthResponse::Failure { remaining_methods, partial_success } => {
                    last = Some(AuthResult::Failure { remaining_methods, partial_success });
                    break;
                }
                KeyboardInteractiveAuthResponse::InfoRequest { name, instructions, prompts } => {
                    for text in [name, instructions] {
                        if !text.is_empty() {
                            notice(prompter, &rscp_proto::display::escape_text(text.as_bytes()));
                        }
                    }
                    let mut answers = Vec::with_capacity(prompts.len());
                    for prompt in prompts {
                        let shown = rscp_proto::display::escape(prompt.prompt.as_bytes());
                        let answer = prompter
                            .lock()
                            .ok()
                            .and_then(|mut p| if prompt.echo { p.line(&shown) } else { p.secret(&shown) });
                        match answer {
                            Some(answer) => answers.push(answer),
                            None => return Ok(last),
                        }
                    }
                    response = handle.authenticate_keyboard_interactive_respond(answers).await?;
                }
            }
        }
    }
    Ok(last)
}

async fn password(
    handle: &mut client::Handle<Handler>,
    options: &ConnectOptions,
    prompter: &SharedPrompter,
) -> Result<Option<AuthResult>, SshError> {
    if options.batch_mode {
        return Ok(None);
    }
    let prompt = format!("{}@{}'s password: ", options.user, options.host);
    let mut last = None;
    for attempt in 0..options.password_prompts.max(1) {
        if attempt > 0 {
            notice(prompter, "Permission denied, please try again.");
        }
        let Some(secret) = prompter.lock().ok().and_then(|mut p| p.secret(&prompt)) else {
            return Ok(last);
        };
        match handle.authenticate_password(&options.user, secret).await? {
            AuthResult::Success => return Ok(Some(AuthResult::Success)),
            failure => last = Some(failure),
        }
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_window_follows_the_round_trip() {
        // Loopback and a LAN keep OpenSSH's 2 MiB; 10 ms gets 16 MB, 40 ms
        // 64 MB; a longer round trip the largest.
        assert_eq!(window_for(Duration::from_micros(100)), SMALLEST_WINDOW);
        assert_eq!(window_for(Duration::from_millis(1)), SMALLEST_WINDOW);
        assert_eq!(window_for(Duration::from_millis(10)), 16_000_000);
        assert_eq!(window_for(Duration::from_millis(40)), 64_000_000);
        assert_eq!(window_for(Duration::from_millis(50)), LARGEST_WINDOW);
        assert_eq!(window_for(Duration::from_secs(3600)), LARGEST_WINDOW);
    }

    #[test]
    fn algorithm_list_forms() {
        let defaults = list(&["a", "b", "c"]);
        assert_eq!(algorithm_list(defaults.clone(), "x,y"), Some(list(&["x", "y"])));
        assert_eq!(algorithm_list(defaults.clone(), "+x,a"), Some(list(&["b", "c", "x", "a"])));
        assert_eq!(algorithm_list(defaults.clone(), "-b"), Some(list(&["a", "c"])));
        assert_eq!(algorithm_list(defaults.clone(), "-*"), None);
        assert_eq!(algorithm_list(defaults.clone(), "^c"), Some(list(&["c", "a", "b"])));
        assert_eq!(algorithm_list(defaults, ""), None);
    }

    #[test]
    fn bad_algorithm_names_are_errors() {
        let mut options = ConnectOptions::new("h", 22, "u");
        options.ciphers = Some("aes128-ctr,rot13".into());
        assert_eq!(
            client_config(&options, &KnownHosts::default()).err().map(|e| e.to_string()),
            Some("ssh: Bad SSH2 cipher spec 'rot13'.".into())
        );
        options.ciphers = Some("^aes128-ctr".into());
        let config = client_config(&options, &KnownHosts::default()).expect("valid");
        assert_eq!(config.preferred.cipher.first().map(|c| c.as_ref()), Some("aes128-ctr"));
        options.kex_algorithms = Some("curve25519-sha256".into());
        let config = client_config(&options, &KnownHosts::default()).expect("valid");
        assert!(config.preferred.kex.iter().any(|k| k.as_ref() == "kex-strict-c-v00@openssh.com"));
        options.host_key_algorithms = Some("ssh-ed25519-cert-v01@openssh.com,ssh-ed25519".into());
        let config = client_config(&options, &KnownHosts::default()).expect("valid");
        assert_eq!(config.preferred.host_key_certificates.len(), 1);
        options.macs = Some("hmac-md5".into());
        assert!(client_config(&options, &KnownHosts::default()).is_err());
    }
}
