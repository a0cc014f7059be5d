//! Documents to bulk lines: index name (fixed or a date pattern on the time
//! field), document id, action.

use flowline_connector_api::Record;
use serde_json::Value;

use crate::config::Action;

/// How a record becomes two bulk lines.
#[derive(Debug, Clone)]
pub struct Encoder {
    index: String,
    dated: bool,
    id_fields: Option<Vec<String>>,
    time_field: Option<String>,
    action: Action,
    /// Indices whose existing mapping would change the values written, with
    /// the reason (`existing.rs`): their documents are refused.
    refused: std::collections::HashMap<String, String>,
}

/// The longest document id the servers accept, in bytes (Elasticsearch
/// and OpenSearch both refuse longer ones, failing the whole request).
pub const MAX_ID_BYTES: usize = 512;
/// Bytes of a long id kept readable before its hash.
const ID_PREFIX_BYTES: usize = 400;

/// The document id for `raw`: itself when it fits [`MAX_ID_BYTES`];
/// otherwise a readable prefix (cut at a character boundary), `~`, and the
/// SHA-256 of the whole id in hex. Deterministic, so a replay overwrites the
/// same document; two long ids differing anywhere get different hashes.
pub fn document_id(raw: &str) -> std::borrow::Cow<'_, str> {
    if raw.len() <= MAX_ID_BYTES {
        return raw.into();
    }
    use sha2::Digest;
    let mut cut = ID_PREFIX_BYTES;
    while !raw.is_char_boundary(cut) {
        cut -= 1;
    }
    let hash = sha2::Sha256::digest(raw.as_bytes());
    let mut id = String::with_capacity(cut + 65);
    id.push_str(&raw[..cut]);
    id.push('~');
    for b in hash {
        id.push_str(&format!("{b:02x}"));
    }
    id.into()
}

/// The document on one line, as the bulk format needs: in JSON a raw line
/// break can only be whitespace (strings escape theirs), so a
/// pretty-printed document becomes a space-separated one of the same
/// meaning, instead of breaking the request for every document in it.
fn one_line(payload: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if payload.iter().any(|&b| b == b'\n' || b == b'\r') {
        payload
            .iter()
            .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b })
            .collect::<Vec<u8>>()
            .into()
    } else {
        payload.into()
    }
}

fn millis_of(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => flowline_connector_api::time::parse_rfc3339_ms(s).ok(),
        _ => None,
    }
}

/// Expands `%Y`, `%m`, `%d`, `%H` (UTC) in `pattern`; `None` when `ms` is
/// outside the years jiff represents.
pub fn expand_date(pattern: &str, ms: i64) -> Option<String> {
    let t = jiff::Timestamp::from_millisecond(ms).ok()?;
    let s = t.strftime("%Y-%m-%dT%H").to_string();
    let (y, rest) = s.split_at(s.len() - 9);
    Some(
        pattern
            .replace("%Y", y)
            .replace("%m", &rest[1..3])
            .replace("%d", &rest[4..6])
            .replace("%H", &rest[7..9]),
    )
}

