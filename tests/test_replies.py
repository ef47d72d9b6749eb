"""Each JSON prompt's reply schema (synth/replies.py): a real JSON Schema (validated by jsonschema), the
teacher's well-formed replies pass it, and its bound is the length of its longest valid reply."""
from __future__ import annotations

import json

import jsonschema
import pytest

from synth.replies import MAX_STRING, MIN_STRING, confirmed, judge_reply, longest_reply, max_length, moments, qa_items


def _longest(schema: dict):
    """The longest value valid under `schema` (the forms synth/replies.py uses)."""
    if "enum" in schema:
        return max(schema["enum"], key=lambda v: len(json.dumps(v)))
    if "anyOf" in schema:
        return max((_longest(s) for s in schema["anyOf"]), key=lambda v: len(json.dumps(v)))
    kind = schema["type"]
    if kind == "string":
        return "x" * max_length(schema)
    if kind == "number":  # the most digits: the largest integer part below the maximum, 6 fraction digits
        return float(f"{int(schema['maximum']) - 1}.999999") if schema["maximum"] >= 1 else 0.999999
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    if kind == "array":
        return [_longest(schema["items"]) for _ in range(schema["maxItems"])]
    return {k: _longest(v) for k, v in schema["properties"].items()}


SPECS = [qa_items(5, 612.4), qa_items(12, 3600.0), moments([3, 7, 11]), judge_reply(), confirmed()]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_the_bound_is_the_longest_valid_reply(spec):
    jsonschema.Draft202012Validator.check_schema(spec.schema)
    longest = _longest(spec.schema)
    jsonschema.validate(longest, spec.schema)
    assert len(json.dumps(longest, separators=(", ", ": "))) == longest_reply(spec.schema) == spec.max_tokens - 1
    fmt = spec.response_format()
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["schema"] is spec.schema


def test_a_teacher_reply_in_the_prompts_own_form_passes_and_a_wrong_one_does_not():
    spec = qa_items(2, 60.0)
    good = {"items": [
        {"category": "perception", "type": "count", "format": "multiple_choice", "question": "How many cups?",
         "options": ["One", "Two", "Three", "Four"], "answer": "Two", "evidence": [3.5, 9.0]},
        {"category": "spatio_temporal", "type": "temporal_localization", "format": "grounding",
         "query": "A man opens a red door.", "answer": [12.0, 15.5], "evidence": [12.0, 15.5]}]}
    jsonschema.validate(good, spec.schema)
    for bad in ({"items": good["items"] * 2},  # more items than asked
                {"items": [{**good["items"][0], "category": "weather"}]},  # not in the taxonomy
                {"items": [{**good["items"][0], "evidence": [3.5, 61.0]}]},  # outside the video
                {"items": [{**good["items"][0], "question": "x" * 129}]},  # past its bound
                {"items": [{**good["items"][0], "answer": "Two\x00"}]}):  # a control character
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, spec.schema)
    jsonschema.validate({"moments": [{"window": 3, "query": "A dog runs."}, {"window": 7, "query": None}]},
                        moments([3, 7]).schema)


def test_the_qa_budget_is_items_times_the_item_bound_and_a_ceiling_shrinks_the_strings():
    one, five = qa_items(1, 600.0), qa_items(5, 600.0)
    per_item = (five.max_tokens - one.max_tokens) // 4
    assert five.max_tokens - one.max_tokens == 4 * per_item and per_item > 700
    fitted = qa_items(12, 600.0, ceiling=6000)
    assert fitted.max_tokens <= 6000
    question = max_length(fitted.schema["properties"]["items"]["items"]["properties"]["question"])
    assert MIN_STRING < question < MAX_STRING
    assert qa_items(12, 600.0, ceiling=100).max_tokens > 100  # the floor: the caller keeps its ceiling
