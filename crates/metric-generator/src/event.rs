//! The event and its JSON form.

use std::time::{Duration, UNIX_EPOCH};

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

/// `2026-11-25T10:00:01.000Z` for a time in ms since the epoch (≥ 0).
pub fn format_rfc3339_ms(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// ms since the epoch of an RFC 3339 UTC time (`Z`; fractional seconds
/// optional).
pub fn parse_rfc3339_ms(s: &str) -> Result<i64, String> {
    let t = humantime::parse_rfc3339_weak(s.trim_end_matches('Z').trim_end_matches('z'))
        .map_err(|e| format!("timestamp `{s}` is not RFC 3339 UTC: {e}"))?;
    let d = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| format!("timestamp `{s}` is before 1970"))?;
    Ok(d.as_millis() as i64)
}

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
