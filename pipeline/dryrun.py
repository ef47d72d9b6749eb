"""`curate plan JOB --out OUT`: what a run would redo, and what its model rounds would cost.

Nothing is fetched, decoded or sent. For every input the ledger says whether it is new,
left for a retry, changed, or unchanged (skipped); for a changed one, the stage keys stored
in its `videos` row say which stage and which part (version, config, prompts, model) differ.
The model rounds of committed videos are then replayed against the answers stored in
OUT/_cache, with the same request builders the stages use: a request whose digest is
stored costs nothing; one that is not is counted as sent, with the tokens its previous
answer took. A round that depends on an answer that will be asked again cannot be known
exactly before the model answers, so it is replayed twice: once as if the model answers
as it did last time (its previous answer: what is built from it is found in the cache,
`send`), once as if every re-asked answer is new (the previous answer marked, so what is
built from it counts as new, `up_to`). Requests that depend only on stored answers are
exact in both. Videos never processed have no stored requests; they are counted, not replayed.
"""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

from pipeline.config import JobConfig
from pipeline.records import TRANSIENT_REASONS, Cue, Frame, Reason, Scene, VideoTask
from pipeline.stage import Stage, leaves

_MARK = "\u2063"  # an invisible separator: an answer "as last time", but not the same request text


@dataclass
class RoundEstimate:
    """One round's requests: `cached` are answered from OUT/_cache; `send` go to the model if the
    models answer what is re-asked as they did last time; `up_to` if every re-asked answer is new
    (then everything built from it is new too). Equal unless the round depends on a re-asked answer."""

    cached: int = 0
    send: int = 0
    up_to: int = 0
    prompt_tokens: int = 0  # of the `up_to` requests, from their previous answers' usage where known
    visual_tokens: int = 0


@dataclass
class PlanReport:
    inputs: int = 0
    duplicates: int = 0
    skipped: int = 0
    pending: Counter = field(default_factory=Counter)  # new | retry | changed
    stages: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))  # stage -> why -> videos
    downloads: int = 0
    downloads_cached: int = 0
    rounds: dict[tuple[str, str], RoundEstimate] = field(default_factory=dict)  # (role, round) -> estimate
    replayed: int = 0
    not_replayed: Counter = field(default_factory=Counter)

    def sends(self, bound: str = "send") -> dict[str, int]:
        """round -> requests it would send, `send` or `up_to` (both roles; tests compare a real re-run)."""
        out: Counter = Counter()
        for (_, name), est in self.rounds.items():
            out[name] += getattr(est, bound)
        return dict(out)

    def render(self) -> str:
        lines = [f"plan: {self.inputs} inputs (duplicates collapsed {self.duplicates}): {self.skipped} unchanged "
                 f"(skipped), {sum(self.pending.values())} to process ("
                 + ", ".join(f"{k} {v}" for k, v in sorted(self.pending.items())) + ")"]
        if self.stages:
            lines.append("  stage            videos  why")
            for stage, why in self.stages.items():
                lines.append(f"  {stage:<16} {sum(why.values()):>6}  "
                             + ", ".join(f"{k} {v}" for k, v in why.most_common()))
        lines.append(f"  downloads: {self.downloads} (already on disk or in the store: {self.downloads_cached})")
        if self.rounds:
            lines.append(f"  model requests, replayed for {self.replayed} committed videos against OUT/_cache:")
            lines.append("  role      round        cached    send   up to  prompt tokens  visual tokens")
            for (role, name), e in self.rounds.items():
                lines.append(f"  {role:<9} {name:<11} {e.cached:>7} {e.send:>7} {e.up_to:>7} {e.prompt_tokens:>14} "
                             f"{e.visual_tokens:>14}")
            lines.append(f"  total: {sum(e.send for e in self.rounds.values())} requests to send "
                         f"(up to {sum(e.up_to for e in self.rounds.values())} if re-asked answers differ from "
                         "the last ones)")
        if self.not_replayed:
            lines.append("  not replayed (no stored requests): "
                         + ", ".join(f"{k} {v}" for k, v in self.not_replayed.most_common()))
        return "\n".join(lines)


