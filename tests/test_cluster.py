"""A real 2-node Ray cluster whose nodes do not share work_dir (tests/cluster.py).

Good videos come from an HTTP origin on 127.0.0.1; `curate run --address` drives the
cluster as a user would. Checked the way a second node or a trainer would: the rows are
read back with `datasets`, the shared media files are opened from the store.
"""
from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

import datasets
import pytest
import yaml

from pipeline.samples import SampleSpec, make_video
from tests import helpers
from tests.acquire_server import FAST_LIMITS, MediaServer, Route
from tests.cluster import ENV, TwoNodeCluster
from tests.teacher import TeacherServer

CURATE = helpers.CURATE
GOOD = [f"goodclip{i:03d}" for i in range(8)]  # 4 media workers on 2 nodes: two rounds each
ROWS = len(GOOD) + 1  # and the corrupt clip


@pytest.fixture(scope="module")
def origin(tmp_path_factory):
    media = tmp_path_factory.mktemp("origin")
    with MediaServer() as srv:
        for i, vid in enumerate(GOOD):
            path = make_video(media / f"{vid}.mp4", SampleSpec([1.5, 1.5], fps=10, width=96, height=64, seed=i))
            srv.add(f"/v/{vid}.mp4", Route(file=path))
        (media / "junk.mp4").write_bytes(random.Random(3).randbytes(30_000))
        srv.add("/v/corruptclip.mp4", Route(file=media / "junk.mp4"))
        yield srv


def job(tmp: Path, origin: MediaServer, work: Path, **sections) -> Path:
    cfg = {"name": "cluster", "work_dir": str(work),
           "input": {"items": GOOD + ["corruptclip"]},
           "fetch": {"url_template": origin.url_template(), "min_duration_s": 1, "retries": 0,
                     "subtitle_langs": [], "socket_timeout_s": 10, "limits": FAST_LIMITS},
           "segment": {"sample_fps": 1.0},
           "select": {"min_duration_s": 1},
           "media": {"cpus_per_worker": 0.5, "min_workers": 4},  # 2 per node: the cluster's 2 CPUs
           "output": {"commit_every": 1}}
    for key, value in sections.items():
        cfg.setdefault(key, {}).update(value)
    path = tmp / f"job-{len(list(tmp.glob('job-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def curate(*args: str) -> subprocess.CompletedProcess:
    return helpers.curate(*args, "--no-progress", env=ENV, timeout=240)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cluster")
    # 1 CPU a node: the 4 media workers of 0.5 CPU need both nodes, so the media step runs on both
    with TwoNodeCluster(tmp, private_dir=tmp / "work", head_cpus=1, worker_cpus=1) as c:
        yield c, tmp


@pytest.fixture(scope="module")
def teacher():
    with TeacherServer() as server:
        yield server


def teacher_cfg(server: TeacherServer, execution: str) -> dict:
    return {"teacher": {"kind": "openai", "model": "scripted-teacher",
                        "openai": {"base_url": server.base_url, "api_key_env": None, "timeout_s": 5}},
            "qa": {"items_per_video": 4}, "execution": execution, "wave_videos": 8}


def _videos(out: Path):
    return datasets.load_dataset(str(out), "videos", split="train")


def test_shared_store_run_accepts_every_good_video_on_both_nodes(cluster, origin, teacher):
    """Passes: frames stay in keepers on the nodes that decoded them; teacher requests on any node."""
    c, tmp = cluster
    store, out = tmp / "shared-media", tmp / "out-store"
    cfg = job(tmp, origin, tmp / "work", fetch={"storage_url": str(store)}, synth=teacher_cfg(teacher, "passes"))
    run = curate("run", str(cfg), "--out", str(out), "--address", c.address)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = {r["video_id"]: r for r in _videos(out)}
    assert len(rows) == ROWS
    assert all(rows[v]["status"] == "accepted" for v in GOOD), \
        {v: (rows[v]["reject_reason"], rows[v]["reject_message"]) for v in GOOD if rows[v]["status"] != "accepted"}
    assert rows["corruptclip"]["reject_reason"] == "corrupt_media"
    # the media step ran on both nodes, and every accepted row names its shared copy, which opens
    assert len({rows[v]["media_node"] for v in GOOD}) == 2, {rows[v]["media_node"] for v in GOOD}
    import av

    for v in GOOD:
        assert rows[v]["media_store"] == str(store) and rows[v]["media_uri"].startswith(str(store))
        with av.open(rows[v]["media_uri"]) as container:
            assert container.streams.video[0].codec_context.width == 96
    # every video was captioned from its frames, wherever they were decoded
    sft = datasets.load_dataset(str(out), "sft", split="train")
    assert {r["video_id"] for r in sft if r["format"] == "description"} == set(GOOD)
    assert all(r["media_uri"] and r["messages"][-2]["content"][0]["video_url"]["url"] == r["media_uri"] for r in sft)
    # the trainer's export resolves media in the store, and its reader (decord) opens every file there
    dest = tmp / "xtuner"
    export = subprocess.run([CURATE, "export", "xtuner", str(out), str(dest)], capture_output=True, text=True,
                            env=ENV, timeout=120)
    assert export.returncode == 0, export.stdout + export.stderr
    import json

    meta = json.loads((dest / "meta.json").read_text())
    assert {m["media_root"] for m in meta.values()} == {str(store)}
    lines = [json.loads(x) for f in (dest / "annotations").glob("*.jsonl") for x in f.read_text().splitlines()]
    assert len(lines) == len(sft)
    for line in lines:
        rel = line["messages"][-2]["content"][0]["video_url"]["url"]
        assert not rel.startswith("/") and (store / rel).is_file()
    # incremental: a second run processes nothing
    again = curate("run", str(cfg), "--out", str(out), "--address", c.address)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"{ROWS} already committed" in again.stderr and "0 to process" in again.stderr


