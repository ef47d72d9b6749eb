"""Token budgets counted the trainers' way, and the per-sample settings that keep every sample under a cap.

Two counters, each written here from the consumer's own code (read, not imported: neither is a
dependency of this project):

- `XtunerSettings` / `count_xtuner`: InternVideo3's xtuner SFT fork (OpenGVLab/InternVideo,
  `InternVideoTokenizeFunction.calc_num_tokens_video_get_item`): frames = `sample_frames` at the
  dataset's fps between video_min_frames and video_max_frames (and never more than the file has),
  padded to an even count; each pair of frames is one temporal patch; the frame size is
  `video_smart_resize` (rounded to 28 = patch 14 x merge 2, shrunk when frames x H x W exceeds
  video_max_total_pixels); video tokens = patches x (H/28) x (W/28). Around the video the fork
  writes "Video 1: " and, per temporal patch, `<t seconds><|vision_start|>...<|vision_end|>`, then
  wraps the turns in its `internvideo` chat template. A sample longer than `max_length` is
  truncated and, when that cuts video tokens, discarded ("Discard this data"); both are failures.
  The fork reads its settings per dataset from the meta JSON (`fps`, `video_max_frames`,
  `video_max_total_pixels`, ...), so that is the form a budget takes there.
- `QwenVideoSettings` / `count_qwen`: qwen-vl-utils `fetch_video` (what verl's RLHFDataset,
  ms-swift and the Qwen fine-tuning scripts call): frames = fps x duration between min_frames and
  max_frames, floored to an even count; each frame resized by `smart_resize` under
  max_pixels = min(max_pixels, total_pixels / frames x 2); tokens = frames / 2 x (H/f) x (W/f),
  f = patch x 2 (28 for Qwen2.5-VL, 32 for Qwen3-VL). These settings travel in each video entry.

Text tokens: with a tokenizer (`HFTextCounter`) they are exact; without one `ByteBound` counts
UTF-8 bytes, an upper bound for any byte-level BPE tokenizer (every token is at least one byte),
so a budget made with it never lets a sample over the cap.
"""
from __future__ import annotations

import math
import re
from array import array
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, Iterable, Iterator, Protocol

# the fork's `internvideo` template (xtuner/v1/data_proto/templates)
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
VISION_START, VISION_END, VIDEO_PAD = "<|vision_start|>", "<|vision_end|>", "<|video_pad|>"
SPECIAL = (IM_START, IM_END, VISION_START, VISION_END, VIDEO_PAD)
VIDEO_CONTEXT = "<VIDEO_CONTEXT>"
_SPECIAL_RE = re.compile("|".join(re.escape(s) for s in SPECIAL))


class TextCounter(Protocol):
    def __call__(self, text: str) -> int: ...


class ByteBound:
    """UTF-8 bytes of the text, special tokens counted as one each: never fewer than a byte-level
    BPE tokenizer's count, so budgets made with it are safe without the model's tokenizer."""

    exact = False

    def __call__(self, text: str) -> int:
        specials = len(_SPECIAL_RE.findall(text))
        return specials + len(_SPECIAL_RE.sub("", text).encode("utf-8"))


class HFTextCounter:
    """Exact counts with the trainer's tokenizer (a local path or a tokenizer object)."""

    exact = True

    def __init__(self, tokenizer: Any) -> None:
        if isinstance(tokenizer, str):
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(tokenizer)
        self.tokenizer = tokenizer

    def __call__(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))


@dataclass(frozen=True)
class VideoFacts:
    """What the trainer is told about a video (xtuner's video_url fields)."""

    width: int
    height: int
    frames: int  # origin_video_length
    fps: float  # origin_fps

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps if self.fps else 0.0


@dataclass(frozen=True)
class Count:
    """One sample as the trainer tokenizes it."""

    frames: int  # frames sampled (after padding to an even count)
    width: int  # resized frame size
    height: int
    video_tokens: int
    total_tokens: int
    first_s: float  # the sampled frames' span in the video
    last_s: float
    error: str | None = None  # the trainer discards the sample (its resize refuses it)

    def over(self, cap: int) -> bool:
        return self.error is not None or self.total_tokens > cap

    def seen_share(self, duration_s: float, cap: int) -> float:
        """Share of the video's duration between the first and the last frame the trainer sees (0 when
        the sample is discarded or truncated)."""
        if self.over(cap) or duration_s <= 0:
            return 0.0
        return min(1.0, (self.last_s - self.first_s + (duration_s / max(1, self.frames))) / duration_s)


