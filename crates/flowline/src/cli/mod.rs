//! The `flowline` command line, as a library: [`main_with`] runs it with
//! any connector registry, so a binary with connectors of its own is a few
//! lines (this is what `flowline new connector` generates):
//!
//! ```no_run
//! use std::process::ExitCode;
//!
//! #[global_allocator]
//! static GLOBAL: flowline::cli::Allocator = flowline::cli::Allocator;
//!
//! fn main() -> ExitCode {
//!     let mut registry = flowline::registry();
//!     // registry.register_source(my_connector::MyFactory).expect("API version");
//!     flowline::cli::main_with(registry)
//! }
//! ```
//!
//! Every subcommand (`run`, `validate`, `connectors`, `health`, `new`,
//! `demo`) then knows the extra connectors. Errors are the crate's
//! [`Error`]; the message on standard error is the error and each of its
//! causes, once.

mod run;
mod validate;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use flowline_connector_api::{Registry, API_VERSION};

use crate::logging::LogFormat;
use crate::Error;

/// The allocator of the `flowline` binary (mimalloc): keyed state is many
/// small allocations (keys, sketches), and mimalloc restores a 1M-key
/// checkpoint about 1.5x faster than glibc's malloc (bench `job restore`).
/// Built without transparent huge pages (the workspace's `no_thp`): with
/// them, each fresh 2 MB region is zeroed whole on first touch, and the
/// job's peak RSS with 100k keys was 135-147 MB against 117-122 MB without,
/// at the same CPU per event (bench `job rss`, `job e2e`).
/// A custom binary opts in with `#[global_allocator]`.
pub use mimalloc::MiMalloc as Allocator;

/// `println!` that does not panic: a closed standard output (`flowline demo
/// | head -1`) is an error that ends the command quietly (see
/// [`main_with`]).
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($t)*)
            .map_err($crate::Error::io("writing to standard output"))?
    }};
}
pub(crate) use out;

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
    /// Watch a running job in the terminal: operators with rates, busy and
    /// backpressure, partitions with lag and watermarks, checkpoints.
    Top {
        /// The job's address (`[http] listen`).
        #[arg(long, default_value = "http://127.0.0.1:9464")]
        url: String,
        /// Refresh every.
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        interval: Duration,
        /// Stop after N screens (otherwise run until Ctrl-C).
        #[arg(long)]
        iterations: Option<u64>,
    },
    /// Print records passing a stage of a running job, one JSON object per
    /// line (sampled: a slow reader skips records, the job never waits).
    Tap {
        /// The job's address (`[http] listen`).
        #[arg(long, default_value = "http://127.0.0.1:9464")]
        url: String,
        /// `source`, a sink's name, or the dead-letter sink's name.
        #[arg(long)]
        stage: String,
        /// Stop after N records.
        #[arg(long, default_value_t = 10)]
        limit: usize,
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
        /// Serve the job page, /metrics and the API on this address
        /// (e.g. 127.0.0.1:9464), as `[http] listen` does for `run`.
        #[arg(long)]
        http: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum NewWhat {
    /// A connector crate that builds and passes the conformance suites,
    /// with the places to fill in marked TODO, and a `flowline` binary
    /// with it registered (feature `runner`) and a job file that uses it.
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

/// Runs the command line with these connectors: parses the arguments
/// (help and usage errors exit as clap does), installs the logger, runs
/// the subcommand on a multi-threaded tokio runtime and returns the exit
/// code: success, or failure with the error on standard error. A closed
/// standard output (`| head`) is success.
pub fn main_with(registry: Registry) -> ExitCode {
    let mut command = Cli::command();
    // Usage lines name the binary that runs (`flowline-ticker run …`).
    if let Some(name) = std::env::args_os()
        .next()
        .and_then(|a| PathBuf::from(a).file_name().map(|n| n.to_owned()))
        .and_then(|n| n.into_string().ok())
    {
        command = command.bin_name(name);
    }
    let cli = match Cli::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    crate::logging::init(cli.log_format);
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
    let result = rt.block_on(dispatch(cli, &registry));
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

/// The error and each of its causes.
fn causes(e: &Error) -> impl Iterator<Item = &(dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e as &(dyn std::error::Error + 'static)), |c| {
        c.source()
    })
}

/// The reader of standard output went away (`| head`): not a failure.
fn closed_pipe(e: &Error) -> bool {
    causes(e).any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The error and its causes, each cause once: a cause whose text the
/// message already holds is not repeated.
fn error_chain(e: &Error) -> String {
    let mut msg = String::new();
    for cause in causes(e) {
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

async fn dispatch(cli: Cli, registry: &Registry) -> Result<(), Error> {
    match cli.cmd {
        Cmd::New {
            what:
                NewWhat::Connector {
                    name,
                    kind,
                    path,
                    flowline,
                },
        } => new_connector(name, kind, path, flowline),
        Cmd::Health { url, timeout } => {
            crate::http::probe(&url, timeout)
                .await
                .map_err(Error::Unhealthy)?;
            out!("{url}: ok");
            Ok(())
        }
        Cmd::Top {
            url,
            interval,
            iterations,
        } => watch::top(&url, interval, iterations).await,
        Cmd::Tap { url, stage, limit } => watch::tap(&url, &stage, limit).await,
        Cmd::Connectors => connectors(registry),
        Cmd::Validate {
            config,
            offline: true,
        } => validate::offline(&config, registry),
        Cmd::Validate { config, .. } => validate::online(&config, registry).await,
        Cmd::Run { config } => run::job(&config, registry).await,
        Cmd::Demo {
            events,
            hosts,
            seed,
            rate,
            out,
            window,
            http,
        } => {
            let rate = rate.unwrap_or(if events.is_some() { 0.0 } else { 2000.0 });
            run::demo(crate::demo::DemoOptions {
                events,
                hosts,
                seed,
                rate,
                out_dir: out,
                window,
                http,
            })
            .await
        }
    }
}

fn new_connector(
    name: String,
    kind: KindArg,
    path: Option<PathBuf>,
    flowline: Option<PathBuf>,
) -> Result<(), Error> {
    use crate::scaffold;
    scaffold::check_name(&name)?;
    let o = scaffold::NewConnector {
        path: path.unwrap_or_else(|| scaffold::default_path(&name)),
        name,
        kind: match kind {
            KindArg::Source => scaffold::Kind::Source,
            KindArg::Sink => scaffold::Kind::Sink,
        },
        flowline,
    };
    for f in scaffold::generate(&o)? {
        out!("created {}", f.display());
    }
    if o.flowline.is_none() {
        if let Some(p) = scaffold::built_from() {
            out!("\nIt depends on the Flowline source tree at {} (the one this binary was built from); --flowline PATH chooses another checkout.", p.display());
        }
    }
    out!("\nNext, in {}:", o.path.display());
    out!("  cargo test                                          # the conformance suite");
    out!(
        "  cargo run --features runner -- run --config job.toml   # flowline with `{}` registered, running job.toml",
        o.name
    );
    Ok(())
}

fn connectors(registry: &Registry) -> Result<(), Error> {
    out!(
        "{:<16} {:<7} {:<10} {:<5} DESCRIPTION",
        "NAME",
        "KIND",
        "VERSION",
        "API"
    );
    for d in registry.descriptors() {
        out!(
            "{:<16} {:<7} {:<10} {:<5} {}",
            d.name,
            d.kind,
            d.version,
            d.api_version,
            d.description
        );
    }
    out!(
        "\nThis runtime implements connector API {API_VERSION}; it runs connectors built for {}.0 up to {API_VERSION}.",
        API_VERSION.major
    );
    Ok(())
}
