//! This crate's error type and its classification.

use flowline_connector_api::ConnectorError;

/// What went wrong talking to the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad settings.
    #[error("{0}")]
    Config(String),
    /// Connection refused, timeout, DNS: worth retrying.
    #[error("cannot reach {url}: {message}")]
    Unreachable {
        /// The server.
        url: String,
        /// The transport's error.
        message: String,
    },
    /// The server answered with an error status.
    #[error("{what}: HTTP {status}: {body}")]
    Status {
        /// The request.
        what: String,
        /// The HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// The server is not one this sink supports.
    #[error("{0}")]
    Unsupported(String),
    /// Retries ran out.
    #[error(
        "gave up after {attempts} attempts in {secs} s (max_attempts / max_retry_duration): {last}"
    )]
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
        /// Seconds since the first failure.
        secs: u64,
        /// The last failure.
        last: String,
    },
}

impl Error {
    /// Whether trying again may help.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Unreachable { .. } => true,
            Error::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

impl From<Error> for ConnectorError {
    fn from(e: Error) -> Self {
        match &e {
            Error::Config(m) => ConnectorError::config("elasticsearch", m.clone()),
            _ if e.is_retryable() => ConnectorError::retryable(e.to_string()).with_source(e),
            _ => ConnectorError::permanent(e.to_string()).with_source(e),
        }
    }
}
