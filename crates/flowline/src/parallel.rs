//! How a job runs in parallel: `[job] workers` (tasks running the keyed
//! stages behind the hash exchange) and `[source] keyed_by` (the input is
//! already partitioned by these key fields: no exchange, state stays with
//! its source partition, and partitions can move between processes).
//!
//! Without `keyed_by` every input gives correct results, whatever its
//! message keys. With it, a record whose key another partition of the
//! process holds is a dead letter (`KeySplit`'s reason); across processes it cannot be seen, so
//! `keyed_by` is a promise about the producer, and a Kafka record without a
//! message key (which partitioners spread over the partitions) is a dead
//! letter. The scale-out store (`[checkpoint.kafka]`, several processes
//! sharing a group) keeps state by source partition, so it needs
//! `keyed_by`. A keyed job runs its source partitions on up to `workers`
//! tasks at once, each partition's chain on one task at a time.

use crate::config::{ConnectorSection, JobPlan, JobSection, StoreChoice};
use crate::Error;

/// The most workers a job may ask for.
pub const MAX_WORKERS: usize = 1024;

/// `[job] workers`: 1 to [`MAX_WORKERS`], default the number of cores.
pub(crate) fn workers(job: &JobSection) -> Result<usize, Error> {
    match job.workers {
        None => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
        Some(n) if (1..=MAX_WORKERS).contains(&n) => Ok(n),
        Some(n) => Err(Error::Config {
            field: "job.workers".into(),
            message: format!(
                "{n} is outside 1 to {MAX_WORKERS}. Fix: remove it (default: the number of cores) or choose a value in that range"
            ),
        }),
    }
}

/// Takes `keyed_by` out of the source's settings (the connector never sees
/// it): a non-empty list of field names.
pub(crate) fn take_keyed_by(source: &mut ConnectorSection) -> Result<Option<Vec<String>>, Error> {
    let Some(m) = source.settings.as_object_mut() else {
        return Ok(None);
    };
    let Some(v) = m.remove("keyed_by") else {
        return Ok(None);
    };
    let bad = |found: &serde_json::Value| {
        Error::Config {
        field: "source.keyed_by".into(),
        message: format!(
            "must be a non-empty list of the job's key fields, found {found}. Fix: keyed_by = [\"host\"] when the topic's messages are keyed by host, or remove it"
        ),
    }
    };
    let names: Vec<String> = match &v {
        serde_json::Value::Array(a) if !a.is_empty() => a
            .iter()
            .map(|x| x.as_str().map(str::to_string).ok_or_else(|| bad(&v)))
            .collect::<Result<_, _>>()?,
        _ => return Err(bad(&v)),
    };
    Ok(Some(names))
}

/// What the job's partitioning (`keyed_by` or the exchange) asks of its
/// source, set in one place; returns whether every record needs a message
/// key.
///
/// - Without `keyed_by`, a Kafka source in a group feeding the exchange is
///   `exclusive`: its process must hold every partition, since key-group
///   state stays in one process; a second process joining the group stops
///   both, loudly, rather than each writing partial windows under the same
///   ids. Refused when the file turns it off.
/// - With `keyed_by` over Kafka, a record without a message key cannot be
///   trusted to follow the declared partitioning (partitioners spread
///   keyless records): it is a dead letter, not counted.
pub(crate) fn source_rules(source: &mut ConnectorSection, keyed: bool) -> Result<bool, Error> {
    let kafka = source.kind == "kafka";
    let needs_key = keyed && kafka;
    let m = match source.settings.as_object_mut() {
        Some(m) if kafka && !keyed => m,
        _ => return Ok(needs_key),
    };
    match m.get("exclusive") {
        None => {
            m.insert("exclusive".into(), true.into());
            Ok(false)
        }
        Some(serde_json::Value::Bool(false)) => Err(Error::Config {
            field: "source.exclusive".into(),
            message: "= false lets other processes of the group read some of the topic's partitions, and this job routes keys through an in-process exchange (no keyed_by): each process would write partial windows under the same ids. Fix: remove exclusive, or declare keyed_by = [\"host\"] when the topic is keyed by the job's key".into(),
        }),
        Some(_) => Ok(false),
    }
}

