"""Tiny per-frame thumbnails from the raw planes: what the cut detector and the signals read.

A thumbnail is the Y, U and V planes halved (cv2 INTER_AREA, exact 2x2 block means) until the
luma is 64-127 pixels wide (640x360 -> 80x45), plus a normalised Y/U/V histogram of it. Block
means wash out film grain, ringing and the blockiness of a starved encoder, so what is left is
the picture's layout and colours; halving in steps takes ~15 us a frame where one INTER_AREA
resize to 64 px takes ~45 us. Frames that are not planar 4:2:0 are scaled and converted by
swscale straight to the thumbnail size.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

from pipeline.segment.planes import yuv420_planes

HIST_BINS = (32, 16, 16)  # Y, U, V
_PLANAR_420 = ("yuv420p", "yuvj420p")


@dataclass(slots=True)
class Thumb:
    """One frame's thumbnail: uint8 planes and a (64,) float32 histogram (each part sums to 1)."""

    y: np.ndarray
    u: np.ndarray
    v: np.ndarray
    hist: np.ndarray


def _soft_bins(bins: int) -> np.ndarray:
    """(256, bins) weights: each level shares itself between its two nearest bin centres, so a
    picture whose levels shift by one or two (a flat picture re-quantised by an I-frame) moves
    a little mass, not a whole bin's."""
    width = 256 / bins
    pos = (np.arange(256) + 0.5) / width - 0.5
    lo = np.clip(np.floor(pos).astype(int), 0, bins - 1)
    hi = np.clip(lo + 1, 0, bins - 1)
    frac = np.clip(pos - np.floor(pos), 0, 1)
    w = np.zeros((256, bins), np.float32)
    w[np.arange(256), lo] += 1 - frac
    w[np.arange(256), hi] += frac
    return w


_SOFT = [_soft_bins(b) for b in HIST_BINS]


class SoftBins:
    """256-level Y/U/V counts -> the soft 64-bin histogram, each part divided by its pixels.

    Two small products (luma; U and V together, which share their weights): 48 KB of weights
    read a frame instead of the 196 KB block-diagonal (768, 64) matrix, which the decoder's data
    evicts between two frames. (One product for a chunk of 64 frames was tried: OpenBLAS threads
    a product that size, and on 2 busy cores its threads cost more CPU than the product saved.)
    The weights are multiples of 1/32, so the sums are exact in float32 in any order and one
    division rounds each bin: the histogram no longer depends on the BLAS's summation order."""

    def __init__(self, pixels: tuple[float, float, float]):
        self.pixels = np.concatenate([np.full(b, n, np.float32) for b, n in zip(HIST_BINS, pixels)])
        assert HIST_BINS[1] == HIST_BINS[2]  # U and V: one product with the same weights
        self._luma, self._chroma = _SOFT[0], _SOFT[1]

    def __call__(self, counts: np.ndarray) -> np.ndarray:
        """The (64,) soft histogram of (768,) float32 counts."""
        out = np.empty(self.pixels.size, np.float32)
        nb = self._luma.shape[1]
        np.dot(counts[:256], self._luma, out=out[:nb])
        np.dot(counts[256:].reshape(2, 256), self._chroma, out=out[nb:].reshape(2, -1))
        out /= self.pixels
        return out


def thumb_size(width: int, height: int) -> tuple[int, int]:
    """Luma thumbnail (width, height): halve until the width is below 128 (at least 64)."""
    w, h = width, height
    while w // 2 >= 64 and h // 2 >= 8:
        w, h = w // 2, h // 2
    return max(1, w), max(1, h)


def _halvings(shape: tuple[int, ...], size: tuple[int, int]) -> list[tuple[int, int]]:
    """The (width, height) of each INTER_AREA step that takes a plane of `shape` to `size`:
    halve while the half still covers `size`, then one last resize if the sizes differ."""
    w, h = size
    cw, ch = shape[1], shape[0]
    steps = []
    while cw // 2 >= w and ch // 2 >= h:
        cw, ch = cw // 2, ch // 2
        steps.append((cw, ch))
    if (cw, ch) != (w, h):
        steps.append((w, h))
    return steps


def _stack_plan(shapes: list[tuple[int, ...]], size: tuple[int, int]) -> list[tuple[tuple[int, int], bool]] | None:
    """The chroma planes' resize steps, each with whether it is an exact 2x halving of even
    sides (then the Y/U/V stack of that level is halved in one INTER_AREA call: its 2x2 blocks
    never straddle two planes, so every pixel is the one the plane alone gives), or None where
    the luma's first step does not land on the chroma size (odd sides) or no chroma step is left."""
    ys, us, vs = (_halvings(s, size) for s in shapes)
    if not us or us != vs or ys[1:] != us or ys[0] != (shapes[1][1], shapes[1][0]) or shapes[1] != shapes[2]:
        return None
    plan, (cw, ch) = [], ys[0]
    for w, h in us:
        plan.append(((w, h), (2 * w, 2 * h) == (cw, ch)))
        cw, ch = w, h
    return plan


