"""One run of a job: ingest, skip what is committed, stream through the stages, commit.

Plain orchestration; the Ray specifics live in `pipeline/runner.py`.
"""
from __future__ import annotations

import logging
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from pipeline.card import CardState, write_card
from pipeline.keys import fingerprint, stage_keys
from pipeline.config import JobConfig
from pipeline.records import TRANSIENT_REASONS, Reason, VideoTask, video_row
from pipeline.report import (quality_report, render_markdown, render_signal_markdown, render_signal_text,
                             render_text, signal_distributions)
from pipeline.stage import Stage, check_flow, leaves
from pipeline.store import DatasetStore, Ledger, LedgerEntry, new_run_id, utc_now

log = logging.getLogger("curate")

# Rejections worth retrying on the next run: the cause is outside the video itself.
RETRYABLE_REASONS = frozenset(r.value for r in TRANSIENT_REASONS)
# what ingest fills on every task: the stages' declared reads start from these
INGEST_FIELDS = frozenset({"video_id", "source", "source_kind", "input_index", "url"})


def pipeline_fingerprint(stages: Sequence[Stage]) -> str:
    """One hash of every stage key (version, config read, prompts, models): a committed video is
    skipped only while it is unchanged. What changed is redone cheaply: downloads, segmentation
    and model answers are reused from their caches wherever their own keys still match."""
    return fingerprint(stage_keys(stages))


def select_pending(tasks: Iterable[VideoTask], ledger: Ledger | dict[str, LedgerEntry], fingerprint: str,
                   *, force: bool = False) -> tuple[list[VideoTask], int]:
    """Tasks that still need work, and how many were skipped as already committed."""
    tasks = list(tasks)
    if isinstance(ledger, Ledger):  # columnar: one vectorised lookup, no Python object per committed video
        flags = ledger.done([t.video_id for t in tasks], fingerprint)
    else:
        flags = []
        for task in tasks:
            entry = ledger.get(task.video_id)
            flags.append(entry is not None and entry.fingerprint == fingerprint
                         and not (entry.status == "rejected" and entry.reason in RETRYABLE_REASONS))
    pending, skipped = [], 0
    for task, done in zip(tasks, flags):
        if done and not force:
            skipped += 1
        else:
            pending.append(task)
    return pending, skipped


