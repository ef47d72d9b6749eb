"""Which stages a job runs, and how its inputs become tasks. No Ray here."""
from __future__ import annotations

from pathlib import Path

from pipeline.config import JobConfig
from pipeline.records import VideoTask
from pipeline.stage import Stage


def build_stages(cfg: JobConfig, work_dir: Path) -> list[Stage]:
    """The ordered stages of a job: fetch -> segment (+ sample) -> select."""
    from pipeline.acquire.stages import FetchStage
    from pipeline.segment.select import SelectStage
    from pipeline.segment.stages import SegmentStage

    return [FetchStage(cfg.fetch, cache_root=work_dir), SegmentStage(cfg.segment), SelectStage(cfg.select)]


def ingest(cfg: JobConfig, work_dir: Path) -> tuple[list[VideoTask], int]:
    """All inputs as tasks (malformed ones already rejected) and the duplicates collapsed."""
    from pipeline.acquire.ingest import read_inputs
    from pipeline.demo import prepare_demo_inputs

    input_cfg = cfg.input
    if cfg.demo is not None:
        items = list(input_cfg.items) + prepare_demo_inputs(cfg.demo, work_dir)
        input_cfg = input_cfg.model_copy(update={"items": items})
    result = read_inputs(input_cfg)
    return result.tasks, result.duplicates
