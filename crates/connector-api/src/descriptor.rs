//! What a connector says about itself, and the factories that build it.

use std::fmt;

use serde::de::DeserializeOwned;

use crate::{ApiVersion, BoxSink, BoxSource, ConnectorError, Sink, Source, API_VERSION};

/// Whether a connector reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ConnectorKind {
    /// Reads records.
    Source,
    /// Writes records.
    Sink,
}

impl fmt::Display for ConnectorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            ConnectorKind::Source => "source",
            ConnectorKind::Sink => "sink",
        })
    }
}

/// One documented configuration field.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConfigField {
    /// The TOML key.
    pub name: String,
    /// The expected type, as a user reads it: `string`, `duration`, `[string]`.
    pub ty: String,
    /// The default, or `None` when the field is required.
    pub default: Option<String>,
    /// What it does.
    pub doc: String,
}

impl ConfigField {
    /// A required field.
    pub fn required(name: &str, ty: &str, doc: &str) -> Self {
        Self {
            name: name.into(),
            ty: ty.into(),
            default: None,
            doc: doc.into(),
        }
    }

    /// An optional field with its default.
    pub fn optional(name: &str, ty: &str, default: &str, doc: &str) -> Self {
        Self {
            default: Some(default.into()),
            ..Self::required(name, ty, doc)
        }
    }
}

/// A connector's identity: the name used as `type = "..."` in job files,
/// its own version, the API version it was built for, its kind and its
/// configuration documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectorDescriptor {
    /// The `type` name in job files.
    pub name: String,
    /// The connector's own version (its crate version).
    pub version: String,
    /// The connector API version it was built against.
    pub api_version: ApiVersion,
    /// Source or sink.
    pub kind: ConnectorKind,
    /// One line on what it does.
    pub description: String,
    /// Its configuration fields.
    pub config: Vec<ConfigField>,
}

impl ConnectorDescriptor {
    /// A descriptor built against this crate's [`API_VERSION`].
    pub fn new(name: &str, version: &str, kind: ConnectorKind) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            api_version: API_VERSION,
            kind,
            description: String::new(),
            config: Vec::new(),
        }
    }

    /// Declares another API version (a connector loaded from elsewhere).
    pub fn with_api_version(mut self, v: ApiVersion) -> Self {
        self.api_version = v;
        self
    }

    /// Sets the one-line description.
    pub fn with_description(mut self, d: &str) -> Self {
        self.description = d.into();
        self
    }

    /// Documents a configuration field.
    pub fn with_field(mut self, f: ConfigField) -> Self {
        self.config.push(f);
        self
    }
}

/// Parses a connector's config section into its typed config, turning serde's
/// error into a [`ConnectorError::Config`] that names the connector.
///
/// The message never repeats a secret: the value of any field whose name
/// holds `password`, `secret`, `token`, `key`, `pem`, `jaas` or
/// `credential` (an unquoted number given as a password, say) is replaced by
/// `***` wherever serde's message quotes it.
pub fn parse_config<C: DeserializeOwned>(
    connector: &str,
    section: serde_json::Value,
) -> Result<C, ConnectorError> {
    let mut secrets = Vec::new();
    secret_values(&section, false, &mut secrets);
    serde_json::from_value(section).map_err(|e| {
        let mut msg = e.to_string();
        // Longest first, so that a secret containing another is hidden whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        for s in &secrets {
            msg = msg.replace(s.as_str(), "***");
        }
        ConnectorError::config(connector, msg)
    })
}

const SECRET_WORDS: &[&str] = &[
    "password",
    "secret",
    "token",
    "key",
    "pem",
    "jaas",
    "credential",
];

/// Whether a config field of this name holds a secret (its name contains
/// `password`, `secret`, `token`, `key`, `pem`, `jaas` or `credential`, in
/// any case): its value is never to be shown.
pub fn is_secret_field(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| name.contains(w))
}

/// The text of every scalar under a key that names a secret.
fn secret_values(v: &serde_json::Value, secret: bool, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                secret_values(v, secret || is_secret_field(k), out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| secret_values(v, secret, out)),
        serde_json::Value::String(s) if secret && !s.is_empty() => out.push(s.clone()),
        serde_json::Value::Number(n) if secret => out.push(n.to_string()),
        serde_json::Value::Bool(_) | serde_json::Value::Null => {}
        _ => {}
    }
}

/// Builds sources of one connector type. The typed trait authors implement;
/// the registry holds its object-safe twin, [`DynSourceFactory`].
pub trait SourceFactory: Send + Sync + 'static {
    /// The config section, `#[serde(deny_unknown_fields)]` recommended.
    type Config: DeserializeOwned;
    /// The source it builds.
    type Source: Source;
    /// Who it is.
    fn descriptor(&self) -> ConnectorDescriptor;
    /// Checks a parsed config and builds the source. Fails before any work.
    fn build(&self, config: Self::Config) -> Result<Self::Source, ConnectorError>;
    /// Checks a parsed config without building anything or contacting any
    /// server: every check of `build` that needs neither (durations,
    /// ranges, settings that contradict each other), so that
    /// `flowline validate --offline` refuses what a start would refuse for
    /// the config alone. The registry runs it before `build` too.
    /// Default: accepts. Since API 2.3.
    fn check_config(&self, config: &Self::Config) -> Result<(), ConnectorError> {
        let _ = config;
        Ok(())
    }
}

