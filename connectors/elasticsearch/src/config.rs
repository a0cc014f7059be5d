//! `[sink] type = "elasticsearch"`: settings, defaults and checks.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::Error;

/// The bulk action per document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Create or replace (the default; idempotent with deterministic ids).
    #[default]
    Index,
    /// Create only; an existing id is a version conflict, counted as done.
    Create,
    /// Partial update with upsert; a version conflict (another writer
    /// changed the document meanwhile) is sent again.
    Update,
}

/// The settings as written in the job file.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EsSinkConfig {
    /// One server URL (`http://127.0.0.1:9200`).
    pub url: Option<String>,
    /// Several server URLs, used round robin.
    #[serde(default)]
    pub urls: Vec<String>,
    /// Index name, or a date pattern on the time field
    /// (`flowline-metrics-%Y.%m.%d`).
    pub index: String,
    /// `index`, `create` or `update`.
    #[serde(default)]
    pub action: Action,
    /// Write to a data stream (`index` names it; action `create`).
    #[serde(default)]
    pub data_stream: bool,
    /// Fields whose values, joined by `|`, make the document id. Default: the
    /// record key.
    pub id_fields: Option<Vec<String>>,
    /// The document's time field: mapped as a date by the template, and read
    /// for a dated index only when a record carries no event time
    /// (`Record::timestamp`, which names the index otherwise). No default:
    /// the connector knows no document shape.
    pub time_field: Option<String>,
    /// Flush when this many actions are buffered.
    #[serde(default = "d_max_actions")]
    pub max_actions: usize,
    /// Flush when the buffer reaches this many bytes.
    #[serde(default = "d_max_bytes")]
    pub max_bytes: usize,
    /// Flush a non-empty buffer this long after its first document.
    #[serde(default = "d_flush_interval")]
    pub flush_interval: String,
    /// Bulk requests in flight at once.
    #[serde(default = "d_in_flight")]
    pub max_in_flight: usize,
    /// Attempts per bulk request (first included) for 429, 5xx and
    /// connection errors. Default: no limit (an outage is ridden out).
    pub max_attempts: Option<u32>,
    /// Give up retrying a request this long after its first failure
    /// (`"10m"`). Default: no limit.
    pub max_retry_duration: Option<String>,
    /// First retry backoff (exponential, full jitter).
    #[serde(default = "d_backoff")]
    pub initial_backoff: String,
    /// Backoff cap.
    #[serde(default = "d_max_backoff")]
    pub max_backoff: String,
    /// Timeout of one HTTP request.
    #[serde(default = "d_timeout")]
    pub request_timeout: String,
    /// Basic auth user.
    pub username: Option<String>,
    /// Basic auth password.
    pub password: Option<String>,
    /// API key, `id:key` or the encoded form.
    pub api_key: Option<String>,
    /// Bearer token.
    pub bearer_token: Option<String>,
    /// CA certificate (PEM) to verify the server with; default: system roots.
    pub ca_file: Option<PathBuf>,
    /// Do not verify the server's certificate. Logged as a warning.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// The index template created or updated at start: `true` (the
    /// default: the time field as date, other strings as keyword, other
    /// numbers as double), `false` (none), or a table giving the mappings:
    /// `fields` (field → type) or `file` (a JSON mappings body).
    #[serde(default)]
    pub template: TemplateSetting,
    /// The template's name; default: the index name's prefix.
    pub template_name: Option<String>,
    /// Who owns the template (`_meta.owner`; the `flowline` CLI sets the
    /// job's name). A Flowline template of another owner is not replaced:
    /// two jobs writing the same indices overwrite each other's documents
    /// under the same ids.
    pub owner: Option<String>,
    /// Replicas in the template (default 1 on a cluster; set 0 for one node).
    pub replicas: Option<u32>,
    /// Shards in the template.
    pub shards: Option<u32>,
}

impl std::fmt::Debug for EsSinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hide = |o: &Option<String>| o.as_ref().map(|_| "***");
        f.debug_struct("EsSinkConfig")
            .field("urls", &self.urls())
            .field("index", &self.index)
            .field("action", &self.action)
            .field("username", &self.username)
            .field("password", &hide(&self.password))
            .field("api_key", &hide(&self.api_key))
            .field("bearer_token", &hide(&self.bearer_token))
            .field("ca_file", &self.ca_file)
            .field("insecure_skip_verify", &self.insecure_skip_verify)
            .finish_non_exhaustive()
    }
}

