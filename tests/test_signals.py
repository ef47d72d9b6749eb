"""Content signals of the one decode, and the filters on them: still, black, bars, slides."""
from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.filter.config import FilterConfig
from pipeline.filter.stages import FilterStage
from pipeline.footage import Encode, FootageSpec, encode_frames, footage_frames
from pipeline.records import VideoTask
from pipeline.segment import SegmentConfig, segment_video
from pipeline.segment.phash import hamming, phash

W, H, FPS, SECONDS = 320, 180, 24, 6
ENC = Encode("veryfast", 500, 750, 1000)


def _footage(seed: int) -> list[np.ndarray]:
    spec = FootageSpec(seconds=SECONDS, seed=seed, fps=FPS, width=W, height=H, mean_scene_s=1.6, flash_share=0,
                       fade_share=0, dissolve_share=0)
    return list(footage_frames(spec))


def _slides() -> list[np.ndarray]:
    out = []
    for k in range(2):
        img = np.full((H, W, 3), (245, 245, 240), np.uint8)
        cv2.putText(img, f"Part {k + 1}: results", (12, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (20, 20, 20), 2)
        for i in range(5):
            cv2.putText(img, f"- point {i} of the talk, in words", (20, 60 + 22 * i), cv2.FONT_HERSHEY_SIMPLEX,
                        0.4, (30, 30, 30), 1)
        out += [img] * (SECONDS * FPS // 2)
    return out


def _boxed(frames: list[np.ndarray], top: int = 0, side: int = 0) -> list[np.ndarray]:
    out = []
    for f in frames:
        g = np.zeros_like(f)
        g[top:H - top, side:W - side] = cv2.resize(f, (W - 2 * side, H - 2 * top))
        out.append(g)
    return out


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("signals")
    rng = np.random.default_rng(0)
    foot = _footage(41)
    still = [foot[10]] * len(foot)
    black = [np.clip(rng.normal(16, 1.5, (H, W, 3)), 0, 255).astype(np.uint8)] * len(foot)
    made = {"footage": foot, "still": still, "black": black, "slides": _slides(),
            "letterbox": _boxed(_footage(42), top=24), "pillarbox": _boxed(_footage(43), side=40)}
    out = {}
    for name, frames in made.items():
        out[name] = root / f"{name}.mp4"
        encode_frames(out[name], iter(frames), FPS, W, H, ENC)
    return out


@pytest.fixture(scope="module")
def measured(videos) -> dict:
    return {name: segment_video(str(p), SegmentConfig(sample_fps=0.5)) for name, p in videos.items()}


def test_motion_and_stillness(measured):
    foot, still = measured["footage"].signals, measured["still"].signals
    assert foot.motion > 1.0 and foot.static_share < 0.1
    assert still.motion < 0.5 and still.static_share >= 0.99
    assert foot.black_share == 0 and foot.letterbox == 0 and foot.pillarbox == 0


def test_black_and_blank(measured):
    black = measured["black"].signals
    assert black.black_share >= 0.99 and black.blank_share >= 0.99
    assert black.signature == []  # nothing to fingerprint in a black screen
    assert measured["footage"].signals.blank_share < 0.05


def test_letterbox_and_pillarbox(measured):
    lb, pb = measured["letterbox"].signals, measured["pillarbox"].signals
    assert lb.letterbox == pytest.approx(48 / H, abs=0.03) and lb.pillarbox == 0
    assert pb.pillarbox == pytest.approx(80 / W, abs=0.03) and pb.letterbox == 0


def test_text_screen_score(measured):
    slides = measured["slides"].signals
    assert slides.text_score >= 0.7
    for name in ("footage", "letterbox", "pillarbox", "still"):
        assert measured[name].signals.text_score < 0.3, name


def test_scene_hashes_and_motion(measured):
    res = measured["footage"]
    assert len(res.scenes) >= 2
    for sc in res.scenes:
        assert sc.phash is not None and len(sc.phash) == 16 and int(sc.phash, 16) >= 0
        assert sc.motion is not None and sc.motion > 0
    assert res.scenes[0].phash != res.scenes[1].phash
    assert 0 < len(res.signals.signature) <= 48


def _task(name: str, res) -> VideoTask:
    task = VideoTask(video_id=name, source=name, source_kind="local", input_index=0)
    task.signals = res.signals
    return task


def test_default_filters_reject_only_degenerate_videos(measured):
    stage = FilterStage(FilterConfig())
    out = {name: stage.process(_task(name, res)) for name, res in measured.items()}
    assert out["still"].reject_reason == "static_video"
    assert out["black"].reject_reason == "mostly_black"
    assert out["slides"].reject_reason == "static_video"  # two slides, nothing else moves: a still picture
    assert {n for n, t in out.items() if t.rejected} == {"still", "black", "slides"}
    assert "static_share 1.000 >= 0.99" in out["still"].reject_message


def test_configured_filters_each_give_their_reason(measured):
    stage = FilterStage(FilterConfig(slideshow=0.7, low_motion=0.5, letterboxed=0.2))
    out = {name: stage.process(_task(name, res)).reject_reason for name, res in measured.items()}
    assert out == {"footage": None, "still": "static_video", "black": "mostly_black", "slides": "slideshow",
                   "letterbox": "letterboxed", "pillarbox": "letterboxed"}
    assert FilterStage(FilterConfig(static_video=None, low_motion=0.5)).process(
        _task("still", measured["still"])).reject_reason == "low_motion"


def test_phash_survives_rescale_and_recompression():
    from PIL import Image

    frames = _footage(44)
    a, b = frames[5], frames[-5]
    gray = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(gray, (W // 2, H // 2), interpolation=cv2.INTER_AREA)
    buf = io.BytesIO()
    Image.fromarray(small).save(buf, format="JPEG", quality=30)
    again = np.asarray(Image.open(buf))
    h0, h1 = phash(gray), phash(again)
    assert hamming(h0, h1) <= 6
    assert hamming(h0, phash(cv2.cvtColor(b, cv2.COLOR_RGB2GRAY))) >= 16
    assert phash(np.full((90, 160), 128, np.uint8)) is None  # a flat picture has no hash


@pytest.mark.parametrize("pix_fmt", ["yuv444p", "yuv420p10le"])
def test_other_pixel_formats_measure_the_same(videos, tmp_path, pix_fmt):
    # not planar 4:2:0: swscale makes the thumbnails; cuts and hashes agree with the 4:2:0 file
    import av

    frames = _footage(41)
    path = tmp_path / f"{pix_fmt}.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, pix_fmt
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    ref = segment_video(str(videos["footage"]), SegmentConfig(sample_fps=0.5))
    got = segment_video(str(path), SegmentConfig(sample_fps=0.5))
    assert [c.frame for c in got.cuts] == [c.frame for c in ref.cuts]
    assert all(hamming(int(a.phash, 16), int(b.phash, 16)) <= 8 for a, b in zip(got.scenes, ref.scenes))
    assert got.signals.motion == pytest.approx(ref.signals.motion, rel=0.3)


@pytest.mark.parametrize("pix_fmt", ["yuv444p", "yuv422p", "yuv420p10le", "rgb24"])
def test_every_pixel_format_gives_whole_histograms(pix_fmt):
    # Y, U and V each count every thumbnail pixel once (each part sums to 1), and the colours are
    # the 4:2:0 frame's: through swscale the chroma was left at a quarter of the luma's pixels
    import av

    from pipeline.segment.thumbs import HIST_BINS, Thumbnailer

    rng = np.random.default_rng(7)
    rgb = np.clip(rng.normal(0, 1, (360, 640, 3)).cumsum(0).cumsum(1) * 2 + 128, 0, 255).astype(np.uint8)
    rgb[:, 320:, 0] = 230  # a red half: colour the chroma histograms must see
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
    ref = Thumbnailer(640, 360)(frame.reformat(format="yuv420p")).hist
    got = Thumbnailer(640, 360)(frame if pix_fmt == "rgb24" else frame.reformat(format=pix_fmt)).hist
    edges = np.cumsum([0, *HIST_BINS])
    for a, b in zip(edges[:-1], edges[1:]):
        assert got[a:b].sum() == pytest.approx(1.0, abs=1e-3) and ref[a:b].sum() == pytest.approx(1.0, abs=1e-3)
    assert np.abs(got - ref).sum() < 0.15  # the same picture: histograms close (scaling differs)


@pytest.mark.parametrize("size", [(640, 360), (1920, 1080), (1280, 544), (362, 640), (170, 96), (641, 361)])
def test_stacked_thumbnails_are_the_planes_halved_one_by_one(size):
    # the Y/U/V planes are halved as one stacked image where a level's halving is exact (one
    # resize call instead of three); every pixel must be what halving each plane alone gives,
    # also where a level is not an exact halving (1080p: 135 -> 67 rows) or sides are odd
    import av

    from pipeline.segment.planes import yuv420_planes
    from pipeline.segment.thumbs import _SOFT, Thumbnailer, _halvings

    w, h = size
    rng = np.random.default_rng(w * h)
    rgb = np.clip(rng.normal(0, 1, (h, w, 3)).cumsum(0).cumsum(1) * 3 + 128 + rng.normal(0, 20, (h, w, 3)), 0, 255)
    frame = av.VideoFrame.from_ndarray(rgb.astype(np.uint8), format="rgb24").reformat(format="yuv420p")
    thumbs = Thumbnailer(w, h)
    for _ in range(2):  # the second call reuses the buffers
        got = thumbs(frame)
    want = []
    for plane in yuv420_planes(frame):
        for step in _halvings(plane.shape, thumbs.size):
            plane = cv2.resize(plane, step, interpolation=cv2.INTER_AREA)
        want.append(plane)
    for a, b in zip((got.y, got.u, got.v), want):
        assert np.array_equal(a, b)
    # the soft histogram: the 256-level counts through the block-diagonal weights, per part
    # divided by its pixels (exact sums, one rounding)
    weights = np.zeros((768, 64))
    col = 0
    for k, soft in enumerate(_SOFT):
        weights[256 * k:256 * (k + 1), col:col + soft.shape[1]] = soft
        col += soft.shape[1]
    counts = np.concatenate([np.bincount(p.ravel(), minlength=256) for p in want]).astype(np.float64)
    pixels = np.repeat([want[0].size, thumbs.chroma_size[0] * thumbs.chroma_size[1],
                        thumbs.chroma_size[0] * thumbs.chroma_size[1]], [32, 16, 16])
    assert np.array_equal(got.hist, ((counts @ weights).astype(np.float32) / pixels.astype(np.float32)))


def test_phash_median_as_before():
    # the hash of the previous implementation (partition, then ndarray.mean of positions 31-32)
    rng = np.random.default_rng(3)
    for _ in range(200):
        gray = np.clip(rng.normal(0, 1, (45, 80)).cumsum(0).cumsum(1) * rng.uniform(1, 8) + 128, 0, 255).astype(np.uint8)
        small = cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA)
        low = cv2.dct(small.astype(np.float32))[:8, :8].ravel()
        before = int.from_bytes(np.packbits(low > np.partition(low, 31)[31:33].mean()).tobytes(), "big")
        assert phash(gray) == before
