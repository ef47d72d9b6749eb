"""How frames reach a vision-language model, and how many visual tokens that costs.

Qwen2.5-VL and Qwen3-VL (the teacher family and the M2LA verifier's backbone) were trained
on video input: given the frames as one video they merge two frames per temporal patch,
half the visual tokens of the same frames as separate images, and stay on their training
distribution (InternVideo3 samples at fps 4 and trains with `video_url`). Other models
keep separate images. Counting follows each model's own processor:

- Qwen2.5-VL: patch 14, merge 2 (28 px per token), per-frame pixel bounds; images
  H'W'/28^2 each, video ceil(N/2) * H'W'/28^2 (an odd last frame is repeated);
- Qwen3-VL: patch 16, merge 2 (32 px per token); a video's pixel budget is for the whole
  clip (transformers' own `smart_resize` of video_processing_qwen3_vl, imported when it is
  there); images H'W'/32^2 each, video ceil(N/2) * H'W'/32^2.
The counts exclude the few text tokens of timestamps and wrappers.
"""
from __future__ import annotations

import math
import re
from typing import Literal, Sequence

Family = Literal["qwen2_5_vl", "qwen3_vl", "other"]

_QWEN3 = re.compile(r"qwen3[-_.]?vl|m2la", re.IGNORECASE)
_QWEN25 = re.compile(r"qwen2(?:\.5)?[-_.]?vl", re.IGNORECASE)
# the processors' shipped pixel bounds
_QWEN25_IMAGE = (56 * 56, 28 * 28 * 1280)
_QWEN25_VIDEO = (128 * 28 * 28, 768 * 28 * 28)  # per frame
_QWEN3_IMAGE = (65536, 16777216)
_QWEN3_VIDEO = (4096, 25165824)  # for the whole clip


def family_of(model: str, declared: str = "auto") -> Family:
    """The model family from the config (`model_family`) or, on auto, the model's name."""
    if declared != "auto":
        return declared  # type: ignore[return-value]
    if _QWEN3.search(model or ""):
        return "qwen3_vl"
    if _QWEN25.search(model or ""):
        return "qwen2_5_vl"
    return "other"


def video_input(model: str, declared_family: str = "auto", setting: str = "auto") -> bool:
    """Whether frames go to this model as one video: `video_input` auto = Qwen-VL families."""
    if setting != "auto":
        return setting == "video"
    return family_of(model, declared_family) in ("qwen2_5_vl", "qwen3_vl")


def _smart_resize(h: int, w: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    from pipeline.segment.sample import smart_resize

    return smart_resize(h, w, factor, min_pixels, max_pixels)


def _qwen3_video_size(n: int, h: int, w: int) -> tuple[int, int]:
    try:  # the model's own function (its module imports without torchvision)
        from transformers.models.qwen3_vl.video_processing_qwen3_vl import smart_resize as qwen3_resize

        return qwen3_resize(max(n, 2), h, w, temporal_factor=2, factor=32, min_pixels=_QWEN3_VIDEO[0],
                            max_pixels=_QWEN3_VIDEO[1])
    except ImportError:  # pragma: no cover - same formula, the clip's frames share the budget
        beta = math.sqrt(max(n, 2) * h * w / _QWEN3_VIDEO[1]) if max(n, 2) * h * w > _QWEN3_VIDEO[1] else 1.0
        return _smart_resize(int(h / beta), int(w / beta), 32, 1, 10 ** 12)


def visual_tokens(sizes: Sequence[tuple[int, int]], family: Family, as_video: bool) -> int:
    """Visual tokens of frames of (width, height) `sizes`, as the family's processor counts them;
    0 when the family's counting is not known here (the backend's own count is used then)."""
    if not sizes or family == "other":
        return 0
    if as_video and len(sizes) >= 2:
        w, h = sizes[0]
        if family == "qwen3_vl":
            hh, ww = _qwen3_video_size(len(sizes), h, w)
            per = (hh // 32) * (ww // 32)
        else:
            hh, ww = _smart_resize(h, w, 28, *_QWEN25_VIDEO)
            per = (hh // 28) * (ww // 28)
        return math.ceil(len(sizes) / 2) * per
    factor, bounds = (32, _QWEN3_IMAGE) if family == "qwen3_vl" else (28, _QWEN25_IMAGE)
    total = 0
    for w, h in sizes:
        hh, ww = _smart_resize(h, w, factor, *bounds)
        total += (hh // factor) * (ww // factor)
    return total
