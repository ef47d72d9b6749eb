"""Benchmark (issue #27): near-duplicate claims at the recipe's scale, today's index against the
one it replaced (bench/_legacy_index.py), in the same run.

Builds a committed dataset of `--committed` accepted videos (379K: the published recipe) as
`videos` shards holding what the registry reads (video_id, status, duration_s and the signals
struct with its 48-point signature; no media), `--planted` of them with full dense tracks so
that copies of them can be made. Then:
- registry (re)load: time and peak RSS of a fresh process building the registry from the
  shards (new: `open_registry`, what the actor does when it starts or restarts; old: the driver
  reading every signature into `Signature` objects and the index built from that list, which
  it then shipped to the actor);
- claims: a weekly batch of `--batch` videos (~16-min dense tracks, 4 hashes a second; 3 % are
  copies of committed videos, 2 % copies of videos earlier in the batch, the rest new) claimed
  one by one against the committed set: p50/p99 of every claim with the new index; the old
  index is timed on the first `--old-sample` claims and, after the claims in between were added
  to it as they would have been, on the last `--old-sample` (its cost grows with the batch: its
  tail is scanned per signature), and its total is extrapolated from the two (linear growth);
  both indexes' decisions on the sampled claims are compared.
Synthetic hashes (bench/_signatures.py): biased bits, so band keys collide as real pHashes do.
Usage: python bench/dedupe_scale.py [--committed 379000] [--batch 20000] [--old-sample 100]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._legacy_index import LegacySignatureIndex, legacy_committed_signatures  # noqa: E402
from bench._signatures import committed_columns, dense_track, near_copy, signature_of, video_duration  # noqa: E402
from pipeline.filter.config import MatchConfig  # noqa: E402
from pipeline.filter.fingerprint import Query, Signature  # noqa: E402
from pipeline.filter.index import LocalRegistry, open_registry  # noqa: E402
from pipeline.store import DatasetStore  # noqa: E402

_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)


def hex_strings(h: np.ndarray) -> pa.Array:
    """uint64 hashes -> Arrow strings of 16 lowercase hex digits (as `to_hex` writes them)."""
    shifts = np.arange(60, -4, -4, dtype=np.uint64)
    digits = _HEX[((h[:, None] >> shifts) & np.uint64(15)).astype(np.int64)]
    offsets = pa.py_buffer((np.arange(len(h) + 1, dtype=np.int32) * 16).tobytes())
    return pa.StringArray.from_buffers(len(h), offsets, pa.py_buffer(digits.tobytes()))


def write_store(root: Path, ids, durations, offsets, t, h, shard_rows: int) -> DatasetStore:
    """`videos` shards of accepted rows: what the registry reads, and the content signals beside it."""
    store = DatasetStore(str(root))
    (root / "data" / "videos").mkdir(parents=True)
    rng = np.random.default_rng(1)
    point = pa.struct([("t", pa.float64()), ("hash", pa.string())])
    for k, a in enumerate(range(0, len(ids), shard_rows)):
        b = min(a + shard_rows, len(ids))
        lo, hi = offsets[a], offsets[b]
        points = pa.StructArray.from_arrays([pa.array(t[lo:hi]), hex_strings(h[lo:hi])], fields=list(point))
        signature = pa.ListArray.from_arrays(pa.array((offsets[a:b + 1] - lo).astype(np.int32)), points)
        scalars = {name: pa.array(rng.random(b - a)) for name in
                   ("motion", "static_share", "black_share", "blank_share", "letterbox", "pillarbox", "text_score")}
        signals = pa.StructArray.from_arrays([*scalars.values(), signature], names=[*scalars, "signature"])
        table = pa.table({"video_id": ids[a:b], "status": ["accepted"] * (b - a),
                          "reject_reason": pa.nulls(b - a, pa.string()),  # what the store's ledger reads
                          "duration_s": durations[a:b], "signals": signals})
        pq.write_table(table, root / "data" / "videos" / f"c-{k:06d}.parquet", compression="zstd")
    return store


def measure_load(url: str, which: str) -> dict:
    """Load the registry in a fresh process: seconds and peak RSS."""
    code = f"""
import json, resource, sys, time
sys.path.insert(0, {str(ROOT)!r})
t0 = time.perf_counter()
from pipeline.filter.config import MatchConfig
if {which!r} == "new":
    from pipeline.filter.index import open_registry
    n = open_registry(MatchConfig(), {url!r}).size()
