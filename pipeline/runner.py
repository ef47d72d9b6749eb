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

from pipeline.records import Reason, VideoTask
from pipeline.stage import NODE_ENV, Resources, Stage, apply_stage, leaves
from synth.rounds import Memoized

log = logging.getLogger(__name__)

MAX_BLOCKS = 20_000
# Ray's own retries, set deliberately (Ray Data's defaults for actor pools are the same
# numbers; naming them here keeps them from changing under us):
# - an actor that dies (its node is lost, the process is killed) is restarted without limit:
#   the pool must survive node loss;
# - a task whose actor died is retried without limit: while a lost node is being declared
#   dead its actors are "temporarily unavailable" and every retry fails at once, so a
#   bound of a few retries is spent in a second and fails the whole plan (measured on the
#   2-node test cluster: 4 retries -> the run failed, 6 of 13 videos left for a re-run;
#   unbounded -> the run finished, 13 of 13). Every stage is idempotent per video (fetch
#   reuses its cache, segment is pure, model results are recomputed), so a retry is safe.
ACTOR_MAX_RESTARTS = -1
ACTOR_TASK_RETRIES = -1
# ... and because those retries are unbounded, a video whose processing kills its worker
# (a crash in native decoder code) would loop forever: the attempt ledger counts how often
# each video was handed to a stage and rejects it as stage_error after this many tries.
MAX_ATTEMPTS = 3


def _node_label() -> str:
    """Host name and short Ray node id: nodes of one machine (tests) or one image differ."""
    import socket

    import ray

    return f"{socket.gethostname()}/{ray.get_runtime_context().get_node_id()[:8]}"


class _StageActor:
    """Ray actor body: holds one stage replica (its models, clients) for many batches."""

    def __init__(self, stage: Stage, last: bool = False, frames_to: str | None = None,
                 attempts: str | None = None) -> None:
        os.environ[NODE_ENV] = _node_label()  # read by stage.current_node(): stage code stays Ray-free
        self.attempts = attempts
        self.stage = stage
        self.last = last
        self.frames_to = frames_to
        self.stage.setup()

    def __call__(self, batch: dict) -> dict:
        tasks = [pickle.loads(b) for b in batch["payload"]]
        if self.attempts:
            _count_attempts(self.attempts, self.stage.name, tasks)
        done = apply_stage(self.stage, tasks)
        if self.last:  # frames are for the models only: they never travel to the driver
            for task in done:
                if self.frames_to and not task.rejected:
                    store_frames(self.frames_to, task)
                else:
                    task.frames = []
        return {"video_id": [t.video_id for t in done],
                "payload": [pickle.dumps(t, protocol=pickle.HIGHEST_PROTOCOL) for t in done]}


class _AttemptLedger:
    """How many times each video was handed to each stage in this plan (retries included)."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}

    def begin(self, stage: str, video_ids: list[str]) -> list[int]:
        out = []
        for vid in video_ids:
            n = self.counts[(stage, vid)] = self.counts.get((stage, vid), 0) + 1
            out.append(n)
        return out


def _count_attempts(ledger: str, stage: str, tasks: list[VideoTask]) -> None:
    """Reject (stage_error) the videos this stage already got MAX_ATTEMPTS times: each time
    its worker died with them. The next run tries them again."""
    import ray

    live = [t for t in tasks if not t.rejected]
    if not live:
        return
    try:
        counts = ray.get(ray.get_actor(ledger).begin.remote(stage, [t.video_id for t in live]), timeout=60)
    except Exception as exc:  # noqa: BLE001 - counting is a guard, never a reason to fail a batch
        log.warning("attempt ledger %s unreachable (%s); not counting this batch", ledger, exc)
        return
    for task, n in zip(live, counts):
        if n > MAX_ATTEMPTS:
            task.reject(Reason.stage_error, f"{stage}: the worker died {n - 1} times while processing this video "
                        "(a crash in native code, or lost nodes); skipped in this run, retried by the next",
                        stage=stage)


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


def configure_data_context(progress: bool) -> None:
    """Ray Data settings every plan of ours needs."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = progress
    ctx.execution_options.preserve_order = False
    # Each map task yields an output block per batch instead of filling a 128 MiB block first:
    # a finished video reaches the next stage (and the driver's commit) at once, not when its
    # whole input block is done (measured: 8 rows of one block arrived together at the end
    # with the default, one by one with this).
    ctx.target_max_block_size = 1


