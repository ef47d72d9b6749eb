"""The near-duplicate index as it was before issue #27 (numpy band arrays with an unsorted tail
scanned per signature), frozen here as the baseline: bench/dedupe_scale.py times it beside
today's `SignatureIndex` and tests/test_dedupe_index.py checks that both decide alike.
Not used by the pipeline."""
from __future__ import annotations

from typing import Iterable

import numpy as np

from pipeline.filter.config import MatchConfig
from pipeline.filter.fingerprint import _BANDS, Match, Query, Signature, _band_keys, match


class LegacySignatureIndex:
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


def legacy_committed_signatures(store) -> list[Signature]:
    """How the registry was seeded before #27: the driver read every committed signature (the
    whole `signals` struct of every shard at once) into `Signature` objects, then shipped the
    list to the registry actor as its constructor argument."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table = store.read_table("videos", ["video_id", "status", "duration_s", "signals"])
    table = table.filter(pc.and_(pc.equal(table["status"], "accepted"), pc.is_valid(table["signals"])))
    if not table.num_rows:
        return []
    lists = pc.struct_field(table["signals"].combine_chunks(), "signature")
    lists = lists if isinstance(lists, pa.ListArray) else pa.array(lists)
    offsets = lists.offsets.to_numpy()
    points = lists.flatten()
    t = pc.struct_field(points, "t").to_numpy(zero_copy_only=False)
    h = _hex_to_uint64(pc.struct_field(points, "hash").to_pylist())
    ids = table["video_id"].to_pylist()
    durations = table["duration_s"].to_pylist()
    return [Signature(v, float(d or 0.0), t[a:b].astype(np.float64), h[a:b])
            for v, d, a, b in zip(ids, durations, offsets[:-1], offsets[1:]) if b > a]


def _hex_to_uint64(values: list[str]) -> np.ndarray:
    if not values:
        return np.zeros(0, np.uint64)
    raw = np.frombuffer("".join(values).encode("ascii"), np.uint8).reshape(-1, 16)
    nibble = np.zeros(256, np.uint64)
    nibble[np.frombuffer(b"0123456789abcdef", np.uint8)] = np.arange(16, dtype=np.uint64)
    return np.bitwise_or.reduce(nibble[raw] << np.arange(60, -4, -4, dtype=np.uint64), axis=1)
