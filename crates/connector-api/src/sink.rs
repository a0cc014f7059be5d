//! The `Sink` trait and its object-safe twin.

use std::future::Future;

use crate::{BoxFuture, ConnectorError, Record};

/// Writes records to an external system.
///
/// Two methods are required: [`write`](Sink::write) and
/// [`flush`](Sink::flush). Everything else has a default body.
///
/// Exactly-once effect: a checkpoint calls `flush`, then
/// [`snapshot`](Sink::snapshot), and stores what it returns with the
/// checkpoint; on restart the runtime hands it back to
/// [`restore`](Sink::restore) before any write. A sink with idempotent writes
/// (deterministic document ids) needs neither hook; a file sink truncates
/// to its checkpointed length.
pub trait Sink: Send + 'static {
    /// Accepts a batch. May buffer; may wait (backpressure). Records it
    /// cannot write come back as [`ConnectorError::BadRecords`]: the others
    /// were written.
    fn write(
        &mut self,
        batch: Vec<Record>,
    ) -> impl Future<Output = Result<(), ConnectorError>> + Send;

    /// Returns only when everything written before it is durable.
    fn flush(&mut self) -> impl Future<Output = Result<(), ConnectorError>> + Send;

    /// State to keep with a checkpoint, taken right after a `flush`.
    /// Default: none.
    fn snapshot(&mut self) -> impl Future<Output = Result<Option<Vec<u8>>, ConnectorError>> + Send {
        async { Ok(None) }
    }

    /// Called once before any write: with the state of the checkpoint the job
    /// restarts from, or `None` on a fresh start. Default: nothing.
    fn restore(
        &mut self,
        state: Option<Vec<u8>>,
    ) -> impl Future<Output = Result<(), ConnectorError>> + Send {
        let _ = state;
        async { Ok(()) }
    }

    /// `partitions` moved here from another process (a rebalance), restored
    /// from a checkpoint whose state of this sink was `state` (what
    /// [`snapshot`](Self::snapshot) returned there). Their records after
    /// that checkpoint are read again, so what their previous owner wrote
    /// for them after it may come again: a sink that writes a record once
    /// across replays (as [`restore`](Self::restore) arranges at start)
    /// adds what was written for those partitions after `state` to what it
    /// skips, keeping what it skips already. Called before any of those
    /// records reach `write`, once per distinct state. Default: nothing.
    /// Since API 2.3.
    fn rewind(
        &mut self,
        state: Option<Vec<u8>>,
        partitions: Vec<crate::PartitionId>,
    ) -> impl Future<Output = Result<(), ConnectorError>> + Send {
        let _ = (state, partitions);
        async { Ok(()) }
    }

    /// A check of what starting would meet, without writing anything:
    /// the server answers, accepts the credentials, has the topic.
    /// `flowline validate` calls it on a sink it built and then drops; one
    /// attempt, no waiting out an outage. Default: nothing to check. Since
    /// API 1.3.
    fn check(&mut self) -> impl Future<Output = Result<(), ConnectorError>> + Send {
        async { Ok(()) }
    }

    /// The job is stopping: flush and release. Default: `flush`.
    fn close(&mut self) -> impl Future<Output = Result<(), ConnectorError>> + Send {
        self.flush()
    }

    /// A reader of the sink's own counters (requests, retries, documents),
    /// exported by the runtime as `flowline_sink_<name>{sink="…"}`. Asked
    /// for once, at start; the reader is called at every scrape, so it
    /// should read shared atomics. Default: none. Since API 1.2.
    fn counters(&self) -> Option<crate::CounterReader> {
        None
    }
}

/// The object-safe twin of [`Sink`]. Every `Sink` is a `DynSink`.
pub trait DynSink: crate::sealed::Sink + Send + 'static {
    /// See [`Sink::write`].
    fn write_dyn(&mut self, batch: Vec<Record>) -> BoxFuture<'_, Result<(), ConnectorError>>;
    /// See [`Sink::flush`].
    fn flush_dyn(&mut self) -> BoxFuture<'_, Result<(), ConnectorError>>;
    /// See [`Sink::snapshot`].
    fn snapshot_dyn(&mut self) -> BoxFuture<'_, Result<Option<Vec<u8>>, ConnectorError>>;
    /// See [`Sink::restore`].
    fn restore_dyn(&mut self, state: Option<Vec<u8>>) -> BoxFuture<'_, Result<(), ConnectorError>>;
    /// See [`Sink::close`].
    fn close_dyn(&mut self) -> BoxFuture<'_, Result<(), ConnectorError>>;
    /// See [`Sink::counters`].
    fn counters_dyn(&self) -> Option<crate::CounterReader> {
        None
    }
    /// See [`Sink::check`].
    fn check_dyn(&mut self) -> BoxFuture<'_, Result<(), ConnectorError>> {
        Box::pin(async { Ok(()) })
    }
    /// See [`Sink::rewind`].
    fn rewind_dyn(
        &mut self,
        state: Option<Vec<u8>>,
        partitions: Vec<crate::PartitionId>,
    ) -> BoxFuture<'_, Result<(), ConnectorError>> {
        let _ = (state, partitions);
        Box::pin(async { Ok(()) })
    }
}

impl<S: Sink> DynSink for S {
    fn write_dyn(&mut self, batch: Vec<Record>) -> BoxFuture<'_, Result<(), ConnectorError>> {
        Box::pin(self.write(batch))
    }
    fn flush_dyn(&mut self) -> BoxFuture<'_, Result<(), ConnectorError>> {
        Box::pin(self.flush())
    }
    fn snapshot_dyn(&mut self) -> BoxFuture<'_, Result<Option<Vec<u8>>, ConnectorError>> {
        Box::pin(self.snapshot())
    }
    fn restore_dyn(&mut self, state: Option<Vec<u8>>) -> BoxFuture<'_, Result<(), ConnectorError>> {
        Box::pin(self.restore(state))
    }
    fn close_dyn(&mut self) -> BoxFuture<'_, Result<(), ConnectorError>> {
        Box::pin(self.close())
    }
    fn counters_dyn(&self) -> Option<crate::CounterReader> {
        self.counters()
    }
    fn check_dyn(&mut self) -> BoxFuture<'_, Result<(), ConnectorError>> {
        Box::pin(self.check())
    }
    fn rewind_dyn(
        &mut self,
        state: Option<Vec<u8>>,
        partitions: Vec<crate::PartitionId>,
    ) -> BoxFuture<'_, Result<(), ConnectorError>> {
        Box::pin(self.rewind(state, partitions))
    }
}

/// A boxed sink, as the registry builds them.
pub type BoxSink = Box<dyn DynSink>;

impl std::fmt::Debug for dyn DynSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DynSink")
    }
}
