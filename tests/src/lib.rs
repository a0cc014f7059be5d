//! The integration-test harness: [`TestServices`] hands each test a Kafka
//! bootstrap address and the URL of the search server under test:
//! Elasticsearch 8, or OpenSearch 2 with `FLOWLINE_SEARCH_SERVER=opensearch`
//! (`scripts/test` runs every search-server test against both; each test
//! process names its server on stderr, so a failure shows which). From one
//! of three places:
//!
//! 1. `FLOWLINE_KAFKA_BOOTSTRAP` / `FLOWLINE_ELASTICSEARCH_URL` /
//!    `FLOWLINE_OPENSEARCH_URL`, when set (`scripts/services up` starts real
//!    servers from Maven Central; `eval "$(scripts/services env)"` sets
//!    them; `scripts/test` does both);
//! 2. otherwise, where a Docker engine answers, containers started with
//!    `testcontainers` (Kafka `apache/kafka` in KRaft mode; Elasticsearch 8
//!    with security off, or OpenSearch 2 with its security plugin off);
//! 3. otherwise the test fails with a message saying how to get services.
//!    Never a silent skip.
//!
//! Every test names its topics and indices with [`unique`], so tests run in
//! parallel and re-run on the same servers.

#![warn(missing_docs)]

pub mod checkpointed;
pub mod containers;
pub mod job;
pub mod proxy;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::Elasticsearch;
use tokio::sync::OnceCell;

/// Why services could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServicesError {
    /// Neither variables nor Docker.
    #[error(
        "no Kafka / Elasticsearch for integration tests: FLOWLINE_KAFKA_BOOTSTRAP and \
         FLOWLINE_ELASTICSEARCH_URL are not set and no Docker engine answers. Fix: run \
         `scripts/test` (starts real services and runs every test), or `scripts/services up && \
         eval \"$(scripts/services env)\"` before `cargo nextest run --workspace`, or start Docker"
    )]
    Unavailable,
    /// Only one of the two variables is set.
    #[error("{0} is set but {1} is not. Fix: eval \"$(scripts/services env)\" sets both")]
    HalfConfigured(&'static str, &'static str),
    /// Docker answered but a container failed.
    #[error("starting test containers failed: {0}")]
    Containers(String),
    /// A URL could not be used.
    #[error("invalid {0}: {1}")]
    Invalid(&'static str, String),
}

/// The search server a test process runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchServer {
    /// Elasticsearch 8 (the default).
    Elasticsearch,
    /// OpenSearch 2 (`FLOWLINE_SEARCH_SERVER=opensearch`).
    OpenSearch,
}

impl SearchServer {
    /// From `FLOWLINE_SEARCH_SERVER` (unset: Elasticsearch).
    pub fn from_env() -> Result<Self, ServicesError> {
        match std::env::var("FLOWLINE_SEARCH_SERVER").as_deref() {
            Err(_) | Ok("") | Ok("elasticsearch") => Ok(Self::Elasticsearch),
            Ok("opensearch") => Ok(Self::OpenSearch),
            Ok(other) => Err(ServicesError::Invalid(
                "FLOWLINE_SEARCH_SERVER",
                format!("`{other}`: elasticsearch or opensearch"),
            )),
        }
    }

    /// Its name in `scripts/services` (`kill`, `start`).
    pub fn service_name(self) -> &'static str {
        match self {
            Self::Elasticsearch => "elasticsearch",
            Self::OpenSearch => "opensearch",
        }
    }

    /// The variable with its URL.
    pub fn url_var(self) -> &'static str {
        match self {
            Self::Elasticsearch => "FLOWLINE_ELASTICSEARCH_URL",
            Self::OpenSearch => "FLOWLINE_OPENSEARCH_URL",
        }
    }
}

impl std::fmt::Display for SearchServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Elasticsearch => "Elasticsearch",
            Self::OpenSearch => "OpenSearch",
        })
    }
}

/// Where the services are.
#[derive(Debug)]
pub struct TestServices {
    /// `host:port` of a Kafka broker (PLAINTEXT).
    pub kafka_bootstrap: String,
    /// `http://host:port` of the search server under test.
    pub elasticsearch_url: String,
    /// Which server that is.
    pub search_server: SearchServer,
    /// SASL/SCRAM listener and credentials, when the services offer one.
    pub kafka_sasl: Option<(String, String, String)>,
    _containers: Option<containers::Running>,
}

static SERVICES: OnceCell<TestServices> = OnceCell::const_new();

