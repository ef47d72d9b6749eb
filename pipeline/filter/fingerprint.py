"""Is this video one we already have? Signatures, their matching, and a band index.

A video is stored as its signature: up to 48 (time, pHash) points spread over its duration
(videos.signals.signature). A video being checked brings its dense sequence: a pHash every
0.25 s (the segment stage's query). It duplicates a stored video when many of the stored
points find a hash within `max_hamming` bits in the query *at one consistent time offset*
(a trim shifts every point by the same amount), and the aligned overlap covers enough of the
shorter of the two. A stored point whose hash also matches the query far from that offset
does not count: a talking head or a slide template looks alike all along, and such
look-alikes are not copies.

Candidates are found with a band index: a hash is cut into four 16-bit slices and indexed by
each of the six pairs of slices (32-bit keys). Two hashes within 2 bits share a key, a
near-duplicate's ~30 matching points share many, and two unrelated hashes share one with odds of
about 1 in 10^9 (16-bit keys alone collide so often at 100K stored videos that every query
touched most of the index). So a check touches only videos that share a key with the query. This is plain numpy (no Ray, no files); the runner shares one
index between workers (see `pipeline/filter/index.py`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from pipeline.filter.config import MatchConfig
from pipeline.segment.phash import from_hex, to_hex

_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], np.uint8)
_PAIRS = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))  # of the four 16-bit slices of a hash
_BANDS = len(_PAIRS)
_MASK = np.uint64(0xFFFF)
OFFSET_BIN_S = 0.5


@dataclass
class Signature:
    """A stored video's fingerprint: its ID, duration and (time, hash) points."""

    video_id: str
    duration_s: float
    t: np.ndarray  # float64 seconds
    h: np.ndarray  # uint64 hashes

    @classmethod
    def from_points(cls, video_id: str, duration_s: float, points: Iterable) -> "Signature":
        """From `SignaturePoint`s or {'t', 'hash'} dicts (as in videos rows and fingerprint files)."""
        pts = [(p["t"], p["hash"]) if isinstance(p, dict) else (p.t, p.hash) for p in points]
        return cls(video_id, float(duration_s or 0.0), np.array([p[0] for p in pts], np.float64),
                   np.array([from_hex(p[1]) for p in pts], np.uint64))

    def points(self) -> list[dict]:
        return [{"t": round(float(t), 3), "hash": to_hex(int(h))} for t, h in zip(self.t, self.h)]


@dataclass
class Query:
    """A video being checked: its dense hash sequence and duration."""

    t: np.ndarray
    h: np.ndarray
    duration_s: float


@dataclass(frozen=True)
class Match:
    """How a query lines up with a stored signature."""

    video_id: str
    offset_s: float  # stored time = query time + offset
    matched: int  # stored points matched at that offset
    in_overlap: int  # stored points inside the aligned overlap
    overlap_s: float

    def describe(self) -> str:
        return (f"{self.matched}/{self.in_overlap} signature points match at offset {self.offset_s:+.1f} s, "
                f"{self.overlap_s:.0f} s overlap")


