//! The sink: buffers documents, sends bounded bulk requests concurrently,
//! retries what is worth retrying and hands back what the server rejects.
//!
//! Concurrent requests never hold two writes of one document: the last
//! write of an id must be the one that stays (a window re-emitted by a late
//! event, a replay after a restart), and two requests in flight, or one
//! retried, can land in either order. A request with a document that an
//! earlier one still has in flight waits for it (`dispatch`). Within one
//! request the server applies the items of a document in order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use elasticsearch::auth::Credentials;
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::headers::HeaderMap;
use elasticsearch::http::transport::{
    MultiNodeConnectionPool, SingleNodeConnectionPool, TransportBuilder,
};
use elasticsearch::http::{Method, Url};
use elasticsearch::Elasticsearch;
use flowline_connector_api::{ConnectorError, Counter, CounterReader, Record, Rejected, Sink};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::bulk::Item;
use crate::config::{Action, Settings};
use crate::detect::Server;
use crate::encode::Encoder;
use crate::request::status_error;
use crate::retry::{Every, Policy};
use crate::send::send;
use crate::{existing, target, template, Error};

/// What a bulk request's task returns: its documents and its result.
type Sent = (Vec<u64>, Result<Vec<Rejected>, Error>);
/// A bulk request's task's outcome.
type Finished = Result<Sent, tokio::task::JoinError>;

/// While a server stays down, a retry warning at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Counters of one sink (read them in tests and for metrics).
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Bulk requests sent (retries included).
    pub bulk_requests: AtomicU64,
    /// Documents acknowledged.
    pub documents: AtomicU64,
    /// Retried requests or items.
    pub retries: AtomicU64,
    /// Documents rejected (dead-lettered).
    pub rejected: AtomicU64,
    /// Bulk latency, sum of ms (with `bulk_requests`, the mean).
    pub bulk_latency_ms: AtomicU64,
}

/// The Elasticsearch / OpenSearch sink.
pub struct EsSink {
    client: Elasticsearch,
    settings: Settings,
    encoder: Encoder,
    policy: Policy,
    buffer: Vec<Item>,
    buffer_bytes: usize,
    buffer_since: Option<Instant>,
    in_flight: JoinSet<Sent>,
    /// Documents (see `Item::doc`) in the requests in flight, with how many
    /// writes of each.
    docs_in_flight: HashMap<u64, u32>,
    permits: Arc<Semaphore>,
    rejected: Vec<Rejected>,
    stats: Arc<SinkStats>,
    warn: Arc<Every>,
    server: Option<Server>,
}

impl std::fmt::Debug for EsSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EsSink")
            .field("config", &self.settings.config)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

fn client(s: &Settings) -> Result<Elasticsearch, Error> {
    let urls: Vec<Url> = s
        .urls
        .iter()
        .map(|u| Url::parse(u).map_err(|e| Error::Config(format!("url `{u}`: {e}"))))
        .collect::<Result<_, _>>()?;
    let mut b = if urls.len() == 1 {
        TransportBuilder::new(SingleNodeConnectionPool::new(urls[0].clone()))
    } else {
        TransportBuilder::new(MultiNodeConnectionPool::round_robin(urls, None))
    };
    b = b.disable_proxy().timeout(s.request_timeout);
    let c = &s.config;
    if let (Some(u), Some(p)) = (&c.username, &c.password) {
        b = b.auth(Credentials::Basic(u.clone(), p.clone()));
    } else if let Some(k) = &c.api_key {
        b = b.auth(match k.split_once(':') {
            Some((id, key)) => Credentials::ApiKey(id.into(), key.into()),
            None => Credentials::EncodedApiKey(k.clone()),
        });
    } else if let Some(t) = &c.bearer_token {
        b = b.auth(Credentials::Bearer(t.clone()));
    }
    if c.insecure_skip_verify {
        tracing::warn!("insecure_skip_verify = true: the server's TLS certificate is NOT verified");
        b = b.cert_validation(CertificateValidation::None);
    } else if let Some(ca) = &c.ca_file {
        let pem = std::fs::read(ca)
            .map_err(|e| Error::Config(format!("ca_file `{}`: {e}", ca.display())))?;
        let cert = Certificate::from_pem(&pem).map_err(|e| {
            Error::Config(format!(
                "ca_file `{}` is not a PEM certificate: {e}",
                ca.display()
            ))
        })?;
        b = b.cert_validation(CertificateValidation::Full(cert));
    }
    Ok(Elasticsearch::new(
        b.build().map_err(|e| Error::Config(e.to_string()))?,
    ))
}

