"""The README's demo through the real `curate` CLI: local Ray, real media, real datasets load.

Also the crash test: a run SIGKILLed mid-way (driver and its local Ray together) leaves a
loadable dataset, and the next run completes it with no duplicate and no missing row.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import datasets
import pytest

from pipeline.config import load_config
from pipeline.demo import prepare_demo_inputs
from tests import helpers
from tests.helpers import CURATE, REPO

DEMO = str(REPO / "jobs" / "demo.yaml")


def curate(*args: str, address: str | None = None) -> subprocess.CompletedProcess:
    """`curate` from the repository root, as the README runs it; the demo's first run starts its
    own local Ray (the README's path), later runs join the session's (`address`)."""
    return helpers.curate(*args, address=address, cwd=REPO)


def video_shards(out: Path) -> list[Path]:
    return [p for p in (out / "data" / "videos").glob("*.parquet") if not p.name.startswith("_")]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("work")
    out = tmp_path_factory.mktemp("ds") / "demo_out"
    proc = curate("run", DEMO, "--out", str(out), "--set", f"work_dir={work}", "--no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work, out, proc


def test_demo_output_loads_and_accounts_for_every_input(demo_run):
    work, out, proc = demo_run
    videos = datasets.load_dataset(str(out), "videos", split="train")
    by_source = {Path(r["source"]).name if "/" in r["source"] else r["source"]: r for r in videos}
    assert len(videos) == 7  # 4 samples + corrupt + too short + malformed id
    for i in range(4):
        row = by_source[f"sample-{i:03d}.mp4"]
        truth = json.loads((work / "demo" / f"sample-{i:03d}.truth.json").read_text())
        assert row["status"] == "accepted", row["reject_message"]
        assert (row["width"], row["height"]) == (truth["width"], truth["height"])
        starts = [s["start_frame"] for s in row["scenes"]][1:]
        assert all(abs(a - b) <= 1 for a, b in zip(starts, truth["cut_frames"])), (starts, truth)
        assert len(row["scenes"]) == len(truth["cut_frames"]) + 1
    assert by_source["corrupt.mp4"]["reject_reason"] == "corrupt_media"
    assert by_source["too-short.mp4"]["reject_reason"] == "too_short"
    assert by_source["not a video id!"]["reject_reason"] == "bad_id"
    assert len({r["config_hash"] for r in videos}) == 1
    assert "accepted 4, rejected 3" in proc.stdout
    assert "rejects by reason" in proc.stdout and "fetch" in proc.stdout


def test_status_and_validate(demo_run):
    _, out, _ = demo_run
    status = curate("status", str(out))
    assert status.returncode == 0 and "videos: accepted 4, rejected 3" in status.stdout
    valid = curate("validate", str(out))
    assert valid.returncode == 0 and "ok: every row valid" in valid.stdout, valid.stdout
    # corrupt a shard on purpose: validate must notice
    shard = video_shards(out)[0]
    import pyarrow.parquet as pq
    table = pq.read_table(shard)
    broken = table.set_column(table.schema.get_field_index("fps"), "fps",
                              __import__("pyarrow").array([-1.0] * table.num_rows))
    copy = out.parent / "broken"
    import shutil
    shutil.copytree(out, copy)
    pq.write_table(broken, copy / "data" / "videos" / shard.name)
    bad = curate("validate", str(copy))
    assert bad.returncode == 1 and "$.fps" in bad.stdout


def test_second_run_writes_nothing_and_added_ids_only_process_those(demo_run, ray_address):
    work, out, _ = demo_run
    before = sorted(p.name for p in video_shards(out))
    again = curate("run", DEMO, "--out", str(out), "--set", f"work_dir={work}", "--no-progress", address=ray_address)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "7 already committed" in again.stderr and "0 to process" in again.stderr
    assert sorted(p.name for p in video_shards(out)) == before
    more = curate("run", DEMO, "--out", str(out), "--set", f"work_dir={work}", "--set", "demo.videos=6",
                  "--no-progress", address=ray_address)
    assert more.returncode == 0, more.stderr[-2000:]
    assert "2 to process" in more.stderr
    videos = datasets.load_dataset(str(out), "videos", split="train")
    assert len(videos) == 9 and len(set(videos["video_id"])) == 9


def test_bad_config_fails_before_any_work(tmp_path):
    proc = curate("run", DEMO, "--out", str(tmp_path / "o"), "--set", "segment.detectr=content")
    assert proc.returncode == 2
    assert "segment.detectr: unknown key" in proc.stderr and "detector" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_sigkill_mid_run_then_rerun_completes_exactly(tmp_path, ray_address):
    work, out = tmp_path / "work", tmp_path / "out"
    # 10 videos of 10 s: the run is still going when 3 chunks are committed (one video each)
    sets = ["demo.videos=10", "demo.scene_seconds=[3.0,3.0,2.0,2.0]"]
    args = ["run", DEMO, "--out", str(out), "--set", f"work_dir={work}", *(a for s in sets for a in ("--set", s)),
            "--set", "output.commit_every=1", "--no-progress"]
    # make the media first (the demo's own generator, as `curate run` would) so the killed run
    # spends its time in the pipeline
    assert len(prepare_demo_inputs(load_config(DEMO, sets).demo, work)) == 13
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.Popen([CURATE, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env, cwd=REPO, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and len(video_shards(out)) < 3 and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray it started
    proc.wait()
    committed = len(video_shards(out))
    assert 3 <= committed, "the run should have committed a few chunks before the kill"
    assert not list((out / "_runs").glob("*.json")), "killed before it could finish"
    partial = datasets.load_dataset(str(out), "videos", split="train")
    # one video per shard; the card (what `datasets` reads) is rewritten right after each commit,
    # so a kill between the two leaves the newest shard unlisted until the next run
    assert committed - 1 <= len(partial) <= committed < 13 and len(set(partial["video_id"])) == len(partial)
    rerun = curate(*args, address=ray_address)  # the killed run's Ray died with it; the re-run joins the session's
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    videos = datasets.load_dataset(str(out), "videos", split="train")
    assert len(videos) == 13 and len(set(videos["video_id"])) == 13  # 10 samples + 3 bad inputs
    assert sum(v == "accepted" for v in videos["status"]) == 10
    assert curate("validate", str(out)).returncode == 0
