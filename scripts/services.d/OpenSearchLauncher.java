// Starts a single OpenSearch node embedded in this JVM, with the plugins it
// needs loaded from the classpath (no distribution, no plugin directory).
// Used by scripts/services for integration tests. Settings come from
// system properties: flowline.home, flowline.http.port, flowline.transport.port.
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Collection;
import java.util.List;
import java.util.Map;

import org.opensearch.analysis.common.CommonAnalysisPlugin;
import org.opensearch.common.settings.Settings;
import org.opensearch.env.Environment;
import org.opensearch.index.mapper.MapperExtrasPlugin;
import org.opensearch.index.reindex.ReindexPlugin;
import org.opensearch.ingest.common.IngestCommonPlugin;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.plugins.Plugin;
import org.opensearch.transport.Netty4Plugin;

public final class OpenSearchLauncher {
    static final class EmbeddedNode extends Node {
        EmbeddedNode(Environment env, Collection<Class<? extends Plugin>> plugins) {
            super(env, plugins, true);
        }
    }

    public static void main(String[] args) throws Exception {
        Path home = Path.of(System.getProperty("flowline.home"));
        Files.createDirectories(home.resolve("data"));
        Files.createDirectories(home.resolve("logs"));
        Files.createDirectories(home.resolve("config"));
        Settings settings = Settings.builder()
            .put("cluster.name", "flowline-test")
            .put("node.name", "flowline-node")
            .put("path.home", home.toString())
            .put("path.data", home.resolve("data").toString())
            .put("path.logs", home.resolve("logs").toString())
            .put("discovery.type", "single-node")
            .put("network.host", "127.0.0.1")
            .put("http.port", System.getProperty("flowline.http.port", "9200"))
            .put("transport.port", System.getProperty("flowline.transport.port", "9300"))
            .put("http.type", "netty4")
            .put("transport.type", "netty4")
            .put("cluster.routing.allocation.disk.threshold_enabled", false)
            .put("action.auto_create_index", true)
            // Below the default 100mb, so that tests reach a whole-request
            // 413 with a document of a few MB.
            .put("http.max_content_length", "8mb")
            .build();
        Environment env = InternalSettingsPreparer.prepareEnvironment(
            settings, Map.of(), home.resolve("config"), () -> "flowline-node");
        List<Class<? extends Plugin>> plugins = List.of(
            Netty4Plugin.class, CommonAnalysisPlugin.class, MapperExtrasPlugin.class, ReindexPlugin.class,
            IngestCommonPlugin.class);
        Node node = new EmbeddedNode(env, plugins);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
            } catch (Exception e) {
                e.printStackTrace();
            }
        }));
        node.start();
        System.out.println("flowline: opensearch node started on 127.0.0.1:" + System.getProperty("flowline.http.port", "9200"));
        // The node's threads are daemons: keep the JVM alive until it is stopped.
        new java.util.concurrent.CountDownLatch(1).await();
    }
}
