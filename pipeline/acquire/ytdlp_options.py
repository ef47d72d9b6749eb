"""Build yt-dlp's params dict from FetchConfig through an allow-list.

Nothing from a config can reach yt-dlp's exec / post-processor / progress hooks or an
output template: the only keys ever set are in ALLOWED_KEYS, post-processors are fixed
here (none that run commands), and file names come from the (validated) video ID alone.
Extractor args are allow-listed per extractor and key (ALLOWED_EXTRACTOR_ARGS), and
yt-dlp may never fetch remote code (`remote_components` is forbidden: the EJS scripts
come from the installed yt-dlp-ejs package).

`metered_ydl` wraps YoutubeDL so that every HTTP request it sends passes a meter first:
the fetch stage's cluster-wide budget (pipeline/acquire/limiter.py).
"""
from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any, Callable

from pipeline.acquire import youtube
from pipeline.acquire.config import FetchConfig, IdentityConfig
from pipeline.acquire.ids import safe_id

ALLOWED_KEYS = frozenset({
    "quiet", "no_warnings", "noprogress", "logger", "format", "merge_output_format",
    "ffmpeg_location", "outtmpl", "paths", "restrictfilenames", "windowsfilenames",
    "writesubtitles", "writeautomaticsub", "subtitleslangs", "subtitlesformat",
    "writeinfojson", "ratelimit", "sleep_interval", "sleep_interval_requests", "retries",
    "fragment_retries", "extractor_retries", "file_access_retries", "socket_timeout",
    "cookiefile", "proxy", "noplaylist", "overwrites", "continuedl", "nopart",
    "ignoreerrors", "allow_playlist_files", "cachedir", "color", "check_formats",
    "js_runtimes", "extractor_args", "impersonate",
})
ALLOWED_EXTRACTOR_ARGS = youtube.EXTRACTOR_ARG_KEYS
FORBIDDEN_KEYS = frozenset({"exec", "exec_cmd", "postprocessors", "postprocessor_hooks",
                            "progress_hooks", "post_hooks", "match_filter", "external_downloader",
                            "external_downloader_args", "postprocessor_args", "compat_opts",
                            "remote_components", "plugin_dirs"})


class CapturingLogger:
    """yt-dlp logger that keeps errors/warnings (for the reject message) and stays quiet."""

    def __init__(self, name: str = "pipeline.acquire.ytdlp"):
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self._log = logging.getLogger(name)

    def debug(self, msg: str) -> None:
        self._log.debug(msg)

    def info(self, msg: str) -> None:
        self._log.debug(msg)

    def warning(self, msg: str) -> None:
        self.warnings.append(msg)
        self._log.debug(msg)

    def error(self, msg: str) -> None:
        self.errors.append(msg)
        self._log.debug(msg)


def format_selector(max_height: int, vcodec: str = "avc1", ext: str = "mp4") -> str:
    """Best stream up to max_height, preferring vcodec/ext; unknown heights (direct links) allowed."""
    h = f"[height<=?{int(max_height)}]"
    return "/".join([
        f"bv*{h}[vcodec^={vcodec}]+ba[ext=m4a]",
        f"b{h}[vcodec^={vcodec}][ext={ext}]",
        f"b{h}[ext={ext}]",
        f"bv*{h}+ba",
        f"b{h}",
        "b",
    ])


