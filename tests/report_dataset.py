"""A small real dataset for the report's test and bench: real H.264 files (plus a corrupt file and
a too-short clip), the scripted teacher and verifier over HTTP, `curate run` through a local Ray."""
from __future__ import annotations

import os
from pathlib import Path

import yaml

from pipeline.samples import SampleSpec, make_video
from tests.helpers import curate
from tests.scripted_job import scripted_job
from tests.teacher import TeacherServer
from tests.verifier import VerifierServer

K = 3


def build_dataset(tmp: Path, runs: int = 2, address: str | None = None) -> Path:
    """Write `tmp/out` (3 accepted videos with verified QA, 2 rejected inputs); `runs` runs of the job
    (the later ones commit nothing new: more points on the runs plot), on the Ray at `address`
    (None: each run starts a local one)."""
    media = tmp / "media"
    items = [str(make_video(media / f"v{s}.mp4", SampleSpec([5.0, 6.0, 4.0, s - 15.0], seed=s, fps=10,
                                                            width=320, height=180))) for s in (20, 24, 27)]
    (media / "corrupt.mp4").write_bytes(os.urandom(4096))
    items += [str(media / "corrupt.mp4"), str(make_video(media / "short.mp4", SampleSpec([1.5], fps=10)))]
    out = tmp / "out"
    with TeacherServer() as teacher, VerifierServer(K, teacher) as verifier:
        job = scripted_job("report", str(tmp / "work"), items, teacher.base_url, verifier.base_url, K)
        (tmp / "job.yaml").write_text(yaml.safe_dump(job))
        for _ in range(runs):
            run = curate("run", str(tmp / "job.yaml"), "--out", str(out), "--no-progress", address=address)
            if run.returncode != 0:
                raise RuntimeError(f"curate run failed: {run.stderr[-3000:]}")
    return out
