//! The Docker path of the harness: Kafka and the search server's containers
//! (Elasticsearch 8 or OpenSearch 2, as the test process asks).

use std::net::TcpListener;

use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

use crate::{SearchServer, ServicesError};

/// The Kafka image.
pub const KAFKA_IMAGE: (&str, &str) = ("apache/kafka", "4.1.1");
/// The Elasticsearch image.
pub const ELASTICSEARCH_IMAGE: (&str, &str) =
    ("docker.elastic.co/elasticsearch/elasticsearch", "8.15.3");
/// The OpenSearch image (the version scripts/services runs).
pub const OPENSEARCH_IMAGE: (&str, &str) = ("opensearchproject/opensearch", "2.19.2");

/// Running containers; dropped with the test process.
#[derive(Debug)]
pub struct Running {
    /// `127.0.0.1:<port>`.
    pub kafka_bootstrap: String,
    /// `http://127.0.0.1:<port>`.
    pub elasticsearch_url: String,
    _kafka: ContainerAsync<GenericImage>,
    _es: ContainerAsync<GenericImage>,
}

/// Whether a Docker engine answers on `DOCKER_HOST` or the default socket.
pub fn docker_available() -> bool {
    if let Ok(h) = std::env::var("DOCKER_HOST") {
        if let Some(path) = h.strip_prefix("unix://") {
            return std::os::unix::net::UnixStream::connect(path).is_ok();
        }
        return h.starts_with("tcp://");
    }
    std::os::unix::net::UnixStream::connect("/var/run/docker.sock").is_ok()
}

fn free_port() -> Result<u16, ServicesError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| ServicesError::Containers(format!("no free port: {e}")))
}

/// The Kafka container: single KRaft node, its PLAINTEXT listener advertised
/// on the host port it is mapped to.
pub fn kafka_image(host_port: u16) -> testcontainers::ContainerRequest<GenericImage> {
    GenericImage::new(KAFKA_IMAGE.0, KAFKA_IMAGE.1)
        .with_wait_for(WaitFor::message_on_stdout("Kafka Server started"))
        .with_mapped_port(host_port, 9092.tcp())
        .with_env_var("KAFKA_NODE_ID", "1")
        .with_env_var("KAFKA_PROCESS_ROLES", "broker,controller")
        .with_env_var("KAFKA_LISTENERS", "PLAINTEXT://:9092,CONTROLLER://:9093")
        .with_env_var(
            "KAFKA_ADVERTISED_LISTENERS",
            format!("PLAINTEXT://127.0.0.1:{host_port}"),
        )
        .with_env_var("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")
        .with_env_var(
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
            "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        )
        .with_env_var("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093")
        .with_env_var("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1")
        .with_env_var("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        .with_env_var("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
        .with_env_var("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
}

/// The Elasticsearch container: single node, security off.
pub fn elasticsearch_image(host_port: u16) -> testcontainers::ContainerRequest<GenericImage> {
    GenericImage::new(ELASTICSEARCH_IMAGE.0, ELASTICSEARCH_IMAGE.1)
        .with_wait_for(WaitFor::message_on_stdout("\"message\":\"started"))
        .with_mapped_port(host_port, 9200.tcp())
        .with_env_var("discovery.type", "single-node")
        .with_env_var("xpack.security.enabled", "false")
        .with_env_var("cluster.routing.allocation.disk.threshold_enabled", "false")
        .with_env_var("ES_JAVA_OPTS", "-Xms512m -Xmx1g")
}

/// The OpenSearch container: single node, security plugin off.
pub fn opensearch_image(host_port: u16) -> testcontainers::ContainerRequest<GenericImage> {
    GenericImage::new(OPENSEARCH_IMAGE.0, OPENSEARCH_IMAGE.1)
        .with_wait_for(WaitFor::message_on_stdout("started"))
        .with_mapped_port(host_port, 9200.tcp())
        .with_env_var("discovery.type", "single-node")
        .with_env_var("DISABLE_SECURITY_PLUGIN", "true")
        .with_env_var("DISABLE_INSTALL_DEMO_CONFIG", "true")
        .with_env_var("cluster.routing.allocation.disk.threshold_enabled", "false")
        .with_env_var("OPENSEARCH_JAVA_OPTS", "-Xms512m -Xmx1g")
}

/// Starts Kafka and `server`.
pub async fn start(server: SearchServer) -> Result<Running, ServicesError> {
    let (kp, ep) = (free_port()?, free_port()?);
    let err = |what: &str, e: testcontainers::TestcontainersError| {
        ServicesError::Containers(format!("{what}: {e}"))
    };
    let kafka = kafka_image(kp).start().await.map_err(|e| err("kafka", e))?;
    let image = match server {
        SearchServer::Elasticsearch => elasticsearch_image(ep),
        SearchServer::OpenSearch => opensearch_image(ep),
    };
    let es = image
        .start()
        .await
        .map_err(|e| err(server.service_name(), e))?;
    Ok(Running {
        kafka_bootstrap: format!("127.0.0.1:{kp}"),
        elasticsearch_url: format!("http://127.0.0.1:{ep}"),
        _kafka: kafka,
        _es: es,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use testcontainers::Image;

    fn env_of(
        r: &testcontainers::ContainerRequest<GenericImage>,
    ) -> std::collections::HashMap<String, String> {
        r.env_vars()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    #[test]
    fn kafka_container_is_kraft_and_advertises_the_host_port() {
        let r = kafka_image(19092);
        assert_eq!(r.image().name(), "apache/kafka");
        assert!(r.image().tag().starts_with('4'));
        let env = env_of(&r);
        assert_eq!(env["KAFKA_PROCESS_ROLES"], "broker,controller");
        assert_eq!(
            env["KAFKA_ADVERTISED_LISTENERS"],
            "PLAINTEXT://127.0.0.1:19092"
        );
        let ports = r.ports().expect("mapped");
        assert_eq!(ports[0].host_port(), 19092);
        assert_eq!(ports[0].container_port(), 9092.tcp());
    }

    #[test]
    fn elasticsearch_container_is_8x_single_node_without_security() {
        let r = elasticsearch_image(19200);
        assert!(r.image().tag().starts_with("8."));
        let env = env_of(&r);
        assert_eq!(env["discovery.type"], "single-node");
        assert_eq!(env["xpack.security.enabled"], "false");
        assert_eq!(r.ports().expect("mapped")[0].container_port(), 9200.tcp());
    }

    #[test]
    fn opensearch_container_is_2x_single_node_without_security() {
        let r = opensearch_image(19202);
        assert_eq!(r.image().tag(), "2.19.2");
        let env = env_of(&r);
        assert_eq!(env["discovery.type"], "single-node");
        assert_eq!(env["DISABLE_SECURITY_PLUGIN"], "true");
        assert_eq!(r.ports().expect("mapped")[0].host_port(), 19202);
    }
}
