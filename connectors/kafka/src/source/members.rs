//! Members of the group that are not this job's. Two applications in one
//! consumer group split its partitions between them: the records of the
//! partitions another application holds never reach this job, whose
//! windows then miss them with nothing said. Every process of one job
//! shares the job file, so its members share one `client.id` (`flowline`
//! unless the file sets another); a member under another client id that
//! holds partitions of this source's topics stops the source, naming it.
//!
//! The broker says what each member holds (`DescribeGroups`). The source
//! asks a few seconds after each rebalance it takes part in (with the
//! cooperative protocol a newcomer gets its partitions a rebalance later)
//! and once a minute; when the broker cannot say in time, it asks again at
//! the next turn.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};

use super::poller::{lock, Ctx, Shared};

/// How long after a rebalance the members are read, and how often after.
pub(crate) const AFTER_REBALANCE: Duration = Duration::from_secs(3);
pub(crate) const EVERY: Duration = Duration::from_secs(60);

/// The topics and partitions in a member's assignment (Kafka's
/// `ConsumerProtocolAssignment`: a version, then topics each with their
/// partitions; user data after is not read). `None` when it is not one.
pub(crate) fn assignment(bytes: &[u8]) -> Option<Vec<(String, i32)>> {
    let mut r = bytes;
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, rest) = r.split_at_checked(n)?;
        r = rest;
        Some(head)
    };
    take(2)?;
    let topics = i32::from_be_bytes(take(4)?.try_into().ok()?);
    let mut out = Vec::new();
    for _ in 0..topics.max(0) {
        let len = i16::from_be_bytes(take(2)?.try_into().ok()?);
        let topic = std::str::from_utf8(take(usize::try_from(len).ok()?)?)
            .ok()?
            .to_string();
        let n = i32::from_be_bytes(take(4)?.try_into().ok()?);
        for _ in 0..n.max(0) {
            let p = i32::from_be_bytes(take(4)?.try_into().ok()?);
            out.push((topic.clone(), p));
        }
    }
    Some(out)
}

/// A member of another application, as the refusal names it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Foreign {
    pub client_id: String,
    pub host: String,
    pub partitions: Vec<(String, i32)>,
}

/// The refusal for members not under `own` client id holding partitions
/// of `topics`; `None` when there are none.
pub(crate) fn refusal(group: &str, own: &str, foreign: &[Foreign]) -> Option<String> {
    let first = foreign.first()?;
    let list: Vec<String> = foreign
        .iter()
        .flat_map(|f| f.partitions.iter().map(|(t, p)| format!("{t}/{p}")))
        .collect();
    Some(format!(
        "consumer group `{group}` has a member that is not this job's (client.id `{}`, host {}; this job's members have client.id `{own}`) holding partitions {} of this source's topics: their records never reach this job, so its results would miss them. Stopped. Fix: give this job a group_id of its own; or, if that member is this job on another host, give every process the same client.id (a Flowline process built before client.id was set says `rdkafka`: stop it first)",
        first.client_id,
        first.host,
        list.join(", ")
    ))
}

/// Reads the group's members from the broker and keeps those of another
/// client id holding partitions of `topics`; `None` when the broker cannot
/// say within `timeout`.
pub(crate) fn foreign(
    c: &BaseConsumer<Ctx>,
    group: &str,
    own: &str,
    topics: &BTreeSet<String>,
    timeout: Duration,
) -> Option<Vec<Foreign>> {
    let list = match c.fetch_group_list(Some(group), timeout) {
        Ok(l) => l,
        Err(error) => {
            tracing::debug!(group, %error, "could not read the group's members; asking again later");
            return None;
        }
    };
    let mut out = Vec::new();
    for m in list.groups().iter().flat_map(|g| g.members()) {
        if m.client_id() == own {
            continue;
        }
        let partitions: Vec<(String, i32)> = m
            .assignment()
            .and_then(assignment)
            .unwrap_or_default()
            .into_iter()
            .filter(|(t, _)| topics.contains(t))
            .collect();
        if !partitions.is_empty() {
            out.push(Foreign {
                client_id: m.client_id().to_string(),
                host: m.client_host().trim_start_matches('/').to_string(),
                partitions,
            });
        }
    }
    Some(out)
}

/// What tells this job's members of a group from another application's:
/// the group, this job's client id, and its topics.
#[derive(Debug, Clone)]
pub(crate) struct Members {
    pub group: String,
    /// This job's `client.id`.
    pub client_id: String,
    /// The configured topics (a pattern adds the topics held).
    pub topics: Vec<String>,
}

/// When it is time (`members_at`), reads the group's members; the refusal
/// when one of another application holds partitions of this source's
/// topics.
pub(crate) fn check(consumer: &BaseConsumer<Ctx>, sh: &Shared) -> Option<String> {
    let m = sh.settings.members.as_ref()?;
    {
        let mut at = lock(&sh.members_at);
        if at.is_none_or(|t| Instant::now() < t) {
            return None;
        }
        *at = Some(Instant::now() + EVERY);
    }
    let topics = m
        .topics
        .iter()
        .cloned()
        .chain(lock(&sh.state).parts.iter().map(|p| p.topic.clone()))
        .collect();
    let found = foreign(
        consumer,
        &m.group,
        &m.client_id,
        &topics,
        Duration::from_secs(2),
    )?;
    refusal(&m.group, &m.client_id, &found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(version: i16, topics: &[(&str, &[i32])], user: &[u8]) -> Vec<u8> {
        let mut b = version.to_be_bytes().to_vec();
        b.extend((topics.len() as i32).to_be_bytes());
        for (t, ps) in topics {
            b.extend((t.len() as i16).to_be_bytes());
            b.extend(t.as_bytes());
            b.extend((ps.len() as i32).to_be_bytes());
            for p in *ps {
                b.extend(p.to_be_bytes());
            }
        }
        b.extend((user.len() as i32).to_be_bytes());
        b.extend(user);
        b
    }

    #[test]
    fn an_assignment_is_read_as_kafka_writes_it() {
        let b = encode(3, &[("t", &[0, 2]), ("u", &[1])], b"sticky");
        assert_eq!(
            assignment(&b),
            Some(vec![("t".into(), 0), ("t".into(), 2), ("u".into(), 1)])
        );
        assert_eq!(assignment(&encode(0, &[], b"")), Some(vec![]));
        // Cut short: not an assignment.
        assert_eq!(assignment(&b[..9]), None);
        assert_eq!(assignment(&[]), None);
    }

    #[test]
    fn the_refusal_names_the_member_and_what_it_holds() {
        assert_eq!(refusal("g", "flowline", &[]), None);
        let f = Foreign {
            client_id: "rdkafka".into(),
            host: "10.0.0.7".into(),
            partitions: vec![("t".into(), 1), ("t".into(), 3)],
        };
        let m = refusal("g", "flowline", &[f]).unwrap();
        assert!(
            m.contains("consumer group `g` has a member that is not this job's (client.id `rdkafka`, host 10.0.0.7; this job's members have client.id `flowline`) holding partitions t/1, t/3"),
            "{m}"
        );
        assert!(
            m.contains("Fix: give this job a group_id of its own"),
            "{m}"
        );
    }
}
