"""The store at recipe scale: a re-run's fixed overhead with a 20K batch over 379K committed videos,
`load_dataset` cold, file counts, and 20 weekly batches, beside today's layout in the same run.

    python bench/scale_store.py                       # 379K new layout; old layout at 5K/10K/20K, extrapolated
    python bench/scale_store.py --videos 50000 --weeks 3 --old 2000 4000   # a quick look

Rows are real rows of every config (built with pipeline.records and synth.publish: scenes, captions,
signals with a 48-point signature, stage keys, QA items with chat messages and a verification
record of k=4 answers, RL rows, distillation rows, rejects), about 12 KB (videos), 1.3 KB (sft)
and 0.6 KB (rl) in Arrow, with a random text part sized so that zstd compresses them like
real ones instead of 100x. 1 % of the committed videos are transient rejects (rate_limited):
every re-run retries them, which is what made today's reconcile rewrite most `videos` shards.

Per layout, the store's part of a re-run (the pipeline's own stages excluded): finding the live
files, the ledger + `select_pending` over every committed ID plus the batch, the batch's commits
(64 videos each, as `output.commit_every`, card rewritten after each, JSON Schema validation
switched off in both: it is per-row work, the same in both), and the run's end (reconcile; the
new layout's compaction when due; the card). Today's layout is the store at commit d0131ab
(`git show`), built at the smaller sizes `--old` and extrapolated to `--videos` by a line fitted
per phase: a lower bound, since its listing per chunk grows with chunks squared. Times come from a shared,
loaded 2-core machine: the ratio against the baseline in the same run is what counts.
"""
from __future__ import annotations

import argparse
import binascii
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pipeline.store as new_store  # noqa: E402
from pipeline.card import CardState, write_card  # noqa: E402
from pipeline.job import compact_store, select_pending  # noqa: E402
from pipeline.records import (Caption, ContentSignals, Reason, Scene, SignaturePoint, StageTiming,  # noqa: E402
                              Synthesis, Verification, VideoTask, video_row, QAItem)
from pipeline.schema import CONFIGS, arrow_schema, validate_row  # noqa: E402
from synth.config import VerifyPolicy  # noqa: E402
from synth.evaluator import format_span, grounding_question  # noqa: E402
from synth.publish import publish_rows  # noqa: E402

OLD_COMMIT = "d0131ab"
PROV = {"config_hash": "0123456789abcdef", "pipeline_fingerprint": "fp-recipe", "run_id": "r0",
        "processed_at": "2026-12-01T00:00:00Z"}
RANDOM_TEXT = {"videos": ("title", 3000), "sft": ("answer", 400), "rejects": ("message", 300)}  # hex chars


