"""The one data model: a `VideoTask` flows through the stages and becomes output rows.

The written shape of every row is defined by `schemas/*.json` (the single source of
truth); `pipeline/schema.py` derives the Arrow schemas from them and a test proves that
the dataclasses here and the JSON Schemas name the same fields.
"""
from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any


class Reason(str, enum.Enum):
    """Machine-readable reasons a video (or a row) was rejected. Mirrors schemas/common."""

    # input
    bad_id = "bad_id"
    duplicate_input = "duplicate_input"
    # acquisition (yt-dlp)
    unavailable = "unavailable"
    private = "private"
    removed = "removed"
    geo_blocked = "geo_blocked"
    age_restricted = "age_restricted"
    members_only = "members_only"
    bot_check = "bot_check"
    rate_limited = "rate_limited"
    forbidden = "forbidden"
    network = "network"
    live_stream = "live_stream"
    benchmark_overlap = "benchmark_overlap"  # an evaluation-set video (listed ID or fingerprint)
    # selection
    too_short = "too_short"
    too_long = "too_long"
    too_few_scenes = "too_few_scenes"
    # content filters (segment signals) and de-duplication
    static_video = "static_video"
    low_motion = "low_motion"
    mostly_black = "mostly_black"
    slideshow = "slideshow"
    letterboxed = "letterboxed"
    near_duplicate = "near_duplicate"
    # media
    corrupt_media = "corrupt_media"
    no_video_stream = "no_video_stream"
    decode_error = "decode_error"
    # pipeline
    stage_error = "stage_error"
    schema_invalid = "schema_invalid"
    no_qa = "no_qa"


class Status(str, enum.Enum):
    pending = "pending"
    accepted = "accepted"
    rejected = "rejected"


@dataclass
class Scene:
    """A shot or window of a video, in seconds and in decoded frame numbers."""

    index: int
    start_s: float
    end_s: float
    start_frame: int
    end_frame: int  # exclusive
    keyframe_s: float
    transition: str = "cut"  # start | cut | gradual | split
    score: float | None = None  # strength of the boundary this scene starts at (detector score)
    phash: str | None = None  # 64-bit DCT hash of the keyframe, 16 hex digits
    motion: float | None = None  # mean frame-to-frame change inside the scene (0-255)


@dataclass
class SignaturePoint:
    """One hashed moment of a video: the pHash (hex) of the frame at `t` seconds."""

    t: float
    hash: str


@dataclass
class ContentSignals:
    """What the one decode measured about the content (pipeline/segment/signals.py)."""

    motion: float  # mean frame-to-frame thumbnail change (0-255), frames next to cuts excluded
    motion_p90: float
    static_share: float  # share of frames that did not change over ~0.7 s
    black_share: float  # share of black frames
    blank_share: float  # share of uniform frames (any colour, black included)
    letterbox: float  # share of the height that is black bars (top + bottom)
    pillarbox: float  # share of the width that is black bars (left + right)
    text_score: float  # slide / text-screen likeness, mean over frames sampled once a second (0-1)
    signature: list[SignaturePoint] = field(default_factory=list)  # video-level fingerprint


@dataclass
class Frame:
    """One sampled frame for the models: encoded image bytes, never a decoded array."""

    timestamp_s: float
    image: bytes  # JPEG/PNG bytes
    width: int
    height: int
    scene_index: int = -1
    mime: str = "image/jpeg"


@dataclass
class StageTiming:
    stage: str
    seconds: float


@dataclass
class VideoTask:
    """Everything known about one input while it moves through the pipeline.

    Fields that end up in the `videos` config are named exactly as in
    schemas/videos.json; transient fields (frames, extra) are never written.
    """

    video_id: str
    source: str
    source_kind: str  # youtube | url | local
    input_index: int
    url: str | None = None  # what the fetcher downloads (URL or local path)
    status: str = Status.pending.value
    reject_reason: str | None = None
    reject_stage: str | None = None
    reject_message: str | None = None
    # metadata from the extractor (probe)
    title: str | None = None
    channel: str | None = None
    channel_id: str | None = None
    upload_date: str | None = None
    license: str | None = None
    live_status: str | None = None
    duration_s: float | None = None
    subtitle_langs: list[str] = field(default_factory=list)
    subtitle_paths: list[str] = field(default_factory=list)
    info_json_path: str | None = None
    # the verified media file
    video_path: str | None = None
    file_size: int | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    frame_count: int | None = None
    codec: str | None = None
    rotation: int | None = None
    # segmentation
    scenes: list[Scene] = field(default_factory=list)
    signals: ContentSignals | None = None
    stage_timings: list[StageTiming] = field(default_factory=list)
    # transient: travels between stages, never written to `videos`
    frames: list[Frame] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    # -- state transitions -------------------------------------------------
    @property
    def rejected(self) -> bool:
        return self.status == Status.rejected.value

    def reject(self, reason: Reason | str, message: str, stage: str) -> "VideoTask":
        """Mark rejected; the first rejection wins and later stages skip the task."""
        if not self.rejected:
            self.status = Status.rejected.value
            self.reject_reason = Reason(reason).value
            self.reject_stage = stage
            self.reject_message = (message or "")[:2000]
        self.frames = []
        return self

    def accept(self) -> "VideoTask":
        if not self.rejected:
            self.status = Status.accepted.value
        return self


# Transient fields are not part of the written `videos` row.
TRANSIENT_FIELDS = ("frames", "extra", "url")
# Fields the store adds at commit time.
PROVENANCE_FIELDS = ("config_hash", "pipeline_fingerprint", "run_id", "processed_at")


def video_row(task: VideoTask) -> dict[str, Any]:
    """The `videos` row for a finished task; the store adds the provenance fields."""
    row = asdict(task)
    for name in TRANSIENT_FIELDS:
        row.pop(name, None)
    if row["status"] == Status.pending.value:  # every stage ran and none rejected it
        row["status"] = Status.accepted.value
    row["num_scenes"] = len(row["scenes"])
    return row