impl EsSink {
    /// A sink for checked settings. Talks to no server until `restore`.
    pub fn new(settings: Settings) -> Result<Self, Error> {
        let c = &settings.config;
        let action = if c.data_stream {
            Action::Create
        } else {
            c.action
        };
        let encoder = Encoder::new(
            &c.index,
            c.id_fields.clone(),
            c.time_field.as_deref(),
            action,
        );
        let policy = Policy {
            max_attempts: c.max_attempts,
            max_duration: settings.max_retry_duration,
            initial: settings.initial_backoff,
            max: settings.max_backoff,
        };
        Ok(Self {
            client: client(&settings)?,
            permits: Arc::new(Semaphore::new(c.max_in_flight)),
            encoder,
            policy,
            buffer: Vec::new(),
            buffer_bytes: 0,
            buffer_since: None,
            in_flight: JoinSet::new(),
            docs_in_flight: HashMap::new(),
            rejected: Vec::new(),
            stats: Arc::new(SinkStats::default()),
            warn: Arc::new(Every::new(WARN_EVERY)),
            server: None,
            settings,
        })
    }

    /// The sink's counters.
    pub fn stats(&self) -> Arc<SinkStats> {
        self.stats.clone()
    }

    /// The server, once detected.
    pub fn server(&self) -> Option<&Server> {
        self.server.as_ref()
    }

    /// Detects the server (bounded retries while it is unreachable), refuses
    /// an unsupported one, and installs the index template.
    pub async fn start(&mut self) -> Result<(), Error> {
        let server = self.detect().await?;
        let url = self.settings.urls.join(", ");
        tracing::info!(%server, %url, "connected");
        self.check_target(&server).await?;
        let c = &self.settings.config;
        if let Some(mappings) = &self.settings.mappings {
            let pattern = self.encoder.index_pattern();
            let name = self.template_name();
            let body = template::body(
                &pattern,
                mappings,
                c.shards,
                c.replicas,
                server.composable_templates(),
                c.owner.as_deref(),
            );
            template::ensure(&self.client, &server, &name, &body).await?;
            let refused = existing::conflicts(&self.client, &pattern, mappings).await?;
            for (index, reason) in &refused {
                tracing::error!(%index, %reason, "documents for this index go to the dead-letter output");
            }
            self.encoder.refuse(refused);
        }
        self.server = Some(server);
        Ok(())
    }

    /// The index template's name: `template_name`, or the index pattern's
    /// prefix.
    fn template_name(&self) -> String {
        let pattern = self.encoder.index_pattern();
        self.settings
            .config
            .template_name
            .clone()
            .unwrap_or_else(|| pattern.trim_end_matches(['*', '-', '.', '_']).to_string())
    }

    /// What `flowline validate` asks: the server answers, accepts the
    /// credentials and is a supported version, and a template of the
    /// sink's name is not someone else's; one attempt, nothing written.
    pub async fn check(&mut self) -> Result<(), Error> {
        let saved = self.policy.max_attempts.replace(1);
        let r = self.detect().await;
        self.policy.max_attempts = saved;
        let server = r.map_err(|e| match e {
            Error::RetriesExhausted { last, .. } => {
                Error::Config(format!("the search server did not answer: {last}"))
            }
            e => e,
        })?;
        if self.settings.mappings.is_some() {
            let owner = self.settings.config.owner.as_deref();
            template::installed(&self.client, &server, &self.template_name(), owner).await?;
        }
        self.check_target(&server).await
    }

    /// Refuses index names the server would make data streams of, that are
    /// aliases, or that a template outranking the sink's would map (see
    /// [`target`]).
    async fn check_target(&self, server: &Server) -> Result<(), Error> {
        if !server.composable_templates() {
            return Ok(());
        }
        let pattern = self.encoder.index_pattern();
        let found = target::resolve(&self.client, &pattern).await?;
        if let Some(ds) = found.data_streams.first() {
            return Err(Error::Config(format!(
                "`{ds}` on {server} is a data stream matching the sink's index pattern `{pattern}`: a data stream only appends, so it refuses the sink's writes, and a window updated or replayed under its id could not replace the document written before. Fix: an index name that no data stream matches (like \"flowline-metrics-%Y.%m.%d\")"
            )));
        }
        if let Some((alias, indices)) = found
            .aliases
            .iter()
            .find(|(a, _)| self.encoder.writes_to(a))
        {
            return Err(Error::Config(format!(
                "`{alias}` on {server} is an alias (of {}), and a name the sink writes: a write through an alias goes to its write index, which a rollover changes, so a window replayed or updated under its id after a rollover would land in the new index beside the document written before (counted twice). Fix: write to concrete indices, by time if they must roll (like \"flowline-metrics-%Y.%m.%d\", with an ILM delete phase and no rollover), and read them through the alias",
                indices.join(", ")
            )));
        }
        let templates = target::templates(&self.client).await?;
        let index = self
            .encoder
            .index_at(jiff::Timestamp::now().as_millisecond());
        if let Some(all) = &templates {
            let ours = self
                .settings
                .mappings
                .is_some()
                .then(|| self.template_name());
            target::check(all, &index, ours.as_deref())?;
        }
        self.check_auto_create(server, &index, templates.as_deref())
            .await
    }

