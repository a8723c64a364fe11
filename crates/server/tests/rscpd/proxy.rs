//! A TCP proxy on 127.0.0.1 for fault and load tests, put between a client and a
//! server (rscpd, or the testkit's sshd): it forwards every connection, and can
//! cut one after a given number of bytes in either direction (both sockets shut
//! down, as a broken link or a middlebox would), or pass the server's bytes to
//! the client slowly (a slow client). Threads and blocking sockets only; dropping
//! the proxy stops it and shuts every connection down.
//!
//! Shared by rscpd's tests and the cli's (`#[path]`): it must stay free of
//! either crate's helpers.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the proxy does to each connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Plan {
    /// Cut the connection once this many bytes went client → server (exactly
    /// that many are forwarded).
    pub cut_up_after: Option<u64>,
    /// Cut the connection once this many bytes went server → client.
    pub cut_down_after: Option<u64>,
    /// Forward server → client at most this many bytes per second.
    pub throttle_down: Option<u64>,
}

/// What the proxy saw, over all its connections.
#[derive(Debug, Default)]
pub struct Stats {
    pub connections: AtomicU64,
    pub cuts: AtomicU64,
    pub bytes_up: AtomicU64,
    pub bytes_down: AtomicU64,
}

/// A running proxy; its address is `127.0.0.1:port`.
#[derive(Debug)]
pub struct Proxy {
    pub port: u16,
    pub stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    /// A clone of every socket, to shut them all down on drop.
    sockets: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream` following `plan`.
    pub fn start(upstream: SocketAddr, plan: Plan) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy: bind 127.0.0.1:0");
        let port = listener.local_addr().expect("proxy: local address").port();
        let stats = Arc::new(Stats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let sockets = Arc::new(Mutex::new(Vec::new()));
        let (stats2, stop2, sockets2) = (stats.clone(), stop.clone(), sockets.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(upstream) else { continue };
                stats2.connections.fetch_add(1, Ordering::SeqCst);
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                if let (Ok(a), Ok(b)) = (client.try_clone(), server.try_clone()) {
                    let mut all = sockets2.lock().expect("proxy sockets");
                    all.push(a);
                    all.push(b);
                }
                let pair = Pair {
                    client,
                    server,
                    stats: stats2.clone(),
                    cut: Arc::new(AtomicBool::new(false)),
                    registry: sockets2.clone(),
                };
                pair.run(plan);
            }
        });
        Proxy { port, stats, stop, sockets }
    }

    pub fn cuts(&self) -> u64 {
        self.stats.cuts.load(Ordering::SeqCst)
    }

    pub fn connections(&self) -> u64 {
        self.stats.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Ok(all) = self.sockets.lock() {
            for socket in all.iter() {
                let _ = socket.shutdown(Shutdown::Both);
            }
        }
    }
}

/// One proxied connection: a pump thread per direction.
struct Pair {
    client: TcpStream,
    server: TcpStream,
    stats: Arc<Stats>,
    cut: Arc<AtomicBool>,
    registry: Arc<Mutex<Vec<TcpStream>>>,
}

impl Pair {
    fn run(self, plan: Plan) {
        let clones = (self.client.try_clone(), self.server.try_clone());
        let (Ok(client2), Ok(server2)) = clones else { return };
        let up = Pump {
            from: self.client,
            to: self.server,
            cut_after: plan.cut_up_after,
            rate: None,
            counter: Direction::Up,
            stats: self.stats.clone(),
            cut: self.cut.clone(),
            registry: self.registry.clone(),
        };
        let down = Pump {
            from: server2,
            to: client2,
            cut_after: plan.cut_down_after,
            rate: plan.throttle_down,
            counter: Direction::Down,
            stats: self.stats,
            cut: self.cut,
            registry: self.registry,
        };
        std::thread::spawn(move || up.run());
        std::thread::spawn(move || down.run());
    }
}

#[derive(Clone, Copy)]
enum Direction {
    Up,
    Down,
}

struct Pump {
    from: TcpStream,
    to: TcpStream,
    cut_after: Option<u64>,
    rate: Option<u64>,
    counter: Direction,
    stats: Arc<Stats>,
    cut: Arc<AtomicBool>,
    /// The proxy's clones of every socket: a cut drops this pair's, so that the
    /// sockets really close (with unread data: a reset), as a dead link's would.
    registry: Arc<Mutex<Vec<TcpStream>>>,
}

impl Pump {
    fn run(mut self) {
        let chunk = match self.rate {
            // About 20 steps a second, so throttling stays smooth.
            Some(rate) => usize::try_from(rate / 20).unwrap_or(64 * 1024).clamp(1, 64 * 1024),
            None => 64 * 1024,
        };
        let mut buf = vec![0u8; chunk];
        let started = Instant::now();
        let mut moved: u64 = 0;
        loop {
            let n = match self.from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut n = n as u64;
            let mut cut_now = false;
            if let Some(limit) = self.cut_after
                && moved + n >= limit
            {
                n = limit - moved;
                cut_now = true;
            }
            let len = usize::try_from(n).unwrap_or(0);
            if self.to.write_all(&buf[..len]).is_err() {
                break;
            }
            moved += n;
            let total = match self.counter {
                Direction::Up => &self.stats.bytes_up,
                Direction::Down => &self.stats.bytes_down,
            };
            total.fetch_add(n, Ordering::SeqCst);
            if cut_now {
                self.cut.store(true, Ordering::SeqCst);
                self.stats.cuts.fetch_add(1, Ordering::SeqCst);
                break;
            }
            if let Some(rate) = self.rate {
                let due = Duration::from_secs_f64(moved as f64 / rate.max(1) as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        }
        if self.cut.load(Ordering::SeqCst) {
            // A cut: both ends lose the connection at once, in both directions.
            // (`from` and `to` are the two sockets; the other pump holds clones.)
            let keys = [&self.from, &self.to].map(socket_id);
            let _ = self.from.shutdown(Shutdown::Both);
            let _ = self.to.shutdown(Shutdown::Both);
            // Without this the proxy's clones keep both sockets open: the peer's
            // window stays shut and its writes wait for ever instead of failing.
            if let Ok(mut all) = self.registry.lock() {
                all.retain(|s| !keys.contains(&socket_id(s)));
            }
        } else {
            // An orderly end of one direction: pass the half-close on.
            let _ = self.to.shutdown(Shutdown::Write);
            let _ = self.from.shutdown(Shutdown::Read);
        }
    }
}

/// Which socket a descriptor refers to (`socket:[inode]`), the same for its clones.
fn socket_id(socket: &TcpStream) -> Option<std::path::PathBuf> {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", socket.as_raw_fd())).ok()
}
