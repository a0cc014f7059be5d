//! `flowline new connector NAME`: a new connector crate that builds, passes
//! the conformance suites of `flowline-connector-testkit`, and shows where
//! the real work goes. The templates follow the connector guide
//! (docs/connectors.md): a config with `deny_unknown_fields`, the typed
//! trait, a factory with a descriptor, and the suite as an integration test.

use std::path::{Path, PathBuf};

use crate::Error;

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A source.
    Source,
    /// A sink.
    Sink,
}

/// Options of `flowline new connector`.
#[derive(Debug, Clone)]
pub struct NewConnector {
    /// Connector type name, as written in job files (`type = "NAME"`).
    pub name: String,
    /// Source or sink.
    pub kind: Kind,
    /// Directory to create (must not exist, or be empty).
    pub path: PathBuf,
    /// A Flowline checkout to depend on by path; `None`: the source tree
    /// this binary was built from ([`built_from`]).
    pub flowline: Option<PathBuf>,
}

fn bad(field: &str, message: String) -> Error {
    Error::Config {
        field: field.into(),
        message,
    }
}

/// Checks the name: lower-case letters, digits and `-`, starting with a
/// letter.
pub fn check_name(name: &str) -> Result<(), Error> {
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(bad(
            "NAME",
            format!("`{name}` is not a connector name. Fix: lower-case letters, digits and `-`, starting with a letter, e.g. `webhook`"),
        ))
    }
}

/// `webhook-out` → `WebhookOut`.
fn camel(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The Flowline source tree this binary was built from.
const BUILT_FROM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// The source tree this binary was built from, while it is still there:
/// the default `--flowline` (the crates are not on a registry).
pub fn built_from() -> Option<PathBuf> {
    let p = std::fs::canonicalize(BUILT_FROM).ok()?;
    p.join("crates/connector-api/Cargo.toml")
        .is_file()
        .then_some(p)
}

/// The files, relative to the crate directory.
pub fn render(o: &NewConnector) -> Result<Vec<(PathBuf, String)>, Error> {
    check_name(&o.name)?;
    let ty = camel(&o.name);
    let snake = o.name.replace('-', "_");
    let checkout = o.flowline.clone().or_else(built_from);
    let (api, kit) = match &checkout {
        Some(p) => {
            let p = std::fs::canonicalize(p).map_err(|e| {
                bad(
                    "--flowline",
                    format!(
                        "`{}`: {e}. Fix: the path of a Flowline checkout",
                        p.display()
                    ),
                )
            })?;
            if !p.join("crates/connector-api/Cargo.toml").is_file() {
                return Err(bad(
                    "--flowline",
                    format!("`{}` is not a Flowline checkout (no crates/connector-api). Fix: the path of a Flowline checkout", p.display()),
                ));
            }
            (
                format!(
                    "{{ path = \"{}\" }}",
                    p.join("crates/connector-api").display()
                ),
                format!("{{ path = \"{}\" }}", p.join("crates/testkit").display()),
            )
        }
        None => {
            return Err(bad(
                "--flowline",
                format!(
                    "the Flowline crates are not on a registry, and the source tree this binary was built from ({}) is gone. Fix: pass --flowline PATH, the path of a Flowline checkout",
                    BUILT_FROM
                ),
            ))
        }
    };
    let kind = match o.kind {
        Kind::Source => "source",
        Kind::Sink => "sink",
    };
    let cargo = format!(
        r#"[package]
name = "flowline-{name}"
version = "0.1.0"
edition = "2021"
description = "A Flowline {kind} connector: `type = \"{name}\"`"
license = "Apache-2.0"

# A crate of its own; to make it a member of a workspace instead, remove
# this table and add the directory to that workspace's members.
[workspace]

[dependencies]
flowline-connector-api = {api}
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"

[dev-dependencies]
flowline-connector-testkit = {kit}
tokio = {{ version = "1", features = ["macros", "rt-multi-thread"] }}
"#,
        name = o.name
    );
    let lib = match o.kind {
        Kind::Source => SOURCE_LIB,
        Kind::Sink => SINK_LIB,
    }
    .replace("__NAME__", &o.name)
    .replace("__TYPE__", &ty);
    let test = match o.kind {
        Kind::Source => SOURCE_TEST,
        Kind::Sink => SINK_TEST,
    }
    .replace("__NAME__", &o.name)
    .replace("__TYPE__", &ty)
    .replace("__CRATE__", &format!("flowline_{snake}"));
    let readme = format!(
        "# flowline-{name}\n\nA Flowline {kind} connector, `type = \"{name}\"` in a job file, \
         written against connector API {api_v}.\n\n```sh\ncargo test      # the conformance suite of flowline-connector-testkit\n```\n\n\
         Register it in a runtime with `registry.register_{kind}({ty}Factory)`. \
         The rules it must keep (positions, checkpoints, error classes) are in \
         Flowline's docs/connectors.md; the API's evolution policy in docs/api-evolution.md.\n",
        name = o.name,
        api_v = flowline_connector_api::API_VERSION,
    );
    Ok(vec![
        (PathBuf::from("Cargo.toml"), cargo),
        (PathBuf::from("src/lib.rs"), lib),
        (PathBuf::from("tests/conformance.rs"), test),
        (PathBuf::from("README.md"), readme),
    ])
}

/// Writes the crate; refuses a non-empty directory.
pub fn generate(o: &NewConnector) -> Result<Vec<PathBuf>, Error> {
    let files = render(o)?;
    if o.path.exists()
        && std::fs::read_dir(&o.path)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(bad(
            "--path",
            format!(
                "`{}` exists and is not empty. Fix: choose a new directory",
                o.path.display()
            ),
        ));
    }
    let mut written = Vec::new();
    for (rel, text) in files {
        let p = o.path.join(&rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d)
                .map_err(|e| bad("--path", format!("cannot create `{}`: {e}", d.display())))?;
        }
        std::fs::write(&p, text)
            .map_err(|e| bad("--path", format!("cannot write `{}`: {e}", p.display())))?;
        written.push(p);
    }
    // Best effort: lay the code out as rustfmt would for this name.
    let rs: Vec<&PathBuf> = written
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    let _ = std::process::Command::new("rustfmt")
        .args(["--edition", "2021"])
        .args(&rs)
        .stderr(std::process::Stdio::null())
        .status();
    Ok(written)
}

