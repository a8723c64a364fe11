//! `Conn`: the only code that touches the byte stream to the peer.
//!
//! One receive buffer, allocated once and reused for records and payload alike; no
//! allocation per chunk. Records are parsed in place from the buffer; payload is
//! copied straight between the buffer and a file.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::limit::{LIMITED_CHUNK, Limiter};

/// Size of the receive buffer, and of payload chunks.
pub const BUFFER_SIZE: usize = 256 * 1024;
/// A read at least this large is payload in bulk, and more may be ready at
/// once; after a smaller one (a record, an answer) trying again would only cost
/// a failed read on a socket or pipe.
const BURST_READ: usize = 8 * 1024;

/// A buffered connection to the peer.
#[derive(Debug)]
pub struct Conn<R, W> {
    reader: R,
    writer: W,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    eof: bool,
    /// Scratch space for bytes the state machines queue for the peer.
    pub(crate) outgoing: Vec<u8>,
    /// A write of `outgoing` that failed while reading (see [`Conn::fill`]).
    write_error: Option<io::Error>,
    /// A read error met after bytes were read in the same `fill`: returned by the next.
    read_error: Option<io::Error>,
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Conn<R, W> {
    pub fn new(reader: R, writer: W) -> Self {
        Conn {
            reader,
            writer,
            buf: vec![0u8; BUFFER_SIZE].into_boxed_slice(),
            start: 0,
            end: 0,
            eof: false,
            outgoing: Vec::with_capacity(4096),
            write_error: None,
            read_error: None,
        }
    }

    /// A connection whose first bytes were already read from `reader` (e.g.
    /// while skipping a shell banner); they are delivered first.
    pub fn with_buffered(reader: R, writer: W, initial: &[u8]) -> Self {
        let mut conn = Conn::new(reader, writer);
        let n = initial.len().min(conn.buf.len());
        conn.buf[..n].copy_from_slice(&initial[..n]);
        conn.end = n;
        conn
    }

    /// Bytes received and not yet consumed.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads more bytes after the buffered ones; returns 0 at end of stream.
    ///
    /// Bytes still queued in `outgoing` (a pipelining sink's replies) are sent
    /// meanwhile, reading and writing at once: a transport may stop taking our
    /// writes until we read (russh's session loop blocks on a full channel queue
    /// and then serves no writes), so waiting for a write before reading could
    /// wait for ever. A write error is kept for the next `send_outgoing`.
    pub async fn fill(&mut self) -> io::Result<usize> {
        if self.eof {
            return Ok(0);
        }
        if self.end == self.buf.len() {
            // Keep the unconsumed tail (a partial record) at the front.
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if let Some(e) = self.read_error.take() {
            return Err(e);
        }
        let n = self.read_while_sending().await?;
        if n == 0 {
            self.eof = true;
            return Ok(0);
        }
        self.end += n;
        if n < BURST_READ {
            return Ok(n);
        }
        Ok(n + self.take_what_is_ready())
    }

    /// After a large read, takes whatever else the reader has ready now, without
    /// waiting: a transport hands over one packet (32 KiB) per read, and a burst
    /// taken whole becomes one file write instead of one per packet.
    fn take_what_is_ready(&mut self) -> usize {
        let mut taken = 0;
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        while !self.eof && self.end < self.buf.len() {
            let mut space = tokio::io::ReadBuf::new(&mut self.buf[self.end..]);
            match std::pin::Pin::new(&mut self.reader).poll_read(&mut cx, &mut space) {
                std::task::Poll::Ready(Ok(())) => {
                    let n = space.filled().len();
                    if n == 0 {
                        self.eof = true;
                    }
                    self.end += n;
                    taken += n;
                }
                std::task::Poll::Ready(Err(e)) => {
                    self.read_error = Some(e);
                    break;
                }
                std::task::Poll::Pending => break,
            }
        }
        taken
    }

    async fn read_while_sending(&mut self) -> io::Result<usize> {
        let Conn { reader, writer, buf, end, outgoing, write_error, .. } = self;
        let space = &mut buf[*end..];
        loop {
            if outgoing.is_empty() || write_error.is_some() {
                outgoing.clear();
                return reader.read(space).await;
            }
            let sending = async {
                let n = writer.write(outgoing).await?;
                if n == 0 {
                    return Err(io::Error::from(io::ErrorKind::WriteZero));
                }
                if n == outgoing.len() {
                    writer.flush().await?;
                }
                Ok(n)
            };
            tokio::select! {
                read = reader.read(space) => return read,
                sent = sending => match sent {
                    Ok(n) => {
                        outgoing.drain(..n);
                    }
                    Err(e) => *write_error = Some(e),
                },
            }
        }
    }

    /// Writes `data` without flushing (payload chunks).
    pub async fn send_payload(&mut self, data: &[u8]) -> io::Result<()> {
        self.writer.write_all(data).await
    }

    /// Sends the bytes the state machines queued in `outgoing`.
    pub(crate) async fn send_outgoing(&mut self) -> io::Result<()> {
        if let Some(e) = self.write_error.take() {
            self.outgoing.clear();
            return Err(e);
        }
        if self.outgoing.is_empty() {
            return Ok(());
        }
        let result = async {
            self.writer.write_all(&self.outgoing).await?;
            self.writer.flush().await
        }
        .await;
        self.outgoing.clear();
        result
    }

    /// Sends `outgoing`, reading meanwhile (the answers to records sent ahead,
    /// which would otherwise pile up until the peer stops reading): true once it
    /// is all sent, false when bytes arrived first, for the caller to take
    /// before calling again.
    pub(crate) async fn send_outgoing_reading(&mut self) -> io::Result<bool> {
        if let Some(e) = self.write_error.take() {
            self.outgoing.clear();
            return Err(e);
        }
        if self.outgoing.is_empty() {
            return Ok(true);
        }
        if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.eof || self.read_error.is_some() || self.end == self.buf.len() {
            self.send_outgoing().await?;
            return Ok(true);
        }
        let Conn { reader, writer, buf, end, outgoing, eof, .. } = self;
        loop {
            tokio::select! {
                read = reader.read(&mut buf[*end..]) => {
                    match read? {
                        0 => *eof = true,
                        n => *end += n,
                    }
                    return Ok(false);
                }
                sent = writer.write(outgoing) => {
                    match sent? {
                        0 => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                        n => outgoing.drain(..n),
                    };
                    if outgoing.is_empty() {
                        writer.flush().await?;
                        return Ok(true);
                    }
                }
            }
        }
    }

    /// Receives exactly `len` payload bytes, handing each chunk to `write`, paced
    /// by `limiter` if given. The chunks come from the one buffer, in order. Fails with `UnexpectedEof` if the
    /// stream ends first.
    pub async fn receive_payload(
        &mut self,
        mut len: u64,
        mut limiter: Option<&mut Limiter>,
        mut write: impl FnMut(&[u8]),
    ) -> io::Result<()> {
        while len > 0 {
            if self.start == self.end {
                self.start = 0;
                self.end = 0;
                if self.fill().await? == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "lost connection"));
                }
            }
            let mut take = (self.end - self.start).min(usize::try_from(len).unwrap_or(usize::MAX));
            if limiter.is_some() {
                take = take.min(LIMITED_CHUNK);
            }
            write(&self.buf[self.start..self.start + take]);
            self.consume(take);
            len -= take as u64;
            if let Some(limiter) = limiter.as_deref_mut() {
                limiter.consume(take).await;
            }
        }
        Ok(())
    }

    /// Sends whatever is buffered.
    pub async fn flush(&mut self) -> io::Result<()> {
        self.writer.flush().await
    }

    /// Flushes and shuts down the writing half (the peer sees end of stream).
    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.writer.flush().await?;
        self.writer.shutdown().await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::io::ReadBuf;

    use super::*;

    /// What a scripted reader does on each poll.
    enum Step {
        Data(Vec<u8>),
        /// Nothing ready yet (wakes itself, so an awaiting reader polls again).
        Pending,
        Fail,
    }

    /// Plays its steps in order, then reports end of stream.
    struct Scripted(VecDeque<Step>);

    impl AsyncRead for Scripted {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            out: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            match self.0.pop_front() {
                None => Poll::Ready(Ok(())),
                Some(Step::Data(mut data)) => {
                    let n = data.len().min(out.remaining());
                    out.put_slice(&data[..n]);
                    if n < data.len() {
                        self.0.push_front(Step::Data(data.split_off(n)));
                    }
                    Poll::Ready(Ok(()))
                }
                Some(Step::Pending) => {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                Some(Step::Fail) => Poll::Ready(Err(io::Error::other("link down"))),
            }
        }
    }

    fn conn(steps: Vec<Step>) -> Conn<Scripted, tokio::io::Sink> {
        Conn::new(Scripted(steps.into()), tokio::io::sink())
    }

    #[tokio::test]
    async fn a_burst_already_there_is_taken_in_one_fill() {
        let packet = |byte| Step::Data(vec![byte; BURST_READ]);
        let mut conn = conn(vec![packet(1), packet(2), packet(3), Step::Pending, packet(4)]);
        assert_eq!(conn.fill().await.expect("fill"), 3 * BURST_READ);
        assert_eq!(conn.buffered(), [vec![1; BURST_READ], vec![2; BURST_READ], vec![3; BURST_READ]].concat());
        assert_eq!(conn.fill().await.expect("fill"), BURST_READ);
        assert_eq!(conn.buffered().len(), 4 * BURST_READ);
        assert_eq!(conn.fill().await.expect("fill"), 0);
    }

    #[tokio::test]
    async fn a_record_is_not_followed_by_another_read() {
        let mut conn = conn(vec![Step::Data(b"C0644 5 a\n".to_vec()), Step::Data(b"hello".to_vec())]);
        assert_eq!(conn.fill().await.expect("fill"), 10, "a short read is taken alone");
        assert_eq!(conn.fill().await.expect("fill"), 5);
        assert_eq!(conn.buffered(), b"C0644 5 a\nhello");
    }

    #[tokio::test]
    async fn a_burst_stops_at_the_end_of_the_buffer() {
        let mut conn = conn(vec![Step::Data(vec![7; BUFFER_SIZE - 10]), Step::Data(vec![8; 100])]);
        assert_eq!(conn.fill().await.expect("fill"), BUFFER_SIZE);
        conn.consume(BUFFER_SIZE);
        assert_eq!(conn.fill().await.expect("fill"), 90);
        assert_eq!(conn.buffered(), &[8; 90][..]);
    }

    #[tokio::test]
    async fn an_error_after_data_comes_with_the_next_fill() {
        let mut conn = conn(vec![Step::Data(vec![9; BURST_READ]), Step::Fail, Step::Data(b"never".to_vec())]);
        assert_eq!(conn.fill().await.expect("fill"), BURST_READ);
        assert_eq!(conn.buffered(), &[9; BURST_READ][..]);
        assert_eq!(conn.fill().await.expect_err("the kept error").to_string(), "link down");
    }

    #[tokio::test]
    async fn the_end_of_stream_after_data_comes_with_the_next_fill() {
        let mut conn = conn(vec![Step::Data(vec![5; BURST_READ])]);
        assert_eq!(conn.fill().await.expect("fill"), BURST_READ);
        assert!(conn.eof, "the end was seen with the data");
        assert_eq!(conn.fill().await.expect("fill"), 0);
        assert_eq!(conn.buffered(), &[5; BURST_READ][..]);
    }
}
