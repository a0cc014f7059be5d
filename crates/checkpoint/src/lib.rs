//! # flowline-checkpoint
//!
//! Checkpoints: what they hold ([`Checkpoint`]) and where they are kept
//! ([`CheckpointStore`]). The runtime takes and restores them; stores live
//! where their I/O lives: [`LocalDirStore`] here, the compacted-topic store
//! in the Kafka connector. This crate knows neither the runtime nor any
//! connector, so a store needs only it and the connector API.
//!
//! A checkpoint holds, per source partition, the offset after the last
//! record processed, the partition's event-time high mark, and the state of
//! every operator of its chain; plus each sink's state. State is kept per
//! partition so that one partition's state can move to another process.
//! A checkpoint is one file, written atomically (temp file, fsync, rename,
//! fsync of the directory): a crash leaves the previous one intact.
//!
//! Every encoded checkpoint carries a CRC-32 of its body. A checkpoint
//! whose bytes changed on disk (a bit flip, a truncated copy) is refused:
//! the directory store then falls back to the newest good one with a
//! warning, and fails naming the files when none is good. A job never runs
//! on state it cannot verify.

#![warn(missing_docs)]

mod dir;
mod error;
mod format;
pub mod graph;

pub use dir::LocalDirStore;
pub use error::CheckpointError;
pub use format::{decode_framed, encode_framed, Checkpoint, PartitionSnapshot};

/// Where checkpoints are kept. The local directory is the default; a Kafka-
/// or object-store-backed one implements the same two methods.
pub trait CheckpointStore: Send + 'static {
    /// Stores a checkpoint atomically: after a crash, either it or the
    /// previous one is the latest.
    fn save(&mut self, checkpoint: &Checkpoint) -> Result<u64, CheckpointError>;
    /// The newest checkpoint, if any.
    fn latest(&mut self) -> Result<Option<Checkpoint>, CheckpointError>;
    /// Whether the store keeps each partition's newest snapshot by itself
    /// (a keyed store shared by the processes of a job). When it does, a
    /// process saves only the partitions it owns; when it does not (one file
    /// per checkpoint), the runtime carries the snapshot of a partition it
    /// gave up into its later checkpoints, so that the partition's state and
    /// offset are still there when it comes back.
    fn keeps_partitions(&self) -> bool {
        false
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use flowline_connector_api::PartitionId;

    use super::*;

    /// A small checkpoint with id `id`.
    pub(crate) fn cp(id: u64) -> Checkpoint {
        Checkpoint {
            id,
            graph: "g".into(),
            created_ms: 1,
            partitions: [(
                PartitionId::new("p0"),
                PartitionSnapshot {
                    next_offset: id * 10,
                    max_ts: 5,
                    operators: vec![vec![1, 2]],
                },
            )]
            .into(),
            sinks: [("out".to_string(), Some(vec![9]))].into(),
            key_groups: Default::default(),
            exchange_watermark: i64::MIN,
            partition_sinks: Default::default(),
        }
    }
}
