// Starts a single Elasticsearch 8.15 node embedded in this JVM, plugins from
// the classpath. Used by scripts/services for integration tests. Settings
// come from system properties: flowline.home, flowline.http.port,
// flowline.transport.port.
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

import org.elasticsearch.common.logging.LogConfigurator;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.env.Environment;
import org.elasticsearch.node.FlowlineNode;
import org.elasticsearch.node.InternalSettingsPreparer;
import org.elasticsearch.node.Node;
import org.elasticsearch.transport.netty4.Netty4Plugin;

public final class ElasticsearchLauncher {
    public static void main(String[] args) throws Exception {
        Path home = Path.of(System.getProperty("flowline.home"));
        for (String d : List.of("data", "logs", "config", "modules", "plugins")) {
            Files.createDirectories(home.resolve(d));
        }
        LogConfigurator.configureESLogging();
        String port = System.getProperty("flowline.http.port", "9201");
        Settings settings = Settings.builder()
            .put("cluster.name", "flowline-test")
            .put("node.name", "flowline-es")
            .put("path.home", home.toString())
            .put("path.data", home.resolve("data").toString())
            .put("path.logs", home.resolve("logs").toString())
            .put("discovery.type", "single-node")
            .put("network.host", "127.0.0.1")
            .put("http.port", port)
            .put("transport.port", System.getProperty("flowline.transport.port", "9301"))
            .put("cluster.routing.allocation.disk.threshold_enabled", false)
            .put("action.auto_create_index", true)
            // As the OpenSearch node: tests reach a whole-request 413 with a
            // document of a few MB.
            .put("http.max_content_length", "8mb")
            .build();
        Environment env = InternalSettingsPreparer.prepareEnvironment(
            settings, Map.of(), home.resolve("config"), () -> "flowline-es");
        Node node = new FlowlineNode(env, List.of(Netty4Plugin.class, RootPlugin.class));
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
            } catch (Exception e) {
                e.printStackTrace();
            }
        }));
        node.start();
        System.out.println("flowline: elasticsearch node started on 127.0.0.1:" + port);
        new java.util.concurrent.CountDownLatch(1).await();
    }
}
