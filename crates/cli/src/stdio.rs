//! Standard input and output as an async byte stream, for the remote ends
//! (`rscp -t` / `rscp -f`), whose protocol runs over them.
//!
//! sshd hands the remote scp a socket or pipes; those are driven by the reactor
//! (non-blocking). Anything else (a regular file, a tty) falls back to tokio's
//! blocking-thread stdio. This module must never write anything but protocol bytes
//! to stdout.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};

pub type Reader = Pin<Box<dyn AsyncRead + Send>>;
pub type Writer = Pin<Box<dyn AsyncWrite + Send>>;

/// The protocol stream over stdin/stdout. Must be called inside a tokio runtime.
pub fn open() -> io::Result<(Reader, Writer)> {
    let input = io::stdin().as_fd().try_clone_to_owned()?;
    let output = io::stdout().as_fd().try_clone_to_owned()?;
    Ok((reader(input)?, writer(output)?))
}

fn reader(fd: OwnedFd) -> io::Result<Reader> {
    let file = File::from(fd);
    let kind = file.metadata()?.file_type();
    if kind.is_fifo() {
        return Ok(Box::pin(tokio::net::unix::pipe::Receiver::from_file(file)?));
    }
    if kind.is_socket() {
        return Ok(Box::pin(unix_stream(file)?));
    }
    Ok(Box::pin(tokio::io::stdin()))
}

fn writer(fd: OwnedFd) -> io::Result<Writer> {
    let file = File::from(fd);
    let kind = file.metadata()?.file_type();
    if kind.is_fifo() {
        return Ok(Box::pin(tokio::net::unix::pipe::Sender::from_file(file)?));
    }
    if kind.is_socket() {
        return Ok(Box::pin(unix_stream(file)?));
    }
    Ok(Box::pin(tokio::io::stdout()))
}

fn unix_stream(file: File) -> io::Result<tokio::net::UnixStream> {
    let stream = std::os::unix::net::UnixStream::from(OwnedFd::from(file));
    stream.set_nonblocking(true)?;
    tokio::net::UnixStream::from_std(stream)
}
