"""Accuracy on real clips: PySceneDetect goldens, Data-Juicer counts, video2dataset cuts.

The goldens are PySceneDetect's own output, so they are checked in its compatibility mode
(`detector` content / adaptive); the default confirmed detector is checked where the expected
cuts are real shot changes (goldeneye's, TransitionDetect's)."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.segment import SegmentConfig, segment_video
from tests.helpers import REAL_VIDEOS as REAL
from tests.helpers import needs_real_videos
PATHS = [False, True]  # default path, fast path


def cuts(path: Path, **kw) -> list[int]:
    return [c.frame for c in segment_video(str(path), SegmentConfig(**kw)).cuts]


def within_one(found: list[int], expected: list[int]) -> bool:
    return len(found) == len(expected) and all(abs(a - b) <= 1 for a, b in zip(found, expected))


@needs_real_videos
@pytest.mark.parametrize("fast", PATHS)
@pytest.mark.parametrize("video,detector,expected", [
    ("testvideo.mp4", "content", [30, 180, 394]),
    ("testvideo.mp4", "adaptive", [30, 180, 394, 691]),
    ("goldeneye-vfr-drop3.mp4", "content", [90, 210]),
    ("goldeneye-vfr-drop3.mp4", "adaptive", [90, 210]),
])
def test_pyscenedetect_goldens(video, detector, expected, fast):
    found = cuts(REAL / "pyscenedetect" / video, detector=detector, fast=fast)
    assert within_one(found, expected), found


@needs_real_videos
@pytest.mark.parametrize("detector,fast", [("content", False), ("content", True), ("confirmed", False)])
def test_vfr_cut_seconds(detector, fast):
    res = segment_video(str(REAL / "pyscenedetect" / "goldeneye-vfr-drop3.mp4"),
                        SegmentConfig(detector=detector, fast=fast))
    assert [round(c.seconds, 3) for c in res.cuts] == [3.754, 8.759]
    assert res.frame_count == 160


@needs_real_videos
def test_confirmed_detector_on_real_shot_changes():
    # TransitionDetect's (TransNetV2) shots of a CCTV compilation: ContentDetector adds two
    # false cuts (204, 238) in fast footage; the confirmed detector finds exactly the four
    res = segment_video(str(REAL / "transition_detect" / "demo.mp4"), SegmentConfig(sample_fps=0.5))
    assert [c.frame for c in res.cuts] == [94, 186, 265, 388]
    compat = segment_video(str(REAL / "transition_detect" / "demo.mp4"), SegmentConfig(detector="content",
                                                                                        sample_fps=0.5))
    assert [c.frame for c in compat.cuts] == [94, 186, 204, 238, 265, 388]


@needs_real_videos
@pytest.mark.parametrize("fast", PATHS)
@pytest.mark.parametrize("detector,threshold,counts", [
    ("content", 27.0, {"video1": 3, "video2": 1, "video3": 2}),
    ("adaptive", 3.0, {"video1": 3, "video2": 1, "video3": 8}),
])
def test_data_juicer_scene_counts(detector, threshold, counts, fast):
    for name, n in counts.items():
        res = segment_video(str(REAL / "data_juicer" / f"{name}.mp4"),
                            SegmentConfig(detector=detector, threshold=threshold, min_scene_len=15, fast=fast))
        assert len(res.scenes) == n, (name, [c.frame for c in res.cuts])


@needs_real_videos
@pytest.mark.parametrize("fast", PATHS)
def test_video2dataset_expectations(fast):
    # CutDetectionSubsampler: ContentDetector(5, 15), downscale = width // 64 = 30
    res = segment_video(str(REAL / "video2dataset" / "test_video.mp4"),
                        SegmentConfig(detector="content", threshold=5.0, min_scene_len=15, analysis_downscale=30,
                                      fast=fast, sample_fps=0.25))
    assert within_one([c.frame for c in res.cuts], [2096, 2698, 2785, 3015])
    assert (res.scenes[0].start_frame, res.scenes[0].end_frame) == (0, 2096) or \
        abs(res.scenes[0].end_frame - 2096) <= 1
    assert res.scenes[-1].end_frame == 3678


def _scores(path: Path, **kw) -> tuple[list[float], object]:
    from pipeline.segment.decode import DecodeStats, iter_frames, open_video
    from pipeline.segment.detect import SceneAnalyzer

    container, stream, info = open_video(str(path))
    an = SceneAnalyzer(SegmentConfig(detector="content", **kw), info.width, info.height, info.rate)
    out = []
    for df in iter_frames(container, stream, info, DecodeStats()):
        an.push(df)
        out.append(an.detector._frame_score)
    container.close()
    return out, an


@needs_real_videos
def test_refined_scores_are_pyscenedetects():
    # 640x360 -> factor 2.5 -> planes; every score near or above the threshold is re-scored on
    # exact pixels and must equal PySceneDetect's own path bit for bit
    demo = REAL / "transition_detect" / "demo.mp4"
    exact, _ = _scores(demo, analysis_method="exact")
    approx, an = _scores(demo)
    assert not an._exact_maker and an.refined > 0
    near = [i for i, s in enumerate(approx) if s >= 27.0 - 8.0]
    assert near and all(approx[i] == exact[i] for i in near)
    unrefined, _ = _scores(demo, refine_margin=0)
    assert any(unrefined[i] != exact[i] for i in near)  # the refinement did something


def test_content_score_matches_scenedetect():
    # our faster score (absdiff + sumElems distances, skipped recomputation of reused frames) equals
    # scenedetect's ContentDetector on the same images
    import numpy as np
    from scenedetect import ContentDetector

    from pipeline.segment.detect import _Content

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)
    imgs = [np.clip(base.astype(int) + rng.integers(-40, 40, base.shape), 0, 255).astype(np.uint8)
            for _ in range(6)]
    imgs.insert(3, imgs[2])  # an unchanged frame
    ours, ref = _Content(), ContentDetector()
    for k, img in enumerate(imgs):
        ours.unchanged = k == 3
        assert ours._calculate_frame_score(None, img) == ref._calculate_frame_score(None, img)


def test_content_score_with_edges_and_reused_buffers_matches_scenedetect():
    # absdiff + sumElems on two alternating HSV buffers, with the edge term on: scores equal
    # scenedetect's for a long run (a buffer overwritten too early would show up as a mismatch)
    import numpy as np
    from scenedetect import ContentDetector

    from pipeline.segment.detect import _Content

    rng = np.random.default_rng(1)
    weights = ContentDetector.Components(1.0, 0.5, 1.0, 0.25)
    ours, ref = _Content(weights=weights), ContentDetector(weights=weights)
    for k in range(12):
        img = rng.integers(0, 256, (72, 128, 3), dtype=np.uint8)
        if k % 4 == 3:
            img[:36] = 0  # partly identical content across frames
        assert ours._calculate_frame_score(None, img) == ref._calculate_frame_score(None, img)


def test_frame_seconds_equal_fraction_arithmetic():
    # iter_frames computes seconds as rel * num / den (int / int, correctly rounded): the same
    # float as float(Fraction(rel) * time_base) for awkward time bases and large PTS
    from fractions import Fraction

    for tb in (Fraction(1, 90000), Fraction(1001, 30000), Fraction(1, 15360), Fraction(7, 3)):
        for rel in (0, 1, 12345, 3003 * 99991, 2**40 + 17):
            assert rel * tb.numerator / tb.denominator == float(rel * tb)


@needs_real_videos
def test_confirmed_detector_finds_testvideo_fades():
    # two hard cuts and five fades (TransNetV2's seven boundaries on this clip); the last fade,
    # out to black 1.4 s before the end, needs the still-end stand-in (cuts.py END_STILL)
    res = segment_video(str(REAL / "pyscenedetect" / "testvideo.mp4"), SegmentConfig(signals=False))
    assert [c.kind for c in res.cuts] == ["cut", "cut"] + ["gradual"] * 5
    assert within_one([c.frame for c in res.cuts], [30, 180, 224, 336, 416, 545, 675])
