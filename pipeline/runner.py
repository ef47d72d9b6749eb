"""The Ray side: stages -> Ray Data plans (with pipeline/passes.py, pipeline/services.py and
pipeline/frame_keepers.py, the only modules that know Ray).

Two executions:
- `run_plan` (actors): each stage becomes a `map_batches` over an actor pool sized by its
  declared resources; model stages hold their own backends. Tasks travel between stages
  as pickled `VideoTask`s in a binary column (frames are encoded image bytes inside them),
  so Arrow never has to infer nested schemas. Results stream back to the driver, which
  commits them in chunks as they arrive.
- `run_waves` (passes, pipeline/passes.py): the CPU stages run as above over a wave of videos; then every
  round of the model stages (`synth.rounds`) is one Ray Data pass over all requests of
  the wave: the kind's ray.data.llm processor for engine kinds (vLLM), an actor pool of
  backends otherwise (synth/backends/registry.py). This is how in-cluster vLLM engines are used: one big batch pass per round.
"""
from __future__ import annotations

import logging
import os
import pickle
import time
from typing import Any, Iterator, Sequence

from pipeline.frame_keepers import store_frames
from pipeline.records import Reason, VideoTask
from pipeline.services import close_services, start_services
from pipeline.stage import NODE_ENV, Stage, apply_stage, leaves

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
    started = start_services(stages)  # a bare plan (tests, bench); a job starts them before
    for position, stage in enumerate(stages):
        env = {name: os.environ[name] for name in stage.env_vars if name in os.environ}
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
        close_services(started)


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


def check_stage_gpus(stages: Sequence[Stage], *, remote: bool) -> None:
    """Fail before any work when a stage asks Ray for GPUs, for a reason it names (`gpu_reason`,
    e.g. segment.detector transnetv2), that this Ray instance does not have (its workers would stay
    pending forever); a remote cluster may autoscale, so there it is logged."""
    import ray

    reasons = [r for leaf in leaves(stages) if (r := leaf.gpu_reason())]
    if not reasons or ray.cluster_resources().get("GPU", 0) > 0:
        return
    msg = f"this Ray instance has no GPU, and {'; '.join(reasons)}"
    if remote:
        log.warning("%s; the workers wait for GPU nodes to join", msg)
    else:
        raise RuntimeError(msg)
