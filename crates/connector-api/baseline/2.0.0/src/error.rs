//! The one error type of connectors, with its classification.

use std::error::Error as StdError;

use crate::Record;

/// A boxed error source.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// How the runtime should treat a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Transient (a timeout, a 429, a broker not yet up): try again later.
    Retryable,
    /// Will not succeed by trying again (bad credentials, a missing index
    /// and no right to create it): stop the job with this error.
    Permanent,
    /// Some records cannot be read or written; they travel with the error
    /// so that the runtime can dead-letter them. The job goes on.
    BadRecord,
}

impl ErrorKind {
    /// A short lower-case name: `retryable`, `permanent`, `bad_record`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Retryable => "retryable",
            ErrorKind::Permanent => "permanent",
            ErrorKind::BadRecord => "bad_record",
        }
    }
}

/// A record that a connector could not handle, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rejected {
    /// The record, unchanged.
    pub record: Record,
    /// Why it was rejected (the server's error type and reason, a parse error).
    pub reason: String,
}

impl Rejected {
    /// Builds a rejection.
    pub fn new(record: Record, reason: impl Into<String>) -> Self {
        Self {
            record,
            reason: reason.into(),
        }
    }
}

/// The error every connector method returns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectorError {
    /// A transient failure; see [`ErrorKind::Retryable`].
    #[error("{message}")]
    Retryable {
        /// What failed, naming the thing.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// A failure that retrying will not fix; see [`ErrorKind::Permanent`].
    #[error("{message}")]
    Permanent {
        /// What failed and how to fix it.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// Records that could not be handled. For a sink, every other record of
    /// the batch was written.
    #[error("{} record(s) rejected; first: {}", .0.len(), .0.first().map(|r| r.reason.as_str()).unwrap_or(""))]
    BadRecords(Vec<Rejected>),
    /// The connector's configuration is invalid. Raised by factories, before
    /// any work.
    #[error("invalid configuration for connector `{connector}`: {message}")]
    Config {
        /// The connector's name.
        connector: String,
        /// What is wrong, naming the field and the fix.
        message: String,
    },
    /// The registry refused a connector built for another API version.
    #[error(
        "connector `{connector}` {connector_version} was built for connector API {built_for}, \
         but this Flowline runtime implements connector API {runtime} (it runs connectors built \
         for {runtime_major}.0 up to {runtime}); fix: {fix}"
    )]
    IncompatibleApi {
        /// The connector's name.
        connector: String,
        /// The connector's own version.
        connector_version: String,
        /// The API version it was built for.
        built_for: crate::ApiVersion,
        /// The API version the runtime implements.
        runtime: crate::ApiVersion,
        /// `runtime.major`, for the message.
        runtime_major: u16,
        /// What to do about it.
        fix: String,
    },
    /// No connector of that name and kind is registered.
    #[error("unknown {kind} connector `{name}`; known {kind} connectors: {known}. Fix: set `type` to one of them")]
    UnknownConnector {
        /// `source` or `sink`.
        kind: crate::ConnectorKind,
        /// The name asked for.
        name: String,
        /// The registered names, comma separated.
        known: String,
    },
}

impl ConnectorError {
    /// A retryable error.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self::Retryable {
            message: message.into(),
            source: None,
        }
    }

    /// A permanent error.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::Permanent {
            message: message.into(),
            source: None,
        }
    }

    /// One bad record.
    pub fn bad_record(record: Record, reason: impl Into<String>) -> Self {
        Self::BadRecords(vec![Rejected::new(record, reason)])
    }

    /// A configuration error.
    pub fn config(connector: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Config {
            connector: connector.into(),
            message: message.into(),
        }
    }

    /// Attaches an underlying error to a retryable or permanent error.
    pub fn with_source(mut self, err: impl Into<BoxError>) -> Self {
        match &mut self {
            Self::Retryable { source, .. } | Self::Permanent { source, .. } => {
                *source = Some(err.into())
            }
            _ => {}
        }
        self
    }

    /// The classification.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Retryable { .. } => ErrorKind::Retryable,
            Self::Permanent { .. }
            | Self::Config { .. }
            | Self::IncompatibleApi { .. }
            | Self::UnknownConnector { .. } => ErrorKind::Permanent,
            Self::BadRecords(_) => ErrorKind::BadRecord,
        }
    }

    /// Whether trying again may succeed.
    pub fn is_retryable(&self) -> bool {
        self.kind() == ErrorKind::Retryable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_and_message() {
        let e = ConnectorError::retryable("broker 127.0.0.1:9092 not reachable");
        assert!(e.is_retryable());
        assert_eq!(e.to_string(), "broker 127.0.0.1:9092 not reachable");
        let e = ConnectorError::bad_record(Record::new("x"), "expected value at line 1");
        assert_eq!(e.kind(), ErrorKind::BadRecord);
        assert!(e.to_string().contains("expected value"));
        let e = ConnectorError::config("file", "field `path` is missing: set path = \"...\"");
        assert_eq!(e.kind(), ErrorKind::Permanent);
        assert!(e.to_string().contains("`file`"));
        let io = std::io::Error::other("boom");
        let e = ConnectorError::permanent("open failed").with_source(io);
        assert!(std::error::Error::source(&e).is_some());
    }
}
