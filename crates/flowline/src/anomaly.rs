//! Anomaly detection per key, over the stream of fired windows: a keyed
//! process function holding an exponentially weighted mean and variance of
//! the window averages, the last window, and how many windows in a row were
//! anomalous.
//!
//! A window is anomalous when its average is more than `threshold` standard
//! deviations from the baseline. After `consecutive` anomalous windows in a
//! row, one anomaly document is emitted for the episode (its id is the key
//! and the episode's first window, so a replay rewrites the same document).
//! Anomalous windows do not move the baseline, so a spike does not teach the
//! detector that spikes are normal; a shift that lasts `relearn_after`
//! windows becomes the new baseline. Updated windows (allowed lateness)
//! refresh the window document only: the detector decides on a window's
//! first firing.

use crate::time::format_rfc3339_ms;
use flowline_connector_api::Record;
use flowline_runtime::{KeyedProcessFunction, ProcessContext, WindowResult};
use serde::{Deserialize, Serialize};

use crate::job::{Stats, WindowDoc};

/// Detector settings (`[anomaly]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnomalySettings {
    /// Weight of the newest window in the baseline (0 < α ≤ 1).
    pub alpha: f64,
    /// |z| at or above which a window is anomalous.
    pub threshold: f64,
    /// Anomalous windows in a row before an anomaly is reported.
    pub consecutive: u32,
    /// Windows seen before any verdict (the baseline warms up).
    pub warmup: u32,
    /// Anomalous windows in a row after which the level is accepted as the
    /// new baseline.
    pub relearn_after: u32,
}

impl Default for AnomalySettings {
    fn default() -> Self {
        Self {
            alpha: 0.1,
            threshold: 4.0,
            consecutive: 2,
            warmup: 12,
            relearn_after: 30,
        }
    }
}

impl AnomalySettings {
    /// Checks the ranges; the error names the field and the fix.
    pub fn check(&self) -> Result<(), (String, String)> {
        let bad = |f: &str, m: &str| Err((format!("anomaly.{f}"), m.to_string()));
        if !(self.alpha > 0.0 && self.alpha <= 1.0) {
            return bad("alpha", "must be in (0, 1]. Fix: alpha = 0.1");
        }
        if !(self.threshold.is_finite() && self.threshold > 0.0) {
            return bad(
                "threshold",
                "must be a positive number. Fix: threshold = 4.0",
            );
        }
        if self.consecutive == 0 {
            return bad("consecutive", "must be at least 1. Fix: consecutive = 2");
        }
        if self.relearn_after < self.consecutive {
            return bad(
                "relearn_after",
                "must be at least `consecutive`. Fix: relearn_after = 30",
            );
        }
        Ok(())
    }
}

/// Per-key detector state (kept in checkpoints).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DetectorState {
    mean: f64,
    var: f64,
    seen: u32,
    streak: u32,
    episode_start: i64,
    last_start: Option<i64>,
}

/// The current status of one key, upserted to `flowline-current` (id:
/// host and metric).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurrentDoc {
    /// Host.
    pub host: String,
    /// Metric.
    pub metric: String,
    /// Start of the latest window (RFC 3339).
    pub window_start: String,
    /// End of the latest window.
    pub window_end: String,
    /// The latest window's average.
    pub avg: f64,
    /// The latest window's p95.
    pub p95: f64,
    /// Samples in the latest window.
    pub count: u64,
    /// Baseline mean before this window.
    pub baseline_mean: f64,
    /// Baseline standard deviation before this window.
    pub baseline_std: f64,
    /// z-score of this window (0 while warming up).
    pub z_score: f64,
    /// `ok`, `warming_up`, `suspect` (anomalous, not yet reported) or
    /// `anomalous`.
    pub status: String,
    /// Anomalous windows in a row.
    pub anomalous_windows: u32,
}

/// One reported anomaly, written to `flowline-anomalies-*` (id: host,
/// metric and the episode's first window).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnomalyDoc {
    /// Host.
    pub host: String,
    /// Metric.
    pub metric: String,
    /// Start of the window that confirmed the anomaly (RFC 3339).
    pub window_start: String,
    /// End of that window.
    pub window_end: String,
    /// Start of the first anomalous window of the episode.
    pub episode_start: String,
    /// That window's average.
    pub value: f64,
    /// Baseline mean.
    pub baseline_mean: f64,
    /// Baseline standard deviation.
    pub baseline_std: f64,
    /// z-score of the confirming window.
    pub z_score: f64,
    /// The threshold in force.
    pub threshold: f64,
    /// Anomalous windows in a row so far.
    pub consecutive_windows: u32,
    /// `above` or `below`.
    pub direction: String,
    /// One sentence with the numbers.
    pub explanation: String,
}

