// The plugins of an embedded Elasticsearch node, loaded from classes on the
// classpath (as Elasticsearch's MockPluginsService does). LoadedPlugin and
// loadPlugin are package-private, hence the package.
package org.elasticsearch.plugins;

import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;

import org.elasticsearch.Build;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.env.Environment;
import org.elasticsearch.jdk.ModuleQualifiedExportsService;

public final class ClasspathPluginsService extends PluginsService {
    private final List<LoadedPlugin> loaded;

    public ClasspathPluginsService(Settings settings, Environment env, Collection<Class<? extends Plugin>> classes) {
        super(settings, env.configFile(), env.modulesFile(), env.pluginsFile());
        List<LoadedPlugin> out = new ArrayList<>();
        for (Class<? extends Plugin> c : classes) {
            Plugin p = loadPlugin(c, settings, env.configFile());
            PluginDescriptor d = new PluginDescriptor(c.getName(), "classpath plugin", "NA",
                Build.current().version(), "17", c.getName(), null, List.of(), false, false, false, false);
            out.add(new LoadedPlugin(d, p));
        }
        loaded = out;
        loadExtensions(loaded);
    }

    @Override
    protected List<LoadedPlugin> plugins() {
        return loaded;
    }

    // The server runs in the unnamed module here: nothing to export.
    @Override
    protected void addServerExportsService(Map<String, List<ModuleQualifiedExportsService>> exports) {}
}