    /// Refuses an index the server will not create on a write
    /// (`autocreate.rs`).
    async fn check_auto_create(
        &self,
        server: &Server,
        index: &str,
        templates: Option<&[target::Template]>,
    ) -> Result<(), Error> {
        use crate::autocreate::{allows, setting, KEY};
        let Some(setting) = setting(&self.client).await? else {
            return Ok(());
        };
        let by_template = templates
            .and_then(|t| target::winner(t, index))
            .is_some_and(|w| w.allow_auto_create);
        if allows(&setting, index) || by_template {
            return Ok(());
        }
        if !self.encoder.dated() {
            let path = format!("/{index}");
            let resp = crate::request::send(&self.client, Method::Head, &path, &[], None).await?;
            if resp.status_code().is_success() {
                return Ok(());
            }
        }
        let pattern = self.encoder.index_pattern();
        let create = if self.encoder.dated() {
            String::new()
        } else {
            format!(", or create the index `{index}` before the job starts")
        };
        Err(Error::Config(format!(
            "{server} does not create index `{index}` on a write ({KEY} = \"{setting}\"), so every window would come back a dead letter (404 index_not_found_exception). Fix: allow the sink's indices first in {KEY} (like \"+{pattern},{setting}\"), or set allow_auto_create: true in an index template that matches them{create}"
        )))
    }

    /// `GET /` until it answers (within the retry policy); the server it
    /// names, if supported.
    async fn detect(&mut self) -> Result<Server, Error> {
        let mut backoff = self.policy.backoff();
        let url = self.settings.urls.join(", ");
        let mut attempt = 0;
        let first_failure = Instant::now();
        let body = loop {
            let r = self
                .client
                .transport()
                .send(
                    Method::Get,
                    "/",
                    HeaderMap::new(),
                    None::<&()>,
                    None::<Vec<u8>>,
                    None,
                )
                .await;
            let err = match r {
                Ok(resp) if resp.status_code().is_success() => {
                    break resp.json::<serde_json::Value>().await.map_err(|e| {
                        Error::Unreachable {
                            url: url.clone(),
                            message: e.to_string(),
                        }
                    })?
                }
                Ok(resp) => status_error(format!("GET / on {url}"), resp).await,
                Err(e) => Error::Unreachable {
                    url: url.clone(),
                    message: e.to_string(),
                },
            };
            attempt += 1;
            if !err.is_retryable() {
                return Err(err);
            }
            if self.policy.gives_up(attempt, first_failure.elapsed()) {
                return Err(Error::RetriesExhausted {
                    attempts: attempt,
                    secs: first_failure.elapsed().as_secs(),
                    last: format!("{err}. Fix: start the server, or correct url"),
                });
            }
            let wait = backoff.delay(attempt - 1);
            if self.warn.due() {
                tracing::warn!(%url, attempt, retrying_for_s = first_failure.elapsed().as_secs(), error = %err, "search server not reachable, retrying (this warning repeats once a minute while it lasts)");
            }
            tokio::time::sleep(wait).await;
        };
        self.warn.reset();
        let server = Server::parse(&body)?;
        server.check_supported()?;
        Ok(server)
    }

