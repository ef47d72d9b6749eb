"""Typed configuration of synthesis (section `synth` of a job YAML)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipeline.section import Section
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
    max_tokens: int = Field(16384, ge=64, description="ceiling of the QA-writing reply: the request asks for "
                            "items_per_video x the per-item bound of its JSON schema (synth/replies.py), its strings' "
                            "bounds shrunk to fit this")
    temperature: float = Field(0.7, ge=0, le=2, description="sampling temperature for QA writing")
    dedupe_threshold: float = Field(0.8, gt=0, le=1, description="word-set Jaccard at which two questions are duplicates")
    composed_grounding: int = Field(4, ge=0, description="max grounding items per video built from measured scenes")
    composed_order: int = Field(2, ge=0, description="max time-order items per video built from measured scenes")
    min_caption_words: int = Field(4, ge=1, description="captions shorter than this are not used for composed items")


class SynthConfig(Section):
    """The teacher and what it writes. With no teacher the synthesis stage is skipped."""

    execution_only = frozenset({"videos_per_batch", "replicas", "execution", "wave_videos"})
    keyed_apart = frozenset({"prompts"})  # the stage keys the resolved prompt versions

    teacher: BackendConfig | None = Field(None, description="the teacher model backend; None skips synthesis")
    caption: CaptionConfig = Field(default_factory=CaptionConfig)
    qa: QAConfig = Field(default_factory=QAConfig)
    system_prompt: str | None = Field(None, description="system message for every teacher request")
    prompts: dict[str, int] = Field(default_factory=dict, description="pin prompt versions (synth/prompts/<name>.v<N>.txt), "
                                    "e.g. {write_qa: 1}; unpinned prompts use their newest version")
    videos_per_batch: int = Field(2, ge=1, description="videos whose requests are sent together (keeps the backend busy)")
    replicas: int = Field(2, ge=1, description="max stage replicas (actors); each holds one backend")
    execution: Literal["auto", "actors", "passes"] = Field(
        "auto", description="where the model rounds (synthesis and verification) run. actors: each stage replica "
        "holds its backends and runs all rounds of its batch; passes: per wave of videos, each round is one Ray "
        "Data pass (ray.data.llm engines for kind=vllm). auto: passes if any backend is vllm, else actors")
    wave_videos: int = Field(128, ge=1, description="passes: videos segmented and held (with their frames) per wave; "
                             "larger waves start engines less often, smaller ones lose less on a crash")

    @model_validator(mode="after")
    def _prompts_exist(self) -> "SynthConfig":
        from synth.prompting import PromptSet

        PromptSet.of(self.prompts)
        return self

    def execution_mode(self, verifier: BackendConfig | None) -> str:
        """'actors' or 'passes' for this teacher and verifier; an engine kind (vllm) needs passes."""
        engines = sorted({b.kind for b in (self.teacher, verifier) if b is not None and b.needs_passes()})
        if self.execution == "actors" and engines:
            raise ValueError(f"synth.execution=actors: kind={engines[0]} backends run only as Ray Data passes "
                             "(synth.execution=passes or auto)")
        if self.execution == "auto":
            return "passes" if engines else "actors"
        return self.execution


class VerifyPolicy(Section):
    """What each output config keeps, from the verifier's scores (see README: decisions)."""

    pass_iou: float = Field(0.5, ge=0, le=1, description="grounding: a sample passes at temporal IoU >= this")
    pass_judge: float = Field(0.6, ge=0, le=1, description="open-ended: a sample passes at judge score >= this")
    agree_rate: float = Field(0.5, ge=0, le=1, description="the verifier agrees when its pass rate over k samples is >= this")
    reject_blind_answerable: bool = Field(True, description="reject items the verifier answers right without the video")
    rl_min_pass_rate: float = Field(0.1, ge=0, le=1, description="RL keeps items with pass rate >= this (drop impossible)")
    rl_max_pass_rate: float = Field(0.9, ge=0, le=1, description="RL keeps items with pass rate <= this (drop trivially easy)")
    distill_max_score: float = Field(0.5, ge=0, le=1, description="distill keeps items whose mean verifier score is below this")


class VerifyConfig(Section):
    """Cross-verification by the in-training model. None verifier: items are written unverified."""

    execution_only = frozenset({"replicas", "videos_per_batch"})
    keyed_apart = frozenset({"prompts"})  # the stage keys the resolved prompt versions

    verifier: BackendConfig | None = Field(None, description="the verifier backend (the M2LA checkpoint: transformers + trust_remote_code)")
    samples: int = Field(4, ge=1, description="k: answers sampled per question, for the pass rate")
    temperature: float = Field(0.7, ge=0, le=2, description="sampling temperature of the k answers")
    max_frames: int = Field(32, ge=1, description="frames of the video shown with each question (evenly spread)")
    max_tokens: int = Field(256, ge=8, description="output budget of one verifier answer")
    blind_pass: bool = Field(True, description="also ask without the video, to flag text-answerable questions")
    judge: str = Field("auto", description="open-ended scoring: teacher | embedding | token_f1 | auto (teacher if configured)")
    embedding_model: str | None = Field(None, description="local path of a text-embedding model (judge=embedding)")
    reconfirm_with_teacher: bool = Field(True, description="on disagreement, ask the teacher to re-confirm its answer")
    policy: VerifyPolicy = Field(default_factory=VerifyPolicy)
    prompts: dict[str, int] = Field(default_factory=dict, description="pin the judge / re-confirmation prompt "
                                    "versions, e.g. {judge_answer: 1}")
    replicas: int = Field(1, ge=1, description="max verifier replicas (actors); each loads the model once")
    videos_per_batch: int = Field(2, ge=1, description="videos whose questions are sent together")

    @model_validator(mode="after")
    def _prompts_exist(self) -> "VerifyConfig":
        from synth.prompting import PromptSet

        PromptSet.of(self.prompts)
        return self

    @model_validator(mode="after")
    def _rl_band_reachable(self) -> "VerifyConfig":
        """With k samples a pass rate is one of 0, 1/k, ..., 1: a band that holds none of them
        would silently leave the RL config empty."""
        p, k = self.policy, self.samples
        if p.rl_min_pass_rate > p.rl_max_pass_rate:
            raise ValueError(f"verify.policy.rl_min_pass_rate ({p.rl_min_pass_rate}) exceeds "
                             f"verify.policy.rl_max_pass_rate ({p.rl_max_pass_rate})")
        rates = [i / k for i in range(k + 1)]
        if not any(p.rl_min_pass_rate <= r <= p.rl_max_pass_rate for r in rates):
            shown = ", ".join(f"{i}/{k}" for i in range(k + 1))
            raise ValueError(f"verify.policy.rl_min_pass_rate..rl_max_pass_rate ({p.rl_min_pass_rate}.."
                             f"{p.rl_max_pass_rate}) admits none of the pass rates verify.samples={k} answers can "
                             f"give ({shown}): widen the band or raise verify.samples")
        return self

    def judge_kind(self, has_teacher: bool) -> str:
        if self.judge == "auto":
            return "teacher" if has_teacher else "token_f1"
        if self.judge not in ("teacher", "embedding", "token_f1"):
            raise ValueError(f"verify.judge must be teacher, embedding, token_f1 or auto, not {self.judge!r}")
        return self.judge
