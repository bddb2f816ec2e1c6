"""fp-registry upload hooks, webhook receiver and queue (installed as fp_registry.hooks)."""
