//! Bulk requests: the NDJSON body and the per-item outcome of a response.

use flowline_connector_api::Record;
use serde::Deserialize;

use crate::Error;

/// One document of a bulk request: its encoded lines and the record, kept
/// for dead-lettering.
#[derive(Debug, Clone)]
pub struct Item {
    /// The record as the sink received it.
    pub record: Record,
    /// Action line and document line, newline-terminated.
    pub lines: Vec<u8>,
    /// The document written (its index and id, hashed), when it has an id:
    /// two writes of one document are never in flight at once.
    pub doc: Option<u64>,
}

/// The request body of `items`.
pub fn body(items: &[Item]) -> Vec<u8> {
    let mut b = Vec::with_capacity(items.iter().map(|i| i.lines.len()).sum());
    for i in items {
        b.extend_from_slice(&i.lines);
    }
    b
}

/// What became of one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored (a `create` whose id exists counts as stored: the document
    /// under it is the one a replay would write).
    Done,
    /// 429, 5xx, or a refusal of the index, not the document: send again.
    Retry(String),
    /// Mapping, parsing, another 4xx, or an ingest pipeline's refusal:
    /// dead-letter with this reason.
    Reject(String),
}

#[derive(Deserialize)]
struct Response {
    #[serde(default)]
    items: Vec<std::collections::HashMap<String, ItemResult>>,
}

#[derive(Deserialize)]
struct ItemResult {
    status: u16,
    error: Option<ItemError>,
}

#[derive(Deserialize)]
struct ItemError {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    reason: String,
}

/// Classifies one item's status and error, by its action (`index`,
/// `create`, `update`).
///
/// A version conflict (409) is done only for a `create`: the id exists,
/// which is what `create` is for. For an `update` it means the document
/// changed between the server's read and write of it (another writer): the
/// update was not applied, and is sent again. An `index` sets no version,
/// so a conflict there is refused (an ingest pipeline or another setting
/// changed what the write meant). Before, every 409 counted as stored, and
/// an update that lost a conflict was gone with nothing said.
///
/// Some refusals say the index takes no writes now, whatever the document
/// (`no_writes`): a write block, a closed index, a missing index or
/// ingest pipeline, a user without the privilege. The document is sent
/// again, as through an outage, until that is mended (or `max_attempts` /
/// `max_retry_duration` give up). Before, each was dead-lettered as a bad
/// record, and without a dead-letter output a window the server would have
/// taken a minute later was gone with one log line.
pub fn classify(action: &str, status: u16, kind: &str, reason: &str) -> Outcome {
    match status {
        200..=299 => Outcome::Done,
        409 if action == "create" => Outcome::Done,
        409 if action == "update" => Outcome::Retry(format!("409 {kind}: {reason}")),
        429 => Outcome::Retry(format!("429 {kind}: {reason}")),
        s if no_writes(s, kind, reason) => {
            Outcome::Retry(format!("{s} {kind}: {reason}. {NO_WRITES}"))
        }
        // An ingest pipeline's refusal of this document, sent back as a 5xx
        // (a `fail` processor, or another processor's own exception): the
        // same document fails the same way each time. Retried, it held the
        // sink, and the job, on one document for ever.
        s if s >= 500 && kind.ends_with("processor_exception") => Outcome::Reject(format!(
            "{s} {kind}: {reason} (an ingest pipeline of the index refused this document; sent again, it fails the same way)"
        )),
        s if s >= 500 => Outcome::Retry(format!("{s} {kind}: {reason}")),
        s => Outcome::Reject(format!("{s} {kind}: {reason}")),
    }
}

/// Whether a refusal is the index's, not the document's:
/// - 401 / 403: a write block (`index.blocks.write`, set for a shrink, a
///   clone or by hand; `read_only_allow_delete` after a full disk, on
///   servers that answer it with 403), or a user without the privilege to
///   write the index;
/// - 400 `index_closed_exception`: the index is closed (for a change of its
///   static settings, or by hand);
/// - 404 `index_not_found_exception`: the index is gone and the server
///   will not create it;
/// - 400 `illegal_argument_exception` "pipeline with id [..] does not
///   exist": the index's default or final pipeline is missing.
fn no_writes(status: u16, kind: &str, reason: &str) -> bool {
    match (status, kind) {
        (401 | 403, _) => true,
        (400, "index_closed_exception") | (404, "index_not_found_exception") => true,
        (400, "illegal_argument_exception") => {
            reason.starts_with("pipeline with id [") && reason.ends_with("] does not exist")
        }
        _ => false,
    }
}

/// Why a refusal of the index (`no_writes`) is retried, and the fixes.
pub(crate) const NO_WRITES: &str = "The server takes no writes to this index now, whatever the document: it is kept and sent again. Fix, by the error: lift a write block (PUT <index>/_settings {\"index.blocks.write\": false}, or free disk space for read_only_allow_delete), open a closed index (POST <index>/_open), create the index or the ingest pipeline it names, or grant the user the `index` or `create_doc` privilege on it";

