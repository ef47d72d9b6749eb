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


def _run(det: str, path: Path, min_scene_s: float, _memo: dict = {}) -> tuple[list[float], float]:
    """Cuts of `det` on `path`: raw, or the scene starts after merging scenes under
    `min_scene_s` (segment_video's own scenes_from_cuts + merge_short on the same cuts and
    scores), from one segment_video call per detector and file; its CPU seconds."""
    if det == "transnetv2":
        return _transnet(path, min_scene_s)
    key = (det, str(path))
    if key not in _memo:
        _memo.clear()  # one file at a time
        c0 = _cpu()
        res = segment_video(str(path), SegmentConfig(detector=det, sample_fps=0.1, signals=False, min_scene_s=0))
        _memo[key] = (res, _cpu() - c0)
    res, cpu = _memo[key]
    if not min_scene_s:
        return [c.seconds for c in res.cuts], cpu
    end = res.scenes[-1].end_frame
    scenes = scenes_from_cuts(res.cuts, end, res.duration_s)
    return [s.start_s for s in merge_short(scenes, min_scene_s)[1:]], cpu


def _transnet_skipped(path: Path, max_s: float | None) -> bool:
    """TransNetV2 left out on `path`: longer than `max_s` and its predictions not cached yet."""
    if max_s is None:
        return False
    from _transnet_ref import CACHE

    st = path.stat()
    if (CACHE / f"{path.stem}.{st.st_size}.{st.st_mtime_ns}.npz").is_file():
        return False
    with av.open(str(path)) as c:
        return (c.duration or 0) / av.time_base > max_s


def run_accuracy(cache: Path, quick: bool = False, detectors: tuple[str, ...] = DETECTORS,
                 transnet_max_s: float | None = None) -> None:
    """Print per-encode P/R and the tables. `transnet_max_s`: TransNetV2 (~1 CPU s per second of
    video) only on encodes up to this long unless its predictions are cached; its totals and
    cost then cover fewer encodes, as printed."""
    root = cache / "footage"
    specs = clip_specs(quick)
    t0 = time.perf_counter()
    paths = [(name, make_footage(root / f"{name}.mp4", spec)) for name, spec in specs]
    print(f"{len(paths)} encodes ready in {time.perf_counter() - t0:.0f} s (cached under {root})")
    modes = (("raw", 0.0), ("min_scene_s=2", 2.0))
    totals = {(d, m): [0, 0, 0] for d in detectors for m, _ in modes}
    cpu = {d: 0.0 for d in detectors}
    floor = {d: 0.0 for d in detectors}  # per detector: the encodes it ran on
    minutes = {d: 0.0 for d in detectors}
    skipped: list[str] = []
    all_floor = all_minutes = 0.0
    long_rows = {}
    for name, path in paths:
        truth = json.loads(path.with_suffix(".truth.json").read_text())
        floor_s, mins = _decode_floor(path), truth["frame_count"] / truth["fps"] / 60
        all_floor += floor_s
        all_minutes += mins
        line = [f"{name:28s} cuts {len(truth['cut_seconds']):3d} (gradual {len(truth['gradual_frames'])}, "
                f"flashes {len(truth['flash_frames'])})"]
        for det in detectors:
            if det == "transnetv2" and _transnet_skipped(path, transnet_max_s):
                skipped.append(name)
                line.append(f"{det} skipped")
                continue
            floor[det] += floor_s
            minutes[det] += mins
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
           {d: cpu[d] / max(minutes[d], 1e-9) for d in detectors},
           {d: floor[d] / max(minutes[d], 1e-9) for d in detectors}, all_floor / all_minutes)
    if skipped:
        print(f"  transnetv2 left out on {', '.join(skipped)} (--transnet-max-s {transnet_max_s:g}): its "
              f"row covers {minutes['transnetv2']:.1f} of {max(minutes.values()):.1f} video-minutes")
    if long_rows:
        _table("10-minute 800 kb/s encode alone:", long_rows, detectors)


def _table(title: str, counts: dict, detectors: tuple[str, ...], cpu: dict | None = None,
           floor: dict | None = None, all_floor: float | None = None) -> None:
    """One table: P/R raw and after merging, and where given CPU s per video-minute beside the
    one-thread decode floor of the same encodes (`floor`, per detector)."""
    print(f"\n{title}\n  {'detector':10s} {'raw cuts':>16s} {'min_scene_s=2':>18s}"
          + ("   CPU s/min  x floor" if cpu else ""))
    for det in detectors:
        if (det, "raw") not in counts:
            continue
        cells = [f"P {counts[(det, m)][0] / max(1, counts[(det, m)][1]):.3f} "
                 f"R {counts[(det, m)][0] / max(1, counts[(det, m)][2]):.3f}" for m in ("raw", "min_scene_s=2")]
        extra = f"   {cpu[det]:8.2f}  {cpu[det] / max(floor[det], 1e-9):6.2f}" if cpu else ""
        print(f"  {det:10s} {cells[0]:>18s} {cells[1]:>20s}{extra}")
    if all_floor is not None:
        print(f"  one-thread decode floor: {all_floor:.2f} CPU s per video-minute (all encodes)")
