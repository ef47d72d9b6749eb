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
    media_missing = "media_missing"  # the local file is not on this node (transient: retried)
    storage_error = "storage_error"  # the shared store could not be written (transient: retried)
    model_error = "model_error"  # a model request got no usable answer after its retries (transient)
    # pipeline
    stage_error = "stage_error"
    schema_invalid = "schema_invalid"
    no_qa = "no_qa"


# Causes outside the video itself: a rejected row with one of these is retried by the next run.
TRANSIENT_REASONS = frozenset({Reason.rate_limited, Reason.network, Reason.bot_check, Reason.stage_error,
                               Reason.media_missing, Reason.storage_error, Reason.model_error})


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
    """One sampled frame for the models: encoded image bytes, never a decoded array.

    The one frame type of the project: segmentation makes them, requests carry them, every
    backend reads them. `image` is empty while the bytes wait in a frame store (passes:
    `VideoTask.frames_key` names it and `index` is the frame's place in the video's list).
    """

    timestamp_s: float
    image: bytes  # JPEG/PNG bytes
    width: int = 0
    height: int = 0
    scene_index: int = -1
    mime: str = "image/jpeg"
    index: int = -1  # position among the video's sampled frames
    digest: str = ""  # of the image bytes: what a request's cache key names (stable across runs)


@dataclass
class Cue:
    """One subtitle line, read where the subtitle file was downloaded (it travels as text)."""

    start_s: float
    end_s: float
    text: str


@dataclass
class Caption:
    """The teacher's caption of one window (a scene, or part of a long one)."""

    start_s: float
    end_s: float
    text: str


@dataclass(slots=True)
class Cost:
    """What the model requests of one video cost (teacher or verifier): counted per request."""

    requests: int = 0
    failed_requests: int = 0
    cached_requests: int = 0  # served from results already paid for: not sent, not counted again
    prompt_tokens: int = 0
    visual_tokens: int = 0  # in the prompts, as the model counts them (frames as images or as video)
    visual_prefill_tokens: int = 0  # of those, the ones the model computed (not served from a prefix cache)
    cached_prompt_tokens: int = 0  # prompt tokens served from the model's prefix cache
    output_tokens: int = 0

    def add(self, other: "Cost") -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class Verification:
    """The in-training model's cross-check of one item (mirrors `verification` in schemas/sft.json)."""

    verifier: str
    answers: list[str]  # the k sampled answers
    score: float  # mean score of the answers
    pass_rate: float
    k: int
    blind_answer: str | None  # the answer given without the video
    blind_answerable: bool
    teacher_reconfirmed: bool | None
    decision: str  # keep | hard | reject
    reason: str


@dataclass
class QAItem:
    """One synthesized item; `verifiable` items have answers from measured structure (RL-ready)."""

    category: str
    qa_type: str
    format: str  # open_ended | multiple_choice | grounding | description
    question: str
    answer: str
    evidence_start_s: float
    evidence_end_s: float
    options: list[str] = field(default_factory=list)
    source: str = "teacher"  # teacher | composed
    verifiable: bool = False
    query: str | None = None  # grounding: the time-free description of the moment
    prompt_version: str = ""
    index: int = 0
    verification: Verification | None = None  # set by the verify stage

    @property
    def answer_letter(self) -> str | None:
        if self.format != "multiple_choice":
            return None
        return "ABCD"[self.options.index(self.answer)]


@dataclass
class RejectedItem:
    """An item the checks or the verification refused, with its reason and what it was."""

    reason: str
    message: str
    raw: Any


@dataclass
class Synthesis:
    """What the teacher wrote for one video: its items and the items it refused."""

    teacher: str
    system_prompt: str | None = None
    items: list[QAItem] = field(default_factory=list)
    rejected: list[RejectedItem] = field(default_factory=list)


@dataclass
class HashTrack:
    """The dense perceptual-hash sequence of a video (times in s, 64-bit hashes): what the
    near-duplicate check matches with. Made by segmentation, used by dedupe, never written."""

    times: Any  # numpy float array
    hashes: Any  # numpy uint64 array


@dataclass
class StageTiming:
    stage: str
    seconds: float


@dataclass(slots=True)
class VideoTask:
    """Everything known about one input while it moves through the pipeline.

    Slotted: run start and `curate plan` hold one per input (379K at the recipe's scale), and a
    slotted task is ~1.2 KB where one with an attribute dict was ~2.7 KB.

    Fields that end up in the `videos` config are named exactly as in
    schemas/videos.json; transient fields (TRANSIENT_FIELDS) are never written.
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
    fetch_identity: str | None = None  # the egress identity (proxy / cookie account) that fetched it
    subtitle_errors: list[str] = field(default_factory=list)  # "lang: why" for subtitles not saved
    # the verified media file
    video_path: str | None = None
    file_size: int | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    frame_count: int | None = None
    codec: str | None = None
    rotation: int | None = None
    decode_errors: int | None = None  # packets that failed to decode + frames decoded damaged (segment)
    lost_frames: int | None = None  # packets whose frame the decode never returned (segment)
    # where the media lives: the node-local cache path above, and the shared copy
    media_node: str | None = None  # the node whose disk holds video_path
    media_store: str | None = None  # fetch.storage_url of the shared copy (None: node-local only)
    media_uri: str | None = None  # the shared copy of the video (media_store/<id[:2]>/<file>)
    sidecar_uris: list[str] = field(default_factory=list)  # shared copies of subtitles and info JSON
    # segmentation
    scenes: list[Scene] = field(default_factory=list)
    signals: ContentSignals | None = None
    captions: list[Caption] = field(default_factory=list)  # the teacher's window captions (synthesis)
    stage_timings: list[StageTiming] = field(default_factory=list)
    # transient: travels between stages, never written to `videos`
    frames: list[Frame] = field(default_factory=list)
    frames_key: str | None = None  # frames held by a frame store (passes), not in `frames[].image`
    subtitles: list[Cue] = field(default_factory=list)
    hash_track: HashTrack | None = None  # for the near-duplicate check (dedupe), never written
    synthesis: Synthesis | None = None  # the teacher's items (synthesize), verified in place (verify)
    cost: Cost = field(default_factory=Cost)  # the teacher's requests (synthesis, judge, re-confirmation)
    verify_cost: Cost = field(default_factory=Cost)  # the verifier's requests

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
TRANSIENT_FIELDS = ("frames", "frames_key", "subtitles", "hash_track", "synthesis", "cost", "verify_cost", "url")
# Fields the store adds at commit time.
PROVENANCE_FIELDS = ("stage_keys", "config_hash", "pipeline_fingerprint", "run_id", "processed_at")


def video_row(task: VideoTask) -> dict[str, Any]:
    """The `videos` row for a finished task; the store adds the provenance fields."""
    row = asdict(task)
    for name in TRANSIENT_FIELDS:
        row.pop(name, None)
    if row["status"] == Status.pending.value:  # every stage ran and none rejected it
        row["status"] = Status.accepted.value
    row["num_scenes"] = len(row["scenes"])
    return row
