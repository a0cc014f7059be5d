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