def ffmpeg_location() -> str | None:
    """The ffmpeg binary shipped in the imageio-ffmpeg wheel (no system ffmpeg needed)."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # noqa: BLE001 - no binary: yt-dlp falls back to single-file formats
        return None


def video_dir(cache_dir: Path, video_id: str) -> Path:
    """`<cache>/<id[:2]>/`; raises ValueError for IDs that could escape the cache."""
    vid = safe_id(video_id)
    return cache_dir / vid[:2]


def build_params(cfg: FetchConfig, cache_dir: Path, video_id: str,
                 logger: CapturingLogger | None = None,
                 identity: IdentityConfig | None = None) -> dict[str, Any]:
    """The yt-dlp params for one video fetched as `identity` (default: the first one):
    its files are `<cache>/<id[:2]>/<id>.<ext>`; yt-dlp's own cache (player JS, solved
    challenges) is `<cache>/.yt-dlp`, shared by the workers of a node."""
    identity = identity or cfg.identity_list()[0]
    folder = video_dir(cache_dir, video_id).resolve()
    base = str(folder / video_id)
    params: dict[str, Any] = {
        "quiet": True, "no_warnings": True, "noprogress": True, "color": "no_color",
        "logger": logger or CapturingLogger(),
        "format": format_selector(cfg.max_height, cfg.prefer_vcodec, cfg.prefer_ext),
        "merge_output_format": cfg.prefer_ext,
        "outtmpl": {"default": base + ".%(ext)s", "subtitle": base + ".%(ext)s",
                    "infojson": base + ".%(ext)s"},
        "restrictfilenames": True, "windowsfilenames": True,
        "noplaylist": True, "overwrites": True, "continuedl": False,
        "writeinfojson": cfg.write_info_json,
        "writesubtitles": bool(cfg.subtitle_langs),
        "writeautomaticsub": bool(cfg.subtitle_langs) and cfg.auto_captions,
        "subtitleslangs": list(cfg.subtitle_langs),
        "subtitlesformat": "vtt/srt/best",
        "retries": cfg.ytdlp_retries, "fragment_retries": cfg.ytdlp_retries,
        "extractor_retries": cfg.ytdlp_retries, "file_access_retries": 1,
        "socket_timeout": cfg.socket_timeout_s,
        "sleep_interval": cfg.sleep_interval_s or None,
        "sleep_interval_requests": cfg.sleep_requests_s or None,
        "cachedir": str(cache_dir.resolve() / ".yt-dlp"),
        "js_runtimes": youtube.js_runtimes_param(cfg.youtube),
        "extractor_args": youtube.extractor_args(cfg.youtube) or None,
        "impersonate": youtube.impersonate_target(cfg.youtube),
    }
    ff = ffmpeg_location()
    if ff:
        params["ffmpeg_location"] = ff
    if cfg.rate_limit:
        params["ratelimit"] = _parse_rate(cfg.rate_limit)
    if identity.cookies_file:
        params["cookiefile"] = str(Path(identity.cookies_file).expanduser())
    if identity.proxy:
        params["proxy"] = identity.proxy
    params = {k: v for k, v in params.items() if v is not None}
    bad = set(params) - ALLOWED_KEYS
    if bad:  # a programming error here, never a config one
        raise AssertionError(f"yt-dlp params outside the allow-list: {sorted(bad)}")
    for extractor, args in params.get("extractor_args", {}).items():
        extra = set(args) - ALLOWED_EXTRACTOR_ARGS.get(extractor, frozenset())
        if extra:
            raise AssertionError(f"extractor args outside the allow-list: {extractor}: {sorted(extra)}")
    return params


class RequestRefused(Exception):
    """Raised by a meter to stop a request; `metered_ydl` re-raises it through yt-dlp unchanged."""


def metered_ydl(params: dict[str, Any], meter: Callable[[str], None] | None = None):
    """A YoutubeDL whose every request first calls `ydl.meter(url)` (which may sleep, or raise).

    All of yt-dlp's traffic goes through `YoutubeDL.urlopen` (extractors, downloaders,
    subtitle and PO-token requests). A RequestRefused from the meter travels inside a
    `DownloadCancelled`, the one type yt-dlp's extraction wrapper re-raises untouched.
    """
    ydl = _metered_class()(params)
    ydl.meter = meter
    return ydl


@functools.lru_cache(maxsize=1)
def _metered_class() -> type:
    import yt_dlp
    from yt_dlp.utils import DownloadCancelled

    class Cancelled(DownloadCancelled):
        def __init__(self, cause: Exception):
            super().__init__(str(cause))
            self.cause = cause

    class MeteredYoutubeDL(yt_dlp.YoutubeDL):
        meter: Callable[[str], None] | None = None  # swapped per phase by the caller

        def urlopen(self, req):  # noqa: D401 - yt-dlp's own signature
            if self.meter is not None:
                url = req if isinstance(req, str) else getattr(req, "url", "")
                try:
                    self.meter(url)
                except RequestRefused as exc:
                    raise Cancelled(exc) from exc
            return super().urlopen(req)

    return MeteredYoutubeDL


def refused_cause(exc: BaseException) -> Exception | None:
    """The meter's exception inside a yt-dlp error chain, or None."""
    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, RequestRefused):
            return exc
        cause = getattr(exc, "cause", None)
        if isinstance(cause, RequestRefused):
            return cause
        info = getattr(exc, "exc_info", None)
        exc = (info[1] if info and info[1] is not exc else None) or exc.__cause__ or exc.__context__
        seen += 1
    return None


def _parse_rate(text: str) -> int:
    mult = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}
    unit = text[-1].upper()
    if unit in mult:
        return int(float(text[:-1]) * mult[unit])
    return int(float(text))