/// Default directory: `./flowline-NAME`.
pub fn default_path(name: &str) -> PathBuf {
    Path::new(".").join(format!("flowline-{name}"))
}

const SOURCE_LIB: &str = r#"//! `type = "__NAME__"`: a Flowline source.
//!
//! Generated by `flowline new connector`. Replace the numbers with reads
//! from your system; keep the rules: every record carries its partition and
//! offset, `seek` continues from a position, `next` never blocks forever
//! (return `SourceEvent::Idle`), errors are classified.

use flowline_connector_api::{
    ConfigField, ConnectorDescriptor, ConnectorError, ConnectorKind, PartitionId, Record, Source,
    SourceEvent, SourceFactory, SourcePosition,
};
use serde::Deserialize;

/// The job file section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct __TYPE__Config {
    /// Partitions to read.
    #[serde(default = "one")]
    pub partitions: u32,
    /// Records per partition (bounded input).
    pub count: u64,
}

fn one() -> u32 {
    1
}

/// The source.
#[derive(Debug)]
pub struct __TYPE__Source {
    cfg: __TYPE__Config,
    next: Vec<u64>,
}

impl __TYPE__Source {
    fn pid(p: usize) -> PartitionId {
        PartitionId::new(format!("__NAME__-{p}"))
    }
}

impl Source for __TYPE__Source {
    async fn next(&mut self) -> Result<SourceEvent, ConnectorError> {
        // TODO: read a batch from your system here.
        for (p, next) in self.next.iter_mut().enumerate() {
            if *next < self.cfg.count {
                let end = (*next + 100).min(self.cfg.count);
                let batch = (*next..end)
                    .map(|o| Record::new(format!("{p}:{o}")).at(Self::pid(p), o))
                    .collect();
                *next = end;
                return Ok(SourceEvent::Records(batch));
            }
        }
        Ok(SourceEvent::End)
    }

    async fn seek(&mut self, position: &SourcePosition) -> Result<(), ConnectorError> {
        for (p, next) in self.next.iter_mut().enumerate() {
            if let Some(o) = position.get(&Self::pid(p)) {
                *next = o;
            }
        }
        Ok(())
    }
}

/// Builds the source from its section; registered as `__NAME__`.
#[derive(Debug, Clone, Copy, Default)]
pub struct __TYPE__Factory;

impl SourceFactory for __TYPE__Factory {
    type Config = __TYPE__Config;
    type Source = __TYPE__Source;

    fn descriptor(&self) -> ConnectorDescriptor {
        ConnectorDescriptor::new("__NAME__", env!("CARGO_PKG_VERSION"), ConnectorKind::Source)
            .with_description("TODO: one line on what it reads")
            .with_field(ConfigField::required("count", "integer", "records per partition"))
    }

    fn build(&self, cfg: __TYPE__Config) -> Result<__TYPE__Source, ConnectorError> {
        if cfg.partitions == 0 {
            return Err(ConnectorError::config(
                "__NAME__",
                "partitions must be at least 1. Fix: partitions = 1",
            ));
        }
        Ok(__TYPE__Source {
            next: vec![0; cfg.partitions as usize],
            cfg,
        })
    }
}
"#;

const SOURCE_TEST: &str = r#"//! The conformance suite: positions, seek, end of input.

use flowline_connector_api::{parse_config, BoxSource, SourceFactory};
use flowline_connector_testkit::source::{bounded_source_suite, Expected};
use __CRATE__::__TYPE__Factory;