/// [`Encoder::writes_to`]: `name` against the `pattern` of `%Y`, `%m`,
/// `%d`, `%H` and literal bytes (a year takes as many digits as the rest
/// lets it).
fn fits(pattern: &[u8], name: &[u8]) -> bool {
    match pattern {
        [] => name.is_empty(),
        [b'%', b'Y', rest @ ..] => {
            let sign = usize::from(name.first() == Some(&b'-'));
            let digits = name[sign..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            (4..=digits).rev().any(|n| fits(rest, &name[sign + n..]))
        }
        [b'%', b'm' | b'd' | b'H', rest @ ..] => {
            name.len() >= 2 && name[..2].iter().all(u8::is_ascii_digit) && fits(rest, &name[2..])
        }
        [c, rest @ ..] => name.first() == Some(c) && fits(rest, &name[1..]),
    }
}

impl Encoder {
    /// An encoder for these settings.
    pub fn new(
        index: &str,
        id_fields: Option<Vec<String>>,
        time_field: Option<&str>,
        action: Action,
    ) -> Self {
        Self {
            index: index.to_string(),
            dated: index.contains('%'),
            id_fields,
            time_field: time_field.map(str::to_string),
            action,
            refused: Default::default(),
        }
    }

    /// Refuses documents for these indices, each with its reason.
    pub fn refuse(&mut self, indices: std::collections::HashMap<String, String>) {
        self.refused = indices;
    }

    /// The index a document of time `ms` goes to (the name itself when it
    /// has no date).
    pub fn index_at(&self, ms: i64) -> String {
        expand_date(&self.index, ms).unwrap_or_else(|| self.index.clone())
    }

    /// Whether the index name takes the event's date (`%Y` and the like):
    /// new indices are made as time goes on.
    pub fn dated(&self) -> bool {
        self.dated
    }

    /// Whether the sink could write to an index of this `name`: the index
    /// setting with each `%Y` read as a year (digits, a leading `-`) and
    /// `%m`, `%d`, `%H` as two digits.
    pub fn writes_to(&self, name: &str) -> bool {
        fits(self.index.as_bytes(), name.as_bytes())
    }

    /// The index pattern templates should match: the name, or its prefix
    /// followed by `*` for a date pattern.
    pub fn index_pattern(&self) -> String {
        match self.index.find('%') {
            Some(i) => format!("{}*", &self.index[..i]),
            None => self.index.clone(),
        }
    }

    /// The action and document lines for `r`, each ending in a newline. An
    /// `Err` names what is wrong with the document (it is dead-lettered).
    pub fn encode(&self, r: &Record) -> Result<Vec<u8>, String> {
        self.encode_doc(r).map(|(lines, _)| lines)
    }

    /// `encode`, and the document it writes when it has an id: a hash of
    /// its index and id, the same for every write of that document.
    pub fn encode_doc(&self, r: &Record) -> Result<(Vec<u8>, Option<u64>), String> {
        // A dated index takes the record's event time; the document is read
        // for it only when the record carries none (and for id fields).
        let doc_time = self.dated && r.timestamp.is_none();
        let doc: Option<Value> = if doc_time || self.id_fields.is_some() {
            Some(
                serde_json::from_slice(&r.payload)
                    .map_err(|e| format!("document is not JSON: {e}"))?,
            )
        } else {
            None
        };
        let index = if self.dated {
            let ms = r
                .timestamp
                .or_else(|| {
                    let f = self.time_field.as_deref()?;
                    doc.as_ref().and_then(|d| d.get(f)).and_then(millis_of)
                })
                .ok_or_else(|| match &self.time_field {
                    Some(f) => format!(
                        "document has no usable `{f}` for the dated index `{}`",
                        self.index
                    ),
                    None => format!(
                        "record has no event time for the dated index `{}`. Fix: set time_field to the document's time field",
                        self.index
                    ),
                })?;
            expand_date(&self.index, ms).ok_or_else(|| {
                format!(
                    "document time {ms} ms is outside the years a dated index can name (`{}`)",
                    self.index
                )
            })?
        } else {
            self.index.clone()
        };
        if let Some(reason) = self.refused.get(&index) {
            return Err(reason.clone());
        }
        let id = match (&self.id_fields, &r.key) {
            (Some(fields), _) => {
                let d = doc.as_ref().expect("parsed above");
                let mut parts = Vec::with_capacity(fields.len());
                for f in fields {
                    match d.get(f) {
                        Some(Value::String(s)) => parts.push(s.clone()),
                        Some(v @ (Value::Number(_) | Value::Bool(_))) => parts.push(v.to_string()),
                        _ => return Err(format!("document has no id field `{f}`")),
                    }
                }
                Some(parts.join("|"))
            }
            (None, Some(k)) => Some(
                String::from_utf8(k.clone()).map_err(|_| "record key is not UTF-8".to_string())?,
            ),
            (None, None) => None,
        };
        let op = match self.action {
            Action::Index => "index",
            Action::Create => "create",
            Action::Update => "update",
        };
        if id.is_none() && self.action == Action::Update {
            return Err(
                "an update needs a document id: set id_fields or give records a key".into(),
            );
        }
        // The action line, written directly (strings JSON-escaped).
        let quote = |s: &str| serde_json::to_string(s).expect("a string serializes");
        let mut out = Vec::with_capacity(r.payload.len() + 96);
        out.extend_from_slice(b"{\"");
        out.extend_from_slice(op.as_bytes());
        out.extend_from_slice(b"\":{");
        if let Some(id) = &id {
            out.extend_from_slice(b"\"_id\":");
            out.extend_from_slice(quote(&document_id(id)).as_bytes());
            out.push(b',');
        }
        out.extend_from_slice(b"\"_index\":");
        out.extend_from_slice(quote(&index).as_bytes());
        out.extend_from_slice(b"}}\n");
        let body = one_line(&r.payload);
        if self.action == Action::Update {
            out.extend_from_slice(b"{\"doc\":");
            out.extend_from_slice(&body);
            out.extend_from_slice(b",\"doc_as_upsert\":true}");
        } else {
            out.extend_from_slice(&body);
        }
        out.push(b'\n');
        let doc = id.map(|id| {
            use std::hash::{Hash, Hasher};
            let mut h = std::hash::DefaultHasher::new();
            (&index, &id).hash(&mut h);
            h.finish()
        });
        Ok((out, doc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Record {
        Record::new(
            r#"{"host":"h1","metric":"cpu","window_start":"2026-01-02T03:04:05.000Z","count":3}"#,
        )
        .with_key("h1|cpu|2026-01-02T03:04:05.000Z")
    }

    #[test]
    fn fixed_index_with_the_record_key_as_id() {
        let e = Encoder::new(
            "flowline-metrics",
            None,
            Some("window_start"),
            Action::Index,
        );
        insta::assert_snapshot!(String::from_utf8(e.encode(&doc()).unwrap()).unwrap());
        assert_eq!(e.index_pattern(), "flowline-metrics");
    }

    #[test]
    fn dated_index_and_id_fields() {
        let e = Encoder::new(
            "flowline-metrics-%Y.%m.%d",
            Some(vec!["host".into(), "count".into()]),
            Some("window_start"),
            Action::Index,
        );
        let s = String::from_utf8(e.encode(&doc()).unwrap()).unwrap();
        assert!(
            s.starts_with(r#"{"index":{"_id":"h1|3","_index":"flowline-metrics-2026.01.02"}}"#),
            "{s}"
        );
        assert_eq!(e.index_pattern(), "flowline-metrics-*");
        for (name, want) in [
            ("flowline-metrics-2026.01.02", true),
            ("flowline-metrics--0044.01.02", true),
            ("flowline-metrics-12026.01.02", true),
            ("flowline-metrics-all", false),
            ("flowline-metrics-2026.1.02", false),
            ("flowline-metrics-2026.01.02x", false),
            ("flowline-metrics-026.01.02", false),
        ] {
            assert_eq!(e.writes_to(name), want, "{name}");
        }
        let plain = Encoder::new("metrics", None, None, Action::Index);
        assert!(plain.writes_to("metrics") && !plain.writes_to("metrics-1"));
    }

    #[test]
    fn update_wraps_the_document_as_upsert() {
        let e = Encoder::new(
            "flowline-current",
            None,
            Some("window_start"),
            Action::Update,
        );
        insta::assert_snapshot!(String::from_utf8(e.encode(&doc()).unwrap()).unwrap());
    }

    #[test]
    fn a_document_is_named_by_its_index_and_id() {
        let e = Encoder::new("m", None, None, Action::Index);
        let doc_of = |r: &Record| e.encode_doc(r).unwrap().1;
        let a = doc_of(&Record::new("{}").with_key("k"));
        assert!(a.is_some());
        assert_eq!(a, doc_of(&Record::new(r#"{"v":2}"#).with_key("k")));
        assert_ne!(a, doc_of(&Record::new("{}").with_key("k2")));
        assert_eq!(
            doc_of(&Record::new("{}")),
            None,
            "no id: never the same document"
        );
        let other = Encoder::new("n", None, None, Action::Index);
        assert_ne!(
            a,
            other
                .encode_doc(&Record::new("{}").with_key("k"))
                .unwrap()
                .1
        );
    }

    #[test]
    fn long_ids_are_hashed_deterministically_and_short_ones_kept() {
        assert_eq!(document_id("h|m|t"), "h|m|t");
        let exact = "x".repeat(MAX_ID_BYTES);
        assert_eq!(document_id(&exact), exact);
        let long = format!("{}|cpu|2026-01-01T00:00:00.000Z", "é".repeat(300));
        let id = document_id(&long);
        assert!(id.len() <= MAX_ID_BYTES, "{}", id.len());
        assert!(id.starts_with(&"é".repeat(200)), "{id}");
        assert_eq!(id, document_id(&long), "deterministic");
        let other = long.replace("cpu", "mem");
        assert_ne!(document_id(&other), id, "the hash covers the whole id");
        let e = Encoder::new("m", None, Some("t"), Action::Index);
        let r = Record::new("{}").with_key(long.clone());
        let lines = String::from_utf8(e.encode(&r).unwrap()).unwrap();
        assert!(lines.contains(&*id), "{lines}");
    }

    #[test]
    fn pretty_printed_documents_stay_one_bulk_line() {
        let e = Encoder::new("m", None, Some("t"), Action::Index);
        let r = Record::new("{\r\n  \"a\": \"x\\ny\",\n  \"b\": 1\n}").with_key("k");
        let s = String::from_utf8(e.encode(&r).unwrap()).unwrap();
        assert_eq!(s.lines().count(), 2, "{s}");
        let doc: Value = serde_json::from_str(s.lines().nth(1).unwrap()).unwrap();
        assert_eq!(doc, serde_json::json!({"a": "x\ny", "b": 1}));
    }

    #[test]
    fn dated_indices_take_any_offset_and_years_before_1970() {
        let e = Encoder::new("m-%Y.%m.%d.%H", None, Some("t"), Action::Index);
        let at = |t: &str| {
            let r = Record::new(format!(r#"{{"t":"{t}"}}"#));
            let s = String::from_utf8(e.encode(&r).unwrap()).unwrap();
            s.split('"').nth(5).unwrap().to_string()
        };
        assert_eq!(at("2026-01-01T02:30:00+05:30"), "m-2025.12.31.21");
        assert_eq!(at("1969-12-31T23:00:00Z"), "m-1969.12.31.23");
        assert_eq!(expand_date("%Y", i64::MAX), None);
    }

    #[test]
    fn the_record_time_names_the_dated_index_without_reading_the_document() {
        let e = Encoder::new("m-%Y.%m.%d", None, Some("t"), Action::Index);
        // 2026-03-04T05:06:07Z; the payload is not even JSON: it is not
        // parsed when the record carries its time.
        let r = Record::new("not json").with_timestamp(1_772_600_767_000);
        let s = String::from_utf8(e.encode(&r).unwrap()).unwrap();
        assert!(s.contains(r#""_index":"m-2026.03.04""#), "{s}");
        // The record's time wins over the document's field.
        let r = Record::new(r#"{"t":"1999-01-01T00:00:00Z"}"#).with_timestamp(1_772_600_767_000);
        let s = String::from_utf8(e.encode(&r).unwrap()).unwrap();
        assert!(s.contains(r#""_index":"m-2026.03.04""#), "{s}");
    }

    #[test]
    fn documents_that_cannot_be_routed_name_the_reason() {
        let e = Encoder::new("m-%Y", None, Some("window_start"), Action::Index);
        assert!(e
            .encode(&Record::new("{nope"))
            .unwrap_err()
            .contains("not JSON"));
        assert!(e
            .encode(&Record::new("{}"))
            .unwrap_err()
            .contains("no usable `window_start`"));
        let e = Encoder::new("m", Some(vec!["id".into()]), Some("t"), Action::Index);
        assert!(e
            .encode(&Record::new("{}"))
            .unwrap_err()
            .contains("no id field `id`"));
    }
}
