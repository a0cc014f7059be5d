//! The webhook sink against a real HTTP endpoint on loopback (a small
//! receiver written here, which drops batches whose idempotency key it has
//! seen): the conformance suite, the classification of answers, and bad
//! records.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use flowline_connector_api::{
    parse_config, BoxSink, ConnectorError, ErrorKind, Record, SinkFactory,
};
use flowline_connector_testkit::sink::{assert_classified, sink_suite, Guarantee};
use flowline_example_webhook::WebhookFactory;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

#[derive(Clone, Default)]
struct Receiver {
    /// Batches by idempotency key.
    batches: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
    /// Status to answer with.
    status: Arc<AtomicU16>,
    auth: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    async fn start() -> (Self, String) {
        let r = Receiver::default();
        r.status.store(200, Ordering::SeqCst);
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", l.local_addr().unwrap());
        let rr = r.clone();
        tokio::spawn(async move {
            loop {
                let (sock, _) = l.accept().await.unwrap();
                let rr = rr.clone();
                tokio::spawn(async move {
                    let (rd, mut wr) = sock.into_split();
                    let mut rd = BufReader::new(rd);
                    loop {
                        let mut headers = BTreeMap::new();
                        let mut line = String::new();
                        if rd.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        loop {
                            line.clear();
                            rd.read_line(&mut line).await.unwrap();
                            let l = line.trim_end();
                            if l.is_empty() {
                                break;
                            }
                            if let Some((k, v)) = l.split_once(':') {
                                headers.insert(k.to_ascii_lowercase(), v.trim().to_string());
                            }
                        }
                        let len: usize = headers
                            .get("content-length")
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0);
                        let mut body = vec![0; len];
                        rd.read_exact(&mut body).await.unwrap();
                        let status = rr.status.load(Ordering::SeqCst);
                        if status == 200 {
                            let key = headers.get("idempotency-key").cloned().unwrap_or_default();
                            rr.batches.lock().unwrap().entry(key).or_insert(body);
                        }
                        if let Some(a) = headers.get("authorization") {
                            rr.auth.lock().unwrap().push(a.clone());
                        }
                        let reason = if status == 200 { "OK" } else { "NO" };
                        let msg = format!("status {status}");
                        let resp = format!(
                            "HTTP/1.1 {status} {reason}\r\ncontent-length: {}\r\n\r\n{msg}",
                            msg.len()
                        );
                        if wr.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (r, url)
    }

    fn payloads(&self) -> Vec<Vec<u8>> {
        self.batches
            .lock()
            .unwrap()
            .values()
            .flat_map(|b| {
                b.split(|c| *c == b'\n')
                    .filter(|l| !l.is_empty())
                    .map(<[u8]>::to_vec)
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

fn sink(url: &str, extra: serde_json::Value) -> Result<BoxSink, ConnectorError> {
    let mut v = serde_json::json!({"url": url, "max_batch": 40});
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let cfg = parse_config("webhook", v)?;
    Ok(Box::new(WebhookFactory.build(cfg)?) as BoxSink)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_sink_suite_exactly_once_with_a_deduplicating_receiver() {
    let (r, url) = Receiver::start().await;
    let read = || async { r.payloads() };
    sink_suite(
        || sink(&url, serde_json::json!({})),
        read,
        Guarantee::ExactlyOnce,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_classified_and_a_failed_batch_is_sent_again() {
    let (r, url) = Receiver::start().await;
    let mut s = sink(&url, serde_json::json!({"bearer_token": "t0ken"})).unwrap();
    s.write_dyn(vec![Record::new(r#"{"a":1}"#).with_key("k1")])
        .await
        .unwrap();
    r.status.store(503, Ordering::SeqCst);
    let e = s.flush_dyn().await.unwrap_err();
    assert_classified(&e, ErrorKind::Retryable);
    assert!(e.to_string().contains("503"), "{e}");
    r.status.store(400, Ordering::SeqCst);
    assert_classified(&s.flush_dyn().await.unwrap_err(), ErrorKind::Permanent);
    r.status.store(200, Ordering::SeqCst);
    s.flush_dyn().await.unwrap();
    assert_eq!(
        r.payloads(),
        vec![br#"{"a":1}"#.to_vec()],
        "the batch kept for the retry landed once"
    );
    assert!(r.auth.lock().unwrap().iter().all(|a| a == "Bearer t0ken"));
    // Unreachable endpoint: retryable.
    let mut s = sink(
        "http://127.0.0.1:9",
        serde_json::json!({"timeout": "500ms"}),
    )
    .unwrap();
    s.write_dyn(vec![Record::new("{}")]).await.unwrap();
    assert_classified(&s.flush_dyn().await.unwrap_err(), ErrorKind::Retryable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_json_records_are_bad_records_and_the_rest_is_sent() {
    let (r, url) = Receiver::start().await;
    let mut s = sink(&url, serde_json::json!({})).unwrap();
    s.write_dyn(vec![Record::new(r#"{"ok":true}"#), Record::new("not json")])
        .await
        .unwrap();
    match s.flush_dyn().await {
        Err(ConnectorError::BadRecords(b)) => {
            assert_eq!(b.len(), 1);
            assert_eq!(b[0].record.payload, b"not json");
            assert!(b[0].reason.contains("not JSON"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(r.payloads(), vec![br#"{"ok":true}"#.to_vec()]);
}

#[test]
fn bad_config_fails_before_any_work() {
    for (v, want) in [
        (serde_json::json!({"url": "ftp://x"}), "not an http(s) URL"),
        (
            serde_json::json!({"url": "http://x", "max_batch": 0}),
            "max_batch",
        ),
        (
            serde_json::json!({"url": "http://x", "timeout": "soon"}),
            "timeout",
        ),
        (
            serde_json::json!({"url": "http://x", "urll": 1}),
            "unknown field `urll`",
        ),
    ] {
        let e = parse_config("webhook", v)
            .and_then(|c| WebhookFactory.build(c))
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{e}");
    }
    let dbg = format!(
        "{:?}",
        parse_config::<flowline_example_webhook::WebhookConfig>(
            "webhook",
            serde_json::json!({"url": "http://x", "bearer_token": "s3cret"})
        )
        .unwrap()
    );
    assert!(!dbg.contains("s3cret"));
}
