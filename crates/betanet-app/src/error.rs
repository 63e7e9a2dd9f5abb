//! The crate's error type.

use std::time::Duration;

/// Everything that can go wrong in the site framework.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// A configuration value is wrong; `key` names it and `fix` says what to do.
    #[error("config key `{key}`: {problem}; fix: {fix}")]
    Config {
        /// The offending key (dotted path).
        key: String,
        /// What is wrong with it.
        problem: String,
        /// How to fix it.
        fix: String,
    },
    /// A plugin name that no registry entry provides.
    #[error(
        "config key `plugins`: unknown plugin `{name}`; fix: use one of [{known}] or register it in the PluginRegistry"
    )]
    UnknownPlugin {
        /// The requested name.
        name: String,
        /// The names the registry knows, comma-separated.
        known: String,
    },
    /// A route pattern that cannot be parsed (local misuse).
    #[error("invalid route pattern `{pattern}`: {reason}")]
    Pattern {
        /// The pattern as given.
        pattern: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A handler-level HTTP-style error that becomes a response with this status.
    #[error("{status}: {message}")]
    Http {
        /// BAR status code.
        status: u16,
        /// Message shown to the client.
        message: String,
    },
    /// A request body that is not valid JSON for the expected type (peer error → 400).
    #[error("invalid JSON body: {0}")]
    Json(#[source] serde_json::Error),
    /// A request body that is not UTF-8 (peer error → 400).
    #[error("request body is not UTF-8")]
    NotUtf8(#[source] std::str::Utf8Error),
    /// Template loading or rendering failed.
    #[error("template error: {0}")]
    Template(#[source] minijinja::Error),
    /// The BAR head could not be encoded or decoded.
    #[error("BAR codec error: {0}")]
    Wire(#[source] betanet_wire::WireError),
    /// Transport I/O failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer made no progress (no credit / no bytes) for this long (SPEC §10: 15 s).
    #[error("peer stalled for {0:?}")]
    Stalled(Duration),
    /// The response was cut off after its head went out (peer gave no credit for the stall
    /// timeout, transport error, or the body source failed); the stream is not finished.
    #[error("response aborted after its head was sent: {0}")]
    Aborted(#[source] std::io::Error),
    /// The peer closed the stream before a complete BAR head arrived.
    #[error("stream closed before a complete BAR head")]
    Truncated,
    /// A response body larger than the caller's limit.
    #[error("body larger than the {limit}-byte limit")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The proxy upstream failed.
    #[error("proxy upstream error: {0}")]
    Upstream(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Metrics text encoding failed.
    #[error("metrics encoding failed")]
    Metrics(#[source] std::fmt::Error),
}

impl From<betanet_wire::WireError> for AppError {
    fn from(e: betanet_wire::WireError) -> Self {
        AppError::Wire(e)
    }
}

impl From<minijinja::Error> for AppError {
    fn from(e: minijinja::Error) -> Self {
        AppError::Template(e)
    }
}

impl AppError {
    /// A handler error that turns into a response with `status` and `message`.
    #[must_use]
    pub fn http(status: u16, message: impl Into<String>) -> Self {
        AppError::Http {
            status,
            message: message.into(),
        }
    }

    /// The BAR status this error maps to when a handler returns it.
    #[must_use]
    pub fn status(&self) -> u16 {
        use betanet_wire::bar::status;
        match self {
            AppError::Http { status, .. } => *status,
            AppError::Json(_) | AppError::NotUtf8(_) | AppError::Wire(_) | AppError::Truncated => {
                status::BAD_REQUEST
            }
            AppError::TooLarge { .. } => status::BAD_REQUEST,
            AppError::Stalled(_) | AppError::Upstream(_) | AppError::Aborted(_) => {
                status::SERVICE_UNAVAILABLE
            }
            _ => status::INTERNAL_ERROR,
        }
    }

    /// The message a client may see: details only for peer errors, never internals.
    #[must_use]
    pub fn public_message(&self) -> String {
        match self {
            AppError::Http { message, .. } => message.clone(),
            AppError::Json(_)
            | AppError::NotUtf8(_)
            | AppError::Wire(_)
            | AppError::Truncated
            | AppError::TooLarge { .. } => self.to_string(),
            AppError::Stalled(_) => "peer stalled".to_owned(),
            AppError::Upstream(_) => "upstream unavailable".to_owned(),
            _ => "internal error".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send_sync<T: Send + Sync + 'static>() {}

    #[test]
    fn error_is_send_sync_and_maps_statuses() {
        send_sync::<AppError>();
        send_sync::<crate::App>();
        assert_eq!(AppError::http(409, "x").status(), 409);
        assert_eq!(AppError::Truncated.status(), 400);
        assert_eq!(AppError::Stalled(Duration::from_secs(15)).status(), 503);
        assert_eq!(
            AppError::Metrics(std::fmt::Error).public_message(),
            "internal error"
        );
    }
}
