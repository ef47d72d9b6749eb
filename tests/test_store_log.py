"""The store's log and compaction on a real local directory: live files read without listing,
checkpoints, compaction into few files with transient rejects apart, retries rewriting only
those, interrupted compactions, a dataset written before the log, answer caches pruned."""
from __future__ import annotations

import os

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.card import CardState, write_card
from pipeline.job import compact_store
from pipeline.records import Reason, Synthesis, VideoTask, video_row
from pipeline.schema import arrow_schema
from pipeline.store import DatasetStore
from pipeline.storelog import CHECKPOINT_EVERY
from synth.config import VerifyPolicy
from synth.items import QAItem
from synth.publish import publish_rows
from synth.results import ResultStore, VideoResults
from tests.helpers import PROV, accepted_row, accepted_task


def rejected_row(video_id: str, reason: Reason, index: int = 0) -> dict:
    task = VideoTask(video_id, video_id, "youtube", index).reject(reason, "test", stage="fetch")
    return {**video_row(task), "stage_keys": []}


def sft_rows(video_id: str) -> list[dict]:
    """Two published QA rows of an accepted video, as a run writes them."""
    task = accepted_task(video_id)
    items = [QAItem("perception", "count", "open_ended", f"How many {w}?", "two", 0.0, 5.0) for w in ("cars", "dogs")]
    for i, item in enumerate(items):
        item.index = i
    task.synthesis = Synthesis(teacher="teacher-x", items=items)
    return publish_rows(task, VerifyPolicy())["sft"]


def fill(store: DatasetStore, chunks: int, per_chunk: int = 3) -> dict[str, str]:
    """`chunks` commits of accepted videos (each with 2 QA rows), one transient and one permanent
    reject each; returns video_id -> its status/reason."""
    outcome = {}
    for c in range(chunks):
        videos, sft = [], []
        for i in range(per_chunk):
            vid = f"v{c:04d}{i:06d}"
            videos.append(accepted_row(vid, c * 10 + i))
            sft += sft_rows(vid)
            outcome[vid] = "accepted"
        videos += [rejected_row(f"t{c:010d}", Reason.rate_limited), rejected_row(f"p{c:010d}", Reason.too_short)]
        outcome[f"t{c:010d}"], outcome[f"p{c:010d}"] = "rate_limited", "too_short"
        store.commit(f"r1-{c:06d}", {"videos": videos, "sft": sft}, provenance=PROV)
    return outcome


@pytest.fixture
def store(tmp_path):
    s = DatasetStore(str(tmp_path / "ds"))
    s.init()
    return s


def test_live_files_come_from_the_log_with_checkpoints_not_from_listing(store, monkeypatch):
    fill(store, CHECKPOINT_EVERY + 5, per_chunk=1)
    logs = os.listdir(store.path("_log"))
    assert len(logs) <= 10, logs  # entries before the checkpoint were dropped
    stray = store.path("data", "videos", "zz-not-committed.parquet")  # e.g. a half-copied file
    pq.write_table(pa.Table.from_pylist([{**accepted_row("zzzzzzzzzzz"), **PROV}], schema=arrow_schema("videos")), stray)
    fresh = DatasetStore(store.url)
    listed = []

    def no_listing(path, *a, **kw):
        listed.append(path)
        raise AssertionError(f"listed {path}")

    monkeypatch.setattr(fresh.fs, "ls", no_listing)
    assert len(fresh.shard_paths("videos")) == CHECKPOINT_EVERY + 5
    assert fresh.counts().rows == {"videos": 3 * (CHECKPOINT_EVERY + 5), "sft": 2 * (CHECKPOINT_EVERY + 5),
                                   "rl": 0, "distill": 0, "rejects": 0}
    ledger = fresh.ledger()
    assert "zzzzzzzzzzz" not in ledger and len(ledger) == 3 * (CHECKPOINT_EVERY + 5)
    fresh.commit("r2-000000", {"videos": [accepted_row("v0000000000")]}, provenance={**PROV, "run_id": "r2"})
    assert listed == []


