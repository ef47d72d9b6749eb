"""Typed configuration of segmentation, frame sampling and selection."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipeline.section import Section


class SegmentConfig(Section):
    """Scene detection and frame sampling, done in one decoding pass."""

    # the decoder's threading changes the cost, never the frames or the cuts (bench/segment.py);
    # nor do TransNetV2's device, batching, threads and GPU share (same predictions within 1e-4)
    execution_only = frozenset({"decoder_threads", "thread_type", "transnet_device", "transnet_gpus", "transnet_batch",
                                "transnet_threads"})

    # detection
    detector: Literal["confirmed", "transnetv2", "content", "adaptive", "histogram", "hash"] = Field(
        "confirmed", description="confirmed (default): a change must persist on both sides of a "
        "boundary, on picture and colour-histogram distances of tiny thumbnails (cuts.py); on "
        "realistic 360p encodes at 600-1200 kb/s it scores P 1.00 R 1.00 within 0.5 s where "
        "PySceneDetect's ContentDetector scores P ~0.8 R ~0.9 (bench/segment.py --accuracy). "
        "content | adaptive | histogram | hash: PySceneDetect compatibility mode, which reproduces "
        "PySceneDetect's own cuts (its goldens) exactly; the analysis_*, refine_margin and fast "
        "options apply to it only. transnetv2: the TransNetV2 network (extra `transnetv2`) on 48x27 "
        "frames of the same decode, on a GPU (transnet_device), for the media workers of GPU nodes")
    threshold: float | None = Field(
        None, description="PySceneDetect detector threshold (None: the detector's default; adaptive: "
        "adaptive_threshold)")
    cut_threshold: float = Field(
        3.0, gt=0, description="confirmed detector: step score a hard cut must reach (picture "
        "distance margin / 4 + histogram distance margin). Measured on realistic encodes: true "
        "cuts >= 7, pans, shakes, flashes and encoder pulses <= 2")
    gradual_threshold: float = Field(
        12.0, gt=0, description="confirmed detector: step score of a fade or dissolve over "
        "gradual_s on each side (true 1 s transitions scored 19-80, motion <= 10)")
    confirm_s: float = Field(
        0.17, gt=0, description="confirmed detector: a cut is checked against frames this far on "
        "both sides (5 frames at 30 fps): flashes and pulses shorter than this are not cuts")
    gradual_s: float = Field(
        0.67, gt=0, description="confirmed detector: half-span of the gradual-transition test; "
        "fades and dissolves up to ~2x this long are found, centred")
    transnet_threshold: float = Field(
        0.5, gt=0, lt=1, description="transnetv2: single-frame prediction above which a frame is a "
        "transition (the wheel's default)")
    transnet_device: Literal["cuda", "cpu"] = Field(
        "cuda", description="transnetv2: where the network runs. cuda: each media worker asks Ray for "
        "transnet_gpus of a GPU, and a run on a cluster without GPUs stops before any work. cpu: "
        "accept the cost, ~1 s of CPU per second of 30 fps video on 2 threads")
    transnet_gpus: float = Field(
        0.25, gt=0, le=1, description="transnetv2 on cuda: GPU share per media worker (the model needs "
        "well under 1 GiB; decoding stays on the worker's CPU)")
    transnet_batch: int = Field(
        16, ge=1, description="transnetv2: 100-frame windows per forward pass")
    transnet_threads: int = Field(
        0, ge=0, description="transnetv2 on cpu: torch threads (0 = torch's default)")
    min_scene_len: int = Field(15, ge=1, description="minimum scene length in frames, as PySceneDetect")
    analysis_width: int | None = Field(
        None, ge=16, description="analysis width in px; None = PySceneDetect's auto downscale "
        "(width/256 factor), which reproduces its goldens bit-for-bit. Smaller is cheaper but "
        "decides differently: 128 on 640x360 took ~30% less CPU on cheap-to-decode video and "
        "added one false cut in 41 on grainy footage (bench/segment.py)")
    analysis_downscale: int | None = Field(
        None, ge=1, description="fixed integer downscale factor (video2dataset uses width//64); "
        "overrides analysis_width")
    analysis_method: Literal["auto", "planes", "exact"] = Field(
        "auto", description="how the analysis image is made. exact: full-size BGR + cv2.resize "
        "INTER_LINEAR, PySceneDetect's own path (slow: converts every full-size pixel). planes: "
        "cv2.resize INTER_LINEAR of the raw Y/U/V planes to the analysis size, then a tiny I420->BGR "
        "conversion, with near-threshold scores re-scored on exact pixels (refine_margin). auto: "
        "planes, except exact for non-content detectors (or refine_margin 0) when the downscale "
        "is an odd integer (PySceneDetect's 1280-wide goldens). Non-yuv420p input always uses "
        "exact")
    refine_margin: float = Field(
        8.0, ge=0, description="content/adaptive detectors with an approximate analysis image "
        "(planes): a frame whose content score reaches threshold - refine_margin (adaptive: "
        "min_content_val - refine_margin) is re-scored on exact pixels, so decisions near the "
        "threshold are PySceneDetect's own (planes differs from exact by up to ~4.5 points on "
        "grainy 640x360 footage). 0 = off")
    fast: bool = Field(
        False, description="fast path: frames whose raw-plane difference to the previous frame is "
        "below fast_gate skip colour conversion and reuse the last analysis image")
    fast_gate: float = Field(
        0.5, ge=0, description="fast path: mean abs Y/U/V difference (0-255, on 1/8-res planes) "
        "below which a frame counts as unchanged")
    fast_max_gap: int = Field(
        4, ge=1, description="fast path: analyse at least every Nth frame so slow drift is never "
        "summed into one spurious jump")
    # content signals (signals.py): measured in the same decode
    signals: bool = Field(
        True, description="measure content signals (motion, stillness, black/blank frames, bars, "
        "text-screen score, per-scene keyframe pHash, video signature) for the filters, the "
        "near-duplicate index and decontamination")
    hash_interval_s: float = Field(
        0.25, gt=0, description="pHash grid: one luma hash every this many seconds (the dense "
        "sequence that copies are matched against; per-scene hashes and the signature come from it)")
    text_interval_s: float = Field(
        1.0, gt=0, description="text-screen score of one frame every this many seconds")
    signature_points: int = Field(
        48, ge=4, le=512, description="hashed moments in the video-level signature (videos.signals.signature)")
    # decoding
    decoder_threads: int = Field(0, ge=0, description="FFmpeg decoder threads (0 = auto)")
    thread_type: Literal["AUTO", "FRAME", "SLICE", "NONE"] = Field(
        "NONE", description="PyAV codec thread_type. NONE (default) decodes on the calling "
        "thread: the stage is budgeted one CPU per video and runs many videos side by side, and "
        "frame threads cost CPU to hand frames over (bench/segment.py, 640x360-720p: the stage "
        "takes ~10-35% less CPU with NONE, identical frames and cuts). AUTO (frame threads) "
        "overlaps decoding with the analysis: up to ~1.4x less wall time for one video, for "
        "that extra CPU")
    max_decode_error_ratio: float = Field(
        0.01, ge=0, le=1, description="reject with decode_error when the packets that fail to decode "
        "plus the frames the decoder flags as damaged exceed this fraction of the video's packets "
        "(the counts are on every videos row: decode_errors, lost_frames)")
    # sampling
    sample_fps: float = Field(1.0, gt=0, description="frames per second kept for the models")
    max_frames: int = Field(
        512, ge=1, description="at most this many frames per video; longer videos are sampled "
        "uniformly at a lower rate")
    min_pixels: int = Field(16 * 28 * 28, ge=28 * 28, description="Qwen-VL smart_resize lower pixel bound")
    max_pixels: int = Field(256 * 28 * 28, ge=28 * 28, description="Qwen-VL smart_resize upper pixel bound")
    size_factor: int = Field(28, ge=1, description="sampled frame sides are multiples of this")
    jpeg_quality: int = Field(90, ge=1, le=100, description="JPEG quality of sampled frames")
    # scene post-processing
    min_scene_s: float = Field(
        0.0, ge=0, description="merge scenes shorter than this into a neighbour (0 = off)")
    max_scene_s: float | None = Field(
        None, gt=0, description="split scenes longer than this into equal windows (None = off)")
    mark_gradual: bool = Field(True, description="label cuts that ramp over several frames 'gradual'")
    gradual_window: int = Field(8, ge=2, description="frames before a cut inspected for a ramp")
    gradual_min_frames: int = Field(
        4, ge=1, description="frames in the window with a luma change >= gradual_diff to call it gradual")
    gradual_diff: float = Field(2.0, ge=0, description="per-frame mean luma change (0-255) counted as ramping")

    @model_validator(mode="after")
    def _pixels(self) -> "SegmentConfig":
        if self.min_pixels > self.max_pixels:
            raise ValueError("min_pixels must not exceed max_pixels")
        return self


class SelectConfig(Section):
    """Video- and scene-level duration bounds."""

    min_duration_s: float = Field(60.0, ge=0, description="reject videos shorter than this (too_short)")
    max_duration_s: float = Field(3600.0, gt=0, description="reject videos longer than this (too_long)")
    max_scenes: int = Field(256, ge=1, description="maximum scenes per video")
    max_scenes_action: Literal["truncate", "reject"] = Field(
        "truncate", description="over max_scenes: keep max_scenes evenly spread scenes, or reject the video with reason too_long")
    scene_min_s: float = Field(0.0, ge=0, description="drop scenes shorter than this")
    scene_max_s: float | None = Field(None, gt=0, description="drop scenes longer than this (None = no bound)")
    min_scenes: int = Field(1, ge=0, description="reject with too_few_scenes when fewer scenes remain")
