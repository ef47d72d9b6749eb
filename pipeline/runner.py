"""The one place that knows Ray: stages -> a Ray Data streaming plan.

Each stage becomes a `map_batches` over an actor pool sized by its declared resources.
Tasks travel between stages as pickled `VideoTask`s in a binary column (frames are
encoded image bytes inside them), so Arrow never has to infer nested schemas. Results
stream back to the driver, which commits them in chunks as they arrive.
"""
from __future__ import annotations

import logging
import os
import pickle
from typing import Iterator, Sequence

from pipeline.records import VideoTask
from pipeline.stage import Stage, apply_stage

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
             progress: bool = True) -> Iterator[VideoTask]:
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
            fn_constructor_kwargs={"stage": stage, "last": position == len(stages) - 1},
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
