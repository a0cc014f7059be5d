//! `type = "webhook"`: POSTs records to an HTTP endpoint as NDJSON batches.
//!
//! An example of a connector written the way an outside author would: it
//! depends on `flowline-connector-api` only (and the testkit for its tests),
//! started from `flowline new connector webhook --kind sink`.
//!
//! - `write` buffers; a batch goes out at `max_batch` records and at
//!   `flush`, which returns only when the endpoint has answered 2xx.
//! - Each request carries an `Idempotency-Key` (the keys of its first and
//!   last record and the batch size), so a receiver can drop a batch it has
//!   seen: a replay after a crash then does not double it.
//! - Answers are classified: 429, 5xx and connection errors are retryable
//!   (the runtime retries with backoff); 413 and other 4xx are permanent,
//!   with the endpoint's answer in the message. A record that is not valid
//!   JSON is a bad record: it goes to the dead-letter sink, the rest are
//!   sent.
//!
//! ```toml
//! [sink]
//! type = "webhook"
//! url = "https://hooks.example.com/flowline"
//! bearer_token = "${WEBHOOK_TOKEN}"   # never logged
//! max_batch = 500
//! timeout = "10s"
//! ```

use std::time::Duration;

use flowline_connector_api::{
    ConfigField, ConnectorDescriptor, ConnectorError, ConnectorKind, Record, Rejected, Sink,
    SinkFactory,
};
use serde::Deserialize;

/// The job file section.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The endpoint (`http://` or `https://`).
    pub url: String,
    /// `Authorization: Bearer ...` (never logged).
    pub bearer_token: Option<String>,
    /// Records per request.
    #[serde(default = "d_batch")]
    pub max_batch: usize,
    /// Timeout of one request, in seconds or like `"10s"`, `"500ms"`.
    #[serde(default = "d_timeout")]
    pub timeout: String,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .field("bearer_token", &self.bearer_token.as_ref().map(|_| "***"))
            .field("max_batch", &self.max_batch)
            .field("timeout", &self.timeout)
            .finish()
    }
}

fn d_batch() -> usize {
    500
}
fn d_timeout() -> String {
    "10s".into()
}

fn parse_timeout(v: &str) -> Option<Duration> {
    if let Some(ms) = v.strip_suffix("ms") {
        return ms.trim().parse().ok().map(Duration::from_millis);
    }
    v.strip_suffix('s')
        .unwrap_or(v)
        .trim()
        .parse()
        .ok()
        .map(Duration::from_secs_f64)
}

/// The sink.
#[derive(Debug)]
pub struct WebhookSink {
    cfg: WebhookConfig,
    client: reqwest::Client,
    buffer: Vec<Record>,
}

impl WebhookSink {
    /// Sends the buffer as one request; keeps it when the request fails, so
    /// a retry sends the same batch.
    async fn send(&mut self) -> Result<(), ConnectorError> {
        let mut body = Vec::new();
        let mut rejected = Vec::new();
        let mut sent = Vec::with_capacity(self.buffer.len());
        for r in std::mem::take(&mut self.buffer) {
            if serde_json::from_slice::<serde::de::IgnoredAny>(&r.payload).is_err() {
                rejected.push(Rejected::new(
                    r,
                    "payload is not JSON; a webhook body is NDJSON",
                ));
                continue;
            }
            body.extend_from_slice(&r.payload);
            body.push(b'\n');
            sent.push(r);
        }
        if !sent.is_empty() {
            let key = |r: Option<&Record>| {
                r.and_then(|r| r.key.as_deref())
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .unwrap_or_default()
            };
            let idem = format!("{}..{}#{}", key(sent.first()), key(sent.last()), sent.len());
            let mut req = self
                .client
                .post(&self.cfg.url)
                .header("content-type", "application/x-ndjson")
                .header("idempotency-key", idem)
                .body(body);
            if let Some(t) = &self.cfg.bearer_token {
                req = req.bearer_auth(t);
            }
            let outcome = match req.send().await {
                Err(e) => Err(ConnectorError::retryable(format!(
                    "POST {} failed: {e}",
                    self.cfg.url
                ))),
                Ok(resp) if resp.status().is_success() => Ok(()),
                Ok(resp) => {
                    let status = resp.status();
                    let text = resp.text().await.unwrap_or_default();
                    let msg = format!(
                        "POST {} answered {status}: {}",
                        self.cfg.url,
                        text.chars().take(200).collect::<String>()
                    );
                    if status.as_u16() == 429 || status.is_server_error() {
                        Err(ConnectorError::retryable(msg))
                    } else {
                        Err(ConnectorError::permanent(msg))
                    }
                }
            };
            if let Err(e) = outcome {
                // Keep the batch for the retry (bad records are reported
                // with the next successful send).
                self.buffer = sent;
                self.buffer.extend(rejected.into_iter().map(|r| r.record));
                return Err(e);
            }
        }
        if rejected.is_empty() {
            Ok(())
        } else {
            Err(ConnectorError::BadRecords(rejected))
        }
    }
}

impl Sink for WebhookSink {
    async fn write(&mut self, batch: Vec<Record>) -> Result<(), ConnectorError> {
        self.buffer.extend(batch);
        if self.buffer.len() >= self.cfg.max_batch {
            self.send().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), ConnectorError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        self.send().await
    }
}

/// Builds the sink; registered as `webhook`.
#[derive(Debug, Clone, Copy, Default)]
pub struct WebhookFactory;

impl SinkFactory for WebhookFactory {
    type Config = WebhookConfig;
    type Sink = WebhookSink;

    fn descriptor(&self) -> ConnectorDescriptor {
        ConnectorDescriptor::new("webhook", env!("CARGO_PKG_VERSION"), ConnectorKind::Sink)
            .with_description("POSTs records to an HTTP endpoint as NDJSON batches")
            .with_field(ConfigField::required("url", "string", "the endpoint"))
    }

    /// Everything `build` checks; it contacts nothing, so
    /// `flowline validate --offline` runs it.
    fn check_config(&self, cfg: &WebhookConfig) -> Result<(), ConnectorError> {
        self.build(cfg.clone()).map(|_| ())
    }

    fn build(&self, cfg: WebhookConfig) -> Result<WebhookSink, ConnectorError> {
        let fail = |m: String| ConnectorError::config("webhook", m);
        if !(cfg.url.starts_with("http://") || cfg.url.starts_with("https://")) {
            return Err(fail(format!(
                "url `{}` is not an http(s) URL. Fix: url = \"https://host/path\"",
                cfg.url
            )));
        }
        if cfg.max_batch == 0 {
            return Err(fail(
                "max_batch must be at least 1. Fix: max_batch = 500".into(),
            ));
        }
        let timeout = parse_timeout(&cfg.timeout).ok_or_else(|| {
            fail(format!(
                "timeout `{}` is not a duration. Fix: \"10s\" or \"500ms\"",
                cfg.timeout
            ))
        })?;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| fail(format!("cannot build the HTTP client: {e}")))?;
        Ok(WebhookSink {
            cfg,
            client,
            buffer: Vec::new(),
        })
    }
}
