"""Passes: the model rounds of a wave of videos, each round one Ray Data pass.

The CPU stages run as a plan (`pipeline.runner.run_plan`) over a wave of videos; then every
round of the model stages (`synth.rounds`) is one Ray Data pass over all requests of the
wave: the kind's ray.data.llm processor for engine kinds (vLLM), an actor pool of backends
otherwise (synth/backends/registry.py). This is how in-cluster vLLM engines are used: one
big batch pass per round.
"""
from __future__ import annotations

import logging
import os
import pickle
import time
from typing import Any, Callable, Iterator, Sequence

from pipeline.frame_keepers import FrameKeepers, fetch_frames
from pipeline.records import VideoTask
from pipeline.runner import run_plan, set_up_in_worker, worker_options
from pipeline.stage import Resources, Stage, apply_stage
from synth.rounds import Memoized

log = logging.getLogger(__name__)


def _pass_rows(requests: Sequence[Any]) -> list[dict]:
    """Pass rows: the position is the key (results come back unordered), the request pickled."""
    from dataclasses import replace

    return [{"request": pickle.dumps(replace(req, key=str(pos)), protocol=pickle.HIGHEST_PROTOCOL)}
            for pos, req in enumerate(requests)]


def _result_of(row: dict) -> Any:
    """A ChatResult from an output row: GenerateUDF's `result`, a processor row, or an error row."""
    from synth.backends.types import ChatResult, ErrorReason

    if "result" in row and row["result"] is not None:
        fields = dict(row["result"])
        fields["texts"] = [str(t) for t in fields.get("texts") or []]
        return ChatResult(**fields)
    error = row.get("__inference_error__") or ""
    if error:  # ray.data.llm error rows skip our postprocess and keep the processor's fields
        return ChatResult.failure(str(row["key"]), ErrorReason.model_error, str(error)[:2000], attempts=1)
    fields = {k: row.get(k) for k in ("key", "ok", "error_reason", "error_message", "prompt_tokens",
                                      "completion_tokens", "visual_tokens", "attempts", "latency_s")}
    return ChatResult(texts=[str(t) for t in row.get("texts") or []], **fields)


def _processor_pass(requests: Sequence[Any], cfg: Any, engine: Any) -> list[Any]:
    """One ray.data.llm processor pass (`engine`: the kind's processor module); n samples become
    n seeded rows, merged back."""
    from functools import partial

    import ray.data

    merge_samples = engine.merge_samples
    parts = [engine.split_samples(req) for req in requests]
    flat = [p for group in parts for p in group]
    # rows: {"request": pickled ChatRequest}; frames are fetched from the frame store on the workers
    processor = engine.build_vllm_processor(cfg, preprocess_row=partial(engine.request_dict_to_row,
                                                                         fetch_frames=fetch_frames, cfg=cfg))
    by_pos = {}
    for row in processor(ray.data.from_items(_pass_rows(flat))).iter_rows():
        result = _result_of(row)
        by_pos[int(result.key)] = result
    out, pos = [], 0
    for req, group in zip(requests, parts):
        got = [by_pos.get(pos + j) for j in range(len(group))]
        pos += len(group)
        out.append(merge_samples(req, [g if g is not None else _missing(req.key) for g in got]))
    return out


def _missing(key: str) -> Any:
    from synth.backends.types import ChatResult, ErrorReason

    return ChatResult.failure(key, ErrorReason.model_error, "no result row came back from the pass")


def _generate_task(batch: dict, backend_config: dict, fetch_frames: Any) -> dict:
    """Ray task body of a pass on a kind that loads no model: the backend (an HTTP client) is set
    up once per worker process and reused by later passes."""
    import json

    from synth.backends.udf import GenerateUDF

    recipe = json.dumps(backend_config, sort_keys=True).encode()
    return set_up_in_worker(recipe, lambda: GenerateUDF(backend_config, fetch_frames=fetch_frames))(batch)


def _backend_pass(requests: Sequence[Any], cfg: Any, res: Resources) -> list[Any]:
    """One pass over `ModelBackend`s (kinds with a per-call backend): an actor pool where the
    backend loads a model, pooled tasks where it is a client of a served model."""
    import ray.data

    from synth.backends.registry import kind_of
    from synth.backends.udf import GenerateUDF

    env = {n: os.environ[n] for n in cfg.env_vars() if n in os.environ}
    kwargs = {"backend_config": cfg.model_dump(mode="json"), "fetch_frames": fetch_frames}
    actors = kind_of(cfg).loads_model or res.gpus > 0
    ds = ray.data.from_items(_pass_rows(requests))
    if actors:
        ds = ds.map_batches(GenerateUDF, fn_constructor_kwargs=kwargs, **worker_options(res, actors=True, env=env))
    else:
        ds = ds.map_batches(_generate_task, fn_kwargs=kwargs, **worker_options(res, actors=False, env=env))
    by_pos = {}
    for row in ds.iter_rows():
        result = _result_of(row)
        by_pos[int(result.key)] = result
    return [replace_key(by_pos.get(pos) or _missing(req.key), req.key) for pos, req in enumerate(requests)]


def replace_key(result: Any, key: str) -> Any:
    from dataclasses import replace

    return replace(result, key=key)


