"""End-to-end tests of the OpenAI-compatible backend against a scripted local server."""
from __future__ import annotations

import asyncio
import base64
import json
import threading
from dataclasses import asdict

import pytest
from pydantic import ValidationError

from pipeline.records import Frame
from synth.backends import BackendConfig, ChatRequest, make_backend
from synth.backends.openai_backend import OpenAIBackend, parse_retry_after
from synth.backends.parsing import parse_json_reply
from tests.openai_server import Hang, Raw, Reply, ScriptedOpenAIServer, Status

KEY_ENV = "TEST_TEACHER_KEY"
JPEG = b"\xff\xd8\xff\xe0fake-jpeg-bytes"


def _cfg(base_url: str, **openai) -> BackendConfig:
    settings = dict(base_url=base_url, api_key_env=KEY_ENV, concurrency=4, timeout_s=0.4,
                    max_retries=2, backoff_base_s=0.01, backoff_max_s=0.05)
    settings.update(openai)
    return BackendConfig(kind="openai", model="teacher-vlm", openai=settings)


@pytest.fixture
def server():
    srv = ScriptedOpenAIServer().start()
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-from-env-123")


def _run(srv: ScriptedOpenAIServer | str, requests: list[ChatRequest], **openai):
    url = srv if isinstance(srv, str) else srv.base_url
    backend = make_backend(_cfg(url, **openai))
    assert isinstance(backend, OpenAIBackend)
    backend.setup()
    try:
        return backend.generate(requests)
    finally:
        backend.close()


def test_every_failure_mode_ends_with_the_right_outcome(server):
    """One run with every scripted behaviour: it completes and each item gets its verdict."""
    good = json.dumps({"question": "What happens at 12 s?", "answer": "A cat jumps."})
    server.script = {
        "ok": [Reply(good, prompt_tokens=120, completion_tokens=30)],
        "fenced": [Reply(f"```json\n{good}\n```")],
        "bad-json": [Reply("Sure! Here is the question: what happens {oops")],
        "429-then-ok": [Status(429, retry_after="0"), Reply(good)],
        "429-always": [Status(429, retry_after="0.01")],
        "500-then-ok": [Status(500), Status(503), Reply(good)],
        "500-always": [Status(500)],
        "hang-then-ok": [Hang(1.0), Reply(good)],
        "hang-always": [Hang(1.0)],
        "garbled-then-ok": [Raw("{not json"), Reply(good)],
        "garbled-always": [Raw('{"no_choices": true}')],
        "unauthorized": [Status(401)],
        "bad-request": [Status(400, body='{"error": "context too long"}')],
        "empty": [Reply("")],
        "empty-then-ok": [Reply(""), Reply(good)],
        "bad-json-then-ok": [Reply("Sure! what happens {oops"), Reply(good)],
    }
    prompts = list(server.script)
    results = _run(server, [ChatRequest(key=f"k-{p}", system="Write QA.", prompt=p,
                                        json_mode=True) for p in prompts])
    assert [r.key for r in results] == [f"k-{p}" for p in prompts]  # same order
    by = {r.key[2:]: r for r in results}

    # Transient failures that later succeed are kept.
    for p in ("ok", "429-then-ok", "500-then-ok", "hang-then-ok", "garbled-then-ok", "empty-then-ok",
              "bad-json-then-ok"):
        assert by[p].ok, (p, by[p])
        assert parse_json_reply(by[p].texts[0])[0]["answer"] == "A cat jumps."
    assert by["ok"].attempts == 1
    assert by["429-then-ok"].attempts == 2
    assert by["500-then-ok"].attempts == 3
    assert by["hang-then-ok"].attempts == 2
    assert (by["ok"].prompt_tokens, by["ok"].completion_tokens) == (120, 30)

    # Persistent transient failures: retried max_retries times, then the right reason.
    # A 200 with no text, or with no JSON where JSON was asked, is retried like a 5xx: it is
    # not a final answer (a caption or QA reply would go missing on an accepted video).
    expected = {"429-always": "rate_limited", "500-always": "server_error",
                "hang-always": "timeout", "garbled-always": "malformed_response",
                "empty": "empty_response", "bad-json": "malformed_response"}
    for p, reason in expected.items():
        assert not by[p].ok and by[p].error_reason == reason, (p, by[p])
        assert by[p].attempts == 3 and len(server.requests_for(p)) == 3
        assert by[p].texts == [] and by[p].error_message

    # Final failures: no retry.
    for p, reason in {"unauthorized": "auth", "bad-request": "bad_request"}.items():
        assert not by[p].ok and by[p].error_reason == reason, (p, by[p])
        assert by[p].attempts == 1 and len(server.requests_for(p)) == 1
    assert "context too long" in by["bad-request"].error_message

    assert "not JSON" in by["bad-json"].error_message
    assert parse_json_reply(by["fenced"].texts[0])[1] is None  # JSON in a fence is JSON

    # Every item ends kept or rejected with a reason: nothing dropped.
    verdicts = {}
    for r in results:
        if not r.ok:
            verdicts[r.key] = r.error_reason
        else:
            verdicts[r.key] = parse_json_reply(r.texts[0])[1] or "kept"
    assert len(verdicts) == len(prompts)
    assert sorted(k for k, v in verdicts.items() if v == "kept") == sorted(
        f"k-{p}" for p in ("ok", "fenced", "429-then-ok", "500-then-ok", "hang-then-ok",
                           "garbled-then-ok", "empty-then-ok", "bad-json-then-ok"))
    # json_mode asked for a JSON object response.
    assert all(r.body["response_format"] == {"type": "json_object"} for r in server.received)


