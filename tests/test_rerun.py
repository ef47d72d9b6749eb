"""Re-run only what changed: stage keys, the stored answers in OUT/_cache, and `curate plan`.

One full run with a scripted teacher and verifier, then three changes, each planned with
`curate plan` first and then run; the requests the servers really received per round are
compared with the plan's. The scripted verifier answers the same question the same way
every time (as a greedy model would), and the scripted teacher words its items differently
under another QA prompt version (as a real teacher would): so a re-asked verifier answer
leads to nothing new (the plan's `send`), and a re-asked QA reply leads to new items, all
of which are verified (the plan's `up_to`).
"""
from __future__ import annotations

import json
from collections import Counter

import pytest

from pipeline.config import load_config
from pipeline.dryrun import plan_run
from pipeline.job import run_job
from pipeline.plan import build_stages, ingest
from pipeline.records import Reason, VideoTask
from pipeline.samples import SampleSpec, make_video
from pipeline.stage import Chain, Stage
from tests.acquire_server import MediaServer, Route
from tests.teacher import TeacherServer
from tests.verifier import VerifierServer

IDS = ["rerunclip01", "rerunclip02", "rerunclip03"]
TEACHER_ROUNDS = ("caption", "summarize", "describe", "write_qa")


class RewordingTeacher(TeacherServer):
    """The scripted teacher; under the older QA prompt (write_qa.v1) its questions read differently."""

    def _next_action(self, prompt: str):
        action = super()._next_action(prompt)
        if "Video duration:" in prompt and '"query"' not in prompt and hasattr(action, "content"):
            data = json.loads(action.content)
            for item in data["items"]:
                if item.get("question"):
                    item["question"] = "In this clip, " + item["question"][0].lower() + item["question"][1:]
            action = type(action)(json.dumps(data), action.prompt_tokens, action.completion_tokens)
        return action


def sent_per_round(teacher: TeacherServer, verifier: VerifierServer, since: tuple[int, int]) -> Counter:
    """What the servers received since `since`, by the round that asks it."""
    out: Counter = Counter()
    for r in list(teacher.received)[since[0]:]:
        p = r.prompt
        name = ("caption" if "sampled from" in p else "summarize" if p.startswith(("You write search", "Below are "
                "timestamped captions")) else "describe" if p.startswith("Below are timestamped summaries") else
                "write_qa" if "Video duration:" in p else "judge" if p.startswith("You grade") else
                "reconfirm" if p.startswith("You wrote a question") else "?")
        out[name] += 1
    for r in list(verifier.received)[since[1]:]:
        out["blind" if r.prompt.startswith("You cannot see") else "verify"] += 1
    return out


class DropShortest(Stage):
    """A new filter in the media step: rejects videos under 18 s (the scripted teacher fails 13-16 s on purpose: avoided)."""

    name = "drop_shortest"
    version = "1"

    def process(self, task: VideoTask) -> VideoTask:
        if (task.duration_s or 0) < 18:
            return task.reject(Reason.too_short, "under 18 s (the new filter)", stage=self.name)
        return task


def with_filter(cfg, work_dir):
    stages = build_stages(cfg, work_dir)
    media = stages[0]
    stages[0] = Chain("media", [*media.stages, DropShortest()], media.resources)
    return stages


