"""Crash-safe commits, quarantine, reconcile and the ledger, on a real local directory."""
from __future__ import annotations

import os

import datasets
import pyarrow.parquet as pq
import pytest

from pipeline.card import write_card
from pipeline.store import DatasetStore
from tests.helpers import PROV, accepted_row


def _store(tmp_path, name="out"):
    store = DatasetStore(str(tmp_path / name))  # datasets caches a folder by its name: one name per shard list
    store.init()
    return store


def test_commit_is_visible_and_loadable_with_datasets(tmp_path):
    store = _store(tmp_path)
    store.commit("r1-000000", {"videos": [accepted_row("aaaaaaaaaaa", 0), accepted_row("bbbbbbbbbbb", 1)]},
                 provenance=PROV)
    write_card(store, "t")
    ds = datasets.load_dataset(store.root, "videos", split="train")
    assert sorted(ds["video_id"]) == ["aaaaaaaaaaa", "bbbbbbbbbbb"]
    assert ds[0]["scenes"][1]["transition"] == "cut"
    assert ds[0]["config_hash"] == PROV["config_hash"]
    assert not os.listdir(store.path("_staging")), "staging is emptied after a commit"


def test_invalid_row_is_quarantined_with_its_path_and_video_still_counted(tmp_path):
    store = _store(tmp_path)
    bad = accepted_row("ccccccccccc", 2)
    bad["fps"] = -3.0
    result = store.commit("r1-000000", {"videos": [accepted_row("aaaaaaaaaaa"), bad]}, provenance=PROV)
    assert result.quarantined == 1
    rejects = store.read_table("rejects").to_pylist()
    assert len(rejects) == 1 and rejects[0]["path"] == "$.fps" and rejects[0]["target_config"] == "videos"
    assert '"fps": -3.0' in rejects[0]["row_json"]
    videos = {r["video_id"]: r for r in store.read_table("videos").to_pylist()}
    assert set(videos) == {"aaaaaaaaaaa", "ccccccccccc"}
    assert videos["ccccccccccc"]["status"] == "rejected"
    assert videos["ccccccccccc"]["reject_reason"] == "schema_invalid"
    assert "$.fps" in videos["ccccccccccc"]["reject_message"]


def test_interrupted_commit_leaves_orphans_that_reconcile_removes(tmp_path, monkeypatch):
    store = _store(tmp_path, "crashed")
    store.commit("r1-000000", {"videos": [accepted_row("aaaaaaaaaaa")]}, provenance=PROV)
    write_card(store, "t")
    # a crash after the shards of the next commit were published but before its log entry
    reject = {"video_id": "bbbbbbbbbbb", "target_config": "sft", "reason": "x", "path": "$",
              "message": "m", "row_json": "{}", **PROV}

    def crash(entry):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(store.log, "write_entry", crash)
    with pytest.raises(KeyboardInterrupt):
        store.commit("r1-000001", {"videos": [accepted_row("bbbbbbbbbbb", 1)], "rejects": [reject]}, provenance=PROV)
    assert (tmp_path / "crashed" / "data" / "videos" / "r1-000001.parquet").exists()  # published, not committed
    assert datasets.load_dataset(store.root, "videos", split="train")["video_id"] == ["aaaaaaaaaaa"]
    fresh = DatasetStore(store.url)  # the next run
    assert fresh.read_table("videos").column("video_id").to_pylist() == ["aaaaaaaaaaa"]
    stats = fresh.reconcile()
    assert stats == {"staging_removed": 2, "orphan_shards_removed": 2}  # the intent and the local temporaries
    assert not (tmp_path / "crashed" / "data" / "videos" / "r1-000001.parquet").exists()
    assert not (tmp_path / "crashed" / "data" / "rejects" / "r1-000001.parquet").exists()
    assert fresh.read_table("rejects").num_rows == 0
    assert fresh.chunks("videos") == ["r1-000000"]


