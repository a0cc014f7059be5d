//! Telling a refused login apart from a broker that is not there: librdkafka
//! reports both as a failed metadata request, and only its error callback
//! says `Authentication`. Both the source and the sink keep the reason.

use std::sync::{Arc, Mutex};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::ClientContext;

/// A client context that keeps the last authentication failure. Clones
/// share it (a producer's context is not reachable once it is created).
#[derive(Debug, Default, Clone)]
pub(crate) struct AuthWatch {
    failure: Arc<Mutex<Option<String>>>,
}

impl AuthWatch {
    /// Records `error` when it is an authentication failure.
    pub(crate) fn note(&self, error: &KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Authentication) {
            *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.to_string());
        }
    }

    /// The last authentication failure, if any.
    pub(crate) fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl ClientContext for AuthWatch {
    fn error(&self, error: KafkaError, reason: &str) {
        self.note(&error, reason);
        tracing::warn!(%error, reason, "librdkafka error");
    }
}

/// The error for credentials the broker refused (never the password).
pub(crate) fn refused(bootstrap: &str, reason: &str) -> String {
    format!(
        "Kafka at {bootstrap} refused the credentials: authentication failed ({reason}). Fix: check sasl_username, sasl_password and sasl_mechanism"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_authentication_failures_are_kept() {
        let w = AuthWatch::default();
        w.note(
            &KafkaError::Global(RDKafkaErrorCode::AllBrokersDown),
            "1/1 brokers are down",
        );
        assert_eq!(w.failure(), None);
        w.note(
            &KafkaError::Global(RDKafkaErrorCode::Authentication),
            "SASL authentication error: Authentication failed",
        );
        assert_eq!(
            w.failure().as_deref(),
            Some("SASL authentication error: Authentication failed")
        );
        let m = refused("127.0.0.1:9094", "bad");
        assert!(m.contains("authentication failed") && m.contains("sasl_password"));
    }
}
