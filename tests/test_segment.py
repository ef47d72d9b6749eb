"""Synthetic tests: cuts, timestamps, pixel budget, frame bounds, rotation, damaged files."""
from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import av
import imageio_ffmpeg
import pytest
from PIL import Image

from pipeline.records import Reason, VideoTask, video_row
from pipeline.samples import SampleSpec, make_video
from pipeline.segment import MediaError, SegmentConfig, SegmentStage, segment_video
from pipeline.segment.sample import smart_resize


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("v") / "clip.mp4",
                      SampleSpec(scene_seconds=[3, 2.5, 4, 2], fps=30, width=320, height=180))


def _task(path: Path) -> VideoTask:
    return VideoTask(video_id="x", source=str(path), source_kind="local", input_index=0,
                     video_path=str(path))


@pytest.mark.parametrize("fast", [False, True])
def test_known_cuts_found(clip, fast):
    truth = json.loads(clip.with_suffix(".truth.json").read_text())
    res = segment_video(str(clip), SegmentConfig(fast=fast))
    assert [c.frame for c in res.cuts] == truth["cut_frames"]
    assert [s.start_frame for s in res.scenes] == [0, *truth["cut_frames"]]
    assert res.scenes[-1].end_frame == truth["frame_count"] == res.frame_count
    assert res.scenes[0].transition == "start"


def test_sample_timestamps_exact_and_jpeg(clip):
    res = segment_video(str(clip), SegmentConfig(sample_fps=2.0))
    assert [f.timestamp_s for f in res.frames] == pytest.approx([k / 2 for k in range(23)], abs=1e-9)
    for f in res.frames[:3]:
        img = Image.open(io.BytesIO(f.image))
        assert img.format == "JPEG" and img.size == (f.width, f.height)
        assert f.width % 28 == 0 and f.height % 28 == 0
    # frames carry their scene: scene 1 starts at 3.0 s
    assert [f.scene_index for f in res.frames[5:8]] == [0, 1, 1]


def test_pixel_budget_and_max_frames(clip):
    cfg = SegmentConfig(sample_fps=30, max_frames=10, min_pixels=28 * 28, max_pixels=112 * 84)
    res = segment_video(str(clip), cfg)
    assert len(res.frames) <= 10
    assert all(f.width * f.height <= cfg.max_pixels for f in res.frames)
    gaps = [b.timestamp_s - a.timestamp_s for a, b in zip(res.frames, res.frames[1:])]
    assert max(gaps) - min(gaps) < 0.1  # uniform


def test_max_frames_without_duration_decimates(clip, monkeypatch):
    from pipeline.segment import sample
    from pipeline.segment.decode import DecodedFrame  # noqa: F401
    s = sample.FrameSampler(SegmentConfig(sample_fps=10, max_frames=8), 320, 180, 0, None)

    class F:  # minimal DecodedFrame stand-in
        def __init__(self, t):
            self.seconds, self.number = t, int(t * 30)
            self.frame = av.VideoFrame(320, 180, "yuv420p")

    for k in range(300):
        s.push(F(k / 30))
    assert len(s.frames) <= 8
    ts = [f.timestamp_s for f in s.frames]
    assert ts[0] == 0 and ts[-1] > 7


def test_smart_resize():
    assert smart_resize(1080, 1920, 28, 4 * 28 * 28, 256 * 28 * 28) == (336, 588)
    h, w = smart_resize(50, 30, 28, 16 * 28 * 28, 256 * 28 * 28)
    assert h * w >= 16 * 28 * 28 and h % 28 == 0 and w % 28 == 0


def test_portrait_odd_size(tmp_path):
    p = make_video(tmp_path / "p.mp4", SampleSpec(scene_seconds=[2, 2], fps=24, width=182, height=322))
    res = segment_video(str(p))
    assert (res.width, res.height) == (182, 322)
    assert [c.frame for c in res.cuts] == [48]
    assert res.frames[0].height > res.frames[0].width


def test_rotation_metadata(clip, tmp_path):
    out = tmp_path / "rot.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-display_rotation", "90",
                    "-i", str(clip), "-c", "copy", str(out)], check=True)
    res = segment_video(str(out))
    assert res.rotation in (90, 270)
    assert (res.width, res.height) == (180, 320)
    f = res.frames[0]
    assert f.height > f.width and Image.open(io.BytesIO(f.image)).size == (f.width, f.height)


def test_truncated_file_rejected(clip, tmp_path):
    bad = tmp_path / "trunc.mp4"
    bad.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    task = SegmentStage().process(_task(bad))
    assert task.rejected and task.reject_reason == Reason.corrupt_media.value and not task.frames


def test_random_bytes_and_audio_only(tmp_path):
    from pipeline.samples import make_audio_only
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00garbage" * 4096)
    with pytest.raises(MediaError) as e:
        segment_video(str(junk))
    assert e.value.reason == "corrupt_media"
    lyrics = tmp_path / "lyrics.mp4"  # FFmpeg opens it (LRC, one text stream): still not media
    lyrics.write_bytes(b"[00:01.00]hello\n[00:02.50]world\n")
    assert SegmentStage().process(_task(lyrics)).reject_reason == "corrupt_media"
    task = SegmentStage().process(_task(make_audio_only(tmp_path / "a.mp4")))
    assert task.reject_reason == "no_video_stream"


