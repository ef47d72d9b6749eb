"""Results stream: the first finished video reaches the driver (and its commit) long before the run ends.

Runs the demo's media step on V generated videos on a local Ray, twice in one process:
with the runner's Ray Data settings, and with Ray Data's default output block size
(the baseline: a map task then hands back its outputs only when its whole input block is
done). Prints, for each, when the first finished video arrived at the driver and when it
was committed, against the run's wall time.

    python bench/streaming.py --videos 16
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

from pipeline import runner  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from pipeline.job import run_job  # noqa: E402
from pipeline.plan import build_stages, ingest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def one_run(work: Path, out: Path, videos: int, blocks_of: int | None) -> dict:
    cfg = load_config(REPO / "jobs" / "demo.yaml", [f"work_dir={work}", f"demo.videos={videos}",
                                                     "demo.scene_seconds=[10,10,10,10]", "demo.width=480",
                                                     "demo.height=270",
                                                     "demo.include_bad=false", "output.commit_every=4",
                                                     "media.max_workers=2", "media.cpus_per_worker=1"])
    original = runner.configure_data_context
    if blocks_of is not None:  # the baseline: Ray Data's default output block size, videos in blocks
        def default_blocks(progress: bool) -> None:
            original(progress)
            import ray.data

            ray.data.DataContext.get_current().target_max_block_size = 128 * 1024 * 1024

        runner.configure_data_context = default_blocks
        runner.MAX_BLOCKS, saved = max(1, videos // blocks_of), runner.MAX_BLOCKS
    try:
        summary = run_job(cfg, str(out), ingest=ingest, stage_factory=build_stages, progress=False,
                          echo=lambda s: None)
    finally:
        runner.configure_data_context = original
        if blocks_of is not None:
            runner.MAX_BLOCKS = saved
    d = summary.as_dict()
    return {"wall": d["wall_s"], "first": d["first_result_s"], "latency": d["commit_latency_s"],
            "accepted": d["status"].get("accepted", 0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=16)
    args = ap.parse_args()
    runner.init_ray(None, num_cpus=2)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "work"
        one_run(work, Path(tmp) / "warm", 2, None)  # media generated once, Ray warmed up
        one_run(work, Path(tmp) / "warm2", args.videos, None)
        base = one_run(work, Path(tmp) / "base", args.videos, blocks_of=8)
        ours = one_run(work, Path(tmp) / "ours", args.videos, None)
    for name, r in (("baseline (Ray Data default blocks, 8 videos/block)", base), ("runner settings", ours)):
        print(f"{name}: {r['accepted']} accepted in {r['wall']:.1f} s; first result at {r['first']:.1f} s "
              f"({r['first'] / r['wall']:.2f} of the run); commit latency p50 {r['latency'].get('p50')} s, "
              f"max {r['latency'].get('max')} s")
    print(f"first result, runner / baseline: {ours['first'] / base['first']:.2f}")
    os._exit(0)


if __name__ == "__main__":
    main()
