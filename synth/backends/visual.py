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
`visual_tokens` counts the frames' own tokens. What a vLLM server reports (`multimodal_tokens`)
is the model's whole placeholder: for Qwen3-VL each two-frame patch is its rendered time
`<12.3 seconds>` (tokenized alone), <|vision_start|>, the frames' tokens and <|vision_end|>;
Qwen2.5-VL's is the frames' tokens alone. `server_visual_tokens` counts that exactly, given the
model's tokenizer's length of a text (a vLLM server's own /tokenize), so a server that drops even
one patch of tiny frames is caught.
"""
from __future__ import annotations

import math
import re
from typing import Callable, Literal, Sequence

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


def patch_times(times_s: Sequence[float]) -> list[float]:
    """The time Qwen3-VL renders for each two-frame patch: the mean of its frames' times (an odd
    last frame repeated), as vLLM's and transformers' Qwen3-VL processors compute it."""
    ts = list(times_s) + ([times_s[-1]] if len(times_s) % 2 else [])
    return [(ts[i] + ts[i + 1]) / 2 for i in range(0, len(ts), 2)]


def patch_wrappers(times_s: Sequence[float], family: Family) -> list[str]:
    """The text each video patch is wrapped in by `family`'s placeholder (tokenized alone)."""
    return [f"<{t:.1f} seconds>" for t in patch_times(times_s)] if family == "qwen3_vl" and times_s else []


WRAPPER_SPECIAL_TOKENS = 2  # <|vision_start|> and <|vision_end|> around each Qwen3-VL patch


def server_visual_tokens(sizes: Sequence[tuple[int, int]], family: Family, as_video: bool,
                         times_s: Sequence[float], text_tokens: Callable[[str], int]) -> int:
    """The visual tokens a vLLM server reports for these frames (its `multimodal_tokens`): the
    frames' tokens plus, for a Qwen3-VL video, each patch's wrapper. `times_s` are the times the
    server reads the frames at (their real times when the request carries them, else 0, 1, 2 ...
    s: vLLM reads a frame list at 1 fps); `text_tokens` is the model's token count of a text."""
    base = visual_tokens(sizes, family, as_video)
    if not (base and as_video and len(sizes) >= 2):
        return base
    return base + sum(text_tokens(w) + WRAPPER_SPECIAL_TOKENS for w in patch_wrappers(times_s, family))
