"""Synthetic signatures and queries shaped like the segment stage's (no media): for
bench/dedupe_scale.py and the index's property test (tests/test_dedupe_index.py).

A video is a run of scenes (mean `scene_s`); within a scene the pHash drifts as the picture
moves (a random walk: Poisson `drift` bits flipped from one grid hash to the next, ~8 bits
after 3 s at the default); a scene's first hash is drawn with
a per-bit bias (pHash bits are not fair coins: a bit is 1 in 15-85 % of pictures, fixed per
bit), so band keys collide more often than uniform hashes would. Its dense query has one
hash every `step` seconds (the segment stage's `hash_interval_s`, 0.25); its signature is 48
of those, one per equal span. A near-copy (re-encode, rescale) is the same track with a few
bits flipped per hash (Poisson `copy_bits`, re-encodes measured 0-6) and optionally trimmed.
"""
from __future__ import annotations

import numpy as np

from pipeline.filter.fingerprint import Query, Signature

_BIAS = np.random.default_rng(20261207).uniform(0.15, 0.85, 64)


def random_hashes(rng: np.random.Generator, n: int) -> np.ndarray:
    """n pHash-like uint64 hashes, bit i set with probability _BIAS[i]."""
    bits = rng.random((n, 64)) < _BIAS
    return np.packbits(bits, axis=1, bitorder="little").view(np.uint64).ravel()


def flip_bits(rng: np.random.Generator, h: np.ndarray, mean_bits: float) -> np.ndarray:
    """`h` with Poisson(mean_bits) random bits flipped per hash."""
    k = rng.poisson(mean_bits, len(h))
    out = np.array(h, np.uint64)
    for i in range(int(k.max()) if len(k) else 0):
        sel = k > i
        out[sel] ^= np.uint64(1) << rng.integers(0, 64, int(sel.sum())).astype(np.uint64)
    return out


def video_duration(rng: np.random.Generator) -> float:
    """Seconds: lognormal around 15 min (the recipe's mean is 15.8), 4 min to 1 h."""
    return float(np.clip(rng.lognormal(np.log(900.0), 0.35), 240.0, 3600.0))


def dense_track(rng: np.random.Generator, duration_s: float, step: float = 0.25,
                scene_s: float = 5.0, drift: float = 0.8) -> Query:
    """A video's dense hash sequence."""
    t = np.arange(int(duration_s / step)) * step
    scenes = max(1, int(duration_s / scene_s))
    scene = np.searchsorted(np.sort(rng.uniform(0, duration_s, scenes - 1)), t)
    walk = np.bitwise_xor.accumulate(flip_bits(rng, np.zeros(len(t), np.uint64), drift))
    starts = np.flatnonzero(np.diff(scene, prepend=-1))  # first grid hash of each scene
    walk ^= np.repeat(walk[starts], np.diff(np.append(starts, len(t))))  # the walk restarts per scene
    return Query(t, random_hashes(rng, scenes)[scene] ^ walk, duration_s)


def signature_of(video_id: str, query: Query, count: int = 48) -> Signature:
    """The video-level signature of a track: the middle grid hash of each of `count` spans."""
    spans = np.minimum((query.t / max(query.duration_s, 1e-9) * count).astype(np.int64), count - 1)
    first = np.unique(spans, return_index=True)[1]
    pick = first + np.diff(np.append(first, len(query.t))) // 2
    return Signature(video_id, query.duration_s, np.round(query.t[pick], 3), query.h[pick].copy())


def near_copy(rng: np.random.Generator, query: Query, copy_bits: float = 2.0, trim_s: float = 0.0) -> Query:
    """A re-encode of the video (bits flipped), its first `trim_s` seconds cut."""
    keep = query.t >= trim_s
    return Query(query.t[keep] - trim_s, flip_bits(rng, query.h[keep], copy_bits), query.duration_s - trim_s)


def committed_columns(rng: np.random.Generator, n: int, count: int = 48):
    """n stored signatures as columns (video ids, durations, offsets, t, h): every point a
    different moment of its video, so a different scene hash; made in bulk (379K in seconds)."""
    durations = np.array([video_duration(rng) for _ in range(n)])
    offsets = np.arange(n + 1, dtype=np.int64) * count
    spans = (np.arange(count) + 0.5) / count
    t = np.round((durations[:, None] * spans[None, :]).ravel(), 3)
    h = np.concatenate([random_hashes(rng, min(1 << 20, n * count - a)) for a in range(0, n * count, 1 << 20)])
    return [f"c{i:07d}" for i in range(n)], durations, offsets, t, h
