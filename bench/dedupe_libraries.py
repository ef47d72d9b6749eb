"""Benchmark: library indexes for the near-duplicate candidate search against the sorted band
runs of `SignatureIndex`, on the same synthetic stored points and queries (bench/_signatures.py).

- bands: `SignatureIndex` (numpy sorted runs of the six 32-bit pair-of-slices keys);
- faiss-pairs: faiss `IndexBinaryMultiHash` over the same six keys as 192-bit codes (6 tables of
  32 bits: the same candidates);
- faiss-radius: faiss `IndexBinaryMultiHash` over the plain 64-bit hashes, 4 tables of 16 bits,
  range search at `max_hamming` (exact for up to 3 bits, the fast path a library offers);
- usearch (`pip install usearch`; not a dependency): HNSW on b1x8 with the hamming metric, 10 nearest per query hash.
Prints the build time, the memory the index added (RSS) and a check's time per variant.
Usage: python bench/dedupe_libraries.py [--signatures 38000] [--variants bands,faiss-pairs,...]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._signatures import committed_columns, dense_track, video_duration  # noqa: E402
from pipeline.filter.config import MatchConfig  # noqa: E402
from pipeline.filter.fingerprint import SignatureIndex, _band_keys  # noqa: E402


def rss() -> int:
    return int(open("/proc/self/statm").read().split()[1]) * 4096


def run(variant: str, n: int) -> str:
    rng = np.random.default_rng(0)
    ids, durations, offsets, t, h = committed_columns(rng, n)
    queries = [np.unique(dense_track(rng, video_duration(rng)).h) for _ in range(8)]
    before, t0 = rss(), time.perf_counter()
    if variant == "bands":
        index = SignatureIndex(MatchConfig())
        index.extend_columns(ids, durations, offsets, t, h)

        def check(q):
            from pipeline.filter.fingerprint import Query
            return index.candidates(Query(np.zeros(len(q)), q, 1.0))
    elif variant.startswith("faiss"):
        import faiss

        faiss.omp_set_num_threads(1)
        if variant == "faiss-pairs":
            index = faiss.IndexBinaryMultiHash(192, 6, 32)
            index.add(np.ascontiguousarray(_band_keys(h).T).view(np.uint8))

            def check(q):
                return index.range_search(np.ascontiguousarray(_band_keys(q).T).view(np.uint8), 193)
        else:
            index = faiss.IndexBinaryMultiHash(64, 4, 16)
            index.add(h.view(np.uint8).reshape(-1, 8))

            def check(q):
                return index.range_search(q.view(np.uint8).reshape(-1, 8), MatchConfig().max_hamming + 1)
        index.nflip = 0
    elif variant == "usearch":
        from usearch.index import Index

        index = Index(ndim=64, metric="hamming", dtype="b1")
        index.add(np.arange(len(h)), h.view(np.uint8).reshape(-1, 8))

        def check(q):
            return index.search(q.view(np.uint8).reshape(-1, 8), 10)
    else:
        raise SystemExit(f"unknown variant {variant}")
    built, added = time.perf_counter() - t0, (rss() - before) / 2**20
    times = []
    for q in queries:
        t1 = time.perf_counter()
        check(q)
        times.append(time.perf_counter() - t1)
    return (f"{variant:13s} {len(h)} points: build {built:.1f} s, +{added:.0f} MiB, "
            f"check (~{int(np.mean([len(q) for q in queries]))} distinct query hashes) {1000 * np.median(times):.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--signatures", type=int, default=38_000)
    ap.add_argument("--variants", default="bands,faiss-pairs,faiss-radius,usearch")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(run(args.one, args.signatures))
        return
    for variant in args.variants.split(","):  # each in its own process: RSS is the index's
        out = subprocess.run([sys.executable, __file__, "--one", variant, "--signatures", str(args.signatures)],
                             capture_output=True, text=True)
        print(out.stdout.strip() or f"{variant}: failed: {out.stderr.strip().splitlines()[-1:]}")


if __name__ == "__main__":
    main()
