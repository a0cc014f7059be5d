// An Elasticsearch node with plugins from the classpath (no distribution,
// no plugin directories), for Flowline's test services. Node's constructor
// from a NodeConstruction and NodeServiceProvider are package-private, so
// this class sits in their package, as Elasticsearch's own test framework
// (MockNode) does. Pinned to Elasticsearch 8.15 (8.17 changed plugin loading).
package org.elasticsearch.node;

import java.util.Collection;

import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.env.Environment;
import org.elasticsearch.plugins.ClasspathPluginsService;
import org.elasticsearch.plugins.Plugin;
import org.elasticsearch.plugins.PluginsService;

public final class FlowlineNode extends Node {
    public FlowlineNode(Environment env, Collection<Class<? extends Plugin>> plugins) {
        super(NodeConstruction.prepareConstruction(env, new NodeServiceProvider() {
            @Override
            PluginsService newPluginService(Environment e, Settings s) {
                return new ClasspathPluginsService(s, e, plugins);
            }
        }, true));
    }
}
