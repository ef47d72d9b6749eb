"""The JSON each JSON prompt asks for, as a JSON Schema, and the longest reply that schema allows.

A generic `json_object` (or a schema of any object) leaves a reply free to run past `max_tokens`:
a constrained decoder keeps every token legal but cannot close what it was cut off in, and such
replies are not JSON (issue #24: 4 of 6 valid). Each prompt kind here has its own schema, built
from what the prompt asks and from the vocabulary `synth.items` checks (taxonomy, formats, spans
inside the video): every string a length bound (in a pattern of printable ASCII: the prompts are English, and one character is
then at most one token), every number a range (xgrammar, vLLM's default
backend, then bounds its digits: at most 6 after the point), arrays a maxItems. `longest_reply`
walks a schema to the most characters a reply to it can have; with whitespace disabled on the
server (`--structured-outputs-config '{"backend": "xgrammar", "disable_any_whitespace": true}'`, README) and at least one
character per token, that plus one (end of sequence) is a `max_tokens` no reply can exceed.

QA writing asks for `count` items: its budget is count x the per-item bound; a config ceiling
(`qa.max_tokens`) shrinks the strings' bounds to fit rather than let the reply be cut.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from synth.taxonomy import CATEGORIES, FORMATS

SEPARATOR_CHARS = 2  # ", " and ": ": xgrammar 0.2.8 keeps the space after a separator even with whitespace off
FRACTION_DIGITS = 6  # xgrammar's bound on a ranged number's fraction digits
# the longest strings an item's fields may have, before fitting a ceiling: at most MAX_STRING, the longest
# bounded repeat xgrammar 0.2.8 compiles (measured: {0,129} and longer fail its grammar compiler, and vLLM
# answers 500)
MAX_STRING = 128
QA_STRINGS = {"question": MAX_STRING, "query": MAX_STRING, "answer": MAX_STRING, "option": 96}
MIN_STRING = 24
_LENGTH = re.compile(r"\{0,(\d+)\}\$$")


@dataclass(frozen=True)
class ReplySpec:
    """What a JSON request sends: the schema (OpenAI `response_format` json_schema) and its budget."""

    name: str
    schema: dict[str, Any]

    @property
    def max_tokens(self) -> int:
        return longest_reply(self.schema) + 1  # + end of sequence

    def response_format(self) -> dict[str, Any]:
        return {"type": "json_schema", "json_schema": {"name": self.name, "schema": self.schema}}


def _number_chars(lo: float, hi: float) -> int:
    return max(len(str(int(abs(lo)))), len(str(int(abs(hi))))) + (1 if lo < 0 else 0) + 1 + FRACTION_DIGITS


def longest_reply(schema: dict[str, Any]) -> int:
    """The most characters a compact JSON text valid under `schema` can have (the schema forms used here)."""
    if "enum" in schema:
        return max(len(json.dumps(v)) for v in schema["enum"])
    if "anyOf" in schema:
        return max(longest_reply(s) for s in schema["anyOf"])
    kind = schema.get("type")
    if kind == "string":
        return 2 + max_length(schema)  # the pattern allows no escapes: one character each
    if kind == "number":
        return _number_chars(schema["minimum"], schema["maximum"])
    if kind == "integer":
        return len(str(int(schema["maximum"]))) + (1 if schema["minimum"] < 0 else 0)
    if kind == "boolean":
        return 5
    if kind == "null":
        return 4
    if kind == "array":
        n = int(schema["maxItems"])
        return 2 + n * longest_reply(schema["items"]) + max(0, n - 1) * SEPARATOR_CHARS
    if kind == "object":
        props = schema["properties"]
        return 2 + sum(len(json.dumps(k)) + SEPARATOR_CHARS + longest_reply(v) for k, v in props.items()) + \
            max(0, len(props) - 1) * SEPARATOR_CHARS
    raise ValueError(f"no bound for schema {schema}")


def _string(n: int) -> dict[str, Any]:
    if n > MAX_STRING:
        raise ValueError(f"a string bound of {n} > {MAX_STRING}: xgrammar cannot compile it")
    # printable ASCII without quote and backslash, at most n: one byte a character, so at most one token each
    # (a byte-level tokenizer may spend up to 4 on one non-ASCII character), no control characters (JSON
    # forbids them raw, xgrammar's plain string rule lets them through: measured on vLLM, a complete reply
    # with a raw \x00 in a string was not JSON) and no escapes. The length is in the pattern: vLLM refuses a
    # pattern with maxLength for xgrammar (xgrammar issue 966).
    return {"type": "string", "pattern": f"^[\\x20\\x21\\x23-\\x5b\\x5d-\\x7e]{{0,{n}}}$"}


def max_length(schema: dict[str, Any]) -> int:
    """The most characters a string of `_string(n)` has: n."""
    found = _LENGTH.search(schema["pattern"])
    if not found:
        raise ValueError(f"no length bound in {schema['pattern']!r}")
    return int(found.group(1))


def _span(duration_s: float) -> dict[str, Any]:
    end = max(1.0, math.ceil(duration_s))
    return {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": end}, "minItems": 2, "maxItems": 2}


def _qa_item(duration_s: float, strings: dict[str, int]) -> dict[str, Any]:
    types = sorted({t for ts in CATEGORIES.values() for t in ts})
    return {"type": "object", "additionalProperties": False,
            "properties": {
                "category": {"enum": list(CATEGORIES)},
                "type": {"enum": types},
                "format": {"enum": [f for f in FORMATS if f != "description"]},
                "question": _string(strings["question"]),
                "query": _string(strings["query"]),
                "options": {"type": "array", "items": _string(strings["option"]), "minItems": 0, "maxItems": 4},
                # grounding: the time span; otherwise the text (the correct option's text for multiple choice)
                "answer": {"anyOf": [_string(strings["answer"]), _span(duration_s)]},
                "evidence": _span(duration_s)},
            "required": ["category", "type", "format", "answer", "evidence"]}


def qa_items(count: int, duration_s: float, ceiling: int | None = None) -> ReplySpec:
    """write_qa: {"items": [count items]}; with a ceiling, the strings' bounds shrink (never below
    MIN_STRING) until count items fit in it (a ceiling too small even then stays the request's budget,
    and a reply cut at it fails saying so)."""
    def spec(strings: dict[str, int]) -> ReplySpec:
        item = _qa_item(duration_s, strings)
        return ReplySpec("qa_items", {"type": "object", "additionalProperties": False, "required": ["items"],
                                      "properties": {"items": {"type": "array", "items": item, "minItems": 1,
                                                               "maxItems": max(1, count)}}})
    out = spec(QA_STRINGS)
    if ceiling is not None and out.max_tokens > ceiling:
        fixed = spec({k: 0 for k in QA_STRINGS}).max_tokens
        scale = max(0.0, (ceiling - fixed) / (out.max_tokens - fixed))
        out = spec({k: max(MIN_STRING, int(v * scale)) for k, v in QA_STRINGS.items()})
    return out


def moments(targets: list[int], query_chars: int = MAX_STRING) -> ReplySpec:
    """describe_moments: one entry per target window, its query or null."""
    entry = {"type": "object", "additionalProperties": False, "required": ["window", "query"],
             "properties": {"window": {"enum": sorted(targets)},
                            "query": {"anyOf": [_string(query_chars), {"type": "null"}]}}}
    return ReplySpec("moments", {"type": "object", "additionalProperties": False, "required": ["moments"],
                                 "properties": {"moments": {"type": "array", "items": entry, "minItems": 1,
                                                            "maxItems": max(1, len(targets))}}})


def judge_reply() -> ReplySpec:
    """judge_answer: {"score": 0..1}."""
    return ReplySpec("score", {"type": "object", "additionalProperties": False, "required": ["score"],
                               "properties": {"score": {"type": "number", "minimum": 0, "maximum": 1}}})


def confirmed() -> ReplySpec:
    """reconfirm: {"confirmed": true | false}."""
    return ReplySpec("confirmed", {"type": "object", "additionalProperties": False, "required": ["confirmed"],
                                   "properties": {"confirmed": {"type": "boolean"}}})
