//! The crate's error type.

/// Everything that can go wrong in the proxy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// A configuration key is missing or invalid; the message says how to fix it.
    #[error("config key `{key}`: {message}")]
    Config {
        /// The offending key (e.g. `site[0].public_key`).
        key: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The config file is not valid TOML or has an unknown key.
    #[error("proxy config: {0}")]
    Toml(String),
    /// Socket I/O failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A SOCKS message did not start with version 5.
    #[error("SOCKS: version {0} is not supported (only SOCKS5)")]
    SocksVersion(u8),
    /// A SOCKS5 greeting listed no authentication methods.
    #[error("SOCKS5: greeting lists no methods")]
    SocksNoMethods,
    /// The reserved byte of a SOCKS5 request was not zero.
    #[error("SOCKS5: reserved byte is {0:#04x}, must be 0")]
    SocksReserved(u8),
    /// A SOCKS5 command other than CONNECT.
    #[error("SOCKS5: command {0} is not supported (only CONNECT)")]
    SocksCommand(u8),
    /// An unknown SOCKS5 address type.
    #[error("SOCKS5: address type {0} is not supported")]
    SocksAddressType(u8),
    /// A SOCKS5 domain name that is empty or not a valid host name.
    #[error("SOCKS5: invalid domain name")]
    SocksDomain,
}

impl ProxyError {
    pub(crate) fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        ProxyError::Config {
            key: key.into(),
            message: message.into(),
        }
    }
}
