"""The Ray side: stages -> Ray Data plans (with pipeline/passes.py, pipeline/services.py and
pipeline/frame_keepers.py, the only modules that know Ray).

Two executions:
- `run_plan` (actors): each stage becomes a `map_batches`: Ray tasks on pooled workers, which
  keep the set-up stage cached per process, or an actor pool sized by its declared resources
  for a stage that holds a model or a GPU (`runs_in_actors`); model stages hold their own
  backends. Tasks travel between stages as pickled `VideoTask`s in a binary column (frames are
  encoded image bytes inside them), so Arrow never has to infer nested schemas. Results stream
  back to the driver, which commits them in chunks as they arrive.
- `run_waves` (passes, pipeline/passes.py): the CPU stages run as above over a wave of videos; then every
  round of the model stages (`synth.rounds`) is one Ray Data pass over all requests of
  the wave: the kind's ray.data.llm processor for engine kinds (vLLM), an actor pool of
  backends for kinds that load a model, pooled tasks for clients of a served model
  (synth/backends/registry.py). This is how in-cluster vLLM engines are used: one big batch pass per round.
"""
from __future__ import annotations

import logging
import os
import pickle
import time
from collections import OrderedDict
from typing import Any, Callable, Iterator, Sequence

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


def runs_in_actors(stage: Stage) -> bool:
    """Whether a stage runs in an actor pool rather than as tasks on pooled workers.

    A stage that holds a model or a GPU (a model stage whose backend loads a model, TransNetV2
    on a GPU) pays its setup once per replica and must give the memory back when the plan ends:
    actors. Every other stage (the media step, a model stage that is a client of a served model)
    is cheap to set up and runs as Ray tasks; a worker keeps the set-up stage in a
    small cache (`set_up_in_worker`), and Ray keeps its idle workers (`init_ray`), so a plan
    on a warm pool starts no process at all. Actor pools started a new process per replica per
    plan: a plan of two trivial stages over 8 videos took seconds, as tasks 0.1-0.4 s
    (bench/plan_overhead.py)."""
    return stage.resources.gpus > 0 or stage.holds_model()


# per worker process: set-up objects by the hash of what they were made from (most recent last)
_SET_UP: "OrderedDict[bytes, Any]" = OrderedDict()
SET_UP_PER_WORKER = 4  # a run's stages and passes; older entries (earlier runs) are dropped


def set_up_in_worker(recipe: bytes, make: Callable[[], Any]) -> Any:
    """The object `make()` builds, made once per worker process for the same `recipe` (the
    pickled stage or backend config it comes from) and reused by later tasks there."""
    import hashlib

    key = hashlib.blake2b(recipe, digest_size=16).digest()
    found = _SET_UP.get(key)
    if found is not None:
        _SET_UP.move_to_end(key)
        return found
    made = _SET_UP[key] = make()
    while len(_SET_UP) > SET_UP_PER_WORKER:
        _SET_UP.popitem(last=False)
    return made


def _set_up_stage(stage_bytes: bytes) -> Stage:
    def make() -> Stage:
        os.environ[NODE_ENV] = _node_label()  # read by stage.current_node(): stage code stays Ray-free
        stage = pickle.loads(stage_bytes)
        stage.setup()
        return stage

    return set_up_in_worker(stage_bytes, make)


def _process(stage: Stage, batch: dict, last: bool, frames_to: str | None,
             attempts: tuple[str, str] | None) -> dict:
    """One batch of pickled tasks through a set-up stage (actor or task alike)."""
    tasks = [pickle.loads(b) for b in batch["payload"]]
    if attempts:
        _count_attempts(attempts, stage.name, tasks)
    done = apply_stage(stage, tasks)
    if last:  # frames are for the models only: they never travel to the driver
        for task in done:
            if frames_to and not task.rejected:
                store_frames(frames_to, task)
            else:
                task.frames = []
    return {"video_id": [t.video_id for t in done],
            "payload": [pickle.dumps(t, protocol=pickle.HIGHEST_PROTOCOL) for t in done]}


def _stage_task(batch: dict, stage_bytes: bytes, last: bool = False, frames_to: str | None = None,
                attempts: tuple[str, str] | None = None) -> dict:
    """Ray task body: the stage comes set up from this worker's cache."""
    return _process(_set_up_stage(stage_bytes), batch, last, frames_to, attempts)


class _StageActor:
    """Ray actor body: holds one stage replica (its models, clients) for many batches."""

    def __init__(self, stage: Stage, last: bool = False, frames_to: str | None = None,
                 attempts: tuple[str, str] | None = None) -> None:
        os.environ[NODE_ENV] = _node_label()  # read by stage.current_node(): stage code stays Ray-free
        self.attempts = attempts
        self.stage = stage
        self.last = last
        self.frames_to = frames_to
        self.stage.setup()

    def __call__(self, batch: dict) -> dict:
        return _process(self.stage, batch, self.last, self.frames_to, self.attempts)


