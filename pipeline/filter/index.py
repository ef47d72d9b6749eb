"""The dataset-wide registry of signatures that near-duplicates are checked against.

Where the check runs, and why: two copies of a video may be segmented at the same moment on
two workers, so the decision must be made in one place that sees both. It is made right after
selection, before the model stages (a duplicate costs no teacher or verifier work), by one
registry: an in-process `LocalRegistry` for tests and single-process use, or the same class in
one named Ray actor that every dedupe replica asks (pipeline/runner.py, end). The registry
answers `claim` (and `claim_many`, a batch in one call) one at a time, so of two copies the first to claim wins and the second
is rejected naming it, deterministically, whichever workers they ran on.

What it starts from: the signatures of the *committed, accepted* videos of the dataset, read
from the `videos` shards by the registry itself (`open_registry` -> `load_committed`: one shard
at a time, Arrow columns to numpy, never through the driver), so a registry whose actor died
is rebuilt by Ray from the same rows, and so is the next driver's. The committed rows are the
persistent index: an entry exists exactly for a committed video, a crash loses only this run's
in-memory claims (their videos were not committed either), and `reconcile` keeps it free of
superseded rows. Nothing else is written, so nothing can disagree with the data.
"""
from __future__ import annotations

from typing import Protocol, Sequence

from pipeline.filter.config import MatchConfig
from pipeline.filter.fingerprint import Match, Query, Signature, SignatureIndex


class DuplicateRegistry(Protocol):
    """What the dedupe stage needs: claim a video, or learn which earlier one it duplicates."""

    def claim(self, video_id: str, query: Query, signature: Signature) -> Match | None:
        """The match with an earlier video if `query` duplicates one; else record `signature`
        as this video's and return None."""

    def claim_many(self, claims: Sequence[tuple[str, Query, Signature]]) -> list[Match | None]:
        """`claim` for each (video_id, query, signature), in order, in one call."""

    def release(self, video_id: str) -> None:
        """Forget a claim (its video ended rejected later, so it will not be committed)."""


class LocalRegistry:
    """In-process registry over a `SignatureIndex`; also the body of the shared Ray actor."""

    def __init__(self, cfg: MatchConfig, committed: list[Signature] | None = None):
        self.index = SignatureIndex(cfg)
        self.index.extend(committed or ())
        self.committed = len(self.index)
        self.claims = 0
        self.load_seconds = 0.0

    def claim(self, video_id: str, query: Query, signature: Signature) -> Match | None:
        found = self.index.best_match(query, exclude=video_id)
        if found is None and len(signature.h):
            self.index.add(signature)
            self.claims += 1
        return found

    def claim_many(self, claims: Sequence[tuple[str, Query, Signature]]) -> list[Match | None]:
        """`claim` for each (video_id, query, signature) in order, in one call: a batch of videos
        costs the registry actor one round trip, and a copy later in the batch still finds the
        video claimed earlier in it."""
        return [self.claim(v, q, s) for v, q, s in claims]

    def release(self, video_id: str) -> None:
        self.index.remove(video_id)

    def size(self) -> int:
        return len(self.index)

    def describe_load(self) -> str:
        """What the registry loaded, for the run's log."""
        return (f"near-duplicate index: {self.committed} committed signatures read in {self.load_seconds:.2f} s "
                "(by the registry actor, from the committed shards)")


def open_registry(cfg: MatchConfig, dataset_url: str | None) -> LocalRegistry:
    """The registry actor's constructor: it seeds itself from the dataset's committed shards
    (`load_committed`), so the signatures never pass through the driver, and a restarted actor
    (its worker died) or a new driver rebuilds the same index from the same rows."""
    import time

    registry = LocalRegistry(cfg)
    if dataset_url is not None:
        from pipeline.store import DatasetStore

        start = time.perf_counter()
        load_committed(registry.index, DatasetStore(dataset_url))
        registry.committed = len(registry.index)
        registry.load_seconds = time.perf_counter() - start
    return registry


_SIGNATURE_COLUMNS = ["video_id", "status", "duration_s", "signals.signature"]


def load_committed(index: SignatureIndex, store) -> int:
    """Add the signatures of the accepted videos committed in `store` (a `DatasetStore`) to
    `index`, one record batch of the `videos` rows at a time, as Arrow columns turned into numpy arrays (no Python
    object per point; only the signature column of `signals` is read). A later row of a video
    replaces an earlier one; a later rejected row removes it. Returns the signatures read."""
    import pyarrow as pa
    import pyarrow.compute as pc

    read = 0
    # the store's batches leave out rows superseded by later commits (not yet rewritten)
    for batch in store.iter_batches("videos", _SIGNATURE_COLUMNS):
        table = pa.Table.from_batches([batch])
        accepted = pc.equal(table["status"], "accepted").fill_null(False)
        for vid in table.filter(pc.invert(accepted))["video_id"].to_pylist():
            index.remove(vid)
        table = table.filter(pc.and_(accepted, pc.is_valid(table["signature"])))
        if not table.num_rows:
            continue
        lists = table["signature"].combine_chunks()
        points = lists.flatten()
        offsets = lists.offsets.to_numpy() - lists.offsets[0].as_py()
        index.extend_columns(table["video_id"].to_pylist(),
                             table["duration_s"].fill_null(0.0).to_numpy(zero_copy_only=False),
                             offsets, pc.struct_field(points, "t").to_numpy(zero_copy_only=False),
                             hex_column_to_uint64(pc.struct_field(points, "hash")), index=False)
        read += table.num_rows
    index.index_all()
    return read


def committed_signatures(store) -> list[Signature]:
    """Signatures of the accepted videos committed in `store`, as `Signature` objects (tests,
    small datasets; the registry loads columns itself with `load_committed`)."""
    from pipeline.filter.config import MatchConfig as _Cfg

    index = SignatureIndex(_Cfg())
    load_committed(index, store)
    return list(index.live())


def hex_column_to_uint64(values) -> "np.ndarray":
    """An Arrow string array of 16-digit lowercase hex hashes -> uint64, straight from its buffers."""
    import numpy as np
    import pyarrow as pa

    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if arr.null_count:
        raise ValueError("signature point without a hash")
    arr = arr.cast(pa.string())
    offsets = np.frombuffer(arr.buffers()[1], np.int32)[arr.offset:arr.offset + len(arr) + 1]
    if len(arr) and not (np.diff(offsets) == 16).all():
        raise ValueError("signature hash that is not 16 hex digits")
    data = np.frombuffer(arr.buffers()[2], np.uint8)[offsets[0]:offsets[-1]] if len(arr) else np.zeros(0, np.uint8)
    return _hex_digits_to_uint64(data.reshape(-1, 16))


def _hex_digits_to_uint64(raw):
    """(n, 16) ASCII hex digits, most significant first -> n uint64 (byte arithmetic, no
    (n, 16) uint64 scratch)."""
    import numpy as np

    nibble = np.full(256, 255, np.uint8)
    nibble[np.frombuffer(b"0123456789abcdef", np.uint8)] = np.arange(16, dtype=np.uint8)
    digits = nibble[raw]
    if (digits == 255).any():
        raise ValueError("signature hash with a character that is not a lowercase hex digit")
    big_endian = (digits[:, 0::2] << 4) | digits[:, 1::2]
    return np.ascontiguousarray(big_endian).view(">u8").ravel().astype(np.uint64)
