//! `flowline top` and `flowline tap`: a running job seen from the terminal,
//! through the same `/api/v1` the page reads (Vector's `top` and `tap`).

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::time::Duration;

use serde_json::Value;

use super::out;
use crate::Error;

fn client(timeout: Duration) -> Result<reqwest::Client, Error> {
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| Error::Api(format!("cannot build an HTTP client: {e}")))
}

/// `base` + `path`, `base` given with or without a trailing `/`.
fn url(base: &str, path: &str) -> String {
    format!("{}{path}", base.trim_end_matches('/'))
}

/// The body of a GET of `base` + `path` with `query`, or why not.
async fn fetch(
    c: &reqwest::Client,
    base: &str,
    path: &str,
    query: &[(&str, &str)],
) -> Result<String, Error> {
    let u = url(base, path);
    let r = c.get(&u).query(query).send().await.map_err(|e| {
        Error::Api(format!(
            "{u}: {e}. Fix: check that the job runs with [http] listen on that address"
        ))
    })?;
    let status = r.status();
    let text = r
        .text()
        .await
        .map_err(|e| Error::Api(format!("{u}: {e}")))?;
    if !status.is_success() {
        return Err(Error::Api(format!(
            "{u} answered {status}: {}",
            text.trim()
        )));
    }
    Ok(text)
}

async fn get(c: &reqwest::Client, base: &str, path: &str) -> Result<Value, Error> {
    let text = fetch(c, base, path, &[]).await?;
    serde_json::from_str(&text)
        .map_err(|e| Error::Api(format!("{}: not JSON: {e}", url(base, path))))
}

fn rate(v: &Value) -> String {
    match v.as_f64() {
        Some(r) if r >= 1e6 => format!("{:.2}M/s", r / 1e6),
        Some(r) if r >= 1e4 => format!("{:.1}k/s", r / 1e3),
        Some(r) => format!("{r:.1}/s"),
        None => "-".into(),
    }
}

fn pct(v: &Value) -> String {
    v.as_f64()
        .map(|r| format!("{:.0}%", r * 100.0))
        .unwrap_or_else(|| "-".into())
}

fn time(v: &Value) -> String {
    v.as_i64()
        .map(flowline_connector_api::time::format_rfc3339_ms)
        .unwrap_or_else(|| "-".into())
}

/// One screen of `top`.
pub(crate) fn render(job: &Value, graph: &Value, parts: &Value, cps: &Value) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{}  {}  up {:.0} s  records in {}  watermark {}",
        job["name"].as_str().unwrap_or("?"),
        job["state"].as_str().unwrap_or("?"),
        job["uptime_seconds"].as_f64().unwrap_or(0.0),
        job["records_in"],
        time(&job["watermark_ms"]),
    );
    for r in job["health"]["reasons"].as_array().into_iter().flatten() {
        let _ = writeln!(s, "  unhealthy: {}", r.as_str().unwrap_or(""));
    }
    let _ = writeln!(
        s,
        "\n{:<44} {:<16} {:>14} {:>11} {:>11} {:>6} {:>6}",
        "OPERATOR", "KIND", "RECORDS IN", "10 s", "1 min", "BUSY", "BP"
    );
    for n in graph["nodes"].as_array().into_iter().flatten() {
        let name = n["name"].as_str().unwrap_or("?");
        let name: String = name.chars().take(44).collect();
        let _ = writeln!(
            s,
            "{:<44} {:<16} {:>14} {:>11} {:>11} {:>6} {:>6}",
            name,
            n["kind"].as_str().unwrap_or("?"),
            n["records_in"],
            rate(&n["rate_10s"]),
            rate(&n["rate_1m"]),
            pct(&n["busy_ratio"]),
            pct(&n["backpressured_ratio"]),
        );
    }
    let _ = writeln!(
        s,
        "\n{:<28} {:>14} {:>10} {:<26} OWNER",
        "PARTITION", "NEXT OFFSET", "LAG", "WATERMARK"
    );
    for p in parts["partitions"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "{:<28} {:>14} {:>10} {:<26} {}{}",
            p["id"].as_str().unwrap_or("?"),
            p["next_offset"],
            if p["lag"].is_null() {
                "-".to_string()
            } else {
                p["lag"].to_string()
            },
            time(&p["watermark_ms"]),
            p["owner"].as_str().unwrap_or("?"),
            if p["idle"] == true { " (idle)" } else { "" },
        );
    }
    let list = cps["checkpoints"].as_array().cloned().unwrap_or_default();
    let _ = writeln!(s, "\nCHECKPOINTS ({} kept)", list.len());
    for c in list.iter().take(5) {
        let _ = writeln!(
            s,
            "  #{:<6} {}  {} ms  {} bytes",
            c["id"],
            time(&c["created_ms"]),
            c["duration_ms"],
            c["size_bytes"]
        );
    }
    s
}

