//! What the job emitted lately, for `/api/v1/windows` and the page's chart:
//! the newest window results and anomalies (bounded rings), and the recent
//! history of a few watched keys.
//!
//! A job may hold 100 000 keys; the browser never gets them all. The first
//! [`AUTO_WATCH`] keys seen are watched from the start (so a chart has
//! points at once); asking for another key watches it from then on, up to
//! [`MAX_WATCHED`], the least recently asked for making room. The first
//! [`KNOWN`] keys are remembered for a search by prefix. Every push is one
//! short lock per window result, never per event.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use flowline_runtime::WindowResult;
use serde::Serialize;

use crate::anomaly::AnomalyDoc;
use crate::job::{Name, SeriesKey};
use crate::stats::Stats;

/// Newest window results kept.
pub const LATEST: usize = 200;
/// Newest anomalies kept.
pub const ANOMALIES: usize = 100;
/// Points kept per watched key.
pub const SERIES: usize = 360;
/// Keys watched from the first results on.
pub const AUTO_WATCH: usize = 16;
/// Keys watched at most.
pub const MAX_WATCHED: usize = 64;
/// Distinct keys remembered for [`Results::keys`] (the first seen).
pub const KNOWN: usize = 20_000;

/// One window result, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// The key's first part (`host` by default).
    pub key: String,
    /// The metric.
    pub metric: String,
    /// Window start, ms since the epoch (inclusive).
    pub window_start_ms: i64,
    /// Window end, ms (exclusive).
    pub window_end_ms: i64,
    /// Events in the window.
    pub count: u64,
    /// Their mean.
    pub avg: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
    /// An update of a window already emitted (a late event within the
    /// allowed lateness).
    pub update: bool,
}

/// One anomaly, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnomalyPoint {
    /// The key's first part.
    pub key: String,
    /// The metric.
    pub metric: String,
    /// Start of the window that confirmed it, RFC 3339.
    pub window_start: String,
    /// That window's average.
    pub value: f64,
    /// Its z-score.
    pub z_score: f64,
    /// `above` or `below`.
    pub direction: String,
}

/// A watched key's recent windows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    /// The key's first part.
    pub key: String,
    /// The metric.
    pub metric: String,
    /// Oldest first.
    pub points: Vec<Point>,
    /// Anomalies of this key among the newest ones.
    pub anomalies: Vec<AnomalyPoint>,
}

#[derive(Debug, Default)]
struct Inner {
    latest: VecDeque<Point>,
    anomalies: VecDeque<AnomalyPoint>,
    series: HashMap<SeriesKey, VecDeque<Point>>,
    /// Watched keys, least recently asked for first.
    order: VecDeque<SeriesKey>,
    /// The first [`KNOWN`] keys seen, for a search by prefix.
    known: std::collections::BTreeSet<SeriesKey>,
    auto_watched: usize,
}

/// The rings; shared by the job (writer) and the API (readers).
#[derive(Debug, Default)]
pub struct Results {
    inner: Mutex<Inner>,
}

impl Results {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A window result the job emitted.
    pub fn window(&self, r: &WindowResult<SeriesKey, Stats>) {
        let s = &r.value;
        let p = Point {
            key: r.key.0.to_string(),
            metric: r.key.1.to_string(),
            window_start_ms: r.window.start,
            window_end_ms: r.window.end,
            count: s.count,
            avg: s.avg(),
            min: s.min,
            max: s.max,
            update: r.update,
        };
        let mut g = self.lock();
        if g.latest.len() == LATEST {
            g.latest.pop_front();
        }
        if g.known.len() < KNOWN && !g.known.contains(&r.key) {
            g.known.insert(r.key.clone());
        }
        if g.auto_watched < AUTO_WATCH && !g.series.contains_key(&r.key) {
            g.auto_watched += 1;
            watch(&mut g, r.key.clone());
        }
        if let Some(v) = g.series.get_mut(&r.key) {
            // An update replaces the point of its window.
            match v
                .iter_mut()
                .rev()
                .find(|q| q.window_start_ms == p.window_start_ms)
            {
                Some(q) => *q = p.clone(),
                None => {
                    if v.len() == SERIES {
                        v.pop_front();
                    }
                    v.push_back(p.clone());
                }
            }
        }
        g.latest.push_back(p);
    }

    /// An anomaly the job emitted.
    pub fn anomaly(&self, d: &AnomalyDoc) {
        let mut g = self.lock();
        if g.anomalies.len() == ANOMALIES {
            g.anomalies.pop_front();
        }
        g.anomalies.push_back(AnomalyPoint {
            key: d.host.to_string(),
            metric: d.metric.to_string(),
            window_start: d.window_start.clone(),
            value: d.value,
            z_score: d.z_score,
            direction: d.direction.clone(),
        });
    }

    /// The newest `n` results and anomalies, newest first.
    pub fn latest(&self, n: usize) -> (Vec<Point>, Vec<AnomalyPoint>) {
        let g = self.lock();
        (
            g.latest.iter().rev().take(n).cloned().collect(),
            g.anomalies.iter().rev().take(n).cloned().collect(),
        )
    }

