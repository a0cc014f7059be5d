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
//! windows becomes the new baseline. Without allowed lateness a window
//! fires once, whole, and [`Detector`] judges it then; with it, windows
//! are judged once final ([`FinalDetector`]), and their earlier firings
//! and updates refresh the window document only.
//!
//! The detector reads the window's numbers ([`Stats`]) and gives a
//! [`Verdict`], numbers too; the current-status and anomaly documents are
//! rendered from both at the sink side ([`CurrentDoc::of`],
//! [`AnomalyDoc::of`]), exactly, with nothing rounded.

mod baseline;
mod late;

pub use late::{FinalDetector, FinalState};

use flowline_connector_api::time::format_rfc3339_ms;
use flowline_connector_api::Record;
use flowline_runtime::{KeyedProcessFunction, ProcessContext, WindowResult};
use serde::{Deserialize, Serialize};

use crate::job::{Name, SeriesKey};
use crate::stats::Stats;

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
    /// Event time, ms, after which the state of a key with no new window
    /// is dropped (between this and twice this after its last window).
    pub forget_after_ms: i64,
}

impl Default for AnomalySettings {
    fn default() -> Self {
        Self {
            alpha: 0.1,
            threshold: 4.0,
            consecutive: 2,
            warmup: 12,
            relearn_after: 30,
            forget_after_ms: 7 * 86_400_000,
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
        if self.threshold >= 1000.0 {
            return bad(
                "threshold",
                "must be below 1000: a z is taken against a spread of at least 0.1 % of the values it compares, so |z| reaches 1000 only for a series leaving 0 or changing sign. Fix: threshold = 4.0",
            );
        }
        if self.consecutive == 0 {
            return bad("consecutive", "must be at least 1. Fix: consecutive = 2");
        }
        if self.forget_after_ms <= 0 {
            return bad(
                "forget_after",
                "must be a positive duration. Fix: forget_after = \"7d\"",
            );
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
    /// The baseline's standard deviation (see `baseline::spread_serde`).
    #[serde(with = "baseline::spread_serde")]
    std: f64,
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
    pub host: Name,
    /// Metric.
    pub metric: Name,
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
    pub host: Name,
    /// Metric.
    pub metric: Name,
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

impl Assessed {
    /// A window with no verdict (an update, or a series without state
    /// while the job's bound is full): its window document alone.
    pub fn unjudged(window: WindowResult<SeriesKey, Stats>) -> Self {
        Assessed {
            window,
            verdict: None,
        }
    }
}

impl CurrentDoc {
    /// Deterministic id: host and metric.
    pub fn id(&self) -> String {
        crate::ids::doc_id(&[&self.host, &self.metric])
    }
    /// As a record keyed by its id.
    pub fn to_record(&self) -> Record {
        Record::new(serde_json::to_vec(self).expect("serializes")).with_key(self.id())
    }
}

impl AnomalyDoc {
    /// Deterministic id: host, metric, episode start.
    pub fn id(&self) -> String {
        crate::ids::doc_id(&[&self.host, &self.metric, &self.episode_start])
    }
    /// As a record keyed by its id.
    pub fn to_record(&self) -> Record {
        Record::new(serde_json::to_vec(self).expect("serializes")).with_key(self.id())
    }
}

/// The detector's verdict on a window: numbers only.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Baseline mean before this window.
    pub baseline_mean: f64,
    /// Baseline standard deviation before this window.
    pub baseline_std: f64,
    /// z-score of this window (0 while warming up).
    pub z_score: f64,
    /// `ok`, `warming_up`, `suspect` or `anomalous`.
    pub status: &'static str,
    /// Anomalous windows in a row after this one.
    pub streak: u32,
    /// The threshold in force.
    pub threshold: f64,
    /// Set on the window that confirms an episode.
    pub confirmed: Option<Episode>,
}

/// An anomaly episode, as confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Episode {
    /// Start of its first anomalous window, ms.
    pub start_ms: i64,
    /// Anomalous windows in a row when it was confirmed.
    pub windows: u32,
}

/// A fired window with the detector's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessed {
    /// The window's numbers.
    pub window: WindowResult<SeriesKey, Stats>,
    /// The verdict (`None` for updates of an already fired window).
    pub verdict: Option<Verdict>,
}

impl CurrentDoc {
    /// The status of the window's key after `v`.
    pub fn of(w: &WindowResult<SeriesKey, Stats>, v: &Verdict) -> Self {
        CurrentDoc {
            host: w.key.0.clone(),
            metric: w.key.1.clone(),
            window_start: format_rfc3339_ms(w.window.start),
            window_end: format_rfc3339_ms(w.window.end),
            avg: w.value.avg(),
            p95: w.value.quantile(0.95),
            count: w.value.count,
            baseline_mean: v.baseline_mean,
            baseline_std: v.baseline_std,
            z_score: v.z_score,
            status: v.status.into(),
            anomalous_windows: v.streak,
        }
    }
}

impl AnomalyDoc {
    /// The anomaly the window confirmed, if `v` confirms one.
    pub fn of(w: &WindowResult<SeriesKey, Stats>, v: &Verdict) -> Option<Self> {
        let e = v.confirmed?;
        let (host, metric) = (&w.key.0, &w.key.1);
        let x = w.value.avg();
        let z = v.z_score;
        let direction = if z > 0.0 { "above" } else { "below" };
        let episode_start = format_rfc3339_ms(e.start_ms);
        Some(AnomalyDoc {
            host: host.clone(),
            metric: metric.clone(),
            window_start: format_rfc3339_ms(w.window.start),
            window_end: format_rfc3339_ms(w.window.end),
            explanation: format!(
                "{metric} on {host} averaged {x:?} for {} windows in a row from {episode_start}, {:.1} standard deviations {direction} its baseline {} (σ {}); threshold {}",
                e.windows,
                z.abs(),
                brief(v.baseline_mean),
                brief(v.baseline_std),
                v.threshold
            ),
            episode_start,
            value: x,
            baseline_mean: v.baseline_mean,
            baseline_std: v.baseline_std,
            z_score: z,
            threshold: v.threshold,
            consecutive_windows: e.windows,
            direction: direction.into(),
        })
    }
}

/// `v` to four significant digits for the explanation's prose (the
/// document's fields hold the numbers whole): `50.00`, `0.001235`,
/// `1.000e-12`. A fixed three decimals wrote a baseline of `1e-12` as
/// `0.000 (σ 0.000)`.
fn brief(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return v.to_string();
    }
    let e = v.abs().log10().floor() as i32;
    if (-3..9).contains(&e) {
        let decimals = (3 - e).max(0) as usize;
        format!("{v:.decimals$}")
    } else {
        format!("{v:.3e}")
    }
}

