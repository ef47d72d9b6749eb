"""The runner on a real local Ray: row failures become data, nothing is lost, re-runs are incremental."""
from __future__ import annotations

import datasets

from pipeline.config import load_config
from pipeline.job import run_job, select_pending
from pipeline.records import Reason, VideoTask
from pipeline.runner import run_plan
from pipeline.stage import Resources, Stage, apply_stage
from pipeline.store import DatasetStore, LedgerEntry


class Measure(Stage):
    """Fills media fields from the ID; fails on IDs starting with 'x' (a crashing row)."""

    name = "measure"
    version = "1"
    resources = Resources(cpus=0.5, concurrency=2, batch_size=3)

    def process(self, task: VideoTask) -> VideoTask:
        if task.video_id.startswith("x"):
            raise ValueError("cannot measure this one")
        task.video_path, task.width, task.height = f"/media/{task.video_id}.mp4", 64, 48
        task.duration_s = float(len(task.video_id))
        return task


class Gate(Stage):
    name = "gate"
    version = "1"
    resources = Resources(cpus=0.5, concurrency=1, batch_size=4)

    def process(self, task: VideoTask) -> VideoTask:
        if task.video_id.startswith("s"):
            return task.reject(Reason.too_short, "short", stage=self.name)
        return task


class Crasher(Stage):
    """Kills its own worker process on IDs starting with 'k' (a decoder segfault, say)."""

    name = "crasher"
    version = "1"
    resources = Resources(cpus=0.5, concurrency=1)

    def process(self, task: VideoTask) -> VideoTask:
        if task.video_id.startswith("k"):
            import os

            os._exit(1)
        return task


def test_a_video_that_kills_its_worker_is_rejected_after_bounded_attempts(ray_local):
    """Ray retries tasks of dead actors without limit (node loss must not fail a run), so the
    runner's attempt ledger is what stops a poison video from looping forever."""
    from pipeline.runner import MAX_ATTEMPTS

    ids = ["aaaaaaaaaa1", "kkkkkkkkkk1", "aaaaaaaaaa2"]
    out = {t.video_id: t for t in run_plan(_tasks(ids), [Crasher()], progress=False)}
    assert sorted(out) == sorted(ids)
    assert out["kkkkkkkkkk1"].reject_reason == "stage_error"
    assert f"died {MAX_ATTEMPTS} times" in out["kkkkkkkkkk1"].reject_message
    assert out["aaaaaaaaaa1"].reject_reason is None and out["aaaaaaaaaa2"].reject_reason is None


def _tasks(ids):
    return [VideoTask(video_id=v, source=v, source_kind="youtube", input_index=i) for i, v in enumerate(ids)]


def test_apply_stage_isolates_a_failing_row_and_skips_rejected():
    tasks = _tasks(["aaaaaaaaaaa", "xxxxxxxxxxx", "bbbbbbbbbbb"])
    tasks.append(VideoTask("ccccccccccc", "c", "youtube", 3).reject(Reason.bad_id, "no", stage="ingest"))
    out = apply_stage(Measure(), tasks)
    assert [t.video_id for t in out] == ["aaaaaaaaaaa", "xxxxxxxxxxx", "bbbbbbbbbbb", "ccccccccccc"]
    assert out[0].width == 64 and out[2].width == 64
    assert out[1].reject_reason == "stage_error" and "cannot measure" in out[1].reject_message
    assert out[3].reject_reason == "bad_id" and out[3].stage_timings == []


def test_plan_on_ray_returns_every_task(ray_local):
    ids = [f"{c}{i:010d}" for i in range(12) for c in "asx"][:30]
    out = list(run_plan(_tasks(ids), [Measure(), Gate()], progress=False))
    assert sorted(t.video_id for t in out) == sorted(ids)
    reasons = {t.video_id: t.reject_reason for t in out}
    assert all(reasons[v] == "stage_error" for v in ids if v.startswith("x"))
    assert all(reasons[v] == "too_short" for v in ids if v.startswith("s"))
    assert all(reasons[v] is None for v in ids if v.startswith("a"))


def _job(tmp_path, ids, **kw):
    cfg = load_config(None, [f"work_dir={tmp_path / 'work'}", "output.commit_every=4"])
    ingest = lambda c, w: (_tasks(ids), 0)  # noqa: E731
    return run_job(cfg, str(tmp_path / "out"), ingest=ingest, stage_factory=lambda c, w: [Measure(), Gate()],
                   progress=False, echo=lambda s: None, **kw)


