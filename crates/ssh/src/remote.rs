//! `Remote`: one remote command's byte streams and exit status, whatever carried
//! it (the native client's channel, later a `-S` program). The CLI and the engine
//! see only this type; russh's channel types stay inside this crate.
//!
//! The remote's stderr is copied to our stderr with control characters escaped
//! (CVE-2019-6110); it must never reach the protocol stream.

use std::io::{self, Write};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use russh::ChannelMsg;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, oneshot};

/// The reading half: the remote command's stdout.
pub enum RemoteReader {
    /// Chunks pumped from an SSH channel.
    Channel { chunks: mpsc::Receiver<Bytes>, current: Bytes },
    /// Any other stream (an ssh program's stdout).
    Stream(Pin<Box<dyn AsyncRead + Send>>),
}

impl std::fmt::Debug for RemoteReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RemoteReader")
    }
}

impl AsyncRead for RemoteReader {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            RemoteReader::Stream(stream) => stream.as_mut().poll_read(cx, buf),
            RemoteReader::Channel { chunks, current } => {
                while current.is_empty() {
                    match ready!(chunks.poll_recv(cx)) {
                        Some(chunk) => *current = chunk,
                        None => return Poll::Ready(Ok(())),
                    }
                }
                let n = current.len().min(buf.remaining());
                buf.put_slice(&current.split_to(n));
                Poll::Ready(Ok(()))
            }
        }
    }
}

/// The writing half: the remote command's stdin. Shutting it down sends EOF.
pub struct RemoteWriter {
    inner: Pin<Box<dyn AsyncWrite + Send>>,
    /// Resolves when the channel is gone. A write waiting for window space on a
    /// dead connection is never woken by russh; this fails it instead.
    closed: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    gone: bool,
}

impl RemoteWriter {
    fn new(inner: Pin<Box<dyn AsyncWrite + Send>>, closed: Option<oneshot::Receiver<()>>) -> RemoteWriter {
        let closed = closed.map(|rx| -> Pin<Box<dyn Future<Output = ()> + Send>> {
            Box::pin(async move {
                let _ = rx.await;
            })
        });
        RemoteWriter { inner, closed, gone: false }
    }

    /// `Err(BrokenPipe)` once the channel is gone.
    fn check_closed(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let broken = || Err(io::Error::from(io::ErrorKind::BrokenPipe));
        if self.gone {
            return broken();
        }
        match self.closed.as_mut().map(|closed| closed.as_mut().poll(cx)) {
            Some(Poll::Ready(())) => {
                // A finished future must not be polled again: remember instead.
                self.closed = None;
                self.gone = true;
                broken()
            }
            _ => Ok(()),
        }
    }
}

impl std::fmt::Debug for RemoteWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RemoteWriter")
    }
}

impl AsyncWrite for RemoteWriter {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.inner.as_mut().poll_write(cx, buf) {
            Poll::Pending => {
                self.check_closed(cx)?;
                Poll::Pending
            }
            ready => ready,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.inner.as_mut().poll_flush(cx) {
            Poll::Pending => {
                self.check_closed(cx)?;
                Poll::Pending
            }
            ready => ready,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.inner.as_mut().poll_shutdown(cx) {
            Poll::Pending => {
                self.check_closed(cx)?;
                Poll::Pending
            }
            ready => ready,
        }
    }
}

/// How the remote command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(u32),
    /// Killed by a signal, or the channel closed without a status.
    Abnormal,
}

impl ExitStatus {
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }
}

/// A running remote command.
#[derive(Debug)]
pub struct Remote {
    pub reader: RemoteReader,
    pub writer: RemoteWriter,
    exit: oneshot::Receiver<ExitStatus>,
}

impl Remote {
    /// A remote command carried by any pair of streams (e.g. an ssh program's
    /// pipes); `exit` resolves to its status.
    pub(crate) fn from_streams(
        reader: impl AsyncRead + Send + 'static,
        writer: impl AsyncWrite + Send + 'static,
        exit: oneshot::Receiver<ExitStatus>,
    ) -> Remote {
        Remote {
            reader: RemoteReader::Stream(Box::pin(reader)),
            writer: RemoteWriter::new(Box::pin(writer), None),
            exit,
        }
    }

    /// Splits into the streams and a handle that yields the exit status.
    pub fn into_parts(self) -> (RemoteReader, RemoteWriter, ExitWaiter) {
        (self.reader, self.writer, ExitWaiter(self.exit))
    }
}

/// Resolves to the remote command's exit status.
#[derive(Debug)]
pub struct ExitWaiter(oneshot::Receiver<ExitStatus>);

impl ExitWaiter {
    pub async fn wait(self) -> ExitStatus {
        self.0.await.unwrap_or(ExitStatus::Abnormal)
    }
}

/// Buffered chunks between the channel and the reader: enough to keep a large
/// receive window busy without unbounded memory.
const READ_QUEUE: usize = 64;

/// Wraps a channel whose `request` (exec, subsystem) was sent: a task pumps its
/// messages into the reader, the remote's stderr onto ours (escaped), and its
/// exit status into `finish`. A refused request ends the streams, as with ssh.
pub(crate) fn from_channel<S>(channel: russh::Channel<S>, request: &'static str) -> Remote
where
    S: From<(russh::ChannelId, ChannelMsg)> + Send + Sync + 'static,
{
    let channel_id = channel.id();
    let (mut read_half, write_half) = channel.split();
    let (closed_tx, closed_rx) = oneshot::channel::<()>();
    let writer = RemoteWriter::new(Box::pin(write_half.make_writer()), Some(closed_rx));
    let (chunk_tx, chunk_rx) = mpsc::channel(READ_QUEUE);
    let (exit_tx, exit_rx) = oneshot::channel();
    tokio::spawn(async move {
        let mut data = Some(chunk_tx);
        let mut status = ExitStatus::Abnormal;
        while let Some(message) = read_half.wait().await {
            match message {
                ChannelMsg::Data { data: chunk } => {
                    if let Some(tx) = &data
                        && tx.send(chunk).await.is_err()
                    {
                        // The reader is gone; keep draining for the exit status.
                        data = None;
                    }
                }
                ChannelMsg::ExtendedData { data: text, ext: 1 } => {
                    let mut stderr = io::stderr().lock();
                    let _ = stderr.write_all(rscp_proto::display::escape_text(&text).as_bytes());
                }
                ChannelMsg::Eof => data = None,
                ChannelMsg::ExitStatus { exit_status } => status = ExitStatus::Code(exit_status),
                ChannelMsg::Close => break,
                ChannelMsg::Failure => {
                    // ssh's words; the copy then sees the stream end.
                    eprintln!("{request} request failed on channel {channel_id}");
                    break;
                }
                _ => {}
            }
        }
        drop(data);
        // The channel is closed or the connection gone: pending writes fail now.
        drop(closed_tx);
        let _ = exit_tx.send(status);
    });
    Remote {
        reader: RemoteReader::Channel { chunks: chunk_rx, current: Bytes::new() },
        writer,
        exit: exit_rx,
    }
}
