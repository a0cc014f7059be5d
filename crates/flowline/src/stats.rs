//! [`Stats`]: the running aggregate of one key and window (count, sum,
//! min, max and a quantile sketch), shared by the window stage that fills
//! it and the anomaly detector that reads it.

use serde::{Deserialize, Serialize};

use crate::sketch::DDSketch;

/// The running aggregate of one key and window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Samples.
    pub count: u64,
    /// Sum of samples.
    pub sum: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
    /// Quantile sketch.
    pub sketch: DDSketch,
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
        self.sum += v;
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
}