#[tokio::test]
async fn passes_the_bounded_source_suite() {
    let expected = Expected::new()
        .partition("__NAME__-0", (0..250).map(|o| format!("0:{o}").into_bytes()).collect())
        .partition("__NAME__-1", (0..250).map(|o| format!("1:{o}").into_bytes()).collect());
    let make = || {
        let cfg = parse_config("__NAME__", serde_json::json!({"partitions": 2, "count": 250}))?;
        Ok(Box::new(__TYPE__Factory.build(cfg)?) as BoxSource)
    };
    bounded_source_suite(make, &expected).await;
}

#[test]
fn bad_config_names_the_field() {
    let err = parse_config::<<__TYPE__Factory as SourceFactory>::Config>(
        "__NAME__",
        serde_json::json!({"cout": 1}),
    )
    .unwrap_err();
    assert!(err.to_string().contains("unknown field `cout`"), "{err}");
}
"#;

const SINK_LIB: &str = r#"//! `type = "__NAME__"`: a Flowline sink.
//!
//! Generated by `flowline new connector`. Replace the in-memory store with
//! your system's client; keep the rules: `flush` returns only when every
//! record written is durable, records the system refuses come back as
//! `ConnectorError::BadRecords` (they are dead-lettered), transient failures
//! are `retryable`. Writing by key makes a replay after a crash overwrite,
//! not duplicate (exactly once in effect).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use flowline_connector_api::{
    ConfigField, ConnectorDescriptor, ConnectorError, ConnectorKind, Record, Rejected, Sink,
    SinkFactory,
};
use serde::Deserialize;

/// The job file section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct __TYPE__Config {
    /// Where to write (TODO: your system's address).
    pub target: String,
    /// Records buffered before a write to the system.
    #[serde(default = "d_batch")]
    pub max_batch: usize,
}

fn d_batch() -> usize {
    500
}

/// Stands in for the external system: documents by key.
#[derive(Debug, Clone, Default)]
pub struct Store(pub Arc<Mutex<BTreeMap<Vec<u8>, Vec<u8>>>>);

/// The sink.
#[derive(Debug)]
pub struct __TYPE__Sink {
    cfg: __TYPE__Config,
    store: Store,
    buffer: Vec<Record>,
}

impl __TYPE__Sink {
    fn send(&mut self) -> Result<(), ConnectorError> {
        // TODO: one request to your system with the buffered records.
        let mut m = self.store.0.lock().map_err(|_| ConnectorError::permanent("store poisoned"))?;
        let mut rejected = Vec::new();
        for r in self.buffer.drain(..) {
            match r.key.clone() {
                Some(k) => {
                    m.insert(k, r.payload);
                }
                None => rejected.push(Rejected::new(r, "a record needs a key: it is the document id")),
            }
        }
        if rejected.is_empty() {
            Ok(())
        } else {
            // Refused records go back to the runtime, which dead-letters them.
            Err(ConnectorError::BadRecords(rejected))
        }
    }
}

impl Sink for __TYPE__Sink {
    async fn write(&mut self, batch: Vec<Record>) -> Result<(), ConnectorError> {
        self.buffer.extend(batch);
        if self.buffer.len() >= self.cfg.max_batch {
            self.send()?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), ConnectorError> {
        self.send()
    }
}

/// Builds the sink from its section; registered as `__NAME__`.
#[derive(Debug, Clone, Default)]
pub struct __TYPE__Factory(pub Store);

impl SinkFactory for __TYPE__Factory {
    type Config = __TYPE__Config;
    type Sink = __TYPE__Sink;

    fn descriptor(&self) -> ConnectorDescriptor {
        ConnectorDescriptor::new("__NAME__", env!("CARGO_PKG_VERSION"), ConnectorKind::Sink)
            .with_description("TODO: one line on what it writes to")
            .with_field(ConfigField::required("target", "string", "where to write"))
    }

    fn build(&self, cfg: __TYPE__Config) -> Result<__TYPE__Sink, ConnectorError> {
        if cfg.max_batch == 0 {
            return Err(ConnectorError::config(
                "__NAME__",
                "max_batch must be at least 1. Fix: max_batch = 500",
            ));
        }
        Ok(__TYPE__Sink {
            cfg,
            store: self.0.clone(),
            buffer: Vec::new(),
        })
    }
}
"#;

const SINK_TEST: &str = r#"//! The conformance suite: durable after flush; nothing lost or doubled
//! through a crash and a replay.

use flowline_connector_api::{parse_config, BoxSink, SinkFactory};
use flowline_connector_testkit::sink::{sink_suite, Guarantee};
use __CRATE__::{__TYPE__Factory, Store};

#[tokio::test]
async fn passes_the_sink_suite() {
    let store = Store::default();
    let factory = __TYPE__Factory(store.clone());
    let make = || {
        let cfg = parse_config("__NAME__", serde_json::json!({"target": "test"}))?;
        Ok(Box::new(factory.build(cfg)?) as BoxSink)
    };
    let read = || async { store.0.lock().unwrap().values().cloned().collect() };
    sink_suite(make, read, Guarantee::ExactlyOnce).await;
}
"#;
