//! Server detection (`GET /`) and the checks that follow from it.

use serde_json::Value;

use crate::Error;

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distribution {
    /// Elasticsearch.
    Elasticsearch,
    /// OpenSearch.
    OpenSearch,
}

/// The server a sink talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// Elasticsearch or OpenSearch.
    pub distribution: Distribution,
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// The full version string.
    pub version: String,
}

impl Server {
    /// Reads `GET /`'s body.
    pub fn parse(body: &Value) -> Result<Server, Error> {
        let version = body["version"]["number"]
            .as_str()
            .ok_or_else(|| Error::Unsupported(format!("the server's `GET /` has no version.number: {body}. Is this an Elasticsearch-API server?")))?;
        let mut parts = version
            .split(['.', '-'])
            .map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        let distribution = if body["version"]["distribution"] == "opensearch" {
            Distribution::OpenSearch
        } else {
            Distribution::Elasticsearch
        };
        Ok(Server {
            distribution,
            major,
            minor,
            version: version.to_string(),
        })
    }

    /// Elasticsearch 7, 8, 9 and OpenSearch 1, 2, 3 are supported.
    pub fn check_supported(&self) -> Result<(), Error> {
        let ok = match self.distribution {
            Distribution::Elasticsearch => (7..=9).contains(&self.major),
            Distribution::OpenSearch => (1..=3).contains(&self.major),
        };
        if ok {
            Ok(())
        } else {
            Err(Error::Unsupported(format!(
                "{self} is not supported: the Elasticsearch sink supports Elasticsearch 7, 8, 9 and OpenSearch 1, 2, 3. Fix: point url at a supported server"
            )))
        }
    }

    /// Composable index templates (`_index_template`): Elasticsearch 7.8+
    /// and every OpenSearch; older servers take legacy `_template`.
    pub fn composable_templates(&self) -> bool {
        match self.distribution {
            Distribution::OpenSearch => true,
            Distribution::Elasticsearch => self.major > 7 || (self.major == 7 && self.minor >= 8),
        }
    }
}

impl std::fmt::Display for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = match self.distribution {
            Distribution::Elasticsearch => "Elasticsearch",
            Distribution::OpenSearch => "OpenSearch",
        };
        write!(f, "{d} {}", self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn detects_supported_servers() {
        let os =
            Server::parse(&json!({"version": {"distribution": "opensearch", "number": "2.19.2"}}))
                .unwrap();
        assert_eq!(
            (os.distribution, os.major, os.minor),
            (Distribution::OpenSearch, 2, 19)
        );
        assert!(os.check_supported().is_ok() && os.composable_templates());
        let es8 =
            Server::parse(&json!({"version": {"number": "8.19.7", "build_flavor": "default"}}))
                .unwrap();
        assert_eq!(es8.distribution, Distribution::Elasticsearch);
        assert!(es8.check_supported().is_ok() && es8.composable_templates());
        let es75 = Server::parse(&json!({"version": {"number": "7.5.2"}})).unwrap();
        assert!(es75.check_supported().is_ok() && !es75.composable_templates());
        assert!(Server::parse(&json!({"version": {"number": "9.1.0"}}))
            .unwrap()
            .check_supported()
            .is_ok());
    }

    #[test]
    fn refuses_unsupported_servers_by_name() {
        let e = Server::parse(&json!({"version": {"number": "6.8.23"}}))
            .unwrap()
            .check_supported()
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("Elasticsearch 6.8.23 is not supported"),
            "{e}"
        );
        let e = Server::parse(&json!({"name": "nginx"})).unwrap_err();
        assert!(e.to_string().contains("no version.number"));
    }
}
