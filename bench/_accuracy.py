"""Cut accuracy of the confirmed detector against PySceneDetect's on realistic encodes.

Run through `python bench/segment.py --accuracy`. Every detector decodes the same files in the
same run; cuts are matched within 0.5 s (pipeline.footage.match_cuts, one-to-one by distance).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from pipeline.footage import Encode, FootageSpec, make_footage, match_cuts
from pipeline.segment import SegmentConfig, segment_video

DETECTORS = ("confirmed", "content", "adaptive", "histogram", "hash")
PRESETS = ("veryfast", "medium", "slow")
RATES = (600, 800, 1200)


def clip_specs(quick: bool) -> list[tuple[str, FootageSpec]]:
    """12 one-minute clips (4 seeds x 3 preset/bitrate pairs) and one 10-minute encode."""
    out = []
    seeds = (501, 502) if quick else (501, 502, 503, 504)
    for seed in seeds:
        for k, (preset, rate) in enumerate(zip(PRESETS, RATES[::-1] if seed % 2 else RATES)):
            enc = Encode(preset, rate, int(rate * 1.5), rate * 2, gop=(60, 150, 250)[(seed + k) % 3])
            out.append((f"s{seed}-{preset}-{rate}k", FootageSpec(seconds=60, seed=seed * 10 + k, encode=enc)))
    if not quick:
        out.append(("long-10min-medium-800k", FootageSpec(seconds=600, seed=777, mean_scene_s=6.0,
                                                          encode=Encode("medium", 800, 1200, 1600, gop=250))))
    return out


def _score(found: list[float], truth: list[float]) -> tuple[int, int, int]:
    return match_cuts(found, truth, 0.5)


def run_accuracy(cache: Path, quick: bool = False) -> None:
    root = cache / "footage"
    specs = clip_specs(quick)
    t0 = time.perf_counter()
    paths = [(name, make_footage(root / f"{name}.mp4", spec)) for name, spec in specs]
    print(f"{len(paths)} encodes ready in {time.perf_counter() - t0:.0f} s (cached under {root})")
    totals = {(d, m): [0, 0, 0] for d in DETECTORS for m in ("raw", "min_scene_s=2")}
    long_rows = {}
    for name, path in paths:
        truth = json.loads(path.with_suffix(".truth.json").read_text())
        line = [f"{name:28s} cuts {len(truth['cut_seconds']):3d} (gradual {len(truth['gradual_frames'])}, "
                f"flashes {len(truth['flash_frames'])})"]
        for det in DETECTORS:
            for mode, extra in (("raw", {}), ("min_scene_s=2", {"min_scene_s": 2.0})):
                res = segment_video(str(path), SegmentConfig(detector=det, sample_fps=0.1, signals=False, **extra))
                found = [c.seconds for c in res.cuts] if mode == "raw" else [s.start_s for s in res.scenes[1:]]
                tp, f, t = _score(found, truth["cut_seconds"])
                tot = totals[(det, mode)]
                tot[0] += tp
                tot[1] += f
                tot[2] += t
                if name.startswith("long"):
                    long_rows[(det, mode)] = (tp, f, t)
                if mode == "raw":
                    line.append(f"{det} P {tp / max(1, f):.2f} R {tp / max(1, t):.2f}")
        print("  ".join(line), flush=True)
    _table("all encodes together (P / R within 0.5 s):", totals)
    if long_rows:
        _table("10-minute 800 kb/s encode alone:", long_rows)


def _table(title: str, counts: dict) -> None:
    print(f"\n{title}\n  {'detector':10s} {'raw cuts':>16s} {'min_scene_s=2':>18s}")
    for det in DETECTORS:
        cells = [f"P {counts[(det, m)][0] / max(1, counts[(det, m)][1]):.3f} "
                 f"R {counts[(det, m)][0] / max(1, counts[(det, m)][2]):.3f}" for m in ("raw", "min_scene_s=2")]
        print(f"  {det:10s} {cells[0]:>18s} {cells[1]:>20s}")
