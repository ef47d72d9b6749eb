"""Small frames for the sample browser, decoded from the media a row points at.

Where the media is: the row's `video_path` when this machine can read it, else the shared copy
(`media_uri`, any fsspec URL: PyAV reads the opened file object). All the times one video needs
(its keyframes and the frames inside its QA items' evidence spans) are decoded in one pass in
time order, seeking only across gaps, and written as small JPEGs beside the report page.
A video whose media cannot be read gets a note saying why, and its items are shown without frames.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import fsspec

THUMB_WIDTH = 160
JPEG_QUALITY = 70
SEEK_GAP_S = 3.0  # decode forward across shorter gaps; seek across longer ones


@dataclass
class VideoFrames:
    """What was written for one video: time (rounded to 0.1 s) -> path relative to the page."""

    files: dict[float, str] = field(default_factory=dict)
    note: str | None = None


def media_source(video_path: str | None, media_uri: str | None) -> str | None:
    """The first place this machine can read the video from, or None."""
    if video_path and os.path.exists(video_path):
        return video_path
    if media_uri:
        return media_uri
    return None


def extract(video_path: str | None, media_uri: str | None, times: list[float], dest: Path, rel: str) -> VideoFrames:
    """Decode the frames nearest to `times` and write them as `dest/<ms>.jpg` (linked as `rel/<ms>.jpg`)."""
    out = VideoFrames()
    wanted = sorted({round(max(0.0, t), 1) for t in times})
    src = media_source(video_path, media_uri)
    if src is None:
        out.note = f"media not reachable from here (video_path {video_path!r}, no media_uri)"
        return out
    if not wanted:
        return out
    try:
        _decode(src, wanted, dest, rel, out)
    except Exception as exc:  # a report shows what it could read; the reason is on the page
        out.note = f"could not read media {src!r}: {type(exc).__name__}: {exc}"[:300]
    return out


def _decode(src: str, wanted: list[float], dest: Path, rel: str, out: VideoFrames) -> None:
    import av

    dest.mkdir(parents=True, exist_ok=True)
    with fsspec.open(src, "rb") if "://" in src else open(src, "rb") as fh, av.open(fh, "r") as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        base = stream.time_base
        i, last_t = 0, None
        while i < len(wanted):
            target = wanted[i]
            if last_t is None or target - last_t > SEEK_GAP_S or target < last_t:
                container.seek(int(target / base) + (stream.start_time or 0), stream=stream, backward=True)
            got = False
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                t = float((frame.pts - (stream.start_time or 0)) * base)
                last_t = t
                if t + 0.5 / float(stream.average_rate or 25) < target:
                    continue
                while i < len(wanted) and wanted[i] <= t + 0.05:  # this frame serves every time up to it
                    _write(frame, dest, rel, wanted[i], out)
                    i += 1
                got = True
                break
            if not got:  # past the last frame: the remaining times get the last one there is
                break


def _write(frame, dest: Path, rel: str, t: float, out: VideoFrames) -> None:
    name = f"{int(round(t * 1000)):08d}.jpg"
    image = frame.to_image()
    image.thumbnail((THUMB_WIDTH, THUMB_WIDTH * 4))
    image.save(dest / name, format="JPEG", quality=JPEG_QUALITY)
    out.files[t] = f"{rel}/{name}"
