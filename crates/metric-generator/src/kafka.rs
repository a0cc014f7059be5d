//! `--output kafka://HOST:PORT/TOPIC`: produce the events keyed by host, so
//! one host's events stay in one partition. Creates the topic when missing.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use flowline_metric_generator::{Generator, GeneratorConfig};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;

pub fn run(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    cfg: GeneratorConfig,
    rate: f64,
    progress_secs: u64,
) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(produce(
        bootstrap,
        topic,
        partitions,
        cfg,
        rate,
        progress_secs,
    ))
}

async fn produce(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    cfg: GeneratorConfig,
    rate: f64,
    progress_secs: u64,
) -> Result<()> {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", bootstrap);
    let admin: AdminClient<DefaultClientContext> =
        cc.create().context("creating the Kafka admin client")?;
    let md = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .with_context(|| format!("cannot reach Kafka at {bootstrap} within 10s. Fix: check the address and that the broker runs"))?;
    let exists = md
        .topics()
        .iter()
        .any(|t| t.name() == topic && !t.partitions().is_empty());
    if !exists {
        let r = admin
            .create_topics(
                &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await
            .context("creating the topic")?;
        for x in r {
            match x {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((t, e)) => bail!("creating topic `{t}` failed: {e}"),
            }
        }
        eprintln!("metric-generator: created topic {topic} with {partitions} partitions");
    }
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .create()
        .context("creating the Kafka producer")?;
    let mut g = Generator::new(cfg);
    let t0 = Instant::now();
    let mut last = t0;
    let mut pending = Vec::with_capacity(10_000);
    let (mut sent, mut failed) = (0u64, 0u64);
    let mut first_error = None;
    while let Some((line, _)) = g.next_line() {
        let host = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|v| v["host"].as_str().map(str::to_string))
            .unwrap_or_default();
        loop {
            match producer.send_result(FutureRecord::to(topic).key(&host).payload(&line)) {
                Ok(f) => {
                    pending.push(f);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    settle(&mut pending, &mut failed, &mut first_error).await;
                }
                Err((e, _)) => bail!("producing to {topic}: {e}"),
            }
        }
        sent += 1;
        if pending.len() >= 10_000 {
            settle(&mut pending, &mut failed, &mut first_error).await;
        }
        if rate > 0.0 && sent % 64 == 0 {
            let due = Duration::from_secs_f64(sent as f64 / rate);
            if let Some(w) = due.checked_sub(t0.elapsed()) {
                tokio::time::sleep(w).await;
            }
        }
        if progress_secs > 0 && last.elapsed().as_secs() >= progress_secs {
            last = Instant::now();
            eprintln!(
                "metric-generator: {sent} events, {:.0} events/s",
                sent as f64 / t0.elapsed().as_secs_f64()
            );
        }
    }
    settle(&mut pending, &mut failed, &mut first_error).await;
    let _ = producer.flush(Duration::from_secs(30));
    let secs = t0.elapsed().as_secs_f64().max(1e-9);
    let delivered = sent - failed;
    eprintln!("metric-generator: delivered {delivered} of {sent} events to {topic} in {secs:.2}s ({:.0} events/s)", delivered as f64 / secs);
    if failed > 0 {
        bail!(
            "{failed} events were not delivered; first error: {}",
            first_error.unwrap_or_default()
        );
    }
    Ok(())
}

/// Awaits every pending delivery, counting failures.
async fn settle(
    pending: &mut Vec<rdkafka::producer::DeliveryFuture>,
    failed: &mut u64,
    first_error: &mut Option<String>,
) {
    for f in pending.drain(..) {
        match f.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => {
                *failed += 1;
                first_error.get_or_insert(e.to_string());
            }
            Err(_) => {
                *failed += 1;
                first_error.get_or_insert("delivery canceled".into());
            }
        }
    }
}