impl TestServices {
    /// The services for this test process (started once).
    pub async fn get() -> Result<&'static TestServices, ServicesError> {
        SERVICES
            .get_or_try_init(|| async {
                let s = Self::discover().await?;
                // Shown with any failure of this test process.
                eprintln!(
                    "search server under test: {} at {}",
                    s.search_server, s.elasticsearch_url
                );
                Ok(s)
            })
            .await
    }

    async fn discover() -> Result<TestServices, ServicesError> {
        let server = SearchServer::from_env()?;
        let kafka = std::env::var("FLOWLINE_KAFKA_BOOTSTRAP")
            .ok()
            .filter(|s| !s.is_empty());
        let es = std::env::var(server.url_var())
            .ok()
            .filter(|s| !s.is_empty());
        match (kafka, es) {
            (Some(k), Some(e)) => {
                let sasl = match (
                    std::env::var("FLOWLINE_KAFKA_SASL_BOOTSTRAP"),
                    std::env::var("FLOWLINE_KAFKA_SASL_USERNAME"),
                    std::env::var("FLOWLINE_KAFKA_SASL_PASSWORD"),
                ) {
                    (Ok(b), Ok(u), Ok(p)) => Some((b, u, p)),
                    _ => None,
                };
                Ok(TestServices {
                    kafka_bootstrap: k,
                    elasticsearch_url: e,
                    search_server: server,
                    kafka_sasl: sasl,
                    _containers: None,
                })
            }
            (Some(_), None) => Err(ServicesError::HalfConfigured(
                "FLOWLINE_KAFKA_BOOTSTRAP",
                server.url_var(),
            )),
            (None, Some(_)) => Err(ServicesError::HalfConfigured(
                server.url_var(),
                "FLOWLINE_KAFKA_BOOTSTRAP",
            )),
            (None, None) if containers::docker_available() => {
                let running = containers::start(server).await?;
                Ok(TestServices {
                    kafka_bootstrap: running.kafka_bootstrap.clone(),
                    elasticsearch_url: running.elasticsearch_url.clone(),
                    search_server: server,
                    kafka_sasl: None,
                    _containers: Some(running),
                })
            }
            (None, None) => Err(ServicesError::Unavailable),
        }
    }

    /// An Elasticsearch client for the server, with its explicit `http://`
    /// URL (the crate's default is https).
    pub fn elasticsearch(&self) -> Result<Elasticsearch, ServicesError> {
        let url = self
            .elasticsearch_url
            .parse()
            .map_err(|e| ServicesError::Invalid("FLOWLINE_ELASTICSEARCH_URL", format!("{e}")))?;
        let transport = TransportBuilder::new(SingleNodeConnectionPool::new(url))
            .disable_proxy()
            .build()
            .map_err(|e| ServicesError::Invalid("FLOWLINE_ELASTICSEARCH_URL", e.to_string()))?;
        Ok(Elasticsearch::new(transport))
    }
}

/// A name no other test (or earlier run) uses: `prefix-<pid>-<time>-<n>`,
/// lower case, valid as a Kafka topic and an index name.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!(
        "{}-{}-{}-{}",
        prefix.to_lowercase(),
        std::process::id(),
        t,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls `check` every 100 ms until it returns `Some`, for at most