def plan_run(cfg: JobConfig, out: str, *, force: bool = False, stage_factory: Any = None) -> PlanReport:
    """What `curate run` would do with `cfg` into `out`, without doing any of it."""
    from pipeline.job import attach_results, pipeline_fingerprint, select_pending
    from pipeline.keys import stage_keys
    from pipeline.plan import build_stages, ingest
    from pipeline.store import DatasetStore

    work_dir = Path(cfg.work_dir).resolve()
    stages = (stage_factory or build_stages)(cfg, work_dir)
    attach_results(stages, out)
    keys = stage_keys(stages)
    report = PlanReport()
    tasks, report.duplicates = ingest(cfg, work_dir)
    report.inputs = len(tasks)
    store = DatasetStore(out)
    ledger = store.ledger([t.video_id for t in tasks]) if store.fs.exists(store.path("data", "videos")) else {}
    pending, report.skipped = select_pending(tasks, ledger, pipeline_fingerprint(stages), force=force)
    current = _by_stage(keys)
    whys: dict[str, int] = {}  # each distinct answer of `_why`, once
    seen = _committed_whys(store, {t.video_id for t in pending if t.video_id in ledger}, current, force,
                           whys) if ledger else {}
    reasons = [json.loads(w) for w in whys]
    flat = leaves(stages)
    fetch = next((s for s in flat if s.fetches_media), None)
    replay: dict[str, VideoTask] = {}
    for task in pending:
        got = seen.get(task.video_id)
        if task.rejected:
            report.pending["rejected at ingest"] += 1
            continue
        why = reasons[got[0]] if got else _why(None, current, force)
        report.pending[why["kind"]] += 1
        for stage, reason in why["stages"].items():
            report.stages[stage][reason] += 1
        if fetch is not None:
            if fetch.has_media(task):
                report.downloads_cached += 1
            else:
                report.downloads += 1
        if got and got[1]:
            replay[task.video_id] = task
        else:
            report.not_replayed["never accepted before"] += 1
    del seen
    model_stages = [s for s in flat if s.runs_rounds]
    for task, row in _replay_rows(store, replay):
        if _replay_video(task, row, model_stages, report, new_answers=False):
            report.replayed += 1
            _replay_video(task, row, model_stages, report, new_answers=True)
        else:
            report.not_replayed["no stored requests"] += 1
    return report


def _committed_whys(store: Any, ids: set[str], current: dict[str, dict[str, str]], force: bool,
                    whys: dict[str, int]) -> dict[str, tuple[int, bool]]:
    """video_id -> (its `_why`, as a number in `whys`; accepted) for the committed pending videos,
    read a record batch at a time: ~100 bytes a pending video, not its row."""
    import pyarrow as pa
    import pyarrow.compute as pc

    wanted = pa.array(sorted(ids), pa.string())
    out: dict[str, tuple[int, bool]] = {}
    for batch in store.iter_batches("videos", ["video_id", "status", "reject_reason", "stage_keys"]):
        for row in batch.filter(pc.is_in(batch.column("video_id"), value_set=wanted)).to_pylist():
            key = json.dumps(_why(row, current, force))
            out[row["video_id"]] = (whys.setdefault(key, len(whys)), row["status"] == "accepted")
    return out


