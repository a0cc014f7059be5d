//! `metric-generator`: writes seeded, rate-controlled metric events.

use std::io::{BufWriter, Write};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use flowline_metric_generator::{parse_rfc3339_ms, Generator, GeneratorConfig};

mod kafka;

/// Writes realistic host metrics as JSON lines (see the crate docs for the
/// event format). The same --seed and flags give the same events.
#[derive(Debug, Parser)]
#[command(name = "metric-generator", version)]
struct Args {
    /// Number of hosts; each emits every metric every --interval.
    #[arg(long, default_value_t = 10)]
    hosts: usize,
    /// Seed of the random generator.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Event time of the first tick (RFC 3339, e.g. 2026-01-01T00:00:00Z).
    /// With it (or with --rate 0) event time is simulated, not read from the clock.
    #[arg(long)]
    start: Option<String>,
    /// Simulated time between ticks (e.g. 1s, 500ms).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Events per second; 0 = as fast as possible.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Stop after N events (default: run until stopped).
    #[arg(long)]
    count: Option<u64>,
    /// Largest delay of an event's timestamp behind its tick, ms.
    #[arg(long, default_value_t = 0)]
    max_out_of_order_ms: i64,
    /// Fraction of events made late (60 s behind).
    #[arg(long, default_value_t = 0.0)]
    late_fraction: f64,
    /// Chance per host, metric and tick that an anomaly starts.
    #[arg(long, default_value_t = 0.0005)]
    anomaly_rate: f64,
    /// Fraction of events replaced by malformed JSON (tests of dead-lettering).
    #[arg(long, default_value_t = 0.0)]
    poison_fraction: f64,
    /// stdout | file:PATH | kafka://HOST:PORT/TOPIC
    #[arg(long, default_value = "stdout")]
    output: String,
    /// Partitions of the Kafka topic, when the generator creates it.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Seconds between progress lines on stderr (0: none).
    #[arg(long, default_value_t = 5)]
    progress_secs: u64,
}

fn main() -> std::process::ExitCode {
    match generate(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // `metric-generator | head`: the reader has what it wanted.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn generate(args: Args) -> Result<()> {
    if !(0.0..=1.0).contains(&args.late_fraction) || !(0.0..=1.0).contains(&args.poison_fraction) {
        bail!("--late-fraction and --poison-fraction must be between 0 and 1");
    }
    if args.rate < 0.0 || !args.rate.is_finite() {
        bail!("--rate must be 0 (as fast as possible) or a positive number of events per second");
    }
    let simulated = args.start.is_some() || args.rate == 0.0;
    let start_ms = match &args.start {
        Some(s) => parse_rfc3339_ms(s)
            .map_err(anyhow::Error::msg)
            .context("--start")?,
        None => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_millis() as i64;
            let iv = args.interval.as_millis().max(1) as i64;
            let start = now - now % iv;
            // A simulated, bounded run ends at the present instead of
            // starting there: its events are history, never hours ahead of
            // the clock (where a job's max_future would refuse them).
            match (args.rate == 0.0, args.count) {
                (true, Some(n)) => {
                    let per_tick =
                        (args.hosts.max(1) * flowline_metric_generator::METRICS.len()) as i64;
                    let ticks = (n as i64 + per_tick - 1) / per_tick;
                    start - ticks.saturating_mul(iv)
                }
                _ => start,
            }
        }
    };
    let cfg = GeneratorConfig {
        hosts: args.hosts,
        seed: args.seed,
        start_ms,
        interval_ms: args.interval.as_millis().max(1) as i64,
        count: args.count,
        max_out_of_order_ms: args.max_out_of_order_ms,
        late_fraction: args.late_fraction,
        anomaly_rate: args.anomaly_rate,
        poison_fraction: args.poison_fraction,
        wall_clock: !simulated,
        ..GeneratorConfig::default()
    };
    let out: Box<dyn Write> = match args.output.as_str() {
        "stdout" | "-" => Box::new(std::io::stdout().lock()),
        o if o.starts_with("file:") => {
            let path = &o["file:".len()..];
            Box::new(
                std::fs::File::create(path)
                    .with_context(|| format!("cannot create output file `{path}`"))?,
            )
        }
        o if o.starts_with("kafka://") => {
            let (bootstrap, topic) = o["kafka://".len()..]
                .split_once('/')
                .filter(|(b, t)| !b.is_empty() && !t.is_empty())
                .with_context(|| format!("--output {o}: expected kafka://HOST:PORT/TOPIC"))?;
            return kafka::run(
                bootstrap,
                topic,
                args.partitions,
                cfg,
                args.rate,
                args.progress_secs,
            );
        }
        o => bail!("--output `{o}` is not understood. Fix: use stdout or file:PATH"),
    };
    let mut out = BufWriter::with_capacity(1 << 16, out);
    let mut g = Generator::new(cfg);
    let t0 = Instant::now();
    let mut last_progress = t0;
    let mut n: u64 = 0;
    while let Some((line, _)) = g.next_line() {
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
        n += 1;
        if args.rate > 0.0 && n.is_multiple_of(64) {
            let due = Duration::from_secs_f64(n as f64 / args.rate);
            let el = t0.elapsed();
            if due > el {
                out.flush()?;
                std::thread::sleep(due - el);
            }
        }
        if args.progress_secs > 0
            && n.is_multiple_of(1024)
            && last_progress.elapsed().as_secs() >= args.progress_secs
        {
            last_progress = Instant::now();
            let secs = t0.elapsed().as_secs_f64();
            eprintln!(
                "metric-generator: {n} events, {:.0} events/s",
                n as f64 / secs
            );
        }
    }
    out.flush()?;
    let secs = t0.elapsed().as_secs_f64().max(1e-9);
    eprintln!(
        "metric-generator: done, {n} events in {secs:.2}s ({:.0} events/s)",
        n as f64 / secs
    );
    Ok(())
}
