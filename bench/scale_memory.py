"""Peak driver memory of the commands that read the whole dataset, at recipe scale, beside main's code.

    python bench/scale_memory.py --sizes 48000 379000 --old-sizes 12000 --base "1d50893^1"   # measured at 379K (~35 min)
    python bench/scale_memory.py                                  # new code up to 24K videos, main's up to 2K
    python bench/scale_memory.py --sizes 1000 6000 --old-sizes 1000 --only "curate plan"   # a quick look

Measured at 379K (2026-12-08, shared 2-core machine), peak RSS in MB: run start 801, registry load
1,517 (its actor), `curate plan` 1,106, `curate check --no-decode` 1,458, `export xtuner` 309,
`export verl` 312, run-end reports 508; the code before streaming (`1d50893^1`) at 12K: 242, 321,
1,367, 2,082, 1,231, 276, 750.

The datasets are `bench/scale_store.py`'s synthetic committed datasets (real rows of every config,
~12 KB a `videos` row, 10 sft, 5 rl rows a video; the new layout as compaction leaves it). Each
command runs as its own process and its peak RSS is the child's `ru_maxrss` (`os.wait4`); the
same command with main's code (`git archive` of --base, on PYTHONPATH first) runs on the same
dataset in the same run. Where --videos (379K) is one of the sizes, its peak is the measurement;
else a line fitted through the sizes (bytes a video + a fixed part) extrapolates to it, and says so. The streamed code holds one record batch (4,096 rows) at
a time, and the Parquet reader decodes one row group (the seed writes 8,192 videos at a time: ~100
MB of `videos`; compaction's are ~64 MB) under it, so below ~8K videos its peak still grows with the
dataset: its line is fitted over the sizes past that (main's code holds everything, so any sizes
do for it).

Commands: `curate plan` of the recipe job (jobs/internvideo3_long.yaml) with every committed video
pending (its stage keys differ from the synthetic ones) plus 5 % new IDs; `curate check --no-decode`;
`curate export xtuner --no-check-media` and `export verl`; the run's end reports (quality report and
signal distributions, as `finish` writes them); run start (the driver up to its first stage: reconcile,
card state, ingest, ledger + select over every input) and the near-duplicate registry's load
(`open_registry`, in its actor's process).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

JOB = ROOT / "jobs" / "internvideo3_long.yaml"
BATCH_VIDEOS = 8192  # one row group of `videos` as the seed writes them (bench/scale_store.py `seed_new`)
RUN_START = """
import sys
from pathlib import Path
from pipeline.card import CardState
from pipeline.config import load_config
from pipeline.job import select_pending
from pipeline.plan import ingest
from pipeline.store import DatasetStore
out, ids, work = sys.argv[1:4]
cfg = load_config({job!r}, ["input.path=" + ids, "work_dir=" + work])
store = DatasetStore(out)
store.reconcile()
CardState.from_store(store)
tasks, _ = ingest(cfg, Path(work))
ledger = store.ledger([t.video_id for t in tasks])
pending, skipped = select_pending(tasks, ledger, "fp")
print(len(tasks), len(pending))
""".format(job=str(JOB))
REGISTRY = """
import sys
from pipeline.config import load_config
from pipeline.filter.index import open_registry
cfg = load_config({job!r}, [])
print(open_registry(cfg.dedupe.match, sys.argv[1]).size())
""".format(job=str(JOB))
REPORTS = """
import sys
from pipeline.report import quality_report, signal_distributions
from pipeline.store import DatasetStore
store = DatasetStore(sys.argv[1])
q = quality_report(store)
s = signal_distributions(store)
print(q["sft_rows"], s["videos"])
"""


def commands(out: str, ids: str, work: str, dest: str) -> dict[str, list[str]]:
    """name -> argv after `python`; every one reads the whole dataset at `out`."""
    cli = ["-m", "pipeline.cli"]
    return {
        "run start": ["-c", RUN_START, out, ids, work],
        "registry load (actor)": ["-c", REGISTRY, out],
        "curate plan": [*cli, "plan", str(JOB), "--out", out, "--set", f"input.path={ids}", "--set",
                        f"work_dir={work}"],
        "curate check": [*cli, "check", out, "--no-decode"],
        "export xtuner": [*cli, "export", "xtuner", out, os.path.join(dest, "xtuner"), "--no-check-media"],
        "export verl": [*cli, "export", "verl", out, os.path.join(dest, "verl")],
        "run-end reports": ["-c", REPORTS, out],
    }


def peak_rss(argv: list[str], tree: Path, cwd: str) -> tuple[float, float, str]:
    """(peak RSS in MB, seconds, last output line) of `python argv` with `tree`'s code first on the path.
    Measured by /usr/bin/time (the child's ru_maxrss): a process forked straight from this one would
    report this process's RSS as its own high-water mark (Linux carries it over fork and exec)."""
    env = {**os.environ, "PYTHONPATH": str(tree), "RAY_AUTH_MODE": "disabled"}
    t0 = time.perf_counter()
    with tempfile.NamedTemporaryFile("r") as peak, tempfile.TemporaryFile("w+") as log:
        code = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", peak.name, sys.executable, *argv], cwd=cwd, env=env,
                              stdout=log, stderr=subprocess.STDOUT).returncode
        log.seek(0)
        text = log.read()
        kb = peak.read().strip().splitlines()[-1]
    seconds = time.perf_counter() - t0
    if "Traceback" in text or code not in (0, 1):  # check / export exit 1 on violations / rejects
        raise RuntimeError(f"{argv[:4]} failed ({code}):\n{text[-3000:]}")
    return int(kb) / 1024, seconds, (text.strip().splitlines() or [""])[-1][:100]