# ---------------------------------------------------------------------- the xtuner fork
@dataclass(frozen=True)
class XtunerSettings:
    """The fork's per-dataset settings; defaults are its long SFT config (internvideo3_sft_long.py)."""

    fps: float = 4
    video_min_frames: int = 4
    video_max_frames: int = 2048
    video_min_total_pixels: int = 4 * 4 * 32 * 32
    video_max_total_pixels: int = 32768 * 4 * 32 * 32 * 4
    max_length: int = 32768 * 2 * 4  # sample_max_length = 262,144
    add_vision_id: bool = True
    patch_size: int = 14  # the fork sets video_processor.patch_size = 14
    merge_size: int = 2
    temporal_patch_size: int = 2

    def meta(self) -> dict[str, Any]:
        """The keys of a meta.json entry the fork's config reads (`_data.get(...)`)."""
        fps = int(self.fps) if float(self.fps).is_integer() else self.fps
        # the fork asserts video_min_frames <= rand_video_max_frames (config: 24) <= video_max_frames
        rand = min(max(24, self.video_min_frames), self.video_max_frames)
        return {"fps": fps, "video_min_frames": self.video_min_frames, "video_max_frames": self.video_max_frames,
                "rand_video_max_frames": rand, "video_min_total_pixels": self.video_min_total_pixels,
                "video_max_total_pixels": self.video_max_total_pixels}


def xtuner_frame_indices(total: int, origin_fps: float, fps: float, min_frames: int, max_frames: int) -> list[int]:
    """The fork's `sample_frames` (no num_frames given), then `calculate_timestamps`' padding to pairs."""
    indices = _linspace_ints(0, total - 1, _sampled(total, origin_fps, fps, min_frames, max_frames))
    if len(indices) % 2:
        indices.append(indices[-1])
    return indices


def _linspace_ints(a: float, b: float, n: int) -> list[int]:
    """numpy's linspace rounded half to even, as the fork gets it; in C, since `curate check` asks it
    for every sample of the dataset (a 16-minute video samples ~2,000 frames)."""
    import numpy as np

    return np.linspace(a, b, n).round().astype(np.int64).tolist()