fn d_max_actions() -> usize {
    1000
}
fn d_max_bytes() -> usize {
    5 * 1024 * 1024
}
fn d_flush_interval() -> String {
    "1s".into()
}
fn d_in_flight() -> usize {
    2
}
fn d_backoff() -> String {
    "100ms".into()
}
fn d_max_backoff() -> String {
    "10s".into()
}
fn d_timeout() -> String {
    "30s".into()
}

/// A field type in `[sink.template] fields`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FieldType {
    /// Exact strings: filters, terms aggregations.
    Keyword,
    /// Full-text strings.
    Text,
    /// A time (RFC 3339 or epoch milliseconds).
    Date,
    /// A time with nanoseconds.
    DateNanos,
    /// A 64-bit integer.
    Long,
    /// A 32-bit integer.
    Integer,
    /// A 64-bit float.
    Double,
    /// A 32-bit float (rounds: prefer `double`).
    Float,
    /// `true` or `false`.
    Boolean,
    /// An IPv4 or IPv6 address.
    Ip,
    /// A latitude and longitude.
    GeoPoint,
}

impl FieldType {
    /// The type's name in a mapping.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Keyword => "keyword",
            Self::Text => "text",
            Self::Date => "date",
            Self::DateNanos => "date_nanos",
            Self::Long => "long",
            Self::Integer => "integer",
            Self::Double => "double",
            Self::Float => "float",
            Self::Boolean => "boolean",
            Self::Ip => "ip",
            Self::GeoPoint => "geo_point",
        }
    }
}

/// `[sink.template]` as a table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSpec {
    /// Field (a dotted path names a field in an object) → type.
    #[serde(default)]
    pub fields: BTreeMap<String, FieldType>,
    /// A JSON file with the mappings (`{"properties": …}`, or a template
    /// body with a `mappings` object), used as it is.
    pub file: Option<PathBuf>,
}

/// The `template` setting.
#[derive(Debug, Clone)]
pub enum TemplateSetting {
    /// `false`: no template is installed.
    Off,
    /// `true` (an empty spec) or a table.
    On(TemplateSpec),
}

impl Default for TemplateSetting {
    fn default() -> Self {
        Self::On(TemplateSpec::default())
    }
}

impl<'de> Deserialize<'de> for TemplateSetting {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = TemplateSetting;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("true, false, or a table with `fields` (field → type) or `file`")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(if v {
                    TemplateSetting::default()
                } else {
                    TemplateSetting::Off
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                m: A,
            ) -> Result<Self::Value, A::Error> {
                TemplateSpec::deserialize(serde::de::value::MapAccessDeserializer::new(m))
                    .map(TemplateSetting::On)
            }
        }
        d.deserialize_any(V)
    }
}

/// Checked settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The config.
    pub config: EsSinkConfig,
    /// Parsed URLs.
    pub urls: Vec<String>,
    /// Parsed durations.
    pub flush_interval: Duration,
    /// Parsed.
    pub initial_backoff: Duration,
    /// Parsed.
    pub max_backoff: Duration,
    /// Give up retrying after this long; `None`: never.
    pub max_retry_duration: Option<Duration>,
    /// Parsed.
    pub request_timeout: Duration,
    /// The template's mappings (`None`: no template), checked and built at
    /// start from `template` and `time_field`.
    pub mappings: Option<serde_json::Value>,
}

fn dur(field: &str, v: &str) -> Result<Duration, Error> {
    flowline_connector_api::time::parse_duration(field, v, Duration::ZERO..=Duration::MAX)
        .map_err(Error::Config)
}

/// `value` of `field` within `[lo, hi]`, or an error naming both.
fn range(field: &str, value: u64, lo: u64, hi: u64) -> Result<(), Error> {
    if (lo..=hi).contains(&value) {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "`{field}` = {value} is out of range. Fix: a value from {lo} to {hi}"
        )))
    }
}

