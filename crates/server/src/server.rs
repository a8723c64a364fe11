//! The SSH side of rscpd: the listener, the limits on connections that have not
//! logged in, authentication, and the channel requests (exec scp, subsystem sftp;
//! everything else refused with a message). russh stays inside this module.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use russh::keys::PrivateKey;
use russh::keys::ssh_key::HashAlg;
use russh::server::{Auth, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelOpenFailure, MethodKind, MethodSet};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::authorized_keys::AuthorizedKeys;
use crate::exec::{self, ScpSession};
use crate::password::PasswordFile;
use crate::sftp::{self, SftpOptions};

/// Channels one connection may hold open at once (scp and sftp need one each).
const MAX_CHANNELS: usize = 16;
/// How long a shutdown waits for running transfers before closing them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Receive window per channel: large, so one connection can fill a fast link.
const WINDOW_SIZE: u32 = 16 * 1024 * 1024;

/// Everything the connections share.
pub struct Shared {
    pub keys: Option<AuthorizedKeys>,
    pub passwords: Option<PasswordFile>,
    pub root: Arc<cap_std::fs::Dir>,
    pub read_only: bool,
    pub max_unauthenticated: usize,
    pub login_grace_time: Duration,
    unauthenticated: Mutex<VecDeque<(u64, oneshot::Sender<()>)>>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("read_only", &self.read_only).finish_non_exhaustive()
    }
}

impl Shared {
    pub fn new(
        keys: Option<AuthorizedKeys>,
        passwords: Option<PasswordFile>,
        root: cap_std::fs::Dir,
        read_only: bool,
        max_unauthenticated: usize,
        login_grace_time: Duration,
    ) -> Shared {
        Shared {
            keys,
            passwords,
            root: Arc::new(root),
            read_only,
            max_unauthenticated,
            login_grace_time,
            unauthenticated: Mutex::new(VecDeque::new()),
            next_id: AtomicU64::new(1),
        }
    }

    /// Registers a new connection as not yet logged in; when there are too many,
    /// the oldest one is dropped (a new client always gets its chance, so idle
    /// connections cannot lock everybody out). The receiver fires on eviction.
    fn admit(&self, id: u64) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let mut waiting = self.unauthenticated.lock().unwrap_or_else(|e| e.into_inner());
        while waiting.len() >= self.max_unauthenticated {
            if let Some((_, evict)) = waiting.pop_front() {
                let _ = evict.send(());
            }
        }
        waiting.push_back((id, tx));
        rx
    }

    /// The connection logged in, or ended: it no longer counts.
    fn leave(&self, id: u64) {
        let mut waiting = self.unauthenticated.lock().unwrap_or_else(|e| e.into_inner());
        waiting.retain(|(other, _)| *other != id);
    }
}

/// The russh configuration: our host key, the methods we can check, the limits.
pub fn config(host_key: PrivateKey, shared: &Shared, max_auth_tries: usize) -> russh::server::Config {
    let mut methods = Vec::new();
    if shared.keys.is_some() {
        methods.push(MethodKind::PublicKey);
    }
    if shared.passwords.is_some() {
        methods.push(MethodKind::Password);
    }
    russh::server::Config {
        server_id: russh::SshId::Standard(format!("SSH-2.0-rscpd_{}", env!("CARGO_PKG_VERSION")).into()),
        methods: MethodSet::from(methods.as_slice()),
        auth_rejection_time: Duration::from_millis(500),
        // OpenSSH clients open with a "none" probe: answer it at once.
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![host_key],
        window_size: WINDOW_SIZE,
        maximum_packet_size: 32768,
        max_auth_attempts: max_auth_tries,
        inactivity_timeout: Some(Duration::from_secs(600)),
        keepalive_interval: Some(Duration::from_secs(60)),
        keepalive_max: 3,
        preferred: russh::Preferred { cipher: CIPHERS.into(), ..russh::Preferred::default() },
        ..Default::default()
    }
}

/// What OpenSSH 9 offers, AES-GCM included (russh's server default leaves out
/// aes128-gcm, the fastest cipher where the CPU has AES instructions). The
/// client's order decides; this only sets what is possible.
const CIPHERS: &[russh::cipher::Name] = &[
    russh::cipher::AES_128_GCM,
    russh::cipher::AES_256_GCM,
    russh::cipher::CHACHA20_POLY1305,
    russh::cipher::AES_128_CTR,
    russh::cipher::AES_192_CTR,
    russh::cipher::AES_256_CTR,
];

