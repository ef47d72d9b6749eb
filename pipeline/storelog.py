"""The dataset's transaction log: which shard files are live, read without listing a directory.

Layout under OUT (a local path or an fsspec URL such as `s3://bucket/ds`):

    _log/<version>.json             one entry per commit: files added, files removed, rows
                                    waiting to be dropped (superseded by this commit)
    _log/<version>.checkpoint.json  the whole state at `version` (every CHECKPOINT_EVERY entries)
    _log/_last_checkpoint           {"version": V}: where reading starts

Reading the state costs one pointer, one checkpoint and at most CHECKPOINT_EVERY entries,
probed by name (version + 1, + 2, ... until one is missing): never a listing, so a run's
start does not grow with the dataset or its history. Entries older than a checkpoint are
deleted when it is written, so `_log/` stays at a few dozen files.

Writing an entry is the commit point: a local entry is written to a temporary name and
renamed (atomic), an object-store entry is one PUT (atomic). There is one writer at a time
(the store's lock), so versions never collide.

Deliberately hand-written rather than Delta Lake / Iceberg / Lance: their row deletions
(deletion vectors, positional delete files) are invisible to `datasets`' Parquet reader,
which reads the card's explicit file list. Here a superseded row stays `pending` only until
the run's end rewrites its (small) shard, so the files the card lists never hold a duplicate
after a finished run; and the log is a few KB of JSON that any fsspec filesystem can hold.
"""
from __future__ import annotations

import json
import os
import posixpath
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

CHECKPOINT_EVERY = 32
LOG_DIR = "_log"
POINTER = "_last_checkpoint"


@dataclass
class FileEntry:
    """One live shard file: where it is (relative to OUT), what it holds."""

    path: str
    config: str
    rows: int
    group: str  # the files of one commit or one compaction: a video's rows of every config share a group
    version: int = 0  # the log version that added it: a video's row in a newer file supersedes an older one
    kind: str = "chunk"  # chunk (one commit), base (compacted), retry (compacted transient rejects)
    bytes: int = 0
    status: dict[str, int] = field(default_factory=dict)  # videos only: accepted / rejected
    reasons: dict[str, int] = field(default_factory=dict)  # videos only: reject reasons

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FileEntry":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class LogState:
    """The live files and the rows waiting to be dropped from them, at one version."""

    version: int = -1
    files: dict[str, FileEntry] = field(default_factory=dict)  # relative path -> entry
    pending: dict[str, list[str]] = field(default_factory=dict)  # relative path -> superseded video ids
    checkpoint: int = -1  # the version of the checkpoint this state was read from

    def apply(self, entry: dict[str, Any]) -> None:
        for path in entry.get("remove", []):
            self.files.pop(path, None)
            self.pending.pop(path, None)
        for path in entry.get("clear", []):  # a rewrite dropped these files' superseded rows
            self.pending.pop(path, None)
        for data in entry.get("add", []):
            item = FileEntry.from_dict({"version": entry["version"], **data})
            self.files[item.path] = item
        for path, ids in entry.get("pending", {}).items():
            if path in self.files:
                merged = set(self.pending.get(path, [])) | set(ids)
                self.pending[path] = sorted(merged)
        self.version = entry["version"]

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.version, "files": [asdict(f) for f in self.files.values()],
                "pending": self.pending}

    def of(self, config: str) -> list[FileEntry]:
        """Live files of a config, oldest first (by version, then name)."""
        return sorted((f for f in self.files.values() if f.config == config), key=lambda f: (f.version, f.path))

    def status(self) -> Counter:
        out: Counter = Counter()
        for f in self.files.values():
            out.update(f.status)
        return out

    def reasons(self) -> Counter:
        out: Counter = Counter()
        for f in self.files.values():
            out.update(f.reasons)
        return out


class TableLog:
    """Reads and appends the `_log/` of one dataset (fs and root from fsspec)."""

    def __init__(self, fs, root: str, local: bool) -> None:
        self.fs, self.root, self.local = fs, root, local

    def _path(self, name: str) -> str:
        return posixpath.join(self.root, LOG_DIR, name)

    def exists(self) -> bool:
        """A log was started: a checkpoint pointer, or (before the first checkpoint) entry 0."""
        return self.fs.exists(self._path(POINTER)) or self.fs.exists(self._path(f"{0:012d}.json"))

    def _read_json(self, name: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.fs.cat_file(self._path(name)))
        except FileNotFoundError:
            return None

    def load(self) -> LogState:
        """The state at the newest version: pointer, checkpoint, then entries probed by name."""
        pointer = self._read_json(POINTER)
        state = LogState()
        if pointer is not None:
            data = self._read_json(f"{pointer['version']:012d}.checkpoint.json")
            if data is None:
                raise FileNotFoundError(f"{self._path(POINTER)} names checkpoint {pointer['version']}, "
                                        "which is missing: the dataset's log is damaged")
            state.version = data["version"]
            state.checkpoint = data["version"]
            state.files = {d["path"]: FileEntry.from_dict(d) for d in data["files"]}
            state.pending = {k: list(v) for k, v in data.get("pending", {}).items()}
        while (entry := self._read_json(f"{state.version + 1:012d}.json")) is not None:
            state.apply(entry)
        return state

    def write_entry(self, entry: dict[str, Any]) -> None:
        """Write one entry under its version's name (the caller applies it)."""
        self.fs.makedirs(posixpath.join(self.root, LOG_DIR), exist_ok=True)
        self._write(self._path(f"{entry['version']:012d}.json"), json.dumps(entry))

    def append(self, state: LogState, entry: dict[str, Any]) -> None:
        """Write the next entry (the commit point), apply it, checkpoint when due."""
        entry = {**entry, "version": state.version + 1}
        self.write_entry(entry)
        state.apply(entry)
        if state.version - state.checkpoint >= CHECKPOINT_EVERY:
            self.checkpoint(state)

    def checkpoint(self, state: LogState) -> None:
        """Write the whole state, point at it, then drop the entries it replaces."""
        self.fs.makedirs(posixpath.join(self.root, LOG_DIR), exist_ok=True)
        self._write(self._path(f"{state.version:012d}.checkpoint.json"), json.dumps(state.as_dict()))
        self._write(self._path(POINTER), json.dumps({"version": state.version}))
        old = [self._path(f"{v:012d}.json") for v in range(max(0, state.checkpoint + 1), state.version + 1)]
        if state.checkpoint >= 0:
            old.append(self._path(f"{state.checkpoint:012d}.checkpoint.json"))
        for path in old:
            try:
                self.fs.rm(path)
            except FileNotFoundError:
                pass
        state.checkpoint = state.version

    def _write(self, path: str, text: str) -> None:
        write_text_atomic(self.fs, path, text, local=self.local, durable=True)


def write_text_atomic(fs, path: str, text: str, *, local: bool, durable: bool = False) -> None:
    """Readers see the old text or the new, never a part: one PUT on an object store (a rename
    there would be a copy), a temporary file renamed on a local disk (fsync'd first if `durable`)."""
    if not local:
        with fs.open(path, "w") as fh:
            fh.write(text)
        return
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with fs.open(tmp, "w") as fh:
        fh.write(text)
        if durable:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)
