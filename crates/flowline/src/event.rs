//! The event shape (`[event]`): where the job finds each event's time and
//! value, and in which format the time is written. Without the section the
//! job reads the generator's shape, `{"host","metric","value","timestamp"}`
//! with an RFC 3339 time, on the fast path of [`crate::job::decode`].
//!
//! Paths are dotted (`@timestamp`, `system.cpu.total.pct`) and split once,
//! when the job file is read. Epoch times are read from the number's text,
//! not through an `f64`, so `1767225600.123` seconds is exactly
//! 1 767 225 600 123 ms; fractions below a millisecond are floored, as for
//! RFC 3339 times. A missing field, a value that is not a number, or a
//! time that cannot be read is an error naming the path: the record goes to
//! the dead-letter output with it.

use serde::Deserialize;
use serde_json::value::RawValue;

/// `[event]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSection {
    /// Dotted path of the event time; default `timestamp`.
    #[serde(default = "d_timestamp")]
    pub timestamp: String,
    /// How the time is written; default `rfc3339`.
    #[serde(default)]
    pub timestamp_format: TimeFormat,
    /// Dotted path of the numeric value; default `value`. Exactly one of
    /// `value`, `values` and `values_from`.
    pub value: Option<String>,
    /// Several value paths: each is a series whose `metric` is its path.
    pub values: Option<Vec<String>>,
    /// An object whose every numeric entry is a series (Telegraf's
    /// `fields`); `metric` is the entry's name, after `metric_prefix`.
    pub values_from: Option<String>,
    /// With `values_from`: the field whose value prefixes the metric name
    /// (`<prefix>.<entry>`).
    pub metric_prefix: Option<String>,
    /// Dotted paths of the key fields, 1 to 8; default `["host", "metric"]`.
    /// Window documents carry each under its dotted name.
    pub key: Option<Vec<String>>,
    /// The longest name of a series' group or metric, in bytes (default
    /// [`crate::metric::DEFAULT_MAX_NAME_BYTES`]); a longer one is a bad
    /// record.
    pub max_name_bytes: Option<usize>,
}

fn d_timestamp() -> String {
    "timestamp".into()
}
impl Default for EventSection {
    fn default() -> Self {
        Self {
            timestamp: d_timestamp(),
            timestamp_format: TimeFormat::default(),
            value: None,
            values: None,
            values_from: None,
            metric_prefix: None,
            key: None,
            max_name_bytes: None,
        }
    }
}

/// Where the values are.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Values {
    /// One value; the metric comes from the key.
    One(FieldPath),
    /// Several paths; the metric is the path.
    Many(Vec<FieldPath>),
    /// Every numeric entry of an object; the metric is the entry's name.
    From {
        object: FieldPath,
        prefix: Option<FieldPath>,
    },
}

/// How an event time is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeFormat {
    /// RFC 3339 with any offset (`2026-01-01T00:00:01.250+01:00`).
    #[default]
    Rfc3339,
    /// Seconds since the epoch (integer or decimal; a number or a string).
    EpochS,
    /// Milliseconds since the epoch.
    EpochMs,
    /// Microseconds since the epoch.
    EpochUs,
    /// Nanoseconds since the epoch.
    EpochNs,
}

impl TimeFormat {
    /// Decimal digits from this unit down to nanoseconds.
    fn to_ns_digits(self) -> i32 {
        match self {
            TimeFormat::Rfc3339 | TimeFormat::EpochS => 9,
            TimeFormat::EpochMs => 6,
            TimeFormat::EpochUs => 3,
            TimeFormat::EpochNs => 0,
        }
    }

    /// The unit, in words.
    fn unit(self) -> &'static str {
        match self {
            TimeFormat::Rfc3339 => "RFC 3339",
            TimeFormat::EpochS => "seconds",
            TimeFormat::EpochMs => "milliseconds",
            TimeFormat::EpochUs => "microseconds",
            TimeFormat::EpochNs => "nanoseconds",
        }
    }
}

/// A dotted path, split once.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldPath {
    text: String,
    segments: Vec<String>,
}

impl FieldPath {
    fn parse(field: &str, text: &str) -> Result<Self, (String, String)> {
        let segments: Vec<String> = text.split('.').map(str::to_string).collect();
        if text.is_empty() || segments.iter().any(String::is_empty) || text.len() > 1_024 {
            return Err((
                format!("event.{field}"),
                format!("`{text}` is not a field path. Fix: a dotted path of the JSON object, like \"@timestamp\" or \"system.cpu.total.pct\""),
            ));
        }
        Ok(Self {
            text: text.to_string(),
            segments,
        })
    }
}

