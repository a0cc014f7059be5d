//! The generator.

use std::collections::BTreeMap;
use std::f64::consts::TAU;

use crate::event::{format_rfc3339_ms, MetricEvent, METRICS};
use crate::rng::Rng;

const REGIONS: &[&str] = &["eu-west-1", "us-east-1", "ap-south-1"];
const DAY_MS: f64 = 86_400_000.0;

/// What to generate. Build it with struct update syntax from `default()`.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorConfig {
    /// Number of hosts.
    pub hosts: usize,
    /// Seed.
    pub seed: u64,
    /// Event time of the first tick, ms since the epoch.
    pub start_ms: i64,
    /// Time between ticks, ms.
    pub interval_ms: i64,
    /// Stop after this many events (`None`: never).
    pub count: Option<u64>,
    /// Largest delay of an event's timestamp behind its tick.
    pub max_out_of_order_ms: i64,
    /// Fraction of events made late.
    pub late_fraction: f64,
    /// How far behind their tick late events are.
    pub late_by_ms: i64,
    /// Chance per host, metric and tick that an anomaly starts.
    pub anomaly_rate: f64,
    /// Fraction of events replaced by malformed records (for tests of the
    /// bad-record path). Applied by [`Generator::next_line`].
    pub poison_fraction: f64,
    /// Take tick times from the clock instead of simulating them (values
    /// stay deterministic; timestamps do not).
    pub wall_clock: bool,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self {
            hosts: 10,
            seed: 42,
            start_ms: 1_767_225_600_000, // 2026-01-01T00:00:00Z
            interval_ms: 1_000,
            count: None,
            max_out_of_order_ms: 0,
            late_fraction: 0.0,
            late_by_ms: 60_000,
            anomaly_rate: 0.0005,
            poison_fraction: 0.0,
            wall_clock: false,
        }
    }
}

/// The kind of an injected anomaly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnomalyKind {
    /// A short burst far above normal (×3 to ×5 the baseline).
    Spike,
    /// A sustained shift of 6–10 standard deviations.
    LevelShift,
}

/// An injected anomaly, for measuring detection.
#[derive(Debug, Clone, PartialEq)]
pub struct Anomaly {
    /// Host.
    pub host: String,
    /// Metric.
    pub metric: String,
    /// Kind.
    pub kind: AnomalyKind,
    /// First tick time affected, ms.
    pub start_ms: i64,
    /// First tick time no longer affected, ms.
    pub end_ms: i64,
}

#[derive(Debug, Clone)]
struct Series {
    base: f64,
    amp: f64,
    sd: f64,
    min: f64,
    phase: f64,
    anomaly: Option<(AnomalyKind, f64, i64)>,
}

