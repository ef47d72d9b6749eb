"""FetchStage end to end: real yt-dlp against a local origin serving generated media."""
from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from tests.acquire_server import FAST_LIMITS, MediaServer, Route, faststart
from pipeline.acquire.config import FetchConfig, InputConfig
from pipeline.acquire.ingest import read_inputs
from pipeline.acquire.stages import FetchStage
from pipeline.records import Reason, VideoTask
from pipeline.samples import SampleSpec, make_audio_only, make_video

SPEC = dict(fps=10, width=160, height=96)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("media")
    ok = make_video(d / "ok.mp4", SampleSpec([1.5, 1.5], **SPEC))
    fast = faststart(ok, d / "ok_fast.mp4")
    data = fast.read_bytes()
    (d / "cut.mp4").write_bytes(data[: int(len(data) * 0.6)])  # header intact, tail missing
    (d / "random.mp4").write_bytes(random.Random(7).randbytes(40_000))  # seeded: noise FFmpeg cannot open
    # 1 in ~300 noise files FFmpeg *does* open, as LRC lyrics with one text stream; such a
    # "container" without audio or video is not media (corrupt_media), not an audio file.
    (d / "lyrics.mp4").write_bytes(b"[ar:x]\n[00:01.00]hello\n[00:02.50]world\n")
    return {
        "ok": ok, "fast": fast, "cut": d / "cut.mp4", "random": d / "random.mp4", "lyrics": d / "lyrics.mp4",
        "short": make_video(d / "short.mp4", SampleSpec([1.0], **SPEC)),
        "long": make_video(d / "long.mp4", SampleSpec([4.0, 4.0], **SPEC)),
        "audio": make_audio_only(d / "audio.mp4", seconds=3.0),
    }


# 11-character IDs, so the ID -> url_template path (source_kind youtube) is exercised.
CASES = {
    "okvideo0001": (lambda m: Route(file=m["ok"]), None),
    "okfaststart": (lambda m: Route(file=m["fast"]), None),
    "flaky500000": (lambda m: Route(file=m["ok"], fail_first=1, fail_status=500), None),
    "missing0404": (None, Reason.unavailable),
    "truncated01": (lambda m: Route(file=m["cut"]), Reason.corrupt_media),
    "shortbody01": (lambda m: Route(file=m["fast"], short_body=True), Reason.network),
    "randombytes": (lambda m: Route(file=m["random"]), Reason.corrupt_media),
    "lyricsfile1": (lambda m: Route(file=m["lyrics"]), Reason.corrupt_media),
    "audioonly01": (lambda m: Route(file=m["audio"]), Reason.no_video_stream),
    "ratelimit29": (lambda m: Route(status=429), Reason.rate_limited),
    "forbidden03": (lambda m: Route(status=403), Reason.forbidden),
    "tooshort001": (lambda m: Route(file=m["short"]), Reason.too_short),
    "toolong0001": (lambda m: Route(file=m["long"]), Reason.too_long),
}


@pytest.fixture()
def server(media):
    with MediaServer() as srv:
        for vid, (make, _) in CASES.items():
            if make is not None:
                srv.add(f"/v/{vid}.mp4", make(media))
        yield srv


def _stage(srv: MediaServer, cache: Path, sleeps: list[float] | None = None, **kw) -> FetchStage:
    kw.setdefault("limits", FAST_LIMITS)
    cfg = FetchConfig(cache_dir=str(cache), url_template=srv.url_template(), min_duration_s=2.0,
                      max_duration_s=6.0, retries=2, backoff_s=0.01, ytdlp_retries=0,
                      socket_timeout_s=5, **kw)
    stage = FetchStage(cfg, sleep=(sleeps.append if sleeps is not None else (lambda s: None)))
    stage.setup()
    return stage


