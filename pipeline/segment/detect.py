"""Feed decoded frames to a PySceneDetect detector at a small analysis resolution.

The default analysis is what `SceneManager.detect_scenes` does with the PyAV backend
(full-size BGR, cv2.resize INTER_LINEAR by PySceneDetect's auto downscale factor), so the
goldens are reproduced exactly. The fast path skips the colour conversion for frames whose
raw planes did not change and hands the detector the previous analysis image instead.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import cv2
import numpy as np
from scenedetect import AdaptiveDetector, ContentDetector, FrameTimecode, HashDetector, HistogramDetector
from scenedetect.common import Timecode
from scenedetect.scene_manager import compute_downscale_factor

from pipeline.segment.config import SegmentConfig
from pipeline.segment.decode import DecodedFrame

_DETECTORS = {"content": ContentDetector, "adaptive": AdaptiveDetector,
              "histogram": HistogramDetector, "hash": HashDetector}


def make_detector(cfg: SegmentConfig):
    """A fresh PySceneDetect detector for `cfg` (threshold None keeps its default)."""
    cls = _DETECTORS[cfg.detector]
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


@dataclass
class Cut:
    frame: int
    seconds: float


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
        self.analysed = 0
        self.frames = 0
        # per-frame luma change and mean luma on 1/8-res planes, for gradual-transition marking
        self.luma_diff: list[float] = []
        self.luma_mean: list[float] = []

    def _signature(self, frame) -> tuple[np.ndarray, ...]:
        """Strided views of the raw Y/U/V planes: no conversion, a few microseconds."""
        out = []
        for i, plane in enumerate(frame.planes[:3]):
            arr = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
            s = 8 if i == 0 else 4
            out.append(arr[::s, : plane.width : s].copy())
        return tuple(out)

    def _analysis_image(self, frame) -> np.ndarray:
        img = frame.to_ndarray(format="bgr24")
        if (img.shape[1], img.shape[0]) != self.size:
            img = cv2.resize(img, self.size, interpolation=cv2.INTER_LINEAR)
        return img

    def push(self, df: DecodedFrame) -> None:
        """Process one frame (in presentation order)."""
        self.frames += 1
        sig = self._signature(df.frame) if df.frame.format.name.startswith("yuv") else None
        diff = 255.0
        if sig is not None and self._last_sig is not None and self._last_sig[0].shape == sig[0].shape:
            diffs = [float(cv2.absdiff(a, b).mean()) for a, b in zip(sig, self._last_sig)]
            diff = max(diffs)
            self.luma_diff.append(diffs[0])
        else:
            self.luma_diff.append(0.0 if self._last_sig is None else diff)
        self.luma_mean.append(float(sig[0].mean()) if sig is not None else 128.0)
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
        self._last_img = img
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
