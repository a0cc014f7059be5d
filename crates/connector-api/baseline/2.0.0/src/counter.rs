//! Counters a connector keeps about its own work (requests, retries,
//! documents), for the runtime to export next to its own metrics.

/// One counter of a connector: a monotonically growing count.
///
/// The runtime exports it as `flowline_sink_<name>{sink="<sink name>"}`, so
/// `name` follows Prometheus conventions: snake case, `_total` for counts
/// (`retries_total`), base units (`_seconds`). Since API 1.2.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counter {
    /// The name after the `flowline_sink_` prefix.
    pub name: &'static str,
    /// One line of help text.
    pub help: &'static str,
    /// The count so far.
    pub value: u64,
}

impl Counter {
    /// A counter named `name` (see the type's docs) with its help text.
    pub fn new(name: &'static str, help: &'static str, value: u64) -> Self {
        Self { name, help, value }
    }
}

/// Reads a sink's counters at any time, from any thread (the runtime calls
/// it when `/metrics` is scraped, also while the sink is busy writing).
pub type CounterReader = std::sync::Arc<dyn Fn() -> Vec<Counter> + Send + Sync>;
