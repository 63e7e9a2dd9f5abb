//! The outgoing side of a TCP connection without a task hop on the fast path.
//!
//! A sender whose connection has nothing queued writes its frame straight into the socket
//! (`try_write`, one syscall, no channel, no task wake-up). Only when the kernel buffer is
//! full, or bytes are already queued, are the bytes appended to a buffer that a writer task
//! drains; frames queued meanwhile are coalesced into one write (batching under load). The
//! queue is bounded in frames: senders wait when it is full (backpressure). Order is
//! preserved because the fast path is taken only when nothing is queued or being written.
//!
//! A connection made with [`crate::Node::connect`] can be re-linked to a new socket after a
//! reconnect: [`TcpOut::relink`] installs the new write half and bumps a generation counter so
//! the old writer task exits.

use std::io;
use std::net::Shutdown;
use std::sync::{Arc, Mutex};

use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;

use crate::error::{MsgError, Result};
use crate::node::lock;

#[derive(Default)]
struct State {
    /// The current write half (`None`: closed).
    w: Option<Arc<OwnedWriteHalf>>,
    /// Bytes queued for the writer task.
    buf: Vec<u8>,
    /// Frames in `buf` (backpressure limit).
    frames: usize,
    /// The writer task holds bytes it is writing (senders must not overtake them).
    busy: bool,
    /// Send FIN once `buf` is drained; refuse new frames.
    closing: bool,
    /// Link generation (bumped on every relink).
    generation: u64,
}

pub(crate) struct TcpOut {
    st: Mutex<State>,
    /// Wakes the writer task (data queued or closing).
    wake: Notify,
    /// Wakes senders waiting for room, and `drained` waiters.
    space: Notify,
    limit: usize,
}

impl TcpOut {
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            st: Mutex::new(State::default()),
            wake: Notify::new(),
            space: Notify::new(),
            limit: limit.max(1),
        })
    }

    /// Install a new write half; returns the new generation for the writer task.
    pub(crate) fn relink(&self, w: OwnedWriteHalf) -> (u64, Arc<OwnedWriteHalf>) {
        let w = Arc::new(w);
        let mut s = lock(&self.st);
        s.generation += 1;
        s.w = Some(w.clone());
        s.buf.clear();
        s.frames = 0;
        s.busy = false;
        s.closing = false;
        let g = s.generation;
        drop(s);
        // An old writer task parked on `wake` must notice the new generation and exit.
        self.wake.notify_waiters();
        self.space.notify_waiters();
        (g, w)
    }

    /// Queue or directly write one encoded frame.
    pub(crate) async fn send(&self, b: &[u8]) -> Result<()> {
        loop {
            let room = self.space.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let mut s = lock(&self.st);
                if s.closing {
                    return Err(MsgError::Closed);
                }
                let Some(w) = s.w.as_ref() else {
                    return Err(MsgError::Closed);
                };
                if !s.busy && s.buf.is_empty() {
                    // Fast path: nothing ahead of us.
                    match w.try_write(b) {
                        Ok(n) if n == b.len() => return Ok(()),
                        Ok(n) => {
                            s.buf.extend_from_slice(b.get(n..).unwrap_or_default());
                            s.frames += 1;
                            drop(s);
                            self.wake.notify_one();
                            return Ok(());
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            s.buf.extend_from_slice(b);
                            s.frames += 1;
                            drop(s);
                            self.wake.notify_one();
                            return Ok(());
                        }
                        Err(e) => {
                            s.w = None;
                            s.buf.clear();
                            drop(s);
                            self.space.notify_waiters();
                            return Err(e.into());
                        }
                    }
                }
                if s.frames < self.limit {
                    s.buf.extend_from_slice(b);
                    s.frames += 1;
                    drop(s);
                    self.wake.notify_one();
                    return Ok(());
                }
            }
            room.await;
        }
    }

    /// Ask the writer to drain what is queued, send FIN and release the socket.
    pub(crate) fn close(&self, generation: Option<u64>) {
        let mut s = lock(&self.st);
        if generation.is_some_and(|g| g != s.generation) {
            return;
        }
        s.closing = true;
        drop(s);
        self.wake.notify_one();
        self.space.notify_waiters();
    }

    /// Drop the socket now (queued bytes are lost).
    pub(crate) fn abort(&self) {
        let mut s = lock(&self.st);
        s.closing = true;
        s.buf.clear();
        s.w = None;
        drop(s);
        self.wake.notify_waiters();
        self.space.notify_waiters();
    }

    /// The writer task for generation `g`.
    pub(crate) async fn writer(self: Arc<Self>, g: u64, w: Arc<OwnedWriteHalf>) {
        let mut chunk: Vec<u8> = Vec::with_capacity(16 * 1024);
        enum Next {
            Write,
            Fin,
            Wait,
            Exit,
        }
        loop {
            let wake = self.wake.notified();
            tokio::pin!(wake);
            wake.as_mut().enable();
            let next = {
                let mut s = lock(&self.st);
                if s.generation != g || s.w.is_none() {
                    Next::Exit
                } else if !s.buf.is_empty() {
                    std::mem::swap(&mut chunk, &mut s.buf);
                    s.frames = 0;
                    s.busy = true;
                    Next::Write
                } else if s.closing {
                    s.w = None;
                    Next::Fin
                } else {
                    Next::Wait
                }
            };
            match next {
                Next::Exit => return,
                Next::Fin => {
                    let tcp: &tokio::net::TcpStream = (*w).as_ref();
                    let _ = socket2::SockRef::from(tcp).shutdown(Shutdown::Write);
                    self.space.notify_waiters();
                    return;
                }
                Next::Wait => {
                    wake.await;
                    continue;
                }
                Next::Write => {}
            }
            self.space.notify_waiters();
            let mut off = 0;
            while off < chunk.len() {
                if w.writable().await.is_err() {
                    self.fail(g);
                    return;
                }
                match w.try_write(chunk.get(off..).unwrap_or_default()) {
                    Ok(n) => off += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => {
                        self.fail(g);
                        return;
                    }
                }
            }
            chunk.clear();
            if chunk.capacity() > 1 << 20 {
                chunk = Vec::with_capacity(16 * 1024);
            }
            let mut s = lock(&self.st);
            if s.generation == g {
                s.busy = false;
            }
        }
    }

    fn fail(&self, g: u64) {
        let mut s = lock(&self.st);
        if s.generation == g {
            s.w = None;
            s.buf.clear();
            s.busy = false;
        }
        drop(s);
        self.space.notify_waiters();
    }
}
