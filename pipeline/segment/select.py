"""SelectStage: video- and scene-level duration bounds, maximum scenes; reasons on reject."""
from __future__ import annotations

from dataclasses import replace

from pipeline.records import Reason, VideoTask
from pipeline.segment.config import SelectConfig
from pipeline.stage import Resources, Stage


def select(task: VideoTask, cfg: SelectConfig, stage: str = "select") -> VideoTask:
    """Apply `cfg` to a segmented task (pure function; the stage wraps it).

    Scenes outside [scene_min_s, scene_max_s] are dropped and their frames lose their
    scene (scene_index -1). Over max_scenes: 'truncate' keeps max_scenes evenly spread
    scenes; 'reject' rejects with too_long (no dedicated reason exists).
    """
    if task.rejected:
        return task
    dur = task.duration_s
    if dur is None:
        return task.reject(Reason.corrupt_media, "duration unknown", stage=stage)
    if dur < cfg.min_duration_s:
        return task.reject(Reason.too_short, f"{dur:.1f}s < {cfg.min_duration_s:g}s", stage=stage)
    if dur > cfg.max_duration_s:
        return task.reject(Reason.too_long, f"{dur:.1f}s > {cfg.max_duration_s:g}s", stage=stage)
    keep = [s for s in task.scenes if s.end_s - s.start_s >= cfg.scene_min_s
            and (cfg.scene_max_s is None or s.end_s - s.start_s <= cfg.scene_max_s)]
    if len(keep) > cfg.max_scenes:
        if cfg.max_scenes_action == "reject":
            return task.reject(Reason.too_long, f"{len(keep)} scenes > max_scenes={cfg.max_scenes}",
                               stage=stage)
        n = len(keep)
        keep = [keep[(i * n) // cfg.max_scenes] for i in range(cfg.max_scenes)]
    if len(keep) < cfg.min_scenes:
        return task.reject(Reason.too_few_scenes, f"{len(keep)} scenes within bounds < "
                           f"min_scenes={cfg.min_scenes}", stage=stage)
    remap = {s.index: i for i, s in enumerate(keep)}
    task.scenes = [replace(s, index=i) for i, s in enumerate(keep)]
    for fr in task.frames:
        fr.scene_index = remap.get(fr.scene_index, -1)
    return task


class SelectStage(Stage):
    """Cheap filter after segmentation; see `select`."""

    name = "select"
    version = "1"
    resources = Resources(cpus=0.05, concurrency=1, batch_size=16)  # bookkeeping only
    reads = frozenset({"duration_s", "scenes", "frames"})
    writes = frozenset({"scenes", "frames"})

    def __init__(self, cfg: SelectConfig | None = None):
        self.cfg = cfg or SelectConfig()

    def sections(self) -> dict[str, SelectConfig]:
        return {"select": self.cfg}

    def process(self, task: VideoTask) -> VideoTask:
        return select(task, self.cfg, stage=self.name)