/// `timeout`; `None` if it never did.
pub async fn poll<T, F, Fut>(timeout: std::time::Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Builds an Elasticsearch sink through its factory, from JSON settings
/// (as a job file would give them), and starts it (`restore(None)`).
pub async fn es_sink(
    settings: serde_json::Value,
) -> Result<flowline_elasticsearch::EsSink, flowline_connector_api::ConnectorError> {
    use flowline_connector_api::{Sink, SinkFactory};
    let c = flowline_connector_api::parse_config("elasticsearch", settings)?;
    let mut s = flowline_elasticsearch::ElasticsearchSinkFactory.build(c)?;
    s.restore(None).await?;
    Ok(s)
}

/// The error an Elasticsearch sink with these settings fails with, from
/// `validate` (the sink's `check`) and from the start, which must say the
/// same (the start's may add context in front).
pub async fn es_sink_refused(settings: serde_json::Value) -> String {
    use flowline_connector_api::SinkFactory;
    let c = flowline_connector_api::parse_config("elasticsearch", settings.clone()).unwrap();
    let mut unstarted = flowline_elasticsearch::ElasticsearchSinkFactory
        .build(c)
        .unwrap();
    let checked = unstarted
        .check()
        .await
        .expect_err("validate fails")
        .to_string();
    let started = es_sink(settings)
        .await
        .expect_err("the start fails")
        .to_string();
    assert!(
        started.ends_with(&checked),
        "validate: {checked}\nstart: {started}"
    );
    started
}

/// The number of documents in `index` after a refresh; 0 when the index
/// does not exist (a job killed before its first window wrote nothing).
pub async fn count(es: &Elasticsearch, index: &str) -> u64 {
    use elasticsearch::indices::IndicesRefreshParts;
    es.indices()
        .refresh(IndicesRefreshParts::Index(&[index]))
        .send()
        .await
        .expect("refresh");
    let v: serde_json::Value = es
        .count(elasticsearch::CountParts::Index(&[index]))
        .send()
        .await
        .expect("count")
        .json()
        .await
        .expect("count body");
    if v["error"]["type"] == "index_not_found_exception" {
        return 0;
    }
    v["count"]
        .as_u64()
        .unwrap_or_else(|| panic!("count of {index}: {v}"))
}

/// Window-like documents `d{from}`..`d{to}` (key = id), for the sink tests.
pub fn window_docs(from: usize, to: usize) -> Vec<flowline_connector_api::Record> {
    (from..to)
        .map(|i| {
            flowline_connector_api::Record::new(
                serde_json::json!({"host": "h", "window_start": "2026-01-01T00:00:00Z", "count": i})
                    .to_string(),
            )
            .with_key(format!("d{i}"))
        })
        .collect()
}

/// Writes `batch` to `sink` and flushes it: the records refused as bad on
/// the way (any other error fails the test).
pub async fn write_all<S: flowline_connector_api::Sink>(
    sink: &mut S,
    batch: Vec<flowline_connector_api::Record>,
) -> Vec<flowline_connector_api::Rejected> {
    use flowline_connector_api::ConnectorError;
    let mut rejected = Vec::new();
    for r in [sink.write(batch).await, sink.flush().await] {
        match r {
            Ok(()) => {}
            Err(ConnectorError::BadRecords(v)) => rejected.extend(v),
            Err(e) => panic!("the sink failed: {e}"),
        }
    }
    rejected
}

/// Sends `method path` with a JSON `body` to the search server: its status
/// and JSON answer (`null` when the answer is not JSON), for the REST calls
/// the typed client does not cover.
pub async fn es_call(
    es: &Elasticsearch,
    method: elasticsearch::http::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let r = es
        .transport()
        .send(
            method,
            path,
            elasticsearch::http::headers::HeaderMap::new(),
            None::<&()>,
            body.map(|b| b.to_string().into_bytes()),
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let status = r.status_code().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// Creates `topic` with `partitions` partitions.
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    create_topic_with(bootstrap, topic, partitions, &[]).await
}

/// [`create_topic`] with topic configs (`("max.message.bytes", "4194304")`).
pub async fn create_topic_with(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let r = admin
        .create_topics(
            &[configs.iter().fold(
                NewTopic::new(topic, partitions, TopicReplication::Fixed(1)),
                |t, (k, v)| t.set(k, v),
            )],
            &AdminOptions::new(),
        )
        .await
        .expect("create_topics");
    assert!(r.iter().all(|x| x.is_ok()), "{r:?}");
    create_topic_ready(&admin, topic, partitions).await;
}

/// The controller has accepted the topic; waits until the broker's
/// metadata shows every partition with a leader (a client that checks the
/// topic right away may otherwise find none).
async fn create_topic_ready(
    admin: &rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext>,
    topic: &str,
    partitions: i32,
) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let ready = admin
            .inner()
            .fetch_metadata(Some(topic), std::time::Duration::from_secs(5))
            .ok()
            .and_then(|md| {
                md.topics().first().map(|t| {
                    t.error().is_none()
                        && t.partitions().len() == partitions as usize
                        && t.partitions().iter().all(|p| p.leader() >= 0)
                })
            })
            .unwrap_or(false);
        if ready {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "topic {topic} has no leaders for its {partitions} partitions after 30 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Deletes `topic` and creates it again, empty, with `partitions`, then
/// waits until the new one has leaders (a create right after the delete is
/// refused while the deletion is under way, and tried again).
pub async fn recreate_topic(bootstrap: &str, topic: &str, partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let r = admin
        .delete_topics(&[topic], &AdminOptions::new())
        .await
        .expect("delete_topics");
    assert!(r.iter().all(|x| x.is_ok()), "{r:?}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let r = admin
            .create_topics(
                &[rdkafka::admin::NewTopic::new(
                    topic,
                    partitions,
                    rdkafka::admin::TopicReplication::Fixed(1),
                )],
                &AdminOptions::new(),
            )
            .await
            .expect("create_topics");
        match r.first() {
            Some(Ok(_)) => break,
            // The deletion is still under way.
            Some(Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists))) => {}
            other => panic!("creating {topic} again: {other:?}"),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "topic {topic} could not be deleted and created again within 30 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Leaders for every partition, as `create_topic` waits for.
    create_topic_ready(&admin, topic, partitions).await;
}

/// Produces `(key, payload, timestamp)` records and waits for every delivery.
pub async fn produce(
    bootstrap: &str,
    topic: &str,
    records: impl IntoIterator<Item = (String, String, Option<i64>)>,
) {
    let messages = records
        .into_iter()
        .map(|(key, payload, timestamp)| Message {
            key: Some(key),
            payload,
            timestamp,
            partition: None,
        });
    produce_messages(bootstrap, topic, messages).await
}

/// One message for [`produce_messages`].
#[derive(Debug, Clone)]
pub struct Message {
    /// `None`: a null key.
    pub key: Option<String>,
    /// The value.
    pub payload: String,
    /// The record's timestamp, ms; `None`: the producer's clock.
    pub timestamp: Option<i64>,
    /// `None`: the producer's partitioner chooses.
    pub partition: Option<i32>,
}

/// Produces the messages (idempotent producer, 5 000 in flight at most) and
/// waits for every delivery.
pub async fn produce_messages(
    bootstrap: &str,
    topic: &str,
    messages: impl IntoIterator<Item = Message>,
) {
    produce_messages_with(bootstrap, topic, &[], messages).await
}

/// [`produce_messages`] by a producer with these librdkafka `settings`
/// too (`("compression.type", "zstd")`).
pub async fn produce_messages_with(
    bootstrap: &str,
    topic: &str,
    settings: &[(&str, &str)],
    messages: impl IntoIterator<Item = Message>,
) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let mut config = rdkafka::ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5");
    for (k, v) in settings {
        config.set(*k, *v);
    }
    let p: FutureProducer = config.create().expect("producer");
    let mut pending = Vec::new();
    for m in messages {
        let mut r = FutureRecord::<String, _>::to(topic).payload(&m.payload);
        if let Some(k) = &m.key {
            r = r.key(k);
        }
        if let Some(ts) = m.timestamp {
            r = r.timestamp(ts);
        }
        if let Some(p) = m.partition {
            r = r.partition(p);
        }
        pending.push(p.send_result(r).map_err(|(e, _)| e).expect("enqueue"));
        if pending.len() >= 5_000 {
            for f in pending.drain(..) {
                f.await
                    .expect("delivery")
                    .map_err(|(e, _)| e)
                    .expect("delivered");
            }
        }
    }
    for f in pending {
        f.await
            .expect("delivery")
            .map_err(|(e, _)| e)
            .expect("delivered");
    }
}

/// Seeded generator events (`hosts`, `count`, bounded out-of-order) as
/// `(host, json)`.
pub fn metric_events(hosts: usize, count: u64, seed: u64) -> Vec<(String, String)> {
    flowline_metric_generator::Generator::new(flowline_metric_generator::GeneratorConfig {
        hosts,
        count: Some(count),
        seed,
        max_out_of_order_ms: 1_500,
        ..Default::default()
    })
    .map(|e| (e.host.clone(), e.to_json()))
    .collect()
}

/// The response of a search of `index` (a name or pattern) with `body`.
pub async fn search(es: &Elasticsearch, index: &str, body: serde_json::Value) -> serde_json::Value {
    es.search(elasticsearch::SearchParts::Index(&[index]))
        .body(body)
        .send()
        .await
        .expect("search")
        .json()
        .await
        .expect("search body")
}

/// The mapped properties of `index`.
pub async fn mapping_properties(es: &Elasticsearch, index: &str) -> serde_json::Value {
    use elasticsearch::indices::IndicesGetMappingParts;
    let m: serde_json::Value = es
        .indices()
        .get_mapping(IndicesGetMappingParts::Index(&[index]))
        .send()
        .await
        .expect("get mapping")
        .json()
        .await
        .expect("mapping body");
    m[index]["mappings"]["properties"].clone()
}

/// A consumer in a fresh group, subscribed to `topic` from its start.
pub fn earliest_consumer(bootstrap: &str, topic: &str) -> rdkafka::consumer::StreamConsumer {
    use rdkafka::consumer::Consumer;
    let c: rdkafka::consumer::StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("g"))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    c.subscribe(&[topic]).expect("subscribe");
    c
}
