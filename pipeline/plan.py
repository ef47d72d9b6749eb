"""Which stages a job runs, and how its inputs become tasks. No Ray here."""
from __future__ import annotations

import logging

from pathlib import Path

from pipeline.config import JobConfig
from pipeline.records import VideoTask
from pipeline.stage import Chain, Resources, Stage


def build_stages(cfg: JobConfig, work_dir: Path) -> list[Stage]:
    """The ordered stages of a job: media, one process per video (fetch -> segment + sample, signals
    -> select -> filter -> dedupe: benchmark fingerprints, near-duplicates) -> synthesize -> verify."""
    from pipeline.acquire.stages import FetchStage
    from pipeline.filter.stages import DedupeStage, FilterStage
    from pipeline.segment.select import SelectStage
    from pipeline.segment.stages import SegmentStage

    cfg.synth.execution_mode(cfg.verify.verifier)  # an impossible combination fails before any work
    media = [FetchStage(cfg.fetch, cache_root=work_dir),
             SegmentStage(cfg.segment, cache_dir=work_dir / "cache" / "segments"), SelectStage(cfg.select),
             FilterStage(cfg.filter), DedupeStage(cfg.dedupe, cfg.decontaminate)]
    stages: list[Stage] = [Chain("media", media, Resources(cpus=cfg.media.cpus_per_worker,
                                                           gpus=max(s.resources.gpus for s in media),
                                                           concurrency=(cfg.media.min_workers, cfg.media.max_workers)))]
    if cfg.synth.teacher is None:
        logging.getLogger("curate").warning(
            "synthesis skipped: no teacher configured (set synth.teacher, e.g. --set synth.teacher.kind=openai "
            "--set synth.teacher.openai.base_url=http://HOST:8000/v1 --set synth.teacher.model=NAME; see README)")
    else:
        from synth.synthesize import SynthesizeStage

        stages.append(SynthesizeStage(cfg.synth))
        if cfg.verify.verifier is not None:
            from synth.verify import VerifyStage

            stages.append(VerifyStage(cfg.verify, teacher=cfg.synth.teacher))
        else:
            logging.getLogger("curate").warning(
                "verification skipped: no verify.verifier configured; QA rows are written unverified")
    return stages


def ingest(cfg: JobConfig, work_dir: Path) -> tuple[list[VideoTask], int]:
    """All inputs as tasks (malformed ones already rejected) and the duplicates collapsed."""
    from pipeline.acquire.ingest import read_inputs
    from pipeline.demo import prepare_demo_inputs
    from pipeline.filter.decontaminate import reject_listed

    input_cfg = cfg.input
    if cfg.demo is not None:
        items = list(input_cfg.items) + prepare_demo_inputs(cfg.demo, work_dir)
        input_cfg = input_cfg.model_copy(update={"items": items})
    result = read_inputs(input_cfg)
    reject_listed(result.tasks, cfg.decontaminate)  # benchmark IDs: rejected before any download
    return result.tasks, result.duplicates
