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
touched most of the index). So a check touches only videos that share a key with the query;
those where at least two points share a key with a query hash *and* lie within `max_hamming`
bits of it are compared with the whole query exactly (an exact Hamming range search, faiss),
and only those with enough close points are aligned. The band keys are kept in sorted numpy
runs rather than in a library's hash index: faiss's `IndexBinaryMultiHash`, given the same keys,
took ~5x the memory and the build time, and searched with the radius itself (`max_hamming`, 10
bits of 64) it is close to brute force; usearch is approximate (README "Near-duplicates at
scale").
This is plain numpy and faiss (no Ray, no files); the runner shares one index between workers
(see `pipeline/filter/index.py`).
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
    return align(query, sig, cfg, hamming_matrix(sig.h, query.h) <= cfg.max_hamming)


def align(query: Query, sig: Signature, cfg: MatchConfig, near: np.ndarray) -> Match | None:
    """`match` given `near`, the (stored points, query hashes) pairs within `max_hamming` bits:
    the index computes it for all its candidates at once."""
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


class _Column:
    """A numpy array that grows by doubling (appends amortised O(1), reads are views)."""

    def __init__(self, dtype) -> None:
        self._a = np.zeros(1024, dtype)
        self.n = 0

    def extend(self, values: np.ndarray) -> None:
        need = self.n + len(values)
        if need > len(self._a):
            grown = np.zeros(max(need, 2 * len(self._a)), self._a.dtype)
            grown[:self.n] = self._a[:self.n]
            self._a = grown
        self._a[self.n:need] = values
        self.n = need

    @property
    def values(self) -> np.ndarray:
        return self._a[:self.n]

    def fit(self) -> None:
        """Drop the spare room (after a bulk load)."""
        self._a = self._a[:max(self.n, 1)].copy()


_DIR_BITS = 20           # a big run's directory: where each value of a key's top 20 bits starts
_DIR_MIN = 1 << 20       # runs of at least this many points get one (smaller ones fit the caches)
_LOW_MASK = np.uint64((1 << (32 - _DIR_BITS)) - 1)


class _Run:
    """Band keys of a contiguous range of points, sorted per band, and their point ids: (6, n)
    uint32 keys and int32 points. Built one band at a time (scratch: one band's 8-byte packing),
    so the index's peak while it sorts 18M points is the finished run plus a sixth of it."""

    def __init__(self, n: int) -> None:
        self.points = np.empty((_BANDS, n), np.int32)
        self.keys = np.empty((_BANDS, n), np.uint32)

    @staticmethod
    def of(first: int, h: np.ndarray) -> "_Run":
        h = np.asarray(h, np.uint64)
        ids = np.arange(first, first + len(h), dtype=np.int32)
        return _Run.build(len(h), lambda band: _band_key(h, band), lambda band: ids)

    @staticmethod
    def merge(a: "_Run", b: "_Run") -> "_Run":
        return _Run.build(len(a) + len(b), lambda band: np.concatenate([a.band_keys(band), b.band_keys(band)]),
                          lambda band: np.concatenate([a.points[band], b.points[band]]))

    @staticmethod
    def build(n: int, keys_of, points_of) -> "_Run":
        """A run of n points, band by band: each sorted by (key, point) in one value sort of both
        packed in 64 bits (numpy's vectorised sort: ~2x a stable argsort)."""
        run = (_DirectoryRun if n >= _DIR_MIN else _Run)(n)
        for band in range(_BANDS):
            packed = keys_of(band).astype(np.uint64)
            packed <<= np.uint64(32)
            packed |= points_of(band).astype(np.uint32)
            packed.sort()
            np.bitwise_and(packed, np.uint64(0xFFFFFFFF), out=run.points[band], casting="unsafe")
            packed >>= np.uint64(32)
            run._set_keys(band, packed)
        return run

    def _set_keys(self, band: int, keys: np.ndarray) -> None:
        self.keys[band] = keys

    def band_keys(self, band: int) -> np.ndarray:
        """One band's sorted keys as uint32."""
        return self.keys[band]

    def __len__(self) -> int:
        return self.points.shape[1]

    @property
    def nbytes(self) -> int:
        return self.points.nbytes + self.keys.nbytes

    def lookup(self, band: int, keys: np.ndarray) -> np.ndarray:
        """Point ids whose key in `band` is one of `keys` (sorted, unique). One binary search per
        key (most keys are in no run); the end of a key's range only for keys that are found."""
        column = self.keys[band]
        lo = np.searchsorted(column, keys, side="left")
        found = lo < len(column)
        found[found] = column[lo[found]] == keys[found]
        if not found.any():
            return np.zeros(0, np.int32)
        lo = lo[found]
        return self._points_in(band, lo, np.searchsorted(column, keys[found], side="right"))

    def _points_in(self, band: int, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        sizes = hi - lo
        within = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        return self.points[band, np.repeat(lo, sizes) + within]


class _DirectoryRun(_Run):
    """A big run (the committed index: 18M points at 379K videos) keeps each band's keys as a
    directory on their top 20 bits (where each value starts: 4 MB) and the low 12 bits (uint16).
    A lookup finds a key's bucket in the directory and searches only that (17 points on average,
    a few thousand at most for the commonest pHash patterns), all keys at once: 3.3 ms a claim
    instead of 6.2 ms for `searchsorted` over the whole 72 MB band (bench/dedupe_scale.py at
    379K), and 12 bytes a point less."""

    def __init__(self, n: int) -> None:
        self.points = np.empty((_BANDS, n), np.int32)
        self.low = np.empty((_BANDS, n), np.uint16)
        self.starts = np.empty((_BANDS, (1 << _DIR_BITS) + 1), np.int32)

    def _set_keys(self, band: int, keys: np.ndarray) -> None:
        np.bitwise_and(keys, _LOW_MASK, out=self.low[band], casting="unsafe")
        keys >>= np.uint64(32 - _DIR_BITS)
        self.starts[band] = np.searchsorted(keys, np.arange((1 << _DIR_BITS) + 1, dtype=np.uint64))

    def band_keys(self, band: int) -> np.ndarray:
        top = np.repeat(np.arange(1 << _DIR_BITS, dtype=np.uint32), np.diff(self.starts[band]))
        return (top << np.uint32(32 - _DIR_BITS)) | self.low[band]

    @property
    def nbytes(self) -> int:
        return self.points.nbytes + self.low.nbytes + self.starts.nbytes

    def lookup(self, band: int, keys: np.ndarray) -> np.ndarray:
        keys = np.asarray(keys, np.uint32)
        top = (keys >> np.uint32(32 - _DIR_BITS)).astype(np.int64)
        want = (keys & np.uint32(_LOW_MASK)).astype(np.uint16)
        column, starts = self.low[band], self.starts[band]
        start, end = starts[top].astype(np.int64), starts[top + 1].astype(np.int64)
        lo = _bound(column, start, end, want, right=False)
        found = lo < end
        found[found] = column[lo[found]] == want[found]
        if not found.any():
            return np.zeros(0, np.int32)
        lo = lo[found]
        return self._points_in(band, lo, _bound(column, lo, end[found], want[found], right=True))


def _bound(column: np.ndarray, lo: np.ndarray, hi: np.ndarray, value: np.ndarray, right: bool) -> np.ndarray:
    """Per i, the first place in column[lo[i]:hi[i]] (sorted) whose value is >= value[i] (> with
    `right`): a binary search of all the ranges at once, each step over the ranges not yet done."""
    lo = lo.copy()
    hi = hi.copy()
    active = np.flatnonzero(lo < hi)
    while len(active):
        a, b = lo[active], hi[active]
        mid = (a + b) >> 1
        go = column[mid] <= value[active] if right else column[mid] < value[active]
        lo[active] = np.where(go, mid + 1, a)
        hi[active] = np.where(go, b, mid)
        active = active[lo[active] < hi[active]]
    return lo


class SignatureIndex:
    """Stored signatures with a band index for candidate lookup; `best_match` checks a query.

    Columnar: every stored point's time and hash in flat numpy arrays, each signature a range of
    them. The band keys live in sorted runs (log-structured: a new run per `RUN_POINTS` added
    points, merged with the previous run while that is not more than twice as large), so adding
    a signature never re-sorts the index and a lookup is a few `searchsorted` per run; points
    not yet in a run (fewer than `RUN_POINTS`) are scanned directly.

    A stored video is verified when at least `CONFIRMED` of its points share a band key with a
    query hash that is also within `max_hamming` bits of them (checked on the hits, cheap). A
    shared key alone is a coincidence of 32 bits, and pHash bits are biased (measured 0.11-0.83
    ones across the real clips, one bit always set), so at 379K videos unrelated videos share
    one with ~1,200-2,700 stored signatures per check; 2 confirmed points leave none of them
    (bench/dedupe_scale.py). The verified candidates' points are then compared with all the
    query's hashes in one exact Hamming range search (faiss `IndexBinaryFlat`), and those with
    `min_points` close points are aligned (`align`, the same as `match`). Decisions equal the
    band-only rule's on copies up to `max_hamming` bits apart a hash (tests/test_dedupe_index.py);
    they can differ past it (copies 12 bits apart a hash: 39 of 40 equal, 14 bits: 32 of 40).
    ~52 bytes a point (time and hash 16, band runs 36: `_DirectoryRun`): 379K videos x 48 points
    ~ 0.95 GB."""

    RUN_POINTS = 4096
    CONFIRMED = 2

    def __init__(self, cfg: MatchConfig):
        self.cfg = cfg
        self._vid: list[str] = []                 # per position (a re-added ID gets a new one)
        self._dur = _Column(np.float64)
        self._start = _Column(np.int64)           # first point of each position
        self._live = _Column(np.bool_)
        self._ids: dict[str, int] = {}
        self._t = _Column(np.float64)
        self._h = _Column(np.uint64)
        self._runs: list[_Run] = []
        self._indexed = 0                         # points [0, _indexed) are in runs

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, video_id: str) -> bool:
        return video_id in self._ids

    def extend(self, sigs: Iterable[Signature]) -> None:
        """Store many signatures, indexed once at the end (seeding from the committed rows)."""
        for sig in sigs:
            self._append(sig.video_id, sig.duration_s, sig.t, sig.h)
        self._index_tail(force=True)

    def extend_columns(self, video_ids: list[str], durations: np.ndarray, offsets: np.ndarray,
                       t: np.ndarray, h: np.ndarray, index: bool = True) -> None:
        """Store many signatures given as columns (as read from Arrow): signature k has the
        points [offsets[k], offsets[k+1]) of `t` and `h`. No Python object per point. With
        `index=False` the band keys wait for `index_all` (seeding: one sort at the end, not a
        merge per batch, which halves the peak memory)."""
        base = self._t.n
        self._t.extend(np.asarray(t, np.float64))
        self._h.extend(np.asarray(h, np.uint64))
        self._start.extend(base + np.asarray(offsets[:-1], np.int64))
        self._dur.extend(np.asarray(durations, np.float64))
        self._live.extend(np.ones(len(video_ids), np.bool_))
        for vid in video_ids:
            old = self._ids.get(vid)
            if old is not None:
                self._live.values[old] = False
            self._ids[vid] = len(self._vid)
            self._vid.append(vid)
        if index:
            self._index_tail(force=False)

    def index_all(self) -> None:
        """Put every point added so far into the band runs (after dropping the columns' spare room)."""
        for column in (self._t, self._h, self._dur, self._start, self._live):
            column.fit()
        self._index_tail(force=True)

    def add(self, sig: Signature) -> None:
        """Store `sig` (a later signature of the same ID replaces the earlier one)."""
        self._append(sig.video_id, sig.duration_s, sig.t, sig.h)
        self._index_tail(force=False)

    def _append(self, video_id: str, duration_s: float, t: np.ndarray, h: np.ndarray) -> None:
        pos = len(self._vid)
        old = self._ids.get(video_id)
        if old is not None:
            self._live.values[old] = False  # its points stay in the arrays but no longer count
        self._vid.append(video_id)
        self._ids[video_id] = pos
        self._dur.extend(np.array([duration_s], np.float64))
        self._start.extend(np.array([self._t.n], np.int64))
        self._live.extend(np.ones(1, np.bool_))
        self._t.extend(np.asarray(t, np.float64))
        self._h.extend(np.asarray(h, np.uint64))

    def remove(self, video_id: str) -> None:
        """Forget `video_id` (its points stay in the arrays but no longer count)."""
        pos = self._ids.pop(video_id, None)
        if pos is not None:
            self._live.values[pos] = False

    def _index_tail(self, force: bool) -> None:
        n = self._t.n
        if n == self._indexed or (not force and n - self._indexed < self.RUN_POINTS):
            return
        self._runs.append(_Run.of(self._indexed, self._h.values[self._indexed:n]))
        self._indexed = n
        while len(self._runs) > 1 and 2 * len(self._runs[-1]) >= len(self._runs[-2]):
            last = self._runs.pop()
            self._runs[-1] = _Run.merge(self._runs[-1], last)

    def signature(self, pos: int) -> Signature:
        """The stored signature at a position (views of the point arrays)."""
        a = int(self._start.values[pos])
        b = int(self._start.values[pos + 1]) if pos + 1 < self._start.n else self._t.n
        return Signature(self._vid[pos], float(self._dur.values[pos]), self._t.values[a:b], self._h.values[a:b])

    def nbytes(self) -> int:
        """Bytes held in the index's arrays (points, band runs, per-signature columns)."""
        cols = (self._t, self._h, self._dur, self._start, self._live)
        return sum(c._a.nbytes for c in cols) + sum(r.nbytes for r in self._runs)

    def live(self) -> Iterator[Signature]:
        """The stored signatures that count, oldest first."""
        for pos in sorted(self._ids.values()):
            yield self.signature(pos)

    def candidates(self, query: Query, confirmed: int = 0) -> list[int]:
        """Positions of live stored signatures sharing a band value with any query hash, those
        sharing most first (then the earliest stored). With `confirmed`, only those where at
        least that many points share a band value with a query hash that is also within
        `max_hamming` bits of them (a shared band value alone is a 32-bit coincidence, common
        between unrelated pictures at 379K videos: thousands of candidates a check)."""
        uniq = np.unique(query.h)
        q = _band_keys(uniq)
        tail = _band_keys(self._h.values[self._indexed:]) if self._t.n > self._indexed else None
        hits, close = [], []
        for b in range(_BANDS):
            keys = np.unique(q[b])
            found = [run.lookup(b, keys) for run in self._runs]
            if tail is not None:  # a few thousand points: look each up among the query's sorted keys
                at = np.minimum(np.searchsorted(keys, tail[b]), len(keys) - 1)
                found.append(self._indexed + np.flatnonzero(keys[at] == tail[b]))
            hits += found
            if confirmed and found:
                close.append(self._close_points(np.concatenate(found), b, uniq, q[b]))
        points = np.concatenate(hits) if hits else np.zeros(0, np.int64)
        if not len(points):
            return []
        pos, votes = np.unique(self._owner(points), return_counts=True)
        keep = self._live.values[pos]
        if confirmed:
            sure, count = np.unique(self._owner(np.unique(np.concatenate(close))), return_counts=True)
            at = np.minimum(np.searchsorted(sure, pos), max(0, len(sure) - 1))
            keep &= (sure[at] == pos) & (count[at] >= confirmed) if len(sure) else False
        pos, votes = pos[keep], votes[keep]
        return [int(p) for p in pos[np.lexsort((pos, -votes))]]

    def _owner(self, points: np.ndarray) -> np.ndarray:
        """The signature position each point belongs to."""
        return np.searchsorted(self._start.values, points, side="right") - 1

    def _close_points(self, points: np.ndarray, band: int, uniq: np.ndarray, qkeys: np.ndarray) -> np.ndarray:
        """Of `points` (found by their key in `band`), those within `max_hamming` bits of a query
        hash with that key (`uniq`: the query's distinct hashes, `qkeys` their keys in `band`)."""
        order = np.argsort(qkeys, kind="stable")
        sorted_keys = qkeys[order]
        pkeys = _band_keys(self._h.values[points])[band]
        lo = np.searchsorted(sorted_keys, pkeys, side="left")
        sizes = np.searchsorted(sorted_keys, pkeys, side="right") - lo
        within = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        paired = np.repeat(points, sizes)
        bits = np.bitwise_count(self._h.values[paired] ^ uniq[order[np.repeat(lo, sizes) + within]])
        return paired[bits <= self.cfg.max_hamming]

    def best_match(self, query: Query, exclude: str | None = None) -> Match | None:
        """The stored video `query` duplicates (most matched points; on a tie the candidate
        sharing most band keys, then the earliest stored)."""
        found = [p for p in self.candidates(query, confirmed=self.CONFIRMED) if self._vid[p] != exclude]
        if not found or not len(query.h):
            return None
        sigs = [self.signature(p) for p in found]
        near = _near_pairs(query.h, sigs, self.cfg.max_hamming, self.cfg.min_points)
        best: Match | None = None
        for sig, pairs in zip(sigs, near):
            if pairs is None:
                continue
            m = align(query, sig, self.cfg, pairs)
            if m is not None and (best is None or m.matched > best.matched):
                best = m
        return best


def _near_pairs(qh: np.ndarray, sigs: list[Signature], max_hamming: int,
                min_points: int = 1) -> list[np.ndarray | None]:
    """For each signature, the (its points, query hashes) matrix of pairs within `max_hamming`
    bits, or None when fewer than `min_points` of its points have any: one exact Hamming range
    search over all the signatures' points against the query's distinct hashes (faiss)."""
    import faiss

    uniq, inverse = np.unique(np.asarray(qh, np.uint64), return_inverse=True)
    points = np.concatenate([s.h for s in sigs]).astype(np.uint64)
    flat = faiss.IndexBinaryFlat(64)
    flat.add(uniq.view(np.uint8).reshape(-1, 8))
    lims, _, ids = flat.range_search(np.ascontiguousarray(points).view(np.uint8).reshape(-1, 8), max_hamming + 1)
    lims = lims.astype(np.int64)
    out: list[np.ndarray | None] = []
    first = 0
    for sig in sigs:
        n = len(sig.h)
        counts = np.diff(lims[first:first + n + 1])
        if (counts > 0).sum() < min_points:
            out.append(None)
        else:
            rows = np.repeat(np.arange(n), counts)
            near_u = np.zeros((n, len(uniq)), bool)
            near_u[rows, ids[lims[first]:lims[first + n]]] = True
            out.append(near_u[:, inverse])
        first += n
    return out


def _band_keys(h: np.ndarray) -> np.ndarray:
    """(6, n) uint32: each pair of the four 16-bit slices of each hash, as one key."""
    h = np.asarray(h, np.uint64)
    return np.stack([_band_key(h, band) for band in range(_BANDS)])


def _band_key(h: np.ndarray, band: int) -> np.ndarray:
    """n uint32: one band's key of each hash (its pair of 16-bit slices, the first one high)."""
    a, b = _PAIRS[band]
    slices = np.ascontiguousarray(h, "<u8").view("<u2").reshape(-1, 4)  # slice k: bits 16k..16k+15, no copy
    key = slices[:, a].astype(np.uint32)
    key <<= np.uint32(16)
    key |= slices[:, b]
    return key


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
