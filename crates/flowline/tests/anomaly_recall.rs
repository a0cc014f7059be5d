//! The detector on a seeded generator run with injected anomalies: how many
//! of them it finds (recall) and how many reports match none (false
//! positives). Figures are printed; the asserted floors are well below what
//! the seeded runs give, so a regression in the detector shows here.

use std::time::Duration;

use flowline::anomaly::{AnomalyDoc, AnomalySettings};
use flowline::job::{metrics_pipeline, Outputs, WindowSettings};
use flowline_connector_api::Record;
use flowline_connector_testkit::MemorySink;
use flowline_file::IterSource;
use flowline_metric_generator::{parse_rfc3339_ms, Anomaly, Generator, GeneratorConfig};
use flowline_runtime::{JobConfig, StreamEnvironment, Tumbling};

fn run(seed: u64) -> (Vec<Anomaly>, Vec<AnomalyDoc>, usize) {
    let cfg = GeneratorConfig {
        hosts: 10,
        seed,
        count: Some(300_000),
        max_out_of_order_ms: 2_000,
        anomaly_rate: 0.0003,
        ..GeneratorConfig::default()
    };
    // The ground truth: the same seeded run, drained first.
    let mut truth_gen = Generator::new(cfg.clone());
    truth_gen.by_ref().for_each(drop);
    let truth = truth_gen.anomalies().to_vec();

    let env =
        StreamEnvironment::new(JobConfig::named("recall").out_of_orderness(Duration::from_secs(3)));
    let windows = MemorySink::new();
    let anomalies = MemorySink::new();
    let w = env.add_sink("windows", Box::new(windows.clone()));
    let a = env.add_sink("anomalies", Box::new(anomalies.clone()));
    let src = IterSource::new(Generator::new(cfg).map(|e| Record::new(e.to_json())));
    metrics_pipeline(
        env.source("gen", Box::new(src)),
        WindowSettings::new(Tumbling::of(Duration::from_secs(10))),
        AnomalySettings::default(),
        Outputs {
            windows: w,
            anomalies: Some(a),
            current: None,
            results: None,
        },
    );
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(env.execute())
        .unwrap();
    let docs = anomalies
        .payloads()
        .iter()
        .map(|p| serde_json::from_str(p).unwrap())
        .collect();
    (truth, docs, windows.records().len())
}

/// A report matches an injected anomaly of the same key when its episode
/// starts within one window of the anomaly's span.
fn matches(a: &Anomaly, d: &AnomalyDoc) -> bool {
    let ep = parse_rfc3339_ms(&d.episode_start).unwrap();
    a.host == d.host && a.metric == d.metric && ep >= a.start_ms - 10_000 && ep < a.end_ms + 10_000
}

#[test]
fn injected_anomalies_are_found_with_few_false_positives() {
    let (mut found, mut injected, mut false_pos, mut reports) = (0, 0, 0, 0);
    for seed in [1, 2, 3] {
        let (truth, docs, windows) = run(seed);
        assert!(windows > 0);
        // Injected anomalies that cover at least two whole windows can be
        // confirmed (consecutive = 2); shorter ones are not counted.
        let detectable: Vec<&Anomaly> = truth
            .iter()
            .filter(|a| a.end_ms - a.start_ms >= 30_000)
            .collect();
        let hit = detectable
            .iter()
            .filter(|a| docs.iter().any(|d| matches(a, d)))
            .count();
        let fp = docs
            .iter()
            .filter(|d| !truth.iter().any(|a| matches(a, d)))
            .count();
        println!(
            "seed {seed}: {} injected ({} detectable), {} reports, recall {:.3}, false positives {fp}",
            truth.len(),
            detectable.len(),
            docs.len(),
            hit as f64 / detectable.len().max(1) as f64
        );
        found += hit;
        injected += detectable.len();
        false_pos += fp;
        reports += docs.len();
    }
    let recall = found as f64 / injected as f64;
    let fp_rate = false_pos as f64 / reports.max(1) as f64;
    println!("all seeds: recall {recall:.3} ({found}/{injected}), false positives {false_pos} of {reports} reports ({fp_rate:.3})");
    assert!(
        injected >= 30,
        "the run injects enough anomalies to measure"
    );
    assert!(recall >= 0.9, "recall {recall}");
    assert!(fp_rate <= 0.1, "false-positive share {fp_rate}");
}