fn r3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

impl CurrentDoc {
    /// Deterministic id: host and metric.
    pub fn id(&self) -> String {
        format!("{}|{}", self.host, self.metric)
    }
    /// As a record keyed by its id.
    pub fn to_record(&self) -> Record {
        Record::new(serde_json::to_vec(self).expect("serializes")).with_key(self.id())
    }
}

impl AnomalyDoc {
    /// Deterministic id: host, metric, episode start.
    pub fn id(&self) -> String {
        format!("{}|{}|{}", self.host, self.metric, self.episode_start)
    }
    /// As a record keyed by its id.
    pub fn to_record(&self) -> Record {
        Record::new(serde_json::to_vec(self).expect("serializes")).with_key(self.id())
    }
}

/// A fired window with the detector's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessed {
    /// The window document.
    pub window: WindowDoc,
    /// Window start, ms.
    pub start_ms: i64,
    /// The key's status after this window (`None` for updates of an
    /// already fired window).
    pub current: Option<CurrentDoc>,
    /// An anomaly confirmed by this window.
    pub anomaly: Option<AnomalyDoc>,
}

/// The detector, as a keyed process function over window results.
#[derive(Debug, Clone, Copy)]
pub struct Detector(pub AnomalySettings);

impl KeyedProcessFunction for Detector {
    type Key = (String, String);
    type In = WindowResult<(String, String), Stats>;
    type Out = Assessed;
    type State = DetectorState;

    fn process_element(
        &self,
        _key: &Self::Key,
        r: Self::In,
        ctx: &mut ProcessContext<'_, DetectorState, Assessed>,
    ) {
        let window = WindowDoc::from_result(&r);
        let start_ms = r.window.start;
        let s = ctx.state();
        if r.update || s.last_start.is_some_and(|l| start_ms <= l) {
            ctx.emit(Assessed {
                window,
                start_ms,
                current: None,
                anomaly: None,
            });
            return;
        }
        let (current, anomaly) = self.assess(s, &window, start_ms);
        ctx.emit(Assessed {
            window,
            start_ms,
            current: Some(current),
            anomaly,
        });
    }
}

