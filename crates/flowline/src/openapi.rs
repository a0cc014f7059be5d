//! The OpenAPI 3.1 document of the `/api/v1` routes ([`crate::api::ROUTES`]):
//! every answer's JSON Schema, strict enough that a test can validate each
//! live answer against it (`additionalProperties: false` where the fields
//! are ours).

use serde_json::{json, Value};

use crate::api::ROUTES;

fn obj(required: &[&str], props: Value) -> Value {
    json!({"type": "object", "required": required, "properties": props, "additionalProperties": false})
}

fn nullable(t: &str) -> Value {
    json!({"type": [t, "null"]})
}

fn schemas() -> Value {
    let int = json!({"type": "integer"});
    let num = json!({"type": "number"});
    let string = json!({"type": "string"});
    let ratio = json!({"type": ["number", "null"], "minimum": 0, "maximum": 1});
    let node = obj(
        &[
            "id",
            "name",
            "kind",
            "task",
            "worker",
            "records_in",
            "rate_10s",
            "rate_1m",
            "busy_ratio",
            "backpressured_ratio",
        ],
        json!({
            "id": int, "name": string,
            "kind": {"enum": ["source", "try_map", "try_flat_map", "map", "filter", "flat_map", "timestamps", "window_aggregate", "process", "side_sink", "sink", "dead_letter"]},
            "task": nullable("string"), "worker": int, "records_in": int,
            "records_out": {"type": "integer", "description": "what its edges carried, dead letters aside (a sink: 0)"},
            "rate_10s": nullable("number"), "rate_1m": nullable("number"),
            "busy_ratio": ratio, "backpressured_ratio": ratio
        }),
    );
    let edge = obj(
        &["from", "to", "records", "rate_10s"],
        json!({"from": int, "to": int, "records": int, "rate_10s": nullable("number")}),
    );
    let task = obj(
        &["name", "busy_seconds", "backpressured_seconds"],
        json!({"name": string, "busy_seconds": nullable("number"), "backpressured_seconds": nullable("number")}),
    );
    let point = obj(
        &[
            "key",
            "metric",
            "window_start_ms",
            "window_end_ms",
            "count",
            "avg",
            "min",
            "max",
            "update",
        ],
        json!({"key": string, "metric": string, "window_start_ms": int, "window_end_ms": int,
               "count": int, "avg": num, "min": num, "max": num, "update": {"type": "boolean"}}),
    );
    let anomaly = obj(
        &[
            "key",
            "metric",
            "window_start",
            "value",
            "z_score",
            "direction",
        ],
        json!({"key": string, "metric": string, "window_start": string, "value": num, "z_score": num,
               "direction": {"enum": ["above", "below"]}}),
    );
    json!({
        "Job": obj(&["name", "state", "uptime_seconds", "records_in", "watermark_ms", "health", "config"], json!({
            "name": string,
            "state": {"enum": ["starting", "restoring", "running", "failing", "finished"]},
            "uptime_seconds": num,
            "records_in": int,
            "watermark_ms": nullable("integer"),
            "health": obj(&["healthy", "reasons"], json!({"healthy": {"type": "boolean"}, "reasons": {"type": "array", "items": string}})),
            "config": {"description": "the job file's sections, secrets as ***"}
        })),
        "Graph": obj(&["nodes", "edges", "tasks"], json!({
            "nodes": {"type": "array", "items": node},
            "edges": {"type": "array", "items": edge},
            "tasks": {"type": "array", "items": task}
        })),
        "Partitions": obj(&["partitions"], json!({"partitions": {"type": "array", "items": obj(
            &["id", "next_offset", "watermark_ms", "lag", "idle", "owned", "owner", "worker"],
            json!({"id": string, "next_offset": int, "watermark_ms": nullable("integer"), "lag": nullable("integer"),
                   "idle": {"type": "boolean"}, "owned": {"type": "boolean"}, "owner": string, "worker": int}))}})),
        "Checkpoints": obj(&["store", "checkpoints"], json!({
            "store": {"description": "the [checkpoint] section, or null"},
            "checkpoints": {"type": "array", "maxItems": 50, "items": obj(
                &["id", "created_ms", "duration_ms", "size_bytes"],
                json!({"id": int, "created_ms": int, "duration_ms": int, "size_bytes": int}))}
        })),
        "DeadLetters": obj(&["bad_records", "late_records", "counts", "last"], json!({
            "bad_records": int, "late_records": int,
            "counts": {"type": "array", "items": obj(&["stage", "kind", "reason", "count"],
                json!({"stage": string, "kind": {"enum": ["bad_record", "late", "rejected"]}, "reason": string, "count": int}))},
            "last": {"type": "array", "maxItems": 20, "items": obj(&["at_ms", "stage", "kind", "reason", "partition", "offset"],
                json!({"at_ms": int, "stage": string, "kind": {"enum": ["bad_record", "late", "rejected"]}, "reason": string,
                       "partition": nullable("string"), "offset": nullable("integer")}))}
        })),
        "Windows": obj(&["latest", "anomalies", "series"], json!({
            "latest": {"type": "array", "items": point},
            "anomalies": {"type": "array", "items": anomaly},
            "series": {"oneOf": [{"type": "null"}, obj(&["key", "metric", "points", "anomalies"], json!({
                "key": string, "metric": string,
                "points": {"type": "array", "items": point},
                "anomalies": {"type": "array", "items": anomaly}}))]}
        })),
        "Keys": obj(&["keys"], json!({"keys": {"type": "array", "items": obj(&["key", "metric"], json!({"key": string, "metric": string}))}}))
    })
}

/// The OpenAPI 3.1 document of [`ROUTES`] and the tap.
pub fn document() -> Value {
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
    paths.insert(
        "/api/v1/tap".into(),
        json!({"get": {
            "summary": "Up to `limit` records passing `stage` (source, a sink, the dead-letter sink), sampled, within `wait_ms`: one JSON object per line",
            "parameters": [
                {"name": "stage", "in": "query", "required": true, "schema": {"type": "string"}},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                {"name": "wait_ms", "in": "query", "schema": {"type": "integer", "maximum": 10000}}
            ],
            "responses": {
                "200": {"description": "NDJSON of {stage, partition, offset, timestamp, key, payload}", "content": {"application/x-ndjson": {}}},
                "404": {"description": "no such stage; the answer names the stages"}
            }
        }}),
    );
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Flowline job API", "version": "1"},
        "paths": paths,
        "components": {"schemas": schemas()}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_lists_every_route_with_its_schema() {
        let doc = document();
        for (path, _, schema) in ROUTES {
            assert!(doc["paths"][path]["get"].is_object(), "{path}");
            assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
        }
        assert_eq!(doc["paths"].as_object().unwrap().len(), ROUTES.len() + 1);
    }
}
