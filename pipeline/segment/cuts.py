"""The default cut detector: a change must persist on both sides of the boundary to count.

PySceneDetect's detectors compare each frame with the one before it. On real uploads that also
fires on a camera flash, on a fast pan or shake, and on the quality pulse of a starved encoder
(a sharp I-frame after blurred P-frames): all changes between two frames that do not last. Here
a boundary b (the first frame of a new shot) is scored by how much more the frames differ
*across* it than *within* each side:

    cross  = min distance of the pairs (b-1, b), (b-1, b+k), (b-1-k, b), (b-1-k, b+k)
    within = max distance of the pairs (b-1-k, b-1), (b, b+k)
    score  = (cross_picture - within_picture) / 4 + (cross_histogram - within_histogram)

A real cut is far on every cross pair and near within each side. A flash shorter than k frames
has a near cross pair (b-1, b+k); a pan or shake differs as much within a side as across it, and
its colour histogram hardly changes. Picture distance finds cuts to another shot of the same
place (same colours, new layout); histogram distance finds cuts in fast motion. Gradual
transitions (fades, dissolves) are the same test at a longer span K on each side, centred on
the transition (where a side's 2K-frame span holds a hard cut, its change over the K frames next
to the transition, doubled, stands in; the same for the after side in the last 2 s of a video that
ends on a still picture, e.g. a fade out to black). Every pair above is a distance between a frame and one a fixed lag before it,
so each frame costs seven distances of two thumbnails (thumbs.py); peaks are picked at the end.
"""
from __future__ import annotations

from array import array
from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.segment.thumbs import Thumb, distances

# picture and histogram change over the last K frames below which a video ends on a still
# picture (testvideo.mp4's black end: 0.7 / 1.1; the footage's moving ends: 7.8 and up)
END_STILL = 3.0


@dataclass
class Cut:
    """A boundary: the first frame of the new scene, its time, its strength and its kind."""

    frame: int
    seconds: float
    score: float = 0.0
    kind: str = "cut"  # cut | gradual


@dataclass(frozen=True)
class CutParams:
    """Thresholds and spans of the confirmed detector; the defaults live in SegmentConfig
    (`pipeline.segment.stages.cut_params` builds this from it)."""

    threshold: float
    gradual_threshold: float
    confirm_s: float
    gradual_s: float
    min_scene_len: int
    picture_weight: float = 0.25


