//! # flowline
//!
//! The metrics aggregation job and the `flowline` command line, the top
//! layer: it knows the runtime and every connector. Its modules, in the
//! order a job file meets them:
//!
//! - [`cli`]: the command line (`run`, `validate`, `connectors`, `health`,
//!   `top`, `tap`, `new`, `demo`) as a library; a binary with extra connectors runs it
//!   through [`cli::main_with`];
//! - [`config`]: the job file, read into a `JobPlan` with every setting
//!   range-checked (`${VAR:-default}` expansion in `expand`, secrets
//!   redacted in errors by `redact`);
//! - [`build`]: the job builder, `JobPlan` → runtime `StreamEnvironment`,
//!   with the connectors from the [`registry`] and the checkpoint store
//!   (static Kafka group membership in `member`);
//! - [`metric`]: metric events decoded, in the default shape or another
//!   (`[event]`);
//! - [`job`]: the metrics job itself: decode, key by host and metric,
//!   event-time windows, one document per key and window;
//! - [`aggregates`]: what each window document carries (`[window]
//!   aggregates`);
//! - [`stats`] and [`sketch`]: the window aggregate (count, sum, min, max)
//!   and its relative-error percentile sketch;
//! - [`anomaly`]: per-key anomaly detection over the fired windows, and the
//!   current-status documents;
//! - [`mapping`]: the index mappings of the job's documents, handed to its
//!   Elasticsearch outputs (the connector knows no document shape);
//! - [`results`]: the newest window results and anomalies, and a few
//!   watched keys' history, for the API;
//! - [`api`]: the versioned JSON API (`/api/v1/`), its OpenAPI document
//!   ([`openapi`]) and the rates it shows ([`rates`]);
//! - [`page`]: the job page at `/`, embedded in the binary;
//! - [`http`]: the server: the page, `/health`, `/ready`, `/metrics`,
//!   `/api/status`, the API, and the health probe;
//! - [`logging`]: log filter, format and colour;
//! - [`demo`]: generator → in-memory source → job → files;
//! - [`scaffold`]: `flowline new connector`'s templates.

#![warn(missing_docs)]

pub mod aggregates;
pub mod anomaly;
pub mod api;
pub mod build;
pub mod cli;
pub mod config;
pub mod decimal;
pub mod demo;
pub mod event;
pub mod exact_sum;
mod expand;
pub mod horizon;
pub mod http;
pub mod ids;
pub mod job;
pub mod logging;
pub mod mapping;
mod member;
pub mod metric;
pub mod openapi;
pub mod page;
pub mod parallel;
pub mod rates;
mod redact;
pub mod render;
pub mod results;
pub mod scaffold;
pub mod sketch;
pub mod stats;

use flowline_connector_api::{ConnectorError, Registry};

/// Errors of the job builder.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The job file is wrong.
    #[error("config error in `{field}`: {message}")]
    Config {
        /// The field (`window.size`, `source.type`).
        field: String,
        /// What is wrong and the fix.
        message: String,
    },
    /// A connector refused its settings or is unknown / incompatible.
    #[error("{section}: {source}")]
    Connector {
        /// `source`, `sink`, `dead_letter`, `late`.
        section: String,
        /// The connector's error.
        #[source]
        source: ConnectorError,
    },
    /// The runtime refused the job or failed.
    #[error(transparent)]
    Runtime(#[from] flowline_runtime::RuntimeError),
    /// A checkpoint store could not be opened.
    #[error(transparent)]
    Checkpoint(#[from] flowline_checkpoint::CheckpointError),
    /// The checkpoint a job would restore cannot be restored by it.
    #[error("[checkpoint] the checkpoint this job would restore: {0}")]
    Restore(#[source] flowline_runtime::RuntimeError),
    /// Reading or writing a file, a terminal or a socket failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done (`writing to standard output`).
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A running job did not answer its health check as healthy.
    #[error("{0}")]
    Unhealthy(String),
    /// A running job's API could not be read (`flowline top`, `tap`).
    #[error("{0}")]
    Api(String),
}

impl Error {
    /// An I/O error with what was being done.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}

/// Every connector this build knows.
pub fn registry() -> Registry {
    let mut r = Registry::new();
    flowline_file::register(&mut r).expect("built-in connectors match this runtime's API");
    flowline_elasticsearch::register(&mut r).expect("built-in connectors match this runtime's API");
    flowline_kafka::register(&mut r).expect("built-in connectors match this runtime's API");
    r
}
