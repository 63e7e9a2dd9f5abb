//! Helpers for tests that run real processes (the `betanet` binary and friends) on loopback.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, ChildStdout};
use std::time::{Duration, Instant};

/// Kills and reaps the child when dropped, so a failing test leaves no process behind.
#[derive(Debug)]
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bind, read, release).
///
/// # Panics
/// If no port can be bound on 127.0.0.1.
#[must_use]
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0: {e}"))
}

/// Waits until 127.0.0.1:`port` accepts connections, polling every 20 ms.
///
/// # Panics
/// If it does not within `timeout`.
pub fn wait_for_port(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} never opened");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads the child's banner lines until one starts with `last` (included), at most
/// `max_lines` lines. Returns the lines read.
///
/// # Panics
/// If the output ends or is not UTF-8 before `last` appears.
pub fn read_banner(out: ChildStdout, last: &str, max_lines: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for line in BufReader::new(out).lines().take(max_lines) {
        let line = line.unwrap_or_else(|e| panic!("reading the child's output: {e}"));
        let done = line.starts_with(last);
        lines.push(line);
        if done {
            return lines;
        }
    }
    panic!("the child never printed a line starting with {last:?}; it printed {lines:?}");
}

/// The value after `prefix` on the first banner line that starts with it, trimmed.
#[must_use]
pub fn banner_value<'a>(lines: &'a [String], prefix: &str) -> Option<&'a str> {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(prefix))
        .map(str::trim)
}
