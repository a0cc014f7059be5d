//! The `flowline` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use flowline::config::{redact, JobPlan, StoreChoice};
use flowline::demo::DemoOptions;
use flowline::logging::LogFormat;
use flowline::time::format_rfc3339_ms;
use flowline_connector_api::API_VERSION;
use flowline_runtime::{JobHandle, JobSummary, Metrics};

/// Flowline: stream metrics from Kafka to Elasticsearch, exactly.
#[derive(Debug, Parser)]
#[command(name = "flowline", version)]
struct Cli {
    /// Log lines on standard error: text, or one JSON object per line.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    cmd: Cmd,
}

/// `println!` that does not panic: a closed standard output (`flowline demo
/// | head -1`) is an error that ends the command quietly (see `main`).
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($t)*).context("writing to standard output")?
    }};
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run a job file until its bounded input ends, or until Ctrl-C / SIGTERM
    /// (which checkpoint, then exit 0).
    Run {
        /// The job file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a job file and build its connectors, without running; prints
    /// the resolved settings with secrets redacted.
    Validate {
        /// The job file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Contact no server and build nothing: check the job file and
        /// each connector's settings as its config reads them (the checks
        /// a connector makes when built, and every server, are skipped).
        #[arg(long)]
        offline: bool,
    },
    /// List the connectors of this build.
    Connectors,
    /// Ask a running job whether it is healthy (exit 0) or not (exit 1):
    /// the container healthcheck.
    Health {
        /// The job's /health address (`[http] listen`).
        #[arg(long, default_value = "http://127.0.0.1:9464/health")]
        url: String,
        /// How long to wait for the answer.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Generate something new.
    New {
        #[command(subcommand)]
        what: NewWhat,
    },
    /// Generator → in-memory source → aggregation → files, with a live summary.
    Demo {
        /// Stop after N events (otherwise run until Ctrl-C).
        #[arg(long)]
        events: Option<u64>,
        /// Hosts in the generator.
        #[arg(long, default_value_t = 20)]
        hosts: usize,
        /// Generator seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Events per second (0 = as fast as possible; default 0 with --events, else 2000).
        #[arg(long)]
        rate: Option<f64>,
        /// Where the output files go.
        #[arg(long, default_value = "flowline-demo-out")]
        out: PathBuf,
        /// Window size.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        window: Duration,
    },
}

#[derive(Debug, Subcommand)]
enum NewWhat {
    /// A connector crate that builds and passes the conformance suites,
    /// with the places to fill in marked TODO.
    Connector {
        /// Its type name in job files (`type = "NAME"`).
        name: String,
        /// Source or sink.
        #[arg(long, value_enum, default_value = "source")]
        kind: KindArg,
        /// Directory to create (default: ./flowline-NAME).
        #[arg(long)]
        path: Option<PathBuf>,
        /// Depend on this Flowline checkout by path (default: the source
        /// tree this binary was built from).
        #[arg(long)]
        flowline: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum KindArg {
    Source,
    Sink,
}

/// mimalloc: keyed state is many small allocations (keys, sketches);
/// mimalloc restores a 1M-key checkpoint about 1.5x faster than glibc's
/// malloc (bench `job restore`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    flowline::logging::init(cli.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(run(cli));
    // Tasks still running (a demo cut short by a closed pipe) are not
    // waited for.
    rt.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if closed_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The reader of standard output went away (`| head`): not a failure.
fn closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The error and its causes, each cause once: a cause whose text the
/// message already holds is not repeated.
fn error_chain(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if !msg.contains(&c) {
            if !msg.is_empty() {
                msg.push_str(": ");
            }
            msg.push_str(&c);
        }
    }
    msg
}

async fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::New {
            what:
                NewWhat::Connector {
                    name,
                    kind,
                    path,
                    flowline,
                },
        } => {
            flowline::scaffold::check_name(&name)?;
            let o = flowline::scaffold::NewConnector {
                path: path.unwrap_or_else(|| flowline::scaffold::default_path(&name)),
                name,
                kind: match kind {
                    KindArg::Source => flowline::scaffold::Kind::Source,
                    KindArg::Sink => flowline::scaffold::Kind::Sink,
                },
                flowline,
            };
            for f in flowline::scaffold::generate(&o)? {
                out!("created {}", f.display());
            }
            if o.flowline.is_none() {
                if let Some(p) = flowline::scaffold::built_from() {
                    out!("\nIt depends on the Flowline source tree at {} (the one this binary was built from); --flowline PATH chooses another checkout.", p.display());
                }
            }
            out!(
                "\nNext: cd {} && cargo test   (the conformance suite)",
                o.path.display()
            );
            Ok(())
        }
        Cmd::Health { url, timeout } => {
            flowline::http::probe(&url, timeout)
                .await
                .map_err(anyhow::Error::msg)?;
            out!("{url}: ok");
            Ok(())
        }
        Cmd::Connectors => {
            let r = flowline::registry();
            out!(
                "{:<16} {:<7} {:<10} {:<5} DESCRIPTION",
                "NAME",
                "KIND",
                "VERSION",
                "API"
            );
            for d in r.descriptors() {
                out!(
                    "{:<16} {:<7} {:<10} {:<5} {}",
                    d.name,
                    d.kind,
                    d.version,
                    d.api_version,
                    d.description
                );
            }
            out!("\nThis runtime implements connector API {API_VERSION}; it runs connectors built for {}.0 up to {API_VERSION}.", API_VERSION.major);
            Ok(())
        }
        Cmd::Validate {
            config,
            offline: true,
        } => {
            let plan = JobPlan::load(&config)?;
            let registry = flowline::registry();
            registry.parse_source(&plan.source.kind, plan.source.settings.clone())?;
            for (name, c) in plan.sink_sections() {
                registry
                    .parse_sink(&c.kind, c.settings.clone())
                    .with_context(|| format!("[{name}]"))?;
            }
            out!("{} is valid as far as can be told offline (no server contacted, no connector built).", config.display());
            Ok(())
        }
        Cmd::Validate { config, .. } => {
            let plan = JobPlan::load(&config)?;
            let registry = flowline::registry();
            let env = flowline::build::build_job(&plan, &registry)?;
            if let Some(addr) = &plan.http_listen {
                flowline::http::check_listen(addr).await?;
            }
            let restore = env
                .check_restore()
                .context("[checkpoint] the checkpoint this job would restore")?;
            // Each sink's own check (servers answer, credentials, version),
            // on a copy built for it and dropped.
            for (name, c) in plan.sink_sections() {
                let mut sink = registry.build_sink(&c.kind, c.settings.clone())?;
                sink.check_dyn()
                    .await
                    .with_context(|| format!("[{name}] {} sink", c.kind))?;
            }
            out!("{} is valid.", config.display());
            out!("job        {}", plan.job.name);
            out!(
                "source     {} {}",
                plan.source.kind,
                redact(&plan.source.settings)
            );
            out!(
                "sink       {} {}",
                plan.sink.kind,
                redact(&plan.sink.settings)
            );
            if let Some(d) = &plan.dead_letter {
                out!("dead_letter {} {}", d.kind, redact(&d.settings));
            }
            if let Some(l) = &plan.late {
                out!("late       {} {}", l.kind, redact(&l.settings));
            }
            out!(
                "window     {:?}, allowed lateness {:?}, out-of-orderness {:?}",
                plan.window.spec,
                plan.window.allowed_lateness,
                plan.out_of_orderness
            );
            if let Some(a) = &plan.anomalies {
                out!("anomalies  {} {}", a.kind, redact(&a.settings));
            }
            if let Some(c) = &plan.current {
                out!("current    {} {}", c.kind, redact(&c.settings));
            }
            if plan.anomalies.is_some() || plan.current.is_some() {
                out!("anomaly    {:?}", plan.anomaly);
            }
            match &plan.checkpoint {
                Some((StoreChoice::Dir(dir), iv)) => {
                    out!("checkpoint dir {} every {iv:?}", dir.display())
                }
                Some((StoreChoice::Kafka(k), iv)) => out!(
                    "checkpoint kafka topic {} at {} every {iv:?}",
                    k.topic,
                    k.bootstrap_servers
                ),
                None => out!("checkpoint off"),
            }
            match restore {
                Some(id) => out!("restore    checkpoint {id}, taken from this job graph"),
                None if plan.checkpoint.is_some() => out!("restore    none: a fresh start"),
                None => {}
            }
            Ok(())
        }
        Cmd::Run { config } => {
            let plan = JobPlan::load(&config)?;
            let env = flowline::build::build_job(&plan, &flowline::registry())?;
            let listener = match &plan.http_listen {
                Some(addr) => Some(flowline::http::bind(addr).await?),
                None => None,
            };
            // Installed before the job starts: a Ctrl-C from now on stops it
            // gracefully.
            let signals = Signals::new()?;
            let handle = env.start()?;
            if let Some(l) = listener {
                tracing::info!(listen = %l.local_addr()?, "serving /health, /metrics, /api/status");
                tokio::spawn(flowline::http::serve(l, handle.metrics()));
            }
            tracing::info!(job = %plan.job.name, source = %plan.source.kind, sink = %plan.sink.kind, "job started");
            let summary = run_until_signal(handle, signals, None).await?;
            tracing::info!(records_in = summary.records_in, bad = summary.bad_records, late = summary.late_records, checkpoints = summary.checkpoints, reason = ?summary.reason, "job finished");
            Ok(())
        }
        Cmd::Demo {
            events,
            hosts,
            seed,
            rate,
            out,
            window,
        } => {
            let rate = rate.unwrap_or(if events.is_some() { 0.0 } else { 2000.0 });
            let opts = DemoOptions {
                events,
                hosts,
                seed,
                rate,
                out_dir: out.clone(),
                window,
            };
            out!("flowline demo: {hosts} hosts × 5 metrics, seed {seed}, {} events, {} → {}-windows → {}",
                events.map(|e| e.to_string()).unwrap_or_else(|| "unbounded".into()),
                if rate > 0.0 { format!("{rate:.0} events/s") } else { "as fast as possible".into() },
                humantime::format_duration(window), out.join("windows.ndjson").display());
            if events.is_none() {
                out!("Press Ctrl-C to stop.");
            }
            let signals = Signals::new()?;
            let handle = flowline::demo::start(&opts)?;
            let summary = run_until_signal(handle, signals, Some(Duration::from_secs(1))).await?;
            let out_file = out.join("windows.ndjson");
            let text = std::fs::read_to_string(&out_file)
                .with_context(|| format!("reading {}", out_file.display()))?;
            let lines: Vec<&str> = text.lines().collect();
            let anomalies =
                std::fs::read_to_string(out.join("anomalies.ndjson")).unwrap_or_default();
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
    }
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
    fn new() -> Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
                term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
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
/// (checkpoint, then exit 0), a second one exits at once with 130, as in
/// Vector and Flink. With `progress`, prints a summary line that often.
async fn run_until_signal(
    handle: JobHandle,
    mut signals: Signals,
    progress: Option<Duration>,
) -> Result<JobSummary> {
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
