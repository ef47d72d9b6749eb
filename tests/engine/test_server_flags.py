"""The server-flag probe (synth/backends/server_check.py) against vLLM itself: the tiny Qwen3-VL
served with the README's flags and without them. What the probe concludes is compared with what the
server really does with a 35-frame video (its visual-token count and the timestamps it rendered)."""
from __future__ import annotations

import re

import pytest

from synth.backends import BackendConfig, ChatRequest, make_backend
from synth.backends.openai_backend import build_payload
from synth.backends.server_check import NUM_FRAMES_FLAG, check_servers, probe, probe_frames
from synth.backends.types import ErrorReason
from synth.backends.visual import server_visual_tokens, visual_tokens
from tests.engine.conftest import report


def _cfg(server, **openai) -> BackendConfig:
    return BackendConfig(kind="openai", model=server.name,
                         openai={"base_url": server.base_url, "api_key_env": None, "max_retries": 0,
                                 "timeout_s": 600, **openai})


def _statuses(rep) -> dict[str, str]:
    return {c.name: c.status for c in rep.checks}


def _server_tokens(server, cfg, frames) -> tuple[int, int]:
    """(the server's visual tokens, the timestamps it rendered) for the backend's own payload."""
    payload = build_payload(cfg, ChatRequest(key="p", system=None, prompt="Describe.", frames=frames, max_tokens=1))
    reply = server.post("/v1/chat/completions", {**payload, "return_token_ids": True})
    prompt = server.post("/detokenize", {"model": server.name, "tokens": reply["prompt_token_ids"]})["prompt"]
    mm = (reply["usage"].get("prompt_tokens_details") or {}).get("multimodal_tokens") or {}
    return sum(mm.values()), len(re.findall(r"<\d+\.\d seconds>", prompt))


def test_the_readme_flags_pass_every_check(qwen):
    rep = probe(_cfg(qwen))
    print(rep.render())
    st = _statuses(rep)
    assert rep.engine.startswith("vLLM 0.") and not rep.failures, rep.render()
    assert st["--enable-prompt-tokens-details"] == st["--trust-request-mm-kwargs"] == "ok"
    assert st["frames the backend sends"] == "ok" and "--media-io-kwargs" in " ".join(st)
    got, patches = _server_tokens(qwen, _cfg(qwen), probe_frames())
    assert patches == 18  # 35 frames, every one kept
    report("probe, server with the README flags", checks=st, video_35_frames_server_tokens=got,
           patches_rendered=patches)


def test_a_server_without_the_flags_stops_the_backend_naming_each(qwen_bare):
    cfg = _cfg(qwen_bare)
    rep = probe(cfg)
    print(rep.render())
    st = _statuses(rep)
    assert st["--enable-prompt-tokens-details"] == "warn"  # accounting only
    assert st["--trust-request-mm-kwargs"] == "fail"  # every video request would be refused
    # no token details: the frames kept are read from the prompt's growth; vLLM's default keeps 32
    assert st[NUM_FRAMES_FLAG] == "fail" and "prompt tokens of its last 2 frames" in rep.render()
    with pytest.raises(RuntimeError, match="--trust-request-mm-kwargs.*num_frames"):
        check_servers({"teacher": cfg}, echo=print)
    with pytest.raises(RuntimeError, match="--trust-request-mm-kwargs"):
        make_backend(cfg).setup()
    report("probe, server without the flags", checks=st)


def test_a_server_that_keeps_32_frames_fails_the_check_and_the_request(qwen):
    """The README server, but the requests ask for vLLM's default of 32 frames (the --media-io-kwargs flag
    missing, seen by a client that does not send the frames' times): the probe names it; each request
    whose frames were cut fails as frames_dropped."""
    cfg = _cfg(qwen, frame_times=False, extra_body={"media_io_kwargs": {"video": {"num_frames": 32}}})
    rep = probe(cfg)
    print(rep.render())
    st = _statuses(rep)
    assert st["frames the backend sends"] == "fail" and "visual tokens" in rep.error()
    frames = probe_frames()
    got, patches = _server_tokens(qwen, cfg, frames)
    assert patches == 16  # 32 frames kept
    with pytest.raises(RuntimeError, match="frames the backend sends"):
        make_backend(cfg).setup()
    backend = make_backend(cfg.model_copy(update={"openai": cfg.openai.model_copy(update={"check_server": False})}))
    [res] = backend.generate([ChatRequest(key="v", system=None, prompt="Describe.", frames=frames, max_tokens=4)])
    assert not res.ok and res.error_reason == ErrorReason.frames_dropped, res
    report("probe, requests keeping 32 of 35 frames", checks=st, server_tokens=got, patches_rendered=patches,
           outcome=res.error_reason)


def test_one_lost_frame_of_tiny_frames_is_caught(qwen):
    """35 frames of 32 px (one visual token per patch, ~10 wrapper tokens each): the server told to keep 34
    loses one frame, so one patch. The frames' own tokens (the old check) stay below the server's count; the exact count
    does not."""
    frames = probe_frames()
    cfg = _cfg(qwen, check_server=False, frame_times=False, extra_body={"media_io_kwargs": {"video": {"num_frames": 34}}})
    backend = make_backend(cfg)
    got, patches = _server_tokens(qwen, cfg, frames)
    own = visual_tokens([(32, 32)] * 35, "qwen3_vl", True)
    assert patches == 17 and got > own  # the old lower bound would have passed this request
    [res] = backend.generate([ChatRequest(key="v1", system=None, prompt="Describe.", frames=frames, max_tokens=4)])
    assert not res.ok and res.error_reason == ErrorReason.frames_dropped, res
    want = int(re.search(r"that are (\d+)", res.error_message).group(1))
    assert want > got
    # and with every frame kept the same request passes, its count exactly the server's
    ok = make_backend(_cfg(qwen))
    [res] = ok.generate([ChatRequest(key="v2", system=None, prompt="Describe.", frames=frames, max_tokens=4)])
    assert res.ok and res.visual_tokens > want, (res, want)  # every frame, at its real times (longer stamps)
    report("one frame lost of 35 (32 px)", frames_own_tokens=own, server_tokens_34_kept=got,
           exact_expected_35=want, server_tokens_35_kept=res.visual_tokens, outcome="frames_dropped")
