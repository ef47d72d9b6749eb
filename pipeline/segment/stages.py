"""SegmentStage: one decode feeds scene detection and frame sampling; plus `segment_video`."""
from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.records import Frame, Reason, Scene, VideoTask
from pipeline.segment.config import SegmentConfig
from pipeline.segment.decode import DecodeStats, MediaError, iter_frames, open_video
from pipeline.segment.detect import Cut, SceneAnalyzer
from pipeline.segment.sample import FrameSampler
from pipeline.segment.scenes import assign_frames, mark_gradual, merge_short, scenes_from_cuts, split_long
from pipeline.stage import Resources, Stage


@dataclass
class SegmentResult:
    """Scenes, sampled frames (JPEG bytes) and what the decode measured."""

    scenes: list[Scene]
    frames: list[Frame]
    cuts: list[Cut]
    width: int
    height: int
    fps: float
    frame_count: int
    duration_s: float
    rotation: int
    codec: str
    stats: dict = field(default_factory=dict)


def segment_video(path: str, cfg: SegmentConfig | None = None) -> SegmentResult:
    """Decode `path` once; detect cuts, sample frames, post-process scenes.

    Raises MediaError(reason, message) for files that cannot be used.
    """
    cfg = cfg or SegmentConfig()
    container, stream, info = open_video(path, cfg.thread_type, cfg.decoder_threads)
    stats = DecodeStats()
    try:
        analyzer = SceneAnalyzer(cfg, info.width, info.height, info.rate)
        sampler: FrameSampler | None = None
        numbers: list[int] = []
        last = None
        for df in iter_frames(container, stream, info, stats):
            if sampler is None:  # rotation is known from the first frame
                sampler = FrameSampler(cfg, info.width, info.height, info.rotation, info.duration_s)
            analyzer.push(df)
            sampler.push(df)
            numbers.append(df.number)
            last = df
    except MediaError:
        raise
    finally:
        container.close()
    if last is None or sampler is None:
        raise MediaError("corrupt_media", f"no decodable video frames ({stats.decode_errors} bad packets)")
    if stats.packets and stats.decode_errors / stats.packets > cfg.max_decode_error_ratio:
        raise MediaError("decode_error", f"{stats.decode_errors}/{stats.packets} packets failed: "
                         + "; ".join(stats.errors[:2]))
    cuts = analyzer.finish()
    end_frame = last.number + 1
    # The trainer (decord) puts frame i at i / origin_fps, so fps is the average rate and the
    # duration what makes frame_count / fps land on the real end: the last frame's time plus one
    # mean frame interval (for constant rate exactly frames / nominal rate; for VFR files the
    # nominal rate would stretch or squeeze the timeline)
    frames = stats.frames
    duration_s = round(last.seconds * frames / (frames - 1) if frames > 1 and last.seconds > 0
                       else last.seconds + 1.0 / float(info.rate), 6)
    kinds = mark_gradual(cuts, analyzer.luma_diff, numbers, cfg, analyzer.luma_mean)
    scenes = scenes_from_cuts(cuts, end_frame, duration_s, kinds)
    scenes = split_long(merge_short(scenes, cfg.min_scene_s), cfg.max_scene_s, float(info.rate))
    sampled = [Frame(timestamp_s=f.timestamp_s, image=f.image, width=f.width, height=f.height, index=i,
                     digest=hashlib.sha1(f.image).hexdigest()[:16]) for i, f in enumerate(sampler.frames)]
    assign_frames(scenes, sampled)
    rot = info.rotation
    w, h = (info.height, info.width) if rot in (90, 270) else (info.width, info.height)
    return SegmentResult(
        scenes=scenes, frames=sampled, cuts=cuts, width=w, height=h, fps=round(frames / duration_s, 6),
        frame_count=frames, duration_s=duration_s, rotation=rot, codec=info.codec,
        stats={"packets": stats.packets, "decode_errors": stats.decode_errors,
               "frames": stats.frames, "missing_pts": stats.missing_pts,
               "analysed_frames": analyzer.analysed, "refined_frames": analyzer.refined, "analysis_size": list(analyzer.size),
               "errors": stats.errors})


class SegmentStage(Stage):
    """Fills scenes, frames and decoded media facts of a task; rejects unusable media."""

    name = "segment"
    version = "1"

    def __init__(self, cfg: SegmentConfig | None = None, resources: Resources | None = None,
                 cache_dir: str | Path | None = None):
        self.cfg = cfg or SegmentConfig()
        # results of earlier decodes, on this node's disk next to the video cache: a re-run whose
        # segment key is unchanged (a new filter, a new prompt) does not decode the video again
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        # one CPU per replica (one decoder thread by default, cfg.thread_type); the pool grows
        # with the cluster (min 1 so a 2-core box runs it)
        self.resources = resources or Resources(cpus=1.0, concurrency=(1, 64))

    def key_parts(self) -> dict[str, str]:
        from pipeline.keys import config_digest

        # the decoder's threading changes the cost, never the frames or the cuts (bench/segment.py)
        return {"version": self.version, "config": config_digest(self.cfg, exclude=("decoder_threads", "thread_type"))}

    def process(self, task: VideoTask) -> VideoTask:
        if task.rejected:
            return task
        if not task.video_path:
            return task.reject(Reason.stage_error, "segment: the task has no video_path (fetch did not run?)",
                               stage=self.name)
        try:
            res = self._cached_or_decoded(task)
        except MediaError as exc:
            where = f" (fetched on node {task.media_node})" if exc.reason is Reason.media_missing else ""
            return task.reject(exc.reason, exc.message + where, stage=self.name)
        task.scenes, task.frames = res.scenes, res.frames
        task.width, task.height, task.fps = res.width, res.height, res.fps
        task.frame_count, task.duration_s, task.rotation = res.frame_count, res.duration_s, res.rotation
        task.codec = task.codec or res.codec
        return task

    def _cache_path(self, task: VideoTask) -> Path | None:
        """Where this video's result for this config lives: keyed by the stage key and the file
        (path, size, mtime: a re-downloaded or replaced file is decoded again)."""
        if self.cache_dir is None:
            return None
        try:
            st = os.stat(task.video_path)
        except OSError:
            return None
        from pipeline.keys import digest

        key = digest([self.key_parts(), str(task.video_path), st.st_size, st.st_mtime_ns])
        return self.cache_dir / task.video_id[:2] / f"{task.video_id}.{key}.pkl"

    def _cached_or_decoded(self, task: VideoTask) -> SegmentResult:
        path = self._cache_path(task)
        if path is not None and path.is_file():
            try:
                with open(path, "rb") as fh:
                    return pickle.load(fh)
            except (OSError, pickle.UnpicklingError, EOFError, AttributeError):
                path.unlink(missing_ok=True)  # unreadable: decode again
        res = segment_video(task.video_path, self.cfg)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
            with open(tmp, "wb") as fh:
                pickle.dump(res, fh, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
        return res
