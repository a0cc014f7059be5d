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

/// Where byte `at` of the expanded job file `text` is: ` at line L, column
/// C:` and the line as `written` (before `${…}` expansion), with the value
/// of a secret setting on it shown as `***`. The caret is drawn when the
/// written line is the expanded one.
pub(crate) fn locate(text: &str, written: &str, at: usize) -> String {
    let at = at.min(text.len());
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = text[start..at].chars().count() + 1;
    let Some(shown) = written.lines().nth(line - 1) else {
        return format!(" at line {line}, column {column}");
    };
    let safe = redact_line(shown);
    let caret = if text.lines().nth(line - 1) == Some(shown) && safe == shown {
        format!(
            "\n{:>w$} | {:>c$}",
            "",
            "^",
            w = line.to_string().len(),
            c = column
        )
    } else {
        String::new()
    };
    format!(" at line {line}, column {column}:\n{line} | {safe}{caret}")
}

/// A TOML line with everything after `secret_key =` replaced by `***`.
fn redact_line(line: &str) -> String {
    let mut from = 0;
    while let Some(eq) = line[from..].find('=').map(|i| i + from) {
        let key_start = line[..eq].rfind(['{', ',', '[']).map_or(0, |i| i + 1);
        let key = line[key_start..eq].trim().trim_matches(['"', '\'']);
        if flowline_connector_api::is_secret_field(key) {
            return format!("{} ***", &line[..=eq]);
        }
        from = eq + 1;
    }
    line.to_string()
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

    #[test]
    fn locations_give_line_and_column_and_never_a_secret() {
        let text = "[sink]\ntype = \"file\"\npath = 3\n";
        let at = text.find('3').unwrap();
        let l = locate(text, text, at);
        assert!(
            l.starts_with(" at line 3, column 8:\n3 | path = 3\n  |"),
            "{l}"
        );
        assert!(l.ends_with("       ^"), "{l:?}");
        let text = "[source]\nsasl_password = 12345\n";
        let l = locate(text, text, text.find('1').unwrap());
        assert!(
            l.contains("line 2") && l.contains("sasl_password = ***") && !l.contains("12345"),
            "{l}"
        );
        let written = "[source]\nx = { sasl_password = ${PW} }\n";
        let text = "[source]\nx = { sasl_password = hunter2 }\n";
        let l = locate(text, written, text.find('h').unwrap());
        assert!(!l.contains("hunter2") && !l.contains("PW"), "{l}");
    }
}