class ConfirmedCutDetector:
    """Feed thumbnails in presentation order (`push`), then `finish()` for the cuts."""

    def __init__(self, rate: float, params: CutParams):
        self.p = params
        self.k = max(2, round(self.p.confirm_s * rate))
        self.K = max(self.k + 2, round(self.p.gradual_s * rate))
        k, K = self.k, self.K
        self.lags = sorted({1, k, k + 1, 2 * k + 1, K, 2 * K, 2 * K + K // 2})
        # the thumbnails of the last max(lags) frames, then those of a chunk of new frames (flat
        # luma and histograms): distances are taken a chunk and a lag at a time (`_flush`), not
        # per pair, which costs a tenth of the per-frame Python calls
        self._hist_len, self._chunk, self._pending = max(self.lags), 64, 0
        self._y: np.ndarray | None = None
        self._h: np.ndarray | None = None
        # per lag, (picture, histogram) distance of every frame, flat: 16 bytes a frame and lag
        self._dist: dict[int, array] = {lag: array("d") for lag in self.lags}
        self.frames = 0
        self.numbers = array("q")
        self.seconds = array("d")
        self._luma = array("d")

    def push(self, thumb: Thumb, number: int, seconds: float) -> None:
        """Record one frame. Its distances to the frames `lags` before it (the first frame for
        frames that have fewer predecessors) are computed a chunk of frames at a time."""
        n, pos = self.frames, self._hist_len + self._pending
        if n == 0:  # frames before the first are the first: max(0, n - lag)
            size = self._hist_len + self._chunk
            self._y = np.empty((size, thumb.y.size), np.uint8)
            self._h = np.empty((size, thumb.hist.size), np.float32)
            self._y[:pos] = thumb.y.reshape(-1)
            self._h[:pos] = thumb.hist
        self._y[pos] = thumb.y.reshape(-1)
        self._h[pos] = thumb.hist
        self._pending += 1
        self.numbers.append(number)
        self.seconds.append(seconds)
        self.frames += 1
        if self._pending == self._chunk:
            self._flush()

    def _flush(self) -> None:
        """Distances of the pending frames at every lag, their mean luma; keep the last
        max(lags) frames as the history of the next chunk."""
        m, H = self._pending, self._hist_len
        if not m:
            return
        ys, hs = self._y[H:H + m], self._h[H:H + m]
        for lag in self.lags:
            self._dist[lag].extend(distances(ys, self._y[H - lag:H + m - lag],
                                             hs, self._h[H - lag:H + m - lag]).ravel())
        # sum x (1 / n), as cv2.mean computes it (so the values are cv2.mean's to the last bit)
        self._luma.extend(cv2.reduce(ys, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel() * (1.0 / ys.shape[1]))
        self._y[:H] = self._y[m:m + H]
        self._h[:H] = self._h[m:m + H]
        self._pending = 0

    @property
    def luma(self) -> np.ndarray:
        """Mean thumbnail luma of every frame: fades through black are centred on the dark."""
        self._flush()
        return np.frombuffer(self._luma, dtype=np.float64).copy()

    def lag_distance(self, lag: int) -> np.ndarray:
        """(frames, 2) picture and histogram distances of each frame to the one `lag` before."""
        self._flush()
        return np.frombuffer(self._dist[lag], dtype=np.float64).reshape(-1, 2).copy()  # no view: the array may grow

    def _score(self, cross: list[np.ndarray], within: list[np.ndarray]) -> np.ndarray:
        c = np.min(np.stack(cross), axis=0)
        w = np.max(np.stack(within), axis=0)
        d = c - w
        return self.p.picture_weight * d[:, 0] + d[:, 1]

    def scores(self) -> tuple[np.ndarray, np.ndarray]:
        """(hard, gradual) score of every boundary b = 0..frames-1 (-inf where the spans do not fit)."""
        n, k, K = self.frames, self.k, self.K
        hard = np.full(n, -np.inf)
        grad = np.full(n, -np.inf)
        D = {lag: self.lag_distance(lag) for lag in self.lags}
        b = np.arange(n)
        ok = (b >= 1) & (b + k < n)
        if ok.any():
            bb = b[ok]
            cross = [D[1][bb], D[k + 1][bb + k], D[k + 1][bb], D[2 * k + 1][bb + k]]
            within = [D[k][bb - 1], D[k][bb + k]]
            hard[ok] = self._score(cross, within)
        h = K // 2
        ok = (b >= 2 * K) & (b + 3 * K < n)
        if ok.any():
            bb = b[ok]
            cross = [D[2 * K][bb + K], D[2 * K + h][bb + K], D[2 * K + h][bb + K + h]]
            before, after = D[2 * K][bb - K], D[2 * K][bb + 3 * K]
            # a side's own change is measured over 2K frames; where that span holds a hard cut
            # (a shot shorter than ~2 s next to a fade) it measures the cut instead and hid the
            # fade: there, twice the change over the K frames next to the transition
            peaks = np.zeros(n + 1, np.int64)
            peaks[np.asarray(_peaks(hard, k, self.p.threshold), np.int64) + 1] = 1
            upto = np.cumsum(peaks)  # upto[i]: hard cuts at frames < i
            cut_before = upto[bb - K + 1] > upto[bb - 3 * K + 1]  # a cut starts a frame in (b-3K, b-K]
            cut_after = upto[bb + 3 * K + 1] > upto[bb + K + 1]  # ... in (b+K, b+3K]
            before = np.where(cut_before[:, None], np.minimum(before, 2 * D[K][bb - K]), before)
            after = np.where(cut_after[:, None], np.minimum(after, 2 * D[K][bb + 2 * K]), after)
            grad[ok] = self._score(cross, [before, after])
        # the last 2 s: the after side's 2K span runs past the end. A fade out to a still end
        # (black, an end card: the last K frames barely change) is scored with twice the change
        # over the K frames after the transition standing in; a moving end is left alone (the
        # same stand-in there added false fades in fast motion)
        ok = (b >= 2 * K) & (b + 3 * K >= n) & (b + 2 * K < n)
        if ok.any() and np.all(D[K][n - 1] < END_STILL):
            bb = b[ok]
            cross = [D[2 * K][bb + K], D[2 * K + h][bb + K], D[2 * K + h][bb + K + h]]
            grad[ok] = self._score(cross, [D[2 * K][bb - K], 2 * D[K][bb + 2 * K]])
        return hard, grad

    def motion(self) -> tuple[np.ndarray, np.ndarray]:
        """Each frame's picture change to the previous frame, and to the frame K (~0.7 s) before."""
        return self.lag_distance(1)[:, 0], self.lag_distance(self.K)[:, 0]

    def score_cuts(self, cuts: list[Cut]) -> list[Cut]:
        """`cuts` placed by another detector, with this detector's score of each boundary (the
        larger of the hard and gradual score within +-1 frame), so merging can weigh them."""
        if not cuts:
            return cuts
        hard, grad = self.scores()
        best = np.maximum(hard, grad)
        index = {n: i for i, n in enumerate(self.numbers)}
        out = []
        for c in cuts:
            i = index.get(c.frame)
            s = float(np.max(best[max(0, i - 1):i + 2])) if i is not None else 0.0
            out.append(Cut(c.frame, c.seconds, s if np.isfinite(s) else 0.0, c.kind))
        return out

    def finish(self) -> list[Cut]:
        """Peaks of the scores above their thresholds, at least min_scene_len frames apart
        (the stronger of two close peaks wins); hard cuts take precedence over a gradual
        peak within K frames."""
        if self.frames < 3:
            return []
        hard, grad = self.scores()
        k, K = self.k, self.K
        found: list[tuple[float, int, str]] = []
        hard_peaks = _peaks(hard, k, self.p.threshold)
        found += [(hard[i], i, "cut") for i in hard_peaks]
        luma = np.asarray(self.luma)
        for i in _peaks(grad, K, self.p.gradual_threshold):
            if not any(abs(i - j) <= K for j in hard_peaks):
                found.append((grad[i], _dark_centre(luma, i, 2 * K), "gradual"))
        kept: list[tuple[float, int, str]] = []
        for score, i, kind in sorted(found, key=lambda f: (-f[0], f[1])):
            if all(abs(i - j) >= self.p.min_scene_len for _, j, _ in kept):
                kept.append((score, i, kind))
        return [Cut(self.numbers[i], self.seconds[i], float(score), kind)
                for score, i, kind in sorted(kept, key=lambda f: f[1]) if self.numbers[i] > 0]


def _dark_centre(luma: np.ndarray, i: int, radius: int) -> int:
    """A fade through black is cut at the middle of its darkest frames, not where the score
    peaks (which leans to the brighter side); any other transition stays at `i`."""
    lo, hi = max(0, i - radius), min(len(luma), i + radius + 1)
    window = luma[lo:hi]
    j = int(np.argmin(window))
    ends = min(window[0], window[-1])
    if window[j] > 40 or window[j] > 0.5 * ends:
        return i
    dark = np.flatnonzero(window <= window[j] + 2)
    run = dark[(dark >= dark[0]) & (np.abs(dark - j) <= radius)]
    return lo + int(round((run.min() + run.max()) / 2))


def _peaks(score: np.ndarray, radius: int, threshold: float) -> list[int]:
    """Indices where `score` >= threshold and is the maximum within +-radius (first on ties)."""
    out = []
    for i in np.flatnonzero(score >= threshold):
        lo, hi = max(0, i - radius), min(len(score), i + radius + 1)
        window = score[lo:hi]
        if score[i] >= window.max() and i == lo + int(np.argmax(window)):
            out.append(int(i))
    return out
