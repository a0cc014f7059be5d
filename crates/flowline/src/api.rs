//! The versioned JSON API under `/api/v1/`, with named fields (never tuples
//! or Rust `Debug` strings), and its OpenAPI document at
//! `/api/v1/openapi.json` ([`crate::openapi`]), built from the same route
//! list the router serves, so the two cannot drift apart. The page at `/`
//! and `flowline top` read nothing else.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use flowline_runtime::Metrics;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::rates::Rates;
use crate::results::Results;

/// What the API serves: the job's metrics, its configuration summary
/// (secrets redacted), when it started, the rates sampled each second and
/// the newest results.
#[derive(Debug, Clone)]
pub struct Api {
    /// The running job's counters and status.
    pub metrics: Arc<Metrics>,
    /// The job file's sections, secrets as `***`.
    pub config: Value,
    /// When the process started the job.
    pub started: Instant,
    /// Counters sampled once a second (filled while the server runs).
    pub rates: Arc<Rates>,
    /// The newest window results and anomalies, when the job keeps them.
    pub results: Option<Arc<Results>>,
    /// `/health` answers 503 once a sink or the source fails this long.
    pub unhealthy_after: Duration,
}

impl Api {
    /// An API over `metrics` with no configuration summary and no results.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            config: Value::Null,
            started: Instant::now(),
            rates: Arc::default(),
            results: None,
            unhealthy_after: Duration::from_secs(60),
        }
    }

    /// What has been wrong for longer than [`Self::unhealthy_after`].
    pub fn unhealthy(&self) -> Vec<String> {
        self.metrics.ops().unhealthy(self.unhealthy_after)
    }
}

/// `(path, summary, response schema)` of every `/api/v1` JSON route.
pub const ROUTES: &[(&str, &str, &str)] = &[
    (
        "/api/v1/job",
        "The job: name, state (starting, restoring, running, failing, finished), uptime, health and configuration summary",
        "Job",
    ),
    (
        "/api/v1/graph",
        "Operators (source, chain stages, sinks) with records in, rates over 10 s and 1 min, busy and backpressured ratios; and the edges between them",
        "Graph",
    ),
    (
        "/api/v1/partitions",
        "Source partitions: position, watermark, lag, idle, owner",
        "Partitions",
    ),
    (
        "/api/v1/checkpoints",
        "The last 50 completed checkpoints, newest first: id, time, duration, size; and the store",
        "Checkpoints",
    ),
    (
        "/api/v1/dead-letters",
        "Dead letters counted by stage, kind and reason, and the last 20 with reason and source position",
        "DeadLetters",
    ),
    (
        "/api/v1/windows",
        "The newest window results and anomalies; with key and metric, that key's recent windows (watched from then on)",
        "Windows",
    ),
    (
        "/api/v1/keys",
        "Keys to chart, by prefix: of the first 20 000 seen, the watched ones and those of the newest results",
        "Keys",
    ),
];

/// The `/api/v1` routes.
pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/api/v1/job", get(job))
        .route("/api/v1/graph", get(graph))
        .route("/api/v1/partitions", get(partitions))
        .route("/api/v1/checkpoints", get(checkpoints))
        .route("/api/v1/dead-letters", get(dead_letters))
        .route("/api/v1/windows", get(windows))
        .route("/api/v1/keys", get(keys))
        .route("/api/v1/tap", get(tap))
        .route(
            "/api/v1/openapi.json",
            get(|| async { Json(crate::openapi::document()) }),
        )
}

/// The job's state as the API names it.
pub fn state(api: &Api) -> &'static str {
    let m = &api.metrics;
    if m.running.load(Relaxed) {
        if api.unhealthy().is_empty() {
            "running"
        } else {
            "failing"
        }
    } else if m.ended.load(Relaxed) {
        "finished"
    } else if m.restoring.load(Relaxed) {
        "restoring"
    } else {
        "starting"
    }
}

