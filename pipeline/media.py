"""Opening media with PyAV, and the one error every media check raises.

A file that cannot be used is rejected with a reason, and the reason must be true: a
path that is missing or unreadable *on this node* says nothing about the video (another
node may hold it, a re-run may find it), so it is `media_missing`, which the next run
retries; only a file that opened and failed as media is `corrupt_media` (permanent).
"""
from __future__ import annotations

from pathlib import Path

from pipeline.records import Reason
from pipeline.stage import current_node

_UNREADABLE = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


class MediaError(Exception):
    """Media that cannot be used: the rejection reason and the original message."""

    def __init__(self, reason: Reason | str, message: str):
        self.reason = Reason(reason)
        self.message = message
        super().__init__(f"{self.reason.value}: {message}")


def missing(path: str | Path, why: str = "no such file") -> MediaError:
    """The error for a local media path this node cannot read (names the node)."""
    return MediaError(Reason.media_missing, f"cannot read {str(path)!r} on node {current_node()}: {why}")


def open_container(src: str | Path, timeout_s: float | None = None):
    """`av.open(src)`, with failures classified: unreadable local path, network, or corrupt media."""
    import av

    src = str(src)
    remote = "://" in src
    options = {}
    if remote and timeout_s:
        us = str(int(timeout_s * 1_000_000))
        options = {"rw_timeout": us, "timeout": us}
    try:
        return av.open(src, "r", options=options, timeout=timeout_s)
    except _UNREADABLE as exc:
        if not remote:
            raise missing(src, f"{type(exc).__name__}: {exc}") from exc
        raise MediaError(Reason.unavailable, f"cannot open media {src!r}: {exc}") from exc
    except Exception as exc:  # PyAV raises many FFmpeg error subclasses
        from pipeline.classify import classify_error

        reason, _ = classify_error(str(exc))
        if not remote or reason not in (Reason.unavailable, Reason.forbidden, Reason.rate_limited, Reason.network):
            reason = Reason.corrupt_media
        raise MediaError(reason, f"cannot open media {src!r}: {exc}") from exc


def no_video_error(container, where: str) -> MediaError:
    """The error for an opened container without a video stream, with a true reason.

    A real audio-only file is `no_video_stream`; bytes FFmpeg could only read as text or
    data (noise probed as lyrics, a subtitle file named .mp4) are not media at all:
    `corrupt_media`."""
    kinds = sorted({s.type for s in container.streams})
    fmt = getattr(container.format, "name", "?")
    if container.streams.audio:
        return MediaError(Reason.no_video_stream, f"no video stream in {where} (audio only, {fmt})")
    return MediaError(Reason.corrupt_media, f"not a video: FFmpeg reads {where} as {fmt!r} with "
                                            f"streams {kinds or 'none'}")
