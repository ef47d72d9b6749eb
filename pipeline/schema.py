"""JSON Schemas (the source of truth) -> Arrow schemas and compiled row validators.

`schemas/*.json` define every written config. The Arrow schema of each config is derived
here with a fixed type mapping, so Parquet shards always carry the same schema whatever
the rows hold (an all-null column is still typed). Rows are validated with a compiled
fastjsonschema validator (fast path, ~27x `jsonschema` on these rows); only a failing row
is re-checked with `jsonschema` to report every error with its path.
"""
from __future__ import annotations

import functools
import importlib.resources
import json
from dataclasses import dataclass
from typing import Any, Callable

import fastjsonschema
import jsonschema
import pyarrow as pa

CONFIGS = ("videos", "sft", "rl", "distill", "rejects")

_SCALARS = {
    "string": pa.string(),
    "integer": pa.int64(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
}


class SchemaError(ValueError):
    """A JSON Schema uses a construct with no fixed Arrow type."""


@functools.lru_cache(maxsize=None)
def load_json_schema(config: str) -> dict[str, Any]:
    """The JSON Schema of an output config, read from the installed package."""
    if config not in CONFIGS:
        raise KeyError(f"unknown config {config!r}; known: {', '.join(CONFIGS)}")
    text = importlib.resources.files("pipeline.schemas").joinpath(f"{config}.json").read_text()
    return json.loads(text)


def _split_nullable(node: dict[str, Any], where: str) -> tuple[dict[str, Any], bool]:
    """Return the non-null form of a schema node and whether null is allowed."""
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        if len(options) != 1:
            raise SchemaError(f"{where}: anyOf must be [null, <one type>]")
        return options[0], len(options) != len(node["anyOf"])
    types = node.get("type")
    if isinstance(types, list):
        concrete = [t for t in types if t != "null"]
        if len(concrete) != 1:
            raise SchemaError(f"{where}: exactly one non-null type allowed, got {types}")
        return {**node, "type": concrete[0]}, "null" in types
    if types is None:
        raise SchemaError(f"{where}: every property needs a type")
    return node, False


def arrow_type(node: dict[str, Any], where: str = "$") -> tuple[pa.DataType, bool]:
    """Arrow type and nullability for one JSON Schema node."""
    node, nullable = _split_nullable(node, where)
    kind = node["type"]
    if kind in _SCALARS:
        return _SCALARS[kind], nullable
    if kind == "array":
        item_type, item_nullable = arrow_type(node.get("items", {}), f"{where}[]")
        return pa.list_(pa.field("item", item_type, nullable=item_nullable)), nullable
    if kind == "object":
        return pa.struct(_fields(node, where)), nullable
    raise SchemaError(f"{where}: unsupported type {kind!r}")


def _fields(node: dict[str, Any], where: str) -> list[pa.Field]:
    props = node.get("properties")
    if not props:
        raise SchemaError(f"{where}: objects need explicit properties")
    if node.get("additionalProperties", True) is not False:
        raise SchemaError(f"{where}: objects must set additionalProperties: false")
    out = []
    for name, sub in props.items():
        typ, nullable = arrow_type(sub, f"{where}.{name}")
        out.append(pa.field(name, typ, nullable=nullable))
    return out


@functools.lru_cache(maxsize=None)
def arrow_schema(config: str) -> pa.Schema:
    """The fixed Arrow schema of a config's Parquet shards."""
    schema = load_json_schema(config)
    return pa.schema(_fields(schema, config), metadata={"json_schema": config})


@dataclass(frozen=True)
class RowError:
    """Why a row failed validation: the JSON path of the first failing field and all errors."""

    path: str
    message: str


@functools.lru_cache(maxsize=None)
def _fast_validator(config: str) -> Callable[[dict], Any]:
    return fastjsonschema.compile(load_json_schema(config))


@functools.lru_cache(maxsize=None)
def _full_validator(config: str) -> jsonschema.protocols.Validator:
    schema = load_json_schema(config)
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def validate_row(config: str, row: dict[str, Any]) -> RowError | None:
    """None when the row is valid, else the failing path and a readable report."""
    try:
        _fast_validator(config)(row)
        return None
    except fastjsonschema.JsonSchemaValueException as fast_err:
        errors = sorted(_full_validator(config).iter_errors(row), key=lambda e: list(e.absolute_path))
        if not errors:  # the two validators disagree: trust the stricter one, keep its words
            return RowError(path=_fast_path(fast_err), message=fast_err.message)
        first = errors[0]
        message = "; ".join(f"{e.json_path}: {e.message}" for e in errors[:10])
        return RowError(path=first.json_path, message=message[:4000])


def _fast_path(err: fastjsonschema.JsonSchemaValueException) -> str:
    name = err.name or "data"
    return "$" + name[len("data"):] if name.startswith("data") else name
