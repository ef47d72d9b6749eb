"""Small builders shared by tests."""
from __future__ import annotations

from pipeline.records import Scene, VideoTask, video_row

PROV = {"config_hash": "0123456789abcdef", "pipeline_fingerprint": "fp1", "run_id": "r1",
        "processed_at": "2026-11-22T00:00:00Z"}


def accepted_task(video_id: str, index: int = 0, **kw) -> VideoTask:
    task = VideoTask(video_id=video_id, source=video_id, source_kind="youtube", input_index=index,
                     video_path=f"/cache/{video_id}.mp4", width=320, height=180, fps=24.0,
                     frame_count=480, duration_s=20.0, codec="h264", **kw)
    task.scenes = [Scene(0, 0.0, 10.0, 0, 240, 5.0, "start"), Scene(1, 10.0, 20.0, 240, 480, 15.0, "cut")]
    return task.accept()


def accepted_row(video_id: str, index: int = 0) -> dict:
    return video_row(accepted_task(video_id, index))