@dataclass
class RunSummary:
    """What a run did; printed at the end and stored under `_runs/`."""

    run_id: str
    job: str
    out: str
    config_hash: str
    fingerprint: str
    started_at: str
    inputs: int = 0
    duplicates: int = 0
    skipped: int = 0
    processed: int = 0
    committed: Counter = field(default_factory=Counter)
    status: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)
    stage_counts: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    stage_seconds: Counter = field(default_factory=Counter)
    quarantined: int = 0
    chunks: int = 0
    reconcile: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    cost: Counter = field(default_factory=Counter)
    qa_kept: int = 0
    item_rejects: Counter = field(default_factory=Counter)
    verify_cost: Counter = field(default_factory=Counter)
    decisions: Counter = field(default_factory=Counter)
    quality: dict[str, Any] = field(default_factory=dict)
    accepted_video_s: float = 0.0  # duration of the accepted videos (token cost per video-hour)
    commit_latency_s: list[float] = field(default_factory=list)  # finished at the driver -> committed
    first_result_s: float | None = None  # run start -> the first finished video at the driver
    fetch_limiter: dict[str, Any] = field(default_factory=dict)  # the shared limiter's stats for this run
    signals: dict[str, Any] = field(default_factory=dict)

    def record(self, task: VideoTask) -> None:
        self.processed += 1
        self.status[task.status if task.rejected else "accepted"] += 1
        if task.rejected:
            self.reasons[task.reject_reason] += 1
            self.stage_counts[task.reject_stage or "?"]["rejected"] += 1
        for timing in task.stage_timings:
            self.stage_counts[timing.stage]["processed"] += 1
            self.stage_seconds[timing.stage] += timing.seconds
        # paid, whatever became of the video (zeros left out: no model stage, no cost lines)
        self.cost.update({k: v for k, v in task.cost.as_dict().items() if v})
        self.verify_cost.update({k: v for k, v in task.verify_cost.as_dict().items() if v})
        if not task.rejected:
            self.accepted_video_s += float(task.duration_s or 0.0)
        if task.rejected or task.synthesis is None:  # a rejected video publishes no items (rows_for)
            return
        items = task.synthesis.items
        for item in items:
            if item.verification:
                self.decisions[item.verification.decision] += 1
        self.qa_kept += sum(1 for i in items if not (i.verification and i.verification.decision == "reject"))
        self.item_rejects.update(r.reason for r in task.synthesis.rejected)

    def cost_report(self) -> dict[str, Any]:
        """Teacher requests and tokens in total, per processed video and per kept QA item."""
        if not self.cost and not self.verify_cost:
            return {}
        videos = max(1, self.status.get("accepted", 0))
        out = {}
        for who, cost in (("teacher", self.cost), ("verifier", self.verify_cost)):
            if cost:
                hours = max(self.accepted_video_s / 3600.0, 1e-9)
                out[who] = {"total": dict(cost),
                            "per_video": {k: round(v / videos, 1) for k, v in cost.items()},
                            "per_kept_item": {k: round(v / max(1, self.qa_kept), 1) for k, v in cost.items()},
                            "per_video_hour": {k: round(v / hours, 1) for k in ("visual_tokens", "visual_prefill_tokens",
                                                                              "prompt_tokens", "output_tokens")
                                               if (v := cost.get(k, 0))}}
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "job": self.job, "out": self.out, "config_hash": self.config_hash,
            "pipeline_fingerprint": self.fingerprint, "started_at": self.started_at,
            "finished_at": utc_now(), "wall_s": round(self.wall_s, 2),
            "inputs": self.inputs, "duplicates": self.duplicates, "skipped_committed": self.skipped,
            "processed": self.processed, "status": dict(self.status),
            "rejects_by_reason": dict(self.reasons.most_common()),
            "stages": {name: {"processed": c["processed"], "rejected": c["rejected"],
                              "seconds": round(self.stage_seconds[name], 3)}
                       for name, c in self.stage_counts.items()},
            "committed_rows": dict(self.committed), "quarantined": self.quarantined,
            "chunks": self.chunks, "reconcile": self.reconcile, "notes": self.notes,
            "qa_kept": self.qa_kept, "qa_rejects_by_reason": dict(self.item_rejects.most_common()),
            "verification_decisions": dict(self.decisions), "quality": self.quality,
            "content_signals": self.signals,
            "cost": self.cost_report(), "fetch_limiter": self.fetch_limiter,
            "commit_latency_s": _latency(self.commit_latency_s),
            "first_result_s": None if self.first_result_s is None else round(self.first_result_s, 3),
        }

    def render(self) -> str:
        d = self.as_dict()
        lines = [f"run {self.run_id} of job '{self.job}' -> {self.out}",
                 f"  inputs {self.inputs} (duplicates collapsed {self.duplicates}), "
                 f"already committed {self.skipped}, processed {self.processed} in {d['wall_s']} s",
                 f"  accepted {self.status.get('accepted', 0)}, rejected {self.status.get('rejected', 0)}"]
        if self.reasons:
            lines.append("  rejects by reason: " + ", ".join(f"{k} {v}" for k, v in self.reasons.most_common()))
        if d["stages"]:
            lines.append("  stage            videos  rejected  seconds")
            for name, s in d["stages"].items():
                lines.append(f"  {name:<16} {s['processed']:>6}  {s['rejected']:>8}  {s['seconds']:>7.2f}")
        if self.cost or self.verify_cost:
            lines.append(f"  QA items written {self.qa_kept}; rejected by checks: "
                         + (", ".join(f"{k} {v}" for k, v in self.item_rejects.most_common()) or "none"))
            if self.decisions:
                lines.append("  verification: " + ", ".join(f"{k} {v}" for k, v in self.decisions.most_common()))
            for who, c in self.cost_report().items():
                lines.append(f"  {who} cost: " + ", ".join(f"{k} {v}" for k, v in c["total"].items())
                             + f"; per video {c['per_video']}; per QA item {c['per_kept_item']}"
                             + f"; per video-hour {c['per_video_hour']}")
        if self.commit_latency_s:
            lat = _latency(self.commit_latency_s)
            lines.append(f"  commit latency (finished -> committed): p50 {lat['p50']} s, max {lat['max']} s")
        lines.append("  committed rows: " + (", ".join(f"{k} {v}" for k, v in sorted(self.committed.items())) or "none")
                     + f" in {self.chunks} chunk(s); quarantined {self.quarantined}")
        if self.signals.get("videos"):
            lines.append("  " + render_signal_text(self.signals))
        if self.quality and self.quality.get("sft_rows"):
            lines.append("  " + render_text(self.quality).replace("\n", "\n  "))
        if self.fetch_limiter.get("counts") or self.fetch_limiter.get("pauses"):
            from pipeline.acquire.limiter import stats_line

            lines.append("  " + stats_line(self.fetch_limiter))
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def cost_markdown(summary: "RunSummary") -> str:
    """The card's token section: what the last run's model requests cost, per kept item and per hour."""
    lines = ["## Model cost (last run)", "", "| model | per kept item | per video-hour | total |", "|---|---|---|---|"]
    for who, c in summary.cost_report().items():
        item, hour, total = c["per_kept_item"], c["per_video_hour"], c["total"]
        lines.append(f"| {who} | visual {item.get('visual_tokens', 0)} (prefilled {item.get('visual_prefill_tokens', 0)})"
                     f", prompt {item.get('prompt_tokens', 0)}, output {item.get('output_tokens', 0)} "
                     f"| visual {hour.get('visual_tokens', 0)}, prompt {hour.get('prompt_tokens', 0)} "
                     f"| {total.get('requests', 0)} requests ({total.get('cached_requests', 0)} reused) |")
    return "\n".join(lines) + "\n"


