"""PySceneDetect compatibility mode: feed decoded frames to a PySceneDetect detector.

Used when `segment.detector` names one of PySceneDetect's (content, adaptive, histogram, hash);
the default detector is the confirmed one (cuts.py).

The default analysis is what `SceneManager.detect_scenes` does with the PyAV backend
(full-size BGR, cv2.resize INTER_LINEAR by PySceneDetect's auto downscale factor), so the
goldens are reproduced exactly. Where that is costly (non-odd downscale factors, e.g. 640x360
-> 2.5) the image is built from the raw planes instead, and any frame whose approximate content
score comes near the threshold is re-scored on exact pixels, so cut decisions stay
PySceneDetect's. The fast path skips the colour conversion for frames whose raw planes did not
change and hands the detector the previous analysis image instead, whose score (exactly 0)
is not recomputed.
"""
from __future__ import annotations

from fractions import Fraction
from typing import NamedTuple

import cv2
import numpy as np
from av.video.reformatter import VideoReformatter
from scenedetect import (
    AdaptiveDetector,
    ContentDetector,
    FrameTimecode,
    HashDetector,
    HistogramDetector,
)
from scenedetect.common import Timecode
from scenedetect.scene_manager import compute_downscale_factor

from pipeline.segment.config import SegmentConfig
from pipeline.segment.cuts import Cut
from pipeline.segment.decode import DecodedFrame
from pipeline.segment.planes import PlaneScaler

_DETECTORS = {"content": ContentDetector, "adaptive": AdaptiveDetector,
              "histogram": HistogramDetector, "hash": HashDetector}


class _Previous(NamedTuple):
    """What `_Refinable` keeps of the previous frame (PySceneDetect's `_FrameData` holds the
    three channels split; one HSV image is enough for absdiff + sumElems)."""

    hsv: np.ndarray
    edges: np.ndarray | None


class _Refinable:
    """Mixin for ContentDetector and AdaptiveDetector (PySceneDetect 0.7) that computes the
    same content score for less:

    - `unchanged` (set by the caller): the frame is the very image given last time, whose
      score against itself is exactly 0 and whose HSV/edge data are already stored, so
      nothing is computed (the fast path's reused frames);
    - mean pixel distances from one cv2.absdiff of the whole HSV image and cv2.sumElems: the
      same exact per-channel integer sums as scenedetect's numpy int32 version, without
      splitting the channels or four temporary arrays per channel (~15 us a frame less);
      the HSV images live in two buffers used in turn (this frame's, the previous one's);
    - `refine`, when set, may replace the score (called with it, returns the score to use).
    With a stats manager attached, PySceneDetect's own code runs unchanged."""

    refine = None
    unchanged = False
    _hsv_bufs: list[np.ndarray] | None = None  # see _hsv_buffer
    _diff: np.ndarray | None = None

    def _calculate_frame_score(self, timecode, frame_img):
        if self.stats_manager is not None:
            score = super()._calculate_frame_score(timecode, frame_img)
        elif self.unchanged and self._last_frame is not None:
            return 0.0
        else:
            score = self._score(frame_img)
        if self.refine is not None and score:
            score = self.refine(score)
        return score

    def _score(self, frame_img) -> float:
        hsv = cv2.cvtColor(frame_img, cv2.COLOR_BGR2HSV, dst=self._hsv_buffer(frame_img.shape))
        edges = None
        if self._weights.delta_edges > 0.0:
            edges = self._detect_edges(cv2.extractChannel(hsv, 2))
        last = self._last_frame
        self._last_frame = _Previous(hsv, edges)
        if last is None:
            return 0.0
        n = float(hsv.shape[0] * hsv.shape[1])
        # exact per-channel sums of |difference| (integers held exactly in doubles)
        d_hue, d_sat, d_lum, _ = cv2.sumElems(cv2.absdiff(hsv, last.hsv, dst=self._diff))
        components = ContentDetector.Components(
            delta_hue=d_hue / n, delta_sat=d_sat / n, delta_lum=d_lum / n,
            delta_edges=(0.0 if edges is None or last.edges is None
                         else cv2.norm(edges, last.edges, cv2.NORM_L1) / n),
        )
        return sum(c * w for c, w in zip(components, self._weights, strict=True)) / sum(
            abs(w) for w in self._weights)

    def _hsv_buffer(self, shape: tuple[int, ...]) -> np.ndarray:
        """The HSV buffer not holding the previous frame (two, used in turn; reallocated only
        if the analysis size changes), so no image-sized allocation happens per frame."""
        bufs = self._hsv_bufs
        if bufs is None or bufs[0].shape != shape:
            bufs = self._hsv_bufs = [np.empty(shape, np.uint8) for _ in range(2)]
            self._diff = np.empty(shape, np.uint8)
            self._last_frame = None  # the previous image had another size: no valid distance
        last = self._last_frame
        return bufs[1] if last is not None and last.hsv is bufs[0] else bufs[0]