class _AttemptLedger:
    """How many times each video was handed to each stage of a plan (retries included).

    One per driver process and Ray session, kept across plans (an actor per plan was a process
    start per plan); each plan's counts are dropped when it ends."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, str], int] = {}

    def begin(self, plan: str, stage: str, video_ids: list[str]) -> list[int]:
        out = []
        for vid in video_ids:
            n = self.counts[(plan, stage, vid)] = self.counts.get((plan, stage, vid), 0) + 1
            out.append(n)
        return out

    def forget(self, plan: str) -> None:
        self.counts = {k: v for k, v in self.counts.items() if k[0] != plan}


_LEDGER: list[tuple[str, Any]] = []  # this driver's ledger (name, handle), while its Ray instance lives


def _attempt_ledger() -> tuple[str, Any]:
    """This driver's attempt ledger on its own node: (name, handle), made on first use and again
    when it is gone (a new Ray instance)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    if _LEDGER:
        name, handle = _LEDGER[0]
        try:
            ray.get_actor(name)
            return name, handle
        except ValueError:
            _LEDGER.clear()
    name = f"curate-attempts-{os.getpid()}-{time.time_ns()}"
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)  # the driver's node
    handle = ray.remote(num_cpus=0)(_AttemptLedger).options(name=name, scheduling_strategy=here).remote()
    _LEDGER.append((name, handle))
    return name, handle


def _count_attempts(attempts: tuple[str, str], stage: str, tasks: list[VideoTask]) -> None:
    """Reject (stage_error) the videos this stage already got MAX_ATTEMPTS times in this plan
    (`attempts`: the ledger's name, the plan's id): each time its worker died with them. The
    next run tries them again."""
    import ray

    live = [t for t in tasks if not t.rejected]
    if not live:
        return
    ledger, plan = attempts
    try:
        counts = ray.get(ray.get_actor(ledger).begin.remote(plan, stage, [t.video_id for t in live]), timeout=60)
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
    cpus = num_cpus or os.cpu_count() or 1
    # Keep idle workers instead of killing those above one per CPU after 1 s (Ray's default):
    # stages of 0.5 CPU run two workers per CPU, and the next plan (wave, pass, re-run) reuses
    # them with their imports and set-up stages (`runs_in_actors`).
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=log_to_driver,
             configure_logging=False, _system_config={"num_workers_soft_limit": 2 * cpus + 2}, **kwargs)
    return f"local Ray with {cpus} CPUs"


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
    """`map_batches` keyword arguments for a stage's declared `Resources`: an actor pool for a
    stage that holds a model or a GPU (`runs_in_actors`), pooled tasks for the others."""
    return worker_options(stage.resources, actors=runs_in_actors(stage), env=env)


def worker_options(res: Any, *, actors: bool, env: dict[str, str] | None = None) -> dict[str, Any]:
    """`map_batches` keyword arguments for `Resources` (`pipeline.stage.Resources`)."""
    import ray.data

    lo, hi = res.concurrency if isinstance(res.concurrency, tuple) else (res.concurrency, res.concurrency)
    options: dict[str, Any] = dict(batch_size=res.batch_size, batch_format="numpy", num_cpus=res.cpus,
                                   num_gpus=res.gpus or None, zero_copy_batch=True)
    if actors:
        options.update(compute=ray.data.ActorPoolStrategy(min_size=lo, max_size=hi),
                       max_restarts=ACTOR_MAX_RESTARTS, max_task_retries=ACTOR_TASK_RETRIES)
    else:  # the same unbounded retries for a task lost with its node (ACTOR_TASK_RETRIES' reasons)
        options.update(compute=ray.data.TaskPoolStrategy(size=hi), max_retries=ACTOR_TASK_RETRIES)
    if env:  # secrets (API keys) reach the workers through the environment, never the config
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
    ledger_name, ledger = _attempt_ledger()
    plan_id = f"{time.time_ns()}"
    rows = [{"video_id": t.video_id, "payload": pickle.dumps(t, protocol=pickle.HIGHEST_PROTOCOL)}
            for t in tasks]
    ds = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), MAX_BLOCKS)))
    started = start_services(stages)  # a bare plan (tests, bench); a job starts them before
    for position, stage in enumerate(stages):
        env = {name: os.environ[name] for name in stage.env_vars if name in os.environ}
        where = {"last": position == len(stages) - 1, "frames_to": frames_to, "attempts": (ledger_name, plan_id)}
        if runs_in_actors(stage):
            ds = ds.map_batches(_StageActor, fn_constructor_kwargs={"stage": stage, **where},
                                **stage_options(stage, env))
        else:
            # cloudpickle, as Ray does for an actor's arguments: a stage class defined in a script travels by value
            stage_bytes = ray.cloudpickle.dumps(stage, protocol=pickle.HIGHEST_PROTOCOL)
            ds = ds.map_batches(_stage_task, fn_kwargs={"stage_bytes": stage_bytes, **where},
                                **stage_options(stage, env))
    try:
        for batch in ds.iter_batches(batch_size=1, batch_format="numpy", prefetch_batches=2):
            for payload in batch["payload"]:
                yield pickle.loads(payload)
    finally:
        ledger.forget.remote(plan_id)
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