/// The detector, as a keyed process function over window results.
#[derive(Debug, Clone, Copy)]
pub struct Detector(pub AnomalySettings);

impl KeyedProcessFunction for Detector {
    type Key = SeriesKey;
    type In = WindowResult<SeriesKey, Stats>;
    type Out = Assessed;
    type State = DetectorState;

    fn process_element(
        &self,
        _key: &Self::Key,
        window: Self::In,
        ctx: &mut ProcessContext<'_, DetectorState, Assessed>,
    ) {
        let (verdict, timer) = if window.update {
            (None, None)
        } else {
            self.judge(ctx.state(), &window)
        };
        if let Some(t) = timer {
            ctx.register_event_time_timer(t);
        }
        ctx.emit(Assessed { window, verdict });
    }

    /// A series new while the job holds `max_state_entries` series: its
    /// window is written all the same, with no verdict (no current-status
    /// or anomaly document), until a forgotten series makes room. The
    /// runtime logs when the bound fills; `flowline_process_states` shows
    /// the count.
    fn without_state(&self, _key: &Self::Key, window: Self::In) -> Option<Assessed> {
        Some(Assessed::unjudged(window))
    }

    /// Forgets a key whose last window's forget time (`forget_at`) is at
    /// or before `t`: a series that stopped (a host retired, a pod gone) does
    /// not keep its state, and the checkpoints, growing for ever. It
    /// warms up again if it comes back.
    fn on_timer(
        &self,
        _key: &Self::Key,
        t: i64,
        ctx: &mut ProcessContext<'_, DetectorState, Assessed>,
    ) {
        if self.forgotten_by(ctx.state(), t) {
            ctx.clear_state();
        }
    }
}

