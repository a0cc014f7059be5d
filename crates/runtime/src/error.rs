//! The runtime's error type.

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
         live with one partition. Fix: partition the input by a prefix of the key (for Kafka, \
         produce with the key's host as message key), or key_by a field the input is partitioned by"
    )]
    KeySplit {
        /// The key, as `Debug` prints it.
        key: String,
        /// Where it was seen first.
        first: PartitionId,
        /// Where it was seen again.
        second: PartitionId,
    },
    /// Reading or writing a checkpoint failed.
    #[error("checkpoint {what} at {path}: {source}")]
    Checkpoint {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A checkpoint could not be decoded: written by another job graph or
    /// another version.
    #[error("checkpoint {path} cannot be restored: {reason}. Fix: point [checkpoint] at this job's own store (directory or job name), or remove the old checkpoints to start afresh")]
    CheckpointIncompatible {
        /// The checkpoint file.
        path: String,
        /// What did not match.
        reason: String,
    },
    /// Checkpoints exist but none verifies against its checksum.
    #[error("no checkpoint in {store} verifies ({details}). Fix: restore the checkpoints from a backup, or move them away to start over from the source's start position")]
    CheckpointCorrupt {
        /// The store (directory, topic).
        store: String,
        /// Each refused checkpoint and why.
        details: String,
    },
    /// A checkpoint store other than a directory failed (the message names
    /// the store, what was being done and the cause).
    #[error("{0}")]
    CheckpointStore(String),
    /// The job graph is not runnable (no source, no sink).
    #[error("invalid job: {0}")]
    InvalidJob(String),
    /// A stage task ended unexpectedly.
    #[error("internal: {0}")]
    Internal(String),
}

impl RuntimeError {
    pub(crate) fn state_codec(path: &str, e: impl std::fmt::Display) -> Self {
        Self::CheckpointIncompatible {
            path: path.to_string(),
            reason: e.to_string(),
        }
    }
}
