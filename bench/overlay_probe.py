"""Probe (README Known limitations): is the change at each boundary one compact region, as an overlay
(a caption box, an inset picture) or a slide's text changing, or spread over the picture, as a cut?

For every boundary b that `segment_video` (confirmed detector, raw cuts) finds: on the 80x45 luma
thumbnails, the pixels whose change across b (b-1 -> b) beats their change within either side
(b-1-k -> b-1, b -> b+k) by 8 levels, closed 5x5; the largest connected region's bounding box as a
share of the frame, and the share of the changed pixels inside it. "Overlay-like": box < 0.5 and
in-box >= 0.9. Not used by the detector; measured 2026-12-08 (README).
Usage: python bench/overlay_probe.py FILE[=LABEL] ...
"""
from __future__ import annotations

import sys
from pathlib import Path

import av
import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.segment import SegmentConfig, segment_video  # noqa: E402
from pipeline.segment.thumbs import Thumbnailer  # noqa: E402


def luma_thumbs(path: str) -> np.ndarray:
    out, th = [], None
    with av.open(path) as c:
        for f in c.decode(c.streams.video[0]):
            th = th or Thumbnailer(f.width, f.height)
            out.append(th(f).y.astype(np.int16))
    return np.stack(out)


def region(y: np.ndarray, b: int, k: int) -> tuple[float, float, float]:
    """(changed share, share of the changed pixels in the largest region's box, box share)."""
    cross = np.abs(y[b] - y[b - 1])
    within = np.maximum(np.abs(y[b - 1] - y[max(0, b - 1 - k)]), np.abs(y[min(len(y) - 1, b + k)] - y[b]))
    changed = (cross > within + 8).astype(np.uint8)
    closed = cv2.morphologyEx(changed, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    n, _, stats, _ = cv2.connectedComponentsWithStats(closed, connectivity=8)
    if n <= 1:
        return float(changed.mean()), 0.0, 0.0
    x, top, w, h, _ = stats[1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))]
    inside = changed[top:top + h, x:x + w].sum() / max(1, changed.sum())
    return float(changed.mean()), float(inside), w * h / changed.size


def main() -> None:
    for arg in sys.argv[1:]:
        path, _, label = arg.partition("=")
        res = segment_video(path, SegmentConfig(sample_fps=0.1, signals=False, min_scene_s=0))
        y = luma_thumbs(path)
        k = max(2, round(0.17 * res.fps))
        for c in res.cuts:
            share, inside, box = region(y, c.frame, k)
            flag = "overlay-like" if c.kind == "cut" and box < 0.5 and inside >= 0.9 else ""
            print(f"{label or '-':8s} {Path(path).name:28s} frame {c.frame:5d} {c.kind:8s} score {c.score:6.1f}  "
                  f"changed {share:.2f}  in-box {inside:.2f}  box {box:.2f}  {flag}", flush=True)


if __name__ == "__main__":
    main()