    /// Up to `limit` keys starting with `prefix`, sorted: of the first
    /// [`KNOWN`] keys seen, the watched ones and those of the newest results.
    pub fn keys(&self, prefix: &str, limit: usize) -> Vec<(String, String)> {
        let g = self.lock();
        let from: SeriesKey = (prefix.into(), Name::default());
        let owned = |(k, m): &SeriesKey| (k.to_string(), m.to_string());
        let mut v: Vec<(String, String)> = g
            .known
            .range(from..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(owned)
            .chain(g.order.iter().map(owned))
            .chain(g.latest.iter().map(|p| (p.key.clone(), p.metric.clone())))
            .filter(|(k, _)| k.starts_with(prefix))
            .collect();
        v.sort();
        v.dedup();
        v.truncate(limit);
        v
    }

    /// The history of `key` and `metric`, watching it from now on if it is
    /// not yet (the answer then has the points of the newest results only).
    pub fn series(&self, key: &str, metric: &str) -> Series {
        let k: SeriesKey = (key.into(), metric.into());
        let mut g = self.lock();
        if g.series.contains_key(&k) {
            // Asked for again: the most recently asked for goes last.
            if let Some(i) = g.order.iter().position(|o| *o == k) {
                let o = g.order.remove(i).expect("found above");
                g.order.push_back(o);
            }
        } else {
            watch(&mut g, k.clone());
            let seen: VecDeque<Point> = g
                .latest
                .iter()
                .filter(|p| p.key == key && p.metric == metric)
                .cloned()
                .collect();
            g.series.insert(k.clone(), seen);
        }
        let points = g.series[&k].iter().cloned().collect();
        let anomalies = g
            .anomalies
            .iter()
            .filter(|a| a.key == key && a.metric == metric)
            .cloned()
            .collect();
        Series {
            key: k.0.into(),
            metric: k.1.into(),
            points,
            anomalies,
        }
    }
}

/// Starts watching `k`, making room by the least recently asked for.
fn watch(g: &mut Inner, k: SeriesKey) {
    if g.order.len() == MAX_WATCHED {
        if let Some(old) = g.order.pop_front() {
            g.series.remove(&old);
        }
    }
    g.order.push_back(k.clone());
    g.series.entry(k).or_default();
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowline_runtime::TimeWindow;

    fn result(host: &str, start: i64, v: f64, update: bool) -> WindowResult<SeriesKey, Stats> {
        let mut s = Stats::default();
        s.add(v);
        WindowResult {
            key: (host.into(), "cpu".into()),
            window: TimeWindow {
                start,
                end: start + 10,
            },
            value: s,
            update,
        }
    }

    #[test]
    fn the_first_keys_are_watched_and_updates_replace_their_window() {
        let r = Results::default();
        for t in 0..400 {
            for h in 0..20 {
                r.window(&result(&format!("h{h:02}"), t * 10, t as f64, false));
            }
        }
        r.window(&result("h00", 3990, -1.0, true));
        let s = r.series("h00", "cpu");
        assert_eq!(s.points.len(), SERIES);
        assert_eq!(s.points.last().unwrap().avg, -1.0);
        assert_eq!(s.points.first().unwrap().window_start_ms, 400);
        let (latest, _) = r.latest(10);
        assert_eq!(latest.len(), 10);
        assert_eq!(r.lock().latest.len(), LATEST);
        // h17 was not among the first 16: only what the latest ring holds.
        let s = r.series("h17", "cpu");
        assert!(s.points.len() <= LATEST / 20 + 1, "{}", s.points.len());
        assert!(!s.points.is_empty());
    }

    #[test]
    fn watched_keys_are_bounded_and_keys_are_listed_by_prefix() {
        let r = Results::default();
        for h in 0..200 {
            r.series(&format!("k{h}"), "m");
        }
        assert_eq!(r.lock().series.len(), MAX_WATCHED);
        assert_eq!(r.lock().order.len(), MAX_WATCHED);
        let keys = r.keys("k19", 5);
        assert_eq!(
            keys,
            (190..195)
                .map(|h| (format!("k{h}"), "m".to_string()))
                .collect::<Vec<_>>()
        );
        assert!(r.keys("nope", 5).is_empty());
    }

    #[test]
    fn keys_are_found_by_prefix_among_the_first_known() {
        let r = Results::default();
        for h in 0..(KNOWN + 5_000) {
            r.window(&result(&format!("h{h:06}"), 0, 1.0, false));
        }
        assert_eq!(r.lock().known.len(), KNOWN);
        let keys = r.keys("h01234", 3);
        assert_eq!(
            keys,
            (12340..12343)
                .map(|h| (format!("h{h:06}"), "cpu".to_string()))
                .collect::<Vec<_>>()
        );
        // Beyond the first KNOWN, a key is listed while among the newest.
        assert_eq!(r.keys(&format!("h{:06}", KNOWN + 4_999), 3).len(), 1);
        assert!(r.keys(&format!("h{:06}", KNOWN + 10), 3).is_empty());
    }
}
