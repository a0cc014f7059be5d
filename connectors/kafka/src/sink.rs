//! The Kafka sink: an idempotent producer; `flush` returns when every record
//! is delivered. Also the dead-letter destination: record headers (the
//! reason, the source position) are written as Kafka headers.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use flowline_connector_api::{ConnectorError, Record, Rejected, Sink};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

use crate::auth::{refused, AuthWatch};
use crate::config::{client_config, duration, KafkaSinkConfig};
use crate::error::Error;

/// While a delivery waits for the broker, a warning this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Delivery reports awaited at most this many at a time in `write`.
const MAX_PENDING: usize = 100_000;

/// The sink.
pub struct KafkaSink {
    producer: FutureProducer<AuthWatch>,
    topic: String,
    key_field: Option<String>,
    pending: Vec<(DeliveryFuture, Record)>,
    /// Connection settings, for the dedupe reader.
    client: rdkafka::ClientConfig,
    timeout: Duration,
    dedupe_header: Option<String>,
    /// Ids written after the restored checkpoint by the run before.
    written: std::collections::HashSet<Vec<u8>>,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl KafkaSink {
    /// Connects (bounded wait) and checks the topic exists.
    pub fn new(cfg: KafkaSinkConfig) -> Result<Self, Error> {
        let connect = duration("connect_timeout", &cfg.connect_timeout)?;
        let mut cc = client_config(&cfg.bootstrap_servers, &cfg.security, &Default::default())?;
        let client = cc.clone();
        let timeout_ms = match &cfg.max_retry_duration {
            // 0: librdkafka retries a delivery without a time limit.
            None => 0,
            Some(v) => {
                let d = duration("max_retry_duration", v)?;
                u32::try_from(d.as_millis())
                    .ok()
                    .filter(|ms| *ms >= 1)
                    .ok_or_else(|| {
                        Error::Config(format!(
                            "`max_retry_duration` = \"{v}\" is out of range. Fix: from 1ms to 24d"
                        ))
                    })?
            }
        };
        if cfg.linger_ms > 900_000 {
            return Err(Error::Config(format!(
                "`linger_ms` = {} is out of range. Fix: a value from 0 to 900000",
                cfg.linger_ms
            )));
        }
        cc.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", timeout_ms.to_string())
            .set("linger.ms", cfg.linger_ms.to_string())
            .set("batch.size", cfg.batch_size.to_string())
            .set("compression.type", &cfg.compression);
        for (k, v) in &cfg.properties {
            cc.set(k, v);
        }
        let auth = AuthWatch::default();
        let producer: FutureProducer<AuthWatch> =
            cc.create_with_context(auth.clone())
                .map_err(|source| Error::Kafka {
                    what: "creating the Kafka producer".into(),
                    source,
                })?;
        let md = producer.client().fetch_metadata(Some(&cfg.topic), connect).map_err(|e| {
            if let Some(reason) = auth.failure() {
                return Error::Config(refused(&cfg.bootstrap_servers, &reason));
            }
            Error::Config(format!(
                "cannot reach Kafka at {} within {}: {e}. Fix: check bootstrap_servers, that the broker runs, and the security settings",
                cfg.bootstrap_servers,
                humantime::format_duration(connect)
            ))
        })?;
        if md
            .topics()
            .first()
            .is_none_or(|t| t.partitions().is_empty())
        {
            return Err(Error::Config(format!(
                "topic `{}` does not exist on {}. Fix: create it first",
                cfg.topic, cfg.bootstrap_servers
            )));
        }
        Ok(Self {
            producer,
            topic: cfg.topic,
            key_field: cfg.key_field,
            pending: Vec::new(),
            client,
            timeout: connect,
            dedupe_header: cfg.dedupe_header,
            written: Default::default(),
        })
    }

    fn key_of(&self, r: &Record) -> Option<Vec<u8>> {
        match &self.key_field {
            None => r.key.clone(),
            Some(f) => {
                let v: serde_json::Value = serde_json::from_slice(&r.payload).ok()?;
                match &v[f] {
                    serde_json::Value::String(s) => Some(s.clone().into_bytes()),
                    serde_json::Value::Null => None,
                    other => Some(other.to_string().into_bytes()),
                }
            }
        }
    }

    /// Awaits a delivery not done yet, warning once a minute while it waits.
    async fn wait(&self, fut: &mut DeliveryFuture) -> <DeliveryFuture as Future>::Output {
        let waiting = std::time::Instant::now();
        loop {
            match tokio::time::timeout(WARN_EVERY, &mut *fut).await {
                Ok(d) => return d,
                Err(_) => tracing::warn!(
                    topic = %self.topic,
                    waiting_s = waiting.elapsed().as_secs(),
                    "a delivery is still waiting for the broker; retrying without limit (max_retry_duration sets one). This warning repeats once a minute while it lasts"
                ),
            }
        }
    }

    /// Awaits every pending delivery; rejected records come back, any other
    /// failure is final (librdkafka has already retried until
    /// `max_retry_duration`, by default without limit; the job restarts
    /// from its checkpoint).
    async fn settle(&mut self, keep: usize) -> Result<Vec<Rejected>, ConnectorError> {
        let mut rejected = Vec::new();
        let n = self.pending.len().saturating_sub(keep);
        let pending: Vec<_> = self.pending.drain(..n).collect();
        for (mut fut, record) in pending {
            // Most deliveries are done by now: taken without a timer (a
            // clock read and a timer entry each).
            let ready = Pin::new(&mut fut).poll(&mut Context::from_waker(Waker::noop()));
            let delivered = match ready {
                Poll::Ready(d) => d,
                Poll::Pending => self.wait(&mut fut).await,
            };
            match delivered {
                Ok(Ok(_)) => {}
                Ok(Err((
                    KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
                    _,
                ))) => {
                    rejected.push(Rejected::new(record, "MessageSizeTooLarge: the record is larger than the topic's max.message.bytes"));
                }
                Ok(Err((e, _))) => {
                    return Err(ConnectorError::permanent(format!(
                        "delivery to `{}` failed after the producer's retries: {e}",
                        self.topic
                    )));
                }
                Err(_) => {
                    return Err(ConnectorError::permanent(
                        "the producer was dropped with deliveries pending",
                    ))
                }
            }
        }
        Ok(rejected)
    }
}

impl Sink for KafkaSink {
    async fn write(&mut self, batch: Vec<Record>) -> Result<(), ConnectorError> {
        let mut rejected = Vec::new();
        for r in batch {
            if let Some(h) = &self.dedupe_header {
                if !self.written.is_empty() && r.header(h).is_some_and(|id| self.written.remove(id))
                {
                    // Written by the run before, after the checkpoint this
                    // run was restored from.
                    continue;
                }
            }
            let key = self.key_of(&r);
            // A record without headers gets none: librdkafka allocates a
            // headers object, and its copy for each send, even when empty.
            let headers = (!r.headers.is_empty()).then(|| {
                r.headers.iter().fold(
                    OwnedHeaders::new_with_capacity(r.headers.len()),
                    |h, (k, v)| {
                        h.insert(Header {
                            key: k,
                            value: Some(v),
                        })
                    },
                )
            });
            loop {
                let mut fr = FutureRecord::to(&self.topic).payload(&r.payload);
                if let Some(h) = &headers {
                    fr = fr.headers(h.clone());
                }
                if let Some(k) = &key {
                    fr = fr.key(k);
                }
                if let Some(ts) = r.timestamp {
                    fr = fr.timestamp(ts);
                }
                match self.producer.send_result(fr) {
                    Ok(f) => {
                        self.pending.push((f, r));
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        // Backpressure: wait for half of what is in flight.
                        let keep = self.pending.len() / 2;
                        rejected.extend(self.settle(keep).await?);
                        if self.pending.is_empty() {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                    Err((
                        KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
                        _,
                    )) => {
                        let reason = format!(
                            "MessageSizeTooLarge: {} bytes is more than the producer's message.max.bytes",
                            r.payload.len()
                        );
                        rejected.push(Rejected::new(r, reason));
                        break;
                    }
                    Err((e, _)) => {
                        return Err(ConnectorError::permanent(format!(
                            "producing to `{}`: {e}",
                            self.topic
                        )))
                    }
                }
            }
            if self.pending.len() >= MAX_PENDING {
                rejected.extend(self.settle(MAX_PENDING / 2).await?);
            }
        }
        if rejected.is_empty() {
            Ok(())
        } else {
            Err(ConnectorError::BadRecords(rejected))
        }
    }

    async fn flush(&mut self) -> Result<(), ConnectorError> {
        let rejected = self.settle(0).await?;
        if rejected.is_empty() {
            Ok(())
        } else {
            Err(ConnectorError::BadRecords(rejected))
        }
    }

    async fn snapshot(&mut self) -> Result<Option<Vec<u8>>, ConnectorError> {
        if self.dedupe_header.is_none() {
            return Ok(None);
        }
        // Called after `flush`: every record written so far is below these
        // ends. Ids of the run before that the replay has not reached yet
        // stay expected (a replay can take longer than a checkpoint
        // interval), in the state too, so a crash mid-replay keeps them.
        let state = crate::dedupe::State {
            ends: crate::dedupe::ends(&self.producer, &self.topic, self.timeout)?,
            expected: self.written.iter().map(|v| crate::dedupe::hex(v)).collect(),
        };
        Ok(Some(serde_json::to_vec(&state).map_err(|e| {
            ConnectorError::permanent(format!("encoding the sink's state: {e}"))
        })?))
    }

    async fn restore(&mut self, state: Option<Vec<u8>>) -> Result<(), ConnectorError> {
        let (Some(h), Some(state)) = (&self.dedupe_header, state) else {
            return Ok(());
        };
        let state: crate::dedupe::State = serde_json::from_slice(&state).map_err(|e| {
            ConnectorError::permanent(format!(
                "the checkpoint's state of the Kafka sink for `{}` cannot be read: {e}",
                self.topic
            ))
        })?;
        self.written =
            crate::dedupe::ids_since(&self.client, &self.topic, &state.ends, h, self.timeout)?;
        self.written.extend(
            state
                .expected
                .iter()
                .filter_map(|x| crate::dedupe::unhex(x)),
        );
        if !self.written.is_empty() {
            tracing::info!(topic = %self.topic, records = self.written.len(), "records written after the checkpoint will not be written again");
        }
        Ok(())
    }

    async fn close(&mut self) -> Result<(), ConnectorError> {
        self.flush().await?;
        let _ = self.producer.flush(Duration::from_secs(10));
        Ok(())
    }
}
