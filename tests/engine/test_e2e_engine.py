"""`curate run` end to end with the real engine as teacher and verifier (the tiny Qwen3-VL served
by vLLM, openai backend): every input accounted for, model answers stored, tokens counted from
the server's own usage. A random-weight model writes no usable QA, so what is checked is the
pipeline's handling, not the labels (tests/test_labels_e2e.py checks labels with a scripted teacher).
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import datasets
import yaml

from tests.engine.conftest import report

CURATE = str(Path(sys.executable).parent / "curate")


def test_curate_run_against_the_served_engine(qwen, tmp_path):
    backend = {"kind": "openai", "model": qwen.name,
               "openai": {"base_url": qwen.base_url, "api_key_env": None, "timeout_s": 300, "max_retries": 1,
                          "backoff_base_s": 0.1}}
    job = {"name": "engine-e2e", "work_dir": str(tmp_path / "work"),
           "demo": {"videos": 2, "scene_seconds": [4.0, 6.0, 5.0], "fps": 12, "width": 320, "height": 180,
                    "include_bad": True},
           "fetch": {"min_duration_s": 5}, "select": {"min_duration_s": 5}, "segment": {"sample_fps": 1.0},
           "synth": {"teacher": backend, "qa": {"items_per_video": 4, "max_tokens": 256},
                     "caption": {"max_tokens": 48, "describe_max_tokens": 96}},
           "verify": {"verifier": backend, "samples": 2, "max_tokens": 32, "judge": "token_f1"},
           "output": {"commit_every": 2}}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    out = tmp_path / "out"
    t0 = time.monotonic()
    run = subprocess.run([CURATE, "run", str(tmp_path / "job.yaml"), "--out", str(out), "--no-progress"],
                         capture_output=True, text=True, timeout=1500)
    seconds = time.monotonic() - t0
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    videos = datasets.load_dataset(str(out), "videos", split="train")
    status = Counter(videos["status"])
    reasons = Counter(r for r in videos["reject_reason"] if r)
    assert sum(status.values()) == 5  # 2 demo videos + 3 bad inputs, every one a row
    assert {"bad_id", "corrupt_media", "too_short"} <= set(reasons)
    summary = json.loads(sorted((out / "_runs").glob("*.json"))[-1].read_text())
    model = {k: v for k, v in summary.items() if "token" in k or k in ("decisions", "qa", "costs", "cost")}
    teacher = model["cost"]["teacher"]["total"]
    assert teacher["requests"] > 0 and teacher["visual_tokens"] > 0  # the server's own counts reached the summary
    good = [v for v in videos if v["status"] == "accepted" or v["reject_reason"] == "model_error"]
    assert len(good) == 2  # the two real videos reached the models (accepted, or retried next run)
    asked = sorted(p.name for p in (out / "_cache").glob("*")) if (out / "_cache").exists() else []
    assert asked, "no model answer was stored"
    report("curate run, teacher + verifier = served tiny Qwen3-VL", seconds=round(seconds),
           videos=dict(status), rejects=dict(reasons), stored_answers=asked,
           summary_tail=run.stdout.strip().splitlines()[-12:], model_summary=model)
