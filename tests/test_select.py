"""Selection: duration bounds, scene bounds, max_scenes, reasons."""
from __future__ import annotations

from pipeline.records import Frame, Scene, VideoTask
from pipeline.segment import SelectConfig, SelectStage


def _task(duration, scene_lengths):
    t = VideoTask(video_id="v", source="v", source_kind="local", input_index=0, duration_s=duration)
    start = 0.0
    for i, n in enumerate(scene_lengths):
        t.scenes.append(Scene(i, start, start + n, int(start * 10), int((start + n) * 10), start + n / 2))
        t.frames.append(Frame(timestamp_s=start, image=b"x", width=1, height=1, scene_index=i))
        start += n
    return t


def test_duration_bounds():
    st = SelectStage(SelectConfig(min_duration_s=60, max_duration_s=600))
    assert st.process(_task(30, [30])).reject_reason == "too_short"
    assert st.process(_task(700, [700])).reject_reason == "too_long"
    ok = st.process(_task(120, [60, 60]))
    assert not ok.rejected and len(ok.scenes) == 2


def test_scene_bounds_and_too_few():
    st = SelectStage(SelectConfig(min_duration_s=0, scene_min_s=5, scene_max_s=50, min_scenes=2))
    t = st.process(_task(100, [2, 20, 60, 18]))
    assert not t.rejected and [s.index for s in t.scenes] == [0, 1]
    assert [f.scene_index for f in t.frames] == [-1, 0, -1, 1]
    t = st.process(_task(100, [2, 90, 8]))
    assert t.reject_reason == "too_few_scenes" and t.reject_stage == "select"


def test_max_scenes_truncate_or_reject():
    t = SelectStage(SelectConfig(min_duration_s=0, max_scenes=3)).process(_task(100, [10] * 10))
    assert [s.start_s for s in t.scenes] == [0, 30, 60]
    t = SelectStage(SelectConfig(min_duration_s=0, max_scenes=3, max_scenes_action="reject")).process(
        _task(100, [10] * 10))
    assert t.reject_reason == "too_long"
