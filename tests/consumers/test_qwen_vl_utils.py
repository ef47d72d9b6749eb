"""qwen-vl-utils 0.0.14 `process_vision_info` on `curate export qwen`: every video found, sampled and
resized exactly as pipeline/budget.py counted it."""
from __future__ import annotations

import json

from pipeline.export_qwen import export_qwen
from tests.long_fixtures import long_dataset


def test_process_vision_info_loads_every_video_at_the_counted_size(tmp_path):
    from qwen_vl_utils import process_vision_info

    (tmp_path / "m").mkdir()
    out = long_dataset(tmp_path / "m", str(tmp_path / "ds"), {"a360": (40, 640, 360, 10.0),
                                                               "b720": (240, 1280, 720, 5.0)})
    report = export_qwen(out, tmp_path / "qwen", max_tokens=8192, fps=2.0, max_frames=64)
    lines = [json.loads(line) for line in open(tmp_path / "qwen" / "qwen.jsonl")]
    counted = {t["id"]: t for t in report.tokens}
    assert len(lines) == len(counted) == 6
    for line in lines:
        _, videos = process_vision_info(line["messages"])
        assert videos is not None and len(videos) == 1
        t, _, h, w = videos[0].shape
        c = counted[line["id"]]
        assert (t, w, h) == (c["frames"], *c["frame_wh"])
        assert t // 2 * (h // 28) * (w // 28) == c["video_tokens"] and c["tokens"] <= 8192
