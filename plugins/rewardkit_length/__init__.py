"""Built-in reward plugin: length (placeholder)."""
