//! The operations endpoint: the job page at `/`, `/health`, `/ready`,
//! `/metrics` (OpenMetrics text), `/api/status` (JSON) and the versioned API under `/api/v1/`
//! ([`crate::api`]), on a configured address (`[http] listen`).
//!
//! axum routes, served by hyper one connection at a time under a cap. It
//! can never take the job down: at most [`Limits::max_connections`] are
//! served at once (more are answered 503 and closed), a connection that
//! sends no complete request head within [`Limits::idle`] is closed
//! (hyper's header read timeout), a handler that takes longer is answered
//! 408 (tower-http's timeout), one request per connection, GET only, and a
//! failing `accept` (out of file descriptors) backs off instead of
//! spinning. [`serve_until`] stops accepting on a signal and lets the
//! requests in progress finish.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use flowline_runtime::Metrics;
use tokio::io::AsyncWriteExt;

use crate::api::Api;
use tokio::net::TcpListener;

/// Bounds of the endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Time for a client to send its request (and to take the answer).
    pub idle: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 64,
            idle: std::time::Duration::from_secs(5),
        }
    }
}

/// Binds `addr`; fails at start (before any work) when it cannot.
pub async fn bind(addr: &str) -> Result<TcpListener, crate::Error> {
    check_listen(addr).await?;
    TcpListener::bind(addr)
        .await
        .map_err(|e| listen_error(addr, e))
}

/// What `validate` checks of `[http] listen`: the address resolves (it
/// does not bind, so validating the file of a running job works).
pub async fn check_listen(addr: &str) -> Result<(), crate::Error> {
    match tokio::net::lookup_host(addr).await {
        Ok(mut a) => match a.next() {
            Some(_) => Ok(()),
            None => Err(listen_error(addr, "no address")),
        },
        Err(e) => Err(listen_error(addr, e)),
    }
}

fn listen_error(addr: &str, e: impl std::fmt::Display) -> crate::Error {
    crate::Error::Config {
        field: "http.listen".into(),
        message: format!("cannot listen on {addr}: {e}. Fix: choose a free port, e.g. listen = \"127.0.0.1:9464\""),
    }
}

/// `flowline health`: asks a running job's `/health` (the container
/// healthcheck, as the image has no curl). Ok when it answers 200 `ok`
/// within `timeout`; otherwise the reason.
pub async fn probe(url: &str, timeout: std::time::Duration) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("{url} did not answer within {timeout:?}: {e}. Fix: check that the job runs with [http] listen on that address"))?;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    if status.is_success() && body.trim() == "ok" {
        Ok(())
    } else {
        Err(format!(
            "{url} answered {status}: {}",
            body.chars().take(200).collect::<String>().trim()
        ))
    }
}

/// The routes, on the job's metrics.
pub fn router(api: Api) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/", get(crate::page::index))
        .route("/assets/{file}", get(crate::page::asset))
        .route("/ready", get(ready))
        .route("/metrics", get(prometheus))
        .route("/api/status", get(status))
        .merge(crate::api::routes())
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "not found: try /, /health, /ready, /metrics, /api/status or /api/v1/openapi.json\n",
            )
        })
        .with_state(Arc::new(api))
}

/// `[http]` of a job file.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    /// Address of the page, `/health`, `/metrics` and the API.
    pub listen: String,
    /// `/health` answers 503 once a sink or the source fails this long.
    pub unhealthy_after: Option<String>,
}

/// `[http] unhealthy_after`: 60 s when not set.
pub fn unhealthy_after(http: Option<&HttpSection>) -> Result<std::time::Duration, crate::Error> {
    match http.and_then(|h| h.unhealthy_after.as_deref()) {
        None => Ok(std::time::Duration::from_secs(60)),
        Some(v) => flowline_connector_api::time::parse_duration(
            "http.unhealthy_after",
            v,
            std::time::Duration::from_secs(1)..=std::time::Duration::from_secs(86_400),
        )
        .map_err(|message| crate::Error::Config {
            field: "http.unhealthy_after".into(),
            message,
        }),
    }
}

/// 200 `ok` while nothing has been failing longer than
/// [`Api::unhealthy_after`]; 503 with the reasons otherwise (a sink whose
/// server is away, a source without a connection to its own).
async fn health(State(api): State<Arc<Api>>) -> impl IntoResponse {
    let reasons = api.unhealthy();
    if reasons.is_empty() {
        (StatusCode::OK, "ok\n".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: {}\n", reasons.join("; ")),
        )
    }
}

/// 200 once the job has restored its state and reads; 503 before (while it
/// restores) and after it ended.
async fn ready(State(api): State<Arc<Api>>) -> impl IntoResponse {
    if api.metrics.running.load(Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the job is restoring its state, or has ended\n",
        )
    }
}

async fn prometheus(State(api): State<Arc<Api>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        api.metrics.render_prometheus(),
    )
}