def stage_options(stage: Stage, env: dict[str, str] | None = None) -> dict[str, Any]:
    """`map_batches` keyword arguments for a stage's declared `Resources`."""
    import ray.data

    res = stage.resources
    lo, hi = res.concurrency if isinstance(res.concurrency, tuple) else (res.concurrency, res.concurrency)
    options: dict[str, Any] = dict(
        batch_size=res.batch_size, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(min_size=lo, max_size=hi),
        num_cpus=res.cpus, num_gpus=res.gpus or None, zero_copy_batch=True,
        max_restarts=ACTOR_MAX_RESTARTS, max_task_retries=ACTOR_TASK_RETRIES)
    if env:  # secrets (API keys) reach the actors through the environment, never the config
        options["runtime_env"] = {"env_vars": env}
    return options


def run_plan(tasks: Sequence[VideoTask], stages: Sequence[Stage], *,
             progress: bool = True, frames_to: str | None = None) -> Iterator[VideoTask]:
    """Stream `tasks` through `stages` on the current Ray instance; yield finished tasks.

    One video per input block (up to MAX_BLOCKS blocks): a block is the unit Ray Data
    hands to one actor call and the unit a lost node takes with it. Frames never reach
    the driver: the last stage drops them, or with `frames_to` (passes) moves them into
    the frame keepers of that prefix.
    """
    import ray
    import ray.data

    if not tasks:
        return
    configure_data_context(progress)
    ledger_name = f"curate-attempts-{os.getpid()}-{time.time_ns()}"
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)  # the driver's node
    ledger = ray.remote(num_cpus=0)(_AttemptLedger).options(name=ledger_name, scheduling_strategy=here).remote()
    rows = [{"video_id": t.video_id, "payload": pickle.dumps(t, protocol=pickle.HIGHEST_PROTOCOL)}
            for t in tasks]
    ds = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), MAX_BLOCKS)))
    bind_shared_limiters(stages)
    for position, stage in enumerate(stages):
        env = {name: os.environ[name] for name in getattr(stage, "env_vars", ()) if name in os.environ}
        ds = ds.map_batches(
            _StageActor,
            fn_constructor_kwargs={"stage": stage, "last": position == len(stages) - 1, "frames_to": frames_to,
                                   "attempts": ledger_name},
            **stage_options(stage, env))
    try:
        for batch in ds.iter_batches(batch_size=1, batch_format="numpy", prefetch_batches=2):
            for payload in batch["payload"]:
                yield pickle.loads(payload)
    finally:
        ray.kill(ledger)


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
    from functools import partial

    from synth.backends.vllm_backend import request_dict_to_row

    # rows: {"request": pickled ChatRequest}; frames are fetched from the frame store on the workers
    processor = build_vllm_processor(cfg, preprocess_row=partial(request_dict_to_row, fetch_frames=fetch_frames))
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

    env = {n: os.environ[n] for n in cfg.env_vars() if n in os.environ}
    lo, hi = res.concurrency if isinstance(res.concurrency, tuple) else (res.concurrency, res.concurrency)
    ds = ray.data.from_items(_pass_rows(requests)).map_batches(
        GenerateUDF, fn_constructor_kwargs={"backend_config": cfg.model_dump(mode="json"),
                                            "fetch_frames": fetch_frames},
        batch_size=res.batch_size, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(min_size=lo, max_size=hi),
        num_cpus=res.cpus, num_gpus=res.gpus or None,
        max_restarts=ACTOR_MAX_RESTARTS, max_task_retries=ACTOR_TASK_RETRIES,
        **({"runtime_env": {"env_vars": env}} if env else {}))
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
    start = time.perf_counter()
    if cfg.kind == "vllm":
        results = _vllm_pass(rnd.requests, cfg)
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