/// `keyed_by` names key fields of the job; the scale-out store has it.
pub(crate) fn check(plan: &JobPlan) -> Result<(), Error> {
    let keys = plan.window.event.key_names();
    if let Some(names) = &plan.keyed_by {
        for n in names {
            if !keys.names().contains(n) {
                return Err(Error::Config {
                    field: "source.keyed_by".into(),
                    message: format!(
                        "`{n}` is not a key field of this job (its key is {:?}). Fix: name the key fields the topic is partitioned by, or remove keyed_by to let the exchange route by key",
                        keys.names()
                    ),
                });
            }
        }
    }
    let scale_out = matches!(&plan.checkpoint, Some((StoreChoice::Kafka(_), _)));
    if scale_out && plan.keyed_by.is_none() {
        return Err(Error::Config {
            field: "checkpoint.kafka".into(),
            message: "shares state by source partition between the processes of a group, and this job routes keys through an exchange (no [source] keyed_by), whose state is by key group in one process. Fix: add keyed_by = [\"host\"] to [source] when the topic is keyed by host, or keep checkpoints in a local dir (one process, more [job] workers)".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::JobPlan;

    const BASE: &str = "[source]\ntype = \"file\"\npath = \"in\"\n";
    const SINK: &str = "[sink]\ntype = \"stdout\"\n";

    fn parse(job: &str, source: &str, rest: &str) -> Result<JobPlan, String> {
        JobPlan::parse(&format!("{job}{BASE}{source}{SINK}{rest}")).map_err(|e| e.to_string())
    }

    #[test]
    fn workers_with_keyed_by_set_the_partition_tasks() {
        let plan = parse("[job]\nworkers = 3\n", "keyed_by = [\"host\"]\n", "").unwrap();
        assert_eq!(plan.workers, 3);
        assert!(plan.keyed_by.is_some());
        let e = parse("[job]\nworkers = 0\n", "keyed_by = [\"host\"]\n", "").unwrap_err();
        assert!(e.contains("job.workers"), "{e}");
    }

    #[test]
    fn a_kafka_source_feeding_the_exchange_is_exclusive() {
        let kafka = "[source]\ntype = \"kafka\"\nbootstrap_servers = \"b:9092\"\ntopics = [\"t\"]\ngroup_id = \"g\"\n";
        let plan = |extra: &str| {
            JobPlan::parse(&format!("{kafka}{extra}{SINK}")).map_err(|e| e.to_string())
        };
        assert_eq!(plan("").unwrap().source.settings["exclusive"], true);
        let keyed = plan("keyed_by = [\"host\"]\n").unwrap();
        assert!(keyed.source.settings.get("exclusive").is_none());
        // Declared keyed, a Kafka record must have a message key.
        assert!(keyed.window.message_key_required);
        assert!(!plan("").unwrap().window.message_key_required);
        let file = parse("", "keyed_by = [\"host\"]\n", "").unwrap();
        assert!(!file.window.message_key_required);
        let e = plan("exclusive = false\n").unwrap_err();
        assert!(
            e.contains("source.exclusive") && e.contains("keyed_by"),
            "{e}"
        );
        let keyed_off = plan("keyed_by = [\"host\"]\nexclusive = false\n").unwrap();
        assert_eq!(keyed_off.source.settings["exclusive"], false);
        // Not a Kafka source: nothing added.
        assert!(parse("", "", "")
            .unwrap()
            .source
            .settings
            .get("exclusive")
            .is_none());
    }

    #[test]
    fn keyed_by_is_taken_from_the_source_and_checked_against_the_key() {
        let p = parse("", "keyed_by = [\"host\"]\n", "").unwrap();
        assert_eq!(p.keyed_by, Some(vec!["host".to_string()]));
        assert!(p.source.settings.get("keyed_by").is_none());
        assert_eq!(parse("", "", "").unwrap().keyed_by, None);
        let e = parse("", "keyed_by = [\"hots\"]\n", "").unwrap_err();
        assert!(e.contains("source.keyed_by") && e.contains("`hots`"), "{e}");
        for bad in [
            "keyed_by = []\n",
            "keyed_by = \"host\"\n",
            "keyed_by = [1]\n",
        ] {
            let e = parse("", bad, "").unwrap_err();
            assert!(e.contains("non-empty list"), "{bad}: {e}");
        }
    }

    #[test]
    fn workers_default_to_the_cores_and_are_bounded() {
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(parse("", "", "").unwrap().workers, cores);
        assert_eq!(parse("[job]\nworkers = 3\n", "", "").unwrap().workers, 3);
        for n in ["0", "1025"] {
            let e = parse(&format!("[job]\nworkers = {n}\n"), "", "").unwrap_err();
            assert!(e.contains("job.workers") && e.contains(n), "{e}");
        }
    }

    #[test]
    fn the_scale_out_store_needs_keyed_by() {
        let store = "[checkpoint.kafka]\nbootstrap_servers = \"b:9092\"\n";
        let e = parse("", "", store).unwrap_err();
        assert!(
            e.contains("checkpoint.kafka") && e.contains("keyed_by"),
            "{e}"
        );
        assert!(parse("", "keyed_by = [\"host\"]\n", store).is_ok());
    }
}
