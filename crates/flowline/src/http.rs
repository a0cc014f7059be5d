//! The operations endpoint: `/health`, `/metrics` (Prometheus text) and
//! `/api/status` (JSON), on a configured address (`[http] listen`).
//!
//! A deliberately small HTTP/1.1 server: GET only, one request per
//! connection, bounded request size, no dependencies beyond tokio. It can
//! never take the job down: at most [`Limits::max_connections`] are served
//! at once (more are answered 503 and closed), a connection that sends no
//! complete request within [`Limits::idle`] is closed, and a failing
//! `accept` (out of file descriptors) backs off instead of spinning.

use std::sync::Arc;

use flowline_runtime::Metrics;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Largest request head read.
const MAX_REQUEST: usize = 8 * 1024;

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

fn respond(path: &str, metrics: &Metrics) -> (u16, &'static str, String) {
    match path {
        "/health" => (200, "text/plain", "ok\n".into()),
        "/metrics" => (
            200,
            "text/plain; version=0.0.4",
            metrics.render_prometheus(),
        ),
        "/api/status" => {
            let mut v = serde_json::to_value(metrics.status()).unwrap_or_default();
            v["records_in"] = metrics
                .records_in
                .load(std::sync::atomic::Ordering::Relaxed)
                .into();
            v["records_out"] = serde_json::to_value(metrics.records_out()).unwrap_or_default();
            let wm = metrics.watermark.load(std::sync::atomic::Ordering::Relaxed);
            v["watermark"] = if wm == i64::MIN {
                serde_json::Value::Null
            } else {
                wm.into()
            };
            (200, "application/json", v.to_string())
        }
        _ => (
            404,
            "text/plain",
            "not found: try /health, /metrics or /api/status\n".into(),
        ),
    }
}

/// Serves until the task is dropped, with the default [`Limits`].
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    serve_with(listener, metrics, Limits::default()).await
}

/// Serves until the task is dropped.
pub async fn serve_with(listener: TcpListener, metrics: Arc<Metrics>, limits: Limits) {
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let mut last_warn: Option<std::time::Instant> = None;
    loop {
        let mut sock = match listener.accept().await {
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
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(limits.idle, answer(&mut sock, &metrics)).await;
        });
    }
}

/// Reads one request and answers it.
async fn answer(sock: &mut tokio::net::TcpStream, metrics: &Metrics) {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_REQUEST {
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let (status, ctype, body) = if method == "GET" {
        respond(path.split('?').next().unwrap_or(path), metrics)
    } else {
        (405, "text/plain", "only GET\n".into())
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Method Not Allowed",
    };
    let out = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = sock.write_all(out.as_bytes()).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowline_connector_api::Record;
    use flowline_connector_testkit::{MemorySink, MemorySource};
    use flowline_runtime::{JobConfig, StreamEnvironment};

    async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
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
}
