//! # flowline-metric-generator
//!
//! Realistic host metrics: `hosts` × metrics, each with a daily shape,
//! Gaussian noise and injected anomalies (spikes and level shifts), with
//! bounded out-of-order and a fraction of late events. Deterministic: the
//! same [`GeneratorConfig`] (seed included) yields the same events, whatever
//! the output.
//!
//! Event time is simulated: tick `i` is at `start + i × interval`, and at
//! each tick every host emits every metric (hosts in order, metrics in
//! order). An event's timestamp is its tick time minus a random delay of at
//! most `max_out_of_order_ms`; a late event's is further back by
//! `late_by_ms`.
//!
//! ## Event JSON
//!
//! ```json
//! {"host":"host-0007","metric":"cpu_util","value":41.237,"timestamp":"2026-11-25T10:00:01.000Z",
//!  "region":"eu-west-1","tags":{"env":"prod","rack":"r07"}}
//! ```
//!
//! `timestamp` is RFC 3339, UTC, with milliseconds. `value` is a float with
//! three decimals. Metrics: `cpu_util` (%), `mem_used_pct` (%),
//! `disk_io_ops` (ops/s), `net_rx_bytes` (bytes/s), `http_latency_ms` (ms).

#![warn(missing_docs)]

mod event;
mod generator;
mod rng;

pub use event::{format_rfc3339_ms, parse_rfc3339_ms, MetricEvent, METRICS};
pub use generator::{Anomaly, AnomalyKind, Generator, GeneratorConfig};
pub use rng::Rng;