/// Yields events in tick order (see the crate docs).
#[derive(Debug, Clone)]
pub struct Generator {
    cfg: GeneratorConfig,
    rng: Rng,
    hosts: Vec<(String, &'static str, String)>,
    series: Vec<Series>,
    tick: i64,
    slot: usize,
    emitted: u64,
    anomalies: Vec<Anomaly>,
}

impl Generator {
    /// A generator for `cfg`.
    pub fn new(cfg: GeneratorConfig) -> Self {
        let mut rng = Rng::new(cfg.seed);
        let hosts: Vec<_> = (0..cfg.hosts.max(1))
            .map(|h| {
                let region = REGIONS[rng.below(REGIONS.len() as u64) as usize];
                (
                    format!("host-{h:04}"),
                    region,
                    format!("r{:02}", rng.below(16)),
                )
            })
            .collect();
        let mut series = Vec::new();
        for _ in &hosts {
            for &(_, base, amp, sd, min) in METRICS {
                let scale = 0.7 + 0.6 * rng.f64();
                series.push(Series {
                    base: base * scale,
                    amp: amp * scale,
                    sd: sd * scale,
                    min,
                    phase: rng.f64() * TAU,
                    anomaly: None,
                });
            }
        }
        Self {
            cfg,
            rng,
            hosts,
            series,
            tick: 0,
            slot: 0,
            emitted: 0,
            anomalies: Vec::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &GeneratorConfig {
        &self.cfg
    }

    /// Events emitted so far.
    pub fn emitted(&self) -> u64 {
        self.emitted
    }

    /// Anomalies injected so far.
    pub fn anomalies(&self) -> &[Anomaly] {
        &self.anomalies
    }

    /// The tick time of the next event, ms.
    pub fn next_tick_ms(&self) -> i64 {
        if self.cfg.wall_clock {
            return std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
        }
        self.cfg.start_ms + self.tick * self.cfg.interval_ms
    }

    /// The next event as a JSON line, or a malformed line with probability
    /// `poison_fraction`. Returns `(line, poisoned)`.
    pub fn next_line(&mut self) -> Option<(String, bool)> {
        let ev = self.next()?;
        if self.cfg.poison_fraction > 0.0 && self.rng.f64() < self.cfg.poison_fraction {
            let bad = match self.rng.below(3) {
                0 => format!("{{\"host\":\"{}\",\"metric\":", ev.host),
                1 => format!(
                    "{{\"host\":\"{}\",\"metric\":\"{}\",\"value\":\"high\",\"timestamp\":\"{}\"}}",
                    ev.host, ev.metric, ev.timestamp
                ),
                _ => format!("{{\"host\":\"{}\",\"value\":{}}}", ev.host, ev.value),
            };
            return Some((bad, true));
        }
        Some((ev.to_json(), false))
    }

    fn sample(&mut self, idx: usize, tick_ms: i64) -> f64 {
        let s = &self.series[idx];
        let day = (tick_ms as f64 / DAY_MS) * TAU + s.phase;
        let normal = s.base + s.amp * day.sin() + s.sd * self.rng.normal();
        let (base, sd, min) = (s.base, s.sd, s.min);
        if s.anomaly.is_none()
            && self.cfg.anomaly_rate > 0.0
            && self.rng.f64() < self.cfg.anomaly_rate
        {
            let (kind, lift, ticks) = if self.rng.below(2) == 0 {
                (
                    AnomalyKind::Spike,
                    base * (2.0 + 2.0 * self.rng.f64()),
                    15 + self.rng.below(30) as i64,
                )
            } else {
                (
                    AnomalyKind::LevelShift,
                    sd * (6.0 + 4.0 * self.rng.f64()),
                    60 + self.rng.below(120) as i64,
                )
            };
            let end = tick_ms + ticks * self.cfg.interval_ms;
            let (h, m) = (idx / METRICS.len(), idx % METRICS.len());
            self.anomalies.push(Anomaly {
                host: self.hosts[h].0.clone(),
                metric: METRICS[m].0.to_string(),
                kind,
                start_ms: tick_ms,
                end_ms: end,
            });
            self.series[idx].anomaly = Some((kind, lift, end));
        }
        let s = &mut self.series[idx];
        let mut v = normal;
        if let Some((_, lift, end)) = s.anomaly {
            if tick_ms < end {
                v += lift;
            } else {
                s.anomaly = None;
            }
        }
        (v.max(min) * 1000.0).round() / 1000.0
    }
}

impl Iterator for Generator {
    type Item = MetricEvent;

    fn next(&mut self) -> Option<MetricEvent> {
        if self.cfg.count.is_some_and(|c| self.emitted >= c) {
            return None;
        }
        let tick_ms = self.next_tick_ms();
        let idx = self.slot;
        let value = self.sample(idx, tick_ms);
        let mut ts = tick_ms;
        if self.cfg.max_out_of_order_ms > 0 {
            ts -= self.rng.below(self.cfg.max_out_of_order_ms as u64 + 1) as i64;
        }
        if self.cfg.late_fraction > 0.0 && self.rng.f64() < self.cfg.late_fraction {
            ts -= self.cfg.late_by_ms;
        }
        let (h, m) = (idx / METRICS.len(), idx % METRICS.len());
        let (host, region, rack) = &self.hosts[h];
        let mut tags = BTreeMap::new();
        tags.insert("env".to_string(), "prod".to_string());
        tags.insert("rack".to_string(), rack.clone());
        let ev = MetricEvent {
            host: host.clone(),
            metric: METRICS[m].0.to_string(),
            value,
            timestamp: format_rfc3339_ms(ts),
            region: region.to_string(),
            tags,
        };
        self.slot += 1;
        if self.slot == self.series.len() {
            self.slot = 0;
            self.tick += 1;
        }
        self.emitted += 1;
        Some(ev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_rfc3339_ms;

    fn cfg() -> GeneratorConfig {
        GeneratorConfig {
            hosts: 3,
            count: Some(3000),
            max_out_of_order_ms: 2000,
            late_fraction: 0.01,
            anomaly_rate: 0.01,
            ..Default::default()
        }
    }

    #[test]
    fn deterministic_for_a_seed() {
        let a: Vec<String> = Generator::new(cfg()).map(|e| e.to_json()).collect();
        let b: Vec<String> = Generator::new(cfg()).map(|e| e.to_json()).collect();
        assert_eq!(a.len(), 3000);
        assert_eq!(a, b);
        let c: Vec<String> = Generator::new(GeneratorConfig { seed: 43, ..cfg() })
            .map(|e| e.to_json())
            .collect();
        assert_ne!(a, c);
    }

    #[test]
    fn every_host_emits_every_metric_per_tick_with_bounded_disorder() {
        let c = cfg();
        let evs: Vec<MetricEvent> = Generator::new(c.clone()).collect();
        let per_tick = 3 * METRICS.len();
        let mut late = 0;
        for (i, e) in evs.iter().enumerate() {
            let tick = c.start_ms + (i / per_tick) as i64 * c.interval_ms;
            let ts = parse_rfc3339_ms(&e.timestamp).unwrap();
            let behind = tick - ts;
            if behind > c.max_out_of_order_ms {
                assert!(behind >= c.late_by_ms, "event {i} is {behind} ms behind");
                late += 1;
            }
            assert!(behind >= 0);
            assert_eq!(e.metric, METRICS[i % METRICS.len()].0);
        }
        assert!(late > 0 && late < 100, "late events: {late}");
    }

    #[test]
    fn injects_anomalies_that_stand_out() {
        let mut g = Generator::new(GeneratorConfig {
            hosts: 2,
            count: Some(20_000),
            anomaly_rate: 0.002,
            ..Default::default()
        });
        let evs: Vec<MetricEvent> = g.by_ref().collect();
        assert!(!g.anomalies().is_empty());
        let a = &g.anomalies()[0];
        let inside: Vec<f64> = evs
            .iter()
            .filter(|e| e.host == a.host && e.metric == a.metric)
            .filter(|e| {
                let t = parse_rfc3339_ms(&e.timestamp).unwrap();
                t >= a.start_ms && t < a.end_ms
            })
            .map(|e| e.value)
            .collect();
        let before: Vec<f64> = evs
            .iter()
            .filter(|e| e.host == a.host && e.metric == a.metric)
            .filter(|e| parse_rfc3339_ms(&e.timestamp).unwrap() < a.start_ms - 60_000)
            .map(|e| e.value)
            .collect();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        assert!(!inside.is_empty());
        if !before.is_empty() {
            assert!(mean(&inside) > mean(&before), "{a:?}");
        }
    }

    #[test]
    fn poison_lines_are_not_valid_events() {
        let mut g = Generator::new(GeneratorConfig {
            poison_fraction: 0.2,
            count: Some(500),
            ..cfg()
        });
        let mut poisoned = 0;
        while let Some((line, bad)) = g.next_line() {
            let ok = serde_json::from_str::<MetricEvent>(&line).is_ok();
            assert_eq!(ok, !bad, "{line}");
            poisoned += bad as usize;
        }
        assert!(poisoned > 50 && poisoned < 150, "{poisoned}");
    }
}
