//! The connector registry: lists connectors and refuses incompatible ones.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::{
    ApiVersion, BoxSink, BoxSource, ConnectorDescriptor, ConnectorError, ConnectorKind,
    DynSinkFactory, DynSourceFactory, API_VERSION,
};

/// Connectors by name, checked against the API version the runtime implements.
#[derive(Clone)]
pub struct Registry {
    runtime: ApiVersion,
    sources: BTreeMap<String, Arc<dyn DynSourceFactory>>,
    sinks: BTreeMap<String, Arc<dyn DynSinkFactory>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("runtime", &self.runtime)
            .field("sources", &self.sources.keys().collect::<Vec<_>>())
            .field("sinks", &self.sinks.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// An empty registry for a runtime implementing [`API_VERSION`].
    pub fn new() -> Self {
        Self::for_runtime(API_VERSION)
    }

    /// An empty registry for a runtime implementing `runtime`.
    pub fn for_runtime(runtime: ApiVersion) -> Self {
        Self {
            runtime,
            sources: BTreeMap::new(),
            sinks: BTreeMap::new(),
        }
    }

    fn check(&self, d: &ConnectorDescriptor) -> Result<(), ConnectorError> {
        if d.api_version.runs_on(self.runtime) {
            return Ok(());
        }
        let fix = if d.api_version.major != self.runtime.major {
            format!(
                "rebuild `{}` against flowline-connector-api {}.x, or run a Flowline release that implements connector API {}.x",
                d.name, self.runtime.major, d.api_version.major
            )
        } else {
            format!(
                "upgrade Flowline to a release that implements connector API {} or later, or rebuild `{}` against flowline-connector-api {}",
                d.api_version, d.name, self.runtime
            )
        };
        Err(ConnectorError::IncompatibleApi {
            connector: d.name.clone(),
            connector_version: d.version.clone(),
            built_for: d.api_version,
            runtime: self.runtime,
            runtime_major: self.runtime.major,
            fix,
        })
    }

    /// Registers a source factory, refusing it when its API version is
    /// incompatible. A name registered twice: the later one wins.
    pub fn register_source(
        &mut self,
        factory: impl DynSourceFactory,
    ) -> Result<&mut Self, ConnectorError> {
        let d = factory.descriptor();
        self.check(&d)?;
        self.sources.insert(d.name, Arc::new(factory));
        Ok(self)
    }

    /// Registers a sink factory; see [`Registry::register_source`].
    pub fn register_sink(
        &mut self,
        factory: impl DynSinkFactory,
    ) -> Result<&mut Self, ConnectorError> {
        let d = factory.descriptor();
        self.check(&d)?;
        self.sinks.insert(d.name, Arc::new(factory));
        Ok(self)
    }

    /// Every registered connector's descriptor, sources first, by name.
    pub fn descriptors(&self) -> Vec<ConnectorDescriptor> {
        let sources = self.sources.values().map(|f| f.descriptor());
        sources
            .chain(self.sinks.values().map(|f| f.descriptor()))
            .collect()
    }

    /// The descriptor of one connector.
    pub fn descriptor(&self, kind: ConnectorKind, name: &str) -> Option<ConnectorDescriptor> {
        match kind {
            ConnectorKind::Source => self.sources.get(name).map(|f| f.descriptor()),
            ConnectorKind::Sink => self.sinks.get(name).map(|f| f.descriptor()),
        }
    }

    fn unknown<T>(
        kind: ConnectorKind,
        name: &str,
        known: Vec<&String>,
    ) -> Result<T, ConnectorError> {
        let known: Vec<&str> = known.into_iter().map(String::as_str).collect();
        Err(ConnectorError::UnknownConnector {
            kind,
            name: name.into(),
            known: known.join(", "),
        })
    }

    /// Builds a source from its config section (`type` removed).
    pub fn build_source(
        &self,
        name: &str,
        section: serde_json::Value,
    ) -> Result<BoxSource, ConnectorError> {
        match self.sources.get(name) {
            Some(f) => f.build_dyn(section),
            None => Self::unknown(ConnectorKind::Source, name, self.sources.keys().collect()),
        }
    }

    /// Checks a source's config section (`type` removed) without building
    /// it. Since API 1.3.
    pub fn parse_source(
        &self,
        name: &str,
        section: serde_json::Value,
    ) -> Result<(), ConnectorError> {
        match self.sources.get(name) {
            Some(f) => f.parse_dyn(section),
            None => Self::unknown(ConnectorKind::Source, name, self.sources.keys().collect()),
        }
    }

    /// Checks a sink's config section (`type` removed) without building
    /// it. Since API 1.3.
    pub fn parse_sink(&self, name: &str, section: serde_json::Value) -> Result<(), ConnectorError> {
        match self.sinks.get(name) {
            Some(f) => f.parse_dyn(section),
            None => Self::unknown(ConnectorKind::Sink, name, self.sinks.keys().collect()),
        }
    }

    /// Builds a sink from its config section (`type` removed).
    pub fn build_sink(
        &self,
        name: &str,
        section: serde_json::Value,
    ) -> Result<BoxSink, ConnectorError> {
        match self.sinks.get(name) {
            Some(f) => f.build_dyn(section),
            None => Self::unknown(ConnectorKind::Sink, name, self.sinks.keys().collect()),
        }
    }
}