def test_frames_timestamps_key_and_payload_reach_the_server(server):
    frames = [Frame(12.0, JPEG), Frame(47.5, b"\x89PNG-bytes", mime="image/png")]
    [res] = _run(server, [ChatRequest(key="v1", system="sys", prompt="Describe.",
                                      frames=frames, max_tokens=64, temperature=0.0)])
    assert res.ok and res.texts == ["ok"]
    [got] = server.received
    assert got.headers["Authorization"] == "Bearer sk-from-env-123"
    body = got.body
    assert body["model"] == "teacher-vlm" and body["max_tokens"] == 64
    assert body["temperature"] == 0.0 and "response_format" not in body
    assert body["messages"][0] == {"role": "system", "content": "sys"}
    parts = body["messages"][1]["content"]
    assert [p["type"] for p in parts] == ["text", "image_url", "text", "image_url", "text"]
    assert parts[0]["text"] == "Frame at 12.0 s:" and parts[2]["text"] == "Frame at 47.5 s:"
    url0, url1 = parts[1]["image_url"]["url"], parts[3]["image_url"]["url"]
    assert url0.startswith("data:image/jpeg;base64,")
    assert base64.b64decode(url0.split(",", 1)[1]) == JPEG
    assert url1.startswith("data:image/png;base64,")
    assert parts[4] == {"type": "text", "text": "Describe."}


def test_pipeline_frame_objects_are_accepted(server):
    from pipeline.records import Frame

    frame = Frame(timestamp_s=3.5, image=JPEG, width=64, height=48, scene_index=0)
    [res] = _run(server, [ChatRequest(key="p", system=None, prompt="Q", frames=[frame])])
    assert res.ok
    parts = server.received[0].body["messages"][0]["content"]
    assert parts[0]["text"] == "Frame at 3.5 s:"


def test_concurrency_is_bounded(server):
    server.default = Reply("ok", delay_s=0.15)
    reqs = [ChatRequest(key=str(i), system=None, prompt=f"q{i}") for i in range(12)]
    results = _run(server, reqs, concurrency=3, timeout_s=5)
    assert all(r.ok for r in results) and len(server.received) == 12
    assert server.max_in_flight == 3


