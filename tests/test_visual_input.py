"""Frames as one video for Qwen-VL models, the models' own token counting, warm prefixes."""
from __future__ import annotations

import base64
import json

from pipeline.records import Frame
from synth.backends import BackendConfig, ChatRequest, make_backend
from synth.backends.openai_backend import build_payload
from synth.backends.visual import family_of, video_input, visual_tokens
from tests.helpers import jpeg
from tests.openai_server import Reply, ScriptedOpenAIServer, Status


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


def test_a_video_carries_its_frames_real_times_and_keeps_every_frame():
    frames = [Frame(t, jpeg((20, 80, 120)), 64, 48) for t in (12.0, 19.5, 19.5004, 31.25)]
    req = ChatRequest(key="k", system=None, prompt="What happens?", frames=frames)
    body = build_payload(BackendConfig(kind="openai", model="Qwen/Qwen3-VL-8B-Instruct"), req)
    # vLLM's frame-list loader: fps 1000 and millisecond indices (strictly increasing), every frame kept
    assert body["media_io_kwargs"] == {"video": {"num_frames": -1, "fps": 1000.0,
                                                 "frames_indices": [12000, 19500, 19501, 31250],
                                                 "total_num_frames": 31251}}
    off = BackendConfig(kind="openai", model="Qwen/Qwen3-VL-8B-Instruct", openai={"frame_times": False})
    assert "media_io_kwargs" not in build_payload(off, req)
    assert "media_io_kwargs" not in build_payload(BackendConfig(kind="openai", model="llava-1.5"), req)


def _usage_server(details):
    """A server whose every reply reports `details` as prompt_tokens_details (None: no details)."""
    class Server(ScriptedOpenAIServer):
        def _act(self, h, action, body):
            usage = {"prompt_tokens": 900, "completion_tokens": 1}
            if details is not None:
                usage["prompt_tokens_details"] = details
            self._send(h, 200, json.dumps({"choices": [{"index": 0, "message": {"content": "ok"}}], "usage": usage}))
    return Server()


def test_the_servers_own_visual_token_count_is_used_and_a_short_count_fails_the_request(caplog):
    frames = _frames(8)
    ours = visual_tokens([(588, 336)] * 8, "qwen3_vl", as_video=True)
    req = ChatRequest(key="k", system=None, prompt="Q", frames=frames)
    for details, ok in (({"cached_tokens": 0, "multimodal_tokens": {"video": ours + 40}}, True),
                        ({"cached_tokens": 0, "multimodal_tokens": {"video": ours * 3 // 4}}, False)):
        with _usage_server(details) as server:
            cfg = BackendConfig(kind="openai", model="Qwen/Qwen3-VL-8B-Instruct",
                                openai={"base_url": server.base_url, "api_key_env": None, "max_retries": 0})
            [res] = make_backend(cfg).generate([req])
        if ok:
            assert res.ok and res.visual_tokens == ours + 40  # the server's count, timestamps included
        else:
            assert not res.ok and res.error_reason == "frames_dropped"
            assert f"counted {ours * 3 // 4} visual tokens" in res.error_message and "num_frames" in res.error_message


def test_missing_server_flags_are_named(caplog):
    with _usage_server(None) as server:
        cfg = BackendConfig(kind="openai", model="Qwen/Qwen3-VL-8B-Instruct",
                            openai={"base_url": server.base_url, "api_key_env": None, "max_retries": 0})
        backend = make_backend(cfg)
        results = backend.generate([ChatRequest(key=f"k{i}", system=None, prompt="Q", frames=_frames(4))
                                    for i in range(3)])
    assert all(r.ok for r in results) and results[0].visual_tokens == visual_tokens([(588, 336)] * 4, "qwen3_vl",
                                                                                    as_video=True)
    assert backend.server_notes == {"--enable-prompt-tokens-details"}
    assert sum("--enable-prompt-tokens-details" in r.message for r in caplog.records) == 1  # once
    refusal = ('{"error": {"message": "Per-request media_io_kwargs are disabled by default ... Start the server '
               'with --trust-request-mm-kwargs only when clients are trusted."}}')
    with ScriptedOpenAIServer(default=Status(400, body=refusal)) as server:
        cfg = BackendConfig(kind="openai", model="Qwen/Qwen3-VL-8B-Instruct",
                            openai={"base_url": server.base_url, "api_key_env": None})
        [res] = make_backend(cfg).generate([ChatRequest(key="k", system=None, prompt="Q", frames=_frames(4))])
    assert not res.ok and res.error_reason == "bad_request" and res.attempts == 1
    assert "openai.frame_times: false" in res.error_message
