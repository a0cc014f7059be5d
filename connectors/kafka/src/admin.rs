//! Admin requests shared by the source, the sink and the checkpoint store.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;

/// Runs a future to completion on a private single-thread runtime (the
/// admin client's futures), also when called from inside a runtime.
pub(crate) fn block_on<F: std::future::Future + Send>(f: F) -> F::Output
where
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a current-thread runtime")
                .block_on(f)
        })
        .join()
        .expect("admin thread")
    })
}

/// The configuration of `topic` as the broker applies it (the topic's own
/// values and the broker's defaults), by name; the error's text when it
/// cannot be read (no answer, no `DescribeConfigs` permission).
pub(crate) fn topic_configs(
    client: &rdkafka::ClientConfig,
    topic: &str,
    timeout: Duration,
) -> Result<HashMap<String, String>, String> {
    let admin: AdminClient<DefaultClientContext> = client.create().map_err(|e| e.to_string())?;
    let opts = AdminOptions::new().request_timeout(Some(timeout));
    let spec = [ResourceSpecifier::Topic(topic)];
    let mut answers = block_on(admin.describe_configs(&spec, &opts)).map_err(|e| e.to_string())?;
    match answers.pop() {
        Some(Ok(c)) => Ok(c
            .entries
            .into_iter()
            .filter_map(|e| Some((e.name, e.value?)))
            .collect()),
        Some(Err(code)) => Err(code.to_string()),
        None => Err("no answer".into()),
    }
}

/// A topic's `cleanup.policy` as the broker applies it.
pub(crate) struct CleanupPolicy<'a> {
    /// As written (`delete` when the broker gives none).
    pub text: &'a str,
    /// It compacts: each key's newest record is kept, older ones dropped.
    pub compacts: bool,
    /// `retention.ms` as written (the broker's default when it gives none).
    pub retention: &'a str,
    /// It deletes by time (`delete` with a `retention.ms` other than -1).
    pub deletes: bool,
}

/// The `cleanup.policy` of a topic's configs (`topic_configs`).
pub(crate) fn cleanup_policy(c: &HashMap<String, String>) -> CleanupPolicy<'_> {
    let text = c.get("cleanup.policy").map_or("delete", String::as_str);
    let retention = c.get("retention.ms").map_or("604800000", String::as_str);
    let has = |p: &str| text.split(',').any(|x| x.trim() == p);
    CleanupPolicy {
        text,
        compacts: has("compact"),
        retention,
        deletes: has("delete") && retention.trim() != "-1",
    }
}