def check_stage_gpus(stages: Sequence[Stage], *, remote: bool) -> None:
    """Fail before any work when a stage asks Ray for GPUs, for a reason it names (`gpu_reason`,
    e.g. segment.detector transnetv2), that this Ray instance does not have (its workers would stay
    pending forever); a remote cluster may autoscale, so there it is logged."""
    import ray

    from pipeline.stage import leaves

    reasons = [r for leaf in leaves(stages) if (r := getattr(leaf, "gpu_reason", lambda: "")())]
    if not reasons or ray.cluster_resources().get("GPU", 0) > 0:
        return
    msg = f"this Ray instance has no GPU, and {'; '.join(reasons)}"
    if remote:
        log.warning("%s; the workers wait for GPU nodes to join", msg)
    else:
        raise RuntimeError(msg)


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


# ---------------------------------------------------------------------------------------
# frame keepers (passes): a wave's JPEG frames stay on the nodes that decoded them


class _FrameKeeper:
    """A node's frames of the current wave: video key -> JPEG bytes in frame order."""

    def __init__(self) -> None:
        self.frames: dict[str, list[bytes]] = {}

    def put(self, key: str, images: list[bytes]) -> int:
        self.frames[key] = images
        return len(images)

    def get(self, key: str) -> list[bytes]:
        return self.frames[key]

    def drop(self, keys: list[str]) -> int:
        return sum(self.frames.pop(k, None) is not None for k in keys)

    def held_bytes(self) -> int:
        return sum(len(b) for images in self.frames.values() for b in images)


