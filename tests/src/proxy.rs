//! A small HTTP/1.1 proxy for fault injection in front of the real search
//! server: it forwards requests and, as told, answers 429 to whole bulk
//! requests, rewrites some bulk items to 429, or answers 503 to everything
//! (the server "down").

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// What the proxy does to traffic.
#[derive(Debug, Default)]
pub struct Faults {
    /// Every Nth distinct bulk request is answered 429 without forwarding
    /// (0: never). A body seen before (a retry) is never faulted again, so
    /// whether a retry succeeds never depends on how requests interleave.
    pub reject_every_nth_bulk: AtomicU64,
    /// In every Nth distinct forwarded bulk request's response, the first
    /// item becomes a 429 (the document was stored; the sink will send it
    /// again, in a new body).
    pub item_429_every_nth_bulk: AtomicU64,
    /// Hashes of the bulk bodies seen.
    seen: std::sync::Mutex<std::collections::HashSet<u64>>,
    /// Answer 503 to every request.
    pub down: AtomicBool,
    /// Bulk requests seen.
    pub bulk_requests: AtomicU64,
    /// Distinct bulk bodies seen.
    pub distinct_bulks: AtomicU64,
    /// Requests answered 429 or 503 by the proxy itself, or items rewritten.
    pub injected: AtomicU64,
}

/// A running proxy.
#[derive(Debug)]
pub struct Proxy {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// Its faults, to change while it runs.
    pub faults: Arc<Faults>,
}

/// Starts a proxy to `upstream` (`http://host:port`).
pub async fn start(upstream: &str) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let url = format!("http://{}", listener.local_addr().unwrap());
    let faults = Arc::new(Faults::default());
    let (f, up) = (faults.clone(), upstream.trim_end_matches('/').to_string());
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let (f, up, http) = (f.clone(), up.clone(), http.clone());
            tokio::spawn(async move {
                let _ = serve(sock, &up, &f, &http).await;
            });
        }
    });
    Proxy { url, faults }
}

async fn serve(
    sock: tokio::net::TcpStream,
    up: &str,
    f: &Faults,
    http: &reqwest::Client,
) -> std::io::Result<()> {
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::new(r);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or("GET").to_string(),
            parts.next().unwrap_or("/").to_string(),
        );
        let mut len = 0usize;
        let mut ctype = "application/json".to_string();
        loop {
            let mut h = String::new();
            r.read_line(&mut h).await?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                match k.trim().to_ascii_lowercase().as_str() {
                    "content-length" => len = v.trim().parse().unwrap_or(0),
                    "content-type" => ctype = v.trim().to_string(),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body).await?;
        let bulk = path.starts_with("/_bulk");
        let first_seen = bulk && {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            body.hash(&mut h);
            f.seen.lock().unwrap().insert(h.finish())
        };
        // Counts distinct bodies only; 0 (never faulted) for a retry.
        let n = if bulk {
            f.bulk_requests.fetch_add(1, SeqCst);
            if first_seen {
                f.distinct_bulks.fetch_add(1, SeqCst) + 1
            } else {
                0
            }
        } else {
            0
        };
        let every = |a: &AtomicU64| {
            let k = a.load(SeqCst);
            k > 0 && n > 0 && n % k == 0
        };
        let (status, out) = if f.down.load(SeqCst) {
            f.injected.fetch_add(1, SeqCst);
            (503, br#"{"error":"proxy: server down"}"#.to_vec())
        } else if bulk && every(&f.reject_every_nth_bulk) {
            f.injected.fetch_add(1, SeqCst);
            (429, br#"{"error":{"type":"es_rejected_execution_exception","reason":"proxy: too many requests"},"status":429}"#.to_vec())
        } else {
            let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET);
            let resp = http
                .request(m, format!("{up}{path}"))
                .header("content-type", ctype)
                .body(body)
                .send()
                .await;
            match resp {
                Err(e) => (502, format!("{{\"error\":\"proxy: {e}\"}}").into_bytes()),
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let mut bytes = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
                    if bulk && status == 200 && every(&f.item_429_every_nth_bulk) {
                        if let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                            if let Some(first) = v["items"]
                                .get_mut(0)
                                .and_then(|i| i.as_object_mut())
                                .and_then(|o| o.values_mut().next())
                            {
                                first["status"] = 429.into();
                                first["error"] = serde_json::json!({"type": "es_rejected_execution_exception", "reason": "proxy: item 429"});
                                v["errors"] = true.into();
                                f.injected.fetch_add(1, SeqCst);
                                bytes = serde_json::to_vec(&v).unwrap();
                            }
                        }
                    }
                    (status, bytes)
                }
            }
        };
        let head = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            out.len()
        );
        w.write_all(head.as_bytes()).await?;
        w.write_all(&out).await?;
    }
}
