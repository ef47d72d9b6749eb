"""JSON Schemas of every output config: the single source of truth for written rows."""
