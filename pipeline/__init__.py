"""Long-video curation pipeline: ingest, fetch, segment, select, commit (see README.md)."""
