"""One threaded PyAV decoding pass that yields frames in presentation order with exact times.

Frame numbers follow PySceneDetect's PyAV backend: round(seconds_from_stream_start * rate)
with the nominal (guessed) rate, so VFR files get numbers in the nominal timebase and
cuts line up with its goldens.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Iterator

import av

from pipeline.media import MediaError, no_video_error, open_container

log = logging.getLogger(__name__)


@dataclass
class VideoInfo:
    """What the container says before decoding (refined by the decode)."""

    width: int
    height: int
    rate: Fraction
    time_base: Fraction
    start_pts: int
    duration_s: float | None
    frame_count: int | None
    rotation: int
    codec: str


@dataclass
class DecodeStats:
    """Counters of one decode, to judge damaged media."""

    packets: int = 0
    decode_errors: int = 0  # packets the decoder refused
    corrupt_frames: int = 0  # frames the decoder returned flagged as damaged (concealed errors)
    frames: int = 0
    missing_pts: int = 0
    errors: list[str] = field(default_factory=list)


    @property
    def damaged(self) -> int:
        """Packets that failed plus frames that came out damaged: what the videos row reports."""
        return self.decode_errors + self.corrupt_frames

    @property
    def lost_frames(self) -> int:
        """Packets that carried a frame the decode never returned."""
        return max(0, self.packets - self.frames)


@dataclass
class DecodedFrame:
    """One frame: `number` in the nominal timebase, `pts`/`seconds` exact from the stream."""

    number: int
    pts: int
    time_base: Fraction
    seconds: float
    frame: av.VideoFrame


def open_video(path: str, thread_type: str = "NONE", threads: int = 0):
    """Open `path` and return (container, stream, VideoInfo); raise MediaError if unusable.

    `thread_type` as SegmentConfig.thread_type (NONE: one decoder thread, least CPU)."""
    container = open_container(path)  # MediaError: media_missing (not on this node) or corrupt_media
    if not container.streams.video:
        error = no_video_error(container, path)
        container.close()
        raise error
    stream = container.streams.video[0]
    stream.thread_type = thread_type
    if threads:
        stream.codec_context.thread_count = threads
    cc = stream.codec_context
    rate = stream.guessed_rate or stream.average_rate or cc.framerate
    if not rate or float(rate) <= 0:
        container.close()
        raise MediaError("corrupt_media", "no frame rate")
    rate = Fraction(rate).limit_denominator(10000)
    time_base = Fraction(stream.time_base) if stream.time_base else Fraction(1, 90000)
    duration_s = None
    if stream.duration:
        duration_s = float(stream.duration * time_base)
    elif container.duration:
        duration_s = container.duration / av.time_base
    info = VideoInfo(width=cc.width, height=cc.height, rate=rate, time_base=time_base,
                     start_pts=stream.start_time or 0, duration_s=duration_s,
                     frame_count=stream.frames or None, rotation=0,
                     codec=cc.name)
    return container, stream, info


def iter_frames(container, stream, info: VideoInfo, stats: DecodeStats,
                max_consecutive_errors: int = 200) -> Iterator[DecodedFrame]:
    """Decode packet by packet so one bad packet costs one packet, not the whole stream.

    Frames come out of the decoder in presentation order; frames without a PTS get
    one extrapolated from the previous frame and the nominal rate.
    """
    consecutive = 0
    last_pts: int | None = None
    step = max(1, round(1 / (info.rate * info.time_base)))
    rate = float(info.rate)
    times = _TimeBases(info.time_base)
    for packet in container.demux(stream):
        if packet.size:
            stats.packets += 1
        try:
            frames = packet.decode()
        except av.FFmpegError as exc:
            stats.decode_errors += 1
            consecutive += 1
            if len(stats.errors) < 5:
                stats.errors.append(str(exc)[:200])
            if consecutive >= max_consecutive_errors:
                raise MediaError("decode_error", f"{consecutive} consecutive undecodable packets") from exc
            continue
        consecutive = 0
        for frame in frames:
            pts = frame.pts
            if pts is None:
                stats.missing_pts += 1
                pts = info.start_pts if last_pts is None else last_pts + step
            if last_pts is not None and pts <= last_pts:  # duplicate/out-of-order PTS
                pts = last_pts + 1
            last_pts = pts
            tb, num, den, is_stream = times.get(frame.time_base)
            rel = max(pts - (info.start_pts if is_stream else 0), 0)
            seconds = rel * num / den  # == float(rel * tb): int / int is correctly rounded too
            if frame.is_corrupt:
                stats.corrupt_frames += 1
            if stats.frames == 0 and frame.rotation:
                info.rotation = int(frame.rotation) % 360
            stats.frames += 1
            yield DecodedFrame(number=round(seconds * rate), pts=rel,
                               time_base=tb, seconds=seconds, frame=frame)


class _TimeBases:
    """Per-frame time base as (Fraction, numerator, denominator, is the stream's), converted
    once per distinct value: Fraction construction, comparison and multiplication cost a few
    microseconds a frame, and every frame of a stream has the same time base."""

    def __init__(self, stream_tb: Fraction):
        self.stream_tb = stream_tb
        self._stream = (stream_tb, stream_tb.numerator, stream_tb.denominator, True)
        self._key: tuple[int, int] | None = None
        self._value = self._stream

    def get(self, frame_tb) -> tuple[Fraction, int, int, bool]:
        """The entry for a frame's `time_base` (None or 0: the stream's)."""
        if not frame_tb:
            return self._stream
        key = (frame_tb.numerator, frame_tb.denominator)
        if key != self._key:
            tb = Fraction(*key)
            self._key, self._value = key, (tb, tb.numerator, tb.denominator, tb == self.stream_tb)
        return self._value
