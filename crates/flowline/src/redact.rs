//! Secrets out of what `validate` prints: settings whose names say secret
//! (`password`, `api_key`, `sasl.jaas.config`…) become `***`, and the
//! user-info of every URL (`http://user:pw@host`) too.

/// `scheme://user:pw@host…` with the user-info replaced by `***`.
fn redact_url(s: &str) -> String {
    let Some((scheme, rest)) = s.split_once("://") else {
        return s.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => s.to_string(),
    }
}

/// A copy of connector settings with secret values replaced by `***`.
pub fn redact(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => serde_json::Value::Object(
            m.iter()
                .map(|(k, v)| {
                    if flowline_connector_api::is_secret_field(k) && !v.is_object() {
                        (k.clone(), serde_json::Value::String("***".into()))
                    } else {
                        (k.clone(), redact(v))
                    }
                })
                .collect(),
        ),
        serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(redact).collect()),
        serde_json::Value::String(s) => serde_json::Value::String(redact_url(s)),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_secrets() {
        let v = serde_json::json!({"url": "http://x", "password": "hunter2", "auth": {"api_key": "k", "user": "u"}});
        let r = redact(&v);
        assert_eq!(r["password"], "***");
        assert_eq!(r["auth"]["api_key"], "***");
        assert_eq!(r["auth"]["user"], "u");
        assert!(!r.to_string().contains("hunter2"));
        let v = serde_json::json!({
            "url": "http://elastic:pw1@h:9200/x",
            "urls": ["https://u:pw2@h2"],
            "properties": {"ssl.key.pem": "-----BEGIN", "sasl.jaas.config": "pw3", "client.id": "c"}
        });
        let r = redact(&v).to_string();
        for s in ["pw1", "pw2", "BEGIN", "pw3", "elastic"] {
            assert!(!r.contains(s), "{s} in {r}");
        }
        assert!(
            r.contains("http://***@h:9200/x") && r.contains("\"client.id\":\"c\""),
            "{r}"
        );
    }
}
