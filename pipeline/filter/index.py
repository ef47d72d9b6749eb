"""The dataset-wide registry of signatures that near-duplicates are checked against.

Where the check runs, and why: two copies of a video may be segmented at the same moment on
two workers, so the decision must be made in one place that sees both. It is made right after
selection, before the model stages (a duplicate costs no teacher or verifier work), by one
registry: an in-process `LocalRegistry` for tests and single-process use, or the same class in
one named Ray actor that every dedupe replica asks (pipeline/runner.py, end). The registry
answers `claim` calls one at a time, so of two copies the first to claim wins and the second
is rejected naming it, deterministically, whichever workers they ran on.

What it starts from: the signatures of the *committed, accepted* videos of the dataset, read
from the `videos` shards like the ledger (`committed_signatures`). The committed rows are the
persistent index: an entry exists exactly for a committed video, a crash loses only this run's
in-memory claims (their videos were not committed either), and `reconcile` keeps it free of
superseded rows. Nothing else is written, so nothing can disagree with the data.
"""
from __future__ import annotations

from typing import Protocol

from pipeline.filter.config import MatchConfig
from pipeline.filter.fingerprint import Match, Query, Signature, SignatureIndex


class DuplicateRegistry(Protocol):
    """What the dedupe stage needs: claim a video, or learn which earlier one it duplicates."""

    def claim(self, video_id: str, query: Query, signature: Signature) -> Match | None:
        """The match with an earlier video if `query` duplicates one; else record `signature`
        as this video's and return None."""

    def release(self, video_id: str) -> None:
        """Forget a claim (its video ended rejected later, so it will not be committed)."""


class LocalRegistry:
    """In-process registry over a `SignatureIndex`; also the body of the shared Ray actor."""

    def __init__(self, cfg: MatchConfig, committed: list[Signature] | None = None):
        self.index = SignatureIndex(cfg)
        self.index.extend(committed or ())
        self.committed = len(self.index)
        self.claims = 0

    def claim(self, video_id: str, query: Query, signature: Signature) -> Match | None:
        found = self.index.best_match(query, exclude=video_id)
        if found is None and len(signature.h):
            self.index.add(signature)
            self.claims += 1
        return found

    def release(self, video_id: str) -> None:
        self.index.remove(video_id)

    def size(self) -> int:
        return len(self.index)


def committed_signatures(store) -> list[Signature]:
    """Signatures of the accepted videos committed in `store` (a `DatasetStore`), read with
    Arrow compute and numpy rather than row by row (the ledger's scale: 400K videos)."""
    import numpy as np
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
    h = hex_to_uint64(pc.struct_field(points, "hash").to_pylist())
    ids = table["video_id"].to_pylist()
    durations = table["duration_s"].to_pylist()
    return [Signature(v, float(d or 0.0), t[a:b].astype(np.float64), h[a:b])
            for v, d, a, b in zip(ids, durations, offsets[:-1], offsets[1:]) if b > a]


def hex_to_uint64(values: list[str]):
    """16-digit lowercase hex strings -> uint64 array, vectorised."""
    import numpy as np

    if not values:
        return np.zeros(0, np.uint64)
    raw = np.frombuffer("".join(values).encode("ascii"), np.uint8).reshape(-1, 16)
    nibble = np.zeros(256, np.uint64)
    nibble[np.frombuffer(b"0123456789abcdef", np.uint8)] = np.arange(16, dtype=np.uint64)
    digits = nibble[raw]
    shifts = np.arange(60, -4, -4, dtype=np.uint64)
    return np.bitwise_or.reduce(digits << shifts, axis=1)