class _Content(_Refinable, ContentDetector):
    pass


class _Adaptive(_Refinable, AdaptiveDetector):
    pass


_REFINABLE = {"content": _Content, "adaptive": _Adaptive}


def make_detector(cfg: SegmentConfig):
    """A fresh PySceneDetect detector for `cfg` (threshold None keeps its default)."""
    cls = _REFINABLE.get(cfg.detector) or _DETECTORS[cfg.detector]
    kwargs: dict = {"min_scene_len": cfg.min_scene_len}
    if cfg.threshold is not None:
        kwargs["adaptive_threshold" if cfg.detector == "adaptive" else "threshold"] = cfg.threshold
    return cls(**kwargs)


def analysis_size(width: int, height: int, cfg: SegmentConfig) -> tuple[int, int]:
    """Analysis frame size, computed like SceneManager (round(side / factor))."""
    if cfg.analysis_downscale:
        factor = float(cfg.analysis_downscale)
    elif cfg.analysis_width:
        factor = max(1.0, width / cfg.analysis_width)
    else:
        factor = compute_downscale_factor(max(width, height))
    if factor <= 1.0:
        return width, height
    return max(1, round(width / factor)), max(1, round(height / factor))


class SceneAnalyzer:
    """Stateful per-frame driver of one detector, plus cheap per-frame luma statistics."""

    def __init__(self, cfg: SegmentConfig, width: int, height: int, rate: Fraction):
        self.cfg = cfg
        self.detector = make_detector(cfg)
        self.rate = rate
        self.size = analysis_size(width, height, cfg)
        self._cuts: list[FrameTimecode] = []
        self._last_tc: FrameTimecode | None = None
        self._last_img: np.ndarray | None = None
        self._last_sig: tuple[np.ndarray, ...] | None = None
        self._since_analysed = 0
        self._maker = None
        self._reformatter = VideoReformatter()  # keeps its swscale context across frames
        # borderline re-scoring on exact pixels (approximate analysis images only)
        self._exact_maker = True
        self._src = None        # decoded frame the current analysis image was made from
        self._prev_src = None   # ... and the one the detector saw before it
        self._scratch: ContentDetector | None = None  # scores exact images of refined pairs
        self._scratch_src = None  # the frame whose exact image the scratch detector saw last
        self.refined = 0
        det = self.detector
        if cfg.refine_margin > 0 and isinstance(det, _Refinable):
            floor = det.min_content_val if isinstance(det, AdaptiveDetector) else det._threshold
            self._refine_from = floor - cfg.refine_margin
            det.refine = self._refine
        self.analysed = 0
        self.frames = 0
        # per-frame luma change and mean luma on 1/8-res planes, for gradual-transition marking
        self.luma_diff: list[float] = []
        self.luma_mean: list[float] = []

    def _signature(self, frame) -> tuple[np.ndarray, ...]:
        """Strided copies of the raw planes (Y at 1/8, U/V at 1/4 of their size; U/V only for
        the fast path's gate): no conversion, a few microseconds."""
        out = []
        for i, plane in enumerate(frame.planes[:3] if self.cfg.fast else frame.planes[:1]):
            arr = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
            s = 8 if i == 0 else 4
            out.append(arr[::s, : plane.width : s].copy())
        return tuple(out)

    def _analysis_image(self, frame) -> np.ndarray:
        if self._maker is None:
            self._maker = self._choose_maker(frame)
            self._exact_maker = self._maker == self._exact
        return self._maker(frame)

    def _refine(self, score: float) -> float:
        """Called by the detector with an approximate content score: when the analysis image
        is not PySceneDetect's own and the score is close enough to matter, re-score the frame
        pair on exact images (full-size BGR + INTER_LINEAR), so borderline decisions are
        PySceneDetect's. A few dozen frames per 10 minutes; the detector's state is untouched."""
        if self._exact_maker or score < self._refine_from or self._prev_src is None:
            return score
        det = self.detector
        if self._scratch is None:
            kernel = None if det._kernel is None else det._kernel.shape[0]
            self._scratch = _Content(threshold=255.0, min_scene_len=1, weights=det._weights,
                                     kernel_size=kernel)
        scratch = self._scratch
        if self._scratch_src is not self._prev_src:  # consecutive refines share a frame
            scratch._last_frame = None
            scratch._calculate_frame_score(None, self._exact(self._prev_src))
        self._scratch_src = self._src
        self.refined += 1
        return scratch._calculate_frame_score(None, self._exact(self._src))

    def _choose_maker(self, frame):
        """Pick the analysis-image builder for this stream (fixed for the whole decode)."""
        w, h = self.size
        W, H = frame.width, frame.height
        method = self.cfg.analysis_method
        if method == "exact" or frame.format.name != "yuv420p" or (w, h) == (W, H):
            return self._exact
        if method == "auto" and not (self.cfg.detector == "content" and self.cfg.refine_margin > 0):
            # the content detector's decisions are made on refined (exact) scores near its
            # threshold, so planes is safe for it at any factor. The adaptive detector also
            # compares each score with its neighbours' unrefined ones: keep exact pixels where
            # PySceneDetect's goldens live (odd integer factors, e.g. 1280 wide -> 5; testvideo's
            # fade at frame 691 scores 26.88 vs 27)
            fx, fy = W / w, H / h
            if fx == fy and fx.is_integer() and int(fx) % 2 == 1:
                return self._exact
        return self._make_planes()

    def _exact(self, frame) -> np.ndarray:
        """PySceneDetect's path: full-size BGR, then cv2.resize INTER_LINEAR."""
        # bit-identical to frame.to_ndarray(format="bgr24"), which builds a new swscale
        # context per call (about 0.4 ms of a 0.6 ms conversion at 640x360); one swscale
        # thread: slice threads give the same pixels for ~25% more CPU on frames this small
        img = self._reformatter.reformat(frame, format="bgr24", threads=1).to_ndarray()
        if (img.shape[1], img.shape[0]) != self.size:
            img = cv2.resize(img, self.size, interpolation=cv2.INTER_LINEAR)
        return img

    def _make_planes(self) -> PlaneScaler:
        """Raw Y/U/V planes resized INTER_LINEAR to the analysis size, then one tiny I420->BGR."""
        return PlaneScaler(*self.size, cv2.COLOR_YUV2BGR_I420)

    def push(self, df: DecodedFrame) -> None:
        """Process one frame (in presentation order)."""
        self.frames += 1
        sig = self._signature(df.frame) if df.frame.format.name.startswith("yuv") else None
        diff = 255.0
        if sig is not None and self._last_sig is not None and self._last_sig[0].shape == sig[0].shape:
            # mean absolute difference per plane (cv2.norm L1: one call, no temporaries)
            diffs = [cv2.norm(a, b, cv2.NORM_L1) / a.size for a, b in zip(sig, self._last_sig)]
            diff = max(diffs)
            self.luma_diff.append(diffs[0])
        else:
            self.luma_diff.append(0.0 if self._last_sig is None else diff)
        self.luma_mean.append(cv2.mean(sig[0])[0] if sig is not None else 128.0)
        self._last_sig = sig

        reuse = (self.cfg.fast and self._last_img is not None and diff < self.cfg.fast_gate
                 and self._since_analysed + 1 < self.cfg.fast_max_gap)
        if reuse:
            img = self._last_img
            self._since_analysed += 1
        else:
            img = self._analysis_image(df.frame)
            self._since_analysed = 0
            self.analysed += 1
            self._prev_src, self._src = self._src, df.frame
        self._last_img = img
        self.detector.unchanged = reuse
        tc = FrameTimecode(Timecode(pts=df.pts, time_base=df.time_base), fps=self.rate)
        self._cuts += self.detector.process_frame(tc, img)
        self._last_tc = tc

    def finish(self) -> list[Cut]:
        """Flush the detector and return unique cuts (first frame of each new scene)."""
        if self._last_tc is not None:
            self._cuts += self.detector.post_process(self._last_tc)
        seen: dict[int, Cut] = {}
        for tc in sorted(set(self._cuts)):
            if tc.frame_num > 0:
                seen.setdefault(tc.frame_num, Cut(tc.frame_num, float(tc.seconds)))
        return sorted(seen.values(), key=lambda c: c.frame)
