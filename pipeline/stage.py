"""The stage contract: plain Python units with declared resources, no Ray imports.

A stage turns a batch of `VideoTask`s into the same tasks, enriched or rejected.
The runner (`pipeline/runner.py`) is the only place that knows about Ray; it wraps
every stage in an actor, catches per-row exceptions and turns them into rejects, and
skips tasks that an earlier stage already rejected.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, ClassVar, Mapping, Sequence

from pipeline.records import VideoTask
from pipeline.section import Section


NODE_ENV = "CURATE_NODE"


def current_node() -> str:
    """The node this code runs on, for messages and `media_node`: the runner sets CURATE_NODE in
    its workers (host and Ray node id); elsewhere the host name."""
    return os.environ.get(NODE_ENV) or socket.gethostname()


@dataclass(frozen=True)
class Resources:
    """What one replica of a stage needs; the runner maps this onto Ray Data options."""

    cpus: float = 1.0
    gpus: float = 0.0
    concurrency: int | tuple[int, int] = 1
    batch_size: int = 1


@dataclass(frozen=True)
class Service:
    """A cluster-wide object a stage needs (the fetch limiter, the near-duplicate registry): the
    runner holds `make(*args)` in one named actor and binds the stage to a proxy of it.

    shared: any run (any driver) asking for the same name while the actor lives uses it, and it
    is restarted fresh if it dies (budgets); otherwise it is this run's alone, seeded by `args`,
    and ended with the run (claims).
    """

    name: str
    make: Callable[..., Any]
    args: tuple = ()
    shared: bool = False
    note: str = ""  # said by the job when it starts the service
    status: str = ""  # a method of the service whose text the job says once it has started (what it loaded)


class Stage:
    """Base class: override `process` (one task) or `process_batch` (model stages).

    `name` and `version` identify the stage in the run summary and in the ledger
    fingerprint: bumping `version` makes incremental re-runs reprocess old videos.

    The contract the runner and the job rely on is declared here, with defaults, and nothing
    else of a stage is looked at: the task fields it `reads` and `writes`, whether it fetches
    media (`has_media`), whether it is a model stage (`rounds`, `roles`, `results`), the
    environment variables its workers need (`env_vars`), the cluster-wide services it needs
    (`services` / `bind`), what it reports for the run (`run_report`) and what it undoes for a
    video that will not be committed (`settle`).
    """

    name: ClassVar[str] = "stage"
    version: ClassVar[str] = "1"
    resources: Resources = Resources()
    reads: ClassVar[frozenset[str]] = frozenset()  # VideoTask fields it needs
    writes: ClassVar[frozenset[str]] = frozenset()  # VideoTask fields it fills (status and reject_* aside)
    fetches_media: ClassVar[bool] = False  # True: `has_media` says whether a re-run downloads
    runs_rounds: ClassVar[bool] = False  # True: a model stage (`rounds`, `roles`, `results`)
    env_vars: tuple[str, ...] = ()  # passed from the driver's environment to its workers (API keys)
    roles: Mapping[str, Any] = MappingProxyType({})  # model stages: role -> BackendConfig
    results: Any = None  # model stages: the dataset's store of paid-for answers (set by the job)

    def holds_model(self) -> bool:
        """Whether a replica holds a model in memory (a model stage whose backend loads one): the
        runner gives it an actor pool, which pays setup once and frees the memory at plan end."""
        return False

    def has_media(self, task: VideoTask) -> bool:
        """A media stage: whether processing `task` again needs no download (`curate plan`)."""
        return False

    def services(self, dataset: Any = None) -> list[Service]:
        """Cluster-wide services this stage still needs (none once bound); `dataset` (the
        `DatasetStore` of the run, None outside a job) seeds them."""
        return []

    def bind(self, name: str, proxy: Any) -> None:
        """Use the runner's proxy of the service `name` (picklable: it travels with the stage)."""

    def run_report(self) -> dict[str, Any]:
        """What this stage's services did over the run, for the run summary (name -> stats)."""
        return {}

    def gpu_reason(self) -> str:
        """Why this stage's `resources` ask Ray for a GPU, and what to do on a cluster without
        one ("" when it asks none): the runner stops a local run before any work with it."""
        return ""

    def settle(self, task: VideoTask) -> None:
        """Called in the driver for every finished task before it is committed: undo what a
        service holds for a video that ended rejected after this stage (a near-duplicate claim)."""

    def setup(self) -> None:
        """Load models or open clients; called once per replica, inside the worker."""

    def process(self, task: VideoTask) -> VideoTask:  # pragma: no cover - abstract
        raise NotImplementedError

    def process_batch(self, tasks: Sequence[VideoTask]) -> list[VideoTask]:
        """Default: one task at a time. Row errors are caught by the runner."""
        return [self.process(t) for t in tasks]

    def describe(self) -> str:
        return f"{self.name}@{self.version}"

    def sections(self) -> dict[str, "Section"]:
        """The config sections this stage reads, by their path in the job config (`fetch`,
        `synth.teacher`): its `config` key part is derived from them (pipeline/keys.py)."""
        return {}

    def key_extras(self) -> dict[str, str]:
        """Key parts beyond version and config: the prompt versions and models it uses."""
        return {}

    def key_parts(self) -> dict[str, str]:
        """What this stage's results depend on besides its input: its version, the config it
        reads (execution-only settings left out), its prompts and models. A changed part makes
        a re-run redo this stage (see pipeline/keys.py). Derived: a stage declares `sections`."""
        from pipeline.keys import config_digest

        parts = {"version": self.version, **self.key_extras()}
        sections = self.sections()
        if sections:
            parts["config"] = config_digest(sections)
        return parts

    def batch_scope(self):
        """Context for one `apply_stage` call, spanning a batch attempt and its per-row retries."""
        import contextlib

        return contextlib.nullcontext()


