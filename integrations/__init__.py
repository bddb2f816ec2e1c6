"""fp-registry integrations with registries (installed as fp_registry.integrations)."""
