//! `action.auto_create_index`: whether the server creates an index on its
//! first write. The sink relies on it (its template maps each new index),
//! and with it off every window came back a dead letter (404
//! `index_not_found_exception`) for as long as the job ran. So the start
//! (and `validate`) reads the setting and refuses an index the server will
//! not create, naming the setting and the fix; an index that exists (a
//! fixed name created beforehand) needs no creation.
//!
//! The setting is `true`, `false`, or a list of patterns, each `+` (allow,
//! the default) or `-` (refuse); the first that matches decides and none
//! refuses. An ES 8 composable template with `allow_auto_create: true`
//! overrides it for the indices it matches.

use elasticsearch::Elasticsearch;
use serde_json::Value;

use crate::{request, target, Error};

/// The setting's key.
pub const KEY: &str = "action.auto_create_index";

/// Whether `setting` lets the server create `index` on a write.
pub fn allows(setting: &str, index: &str) -> bool {
    match setting.trim() {
        "true" | "" => return true,
        "false" => return false,
        _ => {}
    }
    for p in setting.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (allow, pattern) = match p.as_bytes()[0] {
            b'+' => (true, &p[1..]),
            b'-' => (false, &p[1..]),
            _ => (true, p),
        };
        if target::matches(pattern, index) {
            return allow;
        }
    }
    false
}

/// The setting in force (transient over persistent over the node's); `None`
/// when the user may not read the cluster settings (a warning says the
/// check is skipped).
pub async fn setting(client: &Elasticsearch) -> Result<Option<String>, Error> {
    let query = [("include_defaults", "true"), ("flat_settings", "true")];
    let unchecked = format!("cannot read the cluster settings: whether the server creates the sink's indices ({KEY}) is not checked. Fix: grant the monitor cluster privilege to the sink's user");
    let v = request::get_if_allowed(client, "/_cluster/settings", &query, &unchecked).await?;
    Ok(v.as_ref().map(in_force))
}

/// The setting from a `GET _cluster/settings?include_defaults&flat_settings`
/// response; `true` when none is set.
pub fn in_force(v: &Value) -> String {
    ["transient", "persistent", "defaults"]
        .iter()
        .find_map(|k| match &v[k][KEY] {
            Value::String(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        })
        .unwrap_or_else(|| "true".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_first_matching_pattern_decides_and_none_refuses() {
        for (setting, index, want) in [
            ("true", "a", true),
            ("false", "a", false),
            ("+flowline-*", "flowline-metrics-2026.01.01", true),
            ("flowline-*", "flowline-metrics-2026.01.01", true),
            ("-flowline-*,+*", "flowline-metrics-2026.01.01", false),
            (
                "+flowline-metrics-*,-flowline-*",
                "flowline-metrics-x",
                true,
            ),
            (".kibana*, +logs-*", "flowline-metrics-x", false),
            ("-x-*, +*", "flowline-metrics-x", true),
        ] {
            assert_eq!(allows(setting, index), want, "{setting} {index}");
        }
    }

    #[test]
    fn transient_over_persistent_over_the_nodes() {
        assert_eq!(in_force(&json!({})), "true");
        assert_eq!(
            in_force(&json!({"defaults": {KEY: "false"}, "persistent": {KEY: "+a-*"}})),
            "+a-*"
        );
        assert_eq!(
            in_force(&json!({"persistent": {KEY: "+a-*"}, "transient": {KEY: false}})),
            "false"
        );
    }
}
