//! A byte pipe over one HTTP/2 request/response pair: `AsyncRead` from the peer's body,
//! `AsyncWrite` into ours (h2 flow control respected: capacity is reserved before sending,
//! received bytes are released as they are consumed).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use h2::{RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Largest chunk handed to h2 at once.
const MAX_SEND: usize = 64 * 1024;

pub(crate) struct H2Io {
    send: SendStream<Bytes>,
    recv: RecvStream,
    pending: Bytes,
    eof: bool,
}

impl H2Io {
    pub(crate) fn new(send: SendStream<Bytes>, recv: RecvStream) -> Self {
        H2Io {
            send,
            recv,
            pending: Bytes::new(),
            eof: false,
        }
    }
}

fn h2_err(e: h2::Error) -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, e)
}

impl AsyncRead for H2Io {
    /// Fills as much of `buf` as the DATA frames already received allow (HTTP/2 delivers
    /// 16 KiB frames; handing them to the engine one by one costs a wake-up each).
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut copied = false;
        loop {
            if !this.pending.is_empty() {
                let n = this.pending.len().min(buf.remaining());
                buf.put_slice(this.pending.get(..n).unwrap_or_default());
                this.pending.advance(n);
                let _ = this.recv.flow_control().release_capacity(n);
                copied = true;
                if buf.remaining() == 0 {
                    return Poll::Ready(Ok(()));
                }
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            match this.recv.poll_data(cx) {
                Poll::Ready(Some(Ok(b))) => this.pending = b,
                Poll::Ready(Some(Err(e))) if !copied => return Poll::Ready(Err(h2_err(e))),
                Poll::Ready(Some(Err(_))) => return Poll::Ready(Ok(())),
                Poll::Ready(None) => {
                    this.eof = true;
                    return Poll::Ready(Ok(()));
                }
                Poll::Pending if copied => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl AsyncWrite for H2Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let want = buf.len().min(MAX_SEND);
        loop {
            let cap = this.send.capacity();
            if cap > 0 {
                let n = cap.min(want);
                let chunk = Bytes::copy_from_slice(buf.get(..n).unwrap_or_default());
                this.send.send_data(chunk, false).map_err(h2_err)?;
                return Poll::Ready(Ok(n));
            }
            this.send.reserve_capacity(want);
            match ready!(this.send.poll_capacity(cx)) {
                None => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
                Some(Err(e)) => return Poll::Ready(Err(h2_err(e))),
                Some(Ok(_)) => {}
            }
        }
    }

    /// Gathers up to the granted capacity from several buffers into one DATA chunk: the
    /// driver then hands over the engine's frame buffers without first copying them into
    /// one flat buffer.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Poll::Ready(Ok(0));
        }
        let want = total.min(MAX_SEND);
        loop {
            let cap = this.send.capacity();
            if cap > 0 {
                let n = cap.min(want);
                let mut chunk = BytesMut::with_capacity(n);
                for b in bufs {
                    let k = (n - chunk.len()).min(b.len());
                    chunk.extend_from_slice(b.get(..k).unwrap_or_default());
                    if chunk.len() == n {
                        break;
                    }
                }
                this.send.send_data(chunk.freeze(), false).map_err(h2_err)?;
                return Poll::Ready(Ok(n));
            }
            this.send.reserve_capacity(want);
            match ready!(this.send.poll_capacity(cx)) {
                None => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
                Some(Err(e)) => return Poll::Ready(Err(h2_err(e))),
                Some(Ok(_)) => {}
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let _ = this.send.send_data(Bytes::new(), true);
        Poll::Ready(Ok(()))
    }
}
