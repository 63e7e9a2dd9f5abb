//! Response bodies: in memory, streamed through a bounded channel, or read from a file.

use std::io;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

/// Size of the chunks read from files.
pub const FILE_CHUNK: usize = 64 * 1024;

/// A response body. Streams and files are sent chunk by chunk, never buffered whole.
#[derive(Debug, Default)]
pub enum Body {
    /// No body.
    #[default]
    Empty,
    /// A body in memory.
    Bytes(Bytes),
    /// A body produced by a task through a bounded channel ([`Body::channel`]).
    Stream(mpsc::Receiver<io::Result<Bytes>>),
    /// A file region: `remaining` bytes from the file's current position.
    File {
        /// The open file, positioned at the first byte to send.
        file: tokio::fs::File,
        /// Bytes left to send.
        remaining: u64,
    },
}

/// The sending half of a streamed [`Body`]; dropping it ends the body.
#[derive(Debug, Clone)]
pub struct BodySender {
    tx: mpsc::Sender<io::Result<Bytes>>,
}

impl BodySender {
    /// Sends one chunk; waits while the channel is full (backpressure). Returns `false` when
    /// the receiver is gone (the peer went away): the producer should stop.
    pub async fn send(&self, chunk: Bytes) -> bool {
        self.tx.send(Ok(chunk)).await.is_ok()
    }

    /// Aborts the body with an error: the server closes the stream without a clean FIN.
    pub async fn abort(&self, err: io::Error) {
        let _ = self.tx.send(Err(err)).await;
    }
}

impl Body {
    /// A streamed body with room for `capacity` chunks in flight (at least 1).
    #[must_use]
    pub fn channel(capacity: usize) -> (BodySender, Body) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (BodySender { tx }, Body::Stream(rx))
    }

    /// Opens `len` bytes of `file` starting at `offset`.
    pub async fn file_range(mut file: tokio::fs::File, offset: u64, len: u64) -> io::Result<Body> {
        if offset > 0 {
            file.seek(io::SeekFrom::Start(offset)).await?;
        }
        Ok(Body::File {
            file,
            remaining: len,
        })
    }

    /// The exact length when known in advance (not for channel streams).
    #[must_use]
    pub fn len_hint(&self) -> Option<u64> {
        match self {
            Body::Empty => Some(0),
            Body::Bytes(b) => Some(b.len() as u64),
            Body::Stream(_) => None,
            Body::File { remaining, .. } => Some(*remaining),
        }
    }

    /// The next chunk, or `None` at the end. An in-memory body yields itself once.
    pub async fn next_chunk(&mut self) -> Option<io::Result<Bytes>> {
        match self {
            Body::Empty => None,
            Body::Bytes(b) => {
                let b = std::mem::take(b);
                *self = Body::Empty;
                if b.is_empty() { None } else { Some(Ok(b)) }
            }
            Body::Stream(rx) => rx.recv().await,
            Body::File { file, remaining } => {
                if *remaining == 0 {
                    return None;
                }
                let want = usize::try_from(*remaining)
                    .unwrap_or(FILE_CHUNK)
                    .min(FILE_CHUNK);
                let mut buf = vec![0u8; want];
                match file.read(&mut buf).await {
                    Ok(0) => {
                        *remaining = 0;
                        Some(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "file shorter than announced",
                        )))
                    }
                    Ok(n) => {
                        *remaining -= n as u64;
                        buf.truncate(n);
                        Some(Ok(Bytes::from(buf)))
                    }
                    Err(e) => {
                        *remaining = 0;
                        Some(Err(e))
                    }
                }
            }
        }
    }

    /// Reads the whole body into memory, refusing more than `limit` bytes.
    pub async fn collect(mut self, limit: u64) -> io::Result<Bytes> {
        if let Body::Bytes(b) = &self
            && b.len() as u64 > limit
        {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "body too large"));
        }
        let mut out = Vec::new();
        while let Some(chunk) = self.next_chunk().await {
            let chunk = chunk?;
            if (out.len() + chunk.len()) as u64 > limit {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "body too large"));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(out))
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Self {
        Body::Bytes(b)
    }
}

impl From<Vec<u8>> for Body {
    fn from(b: Vec<u8>) -> Self {
        Body::Bytes(Bytes::from(b))
    }
}

impl From<String> for Body {
    fn from(s: String) -> Self {
        Body::Bytes(Bytes::from(s))
    }
}

impl From<&'static str> for Body {
    fn from(s: &'static str) -> Self {
        Body::Bytes(Bytes::from_static(s.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn channel_body_streams_in_order() {
        let (tx, body) = Body::channel(2);
        tokio::spawn(async move {
            for i in 0..5u8 {
                assert!(tx.send(Bytes::from(vec![i; 3])).await);
            }
        });
        let all = body.collect(100).await.unwrap();
        assert_eq!(&all[..], &[0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]);
    }

    #[tokio::test]
    async fn collect_enforces_limit_and_file_range() {
        assert!(Body::from("hello").collect(4).await.is_err());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"0123456789").unwrap();
        let f = tokio::fs::File::open(&p).await.unwrap();
        let body = Body::file_range(f, 3, 4).await.unwrap();
        assert_eq!(body.len_hint(), Some(4));
        assert_eq!(&body.collect(100).await.unwrap()[..], b"3456");
    }
}
