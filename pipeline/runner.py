"""The one place that knows Ray: stages -> Ray Data plans.

Two executions:
- `run_plan` (actors): each stage becomes a `map_batches` over an actor pool sized by its
  declared resources; model stages hold their own backends. Tasks travel between stages
  as pickled `VideoTask`s in a binary column (frames are encoded image bytes inside them),
  so Arrow never has to infer nested schemas. Results stream back to the driver, which
  commits them in chunks as they arrive.
- `run_waves` (passes): the CPU stages run as above over a wave of videos; then every
  round of the model stages (`synth.rounds`) is one Ray Data pass over all requests of
  the wave: a ray.data.llm vLLM processor for kind=vllm, an actor pool of backends
  otherwise. This is how in-cluster vLLM engines are used: one big batch pass per round.
"""
from __future__ import annotations

import logging
import os
import pickle
import time
from typing import Any, Callable, Iterator, Sequence

from pipeline.records import VideoTask
from pipeline.stage import Resources, Stage, apply_stage

log = logging.getLogger(__name__)

VIDEOS_PER_BLOCK = 32
MAX_BLOCKS = 20_000


class _StageActor:
    """Ray actor body: holds one stage replica (its models, clients) for many batches."""

    def __init__(self, stage: Stage, last: bool = False) -> None:
        self.stage = stage
        self.last = last
        self.stage.setup()

    def __call__(self, batch: dict) -> dict:
        tasks = [pickle.loads(b) for b in batch["payload"]]
        done = apply_stage(self.stage, tasks)
        if self.last:  # frames are for the models only: they never travel to the driver
            for task in done:
                task.frames = []
        return {"video_id": [t.video_id for t in done],
                "payload": [pickle.dumps(t, protocol=pickle.HIGHEST_PROTOCOL) for t in done]}


def init_ray(address: str | None, num_cpus: int | None = None, object_store_mb: int | None = None,
             log_to_driver: bool = False) -> str:
    """Join a cluster (address or RAY_ADDRESS) or start a local Ray sized to this machine."""
    import ray

    if ray.is_initialized():
        return "already initialised"
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=log_to_driver)
        return f"cluster at {address}"
    # a private local instance: token auth protects shared clusters, not this one
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    kwargs = {}
    if object_store_mb:
        kwargs["object_store_memory"] = object_store_mb * 1024 * 1024
    ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=False,
             log_to_driver=log_to_driver, configure_logging=False, **kwargs)
    return f"local Ray with {num_cpus or os.cpu_count()} CPUs"


