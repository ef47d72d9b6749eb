"""Scene post-processing: merge, split, gradual marking, keyframes."""
from __future__ import annotations

from pipeline.records import Frame
from pipeline.segment.config import SegmentConfig
from pipeline.segment.detect import Cut
from pipeline.segment.scenes import assign_frames, mark_gradual, merge_short, scenes_from_cuts, split_long


def _scenes(bounds_s, fps=10):
    cuts = [Cut(round(s * fps), s) for s in bounds_s[1:-1]]
    return scenes_from_cuts(cuts, round(bounds_s[-1] * fps), bounds_s[-1])


def test_merge_short():
    sc = merge_short(_scenes([0, 0.5, 5, 5.4, 10]), 1.0)
    assert [(s.start_s, s.end_s) for s in sc] == [(0, 5.4), (5.4, 10)]
    assert [s.index for s in sc] == [0, 1] and sc[0].transition == "start"


def test_split_long():
    sc = split_long(_scenes([0, 2, 12]), 4.0, 10)
    assert [(s.start_frame, s.end_frame) for s in sc] == [(0, 20), (20, 53), (53, 87), (87, 120)]
    assert [s.transition for s in sc] == ["start", "cut", "split", "split"]


def test_mark_gradual():
    cfg = SegmentConfig()
    diffs = [0.0] * 20 + [5.0] * 6 + [30.0] + [0.0] * 20 + [40.0] + [0.0] * 5
    numbers = list(range(len(diffs)))
    kinds = mark_gradual([Cut(26, 2.6), Cut(47, 4.7)], diffs, numbers, cfg, [100.0] * len(diffs))
    assert kinds == ["gradual", "cut"]


def test_keyframes_and_assignment():
    sc = _scenes([0, 4, 10])
    frames = [Frame(timestamp_s=t, image=b"", width=1, height=1) for t in (0, 1, 2, 3, 4, 5, 9)]
    assign_frames(sc, frames)
    assert [f.scene_index for f in frames] == [0, 0, 0, 0, 1, 1, 1]
    assert sc[0].keyframe_s == 2 and sc[1].keyframe_s == 5
