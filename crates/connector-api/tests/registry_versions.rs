//! The registry refuses connectors built for an incompatible API version,
//! with a message naming both versions and the fix.

use flowline_connector_api::*;

struct Nothing;
impl Source for Nothing {
    async fn next(&mut self) -> Result<SourceEvent, ConnectorError> {
        Ok(SourceEvent::End)
    }
    async fn seek(&mut self, _: &SourcePosition) -> Result<(), ConnectorError> {
        Ok(())
    }
}

struct Factory(ApiVersion);
impl SourceFactory for Factory {
    type Config = serde_json::Value;
    type Source = Nothing;
    fn descriptor(&self) -> ConnectorDescriptor {
        ConnectorDescriptor::new("legacy", "3.1.4", ConnectorKind::Source).with_api_version(self.0)
    }
    fn build(&self, _: serde_json::Value) -> Result<Nothing, ConnectorError> {
        Ok(Nothing)
    }
}

#[test]
fn refuses_other_major_with_documented_message() {
    let mut r = Registry::for_runtime(ApiVersion::new(1, 0));
    let err = r
        .register_source(Factory(ApiVersion::new(2, 0)))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "connector `legacy` 3.1.4 was built for connector API 2.0, but this Flowline runtime \
         implements connector API 1.0 (it runs connectors built for 1.0 up to 1.0); fix: rebuild \
         `legacy` against flowline-connector-api 1.x, or run a Flowline release that implements \
         connector API 2.x"
    );
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(r.descriptors().is_empty());
}

#[test]
fn refuses_newer_minor_accepts_older_minor() {
    let mut r = Registry::for_runtime(ApiVersion::new(1, 2));
    let err = r
        .register_source(Factory(ApiVersion::new(1, 3)))
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("built for connector API 1.3"), "{msg}");
    assert!(msg.contains("implements connector API 1.2"), "{msg}");
    assert!(msg.contains("upgrade Flowline"), "{msg}");
    r.register_source(Factory(ApiVersion::new(1, 0))).unwrap();
    assert_eq!(r.descriptors().len(), 1);
}

#[test]
fn unknown_connector_lists_the_known_ones() {
    let mut r = Registry::new();
    r.register_source(Factory(API_VERSION)).unwrap();
    let err = r.build_source("kafak", serde_json::json!({})).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown source connector `kafak`; known source connectors: legacy. Fix: set `type` to one of them"
    );
}
