package housing.registry;

import io.apicurio.common.apps.config.DynamicConfigPropertyList;

import javax.enterprise.context.ApplicationScoped;
import javax.enterprise.inject.Produces;
import java.util.List;

/**
 * The bean the config-index extension's deployment module would add (that module is not on Maven Central): the
 * list of dynamic (runtime-editable) settings, left empty, so every setting is the static one it is configured to.
 */
@ApplicationScoped
public class ConfigIndexBeans {

    @Produces
    @ApplicationScoped
    DynamicConfigPropertyList dynamicConfigProperties() {
        return new DynamicConfigPropertyList(List.of());
    }
}
