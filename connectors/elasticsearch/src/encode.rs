//! Documents to bulk lines: index name (fixed or a date pattern on the time
//! field), document id, action.

use std::time::{Duration, UNIX_EPOCH};

use flowline_connector_api::Record;
use serde_json::Value;

use crate::config::Action;

/// How a record becomes two bulk lines.
#[derive(Debug, Clone)]
pub struct Encoder {
    index: String,
    dated: bool,
    id_fields: Option<Vec<String>>,
    time_field: String,
    action: Action,
}

fn millis_of(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => {
            let t = humantime::parse_rfc3339_weak(s.trim_end_matches('Z')).ok()?;
            Some(t.duration_since(UNIX_EPOCH).ok()?.as_millis() as i64)
        }
        _ => None,
    }
}

/// Expands `%Y`, `%m`, `%d`, `%H` (UTC) in `pattern`.
pub fn expand_date(pattern: &str, ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    let s = humantime::format_rfc3339(t).to_string(); // 2026-01-01T10:00:00Z
    pattern
        .replace("%Y", &s[0..4])
        .replace("%m", &s[5..7])
        .replace("%d", &s[8..10])
        .replace("%H", &s[11..13])
}

impl Encoder {
    /// An encoder for these settings.
    pub fn new(
        index: &str,
        id_fields: Option<Vec<String>>,
        time_field: &str,
        action: Action,
    ) -> Self {
        Self {
            index: index.to_string(),
            dated: index.contains('%'),
            id_fields,
            time_field: time_field.to_string(),
            action,
        }
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
        let needs_doc = self.dated || self.id_fields.is_some();
        let doc: Option<Value> = if needs_doc {
            Some(
                serde_json::from_slice(&r.payload)
                    .map_err(|e| format!("document is not JSON: {e}"))?,
            )
        } else {
            None
        };
        let index = if self.dated {
            let ms = doc
                .as_ref()
                .and_then(|d| d.get(&self.time_field))
                .and_then(millis_of)
                .or(r.timestamp)
                .ok_or_else(|| {
                    format!(
                        "document has no usable `{}` for the dated index `{}`",
                        self.time_field, self.index
                    )
                })?;
            expand_date(&self.index, ms)
        } else {
            self.index.clone()
        };
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
            out.extend_from_slice(quote(id).as_bytes());
            out.push(b',');
        }
        out.extend_from_slice(b"\"_index\":");
        out.extend_from_slice(quote(&index).as_bytes());
        out.extend_from_slice(b"}}\n");
        if self.action == Action::Update {
            out.extend_from_slice(b"{\"doc\":");
            out.extend_from_slice(&r.payload);
            out.extend_from_slice(b",\"doc_as_upsert\":true}");
        } else {
            out.extend_from_slice(&r.payload);
        }
        out.push(b'\n');
        Ok(out)
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
        let e = Encoder::new("flowline-metrics", None, "window_start", Action::Index);
        insta::assert_snapshot!(String::from_utf8(e.encode(&doc()).unwrap()).unwrap());
        assert_eq!(e.index_pattern(), "flowline-metrics");
    }

    #[test]
    fn dated_index_and_id_fields() {
        let e = Encoder::new(
            "flowline-metrics-%Y.%m.%d",
            Some(vec!["host".into(), "count".into()]),
            "window_start",
            Action::Index,
        );
        let s = String::from_utf8(e.encode(&doc()).unwrap()).unwrap();
        assert!(
            s.starts_with(r#"{"index":{"_id":"h1|3","_index":"flowline-metrics-2026.01.02"}}"#),
            "{s}"
        );
        assert_eq!(e.index_pattern(), "flowline-metrics-*");
    }

    #[test]
    fn update_wraps_the_document_as_upsert() {
        let e = Encoder::new("flowline-current", None, "window_start", Action::Update);
        insta::assert_snapshot!(String::from_utf8(e.encode(&doc()).unwrap()).unwrap());
    }

    #[test]
    fn documents_that_cannot_be_routed_name_the_reason() {
        let e = Encoder::new("m-%Y", None, "window_start", Action::Index);
        assert!(e
            .encode(&Record::new("{nope"))
            .unwrap_err()
            .contains("not JSON"));
        assert!(e
            .encode(&Record::new("{}"))
            .unwrap_err()
            .contains("no usable `window_start`"));
        let e = Encoder::new("m", Some(vec!["id".into()]), "t", Action::Index);
        assert!(e
            .encode(&Record::new("{}"))
            .unwrap_err()
            .contains("no id field `id`"));
    }
}
