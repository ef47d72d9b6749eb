"""A shared fsspec store of verified videos, mirroring the local cache layout.

The local cache lives on one worker's disk; the store (a shared mount, s3://, gs://, ...)
outlives it, so a re-run on another node copies a verified video from the store instead of
downloading it from the origin again. Layout: `<url>/<id[:2]>/<id>.<ext>` plus the sidecars
(`<id>.info.json`, subtitles) and `<id>.verified.json`, which is written LAST: it is the
commit marker, so a reader never trusts a half-published video.
"""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from pipeline.acquire.ids import safe_id

RECORD_SUFFIX = ".verified.json"


class VideoStore:
    """Publish verified videos to an fsspec URL and restore them into a local cache folder."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None):
        import fsspec
        from fsspec.implementations.local import LocalFileSystem

        self.fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
        self.root = root.rstrip("/")
        self.url = url.rstrip("/")
        # a put on an object store is atomic; on a (shared) file system write a temp name, then rename
        self._rename = isinstance(self.fs, LocalFileSystem)

    def _key(self, vid: str, name: str) -> str:
        return f"{self.root}/{safe_id(vid)[:2]}/{name}"

    def url_of(self, vid: str, name: str) -> str:
        """The user-facing URL of one stored file (recorded on the task)."""
        return f"{self.url}/{safe_id(vid)[:2]}/{name}"

    # -- write ---------------------------------------------------------------
    def publish(self, vid: str, files: list[Path], record: Path) -> None:
        """Upload the video and its sidecars, then the verified record (the commit marker)."""
        self.fs.makedirs(self._key(vid, ""), exist_ok=True)
        for path in [*files, record]:
            self._put(path, self._key(vid, path.name))

    def _put(self, local: Path, key: str) -> None:
        if not self._rename:
            self.fs.put_file(str(local), key)
            return
        tmp = f"{key}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            self.fs.put_file(str(local), tmp)
            self.fs.mv(tmp, key)
        finally:
            if self.fs.exists(tmp):
                self.fs.rm_file(tmp)

    # -- read ----------------------------------------------------------------
    def read_record(self, vid: str) -> dict[str, Any] | None:
        """The stored verified record, or None when absent or unreadable."""
        try:
            with self.fs.open(self._key(vid, vid + RECORD_SUFFIX), "rb") as f:
                record = json.loads(f.read())
        except (OSError, ValueError):  # missing (FileNotFoundError), unreadable, not JSON
            return None
        return record if isinstance(record, dict) else None

    def restore(self, vid: str, local_dir: Path, record: dict[str, Any]) -> bool:
        """Copy the files listed in `record["files"]` ({name: size}) into local_dir.

        False (and nothing trusted) when a name is not `<id>.*`, or a stored or copied size
        differs from the record: a truncated or replaced object is downloaded again instead.
        Each file lands under a temp name first, so a crash never leaves a plausible file.
        """
        files = record.get("files")
        if not isinstance(files, dict) or not files:
            return False
        try:
            for name, size in files.items():
                if Path(name).name != name or not name.startswith(vid + ".") or name.endswith(RECORD_SUFFIX):
                    return False
                if self.fs.size(self._key(vid, name)) != size:
                    return False
            local_dir.mkdir(parents=True, exist_ok=True)
            for name, size in files.items():
                dst = local_dir / name
                part = dst.with_name(f"{name}.part-{uuid.uuid4().hex[:8]}")
                try:
                    self.fs.get_file(self._key(vid, name), str(part))
                    if part.stat().st_size != size:
                        return False
                    os.replace(part, dst)
                finally:
                    part.unlink(missing_ok=True)
        except OSError:
            return False
        return True
