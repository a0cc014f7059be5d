//! `flowline run` and `flowline demo`: start a job, wait for it, and stop
//! it on Ctrl-C / SIGTERM. The first signal stops it gracefully (a final
//! checkpoint, sinks closed, exit 0); a second one exits at once with 130,
//! as in Vector and Flink.

use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use flowline_connector_api::Registry;
use flowline_runtime::{JobHandle, JobSummary, Metrics};

use super::out;
use crate::config::JobPlan;
use crate::demo::DemoOptions;
use crate::Error;
use flowline_connector_api::time::format_rfc3339_ms;

/// `flowline run --config FILE`.
pub(super) async fn job(config: &Path, registry: &Registry) -> Result<(), Error> {
    let plan = JobPlan::load(config)?;
    let results = std::sync::Arc::new(crate::results::Results::default());
    // Installed before the job is built: a Ctrl-C from now on stops it
    // gracefully, or ends the wait for a server that is not up yet.
    let mut signals = Signals::new()?;
    let Some(env) = build_waiting(&plan, registry, &results, &mut signals).await? else {
        tracing::info!("stopped before the job started");
        return Ok(());
    };
    let listener = match &plan.http_listen {
        Some(addr) => Some(crate::http::bind(addr).await?),
        None => None,
    };
    let handle = env.start()?;
    let mut server = None;
    if let Some(l) = listener {
        let addr = l
            .local_addr()
            .map_err(Error::io("reading the [http] listen address"))?;
        tracing::info!(listen = %addr, "serving /health, /ready, /metrics, /api/status, /api/v1");
        let mut config = serde_json::Map::new();
        for (name, c) in std::iter::once(("source", &plan.source)).chain(plan.sink_sections()) {
            config.insert(
                name.into(),
                serde_json::json!({"type": c.kind, "settings": crate::config::redact(&c.settings)}),
            );
        }
        if let Some((store, interval)) = &plan.checkpoint {
            config.insert(
                "checkpoint".into(),
                serde_json::json!({"store": describe(store), "interval_seconds": interval.as_secs_f64()}),
            );
        }
        let api = crate::api::Api {
            config: config.into(),
            results: Some(results),
            unhealthy_after: plan.http_unhealthy_after,
            ..crate::api::Api::new(handle.metrics())
        };
        server = Some(Serving::start(l, api));
    }
    tracing::info!(job = %plan.job.name, source = %plan.source.kind, sink = %plan.sink.kind, workers = plan.workers, max_state_entries = plan.max_state_entries, "job started");
    let summary = until_signal(handle, signals, None).await;
    // Requests in progress (a last scrape) are answered before the exit.
    if let Some(s) = server {
        s.stop().await;
    }
    let summary = summary?;
    tracing::info!(records_in = summary.records_in, bad = summary.bad_records, late = summary.late_records, checkpoints = summary.checkpoints, reason = ?summary.reason, "job finished");
    Ok(())
}

/// Builds the job; a server that does not answer yet (a connector's
/// retryable error at build: a Kafka broker away) is waited for, with a
/// warning and a backoff of up to 30 s, as a sink waits for its search
/// server and a running job rides out an outage. Before, a job started
/// (or restarted after a crash) during a broker outage exited at once.
/// `flowline validate` still says at once that it cannot reach it. `None`
/// when a signal came while waiting.
async fn build_waiting(
    plan: &JobPlan,
    registry: &Registry,
    results: &std::sync::Arc<crate::results::Results>,
    signals: &mut Signals,
) -> Result<Option<flowline_runtime::StreamEnvironment>, Error> {
    use flowline_connector_api::{Backoff, ErrorKind};
    let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
    let mut attempt = 0;
    loop {
        match crate::build::build_job_watched(plan, registry, Some(results.clone())) {
            Err(Error::Connector { section, source }) if source.kind() == ErrorKind::Retryable => {
                // 1, 2, 4 … 30 s: one client, no jitter needed.
                let wait = backoff.ceiling(attempt);
                attempt = attempt.saturating_add(1);
                tracing::warn!(section = %section, error = %source, attempt, retry_in_seconds = wait.as_secs(), "not reachable yet; the job starts once it answers (Ctrl-C stops)");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = signals.next() => return Ok(None),
                }
            }
            r => return r.map(Some),
        }
    }
}

