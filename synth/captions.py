"""Windows to caption, their requests, and the hierarchy up to a whole-video description."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from pipeline.records import Frame, VideoTask
from synth.backends.types import ChatRequest
from synth.config import CaptionConfig
from synth.prompting import NEWEST, PromptSet


@dataclass
class Window:
    """A captioned stretch of video: a scene, or a part of a long scene."""

    index: int
    scene_index: int
    start_s: float
    end_s: float
    caption: str | None = None


def make_windows(task: VideoTask, window_s: float) -> list[Window]:
    """Scenes split into windows of at most `window_s`; the whole video if it has no scenes."""
    spans = [(s.index, s.start_s, s.end_s) for s in task.scenes] or [(0, 0.0, float(task.duration_s or 0.0))]
    out: list[Window] = []
    for scene_index, start, end in spans:
        n = max(1, int(-(-(end - start) // window_s)))  # ceil
        step = (end - start) / n
        for k in range(n):
            out.append(Window(len(out), scene_index, round(start + k * step, 3), round(start + (k + 1) * step, 3)))
    return out


def frames_in(frames: Sequence[Frame], start: float, end: float, limit: int) -> list[Frame]:
    inside = [f for f in frames if start <= f.timestamp_s < end] or \
             sorted(frames, key=lambda f: abs(f.timestamp_s - (start + end) / 2))[:1]
    if len(inside) <= limit:
        return list(inside)
    step = len(inside) / limit
    return [inside[int(i * step)] for i in range(limit)]


def caption_requests(task: VideoTask, windows: list[Window], cfg: CaptionConfig, system: str | None,
                     prompts: PromptSet = NEWEST) -> list[ChatRequest]:
    """One request per window: its frames, their timestamps and the window's subtitle lines."""
    prompt = prompts("caption_window")
    out = []
    for w in windows:
        subs = [c.text for c in task.subtitles if c.start_s < w.end_s and c.end_s > w.start_s] \
            if cfg.use_subtitles else []
        sub_text = ("Subtitles in this window: " + " ".join(subs)[:1500]) if subs else ""
        out.append(ChatRequest(
            key=f"{task.video_id}/caption/{w.index}", system=system,
            prompt=prompt.render(start=w.start_s, end=w.end_s, duration=task.duration_s or 0.0, subtitles=sub_text),
            frames=frames_in(task.frames, w.start_s, w.end_s, cfg.max_frames_per_window), frames_key=task.frames_key,
            max_tokens=cfg.max_tokens, temperature=0.2))
    return out


def timestamped(windows: Sequence[Window]) -> str:
    return "\n".join(f"[{w.start_s:.1f}-{w.end_s:.1f} s] {w.caption}" for w in windows if w.caption)


def summary_requests(task: VideoTask, windows: list[Window], cfg: CaptionConfig, system: str | None,
                     prompts: PromptSet = NEWEST) -> tuple[list[ChatRequest], list[list[Window]]]:
    """One text-only request per group of `group_size` captioned windows."""
    captioned = [w for w in windows if w.caption]
    groups = [captioned[i:i + cfg.group_size] for i in range(0, len(captioned), cfg.group_size)]
    prompt = prompts("summarize")
    reqs = [ChatRequest(key=f"{task.video_id}/summary/{i}", system=system,
                        prompt=prompt.render(duration=task.duration_s or 0.0, captions=timestamped(g)),
                        max_tokens=cfg.max_tokens * 2, temperature=0.2)
            for i, g in enumerate(groups)]
    return reqs, groups


def describe_request(task: VideoTask, summaries: list[str], cfg: CaptionConfig, system: str | None,
                     prompts: PromptSet = NEWEST) -> ChatRequest:
    prompt = prompts("describe_video")
    return ChatRequest(key=f"{task.video_id}/describe", system=system,
                       prompt=prompt.render(duration=task.duration_s or 0.0, summaries="\n".join(summaries)),
                       max_tokens=cfg.describe_max_tokens, temperature=0.2)
