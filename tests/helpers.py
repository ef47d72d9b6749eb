"""Small builders shared by tests."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from pipeline.records import Caption, Frame, Scene, Synthesis, VideoTask, video_row
from synth.items import QAItem

REPO = Path(__file__).resolve().parents[1]
REAL_VIDEOS = REPO.parent / "shared" / "real_videos"
# The real clips live beside the clone (../shared/real_videos): CI and the team's machines have
# them, a user's clone does not. Tests that read them say so and skip, naming the folder.
needs_real_videos = pytest.mark.skipif(
    not REAL_VIDEOS.is_dir(), reason=f"needs the real clips in {REAL_VIDEOS} (a folder beside the clone; absent here)")

CURATE = str(Path(sys.executable).parent / "curate")


def curate(*args: str, address: str | None = None, env: dict[str, str] | None = None, cwd: Path | None = None,
           timeout: int = 300) -> subprocess.CompletedProcess:
    """The `curate` command as a user runs it, in its own process. With `address` (the session's
    Ray, fixture `ray_address`) a run joins it as a second driver, as on a cluster, instead of
    starting and stopping a local Ray of its own (4-8 s a run on a 2-core machine). A run that
    tests the local start itself, or needs its workers to see its own environment (workers of a
    joined Ray inherit the raylet's, not the driver's), passes no address."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", **(env or {})}
    env.pop("RAY_ADDRESS", None)
    if address:
        env["RAY_ADDRESS"] = address
    return subprocess.run([CURATE, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)


PROV = {"config_hash": "0123456789abcdef", "pipeline_fingerprint": "fp1", "run_id": "r1",
        "processed_at": "2026-11-22T00:00:00Z"}


def accepted_task(video_id: str, index: int = 0, **kw) -> VideoTask:
    task = VideoTask(video_id=video_id, source=video_id, source_kind="youtube", input_index=index,
                     video_path=f"/cache/{video_id}.mp4", width=320, height=180, fps=24.0,
                     frame_count=480, duration_s=20.0, codec="h264", **kw)
    task.scenes = [Scene(0, 0.0, 10.0, 0, 240, 5.0, "start"), Scene(1, 10.0, 20.0, 240, 480, 15.0, "cut")]
    return task.accept()


def accepted_row(video_id: str, index: int = 0) -> dict:
    return {**video_row(accepted_task(video_id, index)), "stage_keys": [{"stage": "fetch", "part": "version",
                                                                          "value": "1"}]}


def jpeg(color: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> bytes:
    """A flat-colour JPEG frame."""
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="JPEG")
    return buf.getvalue()


def qa_task() -> VideoTask:
    """An accepted video with frames and one QA item per verification path (keyed by a word)."""
    task = VideoTask("abcdefghijk", "abcdefghijk", "youtube", 0, video_path="/media/abcdefghijk.mp4", width=640,
                     height=360, fps=30.0, frame_count=1800, duration_s=60.0).accept()
    task.frames = [Frame(float(t), jpeg((200, 30, 30), (56, 56)), 56, 56) for t in range(0, 60, 10)]
    mc = dict(format="multiple_choice", options=["red", "blue", "green", "white"])
    items = [
        QAItem("perception", "object_description", question="KEEP-MC what colour?", answer="blue", evidence_start_s=0,
               evidence_end_s=5, **mc),
        QAItem("perception", "binary", question="BLIND-OK is it blue?", answer="blue", evidence_start_s=0,
               evidence_end_s=5, **mc),
        QAItem("spatio_temporal", "temporal_localization", "grounding",
               'Given the video of duration 60.0 seconds, find ... "a red box"', "10.0 - 20.0 seconds", 10.0, 20.0,
               source="composed", verifiable=True),
        QAItem("spatio_temporal", "temporal_localization", "grounding", "MID when does it stop?",
               "10.0 - 20.0 seconds", 10.0, 20.0),
        QAItem("perception", "object_description", "open_ended", "CONFIRM what moves?", "a red box", 0, 10),
        QAItem("perception", "object_description", "open_ended", "DENY what moves?", "a red box", 0, 10),
        QAItem("perception", "object_description", "open_ended", "GOODOPEN what moves?", "a red box", 0, 10),
        QAItem("holistic", "summary", "description", "Describe this video in detail.", "A red box moves.", 0, 60),
    ]
    for i, item in enumerate(items):
        item.index = i
    task.synthesis = Synthesis(teacher="teacher-x", items=items)
    task.captions = [Caption(0.0, 60.0, "a red box moves")]
    return task