/// Builds sinks of one connector type. See [`SourceFactory`].
pub trait SinkFactory: Send + Sync + 'static {
    /// The config section.
    type Config: DeserializeOwned;
    /// The sink it builds.
    type Sink: Sink;
    /// Who it is.
    fn descriptor(&self) -> ConnectorDescriptor;
    /// Checks a parsed config and builds the sink.
    fn build(&self, config: Self::Config) -> Result<Self::Sink, ConnectorError>;
    /// See [`SourceFactory::check_config`]. Default: accepts. Since API 2.3.
    fn check_config(&self, config: &Self::Config) -> Result<(), ConnectorError> {
        let _ = config;
        Ok(())
    }
}

/// The object-safe twin of [`SourceFactory`].
pub trait DynSourceFactory: crate::sealed::SourceFactory + Send + Sync + 'static {
    /// See [`SourceFactory::descriptor`].
    fn descriptor(&self) -> ConnectorDescriptor;
    /// Parses the section (without its `type` key) and builds.
    fn build_dyn(&self, section: serde_json::Value) -> Result<BoxSource, ConnectorError>;
    /// Parses the section only, building nothing and contacting nothing
    /// (`flowline validate --offline`). Default: accepts. Since API 1.3.
    fn parse_dyn(&self, section: serde_json::Value) -> Result<(), ConnectorError> {
        let _ = section;
        Ok(())
    }
}

impl<F: SourceFactory> DynSourceFactory for F {
    fn descriptor(&self) -> ConnectorDescriptor {
        SourceFactory::descriptor(self)
    }
    fn build_dyn(&self, section: serde_json::Value) -> Result<BoxSource, ConnectorError> {
        let name = SourceFactory::descriptor(self).name;
        let config = parse_config(&name, section)?;
        self.check_config(&config)?;
        Ok(Box::new(self.build(config)?))
    }
    fn parse_dyn(&self, section: serde_json::Value) -> Result<(), ConnectorError> {
        let name = SourceFactory::descriptor(self).name;
        self.check_config(&parse_config::<F::Config>(&name, section)?)
    }
}

/// The object-safe twin of [`SinkFactory`].
pub trait DynSinkFactory: crate::sealed::SinkFactory + Send + Sync + 'static {
    /// See [`SinkFactory::descriptor`].
    fn descriptor(&self) -> ConnectorDescriptor;
    /// Parses the section (without its `type` key) and builds.
    fn build_dyn(&self, section: serde_json::Value) -> Result<BoxSink, ConnectorError>;
    /// Parses the section only, building nothing and contacting nothing
    /// (`flowline validate --offline`). Default: accepts. Since API 1.3.
    fn parse_dyn(&self, section: serde_json::Value) -> Result<(), ConnectorError> {
        let _ = section;
        Ok(())
    }
}

impl<F: SinkFactory> DynSinkFactory for F {
    fn descriptor(&self) -> ConnectorDescriptor {
        SinkFactory::descriptor(self)
    }
    fn build_dyn(&self, section: serde_json::Value) -> Result<BoxSink, ConnectorError> {
        let name = SinkFactory::descriptor(self).name;
        let config = parse_config(&name, section)?;
        self.check_config(&config)?;
        Ok(Box::new(self.build(config)?))
    }
    fn parse_dyn(&self, section: serde_json::Value) -> Result<(), ConnectorError> {
        let name = SinkFactory::descriptor(self).name;
        self.check_config(&parse_config::<F::Config>(&name, section)?)
    }
}

#[cfg(test)]
mod secret_tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct C {
        user: String,
        password: String,
    }

    #[test]
    fn a_type_error_never_echoes_a_secret() {
        let e = parse_config::<C>("x", serde_json::json!({"user": "u", "password": 987654321}))
            .unwrap_err()
            .to_string();
        assert!(!e.contains("987654321") && e.contains("***"), "{e}");
        let e = parse_config::<C>("x", serde_json::json!({"user": 5, "password": "hunter2"}))
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }
}

#[cfg(test)]
mod check_config_tests {
    use super::*;
    use crate::{Record, Sink};

    struct Nothing;
    impl Sink for Nothing {
        async fn write(&mut self, _: Vec<Record>) -> Result<(), ConnectorError> {
            Ok(())
        }
        async fn flush(&mut self) -> Result<(), ConnectorError> {
            Ok(())
        }
    }

    /// Builds anything; its config check refuses `size` 0.
    struct Factory;
    impl SinkFactory for Factory {
        type Config = serde_json::Value;
        type Sink = Nothing;
        fn descriptor(&self) -> ConnectorDescriptor {
            ConnectorDescriptor::new("t", "1.0.0", ConnectorKind::Sink)
        }
        fn build(&self, _: serde_json::Value) -> Result<Nothing, ConnectorError> {
            Ok(Nothing)
        }
        fn check_config(&self, c: &serde_json::Value) -> Result<(), ConnectorError> {
            match c["size"].as_u64() {
                Some(0) => Err(ConnectorError::config("t", "size = 0. Fix: 1 or more")),
                _ => Ok(()),
            }
        }
    }

    #[test]
    fn the_config_check_runs_when_a_section_is_only_parsed_and_before_a_build() {
        let bad = serde_json::json!({"size": 0});
        let good = serde_json::json!({"size": 1});
        assert!(Factory.parse_dyn(good.clone()).is_ok());
        assert!(Factory.build_dyn(good).is_ok());
        let e = Factory.parse_dyn(bad.clone()).unwrap_err().to_string();
        assert!(e.contains("size = 0"), "{e}");
        assert!(Factory.build_dyn(bad).is_err());
    }
}
