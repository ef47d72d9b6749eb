"""SegmentStage: one decode feeds scene detection and frame sampling; plus `segment_video`."""
from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from pipeline.records import ContentSignals, Frame, HashTrack, Reason, Scene, VideoTask
from pipeline.segment.config import SegmentConfig
from pipeline.segment.cuts import ConfirmedCutDetector, Cut, CutParams
from pipeline.segment.decode import DecodeStats, MediaError, iter_frames, open_video
from pipeline.segment.detect import SceneAnalyzer
from pipeline.segment.sample import FrameSampler
from pipeline.segment.scenes import assign_frames, mark_gradual, merge_short, scenes_from_cuts, split_long
from pipeline.segment.signals import SignalMeter, SignalParams
from pipeline.segment.thumbs import RgbThumbnailer, Thumbnailer
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
    signals: ContentSignals | None = None
    query_t: np.ndarray | None = None  # dense pHash grid (seconds, uint64 hashes) for matching
    query_h: np.ndarray | None = None
    predictions: np.ndarray | None = None  # transnetv2: per-frame single-frame prediction (float32)


def cut_params(cfg: SegmentConfig) -> CutParams:
    """The confirmed detector's parameters, from the one place their defaults are set."""
    return CutParams(threshold=cfg.cut_threshold, gradual_threshold=cfg.gradual_threshold,
                     confirm_s=cfg.confirm_s, gradual_s=cfg.gradual_s, min_scene_len=cfg.min_scene_len)


def segment_video(path: str, cfg: SegmentConfig | None = None) -> SegmentResult:
    """Decode `path` once; detect cuts, measure signals, sample frames, post-process scenes.

    The thumbnails of every frame feed the confirmed cut detector (also in PySceneDetect mode,
    where it only scores the boundaries PySceneDetect placed, for merging) and the signals.
    Raises MediaError(reason, message) for files that cannot be used.
    """
    cfg = cfg or SegmentConfig()
    transnet = cfg.detector == "transnetv2"
    compat = cfg.detector not in ("confirmed", "transnetv2")
    scorer = rgb = None
    if transnet:  # before opening the file: a missing wheel or GPU is the worker's fault, not the video's
        from pipeline.segment.transnet import TransNetScorer, set_threads

        if cfg.transnet_device == "cpu":
            set_threads(cfg.transnet_threads)
        scorer, rgb = TransNetScorer(cfg.transnet_device, cfg.transnet_batch), RgbThumbnailer()
    container, stream, info = open_video(path, cfg.thread_type, cfg.decoder_threads)
    stats = DecodeStats()
    try:
        analyzer = SceneAnalyzer(cfg, info.width, info.height, info.rate) if compat else None
        thumbs = Thumbnailer(info.width, info.height)
        cutter = ConfirmedCutDetector(float(info.rate), cut_params(cfg))
        meter = SignalMeter(SignalParams(cfg.hash_interval_s, cfg.text_interval_s, cfg.signature_points)) \
            if cfg.signals else None
        sampler: FrameSampler | None = None
        last = None
        for df in iter_frames(container, stream, info, stats):
            if sampler is None:  # rotation is known from the first frame
                sampler = FrameSampler(cfg, info.width, info.height, info.rotation, info.duration_s)
            thumb = thumbs(df.frame)
            cutter.push(thumb, df.number, df.seconds)
            if meter is not None:
                meter.push(df.frame, thumb, df.seconds)
            if analyzer is not None:
                analyzer.push(df)
            if scorer is not None:
                scorer.push(rgb(df.frame))
            sampler.push(df)
            last = df
    except MediaError:
        raise
    finally:
        container.close()
    if last is None or sampler is None:
        raise MediaError("corrupt_media", f"no decodable video frames ({stats.decode_errors} bad packets)")
    end_frame = last.number + 1
    # The trainer (decord) puts frame i at i / origin_fps, so fps is the average rate and the
    # duration what makes frame_count / fps land on the real end: the last frame's time plus one
    # mean frame interval (for constant rate exactly frames / nominal rate; for VFR files the
    # nominal rate would stretch or squeeze the timeline)
    n = stats.frames
    duration_s = round(last.seconds * n / (n - 1) if n > 1 and last.seconds > 0
                       else last.seconds + 1.0 / float(info.rate), 6)
    predictions = None
    if scorer is not None:
        from pipeline.segment.transnet import cuts_from_predictions

        single, _ = scorer.finish()
        cuts = cuts_from_predictions(single, cutter.numbers, cutter.seconds, cfg.transnet_threshold)
        predictions = single
        kinds = [c.kind if cfg.mark_gradual else "cut" for c in cuts]
    elif analyzer is not None:
        cuts = cutter.score_cuts(analyzer.finish())
        kinds = mark_gradual(cuts, analyzer.luma_diff, cutter.numbers, cfg, analyzer.luma_mean)
    else:
        cuts = cutter.finish()
        kinds = [c.kind if cfg.mark_gradual else "cut" for c in cuts]
    scenes = scenes_from_cuts(cuts, end_frame, duration_s, kinds)
    scenes = split_long(merge_short(scenes, cfg.min_scene_s), cfg.max_scene_s, float(info.rate))
    frames = [replace(f, index=i) for i, f in enumerate(sampler.frames)]  # the one frame type, numbered
    assign_frames(scenes, frames)
    rot = info.rotation
    w, h = (info.height, info.width) if rot in (90, 270) else (info.width, info.height)
    result = SegmentResult(
        scenes=scenes, frames=frames, cuts=cuts, width=w, height=h, fps=round(n / duration_s, 6),
        frame_count=n, duration_s=duration_s, rotation=rot, codec=info.codec,
        stats={"packets": stats.packets, "decode_errors": stats.decode_errors,
               "corrupt_frames": stats.corrupt_frames, "lost_frames": stats.lost_frames,
               "frames": stats.frames, "missing_pts": stats.missing_pts,
               "analysed_frames": analyzer.analysed if analyzer else stats.frames,
               "refined_frames": analyzer.refined if analyzer else 0,
               "transnet_windows": scorer.windows if scorer else 0,
               "analysis_size": list(analyzer.size if analyzer else thumbs.size),
               "errors": stats.errors}, predictions=predictions)
    if meter is not None:
        _add_signals(result, meter, cutter)
    return result


