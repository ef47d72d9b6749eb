"""Probe and decode-check media with PyAV (bundled FFmpeg libs: no system ffmpeg needed).

A download's exit code proves nothing (random bytes named .mp4 "download" fine), so every
file is opened, its video stream checked, and a frame at the start and one near the end
decoded. `probe_media_header` reads only the container header, also over HTTP, for
sources whose extractor reports no duration.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

from pipeline.media import MediaError, missing, no_video_error, open_container
from pipeline.records import Reason

__all__ = ["MediaError", "MediaInfo", "probe_media_header", "verify_media"]


@dataclass
class MediaInfo:
    """What the pipeline needs to know about a media file (frame size before rotation)."""

    duration_s: float | None
    has_video: bool
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    frame_count: int | None = None
    codec: str | None = None
    rotation: int = 0
    has_audio: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def _open(src: str, timeout_s: float):
    return open_container(src, timeout_s)


def _stream_duration(container, stream) -> float | None:
    if stream is not None and stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000
    return None


def _rotation(stream) -> int:
    meta = getattr(stream, "metadata", {}) or {}
    try:
        return int(float(meta.get("rotate", 0))) % 360
    except ValueError:
        return 0


def _describe(container) -> MediaInfo:
    video = container.streams.video[0] if container.streams.video else None
    has_audio = bool(container.streams.audio)
    if video is None:
        return MediaInfo(duration_s=_stream_duration(container, None), has_video=False, has_audio=has_audio)
    rate = video.average_rate or video.base_rate or video.guessed_rate
    fps = float(rate) if rate else None
    duration = _stream_duration(container, video)
    frames = video.frames or (int(round(duration * fps)) if duration and fps else None)
    ctx = video.codec_context
    return MediaInfo(duration_s=duration, has_video=True, width=ctx.width or None,
                     height=ctx.height or None, fps=fps, frame_count=frames,
                     codec=ctx.name, rotation=_rotation(video), has_audio=has_audio)


def probe_media_header(src: str | Path, timeout_s: float = 30.0) -> MediaInfo:
    """Streams and duration from the container header only (no decoding).

    Raises MediaError when there is no video stream (see `no_video_error`)."""
    container = _open(str(src), timeout_s)
    try:
        info = _describe(container)
        if not info.has_video:
            raise no_video_error(container, f"{src} (header probe)")
        return info
    finally:
        container.close()


def _decode_one(container, stream):
    for frame in container.decode(stream):
        return frame
    return None


def verify_media(path: str | Path, expected_duration_s: float | None = None, *,
                 tolerance_s: float = 2.0, decode: bool = True) -> MediaInfo:
    """Check a downloaded file is real video; raise MediaError(reason, message) if not."""
    import av

    path = Path(path)
    if not path.is_file():
        raise missing(path)
    if path.stat().st_size == 0:
        raise MediaError(Reason.corrupt_media, f"empty media file: {str(path)!r}")
    container = _open(str(path), 30.0)
    try:
        info = _describe(container)
        if not info.has_video:
            raise no_video_error(container, path.name)
        if not info.duration_s or info.duration_s <= 0:
            raise MediaError(Reason.corrupt_media, f"unknown or zero duration in {path.name}")
        if expected_duration_s and abs(info.duration_s - expected_duration_s) > max(
                tolerance_s, 0.02 * expected_duration_s):
            raise MediaError(Reason.corrupt_media,
                             f"duration {info.duration_s:.2f}s does not match the announced "
                             f"{expected_duration_s:.2f}s in {path.name}")
        if decode:
            _decode_check(container, info, path.name)
        return info
    except MediaError:
        raise
    except av.FFmpegError as exc:
        raise MediaError(Reason.corrupt_media, f"decode failed for {path.name}: {exc}") from exc
    finally:
        container.close()


def _decode_check(container, info: MediaInfo, name: str) -> None:
    """Decode the first frame and one in the last second: catches cut/truncated files."""
    stream = container.streams.video[0]
    first = _decode_one(container, stream)
    if first is None:
        raise MediaError(Reason.corrupt_media, f"no frame decodes at the start of {name}")
    rotation = getattr(first, "rotation", None)
    if rotation:
        info.rotation = int(rotation) % 360
    target = max(0.0, (info.duration_s or 0) - 1.0)
    tb = stream.time_base or Fraction(1, 1_000_000)
    container.seek(int(target / tb), stream=stream, backward=True, any_frame=False)
    last_t = None
    for frame in container.decode(stream):
        if frame.time is not None:
            last_t = frame.time
    if last_t is None:
        raise MediaError(Reason.corrupt_media, f"no frame decodes near the end of {name} "
                                               f"(file cut short?)")
    start = float(stream.start_time * tb) if stream.start_time else 0.0
    if last_t - start < (info.duration_s or 0) - 1.5 - (1 / info.fps if info.fps else 0):
        raise MediaError(Reason.corrupt_media,
                         f"last decodable frame at {last_t - start:.2f}s of {info.duration_s:.2f}s "
                         f"in {name} (file cut short?)")
