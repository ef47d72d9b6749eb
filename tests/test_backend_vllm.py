"""The vllm backend's ray.data.llm processor, built and checked without vllm or a GPU.

In Ray 2.60 `ray.data.llm` and its config classes import without vllm, and
`build_processor` only declares the Ray Data stages (vllm is imported inside the stage
actors when they start), so CI builds the real Processor and checks every stage's
settings; only running it needs vllm and GPUs.
"""
from __future__ import annotations

import sys
from dataclasses import asdict

import pytest

from tests.helpers import jpeg

from pipeline.records import Frame
from synth.backends import BackendConfig, ChatRequest, make_backend
from synth.backends.visual import visual_tokens
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
    assert pc.engine_kwargs["limit_mm_per_prompt"] == {"image": 48, "video": 1}  # Qwen-VL: frames as a video
    assert "trust_remote_code" not in pc.engine_kwargs
    assert (pc.concurrency, pc.batch_size, pc.accelerator_type) == (3, 8, "H100")
    assert pc.prepare_multimodal_stage == {"enabled": False}  # request_to_row decodes the frames, with their times
    assert pc.should_continue_on_error is True
    assert pc.log_engine_metrics is False and pc.placement_group_config is None
    assert "vllm" not in sys.modules  # built without vllm

    text_only = build_vllm_processor_config(_cfg(has_image=False, trust_remote_code=True,
                                                 concurrency=(1, 4), model_source="/ckpt/m2la"))
    assert text_only.prepare_multimodal_stage == {"enabled": False}
    assert "limit_mm_per_prompt" not in text_only.engine_kwargs
    assert text_only.engine_kwargs["trust_remote_code"] is True
    assert text_only.model_source == "/ckpt/m2la" and text_only.concurrency == (1, 4)
    assert build_vllm_processor_config(_cfg(model="llava-1.5")).engine_kwargs["limit_mm_per_prompt"] == {"image": 48}


def test_cpu_engines_ask_for_cpus_and_no_gpu(ray_local, tmp_path):
    """device: cpu (vLLM's CPU build): a CPU placement group, so Ray Data never asks num_gpus."""
    from transformers import LlamaConfig

    LlamaConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2).save_pretrained(tmp_path)
    cfg = _cfg(model=str(tmp_path), device="cpu", cpus_per_engine=2, accelerator_type=None,
               engine_kwargs={"max_model_len": 2048})
    assert cfg.engine_gpus() == 0 and _cfg().engine_gpus() == 2
    stages = {type(s).__name__: s for s in build_vllm_processor(cfg).stages.values()}
    engine = stages["vLLMEngineStage"].map_batches_kwargs
    assert engine.get("num_gpus", 0) == 0 and engine["num_cpus"] == 2, engine


def test_vllm_is_not_a_per_call_backend():
    with pytest.raises(ValueError, match="build_vllm_processor"):
        make_backend(_cfg())
    with pytest.raises(ValueError, match="kind='vllm'"):
        build_vllm_processor_config(BackendConfig(kind="openai"))


def test_rows_carry_the_frames_decoded_with_the_transformers_messages():
    from synth.backends.messages import request_to_hf_messages

    req = ChatRequest(key="v7", system="Caption.", prompt="Describe.", json_mode=True,
                      frames=[Frame(2.0, jpeg((200, 10, 10)), 64, 48)], max_tokens=99, temperature=0.1)
    row = request_to_row(req)
    assert row["messages"] == request_to_hf_messages(req)  # one builder with the transformers backend
    parts = row["messages"][1]["content"]
    assert parts[:2] == [{"type": "text", "text": "Frame at 2.0 s:"}, {"type": "image"}]
    [image] = row["multimodal_data"]["image"]
    assert image.size == (64, 48) and image.getpixel((5, 5))[0] > 150
    text = request_to_row(ChatRequest(key="t", system=None, prompt="Hi"))
    assert text["messages"] == request_to_messages(ChatRequest(key="t", system=None, prompt="Hi"))
    assert "multimodal_data" not in text
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
    assert list(stages) == ["ChatTemplateStage", "TokenizeStage", "vLLMEngineStage", "DetokenizeStage"]
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

    from functools import partial

    frames = [Frame(timestamp_s=t, image=jpeg((30 * i, 80, 80), (64, 64)), width=64, height=64, scene_index=1)
              for i, t in enumerate((4.0, 12.5, 19.0))]
    req = ChatRequest(key="a", system=None, prompt="Q", frames=frames[:1])
    [row] = ray.data.from_items([{"request": asdict(req)}]).map(request_dict_to_row).take_all()
    assert row["key"] == "a"
    assert row["messages"][0]["content"][0]["text"] == "Frame at 4.0 s:"
    assert len(row["multimodal_data"]["image"]) == 1
    # a Qwen-VL model gets one video: frames and vLLM's video metadata with the real times, as a tuple
    qwen = _cfg(model="Qwen/Qwen3-VL-8B-Instruct")
    video = ChatRequest(key="b", system=None, prompt="Q", frames=frames)
    [row] = ray.data.from_items([{"request": asdict(video)}]).map(partial(request_dict_to_row, cfg=qwen)).take_all()
    [(array, meta)] = row["multimodal_data"]["video"]
    assert array.shape == (3, 64, 64, 3)
    assert meta["fps"] == 1000.0 and list(meta["frames_indices"]) == [4000, 12500, 19000]
    assert [p["type"] for p in row["messages"][0]["content"]] == ["text", "video", "text"]
    assert row["visual_tokens"] == visual_tokens([(64, 64)] * 3, "qwen3_vl", as_video=True)


