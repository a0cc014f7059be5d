//! The aggregates a window document carries (`[window] aggregates`): any
//! of `count`, `sum`, `min`, `max`, `avg`, `stddev` (population), `first`
//! and `last` (the values at the earliest and latest event time) and `pN`
//! (N in 1..=99, from the window's sketch), in the order given. The default is the eight the job
//! has always written, rendered as before.

use std::fmt::Write as _;

use flowline_connector_api::Record;
use flowline_runtime::WindowResult;

use crate::event::KeyNames;
use crate::job::SeriesKey;
use flowline_connector_api::time::format_rfc3339_ms;

use crate::job::window_id;
use crate::stats::Stats;

/// One aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    /// Samples.
    Count,
    /// Sum.
    Sum,
    /// Smallest.
    Min,
    /// Largest.
    Max,
    /// Mean.
    Avg,
    /// Population standard deviation.
    Stddev,
    /// The value at the earliest event time.
    First,
    /// The value at the latest event time.
    Last,
    /// The nearest-rank N-th percentile, as the sketch estimates it.
    Percentile(u8),
}

impl Aggregate {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "count" => Self::Count,
            "sum" => Self::Sum,
            "min" => Self::Min,
            "max" => Self::Max,
            "avg" => Self::Avg,
            "stddev" => Self::Stddev,
            "first" => Self::First,
            "last" => Self::Last,
            p => {
                let n: u8 = p.strip_prefix('p')?.parse().ok()?;
                if !(1..=99).contains(&n) || p.len() > 3 || p.starts_with("p0") {
                    return None;
                }
                Self::Percentile(n)
            }
        })
    }

    fn name(self) -> String {
        match self {
            Self::Count => "count".into(),
            Self::Sum => "sum".into(),
            Self::Min => "min".into(),
            Self::Max => "max".into(),
            Self::Avg => "avg".into(),
            Self::Stddev => "stddev".into(),
            Self::First => "first".into(),
            Self::Last => "last".into(),
            Self::Percentile(n) => format!("p{n}"),
        }
    }
}

/// The chosen aggregates, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aggregates(Vec<Aggregate>);

const DEFAULT: [Aggregate; 8] = [
    Aggregate::Count,
    Aggregate::Sum,
    Aggregate::Min,
    Aggregate::Max,
    Aggregate::Avg,
    Aggregate::Percentile(50),
    Aggregate::Percentile(95),
    Aggregate::Percentile(99),
];

impl Default for Aggregates {
    fn default() -> Self {
        Self(DEFAULT.to_vec())
    }
}

impl Aggregates {
    /// Reads `[window] aggregates`; the error says what is wrong and the fix.
    pub fn parse(names: &[String]) -> Result<Self, String> {
        const FIX: &str = "Fix: a list of count, sum, min, max, avg, stddev, first, last and pN (N from 1 to 99), like [\"count\", \"avg\", \"p95\"]";
        if names.is_empty() {
            return Err(format!("is empty. {FIX}"));
        }
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            let a = Aggregate::parse(n).ok_or_else(|| {
                let shown: String = n.chars().take(40).collect();
                format!("`{shown}` is not an aggregate this version computes. {FIX}")
            })?;
            if out.contains(&a) {
                return Err(format!("`{n}` is listed twice. {FIX}"));
            }
            out.push(a);
        }
        Ok(Self(out))
    }

    /// Whether any needs the window's [`Moments`](crate::stats::Moments)
    /// (`stddev`, `first`, `last`).
    pub fn needs_moments(&self) -> bool {
        self.0
            .iter()
            .any(|a| matches!(a, Aggregate::Stddev | Aggregate::First | Aggregate::Last))
    }

    /// Whether `stddev` is among them (the running mean and squared
    /// deviations are kept).
    pub fn needs_stddev(&self) -> bool {
        self.0.contains(&Aggregate::Stddev)
    }

    /// The names the documents carry, in order.
    pub fn names(&self) -> impl Iterator<Item = String> + '_ {
        self.0.iter().map(|a| a.name())
    }

    /// The window document of one fired window, as a record: key = the
    /// document id, timestamp = the window start.
    pub fn record(&self, r: &WindowResult<SeriesKey, Stats>, keys: &KeyNames) -> Record {
        if self.0 == DEFAULT && keys.is_default() {
            return crate::render::window_record(r);
        }
        let (host, metric) = (&r.key.0, &r.key.1);
        let start = format_rfc3339_ms(r.window.start);
        let mut s = String::with_capacity(256);
        s.push('{');
        for (k, v) in keys.fields(host, metric) {
            let _ = write!(s, "{}:{},", json(&k), json(&v));
        }
        let end = format_rfc3339_ms(r.window.end);
        let _ = write!(
            s,
            "\"window_start\":{},\"window_end\":{},",
            json(&start),
            json(&end)
        );
        // Present whenever a chosen aggregate needs them (the job then
        // aggregates with `MetricMoments`).
        let m = r.value.moments.as_deref();
        debug_assert!(m.is_some() || !self.needs_moments());
        for a in &self.0 {
            let v = match a {
                Aggregate::Count => json(&r.value.count),
                Aggregate::Sum => json(&r.value.sum),
                Aggregate::Min => json(&r.value.min),
                Aggregate::Max => json(&r.value.max),
                Aggregate::Avg => json(&r.value.avg()),
                Aggregate::Stddev => json(&m.map(|m| m.stddev())),
                Aggregate::First => json(&m.map(|m| m.first.1)),
                Aggregate::Last => json(&m.map(|m| m.last.1)),
                Aggregate::Percentile(n) => json(&r.value.quantile(f64::from(*n) / 100.0)),
            };
            let _ = write!(s, "\"{}\":{v},", a.name());
        }
        s.pop();
        s.push('}');
        Record::new(s)
            .with_key(window_id(host, metric, &start))
            .with_timestamp(r.window.start)
    }
}

/// A string or a finite number as JSON text.
fn json<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).expect("strings and finite numbers serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        let p =
            |v: &[&str]| Aggregates::parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(p(&["count", "p1", "p99"]).unwrap().0.len(), 3);
        for (bad, want) in [
            (&["p0"][..], "not an aggregate"),
            (&["p100"][..], "not an aggregate"),
            (&["p05"][..], "not an aggregate"),
            (&["median"][..], "not an aggregate"),
            (&["avg", "avg"][..], "twice"),
            (&[][..], "empty"),
        ] {
            let e = p(bad).unwrap_err();
            assert!(e.contains(want) && e.contains("Fix"), "{bad:?}: {e}");
        }
    }
}
