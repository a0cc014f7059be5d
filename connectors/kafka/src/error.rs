//! This crate's error type and the classification of Kafka errors.

use flowline_connector_api::{Backoff, ConnectorError};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use std::time::{Duration, Instant};

/// A Kafka connector failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad settings.
    #[error("{0}")]
    Config(String),
    /// No broker answered within the connect timeout: a broker that is
    /// away (retryable: `run` waits for it) or a wrong address (`validate`
    /// says so at once).
    #[error("{0}")]
    Unreachable(String),
    /// A client error, with what was being done.
    #[error("{what}: {source}")]
    Kafka {
        /// What was being done.
        what: String,
        /// The client's error.
        #[source]
        source: KafkaError,
    },
}

/// Whether a client error is transient.
pub fn is_retryable(e: &KafkaError) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        e.rdkafka_error_code(),
        Some(
            QueueFull
                | MessageTimedOut
                | RequestTimedOut
                | NetworkException
                | BrokerTransportFailure
                | AllBrokersDown
                | LeaderNotAvailable
                | NotLeaderForPartition
                | NotEnoughReplicas
                | NotEnoughReplicasAfterAppend
                | NotCoordinator
                | CoordinatorNotAvailable
                | CoordinatorLoadInProgress
                | UnknownTopicOrPartition
                | OperationTimedOut
        )
    )
}

/// Runs a blocking client call again while it fails with a transient error
/// (a group coordinator that moved or is still loading, a broker that is not
/// ready yet), pausing 100 ms, then twice as long each time up to 2 s, until
/// `budget` is spent. Each call is given the time that is left. A fresh or
/// restarted broker answers `NotCoordinator` for a few seconds; failing the
/// job at start for that would turn a routine restart into an outage.
pub(crate) fn with_retries<T>(
    what: &str,
    budget: Duration,
    mut call: impl FnMut(Duration) -> KafkaResult<T>,
) -> Result<T, Error> {
    let deadline = Instant::now() + budget;
    let pauses = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    let mut attempt = 0;
    loop {
        let pause = pauses.ceiling(attempt);
        let left = deadline.saturating_duration_since(Instant::now());
        match call(left.max(Duration::from_millis(100))) {
            Ok(v) => return Ok(v),
            Err(e) if is_retryable(&e) && Instant::now() + pause < deadline => {
                tracing::debug!(what, error = %e, "transient Kafka error, trying again");
                std::thread::sleep(pause);
                attempt += 1;
            }
            Err(source) => {
                return Err(Error::Kafka {
                    what: what.to_string(),
                    source,
                })
            }
        }
    }
}

impl From<Error> for ConnectorError {
    fn from(e: Error) -> Self {
        match &e {
            Error::Config(m) => ConnectorError::config("kafka", m.clone()),
            Error::Unreachable(m) => ConnectorError::retryable(m.clone()),
            Error::Kafka { source, .. } if is_retryable(source) => {
                ConnectorError::retryable(e.to_string()).with_source(e)
            }
            Error::Kafka { .. } => ConnectorError::permanent(e.to_string()).with_source(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_client_errors() {
        assert!(is_retryable(&KafkaError::MessageProduction(
            RDKafkaErrorCode::QueueFull
        )));
        assert!(is_retryable(&KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageTimedOut
        )));
        assert!(!is_retryable(&KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageSizeTooLarge
        )));
        assert!(!is_retryable(&KafkaError::MessageProduction(
            RDKafkaErrorCode::TopicAuthorizationFailed
        )));
        let c: ConnectorError = Error::Kafka {
            what: "produce".into(),
            source: KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
        }
        .into();
        assert!(c.is_retryable());
    }

    #[test]
    fn transient_errors_are_tried_again_within_the_budget_and_others_are_not() {
        let mut calls = 0;
        let got = with_retries("reading", Duration::from_secs(5), |_| {
            calls += 1;
            if calls < 3 {
                Err(KafkaError::MetadataFetch(RDKafkaErrorCode::NotCoordinator))
            } else {
                Ok(7)
            }
        });
        assert_eq!(got.unwrap(), 7);
        assert_eq!(calls, 3);

        let mut calls = 0;
        let got: Result<(), _> = with_retries("reading", Duration::from_secs(5), |_| {
            calls += 1;
            Err(KafkaError::MetadataFetch(
                RDKafkaErrorCode::TopicAuthorizationFailed,
            ))
        });
        assert_eq!(calls, 1);
        assert!(got.unwrap_err().to_string().starts_with("reading: "));

        let started = Instant::now();
        let got: Result<(), _> = with_retries("reading", Duration::from_millis(500), |_| {
            Err(KafkaError::MetadataFetch(RDKafkaErrorCode::NotCoordinator))
        });
        assert!(got.is_err());
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