def hamming_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) bit distances of two uint64 hash arrays."""
    x = np.bitwise_xor(a.astype(np.uint64)[:, None], b.astype(np.uint64)[None, :])
    return _POPCOUNT[x.view(np.uint8)].reshape(len(a), len(b), 8).sum(axis=2)


def match(query: Query, sig: Signature, cfg: MatchConfig) -> Match | None:
    """The alignment of `query` with `sig` when it makes them the same video, else None."""
    if not len(query.h) or not len(sig.h):
        return None
    near = hamming_matrix(sig.h, query.h) <= cfg.max_hamming  # (stored points, query hashes)
    j_idx, i_idx = np.nonzero(near)
    if len(j_idx) < cfg.min_points:
        return None
    offsets = sig.t[j_idx] - query.t[i_idx]
    bins = np.round(offsets / OFFSET_BIN_S).astype(np.int64)
    # votes per offset bin: distinct stored points (a point matching many query frames votes once)
    pairs = np.unique(np.stack([bins, j_idx]), axis=1)
    values, counts = np.unique(pairs[0], return_counts=True)
    smooth = counts.copy()
    for shift in (-1, 1):  # an offset falling between two bins counts for both
        pos = np.searchsorted(values, values + shift)
        ok = (pos < len(values)) & (values[np.minimum(pos, len(values) - 1)] == values + shift)
        smooth[ok] += counts[pos[ok]]
    best = values[int(np.argmax(smooth))]
    offset = float(np.median(offsets[np.abs(bins - best) <= 1]))
    slack = OFFSET_BIN_S + 0.3
    at_offset = np.abs(offsets - offset) <= slack
    specific = np.zeros(len(sig.h), bool)
    for j in np.unique(j_idx[at_offset]):
        elsewhere = np.abs(sig.t[j] - offset - query.t[near[j]]) > 3.0
        specific[j] = elsewhere.mean() <= 0.5  # mostly matched where it should be
    q_lo, q_hi = float(query.t.min()), float(max(query.t.max(), query.duration_s))
    stored_in_q = sig.t - offset  # stored points on the query's clock
    inside = (stored_in_q >= q_lo - slack) & (stored_in_q <= q_hi + slack)
    overlap = max(0.0, min(query.duration_s, sig.duration_s - offset) - max(0.0, -offset))
    matched, in_overlap = int(specific.sum()), int(inside.sum())
    shorter = min(query.duration_s, sig.duration_s) or 1.0
    if (matched >= cfg.min_points and matched >= cfg.min_matched * max(1, in_overlap)
            and overlap >= cfg.min_overlap * shorter):
        return Match(sig.video_id, round(offset, 2), matched, in_overlap, round(overlap, 1))
    return None


class SignatureIndex:
    """Stored signatures with a band index for candidate lookup; `best_match` checks a query.

    Every stored point is kept in flat numpy arrays (owner, six 32-bit keys); per key, the values
    are sorted once and looked up with `searchsorted`, and points added since the last sort sit
    in a short tail that is scanned directly (re-sorted when it outgrows 10% of the index).
    52 bytes a point: 400K videos x 48 points ~ 1 GB in the registry actor."""

    def __init__(self, cfg: MatchConfig):
        self.cfg = cfg
        self.signatures: list[Signature] = []
        self._ids: dict[str, int] = {}
        self._owner = np.zeros(0, np.int32)   # signature position of every point
        self._keys = np.zeros((_BANDS, 0), np.uint32)
        self._sorted = 0                      # points [0, _sorted) are in the sorted band arrays
        self._order = np.zeros((_BANDS, 0), np.int32)
        self._skeys = np.zeros((_BANDS, 0), np.uint32)
        self._tail_owner: list[np.ndarray] = []
        self._tail_keys: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, video_id: str) -> bool:
        return video_id in self._ids

    def extend(self, sigs: Iterable[Signature]) -> None:
        """Store many signatures, sorted once at the end (seeding from the committed rows)."""
        for sig in sigs:
            self.add(sig, sort=False)
        self._rebuild()

    def add(self, sig: Signature, sort: bool = True) -> None:
        """Store `sig` (a later signature of the same ID replaces the earlier one)."""
        pos = len(self.signatures)
        self.signatures.append(sig)
        self._ids[sig.video_id] = pos  # the earlier position, if any, is now stale and skipped
        if len(sig.h):
            self._tail_owner.append(np.full(len(sig.h), pos, np.int32))
            self._tail_keys.append(_band_keys(sig.h))
        if sort and sum(len(o) for o in self._tail_owner) > max(4096, self._sorted // 10):
            self._rebuild()

    def remove(self, video_id: str) -> None:
        """Forget `video_id` (its points stay in the arrays but no longer count)."""
        self._ids.pop(video_id, None)

    def _rebuild(self) -> None:
        if self._tail_owner:
            self._owner = np.concatenate([self._owner, *self._tail_owner])
            self._keys = np.concatenate([self._keys, *self._tail_keys], axis=1)
            self._tail_owner, self._tail_keys = [], []
        self._order = np.argsort(self._keys, axis=1, kind="stable").astype(np.int32)
        self._skeys = np.take_along_axis(self._keys, self._order, axis=1)
        self._sorted = len(self._owner)

    def candidates(self, query: Query) -> list[int]:
        """Positions of live stored signatures sharing a band value with any query hash, those
        sharing most first."""
        q = _band_keys(np.unique(query.h))
        owners = []
        for b in range(_BANDS):
            keys = np.unique(q[b])
            if self._sorted:
                lo = np.searchsorted(self._skeys[b], keys, side="left")
                hi = np.searchsorted(self._skeys[b], keys, side="right")
                hit = hi > lo
                if hit.any():
                    idx = np.concatenate([self._order[b, a:z] for a, z in zip(lo[hit], hi[hit])])
                    owners.append(self._owner[idx])
            for tail_owner, tail_keys in zip(self._tail_owner, self._tail_keys):
                owners.append(tail_owner[np.isin(tail_keys[b], keys)])
        if not owners:
            return []
        pos, votes = np.unique(np.concatenate(owners), return_counts=True)
        live = np.array([self._ids.get(self.signatures[p].video_id) == p for p in pos], bool)
        pos, votes = pos[live], votes[live]
        return [int(p) for p in pos[np.lexsort((pos, -votes))]]

    def best_match(self, query: Query, exclude: str | None = None) -> Match | None:
        """The stored video `query` duplicates (most matched points; earliest stored on a tie)."""
        best: tuple[int, int, Match] | None = None
        for pos in self.candidates(query):
            sig = self.signatures[pos]
            if sig.video_id == exclude:
                continue
            m = match(query, sig, self.cfg)
            if m is not None and (best is None or m.matched > best[0]):
                best = (m.matched, pos, m)
        return best[2] if best else None


def _band_keys(h: np.ndarray) -> np.ndarray:
    """(6, n) uint32: each pair of the four 16-bit slices of each hash, as one key."""
    h = np.asarray(h, np.uint64)
    sl = [((h >> np.uint64(16 * b)) & _MASK).astype(np.uint32) for b in range(4)]
    return np.stack([(sl[a] << np.uint32(16)) | sl[b] for a, b in _PAIRS])


# -- fingerprint files (benchmark videos) --------------------------------------------------


def write_fingerprints(path: str | Path, signatures: Iterable[Signature], source: str = "") -> int:
    """Write signatures as JSON lines: {"video_id", "duration_s", "signature": [{t, hash}]}."""
    n = 0
    with open(path, "w", encoding="utf-8") as fh:
        for sig in signatures:
            fh.write(json.dumps({"video_id": sig.video_id, "duration_s": round(sig.duration_s, 3),
                                 "source": source, "signature": sig.points()}) + "\n")
            n += 1
    return n


def read_fingerprints(path: str | Path) -> Iterator[Signature]:
    """Signatures of a fingerprint file; a malformed line is an error naming the file and line."""
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                yield Signature.from_points(str(obj["video_id"]), float(obj["duration_s"]), obj["signature"])
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{lineno}: not a fingerprint line ({exc})") from None
