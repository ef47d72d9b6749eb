"""Synthetic sample videos with known scene cuts, for the demo job, tests and benchmarks.

Each scene has its own palette and a moving shape, so content-based detectors see a cut
exactly at each boundary and nothing inside a scene. Encoded with PyAV's bundled
libx264: no system ffmpeg needed.
"""
from __future__ import annotations

import colorsys
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class SampleSpec:
    """A video to generate: scene durations in seconds, frame rate and size."""

    scene_seconds: Sequence[float]
    fps: int = 30
    width: int = 320
    height: int = 180
    seed: int = 0
    audio: bool = False

    @property
    def cut_frames(self) -> list[int]:
        """0-based index of the first frame of every scene after the first."""
        cuts, total = [], 0
        for sec in self.scene_seconds[:-1]:
            total += int(round(sec * self.fps))
            cuts.append(total)
        return cuts

    @property
    def frame_count(self) -> int:
        return sum(int(round(s * self.fps)) for s in self.scene_seconds)


def _scene_frames(index: int, n: int, width: int, height: int, rng: np.random.Generator,
                  layout: np.random.Generator | None = None):
    """Frames of scene `index`. With `layout` (make_video passes one seeded by a non-zero seed),
    the stripes, their direction and the box's path differ from video to video, so two sample
    videos are distinct pictures, not near-duplicates of each other; without it (seed 0, the
    benchmark videos) the fixed layout."""
    hue = (index * 0.37 + rng.random() * 0.1) % 1.0
    bg = np.array(colorsys.hsv_to_rgb(hue, 0.6, 0.35 + 0.4 * ((index * 7) % 3) / 2)) * 255
    fg = np.array(colorsys.hsv_to_rgb((hue + 0.5) % 1.0, 0.9, 0.95)) * 255
    base = np.empty((height, width, 3), dtype=np.uint8)
    base[:] = bg.astype(np.uint8)
    # a static texture per scene so scenes differ in edges too
    period, phase, across, start = max(4, 8 + 4 * (index % 5)), 0, False, 0
    if layout is not None:
        period, phase = int(layout.integers(3, 24)), int(layout.integers(0, 24))
        across, start = bool(layout.random() < 0.5), int(layout.integers(0, width))
    if across:
        stripes = ((np.arange(height) + phase) // period) % 2
        base[stripes == 1] = (bg * 0.8).astype(np.uint8)
    else:
        stripes = ((np.arange(width) + phase) // period) % 2
        base[:, stripes == 1] = (bg * 0.8).astype(np.uint8)
    if layout is not None:  # light falling from one side, and a large still shape
        ang = layout.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:height, 0:width]
        ramp = (np.cos(ang) * (xx / width - 0.5) + np.sin(ang) * (yy / height - 0.5))
        base = np.clip(base * (1.0 + 1.2 * ramp)[..., None], 0, 255).astype(np.uint8)
        rw, rh = int(layout.integers(width // 6, width // 2)), int(layout.integers(height // 6, height // 2))
        rx, ry = int(layout.integers(0, width - rw)), int(layout.integers(0, height - rh))
        base[ry:ry + rh, rx:rx + rw] = (bg * layout.uniform(0.3, 1.4)).clip(0, 255).astype(np.uint8)
    box_w, box_h = max(8, width // 6), max(8, height // 5)
    for i in range(n):
        frame = base.copy()
        x = int((i * 3 + index * 40 + start) % max(1, width - box_w))
        if layout is not None:  # bounce off the edges instead of jumping back (a jump is a change)
            span = max(1, width - box_w)
            x = span - abs((i * 3 + start) % (2 * span) - span)
        y = int((height - box_h) / 2 + (height / 5) * np.sin(i / 15.0))
        frame[y:y + box_h, x:x + box_w] = fg.astype(np.uint8)
        yield frame


def make_video(path: str | Path, spec: SampleSpec) -> Path:
    """Write an H.264 mp4 for `spec` and a sidecar `<name>.truth.json` with the cuts."""
    import av  # local import: PyAV is only needed where videos are made

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    layout = np.random.default_rng([spec.seed, 1]) if spec.seed else None  # seed 0: the fixed layout
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=spec.fps)
        stream.width, stream.height = spec.width, spec.height
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "28", "g": str(spec.fps * 2)}
        audio_stream = None
        if spec.audio:
            audio_stream = container.add_stream("aac", rate=16000)
        for idx, sec in enumerate(spec.scene_seconds):
            n = int(round(sec * spec.fps))
            for arr in _scene_frames(idx, n, spec.width, spec.height, rng, layout):
                frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
                for packet in stream.encode(frame):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if audio_stream is not None:
            _write_silence(container, audio_stream, sum(spec.scene_seconds))
    truth = {"cut_frames": spec.cut_frames, "fps": spec.fps, "frame_count": spec.frame_count,
             "cut_seconds": [c / spec.fps for c in spec.cut_frames],
             "width": spec.width, "height": spec.height}
    path.with_suffix(".truth.json").write_text(json.dumps(truth))
    return path


def _write_silence(container, stream, seconds: float) -> None:
    import av

    samples_per_frame = 1024
    total = int(seconds * stream.rate)
    for start in range(0, total, samples_per_frame):
        n = min(samples_per_frame, total - start)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, n), dtype=np.float32), format="fltp",
                                           layout="mono")
        frame.sample_rate = stream.rate
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def make_audio_only(path: str | Path, seconds: float = 3.0) -> Path:
    """An .m4a/.mp4 with an AAC track and no video stream (a `no_video_stream` case)."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        _write_silence(container, stream, seconds)
    return path
