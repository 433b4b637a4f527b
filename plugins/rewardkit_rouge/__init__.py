"""Built-in reward plugin: rouge (placeholder)."""
