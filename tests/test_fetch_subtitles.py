"""Subtitles come after the video, on their own budget, and never fail it (real yt-dlp, local origin)."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from pipeline.acquire.config import FetchConfig
from pipeline.acquire.limiter import IdentityBudget, LimiterSpec, LocalLimiter, Throttle
from pipeline.acquire.stages import FetchStage
from pipeline.acquire.subtitles import fetch_subtitles
from pipeline.acquire.ytdlp_options import build_params, metered_ydl
from pipeline.records import VideoTask
from pipeline.samples import SampleSpec, make_video
from tests.acquire_server import MediaServer, Route

VTT = "WEBVTT\n\n00:00.000 --> 00:01.000\nhello there\n"


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("media") / "ok.mp4", SampleSpec([1.5, 1.5], fps=10, width=160, height=96))


def test_a_subtitle_429_benches_subtitles_only_and_the_videos_are_accepted(media, tmp_path):
    bench_s = 0.6
    with MediaServer() as srv:
        for vid in ("subsok00001", "subs429_001", "subsskip001", "subsback001"):
            srv.add_video(vid, media, subtitles={"en": VTT})  # a Video.js page with an English track
        srv.routes["/subs/subs429_001.en.vtt"] = Route(text=VTT, fail_first=5, fail_status=429)
        cfg = FetchConfig(cache_dir=str(tmp_path / "cache"), url_template=srv.watch_template(), min_duration_s=2.0,
                          subtitle_langs=["en"], ytdlp_retries=0, socket_timeout_s=5,
                          limits={"requests_per_hour": None, "downloads_per_hour": None,
                                  "subtitle_requests_per_hour": None, "bench_s": bench_s, "bench_max_s": bench_s})
        stage = FetchStage(cfg)
        # the limiter's own clock, moved by the test: "within the bench" must not depend on how
        # fast a loaded machine fetches (with the wall clock this failed under load)
        now = [time.monotonic()]
        stage.bind_limiter(LocalLimiter(stage.limiter_spec(), clock=lambda: now[0]))
        stage.setup()

        def fetch(vid: str) -> VideoTask:
            return stage.process(VideoTask(vid, vid, "youtube", 0))

        ok = fetch("subsok00001")
        failed = fetch("subs429_001")
        skipped = fetch("subsskip001")  # within the subtitle bench: not even asked for
        now[0] += bench_s + 0.01  # the bench is over
        back = fetch("subsback001")
        subtitle_hits = {p: n for p, n in srv.hits.items() if p.startswith("/subs/")}

    for task in (ok, failed, skipped, back):
        assert task.status == "accepted", (task.video_id, task.reject_message)
    assert ok.subtitle_langs == ["en"] and Path(ok.subtitle_paths[0]).read_text() == VTT
    assert failed.subtitle_langs == [] and failed.subtitle_errors[0].startswith("en: rate_limited")
    assert not list(Path(failed.video_path).parent.glob("subs429_001.*vtt*"))  # no partial file left
    assert skipped.subtitle_langs == [] and skipped.subtitle_errors[0].startswith("en: skipped")
    assert "/subs/subsskip001.en.vtt" not in subtitle_hits
    assert back.subtitle_langs == ["en"]
    stats = stage.limiter_stats()
    assert stats["counts"]["subtitle_rate_limited"] == 1 and stats["counts"]["subtitles_skipped"] == 1
    assert "benched" not in stats["counts"] and stats["paused_s"] == 0.0  # videos never waited for subtitles


def test_subtitles_are_impersonated_where_yt_dlp_asks(tmp_path):
    """YouTube's subtitle entries carry `impersonate: True`; curl_cffi then sends them as a browser."""
    spec = LimiterSpec((IdentityBudget("default"),))
    throttle = Throttle(LocalLimiter(spec), max_pause_s=1.0)
    lease = throttle.lease()
    with MediaServer() as srv:
        srv.add("/subs/a.en.vtt", Route(text=VTT))
        srv.add("/subs/a.de.vtt", Route(text=VTT))
        info = {"requested_subtitles": {
            "en": {"url": srv.base + "/subs/a.en.vtt", "ext": "vtt", "impersonate": True},
            "de": {"url": srv.base + "/subs/a.de.vtt", "ext": "vtt"}}}
        params = build_params(FetchConfig(cache_dir=str(tmp_path)), tmp_path, "abcdefghijk")
        with metered_ydl(params) as ydl:
            errors = fetch_subtitles(ydl, info, tmp_path, "abcdefghijk", throttle, lease)
        hits = {h.path: h for h in srv.log}
    assert errors == {}
    assert (tmp_path / "abcdefghijk.en.vtt").read_text() == VTT
    assert hits["/subs/a.en.vtt"].impersonated and not hits["/subs/a.de.vtt"].impersonated