def _replay_rows(store: Any, tasks: dict[str, VideoTask]) -> Iterator[tuple[VideoTask, dict]]:
    """(task, its committed row) for the videos to replay, in the store's order, one record batch of
    rows (scenes included) in memory at a time."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not tasks:
        return
    wanted = pa.array(sorted(tasks), pa.string())
    columns = ["video_id", "duration_s", "scenes", "width", "height", "fps", "frame_count"]
    for batch in store.iter_batches("videos", columns):
        batch = batch.filter(pc.is_in(batch.column("video_id"), value_set=wanted))
        for start in range(0, batch.num_rows, 256):  # a row's scenes as objects are ~50 KB: 256 rows at a time
            for row in batch.slice(start, 256).to_pylist():
                task = tasks.pop(row["video_id"], None)
                if task is not None:
                    yield task, row


def _by_stage(keys: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = defaultdict(dict)
    for k in keys:
        out[k["stage"]][k["part"]] = k["value"]
    return out


def _why(row: dict | None, current: dict[str, dict[str, str]], force: bool) -> dict[str, Any]:
    """Why a pending video runs, and which stages redo their work (an upstream change redoes
    everything after it: 'input')."""
    if row is None:
        return {"kind": "new", "stages": {s: "new" for s in current}}
    if row["status"] == "rejected" and Reason(row["reject_reason"]) in TRANSIENT_REASONS:
        return {"kind": "retry", "stages": {s: "retry" for s in current}}
    before = _by_stage(row.get("stage_keys") or [])
    stages, upstream = {}, False
    for stage, parts in current.items():
        changed = sorted(p for p in set(parts) | set(before.get(stage, {}))
                         if parts.get(p) != before.get(stage, {}).get(p))
        if changed:
            stages[stage] = "+".join(changed) if before.get(stage) else "new stage"
            upstream = True
        elif upstream or force:
            stages[stage] = "input" if upstream else "force"
    return {"kind": "changed" if stages else "force", "stages": stages}


def _task_from(task: VideoTask, row: dict, inputs: dict) -> VideoTask:
    t = replace(task)
    t.status = "accepted"
    t.duration_s, t.width, t.height, t.fps, t.frame_count = (row["duration_s"], row["width"], row["height"],
                                                              row["fps"], row["frame_count"])
    t.scenes = [Scene(**s) for s in row["scenes"] or []]
    t.frames = [Frame(timestamp_s=ts, image=b"", width=w, height=h, scene_index=si, mime=mime, index=ix, digest=dg)
                for ts, dg, w, h, si, ix, mime in inputs.get("frames", [])]
    t.subtitles = [Cue(*c) for c in inputs.get("subtitles", [])]
    return t


def _replay_video(task: VideoTask, row: dict, stages: Sequence[Stage], report: PlanReport,
                  new_answers: bool) -> bool:
    """Run the model stages' rounds for one committed video against its stored answers."""
    from synth.rounds import Round, drive, request_digest

    stored = {s.name: s.results.load(s.name, task.video_id) for s in stages if s.results is not None}
    first = stored.get(stages[0].name) if stages else None
    if not first or not first.keys:
        return False
    video = _task_from(task, row, first.inputs)
    for stage in stages:
        results = stored.get(stage.name)
        answers, by_key = (results.answers, results.keys) if results else ({}, {})

        def answer(rnd: Round, stage: Stage = stage) -> list:
            out = []
            est = report.rounds.setdefault((rnd.role, rnd.name), RoundEstimate())
            for req in rnd.requests:
                digest = request_digest(stage.model_identity(rnd.role), req)
                if digest in answers:
                    if not new_answers:
                        est.cached += 1
                    out.append(replace(answers[digest], key=req.key, cached=True))
                    continue
                previous = answers.get(by_key.get(req.key, ""))
                if new_answers:
                    est.up_to += 1
                    est.prompt_tokens += previous.prompt_tokens if previous else len(req.prompt) // 4
                    est.visual_tokens += previous.visual_tokens if previous else 0
                else:
                    est.send += 1
                out.append(_as_before(req, previous, marked=new_answers))
            return out

        saved, stage.results = stage.results, None
        try:
            drive(stage.rounds([video]), answer, None, stage.model_identity)
        finally:
            stage.results = saved
    return True


def _as_before(req: Any, previous: Any, marked: bool) -> Any:
    """The previous answer to the same request key (as many samples as asked now); marked, what
    it leads to counts as new."""
    from synth.backends.types import ChatResult

    texts = list(previous.texts) if previous is not None and previous.texts else [""]
    texts = (texts * req.n)[:req.n]
    return ChatResult(key=req.key, texts=[_marked(t) for t in texts] if marked else texts, ok=True)


def _marked(text: str) -> str:
    try:
        return json.dumps(_mark_strings(json.loads(text)))
    except ValueError:
        return text + _MARK


def _mark_strings(value: Any) -> Any:
    """Marks the free text of a JSON answer (strings with a space: questions, options, queries),
    not its codes (formats, categories, letters), so it still parses as the same items."""
    if isinstance(value, str):
        return value + _MARK if " " in value.strip() else value
    if isinstance(value, list):
        return [_mark_strings(v) for v in value]
    if isinstance(value, dict):
        return {k: _mark_strings(v) for k, v in value.items()}
    return value