class FrameKeepers:
    """One `_FrameKeeper` actor per alive node (no CPU reserved), named `<prefix>-<node id>`.

    A frames key is `<prefix>-<node id>|<video id>`: it names the keeper that holds the
    frames, so any worker on any node can fetch them. A node that dies takes its keeper
    with it; the requests of its videos then fail with `frames_unavailable` and those
    videos are retried by the next run.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.handles: dict[str, Any] = {}

    def ensure(self) -> None:
        """A keeper on every alive node that has none yet (nodes may have joined)."""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        keeper = ray.remote(num_cpus=0, max_restarts=0)(_FrameKeeper)
        for node in ray.nodes():
            node_id = node["NodeID"]
            if node["Alive"] and node_id not in self.handles:
                self.handles[node_id] = keeper.options(
                    name=f"{self.prefix}-{node_id}", lifetime=None,
                    scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)).remote()

    def drop(self, keys: list[str]) -> None:
        import ray

        by_node: dict[str, list[str]] = {}
        for key in keys:
            name, _, _ = key.partition("|")
            by_node.setdefault(name, []).append(key)
        for name, group in by_node.items():
            handle = self.handles.get(name[len(self.prefix) + 1:])
            if handle is not None:
                try:
                    ray.get(handle.drop.remote(group), timeout=60)
                except Exception:  # noqa: BLE001 - a lost node's frames are gone anyway
                    pass

    def close(self) -> None:
        import ray

        for handle in self.handles.values():
            try:
                ray.kill(handle)
            except Exception:  # noqa: BLE001 - already dead with its node
                pass
        self.handles.clear()


def _keeper(name: str) -> Any:
    import ray

    return ray.get_actor(name)


def store_frames(prefix: str, task: VideoTask) -> None:
    """Move a task's JPEG bytes into this node's keeper; the task keeps frame metadata and the key."""
    import ray

    if not task.frames:
        return
    name = f"{prefix}-{ray.get_runtime_context().get_node_id()}"
    key = f"{name}|{task.video_id}"
    ray.get(_keeper(name).put.remote(key, [f.image for f in task.frames]))
    for frame in task.frames:
        frame.image = b""
    task.frames_key = key


def fetch_frames(key: str) -> list[bytes]:
    """The JPEG bytes of a video's frames, from the keeper that `key` names (any node).

    Raises `FramesUnavailable` when the keeper or its entry is gone (its node was lost)."""
    import ray

    from synth.backends.types import FramesUnavailable

    name = key.partition("|")[0]
    try:
        return ray.get(_keeper(name).get.remote(key), timeout=300)
    except Exception as exc:  # noqa: BLE001 - ActorDiedError, ValueError (no such actor), KeyError ...
        raise FramesUnavailable(f"frames {key!r}: {type(exc).__name__}: {exc}") from exc


# ---------------------------------------------------------------------------------------
# cluster checks


def nodes_sharing_dir(path: Any) -> tuple[int, int]:
    """(nodes that see `path`, alive nodes with CPUs), probed with a marker file from the driver."""
    import uuid

    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n["Alive"] and n.get("Resources", {}).get("CPU", 0) > 0]
    if len(nodes) <= 1:
        return len(nodes), len(nodes)
    path.mkdir(parents=True, exist_ok=True)
    marker = path / f".curate-probe-{uuid.uuid4().hex}"
    marker.write_text("written by the driver to see which nodes share this directory\n")

    @ray.remote(num_cpus=0)
    def sees(p: str) -> bool:
        return os.path.exists(p)

    try:
        refs = [sees.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                .remote(str(marker)) for n in nodes]
        return sum(ray.get(refs, timeout=120)), len(nodes)
    finally:
        marker.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------
# Shared fetch limiter: one named actor serves pipeline.acquire.limiter's core to every
# fetch worker on every node. Stages that want it expose `limiter_spec()` and
# `bind_limiter(limiter)`; they only ever see the Ray-free FetchLimiter protocol.


class _FetchLimiterActor:
    """Ray actor body: one LimiterCore; calls are serialised (one at a time), each a few µs."""

    def __init__(self, spec: Any) -> None:
        from pipeline.acquire.limiter import LimiterCore

        self.core = LimiterCore(spec)

    def call(self, method: str, *args: Any) -> Any:
        return getattr(self.core, method)(*args)


class RayFetchLimiter:
    """The FetchLimiter protocol over the named actor; picklable, so it travels inside the stage."""

    def __init__(self, handle: Any, name: str) -> None:
        self.handle, self.name = handle, name

    def _call(self, method: str, *args: Any) -> Any:
        import ray

        return ray.get(self.handle.call.remote(method, *args))

    def lease(self) -> Any:
        return self._call("lease")

    def take(self, lease: int, kind: str) -> Any:
        return self._call("take", lease, kind)

    def valid(self, lease: int) -> bool:
        return self._call("valid", lease)

    def report(self, lease: int, outcome: str, lane: str = "fetch") -> None:
        self._call("report", lease, outcome, lane)

    def release(self, lease: int) -> None:
        self._call("release", lease)

    def mark(self) -> int:
        return self._call("mark")

    def stats(self, since: int | None = None) -> dict:
        return self._call("stats", since)


def shared_fetch_limiter(spec: Any) -> RayFetchLimiter:
    """The cluster's limiter for `spec`: created on first use, found by name afterwards.

    Named by the spec's hash in namespace `curate`, so runs with the same identities and
    budgets share it, also from other drivers while the first one lives (it is owned by the
    driver that created it and ends with it). It needs no CPU of its own.
    """
    import ray

    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    name = f"curate-fetch-limiter-{spec.key}"
    # on the driver's node (its loss ends the run anyway); restarted, with fresh budgets, if it dies
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    actor = ray.remote(_FetchLimiterActor).options(
        name=name, namespace="curate", get_if_exists=True, num_cpus=0, max_restarts=-1, max_task_retries=-1,
        scheduling_strategy=here)
    return RayFetchLimiter(actor.remote(spec), name)


def bind_shared_limiters(stages: Sequence[Stage]) -> None:
    """Hand every stage that declares a limiter spec the cluster-wide limiter for it."""
    for stage in leaves(stages):
        spec_of = getattr(stage, "limiter_spec", None)
        if callable(spec_of) and hasattr(stage, "bind_limiter"):
            limiter = getattr(stage, "limiter", None)
            if isinstance(limiter, RayFetchLimiter):
                continue  # bound by an earlier wave of this run
            stage.bind_limiter(shared_fetch_limiter(spec_of()))


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

    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    actor_cls = ray.remote(num_cpus=0, max_concurrency=1)(LocalRegistry)
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)  # the driver's node
    handle = actor_cls.options(name=name, scheduling_strategy=here).remote(cfg, list(committed))
    ray.get(handle.size.remote())  # fail here, not in a worker, if it cannot start
    proxy = RegistryProxy(name, ray.get_runtime_context().namespace)
    proxy._handle = handle
    return proxy
