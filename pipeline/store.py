"""The dataset directory: typed Parquet shards, crash-safe chunk commits, the ledger.

Layout under OUT (a local path or an fsspec URL):

    README.md                      dataset card (configs for datasets.load_dataset, counts)
    data/<config>/<chunk>.parquet  one shard per config per committed chunk
    _schema/<config>.parquet       zero-row file carrying the config's Arrow schema (outside data/, so
                                   that `data/<config>/*.parquet` matches data shards only: readers
                                   that glob, such as verl, would take it for an empty split)
    _manifest/<chunk>.json         what a chunk committed (counts, run, files)
    _runs/<run_id>.json            run summaries
    _staging/                      shards being written; never read

Commit protocol: all shards of a chunk are written to `_staging`, then moved into `data/`
with the `videos` shard LAST. The videos shard is the commit point: a chunk whose
videos shard exists is committed, anything else is an orphan that `reconcile()` deletes.
Chunk ids sort by time, so when a video is committed twice (`--force`, a new stage
version, a crash between a commit and its cleanup) the newest chunk wins and
`reconcile()` rewrites older shards without that video's rows. A run killed at any
moment therefore leaves a readable dataset, and the next run completes it exactly.
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
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.schema import CONFIGS, arrow_schema, validate_row

SCHEMA_DIR = "_schema"
LEGACY_SCHEMA_SHARD = "_schema.parquet"  # data/<config>/_schema.parquet, before it moved out of data/


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


class DatasetStore:
    """Reads and writes one dataset directory; all writes go through `commit`."""

    def __init__(self, root: str, *, compression: str = "zstd") -> None:
        self.url = root
        self.fs, self.root = fsspec.core.url_to_fs(root)
        self.local = "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,))
        self.compression = compression

    # -- paths -------------------------------------------------------------
    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def shard_dir(self, config: str) -> str:
        return self.path("data", config)

    def schema_path(self, config: str) -> str:
        """The zero-row Parquet file that carries a config's Arrow schema."""
        return self.path(SCHEMA_DIR, f"{config}.parquet")

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
        for sub in ("_manifest", "_runs", "_staging"):
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
        staging = self.path("_staging", chunk_id)
        self.fs.makedirs(staging, exist_ok=True)
        staged: list[tuple[str, str, str]] = []
        for config in CONFIGS:
            if not out[config]:
                continue
            table = pa.Table.from_pylist(out[config], schema=arrow_schema(config))
            tmp = posixpath.join(staging, f"{config}.parquet")
            self._write_parquet(tmp, table)
            staged.append((config, tmp, posixpath.join(self.shard_dir(config), f"{chunk_id}.parquet")))
        # publish: everything else first, the videos shard last (the commit point)
        staged.sort(key=lambda item: item[0] == "videos")
        for _, tmp, final in staged:
            self._move(tmp, final)
        counts = {c: len(out[c]) for c in CONFIGS if out[c]}
        self._atomic_write_text(self.path("_manifest", f"{chunk_id}.json"), json.dumps(
            {"chunk_id": chunk_id, "counts": counts, "committed_at": utc_now(), **provenance}))
        self.fs.rm(staging, recursive=True)
        return CommitResult(chunk_id=chunk_id, counts=counts, quarantined=quarantined,
                            files={config: final for config, _, final in staged},
                            video_status=Counter(r["status"] for r in out["videos"]),
                            video_reasons=Counter(r["reject_reason"] for r in out["videos"] if r["reject_reason"]))

    # -- recovery ----------------------------------------------------------
    def reconcile(self) -> dict[str, int]:
        """Drop orphans of interrupted commits and rows superseded by newer chunks."""
        stats = Counter()
        staging = self.path("_staging")
        if self.fs.exists(staging):
            for entry in self.fs.ls(staging, detail=False):
                self.fs.rm(entry, recursive=True)
                stats["staging_removed"] += 1
        for config in CONFIGS:  # a rewrite crashed before removing the old revision
            for revisions in self._listing(config).values():
                for _, path in revisions[:-1]:
                    self.fs.rm(path)
                    stats["old_revisions_removed"] += 1
        committed = set(self.chunks("videos"))
        for config in CONFIGS:
            if config == "videos":
                continue
            for chunk in self.chunks(config):
                if chunk not in committed:
                    self.fs.rm(self._shard(config, chunk))
                    stats["orphan_shards_removed"] += 1
        latest = self._latest_chunk_per_video()
        # videos last: while its duplicates exist, the next reconcile redoes this pass
        for config in [c for c in CONFIGS if c != "videos"] + ["videos"]:
            for chunk in self.chunks(config):
                stats["stale_rows_removed"] += self._drop_superseded(config, chunk, latest)
        for chunk in committed:
            manifest = self.path("_manifest", f"{chunk}.json")
            if not self.fs.exists(manifest):  # crashed between publish and manifest
                self._atomic_write_text(manifest, json.dumps({"chunk_id": chunk, "recovered": True}))
                stats["manifests_recovered"] += 1
        return {k: v for k, v in stats.items() if v}

    def _latest_chunk_per_video(self) -> dict[str, str]:
        latest: dict[str, str] = {}
        for chunk in self.chunks("videos"):  # sorted: later chunks overwrite
            for vid in self._read(self._shard("videos", chunk), ["video_id"]).column("video_id").to_pylist():
                latest[vid] = chunk
        return latest

    def _drop_superseded(self, config: str, chunk: str, latest: dict[str, str]) -> int:
        path = self._shard(config, chunk)
        ids = self._read(path, ["video_id"]).column("video_id").to_pylist()
        keep = [latest.get(v) == chunk for v in ids]
        if all(keep):
            return 0
        table = self._read(path)
        table = table.filter(pa.array(keep))
        if table.num_rows > 0:  # publish the new revision first, then drop the old one
            rev = self._listing(config)[chunk][-1][0] + 1
            tmp = self.path("_staging", f"rewrite-{config}-{chunk}.parquet")
            self._write_parquet(tmp, table)
            self._move(tmp, posixpath.join(self.shard_dir(config), f"{chunk}.r{rev}.parquet"))
        self.fs.rm(path)
        return len(keep) - sum(keep)

    # -- reading -----------------------------------------------------------
    def _listing(self, config: str) -> dict[str, list[tuple[int, str]]]:
        """chunk id -> [(revision, path)], newest revision last.

        A shard rewritten by `reconcile` gets a new name (`<chunk>.r<k>.parquet`) so that
        readers that cache by file name (`datasets`) never serve its old content.
        """
        directory = self.shard_dir(config)
        if not self.fs.exists(directory):
            return {}
        out: dict[str, list[tuple[int, str]]] = {}
        for path in self.fs.ls(directory, detail=False):
            name = posixpath.basename(path)
            if not name.endswith(".parquet") or name.startswith("_"):
                continue
            stem = name[:-len(".parquet")]
            chunk, _, rev = stem.partition(".r")
            out.setdefault(chunk, []).append((int(rev) if rev.isdigit() else 0, path))
        for revisions in out.values():
            revisions.sort()
        return out

    def chunks(self, config: str) -> list[str]:
        """Committed chunk ids of a config, oldest first."""
        return sorted(self._listing(config))

    def _shard(self, config: str, chunk: str) -> str:
        revisions = self._listing(config).get(chunk)
        if revisions:
            return revisions[-1][1]
        return posixpath.join(self.shard_dir(config), f"{chunk}.parquet")

    def shard_paths(self, config: str) -> list[str]:
        return [self._shard(config, c) for c in self.chunks(config)]

    def _read(self, path: str, columns: list[str] | None = None) -> pa.Table:
        with self.fs.open(path, "rb") as fh:
            return pq.read_table(fh, columns=columns)

    def read_table(self, config: str, columns: list[str] | None = None) -> pa.Table:
        """All committed rows of a config (after reconcile there are no duplicates)."""
        tables = [self._read(p, columns) for p in self.shard_paths(config)]
        if not tables:
            schema = arrow_schema(config)
            if columns:
                schema = pa.schema([schema.field(c) for c in columns])
            return schema.empty_table()
        return pa.concat_tables(tables)

    def ledger(self) -> dict[str, LedgerEntry]:
        """video_id -> what was committed for it: two columns of `videos`, read in seconds."""
        table = self.read_table("videos", ["video_id", "pipeline_fingerprint", "status", "reject_reason"])
        ids = table.column("video_id").to_pylist()
        fps = table.column("pipeline_fingerprint").to_pylist()
        status = table.column("status").to_pylist()
        reasons = table.column("reject_reason").to_pylist()
        return {v: LedgerEntry(f, s, r) for v, f, s, r in zip(ids, fps, status, reasons)}

    def num_rows(self, path: str) -> int:
        with self.fs.open(path, "rb") as fh:
            return pq.ParquetFile(fh).metadata.num_rows

    def counts(self) -> StoreCounts:
        out = StoreCounts()
        for config in CONFIGS:
            out.rows[config] = sum(self.num_rows(p) for p in self.shard_paths(config))
        videos = self.read_table("videos", ["status", "reject_reason"])
        out.status = dict(Counter(videos.column("status").to_pylist()))
        out.reasons = dict(Counter(r for r in videos.column("reject_reason").to_pylist() if r))
        return out

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

    def _move(self, src: str, dst: str) -> None:
        if self.local:
            os.replace(src, dst)  # atomic on one filesystem
        else:
            self.fs.mv(src, dst)

    def _atomic_write_text(self, path: str, text: str) -> None:
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        with self.fs.open(tmp, "w") as fh:
            fh.write(text)
        self._move(tmp, path)


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
