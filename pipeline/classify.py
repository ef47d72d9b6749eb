"""Map yt-dlp / HTTP / FFmpeg error text to a rejection reason and whether to retry.

Text is all we can rely on: yt-dlp wraps extractor and network errors in DownloadError
whose message carries the site's own wording (e.g. YouTube's playability reason). Rules are
ordered most specific first ("Private video. Sign in if you've been granted access" is
private, not bot_check; "Sign in to confirm your age" is age_restricted).
"""
from __future__ import annotations

import re

from pipeline.records import Reason

_HTTP_STATUS_RE = re.compile(
    r"(?:http error|server returned|status(?: code)?[:=]?|response code)\s*(\d{3})\b", re.I)

# (reason, transient, substrings) checked in order against the lower-cased message.
_RULES: list[tuple[Reason, bool, tuple[str, ...]]] = [
    (Reason.bot_check, False, ("not a bot", "captcha challenge", "confirm you're not a robot")),
    (Reason.members_only, False, ("members-only", "channel's members", "members only",
                                  "join this channel")),
    (Reason.age_restricted, False, ("confirm your age", "age-restricted", "age restricted",
                                    "inappropriate for some users", "age_verification_required")),
    (Reason.private, False, ("private video", "video is private", "this video has been set to private")),
    (Reason.rate_limited, True, ("too many requests", "rate-limited", "rate limited",
                                 "ratelimit", "try again later")),
    (Reason.geo_blocked, False, ("in your country", "from your location", "geo restriction",
                                 "geo-restricted", "georestricted")),
    (Reason.live_stream, False, ("live event will begin", "premieres in", "is_upcoming",
                                 "this live event", "channel is not currently live",
                                 "live stream recording is not available")),
    (Reason.removed, False, ("has been removed", "account associated with this video has been terminated",
                             "has been terminated", "copyright claim", "no longer available",
                             "removed by the uploader")),
]
_NETWORK = ("timed out", "timeout", "connection reset", "connection refused", "connection aborted",
            "remote end closed", "broken pipe", "name or service not known",
            "temporary failure in name resolution", "network is unreachable", "no route to host",
            "bytes read", "more expected", "incompleteread", "did not get any data blocks",
            "giving up after", "eof occurred", "urlopen error", "content too short",
            "transporterror", "ssl:", "connection error", "end of file")
_MEDIA = ("invalid data found when processing input", "moov atom not found",
          "could not find codec parameters", "error while decoding")
_UNAVAILABLE = ("video unavailable", "this video is not available", "does not exist",
                "not available", "unsupported url", "no video formats found", "not found",
                "requested format is not available", "is not a valid url", "unable to extract")


def _by_status(code: int) -> tuple[Reason, bool] | None:
    if code == 429:
        return Reason.rate_limited, True
    if code in (401, 403):
        return Reason.forbidden, False
    if code == 410:
        return Reason.removed, False
    if code in (404, 400):
        return Reason.unavailable, False
    if code in (408,) or 500 <= code <= 599:
        return Reason.network, True
    return None


def classify_error(message: str) -> tuple[Reason, bool]:
    """(reason, transient) for an error message; unknown text is a permanent `unavailable`."""
    text = (message or "").lower().replace("\u2019", "'").replace("\u2018", "'")
    for reason, transient, needles in _RULES:
        if any(n in text for n in needles):
            return reason, transient
    m = _HTTP_STATUS_RE.search(text)
    if m:
        hit = _by_status(int(m.group(1)))
        if hit:
            return hit
    if "forbidden" in text:
        return Reason.forbidden, False
    if any(n in text for n in _NETWORK):
        return Reason.network, True
    if any(n in text for n in _MEDIA):
        return Reason.corrupt_media, False
    if any(n in text for n in _UNAVAILABLE):
        return Reason.unavailable, False
    return Reason.unavailable, False