def answer_with_passes(rnd: Any, cfg: Any, replicas: int, echo: Callable[[str], None]) -> list[Any]:
    """Answer one round (`synth.rounds.Round`) with one Ray Data pass on the role's backend."""
    from synth.backends.registry import kind_of

    start = time.perf_counter()
    engine = kind_of(cfg).processor_module()
    if engine is not None:
        results = _processor_pass(rnd.requests, cfg, engine)
    else:
        results = _backend_pass(rnd.requests, cfg, cfg.pass_resources(replicas))
    failed = sum(not r.ok for r in results)
    echo(f"  round {rnd.name} ({rnd.role}, {cfg.kind}): {len(rnd.requests)} requests, {failed} failed, "
         f"{time.perf_counter() - start:.1f} s")
    return results


class PassFailed(RuntimeError):
    """A whole pass failed (engines did not start, the cluster lost them): not one video's fault."""


class _PassStage(Memoized, Stage):
    """A model stage whose rounds run as passes; name and version stay the stage's own.

    A failed pass rejects every video of the wave with `stage_error` (retried by the next
    run) instead of re-running the passes video by video, which would restart the engines
    once per video. Exceptions of the round logic itself still get apply_stage's per-video
    isolation.
    """

    def __init__(self, stage: Any, answer: Callable[[Any], list[Any]]) -> None:
        self.stage, self.answer = stage, answer
        self.name, self.version = stage.name, stage.version

    def _answer(self, rnd: Any) -> list[Any]:
        try:
            return self.answer(rnd)
        except Exception as exc:  # noqa: BLE001 - Ray Data raises many types for a failed pass
            raise PassFailed(f"round {rnd.name} ({rnd.role}) pass failed: {type(exc).__name__}: "
                             f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"[:1000]) from exc

    def process_batch(self, tasks: Sequence[VideoTask]) -> list[VideoTask]:
        from pipeline.records import Reason
        from synth.rounds import run_rounds

        self.stage.memo = self.memo  # one memo for the batch and its per-row retries
        try:
            run_rounds(self.stage, tasks, self._answer)
        except PassFailed as exc:
            log.error("%s: %s; the %d videos of this wave are rejected as stage_error and retried by the next run",
                      self.name, exc, len(tasks))
            return [t.reject(Reason.stage_error, f"{self.name}: {exc}", stage=self.name) for t in tasks]
        finally:
            self.stage.memo = None
        return list(tasks)


def check_pass_resources(stages: Sequence[Stage], *, remote: bool) -> None:
    """Fail before any work when a vLLM role cannot get GPUs on this Ray instance.

    A local Ray never gains GPUs; a cluster may autoscale, so there it is only logged.
    """
    import ray

    from synth.backends.registry import kind_of

    gpus = ray.cluster_resources().get("GPU", 0)
    for stage in stages:
        for role, cfg in stage.roles.items():
            kind = kind_of(cfg)
            if kind.engine_gpus is None:
                continue
            kind.processor_module().build_vllm_processor_config(cfg)  # valid before any video is fetched
            need = kind.engine_gpus(cfg)
            if gpus >= need:
                continue
            msg = (f"{stage.name}.{role} kind={cfg.kind} needs {need} GPU(s) per engine; this Ray instance has "
                   f"{gpus:g}")
            if remote:
                log.warning("%s; the passes will wait for GPU nodes to join", msg)
            else:
                raise RuntimeError(msg + ": run on a GPU cluster (--address / RAY_ADDRESS), set vllm.device: cpu "
                                   "for vLLM's CPU build, or use kind=openai against a served model")


def run_waves(tasks: Sequence[VideoTask], cpu_stages: Sequence[Stage], model_stages: Sequence[Any], *,
              wave_videos: int, replicas: dict[str, int], progress: bool = True,
              echo: Callable[[str], None] = log.info) -> Iterator[VideoTask]:
    """CPU stages over a wave of videos, then each model round as one pass; yield finished tasks.

    Frames never come to the driver: the last CPU stage leaves each video's JPEGs in a
    frame keeper on its own node (`FrameKeepers`), the driver's tasks and requests carry
    only frame metadata and a key, and the pass workers fetch the bytes they need once
    per video per batch. A wave's frames are dropped when its model rounds are done. A
    crash loses at most the current wave's model work: nothing of it was committed, and
    the ledger re-runs it.
    """
    import uuid

    waves = -(-len(tasks) // wave_videos)
    keepers = FrameKeepers(f"curate-frames-{uuid.uuid4().hex[:8]}")
    try:
        for n, start in enumerate(range(0, len(tasks), wave_videos), 1):
            keepers.ensure()
            wave = list(run_plan(tasks[start:start + wave_videos], cpu_stages, progress=progress,
                                 frames_to=keepers.prefix))
            live = sum(not t.rejected for t in wave)
            echo(f"wave {n}/{waves}: {len(wave)} videos segmented, {live} go to the model rounds")
            for stage in model_stages:
                def answer(rnd: Any, stage: Any = stage) -> list[Any]:
                    return answer_with_passes(rnd, stage.roles[rnd.role], replicas.get(rnd.role, 1), echo)

                wave = apply_stage(_PassStage(stage, answer), wave)
            keepers.drop([t.frames_key for t in wave if t.frames_key])
            for task in wave:
                task.frames, task.frames_key = [], None
                yield task
    finally:
        keepers.close()
