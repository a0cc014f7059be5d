//! Fault injection by record count: a [`Gated`] source hands on at most as
//! many records as its [`Gate`] allows, then reports
//! [`SourceEvent::Idle`] until the test opens the gate further.
//!
//! Crash and restore tests use it to stop the input at an exact, seeded
//! point whatever the machine's speed: a job over a gated source can never
//! finish before the test has crashed it, and what it has read at the crash
//! is known to the record. Wrap any source (in memory, Kafka, your own):
//!
//! ```
//! use flowline_connector_api::*;
//! use flowline_connector_testkit::gate::{Gate, Gated};
//! # struct Ten(u64);
//! # impl Source for Ten {
//! #   async fn next(&mut self) -> Result<SourceEvent, ConnectorError> {
//! #     if self.0 >= 10 { return Ok(SourceEvent::End) }
//! #     let r = (self.0..10).map(|i| Record::new(format!("r{i}")).at(PartitionId::new("p"), i)).collect();
//! #     self.0 = 10; Ok(SourceEvent::Records(r)) }
//! #   async fn seek(&mut self, _: &SourcePosition) -> Result<(), ConnectorError> { Ok(()) } }
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let gate = Gate::closed_at(3);
//! let mut source = Gated::new(Ten(0), gate.clone());
//! let SourceEvent::Records(first) = source.next().await.unwrap() else { panic!() };
//! assert_eq!(first.len(), 3);
//! assert!(matches!(source.next().await.unwrap(), SourceEvent::Idle));
//! gate.open_to(10);
//! let SourceEvent::Records(rest) = source.next().await.unwrap() else { panic!() };
//! assert_eq!(rest.len(), 7);
//! assert_eq!(gate.passed(), 10);
//! # }
//! ```

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use flowline_connector_api::{
    ConnectorDescriptor, ConnectorError, PartitionId, Record, Source, SourceEvent, SourceFactory,
    SourcePosition,
};

/// How long a closed gate waits for more allowance before it answers
/// `Idle` (so that the runtime can seek and commit meanwhile).
const IDLE_AFTER: Duration = Duration::from_millis(20);

/// The allowance shared by a test and its [`Gated`] source.
#[derive(Debug, Clone)]
pub struct Gate(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    limit: AtomicU64,
    passed: AtomicU64,
    opened: tokio::sync::Notify,
}

impl Gate {
    /// A gate that lets `n` records through, then holds the rest.
    pub fn closed_at(n: u64) -> Self {
        Self(Arc::new(Inner {
            limit: AtomicU64::new(n),
            passed: AtomicU64::new(0),
            opened: tokio::sync::Notify::new(),
        }))
    }

    /// Lets records through until `n` have passed in all (never lowers it).
    pub fn open_to(&self, n: u64) {
        self.0.limit.fetch_max(n, SeqCst);
        self.0.opened.notify_waiters();
    }

    /// Lets everything through.
    pub fn open(&self) {
        self.open_to(u64::MAX)
    }

    /// Records handed on so far.
    pub fn passed(&self) -> u64 {
        self.0.passed.load(SeqCst)
    }

    /// The current allowance.
    pub fn limit(&self) -> u64 {
        self.0.limit.load(SeqCst)
    }

    fn allowance(&self) -> u64 {
        self.limit().saturating_sub(self.passed())
    }
}

/// A source that hands on only what its [`Gate`] allows. Records read
/// from the inner source beyond the allowance wait here, in order; every
/// other event and hook passes straight through.
#[derive(Debug)]
pub struct Gated<S> {
    inner: S,
    gate: Gate,
    held: VecDeque<Record>,
}

impl<S: Source> Gated<S> {
    /// Wraps `inner` behind `gate`.
    pub fn new(inner: S, gate: Gate) -> Self {
        Self {
            inner,
            gate,
            held: VecDeque::new(),
        }
    }
}

impl<S: Source> Source for Gated<S> {
    fn partitions(&self) -> Option<Vec<flowline_connector_api::PartitionId>> {
        self.inner.partitions()
    }

    async fn next(&mut self) -> Result<SourceEvent, ConnectorError> {
        if self.gate.allowance() == 0 {
            let opened = self.gate.0.opened.notified();
            tokio::pin!(opened);
            opened.as_mut().enable();
            if self.gate.allowance() == 0 {
                let _ = tokio::time::timeout(IDLE_AFTER, opened).await;
            }
            if self.gate.allowance() == 0 {
                return Ok(SourceEvent::Idle);
            }
        }
        if self.held.is_empty() {
            match self.inner.next().await? {
                SourceEvent::Records(batch) => self.held.extend(batch),
                other => return Ok(other),
            }
        }
        let n = (self.gate.allowance().min(self.held.len() as u64)) as usize;
        self.gate.0.passed.fetch_add(n as u64, SeqCst);
        Ok(SourceEvent::Records(self.held.drain(..n).collect()))
    }

