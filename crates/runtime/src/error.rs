//! The runtime's error type.

use flowline_checkpoint::CheckpointError;
use flowline_connector_api::{ConnectorError, PartitionId};

/// Why a job could not run or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// A connector failed permanently, or retries ran out.
    #[error("{stage} `{name}` failed: {source}")]
    Connector {
        /// `source`, `sink` or `dead-letter sink`.
        stage: &'static str,
        /// The connector's name in the job.
        name: String,
        /// The connector's error.
        #[source]
        source: Box<ConnectorError>,
    },
    /// One key arrived on two source partitions, so its state would be split.
    #[error(
        "key {key} was seen on source partition `{first}` and then on `{second}`: keyed state must \
         live with one partition. Fix: partition the input by the key or a prefix of it (for \
         Kafka, produce with that as the message key), or key_by fields the input is partitioned by"
    )]
    KeySplit {
        /// The key, as `Debug` prints it.
        key: String,
        /// Where it was seen first.
        first: PartitionId,
        /// Where it was seen again.
        second: PartitionId,
    },
    /// Behind an exchange, a keyed operator met a key of another key group
    /// than the one the exchange routed by: a second `key_by` whose key is
    /// not the first one's.
    #[error(
        "key {key} belongs to key group {group} but arrived in key group {arrived}: a key_by after \
         the exchange must key by the same key as the first. Fix: key by the same key, or end the \
         job after the first keyed stage"
    )]
    KeyGroup {
        /// The key, as `Debug` prints it.
        key: String,
        /// Its key group.
        group: u16,
        /// The key group of the element it came with.
        arrived: u16,
    },
    /// Saving or reading a checkpoint failed, or it cannot be restored.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The job graph is not runnable (no source, no sink).
    #[error("invalid job: {0}")]
    InvalidJob(String),
    /// A stage task ended unexpectedly.
    #[error("internal: {0}")]
    Internal(String),
}

impl RuntimeError {
    pub(crate) fn state_codec(path: &str, e: impl std::fmt::Display) -> Self {
        Self::Checkpoint(CheckpointError::incompatible(path, e))
    }
}