@pytest.fixture(scope="module")
def world(ray_local, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rerun")
    origin = MediaServer()
    for i, vid in enumerate(IDS):
        path = make_video(tmp / f"{vid}.mp4", SampleSpec([4.0, 5.0, 8.0 + i], fps=10, width=96, height=64, seed=40 + i))
        origin.add(f"/v/{vid}.mp4", Route(file=path))
    with origin, RewordingTeacher() as teacher, VerifierServer(3, teacher) as verifier:
        backend = ["openai.api_key_env=null", "openai.timeout_s=5", "openai.max_retries=1"]
        base = [f"work_dir={tmp / 'work'}", f"fetch.url_template={origin.url_template()}", "fetch.min_duration_s=5",
                "fetch.limits.requests_per_hour=null", "fetch.limits.downloads_per_hour=null",
                "fetch.subtitle_langs=[]", "select.min_duration_s=5", "synth.caption.window_s=30",
                "synth.teacher.kind=openai", "synth.teacher.model=scripted-teacher",
                f"synth.teacher.openai.base_url={teacher.base_url}", "synth.qa.items_per_video=10",
                "synth.prompts={write_qa: 1}", "verify.verifier.kind=openai", "verify.verifier.model=scripted-verifier",
                f"verify.verifier.openai.base_url={verifier.base_url}", "verify.samples=3", "verify.judge=teacher",
                *(f"synth.teacher.{b}" for b in backend), *(f"verify.verifier.{b}" for b in backend)]
        cfg = load_config(None, base)
        cfg.input.items = IDS
        out = str(tmp / "out")
        first = run_job(cfg, out, ingest=ingest, stage_factory=build_stages, progress=False, echo=lambda s: None)
        assert first.status == {"accepted": 3}, first.reasons
        yield {"base": base, "out": out, "origin": origin, "teacher": teacher, "verifier": verifier, "first": first}


def _rerun(world, overrides, stage_factory=build_stages):
    cfg = load_config(None, world["base"] + overrides)
    cfg.input.items = IDS
    planned = plan_run(cfg, world["out"], stage_factory=stage_factory)
    marks = (len(world["teacher"].received), len(world["verifier"].received))
    downloads = sum(n for p, n in world["origin"].hits.items() if p.startswith("/v/"))
    summary = run_job(cfg, world["out"], ingest=ingest, stage_factory=stage_factory, progress=False,
                      echo=lambda s: None)
    got = sent_per_round(world["teacher"], world["verifier"], marks)
    fetched = sum(n for p, n in world["origin"].hits.items() if p.startswith("/v/")) - downloads
    return planned, summary, got, fetched


def _nonzero(d: dict) -> dict:
    return {k: v for k, v in d.items() if v}


def test_unchanged_config_plans_and_runs_nothing(world):
    planned, summary, got, fetched = _rerun(world, [])
    assert planned.skipped == 3 and not planned.pending and summary.processed == 0
    assert not got and fetched == 0


def test_a_changed_k_asks_no_teacher_synthesis_and_the_plan_says_so(world):
    planned, summary, got, fetched = _rerun(world, ["verify.samples=2"])
    assert planned.pending == {"changed": 3} and dict(planned.stages["verify"]) == {"config": 3}
    assert "synthesize" not in planned.stages and fetched == 0 and planned.downloads == 0
    assert not any(got[r] for r in TEACHER_ROUNDS), got  # 0 captions, summaries, descriptions, QA
    assert got["verify"] > 0  # the k answers are asked again; the blind pass (same question) is not
    assert got["blind"] == 0
    assert _nonzero(planned.sends("send")) == _nonzero(dict(got)), (planned.render(), got)
    assert summary.status == {"accepted": 3}


def test_a_new_qa_prompt_version_asks_qa_and_verification_only(world):
    planned, summary, got, fetched = _rerun(world, ["synth.prompts={write_qa: 2}", "verify.samples=2"])
    assert dict(planned.stages["synthesize"]) == {"prompts": 3} and dict(planned.stages["verify"]) == {"input": 3}
    assert not any(got[r] for r in ("caption", "summarize", "describe")), got
    assert got["write_qa"] == 3 and got["verify"] > 0 and got["blind"] > 0 and fetched == 0
    low, high = planned.sends("send"), planned.sends("up_to")
    # exact where the requests depend on stored answers only: no synthesis round but the QA writing
    for name in ("caption", "summarize", "describe", "write_qa"):
        assert low.get(name, 0) == high.get(name, 0) == got[name], (name, planned.render(), got)
    # the verification of items not written yet: between "the teacher writes what it wrote before"
    # and "every item is new" (here 3 of its 4 items per video are reworded, the grounding one is not)
    for name in ("verify", "blind"):
        assert low.get(name, 0) <= got[name] <= high.get(name, 0), (name, planned.render(), got)


def test_a_new_filter_stage_downloads_nothing_and_asks_no_model(world):
    planned, summary, got, fetched = _rerun(world, ["synth.prompts={write_qa: 2}", "verify.samples=2"],
                                            stage_factory=with_filter)
    assert dict(planned.stages["drop_shortest"]) == {"new stage": 3}
    assert planned.downloads == 0 and fetched == 0  # every video is in this node's cache
    assert not got and _nonzero(planned.sends("send")) == {} and _nonzero(planned.sends("up_to")) == {}
    assert summary.status == {"accepted": 2, "rejected": 1} and summary.reasons == {"too_short": 1}
    assert summary.cost["cached_requests"] > 0 and "requests" not in summary.cost