/// The shape a job reads, resolved from `[event]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventShape {
    timestamp: FieldPath,
    format: TimeFormat,
    values: Values,
    key: Vec<FieldPath>,
}

/// The names of the key fields, and how the job's two-part key (group,
/// metric) maps onto them: one field is the group alone; two are group and
/// metric (`host`, `metric` by default); more are a JSON array of all but
/// the last as the group, and the last as the metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyNames(Vec<String>);

impl KeyNames {
    /// The key fields' dotted names, in order.
    pub fn names(&self) -> &[String] {
        &self.0
    }

    /// Whether these are `host`, `metric`, which the documents have always
    /// used.
    pub fn is_default(&self) -> bool {
        self.0 == ["host", "metric"]
    }

    /// `(name, value)` of each key field of the key `(group, metric)`.
    pub fn fields(&self, group: &str, metric: &str) -> Vec<(String, String)> {
        let values: Vec<String> = match self.0.len() {
            1 => vec![group.to_string()],
            2 => vec![group.to_string(), metric.to_string()],
            _ => {
                let mut v: Vec<String> =
                    serde_json::from_str(group).unwrap_or_else(|_| vec![group.to_string()]);
                v.push(metric.to_string());
                v
            }
        };
        self.0.iter().cloned().zip(values).collect()
    }

    /// A rendered document (with `host` and `metric` for the key) with the
    /// key fields under their names instead.
    pub fn rename(&self, doc: &mut serde_json::Map<String, serde_json::Value>) {
        if self.is_default() {
            return;
        }
        let mut take = |k: &str| match doc.remove(k) {
            Some(serde_json::Value::String(s)) => s,
            _ => String::new(),
        };
        let group = take("host");
        let metric = take("metric");
        for (k, v) in self.fields(&group, &metric) {
            doc.insert(k, serde_json::Value::String(v));
        }
    }
}

impl Default for EventShape {
    fn default() -> Self {
        Self::from_section(&EventSection::default()).expect("the default shape is valid")
    }
}