def test_incremental_runs_process_only_new_ids(ray_local, tmp_path):
    first = [f"a{i:010d}" for i in range(6)] + ["s0000000001", "x0000000001"]
    s1 = _job(tmp_path, first)
    assert s1.processed == 8 and s1.status["accepted"] == 6 and s1.reasons == {"too_short": 1, "stage_error": 1}
    # same input again: nothing new, apart from the retryable stage_error
    s2 = _job(tmp_path, first)
    assert s2.skipped == 7 and s2.processed == 1
    # added IDs: only those are processed
    s3 = _job(tmp_path, first + ["a0000000100", "a0000000101"])
    assert s3.processed == 3 and s3.skipped == 7
    ds = datasets.load_dataset(str(tmp_path / "out"), "videos", split="train")
    assert sorted(ds["video_id"]) == sorted(first + ["a0000000100", "a0000000101"])
    # --force reprocesses everything and still leaves one row per video
    s4 = _job(tmp_path, first, force=True)
    assert s4.processed == 8
    table = DatasetStore(str(tmp_path / "out")).read_table("videos", ["video_id"])
    assert sorted(table.column("video_id").to_pylist()) == sorted(first + ["a0000000100", "a0000000101"])


def test_select_pending_respects_fingerprint_and_retryable_reasons():
    tasks = _tasks(["aaaaaaaaaaa", "bbbbbbbbbbb", "ccccccccccc", "ddddddddddd"])
    ledger = {"aaaaaaaaaaa": LedgerEntry("fp", "accepted", None),
              "bbbbbbbbbbb": LedgerEntry("old", "accepted", None),
              "ccccccccccc": LedgerEntry("fp", "rejected", "rate_limited")}
    pending, skipped = select_pending(tasks, ledger, "fp")
    assert [t.video_id for t in pending] == ["bbbbbbbbbbb", "ccccccccccc", "ddddddddddd"] and skipped == 1
    pending, skipped = select_pending(tasks, ledger, "fp", force=True)
    assert len(pending) == 4 and skipped == 0


def test_a_failed_batch_is_retried_on_copies_without_resending_paid_rounds():
    """apply_stage retries a failed batch row by row: the retries start from the tasks as they
    came in (no cost counted twice) and requests already answered are served from the memo."""
    from synth.backends.types import ChatRequest, ChatResult
    from synth.rounds import ModelStage, Round

    sent: list[str] = []

    class Echo:
        name = "echo"

        def setup(self) -> None:
            pass

        def generate(self, requests):
            sent.extend(r.key for r in requests)
            return [ChatResult(key=r.key, texts=[r.prompt], ok=True, prompt_tokens=10) for r in requests]

    class TwoRounds(ModelStage):
        name = "two_rounds"

        def __init__(self):
            from synth.backends.config import BackendConfig

            self.roles, self.factories = {"teacher": BackendConfig(model="echo")}, {"teacher": Echo}

        def rounds(self, tasks):
            rnd = Round("first", "teacher", "cost")
            for t in tasks:
                rnd.ask(t, ChatRequest(key=f"{t.video_id}/1", system=None, prompt=f"describe {t.video_id}"))
            yield rnd
            rnd = Round("second", "teacher", "cost")
            for t in tasks:
                if t.video_id.startswith("x"):
                    raise ValueError("the round logic trips over this video")
                rnd.ask(t, ChatRequest(key=f"{t.video_id}/2", system=None, prompt=f"ask {t.video_id}"))
            results = yield rnd
            for t, r in zip(rnd.owners, results):
                t.title = r.texts[0]

    stage = TwoRounds()
    stage.setup()
    out = apply_stage(stage, _tasks(["aaaaaaaaaaa", "xxxxxxxxxxx"]))
    good, bad = out
    assert good.title == "ask aaaaaaaaaaa" and bad.reject_reason == "stage_error"
    # round 1 went out once per video (the retries were served from the memo), round 2 once for the good one
    assert sorted(sent) == ["aaaaaaaaaaa/1", "aaaaaaaaaaa/2", "xxxxxxxxxxx/1"]
    assert good.cost.requests == 1 and good.cost.cached_requests == 1
    assert good.cost.prompt_tokens == 10  # the memo hit costs nothing; the retry started clean
    assert len([t for t in good.stage_timings if t.stage == "two_rounds"]) == 1
