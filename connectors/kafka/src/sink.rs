//! The Kafka sink: an idempotent producer; `flush` returns when every record
//! is delivered. Also the dead-letter destination: record headers (the
//! reason, the source position) are written as Kafka headers.
//!
//! A record the broker refuses on its own account (too large for the
//! topic, a timestamp out of its range, no key for a compacted topic) is a
//! bad record, returned whole; any other delivery failure fails the sink.
//! So is a record the broker would take and then delete: its timestamp is
//! already past the topic's `retention.ms` (`sink/retention.rs`).

mod deliveries;
mod retention;

use std::sync::Arc;
use std::time::Duration;

use flowline_connector_api::{ConnectorError, Record, Rejected, Sink};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};

use crate::auth::refused;
use crate::config::{client_config, duration, KafkaSinkConfig};
use crate::error::Error;

/// While a delivery waits for the broker, a warning this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Messages in flight at most in `write`; then it waits for half of them.
const MAX_PENDING: usize = 100_000;

pub(crate) use deliveries::Deliveries;

/// A producer whose context counts its deliveries.
type SinkProducer = ThreadedProducer<Deliveries>;

/// The sink.
pub struct KafkaSink {
    producer: SinkProducer,
    /// The settings of the resend producer, and the producer once a record
    /// has been refused (see [`KafkaSink::resend`]).
    resend_config: rdkafka::ClientConfig,
    resender: std::sync::OnceLock<SinkProducer>,
    topic: String,
    key_field: Option<String>,
    /// Connection settings, for the dedupe reader.
    client: rdkafka::ClientConfig,
    timeout: Duration,
    dedupe: Option<crate::dedupe::Dedupe>,
    /// Ids written after the restored checkpoint by the run before.
    written: crate::dedupe::Written,
    /// The topic's time retention: a record already past it is refused.
    retention: retention::Retention,
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
        let (cc, connect, dedupe) = Self::check(&cfg)?;
        let client = client_config(&cfg.bootstrap_servers, &cfg.security, &Default::default())?;
        let mut resend_config = cc.clone();
        resend_config
            .set("batch.num.messages", "1")
            .set("linger.ms", "0");
        let producer: ThreadedProducer<Deliveries> = cc
            .create_with_context(Deliveries::default())
            .map_err(|source| Error::Kafka {
                what: "creating the Kafka producer".into(),
                source,
            })?;
        let md = producer.client().fetch_metadata(Some(&cfg.topic), connect).map_err(|e| {
            if let Some(reason) = producer.context().auth.failure() {
                return Error::Config(refused(&cfg.bootstrap_servers, &reason));
            }
            Error::Unreachable(format!(
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
        let retention = retention::Retention::read(&client, &cfg.topic, connect);
        Ok(Self {
            producer,
            resend_config,
            resender: std::sync::OnceLock::new(),
            topic: cfg.topic,
            key_field: cfg.key_field,
            client,
            timeout: connect,
            dedupe,
            written: Default::default(),
            retention,
        })
    }

    /// Every check of `new` that needs no broker (`validate --offline` runs
    /// it too): the producer's config, the connect timeout and the dedupe.
    pub(crate) fn check(
        cfg: &KafkaSinkConfig,
    ) -> Result<
        (
            rdkafka::ClientConfig,
            Duration,
            Option<crate::dedupe::Dedupe>,
        ),
        Error,
    > {
        let connect = duration("connect_timeout", &cfg.connect_timeout)?;
        let dedupe = crate::dedupe::Dedupe::new(cfg.dedupe.as_deref(), cfg.dedupe_header.clone())?;
        let mut cc = client_config(&cfg.bootstrap_servers, &cfg.security, &Default::default())?;
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
        if let Some(ms) = cfg.linger_ms.filter(|ms| *ms > 900_000) {
            return Err(Error::Config(format!(
                "`linger_ms` = {ms} is out of range. Fix: a value from 0 to 900000"
            )));
        }
        let settings = cfg.producer_settings().map_err(Error::Config)?;
        cc.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", timeout_ms.to_string());
        for (k, v) in &cfg.properties {
            cc.set(k, v);
        }
        // After the properties: each under its main name, with its value
        // from the field or the properties (the same, or refused above).
        for (k, v) in settings {
            cc.set(k, v);
        }
        crate::checked::native(&cc, "producer")?;
        Ok((cc, connect, dedupe))
    }

    /// What was written after the checkpoint whose state of this sink is
    /// `state` (with `only`, for those source partitions), and the ids that
    /// checkpoint still expected; `None` without dedupe.
    async fn read_back(
        &self,
        state: &[u8],
        only: Option<std::collections::BTreeSet<String>>,
    ) -> Result<Option<crate::dedupe::Written>, ConnectorError> {
        let Some(d) = &self.dedupe else {
            return Ok(None);
        };
        let state: crate::dedupe::State = serde_json::from_slice(state).map_err(|e| {
            ConnectorError::permanent(format!(
                "the checkpoint's state of the Kafka sink for `{}` cannot be read: {e}",
                self.topic
            ))
        })?;
        let crate::dedupe::State { ends, expected } = state;
        // Reading the topic back blocks in librdkafka for up to `timeout`:
        // on a thread of its own, not one of the runtime's few.
        let (client, topic, d, timeout) = (
            self.client.clone(),
            self.topic.clone(),
            d.clone(),
            self.timeout,
        );
        let mut written = tokio::task::spawn_blocking(move || {
            crate::dedupe::ids_since(&client, &topic, &ends, &d, only.as_ref(), timeout)
        })
        .await
        .map_err(|e| {
            ConnectorError::permanent(format!(
                "reading back `{}` after a restore stopped: {e}",
                self.topic
            ))
        })??;
        // The ids that checkpoint still expected: its own replay's, not yet
        // written again when it was taken (of any partition; few).
        for id in expected.iter().filter_map(|x| crate::dedupe::unhex(x)) {
            written.insert(id);
        }
        Ok(Some(written))
    }

    /// Hands one record to `p`. librdkafka holds a reference until the
    /// delivery report, so a record the broker refuses comes back whole.
    fn try_send(
        &self,
        p: &SinkProducer,
        r: &Arc<Record>,
        key: Option<&[u8]>,
    ) -> Result<(), KafkaError> {
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
        let mut br: BaseRecord<'_, [u8], Vec<u8>, Arc<Record>> =
            BaseRecord::with_opaque_to(&self.topic, Arc::clone(r)).payload(&r.payload);
        if let Some(h) = headers {
            br = br.headers(h);
        }
        if let Some(k) = key {
            br = br.key(k);
        }
        if let Some(ts) = r.timestamp {
            br = br.timestamp(ts);
        }
        let d = p.context();
        d.sending();
        p.send(br).map_err(|(e, br)| {
            drop(br);
            d.done();
            e
        })
    }

    /// Sends `r` with `p`, waiting for room while its queue is full
    /// (backpressure: half of what is in flight). A record the producer
    /// refuses as too large comes back; refusals by the broker are
    /// collected by [`settle`](Self::settle).
    async fn send(&self, p: &SinkProducer, r: Record) -> Result<Option<Rejected>, ConnectorError> {
        let r = Arc::new(r);
        let key = match message_key(self.key_field.as_deref(), &r) {
            Ok(key) => key,
            Err(reason) => return Ok(Some(Rejected::new(Arc::unwrap_or_clone(r), reason))),
        };
        loop {
            match self.try_send(p, &r, key.as_deref()) {
                Ok(()) => return Ok(None),
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                    self.wait(p, p.context().in_flight() / 2).await?;
                    if p.context().in_flight() == 0 {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)) => {
                    return Ok(Some(too_large(r)))
                }
                Err(e) => {
                    return Err(ConnectorError::permanent(format!(
                        "producing to `{}`: {e}",
                        self.topic
                    )))
                }
            }
        }
    }

    /// Waits until at most `keep` messages of `p` are in flight, warning
    /// once a minute while it waits. Any failure other than a refused record
    /// is final (librdkafka has already retried until `max_retry_duration`,
    /// by default without limit; the job restarts from its checkpoint).
    async fn wait(&self, p: &SinkProducer, keep: usize) -> Result<(), ConnectorError> {
        let d = p.context();
        let waiting = std::time::Instant::now();
        d.wait_until(keep, WARN_EVERY, |in_flight| {
            tracing::warn!(
                topic = %self.topic,
                in_flight,
                waiting_s = waiting.elapsed().as_secs(),
                "deliveries are still waiting for the broker; retrying without limit (max_retry_duration sets one). This warning repeats once a minute while it lasts"
            )
        })
        .await;
        match d.take_failure() {
            None => Ok(()),
            Some(e) => Err(ConnectorError::permanent(format!(
                "delivery to `{}` failed after the producer's retries: {e}",
                self.topic
            ))),
        }
    }

    /// [`wait`](Self::wait), then the records the broker refused (too
    /// large for the topic, a timestamp it does not take, a record it
    /// cannot validate).
    async fn settle(&self, keep: usize) -> Result<Vec<Rejected>, ConnectorError> {
        self.wait(&self.producer, keep).await?;
        let refused = self.producer.context().take_rejected();
        if refused.is_empty() {
            return Ok(refused);
        }
        self.resend(refused).await
    }

    /// A broker checks a whole record batch (`max.message.bytes`, the
    /// timestamps against `message.timestamp.*.max.ms`, a key on each record
    /// for a compacted topic), so one record it refuses takes down every
    /// record batched with it. The refused records are sent again by a
    /// second producer that puts one record in each batch
    /// (`batch.num.messages` = 1, created at the first refusal); only what
    /// the broker refuses from it is rejected. The records resent land
    /// after those sent since.
    async fn resend(&self, refused: Vec<Rejected>) -> Result<Vec<Rejected>, ConnectorError> {
        if self.resender.get().is_none() {
            let p: SinkProducer = self
                .resend_config
                .create_with_context(Deliveries::default())
                .map_err(|e| {
                    ConnectorError::permanent(format!(
                        "creating the producer that resends refused records to `{}`: {e}",
                        self.topic
                    ))
                })?;
            let _ = self.resender.set(p);
        }
        let p = self.resender.get().expect("set above");
        tracing::info!(topic = %self.topic, records = refused.len(), "the broker refused record batches (too large, a timestamp out of its range, a record it cannot validate); sending their records again, one per batch");
        let mut rejected = Vec::new();
        for Rejected { record, .. } in refused {
            rejected.extend(self.send(p, record).await?);
        }
        self.wait(p, 0).await?;
        rejected.extend(p.context().take_rejected());
        Ok(rejected)
    }
}

/// The message key of `r`: its own key, or with `key_field` that field of
/// its JSON payload (a string as its bytes, `null` as no key, another value
/// as its JSON text). A payload without the field, or not a JSON object,
/// is refused: sent without a key it would land on an arbitrary partition.
fn message_key<'r>(
    field: Option<&str>,
    r: &'r Record,
) -> Result<Option<std::borrow::Cow<'r, [u8]>>, String> {
    use serde_json::Value;
    let Some(f) = field else {
        return Ok(r.key.as_deref().map(std::borrow::Cow::Borrowed));
    };
    let v: Value = serde_json::from_slice(&r.payload)
        .map_err(|e| format!("key_field `{f}`: the payload is not JSON ({e})"))?;
    let Value::Object(mut fields) = v else {
        return Err(format!("key_field `{f}`: the payload is not a JSON object"));
    };
    match fields.remove(f) {
        None => Err(format!(
            "key_field `{f}`: the payload has no field `{f}`. Fix: add it, or unset key_field to use the record key"
        )),
        Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.into_bytes().into())),
        Some(other) => Ok(Some(other.to_string().into_bytes().into())),
    }
}

