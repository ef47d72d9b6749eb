"""What InternVideo3's SFT trainer trains on, per video length: the budgeted xtuner export against
the naive one (fps 4, up to 2048 frames, the long config's defaults, no per-dataset limits).

For each length and size, a dataset of 3 QA rows per video (grounding, multiple choice, a long
description) is exported by `curate export xtuner`'s code; every sample is then counted the
fork's way (pipeline/budget.py) under the settings each export gives it. A sample over the cap is
truncated and discarded by the trainer: it sees 0 % of that video. Prints, per length, the visual
tokens per sample and the share of the video's duration the trainer sees, and the ratio.

    python bench/export_budget.py [--cap 262144]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.budget import XtunerSettings, count_xtuner  # noqa: E402
from pipeline.export import export_xtuner  # noqa: E402
from pipeline.store import DatasetStore  # noqa: E402
from tests.long_fixtures import long_dataset  # noqa: E402

LENGTHS_MIN = [1, 5, 15.8, 30, 60]
SIZES = [(640, 360), (1280, 720), (1920, 1080)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cap", type=int, default=262_144)
    args = ap.parse_args()
    cap = args.cap
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        videos = {f"v{int(m * 10)}x{h}": (int(m * 60), w, h, 30.0) for m in LENGTHS_MIN for w, h in SIZES}
        out = long_dataset(tmp, str(tmp / "ds"), videos, encode_media=False)
        export_xtuner(out, tmp / "xtuner", check_media=False, max_tokens=cap)
        meta = json.loads((tmp / "xtuner" / "meta.json").read_text())
        budgeted = {}
        for entry in meta.values():
            s = XtunerSettings(**{k: v for k, v in entry.items() if k in XtunerSettings.__dataclass_fields__},
                               max_length=cap)
            for line in open(entry["annotation"]):
                obj = json.loads(line)
                budgeted[obj["id"]] = count_xtuner(obj["messages"], s)
        rows = DatasetStore(out).read_table("sft").to_pylist()
    naive_s = XtunerSettings(max_length=cap)
    print(f"InternVideo3 xtuner long config (fps 4, <= 2048 frames), cap {cap} tokens; 3 samples per video; "
          f"sizes {', '.join(f'{w}x{h}' for w, h in SIZES)}")
    print(f"{'minutes':>8} {'naive vis tok':>14} {'naive seen':>11} {'budget vis tok':>15} {'budget seen':>12} "
          f"{'frames':>7} {'smallest frame':>15} {'seen ratio':>11}")
    for m in LENGTHS_MIN:
        mine = [r for r in rows if abs(r["duration_s"] - int(m * 60)) < 1]
        naive = [count_xtuner(r["messages"], naive_s) for r in mine]
        kept = [budgeted.get(r["id"]) for r in mine]
        n_seen = statistics.fmean(c.seen_share(r["duration_s"], cap) for c, r in zip(naive, mine))
        b_seen = statistics.fmean(c.seen_share(r["duration_s"], cap) if c else 0.0 for c, r in zip(kept, mine))
        n_tok = statistics.fmean(c.video_tokens if not c.over(cap) else 0 for c in naive)
        b_tok = statistics.fmean(c.video_tokens if c and not c.over(cap) else 0 for c in kept)
        small = min((c for c in kept if c), key=lambda c: c.width * c.height)
        ratio = f"{b_seen / n_seen:.2f}x" if n_seen else "inf (naive 0)"
        print(f"{m:>8g} {n_tok:>14,.0f} {n_seen:>10.0%} {b_tok:>15,.0f} {b_seen:>11.0%} "
              f"{max(c.frames for c in kept if c):>7} {small.width:>7}x{small.height:<7} {ratio:>11}")
    print("vis tok: mean visual tokens per sample the trainer keeps (0 for a discarded sample); seen: mean share "
          "of the video's duration between the first and last frame of kept samples")


if __name__ == "__main__":
    main()
