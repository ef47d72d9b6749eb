"""The config section every package builds on (core layer: imports nothing of the project).

A section says once, where its fields are defined, which of them are execution-only: they
change how a stage runs (workers, timeouts, retries, where caches live), never what it
produces. A stage's key is derived from the sections it declares (`Stage.sections`) minus
those fields (`key_data`), so a stage cannot forget a field: a new one is in its key unless
it is marked here.
"""
from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # fields that change how, never what: left out of every stage key
    execution_only: ClassVar[frozenset[str]] = frozenset()
    # fields keyed by a part of their own (prompt pins: the prompts' version tags)
    keyed_apart: ClassVar[frozenset[str]] = frozenset()


def key_data(model: BaseModel, dumped: Any = None) -> Any:
    """`model` as JSON without the execution-only and separately keyed fields of every section in it."""
    data = model.model_dump(mode="json") if dumped is None else dumped
    cls = type(model)
    skip = getattr(cls, "execution_only", frozenset()) | getattr(cls, "keyed_apart", frozenset())
    out = {}
    for name in cls.model_fields:
        if name in skip:
            continue
        out[name] = _prune(getattr(model, name), data[name])
    return out


def _prune(value: Any, dumped: Any) -> Any:
    if isinstance(value, BaseModel):
        return key_data(value, dumped)
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], BaseModel):
        return [key_data(v, d) for v, d in zip(value, dumped)]
    return dumped
