//! # flowline-connector-api
//!
//! The versioned traits that every Flowline connector implements: the Kafka
//! source, the Elasticsearch sink, the file connectors, and yours.
//!
//! ## Design
//!
//! Modelled on `tower-service` and `axum-core`, for the same reason: many
//! crates implement these traits, so they must not break when Flowline grows.
//!
//! - Each trait has **two required methods** ([`Source::next`] /
//!   [`Source::seek`], [`Sink::write`] / [`Sink::flush`]). Everything else is
//!   a hook with a default body, so a minor version can add a hook without
//!   breaking any connector. A minor version never adds a required method.
//! - Public enums and structs are `#[non_exhaustive]` and built through
//!   constructors, so fields and variants can be added in a minor version.
//! - A **typed trait** for authors ([`Source`], [`SourceFactory`]) and an
//!   **object-safe twin** ([`DynSource`], [`DynSourceFactory`]) that the
//!   [`Registry`] holds. The twin is implemented for every typed
//!   implementation and is **sealed**: nothing else can implement it, so a
//!   minor version may add methods to a twin (with the typed trait's hook
//!   behind them) without breaking anyone. Since API 2.0.
//! - [`API_VERSION`] says which version of these traits a connector was built
//!   against. The [`Registry`] refuses a connector whose major differs from
//!   the runtime's, or whose minor is newer, with a message naming both
//!   versions and the fix. (The classic failure this avoids: Flink 1.14's
//!   `findAndCreateTableSource failed`, which named neither.)
//! - One error type, [`ConnectorError`], classified by [`ErrorKind`]:
//!   retryable, permanent, or bad records (which travel with the error so the
//!   runtime can dead-letter them; nothing is dropped silently).
//! - What every connector needs to turn its input into these types, once:
//!   [`time`] (RFC 3339 event times with any offset to milliseconds and
//!   back, exactly; duration settings within a range) and [`Backoff`]
//!   (waits between retries of a retryable error).
//!
//! ## A complete connector
//!
//! A source that counts from 0 to `limit` on one partition, and a sink that
//! keeps what it is given, with their factories, registered and run:
//!
//! ```
//! use flowline_connector_api::*;
//! use serde::Deserialize;
//! use std::sync::{Arc, Mutex};
//!
//! /// `type = "counter"`: emits the numbers 0..limit as records.
//! #[derive(Debug, Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct CounterConfig { limit: u64 }
//!
//! struct Counter { next: u64, limit: u64, partition: PartitionId }
//!
//! impl Source for Counter {
//!     async fn next(&mut self) -> Result<SourceEvent, ConnectorError> {
//!         if self.next >= self.limit {
//!             return Ok(SourceEvent::End);
//!         }
//!         let end = (self.next + 100).min(self.limit);
//!         let batch = (self.next..end)
//!             .map(|n| Record::new(n.to_string()).with_timestamp(n as i64).at(self.partition.clone(), n))
//!             .collect();
//!         self.next = end;
//!         Ok(SourceEvent::Records(batch))
//!     }
//!     async fn seek(&mut self, position: &SourcePosition) -> Result<(), ConnectorError> {
//!         if let Some(offset) = position.get(&self.partition) {
//!             self.next = offset;
//!         }
//!         Ok(())
//!     }
//! }
//!
//! struct CounterFactory;
//! impl SourceFactory for CounterFactory {
//!     type Config = CounterConfig;
//!     type Source = Counter;
//!     fn descriptor(&self) -> ConnectorDescriptor {
//!         ConnectorDescriptor::new("counter", "0.1.0", ConnectorKind::Source)
//!             .with_field(ConfigField::required("limit", "integer", "how many records"))
//!     }
//!     fn build(&self, c: CounterConfig) -> Result<Counter, ConnectorError> {
//!         Ok(Counter { next: 0, limit: c.limit, partition: PartitionId::new("counter-0") })
//!     }
//! }
//!
//! /// `type = "collect"`: keeps the payloads in memory.
//! #[derive(Clone, Default)]
//! struct Collect(Arc<Mutex<Vec<Vec<u8>>>>);
//! impl Sink for Collect {
//!     async fn write(&mut self, batch: Vec<Record>) -> Result<(), ConnectorError> {
//!         self.0.lock().unwrap().extend(batch.into_iter().map(|r| r.payload));
//!         Ok(())
//!     }
//!     async fn flush(&mut self) -> Result<(), ConnectorError> { Ok(()) }
//! }
//! struct CollectFactory(Collect);
//! impl SinkFactory for CollectFactory {
//!     type Config = serde_json::Value;
//!     type Sink = Collect;
//!     fn descriptor(&self) -> ConnectorDescriptor {
//!         ConnectorDescriptor::new("collect", "0.1.0", ConnectorKind::Sink)
//!     }
//!     fn build(&self, _: serde_json::Value) -> Result<Collect, ConnectorError> { Ok(self.0.clone()) }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), ConnectorError> {
//! let out = Collect::default();
//! let mut registry = Registry::new();
//! registry.register_source(CounterFactory)?.register_sink(CollectFactory(out.clone()))?;
//!
//! // What a runtime does with them:
//! let mut source = registry.build_source("counter", serde_json::json!({ "limit": 250 }))?;
//! let mut sink = registry.build_sink("collect", serde_json::json!({}))?;
//! sink.restore_dyn(None).await?;
//! loop {
//!     match source.next_dyn().await? {
//!         SourceEvent::Records(batch) => sink.write_dyn(batch).await?,
//!         SourceEvent::End => break,
//!         _ => {}
//!     }
//! }
//! sink.flush_dyn().await?;
//! assert_eq!(out.0.lock().unwrap().len(), 250);
//!
//! // Bad config fails before any work, naming the field:
//! let err = registry.build_source("counter", serde_json::json!({ "limt": 1 })).unwrap_err();
//! assert!(err.to_string().contains("unknown field `limt`"));
//! # Ok(()) }
//! ```

#![warn(missing_docs, unreachable_pub)]

mod backoff;
mod counter;
mod descriptor;
mod error;
mod record;
mod registry;
mod sealed;
mod sink;
mod source;
pub mod time;
mod version;

use std::future::Future;
use std::pin::Pin;

pub use backoff::Backoff;
pub use counter::{Counter, CounterReader};
pub use descriptor::{
    is_secret_field, parse_config, ConfigField, ConnectorDescriptor, ConnectorKind, DynSinkFactory,
    DynSourceFactory, SinkFactory, SourceFactory,
};
pub use error::{BoxError, ConnectorError, ErrorKind, Rejected};
pub use record::{PartitionId, Record, SourcePosition};
pub use registry::Registry;
pub use sink::{BoxSink, DynSink, Sink};
pub use source::{BoxSource, DynSource, Source, SourceEvent};
pub use version::{ApiVersion, API_VERSION};

/// A boxed, sendable future, as the object-safe twins return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