def apply_stage(stage: Stage, tasks: Sequence[VideoTask]) -> list[VideoTask]:
    """Run a stage over tasks the way every runner must: row failures become data.

    Already-rejected tasks pass through untouched. If a batch raises, each task is
    retried alone so one bad video cannot take its batch-mates down; a task that still
    raises is rejected with `stage_error` and the exception text. The retries work on
    copies of the tasks as they came in, so nothing the failed batch attempt did to them
    (costs counted, items attached) is kept or counted twice; a stage with side effects
    worth keeping across the attempts (model results already paid for) keeps them in its
    `batch_scope`. Wall time per task is recorded in `stage_timings` (a batch's time is
    split evenly across its tasks).
    """
    import copy
    import time
    import traceback

    from pipeline.records import Reason, StageTiming

    live = [t for t in tasks if not t.rejected]
    if not live:
        return list(tasks)
    with stage.batch_scope():
        pristine = [copy.deepcopy(t) for t in live] if len(live) > 1 else None
        start = time.perf_counter()
        try:
            done = stage.process_batch(live)
            if len(done) != len(live):
                raise RuntimeError(f"{stage.name} returned {len(done)} tasks for {len(live)}")
            share = (time.perf_counter() - start) / len(live)
            for task in done:
                task.stage_timings.append(StageTiming(stage.name, share))
        except Exception as batch_exc:  # noqa: BLE001 - isolate the failing row below
            done = []
            for original in pristine or [None]:
                task = original if original is not None else live[0]
                one_start = time.perf_counter()
                try:
                    if original is None:  # a batch of one: its failure is the row's
                        raise batch_exc
                    (result,) = stage.process_batch([task])
                except Exception as exc:  # noqa: BLE001 - a row failure is data
                    tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
                    result = task.reject(Reason.stage_error, f"{stage.name}: {tb}", stage=stage.name)
                result.stage_timings.append(StageTiming(stage.name, time.perf_counter() - one_start))
                done.append(result)
    # keep input order; process_batch may return new objects for the live tasks
    replaced = iter(done)
    live_ids = {id(t) for t in live}
    return [next(replaced) if id(t) in live_ids else t for t in tasks]


def check_flow(stages: Sequence[Stage], given: frozenset[str]) -> None:
    """Fail before any work when a stage reads a task field that neither ingest (`given`) nor an
    earlier stage writes."""
    have = set(given)
    for stage in leaves(stages):
        missing = stage.reads - have
        if missing:
            raise ValueError(f"stage {stage.name} reads {sorted(missing)}, which no earlier stage writes")
        have |= stage.writes


def leaves(stages: Sequence[Stage]) -> list[Stage]:
    """The stages themselves, with every `Chain` replaced by the stages it runs."""
    out: list[Stage] = []
    for stage in stages:
        out += leaves(stage.stages) if isinstance(stage, Chain) else [stage]
    return out


class Chain(Stage):
    """Stages that run one after another in one process, per video.

    The media stages (fetch, segment, select, filters) read a file that exists only on
    the node that downloaded it. Run as separate Ray Data operators, each could be
    scheduled on another node, where the path does not exist; chained, the file is read
    only where it was written, and what later stages need (frames as JPEG bytes,
    subtitle text, media facts) travels with the task.
    """

    def __init__(self, name: str, stages: Sequence[Stage], resources: Resources) -> None:
        self.name = name
        self.stages = list(stages)
        self.resources = resources
        self.version = "+".join(s.describe() for s in self.stages)
        self.env_vars = tuple(v for s in self.stages for v in s.env_vars)

    def describe(self) -> str:
        return f"{self.name}[{', '.join(s.describe() for s in self.stages)}]"

    def setup(self) -> None:
        for stage in self.stages:
            stage.setup()

    def process_batch(self, tasks: Sequence[VideoTask]) -> list[VideoTask]:
        out = list(tasks)
        for stage in self.stages:  # each sub-stage keeps its own timings and row isolation
            out = apply_stage(stage, out)
        return out
