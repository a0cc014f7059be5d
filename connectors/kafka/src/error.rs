//! This crate's error type and the classification of Kafka errors.

use flowline_connector_api::ConnectorError;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// A Kafka connector failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad settings.
    #[error("{0}")]
    Config(String),
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

impl From<Error> for ConnectorError {
    fn from(e: Error) -> Self {
        match &e {
            Error::Config(m) => ConnectorError::config("kafka", m.clone()),
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
}