class Thumbnailer:
    """Makes the `Thumb` of every decoded frame of one stream.

    4:2:0 planes: the luma is halved once to the chroma's size, then the three planes are
    halved as one stacked image (one INTER_AREA call a level where the halving is exact,
    e.g. 640x360: five resize calls a frame instead of seven), all into buffers reused across
    frames (worked out once per plane size, `_prepare`); each thumbnail is one copy of the final
    (3 x height, width) stack, its planes views of it."""

    def __init__(self, width: int, height: int):
        self.size = thumb_size(width, height)
        # chroma planes are half the luma's size: one halving fewer lands on the same size
        self.chroma_size = self.size
        self._reformatter: VideoReformatter | None = None
        w, h = self.size
        ny, nc = float(w * h), float(self.chroma_size[0] * self.chroma_size[1])
        self.bins = SoftBins((ny, nc, nc))
        self._counts = np.empty((3 * 256, 1), np.float32)  # calcHist's outputs, one after another
        self._shape: tuple[int, ...] | None = None
        self._steps: list[list[tuple[int, int]]] = []
        # stacked path: (source: plane index or buffer, size, destination) per resize call
        self._ops: list[tuple[int | np.ndarray, tuple[int, int], np.ndarray]] | None = None
        self._stack: np.ndarray | None = None

    def _prepare(self, planes: list[np.ndarray]) -> None:
        """Resize steps, and for the stacked path its calls and buffers, for this plane size."""
        self._shape = planes[0].shape
        self._steps = [_halvings(p.shape, self.size) for p in planes]
        plan = _stack_plan([p.shape for p in planes], self.size)
        self._ops = None
        if plan is None:
            return
        cw, ch = self._steps[0][0]
        luma = np.empty((ch, cw), np.uint8)  # the luma at the chroma size
        ops: list = [(0, (cw, ch), luma)]
        parts: list = [luma, 1, 2]
        stack = None
        for (w, h), exact in plan:
            out = np.empty((3 * h, w), np.uint8)
            if exact and stack is not None:
                ops.append((stack, (w, 3 * h), out))
            else:
                ops += [(parts[k], (w, h), out[k * h:(k + 1) * h]) for k in range(3)]
            stack, parts = out, [out[k * h:(k + 1) * h] for k in range(3)]
        self._ops, self._stack = ops, stack

    def __call__(self, frame) -> Thumb:
        if frame.format.name in _PLANAR_420:
            planes = yuv420_planes(frame)
            if planes[0].shape != self._shape:
                self._prepare(planes)
            if self._ops is not None:
                for src, size, dst in self._ops:
                    cv2.resize(planes[src] if src.__class__ is int else src, size, dst=dst,
                               interpolation=cv2.INTER_AREA)
                stack, h = self._stack.copy(), self.size[1]
                ty, tu, tv = stack[:h], stack[h:2 * h], stack[2 * h:]
            else:
                ty, tu, tv = planes
                for step in self._steps[0]:
                    ty = cv2.resize(ty, step, interpolation=cv2.INTER_AREA)
                for step in self._steps[1]:
                    tu = cv2.resize(tu, step, interpolation=cv2.INTER_AREA)
                for step in self._steps[2]:
                    tv = cv2.resize(tv, step, interpolation=cv2.INTER_AREA)
        else:  # 10-bit, 4:2:2, 4:4:4, RGB, ...: swscale scales and converts in one pass, to 4:4:4
            # so the chroma thumbnails are the luma's size, as the 4:2:0 path makes them (the
            # histograms are divided by that many pixels: at 4:2:0 here colour counted a quarter)
            if self._reformatter is None:
                self._reformatter = VideoReformatter()
            small = self._reformatter.reformat(frame, width=self.size[0], height=self.size[1],
                                               format="yuv444p", interpolation="AREA", threads=1)
            ty, tu, tv = (np.ascontiguousarray(p) for p in yuv420_planes(small))
        # three 256-level histograms side by side, then soft-binned (SoftBins)
        counts = self._counts
        for k, p in enumerate((ty, tu, tv)):
            cv2.calcHist([p], [0], None, [256], [0, 256], hist=counts[256 * k:256 * (k + 1)])
        return Thumb(ty, tu, tv, self.bins(counts[:, 0]))


def distances(y: np.ndarray, y_prev: np.ndarray, hist: np.ndarray, hist_prev: np.ndarray) -> np.ndarray:
    """(frames, 2) picture and histogram distances of thumbnails to others, one per row: `y` and
    `y_prev` (frames, pixels) flat luma, `hist` and `hist_prev` (frames, 64) histograms.

    picture: mean absolute luma difference (0-255; exact: integer sums); histogram: L1 distance
    of the Y, U and V histograms, scaled to 0-100 (colour enters through the histograms only:
    adding the chroma planes' differences to the picture distance changed no decision on the
    accuracy set). One call for a chunk of frames: per pair, the two cv2.norm calls and their
    Python overhead cost ~3 us, seven lags a frame."""
    out = np.empty((y.shape[0], 2))
    out[:, 0] = cv2.reduce(cv2.absdiff(y, y_prev), 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel()
    out[:, 0] /= y.shape[1]
    # float32 differences summed in float64, as cv2.norm(NORM_L1) does (its summation order
    # differs: the last bit of a distance may)
    np.sum(np.abs(hist - hist_prev), axis=1, dtype=np.float64, out=out[:, 1])
    out[:, 1] *= 100.0 / 6.0
    return out


class RgbThumbnailer:
    """48x27 RGB frames for TransNetV2 (segment.detector transnetv2), from the same decoded frame:
    swscale scales and converts the planes in one pass, bicubic like the ffmpeg command line the
    wheel's own `predict_video` reads its frames through (~0.1 ms a 640x360 frame)."""

    def __init__(self, size: tuple[int, int] = (48, 27)):
        self.size = size
        self._reformatter = VideoReformatter()

    def __call__(self, frame) -> np.ndarray:
        small = self._reformatter.reformat(frame, width=self.size[0], height=self.size[1],
                                           format="rgb24", interpolation="BICUBIC", threads=1)
        return small.to_ndarray()
