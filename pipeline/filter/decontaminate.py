"""Benchmark video IDs from user lists: rejected at ingest, before anything is downloaded."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from pipeline.acquire.config import InputConfig
from pipeline.acquire.ids import parse_source
from pipeline.acquire.ingest import iter_raw
from pipeline.filter.config import DecontaminateConfig
from pipeline.records import Reason, VideoTask

STAGE = "ingest"


def benchmark_ids(cfg: DecontaminateConfig) -> dict[str, str]:
    """video_id -> the file that lists it. Entries are IDs or URLs, normalised like inputs
    (a watch URL and its bare ID are the same video); files are read like `input.path`."""
    out: dict[str, str] = {}
    for path in cfg.ids_files:
        if not Path(path).expanduser().is_file():
            raise ValueError(f"decontaminate.ids_files: file not found: {path!r}")
        for raw in iter_raw(InputConfig(path=path, column=cfg.ids_column)):
            parsed = parse_source(raw)
            if parsed.ok:
                out.setdefault(parsed.video_id, Path(path).name)
    return out


def reject_listed(tasks: Sequence[VideoTask], cfg: DecontaminateConfig) -> int:
    """Reject (benchmark_overlap) every task whose ID a benchmark list names; how many."""
    if not cfg.ids_files:
        return 0
    listed = benchmark_ids(cfg)
    n = 0
    for task in tasks:
        source = listed.get(task.video_id)
        if source is not None and not task.rejected:
            task.reject(Reason.benchmark_overlap, f"{task.video_id} is listed in the benchmark IDs file {source}",
                        stage=STAGE)
            n += 1
    return n
