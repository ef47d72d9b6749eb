"""FetchStage: probe with yt-dlp, filter by duration, download, verify; one task at a time.

With `fetch.storage_url` set, verified videos are also published to a shared fsspec store,
and a worker whose local cache lacks a video copies it from there instead of downloading.

Plain Python (no Ray): `plan.build_stages` chains it with segmentation and selection
(one process per video: the file is read where it was downloaded) and the runner runs
the chain in actors; tests and the bench call `process` directly. Every failure ends as
`task.reject(reason, original_message)`; transient ones (rate_limited, network/5xx) are
retried with exponential backoff first, permanent ones fail at once.
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

from pipeline.acquire.classify import classify_error
from pipeline.acquire.config import FetchConfig
from pipeline.acquire.ids import safe_id
from pipeline.acquire.storage import VideoStore
from pipeline.acquire.subtitles import read_subtitles
from pipeline.acquire.verify import MediaError, MediaInfo, probe_media_header, verify_media
from pipeline.acquire.ytdlp_options import CapturingLogger, build_params, video_dir
from pipeline.records import Reason, VideoTask
from pipeline.stage import Resources, Stage, current_node

log = logging.getLogger(__name__)
T = TypeVar("T")
TRANSIENT = frozenset({Reason.rate_limited, Reason.network})
_META_KEYS = ("title", "channel", "channel_id", "upload_date", "license", "live_status")


class FetchFailure(Exception):
    """A classified acquisition failure; `message` is the original yt-dlp / FFmpeg text."""

    def __init__(self, reason: Reason, message: str, transient: bool = False):
        super().__init__(f"{reason.value}: {message}")
        self.reason, self.message, self.transient = reason, message, transient


def _from_ytdlp(exc: Exception, logger: CapturingLogger) -> FetchFailure:
    from yt_dlp.utils import GeoRestrictedError

    message = str(exc) or (logger.errors[-1] if logger.errors else repr(exc))
    cause = getattr(exc, "exc_info", None)
    if isinstance(exc, GeoRestrictedError) or (cause and isinstance(cause[1], GeoRestrictedError)):
        return FetchFailure(Reason.geo_blocked, message)
    reason, transient = classify_error(message)
    return FetchFailure(reason, message, transient)


class FetchStage(Stage):
    """Acquire one video: metadata probe -> duration filter -> download (or cache) -> verify."""

    name = "fetch"
    version = "1"

    def __init__(self, cfg: FetchConfig, cache_root: str | Path | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.cfg = cfg
        cache = Path(cfg.cache_dir).expanduser()
        if not cache.is_absolute() and cache_root is not None:
            cache = Path(cache_root) / cache
        self.cache_dir = cache.resolve()
        # I/O-bound: verification decodes only a few frames (used alone: bench, tests)
        self.resources = Resources(cpus=0.2, concurrency=(1, 4))
        self._sleep = sleep
        self.storage_url = cfg.storage_url
        if self.storage_url and "://" not in self.storage_url:  # a path: relative to work_dir, like the cache
            path = Path(self.storage_url).expanduser()
            if not path.is_absolute() and cache_root is not None:
                path = Path(cache_root) / path
            self.storage_url = str(path.resolve())
        self._store: VideoStore | None = None  # built lazily: the stage is pickled to workers

    def setup(self) -> None:
        self.cache_dir.mkdir(parents=True, exist_ok=True)

    @property
    def store(self) -> VideoStore | None:
        if self._store is None and self.storage_url:
            self._store = VideoStore(self.storage_url, self.cfg.storage_options)
        return self._store

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_store": None}

    # -- entry point -------------------------------------------------------
    def process(self, task: VideoTask) -> VideoTask:
        if task.rejected:
            return task
        try:
            if task.source_kind == "local":
                self._local(task)
            elif task.source_kind in ("youtube", "url"):
                self._remote(task)
            else:
                return task.reject(Reason.bad_id, f"unknown source_kind {task.source_kind!r}", self.name)
        except FetchFailure as exc:
            return task.reject(exc.reason, exc.message, self.name)
        except MediaError as exc:
            return task.reject(exc.reason, exc.message, self.name)
        if not task.rejected:
            # the file and its sidecars are on this node's disk; what later stages need of them
            # travels with the task (the subtitle text), never the path
            task.media_node = current_node()
            task.subtitles = read_subtitles(task.subtitle_paths)
        return task

    # -- local files: verify in place --------------------------------------
    def _local(self, task: VideoTask) -> VideoTask:
        path = Path(task.url or task.source)
        if not path.is_file():  # ingest saw it on the driver: this node does not have it
            raise FetchFailure(Reason.media_missing, f"local file {str(path)!r} is not on node {current_node()} "
                               "(local inputs must be on a disk every node mounts)", transient=True)
        media = verify_media(path, tolerance_s=self.cfg.duration_tolerance_s, decode=self.cfg.verify_decode)
        self._check_duration(media.duration_s)
        task.title = task.title or path.stem
        self._fill_media(task, path, media)
        return task.accept()

    # -- remote: yt-dlp ----------------------------------------------------
    def url_for(self, task: VideoTask) -> str:
        if task.source_kind == "youtube":
            return self.cfg.url_template.format(id=task.video_id)
        return task.url or task.source

    def _remote(self, task: VideoTask) -> VideoTask:
        try:
            vid = safe_id(task.video_id)
        except ValueError as exc:
            raise FetchFailure(Reason.bad_id, str(exc)) from exc
        if self.cfg.reuse_cache and self._from_cache(task):
            if self.store is not None:
                self._publish(task, vid, Path(task.video_path), if_missing=True)
            return task
        if self.cfg.reuse_cache and self.store is not None and self._from_store(task, vid):
            return task
        url = self.url_for(task)
        logger = CapturingLogger()
        with self._ydl(vid, logger) as ydl:  # one instance per video: creating one costs ~0.3 s
            return self._probe_download_verify(task, ydl, logger, url, vid)

    def _probe_download_verify(self, task: VideoTask, ydl, logger: CapturingLogger, url: str,
                               vid: str) -> VideoTask:
        info = self._retrying(lambda: self._extract(url, vid, ydl, logger))
        self._fill_meta(task, info)
        if info.get("is_live") or info.get("live_status") in ("is_live", "is_upcoming"):
            raise FetchFailure(Reason.live_stream, f"live_status={info.get('live_status') or 'is_live'}: "
                                                   f"not a finished video ({url})")
        duration = info.get("duration")
        if duration is None:  # generic extractor / direct media: read the container header
            media_url = info.get("url") or url
            header = self._retrying(lambda: self._probe_header(media_url))
            if not header.has_video:
                raise MediaError(Reason.no_video_stream, f"no video stream in {media_url} (header probe)")
            duration = header.duration_s
            if not duration:
                raise MediaError(Reason.corrupt_media, f"no duration in the header of {media_url}")
        task.duration_s = float(duration)
        self._check_duration(task.duration_s)
        result = self._retrying(lambda: self._download(info, vid, ydl, logger))
        path = self._downloaded_path(result, vid)
        media = verify_media(path, expected_duration_s=task.duration_s,
                             tolerance_s=self.cfg.duration_tolerance_s, decode=self.cfg.verify_decode)
        self._fill_media(task, path, media)
        self._fill_sidecars(task, result, vid)
        self._write_cache(task, path)
        if self.store is not None:
            self._publish(task, vid, path)
        return task.accept()

    def _retrying(self, fn: Callable[[], T]) -> T:
        """Call fn; retry transient failures with exponential backoff, up to cfg.retries."""
        attempt = 0
        while True:
            try:
                return fn()
            except (FetchFailure, MediaError) as exc:
                transient = exc.transient if isinstance(exc, FetchFailure) else exc.reason in TRANSIENT
                if not transient or attempt >= self.cfg.retries:
                    raise
                self._sleep(min(self.cfg.backoff_s * (2 ** attempt), self.cfg.backoff_max_s))
                attempt += 1

    def _ydl(self, vid: str, logger: CapturingLogger):
        import yt_dlp

        return yt_dlp.YoutubeDL(build_params(self.cfg, self.cache_dir, vid, logger))

    def _extract(self, url: str, vid: str, ydl, logger: CapturingLogger) -> dict[str, Any]:
        from yt_dlp.utils import YoutubeDLError

        try:
            info = ydl.extract_info(url, download=False)
        except YoutubeDLError as exc:
            raise _from_ytdlp(exc, logger) from exc
        if not info:
            raise FetchFailure(Reason.unavailable, "; ".join(logger.errors) or f"no info for {url}")
        if info.get("_type") == "playlist":
            raise FetchFailure(Reason.bad_id, f"{url} is a playlist, not a video")
        return info

    def _probe_header(self, media_url: str) -> MediaInfo:
        return probe_media_header(media_url, timeout_s=self.cfg.socket_timeout_s)

    def _download(self, info: dict[str, Any], vid: str, ydl, logger: CapturingLogger) -> dict[str, Any]:
        from yt_dlp.utils import YoutubeDLError

        video_dir(self.cache_dir, vid).mkdir(parents=True, exist_ok=True)
        try:
            return ydl.process_ie_result(dict(info), download=True)
        except YoutubeDLError as exc:
            raise _from_ytdlp(exc, logger) from exc

    def _downloaded_path(self, result: dict[str, Any], vid: str) -> Path:
        folder = video_dir(self.cache_dir, vid)
        for item in result.get("requested_downloads") or []:
            fp = item.get("filepath")
            if fp and Path(fp).is_file():
                return Path(fp)
        for candidate in sorted(folder.glob(f"{vid}.*")):
            if candidate.suffix in (".mp4", ".mkv", ".webm", ".mov", ".m4v") and candidate.is_file():
                return candidate
        raise FetchFailure(Reason.corrupt_media, f"yt-dlp reported success but no file for {vid} in {folder}")

    # -- filling the task ---------------------------------------------------
    def _check_duration(self, duration: float | None) -> None:
        if duration is None:
            raise MediaError(Reason.corrupt_media, "unknown duration")
        if duration < self.cfg.min_duration_s:
            raise FetchFailure(Reason.too_short, f"duration {duration:.1f}s < min_duration_s "
                                                 f"{self.cfg.min_duration_s:.1f}s")
        if duration > self.cfg.max_duration_s:
            raise FetchFailure(Reason.too_long, f"duration {duration:.1f}s > max_duration_s "
                                                f"{self.cfg.max_duration_s:.1f}s")

    @staticmethod
    def _fill_meta(task: VideoTask, info: dict[str, Any]) -> None:
        for key in _META_KEYS:
            value = info.get(key)
            if value is not None:
                setattr(task, key, str(value))
        if task.channel is None and info.get("uploader"):
            task.channel = str(info["uploader"])
        if task.title is None and info.get("title"):
            task.title = str(info["title"])

    @staticmethod
    def _fill_media(task: VideoTask, path: Path, media: MediaInfo) -> None:
        task.video_path = str(path)
        task.file_size = path.stat().st_size
        task.width, task.height, task.fps = media.width, media.height, media.fps
        task.frame_count, task.codec, task.rotation = media.frame_count, media.codec, media.rotation
        task.duration_s = media.duration_s if media.duration_s else task.duration_s

    def _fill_sidecars(self, task: VideoTask, result: dict[str, Any], vid: str) -> None:
        folder = video_dir(self.cache_dir, vid)
        subs = sorted(p for p in folder.glob(f"{vid}.*") if p.suffix in (".vtt", ".srt", ".ass", ".ttml"))
        task.subtitle_paths = [str(p) for p in subs]
        task.subtitle_langs = [p.name[len(vid) + 1:].rsplit(".", 1)[0] for p in subs]
        info_json = folder / f"{vid}.info.json"
        task.info_json_path = str(info_json) if info_json.is_file() else None

    # -- cache ---------------------------------------------------------------
    def _cache_file(self, vid: str) -> Path:
        return video_dir(self.cache_dir, vid) / f"{vid}.verified.json"

    def _write_cache(self, task: VideoTask, path: Path) -> None:
        st = path.stat()
        fields = ("title", "channel", "channel_id", "upload_date", "license", "live_status",
                  "duration_s", "subtitle_langs", "subtitle_paths", "info_json_path", "width",
                  "height", "fps", "frame_count", "codec", "rotation")
        record = {"video_path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                  "stage_version": self.version, "task": {k: getattr(task, k) for k in fields},
                  "files": {p.name: p.stat().st_size for p in self._files(task, path)}}
        tmp = self._cache_file(task.video_id).with_suffix(".tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, self._cache_file(task.video_id))

    def _from_cache(self, task: VideoTask) -> bool:
        """Reuse a verified download if the file is unchanged (size and mtime); no network."""
        sidecar = self._cache_file(task.video_id)
        try:
            record = json.loads(sidecar.read_text())
            path = Path(record["video_path"])
            st = path.stat()
        except (OSError, ValueError, KeyError):
            return False
        if (st.st_size, st.st_mtime_ns) != (record.get("size"), record.get("mtime_ns")) \
                or record.get("stage_version") != self.version:
            return False
        for key, value in record["task"].items():
            setattr(task, key, value)
        task.video_path, task.file_size = str(path), st.st_size
        self._check_duration(task.duration_s)  # bounds may have changed since the download
        task.accept()
        return True

    @staticmethod
    def _files(task: VideoTask, video: Path) -> list[Path]:
        """The video and its sidecars (what the shared store holds besides the verified record)."""
        extra = [*task.subtitle_paths, *([task.info_json_path] if task.info_json_path else [])]
        return [video, *(Path(p) for p in extra)]

    # -- shared store ----------------------------------------------------------
    def _publish(self, task: VideoTask, vid: str, video: Path, if_missing: bool = False) -> None:
        """Copy a verified video + sidecars to the store and record their shared URIs.

        With a store configured, the shared URI is the reference trainers use: a video that
        could not be published is not accepted with only a node-local path, it is rejected
        as `storage_error` (transient: the next run publishes it from the local cache)."""
        assert self.store is not None
        files = self._files(task, video)
        try:
            if not (if_missing and self.store.read_record(vid) is not None):
                self.store.publish(vid, files, self._cache_file(vid))
        except Exception as exc:  # noqa: BLE001 - each fsspec backend raises its own types
            raise FetchFailure(Reason.storage_error, f"could not publish {vid} to {self.storage_url}: "
                               f"{type(exc).__name__}: {exc}", transient=True) from exc
        self._set_uris(task, vid, video.name, [p.name for p in files[1:]])

    def _set_uris(self, task: VideoTask, vid: str, video_name: str, sidecars: list[str]) -> None:
        assert self.store is not None
        task.media_store = self.store.url
        task.media_uri = self.store.url_of(vid, video_name)
        task.sidecar_uris = [self.store.url_of(vid, name) for name in sidecars]

    def _from_store(self, task: VideoTask, vid: str) -> bool:
        """Copy a verified video from the shared store into the local cache: no yt-dlp call.

        The stored record supplies the metadata; the duration bounds are re-checked before
        any transfer (as the local reuse does), and the copy is verified again with PyAV, so
        an object that does not match its record is never trusted (False: download again).
        """
        assert self.store is not None
        record = self.store.read_record(vid)
        if not record or record.get("stage_version") != self.version or "video_path" not in record:
            return False
        meta = record.get("task") or {}
        for key in (*_META_KEYS, "duration_s"):
            if meta.get(key) is not None:
                setattr(task, key, meta[key])
        self._check_duration(task.duration_s)  # out of bounds: rejected without any transfer
        folder = video_dir(self.cache_dir, vid)
        path = folder / Path(record["video_path"]).name
        files = record.get("files")
        if not isinstance(files, dict) or files.get(path.name) != record.get("size") \
                or not self.store.restore(vid, folder, record):
            return False
        try:
            media = verify_media(path, expected_duration_s=task.duration_s,
                                 tolerance_s=self.cfg.duration_tolerance_s, decode=self.cfg.verify_decode)
        except MediaError as exc:
            log.warning("stored copy of %s failed verification, downloading again: %s", vid, exc.message)
            return False
        self._fill_media(task, path, media)
        self._fill_sidecars(task, {}, vid)
        self._write_cache(task, path)
        self._set_uris(task, vid, path.name, [n for n in files if n != path.name])
        task.accept()
        return True