impl Detector {
    /// Updates `s` with one window; returns the status and a confirmed
    /// anomaly, if any.
    pub fn assess(
        &self,
        s: &mut DetectorState,
        w: &WindowDoc,
        start_ms: i64,
    ) -> (CurrentDoc, Option<AnomalyDoc>) {
        let cfg = &self.0;
        let x = w.avg;
        s.last_start = Some(start_ms);
        let std = s.var.sqrt().max(1e-3 * s.mean.abs()).max(1e-9);
        let (mean_before, std_before) = (s.mean, std);
        let warming = s.seen < cfg.warmup;
        let z = if s.seen == 0 { 0.0 } else { (x - s.mean) / std };
        let mut anomaly = None;
        let status;
        if !warming && z.abs() >= cfg.threshold {
            if s.streak == 0 {
                s.episode_start = start_ms;
            }
            s.streak += 1;
            if s.streak == cfg.consecutive {
                anomaly = Some(AnomalyDoc {
                    host: w.host.clone(),
                    metric: w.metric.clone(),
                    window_start: w.window_start.clone(),
                    window_end: w.window_end.clone(),
                    episode_start: format_rfc3339_ms(s.episode_start),
                    value: x,
                    baseline_mean: r3(s.mean),
                    baseline_std: r3(std),
                    z_score: r3(z),
                    threshold: cfg.threshold,
                    consecutive_windows: s.streak,
                    direction: if z > 0.0 { "above" } else { "below" }.into(),
                    explanation: format!(
                        "{} on {} averaged {x} for {} windows in a row from {}, {:.1} standard deviations {} its baseline {:.3} (σ {:.3}); threshold {}",
                        w.metric,
                        w.host,
                        s.streak,
                        format_rfc3339_ms(s.episode_start),
                        z.abs(),
                        if z > 0.0 { "above" } else { "below" },
                        s.mean,
                        std,
                        cfg.threshold
                    ),
                });
            }
            status = if s.streak >= cfg.consecutive {
                "anomalous"
            } else {
                "suspect"
            };
            if s.streak >= cfg.relearn_after {
                // A lasting shift: accept the level as the new normal.
                s.mean = x;
                s.streak = 0;
            }
        } else {
            s.streak = 0;
            status = if warming { "warming_up" } else { "ok" };
            if warming {
                // Plain running mean and variance while warming up, so the
                // baseline starts from a fair estimate of the spread.
                let n = f64::from(s.seen + 1);
                let d = x - s.mean;
                s.mean += d / n;
                s.var = (s.var * (n - 1.0) + d * (x - s.mean)) / n;
            } else {
                // West's incremental EWMA of mean and variance.
                let d = x - s.mean;
                let incr = cfg.alpha * d;
                s.mean += incr;
                s.var = (1.0 - cfg.alpha) * (s.var + d * incr);
            }
            s.seen = s.seen.saturating_add(1);
        }
        let current = CurrentDoc {
            host: w.host.clone(),
            metric: w.metric.clone(),
            window_start: w.window_start.clone(),
            window_end: w.window_end.clone(),
            avg: w.avg,
            p95: w.p95,
            count: w.count,
            baseline_mean: r3(mean_before),
            baseline_std: r3(std_before),
            z_score: r3(z),
            status: status.into(),
            anomalous_windows: s.streak,
        };
        (current, anomaly)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(avg: f64) -> WindowDoc {
        WindowDoc {
            host: "h".into(),
            metric: "m".into(),
            window_start: "s".into(),
            window_end: "e".into(),
            count: 10,
            sum: avg * 10.0,
            min: avg,
            max: avg,
            avg,
            p50: avg,
            p95: avg,
            p99: avg,
        }
    }

    fn run(values: &[f64], cfg: AnomalySettings) -> Vec<(usize, AnomalyDoc)> {
        let d = Detector(cfg);
        let mut s = DetectorState::default();
        let mut out = Vec::new();
        for (i, v) in values.iter().enumerate() {
            if let (_, Some(a)) = d.assess(&mut s, &doc(*v), i as i64 * 10_000) {
                out.push((i, a));
            }
        }
        out
    }

    fn noise(n: usize) -> Vec<f64> {
        // A deterministic wiggle of ±1 around 50.
        (0..n).map(|i| 50.0 + ((i * 7) % 5) as f64 - 2.0).collect()
    }

    #[test]
    fn a_sustained_spike_is_reported_once_after_k_windows() {
        let mut v = noise(40);
        for x in &mut v[20..24] {
            *x += 40.0;
        }
        let found = run(&v, AnomalySettings::default());
        assert_eq!(found.len(), 1, "{found:?}");
        let (i, a) = &found[0];
        assert_eq!(*i, 21, "confirmed on the second anomalous window");
        assert_eq!(a.episode_start, format_rfc3339_ms(200_000));
        assert_eq!(a.direction, "above");
        assert!(a.z_score >= 4.0 && a.explanation.contains("2 windows in a row"));
    }

    #[test]
    fn a_single_outlier_window_is_not_reported_and_does_not_move_the_baseline() {
        let mut v = noise(40);
        v[20] += 40.0;
        assert!(run(&v, AnomalySettings::default()).is_empty());
        let d = Detector(AnomalySettings::default());
        let mut s = DetectorState::default();
        for (i, x) in v[..20].iter().enumerate() {
            d.assess(&mut s, &doc(*x), i as i64);
        }
        let before = s.mean;
        d.assess(&mut s, &doc(v[20]), 20);
        assert_eq!(s.mean, before);
    }

    #[test]
    fn nothing_is_reported_while_warming_up_or_on_steady_noise() {
        let mut v = noise(5);
        v[3] = 500.0;
        v[4] = 500.0;
        assert!(run(&v, AnomalySettings::default()).is_empty());
        assert!(run(&noise(500), AnomalySettings::default()).is_empty());
    }

    #[test]
    fn a_lasting_shift_becomes_the_new_baseline() {
        let mut v = noise(30);
        v.extend(noise(100).iter().map(|x| x + 100.0));
        let cfg = AnomalySettings {
            relearn_after: 10,
            ..Default::default()
        };
        let found = run(&v, cfg);
        assert_eq!(found.len(), 1, "one episode, then relearned: {found:?}");
    }

    #[test]
    fn settings_are_checked() {
        let e = AnomalySettings {
            alpha: 0.0,
            ..Default::default()
        }
        .check()
        .unwrap_err();
        assert_eq!(e.0, "anomaly.alpha");
        assert!(AnomalySettings::default().check().is_ok());
    }
}
