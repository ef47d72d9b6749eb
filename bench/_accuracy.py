"""Cut accuracy and cost: the confirmed detector, TransNetV2 and PySceneDetect on the same encodes.

Run through `python bench/segment.py --accuracy`. Every detector reads the same files in the
same run; cuts are matched within 0.5 s (pipeline.footage.match_cuts, one-to-one by distance).
Cost is CPU seconds per minute of video (the whole segment_video call, signals off), beside the
one-thread decode floor measured on the same files. TransNetV2 runs on the CPU once per encode
and its predictions are cached (bench/_transnet_ref.py; its CPU seconds are those of that run).
"""
from __future__ import annotations

import json
import resource
import time
from pathlib import Path

import av

from pipeline.footage import Encode, FootageSpec, make_footage, match_cuts
from pipeline.segment import SegmentConfig, segment_video
from pipeline.segment.scenes import merge_short, scenes_from_cuts
from pipeline.segment.transnet import cuts_from_predictions

DETECTORS = ("confirmed", "transnetv2", "content", "adaptive", "histogram", "hash")
PRESETS = ("veryfast", "medium", "slow")
RATES = (600, 800, 1200)


def clip_specs(quick: bool) -> list[tuple[str, FootageSpec]]:
    """12 one-minute clips (4 seeds x 3 preset/bitrate pairs), 2 clips heavy in fades, dissolves
    and flashes, and one 10-minute encode."""
    out = []
    seeds = (501, 502) if quick else (501, 502, 503, 504)
    for seed in seeds:
        for k, (preset, rate) in enumerate(zip(PRESETS, RATES[::-1] if seed % 2 else RATES)):
            enc = Encode(preset, rate, int(rate * 1.5), rate * 2, gop=(60, 150, 250)[(seed + k) % 3])
            out.append((f"s{seed}-{preset}-{rate}k", FootageSpec(seconds=60, seed=seed * 10 + k, encode=enc)))
    for seed, preset in ((601, "veryfast"), (602, "slow")):
        out.append((f"p{seed}-{preset}-600", FootageSpec(
            seconds=40, seed=seed * 7 + 600, mean_scene_s=2.5, fade_share=0.18, dissolve_share=0.14,
            flash_share=0.25, fast_share=0.4, encode=Encode(preset, 600, 900, 1200, gop=(60, 150, 250)[seed % 3]))))
    if not quick:
        out.append(("long-10min-medium-800k", FootageSpec(seconds=600, seed=777, mean_scene_s=6.0,
                                                          encode=Encode("medium", 800, 1200, 1600, gop=250))))
    return out


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _decode_floor(path: Path) -> float:
    c0 = _cpu()
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "NONE"
        for _ in c.decode(s):
            pass
    return _cpu() - c0


def _transnet(path: Path, min_scene_s: float) -> tuple[list[float], float]:
    from _transnet_ref import transnet_predictions

    ref = transnet_predictions(path)
    cuts = cuts_from_predictions(ref["pred"], ref["numbers"], ref["seconds"], 0.5)
    if not min_scene_s:
        return [c.seconds for c in cuts], ref["cpu_s"]
    scenes = scenes_from_cuts(cuts, int(ref["numbers"][-1]) + 1, ref["duration_s"])
    return [s.start_s for s in merge_short(scenes, min_scene_s)[1:]], ref["cpu_s"]


def _run(det: str, path: Path, min_scene_s: float) -> tuple[list[float], float]:
    if det == "transnetv2":
        return _transnet(path, min_scene_s)
    c0 = _cpu()
    res = segment_video(str(path), SegmentConfig(detector=det, sample_fps=0.1, signals=False, min_scene_s=min_scene_s))
    cpu = _cpu() - c0
    return ([c.seconds for c in res.cuts] if not min_scene_s else [s.start_s for s in res.scenes[1:]]), cpu


def run_accuracy(cache: Path, quick: bool = False, detectors: tuple[str, ...] = DETECTORS) -> None:
    root = cache / "footage"
    specs = clip_specs(quick)
    t0 = time.perf_counter()
    paths = [(name, make_footage(root / f"{name}.mp4", spec)) for name, spec in specs]
    print(f"{len(paths)} encodes ready in {time.perf_counter() - t0:.0f} s (cached under {root})")
    modes = (("raw", 0.0), ("min_scene_s=2", 2.0))
    totals = {(d, m): [0, 0, 0] for d in detectors for m, _ in modes}
    cpu = {d: 0.0 for d in detectors}
    floor = minutes = 0.0
    long_rows = {}
    for name, path in paths:
        truth = json.loads(path.with_suffix(".truth.json").read_text())
        floor += _decode_floor(path)
        minutes += truth["frame_count"] / truth["fps"] / 60
        line = [f"{name:28s} cuts {len(truth['cut_seconds']):3d} (gradual {len(truth['gradual_frames'])}, "
                f"flashes {len(truth['flash_frames'])})"]
        for det in detectors:
            for mode, min_s in modes:
                found, spent = _run(det, path, min_s)
                if not min_s:
                    cpu[det] += spent
                tp, f, t = match_cuts(found, truth["cut_seconds"], 0.5)
                tot = totals[(det, mode)]
                tot[0] += tp
                tot[1] += f
                tot[2] += t
                if name.startswith("long"):
                    long_rows[(det, mode)] = (tp, f, t)
                if not min_s:
                    line.append(f"{det} P {tp / max(1, f):.2f} R {tp / max(1, t):.2f}")
        print("  ".join(line), flush=True)
    _table("all encodes together (P / R within 0.5 s; CPU s per video-minute):", totals, detectors,
           {d: cpu[d] / minutes for d in detectors}, floor / minutes)
    if long_rows:
        _table("10-minute 800 kb/s encode alone:", long_rows, detectors)


def _table(title: str, counts: dict, detectors: tuple[str, ...], cpu: dict | None = None,
           floor: float | None = None) -> None:
    print(f"\n{title}\n  {'detector':10s} {'raw cuts':>16s} {'min_scene_s=2':>18s}"
          + ("   CPU s/min  x floor" if cpu else ""))
    for det in detectors:
        cells = [f"P {counts[(det, m)][0] / max(1, counts[(det, m)][1]):.3f} "
                 f"R {counts[(det, m)][0] / max(1, counts[(det, m)][2]):.3f}" for m in ("raw", "min_scene_s=2")]
        extra = f"   {cpu[det]:8.2f}  {cpu[det] / floor:6.2f}" if cpu else ""
        print(f"  {det:10s} {cells[0]:>18s} {cells[1]:>20s}{extra}")
    if floor is not None:
        print(f"  one-thread decode floor: {floor:.2f} CPU s per video-minute")