/// `url` without its user-info, and the user-info percent-decoded.
fn split_userinfo(u: &str) -> Result<(String, Option<(String, String)>), Error> {
    let Some((scheme, rest)) = u.split_once("://") else {
        return Ok((u.to_string(), None));
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..end].rfind('@') else {
        return Ok((u.to_string(), None));
    };
    let clean = format!("{scheme}://{}", &rest[at + 1..]);
    let (user, pw) = rest[..at].split_once(':').unwrap_or((&rest[..at], ""));
    let decode = |s: &str| {
        percent_decode(s).ok_or_else(|| {
            Error::Config(format!(
                "url `{clean}`: its user-info is not valid percent-encoding. Fix: give username and password as settings instead"
            ))
        })
    };
    Ok((clean.clone(), Some((decode(user)?, decode(pw)?))))
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl EsSinkConfig {
    /// Every configured URL.
    pub fn urls(&self) -> Vec<String> {
        self.url
            .iter()
            .cloned()
            .chain(self.urls.iter().cloned())
            .collect()
    }

    /// Checks the settings; fails before any work.
    pub fn check(mut self) -> Result<Settings, Error> {
        // `http://user:pw@host` is taken apart here: the credentials become
        // username/password and every URL kept (logs, errors, validate)
        // has no user-info.
        let mut urls = Vec::new();
        for u in self.urls() {
            let (clean, cred) = split_userinfo(&u)?;
            if let Some((user, pw)) = cred {
                if self.username.as_ref().is_some_and(|x| *x != user)
                    || self.password.as_ref().is_some_and(|x| *x != pw)
                {
                    return Err(Error::Config(format!(
                        "url `{clean}` carries credentials that differ from username/password. Fix: give them in one place"
                    )));
                }
                self.username = Some(user);
                self.password = Some(pw);
            }
            urls.push(clean);
        }
        if self.url.is_some() {
            self.url = urls.first().cloned();
            self.urls = urls[1..].to_vec();
        } else {
            self.urls = urls.clone();
        }
        if urls.is_empty() {
            return Err(Error::Config(
                "no server: set url = \"http://127.0.0.1:9200\" (or urls = [...])".into(),
            ));
        }
        for u in &urls {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(Error::Config(format!(
                    "url `{u}` must start with http:// or https://. Fix: url = \"http://{u}\""
                )));
            }
        }
        let b = self.index.as_bytes();
        if let Some(i) = (0..b.len())
            .find(|&i| b[i] == b'%' && !matches!(b.get(i + 1), Some(b'Y' | b'm' | b'd' | b'H')))
        {
            let spec: String = self.index[i..].chars().take(2).collect();
            return Err(Error::Config(format!(
                "index `{}` has `{spec}`, which is not a date field the sink fills in: only %Y, %m, %d and %H (UTC) are. Fix: index = \"flowline-metrics-%Y.%m.%d\"",
                self.index
            )));
        }
        let name = crate::encode::expand_date(&self.index, 0).unwrap_or_default();
        // The servers' rules (MetadataCreateIndexService): no capitals, none
        // of these characters, no leading `_`, `-` or `+`, not `.` or `..`,
        // at most 255 bytes. A name breaking one failed the template's
        // install, or (`template = false`) every write as a dead letter.
        if name.is_empty()
            || name == "."
            || name == ".."
            || name.len() > 255
            || name.starts_with(['_', '-', '+'])
            || name
                .chars()
                .any(|c| c.is_ascii_uppercase() || " \"*\\<|,>/?#:".contains(c))
        {
            return Err(Error::Config(format!(
                "index `{}` is not a valid index name: lower case, at most 255 bytes, not starting with _ - or +, without spaces or any of \" * \\ < | , > / ? # :. Fix: index = \"flowline-metrics\" or \"flowline-metrics-%Y.%m.%d\"",
                self.index
            )));
        }
        if self.password.is_some() != self.username.is_some() {
            return Err(Error::Config(
                "username and password go together. Fix: set both, or neither".into(),
            ));
        }
        let auths = [
            self.username.is_some(),
            self.api_key.is_some(),
            self.bearer_token.is_some(),
        ];
        if auths.iter().filter(|a| **a).count() > 1 {
            return Err(Error::Config(
                "choose one of username/password, api_key, bearer_token".into(),
            ));
        }
        range("max_actions", self.max_actions as u64, 1, 100_000)?;
        // The servers refuse bodies over http.max_content_length (100mb).
        range("max_bytes", self.max_bytes as u64, 1, 100 * 1024 * 1024)?;
        range("max_in_flight", self.max_in_flight as u64, 1, 64)?;
        if let Some(a) = self.max_attempts {
            range("max_attempts", u64::from(a), 1, 1_000_000)?;
        }
        for (name, v) in [("shards", self.shards), ("replicas", self.replicas)] {
            if let Some(v) = v {
                range(name, u64::from(v), u64::from(name == "shards"), 1024)?;
            }
        }
        if let Some(ca) = &self.ca_file {
            if !ca.is_file() {
                return Err(Error::Config(format!(
                    "ca_file `{}` does not exist. Fix: point it at a PEM file",
                    ca.display()
                )));
            }
        }
        let mappings = match &self.template {
            TemplateSetting::Off => None,
            TemplateSetting::On(spec) => Some(crate::template::mappings_of(
                spec,
                self.time_field.as_deref(),
            )?),
        };
        Ok(Settings {
            mappings,
            flush_interval: dur("flush_interval", &self.flush_interval)?,
            initial_backoff: dur("initial_backoff", &self.initial_backoff)?,
            max_backoff: dur("max_backoff", &self.max_backoff)?,
            max_retry_duration: self
                .max_retry_duration
                .as_deref()
                .map(|v| dur("max_retry_duration", v))
                .transpose()?,
            request_timeout: dur("request_timeout", &self.request_timeout)?,
            urls,
            config: self,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Settings, String> {
        let c: EsSinkConfig =
            serde_json::from_value(serde_json::from_str(s).unwrap()).map_err(|e| e.to_string())?;
        c.check().map_err(|e| e.to_string())
    }

    #[test]
    fn short_config_is_enough() {
        let s = parse(r#"{"url":"http://127.0.0.1:9200","index":"flowline-metrics"}"#).unwrap();
        assert_eq!(s.urls, ["http://127.0.0.1:9200"]);
        assert_eq!(
            (
                s.config.max_actions,
                s.config.max_bytes,
                s.config.max_in_flight
            ),
            (1000, 5 * 1024 * 1024, 2)
        );
        assert_eq!(s.flush_interval, Duration::from_secs(1));
        assert_eq!(s.config.action, Action::Index);
    }

    #[test]
    fn bad_settings_name_the_field_and_fix() {
        assert!(parse(r#"{"url":"127.0.0.1:9200","index":"x"}"#)
            .unwrap_err()
            .contains("Fix: url = \"http://127.0.0.1:9200\""));
        assert!(parse(r#"{"url":"http://h","index":"Bad Index"}"#)
            .unwrap_err()
            .contains("not a valid index name"));
        for bad in ["_x", "-x", "+x", "a:b", ".", ".."] {
            let e = parse(&format!(r#"{{"url":"http://h","index":"{bad}"}}"#)).unwrap_err();
            assert!(e.contains("not a valid index name"), "{bad}: {e}");
        }
        let long = "x".repeat(256);
        assert!(parse(&format!(r#"{{"url":"http://h","index":"{long}"}}"#)).is_err());
        for (bad, spec) in [("m-%Y-%M", "%M"), ("m-%q", "%q"), ("m-%", "%")] {
            let e = parse(&format!(r#"{{"url":"http://h","index":"{bad}"}}"#)).unwrap_err();
            assert!(e.contains(&format!("has `{spec}`")), "{bad}: {e}");
        }
        for good in ["x", ".hidden", "m-%Y.%m.%d.%H", &"x".repeat(255)] {
            assert!(
                parse(&format!(r#"{{"url":"http://h","index":"{good}"}}"#)).is_ok(),
                "{good}"
            );
        }
        assert!(
            parse(r#"{"url":"http://h","index":"x","flush_interval":"soon"}"#)
                .unwrap_err()
                .contains("flush_interval")
        );
        assert!(parse(r#"{"url":"http://h","index":"x","pasword":"p"}"#)
            .unwrap_err()
            .contains("unknown field `pasword`"));
        assert!(parse(r#"{"url":"http://h","index":"x","password":"p"}"#)
            .unwrap_err()
            .contains("username and password"));
        assert!(parse(r#"{"index":"x"}"#).unwrap_err().contains("no server"));
    }

    #[test]
    fn debug_hides_secrets() {
        let s =
            parse(r#"{"url":"http://h","index":"x","username":"u","password":"hunter2"}"#).unwrap();
        let d = format!("{:?}", s.config);
        assert!(!d.contains("hunter2") && d.contains("***"), "{d}");
    }

    #[test]
    fn credentials_in_the_url_become_settings_and_leave_every_url() {
        let s = parse(r#"{"url":"http://elastic:p%40ss@127.0.0.1:9200/","index":"x"}"#).unwrap();
        assert_eq!(s.urls, vec!["http://127.0.0.1:9200/".to_string()]);
        assert_eq!(s.config.username.as_deref(), Some("elastic"));
        assert_eq!(s.config.password.as_deref(), Some("p@ss"));
        let shown = format!("{:?} {:?}", s.config, s.urls);
        assert!(
            !shown.contains("p@ss") && !shown.contains("p%40ss"),
            "{shown}"
        );
        let e = parse(r#"{"url":"ftp://u:hunter2@h","index":"x"}"#)
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
        let e = parse(r#"{"url":"http://u:a@h","index":"x","username":"u","password":"b"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("differ") && !e.contains(":a@"), "{e}");
    }
}
