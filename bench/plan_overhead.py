"""A plan's fixed cost: CPU stages as tasks on pooled workers (the runner's way) vs actor pools.

Every run, wave and re-run of a job is a Ray Data plan; with actor pools each plan started a
process per stage replica (Ray worker start-up plus the stage's imports and setup) before the
first video moved. Runs the same plan of two pure-Python stages over V videos R times on one
local Ray, both ways in one process, and prints the median wall time of a plan and the ratio.

    python bench/plan_overhead.py --videos 8 --repeats 5
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

from pipeline import runner  # noqa: E402
from pipeline.records import VideoTask  # noqa: E402
from pipeline.stage import Resources, Stage  # noqa: E402


class Measure(Stage):
    """Fills media fields from the ID (no I/O): what is timed is the plan, not the work."""

    name = "measure"
    resources = Resources(cpus=0.5, concurrency=(1, 4), batch_size=2)

    def process(self, task: VideoTask) -> VideoTask:
        task.width, task.height, task.duration_s = 64, 48, float(len(task.video_id))
        return task


class Gate(Stage):
    name = "gate"
    resources = Resources(cpus=0.5, concurrency=(1, 2), batch_size=4)

    def process(self, task: VideoTask) -> VideoTask:
        return task


def plan_seconds(videos: int) -> float:
    tasks = [VideoTask(video_id=f"v{i:010d}", source=f"v{i}", source_kind="youtube", input_index=i)
             for i in range(videos)]
    start = time.perf_counter()
    done = list(runner.run_plan(tasks, [Measure(), Gate()], progress=False))
    assert len(done) == videos and all(t.width == 64 for t in done)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args()
    runner.init_ray(None, num_cpus=args.cpus, object_store_mb=256)
    tasks_way = runner.runs_in_actors
    results: dict[str, list[float]] = {"tasks": [], "actors": []}
    for _ in range(args.repeats):  # interleaved, so both ways see the same machine
        runner.runs_in_actors = tasks_way
        results["tasks"].append(plan_seconds(args.videos))
        runner.runs_in_actors = lambda stage: True  # the baseline: every stage an actor pool
        results["actors"].append(plan_seconds(args.videos))
    runner.runs_in_actors = tasks_way
    med = {k: statistics.median(v) for k, v in results.items()}
    for way, times in results.items():
        print(f"{way:>7}: median {med[way]:.2f} s per plan of {args.videos} videos "
              f"({', '.join(f'{t:.2f}' for t in times)})")
    print(f"actor pools / pooled tasks: {med['actors'] / med['tasks']:.1f}x")


if __name__ == "__main__":
    main()
