"""Normalise one raw input (YouTube ID or URL, media URL, local path) to a stable video ID.

Every input gets an ID, even a malformed one, so it can end as a rejected row: nothing
is dropped. IDs only ever contain [A-Za-z0-9_-], which is what keeps cache file names
from escaping the cache directory.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

YOUTUBE_ID_RE = re.compile(r"^[A-Za-z0-9_-]{11}$")
SAFE_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_YT_HOSTS = {"youtube.com", "www.youtube.com", "m.youtube.com", "music.youtube.com",
             "youtube-nocookie.com", "www.youtube-nocookie.com", "gaming.youtube.com"}
_SHORT_HOSTS = {"youtu.be", "www.youtu.be"}
_PATH_ID_PREFIXES = ("shorts", "embed", "live", "v", "e")
_MEDIA_EXT = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".ts", ".flv", ".m4a")


@dataclass(frozen=True)
class ParsedSource:
    """What an input line means: `kind` is youtube | url | local | bad."""

    kind: str
    video_id: str
    source: str
    url: str | None = None  # media URL or absolute local path; None for YouTube IDs
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.kind != "bad"


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _bad(raw: str, why: str) -> ParsedSource:
    return ParsedSource("bad", f"bad-{_digest(raw)}", raw, None, why)


def youtube_id_from_url(url: str) -> str | None:
    """The 11-char ID of a watch / youtu.be / shorts / embed / live URL, else None."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    segments = [s for s in parts.path.split("/") if s]
    candidate: str | None = None
    if host in _SHORT_HOSTS:
        candidate = segments[0] if segments else None
    elif host in _YT_HOSTS:
        if segments[:1] == ["watch"] or not segments:
            candidate = (parse_qs(parts.query).get("v") or [None])[0]
        elif len(segments) >= 2 and segments[0] in _PATH_ID_PREFIXES:
            candidate = segments[1]
    if candidate and YOUTUBE_ID_RE.match(candidate):
        return candidate
    return None


def is_youtube_url(raw: str) -> bool:
    try:
        host = (urlsplit(raw).hostname or "").lower()
    except ValueError:
        return False
    return host in _YT_HOSTS or host in _SHORT_HOSTS


def _looks_like_path(raw: str) -> bool:
    return (raw.startswith(("/", "./", "../", "~", "file://")) or os.sep in raw
            or raw.lower().endswith(_MEDIA_EXT))


def parse_source(raw: object) -> ParsedSource:
    """Classify and normalise one input; never raises (bad input -> kind 'bad')."""
    if raw is None:
        return _bad("", "empty input")
    text = str(raw).strip()
    if not text:
        return _bad(text, "empty input")
    if YOUTUBE_ID_RE.match(text):  # fast path: the common case for 400K-ID lists
        return ParsedSource("youtube", text, text)
    lower = text.lower()
    if lower.startswith(("http://", "https://")):
        if is_youtube_url(text):
            vid = youtube_id_from_url(text)
            if vid is None:
                return _bad(text, f"YouTube URL without a valid 11-character video ID: {text!r}")
            return ParsedSource("youtube", vid, text)
        host = urlsplit(text).hostname
        if not host:
            return _bad(text, f"URL without a host: {text!r}")
        return ParsedSource("url", f"url-{_digest(text)}", text, text)
    if "://" in text and not lower.startswith("file://"):
        return _bad(text, f"unsupported URL scheme: {text!r}")
    if _looks_like_path(text):
        path = text[len("file://"):] if lower.startswith("file://") else text
        path = os.path.abspath(os.path.expanduser(path))
        return ParsedSource("local", f"local-{_digest(path)}", text, path)
    return _bad(text, f"not a YouTube ID (11 chars of [A-Za-z0-9_-]), URL or path: {text!r}")


def safe_id(video_id: str) -> str:
    """Return `video_id` if it is safe as a file name, else raise ValueError."""
    if not SAFE_ID_RE.match(video_id or ""):
        raise ValueError(f"unsafe video id for a file name: {video_id!r}")
    return video_id