async fn job(State(api): State<Arc<Api>>) -> Json<Value> {
    let m = &api.metrics;
    let reasons = api.unhealthy();
    let wm = m.watermark.load(Relaxed);
    Json(json!({
        "name": m.status().job,
        "state": state(&api),
        "uptime_seconds": api.started.elapsed().as_secs_f64(),
        "records_in": m.records_in.load(Relaxed),
        "watermark_ms": (wm != i64::MIN).then_some(wm),
        "health": {"healthy": reasons.is_empty(), "reasons": reasons},
        "config": api.config,
    }))
}

const TEN_S: Duration = Duration::from_secs(10);
const MINUTE: Duration = Duration::from_secs(60);

async fn graph(State(api): State<Arc<Api>>) -> Json<Value> {
    let m = &api.metrics;
    let r = &api.rates;
    let task_ratio = |task: &str| {
        json!({
            "busy_ratio": r.rate(&format!("busy:{task}"), TEN_S).map(|x| x.min(1.0)),
            "backpressured_ratio": r.rate(&format!("backpressured:{task}"), TEN_S).map(|x| x.min(1.0)),
        })
    };
    let node = |id: usize, name: &str, kind: &str, task: &str, records_in: u64, counter: &str| {
        let mut n = json!({
            "id": id, "name": name, "kind": kind, "task": task, "worker": 0,
            "records_in": records_in,
            "rate_10s": r.rate(counter, TEN_S),
            "rate_1m": r.rate(counter, MINUTE),
        });
        if let (Some(o), Value::Object(t)) = (n.as_object_mut(), task_ratio(task)) {
            o.extend(t);
        }
        n
    };
    let stages = m.ops().stages();
    let written: std::collections::BTreeMap<String, u64> = m.records_out().into_iter().collect();
    let mut nodes = vec![node(
        0,
        m.source_name(),
        "source",
        "source",
        m.records_in.load(Relaxed),
        "source",
    )];
    let mut edges = Vec::new();
    let mut prev = 0usize;
    for (i, s) in stages.iter().enumerate() {
        let id = i + 1;
        nodes.push(node(
            id,
            &s.name,
            s.kind,
            "chain",
            s.records_in,
            &format!("stage:{i}"),
        ));
        edges.push(json!({"from": prev, "to": id, "records": s.records_in, "rate_10s": r.rate(&format!("stage:{i}"), TEN_S)}));
        prev = id;
    }
    let mut next = stages.len() + 1;
    for (sink, n) in &written {
        let counter = format!("sink:{sink}");
        nodes.push(node(next, sink, "sink", sink, *n, &counter));
        for (i, s) in stages.iter().enumerate() {
            if s.sink.as_deref() == Some(sink) {
                edges.push(json!({"from": i + 1, "to": next, "records": n, "rate_10s": r.rate(&counter, TEN_S)}));
            }
        }
        next += 1;
    }
    let dead = m.bad_records.load(Relaxed) + m.late_records.load(Relaxed);
    nodes.push(json!({"id": next, "name": "dead letters", "kind": "dead_letter", "task": null, "worker": 0,
        "records_in": dead, "rate_10s": r.rate("dead_letters", TEN_S), "rate_1m": r.rate("dead_letters", MINUTE),
        "busy_ratio": null, "backpressured_ratio": null}));
    if !stages.is_empty() {
        edges.push(json!({"from": 1, "to": next, "records": dead, "rate_10s": r.rate("dead_letters", TEN_S)}));
    }
    // Records out of a node: what its edges carried, dead letters aside.
    for n in nodes.iter_mut() {
        let id = n["id"].as_u64();
        let out: u64 = edges
            .iter()
            .filter(|e| e["from"].as_u64() == id && e["to"].as_u64() != Some(next as u64))
            .filter_map(|e| e["records"].as_u64())
            .sum();
        n["records_out"] = out.into();
    }
    let tasks = m.ops().tasks();
    Json(json!({ "nodes": nodes, "edges": edges, "tasks": tasks }))
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
                "owner": if p.active { "this process" } else { "another process (state restored, not assigned here)" },
                "worker": 0,
            })
        })
        .collect();
    Json(json!({ "partitions": parts }))
}

