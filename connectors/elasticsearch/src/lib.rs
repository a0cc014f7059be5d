//! # flowline-elasticsearch
//!
//! An Elasticsearch / OpenSearch sink (`type = "elasticsearch"`) for
//! Flowline's connector API 2.x, with the `elasticsearch` crate.
//!
//! ```toml
//! [sink]
//! type = "elasticsearch"
//! url = "http://127.0.0.1:9200"     # or urls = [...]
//! index = "flowline-metrics"        # a name, or a date pattern: "flowline-metrics-%Y.%m.%d"
//! ```
//!
//! ## What it guarantees
//!
//! - **Nothing doubled**: document ids are deterministic (the record key:
//!   host, metric and window start for window documents; or `id_fields`),
//!   and the action is `index` by default, so a replay after a restart
//!   overwrites the same documents. A version conflict on `create` counts as
//!   done (the id exists: that document is the one a replay writes, so use
//!   `create` only for documents never written again with new content);
//!   one on `update` (another writer changed the document between the
//!   server's read and write) is sent again, as the update was not applied.
//! - **Nothing lost**: `flush` returns only when every document written
//!   before it is acknowledged. Items failing with 429 or 5xx, and whole
//!   requests failing on connection errors, timeouts, 429 or 5xx, are retried
//!   with exponential backoff and full jitter, without limit by default: a
//!   streaming job rides out an outage of its server with backpressure
//!   (the buffer and `max_in_flight` stay bounded), warning once a minute.
//!   `max_attempts` or `max_retry_duration` set a limit; past it the job
//!   fails (and restarts from its checkpoint).
//! - **An index that takes no writes is an outage, not a bad document**:
//!   items answered with 401 or 403 (`cluster_block_exception` for
//!   `index.blocks.write` or `read_only_allow_delete`, `security_exception`
//!   for a user without the privilege to write the index), 400
//!   `index_closed_exception`, 404 `index_not_found_exception`, 400 for a
//!   default pipeline that does not exist, and whole requests answered 403
//!   with `cluster_block_exception` (`cluster.blocks.read_only`), are
//!   retried the same way, the warning naming the fix (`bulk::classify`).
//! - **The last write of a document stays**: requests in flight together
//!   never hold two writes of one id (a window re-emitted by a late event,
//!   a replay), since they can land in either order; a request with a
//!   document still in flight waits for the earlier one.
//! - **Ids within the servers' limit**: an id longer than 512 bytes becomes
//!   a readable prefix, `~` and the SHA-256 of the whole id (deterministic).
//! - **A request the server refuses whole** (400, 413) is split in halves
//!   until the document it refuses is found; that one is dead-lettered with
//!   the server's reason, the others land.
//! - **One bad document never kills the job**: items the server rejects
//!   (`mapper_parsing_exception`, `document_parsing_exception`,
//!   `strict_dynamic_mapping_exception`, `illegal_argument_exception`, any
//!   other 4xx that is not the index's; an ingest pipeline's refusal answered
//!   with a 5xx, `fail_processor_exception`, which would fail the same way
//!   each time) come back as bad records with the server's error type and
//!   reason, for the dead-letter sink; the rest of the batch lands.
//! - **Bounded memory**: documents are buffered up to `max_actions` (1000) or
//!   `max_bytes` (5 MB); at most `max_in_flight` (2) bulk requests are out;
//!   `write` waits when the limit is reached. Memory stays below about
//!   2 × `max_bytes` × (`max_in_flight` + 1) (each document is kept encoded
//!   and as its record, for dead-lettering).
//! - **Typed fields**: at start the sink detects the server (`GET /`;
//!   Elasticsearch 7, 8, 9, OpenSearch 1, 2, 3; anything else is refused by
//!   name) and installs an index template (composable, or legacy before
//!   Elasticsearch 7.8) with the fields the config names
//!   (`[sink.template] fields`, field → type, or a JSON `file`), the
//!   `time_field` as `date`, other strings as `keyword` and other numbers as
//!   `double`; it updates it only when it differs. The connector knows no
//!   document shape: a job passes the mapping of its own documents. An
//!   index that exists already and maps a templated field so that values
//!   would change (`long` for `double`: a fraction is cut) has its
//!   documents refused with the reason (`existing.rs`).
//! - **Auth**: basic, API key, bearer token; TLS with a CA file or the system
//!   roots; certificate checks off only with `insecure_skip_verify = true`,
//!   logged as a warning. Secrets never appear in logs or `Debug` output.
//!
//! One file per responsibility: [`config`], [`encode`], [`bulk`] (request
//! body and per-item results), [`retry`], [`template`], [`detect`], and the
//! [`sink`] that puts them together.

