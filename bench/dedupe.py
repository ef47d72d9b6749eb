"""Benchmark: near-duplicate detection on copies of distinct videos, and what it costs.

Sources: footage clips (pipeline/footage.py, 640x360, distinct seeds). Copies of each, made by
ffmpeg the way re-uploads are (footage.COPIES: low/high bitrate re-encodes, 2x up- and 0.67x
downscales, head trim, 70% trim, trim + rescale + 25 fps). Distinct videos: the sources against
each other, the real clips in ../shared/real_videos and the demo's sample videos. Every video is
decoded by the segment stage (signals on); the sources are put in a registry, then every copy
and every distinct video is checked. Prints recall, false matches, the matched share of true
pairs against the best share any false pair reaches (with the thresholds relaxed), and the
check's cost per video against the decode.
Usage: python bench/dedupe.py [--sources N] [--seconds S] [--cache bench/.cache]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.config import DemoConfig  # noqa: E402
from pipeline.demo import prepare_demo_inputs  # noqa: E402
from pipeline.filter.config import MatchConfig  # noqa: E402
from pipeline.filter.fingerprint import Query, Signature, match  # noqa: E402
from pipeline.filter.index import LocalRegistry  # noqa: E402
from pipeline.footage import COPIES, Encode, FootageSpec, derive_copy, make_footage  # noqa: E402
from pipeline.segment import SegmentConfig, segment_video  # noqa: E402

REAL = Path(__file__).resolve().parents[2] / "shared" / "real_videos"


def decode(path: Path) -> tuple[Query, Signature, float]:
    t0 = time.perf_counter()
    res = segment_video(str(path), SegmentConfig(sample_fps=0.25))
    return (Query(res.query_t, res.query_h, res.duration_s),
            Signature.from_points(path.stem, res.duration_s, res.signals.signature), time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sources", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=40.0)
    ap.add_argument("--cache", default=str(Path(__file__).resolve().parent / ".cache"))
    ap.add_argument("--scale", type=int, default=0, metavar="N",
                    help="also time the registry holding N stored signatures (e.g. 100000)")
    args = ap.parse_args()
    root = Path(args.cache) / "dedupe"
    t0 = time.perf_counter()
    sources = [make_footage(root / f"src{seed}.mp4", FootageSpec(
        seconds=args.seconds, seed=seed, mean_scene_s=4.0, encode=Encode("veryfast", 800, 1200, 1600)))
        for seed in range(900, 900 + args.sources)]
    copies = [(src.stem, derive_copy(src, root / f"{src.stem}-{c.name}.mp4", c, args.seconds, 360))
              for src in sources for c in COPIES]
    distinct = [p for p in sorted(REAL.rglob("*.mp4"))] if REAL.exists() else []
    distinct += [Path(p) for p in prepare_demo_inputs(DemoConfig(videos=8, include_bad=False), root / "demo")]
    print(f"{len(sources)} sources, {len(copies)} copies, {len(distinct)} other distinct videos "
          f"(made in {time.perf_counter() - t0:.0f} s)")
    info = {p: decode(p) for p in [*sources, *(c for _, c in copies), *distinct]}
    decode_s = np.mean([info[p][2] for p in info])
    cfg = MatchConfig()
    registry = LocalRegistry(cfg)
    for src in sources:
        assert registry.claim(src.stem, info[src][0], info[src][1]) is None, f"{src} matched another source"
    hits, misses, wrong, check_s = 0, [], [], []
    for src, path in copies:
        t1 = time.perf_counter()
        m = registry.index.best_match(info[path][0])
        check_s.append(time.perf_counter() - t1)
        if m is not None and m.video_id == src:
            hits += 1
        elif m is None:
            misses.append(path.stem)
        else:
            wrong.append((path.stem, m.video_id))
    false_distinct = [(p.name, m.video_id) for p in distinct if (m := registry.index.best_match(info[p][0]))]
    print(f"recall {hits / len(copies):.3f} ({hits}/{len(copies)}); missed: {misses or 'none'}")
    print(f"false matches: {len(wrong) + len(false_distinct)} (copies to a wrong source {wrong or 0}, "
          f"distinct videos {false_distinct or 0})")
    by_kind: dict[str, list[int]] = {}
    for src, path in copies:
        m = registry.index.best_match(info[path][0])
        by_kind.setdefault(path.stem.split("-", 1)[1], []).append(int(m is not None and m.video_id == src))
    print("recall by kind: " + ", ".join(f"{k} {sum(v)}/{len(v)}" for k, v in by_kind.items()))
    # margins: the matched share of true pairs, against the best any false pair reaches when
    # the thresholds are relaxed to nothing
    loose = MatchConfig(min_points=1, min_matched=0.01, min_overlap=0.01)
    true_share = []
    for src, path in copies:
        m = match(info[path][0], info[sources[[s.stem for s in sources].index(src)]][1], loose)
        true_share.append(m.matched / max(1, m.in_overlap) if m else 0.0)
    false_share = []
    others = [*sources, *distinct]
    for a in others:
        for b in sources:
            if a != b:
                m = match(info[a][0], info[b][1], loose)
                false_share.append(m.matched / max(1, m.in_overlap) if m else 0.0)
    ts, fs = np.array(true_share), np.array(false_share)
    print(f"matched share, true pairs: min {ts.min():.2f} p10 {np.percentile(ts, 10):.2f} median {np.median(ts):.2f}; "
          f"false pairs ({len(fs)}): max {fs.max():.2f} p99 {np.percentile(fs, 99):.2f} median {np.median(fs):.2f} "
          f"(threshold min_matched {cfg.min_matched})")
    print(f"cost: check {1000 * np.mean(check_s):.2f} ms per video against {len(registry.index)} signatures; "
          f"decode+signals {decode_s:.2f} s per video")
    if args.scale:
        scale(args.scale, [info[p] for p in info], cfg)


def scale(n: int, decoded: list, cfg: MatchConfig) -> None:
    """The registry at dataset scale: n stored signatures whose hashes are the measured ones with
    ~20 random bits flipped: pictures that look alike (unrelated pictures differ in ~32 bits),
    so their keys are spread unevenly, as real pHashes are, and some collide with the query."""
    from pipeline.filter.fingerprint import SignatureIndex

    rng = np.random.default_rng(0)
    pool = np.concatenate([d[1].h for d in decoded])
    t0 = time.perf_counter()
    index = SignatureIndex(cfg)
    sigs = []
    for i in range(n):
        base = pool[rng.integers(0, len(pool), 48)]
        flips = np.zeros(48, np.uint64)
        for _ in range(24):
            flips |= np.uint64(1) << rng.integers(0, 64, 48).astype(np.uint64)
        sigs.append(Signature(f"v{i}", 600.0, np.sort(rng.uniform(0, 600, 48)), base ^ flips))
    index.extend(sigs)
    built = time.perf_counter() - t0
    mem = index.nbytes() / 2**20
    times, cands = [], []
    for q, _, _ in decoded[:20]:
        query = Query(np.tile(q.t, 10), np.tile(q.h, 10), 600.0)  # a 10x longer query
        t1 = time.perf_counter()
        index.best_match(query)
        times.append(time.perf_counter() - t1)
        cands.append(len(index.candidates(query)))
    print(f"scale: {n} signatures ({48 * n} points) indexed in {built:.1f} s, index arrays {mem:.0f} MiB; "
          f"a check of a {10 * len(decoded[0][0].h)}-hash query {1000 * np.mean(times):.1f} ms "
          f"({np.mean(cands):.0f} candidates verified)")


if __name__ == "__main__":
    main()