    async fn seek(&mut self, position: &SourcePosition) -> Result<(), ConnectorError> {
        // Held records of a partition that moves are read again from its
        // new position by the inner source.
        let moved = |p: &Option<PartitionId>| p.as_ref().is_some_and(|p| position.get(p).is_some());
        self.held.retain(|r| !moved(&r.partition));
        self.inner.seek(position).await
    }

    async fn on_checkpoint_complete(
        &mut self,
        position: &SourcePosition,
    ) -> Result<(), ConnectorError> {
        self.inner.on_checkpoint_complete(position).await
    }

    async fn close(&mut self) -> Result<(), ConnectorError> {
        self.inner.close().await
    }

    fn lag(&self) -> Vec<(PartitionId, u64)> {
        self.inner.lag()
    }
}

/// Builds its inner factory's sources behind one shared [`Gate`]: register
/// it under the inner connector's name to gate a job built from a job file.
#[derive(Debug)]
pub struct GatedFactory<F> {
    inner: F,
    gate: Gate,
}

impl<F: SourceFactory> GatedFactory<F> {
    /// Every source `inner` builds goes behind `gate`.
    pub fn new(inner: F, gate: Gate) -> Self {
        Self { inner, gate }
    }
}

impl<F: SourceFactory> SourceFactory for GatedFactory<F> {
    type Config = F::Config;
    type Source = Gated<F::Source>;
    fn descriptor(&self) -> ConnectorDescriptor {
        self.inner.descriptor()
    }
    fn build(&self, config: F::Config) -> Result<Self::Source, ConnectorError> {
        Ok(Gated::new(self.inner.build(config)?, self.gate.clone()))
    }
    fn check_config(&self, config: &F::Config) -> Result<(), ConnectorError> {
        self.inner.check_config(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Parts(Vec<Vec<Record>>);
    impl Source for Parts {
        async fn next(&mut self) -> Result<SourceEvent, ConnectorError> {
            Ok(match self.0.pop() {
                Some(b) => SourceEvent::Records(b),
                None => SourceEvent::End,
            })
        }
        async fn seek(&mut self, _: &SourcePosition) -> Result<(), ConnectorError> {
            Ok(())
        }
    }

    fn batch(from: u64, n: u64) -> Vec<Record> {
        (from..from + n)
            .map(|i| Record::new(format!("r{i}")).at(PartitionId::new("p"), i))
            .collect()
    }

    async fn records(s: &mut Gated<Parts>) -> Vec<u64> {
        match s.next().await.unwrap() {
            SourceEvent::Records(r) => r.iter().map(|r| r.offset).collect(),
            e => panic!("expected records, got {e:?}"),
        }
    }

    #[tokio::test]
    async fn splits_batches_at_the_limit_and_keeps_order() {
        let gate = Gate::closed_at(5);
        let mut s = Gated::new(Parts(vec![batch(4, 4), batch(0, 4)]), gate.clone());
        assert_eq!(records(&mut s).await, vec![0, 1, 2, 3]);
        assert_eq!(records(&mut s).await, vec![4]);
        assert!(matches!(s.next().await.unwrap(), SourceEvent::Idle));
        assert_eq!(gate.passed(), 5);
        gate.open();
        assert_eq!(records(&mut s).await, vec![5, 6, 7]);
        assert!(matches!(s.next().await.unwrap(), SourceEvent::End));
    }

    #[tokio::test]
    async fn opening_wakes_a_waiting_reader() {
        let gate = Gate::closed_at(0);
        let mut s = Gated::new(Parts(vec![batch(0, 2)]), gate.clone());
        let g = gate.clone();
        let opener = tokio::spawn(async move { g.open_to(1) });
        let mut got = Vec::new();
        while got.is_empty() {
            if let SourceEvent::Records(r) = s.next().await.unwrap() {
                got = r;
            }
        }
        opener.await.unwrap();
        assert_eq!(got.len(), 1);
    }

    #[tokio::test]
    async fn a_seek_drops_held_records_of_the_partitions_it_names() {
        let gate = Gate::closed_at(1);
        let mut s = Gated::new(Parts(vec![batch(0, 3)]), gate.clone());
        assert_eq!(records(&mut s).await, vec![0]);
        s.seek(&SourcePosition::new().with(PartitionId::new("p"), 1))
            .await
            .unwrap();
        assert!(s.held.is_empty());
    }
}
