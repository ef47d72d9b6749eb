"""Ingest at the recipe's scale: turning 400,000 IDs into tasks, against a bare loop that only
builds the same task objects (no parsing, no duplicate collapsing, no validation).

Prints both times and the ratio. Usage: python bench/ingest.py [--ids N]
"""
from __future__ import annotations

import argparse
import time

from pipeline.acquire.ingest import build_tasks
from pipeline.records import VideoTask


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ids", type=int, default=400_000)
    args = ap.parse_args()
    ids = [f"{i:011d}" for i in range(args.ids)] + ["bad id", "00000000007"]
    t0 = time.perf_counter()
    bare = [VideoTask(video_id=v, source=v, source_kind="youtube", input_index=i) for i, v in enumerate(ids)]
    base_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = build_tasks(ids)
    ingest_s = time.perf_counter() - t0
    assert len(res.tasks) == len(bare) - 1
    print(f"{len(ids):,} IDs: bare task objects {base_s:.2f} s, build_tasks {ingest_s:.2f} s "
          f"({ingest_s / base_s:.2f}x the bare loop; {len(ids) / ingest_s:,.0f} IDs/s)")


if __name__ == "__main__":
    main()