/// Accepts connections until `shutdown` fires, then lets running transfers end
/// (up to [`SHUTDOWN_GRACE`]) and closes what is left.
pub async fn serve(
    listener: TcpListener,
    config: Arc<russh::server::Config>,
    shared: Arc<Shared>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut connections = JoinSet::new();
    let stop = Arc::new(Notify::new());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
                    let evicted = shared.admit(id);
                    connections.spawn(connection(id, socket, peer, config.clone(), shared.clone(), evicted, stop.clone()));
                }
                Err(e) => {
                    // EMFILE and friends: wait a little instead of spinning.
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    if !connections.is_empty() {
        tracing::warn!("shutting down: waiting for {} connection(s)", connections.len());
        let drained =
            tokio::time::timeout(SHUTDOWN_GRACE, async { while connections.join_next().await.is_some() {} })
                .await;
        if drained.is_err() {
            stop.notify_waiters();
            let _ = tokio::time::timeout(Duration::from_secs(3), async {
                while connections.join_next().await.is_some() {}
            })
            .await;
        }
    }
    tracing::warn!("stopped");
}

/// One client, from the TCP accept to the end. Not logged in within the grace
/// time, or evicted by newer connections while not logged in: dropped.
async fn connection(
    id: u64,
    socket: TcpStream,
    peer: SocketAddr,
    config: Arc<russh::server::Config>,
    shared: Arc<Shared>,
    evicted: oneshot::Receiver<()>,
    stop: Arc<Notify>,
) {
    tracing::info!("connection {id} from {peer}");
    // Tells this connection's transfers that it is gone: a write waiting for
    // window space would otherwise wait for ever (russh never wakes it).
    let (closed_tx, closed_rx) = watch::channel(false);
    // russh applies `Config::nodelay` only in its own accept loop. Without it,
    // Nagle holds back each small record until the peer's delayed ACK (40 ms a file).
    if let Err(e) = socket.set_nodelay(true) {
        tracing::debug!("connection {id}: TCP_NODELAY: {e}");
    }
    let authed = Arc::new(Notify::new());
    let handler = Connection {
        id,
        peer,
        shared: shared.clone(),
        user: String::new(),
        authed: authed.clone(),
        closed: closed_rx,
        channels: HashMap::new(),
        running: Arc::new(AtomicUsize::new(0)),
    };
    let grace = tokio::time::sleep(shared.login_grace_time);
    tokio::pin!(grace);
    // Fires only on a real eviction: the sender is also dropped when the client logs in.
    let evicted = async move {
        if evicted.await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::pin!(evicted);
    let mut logged_in = false;
    let mut finished = false;
    let started = tokio::select! {
        started = russh::server::run_stream(config, socket, handler) => started.map_err(|e| e.to_string()),
        () = &mut grace => Err("login grace time over".to_string()),
        () = &mut evicted => Err("dropped: too many connections not logged in".to_string()),
    };
    let reason = match started {
        Err(e) => Some(e),
        Ok(mut session) => {
            let handle = session.handle();
            let reason = loop {
                tokio::select! {
                    ended = &mut session => {
                        finished = true;
                        break ended.err().map(|e| e.to_string());
                    }
                    () = authed.notified(), if !logged_in => logged_in = true,
                    () = &mut grace, if !logged_in => {
                        let _ = handle.disconnect(russh::Disconnect::ByApplication, "login grace time over".into(), String::new()).await;
                        break Some("login grace time over".to_string());
                    }
                    () = &mut evicted, if !logged_in => {
                        let _ = handle.disconnect(russh::Disconnect::TooManyConnections, "too many unauthenticated connections".into(), String::new()).await;
                        break Some("dropped: too many connections not logged in".to_string());
                    }
                    () = stop.notified() => {
                        let _ = handle.disconnect(russh::Disconnect::ByApplication, "server shutting down".into(), String::new()).await;
                        break Some("server shutting down".to_string());
                    }
                }
            };
            // Let the session task see the disconnect and drop its channels.
            if !finished {
                let _ = tokio::time::timeout(Duration::from_secs(2), session).await;
            }
            reason
        }
    };
    shared.leave(id);
    let _ = closed_tx.send(true);
    match reason {
        Some(reason) => tracing::info!("connection {id} from {peer} closed: {reason}"),
        None => tracing::info!("connection {id} from {peer} closed"),
    }
}

/// russh's per-connection handler.
struct Connection {
    id: u64,
    peer: SocketAddr,
    shared: Arc<Shared>,
    user: String,
    authed: Arc<Notify>,
    /// Becomes true when the connection has ended.
    closed: watch::Receiver<bool>,
    /// Session channels opened but not yet given an exec or subsystem request.
    channels: HashMap<ChannelId, Channel<Msg>>,
    /// Transfers running on this connection (each holds a blocking-pool thread).
    running: Arc<AtomicUsize>,
}

impl Connection {
    fn who(&self) -> String {
        // The user name is the peer's: escaped, so it cannot forge log lines.
        format!("{}@{} [{}]", rscp_proto::display::escape(self.user.as_bytes()), self.peer, self.id)
    }

    fn key_allowed(&self, key: &russh::keys::PublicKey) -> Result<(), String> {
        let Some(keys) = &self.shared.keys else { return Err("no authorized keys".to_string()) };
        keys.check(key, Some(self.peer.ip()), SystemTime::now()).map_err(|refusal| refusal.to_string())
    }

    /// Answers a channel request that rscpd never grants, telling the client why.
    fn refuse(&self, channel: ChannelId, what: &str, session: &mut Session) -> Result<(), russh::Error> {
        tracing::info!("{}: refused {what}", self.who());
        session.channel_failure(channel)
    }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(match self.key_allowed(offer.public_key) {
            Ok(()) => Auth::Accept,
            Err(_) => Auth::reject(),
        })
        .inspect(|_| self.user = user.to_string())
    }

    async fn auth_publickey(&mut self, user: &str, key: VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        self.user = user.to_string();
        let fingerprint = key.public_key.fingerprint(HashAlg::Sha256);
        match self.key_allowed(key.public_key) {
            Ok(()) => {
                tracing::info!(
                    "{}: accepted publickey {} {fingerprint}",
                    self.who(),
                    key.public_key.algorithm()
                );
                Ok(Auth::Accept)
            }
            Err(why) => {
                tracing::warn!("{}: refused publickey {fingerprint}: {why}", self.who());
                Ok(Auth::reject())
            }
        }
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        self.user = user.to_string();
        let shared = self.shared.clone();
        let (user_owned, password) = (user.to_string(), password.to_string());
        // Argon2 is deliberately slow: keep it off the network threads.
        let ok = tokio::task::spawn_blocking(move || {
            shared.passwords.as_ref().is_some_and(|file| file.verify(&user_owned, &password))
        })
        .await
        .unwrap_or(false);
        if ok {
            tracing::info!("{}: accepted password", self.who());
            Ok(Auth::Accept)
        } else {
            tracing::warn!("{}: refused password", self.who());
            Ok(Auth::reject())
        }
    }

    async fn auth_succeeded(&mut self, _session: &mut Session) -> Result<(), Self::Error> {
        self.shared.leave(self.id);
        self.authed.notify_one();
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.channels.len() + self.running.load(Ordering::Relaxed) >= MAX_CHANNELS {
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        }
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn channel_close(&mut self, channel: ChannelId, _session: &mut Session) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        host: &str,
        port: u32,
        _originator: &str,
        _originator_port: u32,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        tracing::info!("{}: refused port forwarding to {host}:{port}", self.who());
        reply
            .reject(ChannelOpenFailure::Other {
                code: 1,
                reason: "rscpd: port forwarding is not served".to_string(),
            })
            .await;
        Ok(())
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        tracing::info!("{}: refused remote forwarding of {address}:{port}", self.who());
        Ok(false)
    }

    async fn streamlocal_forward(&mut self, path: &str, _session: &mut Session) -> Result<bool, Self::Error> {
        tracing::info!("{}: refused socket forwarding of {path}", self.who());
        Ok(false)
    }

    async fn agent_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let _ = self.refuse(channel, "agent forwarding", session);
        Ok(false)
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _cols: u32,
        _rows: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse(channel, "a pty", session)
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single: bool,
        _protocol: &str,
        _cookie: &str,
        _screen: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse(channel, "X11 forwarding", session)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        _value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }

    async fn shell_request(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        tracing::info!("{}: refused a shell", self.who());
        self.finish_with_message(
            channel,
            session,
            "rscpd: this server only copies files (scp, sftp); there is no shell.\r\n",
        )
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let command = match exec::parse(data) {
            Ok(command) => command,
            Err(text) => {
                tracing::info!(
                    "{}: refused command {}",
                    self.who(),
                    rscp_proto::display::escape(&data[..data.len().min(256)])
                );
                return self.finish_with_message(channel, session, &format!("{text}\n"));
            }
        };
        let Some(channel_handle) = self.channels.remove(&channel) else {
            return session.channel_failure(channel);
        };
        session.channel_success(channel)?;
        tracing::info!("{}: {}", self.who(), rscp_proto::display::escape(&data[..data.len().min(1024)]));
        let scp = ScpSession {
            root: rscp_engine::Root::Beneath(self.shared.root.clone()),
            read_only: self.shared.read_only,
            who: self.who(),
        };
        let running = RunningGuard::new(&self.running);
        let mut closed = self.closed.clone();
        spawn_on_blocking_thread(move || async move {
            let _running = running;
            let (mut read_half, write_half) = channel_handle.split();
            let (stderr_tx, mut stderr_rx) = mpsc::unbounded_channel::<Vec<u8>>();
            let mut stderr = write_half.make_writer_ext(Some(1));
            let pump = tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                while let Some(line) = stderr_rx.recv().await {
                    if stderr.write_all(&line).await.is_err() {
                        break;
                    }
                }
                let _ = stderr.flush().await;
            });
            let scp_run =
                exec::run_scp(read_half.make_reader(), write_half.make_writer(), stderr_tx, &command, &scp);
            let status = tokio::select! {
                status = scp_run => status,
                _ = closed.wait_for(|gone| *gone) => {
                    tracing::info!("{}: connection lost during scp", scp.who);
                    1
                }
            };
            let _ = pump.await;
            let _ = write_half.exit_status(status).await;
            let _ = write_half.eof().await;
            let _ = write_half.close().await;
        });
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if name != "sftp" {
            return self.refuse(channel, &format!("subsystem {name:?}"), session);
        }
        let Some(channel_handle) = self.channels.remove(&channel) else {
            return session.channel_failure(channel);
        };
        session.channel_success(channel)?;
        tracing::info!("{}: sftp", self.who());
        let root = self.shared.root.clone();
        let options = SftpOptions { read_only: self.shared.read_only };
        let who = self.who();
        let running = RunningGuard::new(&self.running);
        let mut closed = self.closed.clone();
        spawn_on_blocking_thread(move || async move {
            let _running = running;
            let (mut read_half, write_half) = channel_handle.split();
            let stream = tokio::io::join(read_half.make_reader(), write_half.make_writer());
            let status = tokio::select! {
                result = sftp::serve(stream, root, options) => match result {
                    Ok(()) => 0,
                    Err(e) => {
                        tracing::info!("{who}: sftp ended: {e}");
                        1
                    }
                },
                _ = closed.wait_for(|gone| *gone) => {
                    tracing::info!("{who}: connection lost during sftp");
                    1
                }
            };
            let _ = write_half.exit_status(status).await;
            let _ = write_half.eof().await;
            let _ = write_half.close().await;
        });
        Ok(())
    }
}

impl Connection {
    /// Accepts the request, shows `text` on the client's stderr, exits 1.
    fn finish_with_message(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
        text: &str,
    ) -> Result<(), russh::Error> {
        session.channel_success(channel)?;
        session.extended_data(channel, 1, text.as_bytes().to_vec())?;
        session.exit_status_request(channel, 1)?;
        session.eof(channel)?;
        self.channels.remove(&channel);
        session.close(channel)
    }
}

/// Counts a running transfer for as long as it lives.
struct RunningGuard(Arc<AtomicUsize>);

impl RunningGuard {
    fn new(counter: &Arc<AtomicUsize>) -> RunningGuard {
        counter.fetch_add(1, Ordering::Relaxed);
        RunningGuard(counter.clone())
    }
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs a transfer on the blocking pool: the engine and the SFTP server do
/// synchronous file I/O, which must not stall the threads that move every
/// connection's packets.
/// The future is made on that thread, so it need not be `Send` (the engine's
/// observer is not).
fn spawn_on_blocking_thread<F, Fut>(make: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || runtime.block_on(make()));
}
