"""Recipe-length and hour-long videos export as samples that train (issue 21).

Fixtures: 16-min and 60-min videos at 360p and 720p (flat colour at 2.5 fps: cheap to encode, and
the trainer still samples its 2048 frames from each). The xtuner, Qwen-VL, LLaMA-Factory and verl
exports must keep every sample within its cap, and `curate check` counts the export the trainer's
way. The fork itself is not installable; its counting is pinned by tests/test_budget.py.
"""
from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from pipeline.budget import XtunerSettings, count_xtuner
from pipeline.check import check_dataset
from pipeline.export import export_verl, export_xtuner
from pipeline.export_qwen import export_llamafactory, export_qwen
from pipeline.store import DatasetStore
from tests.long_fixtures import long_dataset as build

CAP = 262_144
FPS = 2.5
LONG = {"m16_360": (16 * 60, 640, 360, FPS), "m16_720": (16 * 60, 1280, 720, FPS),
        "m60_360": (60 * 60, 640, 360, FPS), "m60_720": (60 * 60, 1280, 720, FPS)}


@pytest.fixture(scope="module")
def long_dataset(tmp_path_factory):
    return build(tmp_path_factory.mktemp("long_media"), str(tmp_path_factory.mktemp("long_ds") / "ds"), LONG)


def test_without_a_budget_the_trainer_would_drop_them(long_dataset):
    rows = DatasetStore(long_dataset).read_table("sft").to_pylist()
    over = [r["id"] for r in rows if count_xtuner(r["messages"], XtunerSettings()).over(CAP)]
    assert len(rows) == 12 and len(over) == 12  # 2048 frames of 640x360 alone are 306,176 tokens


def test_xtuner_export_keeps_every_sample_under_the_cap_with_all_its_frames(long_dataset, tmp_path):
    dest = tmp_path / "xtuner"
    report = export_xtuner(long_dataset, dest)
    assert report.rejected == 0 and sum(report.written.values()) == 12
    tokens = [json.loads(line) for line in open(dest / "tokens.jsonl")]
    assert len(tokens) == 12 and max(t["tokens"] for t in tokens) <= CAP
    assert {t["frames"] for t in tokens} == {2048}  # the whole hour stays sampled at the same rate
    assert min(t["tokens"] for t in tokens) > 0.85 * CAP  # the budget is used, not wasted
    print("\n" + "\n".join(f"{t['id']}: {t['frames']} frames of {t['frame_wh'][0]}x{t['frame_wh'][1]}, "
                           f"{t['tokens']} tokens" for t in tokens))
    meta = json.loads(open(dest / "meta.json").read())
    for entry in meta.values():  # what the fork's config reads per dataset
        assert entry["fps"] == 4 and entry["video_max_frames"] == 2048
        assert entry["video_max_total_pixels"] < XtunerSettings().video_max_total_pixels
    # counted again from the files the trainer reads, under the settings it reads: 0 over the cap
    check = check_dataset(long_dataset, decode=False, xtuner=str(dest))
    assert check.checked["token_budget"] == 12 and check.violations["token_budget"] == 0


def test_check_fails_an_export_without_the_budget(long_dataset, tmp_path):
    dest = tmp_path / "xtuner"
    export_xtuner(long_dataset, dest)
    meta = json.loads(open(dest / "meta.json").read())
    for entry in meta.values():
        entry.pop("video_max_total_pixels")  # the trainer falls back to its config's default
    (dest / "meta.json").write_text(json.dumps(meta))
    check = check_dataset(long_dataset, decode=False, xtuner=str(dest))
    assert check.violations["token_budget"] == 12


def test_qwen_and_llamafactory_exports_fit_the_same_cap(long_dataset, tmp_path):
    q = export_qwen(long_dataset, tmp_path / "qwen", max_tokens=CAP)
    assert q.written == 12 and not q.rejected and max(t["tokens"] for t in q.tokens) <= CAP
    line = json.loads(open(tmp_path / "qwen" / "qwen.jsonl").readline())
    video = line["messages"][0]["content"][0]
    assert video["type"] == "video" and set(video) >= {"video", "fps", "max_frames", "max_pixels", "total_pixels"}
    lf = export_llamafactory(long_dataset, tmp_path / "lf", max_tokens=32768, max_frames=256)
    assert lf.written == 12 and max(t["tokens"] for t in lf.tokens) <= 32768
    args = (tmp_path / "lf" / "llamafactory_args.yaml").read_text()
    assert "video_max_pixels" in args and "cutoff_len: 32768" in args
    info = json.loads((tmp_path / "lf" / "dataset_info.json").read_text())
    assert info["longvideo"]["formatting"] == "sharegpt"


def test_verl_entries_carry_limits_within_max_prompt_length(long_dataset, tmp_path):
    n = export_verl(long_dataset, tmp_path / "verl", max_prompt_length=16384)
    videos = pq.read_table(tmp_path / "verl" / "train.parquet").column("videos").to_pylist()
    assert n == 8 and all(v[0]["max_frames"] == 128 and v[0]["max_pixels"] for v in videos)
    check = check_dataset(long_dataset, decode=False, verl=str(tmp_path / "verl"), max_prompt_length=16384)
    assert check.checked["verl_prompt"] == 8 and check.violations["verl_prompt"] == 0
    strict = check_dataset(long_dataset, decode=False, verl=str(tmp_path / "verl"), max_prompt_length=4096)
    assert strict.violations["verl_prompt"] == 8


def test_summary_and_card_report_the_token_distribution(long_dataset):
    from pipeline.report import quality_report, render_markdown, render_text

    report = quality_report(DatasetStore(long_dataset))
    tokens = report["tokens"]
    assert tokens["exported_over_cap"] == 0 and tokens["unbudgeted_over_cap"] == 12
    assert tokens["exported"]["max"] <= CAP < tokens["unbudgeted"]["min"]
    assert "over the cap 0" in render_text(report)
    assert "| `curate export xtuner` (budgeted) | 12 |" in render_markdown(report)


def test_export_help_lists_every_trainer():
    import subprocess
    import sys
    from pathlib import Path

    out = subprocess.run([str(Path(sys.executable).parent / "curate"), "export", "--help"], capture_output=True,
                         text=True).stdout
    assert all(name in out for name in ("xtuner", "verl", "qwen", "llamafactory"))
