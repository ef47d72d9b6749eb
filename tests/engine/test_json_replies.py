"""Structured output on vLLM itself: each JSON prompt's own schema and budget (synth/replies.py) against
a generic json_object at the old budgets, on the random-weight text model (the worst case: it never
chooses to close a JSON value). Sampled at temperature 1 with a seed per request."""
from __future__ import annotations

import json

import jsonschema

from synth.backends import BackendConfig, ChatRequest, make_backend
from synth.replies import confirmed, judge_reply, moments, qa_items
from tests.engine.conftest import report

SEEDS = range(6)
# prompt kind -> (the reply's spec, the max_tokens the request had before); QA with a ceiling that fits the
# tiny models' 2048-token context (its strings shrink to fit)
KINDS = {"write_qa": (qa_items(2, 60.0, ceiling=1500), 256), "describe_moments": (moments([1, 4, 9]), 192),
         "judge_answer": (judge_reply(), 32), "reconfirm": (confirmed(), 32)}


def _ask(server, kind: str, schema: bool) -> list:
    spec, before = KINDS[kind]
    cfg = BackendConfig(kind="openai", model=server.name,
                        openai={"base_url": server.base_url, "api_key_env": None, "max_retries": 0, "timeout_s": 600})
    reqs = [ChatRequest(key=f"{kind}/{i}", system=None, prompt=f"Reply with JSON only ({kind}, {i}).",
                        json_mode=True, temperature=1.0, seed=i,
                        max_tokens=spec.max_tokens if schema else before,
                        json_schema=spec.response_format()["json_schema"] if schema else None) for i in SEEDS]
    return make_backend(cfg).generate(reqs)


def test_each_prompts_schema_and_budget_give_valid_json(text):
    counts = {}
    for kind, (spec, _) in KINDS.items():
        old = _ask(text, kind, schema=False)
        new = _ask(text, kind, schema=True)
        assert all(r.ok for r in new), (kind, [r.error_message for r in new if not r.ok], text.tail(60))
        for r in new:
            jsonschema.validate(json.loads(r.texts[0]), spec.schema)  # the prompt's own shape, not just JSON
            assert r.completion_tokens <= spec.max_tokens
        counts[kind] = {"json_object_valid": f"{sum(r.ok for r in old)}/{len(old)}",
                        "schema_valid": f"{sum(r.ok for r in new)}/{len(new)}", "max_tokens": spec.max_tokens,
                        "longest_reply_tokens": max(r.completion_tokens for r in new)}
    report("structured output per prompt kind (random-weight text model, temperature 1)", **counts)