async fn status(State(api): State<Arc<Api>>) -> impl IntoResponse {
    let m = &api.metrics;
    let mut v = serde_json::to_value(m.status()).unwrap_or_default();
    v["records_in"] = m.records_in.load(Relaxed).into();
    v["records_out"] = serde_json::to_value(m.records_out()).unwrap_or_default();
    let wm = m.watermark.load(Relaxed);
    v["watermark"] = if wm == i64::MIN {
        serde_json::Value::Null
    } else {
        wm.into()
    };
    axum::Json(v)
}

/// Serves until the task is dropped, with the default [`Limits`].
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    serve_with(listener, metrics, Limits::default()).await
}

/// Serves until the task is dropped.
pub async fn serve_with(listener: TcpListener, metrics: Arc<Metrics>, limits: Limits) {
    serve_until(listener, Api::new(metrics), limits, std::future::pending()).await
}

/// Serves until `shutdown` resolves, then stops accepting and waits (at most
/// [`Limits::idle`]) for the requests in progress.
pub async fn serve_until(
    listener: TcpListener,
    api: Api,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()>,
) {
    use tower_http::timeout::TimeoutLayer;
    // Rates are sampled while the server runs.
    let sampler = api.rates.spawn(api.metrics.clone());
    let _sampler = AbortOnDrop(sampler);
    let app = router(api).layer(TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        limits.idle,
    ));
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let mut last_warn: Option<std::time::Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            a = listener.accept() => a,
        };
        let mut sock = match accepted {
            Ok((sock, _)) => sock,
            Err(e) => {
                // EMFILE and the like: wait instead of spinning on it.
                if last_warn.is_none_or(|t| t.elapsed().as_secs() >= 60) {
                    tracing::warn!(error = %e, "the HTTP endpoint cannot accept connections; retrying");
                    last_warn = Some(std::time::Instant::now());
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tokio::spawn(async move {
                let busy = "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 5\r\nconnection: close\r\n\r\nbusy\n";
                let _ = tokio::time::timeout(limits.idle, sock.write_all(busy.as_bytes())).await;
            });
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(limits.idle)
                .keep_alive(false)
                .max_buf_size(64 * 1024)
                .serve_connection(hyper_util::rt::TokioIo::new(sock), service);
            // Bounded: the head within `idle`, the handler within `idle`.
            let _ = tokio::time::timeout(limits.idle * 3, conn).await;
        });
    }
    // The requests in progress hold permits: wait for them, bounded.
    let _ = tokio::time::timeout(
        limits.idle * 3,
        permits.acquire_many(limits.max_connections as u32),
    )
    .await;
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowline_connector_api::Record;
    use flowline_connector_testkit::gate::{Gate, Gated};
    use flowline_connector_testkit::{MemorySink, MemorySource};
    use flowline_runtime::{JobConfig, StreamEnvironment};
    use tokio::io::AsyncReadExt;

    async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
        request(addr, "GET", path).await
    }

    async fn request(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("{method} {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let status = out[9..12].parse().unwrap();
        (status, out.split_once("\r\n\r\n").unwrap().1.to_string())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serves_health_metrics_and_status_of_a_job() {
        let env = StreamEnvironment::new(JobConfig::named("http-test"));
        let sink = env.add_sink("out", Box::new(MemorySink::new()));
        env.source(
            "mem",
            Box::new(MemorySource::new(vec![(0..10)
                .map(|i| Record::new(i.to_string()).with_timestamp(i * 1000))
                .collect()])),
        )
        .sink(sink);
        let handle = env.start().unwrap();
        let metrics = handle.metrics();
        handle.join().await.unwrap();
        let listener = bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener, metrics));
        assert_eq!(get(addr, "/health").await, (200, "ok\n".into()));
        let (st, body) = get(addr, "/metrics").await;
        assert_eq!(st, 200);
        assert!(
            body.contains("flowline_records_in_total{component=\"mem\"} 10"),
            "{body}"
        );
        assert!(
            body.contains("flowline_records_out_total{component=\"out\"} 10"),
            "{body}"
        );
        let (st, body) = get(addr, "/api/status").await;
        assert_eq!(st, 200);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["job"], "http-test");
        assert_eq!(v["records_in"], 10);
        assert_eq!(v["partitions"][0]["id"], "mem-0");
        assert_eq!(v["partitions"][0]["next_offset"], 10);
        assert_eq!(get(addr, "/nope").await.0, 404);
        assert_eq!(request(addr, "POST", "/health").await.0, 405);
        // The job has ended: not ready.
        assert_eq!(get(addr, "/ready").await.0, 503);
        let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = busy.local_addr().unwrap().to_string();
        assert!(bind(&taken)
            .await
            .unwrap_err()
            .to_string()
            .contains("http.listen"));
        server.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_connections_are_capped_and_timed_out() {
        let env = StreamEnvironment::new(JobConfig::named("http-limits"));
        let sink = env.add_sink("out", Box::new(MemorySink::new()));
        env.source("mem", Box::new(MemorySource::new(vec![vec![]])))
            .sink(sink);
        let handle = env.start().unwrap();
        let metrics = handle.metrics();
        handle.join().await.unwrap();
        let listener = bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = Limits {
            max_connections: 8,
            idle: std::time::Duration::from_millis(300),
        };
        let server = tokio::spawn(serve_with(listener, metrics, limits));
        // 8 idle connections take every slot; the ninth is told so.
        let mut idle = Vec::new();
        for _ in 0..8 {
            idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        let mut ninth = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut out = String::new();
        ninth.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 503"), "{out}");
        // The idle ones are closed after `idle`, freeing the slots.
        for mut c in idle {
            let mut b = [0u8; 1];
            let n = tokio::time::timeout(std::time::Duration::from_secs(10), c.read(&mut b))
                .await
                .expect("closed by the server")
                .unwrap_or(0);
            assert_eq!(n, 0);
        }
        assert_eq!(get(addr, "/health").await, (200, "ok\n".into()));
        server.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ready_while_the_job_runs_and_shutdown_lets_requests_finish() {
        let env = StreamEnvironment::new(JobConfig::named("http-ready"));
        let dir = tempfile::tempdir().unwrap();
        env.checkpoint_store(flowline_runtime::LocalDirStore::new(dir.path()).unwrap());
        let sink = env.add_sink("out", Box::new(MemorySink::new()));
        // Three records, then the gate holds the source open: the job runs.
        let gate = Gate::closed_at(3);
        let records = (0..10)
            .map(|i| Record::new(i.to_string()).with_timestamp(i))
            .collect();
        env.source(
            "mem",
            Box::new(Gated::new(MemorySource::new(vec![records]), gate.clone())),
        )
        .sink(sink);
        let handle = env.start().unwrap();
        let listener = bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_until(
            listener,
            Api::new(handle.metrics()),
            Limits::default(),
            async {
                let _ = stop_rx.await;
            },
        ));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while get(addr, "/ready").await != (200, "ready\n".into()) {
            assert!(std::time::Instant::now() < deadline, "never ready");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // Every /api/v1 route answers JSON with the named fields.
        let json = |body: String| serde_json::from_str::<serde_json::Value>(&body).unwrap();
        for (path, _, _) in crate::api::ROUTES {
            assert_eq!(get(addr, path).await.0, 200, "{path}");
        }
        let job = json(get(addr, "/api/v1/job").await.1);
        assert_eq!(
            (job["name"].as_str(), job["state"].as_str()),
            (Some("http-ready"), Some("running"))
        );
        // The graph: the source, the chain's one stage, the sink, the dead
        // letters; each stage with the elements it took in.
        let graph = json(get(addr, "/api/v1/graph").await.1);
        let nodes = graph["nodes"].as_array().unwrap();
        let names: Vec<(&str, &str)> = nodes
            .iter()
            .map(|n| (n["name"].as_str().unwrap(), n["kind"].as_str().unwrap()))
            .collect();
        assert_eq!(
            names,
            [
                ("mem", "source"),
                ("sink(out)", "sink"),
                ("out", "sink"),
                ("dead letters", "dead_letter")
            ],
            "{graph}"
        );
        assert_eq!(
            (
                nodes[0]["records_in"].as_u64(),
                nodes[1]["records_in"].as_u64()
            ),
            (Some(3), Some(3)),
            "{graph}"
        );
        let edges: Vec<(u64, u64)> = graph["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["from"].as_u64().unwrap(), e["to"].as_u64().unwrap()))
            .collect();
        assert_eq!(edges, [(0, 1), (1, 2), (1, 3)], "{graph}");
        // 1 is the checkpoint every fresh job takes at its start.
        assert_eq!(handle.checkpoint().await.unwrap(), Some(2));
        let cps = json(get(addr, "/api/v1/checkpoints").await.1);
        let ids: Vec<u64> = cps["checkpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_u64().unwrap())
            .collect();
        assert!(ids.contains(&1) && ids.contains(&2), "{cps}");
        assert!(cps["checkpoints"][0]["size_bytes"].as_u64().unwrap() > 0);
        // The partition table is refreshed each second.
        let parts = loop {
            let parts = json(get(addr, "/api/v1/partitions").await.1);
            if parts["partitions"][0].is_object() {
                break parts;
            }
            assert!(std::time::Instant::now() < deadline, "{parts}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        assert_eq!(parts["partitions"][0]["id"], "mem-0", "{parts}");
        assert_eq!(parts["partitions"][0]["owned"], true);
        assert!(
            json(get(addr, "/api/v1/openapi.json").await.1)["paths"]["/api/v1/job"].is_object()
        );
        handle.stop();
        handle.join().await.unwrap();
        assert_eq!(get(addr, "/ready").await.0, 503, "ended: not ready");
        let job = json(get(addr, "/api/v1/job").await.1);
        assert_eq!(job["state"], "finished");
        // A request in progress (its head half sent) when shutdown comes
        // is still answered; then the server ends.
        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /health HTTP/1.1\r\n").await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        stop_tx.send(()).unwrap();
        slow.write_all(b"host: x\r\n\r\n").await.unwrap();
        let mut out = String::new();
        slow.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        tokio::time::timeout(std::time::Duration::from_secs(10), server)
            .await
            .expect("the server ends after shutdown")
            .unwrap();
    }
}