/// `flowline top`: a screen each `every`, `iterations` times (or until
/// Ctrl-C). On a terminal the screen is redrawn in place.
pub(super) async fn top(base: &str, every: Duration, iterations: Option<u64>) -> Result<(), Error> {
    let c = client(Duration::from_secs(5))?;
    let tty = std::io::stdout().is_terminal();
    let mut n = 0u64;
    loop {
        let (job, graph, parts, cps) = tokio::try_join!(
            get(&c, base, "/api/v1/job"),
            get(&c, base, "/api/v1/graph"),
            get(&c, base, "/api/v1/partitions"),
            get(&c, base, "/api/v1/checkpoints"),
        )?;
        let screen = render(&job, &graph, &parts, &cps);
        if tty {
            out!("\x1b[2J\x1b[H{screen}");
        } else {
            out!("{screen}");
        }
        n += 1;
        if iterations.is_some_and(|i| n >= i) {
            return Ok(());
        }
        tokio::time::sleep(every).await;
    }
}

/// `flowline tap`: up to `limit` records passing `stage`, one JSON object
/// per line, asking again while fewer came (until Ctrl-C).
pub(super) async fn tap(base: &str, stage: &str, limit: usize) -> Result<(), Error> {
    let c = client(Duration::from_secs(15))?;
    let mut left = limit;
    while left > 0 {
        let want = left.min(1000).to_string();
        let query = [
            ("stage", stage),
            ("limit", want.as_str()),
            ("wait_ms", "10000"),
        ];
        let body = fetch(&c, base, "/api/v1/tap", &query).await?;
        for line in body.lines().filter(|l| !l.is_empty()) {
            out!("{line}");
            left -= 1;
            if left == 0 {
                break;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_screen_names_operators_rates_partitions_and_checkpoints() {
        let s = render(
            &json!({"name": "j", "state": "failing", "uptime_seconds": 3.2, "records_in": 10, "watermark_ms": 0,
                    "health": {"healthy": false, "reasons": ["sink windows failing for 61 s: refused"]}}),
            &json!({"nodes": [{"name": "kafka", "kind": "source", "records_in": 10, "rate_10s": 12345.0, "rate_1m": null,
                               "busy_ratio": null, "backpressured_ratio": 0.25}]}),
            &json!({"partitions": [{"id": "m/0", "next_offset": 10, "lag": 5, "watermark_ms": null, "owner": "this process", "idle": true}]}),
            &json!({"checkpoints": [{"id": 7, "created_ms": 0, "duration_ms": 3, "size_bytes": 99}]}),
        );
        assert!(
            s.starts_with("j  failing  up 3 s  records in 10  watermark 1970-01-01T00:00:00.000Z"),
            "{s}"
        );
        assert!(s.contains("unhealthy: sink windows failing"), "{s}");
        assert!(s.contains("12.3k/s"), "{s}");
        assert!(s.contains("25%"), "{s}");
        assert!(s.contains("m/0") && s.contains("(idle)"), "{s}");
        assert!(s.contains("#7"), "{s}");
    }
}
