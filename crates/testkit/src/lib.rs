//! # flowline-connector-testkit
//!
//! Conformance suites a connector author calls from their own tests, given
//! a way to build the connector and a way to read the external system
//! (modelled on Flink's `SourceTestSuiteBase` / `SinkTestSuiteBase`). Each
//! check panics with a message naming the rule broken. It also holds the
//! in-memory test doubles, [`MemorySource`] and [`MemorySink`], for tests
//! of runtimes and jobs.
//!
//! ```
//! use flowline_connector_api::{PartitionId, Record, BoxSource};
//! use flowline_connector_testkit::source::{bounded_source_suite, Expected};
//! # use flowline_connector_api::*;
//! # struct Vec1(Vec<Record>, usize);
//! # impl Source for Vec1 {
//! #   async fn next(&mut self) -> Result<SourceEvent, ConnectorError> {
//! #     if self.1 >= self.0.len() { return Ok(SourceEvent::End) }
//! #     let r = self.0[self.1].clone(); self.1 += 1; Ok(SourceEvent::Records(vec![r])) }
//! #   async fn seek(&mut self, p: &SourcePosition) -> Result<(), ConnectorError> {
//! #     if let Some(o) = p.get(&PartitionId::new("p")) { self.1 = o as usize } Ok(()) } }
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let data: Vec<Record> = (0..10).map(|i| Record::new(format!("r{i}")).at(PartitionId::new("p"), i)).collect();
//! let expected = Expected::new().partition("p", (0..10).map(|i| format!("r{i}").into_bytes()).collect());
//! bounded_source_suite(|| Ok(Box::new(Vec1(data.clone(), 0)) as BoxSource), &expected).await;
//! # }
//! ```

#![warn(missing_docs)]

pub mod gate;
mod memory;
pub mod sink;
pub mod source;

pub use memory::{MemorySink, MemorySource};
