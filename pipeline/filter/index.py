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
        for sig in committed or ():
            self.index.add(sig)
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
    """Signatures of the accepted videos committed in `store` (a `DatasetStore`)."""
    table = store.read_table("videos", ["video_id", "status", "duration_s", "signals"])
    out = []
    for row in table.to_pylist():
        signals = row["signals"]
        if row["status"] == "accepted" and signals and signals.get("signature"):
            out.append(Signature.from_points(row["video_id"], row["duration_s"] or 0.0, signals["signature"]))
    return out