def _bundle(k: int, rng: np.random.Generator) -> dict[str, list[dict]]:
    """One accepted video's rows in every config, varied by k."""
    duration = float(np.clip(rng.lognormal(np.log(948), 0.6), 120, 3600))
    task = VideoTask(f"tmpl{k:07d}", f"https://www.youtube.com/watch?v=tmpl{k:07d}", "youtube", k,
                     video_path=f"/cache/videos/tmpl{k:07d}.mp4", width=1280, height=720, fps=30.0,
                     frame_count=int(duration * 30), duration_s=round(duration, 1), codec="h264", title="t",
                     channel="a channel", upload_date="20260101").accept()
    n = int(rng.integers(40, 120))
    cuts = np.sort(rng.uniform(0, duration, n - 1))
    bounds = [0.0, *cuts.tolist(), duration]
    task.scenes = [Scene(i, round(a, 3), round(b, 3), int(a * 30), int(b * 30), round((a + b) / 2, 3),
                         "start" if i == 0 else "cut", float(rng.uniform(0.3, 1)), f"{rng.integers(1 << 62):016x}",
                         float(rng.gamma(2, 2))) for i, (a, b) in enumerate(zip(bounds, bounds[1:]))]
    task.signals = ContentSignals(4.1, 9.3, 0.01, 0.0, 0.0, 0.0, 0.0, 0.12,
                                  [SignaturePoint(round(duration * i / 48, 2), f"{rng.integers(1 << 62):016x}")
                                   for i in range(48)])
    task.captions = [Caption(round(a, 2), round(min(duration, a + 30), 2),
                             "A person in a red jacket walks along a harbour; boats move in the background. " * 3)
                     for a in np.arange(0, duration, 30.0)[:40]]
    task.stage_timings = [StageTiming(s, float(rng.uniform(1, 60))) for s in
                          ("fetch", "segment", "select", "filter", "dedupe", "synthesize", "verify")]
    items = []
    for i in range(10):
        fmt = ["open_ended", "multiple_choice", "grounding", "description"][i % 4]
        s = round(float(rng.uniform(0, duration * 0.8)), 1)
        e = round(min(duration, s + float(rng.uniform(5, 60))), 1)
        question = (grounding_question(duration, "the harbour at dusk") if fmt == "grounding"
                    else f"What does the person in the red jacket do after scene {i}?")
        answer = format_span(s, e) if fmt == "grounding" else ("runs" if fmt == "multiple_choice" else "walks on. " * 8)
        item = QAItem(["perception", "spatio_temporal", "event_action", "holistic"][i % 4], "fine_grained_action",
                      fmt, question, answer, s, e, options=["walks", "runs", "sits", "waves"] if fmt == "multiple_choice"
                      else [], index=i, prompt_version="write_qa.v3", verifiable=fmt == "grounding",
                      source="composed" if fmt == "grounding" else "teacher")
        rate = [1.0, 0.75, 0.5, 0.25][i % 4]
        item.verification = Verification("m2la-8b", [answer] * 4, rate, rate, 4, "no idea", False, None,
                                         "keep" if rate >= 0.5 else ("hard" if i % 3 else "reject"), "agree")
        items.append(item)
    task.synthesis = Synthesis(teacher="qwen3-vl-235b", items=items)
    keys = [{"stage": s, "part": p, "value": "x" * 16} for s in ("fetch", "segment", "filter", "synthesize", "verify")
            for p in ("version", "config", "prompts")]
    rows = {"videos": [{**video_row(task), "stage_keys": keys}]}
    rows.update(publish_rows(task, VerifyPolicy()))
    return rows


def _rejected(vid: str, reason: Reason) -> dict:
    task = VideoTask(vid, vid, "youtube", 0).reject(reason, f"{reason.value}: HTTP 429", stage="fetch")
    return {**video_row(task), "stage_keys": []}


