"""Benchmark: the content signals' distributions per kind of video, to set the filter bounds.

Kinds: realistic footage (pipeline/footage.py at 360p, the --accuracy encodes when cached), the
real clips in ../shared/real_videos, the demo's flat sample videos, and made-up degenerate ones:
slides (text on a plain background, a slide every 4 s), a still picture, a black screen, footage
letterboxed to 2.39:1 and pillarboxed to 4:3. Prints each signal's range per kind, and the time
the signals add to the decode.
Usage: python bench/signals.py [--cache bench/.cache]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.config import DemoConfig  # noqa: E402
from pipeline.demo import prepare_demo_inputs  # noqa: E402
from pipeline.footage import Encode, FootageSpec, encode_frames, footage_frames, make_footage  # noqa: E402
from pipeline.segment import SegmentConfig, segment_video  # noqa: E402

REAL = Path(__file__).resolve().parents[2] / "shared" / "real_videos"
W, H, FPS = 640, 360, 30
ENC = Encode("veryfast", 800, 1200, 1600)
FIELDS = ("motion", "motion_p90", "static_share", "black_share", "blank_share", "letterbox", "pillarbox",
          "text_score")


def _slides(seconds: int, seed: int):
    rng = np.random.default_rng(seed)
    for k in range(seconds // 4):
        img = np.full((H, W, 3), rng.integers(200, 256, 3), np.uint8)
        cv2.putText(img, f"Section {k + 1}", (30, 60), cv2.FONT_HERSHEY_SIMPLEX, 1.3, (20, 20, 20), 3)
        for i in range(int(rng.integers(3, 8))):
            cv2.putText(img, f"- a bullet point with some words {i}", (50, 120 + 34 * i), cv2.FONT_HERSHEY_SIMPLEX,
                        0.8, (40, 40, 40), 2)
        if k % 2:
            cv2.rectangle(img, (420, 200), (600, 330), (60, 120, 200), -1)  # a figure
        yield from [img] * (4 * FPS)


def _boxed(frames, top: int = 0, side: int = 0):
    for f in frames:
        g = np.zeros_like(f)
        g[top:H - top, side:W - side] = cv2.resize(f, (W - 2 * side, H - 2 * top))
        yield g


def made(root: Path) -> dict[str, list[Path]]:
    root.mkdir(parents=True, exist_ok=True)
    out: dict[str, list[Path]] = {}

    def enc(name: str, frames) -> Path:
        path = root / f"{name}.mp4"
        if not path.exists():
            encode_frames(path, frames, FPS, W, H, ENC)
        return path

    spec = lambda seed: FootageSpec(seconds=30, seed=seed, encode=ENC)  # noqa: E731
    out["footage"] = [make_footage(root / f"footage{s}.mp4", spec(s)) for s in (61, 62, 63)]
    out["slides"] = [enc(f"slides{s}", _slides(32, s)) for s in (1, 2)]
    first = next(footage_frames(spec(64)))
    out["still picture"] = [enc("still", iter([first] * 20 * FPS))]
    rng = np.random.default_rng(0)
    out["black screen"] = [enc("black", iter([np.clip(rng.normal(16, 2, (H, W, 3)), 0, 255).astype(np.uint8)] * 20 * FPS))]
    out["letterbox 2.39:1"] = [enc("letterbox", _boxed(footage_frames(spec(65)), top=45))]
    out["pillarbox 4:3"] = [enc("pillarbox", _boxed(footage_frames(spec(66)), side=80))]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cache", default=str(Path(__file__).resolve().parent / ".cache"))
    args = ap.parse_args()
    kinds = made(Path(args.cache) / "signals")
    acc = sorted((Path(args.cache) / "footage").glob("s5*.mp4"))
    if acc:
        kinds["footage"] += acc
    if REAL.exists():
        kinds["real clips"] = sorted(REAL.rglob("*.mp4"))
    kinds["demo samples"] = [Path(p) for p in prepare_demo_inputs(DemoConfig(videos=4, include_bad=False),
                                                                  Path(args.cache) / "signals")]
    print(f"{'kind':18s} {'n':>3s} " + " ".join(f"{f:>17s}" for f in FIELDS))
    on = off = 0.0
    for kind, paths in kinds.items():
        vals = []
        for p in paths:
            t0 = time.process_time()
            res = segment_video(str(p), SegmentConfig(sample_fps=0.25))
            on += time.process_time() - t0
            t0 = time.process_time()
            segment_video(str(p), SegmentConfig(sample_fps=0.25, signals=False))
            off += time.process_time() - t0
            vals.append([getattr(res.signals, f) for f in FIELDS])
        v = np.array(vals)
        cells = [f"{v[:, i].min():7.3f}-{v[:, i].max():<7.3f}"[:17] for i in range(len(FIELDS))]
        print(f"{kind:18s} {len(paths):3d} " + " ".join(f"{c:>17s}" for c in cells), flush=True)
    print(f"\nsignals add {100 * (on - off) / max(1e-9, off):.1f}% CPU to the segment stage on these videos "
          f"({on:.1f} s with, {off:.1f} s without)")


if __name__ == "__main__":
    main()
