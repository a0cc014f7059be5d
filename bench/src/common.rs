//! What the benchmark binaries share: the raw rdkafka consumer loop they
//! measure connectors and jobs against, and a sink that discards.

// Each binary includes this module and uses part of it.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flowline_connector_api::{ConnectorError, Record, Sink};
use flowline_integration_tests::unique;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};

/// How long a drain of `n` records took, and how much of that went before
/// the first record (connecting, offset lookups, the first fetch).
#[derive(Debug, Clone, Copy)]
pub struct Drain {
    pub n: u64,
    pub first: Duration,
    pub total: Duration,
}

impl Drain {
    /// Records per second, start-up included.
    pub fn rate(&self) -> f64 {
        self.n as f64 / self.total.as_secs_f64()
    }

    /// Records per second from the first record to the last: the drain
    /// rate proper, without the start-up latency.
    pub fn steady_rate(&self) -> f64 {
        (self.n - 1) as f64 / (self.total - self.first).as_secs_f64()
    }
}

/// The raw loop; with `owned`, it copies each payload and key out, as any
/// consumer that hands records on must.
pub async fn raw(bootstrap: &str, topic: &str, partitions: i32, n: u64, owned: bool) -> Drain {
    let c: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("raw"))
        .set("enable.auto.commit", "false")
        .set("queued.max.messages.kbytes", "16384")
        // As the connector sets it: without, the fetcher stalls for a
        // second whenever the prefetch queue is full.
        .set("fetch.queue.backoff.ms", "10")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let t0 = Instant::now();
    let mut first = None;
    let mut got = 0u64;
    let mut bytes = 0usize;
    let mut kept: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::with_capacity(1024);
    while got < n {
        let m = c.recv().await.unwrap();
        first.get_or_insert_with(|| t0.elapsed());
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
    Drain {
        n,
        first: first.unwrap_or_default(),
        total: t0.elapsed(),
    }
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

/// CPU seconds (user + system) this process has used so far, from
/// `/proc/self/stat` (Linux; clock ticks of 1/100 s, `_SC_CLK_TCK` there).
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // The command name may hold spaces: the fields start after its ')'.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f[i].parse::<u64>().expect("stat field") as f64;
    (ticks(11) + ticks(12)) / 100.0
}
