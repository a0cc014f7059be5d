//! The checks of a client's config that need no broker: librdkafka reads
//! every property (a name it does not know, a value it refuses) when a
//! config is turned into its native form, which contacts nothing. The
//! source and the sink run this when they are built and when their config
//! is only checked (`flowline validate --offline`), so both refuse the
//! same files.

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;

use crate::error::Error;

/// Whether librdkafka takes every property of `cc`. A refused property is
/// named with its value and librdkafka's reason, unless its name says it
/// holds a secret: then by its name alone.
pub(crate) fn native(cc: &ClientConfig, what: &str) -> Result<(), Error> {
    match cc.create_native_config() {
        Ok(_) => Ok(()),
        Err(KafkaError::ClientConfig(_, reason, key, value)) => {
            let (given, why) = if flowline_connector_api::is_secret_field(&key) {
                (
                    format!("`{key}`"),
                    "librdkafka refused its value".to_string(),
                )
            } else {
                (format!("`{key}` = {value:?}"), reason)
            };
            Err(Error::Config(format!(
                "the {what}'s librdkafka property {given} is not accepted: {why}. Fix: correct or remove it under properties (https://github.com/confluentinc/librdkafka/blob/master/CONFIGURATION.md)"
            )))
        }
        Err(e) => Err(Error::Config(format!(
            "the {what}'s librdkafka config is not accepted: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_property_or_a_bad_value_is_named_and_a_secret_is_not_shown() {
        let mut cc = ClientConfig::new();
        cc.set("bootstrap.servers", "127.0.0.1:9092");
        assert!(native(&cc, "consumer").is_ok());
        cc.set("fetch.wait.max.msx", "10");
        let e = native(&cc, "consumer").unwrap_err().to_string();
        assert!(e.contains("`fetch.wait.max.msx`"), "{e}");
        let mut cc = ClientConfig::new();
        cc.set("linger.ms", "soon");
        let e = native(&cc, "producer").unwrap_err().to_string();
        assert!(
            e.contains("`linger.ms` = \"soon\"") && e.contains("Invalid value"),
            "{e}"
        );
        // A misspelt secret: named, its value not shown.
        let mut cc = ClientConfig::new();
        cc.set("ssl.key.pasword", "hunter2-secret");
        let e = native(&cc, "producer").unwrap_err().to_string();
        assert!(
            e.contains("`ssl.key.pasword`") && !e.contains("hunter2"),
            "{e}"
        );
    }
}
