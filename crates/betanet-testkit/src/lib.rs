//! # betanet-testkit
//!
//! Helpers shared by the test suites of the Betanet crates (a dev-dependency only, never
//! shipped in a node):
//!
//! * [`VirtualClock`]: a manually advanced clock for sans-IO engines, which take `now` as an
//!   argument and so can be run through hours of timers in microseconds;
//! * [`rng`]: deterministic, seedable RNGs for reproducible tests;
//! * [`vectors`]: loaders for JSON and hex test-vector files in `testdata/` directories;
//! * [`process`]: a kill-on-drop guard, free ports and banner parsing for tests that run the
//!   real binaries.
//!
//! What it is not: no mocks of network services — integration tests use real sockets on
//! 127.0.0.1 with ephemeral ports.

use std::time::{Duration, Instant};

/// A clock that only moves when told to.
#[derive(Clone, Copy, Debug)]
pub struct VirtualClock {
    base: Instant,
    offset: Duration,
}

impl Default for VirtualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl VirtualClock {
    /// A clock starting at the current real instant (only the base is real).
    pub fn new() -> Self {
        VirtualClock {
            base: Instant::now(),
            offset: Duration::ZERO,
        }
    }

    /// The current virtual instant.
    pub fn now(&self) -> Instant {
        self.base + self.offset
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&mut self, d: Duration) {
        self.offset += d;
    }

    /// Moves the clock to `t` if `t` is later than now (timers never run backwards).
    pub fn advance_to(&mut self, t: Instant) {
        if t > self.now() {
            self.offset = t - self.base;
        }
    }

    /// Time elapsed since the clock was created.
    pub fn elapsed(&self) -> Duration {
        self.offset
    }
}

pub mod process;

/// Deterministic randomness.
pub mod rng {
    use rand::SeedableRng;
    pub use rand::rngs::StdRng;

    /// A seeded cryptographically secure RNG (ChaCha-based `StdRng`); same seed, same stream.
    pub fn seeded(seed: u64) -> StdRng {
        StdRng::seed_from_u64(seed)
    }
}

/// Test-vector files.
pub mod vectors {
    use std::path::Path;

    /// Why a vector file could not be used.
    #[derive(Debug)]
    #[non_exhaustive]
    pub enum VectorError {
        /// The file could not be read.
        Io(std::io::Error),
        /// The file is not valid JSON.
        Json(serde_json::Error),
        /// A hex field is malformed.
        Hex(String),
    }

    impl std::fmt::Display for VectorError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                VectorError::Io(e) => write!(f, "cannot read vector file: {e}"),
                VectorError::Json(e) => write!(f, "vector file is not JSON: {e}"),
                VectorError::Hex(s) => write!(f, "bad hex in vector file: {s}"),
            }
        }
    }

    impl std::error::Error for VectorError {}

    /// Reads a JSON vector file.
    pub fn load_json(path: &Path) -> Result<serde_json::Value, VectorError> {
        let text = std::fs::read_to_string(path).map_err(VectorError::Io)?;
        serde_json::from_str(&text).map_err(VectorError::Json)
    }

    /// Decodes a hex string, ignoring ASCII whitespace (vectors are often wrapped).
    pub fn hex(s: &str) -> Result<Vec<u8>, VectorError> {
        let compact: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        ::hex::decode(&compact).map_err(|_| VectorError::Hex(s.chars().take(32).collect()))
    }

    /// Reads `name = hex` lines (comments with `#`) into pairs.
    pub fn load_hex_lines(path: &Path) -> Result<Vec<(String, Vec<u8>)>, VectorError> {
        let text = std::fs::read_to_string(path).map_err(VectorError::Io)?;
        let mut out = Vec::new();
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| VectorError::Hex(line.into()))?;
            out.push((k.trim().to_owned(), hex(v)?));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngCore;

    #[test]
    fn clock_moves_only_forward() {
        let mut c = VirtualClock::new();
        let t0 = c.now();
        c.advance(Duration::from_secs(3600));
        assert_eq!(c.now() - t0, Duration::from_secs(3600));
        c.advance_to(t0);
        assert_eq!(c.elapsed(), Duration::from_secs(3600));
        c.advance_to(t0 + Duration::from_secs(7200));
        assert_eq!(c.elapsed(), Duration::from_secs(7200));
    }

    #[test]
    fn seeded_rngs_repeat() {
        let (mut a, mut b) = (rng::seeded(1), rng::seeded(1));
        assert_eq!(a.next_u64(), b.next_u64());
        assert_ne!(rng::seeded(1).next_u64(), rng::seeded(2).next_u64());
    }

    #[test]
    fn hex_helpers() {
        assert_eq!(vectors::hex("00 ff\n10").unwrap(), vec![0, 0xff, 0x10]);
        assert!(vectors::hex("0g").is_err());
        let dir = std::env::temp_dir().join(format!("testkit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("v.txt");
        std::fs::write(&f, "# c\na = 0102\nb=ff\n").unwrap();
        let v = vectors::load_hex_lines(&f).unwrap();
        assert_eq!(v, vec![("a".into(), vec![1, 2]), ("b".into(), vec![0xff])]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