/// The operations endpoint of a running job, stopped gracefully.
struct Serving {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Serving {
    fn start(l: tokio::net::TcpListener, api: crate::api::Api) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(crate::http::serve_until(
            l,
            api,
            crate::http::Limits::default(),
            async {
                let _ = stopped.await;
            },
        ));
        Self { stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Where checkpoints go, in words (no credentials: the Kafka store's
/// security settings are left out).
fn describe(store: &crate::config::StoreChoice) -> String {
    match store {
        crate::config::StoreChoice::Dir(d) => format!("directory {}", d.display()),
        crate::config::StoreChoice::Kafka(k) => {
            format!("Kafka topic {} at {}", k.topic, k.bootstrap_servers)
        }
    }
}

/// `flowline demo`: the job on generated events, with a summary line each
/// second and the first results at the end.
pub(super) async fn demo(opts: DemoOptions) -> Result<(), Error> {
    let out_file = opts.out_dir.join("windows.ndjson");
    out!(
        "flowline demo: {} hosts × 5 metrics, seed {}, {} events, {} → {}-windows → {}",
        opts.hosts,
        opts.seed,
        opts.events
            .map(|e| e.to_string())
            .unwrap_or_else(|| "unbounded".into()),
        if opts.rate > 0.0 {
            format!("{:.0} events/s", opts.rate)
        } else {
            "as fast as possible".into()
        },
        humantime::format_duration(opts.window),
        out_file.display()
    );
    if opts.events.is_none() {
        out!("Press Ctrl-C to stop.");
    }
    let listener = match &opts.http {
        Some(addr) => Some(crate::http::bind(addr).await?),
        None => None,
    };
    let signals = Signals::new()?;
    let results = std::sync::Arc::new(crate::results::Results::default());
    let handle = crate::demo::start(&opts, Some(results.clone()))?;
    let server = match listener {
        Some(l) => {
            let addr = l
                .local_addr()
                .map_err(Error::io("reading the --http address"))?;
            out!("job page: http://{addr}/  (also /metrics, /api/v1/openapi.json)");
            let api = crate::api::Api {
                results: Some(results),
                ..crate::api::Api::new(handle.metrics())
            };
            Some(Serving::start(l, api))
        }
        None => None,
    };
    let summary = until_signal(handle, signals, Some(Duration::from_secs(1))).await;
    if let Some(s) = server {
        s.stop().await;
    }
    let summary = summary?;
    let text = std::fs::read_to_string(&out_file)
        .map_err(Error::io(format!("reading {}", out_file.display())))?;
    let lines: Vec<&str> = text.lines().collect();
    let anomalies =
        std::fs::read_to_string(opts.out_dir.join("anomalies.ndjson")).unwrap_or_default();
    out!(
        "\ndone: {} events in, {} window documents, {} anomalies, {} bad, {} late → {}",
        summary.records_in,
        lines.len(),
        anomalies.lines().count(),
        summary.bad_records,
        summary.late_records,
        out_file.display()
    );
    for l in lines.iter().take(3) {
        out!("  {l}");
    }
    if let Some(a) = anomalies.lines().next() {
        out!("first anomaly:\n  {a}");
    }
    Ok(())
}

fn summary_line(m: &Metrics, t0: Instant) -> String {
    let n = m.records_in.load(Relaxed);
    let out: u64 = m.records_out().iter().map(|(_, v)| v).sum();
    let wm = m.watermark.load(Relaxed);
    let wm = if wm == i64::MIN {
        "-".to_string()
    } else {
        format_rfc3339_ms(wm + 1)
    };
    format!(
        "events {n:>10} ({:>8.0}/s)  out {out:>8}  bad {:>5}  late {:>5}  watermark {wm}",
        n as f64 / t0.elapsed().as_secs_f64().max(1e-3),
        m.bad_records.load(Relaxed),
        m.late_records.load(Relaxed)
    )
}

/// Ctrl-C (SIGINT) and SIGTERM, each time they come.
struct Signals {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Self, Error> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                int: signal(SignalKind::interrupt())
                    .map_err(Error::io("installing the SIGINT handler"))?,
                term: signal(SignalKind::terminate())
                    .map_err(Error::io("installing the SIGTERM handler"))?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Waits for the job; the first Ctrl-C or SIGTERM stops it gracefully
/// (checkpoint, then exit 0), a second one exits at once with 130. With
/// `progress`, prints a summary line that often.
async fn until_signal(
    handle: JobHandle,
    mut signals: Signals,
    progress: Option<Duration>,
) -> Result<JobSummary, Error> {
    let metrics = handle.metrics();
    let stopper = handle.stopper();
    let t0 = Instant::now();
    let join = handle.join();
    tokio::pin!(join);
    let mut tick = tokio::time::interval(progress.unwrap_or(Duration::from_secs(3600)));
    tick.tick().await;
    let mut stopping = false;
    loop {
        tokio::select! {
            r = &mut join => {
                if progress.is_some() {
                    out!("{}", summary_line(&metrics, t0));
                }
                return Ok(r?);
            }
            () = signals.next() => {
                if stopping {
                    tracing::warn!("second stop request: exiting now, without the final checkpoint (the last completed one is kept)");
                    std::process::exit(130);
                }
                tracing::info!("stop requested: checkpointing and closing sinks (again to exit at once)");
                stopping = true;
                stopper.stop();
            }
            _ = tick.tick(), if progress.is_some() => out!("{}", summary_line(&metrics, t0)),
        }
    }
}
