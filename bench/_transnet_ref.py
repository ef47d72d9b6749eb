"""TransNetV2 as the reference: its per-frame predictions for a file, computed once and cached.

TransNetV2 on CPU costs ~1 s of CPU per second of 30 fps video (batched, 2 threads), so every
encode's predictions are kept under the bench cache (bench/.cache/transnet/, gitignored), keyed
by the file's name, size and mtime; cuts at any threshold come from the cached predictions.
Run alone (`nice -n 10 python bench/_transnet_ref.py FILE...`) it fills the cache and prints,
per file, where the confirmed detector and TransNetV2 disagree (and the truth, where known).
"""
from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

from pipeline.footage import match_cuts
from pipeline.segment import SegmentConfig, segment_video
from pipeline.segment.transnet import cuts_from_predictions

CACHE = Path(__file__).resolve().parent / ".cache" / "transnet"


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def transnet_predictions(path: Path, cache: Path = CACHE) -> dict:
    """{'pred', 'numbers', 'seconds', 'cpu_s', 'duration_s'} of TransNetV2 (cpu) on `path`."""
    st = path.stat()
    out = cache / f"{path.stem}.{st.st_size}.{st.st_mtime_ns}.npz"
    if out.is_file():
        z = np.load(out)
        return {k: z[k] for k in z.files} | {"cpu_s": float(z["cpu_s"]), "duration_s": float(z["duration_s"])}
    c0 = _cpu()
    res = segment_video(str(path), SegmentConfig(detector="transnetv2", transnet_device="cpu", signals=False,
                                                 sample_fps=0.1))
    cpu = _cpu() - c0
    # frame numbers/seconds of every decoded frame: the scorer's predictions are one per frame
    from pipeline.segment.decode import DecodeStats, iter_frames, open_video

    container, stream, info = open_video(str(path))
    frames = [(df.number, df.seconds) for df in iter_frames(container, stream, info, DecodeStats())]
    container.close()
    data = {"pred": res.predictions, "numbers": np.array([f[0] for f in frames]),
            "seconds": np.array([f[1] for f in frames]), "cpu_s": np.float64(cpu),
            "duration_s": np.float64(res.duration_s)}
    cache.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + f".tmp-{os.getpid()}.npz")
    np.savez(tmp, **data)
    os.replace(tmp, out)
    return {k: v for k, v in data.items()} | {"cpu_s": cpu, "duration_s": res.duration_s}


def transnet_cuts(path: Path, threshold: float = 0.5) -> list[float]:
    ref = transnet_predictions(path)
    return [c.seconds for c in cuts_from_predictions(ref["pred"], ref["numbers"], ref["seconds"], threshold)]


def compare(path: Path, tol: float = 0.5) -> None:
    """Print where the confirmed detector and TransNetV2 disagree on `path`."""
    t0 = time.perf_counter()
    ref = transnet_cuts(path)
    conf = segment_video(str(path), SegmentConfig(sample_fps=0.1, signals=False))
    mine = [c.seconds for c in conf.cuts]
    side = path.with_suffix(".truth.json")
    truth = json.loads(side.read_text())["cut_seconds"] if side.exists() else None
    only_ref = [t for t in ref if all(abs(t - m) > tol for m in mine)]
    only_mine = [(round(c.seconds, 2), round(c.score, 1), c.kind) for c in conf.cuts
                 if all(abs(c.seconds - t) > tol for t in ref)]
    line = f"{path.name}: transnet {len(ref)} confirmed {len(mine)}"
    if truth is not None:
        for name, cuts in (("transnet", ref), ("confirmed", mine)):
            tp, f, t = match_cuts(cuts, truth, tol)
            line += f"  {name} P {tp / max(1, f):.2f} R {tp / max(1, t):.2f}"
    print(line + f"  ({time.perf_counter() - t0:.0f} s)")
    if only_ref:
        print("   only transnet:", [round(t, 2) for t in only_ref])
    if only_mine:
        print("   only confirmed:", only_mine)


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        compare(Path(arg))
