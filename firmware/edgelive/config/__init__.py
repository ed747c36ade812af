"""Configuration: the schema, mode presets, and the layered store."""