def base_tree(ref: str) -> Path:
    """The code at `ref` (pipeline, synth, schemas) in a temporary folder, from git."""
    path = Path(tempfile.mkdtemp(prefix="scale-memory-base-"))
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "pipeline", "synth", "schemas"],
                             capture_output=True)
    if archive.returncode:
        raise SystemExit(f"needs git history with {ref}: {archive.stderr.decode()[-300:]}")
    subprocess.run(["tar", "-x", "-C", str(path)], input=archive.stdout, check=True)
    return path


def build(base: Path, rows, n: int, new_share: float) -> tuple[str, str, str]:
    """A committed dataset of n videos, an ID list of them plus new ones, a work dir."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bench.scale_store import ids_for, seed_new

    out = str(base / f"out-{n}")
    seed_new(out, rows, n, 0.01)
    ids = str(base / f"ids-{n}.parquet")
    pq.write_table(pa.table({"video_id": ids_for(0, n + int(n * new_share))}), ids)
    work = base / f"work-{n}"
    work.mkdir(exist_ok=True)
    return out, ids, str(work)


def fit(xs: list[int], ys: list[float]) -> tuple[float, float]:
    """(MB fixed, KB a video) of a least-squares line."""
    slope, intercept = np.polyfit(xs, ys, 1) if len(xs) > 1 else (0.0, ys[0])
    return float(intercept), float(slope) * 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=379_000, help="the size to extrapolate to")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000, 2_000, 12_000, 24_000], help="new code, measured")
    ap.add_argument("--old-sizes", type=int, nargs="*", default=[1_000, 2_000], help="main's code, measured")
    ap.add_argument("--base", default="main", help="git ref of the code to compare with")
    ap.add_argument("--only", nargs="*", default=None, help="command names to run (default: all)")
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    import pipeline.store as store_module
    from bench.scale_store import Rows

    store_module.validate_row = lambda config, row: None  # per-row work, not what is measured
    base = Path(args.dir or tempfile.mkdtemp(prefix="scale-memory-"))
    base.mkdir(parents=True, exist_ok=True)
    old_tree = base_tree(args.base) if args.old_sizes else None
    rows = Rows()
    results: dict[tuple[str, str], dict[int, float]] = {}
    times: dict[tuple[str, str], dict[int, float]] = {}
    for n in sorted(set(args.sizes) | set(args.old_sizes)):
        t0 = time.perf_counter()
        out, ids, work = build(base, rows, n, 0.05)
        print(f"N={n}: built in {time.perf_counter() - t0:.0f} s", flush=True)
        trees = ([("new", ROOT)] if n in args.sizes else []) + ([("main", old_tree)] if n in args.old_sizes else [])
        for name, argv in commands(out, ids, work, str(base / f"dest-{n}")).items():
            if args.only and name not in args.only:
                continue
            for label, tree in trees:
                mb, seconds, last = peak_rss(argv, tree, str(tree))
                results.setdefault((name, label), {})[n] = mb
                times.setdefault((name, label), {})[n] = seconds
                print(f"  {name:<22} {label:<4} peak RSS {mb:8.0f} MB  {seconds:7.1f} s   {last}", flush=True)
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(base / f"dest-{n}", ignore_errors=True)
    print(f"\npeak RSS (MB) measured, and at N={args.videos:,}: measured where it was run, else a line (MB + KB a "
          "video) fitted through the sizes (extrapolated; times from a shared, loaded 2-core machine)")
    print(f"{'command':<22} {'code':<5} " + " ".join(f"{'N=' + str(n):>9}" for n in sorted(set(args.sizes)
                                                                                        | set(args.old_sizes)))
          + f" {'fixed MB':>9} {'KB/video':>9} {'at N=' + format(args.videos, ','):>13} {'s/1K videos':>12}")
    for (name, label), by_n in results.items():
        xs = sorted(by_n)
        past = [x for x in xs if x > BATCH_VIDEOS]
        fitted = past if label == "new" and len(past) > 1 else xs
        secs = times[name, label]
        rate = 1000 * secs[xs[-1]] / xs[-1]
        sizes = " ".join(f"{by_n[n]:>9.0f}" if n in by_n else f"{'':>9}" for n in sorted(set(args.sizes)
                                                                                       | set(args.old_sizes)))
        if args.videos in by_n:  # measured at the target: no line needed
            line, at = f"{'':>9} {'':>9}", f"{by_n[args.videos]:>7.0f} MB measured"
        elif len(fitted) > 1:
            fixed, per = fit(fitted, [by_n[x] for x in fitted])
            line, at = f"{fixed:>9.0f} {per:>9.2f}", f"{fixed + per * args.videos / 1024:>10.0f} MB"
        else:  # one size: nothing to draw a line through
            line, at = f"{'':>9} {'':>9}", f"{'-':>13}"
        print(f"{name:<22} {label:<5} {sizes} {line} {at} {rate:>12.1f}")
    if not args.dir:
        shutil.rmtree(base, ignore_errors=True)
    if old_tree is not None:
        shutil.rmtree(old_tree, ignore_errors=True)


if __name__ == "__main__":
    main()
