"""Content signals measured in the one decode: motion, stillness, black/blank frames, bars,
text screens, and the perceptual hashes that fingerprint a video.

Per frame (every frame, from the thumbnail the cut detector already made and its distances):
motion, stillness, black and blank. On a time grid (`hash_interval_s`, 4 a second): a pHash of
the luma thumbnail and the rows/columns that hold picture (for letterbox/pillarbox). Once a
second (`text_interval_s`): a text-screen score on a ~320-px luma picture. What a cut makes
(the frames next to it differ by construction) is kept out of the motion and stillness numbers.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from pipeline.records import ContentSignals, SignaturePoint
from pipeline.segment.phash import hamming, phash, to_hex
from pipeline.segment.planes import yuv420_planes
from pipeline.segment.thumbs import HIST_BINS, Thumb

BLACK_LEVEL = 40        # luma at or below this is black (8-bit, limited range; ffmpeg blackdetect ~38)
BLACK_FRAME = 0.98      # share of black pixels that makes a black frame (blackdetect's default)
BLANK_STD = 3.0         # thumbnail luma std below this: a blank (uniform) frame of any colour
STATIC_LEVEL = 1.5      # picture change over `static_lag` below this: a still frame
BAR_LEVEL = 40          # a bar row/column never gets brighter than this ...
BAR_SHARE = 0.02        # ... in more than this share of the grid frames
TEXT_WIDTH = 400        # text-screen analysis at the luma halved until it is at most this wide
_BLOCK = 8


@dataclass
class SignalParams:
    """Sampling of the grid measurements (SegmentConfig carries them)."""

    hash_interval_s: float = 0.25
    text_interval_s: float = 1.0
    signature_points: int = 48


def text_screen_score(gray: np.ndarray) -> float:
    """How much a luma picture looks like a slide or text screen, 0-1.

    Two statistics of 8x8 blocks: the share of the picture that is one flat background (blocks
    with a luma std under 2 whose mean is the most common flat level), and the share of blocks
    dense with strong, sharp edges (text strokes: >= 25% of pixels with a Sobel magnitude >= 60
    and a block std >= 20). score = min(1, background / 0.4) * min(1, text / 0.08). Dark flat
    borders (letterbox bars, black frames) are cropped first so they never count as background.
    Measured (bench/signals.py): slides 0.88-1.0, a cartoon 0.49, captioned vlogs 0.2-0.45,
    natural footage 0.05-0.15."""
    h, w = gray.shape
    hb, wb = h // _BLOCK, w // _BLOCK
    if hb < 2 or wb < 2:
        return 0.0
    g = np.ascontiguousarray(gray[:hb * _BLOCK, :wb * _BLOCK])
    f = g.astype(np.float32)
    mean = cv2.resize(f, (wb, hb), interpolation=cv2.INTER_AREA)
    mean_sq = cv2.resize(f * f, (wb, hb), interpolation=cv2.INTER_AREA)
    std = np.sqrt(np.maximum(mean_sq - mean * mean, 0))
    flat = std < 2.0
    dark = flat & (mean <= BLACK_LEVEL)
    rows = np.flatnonzero(~dark.all(axis=1))
    cols = np.flatnonzero(~dark.all(axis=0))
    if len(rows) < 2 or len(cols) < 2:
        return 0.0
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    mean, std, flat = mean[r0:r1, c0:c1], std[r0:r1, c0:c1], flat[r0:r1, c0:c1]
    if not flat.any():
        return 0.0
    levels = (mean[flat] / 8).astype(np.int64)
    mode = int(np.argmax(np.bincount(levels, minlength=32)))
    background = float((flat & (np.abs(mean / 8 - mode - 0.5) <= 1.5)).mean())
    sub = g[r0 * _BLOCK:r1 * _BLOCK, c0 * _BLOCK:c1 * _BLOCK]
    gx = cv2.convertScaleAbs(cv2.Sobel(sub, cv2.CV_16S, 1, 0), alpha=0.5)
    gy = cv2.convertScaleAbs(cv2.Sobel(sub, cv2.CV_16S, 0, 1), alpha=0.5)
    edges = (cv2.add(gx, gy) >= 60).astype(np.float32)
    density = cv2.resize(edges, (c1 - c0, r1 - r0), interpolation=cv2.INTER_AREA)
    text = float(((density >= 0.25) & (std >= 20)).mean())
    return min(1.0, background / 0.4) * min(1.0, text / 0.08)


def _halve(plane: np.ndarray, max_width: int) -> np.ndarray:
    while plane.shape[1] > max_width:
        plane = cv2.resize(plane, (plane.shape[1] // 2, plane.shape[0] // 2), interpolation=cv2.INTER_AREA)
    return plane


@dataclass
class SceneSignals:
    """What the signals add to one scene: its keyframe's pHash and its motion."""

    phash: str | None
    motion: float | None


