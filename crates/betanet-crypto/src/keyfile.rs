//! The node key file format: an Ed25519 seed in one tagged hex line, `#` comments allowed.
//!
//! ```text
//! # Betanet node key (Ed25519 seed). Keep this file secret.
//! betanet-ed25519-seed-v1 <64 hex digits>
//! ```
//!
//! Only the text format lives here (this crate does no I/O); `betanet keygen` and
//! `betanet_net::cli` read and write the file (mode 0600) with it.

use zeroize::Zeroizing;

use crate::sign::SigningKey;

/// The tag that starts the key line.
pub const TAG: &str = "betanet-ed25519-seed-v1";

/// Why a key file's text was refused (displayed to follow the file name: `"{path} {err}"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// Only blank lines and comments.
    #[error("is empty; it is not a Betanet key file")]
    Empty,
    /// The first key line does not start with [`TAG`].
    #[error("is not a Betanet key file (expected a `betanet-ed25519-seed-v1` line)")]
    NotAKeyFile,
    /// The seed is not 64 hex digits.
    #[error("is corrupt: the seed must be 64 hex digits")]
    BadSeed,
}

/// The file text for `key` (zeroized when dropped).
#[must_use]
pub fn encode(key: &SigningKey) -> Zeroizing<String> {
    let seed = key.seed();
    Zeroizing::new(format!(
        "# Betanet node key (Ed25519 seed). Keep this file secret.\n{TAG} {}\n",
        hex::encode(seed.as_ref())
    ))
}

/// Parses the file text: the first line that is neither blank nor a `#` comment must be
/// `TAG <64 hex digits>`.
pub fn decode(text: &str) -> Result<SigningKey, KeyFileError> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or(KeyFileError::Empty)?;
    let hexseed = line
        .strip_prefix(TAG)
        .ok_or(KeyFileError::NotAKeyFile)?
        .trim();
    let mut seed = Zeroizing::new([0u8; 32]);
    if hexseed.len() != 64 || hex::decode_to_slice(hexseed, seed.as_mut()).is_err() {
        return Err(KeyFileError::BadSeed);
    }
    Ok(SigningKey::from_seed(&seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let key = SigningKey::from_seed(&[7u8; 32]);
        let text = encode(&key);
        assert!(text.contains(&"07".repeat(32)));
        assert_eq!(decode(&text).unwrap().seed().as_ref(), &[7u8; 32]);
        assert_eq!(
            decode("\n# only a comment\n").err(),
            Some(KeyFileError::Empty)
        );
        assert_eq!(
            decode("ssh-ed25519 AAAA").err(),
            Some(KeyFileError::NotAKeyFile)
        );
        assert_eq!(
            decode(&format!("{TAG} abcd")).err(),
            Some(KeyFileError::BadSeed)
        );
        assert_eq!(
            decode(&format!("{TAG} {}", "zz".repeat(32))).err(),
            Some(KeyFileError::BadSeed)
        );
    }
}
