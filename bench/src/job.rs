//! The metrics job's figures, each next to a baseline run in the same
//! binary:
//!
//! - `e2e [EVENTS]`: EVENTS pre-produced events (default 10M, 200 hosts,
//!   keyed by host, 4 partitions), Kafka → job (10 s windows) → Kafka,
//!   events/s next to a raw rdkafka drain of the same topic, the ratio; the
//!   job runs twice, through the exchange and declared `keyed_by` host.
//!   `BENCH_ROUNDS` (default 3) interleaved rounds of the three, medians,
//!   after `BENCH_WARMUP` (default 1) rounds left out of them: the broker's
//!   JVM serves fetches with more CPU until it has warmed up, and on two
//!   cores shared with it that CPU is the job's (first runs after the
//!   services started: the exchange 0.51, then 0.56, 0.58, 0.58).
//!   `e2e-search [EVENTS]` (default 2M) writes to the search server instead.
//! - `rss [KEYS]`: peak RSS of the job holding KEYS keys (default 100k) of
//!   window and detector state, next to the process's RSS before the job.
//! - `restore [KEYS]`: time to restore a checkpoint of KEYS keys (default
//!   1M), next to the time to write it.
//!
//! ```sh
//! scripts/services up && eval "$(scripts/services env)"
//! cargo run --release -p flowline-bench --bin job -- e2e 10000000
//! cargo run --release -p flowline-bench --bin job -- e2e-search 2000000
//! cargo run --release -p flowline-bench --bin job -- rss 100000
//! cargo run --release -p flowline-bench --bin job -- restore 1000000
//! ```

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use flowline::anomaly::AnomalySettings;
use flowline::job::{metrics_pipeline, Outputs, WindowSettings};
use flowline_connector_api::{ConnectorError, Record, Source, SourceEvent, SourcePosition};
use flowline_file::IterSource;
use flowline_integration_tests::{create_topic, produce, unique, TestServices};
use flowline_metric_generator::{Generator, GeneratorConfig};
use flowline_runtime::{JobConfig, LocalDirStore, StreamEnvironment, Tumbling};

mod common;
use common::Discard;

/// As the `flowline` binary: mimalloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn vm(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        / 1024
}

fn events(hosts: usize, count: u64) -> impl Iterator<Item = Record> + Send + 'static {
    Generator::new(GeneratorConfig {
        hosts,
        count: Some(count),
        max_out_of_order_ms: 2_000,
        ..GeneratorConfig::default()
    })
    .map(|e| Record::new(e.to_json()))
}

fn pipeline(env: &StreamEnvironment, source: flowline_connector_api::BoxSource, size_s: u64) {
    let w = env.add_sink("windows", Box::new(Discard::default()));
    let a = env.add_sink("anomalies", Box::new(Discard::default()));
    let c = env.add_sink("current", Box::new(Discard::default()));
    metrics_pipeline(
        env.source("src", source),
        WindowSettings::new(Tumbling::of(Duration::from_secs(size_s))),
        AnomalySettings::default(),
        Outputs {
            windows: w,
            anomalies: Some(a),
            current: Some(c),
            results: None,
        },
    );
}

/// The job's settings: the exchange with the cores as workers, or
/// `BENCH_WORKERS=N`, or `BENCH_KEYED=1` for the per-partition path.
fn config(name: &str) -> JobConfig {
    let cfg = JobConfig::named(name).out_of_orderness(Duration::from_secs(3));
    let cfg = match std::env::var("BENCH_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(n) => cfg.workers(n),
        None => cfg,
    };
    cfg.partitioned_by_key(std::env::var_os("BENCH_KEYED").is_some())
}

/// Records from an iterator, then idle forever (the job stops on request,
/// with its windows open).
struct ThenIdle(IterSource);

impl Source for ThenIdle {
    async fn next(&mut self) -> Result<SourceEvent, ConnectorError> {
        match self.0.next().await? {
            SourceEvent::End => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok(SourceEvent::Idle)
            }
            ev => Ok(ev),
        }
    }
    async fn seek(&mut self, p: &SourcePosition) -> Result<(), ConnectorError> {
        self.0.seek(p).await
    }
}

/// `ticks` events of every key (`keys / 5` hosts × 5 metrics) in windows of
/// `size_s`; the job then idles with its last windows open.
fn fill(keys: usize, ticks: usize, size_s: u64) -> (StreamEnvironment, u64) {
    let env = StreamEnvironment::new(config("bench-state"));
    let hosts = keys / 5;
    let n = (hosts * 5 * ticks) as u64;
    pipeline(
        &env,
        Box::new(ThenIdle(
            IterSource::new(events(hosts, n)).with_batch_size(1024),
        )),
        size_s,
    );
    (env, n)
}

