//! The checkpoint crate's error type.

/// Why a checkpoint could not be saved or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// Reading or writing a checkpoint file failed.
    #[error("checkpoint {what} at {path}: {source}")]
    Io {
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
    Incompatible {
        /// The checkpoint (file, key, partition).
        path: String,
        /// What did not match.
        reason: String,
    },
    /// Checkpoints exist but none verifies against its checksum.
    #[error("no checkpoint in {store} verifies ({details}). Fix: restore the checkpoints from a backup, or move them away to start over from the source's start position")]
    Corrupt {
        /// The store (directory, topic).
        store: String,
        /// Each refused checkpoint and why.
        details: String,
    },
    /// A store other than a directory failed (the message names the store,
    /// what was being done and the cause).
    #[error("{0}")]
    Store(String),
    /// The store's server could not take the checkpoint in time (a broker
    /// away): the checkpoint is skipped and the next one tries again, as a
    /// sink that cannot complete one.
    #[error("{0}")]
    Unavailable(String),
}

impl CheckpointError {
    /// [`CheckpointError::Incompatible`]: `path` cannot be restored because
    /// of `reason`.
    pub fn incompatible(path: &str, reason: impl std::fmt::Display) -> Self {
        Self::Incompatible {
            path: path.to_string(),
            reason: reason.to_string(),
        }
    }
}
