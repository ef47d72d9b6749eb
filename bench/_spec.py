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
    if scenes[-1] < 2:  # fold a stub into its neighbour (pop first: `a[-2] += a.pop()` hits a[-3])
        tail = scenes.pop()
        scenes[-1] += tail
    return SampleSpec(scene_seconds=scenes, fps=fps, width=width, height=height, seed=7)


def bench_video(cache: Path, minutes: float) -> Path:
    """Generate (once) and return the cached benchmark video for `minutes`."""
    path = cache / f"synthetic_{minutes:g}min_640x360_30fps_v2.mp4"  # v2: exactly minutes*60 s
    if not (path.exists() and path.with_suffix(".truth.json").exists()):
        make_video(path, bench_spec(minutes))
    return path


def realistic_video(cache: Path, minutes: float) -> Path:
    """The same scenes encoded like real footage: libx264 preset veryfast, crf 23, B-frames,
    with per-frame film-grain noise so the decoder does real work (the ultrafast flat-colour
    video decodes ~10x cheaper than a real 640x360 file)."""
    import json

    import av
    import numpy as np

    from pipeline.samples import _scene_frames

    spec = bench_spec(minutes)
    path = cache / f"realistic_{minutes:g}min_640x360_30fps.mp4"
    if path.exists() and path.with_suffix(".truth.json").exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    grain = rng.normal(0, 6, (16, spec.height + 8, spec.width + 8, 1)).astype(np.int16)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=spec.fps)
        stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23", "g": str(spec.fps * 5), "bf": "3"}
        k = 0
        for idx, sec in enumerate(spec.scene_seconds):
            for arr in _scene_frames(idx, int(round(sec * spec.fps)), spec.width, spec.height, rng):
                dy, dx = (k * 3) % 8, (k * 5) % 8
                noisy = arr + grain[k % 16, dy:dy + spec.height, dx:dx + spec.width]
                frame = av.VideoFrame.from_ndarray(np.clip(noisy, 0, 255).astype(np.uint8), format="rgb24")
                k += 1
                for packet in stream.encode(frame):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    truth = {"cut_frames": spec.cut_frames, "fps": spec.fps, "frame_count": spec.frame_count,
             "cut_seconds": [c / spec.fps for c in spec.cut_frames]}
    path.with_suffix(".truth.json").write_text(json.dumps(truth))
    return path