#![warn(missing_docs)]

mod autocreate;
pub mod bulk;
pub mod config;
pub mod detect;
pub mod encode;
mod error;
mod existing;
mod request;
pub mod retry;
mod send;
pub mod sink;
mod target;
pub mod template;

pub use config::{Action, EsSinkConfig, FieldType, TemplateSetting, TemplateSpec};
pub use error::Error;
pub use sink::{EsSink, SinkStats};

use flowline_connector_api::{
    ConfigField, ConnectorDescriptor, ConnectorError, ConnectorKind, Registry, SinkFactory,
};

/// Builds [`EsSink`]s from `[sink] type = "elasticsearch"`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ElasticsearchSinkFactory;

impl SinkFactory for ElasticsearchSinkFactory {
    type Config = EsSinkConfig;
    type Sink = EsSink;

    fn descriptor(&self) -> ConnectorDescriptor {
        ConnectorDescriptor::new(
            "elasticsearch",
            env!("CARGO_PKG_VERSION"),
            ConnectorKind::Sink,
        )
        .with_description("Bulk-indexes documents into Elasticsearch 7/8/9 or OpenSearch 1/2/3")
        .with_field(ConfigField::required(
            "url",
            "string",
            "server URL (or urls = [...])",
        ))
        .with_field(ConfigField::required(
            "index",
            "string",
            "index name or date pattern",
        ))
        .with_field(ConfigField::optional(
            "action",
            "string",
            "index",
            "index | create | update",
        ))
        .with_field(ConfigField::optional(
            "max_actions",
            "integer",
            "1000",
            "documents per bulk request",
        ))
        .with_field(ConfigField::optional(
            "max_bytes",
            "integer",
            "5242880",
            "bytes per bulk request",
        ))
        .with_field(ConfigField::optional(
            "max_in_flight",
            "integer",
            "2",
            "bulk requests in flight",
        ))
        .with_field(ConfigField::optional(
            "max_attempts",
            "integer",
            "no limit",
            "attempts per request (429, 5xx, connection errors)",
        ))
        .with_field(ConfigField::optional(
            "time_field",
            "string",
            "none",
            "the documents' time field: a date in the template, and the dated index's time when a record has none",
        ))
        .with_field(ConfigField::optional(
            "template",
            "bool or table",
            "true",
            "false, true, or { fields = { \"host.name\" = \"keyword\", … } } or { file = \"mappings.json\" }",
        ))
        .with_field(ConfigField::optional(
            "max_retry_duration",
            "duration",
            "no limit",
            "give up retrying a request this long after its first failure",
        ))
    }

    fn build(&self, c: EsSinkConfig) -> Result<EsSink, ConnectorError> {
        let settings = c.check()?;
        Ok(EsSink::new(settings)?)
    }
    /// All of `build`: it contacts no server (the sink does in `restore`).
    fn check_config(&self, c: &EsSinkConfig) -> Result<(), ConnectorError> {
        self.build(c.clone()).map(|_| ())
    }
}

/// Registers this crate's connectors.
pub fn register(r: &mut Registry) -> Result<(), ConnectorError> {
    r.register_sink(ElasticsearchSinkFactory)?;
    Ok(())
}