def test_compaction_merges_into_few_files_and_keeps_transient_rejects_apart(store):
    outcome = fill(store, 20)
    before = set(store.state.files)
    result = store.compact()
    assert result.files_before == 40 and result.files_after == 3  # videos base + videos retry + sft base
    kinds = {(f.config, f.kind): f for f in store.state.files.values()}
    assert set(kinds) == {("videos", "base"), ("videos", "retry"), ("sft", "base")}
    assert kinds["videos", "retry"].rows == 20 and kinds["videos", "base"].rows == 80
    assert not before & set(store.state.files), "compacted files get new names"
    assert sorted(result.permanent_rejects) == sorted(v for v, o in outcome.items() if o == "too_short")
    assert sorted(os.listdir(store.shard_dir("videos"))) == sorted(
        os.path.basename(f.path) for f in store.state.files.values() if f.config == "videos")
    write_card(store, "t")
    videos = datasets.load_dataset(store.root, "videos", split="train")
    assert sorted(videos["video_id"]) == sorted(outcome)
    assert datasets.load_dataset(store.root, "sft", split="train").num_rows == 120

    # a re-run retries the transient rejects: only the retry file is rewritten, never the base shards
    base = {f.path for f in store.state.files.values() if f.kind == "base"}
    retried = [v for v, o in outcome.items() if o == "rate_limited"]
    store.ledger(retried)
    store.commit("r2-000000", {"videos": [accepted_row(v, 0) for v in retried[:15]]}, provenance={**PROV, "run_id": "r2"})
    assert store.reconcile() == {"stale_rows_removed": 15}
    assert base <= set(store.state.files)
    retry = [f for f in store.state.files.values() if f.kind == "retry"]
    assert len(retry) == 1 and retry[0].rows == 5
    counts = store.counts()
    assert counts.rows["videos"] == 100 and counts.status == {"accepted": 75, "rejected": 25}
    assert not store.compact_due(2)
    assert DatasetStore(store.url).read_table("videos").num_rows == 100


def test_an_interrupted_compaction_leaves_the_old_files_live_and_is_cleaned(store, monkeypatch):
    outcome = fill(store, 6)
    live = set(store.state.files)

    def crash(entry):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(store.log, "write_entry", crash)
    with pytest.raises(KeyboardInterrupt):
        store.compact()
    on_disk = {f"data/videos/{n}" for n in os.listdir(store.shard_dir("videos"))}
    assert len(on_disk) == 8  # 6 commits + the new base and retry files, not committed
    fresh = DatasetStore(store.url)
    assert set(fresh.state.files) == live
    stats = fresh.reconcile()
    assert stats["orphan_shards_removed"] == 3  # videos base + retry, sft base
    assert len(os.listdir(store.shard_dir("videos"))) == 6
    assert sorted(fresh.read_table("videos", ["video_id"])["video_id"].to_pylist()) == sorted(outcome)


def test_a_dataset_written_before_the_log_is_adopted_once(tmp_path):
    root = tmp_path / "old"
    store = DatasetStore(str(root))
    store.init()

    def write(rel, rows, config="videos"):
        pq.write_table(pa.Table.from_pylist([{**r, **PROV} for r in rows], schema=arrow_schema(config)), root / rel)

    write("data/videos/r1-000000.parquet", [accepted_row("aaaaaaaaaaa"), accepted_row("bbbbbbbbbbb", 1)])
    write("data/videos/r1-000000.r1.parquet", [accepted_row("aaaaaaaaaaa"), accepted_row("bbbbbbbbbbb", 1)])
    newer = {**accepted_row("aaaaaaaaaaa"), "title": "newer"}
    write("data/videos/r2-000000.parquet", [newer])
    write("data/sft/r3-000000.parquet", sft_rows("ccccccccccc")[:1], "sft")  # its videos shard never came
    stats = store.reconcile()
    assert stats == {"legacy_files_adopted": 2, "old_revisions_removed": 1, "orphan_shards_removed": 1,
                     "stale_rows_removed": 1}
    rows = {r["video_id"]: r for r in DatasetStore(str(root)).read_table("videos").to_pylist()}
    assert set(rows) == {"aaaaaaaaaaa", "bbbbbbbbbbb"} and rows["aaaaaaaaaaa"]["title"] == "newer"
    assert not (root / "data" / "sft" / "r3-000000.parquet").exists()
    assert DatasetStore(str(root)).log.exists()


def test_compaction_prunes_the_answer_caches_of_permanent_rejects(store):
    outcome = fill(store, 3)
    answers = ResultStore(store.url)
    for vid in outcome:
        answers.save("synthesize", vid, VideoResults(keys={"k": "d"}))
    notes = []
    compact_store(store, out=store.url, note=notes.append)
    kept = {v for v in outcome if answers.load("synthesize", v).keys}
    assert kept == {v for v, o in outcome.items() if o != "too_short"}
    assert "pruned 3 answer files" in notes[0]
    write_card(store, "t", CardState.from_store(store))


def test_curate_compact_rewrites_the_card_with_its_report_sections_kept(tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    store = DatasetStore(str(tmp_path / "cli"))
    store.init()
    outcome = fill(store, 5)
    write_card(store, "weekly", CardState.from_store(store), ["## QA balance\n\nsome numbers\n"])
    result = CliRunner().invoke(app, ["compact", store.url])
    assert result.exit_code == 0, result.output
    assert "10 live files -> 3" in result.output  # 5 commits x (videos, sft) -> base videos, sft + retry videos
    card = open(store.path("README.md")).read()
    assert card.startswith("---") and "# weekly" in card and "## QA balance\n\nsome numbers" in card
    assert card.count("Every row was validated") == 1
    assert sorted(datasets.load_dataset(store.root, "videos", split="train")["video_id"]) == sorted(outcome)