@dataclass
class SignalResult:
    """The video's signals, per-scene additions, and the dense hash sequence for matching."""

    signals: ContentSignals
    scenes: list[SceneSignals]
    query_t: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    query_h: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))


class SignalMeter:
    """Collects the per-frame and grid measurements of one decode."""

    def __init__(self, params: SignalParams | None = None):
        self.p = params or SignalParams()
        self.black = bytearray()  # one byte a frame
        self.blank = bytearray()
        self._next_hash = 0.0
        self._next_text = 0.0
        self.hash_t: list[float] = []
        self.hash_v: list[int | None] = []
        self.text: list[float] = []
        self._row_lit: np.ndarray | None = None  # per thumbnail row/column: grid frames where it
        self._col_lit: np.ndarray | None = None  # was brighter than BAR_LEVEL
        self._grid_frames = 0

    def push(self, frame, thumb: Thumb, seconds: float) -> None:
        """Measure one decoded frame (`frame` is only read on the text grid)."""
        y = thumb.y
        black = float(thumb.hist[: BLACK_LEVEL * HIST_BINS[0] // 256].sum()) >= BLACK_FRAME
        self.black.append(black)
        self.blank.append(black or float(cv2.meanStdDev(y)[1][0, 0]) < BLANK_STD)
        if seconds + 1e-6 >= self._next_hash:
            while self._next_hash <= seconds + 1e-6:
                self._next_hash += self.p.hash_interval_s
            self.hash_t.append(seconds)
            self.hash_v.append(phash(y))
            if not black:
                rows = y.max(axis=1) > BAR_LEVEL
                cols = y.max(axis=0) > BAR_LEVEL
                if self._row_lit is None:
                    self._row_lit = np.zeros(len(rows), np.int64)
                    self._col_lit = np.zeros(len(cols), np.int64)
                self._row_lit += rows
                self._col_lit += cols
                self._grid_frames += 1
        if seconds + 1e-6 >= self._next_text:
            while self._next_text <= seconds + 1e-6:
                self._next_text += self.p.text_interval_s
            self.text.append(text_screen_score(_halve(_luma(frame), TEXT_WIDTH)))

    def finish(self, motion: np.ndarray, still: np.ndarray, frame_s: np.ndarray, cut_indices: list[int],
               guard: int, scene_bounds: list[tuple[float, float, float]], duration_s: float) -> SignalResult:
        """Summarise. `motion`/`still`: each frame's picture change to the previous frame and
        to a frame ~0.7 s before (the cut detector's distances); `frame_s`: each frame's time;
        `cut_indices`: frame indices of the cuts, whose +-`guard` frames are left out of both;
        `scene_bounds`: (start_s, end_s, keyframe_s) of each scene."""
        n = len(self.black)
        black = np.frombuffer(bytes(self.black), np.uint8).astype(bool)
        blank = np.frombuffer(bytes(self.blank), np.uint8).astype(bool)
        keep = np.ones(n, bool)
        if n:
            keep[0] = False
        for i in cut_indices:
            keep[max(0, i - guard):i + guard + 1] = False
        moving = motion[keep] if keep.any() else motion[1:] if n > 1 else motion
        still_frames = (still[keep] < STATIC_LEVEL) if keep.any() else np.zeros(0, bool)
        letterbox, pillarbox = self._bars()
        t = np.asarray(self.hash_t, np.float64)
        good = np.array([h is not None for h in self.hash_v], bool)
        qt = t[good]
        qh = np.array([h for h in self.hash_v if h is not None], np.uint64)
        signals = ContentSignals(
            motion=_round(float(np.mean(moving)) if len(moving) else 0.0),
            motion_p90=_round(float(np.percentile(moving, 90)) if len(moving) else 0.0),
            static_share=_round(float(np.mean(still_frames)) if len(still_frames) else 1.0),
            black_share=_round(float(np.mean(black)) if n else 0.0),
            blank_share=_round(float(np.mean(blank)) if n else 0.0),
            letterbox=_round(letterbox), pillarbox=_round(pillarbox),
            text_score=_round(float(np.mean(self.text)) if self.text else 0.0),
            signature=signature_points(qt, qh, self.p.signature_points, duration_s),
        )
        scenes = []
        for start, end, key in scene_bounds:
            inside = keep & (frame_s >= start) & (frame_s < end)
            m = float(np.mean(motion[inside])) if inside.any() else None
            scenes.append(SceneSignals(phash=_nearest_hash(t, self.hash_v, key),
                                       motion=None if m is None else _round(m)))
        return SignalResult(signals, scenes, qt, qh)

    def _bars(self) -> tuple[float, float]:
        """Share of the height (letterbox) and width (pillarbox) that are black bars."""
        if self._row_lit is None or not self._grid_frames:
            return 0.0, 0.0
        limit = BAR_SHARE * self._grid_frames
        return _edge_share(self._row_lit <= limit), _edge_share(self._col_lit <= limit)


def _luma(frame) -> np.ndarray:
    if frame.format.name in ("yuv420p", "yuvj420p"):
        return yuv420_planes(frame)[0]
    return frame.to_ndarray(format="gray")


def _edge_share(dark: np.ndarray) -> float:
    """Share of lines that are dark bars at the two edges (an all-dark picture has no bars)."""
    n = len(dark)
    if dark.all() or n == 0:
        return 0.0
    top = int(np.argmax(~dark))
    bottom = int(np.argmax(~dark[::-1]))
    return (top + bottom) / n


def _nearest_hash(t: np.ndarray, values: list[int | None], at: float) -> str | None:
    """The grid hash nearest `at` (skipping flat pictures within 1 s), as hex."""
    if not len(t):
        return None
    order = np.argsort(np.abs(t - at))
    for i in order[:8]:
        if values[i] is not None and abs(t[i] - at) <= 1.0:
            return to_hex(values[i])
    return None


def signature_points(t: np.ndarray, h: np.ndarray, count: int, duration_s: float) -> list[SignaturePoint]:
    """The video-level signature: up to `count` hashed moments spread over the duration.

    The duration is cut into `count` equal spans; each contributes its most stable grid hash
    (fewest bits changed to its grid neighbours), so a copy sampled at slightly other times
    still holds nearly the same hash at that moment."""
    if not len(h):
        return []
    count = min(count, len(h))
    spans = np.minimum((t / max(duration_s, 1e-9) * count).astype(np.int64), count - 1)
    instability = np.zeros(len(h))
    for i in range(len(h)):
        around = [hamming(int(h[i]), int(h[j])) for j in (i - 1, i + 1) if 0 <= j < len(h)]
        instability[i] = max(around) if around else 0
    out = []
    for s in np.unique(spans):
        idx = np.flatnonzero(spans == s)
        best = idx[np.argmin(instability[idx])]
        out.append(SignaturePoint(t=_round(float(t[best]), 3), hash=to_hex(int(h[best]))))
    return out


def _round(x: float, digits: int = 4) -> float:
    return round(float(x), digits)