def xtuner_resize(frames: int, height: int, width: int, min_pixels: int, max_pixels: int,
                  factor: int = 28, temporal: int = 2) -> tuple[int, int]:
    """The fork's `video_smart_resize` -> (H, W); ValueError where the fork refuses the video."""
    if frames < temporal:
        raise ValueError(f"{frames} frames < temporal patch {temporal}")
    if height < factor or width < factor:
        raise ValueError(f"frame {width}x{height} smaller than {factor}")
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"aspect ratio {max(height, width) / min(height, width):.0f} > 200")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    t_bar = round(frames / temporal) * temporal
    if t_bar * h_bar * w_bar > max_pixels:
        beta = math.sqrt(frames * height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif t_bar * h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (frames * height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def xtuner_video(facts: VideoFacts, s: XtunerSettings) -> tuple[list[int], int, int, int]:
    """(frame indices, H, W, video tokens) for one video under settings `s`."""
    indices = xtuner_frame_indices(facts.frames, facts.fps, s.fps, s.video_min_frames, s.video_max_frames)
    return (indices, *_sized(len(indices), facts, s))


def _sized(frames: int, facts: VideoFacts, s: XtunerSettings) -> tuple[int, int, int]:
    """(H, W, video tokens) of `frames` sampled frames of the video under settings `s`."""
    factor = s.patch_size * s.merge_size
    # image_wh is [W, H]; the fork unpacks it as (height, width), which the resize treats symmetrically
    h, w = xtuner_resize(frames, facts.height, facts.width, s.video_min_total_pixels,
                         s.video_max_total_pixels, factor, s.temporal_patch_size)
    grid_t = frames // s.temporal_patch_size
    return h, w, grid_t * (h // s.patch_size) * (w // s.patch_size) // (s.merge_size ** 2)


def xtuner_frame_count(total: int, origin_fps: float, fps: float, min_frames: int, max_frames: int) -> int:
    """len(xtuner_frame_indices(...)) without building the list: the fit asks it per sample per step."""
    return xtuner_frame_span(total, origin_fps, fps, min_frames, max_frames)[0]


def xtuner_frame_span(total: int, origin_fps: float, fps: float, min_frames: int, max_frames: int
                      ) -> tuple[int, int, int]:
    """(length, first, last) of xtuner_frame_indices(...) without building it: linspace starts at 0 and
    ends exactly on total - 1 (one frame: just 0), and the padding repeats the last."""
    n = _sampled(total, origin_fps, fps, min_frames, max_frames)
    return n + n % 2, 0, total - 1 if n > 1 else 0


def _sampled(total: int, origin_fps: float, fps: float, min_frames: int, max_frames: int) -> int:
    """How many frames the fork's `sample_frames` takes, before the padding to pairs."""
    n = int(total / origin_fps * fps)
    return max(min(max(n, min_frames), max_frames, total), min_frames)


def _render_xtuner(messages: list[dict], pads: list[str]) -> str:
    """The conversation as the fork renders it, with the video's placeholder text in `pads`."""
    out = []
    for m in messages:
        text = "".join(c.get("text") or "" for c in m["content"] if c.get("type") == "text")
        for item in m["content"]:
            ts = item.get("conversation_timestamps")
            if item.get("type") == "text" and ts:
                text = text.replace(VIDEO_CONTEXT, f"{VIDEO_CONTEXT}<{ts[0]:.1f}-{ts[1]:.1f} seconds>", 1)
        for pad in pads:
            text = text.replace(VIDEO_CONTEXT, pad, 1)
        if m["role"] == "system":
            out.append(f"{IM_START}system\n{text}{IM_END}\n")
        elif m["role"] == "user":
            out.append(f"{IM_START}user\n{text}{IM_END}\n{IM_START}assistant\n")
        else:
            out.append(f"{text}{IM_END}")
    return "".join(out)


def count_xtuner(messages: list[dict], s: XtunerSettings, text: TextCounter | None = None) -> Count:
    """Tokens of one xtuner line (its `messages`, video_url first in the user turn) under settings `s`."""
    text = text or ByteBound()
    facts = _facts(messages)
    frames, first, last = xtuner_frame_span(facts.frames, facts.fps, s.fps, s.video_min_frames, s.video_max_frames)
    try:
        h, w, vtokens = _sized(frames, facts, s)
    except ValueError as exc:
        return Count(0, 0, 0, 0, 0, 0.0, 0.0, error=f"the trainer's resize refuses it: {exc}")
    if isinstance(text, ByteBound):  # additive: the video's text is counted once per video and settings
        total = vtokens + _pad_bytes(facts, s) + text(_render_xtuner(messages, [""]))
    else:
        indices = xtuner_frame_indices(facts.frames, facts.fps, s.fps, s.video_min_frames, s.video_max_frames)
        total = vtokens + text(_render_xtuner(messages, [_video_text([i / facts.fps for i in indices], s)]))
    return Count(frames, w, h, vtokens, total, first / facts.fps, last / facts.fps)


def _video_text(times: list[float], s: XtunerSettings) -> str:
    """What the fork writes for the video besides its pads: "Video 1: " and, per temporal patch, the
    mean time of its frames and the vision start/end tokens (the pads are counted exactly apart)."""
    stamps = [(times[i] + times[i + 1]) / 2 for i in range(0, len(times), 2)]
    pad = "".join(f"<{t:.1f} seconds>{VISION_START}{VISION_END}" for t in stamps)
    return ("Video 1: " if s.add_vision_id else "") + pad


@lru_cache(maxsize=4096)
def _pad_bytes(facts: VideoFacts, s: XtunerSettings) -> int:
    indices = xtuner_frame_indices(facts.frames, facts.fps, s.fps, s.video_min_frames, s.video_max_frames)
    return ByteBound()(_video_text([i / facts.fps for i in indices], s))


class XtunerSamples:
    """What `fit_xtuner` needs of each sample, columnar: its video's facts and the tokens around the
    video (text, timestamps, vision tokens), which do not depend on the pixel limit. 32 bytes a
    sample (plus the rare error's text), whatever the messages hold, so a meta.json dataset of
    millions of samples is fitted without keeping their messages."""

    def __init__(self, base: XtunerSettings, cap: int, text: TextCounter | None = None) -> None:
        self.base, self.cap, self.text = replace(base, max_length=cap), cap, text or ByteBound()
        self._cols = {k: array("q") for k in ("width", "height", "frames", "reserve")}
        self._fps = array("d")
        self.errors: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self._fps)

    def add(self, messages: list[dict]) -> Count:
        """Count one sample under the base settings and keep what re-counting it needs."""
        facts, c = _facts(messages), count_xtuner(messages, self.base, self.text)
        if c.error is not None:
            self.errors[len(self)] = c.error
        for k, v in (("width", facts.width), ("height", facts.height), ("frames", facts.frames),
                     ("reserve", c.total_tokens - c.video_tokens)):
            self._cols[k].append(v)
        self._fps.append(facts.fps)
        return c

    def facts(self, i: int) -> VideoFacts:
        cols = self._cols
        return VideoFacts(cols["width"][i], cols["height"][i], cols["frames"][i], self._fps[i])

    def count(self, i: int, s: XtunerSettings) -> Count:
        """Sample i under settings that differ from the base only in the pixel limit: what
        `count_xtuner` gives (its text part is the same at every pixel limit)."""
        if i in self.errors:
            return Count(0, 0, 0, 0, 0, 0.0, 0.0, error=self.errors[i])
        facts = self.facts(i)
        frames, first, last = xtuner_frame_span(facts.frames, facts.fps, s.fps, s.video_min_frames, s.video_max_frames)
        h, w, vtokens = _sized(frames, facts, s)
        return Count(frames, w, h, vtokens, vtokens + self._cols["reserve"][i], first / facts.fps, last / facts.fps)

    def fit(self) -> XtunerSettings:
        """The base with video_max_total_pixels lowered just enough that every sample fits the cap.
        Frames are kept (the whole duration stays sampled at the same rate); frames get smaller. The
        largest limit that fits is found by bisection."""
        base, cap, reserves, errors = self.base, self.cap, self._cols["reserve"], self.errors

        def live() -> Iterator[int]:
            return (i for i in range(len(self)) if i not in errors)

        frames = array("q", (xtuner_frame_count(self._cols["frames"][i], self._fps[i], base.fps, base.video_min_frames,
                                                base.video_max_frames) for i in range(len(self))))

        def fits(limit: int) -> bool:
            s = replace(base, video_max_total_pixels=limit)
            return all(_sized(frames[i], self.facts(i), s)[2] + reserves[i] <= cap for i in live())

        if fits(base.video_max_total_pixels):
            return base
        lo, hi = 0, base.video_max_total_pixels  # fits(lo) assumed, not fits(hi)
        per_token = base.temporal_patch_size * (base.patch_size * base.merge_size) ** 2
        reserve = max((reserves[i] for i in live()), default=0)
        guess = max(per_token, (cap - reserve) * per_token)
        if fits(guess):
            lo = guess
        else:
            hi = guess
        while hi - lo > max(per_token, hi // 1000):
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid)
        return replace(base, video_max_total_pixels=max(lo, 1))


def fit_xtuner(samples: list[list[dict]], base: XtunerSettings, cap: int,
               text: TextCounter | None = None) -> tuple[XtunerSettings, list[Count]]:
    """The settings for one meta.json dataset (`XtunerSamples.fit`) and every sample's count under them."""
    kept = XtunerSamples(base, cap, text)
    counts = [kept.add(m) for m in samples]
    s = kept.fit()
    return s, counts if s is kept.base else [kept.count(i, s) for i in range(len(kept))]


def _facts(messages: list[dict]) -> VideoFacts:
    video = next(c["video_url"] for m in messages for c in m["content"] if c.get("type") == "video_url")
    return VideoFacts(int(video["image_wh"][0]), int(video["image_wh"][1]), int(video["origin_video_length"]),
                      float(video["origin_fps"]))


# ---------------------------------------------------------------------- qwen-vl-utils
@dataclass(frozen=True)
class QwenVideoSettings:
    """A video entry's sampling and size limits as qwen-vl-utils (0.0.14) reads them."""

    fps: float = 2.0
    min_frames: int = 4
    max_frames: int = 768
    min_pixels: int | None = None  # per frame; default 128 x factor^2
    max_pixels: int | None = None  # per frame; default 768 x factor^2 (and total_pixels / frames x 2)
    total_pixels: int | None = None  # default 128000 x factor^2 x 0.9
    patch_size: int = 14  # 14: Qwen2/2.5-VL; 16: Qwen3-VL

    @property
    def factor(self) -> int:
        return self.patch_size * 2

    def entry(self) -> dict[str, Any]:
        """The keys to put in a `{"type": "video", "video": ...}` element, every limit explicit (a
        Parquet column of these entries must not hold nulls: qwen-vl-utils reads a null as a value)."""
        f2 = self.factor ** 2
        return {"fps": float(self.fps), "min_frames": int(self.min_frames), "max_frames": int(self.max_frames),
                "min_pixels": int(self.min_pixels if self.min_pixels is not None else 128 * f2),
                "max_pixels": int(self.max_pixels if self.max_pixels is not None else 768 * f2),
                "total_pixels": int(self.total_pixels if self.total_pixels is not None else 128000 * f2 * 0.9)}


def _floor(x: float, f: int) -> int:
    return math.floor(x / f) * f


def _ceil(x: float, f: int) -> int:
    return math.ceil(x / f) * f


def qwen_frames(facts: VideoFacts, s: QwenVideoSettings) -> int:
    """qwen-vl-utils `smart_nframes` with `fps` (ValueError where it refuses)."""
    lo = _ceil(s.min_frames, 2)
    hi = _floor(min(s.max_frames, facts.frames), 2) if s.max_frames is not None else _floor(min(768, facts.frames), 2)
    n = facts.frames / facts.fps * s.fps
    n = _floor(min(min(max(n, lo), hi), facts.frames), 2)
    if not 2 <= n <= facts.frames:
        raise ValueError(f"nframes {n} outside [2, {facts.frames}]")
    return n


def qwen_resize(height: int, width: int, factor: int, min_pixels: float, max_pixels: float) -> tuple[int, int]:
    """qwen-vl-utils `smart_resize`."""
    if max(height, width) / min(height, width) > 200:
        raise ValueError("aspect ratio > 200")
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h, w = _floor(height / beta, factor), _floor(width / beta, factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h, w = _ceil(height * beta, factor), _ceil(width * beta, factor)
    return h, w


def qwen_video(facts: VideoFacts, s: QwenVideoSettings) -> tuple[int, int, int, int]:
    """(frames, H, W, video tokens) as qwen-vl-utils samples and resizes, and a Qwen-VL model counts."""
    f = s.factor
    n = qwen_frames(facts, s)
    min_pixels = s.min_pixels if s.min_pixels is not None else 128 * f * f
    total = s.total_pixels if s.total_pixels is not None else 128000 * f * f * 0.9
    max_pixels = max(min(768 * f * f, total / n * 2), int(min_pixels * 1.05))
    if s.max_pixels is not None:
        max_pixels = min(s.max_pixels, max_pixels)
    h, w = qwen_resize(facts.height, facts.width, f, min_pixels, max_pixels)
    return n, h, w, n // 2 * (h // f) * (w // f)


def count_qwen(facts: VideoFacts, s: QwenVideoSettings, prompt_text: str, text: TextCounter | None = None) -> Count:
    """Tokens of a Qwen-VL prompt: the video's tokens, its vision start/end, and the text."""
    text = text or ByteBound()
    try:
        n, h, w, vtokens = qwen_video(facts, s)
    except ValueError as exc:
        return Count(0, 0, 0, 0, 0, 0.0, 0.0, error=str(exc))
    # Qwen3-VL writes "<t seconds>" and a vision start/end per temporal patch, Qwen2.5-VL one pair
    # per video: the larger (Qwen3-VL) is counted
    stamps = "".join(f"<{i * 2 / max(s.fps, 1e-6):.1f} seconds>{VISION_START}{VISION_END}" for i in range(n // 2))
    last = (facts.frames - 1) / facts.fps if facts.fps else 0.0
    return Count(n, w, h, vtokens, vtokens + text(stamps + prompt_text), 0.0, last)


def fit_qwen(facts: VideoFacts, base: QwenVideoSettings, cap: int, prompt_text: str,
             text: TextCounter | None = None) -> tuple[QwenVideoSettings, Count]:
    """`base` with a per-frame max_pixels (and matching total_pixels) lowered until the prompt fits `cap`."""
    text = text or ByteBound()
    c = count_qwen(facts, base, prompt_text, text)
    if c.error or c.total_tokens <= cap:
        return base, c
    f2 = base.factor ** 2
    reserve = c.total_tokens - c.video_tokens
    per_frame = max(f2, (cap - reserve) * 2 * f2 // max(1, c.frames))
    while True:
        s = replace(base, max_pixels=int(per_frame), total_pixels=int(per_frame * c.frames / 2),
                    min_pixels=min(base.min_pixels or 128 * f2, int(per_frame / 1.05)))
        c = count_qwen(facts, s, prompt_text, text)
        if c.error or c.total_tokens <= cap or per_frame <= f2:
            return s, c
        per_frame = max(f2, int(per_frame * 0.97))


def distribution(values: Iterable[int]) -> dict[str, int]:
    """min / median / p95 / max of token counts (for summaries and the card); sorted as int64 numbers,
    not as a list of Python ints (a few million samples)."""
    import numpy as np

    v = np.sort(np.fromiter(values, np.int64) if not isinstance(values, array) else np.frombuffer(values, np.int64))
    if not len(v):
        return {}
    pick = lambda q: int(v[min(len(v) - 1, int(q * (len(v) - 1) + 0.5))])  # noqa: E731
    return {"samples": len(v), "min": int(v[0]), "median": pick(0.5), "p95": pick(0.95), "max": int(v[-1])}


class TokenTally:
    """Token counts of many samples kept as numbers (8 bytes a sample for the distribution), for the
    summaries `distribution` prints."""

    def __init__(self) -> None:
        self.totals = array("q")
        self.frames: tuple[int, int] | None = None
        self.smallest: Count | None = None

    def add(self, c: Count) -> None:
        self.totals.append(c.total_tokens)
        self.frames = (c.frames, c.frames) if self.frames is None else (min(self.frames[0], c.frames),
                                                                       max(self.frames[1], c.frames))
        if self.smallest is None or c.width * c.height < self.smallest.width * self.smallest.height:
            self.smallest = c

    def distribution(self) -> dict[str, int]:
        return distribution(self.totals)


def xtuner_token_report(groups: dict[str, XtunerSamples]) -> dict[str, Any]:
    """Tokens per sample as InternVideo3's trainer counts them: with the settings `curate export xtuner`
    writes (one fit per meta.json dataset, each group's samples kept by `XtunerSamples` under the
    config's settings and cap) and, for comparison, with those settings unfitted (no budget)."""
    exported, kept, unbudgeted = array("q"), TokenTally(), array("q")
    exported_over = unbudgeted_over = 0
    cap, text = XtunerSettings().max_length, ByteBound()
    for samples in groups.values():
        cap, text, s = samples.cap, samples.text, samples.fit()
        for i in range(len(samples)):
            n = samples.count(i, samples.base)
            unbudgeted_over += n.over(cap)
            if n.error is None:
                unbudgeted.append(n.total_tokens)
            c = n if s is samples.base else samples.count(i, s)
            exported.append(c.total_tokens)
            exported_over += c.over(cap)
            if not c.over(cap):
                kept.add(c)
    if not len(exported):
        return {}
    return {"cap": cap, "text": "exact" if getattr(text, "exact", False) else "upper bound (UTF-8 bytes)",
            "exported": distribution(exported),
            "exported_over_cap": exported_over,
            "unbudgeted": distribution(unbudgeted),
            "unbudgeted_over_cap": unbudgeted_over,
            "frames": {"min": kept.frames[0], "max": kept.frames[1]} if kept.frames else {},
            "smallest_frame_wh": [kept.smallest.width, kept.smallest.height] if kept.smallest else []}


def render_token_report(r: dict[str, Any]) -> str:
    """One line for summaries: the exported distribution and what the unbudgeted settings would lose."""
    if not r:
        return ""
    e, n = r["exported"], r["unbudgeted"]
    return (f"tokens per sample (xtuner long config, cap {r['cap']}, text {r['text']}): exported median {e['median']}, "
            f"p95 {e['p95']}, max {e['max']}, over the cap {r['exported_over_cap']}; without the export's budget "
            f"max {n.get('max', 0)}, over the cap {r['unbudgeted_over_cap']} (the trainer would drop them)")