impl std::fmt::Display for EventShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "time `{}` ({:?}), {}, key {}",
            self.timestamp.text,
            self.format,
            match &self.values {
                Values::One(p) => format!("value `{}`", p.text),
                Values::Many(ps) => format!(
                    "values {}",
                    ps.iter()
                        .map(|p| format!("`{}`", p.text))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Values::From { object, prefix } => format!(
                    "values from `{}`{}",
                    object.text,
                    prefix
                        .as_ref()
                        .map(|p| format!(" prefixed by `{}`", p.text))
                        .unwrap_or_default()
                ),
            },
            self.key_names()
                .0
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// What [`EventShape::read`] finds in one event.
#[derive(Debug, Clone, PartialEq)]
pub struct Fields {
    /// The key's first part (see [`KeyNames`]).
    pub group: String,
    /// The key's second part.
    pub metric: String,
    /// The value.
    pub value: f64,
    /// The time, ms since the epoch.
    pub ts: i64,
    /// The time as written (for messages).
    pub ts_text: String,
}

impl EventShape {
    /// Checks the section: the error is `(field, message with the fix)`.
    pub fn from_section(s: &EventSection) -> Result<Self, (String, String)> {
        let bad = |field: &str, m: String| Err((format!("event.{field}"), m));
        let set = [
            s.value.is_some(),
            s.values.is_some(),
            s.values_from.is_some(),
        ];
        if set.iter().filter(|x| **x).count() > 1 {
            return bad(
                "value",
                "value, values and values_from are alternatives. Fix: set exactly one of them"
                    .into(),
            );
        }
        if s.metric_prefix.is_some() && s.values_from.is_none() {
            return bad(
                "metric_prefix",
                "is only used with values_from. Fix: remove it, or set values_from".into(),
            );
        }
        let values = if let Some(v) = &s.values {
            if v.is_empty() || v.len() > 64 {
                return bad(
                    "values",
                    format!("has {} paths. Fix: 1 to 64 dotted paths", v.len()),
                );
            }
            let mut ps: Vec<FieldPath> = Vec::with_capacity(v.len());
            for p in v {
                let p = FieldPath::parse("values", p)?;
                if ps.contains(&p) {
                    return bad(
                        "values",
                        format!("lists `{}` twice. Fix: each path once", p.text),
                    );
                }
                ps.push(p);
            }
            Values::Many(ps)
        } else if let Some(o) = &s.values_from {
            Values::From {
                object: FieldPath::parse("values_from", o)?,
                prefix: s
                    .metric_prefix
                    .as_deref()
                    .map(|p| FieldPath::parse("metric_prefix", p))
                    .transpose()?,
            }
        } else {
            Values::One(FieldPath::parse(
                "value",
                s.value.as_deref().unwrap_or("value"),
            )?)
        };
        let key = match (&s.key, &values) {
            (Some(k), _) => k.clone(),
            // The metric comes from the values: the host alone keys them.
            (None, Values::Many(_) | Values::From { .. }) => vec!["host".to_string()],
            (None, Values::One(_)) => vec!["host".to_string(), "metric".to_string()],
        };
        if key.is_empty() || key.len() > 8 {
            return Err((
                "event.key".into(),
                format!(
                    "has {} paths. Fix: 1 to 8 dotted paths, like [\"host.name\"]",
                    key.len()
                ),
            ));
        }
        let mut paths = Vec::with_capacity(key.len());
        for k in &key {
            let p = FieldPath::parse("key", k)?;
            if paths.contains(&p) {
                return Err((
                    "event.key".into(),
                    format!("lists `{k}` twice. Fix: each key path once"),
                ));
            }
            paths.push(p);
        }
        Ok(Self {
            timestamp: FieldPath::parse("timestamp", &s.timestamp)?,
            format: s.timestamp_format,
            values,
            key: paths,
        })
    }

    /// The key fields' names.
    pub fn key_names(&self) -> KeyNames {
        let mut names: Vec<String> = self.key.iter().map(|k| k.text.clone()).collect();
        if !matches!(self.values, Values::One(_)) {
            names.push("metric".into());
        }
        KeyNames(names)
    }

    /// Whether this is the generator's shape, which the fast path reads.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Reads every series of one event: the fields found, and the reason
    /// when some part could not be read (the whole event when the key or
    /// the time cannot be; one value of several otherwise, the others
    /// kept). Each reason names its path.
    pub fn read_all(&self, payload: &[u8]) -> (Vec<Fields>, Option<String>) {
        match self.common(payload) {
            Err(e) => (Vec::new(), Some(e)),
            Ok((root, keys, ts, ts_text)) => {
                // The key's parts once per event; a series of several only
                // adds its metric.
                let (group, key_metric) =
                    self.group_metric(keys, matches!(self.values, Values::One(_)));
                let mut out = Vec::new();
                let mut bad = Vec::new();
                let mut push = |metric: Option<String>, v: Result<f64, String>| match v {
                    Ok(value) => out.push(Fields {
                        group: group.clone(),
                        metric: metric.unwrap_or_else(|| key_metric.clone()),
                        value,
                        ts,
                        ts_text: ts_text.clone(),
                    }),
                    Err(e) => bad.push(e),
                };
                match &self.values {
                    Values::One(p) => push(None, root.lookup(p).and_then(|r| number(&p.text, r))),
                    Values::Many(paths) => {
                        for p in paths {
                            push(
                                Some(p.text.clone()),
                                root.lookup(p).and_then(|r| number(&p.text, r)),
                            )
                        }
                    }
                    Values::From { object, prefix } => {
                        match entries(&root, object, prefix.as_ref()) {
                            Err(e) => bad.push(e),
                            Ok((prefix, entries)) => {
                                for (k, raw) in entries {
                                    if number_text(raw.get()).is_none() {
                                        continue; // a string or a flag: not a series
                                    }
                                    let name = match &prefix {
                                        Some(p) => format!("{p}.{k}"),
                                        None => k.clone(),
                                    };
                                    let path = format!("{}.{k}", object.text);
                                    push(Some(name), number(&path, raw));
                                }
                                if out.is_empty() && bad.is_empty() {
                                    bad.push(format!(
                                        "invalid metric event: `{}` holds no numeric entry",
                                        object.text
                                    ));
                                }
                            }
                        }
                    }
                }
                let reason = (!bad.is_empty()).then(|| bad.join("; "));
                (out, reason)
            }
        }
    }

    /// Reads one event of a one-value shape; the error names the path.
    pub fn read(&self, payload: &[u8]) -> Result<Fields, String> {
        let (mut f, bad) = self.read_all(payload);
        match (f.pop(), bad) {
            (_, Some(e)) => Err(e),
            (Some(f), None) => Ok(f),
            (None, None) => Err("invalid metric event: no value".into()),
        }
    }

    /// The object, the key values and the time of one event.
    #[allow(clippy::type_complexity)]
    fn common<'a, 's>(
        &'s self,
        payload: &'a [u8],
    ) -> Result<(Doc<'a, 's>, Vec<String>, i64, String), String> {
        let root = Doc::parse(payload)?;
        let mut key = Vec::with_capacity(self.key.len());
        for p in &self.key {
            let raw = root.lookup(p)?;
            key.push(match serde_json::from_str::<String>(raw.get()) {
                Ok(s) => s,
                Err(_) if matches!(raw.get(), "true" | "false") => raw.get().to_string(),
                // A number is one key whatever its text (`1`, `1.0`, `1e0`).
                Err(_) if number_text(raw.get()).is_some() => {
                    crate::decimal::canonical(raw.get()).unwrap_or_else(|| raw.get().to_string())
                }
                Err(_) => {
                    return Err(format!(
                        "invalid metric event: key `{}` = {} is not a string, number or boolean",
                        p.text,
                        clip(raw.get())
                    ))
                }
            });
        }
        let raw = root.lookup(&self.timestamp)?;
        let (ts, ts_text) = self.time(raw)?;
        Ok((root, key, ts, ts_text))
    }

    /// The job's two-part key of these key values (see [`KeyNames`]): when
    /// the metric is a key field (`metric_in_key`) and there are several,
    /// the last is the metric; otherwise every key value is the group (the
    /// values give the metric).
    fn group_metric(&self, mut key: Vec<String>, metric_in_key: bool) -> (String, String) {
        let metric = if metric_in_key && key.len() >= 2 {
            key.pop().unwrap_or_default()
        } else {
            String::new()
        };
        let group = if key.len() == 1 {
            key.pop().unwrap_or_default()
        } else {
            serde_json::to_string(&key).unwrap_or_default()
        };
        (group, metric)
    }

    fn time(&self, raw: &RawValue) -> Result<(i64, String), String> {
        let path = &self.timestamp.text;
        // A string holds the text; a number is its own text.
        let text = match serde_json::from_str::<String>(raw.get()) {
            Ok(s) => s,
            Err(_) => raw.get().to_string(),
        };
        let ms = match self.format {
            TimeFormat::Rfc3339 => flowline_connector_api::time::parse_rfc3339_ms(&text)
                .map_err(|e| format!("invalid metric event: `{path}`: {e}{}", epoch_hint(&text)))?,
            f => epoch_ms(&text, f.to_ns_digits()).ok_or_else(|| {
                format!(
                    "invalid metric event: `{path}` = {} is not a time in {} since the epoch within the years -9999 to 9999{}",
                    clip(raw.get()),
                    f.unit(),
                    self.future_hint()
                )
            })?,
        };
        if self.too_fine(ms) {
            static ONCE: std::sync::Once = std::sync::Once::new();
            let (path, unit) = (&self.timestamp.text, self.format.unit());
            ONCE.call_once(|| {
                tracing::warn!(field = %path, value = %text, read_as = unit,
                    "event times read as {unit} since the epoch fall before 1973 (`{path}` = {text}). If the producer writes a coarser unit (seconds), set [event] timestamp_format to it: each event is in a window of 1970 now");
            });
        }
        Ok((ms, text))
    }

    /// Whether an epoch time read as `ms` looks read in too fine a unit
    /// (before 1973, in ms, µs or ns): worth a warning, not a refusal.
    fn too_fine(&self, ms: i64) -> bool {
        !matches!(self.format, TimeFormat::Rfc3339 | TimeFormat::EpochS)
            && (0..EPOCH_1973).contains(&ms)
    }

    /// For an event time past `max_future`: the fix when the format may be
    /// coarser than what the producer writes (nothing for `epoch_ns`).
    pub fn future_hint(&self) -> String {
        match self.format {
            TimeFormat::Rfc3339 | TimeFormat::EpochNs => String::new(),
            f => format!(
                ". `{}` is read as {} since the epoch: if the producer writes a finer unit, set [event] timestamp_format to it (\"epoch_ms\", \"epoch_us\" or \"epoch_ns\")",
                self.timestamp.text,
                f.unit()
            ),
        }
    }
}

/// 1973-03-03T09:46:40Z in ms: epoch times read in ms, µs or ns before it
/// are most likely seconds (or ms, µs) read in too fine a unit.
const EPOCH_1973: i64 = 100_000_000_000;

/// The fix for an event time written as a number where RFC 3339 text is
/// read: nothing for any other text.
pub(crate) fn epoch_hint(text: &str) -> &'static str {
    let t = text.strip_prefix('-').unwrap_or(text);
    if !t.is_empty() && t.bytes().all(|c| c.is_ascii_digit() || c == b'.') {
        ". Fix: for times since the epoch, set [event] timestamp_format to their unit (\"epoch_s\", \"epoch_ms\", \"epoch_us\" or \"epoch_ns\")"
    } else {
        ""
    }
}

mod doc;
mod epoch;

pub(crate) use doc::{clip, number};
use doc::{entries, number_text, Doc};
pub use epoch::epoch_ms;

#[cfg(test)]
mod tests;
