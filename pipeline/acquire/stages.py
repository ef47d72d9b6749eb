"""FetchStage: probe with yt-dlp, filter by duration, download, verify; one task at a time.

With `fetch.storage_url` set, verified videos are also published to a shared fsspec store,
and a worker whose local cache lacks a video copies it from there instead of downloading.

Every request to the origin passes the cluster-wide limiter first (pipeline/acquire/limiter.py):
an attempt holds a lease on one egress identity (proxy / cookie account), each extraction
request, header probe, download and subtitle takes a slot of that identity's budget, and a
bot check or 429 benches the identity and starts the attempt again on another one (or after
the pause, when every identity is benched). Subtitles come last, on their own budget, and
never fail their video (pipeline/acquire/subtitles.py).

Plain Python (no Ray): `plan.build_stages` chains it with segmentation and selection (one
process per video: the file is read where it was downloaded), the runner runs the chain in
actors and hands it the shared limiter (a `Service`, bound with `bind`); tests and the bench
call `process` directly, with an in-process limiter. Every failure ends as
`task.reject(reason, original_message)`; network/5xx failures are retried with exponential
backoff, blocks (bot_check, rate_limited) on a fresh lease, permanent ones fail at once.
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

from pipeline.acquire import youtube
from pipeline.classify import classify_error
from pipeline.acquire.config import FetchConfig, IdentityConfig
from pipeline.acquire.cookies import private_copy
from pipeline.acquire.ids import safe_id
from pipeline.acquire.limiter import (INCONCLUSIVE, OK, FetchLimiter, FetchPaused, IdentityLost, Lease,
                                      LimiterCore, LimiterSpec, LocalLimiter, Throttle)
from pipeline.acquire.storage import VideoStore
from pipeline.acquire.cues import read_subtitles
from pipeline.acquire.subtitles import fetch_subtitles
from pipeline.acquire.verify import MediaError, MediaInfo, probe_media_header, verify_media
from pipeline.acquire.ytdlp_options import (CapturingLogger, RequestRefused, build_params, metered_ydl,
                                            refused_cause, video_dir)
from pipeline.records import Reason, VideoTask
from pipeline.stage import Resources, Service, Stage, current_node

log = logging.getLogger(__name__)
T = TypeVar("T")
TRANSIENT = frozenset({Reason.network})  # retried in place, with backoff
BLOCKED = frozenset({Reason.bot_check, Reason.rate_limited})  # the identity's fault: bench it, new lease
_RUNTIME_LOGGED: set[str] = set()
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
    reads = frozenset({"video_id", "source", "source_kind", "url"})
    writes = frozenset({"title", "channel", "channel_id", "upload_date", "license", "live_status", "duration_s",
                        "subtitle_langs", "subtitle_paths", "info_json_path", "fetch_identity", "subtitle_errors",
                        "video_path", "file_size", "width", "height", "fps", "frame_count", "codec", "rotation",
                        "media_node", "media_store", "media_uri", "sidecar_uris", "subtitles"})
    fetches_media = True

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
        self.identities: dict[str, IdentityConfig] = {i.name: i for i in cfg.identity_list()}
        self.limiter: FetchLimiter = LocalLimiter(LimiterSpec.from_config(cfg))
        self._mark = self.limiter.mark()
        self.throttle = Throttle.for_limits(self.limiter, cfg.limits)
        self._exempt = youtube.exempt_url_prefixes(cfg.youtube)

    def sections(self) -> dict[str, FetchConfig]:
        return {"fetch": self.cfg}

    def setup(self) -> None:
        self.cache_dir.mkdir(parents=True, exist_ok=True)

    @property
    def store(self) -> VideoStore | None:
        if self._store is None and self.storage_url:
            self._store = VideoStore(self.storage_url, self.cfg.storage_options)
        return self._store

    def __getstate__(self) -> dict[str, Any]:
        state = {**self.__dict__, "_store": None, "throttle": None}
        if isinstance(self.limiter, LocalLimiter):  # per process: rebuilt on the other side
            state["limiter"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.limiter is None:
            self.limiter = LocalLimiter(LimiterSpec.from_config(self.cfg))
            self._mark = self.limiter.mark()
        self.throttle = Throttle.for_limits(self.limiter, self.cfg.limits)  # its counters are this process's

    # -- the shared limiter (a service the runner starts and hands over) ----------
    def limiter_spec(self) -> LimiterSpec:
        """The identities and budgets this stage needs a limiter for; equal specs share one."""
        return LimiterSpec.from_config(self.cfg)

    def services(self, dataset: Any = None) -> list[Service]:
        """The cluster-wide limiter of this spec, until one is bound."""
        if not isinstance(self.limiter, LocalLimiter):
            return []
        spec = self.limiter_spec()
        return [Service(f"curate-fetch-limiter-{spec.key}", LimiterCore, (spec,), shared=True)]

    def bind(self, name: str, proxy: Any) -> None:
        self.bind_limiter(proxy if proxy is not None else LocalLimiter(self.limiter_spec()))

    def run_report(self) -> dict[str, Any]:
        return {"fetch_limiter": self.limiter_stats()}

    def bind_limiter(self, limiter: FetchLimiter) -> None:
        """Use `limiter` (shared by every worker) instead of this process's own."""
        if limiter is not self.limiter:
            self.limiter, self._mark = limiter, limiter.mark()
            self.throttle = Throttle.for_limits(limiter, self.cfg.limits)

    def limiter_stats(self) -> dict[str, Any]:
        """What the limiter did since this stage got it: requests, waits, benches, pauses."""
        return self.limiter.stats(self._mark)

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
        self._log_runtime_once()
        url = self.url_for(task)
        throttle, blocks, last_block, last_message = self.throttle, 0, Reason.bot_check, ""
        while True:
            try:
                lease = throttle.lease(last_block.value)
            except FetchPaused as exc:
                raise FetchFailure(last_block, f"{exc}; last: {last_message}", transient=True) from exc
            task.fetch_identity = lease.identity
            try:
                return self._attempt(task, url, vid, lease)
            except IdentityLost:
                continue  # another worker benched this identity meanwhile: a new lease, not a retry
            except FetchFailure as exc:
                if exc.reason not in BLOCKED:
                    raise
                throttle.report(lease, exc.reason.value)
                blocks, last_block = blocks + 1, exc.reason
                last_message = exc.message[:500]
                if blocks > self.cfg.retries:
                    raise FetchFailure(exc.reason, exc.message, transient=True) from exc
            finally:
                throttle.release(lease)

    def _attempt(self, task: VideoTask, url: str, vid: str, lease: Lease) -> VideoTask:
        """One try at one video as one identity: probe, duration filter, download, verify, subtitles."""
        logger = CapturingLogger()
        params = build_params(self.cfg, self.cache_dir, vid, logger, self._identity(lease.identity))
        with metered_ydl(params, self._meter(lease, "request")) as ydl:
            try:
                info = self._retrying(lambda: self._extract(url, vid, ydl, logger))
            except FetchFailure as exc:
                if exc.reason not in BLOCKED:  # the origin answered (unavailable, private, ...) or did not
                    self.throttle.report(lease, INCONCLUSIVE if exc.reason in TRANSIENT else OK)
                raise
            self.throttle.report(lease, OK)  # closes a half-open identity: the origin answers again
            return self._download_verify(task, ydl, logger, url, vid, lease, info)

    def _identity(self, name: str) -> IdentityConfig:
        """The identity's settings, its cookies as this worker's private copy (yt-dlp rewrites them)."""
        identity = self.identities[name]
        if not identity.cookies_file:
            return identity
        try:
            return identity.model_copy(update={"cookies_file": private_copy(identity.cookies_file)})
        except OSError as exc:
            raise FetchFailure(Reason.stage_error, f"identity {name}: cannot read cookies file "
                                                   f"{identity.cookies_file!r}: {exc}", transient=True) from exc

    def _meter(self, lease: Lease, kind: str) -> Callable[[str], None]:
        """Called by yt-dlp before each request: one `kind` slot of the lease's identity."""
        def meter(url: str) -> None:
            if self._exempt and url.startswith(self._exempt):
                return  # the PO-token provider's own server, not the origin
            try:
                self.throttle.take(lease, kind)
            except IdentityLost as exc:
                raise RequestRefused(str(exc)) from exc
        return meter

    def _log_runtime_once(self) -> None:
        """Log yt-dlp, the JS runtime and EJS versions once per worker process."""
        key = f"{os.getpid()}:{self.cfg.youtube.model_dump_json()}"
        if key in _RUNTIME_LOGGED:
            return
        _RUNTIME_LOGGED.add(key)
        try:
            report = youtube.runtime_report(build_params(self.cfg, self.cache_dir, "runtime-check"))
        except Exception as exc:  # noqa: BLE001 - a report, never a reason to fail a video
            log.warning("fetch worker %d: could not inspect yt-dlp: %s", os.getpid(), exc)
            return
        log.info("fetch worker %d: %s", os.getpid(), youtube.summary_line(report))
        if youtube.solver_ready(report) is None and self.cfg.youtube.js_runtime != "none":
            log.warning("fetch worker %d: no JS challenge solver (runtime + EJS scripts): YouTube fetching is "
                        "degraded; run `curate doctor`", os.getpid())

    def _download_verify(self, task: VideoTask, ydl, logger: CapturingLogger, url: str, vid: str,
                         lease: Lease, info: dict[str, Any]) -> VideoTask:
        self._fill_meta(task, info)
        if info.get("is_live") or info.get("live_status") in ("is_live", "is_upcoming"):
            raise FetchFailure(Reason.live_stream, f"live_status={info.get('live_status') or 'is_live'}: "
                                                   f"not a finished video ({url})")
        duration = info.get("duration")
        if duration is None:  # generic extractor / direct media: read the container header
            media_url = info.get("url") or url
            header = self._retrying(lambda: self._probe_header(media_url, lease))  # MediaError: no video
            duration = header.duration_s
            if not duration:
                raise MediaError(Reason.corrupt_media, f"no duration in the header of {media_url}")
        task.duration_s = float(duration)
        self._check_duration(task.duration_s)
        ydl.meter = None  # a download is one `download` slot, whatever its range requests
        ydl.params["writesubtitles"] = ydl.params["writeautomaticsub"] = False  # they come last, on their own
        result = self._retrying(lambda: self._download(info, vid, ydl, logger, lease))
        path = self._downloaded_path(result, vid)
        media = verify_media(path, expected_duration_s=task.duration_s,
                             tolerance_s=self.cfg.duration_tolerance_s, decode=self.cfg.verify_decode)
        self._fill_media(task, path, media)
        errors = fetch_subtitles(ydl, info, video_dir(self.cache_dir, vid), vid, self.throttle, lease)
        task.subtitle_errors = [f"{lang}: {why}" for lang, why in sorted(errors.items())]
        self._fill_sidecars(task, result, vid)
        self._write_cache(task, path)
        if self.store is not None:
            self._publish(task, vid, path)
        return task.accept()

    def _retrying(self, fn: Callable[[], T]) -> T:
        """Call fn; retry network failures with exponential backoff, up to cfg.retries (blocks go up)."""
        attempt = 0
        while True:
            try:
                return fn()
            except (FetchFailure, MediaError) as exc:
                if exc.reason not in TRANSIENT or attempt >= self.cfg.retries:
                    raise
                self._sleep(min(self.cfg.backoff_s * (2 ** attempt), self.cfg.backoff_max_s))
                attempt += 1

    def _extract(self, url: str, vid: str, ydl, logger: CapturingLogger) -> dict[str, Any]:
        from yt_dlp.utils import YoutubeDLError

        try:
            info = ydl.extract_info(url, download=False)
        except YoutubeDLError as exc:
            if refused_cause(exc) is not None:
                raise IdentityLost(str(exc)) from exc
            raise _from_ytdlp(exc, logger) from exc
        if not info:
            raise FetchFailure(Reason.unavailable, "; ".join(logger.errors) or f"no info for {url}")
        if info.get("_type") == "playlist":
            raise FetchFailure(Reason.bad_id, f"{url} is a playlist, not a video")
        return info

    def _probe_header(self, media_url: str, lease: Lease) -> MediaInfo:
        self.throttle.take(lease, "request")
        return probe_media_header(media_url, timeout_s=self.cfg.socket_timeout_s)

    def _download(self, info: dict[str, Any], vid: str, ydl, logger: CapturingLogger, lease: Lease) -> dict[str, Any]:
        from yt_dlp.utils import YoutubeDLError

        self.throttle.take(lease, "download")
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

    def has_media(self, task: VideoTask) -> bool:
        """Whether processing `task` again needs no download: a local input, a verified copy in
        this node's cache (same size and mtime), or one in the shared store (`curate plan`)."""
        if task.source_kind == "local":
            return True
        try:
            record = json.loads(self._cache_file(safe_id(task.video_id)).read_text())
            st = Path(record["video_path"]).stat()
            if (st.st_size, st.st_mtime_ns) == (record.get("size"), record.get("mtime_ns")):
                return True
        except (OSError, ValueError, KeyError):
            pass
        return self.store is not None and self.store.read_record(safe_id(task.video_id)) is not None

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
