"""Filters, near-duplicates and decontamination through whole jobs on a real local Ray.

Inputs are local files: footage clips, ffmpeg-made copies of them, a still picture; the
dataset is read back with `datasets`, the card and the run summary as a user sees them.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest

from pipeline.config import load_config
from pipeline.footage import COPIES, Encode, FootageSpec, derive_copy, encode_frames, footage_frames, make_footage
from pipeline.job import RETRYABLE_REASONS, run_job
from pipeline.plan import build_stages, ingest
from pipeline.stage import Resources

REPO = Path(__file__).resolve().parents[1]
CURATE = str(Path(sys.executable).parent / "curate")
NEW_REASONS = {"static_video", "low_motion", "mostly_black", "slideshow", "letterboxed", "near_duplicate",
               "benchmark_overlap"}


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("media")
    enc = Encode("veryfast", 400, 600, 800)
    out = {}
    for name, seed in (("a", 401), ("b", 402), ("bench", 403)):
        out[name] = make_footage(root / f"{name}.mp4", FootageSpec(seconds=8, seed=seed, width=320, height=180,
                                                                  fps=24, mean_scene_s=2.5, encode=enc))
    by_name = {c.name: c for c in COPIES}
    out["a_copy"] = derive_copy(out["a"], root / "a_copy.mp4", by_name["trim-both-70pct"], 8.0, 180)
    out["a_copy2"] = derive_copy(out["a"], root / "a_copy2.mp4", by_name["upscale-2x"], 8.0, 180)
    out["bench_copy"] = derive_copy(out["bench"], root / "bench_copy.mp4", by_name["trim-head"], 8.0, 180)
    still = next(footage_frames(FootageSpec(seconds=1, seed=404, width=320, height=180, fps=24)))
    out["still"] = root / "still.mp4"
    encode_frames(out["still"], iter([still] * 8 * 24), 24, 320, 180, enc)
    return out


def _cfg(tmp_path: Path, items: list[str], *extra: str):
    cfg = load_config(None, [f"work_dir={tmp_path / 'work'}", "fetch.min_duration_s=4", "select.min_duration_s=4",
                             "segment.sample_fps=0.5", *extra])
    cfg.input.items = items
    return cfg


def _run(cfg, out: Path, dedupe_replicas: int = 2):
    def stages(c, work):
        built = build_stages(c, work)
        for s in built:
            if s.name == "dedupe":  # two replicas: the two copies may be checked side by side
                s.resources = Resources(cpus=0.1, concurrency=dedupe_replicas, batch_size=1)
        return built

    said: list[str] = []
    summary = run_job(cfg, str(out), ingest=ingest, stage_factory=stages, progress=False, echo=said.append)
    return summary, said


def _rows(out: Path) -> dict[str, dict]:
    ds = datasets.load_dataset(str(out), "videos", split="train")
    return {r["source"]: r for r in ds}


def test_new_reasons_are_permanent():
    assert not NEW_REASONS & RETRYABLE_REASONS


def test_copies_in_one_run_and_across_runs(ray_local, media, tmp_path):
    out = tmp_path / "out"
    first = [str(media[k]) for k in ("a", "a_copy", "b", "still")]
    summary, said = _run(_cfg(tmp_path, first), out)
    rows = _rows(out)
    a, a_copy = rows[first[0]], rows[first[1]]
    # a and its copy were checked in the same run: exactly one is kept, the other names it
    kept, dup = (a, a_copy) if a["status"] == "accepted" else (a_copy, a)
    assert kept["status"] == "accepted"
    assert dup["reject_reason"] == "near_duplicate" and dup["reject_stage"] == "dedupe"
    assert f"near-duplicate of {kept['video_id']}:" in dup["reject_message"]
    assert rows[first[2]]["status"] == "accepted"
    assert rows[first[3]]["reject_reason"] == "static_video" and rows[first[3]]["reject_stage"] == "filter"
    # the run summary and the card say so
    text = summary.render()
    assert "near_duplicate 1" in text and "static_video 1" in text
    assert "content signals (median of 2 accepted)" in text
    card = (out / "README.md").read_text()
    assert "## Content signals" in card and "| motion |" in card and "| static_share |" in card
    assert any(line.startswith("near-duplicate index: 0 committed signatures") for line in said)
    # signals and scene hashes were written and read back
    assert kept["signals"]["motion"] > 0 and len(kept["signals"]["signature"]) > 4
    assert all(len(s["phash"]) == 16 for s in kept["scenes"])

    # a second run: another copy of the kept video is caught against the committed rows
    second = first + [str(media["a_copy2"])]
    summary2, said2 = _run(_cfg(tmp_path, second), out)
    assert summary2.skipped == 4 and summary2.processed == 1
    assert any(line.startswith("near-duplicate index: 2 committed signatures") for line in said2)
    rows = _rows(out)
    new = rows[second[-1]]
    assert new["reject_reason"] == "near_duplicate" and f"near-duplicate of {kept['video_id']}" in new["reject_message"]


def test_decontamination_by_ids_and_by_fingerprints(ray_local, media, tmp_path):
    bench_dir = tmp_path / "benchmark"
    bench_dir.mkdir()
    (bench_dir / "vidmme_0001.mp4").write_bytes(media["bench"].read_bytes())
    (bench_dir / "broken.mp4").write_bytes(b"\x00" * 4096)
    fp = tmp_path / "bench.fp.jsonl"
    proc = subprocess.run([CURATE, "fingerprint", str(bench_dir), "--out", str(fp)], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert proc.returncode == 1 and "1 fingerprints" in proc.stdout and "broken.mp4" in proc.stderr
    assert len(fp.read_text().splitlines()) == 1 and '"video_id": "vidmme_0001"' in fp.read_text()
    ids = tmp_path / "benchmark_ids.txt"
    ids.write_text("# Video-MME\nhttps://www.youtube.com/watch?v=dQw4w9WgXcQ\n" + str(media["b"]) + "\n")
    items = ["dQw4w9WgXcQ", str(media["b"]), str(media["bench_copy"]), str(media["a"])]
    summary, _ = _run(_cfg(tmp_path, items, f"decontaminate.ids_files=[{ids}]",
                           f"decontaminate.fingerprint_files=[{fp}]"), tmp_path / "out")
    rows = _rows(tmp_path / "out")
    yt = rows["dQw4w9WgXcQ"]
    # rejected at ingest: no fetch was attempted (there is no network here; a fetch would fail otherwise)
    assert (yt["reject_reason"], yt["reject_stage"]) == ("benchmark_overlap", "ingest")
    assert "benchmark IDs file benchmark_ids.txt" in yt["reject_message"]
    assert (rows[items[1]]["reject_reason"], rows[items[1]]["reject_stage"]) == ("benchmark_overlap", "ingest")
    copy = rows[items[2]]
    assert (copy["reject_reason"], copy["reject_stage"]) == ("benchmark_overlap", "dedupe")
    assert "matches benchmark video vidmme_0001" in copy["reject_message"]
    assert rows[items[3]]["status"] == "accepted"
    assert summary.reasons["benchmark_overlap"] == 3


def test_signals_off_skips_filters_and_dedupe(ray_local, media, tmp_path):
    items = [str(media["a"]), str(media["a_copy"]), str(media["still"])]
    _run(_cfg(tmp_path, items, "segment.signals=false"), tmp_path / "out", dedupe_replicas=1)
    rows = _rows(tmp_path / "out")
    assert all(r["status"] == "accepted" and r["signals"] is None for r in rows.values())
    assert all(s["phash"] is None for r in rows.values() for s in r["scenes"])


def test_unchanged_sample_pictures_stay_distinct(tmp_path):
    # the demo's sample videos are different pictures: none is a near-duplicate of another
    from pipeline.config import DemoConfig
    from pipeline.demo import prepare_demo_inputs
    from pipeline.filter.config import MatchConfig
    from pipeline.filter.fingerprint import Query, Signature, match
    from pipeline.segment import SegmentConfig, segment_video

    entries = prepare_demo_inputs(DemoConfig(videos=8, include_bad=False), tmp_path)
    got = {}
    for e in entries:
        r = segment_video(e, SegmentConfig(sample_fps=0.25))
        got[e] = (Query(r.query_t, r.query_h, r.duration_s), Signature.from_points(e, r.duration_s, r.signals.signature))
    pairs = [(a, b) for a in entries for b in entries if a != b and match(got[a][0], got[b][1], MatchConfig())]
    assert not pairs
    assert np.all([len(got[e][1].h) > 0 for e in entries])
