"""Scene post-processing: cuts -> scenes, merge short, split long, mark gradual, keyframes."""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Sequence

from pipeline.records import Frame, Scene
from pipeline.segment.config import SegmentConfig
from pipeline.segment.cuts import Cut


def scenes_from_cuts(cuts: Sequence[Cut], end_frame: int, end_s: float,
                     transitions: Sequence[str] | None = None) -> list[Scene]:
    """[start, end) scenes covering frames 0..end_frame; the first scene is a 'start'."""
    kinds_of = list(transitions) if transitions is not None else ["cut"] * len(cuts)
    keep = [i for i, c in enumerate(cuts) if 0 < c.frame < end_frame]
    inner = [cuts[i] for i in keep]
    bounds = [Cut(0, 0.0), *inner, Cut(end_frame, end_s)]
    kinds = ["start", *(kinds_of[i] for i in keep)]
    return [Scene(index=i, start_s=a.seconds, end_s=b.seconds, start_frame=a.frame, end_frame=b.frame,
                  keyframe_s=(a.seconds + b.seconds) / 2, transition=kinds[i],
                  score=None if i == 0 else round(float(a.score), 3))
            for i, (a, b) in enumerate(zip(bounds, bounds[1:]))]


def mark_gradual(cuts: Sequence[Cut], luma_diff: Sequence[float], frame_numbers: Sequence[int],
                 cfg: SegmentConfig, luma_mean: Sequence[float] = ()) -> list[str]:
    """'gradual' when several frames before the cut already changed (fade/dissolve), else 'cut'.

    A hard cut changes one frame; a fade or dissolve changes a run of frames leading up
    to the frame where the detector fires. Uses the per-frame luma change of the decode.
    """
    index = {n: i for i, n in enumerate(frame_numbers)}
    out = []
    for cut in cuts:
        i = index.get(cut.frame)
        if not cfg.mark_gradual or i is None:
            out.append("cut")
            continue
        window = luma_diff[max(0, i - cfg.gradual_window):i]
        ramp = sum(1 for d in window if d >= cfg.gradual_diff)
        # a fade through black: the detector fires as the picture returns
        dark = bool(luma_mean) and min(luma_mean[max(0, i - cfg.gradual_window):i + 1]) < 20
        out.append("gradual" if ramp >= cfg.gradual_min_frames or dark else "cut")
    return out


def merge_short(scenes: list[Scene], min_s: float) -> list[Scene]:
    """Merge scenes shorter than `min_s` by removing boundaries, the weakest first.

    While a scene is too short, of all boundaries next to a too-short scene the one with the
    lowest detector score (`Scene.score` of the scene it starts) goes; on a tie, the earlier
    (the short scene joins the one before it, as without scores).
    So a strong true cut next to a weak false one is never moved: the false one is removed
    (keeping the later boundary regardless turned a true cut at t plus a false one at t+1 s into
    one cut at t+1 s). A merged scene keeps its first part's start, transition and score."""
    if min_s <= 0 or len(scenes) < 2:
        return scenes
    out = list(scenes)
    while len(out) > 1:
        short = [i for i, sc in enumerate(out) if sc.end_s - sc.start_s < min_s]
        if not short:
            break
        removable = sorted({b for i in short for b in (i, i + 1) if 0 < b < len(out)})
        weakest = min(removable, key=lambda b: (_strength(out[b]), b))
        prev, cur = out[weakest - 1], out[weakest]
        out[weakest - 1] = replace(prev, end_s=cur.end_s, end_frame=cur.end_frame)
        del out[weakest]
    return _reindex(out)


def _strength(scene: Scene) -> float:
    """Score of the boundary a scene starts at; one without a score (split) is weakest."""
    return float("-inf") if scene.score is None else scene.score


def split_long(scenes: list[Scene], max_s: float | None, rate: float) -> list[Scene]:
    """Split scenes longer than `max_s` into equal windows marked 'split'."""
    if not max_s:
        return scenes
    out: list[Scene] = []
    for sc in scenes:
        length = sc.end_s - sc.start_s
        n = math.ceil(length / max_s - 1e-9)
        if n <= 1:
            out.append(sc)
            continue
        for k in range(n):
            s = sc.start_s + length * k / n
            e = sc.start_s + length * (k + 1) / n if k < n - 1 else sc.end_s
            sf = sc.start_frame if k == 0 else round(s * rate)
            ef = sc.end_frame if k == n - 1 else round(e * rate)
            out.append(replace(sc, index=0, start_s=s, end_s=e, start_frame=sf, end_frame=ef,
                               keyframe_s=(s + e) / 2, transition=sc.transition if k == 0 else "split",
                               score=sc.score if k == 0 else None))
    return _reindex(out)


def _reindex(scenes: list[Scene]) -> list[Scene]:
    return [replace(sc, index=i, keyframe_s=(sc.start_s + sc.end_s) / 2) for i, sc in enumerate(scenes)]


def assign_frames(scenes: list[Scene], frames: list[Frame]) -> None:
    """Set each frame's scene_index and move keyframes to the sampled frame nearest the middle."""
    if not scenes:
        return
    j = 0
    for fr in frames:
        while j < len(scenes) - 1 and fr.timestamp_s >= scenes[j].end_s - 1e-6:
            j += 1
        fr.scene_index = scenes[j].index
    for sc in scenes:
        inside = [f.timestamp_s for f in frames if f.scene_index == sc.index]
        if inside:
            mid = (sc.start_s + sc.end_s) / 2
            sc.keyframe_s = min(inside, key=lambda t: abs(t - mid))
