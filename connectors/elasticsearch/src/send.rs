//! One bulk request's journey: sent, its items classified, the retryable
//! ones retried with backoff, and a request the server refuses whole for
//! its content split until the one document it refuses is found.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use elasticsearch::http::headers::{HeaderMap, HeaderValue, CONTENT_TYPE};
use elasticsearch::http::Method;
use elasticsearch::Elasticsearch;
use flowline_connector_api::Rejected;

use crate::bulk::{self, Item, Outcome};
use crate::retry::{Every, Policy};
use crate::sink::SinkStats;
use crate::Error;

/// Sends the items in bulk requests: the whole request is retried on
/// connection errors, timeouts, 429, 5xx and a cluster write block, and
/// the items that failed with 429 / 5xx or were refused for their index
/// (`bulk::classify`), with exponential backoff and full jitter until the
/// policy gives up (by default never). A request the server refuses whole
/// (400, 413) is split in halves until the one document it refuses is
/// found; that document is rejected with the server's answer.
pub(crate) async fn send(
    client: &Elasticsearch,
    items: Vec<Item>,
    policy: Policy,
    stats: &SinkStats,
    warn: &Every,
) -> Result<Vec<Rejected>, Error> {
    let mut rejected = Vec::new();
    let mut work = vec![items];
    while let Some(mut chunk) = work.pop() {
        match send_one(client, &mut chunk, policy, stats, warn, &mut rejected).await? {
            None => {}
            Some(refusal) if chunk.len() == 1 => {
                stats.rejected.fetch_add(1, Relaxed);
                let item = chunk.pop().expect("one item");
                rejected.push(Rejected::new(
                    item.record,
                    format!("the server refused the document's bulk request: {refusal}"),
                ));
            }
            Some(_) => {
                let second = chunk.split_off(chunk.len() / 2);
                work.push(second);
                work.push(chunk);
            }
        }
    }
    Ok(rejected)
}

/// Whether a whole-request status can be caused by one document of it.
fn refused_by_content(status: u16) -> bool {
    matches!(status, 400 | 413)
}

/// One bulk request with its retries. `Ok(None)`: every item is done or
/// rejected; `Ok(Some(answer))`: the server refused the request whole for
/// its content (split it).
async fn send_one(
    client: &Elasticsearch,
    items: &mut Vec<Item>,
    policy: Policy,
    stats: &SinkStats,
    warn: &Every,
    rejected: &mut Vec<Rejected>,
) -> Result<Option<String>, Error> {
    let mut backoff = policy.backoff();
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    let mut attempt = 0;
    let mut first_failure = None;
    loop {
        let t0 = Instant::now();
        stats.bulk_requests.fetch_add(1, Relaxed);
        let r = client
            .transport()
            .send(
                Method::Post,
                "/_bulk",
                headers.clone(),
                None::<&()>,
                Some(bulk::body(items)),
                None,
            )
            .await;
        stats
            .bulk_latency_ms
            .fetch_add(t0.elapsed().as_millis() as u64, Relaxed);
        let failure = match r {
            Err(e) => Error::Unreachable {
                url: "/_bulk".into(),
                message: e.to_string(),
            },
            Ok(resp) => {
                let status = resp.status_code().as_u16();
                let body = resp.bytes().await.map_err(|e| Error::Unreachable {
                    url: "/_bulk".into(),
                    message: e.to_string(),
                });
                match body {
                    Err(e) => e,
                    Ok(body) if (200..300).contains(&status) => {
                        let outcomes = bulk::outcomes(&body, items.len())?;
                        let (retry, last) = sort(std::mem::take(items), outcomes, stats, rejected);
                        if retry.is_empty() {
                            if first_failure.is_some() {
                                warn.reset();
                                tracing::info!(attempt, "bulk request went through after retries");
                            }
                            return Ok(None);
                        }
                        *items = retry;
                        Error::ItemsNotStored {
                            count: items.len(),
                            last,
                        }
                    }
                    Ok(body) if refused_by_content(status) => {
                        let text: String =
                            String::from_utf8_lossy(&body).chars().take(500).collect();
                        return Ok(Some(format!("HTTP {status}: {text}")));
                    }
                    Ok(body) => Error::Status {
                        what: "POST /_bulk".into(),
                        status,
                        body: String::from_utf8_lossy(&body).chars().take(500).collect(),
                    },
                }
            }
        };
        if !failure.is_retryable() {
            return Err(failure);
        }
        attempt += 1;
        let since = *first_failure.get_or_insert_with(Instant::now);
        if policy.gives_up(attempt, since.elapsed()) {
            return Err(Error::RetriesExhausted {
                attempts: attempt,
                secs: since.elapsed().as_secs(),
                last: failure.to_string(),
            });
        }
        stats.retries.fetch_add(1, Relaxed);
        let wait = backoff.delay(attempt - 1);
        if warn.due() {
            tracing::warn!(attempt, items = items.len(), retrying_for_s = since.elapsed().as_secs(), error = %failure, "bulk request failing, retrying with backoff (this warning repeats once a minute while it lasts)");
        }
        tokio::time::sleep(wait).await;
    }
}

/// Splits a request's items by outcome: counts the stored ones, hands the
/// refused ones to `rejected`, and returns those to send again, in order,
/// with the last reason to retry. An item stored after an earlier write of
/// its document that must be retried is sent again too, behind it, so that
/// the retry never overwrites the newer write.
fn sort(
    items: Vec<Item>,
    outcomes: Vec<Outcome>,
    stats: &SinkStats,
    rejected: &mut Vec<Rejected>,
) -> (Vec<Item>, String) {
    let mut retry = Vec::new();
    let mut last = String::new();
    let mut behind = std::collections::HashSet::new();
    for (item, o) in items.into_iter().zip(outcomes) {
        match o {
            Outcome::Done if item.doc.is_some_and(|d| behind.contains(&d)) => retry.push(item),
            Outcome::Done => {
                stats.documents.fetch_add(1, Relaxed);
            }
            Outcome::Retry(why) => {
                last = why;
                behind.extend(item.doc);
                retry.push(item);
            }
            Outcome::Reject(why) => {
                stats.rejected.fetch_add(1, Relaxed);
                rejected.push(Rejected::new(item.record, why));
            }
        }
    }
    (retry, last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowline_connector_api::Record;

    fn item(n: u8, doc: Option<u64>) -> Item {
        Item {
            record: Record::new(vec![n]),
            lines: vec![n],
            doc,
        }
    }

    #[test]
    fn a_newer_write_stored_behind_a_retried_one_is_sent_again_after_it() {
        let items = vec![
            item(1, Some(7)),
            item(2, Some(8)),
            item(3, Some(7)),
            item(4, None),
            item(5, Some(9)),
        ];
        let outcomes = vec![
            Outcome::Retry("429".into()),
            Outcome::Done,
            Outcome::Done,
            Outcome::Retry("503".into()),
            Outcome::Reject("400".into()),
        ];
        let stats = SinkStats::default();
        let mut rejected = Vec::new();
        let (retry, last) = sort(items, outcomes, &stats, &mut rejected);
        let again: Vec<u8> = retry.iter().map(|i| i.lines[0]).collect();
        assert_eq!(
            again,
            vec![1, 3, 4],
            "doc 7's newer write follows its retry"
        );
        assert_eq!(last, "503");
        assert_eq!(
            stats.documents.load(Relaxed),
            1,
            "only item 2 is stored for good"
        );
        assert_eq!(rejected.len(), 1);
    }
}
