"""Built-in reward plugin: toxicity (placeholder)."""
