//! rscpd: a copy-only SSH server. Serves SCP (`scp -t`/`scp -f`, in-process) and
//! the SFTP subsystem out of one root directory; never a shell.

mod authorized_keys;
mod exec;
mod host_key;
mod options;
mod password;
mod server;
mod sftp;

use std::io::{BufRead, Write};
use std::net::ToSocketAddrs;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use options::{Command, ServerOptions};

fn main() -> ExitCode {
    rscp_engine::heap::keep_freed_memory();
    let command = match options::parse(std::env::args_os().skip(1)) {
        Ok(command) => command,
        Err(e) => {
            eprintln!("rscpd: {e}\n{}", options::USAGE);
            return ExitCode::from(2);
        }
    };
    let result = match command {
        Command::Help => {
            println!("{}\n\n{}", options::USAGE, options::HELP);
            Ok(())
        }
        Command::Version => {
            println!("rscpd {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::HashPassword { user } => hash_password(&user),
        Command::Serve(options) => serve(options),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rscpd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => tracing::Level::WARN,
        1 => tracing::Level::INFO,
        2 => tracing::Level::DEBUG,
        _ => tracing::Level::TRACE,
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .init();
}

fn serve(options: ServerOptions) -> Result<(), String> {
    init_logging(options.verbose);
    let root = cap_std::fs::Dir::open_ambient_dir(&options.root, cap_std::ambient_authority())
        .map_err(|e| format!("{}: {e}", options.root.display()))?;
    let keys = load_authorized_keys(&options)?;
    let passwords = match &options.password_file {
        Some(path) => {
            let passwords = password::PasswordFile::load(path)?;
            tracing::info!("{} password(s) from {}", passwords.len(), path.display());
            Some(passwords)
        }
        None => None,
    };
    if keys.is_none() && passwords.is_none() {
        return Err("no way to log in: give --authorized-keys FILE or --password-file FILE".to_string());
    }
    let (host_key, host_key_path) = host_key::load_or_generate(options.host_key.as_deref())?;
    let fingerprint = host_key::describe(&host_key);
    let shared = server::Shared::new(
        keys,
        passwords,
        root,
        options.read_only,
        options.max_unauthenticated,
        options.login_grace_time,
    );
    let config = Arc::new(server::config(host_key, &shared, options.max_auth_tries));
    let address = options
        .listen
        .to_socket_addrs()
        .map_err(|e| format!("--listen {}: {e}", options.listen))?
        .next()
        .ok_or_else(|| format!("--listen {}: no address", options.listen))?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("rscpd")
        .build()
        .map_err(|e| e.to_string())?;
    let result = runtime.block_on(async {
        let listener =
            tokio::net::TcpListener::bind(address).await.map_err(|e| format!("--listen {address}: {e}"))?;
        let bound = listener.local_addr().map_err(|e| e.to_string())?;
        // The contract: this exact first line, so scripts and tests can find the port.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "rscpd listening on {bound}");
        let _ = writeln!(out, "host key {fingerprint} ({})", host_key_path.display());
        let _ = out.flush();
        drop(out);
        tracing::info!(
            "serving {} {}on {bound}",
            options.root.display(),
            if options.read_only { "read-only " } else { "" }
        );
        server::serve(listener, config, Arc::new(shared), shutdown_signal()).await;
        Ok::<(), String>(())
    });
    // Transfers still unwinding on the blocking pool get a moment to remove their
    // temporary files.
    runtime.shutdown_timeout(Duration::from_secs(5));
    result
}

fn load_authorized_keys(options: &ServerOptions) -> Result<Option<authorized_keys::AuthorizedKeys>, String> {
    let (path, explicit) = match &options.authorized_keys {
        Some(path) => (path.clone(), true),
        None => match options::home() {
            Some(home) => (home.join(".ssh/authorized_keys"), false),
            None => return Ok(None),
        },
    };
    match authorized_keys::AuthorizedKeys::load(&path) {
        Ok((keys, warnings)) => {
            for warning in warnings {
                tracing::warn!("{warning}");
            }
            tracing::info!("{} authorized key(s) from {}", keys.len(), path.display());
            Ok(Some(keys))
        }
        Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// SIGTERM or SIGINT: stop accepting and end gracefully.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        // Without signal handling the default action (exit) still applies.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// `rscpd hash-password USER`: prints `USER:HASH` for a password file. The
/// password comes from the terminal (asked twice, not echoed) or from stdin.
fn hash_password(user: &str) -> Result<(), String> {
    let password = if rustix::termios::isatty(std::io::stdin()) {
        let first = read_hidden("Password: ")?;
        let second = read_hidden("Again: ")?;
        if first != second {
            return Err("the passwords differ".to_string());
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map_err(|e| e.to_string())?;
        line.trim_end_matches(['\n', '\r']).to_string()
    };
    if password.is_empty() {
        return Err("empty password".to_string());
    }
    println!("{user}:{}", password::hash_password(&password));
    Ok(())
}

/// Reads one line from the terminal with echo off.
fn read_hidden(prompt: &str) -> Result<String, String> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    eprint!("{prompt}");
    let saved = tcgetattr(&stdin).map_err(|e| e.to_string())?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    tcsetattr(&stdin, OptionalActions::Flush, &quiet).map_err(|e| e.to_string())?;
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    let _ = tcsetattr(&stdin, OptionalActions::Flush, &saved);
    eprintln!();
    read.map_err(|e| e.to_string())?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}
