"""FilterStage (content filters) and DedupeStage (benchmark fingerprints, near-duplicates).

Both run right after SelectStage and before the model stages, on what the segment stage
measured; every reject reason they give is permanent (the video will not change).
"""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from pipeline.filter.config import DecontaminateConfig, DedupeConfig, FilterConfig
from pipeline.filter.fingerprint import Query, Signature, SignatureIndex, read_fingerprints
from pipeline.filter.index import DuplicateRegistry, LocalRegistry, open_registry
from pipeline.filter.rules import decide
from pipeline.records import Reason, VideoTask
from pipeline.stage import Resources, Service, Stage

log = logging.getLogger(__name__)


class FilterStage(Stage):
    """Rejects videos whose content signals fail a configured bound (the rules of pipeline/filter/rules.py)."""

    name = "filter"
    version = "1"
    resources = Resources(cpus=0.05, concurrency=1, batch_size=16)  # bookkeeping only
    reads = frozenset({"signals"})

    def __init__(self, cfg: FilterConfig | None = None):
        self.cfg = cfg or FilterConfig()

    def sections(self) -> dict[str, FilterConfig]:
        return {"filter": self.cfg}

    def process(self, task: VideoTask) -> VideoTask:
        if task.rejected or task.signals is None:
            return task
        decision = decide(task.signals, self.cfg.model_dump())
        if not decision.keep:
            task.reject(decision.reason, decision.message, stage=self.name)
        return task


class DedupeStage(Stage):
    """Benchmark fingerprints (decontamination), then the dataset's near-duplicates.

    `registry` is the shared `DuplicateRegistry`; the job binds one for the run (a named Ray
    actor). Without one (tests, single-process use) a `LocalRegistry` of this replica is used.
    The dense hash sequence the segment stage left on the task (`hash_track`) is consumed here.
    """

    name = "dedupe"
    version = "1"
    resources = Resources(cpus=0.1, concurrency=(1, 4), batch_size=1)
    reads = frozenset({"hash_track", "signals", "duration_s"})
    writes = frozenset({"hash_track"})  # consumed: the dense track is not kept

    def __init__(self, dedupe: DedupeConfig | None = None, decontaminate: DecontaminateConfig | None = None,
                 registry: DuplicateRegistry | None = None):
        self.dedupe = dedupe or DedupeConfig()
        self.decontaminate = decontaminate or DecontaminateConfig()
        self.registry = registry
        self._benchmarks: SignatureIndex | None = None

    def sections(self) -> dict[str, DedupeConfig | DecontaminateConfig]:
        return {"dedupe": self.dedupe, "decontaminate": self.decontaminate}

    def services(self, dataset=None) -> list[Service]:
        """One registry for the run, which seeds itself with the signatures of the dataset's
        committed accepted videos (pipeline/filter/index.py says why the check runs there and
        why the driver never reads them)."""
        if not self.dedupe.enabled or self.registry is not None:
            return []
        url = dataset.url if dataset is not None else None
        return [Service("curate-dedupe", open_registry, (self.dedupe.match, url), status="describe_load")]

    def bind(self, name: str, proxy) -> None:
        self.registry = proxy

    def settle(self, task: VideoTask) -> None:
        """A video this stage let through that ended rejected later: its claim will not be committed."""
        if (self.registry is not None and task.rejected and task.reject_stage != self.name
                and any(t.stage == self.name for t in task.stage_timings)):
            self.registry.release(task.video_id)

    def setup(self) -> None:
        self.benchmarks()

    def benchmarks(self) -> SignatureIndex:
        """The benchmark fingerprints, read once per replica."""
        if self._benchmarks is None:
            index = SignatureIndex(self.decontaminate.match)
            for path in self.decontaminate.fingerprint_files:
                for sig in read_fingerprints(path):
                    index.add(sig)
            self._benchmarks = index
        return self._benchmarks

    def process(self, task: VideoTask) -> VideoTask:
        return self.process_batch([task])[0]

    def process_batch(self, tasks: Sequence[VideoTask]) -> list[VideoTask]:
        """Benchmark checks per video, then the batch's near-duplicate claims in one registry call."""
        claims: list[tuple[VideoTask, Query]] = []
        for task in tasks:
            dense, task.hash_track = task.hash_track, None
            if task.rejected or dense is None or task.signals is None:
                continue
            query = Query(np.asarray(dense.times, np.float64), np.asarray(dense.hashes, np.uint64),
                          task.duration_s or 0.0)
            if self.decontaminate.fingerprint_files:
                hit = self.benchmarks().best_match(query)
                if hit is not None:
                    task.reject(Reason.benchmark_overlap,
                                f"matches benchmark video {hit.video_id}: {hit.describe()}", stage=self.name)
                    continue
            if self.dedupe.enabled:
                claims.append((task, query))
        if claims:
            if self.registry is None:
                self.registry = LocalRegistry(self.dedupe.match)
            hits = self.registry.claim_many([
                (task.video_id, query, Signature.from_points(task.video_id, task.duration_s or 0.0,
                                                             task.signals.signature))
                for task, query in claims])
            for (task, _), hit in zip(claims, hits):
                if hit is not None:
                    task.reject(Reason.near_duplicate, f"near-duplicate of {hit.video_id}: {hit.describe()}",
                                stage=self.name)
        return list(tasks)
