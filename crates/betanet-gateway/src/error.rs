//! The crate's error type.

use std::io;

/// Gateway failures (configuration, start-up, upstream). A peer that is refused never sees
/// these: refusals become the decoy's answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// A configuration key has an invalid value.
    #[error("config key `{key}`: {problem}; fix: {fix}")]
    Config {
        /// The offending key (dotted path).
        key: &'static str,
        /// What is wrong.
        problem: String,
        /// What to do.
        fix: &'static str,
    },
    /// The configuration file could not be parsed.
    #[error("config file: {0}")]
    ConfigSyntax(#[from] toml::de::Error),
    /// An I/O operation failed (binding, reading files, ...).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The ticket or voucher store failed to open.
    #[error("admission store: {0}")]
    Ticket(#[from] betanet_ticket::TicketError),
    /// TLS set-up failed.
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// Randomness or key material failed.
    #[error("crypto: {0}")]
    Crypto(#[from] betanet_crypto::CryptoError),
}

impl GatewayError {
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Self {
        GatewayError::Io {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn config(key: &'static str, problem: impl Into<String>, fix: &'static str) -> Self {
        GatewayError::Config {
            key,
            problem: problem.into(),
            fix,
        }
    }
}
