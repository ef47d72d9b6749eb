"""Incremental re-run bookkeeping at production scale: how fast is "what is already done?".

Builds a dataset directory holding N committed videos (default 400,000, in shards of
`--shard-rows`), then times, in one run:
  (a) baseline: reading the committed `videos` rows in full (what a naive re-run would do);
  (b) the pipeline: `DatasetStore.ledger()` (two columns) + `select_pending` over N + 1,000 inputs.
Prints both and the ratio b/a. Usage: python bench/ledger.py [--videos N] [--shard-rows R]
"""
from __future__ import annotations

import argparse
import tempfile
import time

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.job import select_pending
from pipeline.records import Scene, VideoTask, video_row
from pipeline.schema import arrow_schema
from pipeline.store import DatasetStore


def build(root: str, videos: int, shard_rows: int) -> DatasetStore:
    store = DatasetStore(root)
    store.init()
    task = VideoTask("x", "x", "youtube", 0, video_path="/cache/x.mp4", width=640, height=360, fps=30.0,
                     frame_count=28800, duration_s=960.0, codec="h264").accept()
    task.scenes = [Scene(i, i * 10.0, i * 10.0 + 10, i * 300, i * 300 + 300, i * 10.0 + 5, "cut") for i in range(40)]
    row = {**video_row(task), "config_hash": "0" * 16, "pipeline_fingerprint": "fp", "run_id": "r",
           "processed_at": "2026-11-22T00:00:00Z"}
    template = pa.Table.from_pylist([row], schema=arrow_schema("videos"))
    for start in range(0, videos, shard_rows):
        n = min(shard_rows, videos - start)
        table = template.take([0] * n)
        ids = pa.array([f"v{start + i:010d}" for i in range(n)])
        table = table.set_column(table.schema.get_field_index("video_id"), "video_id", ids)
        pq.write_table(table, store.path("data", "videos", f"r-{start // shard_rows:06d}.parquet"))
    return store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=400_000)
    ap.add_argument("--shard-rows", type=int, default=4096)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        store = build(tmp, args.videos, args.shard_rows)
        print(f"built {args.videos} committed videos in {len(store.chunks('videos'))} shards "
              f"({time.perf_counter() - t0:.1f} s)")
        inputs = [VideoTask(f"v{i:010d}", "", "youtube", i) for i in range(args.videos + 1000)]
        t0 = time.perf_counter()
        full = store.read_table("videos").to_pylist()
        a = time.perf_counter() - t0
        del full
        t0 = time.perf_counter()
        pending, skipped = select_pending(inputs, store.ledger(), "fp")
        b = time.perf_counter() - t0
        assert skipped == args.videos and len(pending) == 1000
        print(f"(a) read committed rows in full : {a:7.2f} s")
        print(f"(b) ledger + select_pending     : {b:7.2f} s  ({skipped} skipped, {len(pending)} pending)")
        print(f"ratio b/a: {b / a:.3f}")


if __name__ == "__main__":
    main()
