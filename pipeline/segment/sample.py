"""Keep frames for the models at a target rate and pixel budget, as JPEG bytes at once.

Memory stays bounded: only encoded bytes are kept, and when a video would exceed
`max_frames` the kept set is halved (every other frame) and the rate halved, so a 2-hour
video never holds more than `max_frames` JPEGs, spread uniformly.
"""
from __future__ import annotations

import hashlib
import io
import math

import cv2
import numpy as np
from av.video.reformatter import VideoReformatter
from PIL import Image

from pipeline.records import Frame
from pipeline.segment.config import SegmentConfig
from pipeline.segment.decode import DecodedFrame
from pipeline.segment.planes import PlaneScaler

_ROTATE = {90: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_CLOCKWISE}


def smart_resize(height: int, width: int, factor: int = 28, min_pixels: int = 56 * 56,
                 max_pixels: int = 28 * 28 * 1280) -> tuple[int, int]:
    """Qwen2-VL's smart_resize: sides multiple of `factor`, pixels within [min, max]."""
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


class FrameSampler:
    """Decides which decoded frames to keep and encodes them immediately."""

    def __init__(self, cfg: SegmentConfig, width: int, height: int, rotation: int,
                 duration_s: float | None):
        self.cfg = cfg
        self.rotation = rotation % 360
        disp_w, disp_h = (height, width) if self.rotation in (90, 270) else (width, height)
        self.out_h, self.out_w = smart_resize(disp_h, disp_w, cfg.size_factor,
                                              cfg.min_pixels, cfg.max_pixels)
        fps = cfg.sample_fps
        if duration_s and duration_s * fps > cfg.max_frames:
            fps = cfg.max_frames / duration_s  # uniform over the known duration
        self.interval = 1.0 / fps
        self.next_t = 0.0
        self.frames: list[Frame] = []
        # yuv420p (nearly all H.264/VP9/AV1): planes scaled with cv2, one small conversion
        # (planes.py: ~0.25 ms a frame against ~1.3 ms for swscale's scale + convert);
        # other formats: one reformatter for the whole video, which keeps its swscale context
        self._scaler: PlaneScaler | None = None
        self._reformatter = VideoReformatter()

    def wants(self, seconds: float) -> bool:
        return seconds + 1e-6 >= self.next_t

    def push(self, df: DecodedFrame) -> None:
        """Keep `df` if its time has come; advance to the next target time."""
        if not self.wants(df.seconds):
            return
        while self.next_t <= df.seconds + 1e-6:
            self.next_t += self.interval
        self.frames.append(self._encode(df))
        if len(self.frames) > self.cfg.max_frames:  # duration unknown or wrong: decimate
            self.frames = self.frames[::2]
            self.interval *= 2
            self.next_t = self.frames[-1].timestamp_s + self.interval

    def _encode(self, df: DecodedFrame) -> Frame:
        frame = df.frame
        # the image is made in the stored orientation, then turned as the display matrix says
        tw, th = (self.out_h, self.out_w) if self.rotation in (90, 270) else (self.out_w, self.out_h)
        if frame.format.name == "yuv420p":
            if self._scaler is None:
                self._scaler = PlaneScaler(tw, th, cv2.COLOR_YUV2RGB_I420, antialias=True)
            rgb = self._scaler(frame)
        else:  # other pixel formats: swscale scales and converts in one pass
            rgb = self._reformatter.reformat(frame, width=tw, height=th, format="rgb24",
                                             interpolation="BILINEAR", threads=1).to_ndarray()
        if self.rotation in _ROTATE:  # the display matrix angle is counter-clockwise
            rgb = cv2.rotate(rgb, _ROTATE[self.rotation])
        img = Image.frombuffer("RGB", (rgb.shape[1], rgb.shape[0]), np.ascontiguousarray(rgb), "raw", "RGB", 0, 1)
        if self.rotation and self.rotation not in _ROTATE:  # a rare non-right angle
            img = img.rotate(self.rotation, expand=True)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=self.cfg.jpeg_quality)
        image = buf.getvalue()
        return Frame(timestamp_s=df.seconds, image=image, width=img.width, height=img.height,
                     digest=hashlib.sha1(image).hexdigest()[:16])
