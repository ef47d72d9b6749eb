"""Frames as one video for Qwen-VL models, the models' own token counting, warm prefixes."""
from __future__ import annotations

import base64
import json

from pipeline.records import Frame
from synth.backends import BackendConfig, ChatRequest, make_backend
from synth.backends.openai_backend import build_payload
from synth.backends.visual import family_of, video_input, visual_tokens
from tests.helpers import jpeg
from tests.openai_server import Reply, ScriptedOpenAIServer


def _frames(n: int, size=(588, 336)) -> list[Frame]:
    return [Frame(float(t), jpeg((20 * t, 80, 120), size), size[0], size[1], digest=f"{size[0]}-{t}") for t in range(n)]


def test_family_and_input_mode_from_the_model_name():
    assert family_of("Qwen/Qwen2.5-VL-72B-Instruct") == "qwen2_5_vl"
    assert family_of("m2la-qwen3-vl") == family_of("Qwen/Qwen3-VL-8B") == "qwen3_vl"
    assert family_of("llava-hf/llava-1.5-7b") == "other"
    assert video_input("Qwen/Qwen2.5-VL-7B") and not video_input("llava-1.5")
    assert not video_input("Qwen/Qwen2.5-VL-7B", setting="images") and video_input("llava", setting="video")


def test_video_tokens_are_half_the_images_at_realistic_sizes_by_the_models_counting():
    sizes = [(588, 336)] * 8
    # Qwen2.5-VL: 28 px per token; 588x336 -> 21 x 12 = 252 per frame, two frames per temporal patch
    assert visual_tokens(sizes, "qwen2_5_vl", as_video=False) == 8 * 252
    assert visual_tokens(sizes, "qwen2_5_vl", as_video=True) == 4 * 252
    assert visual_tokens(sizes[:7], "qwen2_5_vl", as_video=True) == 4 * 252  # an odd last frame is repeated
    # Qwen3-VL: transformers' own clip-level smart_resize (its video module imports without torchvision)
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import smart_resize

    h, w = smart_resize(8, 336, 588, temporal_factor=2, factor=32, min_pixels=4096, max_pixels=25165824)
    assert visual_tokens(sizes, "qwen3_vl", as_video=True) == 4 * (h // 32) * (w // 32)
    assert visual_tokens(sizes, "other", as_video=True) == 0


def test_openai_payload_sends_one_video_of_jpeg_frames_with_their_times():
    frames = _frames(3)
    req = ChatRequest(key="k", system=None, prompt="What happens?", frames=frames)
    qwen = BackendConfig(kind="openai", model="Qwen/Qwen2.5-VL-72B-Instruct")
    parts = build_payload(qwen, req)["messages"][-1]["content"]
    assert [p["type"] for p in parts] == ["text", "video_url", "text"]
    assert parts[0]["text"] == "Video frames sampled at 0.0, 1.0, 2.0 s:"
    url = parts[1]["video_url"]["url"]
    assert url.startswith("data:video/jpeg;base64,")
    assert [base64.b64decode(x) for x in url.split(",", 1)[1].split(",")] == [f.image for f in frames]
    other = build_payload(BackendConfig(kind="openai", model="llava-1.5"), req)["messages"][-1]["content"]
    assert [p["type"] for p in other].count("image_url") == 3


def test_a_videos_questions_go_after_one_leader_and_cached_tokens_are_counted():
    """warm_prefix: the first question of each video alone, then the rest (the server's prefix cache is warm)."""
    order: list[str] = []

    class Recording(ScriptedOpenAIServer):
        def _next_action(self, prompt):
            order.append(prompt)
            return Reply("ok")

        def _act(self, h, action, body):  # report a cache hit for every question after the first of a video
            seen = sum(1 for p in order[:-1] if p.split("/")[0] == order[-1].split("/")[0])
            h.send_response(200)
            data = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}],
                               "usage": {"prompt_tokens": 500, "completion_tokens": 1,
                                         "prompt_tokens_details": {"cached_tokens": 480 if seen else 0}}}).encode()
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)

    a, b = _frames(4), _frames(4, (308, 168))
    reqs = [ChatRequest(key=f"{v}{i}", system=None, prompt=f"{v}/q{i}", frames=fr)
            for v, fr in (("a", a), ("b", b)) for i in range(3)]
    with Recording() as server:
        cfg = BackendConfig(kind="openai", model="Qwen/Qwen2.5-VL-7B",
                            openai={"base_url": server.base_url, "api_key_env": None, "concurrency": 8})
        backend = make_backend(cfg)
        results = backend.generate(reqs)
    leaders = {p.split("/")[0]: p for p in reversed(order[:2])}
    assert set(order[:2]) == {"a/q0", "b/q0"} and sorted(order[2:]) == ["a/q1", "a/q2", "b/q1", "b/q2"], (order, leaders)
    assert [r.cached_tokens for r in results] == [0, 480, 480, 0, 480, 480]
    assert results[0].visual_tokens == visual_tokens([(588, 336)] * 4, "qwen2_5_vl", as_video=True) == 2 * 252
