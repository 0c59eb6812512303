"""Campaign configuration: the model, its JSON Schema, loading and validation."""