async fn checkpoints(State(api): State<Arc<Api>>) -> Json<Value> {
    let mut h = api.metrics.checkpoint_history();
    h.reverse();
    let store = api.config.get("checkpoint").cloned().unwrap_or(Value::Null);
    Json(json!({ "store": store, "checkpoints": h }))
}

async fn dead_letters(State(api): State<Arc<Api>>) -> Json<Value> {
    let m = &api.metrics;
    let (counts, last) = m.ops().dead_letters();
    Json(json!({
        "bad_records": m.bad_records.load(Relaxed),
        "late_records": m.late_records.load(Relaxed),
        "counts": counts,
        "last": last,
    }))
}

#[derive(Debug, Deserialize)]
struct WindowsQuery {
    key: Option<String>,
    metric: Option<String>,
    limit: Option<usize>,
}

async fn windows(State(api): State<Arc<Api>>, Query(q): Query<WindowsQuery>) -> Json<Value> {
    let Some(results) = &api.results else {
        return Json(json!({"latest": [], "anomalies": [], "series": null}));
    };
    let (latest, anomalies) = results.latest(q.limit.unwrap_or(50).min(crate::results::LATEST));
    let series = match (&q.key, &q.metric) {
        (Some(k), Some(m)) => serde_json::to_value(results.series(k, m)).unwrap_or_default(),
        _ => Value::Null,
    };
    Json(json!({"latest": latest, "anomalies": anomalies, "series": series}))
}

#[derive(Debug, Deserialize)]
struct KeysQuery {
    prefix: Option<String>,
    limit: Option<usize>,
}

async fn keys(State(api): State<Arc<Api>>, Query(q): Query<KeysQuery>) -> Json<Value> {
    let keys: Vec<Value> = api
        .results
        .as_ref()
        .map(|r| {
            r.keys(
                q.prefix.as_deref().unwrap_or(""),
                q.limit.unwrap_or(50).min(200),
            )
        })
        .unwrap_or_default()
        .into_iter()
        .map(|(key, metric)| json!({"key": key, "metric": metric}))
        .collect();
    Json(json!({ "keys": keys }))
}

#[derive(Debug, Deserialize)]
struct TapQuery {
    stage: String,
    limit: Option<usize>,
    wait_ms: Option<u64>,
}

/// Records tapped at most per request, and the longest wait for them.
const TAP_MAX: usize = 1000;
const TAP_WAIT_MAX: Duration = Duration::from_secs(10);

/// NDJSON of up to `limit` records passing `stage`, within `wait_ms`.
async fn tap(State(api): State<Arc<Api>>, Query(q): Query<TapQuery>) -> Response {
    let limit = q.limit.unwrap_or(10).clamp(1, TAP_MAX);
    let wait = Duration::from_millis(q.wait_ms.unwrap_or(5_000)).min(TAP_WAIT_MAX);
    let mut rx = match api.metrics.ops().tap(&q.stage, limit) {
        Ok(rx) => rx,
        Err(e) => return (StatusCode::NOT_FOUND, format!("{e}\n")).into_response(),
    };
    let stream = async_stream(move |tx| async move {
        let deadline = tokio::time::Instant::now() + wait;
        for _ in 0..limit {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(t)) => {
                    let mut line = serde_json::to_vec(&t).unwrap_or_default();
                    line.push(b'\n');
                    if tx.send(Ok(line)).await.is_err() {
                        return;
                    }
                }
                _ => return,
            }
        }
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response()
}

type Chunk = Result<Vec<u8>, std::io::Error>;

/// A stream fed by a task through a small channel.
fn async_stream<F, Fut>(f: F) -> impl futures_core::Stream<Item = Chunk>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Chunk>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(f(tx));
    ReceiverStream(rx)
}

struct ReceiverStream(tokio::sync::mpsc::Receiver<Chunk>);

impl futures_core::Stream for ReceiverStream {
    type Item = Chunk;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Chunk>> {
        self.0.poll_recv(cx)
    }
}
