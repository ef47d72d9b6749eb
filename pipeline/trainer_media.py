"""A video as the SFT trainer sees it: decoded by decord, the trainer's own reader.

InternVideo3's xtuner fork reads every video with `decord.VideoReader` (read_frames_decord):
frames come out in display orientation (decord applies the rotation tag / display matrix
since v0.3.8), `len(reader)` is the frame count its indices run over, and frame i is
taken to be at i / origin_fps. So `image_wh` must be the display size, `origin_video_length`
must not exceed len(reader), and origin_fps must be the average rate (frames / duration),
which is decord's get_avg_fps. This module answers those questions with decord itself,
on purpose independent of the PyAV code that measured the videos in the first place.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any


class TrainerDecoderMissing(RuntimeError):
    """decord is not installed (no wheel for this platform?): the trainer's view cannot be checked."""


@dataclass(frozen=True)
class TrainerView:
    """What decord reports for a video file."""

    width: int  # of the decoded (display-oriented) frames
    height: int
    frames: int  # len(VideoReader)
    avg_fps: float  # VideoReader.get_avg_fps()
    last_frame_s: float  # timestamp of the last frame (get_frame_timestamp)


def _reader(source: Any):
    try:
        from decord import VideoReader, cpu
    except ImportError as exc:  # pragma: no cover - decord is a dependency on x86_64
        raise TrainerDecoderMissing("decord (the SFT trainer's video reader) is not installed: "
                                    "pip install decord") from exc
    return VideoReader(source, ctx=cpu(0), num_threads=1)


def trainer_view(path: str, opener: Any = None) -> TrainerView | None:
    """decord's view of a local path, or of a file that `opener()` returns (fsspec); None if unreadable."""
    try:
        source = path if opener is None else io.BytesIO(opener().read())
        reader = _reader(source)
        n = len(reader)
        if n == 0:
            return None
        first = reader[0].shape  # (H, W, 3), after rotation
        last_s = float(reader.get_frame_timestamp(n - 1)[0])
        return TrainerView(width=int(first[1]), height=int(first[0]), frames=n,
                           avg_fps=float(reader.get_avg_fps()), last_frame_s=last_s)
    except TrainerDecoderMissing:
        raise
    except Exception:  # noqa: BLE001 - any decord failure means the trainer cannot read it either
        return None


def trainer_frame(path: str, index: int):
    """One decoded frame (H, W, 3 uint8) as the trainer gets it (tests compare pixels)."""
    return _reader(path)[index].asnumpy()