def _latency(values: Sequence[float]) -> dict[str, float]:
    """p50 / max seconds from a finished video's arrival at the driver to its commit."""
    if not values:
        return {}
    ordered = sorted(values)
    return {"p50": round(ordered[len(ordered) // 2], 3), "max": round(ordered[-1], 3), "videos": len(ordered)}


class PlanFailed(RuntimeError):
    """The Ray plan died mid-run; what finished is committed, the rest is recorded for a re-run."""


StageFactory = Callable[[JobConfig, Path], list[Stage]]
RowBuilder = Callable[[VideoTask], dict[str, list[dict[str, Any]]]]


def rows_for(task: VideoTask, cfg: JobConfig, keys: list[dict[str, str]]) -> dict[str, list[dict[str, Any]]]:
    """Output rows of one finished task, per config: its video row (with the stage keys it was
    made with), plus its QA rows."""
    from synth.publish import publish_rows

    rows: dict[str, list[dict[str, Any]]] = {"videos": [{**video_row(task), "stage_keys": keys}]}
    if not task.rejected and task.synthesis is not None:
        rows.update(publish_rows(task, cfg.verify.policy))
    return rows


def execute(cfg: JobConfig, tasks: Sequence[VideoTask], stages: Sequence[Stage], *, progress: bool,
            echo: Callable[[str], None]) -> Iterable[VideoTask]:
    """Stream tasks through the stages: all in actors, or model rounds as passes per wave."""
    import os

    from pipeline.passes import check_pass_resources, run_waves
    from pipeline.runner import check_stage_gpus, run_plan

    check_stage_gpus(stages, remote=bool(cfg.ray.address or os.environ.get("RAY_ADDRESS")))
    if any(s.runs_rounds for s in leaves(stages)):  # the model servers' flags, before any video is paid for
        from synth.backends.server_check import check_servers

        check_servers({"teacher": cfg.synth.teacher, "verifier": cfg.verify.verifier}, echo)

    mode = cfg.synth.execution_mode(cfg.verify.verifier)
    split = next((i for i, s in enumerate(stages) if s.runs_rounds), len(stages))
    if mode == "actors" or split == len(stages):
        return run_plan(tasks, stages, progress=progress)
    if not all(s.runs_rounds for s in stages[split:]):
        raise ValueError("passes need the model stages last: " + " -> ".join(s.describe() for s in stages))
    check_pass_resources(stages[split:], remote=bool(cfg.ray.address or os.environ.get("RAY_ADDRESS")))
    echo(f"model rounds run as Ray Data passes, {cfg.synth.wave_videos} videos per wave")
    return run_waves(tasks, stages[:split], stages[split:], wave_videos=cfg.synth.wave_videos,
                     replicas={"teacher": cfg.synth.replicas, "verifier": cfg.verify.replicas},
                     progress=progress, echo=echo)


def attach_results(stages: Sequence[Stage], out: str) -> None:
    """Model stages keep the answers they paid for beside the dataset (OUT/_cache) and reuse them."""
    from synth.results import ResultStore

    store = ResultStore(out)
    for stage in leaves(stages):
        if stage.runs_rounds:
            stage.results = store


def check_media_placement(cfg: JobConfig, stages: Sequence[Stage], echo: Callable[[str], None]) -> None:
    """On a cluster whose nodes do not share work_dir, committed rows must not name node-local files.

    With fetch.storage_url every accepted row carries the shared URI. Without it, the run
    goes ahead only if every node sees the same work_dir (a shared mount), or if the user
    accepts node-local media (media.allow_node_local, with a warning); otherwise it stops
    before any work, naming the key to set.
    """
    from pipeline.runner import nodes_sharing_dir

    if cfg.fetch.storage_url:
        return
    shared, nodes = nodes_sharing_dir(Path(cfg.work_dir).resolve())
    if nodes <= 1 or shared == nodes:
        return
    msg = (f"{nodes} Ray nodes, but only {shared} see this work_dir ({Path(cfg.work_dir).resolve()}): the videos "
           "would stay on the disks of the nodes that fetched them and the committed rows would name files other "
           "nodes (and trainers) cannot open")
    if not cfg.media.allow_node_local:
        raise ValueError(msg + ". Set fetch.storage_url to a store every node reaches (s3://..., gs://..., or a "
                         "shared mount), or --set media.allow_node_local=true to accept node-local media")
    echo("WARNING: " + msg + "; media.allow_node_local is set: each row's media_node names the node that has it")


class Committer:
    """Commits finished tasks in chunks (every `commit_every` videos or `commit_interval_s`),
    with the stage keys they were made with; updates the summary and the card after each."""

    def __init__(self, cfg: JobConfig, store: DatasetStore, summary: RunSummary, card: CardState,
                 keys: list[dict[str, str]], pending: int, started: float, echo: Callable[[str], None]) -> None:
        self.cfg, self.store, self.summary, self.card, self.keys = cfg, store, summary, card, keys
        self.pending, self.started, self.echo = pending, started, echo
        self.provenance = {"config_hash": summary.config_hash, "pipeline_fingerprint": summary.fingerprint,
                           "run_id": summary.run_id}
        self.buffer: list[VideoTask] = []
        self.arrived: list[float] = []  # when each buffered task reached the driver
        self.seq = 0

    def take(self, task: VideoTask) -> None:
        summary = self.summary
        if summary.first_result_s is None:
            summary.first_result_s = time.perf_counter() - self.started
        summary.record(task)
        self.buffer.append(task)
        self.arrived.append(time.perf_counter())
        if len(self.buffer) >= self.cfg.output.commit_every \
                or time.perf_counter() - self.arrived[0] >= self.cfg.output.commit_interval_s:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        summary = self.summary
        rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for task in self.buffer:
            for config, config_rows in rows_for(task, self.cfg, self.keys).items():
                rows[config].extend(config_rows)
        result = self.store.commit(f"{summary.run_id}-{self.seq:06d}", rows,
                                   provenance={**self.provenance, "processed_at": utc_now()})
        now = time.perf_counter()
        summary.commit_latency_s.extend(now - t for t in self.arrived)
        self.seq += 1
        summary.chunks += 1
        summary.quarantined += result.quarantined
        summary.committed.update(result.counts)
        self.card.add(result)
        write_card(self.store, self.cfg.name, self.card)  # readable after every commit
        self.buffer.clear()
        self.arrived.clear()
        done = summary.processed
        rate = done / max(1e-9, now - self.started)
        self.echo(f"committed {done}/{self.pending} videos ({summary.status.get('rejected', 0)} rejected), "
                  f"{rate:.2f} videos/s")


def stream(cfg: JobConfig, stages: Sequence[Stage], todo: Sequence[VideoTask], store: DatasetStore,
           take: Callable[[VideoTask], None], services: list, *, progress: bool,
           echo: Callable[[str], None]) -> tuple[set[str], BaseException | None]:
    """Start Ray and the stages' services (appended to `services`, closed by the caller), run the
    plan and hand every finished task to `take`; the IDs that came back, and what killed the plan."""
    from pipeline.runner import init_ray
    from pipeline.services import start_services

    seen: set[str] = set()
    where = init_ray(cfg.ray.address, cfg.ray.num_cpus, cfg.ray.object_store_memory_mb, cfg.ray.log_to_driver)
    echo(f"running on {where}")
    check_media_placement(cfg, stages, echo)
    services += start_services(stages, dataset=store)  # limiter, near-duplicate registry, ...
    for _, service, proxy in services:
        if service.note:
            echo(service.note)
        if service.status:
            echo(getattr(proxy, service.status)())
    flat = leaves(stages)
    try:
        for task in execute(cfg, todo, stages, progress=progress, echo=echo):
            seen.add(task.video_id)
            for stage in flat:
                stage.settle(task)  # e.g. a near-duplicate claim that will not be committed
            take(task)
    except Exception as exc:  # noqa: BLE001 - the plan died (nodes lost, retries spent): keep what finished
        return seen, exc
    return seen, None


def commit_lost(lost: Sequence[VideoTask], failure: BaseException | None, take: Callable[[VideoTask], None],
                echo: Callable[[str], None]) -> None:
    """Every input still ends somewhere: what did not come back is retried by the next run, never
    silently dropped."""
    if not lost:
        return
    why = (f"{type(failure).__name__}: {str(failure).strip().splitlines()[-1] if str(failure).strip() else ''}"
           if failure else "the task did not come back from the Ray Data plan")
    echo(f"{len(lost)} videos did not finish ({why[:300]}); committed as stage_error, the next run retries them")
    for task in lost:
        take(task.reject(Reason.stage_error, f"plan: {why}"[:2000], stage="runner"))


def service_reports(stages: Sequence[Stage], summary: RunSummary) -> None:
    """What the services did (the fetch limiter: how long fetching paused, and why)."""
    for stage in leaves(stages):
        try:
            summary.fetch_limiter = stage.run_report().get("fetch_limiter", summary.fetch_limiter)
        except Exception as exc:  # noqa: BLE001 - a report, never a reason to lose the run's end
            summary.notes.append(f"{stage.name} service stats unavailable: {type(exc).__name__}")


def finish(cfg: JobConfig, store: DatasetStore, summary: RunSummary, card: CardState, started: float) -> None:
    """Drop superseded rows, write the run's record, its quality and signal reports and the card."""
    stale = store.reconcile()  # drop rows superseded by this run (retries, force, new versions)
    if stale.get("stale_rows_removed"):
        summary.notes.append(f"replaced {stale['stale_rows_removed']} rows of earlier runs")
    if store.compact_due(cfg.output.compact_after):
        compact_store(store, out=summary.out, note=summary.notes.append)
    summary.wall_s = time.perf_counter() - started
    quality = quality_report(store)
    summary.quality = quality
    signals = signal_distributions(store)
    summary.signals = signals
    store.write_run(summary.run_id, summary.as_dict())
    sections = [render_markdown(quality)] if quality["sft_rows"] or quality["rejects"] else []
    if summary.cost_report():
        sections.append(cost_markdown(summary))
    if signals["videos"]:
        sections.append(render_signal_markdown(signals))
    write_card(store, cfg.name, CardState.from_store(store), sections)  # from the log: no shard is read


def compact_store(store: DatasetStore, *, out: str, note: Callable[[str], None],
                  shard_bytes: int | None = None) -> None:
    """Merge the small shards into few large ones; forget the model answers of permanently rejected
    videos (a later run never asks their requests again unless their rows change)."""
    from synth.results import ResultStore

    t0 = time.perf_counter()
    result = store.compact(shard_bytes)
    pruned = ResultStore(out, storage_options=store.storage_options).prune(result.permanent_rejects)
    if result.files_before != result.files_after or pruned:
        note(f"compacted {result.files_before} files into {result.files_after} ({result.retry_rows} rows of "
             f"transient rejects kept apart); pruned {pruned} answer files of permanent rejects "
             f"in {time.perf_counter() - t0:.1f} s")


def run_job(cfg: JobConfig, out: str, *, ingest: Callable[[JobConfig, Path], tuple[list[VideoTask], int]],
            stage_factory: StageFactory, force: bool = False, progress: bool = True,
            echo: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True)) -> RunSummary:
    """Run `cfg` into the dataset at `out`; safe to re-run after any crash."""
    from pipeline.services import close_services

    started = time.perf_counter()
    run_id = new_run_id()
    work_dir = Path(cfg.work_dir).resolve()
    stages = stage_factory(cfg, work_dir)
    attach_results(stages, out)
    check_flow(stages, INGEST_FIELDS)
    keys = stage_keys(stages)
    summary = RunSummary(run_id=run_id, job=cfg.name, out=out, config_hash=cfg.content_hash(),
                         fingerprint=pipeline_fingerprint(stages), started_at=utc_now())
    store = DatasetStore(out, compression=cfg.output.compression, shard_bytes=cfg.output.shard_mb << 20)
    store.init()
    store.acquire_lock(run_id)
    services: list = []
    try:
        summary.reconcile = store.reconcile()
        if summary.reconcile:
            echo(f"recovered an interrupted run: {summary.reconcile}")
        card = CardState.from_store(store)
        write_card(store, cfg.name, card)
        tasks, summary.duplicates = ingest(cfg, work_dir)
        summary.inputs = len(tasks)
        t0 = time.perf_counter()
        ledger = store.ledger([t.video_id for t in tasks])  # only the inputs' rows: memory follows the inputs
        pending, summary.skipped = select_pending(tasks, ledger, summary.fingerprint, force=force)
        echo(f"{summary.inputs} inputs: {summary.skipped} already committed (ledger of {len(ledger)} read in "
             f"{time.perf_counter() - t0:.2f} s), {len(pending)} to process; stages: "
             + " -> ".join(s.describe() for s in stages))
        committer = Committer(cfg, store, summary, card, keys, len(pending), started, echo)
        todo = [t for t in pending if not t.rejected]
        for task in pending:
            if task.rejected:  # rejected at ingest: nothing to run
                committer.take(task)
        committer.flush()  # what ingest rejected is committed before the plan starts (Ray's start takes seconds)
        seen, failure = (stream(cfg, stages, todo, store, committer.take, services, progress=progress, echo=echo)
                         if todo else (set(), None))
        lost = [t for t in todo if t.video_id not in seen]
        commit_lost(lost, failure, committer.take, echo)
        committer.flush()
        service_reports(stages, summary)
        if failure is not None:
            raise PlanFailed(f"the plan failed after committing {summary.processed - len(lost)} finished videos; "
                             f"{len(lost)} are recorded as stage_error and re-run next time: {failure}") from failure
        finish(cfg, store, summary, card, started)
        return summary
    finally:
        close_services(services)
        store.release_lock()
