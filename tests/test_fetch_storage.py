"""FetchStage with a shared fsspec store: publish after verify, restore on a fresh worker.

Real yt-dlp against the local origin (tests/acquire_server.py counts every request), and
two stores: a local directory ("local (tested)") and fsspec's in-process memory://.
"""
from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import av
import fsspec
import pytest

from pipeline.acquire.config import FetchConfig
from pipeline.acquire.stages import FetchStage
from pipeline.records import VideoTask
from pipeline.samples import SampleSpec, make_video
from tests.acquire_server import FAST_LIMITS, MediaServer, Route

VID = "okvideo0001"
META = ("title", "duration_s", "width", "height", "fps", "frame_count", "codec", "file_size")


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("media") / "ok.mp4",
                      SampleSpec([1.5, 1.5], fps=10, width=160, height=96))


@pytest.fixture()
def server(video):
    with MediaServer() as srv:
        srv.add(f"/v/{VID}.mp4", Route(file=video))
        yield srv


@pytest.fixture(params=["file-url", "path", "memory"])
def store_url(request, tmp_path):
    if request.param == "file-url":
        yield (tmp_path / "store").as_uri()
    elif request.param == "path":
        yield str(tmp_path / "store")
    else:
        url = f"memory://store-{uuid.uuid4().hex[:8]}"
        yield url
        fs, root = fsspec.core.url_to_fs(url)
        if fs.exists(root):
            fs.rm(root, recursive=True)


def _stage(srv: MediaServer, cache: Path, store_url: str, **kw) -> FetchStage:
    kw = {"min_duration_s": 2.0, "max_duration_s": 6.0, **kw}
    cfg = FetchConfig(cache_dir=str(cache), url_template=srv.url_template(), retries=0, limits=FAST_LIMITS,
                      ytdlp_retries=0, socket_timeout_s=5, storage_url=store_url, **kw)
    stage = FetchStage(cfg, sleep=lambda s: None)
    stage.setup()
    return stage


def _fetch(stage: FetchStage) -> VideoTask:
    return stage.process(VideoTask(VID, VID, "youtube", 0))


def _stored(store_url: str) -> dict[str, int]:
    fs, root = fsspec.core.url_to_fs(store_url)
    return {Path(p).name: fs.size(p) for p in fs.find(root)}


def _decodes(path: str) -> bool:
    with av.open(path) as container:
        return next(container.decode(video=0), None) is not None


def test_publish_then_restore_without_network(server, tmp_path, store_url):
    cache = tmp_path / "cache"
    first = _fetch(_stage(server, cache, store_url))
    assert first.status == "accepted", first.reject_message
    stored = _stored(store_url)
    assert set(stored) == {f"{VID}.mp4", f"{VID}.info.json", f"{VID}.verified.json"}  # no temp leftovers
    assert stored[f"{VID}.mp4"] == first.file_size
    assert first.media_uri == f"{store_url.rstrip('/')}/{VID[:2]}/{VID}.mp4"
    assert first.media_store == store_url.rstrip("/")
    assert first.sidecar_uris == [f"{store_url.rstrip('/')}/{VID[:2]}/{VID}.info.json"]
    assert first.video_path.startswith(str(cache))  # decoding still reads the local copy

    # a fresh worker: empty local cache, different cache dir -> copied from the store
    shutil.rmtree(cache)
    hits = server.total_hits()
    other = tmp_path / "other_node"
    again = _fetch(_stage(server, other, store_url))
    assert server.total_hits() == hits  # neither the probe nor the download touched the origin
    assert again.status == "accepted"
    assert [getattr(again, k) for k in META] == [getattr(first, k) for k in META]
    assert again.video_path == str(other / VID[:2] / f"{VID}.mp4") and _decodes(again.video_path)
    assert again.info_json_path == str(other / VID[:2] / f"{VID}.info.json")
    assert Path(again.info_json_path).is_file()
    assert (again.media_uri, again.sidecar_uris) == (first.media_uri, first.sidecar_uris)

    # the restored copy is now an ordinary local cache hit
    third = _fetch(_stage(server, other, store_url))
    assert third.status == "accepted" and third.video_path == again.video_path and server.total_hits() == hits
    assert third.media_uri == first.media_uri


def test_corrupt_stored_object_is_downloaded_again(server, tmp_path, store_url):
    assert _fetch(_stage(server, tmp_path / "a", store_url)).status == "accepted"
    fs, root = fsspec.core.url_to_fs(store_url)
    key = f"{root.rstrip('/')}/{VID[:2]}/{VID}.mp4"
    good = fs.cat_file(key)
    fs.pipe_file(key, good[: len(good) // 2])  # truncated: the size no longer matches the record
    hits = server.total_hits()
    t = _fetch(_stage(server, tmp_path / "b", store_url))
    assert t.status == "accepted" and server.total_hits() > hits  # downloaded again, not restored
    assert fs.cat_file(key) == good  # the re-download repaired the store
    assert not list((tmp_path / "b").rglob("*.part-*"))


def test_same_size_corruption_fails_verification(server, tmp_path, store_url):
    assert _fetch(_stage(server, tmp_path / "a", store_url)).status == "accepted"
    fs, root = fsspec.core.url_to_fs(store_url)
    key = f"{root.rstrip('/')}/{VID[:2]}/{VID}.mp4"
    fs.pipe_file(key, bytes(len(fs.cat_file(key))))  # right size, garbage content
    hits = server.total_hits()
    t = _fetch(_stage(server, tmp_path / "b", store_url))
    assert t.status == "accepted" and server.total_hits() > hits and _decodes(t.video_path)


def test_stored_video_is_refiltered_without_transfer(server, tmp_path, store_url):
    assert _fetch(_stage(server, tmp_path / "a", store_url)).status == "accepted"
    hits = server.total_hits()
    t = _fetch(_stage(server, tmp_path / "b", store_url, min_duration_s=5.0))
    assert (t.status, t.reject_reason) == ("rejected", "too_short")
    assert t.title and server.total_hits() == hits
    assert not list((tmp_path / "b").rglob("*.mp4"))  # rejected from the record alone


def test_publish_failure_is_a_transient_reject(server, tmp_path, monkeypatch, store_url):
    """With a store configured, a row must carry the shared URI: an unpublished video is retried."""
    stage = _stage(server, tmp_path / "a", store_url)

    def broken(*a, **kw):
        raise PermissionError("read-only bucket")

    monkeypatch.setattr(stage.store, "publish", broken)
    t = _fetch(stage)
    assert (t.status, t.reject_reason) == ("rejected", "storage_error") and "read-only bucket" in t.reject_message
    from pipeline.job import RETRYABLE_REASONS

    assert "storage_error" in RETRYABLE_REASONS
    monkeypatch.undo()  # the store works again: the next run publishes from the local cache, no download
    hits = server.total_hits()
    again = _fetch(_stage(server, tmp_path / "a", store_url))
    assert again.status == "accepted" and again.media_uri and server.total_hits() == hits


def test_relative_store_path_is_under_work_dir(tmp_path):
    stage = FetchStage(FetchConfig(storage_url="shared/videos"), cache_root=tmp_path)
    assert stage.storage_url == str(tmp_path / "shared" / "videos")
    assert FetchStage(FetchConfig(storage_url="s3://b/v")).storage_url == "s3://b/v"
