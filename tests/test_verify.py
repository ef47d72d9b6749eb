"""Cross-verification: scoring, each decision, the tiny custom-code verifier, exports end to end."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import datasets
import pytest

from pipeline.schema import validate_row
from pipeline.stage import apply_stage
from synth.backends.config import BackendConfig
from synth.config import VerifyConfig, VerifyPolicy
from synth.publish import publish_rows
from synth.scoring import parse_letter, parse_span, temporal_iou, token_f1
from synth.verify import VerifyStage
from tests.helpers import PROV, qa_task
from tests.openai_server import Reply, ScriptedOpenAIServer


@pytest.mark.parametrize("pred, truth, iou", [((0, 10), (5, 15), 5 / 15), ((0, 1), (2, 3), 0.0),
                                              ((4, 8), (4, 8), 1.0), ((8, 4), (4, 8), 1.0),
                                              ((0, 10), (2, 4), 0.2), (None, (1, 2), 0.0)])
def test_temporal_iou_known_cases(pred, truth, iou):
    assert temporal_iou(pred, truth) == pytest.approx(iou)


def test_answer_parsing_like_the_evaluators():
    assert parse_letter("(C) the dog") == "C" and parse_letter("Answer: b.") == "B"
    assert parse_letter("none of them") is None
    assert parse_span("The moment is from 12.5 to 20 seconds (of 60)") == (12.5, 20.0)
    assert parse_span("at 12 s") is None
    assert token_f1("a red box", "A red box!") == 1.0 and token_f1("blue", "red") == 0.0


class VerifierServer(ScriptedOpenAIServer):
    """Answers as verifier, judge and re-confirming teacher, keyed on words in the question."""

    def _next_action(self, prompt: str):
        if prompt.startswith("You grade answers"):
            cand = re.search(r"Candidate answer: (.*)", prompt)[1]
            return Reply(json.dumps({"score": 0.9 if "red" in cand else 0.1}))
        if prompt.startswith("You wrote a question"):
            return Reply(json.dumps({"confirmed": "CONFIRM" in prompt}))
        if prompt.startswith("You cannot see the video"):
            return Reply("B" if "BLIND-OK" in prompt else "no idea")
        table = {"KEEP-MC": ["B"] * 4, "BLIND-OK": ["B"] * 4, "Given the video": ["50 to 60"] * 4,
                 "MID": ["10 to 20", "10 to 20", "40 to 45", "0 to 1"], "CONFIRM": ["blue"] * 4,
                 "DENY": ["blue"] * 4, "GOODOPEN": ["a red box"] * 4, "Describe this video": ["blue stuff"] * 4}
        for key, answers in table.items():
            if key in prompt:
                return Reply(answers)
        return Reply(["?"] * 4)


@pytest.fixture(scope="module")
def verified():
    with VerifierServer() as server:
        backend = {"kind": "openai", "model": "m2la-student",
                   "openai": {"base_url": server.base_url, "api_key_env": None, "max_retries": 0}}
        cfg = VerifyConfig(verifier=BackendConfig.model_validate(backend), samples=4)
        teacher = BackendConfig.model_validate({**backend, "model": "teacher-x"})
        [task] = apply_stage(VerifyStage(cfg, teacher=teacher), [qa_task()])
    return task


def test_each_decision_is_reached_for_its_reason(verified):
    got = {item.question.split()[0]: (item.verification.decision, item.verification.reason)
           for item in verified.synthesis.items}
    assert got == {"KEEP-MC": ("keep", "verifier_agrees"), "BLIND-OK": ("reject", "blind_answerable"),
                   "Given": ("hard", "measured_truth"), "MID": ("keep", "verifier_agrees"),
                   "CONFIRM": ("hard", "teacher_reconfirmed"), "DENY": ("reject", "verifier_disagrees"),
                   "GOODOPEN": ("keep", "verifier_agrees"), "Describe": ("keep", "description")}
    mid = verified.synthesis.items[3].verification
    assert mid.k == 4 and mid.pass_rate == 0.5 and mid.score == pytest.approx((1 + 1 + 0 + 0) / 4)
    assert verified.verify_cost.requests > 0 and verified.cost.requests > 0


def test_policy_routes_items_to_sft_rl_distill_and_rejects(verified):
    rows = publish_rows(verified, VerifyPolicy())
    for config, config_rows in rows.items():
        for row in config_rows:
            assert validate_row(config, {**row, **PROV}) is None, (config, row)
    prefix = lambda r: r["question"].split()[0]  # noqa: E731
    assert sorted(prefix(r) for r in rows["sft"]) == sorted(["KEEP-MC", "Given", "MID", "CONFIRM", "GOODOPEN",
                                                             "Describe"])
    assert sorted(r["reason"] for r in rows["rejects"]) == ["blind_answerable", "verifier_disagrees"]
    # RL: only the pass-rate band; the trivially easy MC (1.0) and the impossible grounding (0.0) are out
    assert [r["extra_info"]["difficulty"] for r in rows["rl"]] == [0.5]
    assert rows["rl"][0]["reward_model"]["ground_truth"] == "[10.0, 20.0]"
    # distillation: where the student is wrong but the answer stands, paired with the teacher's answer
    distill = {prefix(r): r for r in rows["distill"]}
    assert set(distill) == {"Given", "CONFIRM", "Describe"}
    assert distill["CONFIRM"]["student_answer"] == "blue" and distill["CONFIRM"]["answer"] == "a red box"


def test_tiny_custom_code_verifier_from_frames(tmp_path):
    """The M2LA stand-in: its own modeling code, loaded with trust_remote_code, answers from frames."""
    from tests.tiny_models import build_tiny_m2la

    ckpt = build_tiny_m2la(tmp_path)
    verifier = BackendConfig.model_validate({"kind": "transformers", "model": "tiny-m2la", "transformers": {
        "model_path": str(ckpt), "device": "cpu", "trust_remote_code": True, "max_frames": 3}})
    cfg = VerifyConfig(verifier=verifier, samples=2, max_tokens=8, judge="token_f1")
    task = qa_task()
    [task] = apply_stage(VerifyStage(cfg), [task])
    assert not task.rejected
    for item in task.synthesis.items:
        v = item.verification
        assert v.verifier == "tiny-m2la" and v.k == 2 and len(v.answers) == 2
        assert v.decision in ("keep", "hard", "reject")
        if item.source == "composed":
            assert v.decision != "reject"  # a measured answer is never thrown away
    assert task.verify_cost.visual_tokens > 0
    for config, rows in publish_rows(task, VerifyPolicy()).items():
        for row in rows:
            assert validate_row(config, {**row, **PROV}) is None


class TeacherAndVerifier(VerifierServer):
    """The scripted teacher (captions, QA) plus a verifier that answers every question."""

    def __init__(self):
        super().__init__()
        from tests.teacher import TeacherServer

        self.teacher = TeacherServer()

    def _next_action(self, prompt: str):
        if prompt.startswith(("You grade", "You wrote", "You cannot see")):
            return super()._next_action(prompt)
        if "Answer with the option letter only." in prompt:
            return Reply(["A", "B", "A", "C"])
        if prompt.startswith("Given the video") or "timestamps in seconds" in prompt:
            return Reply(["0 to 3", "3 to 9", "0 to 2", "5 to 6"])
        if "sampled from" in prompt or "Video duration" in prompt or prompt.startswith(("Below are", "You write search")):
            return self.teacher._next_action(prompt)
        return Reply(["a red rectangle", "blue", "a red box", "nothing"])


def _verified_job(tmp_path: Path, server, extra: tuple[str, ...] = (), echo=lambda s: None,
                  media: Path | None = None):
    from pipeline.config import load_config
    from pipeline.job import run_job
    from pipeline.plan import build_stages, ingest
    from pipeline.samples import SampleSpec, make_video

    media = media or tmp_path  # the path names the video (local-<hash>), and the id seeds its answer letters
    media.mkdir(parents=True, exist_ok=True)
    paths = [str(make_video(media / f"v{d}.mp4", SampleSpec([3.0, d - 7.0, 4.0], fps=12, width=176, height=98,
                                                              seed=d))) for d in (12, 16)]
    out = tmp_path / "out"
    common = ["kind=openai", f"openai.base_url={server.base_url}", "openai.api_key_env=null",
              "openai.max_retries=1", "openai.timeout_s=30", "openai.backoff_base_s=0.05"]
    cfg = load_config(None, [f"work_dir={tmp_path / 'work'}", "fetch.min_duration_s=5", "select.min_duration_s=5",
                             "synth.teacher.model=teacher-x", "verify.verifier.model=m2la-student",
                             "verify.samples=4", *extra]
                      + [f"synth.teacher.{c}" for c in common] + [f"verify.verifier.{c}" for c in common])
    cfg.input.items = paths
    return run_job(cfg, str(out), ingest=ingest, stage_factory=build_stages, progress=False, echo=echo), out


@pytest.fixture(scope="module")
def actors_run(ray_local, tmp_path_factory):
    """One verified job in actors mode, read by the tests that only read it; its scripted server
    stays up for the module, so the passes run below is asked the same questions."""
    tmp = tmp_path_factory.mktemp("verified")
    with TeacherAndVerifier() as server:
        summary, out = _verified_job(tmp / "actors", server, media=tmp / "media")
        yield summary, out, tmp, server


def test_passes_reach_the_same_decisions_as_actors(actors_run):
    """Every model round as one Ray Data pass per wave: same items, same verdicts as in actors."""
    said: list[str] = []
    actors, _, tmp, server = actors_run
    passes, out = _verified_job(tmp / "passes", server, ("synth.execution=passes", "synth.wave_videos=1"),
                                said.append, media=tmp / "media")
    for run in (actors, passes):  # a request lost to load would change a verdict, not the code
        assert all(c.get("failed_requests", 0) == 0 for c in (run.cost, run.verify_cost)), run.cost_report()
    assert passes.decisions == actors.decisions and sum(passes.decisions.values()) > 0
    assert passes.committed == actors.committed
    rounds = [line.split("round ")[1].split(" (")[0] for line in said if "round " in line]
    assert rounds[:4] == ["caption", "summarize", "describe", "write_qa"]  # summarize: + the moments requests
    assert {"verify", "blind", "judge"} <= set(rounds) and sum(line.startswith("wave ") for line in said) == 2
    sft = datasets.load_dataset(str(out), "sft", split="train")
    assert all(r["verification"]["k"] == 4 for r in sft if r["format"] != "description")
    assert passes.cost_report()["verifier"]["total"]["requests"] == actors.cost_report()["verifier"]["total"]["requests"]


def test_end_to_end_verified_dataset_and_exports(actors_run, tmp_path):
    summary, out, media_parent, _ = actors_run
    assert summary.status["accepted"] == 2 and sum(summary.decisions.values()) > 0
    loaded = {c: datasets.load_dataset(str(out), c, split="train") for c in ("sft", "rl", "distill")}
    for config, ds in loaded.items():
        assert len(ds) == summary.committed[config] > 0, config
    assert all(r["verification"]["decision"] in ("keep", "hard") for r in loaded["sft"])
    assert all(r["verifier"] == "m2la-student" for r in loaded["sft"])
    q = summary.quality  # read back from the committed data, verification leaves only
    assert sum(q["decisions"].values()) == len(loaded["sft"]) and set(q["decisions"]) <= {"keep", "hard"}
    assert q["mean_pass_rate_by_format"] and all(0 <= v <= 1 for v in q["mean_pass_rate_by_format"].values())
    curate = str(Path(sys.executable).parent / "curate")
    media_root = str(media_parent)
    xt = subprocess.run([curate, "export", "xtuner", str(out), str(tmp_path / "xt"), "--media-root", media_root],
                        capture_output=True, text=True, timeout=120)
    assert xt.returncode == 0, xt.stderr
    meta = json.loads((tmp_path / "xt" / "meta.json").read_text())
    lines = [json.loads(line) for entry in meta.values() for line in open(entry["annotation"])]
    assert len(lines) == len(loaded["sft"]) and all(e["fps"] == 4 for e in meta.values())
    decoded = {}
    for line in lines:
        user = next(m for m in line["messages"] if m["role"] == "user")
        video = user["content"][0]["video_url"]
        path = str(Path(media_root) / video["url"])
        if path not in decoded:  # full decode: the real frame size and frame count
            import av
            with av.open(path) as c:
                frames = list(c.decode(video=0))
            decoded[path] = (frames[0].width, frames[0].height, len(frames))
        w, h, n = decoded[path]
        assert video["image_wh"] == [w, h] and 1 <= video["origin_video_length"] <= n
        assert set(video) == {"url", "image_wh", "origin_video_length", "origin_fps"}
        assert user["content"][1]["text"].startswith("<VIDEO_CONTEXT>\n")
        assert all(set(m) == {"role", "content"} for m in line["messages"])
        assert "thinking" not in json.dumps(line)
    assert len(decoded) == 2
    vr = subprocess.run([curate, "export", "verl", str(out), str(tmp_path / "verl")], capture_output=True,
                        text=True, timeout=120)
    assert vr.returncode == 0, vr.stderr
    import pyarrow.parquet as pq
    verl = pq.read_table(tmp_path / "verl" / "train.parquet").to_pylist()
    assert len(verl) == len(loaded["rl"]) and all(r["reward_model"]["style"] == "rule" for r in verl)
    assert all(r["videos"][0]["video"] == r["extra_info"]["video_path"] for r in verl)


def test_xtuner_checker_refuses_each_broken_rule(tmp_path):
    from pipeline.export import MediaFacts, check_xtuner
    from pipeline.samples import SampleSpec, make_video

    make_video(tmp_path / "v.mp4", SampleSpec([2.0], fps=10, width=64, height=48))

    def line(**video):
        url = {"url": "v.mp4", "image_wh": [64, 48], "origin_video_length": 20, "origin_fps": 10.0, **video}
        return {"id": "x", "messages": [
            {"role": "user", "content": [{"type": "video_url", "video_url": url},
                                         {"type": "text", "text": "<VIDEO_CONTEXT>\nWhat?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "A box."}]}]}

    media = MediaFacts()
    assert check_xtuner(line(), str(tmp_path), media) == []
    assert "decoded frame size" in " ".join(check_xtuner(line(image_wh=[48, 64]), str(tmp_path), media))
    assert "decoded frames" in " ".join(check_xtuner(line(origin_video_length=21), str(tmp_path), media))
    assert "frame count" in " ".join(check_xtuner(line(origin_video_length=2.0), str(tmp_path), media))
    bad = line()
    bad["messages"][0]["content"][1]["text"] = "<video>\nWhat?"
    assert "<VIDEO_CONTEXT>" in " ".join(check_xtuner(bad, str(tmp_path), media))
    bad = line()
    bad["messages"][1]["thinking"] = "hmm"
    assert "unknown keys ['thinking']" in " ".join(check_xtuner(bad, str(tmp_path), media))
    bad = line()
    bad["messages"][0]["content"][0]["video_url"]["start"] = 3
    assert "video_url keys" in " ".join(check_xtuner(bad, str(tmp_path), media))
    assert "not under media_root" in " ".join(check_xtuner(line(url="../v.mp4"), str(tmp_path), media))
