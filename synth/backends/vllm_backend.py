"""In-cluster vLLM engines through ray.data.llm (Ray 2.60), GPU nodes only.

vLLM does not fit the per-call `ModelBackend` shape: ray.data.llm builds a chain of
Ray Data stages (multimodal prep, chat template, tokenize, engine, detokenize) over a
Dataset. This module maps a `BackendConfig` onto `vLLMEngineProcessorConfig`, turns a
`ChatRequest` into the row the processor expects (the same OpenAI-style messages the
openai backend sends) and a processor output row back into a `ChatResult`-shaped dict.
ray.data.llm's config classes import without vllm; only running the stages needs it.
"""
from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any, Callable

from synth.backends.config import BackendConfig
from synth.backends.messages import request_to_messages
from synth.backends.types import ChatRequest, ChatResult, ErrorReason

__all__ = ["build_vllm_processor", "build_vllm_processor_config", "merge_samples", "request_dict_to_row",
           "request_to_messages", "request_to_row", "row_to_result", "split_samples"]

Row = dict[str, Any]


def engine_kwargs(cfg: BackendConfig) -> dict[str, Any]:
    """vLLM engine args: the configured ones plus image limits and trust_remote_code."""
    v = cfg.vllm
    kw = dict(v.engine_kwargs)
    if v.has_image:
        kw.setdefault("limit_mm_per_prompt", {"image": v.max_images_per_prompt})
    if v.trust_remote_code:
        kw["trust_remote_code"] = True
    return kw


def build_vllm_processor_config(cfg: BackendConfig) -> Any:
    """A `ray.data.llm.vLLMEngineProcessorConfig` for `cfg` (needs no vllm to build)."""
    from ray.data.llm import vLLMEngineProcessorConfig

    if cfg.kind != "vllm":
        raise ValueError(f"build_vllm_processor_config needs kind='vllm', got {cfg.kind!r}")
    v = cfg.vllm
    return vLLMEngineProcessorConfig(
        model_source=v.model_source or cfg.model,
        engine_kwargs=engine_kwargs(cfg),
        concurrency=v.concurrency,
        batch_size=v.batch_size,
        accelerator_type=v.accelerator_type,
        # Ray 2.60 has no `has_image` flag: images are parsed by the multimodal stage.
        prepare_multimodal_stage={"enabled": v.has_image},
        chat_template_stage=True,
        tokenize_stage=True,
        detokenize_stage=True,
        should_continue_on_error=v.continue_on_error,
    )


def request_to_row(req: ChatRequest) -> Row:
    """The processor input row: OpenAI-style messages plus per-row sampling params.

    vLLM returns one sequence per row (`generated_text`), so n > 1 is rejected here:
    emit n rows with different seeds instead.
    """
    if req.n != 1:
        raise ValueError("the vllm processor returns one sequence per row; use n=1 rows")
    sampling: dict[str, Any] = {"max_tokens": req.max_tokens, "temperature": req.temperature}
    if req.seed is not None:
        sampling["seed"] = req.seed
    if req.json_mode:
        sampling["structured_outputs"] = {"json_object": True}  # vLLM StructuredOutputsParams
    return {"key": req.key, "messages": request_to_messages(req), "sampling_params": sampling}


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


def request_dict_to_row(row: Row, fetch_frames: Callable[[str], list[bytes]] | None = None) -> Row:
    """Default preprocess: a row with a `request` column (a `ChatRequest`, its dict or pickle).

    Frames waiting in a frame store are fetched here, on the worker (`fetch_frames`); if
    they are gone the row raises, and the processor's error row fails that request only.
    """
    from synth.backends.frames import with_images
    from synth.backends.udf import as_request

    (ready,) = with_images([as_request(row["request"])], fetch_frames)
    if not isinstance(ready, ChatRequest):
        raise RuntimeError(f"{ErrorReason.frames_unavailable}: {ready.error_message}")
    return request_to_row(ready)


def build_vllm_processor(
    cfg: BackendConfig,
    preprocess_row: Callable[[Row], Row] | None = None,
    postprocess_row: Callable[[Row], Row] | None = None,
) -> Any:
    """A ray.data.llm Processor (Dataset -> Dataset) for `cfg`.

    Default pre/postprocess: rows carry a `request` (a `ChatRequest` as dict) and come out
    as `ChatResult` dicts. Running it needs vllm (`pip install "ray[llm]"`) and GPUs.
    """
    from ray.data.llm import build_processor

    return build_processor(
        build_vllm_processor_config(cfg),
        preprocess=preprocess_row or request_dict_to_row,
        postprocess=postprocess_row or row_to_result,
    )
