"""The server-flag probe against servers that are not vLLM: recognised and skipped, saying why, with
no chat request spent; the exact server count of a Qwen3-VL video's visual tokens. Its checks
against vLLM itself run in tests/engine/test_server_flags.py."""
from __future__ import annotations

import socket

import pytest
from typer.testing import CliRunner

from synth.backends import BackendConfig, ChatRequest, make_backend
from synth.backends.server_check import check_servers, probe
from synth.backends.visual import patch_times, patch_wrappers, server_visual_tokens, visual_tokens
from tests.openai_server import ScriptedOpenAIServer


def _cfg(url: str, **kw) -> BackendConfig:
    return BackendConfig(kind="openai", model="Qwen/Qwen3-VL-8B-Instruct",
                         openai={"base_url": url, "api_key_env": None, "max_retries": 0, **kw})


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_server_that_is_not_vllm_is_skipped_saying_why_and_answers_as_before():
    with ScriptedOpenAIServer() as server:
        report = probe(_cfg(server.base_url))
        assert report.engine is None and not report.failures
        [check] = report.checks
        assert check.status == "skip" and "not a vLLM server" in check.detail and "/version" in check.detail
        assert server.received == []  # nothing was asked of the model
        backend = make_backend(_cfg(server.base_url))
        [res] = backend.generate([ChatRequest(key="k", system=None, prompt="hi")])
        assert res.ok and backend.engine is None and len(server.received) == 1
        assert check_servers({"teacher": _cfg(server.base_url), "verifier": None}, echo=lambda s: None)


def test_an_unreachable_server_is_a_warning_not_a_stop():
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    report = probe(_cfg(url))
    assert [c.status for c in report.checks] == ["warn"] and "not reachable" in report.checks[0].detail
    lines: list[str] = []
    check_servers({"teacher": _cfg(url)}, echo=lines.append)
    assert "not reachable" in lines[0]
    assert check_servers({"teacher": _cfg(url, check_server=False)}, echo=lines.append) == []


def test_doctor_checks_a_server_given_by_url(tmp_path):
    from pipeline.cli import app

    with ScriptedOpenAIServer() as server:
        url = server.base_url
        result = CliRunner().invoke(app, ["doctor", "--set", f"work_dir={tmp_path}", "--server", url, "--model", "m"])
    assert f"model server (--server): m at {url}" in result.output, result.output
    assert "[skip] server flags" in result.output and "model servers: OK" in result.output


def test_the_exact_count_adds_each_patchs_rendered_time_and_its_two_wrapper_tokens():
    sizes = [(32, 32)] * 35
    times = [1.5 * i for i in range(35)]
    assert patch_times(times)[:2] == [0.75, 3.75] and patch_times(times)[-1] == 51.0  # odd last frame repeated
    wrappers = patch_wrappers(times, "qwen3_vl")
    assert len(wrappers) == 18 and wrappers[0] == "<0.8 seconds>"
    chars = server_visual_tokens(sizes, "qwen3_vl", True, times, len)  # a tokenizer of one token per character
    assert visual_tokens(sizes, "qwen3_vl", True) == 18  # one token per 32 px patch
    assert chars == 18 + sum(len(w) + 2 for w in wrappers)
    # one frame fewer (34): the last patch is gone, and so are its wrappers: caught, however small the frames
    assert server_visual_tokens(sizes[:34], "qwen3_vl", True, times[:34], len) < chars
    # Qwen2.5-VL's placeholder is the frames' tokens alone
    assert server_visual_tokens(sizes, "qwen2_5_vl", True, times, len) == visual_tokens(sizes, "qwen2_5_vl", True)


@pytest.mark.parametrize("reported,ok", [(None, True), (100, True), (99, False)])
def test_a_reply_below_the_exact_count_fails_as_frames_dropped(reported, ok):
    import json

    from synth.backends.openai_backend import _parse_ok_body

    usage = {"prompt_tokens": 5, "completion_tokens": 1}
    if reported is not None:
        usage["prompt_tokens_details"] = {"multimodal_tokens": {"video": reported}}
    body = json.dumps({"choices": [{"message": {"content": "x"}}], "usage": usage})
    got = _parse_ok_body("k", body, 1, visual=40, expected=100)
    assert (got.result is not None) == ok
    if not ok:
        assert got.reason == "frames_dropped" and "99" in got.message and "100" in got.message