def test_newest_chunk_wins_and_older_rows_are_rewritten(tmp_path):
    store = _store(tmp_path, "superseded")
    store.commit("r1-000000", {"videos": [accepted_row("aaaaaaaaaaa"), accepted_row("bbbbbbbbbbb", 1)]},
                 provenance=PROV)
    newer = accepted_row("aaaaaaaaaaa")
    newer["title"] = "second take"
    store.commit("r2-000000", {"videos": [newer]}, provenance={**PROV, "run_id": "r2"})
    # the older row is still in its file (what datasets would read) but the store skips it at once
    assert pq.read_table(store.path("data", "videos", "r1-000000.parquet")).num_rows == 2
    assert store.read_table("videos").num_rows == 2
    assert DatasetStore(store.url).ledger()["aaaaaaaaaaa"].status == "accepted"  # a fresh reader skips it too
    from pipeline.viewer.scan import iter_batches

    assert sum(b.num_rows for b in iter_batches(DatasetStore(store.url), "videos", ["status"])) == 2  # the report too
    stats = store.reconcile()
    assert stats["stale_rows_removed"] == 1
    rows = {r["video_id"]: r for r in store.read_table("videos").to_pylist()}
    assert len(rows) == 2 and rows["aaaaaaaaaaa"]["title"] == "second take"
    assert rows["aaaaaaaaaaa"]["run_id"] == "r2"
    names = sorted(os.listdir(store.shard_dir("videos")))
    assert "r1-000000.parquet" not in names and len(names) == 2  # rewritten under a new name
    write_card(store, "t")
    loaded = datasets.load_dataset(store.root, "videos", split="train")
    assert sorted(loaded["video_id"]) == ["aaaaaaaaaaa", "bbbbbbbbbbb"]


def test_ledger_reads_ids_and_fingerprints(tmp_path):
    store = _store(tmp_path)
    store.commit("r1-000000", {"videos": [accepted_row("aaaaaaaaaaa")]}, provenance=PROV)
    ledger = store.ledger()
    assert ledger["aaaaaaaaaaa"].fingerprint == "fp1" and ledger["aaaaaaaaaaa"].status == "accepted"


def test_empty_configs_have_typed_schema_shards_and_card_lists_only_loadable_ones(tmp_path):
    store = _store(tmp_path)
    for config in ("videos", "sft", "rl", "distill", "rejects"):
        schema = pq.read_schema(store.schema_path(config))
        assert len(schema) > 5
        assert list((tmp_path / "out" / "data" / config).glob("*.parquet")) == []  # only data shards match
    store.commit("r1-000000", {"videos": [accepted_row("aaaaaaaaaaa")]}, provenance=PROV)
    write_card(store, "t")
    card = open(store.path("README.md")).read()
    assert "config_name: videos" in card and "config_name: sft" not in card
    assert "Empty so far" in card and "sft" in card


def test_store_works_on_an_fsspec_url():
    """Not only local paths: the same commit / reconcile / ledger on fsspec's memory filesystem."""
    import uuid

    store = DatasetStore(f"memory://ds-{uuid.uuid4().hex[:8]}")
    assert not store.local
    store.init()
    store.commit("r1-000000", {"videos": [accepted_row("aaaaaaaaaaa"), accepted_row("bbbbbbbbbbb", 1)]},
                 provenance=PROV)
    store.commit("r2-000000", {"videos": [accepted_row("aaaaaaaaaaa")]}, provenance={**PROV, "run_id": "r2"})
    assert store.reconcile() == {"stale_rows_removed": 1}
    assert sorted(store.ledger()) == ["aaaaaaaaaaa", "bbbbbbbbbbb"]
    assert store.counts().rows["videos"] == 2
    write_card(store, "t")
    assert "data/videos/r2-000000.parquet" in store.fs.cat_file(store.path("README.md")).decode()


def test_the_schema_file_lives_outside_data_and_an_old_layout_is_moved(tmp_path):
    """verl and other readers glob `data/<config>/*.parquet`: a zero-row schema shard there is read as
    an empty split ("corresponds to no data"). An old dataset's shard is removed at the next init."""
    import glob

    store = DatasetStore(str(tmp_path / "globbed"))  # a name of its own: datasets caches folders by name
    store.init()
    store.commit("r9-000009", {"videos": [accepted_row("aaaaaaaaaaa")]}, provenance=PROV)
    legacy = tmp_path / "globbed" / "data" / "sft" / "_schema.parquet"
    pq.write_table(pq.read_table(store.schema_path("sft")), legacy)
    DatasetStore(str(tmp_path / "globbed")).init()
    assert not legacy.exists()
    shards = glob.glob(str(tmp_path / "globbed" / "data" / "videos" / "*.parquet"))
    assert len(shards) == 1 and pq.read_table(shards[0]).num_rows == 1
    write_card(store, "t")
    assert datasets.load_dataset(str(tmp_path / "globbed"), "videos", split="train").num_rows == 1