def test_samples_split_into_seeded_rows_and_merge_back():
    """vLLM rows give one sequence each: k verifier samples travel as k seeded rows."""
    import pickle

    from pipeline.passes import _pass_rows, _result_of
    from synth.backends import ChatResult
    from synth.backends.vllm_backend import merge_samples, split_samples

    frame = Frame(timestamp_s=2.5, image=jpeg((90, 90, 90)), width=64, height=48)
    req = ChatRequest(key="v1/verify/3", system=None, prompt="Which?", frames=[frame], n=3, temperature=0.7)
    parts = split_samples(req)
    assert [(p.key, p.n, p.seed) for p in parts] == [("v1/verify/3#0", 1, 0), ("v1/verify/3#1", 1, 1),
                                                    ("v1/verify/3#2", 1, 2)]
    rows = _pass_rows(parts)  # what the pass feeds the processor: position keys, pickled requests
    vrows = [request_dict_to_row(r) for r in rows]
    assert [r["key"] for r in vrows] == ["0", "1", "2"]
    assert [r["sampling_params"]["seed"] for r in vrows] == [0, 1, 2]
    assert vrows[0]["messages"][-1]["content"][1] == {"type": "image"} and len(vrows[0]["multimodal_data"]["image"]) == 1
    assert pickle.loads(rows[1]["request"]).prompt == "Which?"
    # processor output rows -> results; an engine error row skips our postprocess and keeps its fields
    ok = _result_of(row_to_result({"key": "0", "generated_text": "A", "num_input_tokens": 90,
                                   "num_generated_tokens": 1}))
    err = _result_of({"key": "1", "__inference_error__": "CUDA OOM", "messages": []})
    empty = _result_of(row_to_result({"key": "2", "generated_text": " "}))
    assert (ok.ok, ok.texts, err.ok, err.error_reason, empty.error_reason) == (True, ["A"], False, "model_error",
                                                                                "empty_response")
    merged = merge_samples(req, [ok, err, empty])
    assert merged.key == "v1/verify/3" and merged.ok and merged.texts == ["A"] and merged.prompt_tokens == 90
    failed = merge_samples(req, [err, err, empty])
    assert not failed.ok and failed.key == "v1/verify/3" and "OOM" in failed.error_message
    single = ChatRequest(key="v1/qa", system=None, prompt="Write.")
    assert split_samples(single) == [single]
    assert merge_samples(single, [ChatResult(key="0", texts=["x"], ok=True)]).key == "v1/qa"


def test_vllm_job_uses_passes_and_fails_fast_without_gpus(ray_local, tmp_path):
    """kind=vllm runs as passes; on a Ray with no GPU it stops before fetching anything."""
    from pipeline.config import load_config
    from pipeline.job import run_job
    from pipeline.plan import build_stages, ingest

    base = ["synth.teacher.kind=vllm", "synth.teacher.model=Qwen/Qwen2.5-VL-72B-Instruct",
            "synth.teacher.vllm.engine_kwargs.tensor_parallel_size=4", f"work_dir={tmp_path / 'work'}"]
    cfg = load_config(None, base)
    assert cfg.synth.execution_mode(cfg.verify.verifier) == "passes"
    assert [s.name for s in build_stages(cfg, tmp_path)][-1] == "synthesize"
    with pytest.raises(ValueError, match="kind=vllm backends run only as Ray Data passes"):
        build_stages(load_config(None, base + ["synth.execution=actors"]), tmp_path)
    cfg.input.items = ["dQw4w9WgXcQ"]
    with pytest.raises(RuntimeError, match=r"synthesize.teacher kind=vllm needs 4 GPU\(s\) per engine"):
        run_job(cfg, str(tmp_path / "out"), ingest=ingest, stage_factory=build_stages, progress=False,
                echo=lambda s: None)
    assert not list((tmp_path / "work").rglob("*.mp4"))  # nothing was fetched
