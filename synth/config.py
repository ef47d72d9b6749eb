"""Typed configuration of synthesis (section `synth` of a job YAML)."""
from __future__ import annotations

from pydantic import Field

from pipeline.acquire.config import Section
from synth.backends.config import BackendConfig


class CaptionConfig(Section):
    """Window captions from frames, summarised hierarchically into a whole-video description."""

    window_s: float = Field(30.0, gt=0, description="longest window captioned in one request; longer scenes are split")
    max_frames_per_window: int = Field(8, ge=1, description="frames sent with one caption request (evenly spread)")
    group_size: int = Field(8, ge=2, description="captions summarised together per level of the hierarchy")
    max_tokens: int = Field(256, ge=16, description="output budget of one caption")
    describe_max_tokens: int = Field(768, ge=32, description="output budget of the whole-video description")
    use_subtitles: bool = Field(True, description="put subtitle lines of a window into its caption prompt")


class QAConfig(Section):
    """QA writing from the timestamped captions (text-only) and composed verifiable items."""

    items_per_video: int = Field(12, ge=0, description="questions asked of the teacher per video")
    max_tokens: int = Field(2048, ge=64, description="output budget of the QA-writing request")
    temperature: float = Field(0.7, ge=0, le=2, description="sampling temperature for QA writing")
    dedupe_threshold: float = Field(0.8, gt=0, le=1, description="word-set Jaccard at which two questions are duplicates")
    composed_grounding: int = Field(4, ge=0, description="max grounding items per video built from measured scenes")
    composed_order: int = Field(2, ge=0, description="max time-order items per video built from measured scenes")
    min_caption_words: int = Field(4, ge=1, description="captions shorter than this are not used for composed items")


class SynthConfig(Section):
    """The teacher and what it writes. With no teacher the synthesis stage is skipped."""

    teacher: BackendConfig | None = Field(None, description="the teacher model backend; None skips synthesis")
    caption: CaptionConfig = Field(default_factory=CaptionConfig)
    qa: QAConfig = Field(default_factory=QAConfig)
    system_prompt: str | None = Field(None, description="system message for every teacher request")
    videos_per_batch: int = Field(2, ge=1, description="videos whose requests are sent together (keeps the backend busy)")
    replicas: int = Field(2, ge=1, description="max stage replicas (actors); each holds one backend")
