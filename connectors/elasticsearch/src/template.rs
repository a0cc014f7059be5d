//! The index template: time fields as `date`, keys as `keyword`, numbers
//! typed, so Kibana needs no scripted fields. Created at start, or updated
//! when the installed one differs (compared by the `version` it carries, a
//! hash of the body).

use std::hash::{Hash, Hasher};

use elasticsearch::http::Method;
use elasticsearch::Elasticsearch;
use serde_json::{json, Value};

use crate::detect::Server;
use crate::Error;

/// The mapping of Flowline's documents (window aggregates, and the fields the
/// anomaly and status documents add). Other strings (a job's own key
/// fields) map to `keyword`; other numbers (a chosen `p90`) to `double`,
/// never to a 32-bit `float` that would round them.
pub fn mappings(time_field: &str) -> Value {
    let date = json!({"type": "date", "format": "strict_date_optional_time||epoch_millis"});
    let mut props = serde_json::Map::new();
    for f in ["host", "metric", "region", "status", "direction"] {
        props.insert(f.into(), json!({"type": "keyword"}));
    }
    for f in ["window_start", "window_end", "episode_start", time_field] {
        props.insert(f.into(), date.clone());
    }
    for f in ["count", "consecutive_windows", "anomalous_windows"] {
        props.insert(f.into(), json!({"type": "long"}));
    }
    props.insert("explanation".into(), json!({"type": "text"}));
    for f in [
        "sum",
        "min",
        "max",
        "avg",
        "p50",
        "p95",
        "p99",
        "value",
        "baseline_mean",
        "baseline_std",
        "z_score",
        "threshold",
    ] {
        props.insert(f.into(), json!({"type": "double"}));
    }
    json!({
        "dynamic_templates": [
            {"strings_as_keywords": {"match_mapping_type": "string", "mapping": {"type": "keyword", "ignore_above": 1024}}},
            {"numbers_as_doubles": {"match_mapping_type": "double", "mapping": {"type": "double"}}}
        ],
        "properties": props
    })
}

fn version_of(v: &Value) -> i64 {
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new();
    v.to_string().hash(&mut h);
    (h.finish() & 0x7fff_ffff) as i64
}

/// The template body for `server`: composable or legacy.
pub fn body(
    pattern: &str,
    time_field: &str,
    shards: Option<u32>,
    replicas: Option<u32>,
    composable: bool,
) -> Value {
    let mut settings = serde_json::Map::new();
    if let Some(s) = shards {
        settings.insert("number_of_shards".into(), json!(s));
    }
    if let Some(r) = replicas {
        settings.insert("number_of_replicas".into(), json!(r));
    }
    let mut b = if composable {
        json!({
            "index_patterns": [pattern],
            "priority": 200,
            "template": {"settings": settings, "mappings": mappings(time_field)},
            "_meta": {"managed_by": "flowline"}
        })
    } else {
        json!({
            "index_patterns": [pattern],
            "order": 200,
            "settings": settings,
            "mappings": mappings(time_field)
        })
    };
    let v = version_of(&b);
    b["version"] = json!(v);
    b
}

/// Installs the template unless the same version is there already.
/// Returns whether it wrote one.
pub async fn ensure(
    client: &Elasticsearch,
    server: &Server,
    name: &str,
    body: &Value,
) -> Result<bool, Error> {
    let composable = server.composable_templates();
    let path = if composable {
        format!("/_index_template/{name}")
    } else {
        format!("/_template/{name}")
    };
    let unreachable = |e: elasticsearch::Error| Error::Unreachable {
        url: path.clone(),
        message: e.to_string(),
    };
    let t = client.transport();
    let resp = t
        .send(
            Method::Get,
            &path,
            Default::default(),
            None::<&()>,
            None::<Vec<u8>>,
            None,
        )
        .await
        .map_err(unreachable)?;
    let want = body["version"].as_i64();
    if resp.status_code().is_success() {
        let v: Value = resp.json().await.map_err(unreachable)?;
        let have = if composable {
            v["index_templates"][0]["index_template"]["version"].as_i64()
        } else {
            v[name]["version"].as_i64()
        };
        if have == want {
            return Ok(false);
        }
    }
    let resp = t
        .send(
            Method::Put,
            &path,
            Default::default(),
            None::<&()>,
            Some(body.to_string().into_bytes()),
            None,
        )
        .await
        .map_err(unreachable)?;
    let status = resp.status_code().as_u16();
    if !(200..300).contains(&status) {
        let text = resp.text().await.unwrap_or_default();
        return Err(Error::Status {
            what: format!("PUT {path}"),
            status,
            body: text.chars().take(500).collect(),
        });
    }
    tracing::info!(template = name, %server, "index template installed");
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composable_template_body() {
        insta::assert_json_snapshot!(body(
            "flowline-metrics-*",
            "window_start",
            Some(1),
            Some(0),
            true
        ));
    }

    #[test]
    fn legacy_template_body() {
        let b = body("flowline-metrics-*", "window_start", None, None, false);
        assert_eq!(b["mappings"]["properties"]["window_start"]["type"], "date");
        assert!(b.get("template").is_none() && b["order"] == 200);
    }

    #[test]
    fn version_changes_with_the_body() {
        let a = body("a-*", "window_start", None, None, true);
        let b = body("b-*", "window_start", None, None, true);
        assert_ne!(a["version"], b["version"]);
        assert_eq!(
            a["version"],
            body("a-*", "window_start", None, None, true)["version"]
        );
    }
}
