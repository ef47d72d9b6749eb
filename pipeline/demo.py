"""Offline demo inputs: sample videos with known cuts plus a few deliberately bad inputs."""
from __future__ import annotations

import random
from pathlib import Path

from pipeline.samples import SampleSpec, make_video


def prepare_demo_inputs(cfg, work_dir: str | Path) -> list[str]:
    """Generate (once) the demo media under `work_dir/demo` and return the input entries.

    `cfg` is a `DemoConfig`. Bad inputs exercise the reject paths: a file of random bytes
    (corrupt_media), a clip shorter than any sensible bound (too_short) and an entry
    that is no ID, URL or path (bad_id).
    """
    root = Path(work_dir) / "demo"
    root.mkdir(parents=True, exist_ok=True)
    entries: list[str] = []
    for i in range(cfg.videos):
        # rotate scene lengths so the videos differ
        scenes = cfg.scene_seconds[i % len(cfg.scene_seconds):] + cfg.scene_seconds[:i % len(cfg.scene_seconds)]
        path = root / f"sample-{i:03d}.mp4"
        if not (path.exists() and path.with_suffix(".truth.json").exists()):
            make_video(path, SampleSpec(scenes, fps=cfg.fps, width=cfg.width, height=cfg.height, seed=i))
        entries.append(str(path.resolve()))
    if cfg.include_bad:
        corrupt = root / "corrupt.mp4"
        if not corrupt.exists():
            corrupt.write_bytes(random.Random(0).randbytes(64 * 1024))  # seeded noise
        short = root / "too-short.mp4"
        if not short.exists():
            make_video(short, SampleSpec([1.5], fps=cfg.fps, width=cfg.width, height=cfg.height))
        entries += [str(corrupt.resolve()), str(short.resolve()), "not a video id!"]
    return entries
