"""The vllm backend's ray.data.llm processor, built and checked without vllm or a GPU.

In Ray 2.60 `ray.data.llm` and its config classes import without vllm, and
`build_processor` only declares the Ray Data stages (vllm is imported inside the stage
actors when they start), so CI builds the real Processor and checks every stage's
settings; only running it needs vllm and GPUs.
"""
from __future__ import annotations

import base64
import sys
from dataclasses import asdict

import pytest

from synth.backends import BackendConfig, ChatRequest, FrameRef, make_backend
from synth.backends.openai_backend import build_payload
from synth.backends.vllm_backend import (build_vllm_processor, build_vllm_processor_config,
                                         request_dict_to_row, request_to_messages, request_to_row,
                                         row_to_result)


def _cfg(model: str = "Qwen/Qwen2.5-VL-7B-Instruct", **vllm) -> BackendConfig:
    settings = dict(engine_kwargs={"tensor_parallel_size": 2, "max_model_len": 65536,
                                   "gpu_memory_utilization": 0.85},
                    max_images_per_prompt=48, concurrency=3, batch_size=8,
                    accelerator_type="H100")
    settings.update(vllm)
    return BackendConfig(kind="vllm", model=model, vllm=settings)


def test_processor_config_matches_backend_config():
    pc = build_vllm_processor_config(_cfg())
    from ray.data.llm import vLLMEngineProcessorConfig

    assert isinstance(pc, vLLMEngineProcessorConfig)
    assert pc.model_source == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert pc.engine_kwargs["tensor_parallel_size"] == 2
    assert pc.engine_kwargs["max_model_len"] == 65536
    assert pc.engine_kwargs["gpu_memory_utilization"] == 0.85
    assert pc.engine_kwargs["limit_mm_per_prompt"] == {"image": 48}
    assert "trust_remote_code" not in pc.engine_kwargs
    assert (pc.concurrency, pc.batch_size, pc.accelerator_type) == (3, 8, "H100")
    assert pc.prepare_multimodal_stage == {"enabled": True}
    assert pc.should_continue_on_error is True
    assert "vllm" not in sys.modules  # built without vllm

    text_only = build_vllm_processor_config(_cfg(has_image=False, trust_remote_code=True,
                                                 concurrency=(1, 4), model_source="/ckpt/m2la"))
    assert text_only.prepare_multimodal_stage == {"enabled": False}
    assert "limit_mm_per_prompt" not in text_only.engine_kwargs
    assert text_only.engine_kwargs["trust_remote_code"] is True
    assert text_only.model_source == "/ckpt/m2la" and text_only.concurrency == (1, 4)


def test_vllm_is_not_a_per_call_backend():
    with pytest.raises(ValueError, match="build_vllm_processor"):
        make_backend(_cfg())
    with pytest.raises(ValueError, match="kind='vllm'"):
        build_vllm_processor_config(BackendConfig(kind="openai"))


def test_rows_share_the_openai_messages():
    req = ChatRequest(key="v7", system="Caption.", prompt="Describe.", json_mode=True,
                      frames=[FrameRef(2.0, b"JPEGDATA")], max_tokens=99, temperature=0.1)
    row = request_to_row(req)
    assert row["messages"] == request_to_messages(req)
    assert row["messages"] == build_payload(BackendConfig(), req)["messages"]  # one builder
    parts = row["messages"][1]["content"]
    assert parts[0] == {"type": "text", "text": "Frame at 2.0 s:"}
    assert base64.b64decode(parts[1]["image_url"]["url"].split(",", 1)[1]) == b"JPEGDATA"
    assert row["sampling_params"] == {"max_tokens": 99, "temperature": 0.1,
                                      "structured_outputs": {"json_object": True}}
    with pytest.raises(ValueError, match="one sequence per row"):
        request_to_row(ChatRequest(key="x", system=None, prompt="p", n=2))

    ok = row_to_result({"key": "v7", "generated_text": "{}", "num_input_tokens": 50,
                        "num_generated_tokens": 3, "__inference_error__": ""})
    assert ok["ok"] and ok["texts"] == ["{}"] and ok["prompt_tokens"] == 50
    failed = row_to_result({"key": "v8", "generated_text": "", "__inference_error__": "OOM"})
    assert not failed["ok"] and failed["error_reason"] == "model_error"
    empty = row_to_result({"key": "v9", "generated_text": " ", "__inference_error__": ""})
    assert empty["error_reason"] == "empty_response"


def test_processor_builds_without_vllm(ray_local, tmp_path):
    """The full Processor (all stages declared) builds on CPU CI with no vllm."""
    from transformers import LlamaConfig

    LlamaConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1,
                num_attention_heads=2).save_pretrained(tmp_path)
    processor = build_vllm_processor(_cfg(model=str(tmp_path)))
    stages = {type(s).__name__: s for s in processor.stages.values()}
    assert list(stages) == ["PrepareMultimodalStage", "ChatTemplateStage", "TokenizeStage",
                            "vLLMEngineStage", "DetokenizeStage"]
    engine = stages["vLLMEngineStage"]
    assert engine.fn_constructor_kwargs["model"] == str(tmp_path)
    assert engine.fn_constructor_kwargs["engine_kwargs"]["tensor_parallel_size"] == 2
    assert engine.fn_constructor_kwargs["batch_size"] == 8
    assert engine.map_batches_kwargs["accelerator_type"] == "H100"
    pool = engine.map_batches_kwargs["compute"]
    assert (pool.min_size, pool.max_size) == (1, 3)
    assert "vllm" not in sys.modules


def test_request_rows_survive_ray_data(ray_local):
    """Requests travel through Arrow as dicts (frames too) and become processor rows."""
    import ray

    from pipeline.records import Frame

    req = ChatRequest(key="a", system=None, prompt="Q", frames=[
        Frame(timestamp_s=4.0, image=b"IMG", width=8, height=8, scene_index=1)])
    [row] = ray.data.from_items([{"request": asdict(req)}]).map(request_dict_to_row).take_all()
    assert row["key"] == "a"
    parts = row["messages"][0]["content"]
    assert parts[0]["text"] == "Frame at 4.0 s:"
    assert base64.b64decode(parts[1]["image_url"]["url"].split(",", 1)[1]) == b"IMG"