impl Detector {
    /// The verdict on `window` (`None` for one starting at or before the
    /// series' last judged window), and the forget timer to set with it.
    pub(crate) fn judge(
        &self,
        s: &mut DetectorState,
        window: &WindowResult<SeriesKey, Stats>,
    ) -> (Option<Verdict>, Option<i64>) {
        let start_ms = window.window.start;
        let mut before = s.last_start;
        if before.is_some_and(|l| start_ms <= l) {
            return (None, None);
        }
        // Due to be forgotten before this window ended: in event time the
        // timer comes first, whether or not it has fired yet (the
        // watermark may have passed both in one step, as one batch of a
        // replay does), so the verdict does not depend on the batches.
        if before.is_some_and(|l| self.forget_at(l) < window.window.max_timestamp()) {
            *s = DetectorState::default();
            before = None;
        }
        let verdict = self.assess(s, window.value.avg(), start_ms);
        (Some(verdict), self.forget_timer(before, start_ms))
    }

    /// Whether a series whose state is `s` is forgotten by time `t`.
    pub(crate) fn forgotten_by(&self, s: &DetectorState, t: i64) -> bool {
        s.last_start.is_none_or(|l| self.forget_at(l) <= t)
    }

    /// The timer to set for a key's first window starting at `start_ms`
    /// in a period of `forget_after` (the last one started at `before`):
    /// the end of the next period. One or two timers per key at a time,
    /// not one per window; a key restored without timers gets one at its
    /// next period. When it fires, a key whose last window started in the
    /// period of the timer's setting is dropped, and one with a later
    /// window has a later timer.
    fn forget_timer(&self, before: Option<i64>, start_ms: i64) -> Option<i64> {
        let period = |t: i64| t.div_euclid(self.0.forget_after_ms);
        before
            .is_none_or(|b| period(b) != period(start_ms))
            .then(|| self.forget_at(start_ms))
    }

    /// When a series whose last window started at `last` is forgotten: the
    /// end of the period of `forget_after` after the one `last` is in
    /// (between `forget_after` and twice that after it). The timer set at
    /// that time drops the state; a window ending after it finds the
    /// series forgotten even where the timer has not fired yet.
    fn forget_at(&self, last: i64) -> i64 {
        let forget = self.0.forget_after_ms;
        last.div_euclid(forget)
            .saturating_add(2)
            .saturating_mul(forget)
    }

    /// Updates `s` with one window of average `x` starting at `start_ms`.
    pub fn assess(&self, s: &mut DetectorState, x: f64, start_ms: i64) -> Verdict {
        let cfg = &self.0;
        s.last_start = Some(start_ms);
        if !(s.mean.is_finite() && s.std.is_finite()) {
            // Restored from a checkpoint whose spread had overflowed.
            tracing::warn!(mean = s.mean, std = s.std, "an anomaly baseline that was not a finite number (from a checkpoint written before the detector was scale-free) starts its warm-up again");
            *s = DetectorState {
                last_start: s.last_start,
                ..DetectorState::default()
            };
        }
        let (z, std) = baseline::z(x, s.mean, s.std);
        let (mean_before, std_before) = (s.mean, std);
        let warming = s.seen < cfg.warmup;
        let z = if s.seen == 0 { 0.0 } else { z };
        let mut confirmed = None;
        let status;
        if !warming && z.abs() >= cfg.threshold {
            if s.streak == 0 {
                s.episode_start = start_ms;
            }
            s.streak += 1;
            if s.streak == cfg.consecutive {
                confirmed = Some(Episode {
                    start_ms: s.episode_start,
                    windows: s.streak,
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
                let n = f64::from(s.seen) + 1.0;
                learn(s, baseline::warm(s.mean, s.std, x, n), x);
            } else {
                // West's incremental EWMA of mean and variance.
                learn(s, baseline::ewma(s.mean, s.std, x, cfg.alpha), x);
            }
            s.seen = s.seen.saturating_add(1);
        }
        Verdict {
            baseline_mean: mean_before,
            baseline_std: std_before,
            z_score: z,
            status,
            streak: s.streak,
            threshold: cfg.threshold,
            confirmed,
        }
    }
}

/// Takes the baseline after a window of average `x`, or leaves it, with a
/// warning, when its spread would pass the largest double.
fn learn(s: &mut DetectorState, next: Option<(f64, f64)>, x: f64) {
    match next {
        Some((mean, std)) => (s.mean, s.std) = (mean, std),
        None => tracing::warn!(
            avg = x,
            mean = s.mean,
            std = s.std,
            "a window's average is so far from its series' baseline that their spread passes the largest 64-bit float; the baseline does not learn from it"
        ),
    }
}

#[cfg(test)]
mod tests;
