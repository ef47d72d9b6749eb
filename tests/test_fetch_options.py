"""yt-dlp params come only from an allow-list; file names come only from safe IDs."""
from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from pipeline.acquire.config import FetchConfig
from pipeline.acquire.ytdlp_options import ALLOWED_KEYS, FORBIDDEN_KEYS, build_params, format_selector


def test_params_are_allow_listed_and_paths_stay_in_cache(tmp_path):
    cfg = FetchConfig(rate_limit="2M", cookies_file="~/c.txt", proxy="socks5://127.0.0.1:1080",
                      subtitle_langs=["en", "de"], sleep_interval_s=1.5)
    params = build_params(cfg, tmp_path, "abc-DEF_123")
    assert set(params) <= ALLOWED_KEYS and not set(params) & FORBIDDEN_KEYS
    assert params["ratelimit"] == 2 * 1024 ** 2 and params["sleep_interval"] == 1.5
    assert params["subtitleslangs"] == ["en", "de"] and params["writeautomaticsub"]
    assert Path(params["ffmpeg_location"]).is_file()  # imageio-ffmpeg's binary, no system ffmpeg
    for tmpl in params["outtmpl"].values():
        assert tmpl.startswith(str(tmp_path.resolve() / "ab" / "abc-DEF_123."))
        assert "%(title" not in tmpl and "%(id" not in tmpl


@pytest.mark.parametrize("vid", ["../../etc", "a/b", "", "x" * 65, "..", "a b"])
def test_unsafe_ids_never_become_paths(tmp_path, vid):
    with pytest.raises(ValueError):
        build_params(FetchConfig(), tmp_path, vid)


def test_config_rejects_unknown_keys_and_hostile_values():
    for bad in ({"exec": "rm -rf /"}, {"postprocessors": [{"key": "Exec"}]}, {"rate_limit": "1M; rm"},
                {"proxy": "file:///etc/passwd"}, {"prefer_vcodec": "avc1]+b[x"}):
        with pytest.raises(ValidationError):
            FetchConfig(**bad)


def test_format_prefers_h264_mp4_under_max_height():
    fmt = format_selector(720)
    assert fmt.startswith("bv*[height<=?720][vcodec^=avc1]+ba[ext=m4a]/") and fmt.endswith("/b")


def test_each_worker_thread_gets_its_own_private_cookie_copy(tmp_path):
    import os
    import stat
    import threading

    from pipeline.acquire.cookies import private_copy

    original = tmp_path / "acct.txt"
    original.write_text("# Netscape HTTP Cookie File\n.youtube.com\tTRUE\t/\tTRUE\t0\tSID\tv1\n")
    mine = private_copy(str(original))
    assert private_copy(str(original)) == mine and Path(mine).read_text() == original.read_text()
    assert stat.S_IMODE(os.stat(mine).st_mode) == 0o600
    other: list[str] = []
    thread = threading.Thread(target=lambda: other.append(private_copy(str(original))))
    thread.start()
    thread.join()
    assert other[0] != mine  # yt-dlp rewrites the copy after every video: never two writers on one file
    Path(mine).write_text("rewritten by yt-dlp")
    assert "SID" in original.read_text()
