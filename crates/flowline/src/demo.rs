//! `flowline demo`: generator → in-memory source → the metrics job → file
//! sink. No Kafka, no Elasticsearch.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use flowline_connector_api::{ConnectorError, Record, Source, SourceEvent, SourcePosition};
use flowline_file::{FileMode, FileSink, FileSinkConfig, IterSource};
use flowline_metric_generator::{Generator, GeneratorConfig};
use flowline_runtime::{DeadLetterFormat, JobConfig, JobHandle, StreamEnvironment, Tumbling};

use crate::anomaly::AnomalySettings;
use crate::job::{metrics_pipeline, Outputs, WindowSettings};
use crate::Error;

/// Demo settings.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Stop after this many events; `None`: until stopped.
    pub events: Option<u64>,
    /// Hosts.
    pub hosts: usize,
    /// Seed.
    pub seed: u64,
    /// Events per second; 0: as fast as possible.
    pub rate: f64,
    /// Directory for `windows.ndjson`, `anomalies.ndjson`, `dead-letter.ndjson`
    /// and `late.ndjson`.
    pub out_dir: PathBuf,
    /// Window size.
    pub window: Duration,
    /// Where to serve the job page and API (`--http`), if anywhere.
    pub http: Option<String>,
}

/// Paces a source to `rate` records per second (0: no pacing).
#[derive(Debug)]
pub struct Paced<S> {
    inner: S,
    rate: f64,
    sent: u64,
    t0: Option<Instant>,
}

impl<S> Paced<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, rate: f64) -> Self {
        Self {
            inner,
            rate,
            sent: 0,
            t0: None,
        }
    }
}

impl<S: Source> Source for Paced<S> {
    async fn next(&mut self) -> Result<SourceEvent, ConnectorError> {
        let t0 = *self.t0.get_or_insert_with(Instant::now);
        if self.rate > 0.0 {
            let due = Duration::from_secs_f64(self.sent as f64 / self.rate);
            if let Some(wait) = due.checked_sub(t0.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
        let ev = self.inner.next().await?;
        if let SourceEvent::Records(b) = &ev {
            self.sent += b.len() as u64;
        }
        Ok(ev)
    }
    async fn seek(&mut self, p: &SourcePosition) -> Result<(), ConnectorError> {
        self.inner.seek(p).await
    }
    fn partitions(&self) -> Option<Vec<flowline_connector_api::PartitionId>> {
        self.inner.partitions()
    }
}

/// Starts the demo job; the files it writes are in `out_dir`; its newest
/// results are kept in `results` when given.
pub fn start(
    o: &DemoOptions,
    results: Option<std::sync::Arc<crate::results::Results>>,
) -> Result<JobHandle, Error> {
    std::fs::create_dir_all(&o.out_dir).map_err(|e| Error::Config {
        field: "--out".into(),
        message: format!("cannot create `{}`: {e}", o.out_dir.display()),
    })?;
    let gen = Generator::new(GeneratorConfig {
        hosts: o.hosts,
        seed: o.seed,
        count: o.events,
        max_out_of_order_ms: 2_000,
        late_fraction: 0.0005,
        anomaly_rate: 0.0005,
        ..GeneratorConfig::default()
    });
    let records = gen.map(|e| Record::new(e.to_json()));
    let batch = if o.rate > 0.0 {
        ((o.rate / 20.0) as usize).clamp(1, 512)
    } else {
        512
    };
    let source = Paced::new(IterSource::new(records).with_batch_size(batch), o.rate);
    let env = StreamEnvironment::new(
        JobConfig::named("flowline-demo").out_of_orderness(Duration::from_secs(3)),
    );
    let file = |name: &str| -> Result<FileSink, Error> {
        // The demo's own output directory: each run replaces its files.
        FileSink::new(FileSinkConfig::new(o.out_dir.join(name)).mode(FileMode::Overwrite)).map_err(
            |source| Error::Connector {
                section: "demo".into(),
                source,
            },
        )
    };
    let windows = env.add_sink("windows", Box::new(file("windows.ndjson")?));
    env.dead_letter_sink(
        "dead_letter",
        Box::new(file("dead-letter.ndjson")?),
        DeadLetterFormat::Envelope,
    );
    env.late_sink(
        "late",
        Box::new(file("late.ndjson")?),
        DeadLetterFormat::Envelope,
    );
    let w = WindowSettings::new(Tumbling::of(o.window));
    let anomalies = env.add_sink("anomalies", Box::new(file("anomalies.ndjson")?));
    metrics_pipeline(
        env.source("generator", Box::new(source)),
        w,
        AnomalySettings::default(),
        Outputs {
            windows,
            anomalies: Some(anomalies),
            current: None,
            results,
        },
    );
    Ok(env.start()?)
}
