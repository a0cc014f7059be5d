//! The versioned JSON API under `/api/v1/`, with named fields (never tuples
//! or Rust `Debug` strings), and its OpenAPI document at
//! `/api/v1/openapi.json`, built from the same route list the router
//! serves, so the two cannot drift apart.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use flowline_runtime::Metrics;
use serde_json::{json, Value};

/// What the API serves: the job's metrics, its configuration summary
/// (secrets redacted), and when it started.
#[derive(Debug, Clone)]
pub struct Api {
    /// The running job's counters and status.
    pub metrics: Arc<Metrics>,
    /// The job file's sections, secrets as `***`.
    pub config: Value,
    /// When the process started the job.
    pub started: Instant,
}

impl Api {
    /// An API over `metrics` with no configuration summary.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            config: Value::Null,
            started: Instant::now(),
        }
    }
}

/// `(path, summary, response schema)` of every `/api/v1` route.
pub const ROUTES: &[(&str, &str, &str)] = &[
    (
        "/api/v1/job",
        "The job: name, state (starting, running, finished), uptime, operator chain and configuration summary",
        "Job",
    ),
    (
        "/api/v1/partitions",
        "Source partitions: position, watermark, lag, idle, owned here",
        "Partitions",
    ),
    (
        "/api/v1/checkpoints",
        "The last 50 completed checkpoints, newest first: id, time, duration, size",
        "Checkpoints",
    ),
];

/// The `/api/v1` routes.
pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/api/v1/job", get(job))
        .route("/api/v1/partitions", get(partitions))
        .route("/api/v1/checkpoints", get(checkpoints))
        .route("/api/v1/openapi.json", get(|| async { Json(openapi()) }))
}

/// The job's state as the API names it.
pub fn state(m: &Metrics) -> &'static str {
    if m.running.load(Relaxed) {
        "running"
    } else if m.ended.load(Relaxed) {
        "finished"
    } else {
        "starting"
    }
}

async fn job(State(api): State<Arc<Api>>) -> Json<Value> {
    let m = &api.metrics;
    let st = m.status();
    // The chain as the runtime names it, one operator per stage.
    let operators: Vec<Value> = split_chain(&st.graph)
        .into_iter()
        .enumerate()
        .map(|(i, op)| {
            let kind = op.split('(').next().unwrap_or(op);
            json!({"id": i, "name": op, "kind": kind})
        })
        .collect();
    Json(json!({
        "name": st.job,
        "state": state(m),
        "uptime_seconds": api.started.elapsed().as_secs_f64(),
        "records_in": m.records_in.load(Relaxed),
        "operators": operators,
        "config": api.config,
    }))
}

/// `a>b(x>y)>c` → `a`, `b(x>y)`, `c`: stages split at `>` outside brackets.
fn split_chain(graph: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in graph.char_indices() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            '>' if depth == 0 => {
                out.push(&graph[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < graph.len() {
        out.push(&graph[start..]);
    }
    out
}

async fn partitions(State(api): State<Arc<Api>>) -> Json<Value> {
    let m = &api.metrics;
    let lag: std::collections::BTreeMap<String, u64> = m.consumer_lag().into_iter().collect();
    let parts: Vec<Value> = m
        .status()
        .partitions
        .iter()
        .map(|p| {
            json!({
                "id": p.id,
                "next_offset": p.next_offset,
                "watermark_ms": p.watermark,
                "lag": lag.get(&p.id),
                "idle": p.idle,
                "owned": p.active,
            })
        })
        .collect();
    Json(json!({ "partitions": parts }))
}

async fn checkpoints(State(api): State<Arc<Api>>) -> Json<Value> {
    let mut h = api.metrics.checkpoint_history();
    h.reverse();
    Json(json!({ "checkpoints": h }))
}

/// The OpenAPI 3.1 document of [`ROUTES`].
pub fn openapi() -> Value {
    let mut paths = serde_json::Map::new();
    for (path, summary, schema) in ROUTES {
        paths.insert(
            path.to_string(),
            json!({"get": {"summary": summary, "responses": {"200": {
                "description": summary,
                "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}
            }}}}),
        );
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Flowline job API", "version": "1"},
        "paths": paths,
        "components": {"schemas": {
            "Job": {"type": "object", "required": ["name", "state", "uptime_seconds", "operators"], "properties": {
                "name": {"type": "string"},
                "state": {"enum": ["starting", "running", "finished"]},
                "uptime_seconds": {"type": "number"},
                "records_in": {"type": "integer"},
                "operators": {"type": "array", "items": {"type": "object", "properties": {
                    "id": {"type": "integer"}, "name": {"type": "string"}, "kind": {"type": "string"}}}},
                "config": {"description": "the job file's sections, secrets as ***"}
            }},
            "Partitions": {"type": "object", "properties": {"partitions": {"type": "array", "items": {"type": "object", "properties": {
                "id": {"type": "string"},
                "next_offset": {"type": "integer"},
                "watermark_ms": {"type": ["integer", "null"]},
                "lag": {"type": ["integer", "null"]},
                "idle": {"type": "boolean"},
                "owned": {"type": "boolean"}
            }}}}},
            "Checkpoints": {"type": "object", "properties": {"checkpoints": {"type": "array", "items": {"type": "object", "properties": {
                "id": {"type": "integer"},
                "created_ms": {"type": "integer"},
                "duration_ms": {"type": "integer"},
                "size_bytes": {"type": "integer"}
            }}}}}
        }}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_splits_at_stages_not_inside_brackets() {
        assert_eq!(
            split_chain("source(k)>try_map(decode)>key_by>window(Tumbling { size: 10 },lateness=0)>aggregate[x>y]>sink(w)"),
            [
                "source(k)",
                "try_map(decode)",
                "key_by",
                "window(Tumbling { size: 10 },lateness=0)",
                "aggregate[x>y]",
                "sink(w)"
            ]
        );
        assert!(split_chain("").is_empty());
    }

    #[test]
    fn the_document_lists_every_route_with_its_schema() {
        let doc = openapi();
        for (path, _, schema) in ROUTES {
            assert!(doc["paths"][path]["get"].is_object(), "{path}");
            assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
        }
        assert_eq!(doc["paths"].as_object().unwrap().len(), ROUTES.len());
    }
}