def test_n_choices_and_usage(server):
    server.script = {"multi": [Reply(["a", "b", "c"], prompt_tokens=5, completion_tokens=2)]}
    [res] = _run(server, [ChatRequest(key="m", system=None, prompt="multi", n=3)])
    assert res.texts == ["a", "b", "c"] and res.prompt_tokens == 5
    assert res.completion_tokens == 6 and server.received[0].body["n"] == 3


def test_connection_refused_is_network():
    srv = ScriptedOpenAIServer().start()
    url = srv.base_url
    srv.stop()  # nothing listens there any more
    [res] = _run(url, [ChatRequest(key="x", system=None, prompt="q")])
    assert not res.ok and res.error_reason == "network" and res.attempts == 3


def test_generate_works_inside_a_running_loop_and_threads(server):
    backend = make_backend(_cfg(server.base_url))
    backend.setup()

    async def from_async():
        return backend.generate([ChatRequest(key="a", system=None, prompt="q")])

    assert asyncio.run(from_async())[0].ok
    out = []
    t = threading.Thread(target=lambda: out.extend(
        backend.generate([ChatRequest(key="t", system=None, prompt="q")])))
    t.start()
    t.join(10)
    assert out and out[0].ok


def test_api_key_comes_only_from_the_environment(server, monkeypatch):
    with pytest.raises(ValidationError, match="api_key_env"):
        BackendConfig(kind="openai", openai={"api_key": "sk-in-config"})
    with pytest.raises(ValidationError, match="api_key_env"):
        BackendConfig(kind="openai", api_key="sk-in-config")
    with pytest.raises(ValidationError, match="api_key_env"):
        BackendConfig(kind="openai", openai={"extra_headers": {"Authorization": "Bearer x"}})
    monkeypatch.delenv(KEY_ENV)
    backend = make_backend(_cfg(server.base_url))
    with pytest.raises(RuntimeError, match=KEY_ENV):
        backend.setup()
    # A local server without auth: no Authorization header at all.
    [res] = _run(server, [ChatRequest(key="n", system=None, prompt="q")], api_key_env=None)
    assert res.ok and "Authorization" not in server.received[-1].headers


def test_backoff_and_retry_after():
    backend = OpenAIBackend(_cfg("http://127.0.0.1:9/v1", backoff_base_s=1.0,
                                 backoff_max_s=5.0))
    delays = [backend.backoff_s(k) for k in (1, 2, 3, 4, 5)]
    assert 0.5 <= delays[0] <= 1.0 and 1.0 <= delays[1] <= 2.0 and 2.0 <= delays[2] <= 4.0
    assert all(d <= 5.0 for d in delays)
    assert backend.backoff_s(1, retry_after_s=3.0) == 3.0
    assert backend.backoff_s(1, retry_after_s=300.0) == 5.0  # capped
    assert parse_retry_after("2") == 2.0 and parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past


def test_generate_udf_inside_ray_actors(server, ray_local):
    """The batch UDF in a Ray actor pool: the key comes from the actor's environment."""
    import ray

    from synth.backends.udf import GenerateUDF

    server.script = {"q1": [Status(500), Reply("A1")], "q2": [Status(401)]}
    cfg = _cfg(server.base_url).model_dump()
    reqs = [asdict(ChatRequest(key=k, system=None, prompt=k)) for k in ("q1", "q2", "q3")]
    ds = ray.data.from_items([{"id": i, "request": r} for i, r in enumerate(reqs)])
    rows = ds.map_batches(GenerateUDF, fn_constructor_kwargs={"backend_config": cfg},
                          batch_size=3, compute=ray.data.ActorPoolStrategy(size=1),
                          runtime_env={"env_vars": {KEY_ENV: "sk-actor"}}).take_all()
    res = {r["result"]["key"]: r["result"] for r in rows}
    assert sorted(r["id"] for r in rows) == [0, 1, 2]  # nothing dropped
    assert res["q1"]["ok"] and res["q1"]["texts"] == ["A1"] and res["q1"]["attempts"] == 2
    assert res["q2"]["error_reason"] == "auth" and res["q3"]["ok"]
    assert {r.headers["Authorization"] for r in server.received} == {"Bearer sk-actor"}