def test_every_input_ends_in_the_right_row(server, tmp_path, media):
    local_ok = media["ok"]
    items = list(CASES) + ["not a video id!", "https://www.youtube.com/watch?v=okvideo0001",
                           str(local_ok), str(tmp_path / "nope.mp4")]
    ingest = read_inputs(InputConfig(items=items))
    assert ingest.duplicates == 1  # the watch URL folds into okvideo0001
    sleeps: list[float] = []
    stage = _stage(server, tmp_path / "cache", sleeps)
    done = [stage.process(t) for t in ingest.tasks]
    by_id = {t.video_id: t for t in done}

    for vid, (_, reason) in CASES.items():
        t = by_id[vid]
        if reason is None:
            assert t.status == "accepted", (vid, t.reject_reason, t.reject_message)
            assert Path(t.video_path).is_file() and t.video_path.startswith(str(tmp_path / "cache"))
            assert (t.width, t.height, t.fps, t.frame_count, t.codec) == (160, 96, 10.0, 30, "h264")
            assert t.duration_s == pytest.approx(3.0, abs=0.1)
            assert t.info_json_path and Path(t.info_json_path).is_file()
        else:
            assert (t.status, t.reject_reason) == ("rejected", reason.value), (vid, t.reject_message)
            assert t.reject_stage == "fetch" and t.reject_message
    assert "429" in by_id["ratelimit29"].reject_message  # the original yt-dlp text is kept
    assert server.hits["/v/ratelimit29.mp4"] == 3  # 1 + 2 retries, each after the identity's bench
    from pipeline.records import TRANSIENT_REASONS

    assert Reason(by_id["ratelimit29"].reject_reason) in TRANSIENT_REASONS  # retried by the next run
    assert server.hits["/v/forbidden03.mp4"] == 1  # permanent: never retried
    assert server.hits["/v/missing0404.mp4"] == 1
    # exponential backoff for network failures: flaky500000 once, shortbody01 twice
    assert sleeps == [0.01, 0.01, 0.02]
    assert stage.limiter_stats()["counts"]["rate_limited"] == 3
    assert server.hits["/v/flaky500000.mp4"] >= 2

    bad = [t for t in done if t.source_kind == "invalid"]
    assert [t.reject_reason for t in bad] == ["bad_id"]
    local = [t for t in done if t.source_kind == "local"]
    assert [t.status for t in local] == ["accepted", "rejected"]
    assert local[0].video_path == str(local_ok)  # verified in place, no copy
    assert (local[1].reject_reason, local[1].reject_stage) == ("unavailable", "ingest")  # the driver sees none

    counts = Counter(t.status for t in done)
    assert counts["accepted"] + counts["rejected"] == len(done)
    assert len(done) + ingest.duplicates == len(items)


def test_verified_download_is_reused_without_network(server, tmp_path):
    cache = tmp_path / "cache"
    first = _stage(server, cache).process(VideoTask("okvideo0001", "okvideo0001", "youtube", 0))
    assert first.status == "accepted"
    before = server.total_hits()
    again = _stage(server, cache).process(VideoTask("okvideo0001", "okvideo0001", "youtube", 0))
    assert server.total_hits() == before
    assert again.status == "accepted"
    assert (again.video_path, again.width, again.frame_count, again.info_json_path) == (
        first.video_path, first.width, first.frame_count, first.info_json_path)
    # a changed file is not trusted: it is fetched again
    Path(first.video_path).write_bytes(Path(first.video_path).read_bytes() + b"\0")
    third = _stage(server, cache).process(VideoTask("okvideo0001", "okvideo0001", "youtube", 0))
    assert third.status == "accepted" and server.total_hits() > before


def test_cached_video_is_refiltered_by_new_bounds(server, tmp_path):
    cache = tmp_path / "cache"
    assert _stage(server, cache).process(VideoTask("okvideo0001", "x", "youtube", 0)).status == "accepted"
    tight = _stage(server, cache, ).cfg.model_copy(update={"min_duration_s": 5.0})
    t = FetchStage(tight).process(VideoTask("okvideo0001", "x", "youtube", 0))
    assert t.reject_reason == "too_short"


def test_live_streams_are_rejected_before_download(tmp_path, monkeypatch):
    stage = FetchStage(FetchConfig(cache_dir=str(tmp_path)))
    monkeypatch.setattr(stage, "_extract", lambda *a: {"live_status": "is_upcoming", "duration": None})
    monkeypatch.setattr(stage, "_download", lambda *a: pytest.fail("must not download a live stream"))
    t = stage.process(VideoTask("abcdefghijk", "abcdefghijk", "youtube", 0))
    assert (t.status, t.reject_reason) == ("rejected", "live_stream")
