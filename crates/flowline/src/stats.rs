//! [`Stats`]: the running aggregate of one key and window (count, sum,
//! min, max and a quantile sketch), shared by the window stage that fills
//! it and the anomaly detector that reads it; and [`Moments`], what
//! `stddev`, `first` and `last` need besides, kept only by jobs that ask
//! for them (in an accumulator of their own, so the stored form of every
//! other job's windows stays as it was and their checkpoints restore).

use serde::{Deserialize, Serialize};

use crate::sketch::DDSketch;

/// The running aggregate of one key and window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Samples.
    pub count: u64,
    /// Sum of samples: the exact sum correctly rounded, the same whatever
    /// order the samples came in.
    pub sum: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
    /// Quantile sketch.
    pub sketch: DDSketch,
    /// The moments, when the job keeps them. Never stored with `Stats`
    /// (the accumulator that keeps them stores them beside it). Boxed: a
    /// `Stats` sits in every key's window slot, and most jobs keep none.
    #[serde(skip)]
    pub moments: Option<Box<Moments>>,
    /// The exact sum behind `sum`.
    pub exact: crate::exact_sum::ExactSum,
}

/// Welford's running mean and sum of squared deviations (numerically
/// stable, unlike a sum of squares), and the values at the earliest and
/// latest event time of one key and window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Moments {
    /// Samples.
    pub count: u64,
    /// Running mean.
    pub mean: f64,
    /// Sum of squared deviations from the mean.
    pub m2: f64,
    /// (event time ms, value) of the earliest sample; of equal times, the
    /// first to arrive.
    pub first: (i64, f64),
    /// (event time ms, value) of the latest sample; of equal times, the
    /// last to arrive.
    pub last: (i64, f64),
}

impl Moments {
    /// Adds a sample taken at `ts`.
    pub fn add(&mut self, v: f64, ts: i64) {
        let d = v - self.mean;
        let n = (self.count + 1) as f64;
        self.mean += d / n;
        self.m2 += d * (v - self.mean);
        self.add_first_last(v, ts);
    }

    /// Counts a sample taken at `ts` for first and last only (the mean and
    /// squared deviations stay as they are: a job without `stddev`).
    pub fn add_first_last(&mut self, v: f64, ts: i64) {
        self.count += 1;
        if self.count == 1 || ts < self.first.0 {
            self.first = (ts, v);
        }
        if self.count == 1 || ts >= self.last.0 {
            self.last = (ts, v);
        }
    }

    /// Whether adding `v` keeps the mean and the squared deviations finite
    /// (values near ±1e154 and beyond overflow them).
    pub fn can_add(&self, v: f64) -> bool {
        let mut m = self.clone();
        m.add(v, 0);
        m.mean.is_finite() && m.m2.is_finite()
    }

    /// The population standard deviation (as Elasticsearch's
    /// `extended_stats` gives it): √(Σ(x − mean)² / n).
    pub fn stddev(&self) -> f64 {
        (self.m2 / self.count.max(1) as f64).sqrt()
    }
}

impl Stats {
    /// Adds a sample.
    pub fn add(&mut self, v: f64) {
        if self.count == 0 {
            self.min = v;
            self.max = v;
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.count += 1;
        self.exact.add(v);
        self.sum = self.exact.value();
        self.sketch.add(v);
    }
}

impl Stats {
    /// The mean of the samples (0 for none).
    pub fn avg(&self) -> f64 {
        self.sum / self.count.max(1) as f64
    }

    /// The sketch's estimate of the nearest-rank `p` quantile, within its
    /// relative error; an estimate is never outside the window's values.
    pub fn quantile(&self, p: f64) -> f64 {
        self.sketch
            .quantile(p)
            .unwrap_or(self.min)
            .clamp(self.min, self.max)
    }

    /// [`quantile`](Self::quantile) at each of `ps` (ascending), in one
    /// walk of the sketch.
    pub fn quantiles<const N: usize>(&self, ps: [f64; N]) -> [f64; N] {
        self.sketch
            .quantiles(ps)
            .map(|q| q.unwrap_or(self.min).clamp(self.min, self.max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Welford against the two-pass textbook formula; first and last
        /// against a sort by time that keeps arrival order.
        #[test]
        fn moments_match_a_two_pass_computation(
            xs in proptest::collection::vec((-1_000_000i64..1_000_000, -50i64..50), 1..200)
        ) {
            let samples: Vec<(f64, i64)> = xs.iter().map(|(v, t)| (*v as f64 / 64.0, *t)).collect();
            let mut m = Moments::default();
            for (v, t) in &samples {
                m.add(*v, *t);
            }
            let n = samples.len() as f64;
            let mean = samples.iter().map(|s| s.0).sum::<f64>() / n;
            let var = samples.iter().map(|s| (s.0 - mean).powi(2)).sum::<f64>() / n;
            prop_assert!((m.stddev() - var.sqrt()).abs() <= 1e-9 * var.sqrt().max(1.0));
            let mut by_time = samples.clone();
            by_time.sort_by_key(|s| s.1); // stable: arrival order within a time
            prop_assert_eq!(m.first, (by_time[0].1, by_time[0].0));
            let latest = samples.iter().map(|s| s.1).max().unwrap();
            let last = samples.iter().rev().find(|s| s.1 == latest).unwrap();
            prop_assert_eq!(m.last, (last.1, last.0));
        }
    }

    #[test]
    fn huge_values_are_refused_before_they_overflow() {
        let mut m = Moments::default();
        m.add(1e300, 0);
        assert!(!m.can_add(-1e300));
        assert!(m.can_add(1e300));
    }
}
