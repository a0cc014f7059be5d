//! Indices that exist before the sink starts keep their own mappings: the
//! template applies only to indices created after it. An index made by an
//! earlier run without the template, by another tool, or by dynamic
//! mapping from a first document whose `avg` was `5`, may map a field the
//! template types as `double` as `long`. The server then takes `5.7` and
//! indexes 5 (numeric fields coerce by default: a fraction is truncated),
//! or as `float` and indexes 5.7 to 24 bits; `_source` still shows 5.7, but
//! every aggregation and search uses the changed value. Nothing fails, so
//! nothing says so.
//!
//! So at start the sink reads the mappings of the existing indices its
//! pattern matches and compares each field the template types as a number
//! or date. Documents for an index whose mapping would change their values
//! are refused with the index, the field, both types and the fix; other
//! indices are written as usual. Type differences that make the server
//! refuse a document (a string into a number) or that keep values exact (a
//! `long` where `integer` was asked) are left alone.

use std::collections::HashMap;

use elasticsearch::http::Method;
use elasticsearch::Elasticsearch;
use serde_json::Value;

use crate::{request, Error};

/// Existing indices matching `pattern` whose mappings would change the
/// values of fields `mappings` types, each with the reason.
pub async fn conflicts(
    client: &Elasticsearch,
    pattern: &str,
    mappings: &Value,
) -> Result<HashMap<String, String>, Error> {
    let path = format!("/{pattern}/_mapping");
    let query = [("allow_no_indices", "true"), ("ignore_unavailable", "true")];
    let resp = request::send(client, Method::Get, &path, &query, None).await?;
    let status = resp.status_code().as_u16();
    if status == 404 {
        return Ok(HashMap::new());
    }
    if status == 401 || status == 403 {
        tracing::warn!(path, status, "cannot read the mappings of existing indices: a document for an index whose mapping differs from the template may be stored with a changed value. Fix: grant view_index_metadata on the indices");
        return Ok(HashMap::new());
    }
    if !resp.status_code().is_success() {
        return Err(request::status_error(format!("GET {path}"), resp).await);
    }
    let v = request::json(resp, &path).await?;
    Ok(compare(&v, mappings))
}

/// [`conflicts`] on a `_mapping` response.
pub fn compare(response: &Value, mappings: &Value) -> HashMap<String, String> {
    let mut wanted = Vec::new();
    leaves(&mappings["properties"], "", &mut wanted);
    let mut out = HashMap::new();
    for (index, body) in response.as_object().into_iter().flatten() {
        let mut have = Vec::new();
        leaves(&body["mappings"]["properties"], "", &mut have);
        let have: HashMap<_, _> = have.into_iter().collect();
        let bad: Vec<String> = wanted
            .iter()
            .filter_map(|(field, want)| {
                let got = have.get(field)?;
                let effect = changes(want, got)?;
                Some(format!("`{field}` is {got} there, not {want} ({effect})"))
            })
            .collect();
        if !bad.is_empty() {
            out.insert(
                index.clone(),
                format!(
                    "index `{index}` existed before this sink's template with a mapping that would change the values written: {}. Fix: reindex it into an index created from the template (or delete it), or write to another index name",
                    bad.join("; ")
                ),
            );
        }
    }
    out
}

/// Every field with a `type` under `props`, by dotted path.
fn leaves(props: &Value, prefix: &str, out: &mut Vec<(String, String)>) {
    for (name, m) in props.as_object().into_iter().flatten() {
        let path = format!("{prefix}{name}");
        if let Some(t) = m["type"].as_str() {
            out.push((path.clone(), t.to_string()));
        }
        if m.get("properties").is_some() {
            leaves(&m["properties"], &format!("{path}."), out);
        }
    }
}

/// How an index mapped as `got` changes a value meant for `want`, when it
/// does so without an error.
fn changes(want: &str, got: &str) -> Option<&'static str> {
    const INTS: [&str; 5] = ["byte", "short", "integer", "long", "unsigned_long"];
    let int_bits = |t: &str| match t {
        "byte" => Some(8),
        "short" => Some(16),
        "integer" => Some(32),
        "long" | "unsigned_long" => Some(64),
        _ => None,
    };
    // Bits of mantissa: how many integer digits a float type holds exactly.
    let mantissa = |t: &str| match t {
        "double" => Some(53),
        "float" => Some(24),
        "half_float" => Some(11),
        _ => None,
    };
    let float_want = mantissa(want).is_some();
    match got {
        g if INTS.contains(&g) && float_want => Some("a fraction is truncated"),
        g if INTS.contains(&g) => match (int_bits(want), int_bits(g)) {
            (Some(w), Some(h)) if h < w => Some("a larger integer is out of its range"),
            _ => None,
        },
        "scaled_float" if float_want || int_bits(want).is_some() => {
            Some("a value is rounded to its scaling factor")
        }
        g => match (mantissa(g), mantissa(want), int_bits(want)) {
            (Some(h), Some(w), _) if h < w => Some("a value is rounded to fewer digits"),
            (Some(h), None, Some(w)) if h < w => Some("a large integer is rounded"),
            _ if want == "date_nanos" && g == "date" => Some("nanoseconds are cut to milliseconds"),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn template() -> Value {
        json!({"properties": {
            "host": {"type": "keyword"},
            "avg": {"type": "double"},
            "count": {"type": "long"},
            "window_start": {"type": "date"},
            "stats": {"properties": {"p99": {"type": "double"}}}
        }})
    }

    fn index(props: Value) -> Value {
        json!({"mappings": {"properties": props}})
    }

    #[test]
    fn an_index_that_would_change_values_is_named_with_each_field() {
        let resp = json!({
            "good-1": index(json!({"avg": {"type": "double"}, "count": {"type": "long"}})),
            "bad-1": index(json!({
                "avg": {"type": "long"},
                "count": {"type": "float"},
                "stats": {"properties": {"p99": {"type": "scaled_float", "scaling_factor": 100}}}
            })),
            "wider": index(json!({"count": {"type": "double"}, "host": {"type": "text"}}))
        });
        let c = compare(&resp, &template());
        assert_eq!(c.len(), 2, "{c:?}");
        let bad = &c["bad-1"];
        assert!(
            bad.contains("`avg` is long there, not double (a fraction is truncated)"),
            "{bad}"
        );
        assert!(
            bad.contains("`count` is float there, not long (a large integer is rounded)"),
            "{bad}"
        );
        assert!(bad.contains("`stats.p99` is scaled_float"), "{bad}");
        assert!(bad.contains("Fix: reindex"), "{bad}");
        // A long held in a double loses digits past 2^53: refused too.
        assert!(
            c["wider"].contains("`count` is double there, not long"),
            "{c:?}"
        );
    }

    #[test]
    fn type_pairs_that_keep_values_or_fail_loudly_pass() {
        for (want, got) in [
            ("double", "double"),
            ("integer", "long"),
            ("float", "double"),
            ("date", "date_nanos"),
            ("keyword", "text"),
            ("long", "keyword"),
            ("date", "long"),
        ] {
            assert_eq!(changes(want, got), None, "{want} as {got}");
        }
        for (want, got) in [
            ("double", "float"),
            ("double", "half_float"),
            ("double", "integer"),
            ("long", "integer"),
            ("long", "double"),
            ("integer", "half_float"),
            ("date_nanos", "date"),
        ] {
            assert!(changes(want, got).is_some(), "{want} as {got}");
        }
    }
}
