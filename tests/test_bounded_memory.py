"""The streamed commands (check, the exports, the quality report, signal distributions) give the
same outputs whether the store hands them a synthetic committed dataset in many small record
batches (joins across their edges) or in one; and `XtunerSamples` counts a sample under fitted
settings as `count_xtuner` does.

When the commands were made to stream (issue 27), the same dump was compared with the code before
(commit 310f770, whole tables in memory): identical files. `bench/scale_memory.py` keeps that
comparison (`base_tree`) for memory; this test keeps the batch-edge half, which needs no history."""
from __future__ import annotations

import json
import random
import subprocess
from concurrent.futures import ThreadPoolExecutor
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.budget import XtunerSamples, XtunerSettings, count_xtuner

REPO = Path(__file__).resolve().parents[1]
DUMP = r"""
import json, sys
from pathlib import Path
import pipeline.store
pipeline.store.BATCH_ROWS = int(sys.argv[3])
from pipeline.check import check_dataset
from pipeline.export import export_verl, export_xtuner
from pipeline.report import quality_report, signal_distributions
from pipeline.store import DatasetStore
out, dest = sys.argv[1], Path(sys.argv[2])
store = DatasetStore(out)
(dest / "report.json").write_text(json.dumps([quality_report(store), signal_distributions(store)]))
for cap, name in ((40000, "fit"), (3000, "over")):
    r = export_xtuner(out, dest / name, check_media=False, max_tokens=cap, media_root="/cache")
    (dest / name / "report.json").write_text(json.dumps([r.written, r.rejected, r.problems]))
    meta = json.loads((dest / name / "meta.json").read_text())
    for entry in meta.values():
        entry["annotation"] = Path(entry["annotation"]).name
    (dest / name / "meta.json").write_text(json.dumps(meta))
export_verl(out, dest / "verl", max_prompt_length=4000)
from pipeline.export_qwen import export_llamafactory, export_qwen
for cap in (20000, 1000):
    export_qwen(out, dest / f"qwen-{cap}", max_tokens=cap)
    export_llamafactory(out, dest / f"lf-{cap}", max_tokens=cap + 500)
    (dest / f"lf-{cap}" / "llamafactory_args.yaml").unlink()  # it names DEST
import pyarrow.parquet as pq
t = pq.read_table(dest / "verl" / "train.parquet")
(dest / "verl" / "rows.json").write_text(json.dumps([str(t.schema), t.to_pylist()]))
(dest / "verl" / "train.parquet").unlink()
(dest / "check.txt").write_text(check_dataset(out, decode=False).render())
"""


def _dump(out: str, dest: Path, batch_rows: int) -> dict[str, str]:
    dest.mkdir(parents=True)
    run = subprocess.run([sys.executable, "-c", DUMP, out, str(dest), str(batch_rows)], cwd=REPO, capture_output=True,
                         text=True, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return {str(p.relative_to(dest)): p.read_text() for p in sorted(dest.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> str:
    """120 committed videos (bench/scale_store.py's rows: every config, transient rejects included)."""
    sys.path.insert(0, str(REPO))
    import pipeline.store as store_module
    from bench.scale_store import Rows, seed_new

    out = str(tmp_path_factory.mktemp("bounded") / "out")
    keep, store_module.validate_row = store_module.validate_row, lambda config, row: None
    try:
        seed_new(out, Rows(templates=8), 120, 0.05)
    finally:
        store_module.validate_row = keep
    return out


def test_streamed_outputs_do_not_depend_on_record_batches(synthetic, tmp_path):
    with ThreadPoolExecutor(2) as pool:  # two processes, side by side
        whole = pool.submit(_dump, synthetic, tmp_path / "one-batch", 1 << 30)  # each shard in one batch
        now = _dump(synthetic, tmp_path / "small-batches", 97)  # many batches: joins across their edges
        before = whole.result()
    assert sorted(now) == sorted(before)
    assert "fit/annotations/longvideo_perception.jsonl" in now and "over/rejected.jsonl" in now
    for name in before:
        assert now[name] == before[name], name
    report = json.loads(now["report.json"])[0]
    assert report["sft_rows"] > 500 and report["tokens"]["exported"]["samples"] == report["sft_rows"]
    assert "violation" in now["check.txt"]


def test_xtuner_samples_count_as_count_xtuner_under_fitted_settings():
    rng = random.Random(3)
    base = XtunerSettings()
    samples = XtunerSamples(base, 60000)
    messages = []
    for i in range(40):
        w, h = rng.choice([(1280, 720), (640, 360), (320, 240), (20, 20)])
        video = {"url": f"v{i}.mp4", "image_wh": [w, h], "origin_video_length": rng.randint(10, 90000),
                 "origin_fps": rng.choice([10.0, 25.0, 29.97])}
        m = [{"role": "user", "content": [{"type": "video_url", "video_url": video},
                                          {"type": "text", "text": "<VIDEO_CONTEXT>\nWhat happens? " * rng.randint(1, 9)}]},
             {"role": "assistant", "content": [{"type": "text", "text": "It rains."}]}]
        messages.append(m)
        assert samples.add(m) == count_xtuner(m, replace(base, max_length=60000))
    fitted = samples.fit()
    assert fitted.video_max_total_pixels < base.video_max_total_pixels
    for i, m in enumerate(messages):
        c = samples.count(i, fitted)
        assert c == count_xtuner(m, fitted)
        assert c.over(60000) == (c.error is not None)  # the fit keeps every sample that can fit under the cap