else:
    from bench._legacy_index import LegacySignatureIndex, legacy_committed_signatures
    from pipeline.store import DatasetStore
    sigs = legacy_committed_signatures(DatasetStore({url!r}))
    index = LegacySignatureIndex(MatchConfig())
    index.extend(sigs)
    n = len(index)
print(json.dumps({{"seconds": time.perf_counter() - t0, "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "n": n}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


class Batch:
    """The weekly batch: item k's query is made from its own seed, so any item can be remade."""

    def __init__(self, n: int, planted: dict[str, Query], seed: int = 7):
        rng = np.random.default_rng(seed)
        self.n, self.planted, self.seed = n, planted, seed
        self.kind = rng.choice(["new", "committed", "batch"], n, p=[0.95, 0.03, 0.02])
        self.kind[0] = "new"
        self.source = [None] * n
        names = sorted(planted)
        for k in range(n):
            if self.kind[k] == "committed":
                self.source[k] = names[int(rng.integers(len(names)))]
            elif self.kind[k] == "batch":
                earlier = np.flatnonzero(self.kind[:k] == "new")
                self.source[k] = int(earlier[rng.integers(len(earlier))]) if len(earlier) else None
                if self.source[k] is None:
                    self.kind[k] = "new"

    def track(self, k: int) -> Query:
        rng = np.random.default_rng((self.seed, k))
        return dense_track(rng, video_duration(rng))

    def item(self, k: int) -> tuple[str, Query, Signature]:
        rng = np.random.default_rng((self.seed, k, 1))
        if self.kind[k] == "new":
            query = self.track(k)
        else:
            base = self.planted[self.source[k]] if self.kind[k] == "committed" else self.track(self.source[k])
            query = near_copy(rng, base, float(rng.uniform(0.5, 4.0)),
                              trim_s=float(rng.uniform(0, 60)) if rng.random() < 0.3 else 0.0)
        vid = f"b{k:06d}"
        return vid, query, signature_of(vid, query)


def pct(values: list[float], q: float) -> float:
    return 1000 * float(np.percentile(values, q))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--committed", type=int, default=379_000)
    ap.add_argument("--planted", type=int, default=400)
    ap.add_argument("--batch", type=int, default=20_000)
    ap.add_argument("--old-sample", type=int, default=100)
    ap.add_argument("--shard-rows", type=int, default=1000)
    ap.add_argument("--work", default=None, help="folder for the synthetic dataset (default: a temporary one)")
    ap.add_argument("--no-load", action="store_true",
                    help="skip the shards and the load measurements: build both indexes from the columns in-process")
    args = ap.parse_args()
    cfg = MatchConfig()
    rng = np.random.default_rng(27)
    t0 = time.perf_counter()
    ids, durations, offsets, t, h = committed_columns(rng, args.committed - args.planted)
    planted = {f"p{k:05d}": dense_track(rng, video_duration(rng)) for k in range(args.planted)}
    psigs = [signature_of(name, q) for name, q in planted.items()]
    ids += list(planted)
    durations = np.concatenate([durations, [s.duration_s for s in psigs]])
    offsets = np.concatenate([offsets, offsets[-1] + np.cumsum([len(s.h) for s in psigs])])
    t = np.concatenate([t, *(s.t for s in psigs)])
    h = np.concatenate([h, *(s.h for s in psigs)])
    if args.no_load:
        registry = LocalRegistry(cfg)
        registry.index.extend_columns(ids, durations, offsets, t, h, index=False)
        registry.index.index_all()
        old_sigs = [Signature(v, float(d), t[a:b], h[a:b]) for v, d, a, b in zip(ids, durations, offsets[:-1], offsets[1:])]
        print(f"committed: {len(ids)} accepted videos, {offsets[-1]} signature points (no shards: --no-load), "
              f"made in {time.perf_counter() - t0:.0f} s")
    else:
        work = Path(args.work or tempfile.mkdtemp(prefix="dedupe-scale-"))
        store = write_store(work / "ds", ids, durations, offsets, t, h, args.shard_rows)
        del t, h
        shards = len(store.shard_paths("videos"))
        print(f"committed: {len(ids)} accepted videos, {offsets[-1]} signature points, {shards} shards "
              f"({sum(p.stat().st_size for p in (work / 'ds' / 'data' / 'videos').iterdir()) / 2**20:.0f} MiB), "
              f"made in {time.perf_counter() - t0:.0f} s")

        new_load, old_load = measure_load(store.url, "new"), measure_load(store.url, "old")
        print(f"registry load, fresh process: new {new_load['seconds']:.1f} s, peak RSS {new_load['rss_mib']:.0f} MiB "
              f"(in the registry actor; driver: nothing); old {old_load['seconds']:.1f} s, peak RSS "
              f"{old_load['rss_mib']:.0f} MiB (on the driver, then the list pickled to the actor); "
              f"ratio old/new {old_load['seconds'] / new_load['seconds']:.1f}x time, "
              f"{old_load['rss_mib'] / new_load['rss_mib']:.1f}x RSS")
        assert new_load["n"] == old_load["n"] == len(ids)

        registry = open_registry(cfg, store.url)
        old_sigs = None
    batch = Batch(args.batch, planted)
    new_s, new_cpu, decisions, claimed = [], [], [], {}
    for k in range(args.batch):
        vid, query, sig = batch.item(k)
        t1, c1 = time.perf_counter(), time.thread_time()
        hit = registry.claim(vid, query, sig)
        new_s.append(time.perf_counter() - t1)
        new_cpu.append(time.thread_time() - c1)
        decisions.append(hit)
        if hit is None:
            claimed[k] = sig
    expected = {k for k in range(args.batch) if batch.kind[k] != "new"}
    found = {k for k, d in enumerate(decisions) if d is not None}
    print(f"new index: {args.batch} claims against {len(ids)}: p50 {pct(new_s, 50):.2f} ms, p99 {pct(new_s, 99):.2f} ms, "
          f"mean {1000 * np.mean(new_s):.2f} ms, total {sum(new_s):.0f} s; CPU p50 {pct(new_cpu, 50):.2f} ms "
          f"p99 {pct(new_cpu, 99):.2f} ms; copies found {len(found & expected)}/"
          f"{len(expected)}, new videos rejected {len(found - expected)}")

    if not args.old_sample:
        return
    old = LegacySignatureIndex(cfg)
    old.extend(old_sigs if old_sigs is not None else legacy_committed_signatures(store))
    del old_sigs
    s = min(args.old_sample, args.batch // 2)

    def old_claims(ks) -> tuple[list[float], int]:
        times, same = [], 0
        for k in ks:
            vid, query, sig = batch.item(k)
            t1, c1 = time.perf_counter(), time.thread_time()
            hit = old.best_match(query, exclude=vid)
            if hit is None and len(sig.h):
                old.add(sig)
            times.append(time.perf_counter() - t1)
            old_cpu.append(time.thread_time() - c1)
            same += hit == decisions[k]
        return times, same

    old_cpu: list[float] = []
    early, same_early = old_claims(range(s))
    for k in range(s, args.batch - s):  # the claims in between, added as the registry would have
        if k in claimed:
            old.add(claimed[k])
    late, same_late = old_claims(range(args.batch - s, args.batch))
    old_total = (np.mean(early) + np.mean(late)) / 2 * args.batch
    print(f"old index: first {s} claims p50 {pct(early, 50):.1f} ms p99 {pct(early, 99):.1f} ms; last {s} "
          f"(tail of {len(old._tail_owner)} signatures) p50 {pct(late, 50):.1f} ms p99 {pct(late, 99):.1f} ms; "
          f"whole batch extrapolated {old_total:.0f} s ({old_total / 3600:.1f} h); "
          f"same decisions as the new index {same_early + same_late}/{2 * s}; CPU p50 {pct(old_cpu, 50):.0f} ms")
    print(f"CPU p50 ratio old/new (sampled claims): {np.median(old_cpu) / np.median(new_cpu):.0f}x")
    print(f"ratio old/new: p50 first {np.median(early) / np.median(new_s[:s]):.0f}x, p50 last "
          f"{np.median(late) / np.median(new_s[-s:]):.0f}x, batch total {old_total / sum(new_s):.0f}x; "
          f"target p50 <= 10 ms: {'met' if pct(new_s, 50) <= 10 else 'NOT met'} ({pct(new_s, 50):.2f} ms)")


if __name__ == "__main__":
    main()
