"""The dataset directory: typed Parquet shards, crash-safe commits, compaction, the ledger.

Layout under OUT (a local path or an fsspec URL such as `s3://bucket/ds`):

    README.md                  dataset card (configs for datasets.load_dataset: the live files, counts)
    data/<config>/*.parquet    shards: one per config per commit, merged by compaction into few large ones
    _schema/<config>.parquet   zero-row file carrying the config's Arrow schema (outside data/, so
                               that `data/<config>/*.parquet` matches data shards only: readers
                               that glob, such as verl, would take it for an empty split)
    _log/                      the transaction log (pipeline/storelog.py): which files are live
    _runs/<run_id>.json        run summaries
    _staging/                  intents of writes in flight (the files they will create); local temporaries

Which files are live is read from the log once per store (a pointer, a checkpoint and a few
entries), never by listing `data/`: a run's start and its commits cost the same at 100 videos
and at 400K. A dataset written before the log existed is listed once and adopted.

Commit protocol: a commit names the files it will write in an intent (`_staging/<chunk>.json`),
writes them (locally into `_staging` and renamed into `data/`, on an object store straight to
their unique final names, with no copy), then appends its log entry: that append is the commit
point. A run killed at any moment leaves a loadable dataset (the card lists live files only); the
next run's `reconcile()` deletes what an interrupted write's intent names and the log does not.

Superseded rows: a commit holding a video that is already committed (a retried transient reject,
`--force`, a new stage version, a crash between a commit and the run's end) records the older
row as `pending` in its log entry, so the ledger and every reader of the store skip it at once;
`reconcile()` at the run's end rewrites only the files of those rows' group (a commit or a
compaction writes one group: a video's rows of every config). Compaction puts transient rejects,
the rows a later run supersedes, into small `retry` files of their own, so retrying them rewrites
those and never the large `base` shards. Rewritten and compacted files get new unique names:
`datasets` caches by file name, so it never serves an old content under a kept name.

Memory: the ledger is columnar (Arrow, about 100 bytes per committed video: 40 MB at 400K); reconcile and compaction stream one record batch at a time and buffer at most one row
group (ROW_GROUP_BYTES) per output file, whatever the dataset's size.
"""
from __future__ import annotations

import json
import os
import posixpath
import socket
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.records import TRANSIENT_REASONS
from pipeline.schema import CONFIGS, arrow_schema, validate_row
from pipeline.storelog import FileEntry, LogState, TableLog, write_text_atomic

SCHEMA_DIR = "_schema"
LEGACY_SCHEMA_SHARD = "_schema.parquet"  # data/<config>/_schema.parquet, before it moved out of data/
RETRYABLE = frozenset(r.value for r in TRANSIENT_REASONS)  # rows a later run supersedes
LEDGER_COLUMNS = ["video_id", "pipeline_fingerprint", "status", "reject_reason"]
SHARD_BYTES = 256 << 20  # compaction's target file size
ROW_GROUP_BYTES = 64 << 20  # what a streaming writer buffers before writing a row group
COMPACT_AFTER = 64  # commits (chunk groups) that make a run's end compact
BATCH_ROWS = 4096