/// A record the producer refuses before sending it.
fn too_large(r: Arc<Record>) -> Rejected {
    let reason = format!(
        "MessageSizeTooLarge: {} bytes is more than the producer's message.max.bytes",
        r.payload.len()
    );
    Rejected::new(Arc::unwrap_or_clone(r), reason)
}

impl Sink for KafkaSink {
    async fn write(&mut self, batch: Vec<Record>) -> Result<(), ConnectorError> {
        let mut rejected = Vec::new();
        let now = retention::now_ms();
        for r in batch {
            if let (Some(d), false) = (&self.dedupe, self.written.is_empty()) {
                // A key that cannot be made is refused by `send`.
                let id = message_key(self.key_field.as_deref(), &r)
                    .ok()
                    .and_then(|k| d.id(k.as_deref(), &r.payload, |h| r.header(h)));
                if id.is_some_and(|id| self.written.take(&id)) {
                    // Written by the run before, after the checkpoint this
                    // run was restored from.
                    continue;
                }
            }
            if let Err(reason) = self.retention.admit(&self.topic, r.timestamp, now) {
                rejected.push(Rejected::new(r, reason));
                continue;
            }
            rejected.extend(self.send(&self.producer, r).await?);
            if self.producer.context().in_flight() >= MAX_PENDING {
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
        if self.dedupe.is_none() {
            return Ok(None);
        }
        // Called after `flush`: every record written so far is below these
        // ends. Ids of the run before that the replay has not reached yet
        // stay expected (a replay can take longer than a checkpoint
        // interval), in the state too, so a crash mid-replay keeps them.
        let state = crate::dedupe::State {
            ends: crate::dedupe::ends(&self.producer, &self.topic, self.timeout)?,
            expected: self.written.expected(),
        };
        Ok(Some(serde_json::to_vec(&state).map_err(|e| {
            ConnectorError::permanent(format!("encoding the sink's state: {e}"))
        })?))
    }

    async fn restore(&mut self, state: Option<Vec<u8>>) -> Result<(), ConnectorError> {
        let Some(state) = state else { return Ok(()) };
        if let Some(w) = self.read_back(&state, None).await? {
            self.written = w;
        }
        if !self.written.is_empty() {
            tracing::info!(topic = %self.topic, records = self.written.len(), "records written after the checkpoint will not be written again");
        }
        Ok(())
    }

    /// The records the previous owner of `partitions` wrote for them after
    /// the checkpoint it took them in: dead letters and late events name
    /// their source partition; the others (windows) cannot be told apart
    /// from this process's own, and are left to be written again.
    async fn rewind(
        &mut self,
        state: Option<Vec<u8>>,
        partitions: Vec<flowline_connector_api::PartitionId>,
    ) -> Result<(), ConnectorError> {
        let Some(state) = state else { return Ok(()) };
        let only = partitions.iter().map(|p| p.as_str().to_string()).collect();
        if let Some(w) = self.read_back(&state, Some(only)).await? {
            let n = w.len();
            self.written.merge(w);
            if n > 0 {
                tracing::info!(topic = %self.topic, records = n, partitions = ?partitions, "records the partitions' previous owner wrote after their checkpoint will not be written again");
            }
        }
        Ok(())
    }

    async fn close(&mut self) -> Result<(), ConnectorError> {
        self.flush().await?;
        let _ = self.producer.flush(Duration::from_secs(10));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(field: Option<&str>, r: &Record) -> Result<Option<Vec<u8>>, String> {
        message_key(field, r).map(|k| k.map(|k| k.into_owned()))
    }

    #[test]
    fn the_key_is_the_record_key_or_the_payload_field() {
        let r = Record::new(r#"{"host":"web-1","n":7,"z":null,"o":{"a":1}}"#).with_key("rk");
        assert_eq!(key(None, &r), Ok(Some(b"rk".to_vec())));
        assert_eq!(key(None, &Record::new("x")), Ok(None));
        assert_eq!(key(Some("host"), &r), Ok(Some(b"web-1".to_vec())));
        assert_eq!(key(Some("n"), &r), Ok(Some(b"7".to_vec())));
        assert_eq!(key(Some("o"), &r), Ok(Some(br#"{"a":1}"#.to_vec())));
        assert_eq!(key(Some("z"), &r), Ok(None), "an explicit null is no key");
    }

    #[test]
    fn a_payload_without_the_key_field_is_refused_not_sent_keyless() {
        let missing = key(Some("host"), &Record::new(r#"{"hostname":"web-1"}"#)).unwrap_err();
        assert!(
            missing.contains("no field `host`") && missing.contains("Fix:"),
            "{missing}"
        );
        let not_json = key(Some("host"), &Record::new("host=web-1")).unwrap_err();
        assert!(not_json.contains("not JSON"), "{not_json}");
        let array = key(Some("host"), &Record::new(r#"["host"]"#)).unwrap_err();
        assert!(array.contains("not a JSON object"), "{array}");
    }
}
