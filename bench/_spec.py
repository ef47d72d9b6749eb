"""Deterministic synthetic benchmark videos (shared by bench/segment.py)."""
from __future__ import annotations

from pathlib import Path

from pipeline.samples import SampleSpec, make_video

_PATTERN = [7, 13, 19, 11, 17, 5, 23, 9, 15, 21]


def bench_spec(minutes: float, width: int = 640, height: int = 360, fps: int = 30) -> SampleSpec:
    """Scenes of 5-23 s cycling through a fixed pattern, the last one trimmed to fit."""
    total, scenes, i = minutes * 60.0, [], 0
    while sum(scenes) < total:
        scenes.append(float(_PATTERN[i % len(_PATTERN)]))
        i += 1
    scenes[-1] -= sum(scenes) - total
    if scenes[-1] < 2:
        scenes[-2] += scenes.pop()
    return SampleSpec(scene_seconds=scenes, fps=fps, width=width, height=height, seed=7)


def bench_video(cache: Path, minutes: float) -> Path:
    """Generate (once) and return the cached benchmark video for `minutes`."""
    path = cache / f"synthetic_{minutes:g}min_640x360_30fps.mp4"
    if not (path.exists() and path.with_suffix(".truth.json").exists()):
        make_video(path, bench_spec(minutes))
    return path