def new_run_id() -> str:
    """Sortable by start time, unique across concurrent drivers."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class CommitResult:
    chunk_id: str
    counts: dict[str, int]
    quarantined: int
    files: dict[str, str] = field(default_factory=dict)  # config -> published shard path
    video_status: Counter = field(default_factory=Counter)
    video_reasons: Counter = field(default_factory=Counter)


@dataclass
class CompactResult:
    """What a compaction merged, and the videos whose model answers are no longer needed."""

    files_before: int = 0
    files_after: int = 0
    rows: int = 0
    retry_rows: int = 0
    permanent_rejects: list[str] = field(default_factory=list)  # answer caches to prune


@dataclass
class LedgerEntry:
    fingerprint: str
    status: str
    reason: str | None


@dataclass
class StoreCounts:
    rows: dict[str, int] = field(default_factory=dict)
    status: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)


class StoreLockedError(RuntimeError):
    """Another live run is writing to the same dataset directory."""


class Ledger:
    """video_id -> what was committed for it, kept columnar: ~100 bytes a video, not a Python object each."""

    def __init__(self, table: pa.Table, paths: list[str]) -> None:
        self.table = table.combine_chunks()  # LEDGER_COLUMNS + `file` (index into paths)
        self.paths = paths
        self._ids = self.table.column("video_id").chunk(0) if table.num_rows else pa.array([], pa.string())
        self._index: dict[str, int] | None = None

    def __len__(self) -> int:
        return self.table.num_rows

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids.to_pylist())

    def _positions(self) -> dict[str, int]:
        if self._index is None:
            self._index = {v: i for i, v in enumerate(self._ids.to_pylist())}
        return self._index

    def __contains__(self, video_id: object) -> bool:
        return video_id in self._positions()

    def get(self, video_id: str, default: LedgerEntry | None = None) -> LedgerEntry | None:
        i = self._positions().get(video_id)
        if i is None:
            return default
        row = self.table.slice(i, 1).to_pylist()[0]
        return LedgerEntry(row["pipeline_fingerprint"], row["status"], row["reject_reason"])

    def __getitem__(self, video_id: str) -> LedgerEntry:
        entry = self.get(video_id)
        if entry is None:
            raise KeyError(video_id)
        return entry

    def done(self, ids: Iterable[str], fingerprint: str) -> list[bool]:
        """Per id: committed with `fingerprint`, and not a transient reject (those are retried)."""
        pos = pc.index_in(pa.array(list(ids), pa.string()), value_set=self._ids)
        fp = pc.take(self.table["pipeline_fingerprint"], pos)
        status = pc.take(self.table["status"], pos)
        reason = pc.take(self.table["reject_reason"], pos)
        retry = pc.and_(pc.equal(status, "rejected"), pc.is_in(reason, value_set=pa.array(sorted(RETRYABLE))))
        return pc.fill_null(pc.and_kleene(pc.equal(fp, fingerprint), pc.invert(retry)), False).to_pylist()

    def where(self, ids: list[str]) -> dict[str, list[str]]:
        """Live file (relative path) -> which of `ids` it holds. A few ids (one commit) are looked
        up by a scan of the ledger against them, not by hashing the whole ledger per commit."""
        if not ids or not len(self):
            return {}
        hits = self.table.filter(pc.is_in(self._ids, value_set=pa.array(ids, pa.string())))
        out: dict[str, list[str]] = {}
        for vid, f in zip(hits["video_id"].to_pylist(), hits["file"].to_pylist()):
            out.setdefault(self.paths[f], []).append(vid)
        return out


class _Intent:
    """The files a write is about to create or drop (`_staging/<name>.json`): what `reconcile`
    deletes when the write was interrupted before its log entry, or after it but before cleanup."""

    def __init__(self, store: "DatasetStore", name: str, paths: Iterable[str] = ()) -> None:
        self.store, self.file = store, store.path("_staging", f"{name}.json")
        self.paths: list[str] = []
        self.add(*paths)

    def add(self, *paths: str) -> None:
        self.paths += paths
        self.store.fs.makedirs(self.store.path("_staging"), exist_ok=True)
        self.store._atomic_write_text(self.file, json.dumps({"paths": self.paths}))

    def done(self) -> None:
        self.store.fs.rm(self.file)


class _ShardWriter:
    """Streams record batches into files of about `target` bytes (new unique names) in one group."""

    def __init__(self, store: "DatasetStore", config: str, group: str, kind: str, intent: _Intent,
                 target: int) -> None:
        self.store, self.config, self.group, self.kind, self.intent = store, config, group, kind, intent
        self.schema, self.target = arrow_schema(config), target
        self.buffer: list[pa.Table] = []
        self.buffered = 0
        self.entries: list[dict[str, Any]] = []
        self._open: tuple[Any, Any, str] | None = None  # (file handle, writer, relative path)
        self._rows = 0
        self._status: Counter = Counter()
        self._reasons: Counter = Counter()

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        if not table.schema.equals(self.schema, check_metadata=False):
            table = table.cast(self.schema)
        self.buffer.append(table)
        self.buffered += table.nbytes
        if self.buffered >= ROW_GROUP_BYTES:
            self._flush()

    def _flush(self) -> None:
        if not self.buffer:
            return
        table = pa.concat_tables(self.buffer)
        self.buffer, self.buffered = [], 0
        if self._open is None:
            rel = f"data/{self.config}/{self.group}-{len(self.entries):04d}.parquet"
            self.intent.add(rel)
            fh = self.store.fs.open(self.store.path(rel), "wb")
            self._open = (fh, pq.ParquetWriter(fh, self.schema, compression=self.store.compression), rel)
        fh, writer, _ = self._open
        writer.write_table(table, row_group_size=max(1, table.num_rows))
        self._rows += table.num_rows
        if self.config == "videos":
            self._status.update(_value_counts(table["status"]))
            self._reasons.update(_value_counts(table["reject_reason"]))
        if fh.tell() >= self.target:
            self._close_file()

    def _close_file(self) -> None:
        fh, writer, rel = self._open
        writer.close()
        size = fh.tell()
        if self.store.local:
            fh.flush()
            os.fsync(fh.fileno())
        fh.close()
        self.entries.append({"path": rel, "config": self.config, "rows": self._rows, "group": self.group,
                             "kind": self.kind, "bytes": size, "status": dict(self._status),
                             "reasons": dict(self._reasons)})
        self._open, self._rows, self._status, self._reasons = None, 0, Counter(), Counter()

    def close(self) -> list[dict[str, Any]]:
        self._flush()
        if self._open is not None:
            self._close_file()
        return self.entries


def _value_counts(arr: pa.ChunkedArray | pa.Array) -> Counter:
    out: Counter = Counter()
    for item in pc.value_counts(pc.drop_null(arr)).to_pylist():
        out[item["values"]] += item["counts"]
    return out


class DatasetStore:
    """Reads and writes one dataset directory; all writes go through `commit`, `reconcile`, `compact`."""

    def __init__(self, root: str, *, compression: str = "zstd", shard_bytes: int = SHARD_BYTES,
                 storage_options: dict[str, Any] | None = None) -> None:
        self.url = root
        self.storage_options = dict(storage_options or {})
        self.fs, self.root = fsspec.core.url_to_fs(root, **self.storage_options)
        self.local = "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,))
        self.compression = compression
        self.shard_bytes = shard_bytes
        self.log = TableLog(self.fs, self.root, self.local)
        self._state: LogState | None = None
        self._adopt: dict[str, Any] | None = None  # a log entry adopting a dataset written before the log
        self._garbage: list[tuple[str, str]] = []  # old revisions and orphans of that dataset, deleted by reconcile
        self._ledger: Ledger | None = None
        self._scope: pa.Array | None = None  # the ids the ledger was read for (None: all)
        self._recent: dict[str, str] = {}  # video_id -> file, for videos committed since the ledger was read

    # -- paths -------------------------------------------------------------
    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def shard_dir(self, config: str) -> str:
        return self.path("data", config)

    def schema_path(self, config: str) -> str:
        """The zero-row Parquet file that carries a config's Arrow schema."""
        return self.path(SCHEMA_DIR, f"{config}.parquet")

    # -- the log -------------------------------------------------------------
    @property
    def state(self) -> LogState:
        """The live files, read from the log once per store object (never by listing `data/`)."""
        if self._state is None:
            self._state = self.log.load() if self.log.exists() else self._state_from_listing()
        return self._state

    def _state_from_listing(self) -> LogState:
        """A dataset without a log (written before it, or by hand): list `data/` once, keep each
        chunk's newest revision and the chunks whose videos shard exists; newest chunk wins."""
        listing: dict[str, dict[str, list[tuple[int, str]]]] = {}
        for config in CONFIGS:
            directory = self.shard_dir(config)
            names = self.fs.ls(directory, detail=False) if self.fs.exists(directory) else []
            for path in names:
                name = posixpath.basename(path)
                if not name.endswith(".parquet") or name.startswith("_"):
                    continue
                chunk, _, rev = name[:-len(".parquet")].partition(".r")
                listing.setdefault(config, {}).setdefault(chunk, []).append(
                    (int(rev) if rev.isdigit() else 0, posixpath.relpath(path, self.root)))
        committed = sorted(listing.get("videos", {}))
        order = {chunk: i - len(committed) for i, chunk in enumerate(committed)}  # before every logged version
        adds, latest = [], {}
        for config, chunks in listing.items():
            for chunk, revisions in chunks.items():
                revisions.sort()
                self._garbage += [("old_revisions_removed", p) for _, p in revisions[:-1]]
                rel = revisions[-1][1]
                if chunk not in order:  # a commit interrupted before its videos shard (the old commit point)
                    self._garbage.append(("orphan_shards_removed", rel))
                    continue
                entry = {"path": rel, "config": config, "group": chunk, "version": order[chunk],
                         "rows": self.num_rows(self.path(rel))}
                if config == "videos":
                    table = self._read(self.path(rel), ["video_id", "status", "reject_reason"])
                    entry.update(status=dict(_value_counts(table["status"])),
                                 reasons=dict(_value_counts(table["reject_reason"])))
                    for vid in table.column("video_id").to_pylist():
                        latest[vid] = max(latest.get(vid, (order[chunk], rel)), (order[chunk], rel))
                adds.append(entry)
        pending: dict[str, list[str]] = {}
        for entry in adds:
            if entry["config"] == "videos":
                ids = self._read(self.path(entry["path"]), ["video_id"]).column("video_id").to_pylist()
                stale = [v for v in ids if latest[v][1] != entry["path"]]
                if stale:
                    pending[entry["path"]] = stale
        self._adopt = {"op": "adopt", "add": adds, "pending": pending, "version": 0}
        state = LogState()
        state.apply(self._adopt)
        return state

    def _append(self, entry: dict[str, Any]) -> None:
        if self._adopt is not None:  # the first write persists the adoption first
            self.log.write_entry(self._adopt)
            self._adopt = None
        self.log.append(self.state, entry)

    # -- lifecycle ---------------------------------------------------------
    def init(self) -> None:
        """Create the layout and a typed zero-row shard per config (idempotent)."""
        self.fs.makedirs(self.path(SCHEMA_DIR), exist_ok=True)
        for config in CONFIGS:
            self.fs.makedirs(self.shard_dir(config), exist_ok=True)
            target = self.schema_path(config)
            if not self.fs.exists(target):
                self._write_parquet(target, arrow_schema(config).empty_table(), zero_groups=True)
            legacy = posixpath.join(self.shard_dir(config), LEGACY_SCHEMA_SHARD)
            if self.fs.exists(legacy):
                self.fs.rm(legacy)
        for sub in ("_runs", "_staging"):
            self.fs.makedirs(self.path(sub), exist_ok=True)

    def acquire_lock(self, run_id: str) -> None:
        """One writer at a time. A lock left by a dead local process is taken over."""
        lock = self.path("_lock.json")
        if self.fs.exists(lock):
            try:
                info = json.loads(self.fs.cat_file(lock))
            except (ValueError, OSError):
                info = {}
            if info.get("host") == socket.gethostname() and _pid_alive(info.get("pid", -1)):
                raise StoreLockedError(
                    f"{self.url} is being written by run {info.get('run_id')} (pid {info.get('pid')}); "
                    "wait for it or remove _lock.json if that process is gone")
        self._atomic_write_text(lock, json.dumps(
            {"run_id": run_id, "pid": os.getpid(), "host": socket.gethostname(), "since": utc_now()}))

    def release_lock(self) -> None:
        lock = self.path("_lock.json")
        if self.fs.exists(lock):
            self.fs.rm(lock)

    # -- writing -----------------------------------------------------------
    def commit(self, chunk_id: str, rows: dict[str, list[dict[str, Any]]], *,
               provenance: dict[str, str]) -> CommitResult:
        """Validate, write and publish one chunk. `rows` maps config -> rows.

        Invalid rows never reach their config: they go to `rejects` with the failing
        path; an invalid `videos` row is replaced by a rejected one (`schema_invalid`)
        so the video stays accounted for.
        """
        out: dict[str, list[dict[str, Any]]] = {c: [] for c in CONFIGS}
        quarantined = 0
        for config, config_rows in rows.items():
            if config not in CONFIGS:
                raise KeyError(f"unknown config {config!r}")
            for row in config_rows:
                row = {**row, **provenance}
                error = validate_row(config, row)
                if error is None:
                    out[config].append(row)
                    continue
                quarantined += 1
                out["rejects"].append(quarantine_row(config, row, error.path, error.message, provenance))
                if config == "videos":
                    out["videos"].append(schema_rejected_video(row, error.path, error.message, provenance))
        configs = sorted((c for c in CONFIGS if out[c]), key=lambda c: c == "videos")  # videos last
        finals = {c: f"data/{c}/{chunk_id}.parquet" for c in configs}
        ids = [r["video_id"] for r in out["videos"]]
        pending = self._supersede(ids)  # before this commit's rows are known: the older rows only
        intent = _Intent(self, chunk_id, finals.values())
        adds = []
        for config in configs:
            table = pa.Table.from_pylist(out[config], schema=arrow_schema(config))
            size = self._put(finals[config], table, chunk_id)
            entry = {"path": finals[config], "config": config, "rows": table.num_rows, "group": chunk_id,
                     "bytes": size}
            if config == "videos":
                entry.update(status=dict(_value_counts(table["status"])),
                             reasons=dict(_value_counts(table["reject_reason"])))
            adds.append(entry)
        self._append({"op": "commit", "chunk": chunk_id, "add": adds, "pending": pending,
                      "committed_at": utc_now(), **provenance})
        intent.done()
        if self.local:
            self.fs.rm(self.path("_staging", chunk_id), recursive=True)
        for vid in ids:
            self._recent[vid] = finals["videos"]
        counts = {c: len(out[c]) for c in configs}
        return CommitResult(chunk_id=chunk_id, counts=counts, quarantined=quarantined,
                            files={c: self.path(p) for c, p in finals.items()},
                            video_status=Counter(r["status"] for r in out["videos"]),
                            video_reasons=Counter(r["reject_reason"] for r in out["videos"] if r["reject_reason"]))

    def _supersede(self, ids: list[str]) -> dict[str, list[str]]:
        """Where the live older rows of `ids` are (file -> ids): they become pending deletions."""
        if not ids:
            return {}
        if self._ledger is None:
            self.ledger()
        out: dict[str, list[str]] = {}
        rest = []
        for vid in ids:
            if vid in self._recent:
                out.setdefault(self._recent[vid], []).append(vid)
            else:
                rest.append(vid)
        if self._scope is not None and rest:  # the ledger was read for the run's inputs only
            inside = set(self._scope.filter(pc.is_in(self._scope, value_set=pa.array(rest, pa.string()))).to_pylist())
            outside = [v for v in rest if v not in inside]
            rest = [v for v in rest if v in inside]
            if outside:
                for path, found in Ledger(*self._ledger_table(outside)).where(outside).items():
                    out.setdefault(path, []).extend(found)
        for path, found in self._ledger.where(rest).items():
            out.setdefault(path, []).extend(found)
        live = self.state.files
        return {p: v for p, v in out.items() if p in live}

    # -- recovery ----------------------------------------------------------
    def reconcile(self) -> dict[str, int]:
        """Drop what interrupted writes left and the rows superseded by newer commits."""
        stats: Counter = Counter()
        state = self.state
        if self._adopt is not None:
            if self._adopt["add"]:
                stats["legacy_files_adopted"] = len(self._adopt["add"])
            self.log.write_entry(self._adopt)
            self._adopt = None
        for what, rel in self._garbage:
            self._rm_quietly(self.path(rel))
            stats[what] += 1
        self._garbage = []
        staging = self.path("_staging")
        if self.fs.exists(staging):
            for entry in self.fs.ls(staging, detail=False):
                if entry.endswith(".json"):
                    try:
                        paths = json.loads(self.fs.cat_file(entry))["paths"]
                    except (ValueError, KeyError, OSError):
                        paths = []
                    for rel in paths:
                        if rel not in state.files and self.fs.exists(self.path(rel)):
                            self.fs.rm(self.path(rel))
                            stats["orphan_shards_removed"] += 1
                self.fs.rm(entry, recursive=True)
                stats["staging_removed"] += 1
        stats["stale_rows_removed"] += self.resolve()
        return {k: v for k, v in stats.items() if v}

    def resolve(self) -> int:
        """Rewrite the files holding superseded rows, group by group; returns the rows dropped."""
        state = self.state
        by_group: dict[str, set[str]] = {}
        for path, ids in state.pending.items():
            by_group.setdefault(state.files[path].group, set()).update(ids)
        dropped = 0
        for group, ids in sorted(by_group.items()):
            drop = pa.array(sorted(ids), pa.string())
            files = [f for f in state.files.values() if f.group == group]
            intent = _Intent(self, f"rewrite-{uuid.uuid4().hex[:8]}")
            adds, removes = [], []
            for f in files:
                hits = pc.sum(pc.is_in(self._read(self.path(f.path), ["video_id"])["video_id"], value_set=drop)).as_py()
                if not hits:
                    continue
                dropped += hits
                removes.append(f.path)
                if hits == f.rows:
                    continue
                writer = _ShardWriter(self, f.config, f"{group}.r{uuid.uuid4().hex[:6]}", f.kind, intent,
                                      target=1 << 62)
                for batch in self._batches(f.path):
                    writer.write(pa.Table.from_batches([batch]).filter(
                        pc.invert(pc.is_in(batch.column("video_id"), value_set=drop))))
                for entry in writer.close():
                    adds.append({**entry, "group": group})
            intent.add(*removes)
            self._append({"op": "rewrite", "group": group, "add": adds, "remove": removes,
                          "clear": [f.path for f in files]})
            for rel in removes:
                self._rm_quietly(self.path(rel))
            intent.done()
        if by_group:
            self._ledger, self._recent = None, {}
        return dropped

    # -- compaction ----------------------------------------------------------
    def compact_due(self, after: int = COMPACT_AFTER) -> bool:
        """Enough commits have piled up since the last compaction."""
        return len({f.group for f in self.state.files.values() if f.kind == "chunk"}) >= after

    def compact(self, shard_bytes: int | None = None) -> CompactResult:
        """Merge every small group (commits, retry files, base groups under half the target size)
        into files of about `shard_bytes` with new unique names; transient rejects go to retry files."""
        self.reconcile()
        target = shard_bytes or self.shard_bytes
        state = self.state
        groups: dict[str, list[FileEntry]] = {}
        for f in state.files.values():
            groups.setdefault(f.group, []).append(f)
        small = {g for g, fs in groups.items()
                 if fs[0].kind != "base" or sum(f.bytes for f in fs) < target // 2}
        kinds = Counter(groups[g][0].kind for g in small)
        result = CompactResult(files_before=len(state.files))
        if not kinds.get("chunk") and kinds.get("base", 0) <= 1 and kinds.get("retry", 0) <= 1:
            result.files_after = len(state.files)
            return result
        inputs = [f for g in small for f in groups[g]]
        transient, permanent = [], []
        for f in inputs:
            if f.config != "videos":
                continue
            for batch in self._batches(f.path, ["video_id", "status", "reject_reason"]):
                rejected = pc.equal(batch.column("status"), "rejected")
                retry = pc.and_(rejected, pc.is_in(batch.column("reject_reason"), value_set=pa.array(sorted(RETRYABLE))))
                transient.append(batch.column("video_id").filter(retry))
                if f.kind == "chunk":
                    permanent += batch.column("video_id").filter(pc.and_(rejected, pc.invert(retry))).to_pylist()
        retry_ids = pa.concat_arrays(transient) if transient else pa.array([], pa.string())
        stamp = new_run_id()
        intent = _Intent(self, f"compact-{stamp}")
        adds = []
        for config in CONFIGS:
            base = _ShardWriter(self, config, stamp, "base", intent, target)
            retry = _ShardWriter(self, config, f"{stamp}-retry", "retry", intent, target)
            for f in sorted((f for f in inputs if f.config == config), key=lambda f: (f.version, f.path)):
                for batch in self._batches(f.path):
                    table = pa.Table.from_batches([batch])
                    mask = pc.is_in(batch.column("video_id"), value_set=retry_ids)
                    base.write(table.filter(pc.invert(mask)))
                    retry.write(table.filter(mask))
            adds += base.close() + retry.close()
        removes = [f.path for f in inputs]
        intent.add(*removes)
        self._append({"op": "compact", "add": adds, "remove": removes})
        for rel in removes:
            self._rm_quietly(self.path(rel))
        intent.done()
        self._ledger, self._recent = None, {}
        result.files_after = len(self.state.files)
        result.rows = sum(e["rows"] for e in adds if e["config"] == "videos")
        result.retry_rows = len(retry_ids)
        result.permanent_rejects = permanent
        return result

    # -- reading -----------------------------------------------------------
    def chunks(self, config: str) -> list[str]:
        """Groups (commits, compactions) holding live rows of a config, oldest first."""
        seen: dict[str, None] = {}
        for f in self.state.of(config):
            seen.setdefault(f.group)
        return list(seen)

    def shard_paths(self, config: str) -> list[str]:
        """The live files of a config, oldest first (from the log: no listing)."""
        return [self.path(f.path) for f in self.state.of(config)]

    def _read(self, path: str, columns: list[str] | None = None) -> pa.Table:
        with self.fs.open(path, "rb") as fh:
            return pq.read_table(fh, columns=columns)

    def _batches(self, rel: str, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        with self.fs.open(self.path(rel), "rb") as fh:
            for batch in pq.ParquetFile(fh).iter_batches(batch_size=BATCH_ROWS, columns=columns):
                yield _leaves(batch, columns)

    def iter_batches(self, config: str, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        """Record batches of the committed rows of a config, superseded rows left out: one batch in memory."""
        state = self.state
        for f in state.of(config):
            drop = self.pending_ids(f)
            for batch in self._batches(f.path, columns):
                if drop is not None:
                    batch = batch.filter(pc.invert(pc.is_in(batch.column("video_id"), value_set=drop)))
                yield batch

    def pending_ids(self, f: FileEntry) -> pa.Array | None:
        """Video ids superseded in `f`'s group but not rewritten yet (after a crash)."""
        state = self.state
        if not state.pending:
            return None
        ids = {v for path, vs in state.pending.items() if state.files[path].group == f.group for v in vs}
        return pa.array(sorted(ids), pa.string()) if ids else None

    def read_table(self, config: str, columns: list[str] | None = None) -> pa.Table:
        """All committed rows of a config (superseded rows left out). O(rows): prefer iter_batches.
        `columns` may name nested leaves by their dotted path."""
        need = columns if columns is None or "video_id" in columns or not self.state.pending else [*columns, "video_id"]
        batches = list(self.iter_batches(config, need))
        if batches:
            table = pa.Table.from_batches(batches)
        else:  # the zero-row schema file gives the columns' types, nested leaves included
            table = self._read(self.schema_path(config), need) if self.fs.exists(self.schema_path(config)) else \
                arrow_schema(config).empty_table()
        return table.drop_columns(["video_id"]) if need is not columns else table

    def _ledger_table(self, ids: list[str] | None) -> tuple[pa.Table, list[str]]:
        """The four ledger columns of every live `videos` file (superseded rows left out), then one
        filter to `ids`: a hash of the ids built once, not per record batch."""
        parts, paths = [], []
        for f in self.state.of("videos"):
            drop = self.pending_ids(f)
            for batch in self._batches(f.path, LEDGER_COLUMNS):
                table = pa.Table.from_batches([batch])
                if drop is not None:
                    table = table.filter(pc.invert(pc.is_in(batch.column("video_id"), value_set=drop)))
                if table.num_rows:
                    parts.append(table.append_column("file", pa.array(np.full(table.num_rows, len(paths), np.int32))))
            paths.append(f.path)
        schema = pa.schema([arrow_schema("videos").field(c) for c in LEDGER_COLUMNS] + [pa.field("file", pa.int32())])
        table = pa.concat_tables(parts).combine_chunks() if parts else schema.empty_table()
        if ids is not None and table.num_rows:
            table = table.filter(pc.is_in(table["video_id"], value_set=pa.array(ids, pa.string())))
        return table, paths

    def ledger(self, ids: Iterable[str] | None = None) -> Ledger:
        """video_id -> what was committed for it: four short columns of `videos` (~100 bytes a
        committed video while reading: 40 MB at 400K); with `ids` (a run's inputs) only those are kept."""
        ids = None if ids is None else list(ids)
        self._ledger = Ledger(*self._ledger_table(ids))
        self._scope = None if ids is None else pa.array(ids, pa.string())
        self._recent = {}
        return self._ledger

    def num_rows(self, path: str) -> int:
        with self.fs.open(path, "rb") as fh:
            return pq.ParquetFile(fh).metadata.num_rows

    def counts(self) -> StoreCounts:
        """Rows per config and video outcomes, from the log (no shard is opened)."""
        state = self.state
        out = StoreCounts()
        for config in CONFIGS:
            out.rows[config] = sum(f.rows for f in state.of(config))
        out.status = dict(state.status())
        out.reasons = dict(state.reasons())
        return out

    def file_count(self) -> int:
        return len(self.state.files)

    def runs(self) -> list[dict[str, Any]]:
        directory = self.path("_runs")
        if not self.fs.exists(directory):
            return []
        return [json.loads(self.fs.cat_file(p)) for p in sorted(self.fs.ls(directory, detail=False))
                if p.endswith(".json")]

    def write_run(self, run_id: str, summary: dict[str, Any]) -> None:
        self._atomic_write_text(self.path("_runs", f"{run_id}.json"), json.dumps(summary, indent=2))

    def write_text(self, relpath: str, text: str) -> None:
        self._atomic_write_text(self.path(relpath), text)

    # -- primitives ----------------------------------------------------------
    def _put(self, rel: str, table: pa.Table, chunk_id: str) -> int:
        """Write a shard at its final name: locally through `_staging` and a rename, on an object
        store directly (a PUT is atomic, and a rename there would be a copy)."""
        if not self.local:
            self._write_parquet(self.path(rel), table)
            return self.fs.size(self.path(rel))
        tmp = self.path("_staging", chunk_id, posixpath.basename(posixpath.dirname(rel)) + ".parquet")
        self.fs.makedirs(posixpath.dirname(tmp), exist_ok=True)
        self._write_parquet(tmp, table)
        self.fs.makedirs(posixpath.dirname(self.path(rel)), exist_ok=True)
        os.replace(tmp, self.path(rel))
        return os.path.getsize(self.path(rel))

    def _write_parquet(self, path: str, table: pa.Table, zero_groups: bool = False) -> None:
        """Write a Parquet file fully (fsync'd when local) before anyone can move it."""
        with self.fs.open(path, "wb") as fh:
            writer = pq.ParquetWriter(fh, table.schema, compression=self.compression)
            if not zero_groups:  # a zero-row file with no row group is what readers accept
                writer.write_table(table)
            writer.close()
            if self.local:
                fh.flush()
                os.fsync(fh.fileno())

    def _rm_quietly(self, path: str) -> None:
        try:
            self.fs.rm(path)
        except FileNotFoundError:
            pass

    def _atomic_write_text(self, path: str, text: str) -> None:
        write_text_atomic(self.fs, path, text, local=self.local)


def quarantine_row(config: str, row: dict[str, Any], path: str, message: str,
                   provenance: dict[str, str]) -> dict[str, Any]:
    """A `rejects` row for a row that failed validation."""
    return {
        "video_id": str(row.get("video_id") or ""),
        "target_config": config,
        "reason": "schema_invalid",
        "path": path,
        "message": message,
        "row_json": json.dumps(row, default=str, sort_keys=True)[:200_000],
        **provenance,
    }


def schema_rejected_video(row: dict[str, Any], path: str, message: str,
                          provenance: dict[str, str]) -> dict[str, Any]:
    """The minimal valid `videos` row standing in for one that failed validation."""
    from pipeline.records import Reason, Status, VideoTask, video_row

    vid = str(row.get("video_id") or "")
    safe = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in vid)[:64] or "invalid"
    source_kind = row.get("source_kind") if row.get("source_kind") in ("youtube", "url", "local") else "invalid"
    index = row.get("input_index") if isinstance(row.get("input_index"), int) and row["input_index"] >= 0 else 0
    task = VideoTask(video_id=safe, source=str(row.get("source", "")), source_kind=source_kind, input_index=index)
    task.reject(Reason.schema_invalid, f"{path}: {message}", stage="validate")
    keys = row.get("stage_keys")
    ok = isinstance(keys, list) and all(isinstance(k, dict) and set(k) == {"stage", "part", "value"}
                                        and all(isinstance(v, str) for v in k.values()) for k in keys)
    out = {**video_row(task), "stage_keys": keys if ok else [], **provenance}
    assert out["status"] == Status.rejected.value
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (OSError, TypeError, ValueError):
        return False
    return True


def _leaves(batch: pa.RecordBatch, columns: list[str] | None) -> pa.RecordBatch:
    """A dotted column (`verification.decision`) as its own column named by its leaf, as
    `pq.read_table(columns=...)` gives it (`ParquetFile.iter_batches` gives the parent struct)."""
    if not columns or not any("." in c for c in columns):
        return batch
    table = pa.Table.from_batches([batch])
    for _ in range(max(c.count(".") for c in columns)):
        table = table.flatten()
    return pa.RecordBatch.from_arrays([table.column(c).combine_chunks() for c in columns],
                                      names=[c.rsplit(".", 1)[-1] for c in columns])
