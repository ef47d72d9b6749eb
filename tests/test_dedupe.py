"""Near-duplicates: copies (re-encodes, rescales, trims, re-timed) of distinct videos.

The copies are made the way a re-uploader makes them, by ffmpeg (imageio-ffmpeg's binary),
from footage clips (pipeline/footage.py); every video is then decoded by the segment stage
and checked by the dedupe stage against a registry holding the sources only.
"""
from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pipeline.filter.config import DedupeConfig, MatchConfig
from pipeline.filter.fingerprint import Query, Signature, SignatureIndex, match
from pipeline.filter.index import LocalRegistry, committed_signatures
from pipeline.filter.stages import DedupeStage
from pipeline.footage import COPIES, Encode, FootageSpec, derive_copy, make_footage
from pipeline.records import VideoTask
from pipeline.segment import SegmentConfig, SegmentStage

SEG = SegmentConfig(sample_fps=0.25)


def _task(path: Path, index: int = 0) -> VideoTask:
    task = VideoTask(video_id=path.stem, source=str(path), source_kind="local", input_index=index,
                     video_path=str(path))
    return SegmentStage(SEG).process(task)


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    """3 distinct sources with 7 copies each, and 2 more distinct videos that are never indexed.
    Encodes (one-thread ffmpeg / PyAV) and decodes run one per core: 22 s -> ~12 s on 2 cores."""
    root = tmp_path_factory.mktemp("dups")
    specs = {seed: FootageSpec(seconds=10, seed=seed, width=320, height=180, mean_scene_s=3.0,
                               encode=Encode("veryfast", 400, 600, 800)) for seed in range(300, 305)}
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        made = dict(zip(specs, pool.map(lambda seed: make_footage(root / f"src{seed}.mp4", specs[seed]), specs)))
        sources, others = [made[s] for s in specs if s < 303], [made[s] for s in specs if s >= 303]
        pairs = [(src, copy) for src in sources for copy in COPIES]
        copies = list(zip((src.stem for src, _ in pairs), pool.map(
            lambda pair: derive_copy(pair[0], root / f"{pair[0].stem}-{pair[1].name}.mp4", pair[1], 10.0, 180), pairs)))
        paths = [*sources, *others, *(c for _, c in copies)]
        tasks = dict(zip((p.stem for p in paths), pool.map(_task, paths)))
    return sources, others, copies, tasks


def _query(task: VideoTask) -> Query:
    return Query(task.hash_track.times, task.hash_track.hashes, task.duration_s)


def _signature(task: VideoTask) -> Signature:
    return Signature.from_points(task.video_id, task.duration_s, task.signals.signature)


def test_copies_match_their_source_and_nothing_else(fixtures):
    sources, others, copies, tasks = fixtures
    index = SignatureIndex(MatchConfig())
    for src in sources:
        index.add(_signature(tasks[src.stem]))
    found = {p.stem: index.best_match(_query(tasks[p.stem])) for _, p in copies}
    hits = sum(1 for src, p in copies if found[p.stem] is not None and found[p.stem].video_id == src)
    wrong = [(p.stem, m.video_id) for src, p in copies if (m := found[p.stem]) is not None and m.video_id != src]
    assert hits / len(copies) >= 0.95, {p.stem: found[p.stem] for _, p in copies if found[p.stem] is None}
    assert not wrong
    # distinct videos match no source, and no source matches another
    for p in others:
        assert index.best_match(_query(tasks[p.stem])) is None, p.stem
    for a in sources:
        for b in sources:
            if a != b:
                assert match(_query(tasks[a.stem]), _signature(tasks[b.stem]), MatchConfig()) is None, (a, b)


def test_dedupe_stage_rejects_copies_naming_the_first_claimed(fixtures):
    sources, others, copies, tasks = fixtures
    stage = DedupeStage(DedupeConfig())
    import copy as copylib

    def run(name: str) -> VideoTask:
        return stage.process(copylib.deepcopy(tasks[name]))

    first = [run(p.stem) for p in [*sources, *others]]
    assert all(not t.rejected for t in first)  # distinct videos: all claimed
    src, path = copies[5]  # a trimmed copy
    dup = run(path.stem)
    assert dup.reject_reason == "near_duplicate" and dup.reject_stage == "dedupe"
    assert dup.reject_message.startswith(f"near-duplicate of {src}:")
    again = run(sources[0].stem)  # the same video again (--force): not its own duplicate
    assert not again.rejected


def test_registry_starts_from_committed_accepted_rows_only(fixtures, tmp_path):
    # the persistent index is the committed videos data: a rejected or never-committed video is
    # not in it, so a crash cannot leave an entry behind
    from pipeline.records import video_row
    from pipeline.store import DatasetStore
    from tests.helpers import PROV

    sources, _, copies, tasks = fixtures
    store = DatasetStore(str(tmp_path / "ds"))
    store.init()
    kept = _accepted(tasks[sources[0].stem])
    dropped = _accepted(tasks[sources[1].stem]).reject("too_long", "x", stage="select")
    store.commit("c-000001", {"videos": [{**video_row(t), "stage_keys": []} for t in (kept, dropped)]}, provenance={
        **PROV, "processed_at": "2026-11-22T00:00:00Z"})
    sigs = committed_signatures(store)
    assert [s.video_id for s in sigs] == [sources[0].stem]
    registry = LocalRegistry(MatchConfig(), sigs)
    by_source = {src: p for src, p in copies if p.stem.endswith("trim-head")}
    first = tasks[by_source[sources[0].stem].stem]
    assert registry.claim("x1", _query(first), _signature(first)).video_id == sources[0].stem
    assert "x1" not in registry.index  # a duplicate is not recorded
    assert registry.claim("x2", _query(tasks[by_source[sources[1].stem].stem]),
                          _signature(tasks[by_source[sources[1].stem].stem])) is None  # never committed: claims
    registry.release("x2")
    assert "x2" not in registry.index


def _accepted(task: VideoTask) -> VideoTask:
    import copy as copylib

    out = copylib.deepcopy(task)
    out.frames, out.hash_track = [], None
    return out.accept()


def test_signature_survives_json(fixtures):
    _, _, _, tasks = fixtures
    task = next(iter(tasks.values()))
    sig = _signature(task)
    again = Signature.from_points(sig.video_id, sig.duration_s, json.loads(json.dumps(sig.points())))
    assert (again.h == sig.h).all() and len(sig.h) <= 48
