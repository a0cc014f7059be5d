//! The `Source` trait, its events, and its object-safe twin.

use std::future::Future;

use crate::{BoxFuture, ConnectorError, PartitionId, Record, SourcePosition};

/// What a source hands the runtime on each call to [`Source::next`].
#[derive(Debug)]
#[non_exhaustive]
pub enum SourceEvent {
    /// Records, in partition order (records of one partition never reorder).
    Records(Vec<Record>),
    /// These partitions are now this source's. The runtime restores their
    /// state, then always calls [`Source::seek`] (with the checkpointed
    /// offsets of those it has, possibly none). A source must not hand out
    /// records of a newly assigned partition before that `seek`.
    Assigned(Vec<PartitionId>),
    /// These partitions are being taken away. The runtime checkpoints their
    /// state before the next call to `next`.
    Revoked(Vec<PartitionId>),
    /// Nothing to read right now.
    Idle,
    /// A bounded input is done: no more records will come.
    End,
}

/// Reads records from an external system.
///
/// Two methods are required: [`next`](Source::next) and
/// [`seek`](Source::seek). Everything else has a default body, so a minor
/// version of the API can add hooks without breaking any connector.
///
/// Positions: each record carries its partition and offset; the runtime
/// stores, per partition, the offset after the last record it processed,
/// and on restore calls `seek` with them.
pub trait Source: Send + 'static {
    /// The next batch of records, or an event. Waits a bounded time: a source
    /// with nothing to read returns [`SourceEvent::Idle`] rather than block
    /// forever.
    fn next(&mut self) -> impl Future<Output = Result<SourceEvent, ConnectorError>> + Send;

    /// Continue from this position: for every partition named, the next
    /// record read has that offset. Partitions not named keep their start
    /// position.
    fn seek(
        &mut self,
        position: &SourcePosition,
    ) -> impl Future<Output = Result<(), ConnectorError>> + Send;

    /// A checkpoint holding `position` is durable. Kafka commits offsets here
    /// so that lag tools show the truth. Default: nothing.
    fn on_checkpoint_complete(
        &mut self,
        position: &SourcePosition,
    ) -> impl Future<Output = Result<(), ConnectorError>> + Send {
        let _ = position;
        async { Ok(()) }
    }

    /// The job is stopping. Default: nothing.
    fn close(&mut self) -> impl Future<Output = Result<(), ConnectorError>> + Send {
        async { Ok(()) }
    }

    /// Records not yet read, per partition, as far as the source knows
    /// without asking the server (Kafka: cached end offset minus position).
    /// Shown as `flowline_consumer_lag`. Cheap; called about once a second.
    /// Default: none known. Since API 1.1.
    fn lag(&self) -> Vec<(PartitionId, u64)> {
        Vec::new()
    }

    /// Whether the source can reach its server now, as far as it knows
    /// without asking (Kafka: some broker's connection is up in the last
    /// statistics). `Some(false)` for longer than the job's health limit
    /// makes `/health` answer 503. Cheap; called about once a second.
    /// Default: `None`, unknown. Since API 2.1.
    fn connected(&self) -> Option<bool> {
        None
    }

    /// The partitions this source will read, when it knows them before
    /// reading (a bounded source over fixed partitions, a file per
    /// partition). Called once, before the first `next`. A job that keys
    /// through the runtime's exchange holds its watermark back until each
    /// of them has sent records (or stayed idle past the idle timeout), so
    /// that the first partition read does not fire windows the others
    /// still feed. A source in a consumer group announces its partitions
    /// with [`SourceEvent::Assigned`] instead. Default: `None`, not known
    /// (fine for a source of one partition). Since API 2.2.
    fn partitions(&self) -> Option<Vec<PartitionId>> {
        None
    }
}

/// The object-safe twin of [`Source`], for the registry and the runtime.
/// Every `Source` is a `DynSource`; authors implement `Source`. Sealed:
/// nothing else can implement it.
pub trait DynSource: crate::sealed::Source + Send + 'static {
    /// See [`Source::next`].
    fn next_dyn(&mut self) -> BoxFuture<'_, Result<SourceEvent, ConnectorError>>;
    /// See [`Source::seek`].
    fn seek_dyn<'a>(
        &'a mut self,
        position: &'a SourcePosition,
    ) -> BoxFuture<'a, Result<(), ConnectorError>>;
    /// See [`Source::on_checkpoint_complete`].
    fn on_checkpoint_complete_dyn<'a>(
        &'a mut self,
        position: &'a SourcePosition,
    ) -> BoxFuture<'a, Result<(), ConnectorError>>;
    /// See [`Source::close`].
    fn close_dyn(&mut self) -> BoxFuture<'_, Result<(), ConnectorError>>;
    /// See [`Source::lag`].
    fn lag_dyn(&self) -> Vec<(PartitionId, u64)>;
    /// See [`Source::connected`].
    fn connected_dyn(&self) -> Option<bool>;
    /// See [`Source::partitions`].
    fn partitions_dyn(&self) -> Option<Vec<PartitionId>>;
}

impl<S: Source> DynSource for S {
    fn next_dyn(&mut self) -> BoxFuture<'_, Result<SourceEvent, ConnectorError>> {
        Box::pin(self.next())
    }
    fn seek_dyn<'a>(
        &'a mut self,
        position: &'a SourcePosition,
    ) -> BoxFuture<'a, Result<(), ConnectorError>> {
        Box::pin(self.seek(position))
    }
    fn on_checkpoint_complete_dyn<'a>(
        &'a mut self,
        position: &'a SourcePosition,
    ) -> BoxFuture<'a, Result<(), ConnectorError>> {
        Box::pin(self.on_checkpoint_complete(position))
    }
    fn close_dyn(&mut self) -> BoxFuture<'_, Result<(), ConnectorError>> {
        Box::pin(self.close())
    }
    fn lag_dyn(&self) -> Vec<(PartitionId, u64)> {
        self.lag()
    }
    fn connected_dyn(&self) -> Option<bool> {
        self.connected()
    }
    fn partitions_dyn(&self) -> Option<Vec<PartitionId>> {
        self.partitions()
    }
}

/// A boxed source, as the registry builds them.
pub type BoxSource = Box<dyn DynSource>;

impl std::fmt::Debug for dyn DynSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DynSource")
    }
}