/// The outcome of each of the `n` items sent, in order.
pub fn outcomes(body: &[u8], n: usize) -> Result<Vec<Outcome>, Error> {
    let r: Response = serde_json::from_slice(body).map_err(|e| Error::Status {
        what: "bulk response".into(),
        status: 200,
        body: format!("cannot be read: {e}"),
    })?;
    if r.items.len() != n {
        return Err(Error::Status {
            what: "bulk response".into(),
            status: 200,
            body: format!("{} items for {n} actions", r.items.len()),
        });
    }
    Ok(r.items
        .into_iter()
        .map(|m| match m.into_iter().next() {
            Some((action, ItemResult { status, error })) => {
                let (k, reason) = error.map(|e| (e.kind, e.reason)).unwrap_or_default();
                classify(&action, status, &k, &reason)
            }
            None => Outcome::Retry("empty bulk item".into()),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_the_concatenated_lines() {
        let items: Vec<Item> = (0..2)
            .map(|i| Item {
                record: Record::new("{}"),
                lines: format!(
                    "{{\"index\":{{\"_index\":\"x\",\"_id\":\"{i}\"}}}}\n{{\"n\":{i}}}\n"
                )
                .into_bytes(),
                doc: None,
            })
            .collect();
        insta::assert_snapshot!(String::from_utf8(body(&items)).unwrap());
    }

    #[test]
    fn items_are_classified() {
        let resp = br#"{"took":3,"errors":true,"items":[
            {"index":{"_index":"x","_id":"1","status":201}},
            {"create":{"_index":"x","_id":"2","status":409,"error":{"type":"version_conflict_engine_exception","reason":"exists"}}},
            {"index":{"_index":"x","_id":"3","status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}},
            {"index":{"_index":"x","_id":"4","status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [count] of type [long]"}}},
            {"index":{"_index":"x","_id":"5","status":503,"error":{"type":"unavailable_shards_exception","reason":"primary not active"}}},
            {"index":{"_index":"x","_id":"6","status":404,"error":{"type":"index_not_found_exception","reason":"no such index"}}},
            {"update":{"_index":"x","_id":"7","status":409,"error":{"type":"version_conflict_engine_exception","reason":"[7]: version conflict, required seqNo [3]"}}},
            {"index":{"_index":"x","_id":"8","status":409,"error":{"type":"version_conflict_engine_exception","reason":"[8]: version conflict"}}},
            {"index":{"_index":"x","_id":"9","status":403,"error":{"type":"cluster_block_exception","reason":"index [x] blocked by: [FORBIDDEN/8/index write (api)];"}}},
            {"index":{"_index":"x","_id":"10","status":403,"error":{"type":"security_exception","reason":"action [indices:data/write/bulk[s]] is unauthorized for user [w]"}}},
            {"create":{"_index":"x","_id":"11","status":401,"error":{"type":"security_exception","reason":"unable to authenticate user [w]"}}},
            {"index":{"_index":"x","_id":"12","status":500,"error":{"type":"fail_processor_exception","reason":"poisoned document"}}},
            {"index":{"_index":"x","_id":"13","status":500,"error":{"type":"illegal_index_shard_state_exception","reason":"CurrentState[RECOVERING] operations only allowed when shard state is one of [POST_RECOVERY, STARTED]"}}},
            {"index":{"_index":"x","_id":"14","status":400,"error":{"type":"index_closed_exception","reason":"closed"}}},
            {"index":{"_index":"x","_id":"15","status":400,"error":{"type":"illegal_argument_exception","reason":"pipeline with id [enrich] does not exist"}}},
            {"index":{"_index":"x","_id":"16","status":400,"error":{"type":"illegal_argument_exception","reason":"field [pipeline with id [x] does not exist] is not allowed"}}}
        ]}"#;
        let o = outcomes(resp, 16).unwrap();
        assert_eq!(o[0], Outcome::Done);
        // The id exists: what a create is for.
        assert_eq!(o[1], Outcome::Done);
        // An update that lost a race was not applied: sent again.
        assert!(matches!(&o[6], Outcome::Retry(r) if r.starts_with("409 version_conflict")));
        // An index sets no version: a conflict is not a write.
        assert!(matches!(&o[7], Outcome::Reject(r) if r.starts_with("409 version_conflict")));
        assert!(
            matches!(&o[2], Outcome::Retry(r) if r.contains("es_rejected_execution_exception"))
        );
        assert_eq!(
            o[3],
            Outcome::Reject(
                "400 mapper_parsing_exception: failed to parse field [count] of type [long]".into()
            )
        );
        assert!(matches!(&o[4], Outcome::Retry(_)));
        // An argument of the document itself, naming no missing pipeline.
        assert!(matches!(&o[15], Outcome::Reject(r) if r.starts_with("400 illegal_argument")));
        // The index takes no writes now, not this document: kept and sent
        // again, with the fix.
        for (i, start) in [
            (5, "404 index_not_found_exception"),
            (8, "403 cluster_block_exception"),
            (9, "403 security_exception"),
            (10, "401 security_exception"),
            (13, "400 index_closed_exception"),
            (
                14,
                "400 illegal_argument_exception: pipeline with id [enrich]",
            ),
        ] {
            assert!(
                matches!(&o[i], Outcome::Retry(r) if r.starts_with(start) && r.contains("lift a write block")),
                "{i}: {:?}",
                o[i]
            );
        }
        // A pipeline refuses the document itself, every time; a shard
        // between states is a server's passing 500.
        assert!(
            matches!(&o[11], Outcome::Reject(r) if r.starts_with("500 fail_processor_exception: poisoned document") && r.contains("ingest pipeline")),
            "{:?}",
            o[11]
        );
        assert!(
            matches!(&o[12], Outcome::Retry(r) if r.starts_with("500 illegal_index_shard_state"))
        );
        assert!(outcomes(resp, 7).is_err());
    }
}