class Rows:
    """Row templates as Arrow tables; `tables(ids, kinds)` gives every config's rows for those videos."""

    def __init__(self, templates: int = 32, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        bundles = [_bundle(k, rng) for k in range(templates)]
        for b in bundles[:2]:  # they are real rows
            for config, rows in b.items():
                for row in rows:
                    assert validate_row(config, {**row, **PROV}) is None, (config, validate_row(config, {**row, **PROV}))
        self.per_video = {c: len(bundles[0].get(c, [])) for c in CONFIGS}
        self.tmpl = {c: pa.Table.from_pylist([{**r, **PROV} for b in bundles for r in b.get(c, [])],
                                             schema=arrow_schema(c)) for c in CONFIGS}
        self.offset = {c: np.cumsum([0] + [len(b.get(c, [])) for b in bundles]) for c in CONFIGS}
        self.templates = templates
        self.rejected = {r: pa.Table.from_pylist([{**_rejected("x" * 11, r), **PROV}], schema=arrow_schema("videos"))
                         for r in (Reason.rate_limited, Reason.too_short)}
        self.rng = rng

    def tables(self, ids: list[str], kinds: list[str] | None = None) -> dict[str, pa.Table]:
        """kinds: 'accepted' (default), 'rate_limited', 'too_short' per video."""
        kinds = kinds or ["accepted"] * len(ids)
        out = {}
        which = self.rng.integers(self.templates, size=len(ids))
        for config in CONFIGS:
            parts, vids = [], []
            idx = [np.arange(self.offset[config][w], self.offset[config][w + 1]) for w, k in zip(which, kinds)
                   if k == "accepted"]
            acc_ids = [v for v, k in zip(ids, kinds) if k == "accepted"]
            if idx and sum(len(i) for i in idx):
                parts.append(self.tmpl[config].take(pa.array(np.concatenate(idx))))
                vids += [v for v, i in zip(acc_ids, idx) for _ in range(len(i))]
            if config == "videos":
                for reason, table in self.rejected.items():
                    rid = [v for v, k in zip(ids, kinds) if k == reason.value]
                    if rid:
                        parts.append(table.take(pa.array(np.zeros(len(rid), dtype=np.int64))))
                        vids += rid
            if not parts:
                continue
            table = pa.concat_tables(parts)
            table = table.set_column(table.schema.get_field_index("video_id"), "video_id", pa.array(vids, pa.string()))
            if config in RANDOM_TEXT:
                col, chars = RANDOM_TEXT[config]
                table = table.set_column(table.schema.get_field_index(col), col, _random_text(len(table), chars))
            out[config] = table
        return out


def _random_text(n: int, chars: int) -> pa.Array:
    """n strings of `chars` hex characters: compresses about 2x, like text, unlike repeated templates."""
    data = binascii.hexlify(os.urandom(n * chars // 2))
    offsets = np.arange(0, n + 1, dtype=np.int32) * chars
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets.tobytes()), pa.py_buffer(data))


def ids_for(start: int, n: int) -> list[str]:
    return [f"v{i:010d}" for i in range(start, start + n)]


def kinds_for(n: int, rng: np.random.Generator, transient: float) -> list[str]:
    draw = rng.random(n)
    return ["rate_limited" if d < transient else ("too_short" if d < transient + 0.05 else "accepted") for d in draw]


def old_module():
    """The store as it was before the log (today's layout), from git."""
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{OLD_COMMIT}:pipeline/store.py"], capture_output=True,
                         text=True)
    if src.returncode:
        raise SystemExit(f"needs git history with {OLD_COMMIT} for the baseline: {src.stderr.strip()}")
    path = Path(tempfile.mkdtemp()) / "store_v1.py"
    path.write_text(src.stdout)
    spec = importlib.util.spec_from_file_location("store_v1", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["store_v1"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def seed_old(module, root: str, rows: Rows, videos: int, transient: float, every: int) -> None:
    """Today's layout: one shard per config per commit of `every` videos."""
    store = module.DatasetStore(root)
    store.init()
    rng = np.random.default_rng(1)
    import pyarrow.parquet as pq

    for c, start in enumerate(range(0, videos, every)):
        ids = ids_for(start, min(every, videos - start))
        for config, table in rows.tables(ids, kinds_for(len(ids), rng, transient)).items():
            pq.write_table(table, store.path("data", config, f"20261101T000000-seed{c // 1000:02d}-{c:06d}.parquet"),
                           compression="zstd")


def seed_new(root: str, rows: Rows, videos: int, transient: float) -> new_store.DatasetStore:
    """The new layout as compaction leaves it: base shards of ~256 MB, transient rejects in a retry file."""
    store = new_store.DatasetStore(root)
    store.init()
    store.reconcile()
    rng = np.random.default_rng(1)
    intent = new_store._Intent(store, "seed")
    writers = {(c, k): new_store._ShardWriter(store, c, "20261101T000000-seed" + ("-retry" if k == "retry" else ""), k,
                                              intent, store.shard_bytes) for c in CONFIGS for k in ("base", "retry")}
    for start in range(0, videos, 8192):
        ids = ids_for(start, min(8192, videos - start))
        kinds = kinds_for(len(ids), rng, transient)
        retry = {v for v, k in zip(ids, kinds) if k == "rate_limited"}
        for config, table in rows.tables(ids, kinds).items():
            mask = pc.is_in(table.column("video_id"), value_set=pa.array(sorted(retry), pa.string()))
            writers[config, "base"].write(table.filter(pc.invert(mask)))
            writers[config, "retry"].write(table.filter(mask))
    adds = [e for w in writers.values() for e in w.close()]
    store._append({"op": "seed", "add": adds})
    intent.done()
    return store


def rerun(module, root: str, rows: Rows, committed: int, batch: int, every: int, new_layout: bool,
          seq: int, transient: float = 0.0) -> dict[str, float]:
    """One re-run's store work: live files, ledger + select, the batch's commits, the run's end.
    Retried videos succeed this time; of the new ones, `transient` are rejected as rate_limited
    (the next run retries them)."""
    from pipeline.records import VideoTask as Task

    times: dict[str, float] = {}
    t0 = time.perf_counter()
    store = module.DatasetStore(root)
    files = sum(len(store.shard_paths(c)) for c in CONFIGS)
    card = CardState.from_store(store)
    times["live files + card state"] = time.perf_counter() - t0
    inputs = [Task(v, v, "youtube", i) for i, v in enumerate(ids_for(0, committed + batch))]
    t0 = time.perf_counter()
    ledger = store.ledger([t.video_id for t in inputs]) if new_layout else store.ledger()
    pending, skipped = select_pending(inputs, ledger, PROV["pipeline_fingerprint"])
    times["ledger + select"] = time.perf_counter() - t0
    del ledger
    retried = len(pending) - batch
    provenance = {**PROV, "run_id": f"r{seq}"}
    spent = 0.0  # the store's commit and the card after it; building the rows (the pipeline's part) left out
    for c, start in enumerate(range(0, len(pending), every)):
        ids = [t.video_id for t in pending[start:start + every]]
        kinds = ["rate_limited" if int(v[1:]) >= committed and rows.rng.random() < transient else "accepted"
                 for v in ids]
        chunk = {k: t.to_pylist() for k, t in rows.tables(ids, kinds).items()}
        t0 = time.perf_counter()
        result = store.commit(f"20261201T{seq:06d}-run-{c:06d}", chunk, provenance=provenance)
        card.add(result)
        write_card(store, "bench", card)
        spent += time.perf_counter() - t0
    times["commits"] = spent
    times["_commits"] = c + 1
    t0 = time.perf_counter()
    stale = store.reconcile()
    times["reconcile"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if new_layout and store.compact_due():
        compact_store(store, out=root, note=lambda s: None)
    write_card(store, "bench", CardState.from_store(store))
    times["compact + card"] = time.perf_counter() - t0
    times["_files_before"] = files
    times["_retried"] = retried
    times["_stale_rows"] = stale.get("stale_rows_removed", 0)
    times["_skipped"] = skipped
    return times


def load_cold(root: str, config: str) -> float:
    """`datasets.load_dataset(root, config)` in a fresh process with an empty cache."""
    cache = tempfile.mkdtemp(prefix="hfcache-")
    code = (f"import time, datasets; t=time.perf_counter(); d=datasets.load_dataset({root!r}, {config!r}, split='train');"
            f" print(time.perf_counter()-t, d.num_rows)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "HF_DATASETS_CACHE": cache, "HF_HUB_OFFLINE": "1"})
    shutil.rmtree(cache, ignore_errors=True)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    seconds, n = out.stdout.split()
    return float(seconds)


def file_count(root: str) -> Counter:
    out: Counter = Counter()
    for dirpath, _, names in os.walk(root):
        top = os.path.relpath(dirpath, root).split(os.sep)[0]
        out[top] += len(names)
    return out


def fit(xs: list[int], ys: list[float], x: int) -> float:
    """A least-squares line through the measured points, evaluated at x: a lower bound for today's
    layout, whose listing per chunk grows with chunks squared (a quadratic fit of a few noisy points
    on a loaded machine extrapolates to nonsense)."""
    return max(0.0, float(np.polyval(np.polyfit(xs, ys, 1), x)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=379_000)
    ap.add_argument("--batch", type=int, default=20_000)
    ap.add_argument("--weeks", type=int, default=20)
    ap.add_argument("--old", type=int, nargs="*", default=[5_000, 10_000, 20_000])
    ap.add_argument("--transient", type=float, default=0.01)
    ap.add_argument("--commit-every", type=int, default=64)
    ap.add_argument("--dir", default=None, help="where to build (default: a temporary folder)")
    args = ap.parse_args()
    # validation is per-row work, the same in both layouts: off, so the store's own part shows
    new_store.validate_row = lambda config, row: None
    old = old_module() if args.old else None
    if old is not None:
        old.validate_row = lambda config, row: None
    rows = Rows()
    sizes = {c: rows.tmpl[c].nbytes / max(1, rows.tmpl[c].num_rows) for c in CONFIGS}
    print("row sizes (Arrow, bytes): " + ", ".join(f"{c} {s:,.0f}" for c, s in sizes.items())
          + "; per accepted video: " + ", ".join(f"{c} {n}" for c, n in rows.per_video.items()))
    base = Path(args.dir or tempfile.mkdtemp(prefix="scale-store-"))
    base.mkdir(parents=True, exist_ok=True)
    phases = ["live files + card state", "ledger + select", "commits", "reconcile", "compact + card"]

    if args.old:
        print(f"\n== today's layout (store at {OLD_COMMIT}), re-run with a {args.batch} batch ==")
    measured: dict[int, dict] = {}
    for n in args.old:
        root = str(base / f"old-{n}")
        t0 = time.perf_counter()
        seed_old(old, root, rows, n, args.transient, args.commit_every)
        built = time.perf_counter() - t0
        before = file_count(root)
        times = rerun(old, root, rows, n, args.batch, args.commit_every, False, 1, args.transient)
        t_load = load_cold(root, "rl")
        measured[n] = {**times, "load rl": t_load}
        print(f"  N={n}: built in {built:.0f} s, {before['data']} shards; retried {times['_retried']}, "
              f"stale rows rewritten {times['_stale_rows']}; " + ", ".join(f"{p} {times[p]:.1f} s" for p in phases)
              + f"; store total {sum(times[p] for p in phases):.1f} s; load_dataset rl cold {t_load:.1f} s; "
              f"after: {file_count(root)['data']} shards")
        shutil.rmtree(root, ignore_errors=True)
    xs = sorted(measured)
    extra = ({p: fit(xs, [measured[x][p] for x in xs], args.videos) for p in phases + ["load rl"]} if len(xs) > 1
             else {p: float("nan") for p in phases + ["load rl"]})
    if len(xs) > 1:
        print(f"  extrapolated to N={args.videos} (linear fit over N={xs}, a lower bound): "
              + ", ".join(f"{p} {v:.0f} s" for p, v in extra.items())
              + f"; store total {sum(extra[p] for p in phases):.0f} s; shards "
              f"~{int(len(CONFIGS) * 0.95 * args.videos / args.commit_every):,}")

    print(f"\n== new layout (log + compaction), N={args.videos} ==")
    root = str(base / "new")
    t0 = time.perf_counter()
    store = seed_new(root, rows, args.videos, args.transient)
    write_card(store, "bench", CardState.from_store(store))
    print(f"  built in {time.perf_counter() - t0:.0f} s: {store.file_count()} live files, "
          f"{sum(f.bytes for f in store.state.files.values()) / 1e9:.2f} GB on disk")
    t_load = load_cold(root, "rl")
    print(f"  load_dataset(OUT, 'rl') cold: {t_load:.1f} s (today's layout, extrapolated: {extra['load rl']:.0f} s)")
    committed = args.videos
    print("  week  committed  retried  live files  files in OUT   " + "  ".join(f"{p:>10.10}" for p in phases)
          + "  store total")
    for week in range(1, args.weeks + 1):
        times = rerun(new_store, root, rows, committed, args.batch, args.commit_every, True, week + 1, args.transient)
        committed += args.batch
        count = file_count(root)
        total = sum(times[p] for p in phases)
        print(f"  {week:>4}  {committed:>9}  {times['_retried']:>7}  {new_store.DatasetStore(root).file_count():>10}  "
              f"{sum(count.values()):>12}   " + "  ".join(f"{times[p]:>10.1f}" for p in phases) + f"  {total:>11.1f}",
              flush=True)
        if week == 1:
            first = total
            ratio = extra_total = sum(extra[p] for p in phases)
            print(f"        (first re-run: {total:.1f} s against today's layout's {ratio:.0f} s extrapolated: "
                  f"{extra_total / max(total, 1e-9):.0f}x)", flush=True)
    print(f"  last week's store total against the first: {total / max(first, 1e-9):.2f}x")
    t_load = load_cold(root, "rl")
    print(f"  load_dataset(OUT, 'rl') cold after {args.weeks} weeks: {t_load:.1f} s; files in OUT: {dict(file_count(root))}")
    if not args.dir:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
