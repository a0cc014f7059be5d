//! Running the `flowline` job as a process against the test services, and
//! an independent reference for its window documents.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use flowline::anomaly::AnomalySettings;
use flowline::job::{metrics_pipeline, Outputs, WindowSettings};
use flowline_connector_api::Record;
use flowline_connector_testkit::MemorySink;
use flowline_file::IterSource;
use flowline_metric_generator::{Generator, GeneratorConfig};
use flowline_runtime::{JobConfig, StreamEnvironment, Tumbling};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use elasticsearch::Elasticsearch;
use flowline_metric_generator::{format_rfc3339_ms, parse_rfc3339_ms};

/// A binary of the workspace (`flowline`, `metric-generator`), next to the
/// test executable's directory. `scripts/test` builds them first; when one
/// is missing it is built here.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let p = dir.join(name);
    if !p.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut c = Command::new(cargo);
        c.args(["build", "-p", "flowline", "-p", "flowline-metric-generator"]);
        if dir.file_name().is_some_and(|n| n == "release") {
            c.arg("--release");
        }
        let st = c.status().expect("cargo build");
        assert!(st.success(), "building {name} failed");
    }
    assert!(p.exists(), "{} is missing", p.display());
    p
}

/// A child process killed when it is dropped still running: a test that
/// fails before it stops its job leaves no `flowline run` behind (one
/// that did kept reading and writing the shared services' topics).
#[derive(Debug)]
pub struct JobProcess(pub Child);