def run_plan(tasks: Sequence[VideoTask], stages: Sequence[Stage], *,
             progress: bool = True, keep_frames: bool = False) -> Iterator[VideoTask]:
    """Stream `tasks` through `stages` on the current Ray instance; yield finished tasks."""
    import ray
    import ray.data

    if not tasks:
        return
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = progress
    ctx.execution_options.preserve_order = False
    rows = [{"video_id": t.video_id, "payload": pickle.dumps(t, protocol=pickle.HIGHEST_PROTOCOL)}
            for t in tasks]
    cpus = int(ray.cluster_resources().get("CPU", 1))
    # small input blocks: an actor task hands back its outputs when its block is done, so
    # blocks of a few dozen videos keep results (and crash-safe commits) streaming
    blocks = min(len(rows), max(cpus * 4, -(-len(rows) // VIDEOS_PER_BLOCK)), MAX_BLOCKS)
    ds = ray.data.from_items(rows, override_num_blocks=max(1, blocks))
    for position, stage in enumerate(stages):
        res = stage.resources
        env = {name: os.environ[name] for name in getattr(stage, "env_vars", ()) if name in os.environ}
        lo, hi = res.concurrency if isinstance(res.concurrency, tuple) else (res.concurrency, res.concurrency)
        ds = ds.map_batches(
            _StageActor,
            fn_constructor_kwargs={"stage": stage, "last": position == len(stages) - 1 and not keep_frames},
            batch_size=res.batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(min_size=lo, max_size=hi),
            num_cpus=res.cpus,
            num_gpus=res.gpus or None,
            zero_copy_batch=True,
            # secrets (API keys) reach the actors through the environment, never the config
            **({"runtime_env": {"env_vars": env}} if env else {}),
        )
    for batch in ds.iter_batches(batch_size=1, batch_format="numpy", prefetch_batches=2):
        for payload in batch["payload"]:
            yield pickle.loads(payload)


# ---------------------------------------------------------------------------------------
# passes: model rounds as Ray Data passes over a wave of videos


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


def _vllm_pass(requests: Sequence[Any], cfg: Any) -> list[Any]:
    """One ray.data.llm vLLM processor pass; n samples become n seeded rows, merged back."""
    import ray.data

    from synth.backends.vllm_backend import build_vllm_processor, merge_samples, split_samples

    parts = [split_samples(req) for req in requests]
    flat = [p for group in parts for p in group]
    processor = build_vllm_processor(cfg)  # rows: {"request": pickled ChatRequest}
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


def _backend_pass(requests: Sequence[Any], cfg: Any, res: Resources) -> list[Any]:
    """One pass over an actor pool of `ModelBackend`s (kind openai / transformers)."""
    import ray.data

    from synth.backends.udf import GenerateUDF

    env = {n: os.environ[n] for n in [cfg.openai.api_key_env] if cfg.kind == "openai" and n and n in os.environ}
    lo, hi = res.concurrency if isinstance(res.concurrency, tuple) else (res.concurrency, res.concurrency)
    ds = ray.data.from_items(_pass_rows(requests)).map_batches(
        GenerateUDF, fn_constructor_kwargs={"backend_config": cfg.model_dump(mode="json")},
        batch_size=res.batch_size, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(min_size=lo, max_size=hi),
        num_cpus=res.cpus, num_gpus=res.gpus or None,
        **({"runtime_env": {"env_vars": env}} if env else {}))
    by_pos = {}
    for row in ds.iter_rows():
        result = _result_of(row)
        by_pos[int(result.key)] = result
    return [replace_key(by_pos.get(pos) or _missing(req.key), req.key) for pos, req in enumerate(requests)]


def replace_key(result: Any, key: str) -> Any:
    from dataclasses import replace

    return replace(result, key=key)


def pass_resources(cfg: Any, replicas: int) -> Resources:
    """Actor pool of a non-vLLM pass: in-process models compute, HTTP clients mostly wait."""
    if cfg.kind == "transformers":
        return Resources(cpus=1.0, gpus=cfg.transformers.num_gpus, concurrency=(1, replicas),
                         batch_size=cfg.transformers.batch_size * 4)
    return Resources(cpus=0.25, concurrency=(1, replicas), batch_size=cfg.openai.concurrency * 4)


def answer_with_passes(rnd: Any, cfg: Any, replicas: int, echo: Callable[[str], None]) -> list[Any]:
    """Answer one round (`synth.rounds.Round`) with one Ray Data pass on the role's backend."""
    start = time.perf_counter()
    if cfg.kind == "vllm":
        results = _vllm_pass(rnd.requests, cfg)
    else:
        results = _backend_pass(rnd.requests, cfg, pass_resources(cfg, replicas))
    failed = sum(not r.ok for r in results)
    echo(f"  round {rnd.name} ({rnd.role}, {cfg.kind}): {len(rnd.requests)} requests, {failed} failed, "
         f"{time.perf_counter() - start:.1f} s")
    return results


class PassFailed(RuntimeError):
    """A whole pass failed (engines did not start, the cluster lost them): not one video's fault."""


class _PassStage(Stage):
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
        from synth.rounds import drive

        try:
            drive(self.stage.rounds(tasks), self._answer)
        except PassFailed as exc:
            log.error("%s: %s; the %d videos of this wave are rejected as stage_error and retried by the next run",
                      self.name, exc, len(tasks))
            return [t.reject(Reason.stage_error, f"{self.name}: {exc}", stage=self.name) for t in tasks]
        return list(tasks)


def check_pass_resources(stages: Sequence[Stage], *, remote: bool) -> None:
    """Fail before any work when a vLLM role cannot get GPUs on this Ray instance.

    A local Ray never gains GPUs; a cluster may autoscale, so there it is only logged.
    """
    import ray

    gpus = ray.cluster_resources().get("GPU", 0)
    for stage in stages:
        for role, cfg in getattr(stage, "roles", {}).items():
            if cfg.kind != "vllm":
                continue
            from synth.backends.vllm_backend import build_vllm_processor_config

            build_vllm_processor_config(cfg)  # the config is valid before any video is fetched
            need = int(cfg.vllm.engine_kwargs.get("tensor_parallel_size", 1)) \
                * int(cfg.vllm.engine_kwargs.get("pipeline_parallel_size", 1))
            if gpus >= need:
                continue
            msg = (f"{stage.name}.{role} kind=vllm needs {need} GPU(s) per engine; this Ray instance has "
                   f"{gpus:g}")
            if remote:
                log.warning("%s; the passes will wait for GPU nodes to join", msg)
            else:
                raise RuntimeError(msg + ": run on a GPU cluster (--address / RAY_ADDRESS), or use kind=openai "
                                   "against a served model")


def run_waves(tasks: Sequence[VideoTask], cpu_stages: Sequence[Stage], model_stages: Sequence[Any], *,
              wave_videos: int, replicas: dict[str, int], progress: bool = True,
              echo: Callable[[str], None] = log.info) -> Iterator[VideoTask]:
    """CPU stages over a wave of videos, then each model round as one pass; yield finished tasks.

    A crash loses at most the current wave's model work: nothing of it was committed, and
    the ledger re-runs it. Frames are held for one wave only, then dropped.
    """
    waves = -(-len(tasks) // wave_videos)
    for n, start in enumerate(range(0, len(tasks), wave_videos), 1):
        wave = list(run_plan(tasks[start:start + wave_videos], cpu_stages, progress=progress, keep_frames=True))
        live = sum(not t.rejected for t in wave)
        echo(f"wave {n}/{waves}: {len(wave)} videos segmented, {live} go to the model rounds")
        for stage in model_stages:
            def answer(rnd: Any, stage: Any = stage) -> list[Any]:
                return answer_with_passes(rnd, stage.roles[rnd.role], replicas.get(rnd.role, 1), echo)

            wave = apply_stage(_PassStage(stage, answer), wave)
        for task in wave:
            task.frames = []
            yield task


# ---------------------------------------------------------------------------------------
# the shared near-duplicate registry: one named actor that every dedupe replica asks, so two
# copies of a video on two workers are decided in one place (pipeline/filter/index.py holds
# the Ray-free protocol, the in-process registry that the actor runs, and why)


class RegistryProxy:
    """A picklable `DuplicateRegistry` that forwards each call to the named registry actor."""

    def __init__(self, name: str, namespace: str | None) -> None:
        self.name, self.namespace = name, namespace
        self._handle = None

    def __getstate__(self) -> dict:
        return {"name": self.name, "namespace": self.namespace}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["name"], state["namespace"])

    def _actor(self):
        import ray

        if self._handle is None:
            self._handle = ray.get_actor(self.name, namespace=self.namespace)
        return self._handle

    def claim(self, video_id: str, query: Any, signature: Any) -> Any:
        import ray

        return ray.get(self._actor().claim.remote(video_id, query, signature))

    def release(self, video_id: str) -> None:
        import ray

        ray.get(self._actor().release.remote(video_id))

    def size(self) -> int:
        import ray

        return ray.get(self._actor().size.remote())

    def close(self) -> None:
        """End the actor (its claims are this run's only; the committed rows persist)."""
        import ray

        if self._handle is not None:
            ray.kill(self._handle)
            self._handle = None


def shared_registry(cfg: Any, committed: Sequence[Any], name: str) -> RegistryProxy:
    """Start the named registry actor seeded with `committed` signatures; return its proxy."""
    import ray

    from pipeline.filter.index import LocalRegistry

    actor_cls = ray.remote(num_cpus=0, max_concurrency=1)(LocalRegistry)
    handle = actor_cls.options(name=name).remote(cfg, list(committed))
    ray.get(handle.size.remote())  # fail here, not in a worker, if it cannot start
    proxy = RegistryProxy(name, ray.get_runtime_context().namespace)
    proxy._handle = handle
    return proxy
