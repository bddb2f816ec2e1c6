"""Method implementations; each is registered by a small plugin in fp_registry.default_plugins."""