def _add_signals(result: SegmentResult, meter: SignalMeter, cutter: ConfirmedCutDetector) -> None:
    """Summarise the signals over the final scenes and attach them to the result."""
    motion, still = cutter.motion()
    index = {n: i for i, n in enumerate(cutter.numbers)}
    cut_idx = [index[s.start_frame] for s in result.scenes[1:]
               if s.transition != "split" and s.start_frame in index]
    guard = max(1, round(0.5 * result.fps))
    out = meter.finish(motion, still, np.asarray(cutter.seconds), cut_idx, guard,
                       [(s.start_s, s.end_s, s.keyframe_s) for s in result.scenes], result.duration_s)
    result.scenes = [replace(s, phash=x.phash, motion=x.motion) for s, x in zip(result.scenes, out.scenes)]
    result.signals = out.signals
    result.query_t, result.query_h = out.query_t, out.query_h


class SegmentStage(Stage):
    """Fills scenes, frames, content signals and decoded media facts of a task; rejects unusable media."""

    name = "segment"
    version = "4"  # 2: confirmed cut detector by default, cut scores, content signals; 3: decode damage on the
    # row; 4: fades next to cuts found, segment.detector transnetv2
    reads = frozenset({"video_path"})
    writes = frozenset({"scenes", "frames", "signals", "hash_track", "width", "height", "fps", "frame_count",
                        "duration_s", "rotation", "codec", "decode_errors", "lost_frames"})

    def __init__(self, cfg: SegmentConfig | None = None, resources: Resources | None = None,
                 cache_dir: str | Path | None = None):
        self.cfg = cfg or SegmentConfig()
        # results of earlier decodes, on this node's disk next to the video cache: a re-run whose
        # segment key is unchanged (a new filter, a new prompt) does not decode the video again
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        # one CPU per replica (one decoder thread by default, cfg.thread_type); the pool grows
        # with the cluster (min 1 so a 2-core box runs it); TransNetV2 on cuda: a GPU share too
        self.resources = resources or Resources(cpus=1.0, gpus=self.gpus_needed(), concurrency=(1, 64))

    def gpus_needed(self) -> float:
        """GPU share one replica needs: only segment.detector transnetv2 on cuda uses one."""
        return self.cfg.transnet_gpus if self.cfg.detector == "transnetv2" and self.cfg.transnet_device == "cuda" else 0.0

    def gpu_reason(self) -> str:
        """Why this stage asks Ray for a GPU, and what to do on a cluster without one."""
        return ("segment.detector=transnetv2 runs TransNetV2 on cuda: run on a cluster with GPU nodes, "
                "set segment.transnet_device=cpu to accept the CPU cost (~1 s of CPU per second of 30 fps video on 2 threads), "
                "or use segment.detector=confirmed") if self.gpus_needed() else ""

    def setup(self) -> None:
        if self.cfg.detector == "transnetv2":  # load the network once per worker, fail early without it
            from pipeline.segment.transnet import load_model

            load_model(self.cfg.transnet_device)

    def sections(self) -> dict[str, SegmentConfig]:
        return {"segment": self.cfg}

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
        # decode damage is data: every row says how much of its file failed to decode, and a
        # file past the configured share is rejected (its counts stay on the rejected row)
        task.decode_errors = res.stats.get("decode_errors", 0) + res.stats.get("corrupt_frames", 0)
        task.lost_frames = res.stats.get("lost_frames", 0)
        packets = res.stats.get("packets", 0)
        if packets and task.decode_errors / packets > self.cfg.max_decode_error_ratio:
            return task.reject(Reason.decode_error, f"{task.decode_errors} of {packets} packets failed to decode "
                               f"or decoded damaged ({res.stats.get('decode_errors', 0)} refused, "
                               f"{res.stats.get('corrupt_frames', 0)} frames flagged corrupt, {task.lost_frames} "
                               f"frames lost); over segment.max_decode_error_ratio={self.cfg.max_decode_error_ratio}"
                               + (": " + "; ".join(res.stats.get("errors", [])[:2]) if res.stats.get("errors") else ""),
                               stage=self.name)
        task.scenes, task.frames, task.signals = res.scenes, res.frames, res.signals
        task.hash_track = HashTrack(res.query_t, res.query_h) if res.query_h is not None else None
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
