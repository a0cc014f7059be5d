//! Static consumer-group membership for a job's Kafka source, when
//! `[job] instance_id` is set: the member id `<job name>-<instance id>`
//! (KIP-345), so that a process restarted after a crash takes its
//! partitions back at once instead of waiting for its old session to time
//! out. Not by default: a static member restarted during a cooperative
//! rebalance left the partitions being moved with no member, unread for
//! good (`COOPERATIVE_STATIC` in the Kafka source), so a static member
//! takes the eager protocol, whose every rebalance moves every partition;
//! a dynamic one (the default) keeps the cooperative protocol and, after a
//! crash, waits out the old session (10 s).

use crate::config::{ConnectorSection, JobSection};

/// A Kafka source in a consumer group gets the static member id
/// `<job name>-<instance id>` when `[job] instance_id` is set, unless the
/// file sets `group_instance_id`.
pub(crate) fn static_member(job: &JobSection, source: &mut ConnectorSection) {
    let streaming = source.settings.get("bounded") != Some(&serde_json::Value::Bool(true));
    if let (true, true, Some(m), Some(instance)) = (
        source.kind == "kafka",
        streaming,
        source.settings.as_object_mut(),
        job.instance_id.as_ref(),
    ) {
        if !m.contains_key("group_instance_id") {
            m.insert(
                "group_instance_id".into(),
                format!("{}-{instance}", job.name).into(),
            );
        }
    }
}

/// A Kafka source gets the `client.id` `flowline-<job name>` unless its
/// properties set one: every process of the job has it, so a member of its
/// group under another id is another application or another job, whose
/// partitions the source refuses to leave unread in silence.
pub(crate) fn client_id(job: &JobSection, source: &mut ConnectorSection) {
    if source.kind != "kafka" {
        return;
    }
    let Some(m) = source.settings.as_object_mut() else {
        return;
    };
    let props = m
        .entry("properties")
        .or_insert_with(|| serde_json::json!({}));
    if let Some(p) = props.as_object_mut() {
        p.entry("client.id")
            .or_insert_with(|| format!("flowline-{}", job.name).into());
    }
}

#[cfg(test)]
mod tests {
    use crate::config::JobPlan;

    fn source_of(job: &str, source: &str) -> serde_json::Value {
        let text = format!("{job}[source]\ntype = \"kafka\"\nbootstrap_servers = \"b:9092\"\ntopics = [\"t\"]\ngroup_id = \"g\"\n{source}[sink]\ntype = \"stdout\"\n");
        JobPlan::parse(&text).unwrap().source.settings
    }

    #[test]
    fn a_group_member_gets_a_static_id_from_the_job_and_its_instance_id_only() {
        let s = source_of("[job]\nname = \"j\"\ninstance_id = \"a\"\n", "");
        assert_eq!(s["group_instance_id"], "j-a");
        let s = source_of("[job]\nname = \"j\"\n", "");
        assert!(s.get("group_instance_id").is_none(), "dynamic by default");
        let s = source_of("", "group_instance_id = \"mine\"\n");
        assert_eq!(s["group_instance_id"], "mine");
        assert_eq!(
            source_of("[job]\nname = \"j\"\n", "")["properties"]["client.id"],
            "flowline-j"
        );
        let s = source_of("", "[source.properties]\n\"client.id\" = \"mine\"\n");
        assert_eq!(s["properties"]["client.id"], "mine");
        let s = source_of("", "bounded = true\n");
        assert!(
            s.get("group_instance_id").is_none(),
            "bounded sources assign, no group"
        );
    }
}
