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
    /// Items of a bulk request the server did not store and may store when
    /// sent again (429, 5xx, a refusal of their index such as a write
    /// block): the request itself went through.
    #[error("{count} bulk items not stored yet: {last}")]
    ItemsNotStored {
        /// How many.
        count: usize,
        /// The last item's answer.
        last: String,
    },
}

impl Error {
    /// Whether trying again may help.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Unreachable { .. } | Error::ItemsNotStored { .. } => true,
            Error::Status { status, .. } if *status == 429 || *status >= 500 => true,
            // A write block on the whole cluster or on every index of the
            // request (`cluster.blocks.read_only`, a full disk): the server
            // takes writes again once it is lifted, as after an outage.
            Error::Status { status, body, .. } => {
                matches!(status, 401 | 403) && body.contains("cluster_block_exception")
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_block_is_retried_and_a_refused_login_is_not() {
        let status = |status, body: &str| Error::Status {
            what: "POST /_bulk".into(),
            status,
            body: body.into(),
        };
        let block = r#"{"error":{"root_cause":[{"type":"cluster_block_exception","reason":"blocked by: [FORBIDDEN/6/cluster read-only (api)];"}],"type":"cluster_block_exception"},"status":403}"#;
        assert!(status(403, block).is_retryable());
        assert!(status(429, "").is_retryable() && status(503, "").is_retryable());
        let login = r#"{"error":{"type":"security_exception","reason":"unable to authenticate user [w]"},"status":401}"#;
        assert!(!status(401, login).is_retryable());
        assert!(!status(404, "").is_retryable());
        let items = Error::ItemsNotStored {
            count: 3,
            last: "403 cluster_block_exception: index [x] blocked".into(),
        };
        assert!(items.is_retryable());
        assert_eq!(
            items.to_string(),
            "3 bulk items not stored yet: 403 cluster_block_exception: index [x] blocked"
        );
    }
}
