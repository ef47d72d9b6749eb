"""Typed configuration of the content filters, de-duplication and decontamination."""
from __future__ import annotations

from pydantic import Field

from pipeline.section import Section


class FilterConfig(Section):
    """Reject videos by the content signals of the decode; each filter has its own reason.

    Permissive by default: two very loose bounds that only catch degenerate uploads (a still
    picture for the whole video, a black or blank screen), the rest off. Measured distributions
    (bench/signals.py, README "Content signals"): natural footage static_share 0-0.05, motion
    2-15, blank_share 0-0.03, text_score 0.05-0.15; slides text_score 0.9-1.0 and static_share
    0.9+; a still-image video static_share 1.0; 4:3 in 16:9 pillarbox 0.25; 2.39:1 in 16:9
    letterbox 0.25."""

    static_video: float | None = Field(
        0.99, ge=0, le=1, description="reject (static_video) when at least this share of the frames "
        "is still (signals.static_share); None = off")
    low_motion: float | None = Field(
        None, ge=0, description="reject (low_motion) when the mean frame-to-frame change "
        "(signals.motion, 0-255, cuts excluded) is below this; natural footage measured 2-15, "
        "a slideshow 0.1-0.5; None = off")
    mostly_black: float | None = Field(
        0.95, ge=0, le=1, description="reject (mostly_black) when at least this share of the "
        "frames is black or blank (signals.blank_share); None = off")
    slideshow: float | None = Field(
        None, ge=0, le=1, description="reject (slideshow) when the text-screen score "
        "(signals.text_score) reaches this; slides measured 0.88-1.0, cartoons ~0.5, captioned "
        "vlogs 0.2-0.45, footage 0.05-0.15; 0.7 separates them; None = off")
    letterboxed: float | None = Field(
        None, ge=0, le=1, description="reject (letterboxed) when black bars (signals.letterbox "
        "and pillarbox) cover at least this share of the frame area; None = off")


class MatchConfig(Section):
    """When two signatures are the same video (pipeline/filter/fingerprint.py)."""

    max_hamming: int = Field(
        10, ge=0, le=32, description="pHash bits (of 64) two moments may differ by and still match; "
        "re-encodes and rescales measured 0-6, different pictures ~32")
    min_points: int = Field(4, ge=1, description="at least this many signature points must match")
    min_matched: float = Field(
        0.6, gt=0, le=1, description="share of the reference's signature points inside the "
        "overlap that must match at one time offset")
    min_overlap: float = Field(
        0.5, gt=0, le=1, description="the aligned overlap must cover this share of the shorter video")


class DedupeConfig(Section):
    """Near-duplicate videos across the whole dataset (re-uploads, re-encodes, rescales, trims)."""

    enabled: bool = Field(
        True, description="reject (near_duplicate) a video whose signature matches one already "
        "accepted in this dataset (earlier runs) or claimed earlier in this run; the message "
        "names that video's ID")
    match: MatchConfig = Field(default_factory=MatchConfig)


class DecontaminateConfig(Section):
    """Keep evaluation-set videos out of the training data."""

    ids_files: list[str] = Field(
        default_factory=list, description="files of benchmark video IDs or URLs (txt / csv / jsonl / "
        "parquet, as input.path); those inputs are rejected (benchmark_overlap) before download")
    ids_column: str = Field("video_id", description="column holding the ID in csv / jsonl / parquet ids_files")
    fingerprint_files: list[str] = Field(
        default_factory=list, description="fingerprint files of benchmark videos written by "
        "`curate fingerprint DIR`; a decoded video that matches one is rejected (benchmark_overlap)")
    match: MatchConfig = Field(
        default_factory=lambda: MatchConfig(min_overlap=0.5),
        description="matching against the benchmark fingerprints; min_overlap is a share of the "
        "shorter of the two (a benchmark clip taken from a long upload still matches)")