async fn run_until_read(env: StreamEnvironment, n: u64) -> flowline_runtime::JobSummary {
    let h = env.start().unwrap();
    let m = h.metrics();
    while m.records_in.load(Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    h.stop();
    h.join().await.unwrap()
}

async fn rss(keys: usize) {
    let before = vm("VmRSS:");
    // 15 ticks in 10 s windows: every key has fired a window (detector
    // state) and has one open.
    let ticks = std::env::var("BENCH_TICKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    let (env, n) = fill(keys, ticks, 10);
    let t0 = Instant::now();
    run_until_read(env, n).await;
    println!(
        "rss: {keys} keys ({n} events, 10 s windows, detector and current status on) in {:.1}s",
        t0.elapsed().as_secs_f64()
    );
    println!("RSS before the job:  {before:>6} MB");
    println!(
        "peak RSS (VmHWM):    {:>6} MB (target <= 150 MB)",
        vm("VmHWM:")
    );
}

async fn restore(keys: usize) {
    let dir = std::env::temp_dir().join(unique("bench-restore"));
    // 3 ticks in 60 s windows: every key has an open window.
    let (env, n) = fill(keys, 3, 60);
    env.checkpoint_store(LocalDirStore::new(&dir).unwrap());
    let t0 = Instant::now();
    run_until_read(env, n).await;
    let filled = t0.elapsed();
    let size: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    // The file alone: read and decode the checkpoint.
    let t0 = Instant::now();
    {
        use flowline_runtime::CheckpointStore;
        let cp = LocalDirStore::new(&dir).unwrap().latest().unwrap();
        std::hint::black_box(cp);
    }
    let file_only = t0.elapsed();
    // Restore: the same graph, a source with nothing more to read.
    let env = StreamEnvironment::new(config("bench-state"));
    pipeline(
        &env,
        Box::new(ThenIdle(IterSource::new(events(keys / 5, 0)))),
        60,
    );
    env.checkpoint_store(LocalDirStore::new(&dir).unwrap());
    let t0 = Instant::now();
    let h = env.start().unwrap();
    let m = h.metrics();
    while m.partitions.load(Ordering::Relaxed) == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let restored = t0.elapsed();
    h.stop();
    let s = h.join().await.unwrap();
    assert!(s.restored_from.is_some());
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "restore: checkpoint of {keys} keys, {} MB",
        size / 1_000_000
    );
    println!(
        "filling the state and writing the checkpoint: {:.2}s",
        filled.as_secs_f64()
    );
    println!(
        "reading and decoding the checkpoint file:     {:.2}s",
        file_only.as_secs_f64()
    );
    println!(
        "restore (read, decode, rebuild):              {:.2}s (target <= 2 s)",
        restored.as_secs_f64()
    );
}

/// Where the e2e job writes its windows.
#[derive(Clone, Copy, PartialEq)]
enum To {
    Kafka,
    Search,
}

async fn e2e(n: u64, to: To) {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let topic = unique("bench-e2e");
    let partitions = 4;
    create_topic(&s.kafka_bootstrap, &topic, partitions).await;
    let out = format!("{topic}-windows");
    if to == To::Kafka {
        create_topic(&s.kafka_bootstrap, &out, partitions).await;
    }
    let t0 = Instant::now();
    let hosts = 200;
    let gen = Generator::new(GeneratorConfig {
        hosts,
        count: Some(n),
        max_out_of_order_ms: 2_000,
        ..GeneratorConfig::default()
    });
    produce(
        &s.kafka_bootstrap,
        &topic,
        gen.map(|e| (e.host.clone(), e.to_json(), None)),
    )
    .await;
    println!(
        "e2e: {n} events ({hosts} hosts × 5 metrics, keyed by host) pre-produced to {partitions} partitions in {:.0}s",
        t0.elapsed().as_secs_f64()
    );
    let sink = match to {
        To::Kafka => format!(
            "type = \"kafka\"\nbootstrap_servers = \"{}\"\ntopic = \"{out}\"\n",
            s.kafka_bootstrap
        ),
        To::Search => format!(
            "type = \"elasticsearch\"\nurl = \"{}\"\nindex = \"{out}\"\n",
            s.elasticsearch_url
        ),
    };
    // The same topic read by the drain and twice by the same job: through
    // the exchange (the default), then declared keyed by host (no
    // exchange). BENCH_ONLY=exchange or keyed: that job alone (to profile
    // it). BENCH_ROUNDS (default 3) interleaved rounds; the medians compare,
    // as the drain's own rate moves between runs on a shared machine.
    // BENCH_SOURCE="max_batch = 4096;prefetch_batches = 8": a third mode,
    // the exchange with these [source] settings (`;` between them), to
    // compare settings in the same rounds.
    let variant = std::env::var("BENCH_SOURCE")
        .map(|v| v.replace(';', "\n") + "\n")
        .unwrap_or_default();
    let variant_name = format!("exchange, {}", variant.trim().replace('\n', ", "));
    let mut modes: Vec<(&str, &str)> = vec![
        ("exchange", ""),
        ("keyed_by host, no exchange", "keyed_by = [\"host\"]\n"),
    ];
    if !variant.is_empty() {
        modes.push((&variant_name, &variant));
    }
    let modes: Vec<(&str, &str)> = modes
        .into_iter()
        .filter(|(name, _)| std::env::var("BENCH_ONLY").map_or(true, |o| name.starts_with(&o)))
        .collect();
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let warmup: usize = std::env::var("BENCH_WARMUP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mut drains = Vec::new();
    let mut jobs = vec![Vec::new(); modes.len()];
    // Rounds up to `warmup` are printed, not counted.
    for round in 1..=warmup + rounds {
        let counted = round > warmup;
        let label = if counted {
            format!("round {}", round - warmup)
        } else {
            format!("warm-up {round}")
        };
        // Start-up included, as in the job's figures.
        let c0 = common::cpu_seconds();
        let drain = common::raw(&s.kafka_bootstrap, &topic, partitions, n, false).await;
        println!(
            "{label}: raw rdkafka drain of the topic:  {:>9.0} events/s ({:.1} s, {:.1} CPU s)",
            drain.rate(),
            drain.total.as_secs_f64(),
            common::cpu_seconds() - c0
        );
        if counted {
            drains.push(drain.rate());
        }
        for (i, (name, keyed_by)) in modes.iter().enumerate() {
            // A group of its own: each run reads the topic from the start.
            let text = format!(
                "[job]\nname = \"{topic}\"\n[source]\ntype = \"kafka\"\nbootstrap_servers = \"{k}\"\ntopics = [\"{topic}\"]\ngroup_id = \"{g}\"\nbounded = true\nheaders = false\n{keyed_by}[sink]\n{sink}[window]\nsize = \"10s\"\nout_of_orderness = \"3s\"\n",
                k = s.kafka_bootstrap,
                g = unique("bench-e2e-group"),
            );
            let plan = flowline::config::JobPlan::parse(&text).unwrap();
            let env = flowline::build::build_job(&plan, &flowline::registry()).unwrap();
            let (t0, c0) = (Instant::now(), common::cpu_seconds());
            let summary = env.execute().await.unwrap();
            let (el, cpu) = (t0.elapsed(), common::cpu_seconds() - c0);
            assert_eq!(summary.records_in, n);
            let docs: u64 = summary.records_out.iter().map(|(_, v)| v).sum();
            let job = n as f64 / el.as_secs_f64();
            println!(
                "{label}: job, {name:<27} {job:>9.0} events/s ({docs} windows, {:.1} s, {:.1} CPU s, {:.2} CPU us/event), {:.2} of this round's drain",
                el.as_secs_f64(),
                cpu,
                cpu * 1e6 / n as f64,
                job / drain.rate()
            );
            if counted {
                jobs[i].push(job);
            }
        }
    }
    let raw = median(&mut drains);
    println!("median of {rounds} rounds: raw rdkafka drain {raw:>9.0} events/s");
    for ((name, _), rates) in modes.iter().zip(&mut jobs) {
        let job = median(rates);
        println!(
            "median of {rounds} rounds: job, {name:<27} {job:>9.0} events/s; ratio job / raw drain: {:.2} (target >= 0.6)",
            job / raw
        );
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_else(|| "e2e".into());
    let n: Option<u64> = args.next().map(|a| a.parse().expect("a number"));
    match what.as_str() {
        "e2e" => e2e(n.unwrap_or(10_000_000), To::Kafka).await,
        "e2e-search" => e2e(n.unwrap_or(2_000_000), To::Search).await,
        "rss" => rss(n.unwrap_or(100_000) as usize).await,
        "restore" => restore(n.unwrap_or(1_000_000) as usize).await,
        other => panic!("unknown `{other}`: e2e, e2e-search, rss or restore"),
    }
}
