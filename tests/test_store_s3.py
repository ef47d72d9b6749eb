"""The store on a real S3-compatible server (moto in server mode on 127.0.0.1, through s3fs):
commits, retries, compaction and recovery without a listing of `data/`, and `datasets` reading
the result back from the object store."""
from __future__ import annotations

import pytest

from pipeline.card import CardState, load_config, write_card
from pipeline.job import compact_store
from pipeline.store import DatasetStore
from synth.results import ResultStore, VideoResults
from tests.helpers import PROV, accepted_row
from tests.test_store_log import fill


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server on a free local port; credentials and endpoint as a deployment sets them."""
    boto3 = pytest.importorskip("boto3", reason="the test extra installs boto3 with moto")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                 region_name="us-east-1").create_bucket(Bucket="curation")
    yield {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"}}
    server.stop()


def test_commit_retry_compact_and_load_back_from_s3(s3, monkeypatch):
    url = "s3://curation/weekly"
    store = DatasetStore(url, storage_options=s3)
    assert not store.local
    store.init()
    outcome = fill(store, 4)
    listed = []
    real_ls = store.fs.ls

    def counting_ls(path, *a, **kw):
        listed.append(path)
        return real_ls(path, *a, **kw)

    fresh = DatasetStore(url, storage_options=s3)  # the next run: state from the log
    monkeypatch.setattr(fresh.fs, "ls", counting_ls)
    assert sorted(fresh.ledger()) == sorted(outcome)
    retried = [v for v, o in outcome.items() if o == "rate_limited"]
    fresh.commit("r2-000000", {"videos": [accepted_row(v) for v in retried]}, provenance={**PROV, "run_id": "r2"})
    assert [p for p in listed if "/data" in p] == []  # no listing of the shards
    assert fresh.reconcile()["stale_rows_removed"] == 4
    answers = ResultStore(url, storage_options=s3)
    for vid in outcome:
        answers.save("synthesize", vid, VideoResults(keys={"k": "d"}))
    notes: list[str] = []
    compact_store(fresh, out=url, note=notes.append)
    assert "pruned 4 answer files" in notes[0]
    assert {(f.config, f.kind) for f in fresh.state.files.values()} == {("videos", "base"), ("sft", "base")}
    on_s3 = fresh.fs.find(fresh.path("data"))
    assert sorted(on_s3) == sorted(fresh.shard_paths("videos") + fresh.shard_paths("sft"))  # old files deleted
    write_card(fresh, "weekly", CardState.from_store(fresh))

    # the suite runs with the Hub offline (conftest), which datasets applies to every remote URL;
    # this server is on 127.0.0.1
    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)

    videos = load_config(url, "videos", split="train", storage_options=s3)
    assert sorted(videos["video_id"]) == sorted(outcome) and len(videos) == 20
    accepted = {v: s for v, s in zip(videos["video_id"], videos["status"])}
    assert all(accepted[v] == "accepted" for v in retried)
    sft = load_config(url, "sft", split="train", storage_options=s3)
    assert sft.num_rows == 24
    streamed = load_config(url, "sft", split="train", storage_options=s3, streaming=True)
    assert sum(1 for _ in streamed) == 24


def test_curate_run_writes_to_s3_and_a_rerun_processes_nothing(s3, tmp_path, monkeypatch):
    """`curate run --out s3://...` end to end, credentials and endpoint from the environment as a
    deployment gives them; then `curate status` and the rows read back with datasets."""
    from tests.helpers import REPO, curate

    endpoint = s3["client_kwargs"]["endpoint_url"]
    # no `address`: the run starts its own local Ray, whose workers inherit these variables
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1"}
    args = ["run", str(REPO / "jobs" / "demo.yaml"), "--out", "s3://curation/demo", "--set", f"work_dir={tmp_path}",
            "--no-progress"]
    first = curate(*args, env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    again = curate(*args, env=env)
    assert again.returncode == 0 and "7 already committed" in again.stderr and "0 to process" in again.stderr
    status = curate("status", "s3://curation/demo", env=env)
    assert status.returncode == 0 and "videos: accepted 4, rejected 3" in status.stdout
    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    videos = load_config("s3://curation/demo", "videos", split="train", storage_options=s3)
    assert len(videos) == 7 and sorted(set(videos["status"])) == ["accepted", "rejected"]
