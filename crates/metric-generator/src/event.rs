//! The event and its JSON form.

use serde::{Deserialize, Serialize};

/// The metrics every host emits: name, baseline, daily amplitude, noise
/// standard deviation, minimum.
pub const METRICS: &[(&str, f64, f64, f64, f64)] = &[
    ("cpu_util", 35.0, 20.0, 4.0, 0.0),
    ("mem_used_pct", 55.0, 8.0, 1.5, 0.0),
    ("disk_io_ops", 400.0, 250.0, 40.0, 0.0),
    ("net_rx_bytes", 2.0e6, 1.2e6, 2.0e5, 0.0),
    ("http_latency_ms", 80.0, 30.0, 8.0, 1.0),
];

/// One metric sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricEvent {
    /// `host-0007`.
    pub host: String,
    /// One of [`METRICS`].
    pub metric: String,
    /// The sample.
    pub value: f64,
    /// RFC 3339 UTC with milliseconds.
    pub timestamp: String,
    /// The host's region.
    pub region: String,
    /// `env`, `rack`.
    pub tags: std::collections::BTreeMap<String, String>,
}

impl MetricEvent {
    /// The event as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a MetricEvent always serializes")
    }
}

pub use flowline_connector_api::time::{format_rfc3339_ms, parse_rfc3339_ms};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        let ms = 1_764_064_801_123;
        let s = format_rfc3339_ms(ms);
        assert_eq!(s, "2025-11-25T10:00:01.123Z");
        assert_eq!(parse_rfc3339_ms(&s).unwrap(), ms);
        assert_eq!(parse_rfc3339_ms("2025-11-25T10:00:01Z").unwrap(), ms - 123);
        assert!(parse_rfc3339_ms("yesterday")
            .unwrap_err()
            .contains("yesterday"));
    }
}
