//! What the benchmark binaries share: the raw rdkafka consumer loop they
//! measure connectors and jobs against, and a sink that discards.

// Each binary includes this module and uses part of it.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use flowline_connector_api::{ConnectorError, Record, Sink};
use flowline_integration_tests::unique;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};

/// The raw loop; with `owned`, it copies each payload and key out, as any
/// consumer that hands records on must.
pub async fn raw(bootstrap: &str, topic: &str, partitions: i32, n: u64, owned: bool) -> f64 {
    let c: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("raw"))
        .set("enable.auto.commit", "false")
        .set("queued.max.messages.kbytes", "16384")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let t0 = Instant::now();
    let mut got = 0u64;
    let mut bytes = 0usize;
    let mut kept: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::with_capacity(1024);
    while got < n {
        let m = c.recv().await.unwrap();
        if owned {
            kept.push((
                m.payload().unwrap_or_default().to_vec(),
                m.key().map(<[u8]>::to_vec),
            ));
            if kept.len() == 1024 {
                bytes += kept.len();
                kept.clear();
            }
        } else {
            bytes += m.payload().map_or(0, |p| p.len());
        }
        got += 1;
    }
    std::hint::black_box((bytes, kept));
    n as f64 / t0.elapsed().as_secs_f64()
}

/// Counts what it is given, keeps nothing.
#[derive(Clone, Default)]
pub struct Discard(pub Arc<AtomicU64>);

impl Sink for Discard {
    async fn write(&mut self, batch: Vec<Record>) -> Result<(), ConnectorError> {
        self.0.fetch_add(batch.len() as u64, Ordering::Relaxed);
        Ok(())
    }
    async fn flush(&mut self) -> Result<(), ConnectorError> {
        Ok(())
    }
}