    async fn dispatch(&mut self) -> Result<(), ConnectorError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let items = std::mem::take(&mut self.buffer);
        self.buffer_bytes = 0;
        self.buffer_since = None;
        // A document still in flight in an earlier request: that request
        // lands first (see the module docs).
        while items
            .iter()
            .any(|i| i.doc.is_some_and(|d| self.docs_in_flight.contains_key(&d)))
        {
            self.reap_one().await?;
        }
        let docs: Vec<u64> = items.iter().filter_map(|i| i.doc).collect();
        for d in &docs {
            *self.docs_in_flight.entry(*d).or_default() += 1;
        }
        // Waits while max_in_flight requests are out: backpressure.
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ConnectorError::permanent("sink closed"))?;
        let (client, policy, stats) = (self.client.clone(), self.policy, self.stats.clone());
        let warn = self.warn.clone();
        self.in_flight.spawn(async move {
            let r = send(&client, items, policy, &stats, &warn).await;
            drop(permit);
            (docs, r)
        });
        self.reap(false).await
    }

    /// Collects finished requests (all of them when `all`).
    async fn reap(&mut self, all: bool) -> Result<(), ConnectorError> {
        loop {
            let next = if all {
                self.in_flight.join_next().await
            } else {
                self.in_flight.try_join_next()
            };
            match next {
                None => return Ok(()),
                Some(done) => self.finished(done)?,
            }
        }
    }

    /// Waits for one request in flight to finish.
    async fn reap_one(&mut self) -> Result<(), ConnectorError> {
        match self.in_flight.join_next().await {
            None => Err(ConnectorError::permanent(
                "a document counted in flight with no request in flight",
            )),
            Some(done) => self.finished(done),
        }
    }

    fn finished(&mut self, done: Finished) -> Result<(), ConnectorError> {
        let (docs, r) = done.map_err(|e| ConnectorError::permanent(format!("bulk task: {e}")))?;
        for d in docs {
            if let Some(n) = self.docs_in_flight.get_mut(&d) {
                *n -= 1;
                if *n == 0 {
                    self.docs_in_flight.remove(&d);
                }
            }
        }
        match r {
            Ok(rejected) => {
                self.rejected.extend(rejected);
                Ok(())
            }
            // Retries ran out or the request was refused whole: fail the
            // job; it restarts from its checkpoint and loses nothing.
            Err(e) => Err(ConnectorError::permanent(e.to_string()).with_source(e)),
        }
    }

    fn take_rejected(&mut self) -> Result<(), ConnectorError> {
        if self.rejected.is_empty() {
            Ok(())
        } else {
            Err(ConnectorError::BadRecords(std::mem::take(
                &mut self.rejected,
            )))
        }
    }
}

impl Sink for EsSink {
    async fn write(&mut self, batch: Vec<Record>) -> Result<(), ConnectorError> {
        if self.server.is_none() {
            self.start().await?;
        }
        let c = &self.settings.config;
        let (max_actions, max_bytes, interval) =
            (c.max_actions, c.max_bytes, self.settings.flush_interval);
        for r in batch {
            match self.encoder.encode_doc(&r) {
                Ok((lines, doc)) => {
                    self.buffer_bytes += lines.len();
                    self.buffer.push(Item {
                        record: r,
                        lines,
                        doc,
                    });
                    self.buffer_since.get_or_insert_with(Instant::now);
                    if self.buffer.len() >= max_actions || self.buffer_bytes >= max_bytes {
                        self.dispatch().await?;
                    }
                }
                Err(reason) => {
                    self.stats.rejected.fetch_add(1, Relaxed);
                    self.rejected.push(Rejected::new(r, reason));
                }
            }
        }
        if self.buffer_since.is_some_and(|t| t.elapsed() >= interval) {
            self.dispatch().await?;
        }
        self.reap(false).await?;
        self.take_rejected()
    }

    async fn flush(&mut self) -> Result<(), ConnectorError> {
        self.dispatch().await?;
        self.reap(true).await?;
        self.take_rejected()
    }

    fn counters(&self) -> Option<CounterReader> {
        let s = self.stats.clone();
        Some(std::sync::Arc::new(move || {
            vec![
                Counter::new(
                    "bulk_requests_total",
                    "Bulk requests sent to the search server, retries included.",
                    s.bulk_requests.load(Relaxed),
                ),
                Counter::new(
                    "documents_total",
                    "Documents the search server acknowledged.",
                    s.documents.load(Relaxed),
                ),
                Counter::new(
                    "retries_total",
                    "Retries of retryable sink errors.",
                    s.retries.load(Relaxed),
                ),
                Counter::new(
                    "rejected_total",
                    "Documents the sink dead-lettered (the server refused them).",
                    s.rejected.load(Relaxed),
                ),
            ]
        }))
    }

    async fn check(&mut self) -> Result<(), ConnectorError> {
        EsSink::check(self).await.map_err(ConnectorError::from)
    }

    async fn restore(&mut self, _state: Option<Vec<u8>>) -> Result<(), ConnectorError> {
        // Idempotent ids make replays overwrite: no state to restore. This
        // is the sink's start: detect the server, install the template.
        self.start().await.map_err(ConnectorError::from)
    }
}
