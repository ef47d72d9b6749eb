"""The stage contract: plain Python units with declared resources, no Ray imports.

A stage turns a batch of `VideoTask`s into the same tasks, enriched or rejected.
The runner (`pipeline/runner.py`) is the only place that knows about Ray; it wraps
every stage in an actor, catches per-row exceptions and turns them into rejects, and
skips tasks that an earlier stage already rejected.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Sequence

from pipeline.records import VideoTask


@dataclass(frozen=True)
class Resources:
    """What one replica of a stage needs; the runner maps this onto Ray Data options."""

    cpus: float = 1.0
    gpus: float = 0.0
    concurrency: int | tuple[int, int] = 1
    batch_size: int = 1


class Stage:
    """Base class: override `process` (one task) or `process_batch` (model stages).

    `name` and `version` identify the stage in the run summary and in the ledger
    fingerprint: bumping `version` makes incremental re-runs reprocess old videos.
    """

    name: ClassVar[str] = "stage"
    version: ClassVar[str] = "1"
    resources: Resources = Resources()

    def setup(self) -> None:
        """Load models or open clients; called once per replica, inside the worker."""

    def process(self, task: VideoTask) -> VideoTask:  # pragma: no cover - abstract
        raise NotImplementedError

    def process_batch(self, tasks: Sequence[VideoTask]) -> list[VideoTask]:
        """Default: one task at a time. Row errors are caught by the runner."""
        return [self.process(t) for t in tasks]

    def describe(self) -> str:
        return f"{self.name}@{self.version}"


def apply_stage(stage: Stage, tasks: Sequence[VideoTask]) -> list[VideoTask]:
    """Run a stage over tasks the way every runner must: row failures become data.

    Already-rejected tasks pass through untouched. If a batch raises, each task is
    retried alone so one bad video cannot take its batch-mates down; a task that still
    raises is rejected with `stage_error` and the exception text. Wall time per task is
    recorded in `stage_timings` (a batch's time is split evenly across its tasks).
    """
    import time
    import traceback

    from pipeline.records import Reason, StageTiming

    live = [t for t in tasks if not t.rejected]
    if live:
        start = time.perf_counter()
        try:
            done = stage.process_batch(live)
            if len(done) != len(live):
                raise RuntimeError(f"{stage.name} returned {len(done)} tasks for {len(live)}")
            share = (time.perf_counter() - start) / len(live)
            for task in done:
                task.stage_timings.append(StageTiming(stage.name, share))
        except Exception:  # noqa: BLE001 - isolate the failing row below
            done = []
            for task in live:
                one_start = time.perf_counter()
                try:
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
    return list(tasks)
