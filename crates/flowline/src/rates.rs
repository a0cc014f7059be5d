//! Rates for the API: once a second the counters are sampled into a ring of
//! [`KEEP`] samples; a rate over the last 10 s or minute is the difference
//! between the newest sample and the one that long before, divided by the
//! time between them. Busy and backpressured ratios are rates of seconds
//! per second the same way (Flink's `busyTimeMsPerSecond`, as a fraction).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flowline_runtime::Metrics;

/// Samples kept: a minute and one.
pub const KEEP: usize = 61;

/// One sample: every counter by name, at one instant.
#[derive(Debug, Clone)]
pub struct Sample {
    /// When it was taken.
    pub at: Instant,
    /// Counter name → value (`stage:N`, `source`, `sink:NAME`,
    /// `busy:TASK`, `backpressured:TASK`).
    pub values: BTreeMap<String, f64>,
}

/// The ring of samples.
#[derive(Debug, Default)]
pub struct Rates {
    ring: Mutex<VecDeque<Sample>>,
}

/// Every counter the rates are taken of, now.
pub fn sample(m: &Metrics) -> Sample {
    let mut values = BTreeMap::new();
    values.insert("source".to_string(), m.records_in.load(Relaxed) as f64);
    for (i, s) in m.ops().stages().iter().enumerate() {
        values.insert(format!("stage:{i}"), s.records_in as f64);
    }
    for (n, v) in m.records_out() {
        values.insert(format!("sink:{n}"), v as f64);
    }
    values.insert(
        "dead_letters".to_string(),
        m.bad_records.load(Relaxed) as f64 + m.late_records.load(Relaxed) as f64,
    );
    for t in m.ops().tasks() {
        if let Some(b) = t.busy_seconds {
            values.insert(format!("busy:{}", t.name), b);
        }
        if let Some(b) = t.backpressured_seconds {
            values.insert(format!("backpressured:{}", t.name), b);
        }
    }
    Sample {
        at: Instant::now(),
        values,
    }
}

impl Rates {
    /// Adds a sample, dropping the oldest past [`KEEP`].
    pub fn push(&self, s: Sample) {
        let mut r = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        if r.len() == KEEP {
            r.pop_front();
        }
        r.push_back(s);
    }

    /// Per second over about `over` (less while the ring is younger);
    /// `None` with fewer than two samples or for a name not sampled.
    pub fn rate(&self, name: &str, over: Duration) -> Option<f64> {
        let r = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let newest = r.back()?;
        let oldest = r
            .iter()
            .find(|s| newest.at.duration_since(s.at) <= over + Duration::from_millis(500))?;
        let dt = newest.at.duration_since(oldest.at).as_secs_f64();
        if dt <= 0.0 {
            return None;
        }
        let d = newest.values.get(name)? - oldest.values.get(name).copied().unwrap_or(0.0);
        Some(d.max(0.0) / dt)
    }

    /// Samples `metrics` every second until the returned task is aborted.
    pub fn spawn(self: &Arc<Self>, metrics: Arc<Metrics>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                me.push(sample(&metrics));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, s: u64, v: f64) -> Sample {
        Sample {
            at: t0 + Duration::from_secs(s),
            values: [("x".to_string(), v)].into(),
        }
    }

    #[test]
    fn rates_are_differences_over_the_window_asked_for() {
        let r = Rates::default();
        let t0 = Instant::now();
        assert_eq!(r.rate("x", Duration::from_secs(10)), None);
        for s in 0..=70 {
            // 100/s for the first 60 s, then 400/s.
            let v = if s <= 60 {
                100.0 * s as f64
            } else {
                6000.0 + 400.0 * (s - 60) as f64
            };
            r.push(at(t0, s, v));
        }
        assert_eq!(r.rate("x", Duration::from_secs(10)), Some(400.0));
        assert_eq!(r.rate("x", Duration::from_secs(60)), Some(150.0));
        assert_eq!(r.rate("y", Duration::from_secs(10)), None);
        assert_eq!(r.ring.lock().unwrap().len(), KEEP);
    }
}
