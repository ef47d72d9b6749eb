"""Versioned prompt files; loaded with importlib.resources."""
