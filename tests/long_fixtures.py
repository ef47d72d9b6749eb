"""Cheap long videos and a committed dataset of QA rows about them (exports and their consumers).

Flat colour encodes fast (a 60-min 720p file in ~10 s at 2.5 fps, a few hundred kB) and still has
the frame count, rate and size the trainers budget from."""
from __future__ import annotations

import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import imageio_ffmpeg

from pipeline.records import Synthesis, VideoTask, video_row
from pipeline.store import DatasetStore
from synth.config import VerifyPolicy
from synth.evaluator import format_span, grounding_question
from synth.items import QAItem
from synth.publish import publish_rows
from tests.helpers import PROV


PIECE_S = 60  # a long file is one encoded minute repeated by stream copy


def _encode_piece(path: Path, seconds: int, w: int, h: int, fps: float) -> Path:
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"color=c=0x336699:s={w}x{h}:r={fps}:d={seconds}", "-c:v", "libx264", "-preset", "ultrafast",
                    "-crf", "51", "-g", "600", "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


def encode(path: Path, seconds: int, w: int, h: int, fps: float) -> Path:
    """A flat-colour H.264 file of `seconds`: one minute encoded, then repeated with ffmpeg's concat
    demuxer and stream copy (a 60-min 720p file in ~1 s instead of ~10 s; same frames, rate, size)."""
    if seconds <= PIECE_S:
        return _encode_piece(path, seconds, w, h, fps)
    piece = _encode_piece(path.with_name(f"{path.stem}.piece.mp4"), PIECE_S, w, h, fps)
    parts = [piece] * (seconds // PIECE_S)
    if seconds % PIECE_S:
        parts.append(_encode_piece(path.with_name(f"{path.stem}.rest.mp4"), seconds % PIECE_S, w, h, fps))
    listing = path.with_name(f"{path.stem}.concat.txt")
    listing.write_text("".join(f"file '{p.name}'\n" for p in parts))
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i",
                    str(listing), "-c", "copy", str(path)], check=True)
    for tmp in {*parts, listing}:
        tmp.unlink()
    return path


def _task(video_id: str, path: str, seconds: int, w: int, h: int, fps: float, index: int) -> VideoTask:
    task = VideoTask(video_id, video_id, "local", index, video_path=path, width=w, height=h, fps=fps,
                     frame_count=int(seconds * fps), duration_s=float(seconds), codec="h264").accept()
    s, e = round(seconds * 0.25, 1), round(seconds * 0.5, 1)
    items = [QAItem("spatio_temporal", "temporal_localization", "grounding",
                    grounding_question(seconds, "a blue screen"), format_span(s, e), s, e,
                    source="composed", verifiable=True),
             QAItem("perception", "object_description", "multiple_choice", "What colour is the screen?", "blue",
                    0.0, min(30.0, seconds), options=["red", "blue", "green", "white"]),
             QAItem("holistic", "summary", "description", "Describe this video in detail.",
                    "A flat blue screen. " * 200, 0.0, float(seconds))]
    for i, item in enumerate(items):
        item.index = i
    task.synthesis = Synthesis(teacher="teacher-x", items=items)
    return task


def long_dataset(media: Path, out: str, videos: dict[str, tuple[int, int, int, float]], *,
                 encode_media: bool = True) -> str:
    """Encode `videos` ({name: (seconds, width, height, fps)}) under `media` and commit a dataset of
    3 QA items per video (grounding, multiple choice, description) to `out`. Without `encode_media`
    the rows name files that are not written (for budgets, which need only the rows' facts)."""
    store = DatasetStore(out)
    store.init()
    rows: dict[str, list] = {"videos": [], "sft": [], "rl": []}
    if encode_media:  # the encodes side by side (ffmpeg processes; a core each)
        with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
            list(pool.map(lambda item: encode(media / f"{item[0]}.mp4", *item[1][:3], item[1][3]), videos.items()))
    for index, (name, (seconds, w, h, fps)) in enumerate(videos.items()):
        path = media / f"{name}.mp4"
        task = _task(f"{name}_aaaaaaaaaaa"[:11], str(path), seconds, w, h, fps, index)
        published = publish_rows(task, VerifyPolicy())
        rows["videos"].append({**video_row(task), "stage_keys": [{"stage": "fetch", "part": "version", "value": "1"}]})
        rows["sft"] += published["sft"]
        rows["rl"] += published["rl"]
    store.commit("r1-000000", rows, provenance=PROV)
    return out