def test_corrupt_packets_mid_stream(clip, tmp_path):
    data = bytearray(clip.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 3000] = bytes((i * 37) % 256 for i in range(3000))
    bad = tmp_path / "mid.mp4"
    bad.write_bytes(bytes(data))
    res = segment_video(str(bad))  # recovers: most frames still decode
    assert res.frame_count > 0.8 * 345
    # the damage is counted, independently of our decode: an ffmpeg binary decode of the same file
    # reports errors and returns fewer frames than the clean file has
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    out = subprocess.run([ffmpeg, "-v", "error", "-i", str(bad), "-f", "null", "-"], capture_output=True, text=True)
    assert out.stderr.strip(), "the corruption should make FFmpeg itself complain"
    damaged = res.stats["decode_errors"] + res.stats["corrupt_frames"]
    assert damaged > 0 and res.stats["lost_frames"] == 345 - res.frame_count > 0
    # by default (1 %) this much damage rejects the video, with the counts on the rejected row
    task = SegmentStage().process(_task(bad))
    assert task.reject_reason == "decode_error" and f"{damaged} of " in task.reject_message
    assert task.decode_errors == damaged and task.lost_frames == 345 - res.frame_count
    # a looser budget accepts it, and the accepted row still says how much was damaged
    lenient = SegmentStage(SegmentConfig(max_decode_error_ratio=0.5)).process(_task(bad))
    assert not lenient.rejected and lenient.decode_errors == damaged
    row = video_row(lenient.accept())
    assert row["decode_errors"] == damaged and row["lost_frames"] == task.lost_frames
    clean = SegmentStage().process(_task(clip))
    assert not clean.rejected and clean.decode_errors == 0 and clean.lost_frames == 0


def test_stage_fills_task(clip):
    task = SegmentStage(SegmentConfig(sample_fps=1)).process(_task(clip))
    assert not task.rejected and len(task.scenes) == 4 and len(task.frames) == 12
    assert task.width == 320 and task.fps == 30 and task.frame_count == 345
    assert task.duration_s == pytest.approx(11.5)


@pytest.mark.parametrize("rotate", [0, 90])
@pytest.mark.parametrize("max_pixels", [256 * 28 * 28, 56 * 84])  # mild resize; 3x downscale
def test_sampled_frames_match_swscale_pictures(clip, tmp_path, rotate, max_pixels):
    """The plane-scaled frames show what swscale's scale + convert shows, in display orientation."""
    import numpy as np
    from av.video.reformatter import VideoReformatter

    from pipeline.segment.decode import DecodeStats, iter_frames, open_video
    from pipeline.segment.sample import FrameSampler

    path = clip
    if rotate:
        path = tmp_path / "rot.mp4"
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-display_rotation",
                        str(rotate), "-i", str(clip), "-c", "copy", str(path)], check=True)
    cfg = SegmentConfig(sample_fps=1.0, max_pixels=max_pixels, min_pixels=28 * 28)
    container, stream, info = open_video(str(path))
    frames = list(iter_frames(container, stream, info, DecodeStats()))
    container.close()
    sampler = FrameSampler(cfg, info.width, info.height, info.rotation, info.duration_s)
    assert sampler.rotation == rotate % 360 or (rotate and sampler.rotation == 360 - rotate)
    ref = VideoReformatter()
    for df in frames[::40]:
        got = sampler._encode(df)
        w, h = (got.height, got.width) if sampler.rotation in (90, 270) else (got.width, got.height)
        want = Image.fromarray(ref.reformat(df.frame, width=w, height=h, format="rgb24",
                                            interpolation="AREA").to_ndarray())
        img = np.asarray(Image.open(io.BytesIO(got.image)).convert("RGB"), np.float32)
        right = np.asarray(want.rotate(sampler.rotation, expand=True), np.float32)
        assert img.shape == right.shape
        # conversion coefficients, rounding and JPEG: ~2 levels of 255 (3-4 on a 28 px wide frame)
        assert np.abs(img - right).mean() < 6.0
        if sampler.rotation:  # the test tells orientations apart
            wrong = np.asarray(want.rotate(sampler.rotation + 180, expand=True), np.float32)
            assert np.abs(img - wrong).mean() > 4 * np.abs(img - right).mean()


def test_plane_scaler_odd_sizes_crop_to_the_asked_size(clip):
    import cv2
    import numpy as np

    from pipeline.segment.planes import PlaneScaler

    with av.open(str(clip)) as c:
        frame = next(c.decode(video=0))
    for w, h, antialias in ((101, 57, False), (33, 19, True)):
        img = PlaneScaler(w, h, cv2.COLOR_YUV2BGR_I420, antialias=antialias)(frame)
        assert img.shape == (h, w, 3) and img.flags.c_contiguous
        ref = frame.reformat(width=w, height=h, format="bgr24", interpolation="AREA").to_ndarray()
        assert np.abs(img.astype(np.float32) - ref).mean() < 6.0