def test_node_local_media_without_a_store_fails_before_any_work(cluster, origin):
    c, tmp = cluster
    out = tmp / "out-nostore"
    hits = origin.total_hits()
    run = curate("run", str(job(tmp, origin, tmp / "work")), "--out", str(out), "--address", c.address)
    assert run.returncode == 2, run.stderr[-2000:]
    assert "fetch.storage_url" in run.stderr and "media.allow_node_local" in run.stderr
    assert not list((out / "data" / "videos").glob("2*.parquet")), "no video may be committed"
    assert origin.total_hits() == hits  # not one request to the origin


def test_node_local_media_when_allowed_works_and_says_where(cluster, origin, teacher):
    """`actors` execution: frames travel in the task from the media worker to the teacher's replica
    (a pooled task, the teacher being a served model), on any node."""
    c, tmp = cluster
    out = tmp / "out-local"
    cfg = job(tmp, origin, tmp / "work", media={"allow_node_local": True}, synth=teacher_cfg(teacher, "actors"))
    run = curate("run", str(cfg), "--out", str(out), "--address", c.address)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "WARNING" in run.stderr and "media_node" in run.stderr
    rows = {r["video_id"]: r for r in _videos(out)}
    assert sum(rows[v]["status"] == "accepted" for v in GOOD) == len(GOOD)
    assert all(rows[v]["media_uri"] is None and rows[v]["media_node"] for v in GOOD)
    sft = datasets.load_dataset(str(out), "sft", split="train")
    assert {r["video_id"] for r in sft if r["format"] == "description"} == set(GOOD)


def test_worker_node_killed_mid_run_loses_nothing(cluster, origin):
    """SIGKILL the worker node's raylet mid-run: the run finishes with every input accounted
    for, or the next run completes it; never a lost or duplicated row.

    It kills the module's cluster's worker node, so it is the module's last test (pytest runs a
    module's tests in file order); its own work_dir, store and OUT keep it apart from the others."""
    c, tmp = cluster
    tmp_path = tmp / "kill"
    tmp_path.mkdir()
    slow = MediaServer(latency_s=0.5, bandwidth_bps=40_000)  # a few seconds per video
    slow.routes, slow.hits = origin.routes, {}
    with slow:
        assert c.alive_nodes() == 2, "the worker node must be up before this test kills it"
        store, out = tmp_path / "shared-media", tmp_path / "out"
        cfg = job(tmp_path, slow, tmp / "work" / "kill", fetch={"storage_url": str(store)})
        args = [CURATE, "run", str(cfg), "--out", str(out), "--address", c.address, "--no-progress"]
        log = open(tmp_path / "run1.log", "w")
        proc = subprocess.Popen(args, env=ENV, stdout=log, stderr=subprocess.STDOUT)
        shards = out / "data" / "videos"
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None and len(list(shards.glob("2*.parquet"))) < 2:
            time.sleep(0.1)
        assert proc.poll() is None, "the run ended before the node could be killed"
        committed_before = len(list(shards.glob("2*.parquet")))
        assert c.kill_worker_node() == 1
        slow.latency_s, slow.bandwidth_bps = 0.0, None  # slow until the kill; the rest need not be
        code = proc.wait(timeout=240)
        first = (tmp_path / "run1.log").read_text()
        rows = _videos(out)
        assert len(set(rows["video_id"])) == len(rows), "no duplicate rows, even after a node loss"
        if code == 0:  # Ray restarted the lost actors and retried their tasks
            assert len(rows) == ROWS, first[-3000:]
        else:  # the plan failed: what finished is committed, the rest recorded as retryable
            assert "stage_error" in first or "did not finish" in first, first[-3000:]
            assert len(rows) == ROWS, "every input still has a row"
        again = subprocess.run(args, env=ENV, capture_output=True, text=True, timeout=240)
        assert again.returncode == 0, again.stderr[-3000:]
        rows = {r["video_id"]: r for r in _videos(out)}
        assert len(rows) == ROWS and sum(r["status"] == "accepted" for r in rows.values()) == len(GOOD), \
            {v: r["reject_message"] for v, r in rows.items() if r["status"] != "accepted"}
        assert committed_before >= 2
        print(f"node kill: first run exit {code}; after re-run {len(GOOD)}/{len(GOOD)} accepted", file=sys.stderr)
