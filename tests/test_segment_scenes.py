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


def _scored(bounds_s, scores, fps=10):
    cuts = [Cut(round(s * fps), s, score) for s, score in zip(bounds_s[1:-1], scores)]
    return scenes_from_cuts(cuts, round(bounds_s[-1] * fps), bounds_s[-1])


def test_merge_keeps_the_stronger_boundary():
    # a true cut at 4 s (strong) with a false one 1 s later (weak): the false one goes, the true
    # cut stays at 4 s (keeping the later boundary would have moved it to 5 s)
    sc = merge_short(_scored([0, 4, 5, 10], [40.0, 2.0]), 2.0)
    assert [(s.start_s, s.end_s) for s in sc] == [(0, 4), (4, 10)] and sc[1].score == 40.0
    # the false one first: again the weak boundary goes
    sc = merge_short(_scored([0, 4, 5, 10], [2.0, 40.0]), 2.0)
    assert [(s.start_s, s.end_s) for s in sc] == [(0, 5), (5, 10)] and sc[1].score == 40.0
    # a pair of false cuts around a true one, all inside 2 s: only the true one is left
    sc = merge_short(_scored([0, 3, 3.8, 4.6, 10], [1.0, 30.0, 0.5]), 2.0)
    assert [s.start_s for s in sc] == [0, 3.8] and sc[1].transition == "cut"


def test_split_keeps_cut_scores_and_marks_windows():
    sc = split_long(_scored([0, 2, 12], [25.0]), 4.0, 10)
    assert [s.score for s in sc] == [None, 25.0, None, None]
    assert [s.transition for s in sc] == ["start", "cut", "split", "split"]


def test_a_fade_soon_after_a_hard_cut_is_found():
    # a shot of 1.8 s between a hard cut and a fade through black: the fade's within-side span
    # (2K frames before it) holds the hard cut; before the fix that hid the fade
    # (footage p601-slow-600, and testvideo.mp4's fade at 7.5 s, which TransNetV2 marks)
    import av
    import numpy as np

    from pipeline.segment.cuts import ConfirmedCutDetector
    from pipeline.segment.stages import cut_params
    from pipeline.segment.thumbs import Thumbnailer

    rng = np.random.default_rng(5)
    # the shot before the cut far from the other two (as a cut from a bright scene): the span
    # across the cut changes more than the fade does
    shots = [np.clip(rng.normal(0, 1, (9, 16, 3)).cumsum(0).cumsum(1) * 4 + base, 0, 255)
             for base in (230, 90, 90)]
    # a 1.8 s shot; the fade's darkest frame at 114, 15 frames down and up; the clip ends 2.1 s
    # later, so no boundary whose 2K span has left the cut behind fits before the end
    fps, cut, fade, end = 30, 60, 114, 178
    thumbs = Thumbnailer(160, 90)
    det = ConfirmedCutDetector(float(fps), cut_params(SegmentConfig()))
    for i in range(end):
        shot = shots[0] if i < cut else shots[1] if i < fade else shots[2]
        gain = min(1.0, abs(i - fade) / 15)
        img = np.kron(shot, np.ones((10, 10, 1))) * gain + rng.normal(0, 2, (90, 160, 3))
        frame = av.VideoFrame.from_ndarray(np.clip(img, 0, 255).astype(np.uint8), format="rgb24")
        det.push(thumbs(frame.reformat(format="yuv420p")), i, i / fps)
    found = det.finish()
    assert [(c.frame, c.kind) for c in found if c.kind == "cut"] == [(cut, "cut")]
    assert [c.kind for c in found] == ["cut", "gradual"] and abs(found[1].frame - fade) <= 2


def _fade_out_clip(fade: bool, fps: int = 30, ramp: int = 120, black: int = 151, end: int = 178):
    """Cuts of a still shot that (fade) fades to black over frames ramp..black and stays black
    to the end (0.9 s), like testvideo.mp4's last second; without `fade` the shot just goes on."""
    import av
    import numpy as np

    from pipeline.segment.cuts import ConfirmedCutDetector
    from pipeline.segment.stages import cut_params
    from pipeline.segment.thumbs import Thumbnailer

    rng = np.random.default_rng(11)
    shot = np.kron(np.clip(rng.normal(0, 1, (9, 16, 3)).cumsum(0).cumsum(1) * 4 + 120, 0, 255),
                   np.ones((10, 10, 1)))
    thumbs = Thumbnailer(160, 90)
    det = ConfirmedCutDetector(float(fps), cut_params(SegmentConfig()))
    for i in range(end):
        gain = float(np.clip((black - i) / (black - ramp), 0.1, 1.0)) if fade else 1.0
        img = shot * gain + rng.normal(0, 2, shot.shape)
        frame = av.VideoFrame.from_ndarray(np.clip(img, 0, 255).astype(np.uint8), format="rgb24")
        det.push(thumbs(frame.reformat(format="yuv420p")), i, i / fps)
    return det.finish()


def test_a_fade_out_to_a_still_end_is_found():
    # the fade's centre (frame ~135) is 1.4 s before the end: the after side's 2K span does not
    # fit; before the fix no boundary was scored there (testvideo.mp4's last fade, which
    # TransNetV2 marks)
    found = _fade_out_clip(fade=True)
    assert [c.kind for c in found] == ["gradual"] and abs(found[0].frame - 135) <= 8
    assert _fade_out_clip(fade=False) == []
