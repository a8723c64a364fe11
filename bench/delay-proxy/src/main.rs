//! `delay-proxy --listen HOST:PORT --target HOST:PORT [--delay-ms 20] [--max-queued-mib 64]`
//!
//! A TCP proxy that holds every chunk it reads for `--delay-ms` before writing it
//! on, in each direction (so the round trip grows by twice the delay), with a
//! bound on the bytes held per direction for back-pressure. Prints
//! `listening PORT` once it accepts connections (port 0 picks a free one).
//!
//! It stands in for the kernel's netem, which this machine lacks, in case (d) of
//! `bench/run.py`. It replaced a Python proxy (`delay_proxy.py`, kept as the
//! fallback) whose own CPU capped the chain near 170 MB/s on 2 cores, below what
//! the tools it measures reach at 40 ms round trip.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;

const CHUNK: usize = 1024 * 1024;

#[derive(Debug)]
struct Options {
    listen: String,
    target: String,
    delay: Duration,
    max_queued: usize,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        listen: "127.0.0.1:0".into(),
        target: String::new(),
        delay: Duration::from_millis(20),
        max_queued: 64 << 20,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => options.listen = value,
            "--target" => options.target = value,
            "--delay-ms" => {
                let ms: f64 = value.parse().map_err(|_| format!("bad --delay-ms {value}"))?;
                options.delay = Duration::from_secs_f64(ms.max(0.0) / 1000.0);
            }
            "--max-queued-mib" => {
                let mib: usize = value.parse().map_err(|_| format!("bad --max-queued-mib {value}"))?;
                options.max_queued = mib.max(1) << 20;
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if options.target.is_empty() {
        return Err("--target HOST:PORT is required".into());
    }
    Ok(options)
}

fn main() {
    let options = match options() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("delay-proxy: {e}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
    let result = match runtime {
        Ok(runtime) => runtime.block_on(serve(options)),
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        eprintln!("delay-proxy: {e}");
        std::process::exit(1);
    }
}

async fn serve(options: Options) -> std::io::Result<()> {
    let listener = TcpListener::bind(&options.listen).await?;
    println!("listening {}", listener.local_addr()?.port());
    let options = Arc::new(options);
    loop {
        let (client, _) = listener.accept().await?;
        let options = options.clone();
        tokio::spawn(async move {
            match TcpStream::connect(&options.target).await {
                Ok(server) => pair(client, server, &options),
                Err(e) => eprintln!("delay-proxy: cannot connect to {}: {e}", options.target),
            }
        });
    }
}

/// Starts both directions of one proxied connection.
fn pair(client: TcpStream, server: TcpStream, options: &Options) {
    for stream in [&client, &server] {
        let _ = stream.set_nodelay(true);
    }
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    direction(client_read, server_write, options);
    direction(server_read, client_write, options);
}

/// One direction: a reader queues (due time, bytes) and a writer sends each
/// when due, in order; the semaphore counts the bytes held.
fn direction(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, options: &Options) {
    let delay = options.delay;
    let held = Arc::new(Semaphore::new(options.max_queued));
    let (queue, mut due) = mpsc::unbounded_channel::<(Instant, Vec<u8>, Option<OwnedSemaphorePermit>)>();
    tokio::spawn(async move {
        loop {
            let mut data = Vec::with_capacity(CHUNK);
            let n = from.read_buf(&mut data).await.unwrap_or(0);
            if n == 0 {
                let _ = queue.send((Instant::now() + delay, Vec::new(), None));
                return;
            }
            // n <= CHUNK, so it fits a u32.
            let permit = held.clone().acquire_many_owned(u32::try_from(n).unwrap_or(u32::MAX)).await.ok();
            if queue.send((Instant::now() + delay, data, permit)).is_err() {
                return;
            }
        }
    });
    tokio::spawn(async move {
        while let Some((when, data, permit)) = due.recv().await {
            tokio::time::sleep_until(when).await;
            if data.is_empty() {
                let _ = to.shutdown().await;
                return;
            }
            if to.write_all(&data).await.is_err() {
                return;
            }
            drop(permit);
        }
    });
}
