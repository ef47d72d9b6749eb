"""Subtitles after the video: their own budget, and a failure never fails the video.

yt-dlp downloads the subtitles it selected (`requested_subtitles`) inside the video's
download and raises on the first failed one (`YoutubeDL._write_subtitles`): one 429 from
YouTube's timedtext endpoint would reject a good video. So the fetch stage downloads the
video with subtitles off, then fetches each selected subtitle here, one `subtitle` slot of
the identity's budget each, through yt-dlp's own downloader (`YoutubeDL.dl`: its headers,
proxy, cookies and impersonation, which YouTube asks for on subtitle URLs). A 429 or bot
check benches the identity's subtitles only; benched subtitles are skipped, not waited for.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pipeline.classify import classify_error
from pipeline.acquire.limiter import BLOCKS, OK, IdentityLost, Lease, SubtitlesBenched, Throttle

log = logging.getLogger(__name__)


def fetch_subtitles(ydl: Any, info: dict[str, Any], folder: Path, vid: str, throttle: Throttle,
                    lease: Lease) -> dict[str, str]:
    """Write `<folder>/<vid>.<lang>.<ext>` for each requested subtitle; returns {lang: why not} for the rest."""
    errors: dict[str, str] = {}
    for lang, sub in (info.get("requested_subtitles") or {}).items():
        path = folder / f"{vid}.{lang}.{sub.get('ext') or 'vtt'}"
        if sub.get("data") is not None:  # some extractors inline them
            path.write_text(sub["data"], encoding="utf-8", newline="")
            continue
        try:
            throttle.take(lease, "subtitle")
        except (SubtitlesBenched, IdentityLost) as exc:
            errors[lang] = f"skipped: {exc}"
            continue
        try:
            copy = dict(sub)
            copy.setdefault("http_headers", info.get("http_headers"))
            ydl.dl(str(path), copy, subtitle=True)
        except Exception as exc:  # noqa: BLE001 - DownloadError, network and OS errors alike: never the video's fault
            reason, _ = classify_error(str(exc))
            if reason.value in BLOCKS:
                throttle.report(lease, reason.value, lane="subtitles")
            errors[lang] = f"{reason.value}: {exc}"[:500]
            for leftover in (path, path.with_name(path.name + ".part")):
                leftover.unlink(missing_ok=True)
            continue
        throttle.report(lease, OK, lane="subtitles")
    if errors:
        log.info("%s: subtitles not saved: %s", vid, errors)
    return errors
