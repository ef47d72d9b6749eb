"""Moved to the core layer: `pipeline/classify.py` (media code below acquire uses it too)."""
from pipeline.classify import classify_error  # noqa: F401
