//! Secrets never printed (#12 point 16): a password in the search server's
//! URL, a pass-through librdkafka key property and an unquoted numeric
//! password reach neither `flowline validate`'s output, nor the retry
//! warnings, nor the final error of `flowline run`, against the real
//! services and against a server that is down.

use std::process::Command;

use flowline_integration_tests::job::bin;
use flowline_integration_tests::{unique, TestServices};

const SECRETS: [&str; 3] = ["s3cr3t-pw", "PRIVATE-KEY-TEXT", "31415926"];

fn flowline(args: &[&str], config: &std::path::Path) -> (bool, String) {
    let o = Command::new(bin("flowline"))
        .args(args)
        .arg(config)
        .env("FLOWLINE_LOG", "debug")
        .output()
        .expect("run flowline");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

fn assert_no_secret(what: &str, text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "{what} printed the secret {s}:\n{text}");
    }
}

fn job(dir: &std::path::Path, bootstrap: &str, es_url: &str, topic: &str) -> std::path::PathBuf {
    let with_cred = es_url.replacen("://", "://elastic:s3cr3t-pw@", 1);
    let p = dir.join("job.toml");
    std::fs::write(
        &p,
        format!(
            r#"[source]
type = "kafka"
bootstrap_servers = "{bootstrap}"
topics = ["{topic}"]
group_id = "{topic}"
bounded = true
[source.properties]
"ssl.key.pem" = "PRIVATE-KEY-TEXT"
[sink]
type = "elasticsearch"
url = "{with_cred}"
index = "{topic}"
max_attempts = 2
initial_backoff = "10ms"
"#
        ),
    )
    .unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_and_run_never_print_a_secret() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("secrets");
    flowline_integration_tests::create_topic(&s.kafka_bootstrap, &topic, 1).await;
    let cfg = job(dir.path(), &s.kafka_bootstrap, &s.elasticsearch_url, &topic);

    // validate: accepted (the property is not valid for plaintext, so it
    // may also be refused; either way nothing secret is printed).
    let (_, out) = flowline(&["validate", "--config"], &cfg);
    assert_no_secret("validate", &out);
    assert!(
        out.contains("***"),
        "validate shows that something was hidden:\n{out}"
    );

    // run against a search server that is down: retry warnings and the
    // final error name the server without its credentials.
    let down = job(dir.path(), &s.kafka_bootstrap, "http://127.0.0.1:1", &topic);
    let (ok, out) = flowline(&["run", "--config"], &down);
    assert!(!ok, "a run against a server that is down fails:\n{out}");
    assert!(
        out.contains("127.0.0.1:1"),
        "the error names the server:\n{out}"
    );
    assert_no_secret("run (server down)", &out);

    // An unquoted numeric password: the type error names the field only.
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("max_attempts = 2", "username = \"u\"\npassword = 31415926");
    let text = text.replace("elastic:s3cr3t-pw@", "");
    std::fs::write(&cfg, text).unwrap();
    let (ok, out) = flowline(&["validate", "--config"], &cfg);
    assert!(!ok, "a numeric password is a config error:\n{out}");
    assert_no_secret("validate (numeric password)", &out);
}