impl std::ops::Deref for JobProcess {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for JobProcess {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for JobProcess {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts `flowline run --config <config>`, its log to `<config>.<n>.log`
/// (at `FLOWLINE_TEST_LOG`, a `RUST_LOG` filter, or `info`); killed if
/// dropped while it runs.
pub fn spawn_job(config: &Path, n: usize) -> JobProcess {
    let log = std::fs::File::create(config.with_extension(format!("{n}.log"))).expect("log file");
    Command::new(bin("flowline"))
        .args(["run", "--config"])
        .arg(config)
        .env(
            "RUST_LOG",
            std::env::var("FLOWLINE_TEST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map(JobProcess)
        .expect("spawn flowline")
}

/// The log a job process wrote (for failure messages).
pub fn job_log(config: &Path, n: usize) -> String {
    std::fs::read_to_string(config.with_extension(format!("{n}.log"))).unwrap_or_default()
}

/// What a window document must hold, computed from the events alone.
#[derive(Debug, Clone, PartialEq)]
pub struct RefWindow {
    /// Samples.
    pub count: u64,
    /// Sum, in full precision.
    pub sum: f64,
    /// Minimum.
    pub min: f64,
    /// Maximum.
    pub max: f64,
}

/// An exact sum computed another way than the job's: every value as an
/// integer multiple of 2^-80 (the generator's values are far coarser),
/// summed in an i128, rounded to an f64 once. Panics on a value it cannot
/// hold exactly, rather than compare against a wrong reference.
#[derive(Default)]
struct ExactBySum(i128);

impl ExactBySum {
    const SCALE: f64 = (1u128 << 80) as f64;
    fn add(&mut self, v: f64) {
        let scaled = v * Self::SCALE;
        assert!(
            scaled.abs() < 2f64.powi(120) && scaled.fract() == 0.0,
            "reference cannot sum {v} exactly"
        );
        self.0 += scaled as i128;
    }
    fn value(&self) -> f64 {
        // i128 → f64 rounds to nearest; dividing by a power of two is exact.
        self.0 as f64 / Self::SCALE
    }
}

/// Tumbling-window aggregates per `host|metric|window_start`, computed with
/// a plain group-by from the valid events' JSON (the job's window documents
/// must equal this when no event is late).
pub fn reference_windows<'a>(
    events: impl IntoIterator<Item = &'a str>,
    size_ms: i64,
) -> BTreeMap<String, RefWindow> {
    let mut acc: BTreeMap<String, (u64, ExactBySum, f64, f64)> = BTreeMap::new();
    for e in events {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(e) else {
            continue;
        };
        let (Some(host), Some(metric), Some(value), Some(ts)) = (
            v["host"].as_str(),
            v["metric"].as_str(),
            v["value"].as_f64(),
            v["timestamp"].as_str(),
        ) else {
            continue;
        };
        let ts = parse_rfc3339_ms(ts).expect("timestamp");
        let start = ts - ts.rem_euclid(size_ms);
        let id = format!("{host}|{metric}|{}", format_rfc3339_ms(start));
        let a =
            acc.entry(id)
                .or_insert((0, ExactBySum::default(), f64::INFINITY, f64::NEG_INFINITY));
        a.0 += 1;
        a.1.add(value);
        a.2 = a.2.min(value);
        a.3 = a.3.max(value);
    }
    acc.into_iter()
        .map(|(k, (count, sum, min, max))| {
            (
                k,
                RefWindow {
                    count,
                    sum: sum.value(),
                    min,
                    max,
                },
            )
        })
        .collect()
}

/// Every document of the indices matching `pattern`, by `_id` (at most
/// 10 000; tests keep below that).
pub async fn all_docs(es: &Elasticsearch, pattern: &str) -> BTreeMap<String, serde_json::Value> {
    use elasticsearch::indices::IndicesRefreshParts;
    use elasticsearch::SearchParts;
    es.indices()
        .refresh(IndicesRefreshParts::Index(&[pattern]))
        .send()
        .await
        .expect("refresh");
    let r: serde_json::Value = es
        .search(SearchParts::Index(&[pattern]))
        .size(10_000)
        .body(serde_json::json!({"query": {"match_all": {}}, "track_total_hits": true}))
        .send()
        .await
        .expect("search")
        .json()
        .await
        .expect("search body");
    let total = r["hits"]["total"]["value"].as_u64().unwrap_or(0);
    assert!(
        total <= 10_000,
        "{pattern} has {total} documents; tests keep below 10 000"
    );
    r["hits"]["hits"]
        .as_array()
        .map(|hits| {
            hits.iter()
                .map(|h| {
                    (
                        h["_id"].as_str().unwrap_or_default().to_string(),
                        h["_source"].clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Window documents (JSON lines, as a file sink or a Kafka topic holds
/// them) by `host|metric|window_start`, and the ids seen more than once.
pub fn window_docs<'a>(
    lines: impl IntoIterator<Item = &'a str>,
) -> (BTreeMap<String, serde_json::Value>, Vec<String>) {
    let mut docs = BTreeMap::new();
    let mut twice = Vec::new();
    for l in lines {
        let d: serde_json::Value = serde_json::from_str(l).expect("a window document");
        let id = format!(
            "{}|{}|{}",
            d["host"].as_str().unwrap_or_default(),
            d["metric"].as_str().unwrap_or_default(),
            d["window_start"].as_str().unwrap_or_default()
        );
        if docs.insert(id.clone(), d).is_some() {
            twice.push(id);
        }
    }
    (docs, twice)
}

/// Asserts the window documents of the file at `path` are the reference's
/// windows, each once.
pub fn assert_file_windows(path: &Path, reference: &BTreeMap<String, RefWindow>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let (docs, twice) = window_docs(text.lines());
    assert!(twice.is_empty(), "windows written twice: {twice:?}");
    assert_same_windows(&docs, reference);
}

/// Asserts the window documents are the reference's windows.
pub fn assert_same_windows(
    docs: &BTreeMap<String, serde_json::Value>,
    reference: &BTreeMap<String, RefWindow>,
) {
    let diff = window_diff(docs, reference);
    assert!(
        diff.is_empty(),
        "{} of {} windows differ, first: {:?}",
        diff.len(),
        reference.len(),
        &diff[..diff.len().min(5)]
    );
}

/// Differences between the indexed window documents and the reference, as
/// readable lines (empty when they are equal).
pub fn window_diff(
    docs: &BTreeMap<String, serde_json::Value>,
    reference: &BTreeMap<String, RefWindow>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (id, r) in reference {
        match docs.get(id) {
            None => out.push(format!("missing {id}")),
            Some(d) => {
                let got = RefWindow {
                    count: d["count"].as_u64().unwrap_or(0),
                    sum: d["sum"].as_f64().unwrap_or(f64::NAN),
                    min: d["min"].as_f64().unwrap_or(f64::NAN),
                    max: d["max"].as_f64().unwrap_or(f64::NAN),
                };
                // Exact: the job's sum is the correctly rounded exact sum
                // whatever the order the values came in, as this
                // reference's integer sum is.
                let close = got.count == r.count
                    && got.sum == r.sum
                    && got.min == r.min
                    && got.max == r.max;
                if !close {
                    out.push(format!("{id}: indexed {got:?}, expected {r:?}"));
                }
            }
        }
    }
    for id in docs.keys() {
        if !reference.contains_key(id) {
            out.push(format!("unexpected {id}"));
        }
    }
    out
}

/// `(host, line, poisoned)` from the seeded generator.
pub fn lines(cfg: GeneratorConfig) -> Vec<(String, String, bool)> {
    let mut g = Generator::new(cfg);
    std::iter::from_fn(|| g.next_line())
        .map(|(l, bad)| {
            let host = l
                .strip_prefix("{\"host\":\"")
                .and_then(|r| r.split('"').next())
                .expect("every line names its host")
                .to_string();
            (host, l, bad)
        })
        .collect()
}

/// The anomaly document ids the metrics pipeline gives in-process (one
/// partition, memory sinks) for these lines and window size.
pub fn anomaly_ids_in_process(
    lines: &[(String, String, bool)],
    window_ms: i64,
) -> BTreeSet<String> {
    let env =
        StreamEnvironment::new(JobConfig::named("ref").out_of_orderness(Duration::from_secs(2)));
    let w = env.add_sink("w", Box::new(MemorySink::new()));
    let a = MemorySink::new();
    let ah = env.add_sink("a", Box::new(a.clone()));
    let recs: Vec<Record> = lines
        .iter()
        .map(|(_, l, _)| Record::new(l.as_bytes()))
        .collect();
    metrics_pipeline(
        env.source("mem", Box::new(IterSource::new(recs.into_iter()))),
        WindowSettings::new(Tumbling::of(Duration::from_millis(window_ms as u64))),
        AnomalySettings::default(),
        Outputs {
            windows: w,
            anomalies: Some(ah),
            current: None,
            results: None,
        },
    );
    std::thread::spawn(move || {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(env.execute())
            .unwrap()
    })
    .join()
    .unwrap();
    a.records()
        .iter()
        .map(|r| String::from_utf8(r.key.clone().unwrap()).unwrap())
        .collect()
}

/// GET `http://<addr><path>` as JSON (`None` while nothing answers).
pub async fn get_json(addr: &str, path: &str) -> Option<serde_json::Value> {
    let r = reqwest::get(format!("http://{addr}{path}")).await.ok()?;
    r.json().await.ok()
}

/// The ids of `chk-<id>.bin` files in a checkpoint directory, newest last.
pub fn checkpoint_ids(dir: &Path) -> Vec<u64> {
    let mut v: Vec<u64> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    e.file_name()
                        .to_str()?
                        .strip_prefix("chk-")?
                        .strip_suffix(".bin")?
                        .parse()
                        .ok()
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// GET `http://<addr><path>` as text (`None` while nothing answers).
pub async fn get_text(addr: &str, path: &str) -> Option<String> {
    let r = reqwest::get(format!("http://{addr}{path}")).await.ok()?;
    r.text().await.ok()
}

/// Produces generator lines (`(host, line, poisoned)`) keyed by host.
pub async fn produce_lines(bootstrap: &str, topic: &str, lines: &[(String, String, bool)]) {
    crate::produce(
        bootstrap,
        topic,
        lines.iter().map(|(h, l, _)| (h.clone(), l.clone(), None)),
    )
    .await
}

/// Polls `cond` every 20 ms while job process `n` of `config` runs; panics
/// with its log, naming `what`, when the job ends first or after `within`.
pub async fn wait_running(
    what: &str,
    child: &mut Child,
    config: &Path,
    n: usize,
    within: Duration,
    mut cond: impl FnMut() -> bool,
) {
    let t0 = std::time::Instant::now();
    while !cond() {
        assert!(
            child.try_wait().expect("child status").is_none(),
            "the job ended while waiting for {what}:\n{}",
            job_log(config, n)
        );
        assert!(
            t0.elapsed() < within,
            "no {what} within {within:?}:\n{}",
            job_log(config, n)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for job process `n` of `config` to exit, polling; panics with its
/// log after `timeout`.
pub async fn wait_exit(
    child: &mut Child,
    config: &Path,
    n: usize,
    timeout: Duration,
) -> std::process::ExitStatus {
    let t0 = std::time::Instant::now();
    loop {
        if let Some(st) = child.try_wait().expect("child status") {
            return st;
        }
        assert!(
            t0.elapsed() < timeout,
            "job process {n} still running after {timeout:?}:\n{}",
            job_log(config, n)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stops job process `n` of `config` with SIGTERM (a clean stop: final
/// checkpoint, sinks closed) and asserts it exits successfully in time.
pub async fn sigterm(child: &mut Child, config: &Path, n: usize, timeout: Duration) {
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let st = wait_exit(child, config, n, timeout).await;
    assert!(
        st.success(),
        "process {n} on SIGTERM: {st}\n{}",
        job_log(config, n)
    );
}

/// The documents of `index` once there are at least `want` of them, or
/// after `timeout`, whichever comes first; panics if job process `n`
/// exits meanwhile.
pub async fn wait_docs(
    es: &Elasticsearch,
    index: &str,
    want: usize,
    child: &mut Child,
    config: &Path,
    n: usize,
    timeout: Duration,
) -> BTreeMap<String, serde_json::Value> {
    let t0 = std::time::Instant::now();
    loop {
        let docs = all_docs(es, index).await;
        if docs.len() >= want || t0.elapsed() > timeout {
            return docs;
        }
        assert!(
            child.try_wait().expect("child status").is_none(),
            "job process {n} exited:\n{}",
            job_log(config, n)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The start of a job file reading `topic` as a consumer group of the same
/// name, as `[job]` and `[source]`; callers add their source settings and
/// the other sections after it.
pub fn kafka_job_head(topic: &str, bootstrap: &str) -> String {
    format!(
        "[job]\nname = \"{topic}\"\n[source]\ntype = \"kafka\"\nbootstrap_servers = \"{bootstrap}\"\ntopics = [\"{topic}\"]\ngroup_id = \"{topic}\"\n"
    )
}

/// `s` without terminal colour codes (`ESC [ … m`).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\u{1b}' && it.peek() == Some(&'[') {
            for c in it.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The address job process `n` serves its HTTP endpoint on, read from its
/// log (job files in tests say `listen = "127.0.0.1:0"`, so no port is
/// guessed and none can be taken by another test in between).
pub async fn http_addr(child: &mut Child, config: &Path, n: usize) -> String {
    let t0 = std::time::Instant::now();
    loop {
        let log = strip_ansi(&job_log(config, n));
        let addr = log
            .lines()
            .filter(|l| l.contains("serving /health"))
            .find_map(|l| l.split("listen=").nth(1)?.split_whitespace().next());
        if let Some(a) = addr {
            return a.to_string();
        }
        assert!(
            child.try_wait().expect("child status").is_none(),
            "job process {n} exited before serving HTTP:\n{log}"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "job process {n} logged no HTTP address within 60 s:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Records read and the last checkpoint id of a job process, from its
/// `/api/status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Records the process has read.
    pub records_in: u64,
    /// The id of its last completed checkpoint (0: none yet).
    pub checkpoint: u64,
}

/// Polls `/api/status` of job process `n` at `addr` until `ok` holds;
/// fails naming `what`, with the log, when the process exits first or
/// after `timeout`.
pub async fn wait_progress(
    what: &str,
    addr: &str,
    child: &mut Child,
    config: &Path,
    n: usize,
    timeout: Duration,
    ok: impl Fn(Progress) -> bool,
) -> Progress {
    let t0 = std::time::Instant::now();
    let mut last = None;
    loop {
        if let Some(v) = get_json(addr, "/api/status").await {
            let p = Progress {
                records_in: v["records_in"].as_u64().unwrap_or(0),
                checkpoint: v["last_checkpoint"][0].as_u64().unwrap_or(0),
            };
            if ok(p) {
                return p;
            }
            last = Some(p);
        }
        assert!(
            child.try_wait().expect("child status").is_none(),
            "job process {n} exited while waiting for {what}:\n{}",
            job_log(config, n)
        );
        assert!(
            t0.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}; last status {last:?}:\n{}",
            job_log(config, n)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs the job file `toml` in this process to its end; fails naming
/// `ends` when it has not ended within `within`, or when it fails.
pub async fn run_to_end(toml: &str, within: Duration, ends: &str) -> flowline_runtime::JobSummary {
    let plan = flowline::config::JobPlan::parse(toml).unwrap();
    let job = flowline::build::build_job(&plan, &flowline::registry()).unwrap();
    tokio::time::timeout(within, job.execute())
        .await
        .expect(ends)
        .expect("the job succeeds")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_process_dropped_while_running_is_killed_and_reaped() {
        let child = Command::new("sleep").arg("60").spawn().expect("sleep");
        let proc_dir = PathBuf::from(format!("/proc/{}", child.id()));
        let p = JobProcess(child);
        assert!(proc_dir.exists());
        let t0 = std::time::Instant::now();
        drop(p);
        assert!(!proc_dir.exists(), "the process outlived its JobProcess");
        // Killed, not waited for to the end of its minute.
        assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
        // One that has exited is left as it is.
        let mut done = JobProcess(Command::new("true").spawn().expect("true"));
        assert!(done.wait().expect("wait").success());
    }
}
