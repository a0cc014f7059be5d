//! `exclusive = true`: this consumer must hold every partition of its
//! topics, or none. A job whose state is not kept per partition (the
//! `flowline` CLI sets it for jobs that key through the runtime's
//! in-process exchange) cannot share a topic with another member of its
//! group: each would aggregate part of every key's events and write its
//! partial results under the same document ids, a silent loss.
//!
//! After each rebalance the source compares what it holds with the
//! partitions the broker lists for its topics. Holding some but not all
//! fails the source before any record of the new assignment is delivered
//! (after a revoke: once the revoke's checkpoint is taken, so the state
//! read so far is kept). Holding none is fine: such a member reads nothing.
//! A lone member that lost its session (a broker gone past
//! `session.timeout.ms`) holds none, then all again: it rides that out.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};

use super::poller::Ctx;
use crate::error::with_retries;

/// The partitions of `topics` (name → partition count) not in `held`, in
/// order; empty when `held` is empty (a member holding nothing reads
/// nothing) or complete.
pub(crate) fn missing(
    held: &BTreeSet<(String, i32)>,
    topics: &BTreeMap<String, i32>,
) -> Vec<(String, i32)> {
    if held.is_empty() {
        return Vec::new();
    }
    topics
        .iter()
        .flat_map(|(t, n)| (0..*n).map(move |p| (t.clone(), p)))
        .filter(|tp| !held.contains(tp))
        .collect()
}

/// Why this consumer, holding `held` after a rebalance, must stop: `None`
/// when it holds all partitions of its topics (the configured ones and any
/// it holds, for a pattern) or none. The partition counts come from the
/// broker; when it cannot say within the timeout the check is skipped with
/// a warning (the next rebalance checks again).
pub(crate) fn refusal(
    c: &BaseConsumer<Ctx>,
    configured: &[String],
    group: &str,
    held: BTreeSet<(String, i32)>,
) -> Option<String> {
    if held.is_empty() {
        return None;
    }
    let names: BTreeSet<&str> = configured
        .iter()
        .map(String::as_str)
        .chain(held.iter().map(|(t, _)| t.as_str()))
        .collect();
    let mut topics = BTreeMap::new();
    for t in names {
        let md = with_retries(
            &format!("reading the partitions of {t}"),
            Duration::from_secs(10),
            |d| c.fetch_metadata(Some(t), d),
        );
        match md {
            Ok(md) => {
                let n = md.topics().first().map_or(0, |mt| mt.partitions().len());
                topics.insert(t.to_string(), i32::try_from(n).unwrap_or(i32::MAX));
            }
            Err(e) => {
                tracing::warn!(topic = t, error = %e,
                    "exclusive: could not read the topic's partitions to check that this process holds them all; checking again at the next rebalance");
                return None;
            }
        }
    }
    let gone = missing(&held, &topics);
    if gone.is_empty() {
        return None;
    }
    let list: Vec<String> = gone.iter().map(|(t, p)| format!("{t}/{p}")).collect();
    Some(format!(
        "another member of consumer group `{group}` holds partitions {} of this source's topics, and this source is exclusive (it must read every partition in one process: the flowline CLI sets it for a job that keys through its in-process exchange, whose state is by key, not by partition; two processes would each write partial windows under the same ids). Stopped before reading them. Fix: run one process per group_id and scale it with [job] workers, or declare [source] keyed_by when the topic is keyed by the job's key (state then moves with its partitions between processes). If no other process runs this job, a previous one's static membership may hold them until its session times out (session.timeout.ms, 45 s by default): start again after that",
        list.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(tps: &[(&str, i32)]) -> BTreeSet<(String, i32)> {
        tps.iter().map(|(t, p)| (t.to_string(), *p)).collect()
    }

    #[test]
    fn some_but_not_all_partitions_is_refused_none_or_all_is_not() {
        let topics: BTreeMap<String, i32> = [("t".to_string(), 4), ("u".to_string(), 1)].into();
        assert_eq!(missing(&held(&[]), &topics), vec![]);
        let all = held(&[("t", 0), ("t", 1), ("t", 2), ("t", 3), ("u", 0)]);
        assert_eq!(missing(&all, &topics), vec![]);
        assert_eq!(
            missing(&held(&[("t", 2), ("t", 3), ("u", 0)]), &topics),
            vec![("t".to_string(), 0), ("t".to_string(), 1)]
        );
        // All of one topic but none of the other is partial too.
        assert_eq!(
            missing(&held(&[("t", 0), ("t", 1), ("t", 2), ("t", 3)]), &topics),
            vec![("u".to_string(), 0)]
        );
    }
}
